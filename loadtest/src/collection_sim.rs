//! A debt-collection agency's cases API (`docs/debt-collection-api.md`), for
//! the debt-collection adapter's contract tests, the broker's integration tests
//! and the demo.
//!
//! `POST /v1/debtors/cases` with `{"nationalId"}` answers
//! `{agencyOrgNo, cases: [...]}`; it requires `Authorization: Bearer <api key>`
//! and an `X-Request-Id`, and counts every refusal so a test can assert the
//! headers at the server side.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

pub use crate::source_sim::SourceFault;
use crate::source_sim::{Counter, FaultSwitch, Server};

/// How the simulated agency is set up.
#[derive(Debug, Clone)]
pub struct CollectionSimConfig {
    pub org_no: String,
    pub api_key: String,
    /// Persons (11-digit ids) and their cases, as the API writes them.
    pub cases: HashMap<String, Vec<Value>>,
}

struct Shared {
    config: CollectionSimConfig,
    fault: FaultSwitch,
    calls: Counter,
    refused: Counter,
    last_request_id: Mutex<Option<String>>,
}

/// A running collection-agency simulator.
pub struct CollectionSim {
    server: Server,
    shared: Arc<Shared>,
}

impl CollectionSim {
    pub async fn spawn(
        listen: SocketAddr,
        config: CollectionSimConfig,
    ) -> std::io::Result<CollectionSim> {
        let shared = Arc::new(Shared {
            config,
            fault: FaultSwitch::default(),
            calls: Counter::default(),
            refused: Counter::default(),
            last_request_id: Mutex::new(None),
        });
        let app = Router::new()
            .route("/v1/debtors/cases", post(cases))
            .with_state(shared.clone());
        Ok(CollectionSim {
            server: Server::start(listen, app).await?,
            shared,
        })
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn set_fault(&self, f: SourceFault) {
        self.shared.fault.set(f);
    }

    /// Case queries received, whatever became of them.
    pub fn calls(&self) -> u64 {
        self.shared.calls.get()
    }

    /// Queries refused for their headers or body (400/401).
    pub fn refused(&self) -> u64 {
        self.shared.refused.get()
    }

    pub fn last_request_id(&self) -> Option<String> {
        self.shared
            .last_request_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn reset_stats(&self) {
        self.shared.calls.reset();
        self.shared.refused.reset();
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// A case as the API writes it (amounts in øre).
pub fn case(id: &str, status: &str, principal: i64, interest: i64, fees: i64) -> Value {
    json!({"caseId": id, "status": status, "principal": principal, "interest": interest,
           "fees": fees, "updatedAt": "2026-11-20T10:00:00Z"})
}

async fn cases(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    s.calls.bump();
    let refuse = |status: StatusCode, why: &'static str| {
        s.refused.bump();
        (status, Json(json!({"error": why}))).into_response()
    };
    let expected = format!("Bearer {}", s.config.api_key);
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return refuse(StatusCode::UNAUTHORIZED, "missing or unknown API key");
    }
    let Some(request_id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) else {
        return refuse(StatusCode::BAD_REQUEST, "X-Request-Id is required");
    };
    *s.last_request_id.lock().unwrap_or_else(|p| p.into_inner()) = Some(request_id.to_owned());
    let Ok(query) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "the body is not JSON");
    };
    let Some(nin) = query.get("nationalId").and_then(Value::as_str) else {
        return refuse(StatusCode::BAD_REQUEST, "nationalId is required");
    };
    if let Some(faulty) = s.fault.get().answer() {
        return faulty;
    }
    let cases = s.config.cases.get(nin).cloned().unwrap_or_default();
    Json(json!({"agencyOrgNo": s.config.org_no, "cases": cases})).into_response()
}
