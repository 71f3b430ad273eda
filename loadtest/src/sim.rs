//! A lender that speaks API-DEBT-FI, with steerable latency and faults.
//!
//! One [`spawn`] call serves one lender on its own tokio task. Customer answers are
//! serialised once at start and kept in a `HashMap` keyed by customerID, with one
//! atomic call counter each, so the hot path is a lookup, a counter bump and a
//! cheap clone of the prepared body: fast enough for load tests at thousands of
//! requests per second. The `customerID` header is never logged.
//!
//! Besides the lender API the server has an admin API so another process can steer
//! it: `GET /__sim/stats`, `GET|PUT /__sim/behaviour`, `POST /__sim/reset`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gjeldsbro_adapter::CustomerLoans;
use rand::Rng;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::population::DatasetRef;
pub use crate::tls::SimTls;

/// How long a lender takes before it answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Always `ms` milliseconds.
    Fixed { ms: u64 },
    /// Log-normal around `median_ms`: `median_ms * exp(sigma * N(0, 1))`.
    LogNormal { median_ms: f64, sigma: f64 },
    /// `slow_ms` for a `slow_fraction` of calls, `fast_ms` for the rest.
    Bimodal {
        fast_ms: u64,
        slow_ms: u64,
        slow_fraction: f64,
    },
}

impl Default for Latency {
    fn default() -> Self {
        Latency::Fixed { ms: 0 }
    }
}

impl Latency {
    fn sample(&self) -> Duration {
        let ms = match *self {
            Latency::Fixed { ms } => ms as f64,
            Latency::LogNormal { median_ms, sigma } => {
                let mut rng = rand::rng();
                // Box-Muller: one standard normal from two uniforms.
                let u1: f64 = rng.random_range(f64::EPSILON..1.0);
                let u2: f64 = rng.random();
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                median_ms * (sigma * z).exp()
            }
            Latency::Bimodal {
                fast_ms,
                slow_ms,
                slow_fraction,
            } => {
                if rand::rng().random::<f64>() < slow_fraction {
                    slow_ms as f64
                } else {
                    fast_ms as f64
                }
            }
        };
        if ms.is_finite() && ms > 0.0 {
            // Cap at an hour so a silly sigma cannot overflow a Duration.
            Duration::from_secs_f64(ms.min(3_600_000.0) / 1000.0)
        } else {
            Duration::ZERO
        }
    }
}

/// A fault applied to customer calls (never to the dataset endpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Healthy.
    #[default]
    None,
    /// `500` with the error JSON.
    Status500,
    /// `429` with `Retry-After: 1` and the error JSON.
    Status429,
    /// `503` to every `every`-th customer call (the first, then every `every`-th
    /// after it), the rest answered normally: a lender briefly unable.
    Unavailable { every: u64 },
    /// `200` with a body that is not valid JSON.
    Garbage,
    /// `200` with another customer's answer (a different customerID).
    WrongCustomer,
    /// `200` with a valid JSON answer of about 3 MiB.
    Oversized,
    /// Never answers: holds the request until the client goes away (or shutdown).
    BlackHole,
    /// Answers correctly after `ms` milliseconds (on top of the latency).
    Slow { ms: u64 },
    /// `404` with the error JSON for a customer the lender does not hold,
    /// instead of `200` with empty `loans` (a lender breaking the standard).
    NotFoundForUnknown,
    /// The first loan of a known customer's answer carries a negative amount.
    NegativeAmount,
    /// Every loan of a known customer's answer lacks `coBorrower`.
    MissingCoBorrower,
}

/// Alternates between healthy (`up_ms`) and down (`down_ms`, every customer call
/// answered `500`), starting up at the moment the behaviour is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flapping {
    pub up_ms: u64,
    pub down_ms: u64,
}

/// How the simulated lender behaves. The default is healthy and instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Behaviour {
    pub latency: Latency,
    /// The fraction (0-1) of customer calls answered `500`.
    pub error_rate: f64,
    pub fault: Fault,
    pub flapping: Option<Flapping>,
    /// Customers per dataset page; `None` (or 0) serves the whole dataset on page 0.
    pub page_size: Option<usize>,
}

/// Counters of one simulated lender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    pub customer_calls: u64,
    pub dataset_calls: u64,
    pub in_flight: u64,
    pub max_in_flight: u64,
}

