//! Per-request correlation and the last word on error bodies.
//!
//! Every request gets a trace id: the caller's `X-Trace-ID` when it is a sane
//! token, else a new UUID. It is echoed in the response header and in every error
//! body. Error responses that carry no body of ours are given the error JSON.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use std::time::Instant;

use super::error::ApiError;
use crate::app::AppState;

pub const TRACE_HEADER: &str = "x-trace-id";

/// The request's trace id, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct TraceId(pub String);

/// Accepts a caller's trace id only if it is short and made of visible ASCII
/// without separators that would break a log line or a header.
fn acceptable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        // A trace id that looks like a national id is replaced, not echoed.
        && !id.split(|c: char| !c.is_ascii_digit()).any(|run| run.len() >= 11)
}

pub async fn middleware(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let trace_id = request
        .headers()
        .get(TRACE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    request.extensions_mut().insert(TraceId(trace_id.clone()));

    let mut response = next.run(request).await;

    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        response = error.render(&trace_id);
    } else if (response.status().is_client_error() || response.status().is_server_error())
        && !is_json(&response)
    {
        response = ApiError::for_status(response.status()).render(&trace_id);
    }
    if let Ok(v) = HeaderValue::from_str(&trace_id) {
        response.headers_mut().insert(TRACE_HEADER, v);
    }
    let status = response.status();
    state
        .metrics
        .http_requests
        .with_label_values(&[&route, status.as_str()])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[&route, status.as_str()])
        .observe(started.elapsed().as_secs_f64());
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(trace_id = %trace_id, route = %route, "internal server error");
    }
    response
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// The correlation passed on to lenders: our trace id, and the caller's W3C
/// `traceparent` when it is of a sane length (it is forwarded verbatim).
pub fn lender_context(
    headers: &axum::http::HeaderMap,
    trace_id: &str,
) -> crate::lookup::TraceContext {
    crate::lookup::TraceContext {
        traceparent: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 128)
            .map(Arc::from),
        trace_id: Arc::from(trace_id),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn trace_ids() {
        assert!(super::acceptable("4d2e5329-fe0a-4d20-b22b-300a24321247"));
        assert!(!super::acceptable(""));
        assert!(!super::acceptable("a b"));
        assert!(!super::acceptable("x\r\ny"));
        assert!(!super::acceptable(&"a".repeat(129)));
        assert!(!super::acceptable("01017012345"));
        assert!(!super::acceptable("ref-01017012345-x"));
    }
}
