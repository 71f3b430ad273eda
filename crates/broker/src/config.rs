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
    /// The operations listener: `/metrics`, detailed `/readyz`, `/healthz`
    /// (default `127.0.0.1:9464`, loopback). Never the same as `listen`: what it
    /// serves (which lenders were called, by the counters) is not for clients.
    /// Port 0 picks a free port (tests).
    #[serde(default = "default_ops_listen")]
    pub ops_listen: SocketAddr,
    #[serde(default)]
    pub accept_synthetic_ids: bool,
    /// True only in demo and test configs: the committed dev key in the JWKS,
    /// `gjeldsbro dev-token`, and plain `http://` lender URLs need it. Off, the
    /// broker refuses all three (DOMAIN.md).
    #[serde(default)]
    pub dev_mode: bool,
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
    /// Load shedding: concurrency, queue and queue wait for the API routes.
    #[serde(default)]
    pub overload: OverloadConfig,
    /// TLS on the listener (see `crate::tls`); without it, plain HTTP.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
    /// The broker's certificate and trusted CAs towards lenders (mTLS).
    #[serde(default)]
    pub lender_tls: Option<crate::tls::LenderTlsConfig>,
    /// How long disclosure records are kept (`gjeldsbro purge`).
    #[serde(default)]
    pub retention: RetentionConfig,
    /// Histogram buckets of the `/metrics` output.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// What `/readyz` requires beyond a reachable store and a loaded index.
    #[serde(default)]
    pub readiness: ReadinessConfig,
    /// The embedded page: its token audience and lifetime, its sessions.
    #[serde(default)]
    pub embed: EmbedConfig,
    /// Quotas beyond the per-client ones: persons on `/v1/me/*` and the page.
    #[serde(default)]
    pub quota: QuotaConfig,
    /// Connection and request limits of both listeners (`crate::server`).
    #[serde(default)]
    pub server: ServerConfig,
    /// Where copy letters get names and postal addresses (`gjeldsbro letters`).
    #[serde(default)]
    pub population_register: Option<PopulationRegisterConfig>,
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

/// `[metrics]`: the buckets of the duration histograms, in seconds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Upper bounds of the duration histograms (request, lender call, overhead,
    /// disclosure write), strictly increasing. Absent: 0.5 ms to 60 s, which
    /// covers sub-millisecond broker work up to the longest maxTimeToWait.
    #[serde(default)]
    pub duration_buckets: Option<Vec<f64>>,
}

/// `[readiness]`: when the broker stops calling itself ready.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadinessConfig {
    /// The oldest a lender's snapshot may be, in hours, before `/readyz` says
    /// not ready (default 36: a daily delivery may be late by half a day before
    /// fallbacks start answering with data too old to stand behind). A lender
    /// with no dataset at all does not count: a lender may be live-only, and a
    /// new one has none until its first delivery. 0 turns the rule off.
    #[serde(default = "default_max_snapshot_age_hours")]
    pub max_snapshot_age_hours: u64,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        ReadinessConfig {
            max_snapshot_age_hours: default_max_snapshot_age_hours(),
        }
    }
}

fn default_max_snapshot_age_hours() -> u64 {
    36
}

fn default_ops_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

/// `[server]`: what a connection may cost the broker before it has to show it
/// is a real client. The defaults are meant for a public deployment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// A new connection must deliver a complete request head (and finish its TLS
    /// handshake) within this, in seconds (default 10); HTTP/1.1 applies it to
    /// every request head. Half-sent headers (slowloris) are closed after it.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// A request's whole body must arrive within this from the start of the
    /// request, in seconds, else `408` (default 30).
    #[serde(default = "default_body_read_timeout_secs")]
    pub body_read_timeout_secs: u64,
    /// A connection with no request in flight for this long is closed, in
    /// seconds (default 60). An idle HTTP/1.1 connection is closed sooner, at
    /// the header deadline, as hyper starts that clock when it turns idle.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Open connections on the public listener at most (default 8192); beyond
    /// that new connections wait in the kernel's backlog. Capped at start below
    /// the open-files limit, with a reserve for store and lender sockets.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per connection (default 100).
    #[serde(default = "default_http2_max_concurrent_streams")]
    pub http2_max_concurrent_streams: u32,
    /// The largest HTTP/2 header list accepted, in bytes (default 16384).
    #[serde(default = "default_http2_max_header_list_bytes")]
    pub http2_max_header_list_bytes: u32,
    /// On shutdown, how long open requests may finish before their connections
    /// are closed, in seconds (default 20).
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout_secs: default_header_read_timeout_secs(),
            body_read_timeout_secs: default_body_read_timeout_secs(),
            idle_timeout_secs: default_idle_timeout_secs(),
            max_connections: default_max_connections(),
            http2_max_concurrent_streams: default_http2_max_concurrent_streams(),
            http2_max_header_list_bytes: default_http2_max_header_list_bytes(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
        }
    }
}

