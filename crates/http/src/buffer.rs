//! Reading a (small) request body whole before the request may take an
//! overload slot: a client that trickles its body ties up a connection until
//! the body deadline, never one of the slots that run lookups. Placed after
//! authentication, so only a caller with credentials gets this far.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The middleware; `State` is the most bytes read (larger: `413`).
pub async fn middleware(State(limit): State<usize>, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE).into_response();
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(e) => {
            // The body deadline (an outer layer) turns a late body into 408.
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                ApiError::for_status(StatusCode::PAYLOAD_TOO_LARGE).into_response()
            } else {
                ApiError::bad_request("the request body could not be read").into_response()
            };
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
