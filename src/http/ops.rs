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

#[derive(serde::Deserialize)]
pub struct DeliveriesQuery {
    limit: Option<u32>,
}

/// `GET /admin/deliveries?limit=N` (role `operator`): the latest deliveries,
/// accepted and rejected, with the rule and position of a rejection.
pub async fn deliveries(
    State(app): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    query: Result<axum::extract::Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, super::ApiError> {
    let caller = super::authenticate(&app, &headers)?;
    if !caller.has_role(crate::config::Role::Operator) {
        return Err(super::ApiError::forbidden("operators only"));
    }
    let limit = query
        .map_err(|_| super::ApiError::bad_request("limit must be a whole number"))?
        .0
        .limit
        .unwrap_or(100)
        .clamp(1, 1000);
    match app.lookup.store.deliveries(limit).await {
        Ok(list) => Ok(super::json_response(
            &serde_json::json!({ "deliveries": list }),
        )),
        Err(e) => {
            tracing::error!(error = %e, "cannot read deliveries");
            Err(super::ApiError::unavailable("the store is unavailable"))
        }
    }
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
