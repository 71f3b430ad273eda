//! `POST /debt-information/v1/loans`: a lender's intraday push.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::error::ApiError;
use super::trace::TraceId;
use crate::app::AppState;
use crate::config::Role;
use crate::ingest::IngestError;

pub const SCOPE_DELIVERY: &str = "debt.delivery";

pub async fn push(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (_, org) = super::authorize_org(
        &app,
        &headers,
        &[Role::Lender],
        SCOPE_DELIVERY,
        "deliveries come from lenders",
    )?;
    super::require_json(&headers)?;
    match app.ingestor.push(&org, &body).await {
        Ok(report) => {
            tracing::info!(trace_id = %trace_id, lender = %report.lender_id, customers = report.customers, "push accepted");
            Ok(super::json_response(&serde_json::json!({
                "customers": report.customers,
                "loans": report.loans,
            })))
        }
        Err(IngestError::Forbidden(why)) => Err(ApiError::forbidden(why)),
        Err(IngestError::Rejected(r)) => Err(ApiError::bad_request(format!(
            "delivery rejected: rule {} broken at customer #{}: {}",
            r.rule, r.position, r.detail
        ))),
        Err(IngestError::UnknownLender(_)) => Err(ApiError::forbidden(
            "the organisation is not a configured lender",
        )),
        Err(e) => {
            tracing::error!(trace_id = %trace_id, error = %e, "push could not be applied");
            Err(ApiError::unavailable(
                "the delivery could not be stored; nothing was applied",
            ))
        }
    }
}
