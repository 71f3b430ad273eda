//! Gjeldsbro: a federated query broker for Norway's register of unsecured
//! consumer debt.
//!
//! The modules follow the way one lookup flows: [`http`] → [`auth`] → [`nin`] →
//! [`index`] → [`lookup`] (fan-out through [`lenders`], fallback to [`store`]) →
//! [`disclose`] (merge, the [`audit`] record, [`redact`]) → answer. [`app`]
//! assembles them; `main.rs` is the CLI.

pub mod cli;
pub mod telemetry;

// The crates below, under the paths the CLI, the tests and the benches use.
pub use gjeldsbro_broker::{
    Broker, audit, auth, config, consent, disclose, embed, index, ingest, lenders, letters, lookup,
    metrics, population, redact, search, tls,
};
pub use gjeldsbro_domain::{model, nin, time};
pub use gjeldsbro_http::{self as http, app, server};
pub use gjeldsbro_store as store;
