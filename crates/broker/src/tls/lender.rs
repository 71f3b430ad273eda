//! The broker as a TLS client of lenders: the certificate it presents (mTLS)
//! and the CAs it trusts for a lender's server certificate.
//!
//! Per lender, `client_cert_file`/`client_key_file`/`ca_file` in `[[lenders]]`
//! win over the broker-wide `[lender_tls]`. Without either the lender's client
//! is reqwest's default: no client certificate, the system roots.

use std::path::{Path, PathBuf};

use super::TlsError;
use super::config::{read_certs, read_key};
use crate::config::{Config, LenderConfig};

/// The files one lender's client uses, resolved against the config directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LenderTlsFiles {
    /// The broker's certificate chain and key, presented to the lender.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The only CAs trusted for the lender's server certificate.
    pub ca: Option<PathBuf>,
}

impl LenderTlsFiles {
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
}

/// Adds the lender's TLS settings to its client builder. The files are read
/// and checked here (a bad file stops the start, naming the file): reqwest's
/// own PEM errors do not say which file or what is wrong.
pub fn configure(
    builder: reqwest::ClientBuilder,
    files: &LenderTlsFiles,
) -> Result<reqwest::ClientBuilder, TlsError> {
    let mut builder = builder;
    if let Some((cert, key)) = &files.identity {
        builder = builder.identity(identity(cert, key)?);
    }
    if let Some(ca) = &files.ca {
        let roots = read_certs("lender CA file", ca)?
            .into_iter()
            .map(|der| {
                reqwest::Certificate::from_der(&der).map_err(|e| TlsError::Unusable {
                    what: "lender CA file",
                    path: ca.clone(),
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Only these: a lender on a private CA is not also reachable under a
        // certificate from any public CA.
        builder = builder.tls_certs_only(roots);
    }
    Ok(builder)
}

fn identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, TlsError> {
    use base64::Engine;
    use rustls::pki_types::PrivateKeyDer;
    // Read with our reader (errors that name the file), then hand reqwest a
    // clean PEM of just the certificates and the key: its own reader refuses a
    // file with any other section in it (an `EC PARAMETERS` block, say).
    let chain = read_certs("lender client certificate file", cert)?;
    let key_der = read_key("lender client key file", key)?;
    let key_label = match &key_der {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    let section = |label: &str, der: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    };
    let mut pem = String::new();
    for c in &chain {
        pem.push_str(&section("CERTIFICATE", c));
    }
    pem.push_str(&section(key_label, key_der.secret_der()));
    reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| TlsError::Unusable {
        what: "lender client certificate and key",
        path: cert.to_path_buf(),
        message: e.to_string(),
    })
}
