//! Gjeldsbro: a federated query broker for Norway's register of unsecured
//! consumer debt.
//!
//! The modules follow the way one lookup flows: [`http`] → [`auth`] → [`nin`] →
//! [`index`] → [`lookup`] (fan-out through [`lenders`], fallback to [`store`]) →
//! [`disclose`] (merge, the [`audit`] record, [`redact`]) → answer. [`app`]
//! assembles them; `main.rs` is the CLI.

pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod consent;
pub mod disclose;
pub mod embed;
pub mod http;
pub mod index;
pub mod ingest;
pub mod lendercheck;
pub mod lenders;
pub mod letters;
pub mod lookup;
pub mod metrics;
pub mod population;
pub mod redact;
pub mod search;
pub mod server;
pub mod telemetry;
pub mod tls;

// The domain's modules, under the paths the broker's modules use.
pub use gjeldsbro_domain::{model, nin, time};
pub use gjeldsbro_store as store;