struct Customer {
    /// The prepared `{customerID, financialInstitutionID, loans}` answer.
    body: Bytes,
    calls: AtomicU64,
    /// The customer after this one (in dataset order), for `WrongCustomer`.
    next: Option<String>,
}

struct ActiveBehaviour {
    behaviour: Behaviour,
    since: Instant,
}

struct Shared {
    org_no: String,
    provider_id: String,
    dataset: Vec<CustomerLoans>,
    customers: HashMap<String, Customer>,
    /// Calls for customers the lender does not know (rare in real use).
    unknown_calls: Mutex<HashMap<String, u64>>,
    behaviour: RwLock<Arc<ActiveBehaviour>>,
    customer_calls: AtomicU64,
    dataset_calls: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    trace_seq: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl Shared {
    fn behaviour(&self) -> Arc<ActiveBehaviour> {
        self.behaviour
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_behaviour(&self, behaviour: Behaviour) {
        let active = Arc::new(ActiveBehaviour {
            behaviour,
            since: Instant::now(),
        });
        *self.behaviour.write().unwrap_or_else(|e| e.into_inner()) = active;
    }

    fn stats(&self) -> SimStats {
        SimStats {
            customer_calls: self.customer_calls.load(Ordering::Relaxed),
            dataset_calls: self.dataset_calls.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            max_in_flight: self.max_in_flight.load(Ordering::Relaxed),
        }
    }

    fn reset_stats(&self) {
        self.customer_calls.store(0, Ordering::Relaxed);
        self.dataset_calls.store(0, Ordering::Relaxed);
        self.max_in_flight
            .store(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
        for c in self.customers.values() {
            c.calls.store(0, Ordering::Relaxed);
        }
        self.unknown_calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn calls_for(&self, customer_id: &str) -> u64 {
        match self.customers.get(customer_id) {
            Some(c) => c.calls.load(Ordering::Relaxed),
            None => self
                .unknown_calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(customer_id)
                .copied()
                .unwrap_or(0),
        }
    }

    /// Sleeps for `d`, or until shutdown. Returns false on shutdown.
    async fn sleep(&self, d: Duration) -> bool {
        if d.is_zero() {
            return true;
        }
        let mut rx = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = rx.wait_for(|stop| *stop) => false,
        }
    }

    fn error(
        &self,
        status: StatusCode,
        error: &str,
        description: &str,
        headers: &HeaderMap,
    ) -> Response {
        let trace_id = headers
            .get("x-trace-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!(
                    "sim-{}-{:08x}",
                    self.org_no,
                    self.trace_seq.fetch_add(1, Ordering::Relaxed)
                )
            });
        let body = serde_json::json!({
            "error": error,
            "error_description": description,
            "timestamp": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
            "trace_id": trace_id,
        });
        (status, Json(body)).into_response()
    }
}

/// Decrements the in-flight gauge when a request ends, also when its future is
/// dropped because the client went away.
struct InFlight<'a>(&'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight(&shared.in_flight)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running simulated lender. Dropping the handle stops the server too (without
/// waiting); [`SimHandle::shutdown`] stops it gracefully and waits.
pub struct SimHandle {
    addr: SocketAddr,
    /// Serving HTTPS (see [`spawn_tls`]).
    tls: bool,
    /// TLS handshakes refused (no or an untrusted client certificate, say).
    failed_handshakes: Arc<AtomicU64>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT` (`https://` in TLS mode; the loopback address when
    /// bound to an unspecified one).
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }

    /// TLS handshakes the lender refused since start (always 0 without TLS).
    pub fn failed_handshakes(&self) -> u64 {
        self.failed_handshakes.load(Ordering::Relaxed)
    }

    pub fn org_no(&self) -> &str {
        &self.shared.org_no
    }

    pub fn behaviour(&self) -> Behaviour {
        self.shared.behaviour().behaviour.clone()
    }

    /// Replaces the behaviour; takes effect for the next request (flapping restarts "up").
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.shared.set_behaviour(behaviour);
    }

    pub fn stats(&self) -> SimStats {
        self.shared.stats()
    }

    /// How many customer calls asked for `customer_id` since start or the last reset.
    pub fn calls_for(&self, customer_id: &str) -> u64 {
        self.shared.calls_for(customer_id)
    }

    /// Zeroes the counters (`max_in_flight` restarts from the current in-flight count).
    pub fn reset_stats(&self) {
        self.shared.reset_stats();
    }

