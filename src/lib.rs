//! Gjeldsbro: a federated query broker for Norway's register of unsecured
//! consumer debt.
//!
//! The modules follow the way one lookup flows: [`auth`] → [`nin`] → [`index`] →
//! [`lookup`] (fan-out through [`lenders`], fallback to [`store`]) → [`redact`] →
//! [`audit`] → [`http`]. `main.rs` is the CLI and nothing else.

pub mod auth;
pub mod config;