fn default_header_read_timeout_secs() -> u64 {
    10
}
fn default_body_read_timeout_secs() -> u64 {
    30
}
fn default_idle_timeout_secs() -> u64 {
    60
}
fn default_max_connections() -> usize {
    8192
}
fn default_http2_max_concurrent_streams() -> u32 {
    100
}
fn default_http2_max_header_list_bytes() -> u32 {
    16 * 1024
}
fn default_shutdown_grace_secs() -> u64 {
    20
}

/// Load shedding for the API routes as a whole.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverloadConfig {
    /// API requests running at once (default 512).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent: usize,
    /// Requests waiting for a turn beyond those (default 512).
    #[serde(default = "default_max_queued")]
    pub max_queued: usize,
    /// The longest a request waits for a turn, in ms (default 500).
    #[serde(default = "default_max_queue_wait_ms")]
    pub max_queue_wait_ms: u64,
}

impl Default for OverloadConfig {
    fn default() -> Self {
        OverloadConfig {
            max_concurrent: default_max_concurrent(),
            max_queued: default_max_queued(),
            max_queue_wait_ms: default_max_queue_wait_ms(),
        }
    }
}

fn default_max_concurrent() -> usize {
    512
}
fn default_max_queued() -> usize {
    512
}
fn default_max_queue_wait_ms() -> u64 {
    500
}

fn default_cache_ttl_ms() -> u64 {
    30_000
}
fn default_cache_max_bytes() -> u64 {
    64 * 1024 * 1024
}

/// Retention of the disclosure log. Consent records are kept two years after
/// they end, by law and not by configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days a disclosure record is kept (default 3650, ten years; at least 365,
    /// so a slip of the pen cannot wipe the log).
    #[serde(default = "default_disclosure_days")]
    pub disclosure_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            disclosure_days: default_disclosure_days(),
        }
    }
}

fn default_disclosure_days() -> u32 {
    3650
}

/// `[embed]`: the embedded page's tokens and sessions (see `crate::embed`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedConfig {
    /// The audience of embed tokens, the only tokens that open the page
    /// (default `<auth.audience>/embed`). Must differ from `auth.audience`.
    #[serde(default)]
    pub audience: Option<String>,
    /// The longest an embed token may live from when it is posted, in seconds
    /// (default 300; 10 to 3600).
    #[serde(default)]
    pub token_max_lifetime_secs: Option<u64>,
    /// A page session ends after this long without a request, in seconds
    /// (default 900).
    #[serde(default)]
    pub session_idle_secs: Option<u64>,
    /// ... and this long after it began, whatever happens (default 3600).
    #[serde(default)]
    pub session_max_secs: Option<u64>,
}

impl EmbedConfig {
    pub fn audience(&self, auth: &AuthConfig) -> String {
        self.audience
            .clone()
            .unwrap_or_else(|| crate::auth::embed::default_audience(&auth.audience))
    }
    pub fn token_max_lifetime_secs(&self) -> u64 {
        self.token_max_lifetime_secs
            .unwrap_or(crate::auth::embed::DEFAULT_MAX_LIFETIME_SECS)
    }
    pub fn session_idle_secs(&self) -> u64 {
        self.session_idle_secs.unwrap_or(15 * 60)
    }
    pub fn session_max_secs(&self) -> u64 {
        self.session_max_secs.unwrap_or(60 * 60)
    }
}

