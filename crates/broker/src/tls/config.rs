//! The `[tls]` and `[lender_tls]` config tables, reading PEM files, and building
//! the listener's rustls `ServerConfig`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;

use super::TlsError;
use crate::config::{Config, ConfigError};

/// TLS on the listener. Without this table the broker serves plain HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain, leaf first (PEM).
    pub cert_file: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CAs trusted for client certificates (PEM bundle). Without it no client
    /// certificate is asked for. With it a certificate is asked for but optional
    /// (bearer-token callers keep working); one that is presented must verify.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// Refuse connections without a client certificate (needs `client_ca_file`).
    #[serde(default)]
    pub require_client_cert: bool,
    /// How often the files' modification times are checked, in seconds (default
    /// 10; 0 turns polling off, leaving SIGHUP as the only trigger).
    #[serde(default = "default_reload_secs")]
    pub reload_secs: u64,
}

fn default_reload_secs() -> u64 {
    10
}

/// The broker's side of TLS towards lenders, for every lender that does not
/// name its own. Each key may also be set per lender (`client_cert_file`,
/// `client_key_file`, `ca_file` in `[[lenders]]`), which wins.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LenderTlsConfig {
    /// The certificate chain the broker presents to lenders (PEM).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// CAs trusted for lenders' server certificates (PEM bundle), *instead of*
    /// the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Checks the TLS keys for consistency (called from `Config::check`). Files are
/// read later, at start, where a failure names the file.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    if let Some(tls) = &config.tls
        && tls.require_client_cert
        && tls.client_ca_file.is_none()
    {
        return Err(ConfigError::Invalid(
            "tls.require_client_cert needs tls.client_ca_file".into(),
        ));
    }
    if let Some(lt) = &config.lender_tls
        && lt.cert_file.is_some() != lt.key_file.is_some()
    {
        return Err(ConfigError::Invalid(
            "lender_tls: cert_file and key_file go together".into(),
        ));
    }
    for l in &config.lenders {
        if l.client_cert_file.is_some() != l.client_key_file.is_some() {
            return Err(ConfigError::Invalid(format!(
                "lender {:?}: client_cert_file and client_key_file go together",
                l.id
            )));
        }
    }
    Ok(())
}

// PEM reading is the adapter interface's (lender clients and lender-check
// read the same files); its errors become `TlsError`s with the same text.
pub use gjeldsbro_adapter::tls_files::{read_certs, read_key};

/// The listener's files, resolved against the config's directory.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub require_client_cert: bool,
}

impl ServerFiles {
    pub fn from_config(config: &Config, tls: &TlsConfig) -> ServerFiles {
        ServerFiles {
            cert: config.resolve(&tls.cert_file),
            key: config.resolve(&tls.key_file),
            client_ca: tls.client_ca_file.as_deref().map(|p| config.resolve(p)),
            require_client_cert: tls.require_client_cert,
        }
    }

    /// Every file the config is built from, for the change check.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }
}

/// A freshly built server config and what the logs say about its certificate.
pub struct Built {
    pub config: Arc<rustls::ServerConfig>,
    pub leaf: super::peer::CertSummary,
}

/// Reads the files and builds the listener's rustls config: TLS 1.2 and 1.3,
/// ALPN h2 and http/1.1, and, with a client CA file, webpki verification of
/// client certificates (chain to one of those CAs, validity dates, the
/// clientAuth key purpose).
pub fn server_config(files: &ServerFiles) -> Result<Built, TlsError> {
    let provider = super::provider();
    let chain = read_certs("certificate file", &files.cert)?;
    let key = read_key("key file", &files.key)?;
    let leaf = super::peer::CertSummary::of(&chain[0]);
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Settings(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in read_certs("client CA file", path)? {
                roots.add(ca).map_err(|e| TlsError::Unusable {
                    what: "client CA file",
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            if !files.require_client_cert {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| TlsError::Unusable {
                what: "client CA file",
                path: path.clone(),
                message: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // `with_single_cert` checks that the key belongs to the leaf certificate, so
    // a half-replaced pair (new cert, old key) is refused here.
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Unusable {
            what: "certificate and key",
            path: files.cert.clone(),
            message: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Built {
        config: Arc::new(config),
        leaf,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    const BASE: &str = r#"
listen = "127.0.0.1:8443"
[store]
url = "sqlite:///tmp/x.db"
[auth]
issuer = "https://maskinporten.example"
audience = "gjeldsbro"
jwks_file = "config/dev-jwks.json"
[[lenders]]
id = "lender-a"
org_no = "920000001"
name = "Eksempel Finans AS"
adapter = "api-debt-fi"
base_url = "https://127.0.0.1:9001"
"#;

    #[test]
    fn tls_tables_parse_with_defaults() {
        let c = Config::parse(BASE).unwrap();
        assert!(c.tls.is_none() && c.lender_tls.is_none());
        let text = BASE.replace(
            "base_url = \"https://127.0.0.1:9001\"\n",
            "base_url = \"https://127.0.0.1:9001\"\nclient_cert_file = \"a.pem\"\nclient_key_file = \"a.key\"\nca_file = \"ca.pem\"\n",
        ) + "[tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\nclient_ca_file = \"c.pem\"\n\
               [lender_tls]\ncert_file = \"b.pem\"\nkey_file = \"b.key\"\n";
        let c = Config::parse(&text).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.reload_secs, 10);
        assert!(!tls.require_client_cert);
        assert_eq!(c.lenders[0].ca_file.as_deref(), Some("ca.pem".as_ref()));
    }

    #[test]
    fn the_example_config_parses_with_its_tls_keys_commented_in() {
        let example = include_str!("../../../../config/example.toml");
        assert!(Config::parse(example).unwrap().tls.is_none());
        // Only the TLS keys: the example's other commented sections (the
        // synthetic population register) are not for production configs.
        let example = example.replace("# [population_register]\n# kind = \"synthetic\"\n", "");
        let on: String = example
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest)
                    if rest.starts_with('[')
                        || rest.split_once(" = ").is_some_and(|(k, _)| {
                            k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                        }) =>
                {
                    rest
                }
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::parse(&on).unwrap();
        let tls = c.tls.expect("[tls] in the example");
        assert!(tls.client_ca_file.is_some());
        assert_eq!(tls.reload_secs, 10);
        assert!(c.lender_tls.and_then(|l| l.cert_file).is_some());
        assert!(c.lenders[0].client_cert_file.is_some() && c.lenders[0].ca_file.is_some());
    }

    #[test]
    fn inconsistent_tls_settings_are_refused() {
        let invalid = |extra: &str| {
            matches!(
                Config::parse(&format!("{BASE}{extra}")),
                Err(ConfigError::Invalid(_))
            )
        };
        assert!(invalid(
            "[tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\nrequire_client_cert = true\n"
        ));
        assert!(invalid("[lender_tls]\ncert_file = \"b.pem\"\n"));
        let half = BASE.replace(
            "adapter = \"api-debt-fi\"\n",
            "adapter = \"api-debt-fi\"\nclient_key_file = \"a.key\"\n",
        );
        assert!(matches!(Config::parse(&half), Err(ConfigError::Invalid(_))));
        let typo = format!(
            "{BASE}[tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\nclient_ca = \"c.pem\"\n"
        );
        assert!(matches!(
            Config::parse(&typo),
            Err(ConfigError::Parse { .. })
        ));
    }
}
