//! The broker as a TLS client of lenders: the certificate it presents (mTLS)
//! and the CAs it trusts for a lender's server certificate.
//!
//! Per lender, `client_cert_file`/`client_key_file`/`ca_file` in `[[lenders]]`
//! win over the broker-wide `[lender_tls]`. Without either the lender's client
//! is reqwest's default: no client certificate, the system roots. Reading the
//! files and configuring reqwest is the adapter interface's
//! (`gjeldsbro_adapter::tls_files`), shared with `lender-check`.

pub use gjeldsbro_adapter::tls_files::{LenderTlsFiles, configure};

use crate::config::{Config, LenderConfig};

/// The files `lc`'s client uses, resolved against the config directory.
pub fn for_lender(config: &Config, lc: &LenderConfig) -> LenderTlsFiles {
    let broker = config.lender_tls.clone().unwrap_or_default();
    let identity = match (&lc.client_cert_file, &lc.client_key_file) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ => broker.cert_file.zip(broker.key_file),
    };
    LenderTlsFiles {
        identity: identity.map(|(c, k)| (config.resolve(&c), config.resolve(&k))),
        ca: lc
            .ca_file
            .clone()
            .or(broker.ca_file)
            .map(|p| config.resolve(&p)),
    }
}
