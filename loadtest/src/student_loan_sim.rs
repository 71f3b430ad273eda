//! A Lånekassen-style saldo API and its Maskinporten-style token endpoint, for
//! the student-loan adapter's contract tests, the broker's integration tests and
//! the demo.
//!
//! `POST /token` takes a JWT grant (`grant_type` = jwt-bearer, `assertion`) and
//! checks the assertion like Maskinporten: RS256 signature against the client's
//! registered public key, the registered `kid`, `aud`, `iss` (client id),
//! `scope`, and a lifetime of at most 120 s. It answers `{access_token,
//! token_type, expires_in, scope}`.
//!
//! `GET /v1/saldo` checks the headers the saldo API expects: `ApiKey`,
//! `Authorization` holding a token this server issued and that has not expired,
//! *without* a `Bearer` prefix, `PSU_ID` (the person) and `X-Request-Id` (a
//! UUID). It answers the person's saldo, split by kontotype, with amounts as
//! decimal strings in kroner; a person without a loan gets `{"saldo": []}`.
//! Every failed check is counted and answered `400`/`401`, so a test can assert
//! the headers at the server side.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;

pub use crate::source_sim::SourceFault;
use crate::source_sim::{Counter, FaultSwitch, Server};

/// The JWT grant's `grant_type`.
pub const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// One person's saldo, in kroner as the API writes it (`"312345.67"`).
#[derive(Debug, Clone, Default)]
pub struct Saldo {
    pub laan: String,
    pub renter: String,
    pub gebyrer: String,
    pub omkostninger: String,
}

impl Saldo {
    /// A saldo from øre amounts.
    pub fn from_ore(laan: i64, renter: i64, gebyrer: i64, omkostninger: i64) -> Saldo {
        let k = |o: i64| format!("{}.{:02}", o / 100, o % 100);
        Saldo {
            laan: k(laan),
            renter: k(renter),
            gebyrer: k(gebyrer),
            omkostninger: k(omkostninger),
        }
    }
}

/// How the simulated lender and its token endpoint are set up.
#[derive(Debug, Clone)]
pub struct StudentLoanSimConfig {
    /// The client's registered public key (PEM) and its kid.
    pub client_public_key_pem: Vec<u8>,
    pub kid: String,
    pub client_id: String,
    /// The `aud` the assertion must name.
    pub audience: String,
    pub scope: String,
    pub api_key: String,
    /// `expires_in` of the tokens issued.
    pub token_lifetime: Duration,
    /// Persons (11-digit ids) and their saldo.
    pub saldos: HashMap<String, Saldo>,
}

/// What the server saw of the last saldo call that passed its checks.
#[derive(Debug, Clone, Default)]
pub struct SeenHeaders {
    pub api_key: String,
    pub authorization: String,
    pub psu_id: String,
    pub request_id: String,
}

#[derive(Default)]
struct Stats {
    token_requests: Counter,
    tokens_refused: Counter,
    saldo_calls: Counter,
    saldo_refused: Counter,
}

struct Shared {
    config: StudentLoanSimConfig,
    key: DecodingKey,
    fault: FaultSwitch,
    stats: Stats,
    issued: Mutex<HashMap<String, Instant>>,
    last_seen: Mutex<Option<SeenHeaders>>,
    request_ids: Mutex<Vec<String>>,
}

/// A running student-loan simulator.
pub struct StudentLoanSim {
    server: Server,
    shared: Arc<Shared>,
}

impl StudentLoanSim {
    pub async fn spawn(
        listen: SocketAddr,
        config: StudentLoanSimConfig,
    ) -> std::io::Result<StudentLoanSim> {
        let key = DecodingKey::from_rsa_pem(&config.client_public_key_pem)
            .map_err(|e| std::io::Error::other(format!("client public key: {e}")))?;
        let shared = Arc::new(Shared {
            config,
            key,
            fault: FaultSwitch::default(),
            stats: Stats::default(),
            issued: Mutex::new(HashMap::new()),
            last_seen: Mutex::new(None),
            request_ids: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/v1/saldo", get(saldo))
            .with_state(shared.clone());
        Ok(StudentLoanSim {
            server: Server::start(listen, app).await?,
            shared,
        })
    }

    /// The saldo API's base URL (also serves `/token`).
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    pub fn set_fault(&self, f: SourceFault) {
        self.shared.fault.set(f);
    }

    /// Tokens issued.
    pub fn token_requests(&self) -> u64 {
        self.shared.stats.token_requests.get()
    }

    /// Token requests refused (bad grant, signature, kid, claims).
    pub fn tokens_refused(&self) -> u64 {
        self.shared.stats.tokens_refused.get()
    }

    /// Saldo calls received, whatever became of them.
    pub fn saldo_calls(&self) -> u64 {
        self.shared.stats.saldo_calls.get()
    }

    /// Saldo calls refused for their headers (400/401).
    pub fn saldo_refused(&self) -> u64 {
        self.shared.stats.saldo_refused.get()
    }

    /// The headers of the last saldo call that passed every check.
    pub fn last_seen(&self) -> Option<SeenHeaders> {
        lock(&self.shared.last_seen).clone()
    }

    /// Every `X-Request-Id` seen, in order.
    pub fn request_ids(&self) -> Vec<String> {
        lock(&self.shared.request_ids).clone()
    }

    /// Forgets every issued token (as if the issuer's keys rotated).
    pub fn revoke_tokens(&self) {
        lock(&self.shared.issued).clear();
    }

    pub fn reset_stats(&self) {
        let s = &self.shared.stats;
        for c in [
            &s.token_requests,
            &s.tokens_refused,
            &s.saldo_calls,
            &s.saldo_refused,
        ] {
            c.reset();
        }
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Deserialize)]
struct Grant {
    grant_type: String,
    assertion: String,
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    scope: String,
    iat: u64,
    exp: u64,
    jti: String,
}

fn oauth_error(description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_grant", "error_description": description})),
    )
        .into_response()
}

async fn token(State(s): State<Arc<Shared>>, Form(grant): Form<Grant>) -> Response {
    match check_grant(&s, &grant) {
        Ok(()) => {}
        Err(why) => {
            s.stats.tokens_refused.bump();
            return oauth_error(why);
        }
    }
    s.stats.token_requests.bump();
    let token = format!("sim-{}", uuid_like());
    lock(&s.issued).insert(token.clone(), Instant::now() + s.config.token_lifetime);
    Json(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": s.config.token_lifetime.as_secs(),
        "scope": s.config.scope,
    }))
    .into_response()
}