/// `[quota]`: quotas for persons, each counted by the keyed hash of the
/// person's id (never the id itself), per broker instance.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    /// Sustained requests per second of one person on `/v1/me/*` and the
    /// embedded page (default 1).
    #[serde(default)]
    pub person_requests_per_second: Option<u32>,
    /// How many requests a person may make at once before the rate applies
    /// (default 20).
    #[serde(default)]
    pub person_burst: Option<u32>,
}

impl QuotaConfig {
    pub fn person_requests_per_second(&self) -> u32 {
        self.person_requests_per_second.unwrap_or(1)
    }
    pub fn person_burst(&self) -> u32 {
        self.person_burst.unwrap_or(20)
    }
}

/// The least `disclosure_days` accepted.
pub const MIN_DISCLOSURE_DAYS: u32 = 365;

/// The population register adapter that names and addresses copy letters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopulationRegisterConfig {
    pub kind: PopulationRegisterKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PopulationRegisterKind {
    /// Made-up names and addresses derived from the id (demo and tests; only
    /// with `accept_synthetic_ids`).
    Synthetic,
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
    /// Allowed clock skew for `exp`/`nbf`/`iat`, in seconds (default 30).
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// The longest lifetime (`exp` − `iat`) a token may claim, in seconds
    /// (default 3600: an hour). A token
    /// without `iat` is then refused too: its lifetime cannot be judged. 0 turns
    /// the limit off (tokens without `iat` are then accepted).
    #[serde(default = "default_max_token_lifetime")]
    pub max_token_lifetime_secs: u64,
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
    /// Origins (`https://host[:port]`) allowed to frame the embedded debt page
    /// for this partner (`Content-Security-Policy: frame-ancestors`). Empty: the
    /// page is not served for this client.
    #[serde(default)]
    pub embed_origins: Vec<String>,
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
    /// Retries of a call that failed to connect, was reset, or got 502/503/504
    /// (default 2), within the lender's timeout.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Retries may add at most this percentage of calls (default 20).
    #[serde(default)]
    pub retry_budget_percent: Option<f32>,
    /// Sends a second call when the first is slower than `hedge_percentile` of
    /// recent calls (default off).
    #[serde(default)]
    pub hedge: bool,
    /// The latency percentile after which a hedge goes (default 95).
    #[serde(default)]
    pub hedge_percentile: Option<f32>,
    /// Hedges may add at most this percentage of calls (default 10).
    #[serde(default)]
    pub hedge_budget_percent: Option<f32>,
    /// Consecutive failures that open the circuit breaker (default 5).
    #[serde(default)]
    pub breaker_failures: Option<u32>,
    /// How long the breaker stays open before its first probe, in ms (default
    /// 1000; doubles after each failed probe, up to 30 s or this, if larger).
    #[serde(default)]
    pub breaker_backoff_ms: Option<u64>,
    /// When to pull the daily dataset, `HH:MM` Europe/Oslo time (never before
    /// 05:00 UTC). Without it the broker does not pull this lender on its own.
    #[serde(default)]
    pub pull_at: Option<String>,
    /// The certificate chain and key the broker presents to this lender (PEM;
    /// overrides `[lender_tls]`).
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// CAs trusted for this lender's server certificate, instead of the system
    /// roots (PEM bundle; overrides `[lender_tls]`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The protocol's own settings (`[lenders.settings]`), read by the adapter
    /// crate named in `adapter` (token endpoint, keys, API key, ...). The broker
    /// does not look inside.
    #[serde(default)]
    pub settings: Option<toml::Table>,
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
fn default_max_token_lifetime() -> u64 {
    3600
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
        if let Some(b) = &self.metrics.duration_buckets {
            // The prometheus crate refuses (and we would have to panic on) any
            // other shape, so it is refused here, at start, with a reason.
            let increasing = b.windows(2).all(|w| w[0] < w[1]);
            if b.is_empty() || !increasing || b.iter().any(|x| !x.is_finite() || *x <= 0.0) {
                return Err(ConfigError::Invalid(
                    "metrics.duration_buckets must be positive, finite and strictly increasing"
                        .into(),
                ));
            }
        }
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
            if !self.dev_mode && !is_https_url(&l.base_url) {
                // The national id travels in every call's headers: in clear
                // text only to a simulator on a dev machine.
                return Err(ConfigError::Invalid(format!(
                    "lender {:?}: base_url must be https:// (http:// only with dev_mode = true)",
                    l.id
                )));
            }
            if l.timeout_ms == 0 {
                return Err(ConfigError::Invalid(format!(
                    "lender {:?}: timeout_ms must be > 0",
                    l.id
                )));
            }
            let percent = |v: Option<f32>, lo: f32, hi: f32| v.is_none_or(|p| p >= lo && p <= hi);
            if !percent(l.retry_budget_percent, 0.0, 1000.0)
                || !percent(l.hedge_budget_percent, 0.0, 1000.0)
            {
                return Err(ConfigError::Invalid(format!(
                    "lender {:?}: budget percentages must be 0 to 1000",
                    l.id
                )));
            }
            if l.breaker_failures == Some(0) || l.breaker_backoff_ms == Some(0) {
                return Err(ConfigError::Invalid(format!(
                    "lender {:?}: breaker_failures and breaker_backoff_ms must be > 0",
                    l.id
                )));
            }
            if !percent(l.hedge_percentile, 1.0, 99.99) {
                return Err(ConfigError::Invalid(format!(
                    "lender {:?}: hedge_percentile must be 1 to 99.99",
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
            if let Some(bad) = c.embed_origins.iter().find(|o| !is_embed_origin(o)) {
                return Err(ConfigError::Invalid(format!(
                    "client {:?}: embed origin {bad:?} must be https://host[:port] \
                     (http only for localhost or 127.0.0.1), without path",
                    c.name
                )));
            }
        }
        if self.retention.disclosure_days < MIN_DISCLOSURE_DAYS {
            return Err(ConfigError::Invalid(format!(
                "retention.disclosure_days must be at least {MIN_DISCLOSURE_DAYS}"
            )));
        }
        if self
            .population_register
            .as_ref()
            .is_some_and(|p| p.kind == PopulationRegisterKind::Synthetic)
            && !self.accept_synthetic_ids
        {
            // Made-up addresses on letters to real persons would be a breach.
            return Err(ConfigError::Invalid(
                "population_register kind \"synthetic\" needs accept_synthetic_ids = true".into(),
            ));
        }
        if self.max_body_bytes == 0 || self.max_lender_answer_bytes == 0 || self.max_push_bytes == 0
        {
            return Err(ConfigError::Invalid("size limits must be > 0".into()));
        }
        self.check_embed_and_quota()?;
        let sv = &self.server;
        if sv.header_read_timeout_secs == 0
            || sv.body_read_timeout_secs == 0
            || sv.idle_timeout_secs == 0
            || sv.max_connections == 0
            || sv.http2_max_concurrent_streams == 0
        {
            return Err(ConfigError::Invalid(
                "server: timeouts, max_connections and http2_max_concurrent_streams must be > 0"
                    .into(),
            ));
        }
        if sv.http2_max_header_list_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "server.http2_max_header_list_bytes must be at least 1024".into(),
            ));
        }
        // Port 0 on both is fine (two free ports); the same real address is not.
        if self.ops_listen == self.listen && self.listen.port() != 0 {
            return Err(ConfigError::Invalid(
                "ops_listen must differ from listen: metrics are not for clients".into(),
            ));
        }
        crate::tls::config::check(self)?;
        Ok(())
    }

    fn check_embed_and_quota(&self) -> Result<(), ConfigError> {
        let e = &self.embed;
        if e.audience(&self.auth).trim() == self.auth.audience.trim() {
            return Err(ConfigError::Invalid(
                "embed.audience must differ from auth.audience: an API token must never open the \
                 embedded page, nor an embed token the API"
                    .into(),
            ));
        }
        if !(10..=3600).contains(&e.token_max_lifetime_secs()) {
            return Err(ConfigError::Invalid(
                "embed.token_max_lifetime_secs must be 10 to 3600".into(),
            ));
        }
        if e.session_idle_secs() < 60 || e.session_max_secs() < e.session_idle_secs() {
            return Err(ConfigError::Invalid(
                "embed.session_idle_secs must be at least 60 and at most session_max_secs".into(),
            ));
        }
        if e.session_max_secs() > 12 * 3600 {
            return Err(ConfigError::Invalid(
                "embed.session_max_secs must be at most 43200 (12 hours)".into(),
            ));
        }
        if self.quota.person_requests_per_second() == 0 || self.quota.person_burst() == 0 {
            return Err(ConfigError::Invalid(
                "quota.person_requests_per_second and quota.person_burst must be > 0".into(),
            ));
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

/// An `https://` URL with a host (the scheme case-insensitively, as URLs are).
pub fn is_https_url(s: &str) -> bool {
    s.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
        && s.len() > 8
}

/// A Norwegian organisation number: nine digits.
pub use gjeldsbro_domain::org::is_org_no;

/// An origin a partner's page is served from: a scheme and a host (and port),
/// nothing else, so it can go into a CSP header as is. Plain http only for the
/// loopback host (development and tests).
pub fn is_embed_origin(s: &str) -> bool {
    let (secure, rest) = if let Some(r) = s.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = s.strip_prefix("http://") {
        (false, r)
    } else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !host.starts_with('.')
        && !host.ends_with('.');
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    host_ok && port_ok && (secure || host == "localhost" || host == "127.0.0.1")
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
jwks_file = "/etc/gjeldsbro/maskinporten-jwks.json"
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
base_url = "https://lender-a.example"
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
    fn plain_http_lenders_only_in_dev_mode() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert!(!c.dev_mode, "off by default");
        assert_eq!(c.auth.max_token_lifetime_secs, 3600);
        let plain = EXAMPLE.replace("https://lender-a.example", "http://127.0.0.1:9001");
        let Err(ConfigError::Invalid(e)) = Config::parse(&plain) else {
            panic!("http:// accepted outside dev mode")
        };
        assert!(e.contains("https") && e.contains("dev_mode"), "{e}");
        for bad in [
            "HTTP://lender.example",
            "ftp://lender.example",
            "https://",
            "",
        ] {
            let text = EXAMPLE.replace("https://lender-a.example", bad);
            assert!(Config::parse(&text).is_err(), "{bad}");
        }
        assert!(
            Config::parse(&EXAMPLE.replace("https://lender-a.example", "HTTPS://lender.example"))
                .is_ok()
        );
        let dev = format!("dev_mode = true\n{plain}");
        assert!(Config::parse(&dev).unwrap().dev_mode);
    }

    #[test]
    fn the_shipped_configs_parse() {
        for file in ["config/example.toml", "config/demo.toml"] {
            let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(file);
            if let Err(e) = Config::load(&path) {
                panic!("{file}: {e}");
            }
        }
    }

    #[test]
    fn metrics_buckets_and_readiness() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert_eq!(c.readiness.max_snapshot_age_hours, 36);
        assert!(c.metrics.duration_buckets.is_none());
        let ok = format!("{EXAMPLE}\n[metrics]\nduration_buckets = [0.01, 0.1, 1.0]\n");
        assert_eq!(
            Config::parse(&ok).unwrap().metrics.duration_buckets,
            Some(vec![0.01, 0.1, 1.0])
        );
        // Each of these would make the prometheus crate refuse the histogram.
        for bad in ["[]", "[0.1, 0.1]", "[1.0, 0.5]", "[0.0, 1.0]", "[-1.0]"] {
            let text = format!("{EXAMPLE}\n[metrics]\nduration_buckets = {bad}\n");
            assert!(
                matches!(Config::parse(&text), Err(ConfigError::Invalid(_))),
                "{bad} refused"
            );
        }
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

    #[test]
    fn embed_origins_are_bare_origins() {
        for ok in [
            "https://nettbank.example",
            "https://nettbank.example:8443",
            "http://127.0.0.1:9000",
            "http://localhost",
        ] {
            assert!(is_embed_origin(ok), "{ok}");
        }
        for bad in [
            "http://nettbank.example",
            "https://nettbank.example/",
            "https://*.example",
            "https://a.example; script-src *",
            "nettbank.example",
            "https://",
            "https://a.example:99999",
        ] {
            assert!(!is_embed_origin(bad), "{bad}");
        }
        let with = EXAMPLE.replace(
            "requests_per_second = 100\n",
            "requests_per_second = 100\nembed_origins = [\"https://bank.example\"]\n",
        );
        assert_eq!(
            Config::parse(&with).unwrap().clients[0].embed_origins,
            vec!["https://bank.example"]
        );
        let bad = with.replace("https://bank.example", "https://bank.example/x");
        assert!(matches!(Config::parse(&bad), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn server_limits_and_the_ops_listener() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert_eq!(c.ops_listen, "127.0.0.1:9464".parse().unwrap());
        assert_eq!(c.server.header_read_timeout_secs, 10);
        assert_eq!(c.server.body_read_timeout_secs, 30);
        assert_eq!(c.server.idle_timeout_secs, 60);
        assert_eq!(c.server.max_connections, 8192);
        assert_eq!(c.server.http2_max_concurrent_streams, 100);
        assert_eq!(c.server.http2_max_header_list_bytes, 16384);
        let set =
            format!("{EXAMPLE}\n[server]\nheader_read_timeout_secs = 2\nmax_connections = 8\n");
        let c = Config::parse(&set).unwrap();
        assert_eq!(
            (c.server.header_read_timeout_secs, c.server.max_connections),
            (2, 8)
        );
        for bad in [
            "header_read_timeout_secs = 0",
            "body_read_timeout_secs = 0",
            "idle_timeout_secs = 0",
            "max_connections = 0",
            "http2_max_concurrent_streams = 0",
            "http2_max_header_list_bytes = 100",
        ] {
            let text = format!("{EXAMPLE}\n[server]\n{bad}\n");
            assert!(
                matches!(Config::parse(&text), Err(ConfigError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(Config::parse(&format!("{EXAMPLE}\n[server]\nnope = 1\n")).is_err());
        // Metrics never on the public port.
        let same = EXAMPLE.replace(
            "listen = \"127.0.0.1:8080\"",
            "listen = \"127.0.0.1:8080\"\nops_listen = \"127.0.0.1:8080\"",
        );
        assert!(matches!(Config::parse(&same), Err(ConfigError::Invalid(_))));
        let zero = EXAMPLE.replace(
            "listen = \"127.0.0.1:8080\"",
            "listen = \"127.0.0.1:0\"\nops_listen = \"127.0.0.1:0\"",
        );
        assert!(Config::parse(&zero).is_ok());
    }

    #[test]
    fn retention_and_population_register() {
        let c = Config::parse(EXAMPLE).unwrap();
        assert_eq!(c.retention.disclosure_days, 3650);
        assert!(c.population_register.is_none());
        let short = format!("{EXAMPLE}\n[retention]\ndisclosure_days = 30\n");
        assert!(matches!(
            Config::parse(&short),
            Err(ConfigError::Invalid(_))
        ));
        let synthetic = format!("{EXAMPLE}\n[population_register]\nkind = \"synthetic\"\n");
        assert!(matches!(
            Config::parse(&synthetic),
            Err(ConfigError::Invalid(_))
        ));
        let demo = synthetic.replace(
            "accept_synthetic_ids = false",
            "accept_synthetic_ids = true",
        );
        assert_eq!(
            Config::parse(&demo)
                .unwrap()
                .population_register
                .unwrap()
                .kind,
            PopulationRegisterKind::Synthetic
        );
        let unknown = format!("{EXAMPLE}\n[population_register]\nkind = \"folkeregisteret\"\n");
        assert!(Config::parse(&unknown).is_err());
    }

    #[test]
    fn retry_and_hedge_settings_are_checked() {
        let with = |extra: &str| {
            EXAMPLE.replace(
                "max_in_flight = 32\n",
                &format!("max_in_flight = 32\n{extra}\n"),
            )
        };
        let c = Config::parse(&with(
            "hedge = true\nhedge_percentile = 99\nmax_retries = 1",
        ))
        .unwrap();
        assert!(c.lenders[0].hedge);
        assert_eq!(c.lenders[0].hedge_percentile, Some(99.0));
        assert_eq!(c.lenders[0].max_retries, Some(1));
        assert!(
            !Config::parse(EXAMPLE).unwrap().lenders[0].hedge,
            "off by default"
        );
        for bad in [
            "hedge_percentile = 100",
            "hedge_percentile = 0",
            "retry_budget_percent = -1",
            "hedge_budget_percent = 5000",
        ] {
            assert!(
                matches!(Config::parse(&with(bad)), Err(ConfigError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
