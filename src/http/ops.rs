//! Operations endpoints: liveness, readiness, metrics.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

pub async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// Ready when the store answers and the index has been loaded.
pub async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let store =
        tokio::time::timeout(std::time::Duration::from_secs(2), app.lookup.store.ping()).await;
    let store_ok = matches!(store, Ok(Ok(())));
    let index_ok = app.index_loaded.load(std::sync::atomic::Ordering::Acquire);
    let body = Json(serde_json::json!({
        "status": if store_ok && index_ok { "ready" } else { "not_ready" },
        "store": store_ok,
        "index": index_ok,
    }));
    let status = if store_ok && index_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body).into_response()
}

pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    app.metrics
        .index_persons
        .set(app.lookup.index.load().persons() as i64);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        app.metrics.render(),
    )
        .into_response()
}
