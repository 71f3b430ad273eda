//! The two paths a run compares. Both take lookup `i` as the person at
//! `sequence[i]`, so they see the same persons in the same order.
//!
//! - [`Direct`]: the generator itself calls the person's lenders concurrently,
//!   exactly as the broker's API-DEBT-FI adapter does (`GET .../customer` with the
//!   `customerID` header, each call bounded by the lender timeout), and waits for
//!   all: the latency a perfect broker, adding nothing, would give.
//! - [`Broker`]: `POST /api/rest/v2/debt/search` as a financial institution.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use crate::openloop::Outcome;

/// A keep-alive HTTP/1.1 client with room for `pool` idle connections per host,
/// so an open-model burst reuses connections instead of opening new ones.
pub fn client(pool: usize, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(pool)
        .pool_idle_timeout(Duration::from_secs(90))
        .timeout(timeout)
        .build()
}

/// The error kind of a failed request (a label, never the URL or a national id).
fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "transport"
    }
}

/// Calls the lenders directly.
#[derive(Clone)]
pub struct Direct {
    pub client: reqwest::Client,
    /// The persons' national ids.
    pub persons: Arc<Vec<String>>,
    /// Per person, indices into `customer_urls` of the lenders holding their debt.
    pub holdings: Arc<Vec<Vec<usize>>>,
    /// Per lender, its `.../loans/{org}/customer` URL.
    pub customer_urls: Arc<Vec<String>>,
    pub sequence: Arc<Vec<u32>>,
    /// The broker's per-lender timeout, applied to each call.
    pub lender_timeout: Duration,
}

impl Direct {
    pub async fn send(&self, i: u64) -> Outcome {
        let Some(&p) = pick(&self.sequence, i) else {
            return Outcome::Error("no_persons".into());
        };
        let p = p as usize;
        let (Some(ssn), Some(lenders)) = (self.persons.get(p), self.holdings.get(p)) else {
            return Outcome::Error("no_persons".into());
        };
        let calls = lenders
            .iter()
            .filter_map(|&l| self.customer_urls.get(l))
            .map(|url| {
                let request = self
                    .client
                    .get(url)
                    .header("customerID", ssn)
                    .header("X-Trace-ID", "loadgen-direct")
                    .header(reqwest::header::ACCEPT, "application/json")
                    .timeout(self.lender_timeout);
                async move {
                    match request.send().await {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                        _ => false,
                    }
                }
            });
        let failed = futures::future::join_all(calls)
            .await
            .into_iter()
            .filter(|ok| !ok)
            .count();
        // A lender that failed within its timeout is what a broker answers from
        // its snapshot: a degraded answer, not a failed lookup.
        match failed {
            0 => Outcome::Ok,
            n => Outcome::Degraded(n as u32),
        }
    }
}

/// Searches through the broker.
#[derive(Clone)]
pub struct Broker {
    pub client: reqwest::Client,
    /// `http://host:port/api/rest/v2/debt/search`.
    pub url: String,
    pub token: Arc<str>,
    /// One prepared JSON body per person.
    pub bodies: Arc<Vec<Bytes>>,
    pub sequence: Arc<Vec<u32>>,
}

/// The part of a `debt_information` answer the generator reads.
#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "numberOfcreditorsMissing", default)]
    missing: u32,
}

/// The search body for `ssn`.
pub fn search_body(ssn: &str, reference: &str, max_time_to_wait_ms: u64) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "ssn": ssn,
            "referenceID": reference,
            "maxTimeToWait": max_time_to_wait_ms,
        })
        .to_string(),
    )
}

impl Broker {
    pub async fn send(&self, i: u64) -> Outcome {
        let Some(body) = pick(&self.sequence, i).and_then(|&p| self.bodies.get(p as usize)) else {
            return Outcome::Error("no_persons".into());
        };
        let response = self
            .client
            .post(&self.url)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return Outcome::Error(transport_kind(&e).into()),
        };
        let status = response.status();
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return Outcome::Error(transport_kind(&e).into()),
        };
        // Every looked-up person holds debt, so 204 is as wrong as a 5xx.
        if status != reqwest::StatusCode::OK {
            return Outcome::Error(format!("status_{}", status.as_u16()));
        }
        match serde_json::from_slice::<Answer>(&body) {
            Ok(a) if a.missing == 0 => Outcome::Ok,
            Ok(a) => Outcome::Degraded(a.missing),
            Err(_) => Outcome::Error("malformed_answer".into()),
        }
    }
}

fn pick(sequence: &[u32], i: u64) -> Option<&u32> {
    if sequence.is_empty() {
        return None;
    }
    sequence.get((i % sequence.len() as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_bodies_carry_the_api_fields() {
        let b = search_body("01018012345", "loadgen", 3000);
        let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(v["ssn"], "01018012345");
        assert_eq!(v["referenceID"], "loadgen");
        assert_eq!(v["maxTimeToWait"], 3000);
    }

    #[test]
    fn lookups_wrap_around_the_sequence() {
        let seq = vec![4, 5, 6];
        assert_eq!(pick(&seq, 0), Some(&4));
        assert_eq!(pick(&seq, 4), Some(&5));
        assert_eq!(pick(&[], 4), None);
    }
}
