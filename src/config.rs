//! The broker's TOML configuration. The keys of DOMAIN.md are fixed (operators'
//! files must keep working); the extra keys here all have defaults.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config is inconsistent: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    #[serde(default)]
    pub accept_synthetic_ids: bool,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    #[serde(default)]
    pub lenders: Vec<LenderConfig>,
    /// Hex key for the keyed hash that stands in for national ids in logs. Without
    /// it a random key is drawn at start (hashes then correlate within one process
    /// only). Set the same key on every instance to correlate across them.
    #[serde(default)]
    pub log_hash_key: Option<String>,
    /// Largest accepted request body, in bytes (default 1 MiB).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest accepted intraday push body, in bytes (default 16 MiB).
    #[serde(default = "default_max_push_bytes")]
    pub max_push_bytes: usize,
    /// Largest accepted lender answer to one customer query, in bytes (default 1 MiB).
    #[serde(default = "default_max_lender_answer_bytes")]
    pub max_lender_answer_bytes: usize,
    /// The in-memory cache of lender answers.
    #[serde(default)]
    pub cache: CacheConfig,
    /// The directory the config file was read from; relative paths resolve against
    /// the working directory first, then this.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// The in-memory cache of lender answers, per (person, lender). Never on disk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How long a lender's answer is reused, in ms (default 30 000; 0 turns the
    /// cache off, and with it the sharing of identical calls in flight).
    #[serde(default = "default_cache_ttl_ms")]
    pub ttl_ms: u64,
    /// The most the cache holds, in (estimated) bytes (default 64 MiB).
    #[serde(default = "default_cache_max_bytes")]
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl_ms: default_cache_ttl_ms(),
            max_bytes: default_cache_max_bytes(),
        }
    }
}

fn default_cache_ttl_ms() -> u64 {
    30_000
}
fn default_cache_max_bytes() -> u64 {
    64 * 1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (embedded, the default) or `postgres://...` (scale-out).
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_file: PathBuf,
    /// Allowed clock skew for `exp`/`nbf`, in seconds (default 30).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

/// The roles an organisation may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    FinancialInstitution,
    CreditBureau,
    Partner,
    Lender,
    Operator,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub org_no: String,
    pub name: String,
    pub roles: Vec<Role>,
    /// This client's quota in requests per second (default 100).
    #[serde(default)]
    pub requests_per_second: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LenderConfig {
    pub id: String,
    /// The lender's financialInstitutionID.
    pub org_no: String,
    /// The creditorName shown where creditor names may be shown.
    pub name: String,
    pub adapter: String,
    pub base_url: String,
    #[serde(default = "default_lender_timeout_ms")]
    pub timeout_ms: u64,
    /// The most calls per second the broker sends this lender.
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    /// Concurrent calls at most.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// When to pull the daily dataset, `HH:MM` Europe/Oslo time (never before
    /// 05:00 UTC). Without it the broker does not pull this lender on its own.
    #[serde(default)]
    pub pull_at: Option<String>,
}

fn default_max_body_bytes() -> usize {
    1024 * 1024
}
fn default_max_push_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_max_lender_answer_bytes() -> usize {
    1024 * 1024
}
fn default_leeway() -> u64 {
    30
}
fn default_lender_timeout_ms() -> u64 {
    300
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(config)
    }

    /// Parses and checks config text (paths resolve against the working directory).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let mut ids = HashSet::new();
        let mut orgs = HashSet::new();
        for l in &self.lenders {
            if !ids.insert(l.id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "lender id {:?} appears twice",
                    l.id
                )));
            }
            if !orgs.insert(l.org_no.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "lender org_no {} appears twice",
                    l.org_no
                )));
            }
            if !is_org_no(&l.org_no) {
                return Err(ConfigError::Invalid(format!(
                    "lender {:?}: org_no must be 9 digits",
                    l.id
                )));
            }
            if let Some(t) = &l.pull_at
                && crate::ingest::schedule::parse_hhmm(t).is_none()
            {
                return Err(ConfigError::Invalid(format!(
                    "lender {:?}: pull_at must be HH:MM",
                    l.id
                )));
            }
            if l.timeout_ms == 0 {
                return Err(ConfigError::Invalid(format!(
                    "lender {:?}: timeout_ms must be > 0",
                    l.id
                )));
            }
        }
        let mut clients = HashSet::new();
        for c in &self.clients {
            if !clients.insert(c.org_no.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "client org_no {} appears twice",
                    c.org_no
                )));
            }
            if !is_org_no(&c.org_no) {
                return Err(ConfigError::Invalid(format!(
                    "client {:?}: org_no must be 9 digits",
                    c.name
                )));
            }
        }
        if self.max_body_bytes == 0 || self.max_lender_answer_bytes == 0 || self.max_push_bytes == 0
        {
            return Err(ConfigError::Invalid("size limits must be > 0".into()));
        }
        Ok(())
    }

    /// Resolves a configured path: as given if it exists from the working directory,
    /// else relative to the config file's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() || path.exists() {
            return path.to_path_buf();
        }
        let beside = self.base_dir.join(path);
        if beside.exists() {
            beside
        } else {
            path.to_path_buf()
        }
    }

    pub fn client(&self, org_no: &str) -> Option<&ClientConfig> {
        self.clients.iter().find(|c| c.org_no == org_no)
    }

    pub fn lender(&self, id: &str) -> Option<&LenderConfig> {
        self.lenders.iter().find(|l| l.id == id)
    }

    /// The national-id policy this deployment runs with.
    pub fn id_policy(&self) -> gjeldsbro_adapter::IdPolicy {
        gjeldsbro_adapter::IdPolicy {
            accept_synthetic: self.accept_synthetic_ids,
        }
    }
}

/// A Norwegian organisation number: nine digits.
pub fn is_org_no(s: &str) -> bool {
    s.len() == 9 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
listen = "127.0.0.1:8080"
accept_synthetic_ids = false
[store]
url = "sqlite:///var/lib/gjeldsbro/broker.db"
[auth]
issuer = "https://maskinporten.example"
audience = "gjeldsbro"
jwks_file = "config/dev-jwks.json"
[[clients]]
org_no = "910000001"
name = "Eksempel Bank ASA"
roles = ["financial_institution"]
requests_per_second = 100
[[lenders]]
id = "lender-a"
org_no = "920000001"
name = "Eksempel Finans AS"
adapter = "api-debt-fi"
base_url = "http://127.0.0.1:9001"
timeout_ms = 300
requests_per_second = 50
max_in_flight = 32
"#;

    #[test]
    fn the_documented_example_parses() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert_eq!(c.lenders[0].timeout_ms, 300);
        assert_eq!(c.clients[0].roles, vec![Role::FinancialInstitution]);
        assert_eq!(c.max_body_bytes, 1024 * 1024);
        assert!(!c.id_policy().accept_synthetic);
    }

    #[test]
    fn duplicates_and_bad_org_numbers_are_refused() {
        let dup = EXAMPLE.to_string() + &EXAMPLE[EXAMPLE.find("[[lenders]]").unwrap()..];
        assert!(matches!(Config::parse(&dup), Err(ConfigError::Invalid(_))));
        let bad = EXAMPLE.replace("920000001", "92000");
        assert!(matches!(Config::parse(&bad), Err(ConfigError::Invalid(_))));
        let unknown_key = EXAMPLE.replace("accept_synthetic_ids", "acept_synthetic_ids");
        assert!(matches!(
            Config::parse(&unknown_key),
            Err(ConfigError::Parse { .. })
        ));
    }
}
