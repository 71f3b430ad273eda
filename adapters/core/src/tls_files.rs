//! A lender client's TLS files (feature `http`): the certificate it presents
//! (mTLS) and the only CAs it trusts, read with errors that name the file.
//! Shared by the broker's lender clients and `lender-check`.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a PEM file cannot be used. The texts name files and reasons, never the
/// bytes of a key or a certificate.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
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
}

/// The files one lender's client uses, already resolved (the broker resolves them against its config's directory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LenderTlsFiles {
    /// The broker's certificate chain and key, presented to the lender.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The only CAs trusted for the lender's server certificate.
    pub ca: Option<PathBuf>,
}

/// Reads every certificate of a PEM file (other PEM sections are skipped).
pub fn read_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let read_err = |e: rustls::pki_types::pem::Error| PemError::Read {
        what,
        path: path.to_path_buf(),
        message: pem_error(e),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_err)?;
    if certs.is_empty() {
        return Err(PemError::NoCertificate {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn read_key(what: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| PemError::Read {
        what,
        path: path.to_path_buf(),
        message: pem_error(e),
    })
}

/// The PEM reader's error as text. Its messages name positions and section
/// kinds, never key material.
fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM section of the expected kind".into(),
        other => other.to_string(),
    }
}

/// Adds the lender's TLS settings to its client builder. The files are read
/// and checked here (a bad file stops the start, naming the file): reqwest's
/// own PEM errors do not say which file or what is wrong.
pub fn configure(
    builder: reqwest::ClientBuilder,
    files: &LenderTlsFiles,
) -> Result<reqwest::ClientBuilder, PemError> {
    let mut builder = builder;
    if let Some((cert, key)) = &files.identity {
        builder = builder.identity(identity(cert, key)?);
    }
    if let Some(ca) = &files.ca {
        let roots = read_certs("lender CA file", ca)?
            .into_iter()
            .map(|der| {
                reqwest::Certificate::from_der(&der).map_err(|e| PemError::Unusable {
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

fn identity(cert: &Path, key: &Path) -> Result<reqwest::Identity, PemError> {
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
    reqwest::Identity::from_pem(pem.as_bytes()).map_err(|e| PemError::Unusable {
        what: "lender client certificate and key",
        path: cert.to_path_buf(),
        message: e.to_string(),
    })
}
