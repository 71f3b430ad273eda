//! `POST /debt-information/v1/loans`: a lender's intraday push.

use std::sync::Arc;

use axum::Extension;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::app::AppState;
use crate::config::Role;
use crate::error::ApiError;
use crate::ingest::IngestError;
use crate::trace::TraceId;

pub const SCOPE_DELIVERY: &str = "debt.delivery";

pub async fn push(
    State(app): State<Arc<AppState>>,
    Extension(TraceId(trace_id)): Extension<TraceId>,
    Extension(caller): Extension<crate::auth::Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (_, org) = crate::authorize_org(
        caller,
        &[Role::Lender],
        SCOPE_DELIVERY,
        "deliveries come from lenders",
    )?;
    crate::require_json(&headers)?;
    let limit = app.config.max_push_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    // Parsed as it streams in, never more than `limit` bytes.
    let too_large = Arc::new(AtomicBool::new(false));
    let flag = too_large.clone();
    let mut read = 0usize;
    let stream = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        read += chunk.len();
        if read > limit {
            flag.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("body too large"));
        }
        Ok(chunk)
    });
    let reader = SyncIoBridge::new(StreamReader::new(stream));
    let result = app.ingestor.push(&org, reader).await;
    if too_large.load(Ordering::Relaxed) {
        return Err(ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    match result {
        Ok(report) => {
            tracing::info!(trace_id = %trace_id, lender = %report.lender_id, customers = report.customers, "push accepted");
            Ok(crate::json_response(&serde_json::json!({
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
