//! TLS: the listener's certificate (reloaded without a restart), client
//! certificates (mTLS) as a way to authenticate an organisation, and the
//! broker's own certificate presented to lenders.
//!
//! - [`config`]: the `[tls]` and `[lender_tls]` tables, PEM loading, rustls configs.
//! - [`listener`]: the reloadable server config (the accept loop is `crate::server`'s).
//! - [`peer`]: the organisation named by a client certificate.
//! - [`lender`]: the per-lender client identity and trusted CAs for reqwest.
//!
//! Without `[tls]` the broker serves plain HTTP (behind a TLS-terminating proxy,
//! or in tests and the demo), exactly as before.

pub mod config;
pub mod lender;
pub mod listener;
pub mod peer;

use std::path::PathBuf;
use std::sync::Arc;

pub use config::{LenderTlsConfig, TlsConfig};
pub use listener::ServerTls;
pub use peer::PeerIdentity;

/// Why TLS material cannot be used. The texts name files and reasons, never the
/// bytes of a key or a certificate.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {message}")]
    Read {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{what} {path} holds no certificate")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("{what} {path}: {message}")]
    Unusable {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("the TLS settings cannot be used: {0}")]
    Settings(String),
}

impl From<gjeldsbro_adapter::tls_files::PemError> for TlsError {
    fn from(e: gjeldsbro_adapter::tls_files::PemError) -> Self {
        use gjeldsbro_adapter::tls_files::PemError;
        match e {
            PemError::Read {
                what,
                path,
                message,
            } => TlsError::Read {
                what,
                path,
                message,
            },
            PemError::NoCertificate { what, path } => TlsError::NoCertificate { what, path },
            PemError::Unusable {
                what,
                path,
                message,
            } => TlsError::Unusable {
                what,
                path,
                message,
            },
        }
    }
}

/// The crypto provider for every rustls config built here: the process default
/// when `main` (or a test) installed one, else aws-lc-rs. Naming it explicitly
/// means a config never depends on a global that might not be set yet.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}