    /// Stops accepting, ends held (black-holed, sleeping) requests, lets the others
    /// finish, and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts a simulated lender for organisation `org_no` serving `customers` on
/// `listen` (port 0 picks a free port; see [`SimHandle::addr`]).
pub async fn spawn(
    listen: SocketAddr,
    org_no: String,
    customers: Vec<CustomerLoans>,
    behaviour: Behaviour,
) -> std::io::Result<SimHandle> {
    spawn_inner(listen, org_no, customers, behaviour, None).await
}

/// Like [`spawn`], serving HTTPS with `tls`; with `tls.client_ca_pem` every
/// caller must present a client certificate from those CAs (mTLS).
pub async fn spawn_tls(
    listen: SocketAddr,
    org_no: String,
    customers: Vec<CustomerLoans>,
    behaviour: Behaviour,
    tls: SimTls,
) -> std::io::Result<SimHandle> {
    spawn_inner(listen, org_no, customers, behaviour, Some(tls)).await
}

async fn spawn_inner(
    listen: SocketAddr,
    org_no: String,
    customers: Vec<CustomerLoans>,
    behaviour: Behaviour,
    tls: Option<SimTls>,
) -> std::io::Result<SimHandle> {
    // Built before binding: a bad certificate fails the spawn, not the server task.
    let tls_config = tls.as_ref().map(SimTls::server_config).transpose()?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);

    let mut index: HashMap<String, Customer> = HashMap::with_capacity(customers.len());
    for c in &customers {
        // A customer listed twice (a broken file) gets all its loans in one answer.
        let loans = match index.get(&c.customer_id) {
            Some(_) => customers
                .iter()
                .filter(|o| o.customer_id == c.customer_id)
                .flat_map(|o| o.loans.iter().cloned())
                .collect(),
            None => c.loans.clone(),
        };
        let answer = CustomerLoans {
            customer_id: c.customer_id.clone(),
            financial_institution_id: org_no.clone(),
            loans,
        };
        let body = Bytes::from(serde_json::to_vec(&answer).map_err(std::io::Error::other)?);
        index.insert(
            c.customer_id.clone(),
            Customer {
                body,
                calls: AtomicU64::new(0),
                next: None,
            },
        );
    }
    let mut order: Vec<&String> = index.keys().collect();
    order.sort();
    let nexts: Vec<(String, String)> = if order.len() > 1 {
        (0..order.len())
            .map(|i| (order[i].clone(), order[(i + 1) % order.len()].clone()))
            .collect()
    } else {
        Vec::new()
    };
    for (id, next) in nexts {
        if let Some(c) = index.get_mut(&id) {
            c.next = Some(next);
        }
    }

    let shared = Arc::new(Shared {
        provider_id: gjeldsbro_adapter::provider_id(&org_no),
        org_no,
        dataset: customers,
        customers: index,
        unknown_calls: Mutex::new(HashMap::new()),
        behaviour: RwLock::new(Arc::new(ActiveBehaviour {
            behaviour,
            since: Instant::now(),
        })),
        customer_calls: AtomicU64::new(0),
        dataset_calls: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        max_in_flight: AtomicU64::new(0),
        trace_seq: AtomicU64::new(0),
        shutdown: stop_rx.clone(),
    });

    let app = router(shared.clone());
    let mut signal = stop_rx;
    let failed_handshakes = Arc::new(AtomicU64::new(0));
    let is_tls = tls_config.is_some();
    let task = match tls_config {
        Some(config) => tokio::spawn(crate::tls::serve(
            listener,
            app,
            Arc::new(config),
            signal,
            failed_handshakes.clone(),
        )),
        None => tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = signal.wait_for(|stop| *stop).await;
            });
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "lender simulator stopped with an error");
            }
        }),
    };
    tracing::debug!(%addr, tls = is_tls, "lender simulator listening");

    Ok(SimHandle {
        addr,
        tls: is_tls,
        failed_handshakes,
        shared,
        stop,
        task: Some(task),
    })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/debt-information/v1/loans/{financial_institution_id}/customer",
            get(customer),
        )
        .route(
            "/debt-information/v1/loans/{financial_institution_id}",
            get(dataset),
        )
        .route("/__sim/stats", get(admin_stats))
        .route(
            "/__sim/behaviour",
            get(admin_get_behaviour).put(admin_put_behaviour),
        )
        .route("/__sim/reset", post(admin_reset))
        .with_state(shared)
}

static CUSTOMER_ID: HeaderName = HeaderName::from_static("customerid");

