//! The small interface every lender protocol implements. An adapter turns one
//! customer query into the lender's request and the lender's answer into canonical
//! loans; it knows nothing of the index, the store, other lenders or the caller.

use futures::future::BoxFuture;

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

    /// Fetches one person's loans. An empty list means the lender holds none.
    fn fetch_customer<'a>(
        &'a self,
        query: CustomerQuery<'a>,
    ) -> BoxFuture<'a, Result<Vec<Loan>, AdapterError>>;
}
