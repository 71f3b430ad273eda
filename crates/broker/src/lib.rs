//! The broker's core, with no HTTP in it: who is asking ([`auth`]), which
//! lenders hold a person ([`index`]), the fan-out through each lender's stack
//! ([`lookup`], [`lenders`]), the one disclosure pipeline ([`disclose`]:
//! merge, record, [`redact`]) used by [`search`], [`consent`] lookups and the
//! own view, lender data in ([`ingest`]), the log's jobs ([`audit`]), copy
//! [`letters`], and [`Broker`], which holds them together.
//!
//! Nothing here knows a status code or a route: the HTTP crate translates.

pub mod audit;
pub mod auth;
mod broker;
pub mod config;
pub mod consent;
pub mod disclose;
pub mod embed;
pub mod index;
pub mod ingest;
pub mod lenders;
pub mod letters;
pub mod lookup;
pub mod metrics;
pub mod population;
pub mod redact;
pub mod search;
pub mod tls;

pub use broker::{Broker, BuildError};
// The domain's modules and the store, under the paths the modules here use.
pub use gjeldsbro_domain::{model, nin, time};
pub use gjeldsbro_store as store;
