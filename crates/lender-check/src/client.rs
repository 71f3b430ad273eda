//! The checker's HTTP client of one lender: the same requests the broker sends
//! (`customerID` header, `X-Trace-ID`, `Accept: application/json`, the broker's
//! mTLS identity when given), but keeping the raw status and body so every rule
//! can be judged on exactly what the lender sent.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::LenderCheckError;
use gjeldsbro_adapter::tls_files::LenderTlsFiles;

/// Largest customer answer read (the broker's own default cap is smaller).
const MAX_CUSTOMER_BYTES: usize = 4 * 1024 * 1024;
/// Largest getalldata page read into memory.
const MAX_PAGE_BYTES: usize = 512 * 1024 * 1024;

/// What one call returned. `body` is empty for a failed transport.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub elapsed: Duration,
}

/// Why a call got no HTTP answer. The text never holds the URL or an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    Timeout,
    TooLarge,
    Transport(String),
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallFailure::Timeout => f.write_str("timed out"),
            CallFailure::TooLarge => f.write_str("the answer is larger than the checker reads"),
            CallFailure::Transport(m) => write!(f, "transport error: {m}"),
        }
    }
}

/// A lender under check.
#[derive(Clone)]
pub struct LenderClient {
    client: reqwest::Client,
    base_url: String,
    org_no: String,
    timeout: Duration,
}

impl LenderClient {
    pub fn new(
        base_url: &str,
        org_no: &str,
        tls: &LenderTlsFiles,
        timeout: Duration,
    ) -> Result<Self, LenderCheckError> {
        let builder =
            gjeldsbro_adapter::tls_files::configure(gjeldsbro_adapter::http::client_builder(), tls)
                .map_err(|e| LenderCheckError::Client(e.to_string()))?;
        let client = builder
            .connect_timeout(Duration::from_secs(5))
            // Enough idle connections for the open-loop run at 50/s and more.
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .user_agent(concat!(
                "gjeldsbro-lender-check/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| LenderCheckError::Client(gjeldsbro_adapter::scrub(&e.to_string())))?;
        Ok(LenderClient {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            org_no: org_no.to_owned(),
            timeout,
        })
    }

    pub fn org_no(&self) -> &str {
        &self.org_no
    }

    /// The per-customer lookup, as the broker's adapter sends it. `customer`
    /// `None` leaves the `customerID` header out (to provoke an error).
    pub async fn customer(
        &self,
        customer: Option<&str>,
        trace_id: &str,
    ) -> Result<Answer, CallFailure> {
        let url = format!(
            "{}/debt-information/v1/loans/{}/customer",
            self.base_url, self.org_no
        );
        let mut request = self.client.get(url);
        if let Some(id) = customer {
            request = request.header("customerID", id);
        }
        self.send(request, trace_id, MAX_CUSTOMER_BYTES, self.timeout)
            .await
    }

    /// One getalldata page; `page` is sent as given (a non-number provokes an error).
    pub async fn page(
        &self,
        page: &str,
        trace_id: &str,
        timeout: Duration,
    ) -> Result<Answer, CallFailure> {
        let url = format!(
            "{}/debt-information/v1/loans/{}?page={page}",
            self.base_url, self.org_no
        );
        self.send(self.client.get(url), trace_id, MAX_PAGE_BYTES, timeout)
            .await
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        trace_id: &str,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<Answer, CallFailure> {
        let started = Instant::now();
        let request = request
            .timeout(timeout)
            .header("X-Trace-ID", trace_id)
            .header(http::header::ACCEPT, "application/json");
        let mut response = request.send().await.map_err(classify)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if response
            .content_length()
            .is_some_and(|n| n > max_bytes as u64)
        {
            return Err(CallFailure::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > max_bytes {
                return Err(CallFailure::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            content_type,
            body: Bytes::from(body),
            elapsed: started.elapsed(),
        })
    }
}

fn classify(e: reqwest::Error) -> CallFailure {
    if e.is_timeout() {
        return CallFailure::Timeout;
    }
    // Without the URL: it names the lender's host, and the report is shared.
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    CallFailure::Transport(gjeldsbro_adapter::scrub(&text))
}