fn json_response(status: StatusCode, body: Bytes) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn customer(
    State(shared): State<Arc<Shared>>,
    Path(fi): Path<String>,
    headers: HeaderMap,
) -> Response {
    let seq = shared.customer_calls.fetch_add(1, Ordering::Relaxed);
    let _guard = InFlight::enter(&shared);
    if fi != shared.org_no {
        return shared.error(
            StatusCode::NOT_FOUND,
            "not_found",
            "unknown financialInstitutionID",
            &headers,
        );
    }
    let Some(id) = headers
        .get(&CUSTOMER_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() == 11 && v.bytes().all(|b| b.is_ascii_digit()))
    else {
        return shared.error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the customerID header must hold an 11-digit national id",
            &headers,
        );
    };
    let known = shared.customers.get(id);
    match known {
        Some(c) => {
            c.calls.fetch_add(1, Ordering::Relaxed);
        }
        None => {
            *shared
                .unknown_calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(id.to_owned())
                .or_insert(0) += 1;
        }
    }

    let active = shared.behaviour();
    let b = &active.behaviour;
    if !shared.sleep(b.latency.sample()).await {
        return shutting_down(&shared, &headers);
    }
    if let Some(f) = b.flapping {
        let period = f.up_ms.saturating_add(f.down_ms).max(1);
        let phase = (active.since.elapsed().as_millis() % u128::from(period)) as u64;
        if phase >= f.up_ms {
            return shared.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "simulated outage (flapping)",
                &headers,
            );
        }
    }
    if b.error_rate > 0.0 && rand::rng().random::<f64>() < b.error_rate {
        return shared.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "simulated error",
            &headers,
        );
    }
    match &b.fault {
        Fault::None => {}
        Fault::Status500 => {
            return shared.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "simulated error",
                &headers,
            );
        }
        Fault::Unavailable { every } if seq % (*every).max(1) == 0 => {
            return shared.error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "simulated brief unavailability",
                &headers,
            );
        }
        Fault::Unavailable { .. } => {}
        Fault::Status429 => {
            let mut resp = shared.error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "simulated rate limit",
                &headers,
            );
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            return resp;
        }
        Fault::Garbage => {
            return json_response(
                StatusCode::OK,
                Bytes::from_static(
                    b"{\"customerID\": \"\", \"loans\": [{\"type\": \"repaymentLo<html>",
                ),
            );
        }
        Fault::WrongCustomer => {
            let other = known
                .and_then(|c| c.next.as_deref())
                .and_then(|n| shared.customers.get(n));
            return match other {
                Some(o) => json_response(StatusCode::OK, o.body.clone()),
                None => json_response(StatusCode::OK, answer_for(&shared, &other_id(id), None)),
            };
        }
        Fault::Oversized => {
            return json_response(StatusCode::OK, oversized(&shared, id));
        }
        Fault::BlackHole => {
            // Held until the client hangs up (hyper then drops this future) or shutdown.
            let mut rx = shared.shutdown.clone();
            let _ = rx.wait_for(|stop| *stop).await;
            return shutting_down(&shared, &headers);
        }
        Fault::Slow { ms } => {
            if !shared.sleep(Duration::from_millis(*ms)).await {
                return shutting_down(&shared, &headers);
            }
        }
        Fault::NotFoundForUnknown if known.is_none() => {
            return shared.error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such customer",
                &headers,
            );
        }
        Fault::NegativeAmount | Fault::MissingCoBorrower => {
            if let Some(c) = known {
                return json_response(StatusCode::OK, broken_answer(&c.body, &b.fault));
            }
        }
        Fault::NotFoundForUnknown => {}
    }
    match known {
        Some(c) => json_response(StatusCode::OK, c.body.clone()),
        None => json_response(StatusCode::OK, answer_for(&shared, id, None)),
    }
}

fn shutting_down(shared: &Shared, headers: &HeaderMap) -> Response {
    shared.error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the simulator is shutting down",
        headers,
    )
}

/// The answer for `id` with `loans` (none when `None`).
fn answer_for(shared: &Shared, id: &str, loans: Option<Vec<gjeldsbro_adapter::Loan>>) -> Bytes {
    let answer = CustomerLoans {
        customer_id: id.to_owned(),
        financial_institution_id: shared.org_no.clone(),
        loans: loans.unwrap_or_default(),
    };
    Bytes::from(serde_json::to_vec(&answer).unwrap_or_default())
}

