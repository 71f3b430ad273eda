//! The small interface every lender protocol implements. An adapter turns one
//! customer query into the lender's request and the lender's answer into canonical
//! loans; it knows nothing of the index, the store, other lenders or the caller.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::BoxFuture;

use crate::kind::DebtKind;
use crate::loan::Loan;
use crate::nin::NationalId;

/// What the broker asks a lender about one person.
#[derive(Debug, Clone, Copy)]
pub struct CustomerQuery<'a> {
    pub nin: NationalId,
    /// The caller's `X-Trace-ID`, passed on so a lender can correlate.
    pub trace_id: &'a str,
    /// A W3C `traceparent`, passed on when the broker has one.
    pub traceparent: Option<&'a str>,
}

/// Why a lender's answer could not be used. Texts never hold a national id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    #[error("timed out")]
    Timeout,
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("is rate limiting us (HTTP 429)")]
    Limited,
    #[error("answered something malformed: {0}")]
    Malformed(String),
    #[error("answer exceeds the size limit")]
    TooLarge,
    #[error("transport error: {0}")]
    Transport(String),
}

impl AdapterError {
    /// A short stable outcome name for metrics and logs.
    pub fn outcome(&self) -> &'static str {
        match self {
            AdapterError::Timeout => "timeout",
            AdapterError::Connect(_) | AdapterError::Transport(_) | AdapterError::Status(_) => {
                "error"
            }
            AdapterError::Limited => "limited",
            AdapterError::Malformed(_) | AdapterError::TooLarge => "malformed",
        }
    }
}

/// One lender protocol. Implementations are built once at start, hold their own
/// pooled HTTP client, and are shared by every lookup.
pub trait LenderAdapter: Send + Sync + 'static {
    /// The protocol name used in config (`adapter = "api-debt-fi"`).
    fn protocol(&self) -> &'static str;

    /// The kind of debt this lender serves. The broker calls a lender only for
    /// lookups whose purpose may see its kind, so an adapter for another source
    /// must say so here: the default is the register's unsecured debt.
    fn kind(&self) -> DebtKind {
        DebtKind::Unsecured
    }

    /// Fetches one person's loans. An empty list means the lender holds none.
    fn fetch_customer<'a>(
        &'a self,
        query: CustomerQuery<'a>,
    ) -> BoxFuture<'a, Result<Vec<Loan>, AdapterError>>;
}

/// What the broker's config says about one lender, handed to an adapter crate's
/// constructor. `settings` is the lender's own `[lenders.settings]` table (JSON
/// `null` when absent): each protocol reads its extra keys from it, so adding a
/// protocol needs no change to the broker's config types.
pub struct LenderSetup<'a> {
    pub id: &'a str,
    /// The lender's organisation number (financialInstitutionID).
    pub org_no: &'a str,
    pub base_url: &'a str,
    pub timeout: Duration,
    /// Largest accepted answer to one customer query, in bytes.
    pub max_answer_bytes: usize,
    pub settings: &'a serde_json::Value,
    /// Resolves a path from the config (key files) the way the broker does.
    pub resolve: &'a dyn Fn(&Path) -> PathBuf,
    /// Plain `http://` URLs in the settings are allowed: the broker's
    /// `dev_mode` (simulators on a dev machine). Otherwise every URL an
    /// adapter reads from its settings must pass [`LenderSetup::check_url`].
    pub allow_plain_http: bool,
}

impl LenderSetup<'_> {
    /// Refuses a URL from the settings (`key` names it in the error) that is
    /// not `https://`, unless plain HTTP is allowed: what goes there (a signed
    /// client assertion, a national id) must not cross the network in clear.
    pub fn check_url(&self, key: &str, url: &str) -> Result<(), SetupError> {
        let https = url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
            && url.len() > 8;
        let http = url
            .get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
            && url.len() > 7;
        if https || (http && self.allow_plain_http) {
            Ok(())
        } else {
            Err(SetupError::Settings(format!(
                "{key} must be an https:// URL (http:// only with dev_mode = true)"
            )))
        }
    }

    /// The settings table as the protocol's own type. Unknown keys are the
    /// protocol's business (use `deny_unknown_fields` to refuse them).
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, SetupError> {
        let value = if self.settings.is_null() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            self.settings.clone()
        };
        serde_json::from_value(value).map_err(|e| SetupError::Settings(e.to_string()))
    }
}

/// Why an adapter could not be built from its config. Texts name settings and
/// files, never secrets.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("settings: {0}")]
    Settings(String),
    #[error("cannot read {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("key: {0}")]
    Key(String),
    #[error("client: {0}")]
    Client(String),
}