fn check_grant(s: &Shared, grant: &Grant) -> Result<(), &'static str> {
    if grant.grant_type != JWT_GRANT {
        return Err("unsupported grant_type");
    }
    let header = jsonwebtoken::decode_header(&grant.assertion).map_err(|_| "not a JWT")?;
    if header.alg != Algorithm::RS256 {
        return Err("alg must be RS256");
    }
    if header.kid.as_deref() != Some(s.config.kid.as_str()) {
        return Err("unknown kid");
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&s.config.audience]);
    validation.set_required_spec_claims(&["exp", "aud", "iss"]);
    let data = jsonwebtoken::decode::<AssertionClaims>(&grant.assertion, &s.key, &validation)
        .map_err(|_| "invalid assertion")?;
    let c = data.claims;
    if c.iss != s.config.client_id {
        return Err("unknown client");
    }
    if c.scope != s.config.scope {
        return Err("scope not granted");
    }
    if c.exp <= c.iat || c.exp - c.iat > 120 {
        return Err("assertion lifetime must be at most 120 s");
    }
    if c.jti.is_empty() {
        return Err("jti is required");
    }
    Ok(())
}

fn uuid_like() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    format!("{:032x}", rng.random::<u128>())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

async fn saldo(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    s.stats.saldo_calls.bump();
    let refuse = |status: StatusCode, why: &'static str| {
        s.stats.saldo_refused.bump();
        (status, Json(json!({"feilmelding": why}))).into_response()
    };
    let Some(api_key) = header(&headers, "ApiKey") else {
        return refuse(StatusCode::UNAUTHORIZED, "ApiKey mangler");
    };
    if api_key != s.config.api_key {
        return refuse(StatusCode::UNAUTHORIZED, "ukjent ApiKey");
    }
    let Some(auth) = header(&headers, "Authorization") else {
        return refuse(StatusCode::UNAUTHORIZED, "Authorization mangler");
    };
    if auth.starts_with("Bearer ") {
        return refuse(StatusCode::UNAUTHORIZED, "token uten Bearer-prefiks");
    }
    let valid = lock(&s.issued)
        .get(auth)
        .is_some_and(|until| Instant::now() < *until);
    if !valid {
        return refuse(StatusCode::UNAUTHORIZED, "ugyldig eller utløpt token");
    }
    let Some(psu) = header(&headers, "PSU_ID") else {
        return refuse(StatusCode::BAD_REQUEST, "PSU_ID mangler");
    };
    if psu.len() != 11 || !psu.bytes().all(|b| b.is_ascii_digit()) {
        return refuse(StatusCode::BAD_REQUEST, "PSU_ID er ikke et fødselsnummer");
    }
    let Some(request_id) = header(&headers, "X-Request-Id") else {
        return refuse(StatusCode::BAD_REQUEST, "X-Request-Id mangler");
    };
    if !is_uuid(request_id) {
        return refuse(StatusCode::BAD_REQUEST, "X-Request-Id er ikke en UUID");
    }
    lock(&s.request_ids).push(request_id.to_owned());
    *lock(&s.last_seen) = Some(SeenHeaders {
        api_key: api_key.to_owned(),
        authorization: auth.to_owned(),
        psu_id: psu.to_owned(),
        request_id: request_id.to_owned(),
    });
    if let Some(faulty) = s.fault.get().answer() {
        return faulty;
    }
    let saldo = match s.config.saldos.get(psu) {
        Some(sl) => json!([
            {"kontotype": "LAAN", "belop": sl.laan},
            {"kontotype": "RENTER", "belop": sl.renter},
            {"kontotype": "GEBYRER", "belop": sl.gebyrer},
            {"kontotype": "OMKOSTNINGER", "belop": sl.omkostninger},
        ]),
        None => json!([]),
    };
    Json(json!({"saldoDato": "2026-11-24", "saldo": saldo})).into_response()
}