/// `body` (a prepared answer) with the rule `fault` names broken. Only the
/// lender-check tests use this, so re-parsing per call is fine.
fn broken_answer(body: &Bytes, fault: &Fault) -> Bytes {
    let Ok(mut answer) = serde_json::from_slice::<CustomerLoans>(body) else {
        return body.clone();
    };
    match fault {
        Fault::NegativeAmount => {
            if let Some(loan) = answer.loans.first_mut() {
                match loan.loan_type {
                    gjeldsbro_adapter::LoanType::RepaymentLoan => loan.balance = Some(-100),
                    _ => loan.interest_bearing_balance = Some(-100),
                }
            }
        }
        Fault::MissingCoBorrower => {
            for loan in &mut answer.loans {
                loan.co_borrower = None;
            }
        }
        _ => {}
    }
    serde_json::to_vec(&answer).map_or_else(|_| body.clone(), Bytes::from)
}

/// An 11-digit id that differs from `id` (it need not be a valid national id).
fn other_id(id: &str) -> String {
    let mut b = id.as_bytes().to_vec();
    b[10] = b'0' + (b[10] - b'0' + 1) % 10;
    String::from_utf8(b).unwrap_or_default()
}

const OVERSIZED_BYTES: usize = 3 * 1024 * 1024;

/// A valid answer for `id` of about 3 MiB: the same filler loan, many times.
fn oversized(shared: &Shared, id: &str) -> Bytes {
    let loan = r#"{"type":"repaymentLoan","accountID":"FILLER-0000000000","timestamp":"2026-01-15T05:00:00Z","coBorrower":0,"originalBalance":10000000,"balance":5000000,"terms":60,"nominalInterestRate":1490,"installmentCharges":5000,"installmentChargePeriod":"MONTHLY"}"#;
    let mut out = Vec::with_capacity(OVERSIZED_BYTES + 2 * loan.len());
    out.extend_from_slice(b"{\"customerID\":\"");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\",\"financialInstitutionID\":\"");
    out.extend_from_slice(shared.org_no.as_bytes());
    out.extend_from_slice(b"\",\"loans\":[");
    let mut first = true;
    while out.len() < OVERSIZED_BYTES {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(loan.as_bytes());
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

#[derive(Deserialize)]
struct PageParams {
    page: Option<String>,
}

async fn dataset(
    State(shared): State<Arc<Shared>>,
    Path(fi): Path<String>,
    Query(params): Query<PageParams>,
    headers: HeaderMap,
) -> Response {
    shared.dataset_calls.fetch_add(1, Ordering::Relaxed);
    let _guard = InFlight::enter(&shared);
    if fi != shared.org_no {
        return shared.error(
            StatusCode::NOT_FOUND,
            "not_found",
            "unknown financialInstitutionID",
            &headers,
        );
    }
    let page = match params.page.as_deref().map(str::parse::<usize>) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            return shared.error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "page must be a non-negative integer",
                &headers,
            );
        }
    };
    let active = shared.behaviour();
    if !shared.sleep(active.behaviour.latency.sample()).await {
        return shutting_down(&shared, &headers);
    }
    let all = shared.dataset.as_slice();
    let customers = match active.behaviour.page_size.filter(|&n| n > 0) {
        None if page == 0 => all,
        None => &[],
        Some(n) => {
            let start = page.saturating_mul(n).min(all.len());
            &all[start..start.saturating_add(n).min(all.len())]
        }
    };
    let body = DatasetRef {
        provider_id: shared.provider_id.clone(),
        customers,
    };
    match serde_json::to_vec(&body) {
        Ok(bytes) => json_response(StatusCode::OK, Bytes::from(bytes)),
        Err(_) => shared.error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "could not encode the dataset",
            &headers,
        ),
    }
}

async fn admin_stats(State(shared): State<Arc<Shared>>) -> Json<SimStats> {
    Json(shared.stats())
}

async fn admin_get_behaviour(State(shared): State<Arc<Shared>>) -> Json<Behaviour> {
    Json(shared.behaviour().behaviour.clone())
}

async fn admin_put_behaviour(
    State(shared): State<Arc<Shared>>,
    Json(behaviour): Json<Behaviour>,
) -> StatusCode {
    shared.set_behaviour(behaviour);
    StatusCode::NO_CONTENT
}

async fn admin_reset(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.reset_stats();
    StatusCode::NO_CONTENT
}
