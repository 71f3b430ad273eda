//! One client stack per configured lender, built once at start: its adapter (with
//! a pooled keep-alive client), its timeout and its concurrency cap. The lookup
//! path addresses lenders by [`LenderIdx`], their position in the config.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use gjeldsbro_adapter::{DebtKind, LenderAdapter, LenderSetup, SetupError};
use tokio::sync::Semaphore;

pub mod breaker;
pub mod calls;

use crate::config::{Config, LenderConfig};
use crate::index::LenderIdx;
use breaker::{Breaker, BreakerSettings};
use calls::{CallPolicy, Calls, HedgePolicy};

/// Default concurrent calls per lender when the config names none.
const DEFAULT_MAX_IN_FLIGHT: u32 = 32;
/// Default calls per second to a lender: Norsk Gjeldsinformasjon's published
/// requirement for lenders is to serve at least 50 req/s (p99 < 500 ms).
const DEFAULT_REQUESTS_PER_SECOND: u32 = 50;

/// A lender's call-rate limiter (one second's worth of burst).
pub type CallRate = governor::DefaultDirectRateLimiter;

fn call_rate(rps: u32) -> CallRate {
    let rps = std::num::NonZeroU32::new(rps.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    governor::RateLimiter::direct(governor::Quota::per_second(rps))
}

#[derive(Debug, thiserror::Error)]
pub enum LenderSetupError {
    #[error("lender {id:?}: unknown adapter {adapter:?} (known: {known})")]
    UnknownAdapter {
        id: String,
        adapter: String,
        known: String,
    },
    #[error("lender {id:?} ({adapter}): {source}")]
    Adapter {
        id: String,
        adapter: String,
        source: SetupError,
    },
    #[error("lender {id:?}: {message}")]
    Client { id: String, message: String },
    #[error("too many lenders (at most {max})")]
    TooMany { max: usize },
}

/// One lender as the lookup path sees it.
pub struct Lender {
    pub idx: LenderIdx,
    pub id: String,
    pub org_no: String,
    /// The creditorName shown where names may be shown.
    pub name: String,
    pub timeout: Duration,
    pub base_url: String,
    /// The lender's pooled HTTP client, shared by its adapter and its daily pull
    /// (one TLS setup per lender).
    pub client: reqwest::Client,
    /// The daily pull's time of day (Europe/Oslo), if scheduled.
    pub pull_at: Option<jiff::civil::Time>,
    pub adapter: Arc<dyn LenderAdapter>,
    /// The kind of debt the lender serves (its adapter's): decides which
    /// lookups may call it at all.
    pub kind: DebtKind,
    /// The adapter behind retries (and hedging, when configured).
    pub calls: Calls,
    /// Bounds calls in flight; a call that cannot get a permit at once goes to the
    /// snapshot instead of queueing behind a slow lender.
    pub in_flight: Arc<Semaphore>,
    /// The most calls per second the broker sends; beyond it, the snapshot answers.
    pub call_rate: Arc<CallRate>,
    /// Opens on repeated failures: calls then go straight to the snapshot.
    pub breaker: Breaker,
}

impl Lender {
    /// A lender around a ready adapter (tests, benches, in-process lenders): no
    /// base URL, no scheduled pull, the default in-flight cap.
    pub fn with_adapter(
        idx: LenderIdx,
        id: impl Into<String>,
        org_no: impl Into<String>,
        name: impl Into<String>,
        timeout: Duration,
        adapter: Arc<dyn LenderAdapter>,
    ) -> Lender {
        let in_flight = Arc::new(Semaphore::new(DEFAULT_MAX_IN_FLIGHT as usize));
        let call_rate = Arc::new(call_rate(DEFAULT_REQUESTS_PER_SECOND));
        Lender {
            idx,
            id: id.into(),
            org_no: org_no.into(),
            name: name.into(),
            timeout,
            base_url: String::new(),
            client: gjeldsbro_adapter::http::client_builder()
                .build()
                .unwrap_or_default(),
            pull_at: None,
            calls: Calls::new(
                adapter.clone(),
                in_flight.clone(),
                call_rate.clone(),
                timeout,
                CallPolicy::default(),
            ),
            kind: adapter.kind(),
            adapter,
            in_flight,
            call_rate,
            breaker: Breaker::new(BreakerSettings::default()),
        }
    }
}

/// Every configured lender.
pub struct Lenders {
    list: Vec<Lender>,
    by_id: HashMap<String, LenderIdx>,
    by_org: HashMap<String, LenderIdx>,
}

impl Lenders {
    /// Builds every lender's stack from the config.
    pub fn from_config(config: &Config) -> Result<Self, LenderSetupError> {
        if config.lenders.len() > usize::from(LenderIdx::MAX) {
            return Err(LenderSetupError::TooMany {
                max: usize::from(LenderIdx::MAX),
            });
        }
        let mut list = Vec::with_capacity(config.lenders.len());
        for (i, lc) in config.lenders.iter().enumerate() {
            let client = build_client(lc, &crate::tls::lender::for_lender(config, lc))?;
            let adapter = build_adapter(config, lc, client.clone())?;
            if lc.pull_at.is_some() && adapter.kind() != DebtKind::Unsecured {
                // The daily pull speaks API-DEBT-FI's getalldata; the other
                // sources deliver their person lists through ingest or push.
                return Err(LenderSetupError::Client {
                    id: lc.id.clone(),
                    message: format!(
                        "pull_at pulls an API-DEBT-FI dataset, which {} has not",
                        lc.adapter
                    ),
                });
            }
            let in_flight = Arc::new(Semaphore::new(
                lc.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT).max(1) as usize,
            ));
            let call_rate = Arc::new(call_rate(
                lc.requests_per_second
                    .unwrap_or(DEFAULT_REQUESTS_PER_SECOND),
            ));
            let timeout = Duration::from_millis(lc.timeout_ms);
            list.push(Lender {
                idx: i as LenderIdx,
                id: lc.id.clone(),
                org_no: lc.org_no.clone(),
                name: lc.name.clone(),
                timeout,
                base_url: lc.base_url.clone(),
                client,
                pull_at: lc
                    .pull_at
                    .as_deref()
                    .and_then(crate::ingest::schedule::parse_hhmm),
                calls: Calls::new(
                    adapter.clone(),
                    in_flight.clone(),
                    call_rate.clone(),
                    timeout,
                    call_policy(lc),
                ),
                kind: adapter.kind(),
                adapter,
                in_flight,
                call_rate,
                breaker: Breaker::new(breaker_settings(lc)),
            });
        }
        Ok(Self::from_list(list))
    }

    /// Builds the registry from ready lenders (tests, benches).
    pub fn from_list(list: Vec<Lender>) -> Self {
        let by_id = list.iter().map(|l| (l.id.clone(), l.idx)).collect();
        let by_org = list.iter().map(|l| (l.org_no.clone(), l.idx)).collect();
        Lenders {
            list,
            by_id,
            by_org,
        }
    }

    pub fn get(&self, idx: LenderIdx) -> Option<&Lender> {
        self.list.get(usize::from(idx))
    }

    pub fn idx_of(&self, id: &str) -> Option<LenderIdx> {
        self.by_id.get(id).copied()
    }

    pub fn idx_of_org(&self, org_no: &str) -> Option<LenderIdx> {
        self.by_org.get(org_no).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lender> {
        self.list.iter()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// The lender's breaker settings from its config.
fn breaker_settings(lc: &LenderConfig) -> BreakerSettings {
    let defaults = BreakerSettings::default();
    let backoff = lc
        .breaker_backoff_ms
        .map_or(defaults.backoff, Duration::from_millis);
    BreakerSettings {
        consecutive_failures: lc.breaker_failures.unwrap_or(defaults.consecutive_failures),
        backoff,
        max_backoff: defaults.max_backoff.max(backoff),
        ..defaults
    }
}

/// The lender's retry and hedging policy from its config (defaults elsewhere).
fn call_policy(lc: &LenderConfig) -> CallPolicy {
    let defaults = CallPolicy::default();
    let hedge_defaults = HedgePolicy::default();
    CallPolicy {
        max_retries: lc.max_retries.unwrap_or(defaults.max_retries),
        retry_budget: lc
            .retry_budget_percent
            .map_or(defaults.retry_budget, |p| p / 100.0),
        hedge: lc.hedge.then(|| HedgePolicy {
            quantile: lc
                .hedge_percentile
                .map_or(hedge_defaults.quantile, |p| p / 100.0),
            budget: lc
                .hedge_budget_percent
                .map_or(hedge_defaults.budget, |p| p / 100.0),
            ..hedge_defaults
        }),
    }
}

fn build_client(
    lc: &LenderConfig,
    tls: &crate::tls::lender::LenderTlsFiles,
) -> Result<reqwest::Client, LenderSetupError> {
    // No redirects: a lender's 3xx is its failure, never followed with the
    // person's id (see `gjeldsbro_adapter::http::client_builder`).
    let builder = gjeldsbro_adapter::http::client_builder();
    // The broker's client certificate and the lender's CAs (mTLS), if configured.
    let builder =
        crate::tls::lender::configure(builder, tls).map_err(|e| LenderSetupError::Client {
            id: lc.id.clone(),
            message: e.to_string(),
        })?;
    builder
        .connect_timeout(Duration::from_millis(lc.timeout_ms.clamp(100, 2_000)))
        .pool_max_idle_per_host(lc.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT) as usize)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .user_agent(concat!("gjeldsbro/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| LenderSetupError::Client {
            id: lc.id.clone(),
            message: gjeldsbro_adapter::scrub(&e.to_string()),
        })
}

/// An adapter crate's constructor: the lender's config section and its pooled
/// client (with the lender's TLS settings) in, a ready adapter out.
type Constructor =
    fn(&LenderSetup<'_>, reqwest::Client) -> Result<Arc<dyn LenderAdapter>, SetupError>;

/// Every protocol the broker speaks, by its config name. Adding a protocol is
/// one crate and one line here; nothing else in the broker changes.
const ADAPTERS: &[(&str, Constructor)] = &[
    (
        gjeldsbro_api_debt_fi::PROTOCOL,
        gjeldsbro_api_debt_fi::from_setup,
    ),
    (
        gjeldsbro_student_loans::PROTOCOL,
        gjeldsbro_student_loans::from_setup,
    ),
    (
        gjeldsbro_debt_collection::PROTOCOL,
        gjeldsbro_debt_collection::from_setup,
    ),
];

/// The protocol names `adapter = "..."` may take.
pub fn known_adapters() -> impl Iterator<Item = &'static str> {
    ADAPTERS.iter().map(|(name, _)| *name)
}

fn build_adapter(
    config: &Config,
    lc: &LenderConfig,
    client: reqwest::Client,
) -> Result<Arc<dyn LenderAdapter>, LenderSetupError> {
    let Some((_, construct)) = ADAPTERS.iter().find(|(name, _)| *name == lc.adapter) else {
        return Err(LenderSetupError::UnknownAdapter {
            id: lc.id.clone(),
            adapter: lc.adapter.clone(),
            known: known_adapters().collect::<Vec<_>>().join(", "),
        });
    };
    // TOML values convert to JSON losslessly for settings (strings, numbers,
    // booleans, tables); dates become strings.
    let settings = match &lc.settings {
        Some(table) => serde_json::to_value(table).map_err(|e| LenderSetupError::Adapter {
            id: lc.id.clone(),
            adapter: lc.adapter.clone(),
            source: SetupError::Settings(e.to_string()),
        })?,
        None => serde_json::Value::Null,
    };
    let resolve = |p: &std::path::Path| config.resolve(p);
    let setup = LenderSetup {
        id: &lc.id,
        org_no: &lc.org_no,
        base_url: &lc.base_url,
        timeout: Duration::from_millis(lc.timeout_ms),
        max_answer_bytes: config.max_lender_answer_bytes,
        settings: &settings,
        resolve: &resolve,
        allow_plain_http: config.dev_mode,
    };
    construct(&setup, client).map_err(|source| LenderSetupError::Adapter {
        id: lc.id.clone(),
        adapter: lc.adapter.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(lender: &str) -> Config {
        let text = format!(
            "listen = \"127.0.0.1:0\"\ndev_mode = true\n[store]\nurl = \"sqlite::memory:\"\n\
             [auth]\nissuer = \"i\"\naudience = \"a\"\njwks_file = \"config/dev-jwks.json\"\n\
             [[lenders]]\nid = \"x\"\norg_no = \"920000001\"\nname = \"X\"\n\
             base_url = \"http://127.0.0.1:1\"\n{lender}"
        );
        Config::parse(&text).expect("config")
    }

    fn error(lender: &str) -> String {
        match Lenders::from_config(&config(lender)) {
            Ok(_) => panic!("expected a setup error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_protocol_builds_from_its_settings() {
        let ok = [
            "adapter = \"api-debt-fi\"\n".to_owned(),
            "adapter = \"debt-collection\"\n[lenders.settings]\napi_key = \"k\"\n".to_owned(),
            format!(
                "adapter = \"student-loans\"\n[lenders.settings]\ntoken_url = \"http://t/token\"\n\
                 token_audience = \"a\"\nclient_id = \"c\"\nscope = \"s\"\n\
                 key_file = \"{}/config/dev-maskinporten-client-key.pem\"\nkid = \"k\"\napi_key = \"k\"\n",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../..")
            ),
        ];
        let kinds = [
            DebtKind::Unsecured,
            DebtKind::DebtCollection,
            DebtKind::StudentLoan,
        ];
        for (lender, kind) in ok.iter().zip(kinds) {
            let lenders = Lenders::from_config(&config(lender)).expect(lender);
            let l = lenders.get(0).expect("one lender");
            assert_eq!(l.kind, kind);
            assert_eq!(l.adapter.kind(), kind);
        }
    }

    #[test]
    fn token_endpoints_must_be_https_outside_dev_mode() {
        let text = |dev: bool, token_url: &str| {
            format!(
                "listen = \"127.0.0.1:0\"\ndev_mode = {dev}\n[store]\nurl = \"sqlite::memory:\"\n\
                 [auth]\nissuer = \"i\"\naudience = \"a\"\njwks_file = \"j\"\n\
                 [[lenders]]\nid = \"x\"\norg_no = \"920000001\"\nname = \"X\"\n\
                 base_url = \"https://saldo.example\"\nadapter = \"student-loans\"\n\
                 [lenders.settings]\ntoken_url = \"{token_url}\"\n\
                 token_audience = \"a\"\nclient_id = \"c\"\nscope = \"s\"\n\
                 key_file = \"{}/config/dev-maskinporten-client-key.pem\"\nkid = \"k\"\napi_key = \"k\"\n",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../..")
            )
        };
        let build =
            |dev, url| Lenders::from_config(&Config::parse(&text(dev, url)).expect("config"));
        match build(false, "http://t/token") {
            Ok(_) => panic!("http token endpoint accepted outside dev mode"),
            Err(e) => assert!(e.to_string().contains("token_url"), "{e}"),
        }
        assert!(build(false, "https://t/token").is_ok());
        assert!(build(true, "http://t/token").is_ok());
        assert!(build(true, "file:///etc/passwd").is_err());
    }

    #[test]
    fn unknown_protocols_and_bad_settings_fail_at_start() {
        let e = error("adapter = \"carrier-pigeon\"\n");
        assert!(
            e.contains("api-debt-fi, student-loans, debt-collection"),
            "{e}"
        );
        let e = error("adapter = \"debt-collection\"\n");
        assert!(
            e.contains("debt-collection") && e.contains("api_key"),
            "{e}"
        );
        let e = error("adapter = \"api-debt-fi\"\n[lenders.settings]\ncolour = \"blue\"\n");
        assert!(e.contains("colour"), "{e}");
        let e = error(
            "adapter = \"debt-collection\"\npull_at = \"06:30\"\n[lenders.settings]\napi_key = \"k\"\n",
        );
        assert!(e.contains("pull_at"), "{e}");
    }
}
