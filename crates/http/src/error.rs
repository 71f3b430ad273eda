//! The registry's error JSON, `{error, error_description, timestamp, trace_id}`,
//! for every error the broker answers, including those axum produces itself
//! (unknown route, wrong method, body too large).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;

/// An error answer. The trace id and timestamp are filled in by the trace
/// middleware, which knows the request's `X-Trace-ID`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// The quota behind a `429`, for the `RateLimit-*` headers.
    pub quota: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        ApiError {
            status,
            error,
            description: description.into(),
            retry_after: None,
            quota: None,
        }
    }

    /// `429`: the organisation is over its quota.
    pub fn over_quota(limit: u32, retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!("over the quota of {limit} requests per second; retry later"),
        );
        e.retry_after = Some(retry_after_secs);
        e.quota = Some(limit);
        e
    }

    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", description)
    }

    pub fn unavailable(description: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            description,
        );
        e.retry_after = Some(1);
        e
    }

    /// The generic error for a status axum produced without a body of ours.
    pub fn for_status(status: StatusCode) -> Self {
        let (error, description) = match status {
            StatusCode::NOT_FOUND => ("not_found", "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => {
                ("method_not_allowed", "method not allowed on this resource")
            }
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ("unsupported_media_type", "send application/json")
            }
            StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
            s if s.is_client_error() => ("invalid_request", "the request could not be handled"),
            _ => ("server_error", "an unexpected server error occurred"),
        };
        Self::new(status, error, description)
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated(why) => {
                Self::new(StatusCode::UNAUTHORIZED, "invalid_token", why)
            }
            AuthError::Forbidden(why) => Self::new(StatusCode::FORBIDDEN, "forbidden", why),
        }
    }
}

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub error_description: &'a str,
    pub timestamp: String,
    pub trace_id: &'a str,
}

impl ApiError {
    /// Renders the final response with the request's trace id.
    pub fn render(&self, trace_id: &str) -> Response {
        let body = ErrorBody {
            error: self.error,
            error_description: &self.description,
            timestamp: crate::time::now_rfc3339(),
            trace_id,
        };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(limit) = self.quota {
            let h = response.headers_mut();
            h.insert("ratelimit-limit", HeaderValue::from(limit));
            h.insert("ratelimit-remaining", HeaderValue::from(0u32));
            h.insert(
                "ratelimit-reset",
                HeaderValue::from(self.retry_after.unwrap_or(1)),
            );
            if let Ok(policy) = HeaderValue::from_str(&format!("{limit};w=1")) {
                h.insert("ratelimit-policy", policy);
            }
        }
        response
    }
}

impl IntoResponse for ApiError {
    /// A placeholder carrying the error; the trace middleware renders it.
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}
