//! Operations endpoints: liveness, readiness, metrics. `/metrics` and the
//! detailed `/readyz` are served on `ops_listen` only; the public listener has
//! `/healthz` and a bare `/readyz` (status, no detail) for load balancers.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

pub async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

/// Delivery records read per scrape for the last-delivery gauges: enough for
/// every lender's latest unless one lender pushed this many since.
const RECENT_DELIVERIES: u32 = 1_000;

/// The longest `/readyz` and `/metrics` wait for the store.
const STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready when the store answers, the index has been loaded, and no lender's
/// dataset is older than `[readiness] max_snapshot_age_hours` (a lender with no
/// dataset does not count; see `ReadinessConfig`). The body names the stale
/// lenders, so an operator sees why without reading logs (on the operations
/// listener; see [`readyz_bare`]).
pub async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    readiness(&app).await
}

/// How long the public `/readyz` reuses its last status: anyone may call it,
/// so a flood costs at most one round of store queries a second.
const PUBLIC_READY_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// The public `/readyz`'s last status and when it was worked out. Callers wait
/// on the lock while one of them asks the store, then share its answer.
#[derive(Debug, Default)]
pub struct PublicReadiness(tokio::sync::Mutex<Option<(tokio::time::Instant, StatusCode)>>);

/// The public listener's `/readyz`: the same status, no detail (which lenders'
/// data is stale is not for clients), at most a second old.
pub async fn readyz_bare(State(app): State<Arc<AppState>>) -> Response {
    let mut last = app.public_readiness.0.lock().await;
    let status = match *last {
        Some((at, status)) if at.elapsed() < PUBLIC_READY_FOR => status,
        _ => {
            let status = readiness(&app).await.status();
            *last = Some((tokio::time::Instant::now(), status));
            status
        }
    };
    drop(last);
    let word = if status.is_success() {
        "ready"
    } else {
        "not_ready"
    };
    (status, Json(serde_json::json!({ "status": word }))).into_response()
}

async fn readiness(app: &AppState) -> Response {
    let store = tokio::time::timeout(STORE_WAIT, app.lookup.store.ping()).await;
    let store_ok = matches!(store, Ok(Ok(())));
    let index_ok = app.index_loaded.load(std::sync::atomic::Ordering::Acquire);
    let limit_hours = app.config.readiness.max_snapshot_age_hours;
    let mut stale = Vec::new();
    let mut snapshots_ok = true;
    if limit_hours > 0 && store_ok {
        match tokio::time::timeout(STORE_WAIT, app.lookup.store.datasets()).await {
            Ok(Ok(datasets)) => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let limit = i64::try_from(limit_hours.saturating_mul(3600)).unwrap_or(i64::MAX);
                app.metrics.set_datasets(&datasets, now);
                for d in &datasets {
                    let age = now - crate::time::unix_seconds_or_epoch(&d.loaded_at);
                    if age > limit {
                        stale.push(serde_json::json!({
                            "lender": d.lender_id,
                            "loaded_at": d.loaded_at,
                            "age_hours": age / 3600,
                        }));
                    }
                }
                snapshots_ok = stale.is_empty();
            }
            // The store answered a ping but not this: not ready either.
            _ => snapshots_ok = false,
        }
    }
    let ready = store_ok && index_ok && snapshots_ok;
    let body = Json(serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "store": store_ok,
        "index": index_ok,
        "snapshots": snapshots_ok,
        "max_snapshot_age_hours": limit_hours,
        "stale_snapshots": stale,
    }));
    let status = if ready {
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
    cert: super::ClientCert,
    headers: axum::http::HeaderMap,
    query: Result<axum::extract::Query<DeliveriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, super::ApiError> {
    let caller = super::authenticate(&app, &headers, &cert)?;
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
    // Ages are computed now, not at load time, so a stalled delivery shows as a
    // growing age. A slow store leaves the last values (the scrape still answers).
    if let Ok(Ok(datasets)) = tokio::time::timeout(STORE_WAIT, app.lookup.store.datasets()).await {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        app.metrics.set_datasets(&datasets, now);
    }
    if let Ok(Ok(deliveries)) =
        tokio::time::timeout(STORE_WAIT, app.lookup.store.deliveries(RECENT_DELIVERIES)).await
    {
        app.metrics.set_deliveries(&deliveries);
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        app.metrics.render(),
    )
        .into_response()
}
