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
        // A trace id that looks like a national id is replaced, not echoed,
        // also when separators split it (`010170-12345`, `0101701.2345`).
        && !has_id_like_run(id)
}

/// Whether `id`, read without its separators, holds a run of 11 digits.
fn has_id_like_run(id: &str) -> bool {
    let mut run = 0;
    for c in id.chars() {
        if c.is_ascii_digit() {
            run += 1;
            if run >= 11 {
                return true;
            }
        } else if !matches!(c, '-' | '_' | '.' | ':') {
            run = 0;
        }
    }
    false
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

/// The correlation passed on to lenders: our trace id, and a W3C
/// `traceparent`: the caller's when it is a valid one (rewritten from its
/// checked parts, so nothing unchecked reaches a lender), else a fresh trace
/// context of our own, as the specification says a participant does when it
/// cannot parse the one it got.
pub fn lender_context(
    headers: &axum::http::HeaderMap,
    trace_id: &str,
) -> crate::lookup::TraceContext {
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(valid_traceparent)
        .unwrap_or_else(fresh_traceparent);
    crate::lookup::TraceContext {
        traceparent: Some(Arc::from(traceparent)),
        trace_id: Arc::from(trace_id),
    }
}

/// A `traceparent` header as W3C Trace Context defines it
/// (<https://www.w3.org/TR/trace-context/#traceparent-header>), written back in
/// version 00; `None` when it is not valid: lowercase hex only, a version other
/// than `ff`, a trace-id and a parent-id not all zeros. Version 00 is exactly
/// 55 characters; a later version may be longer, its known fields read as
/// version 00's and the rest (behind a `-`) dropped, as the specification
/// tells a version 00 participant to do.
pub fn valid_traceparent(value: &str) -> Option<String> {
    let b = value.as_bytes();
    if b.len() < 55 || b.len() > 512 {
        return None;
    }
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let zeros = |s: &[u8]| s.iter().all(|&c| c == b'0');
    let (version, trace, parent, flags) = (&b[0..2], &b[3..35], &b[36..52], &b[53..55]);
    let dashes = b[2] == b'-' && b[35] == b'-' && b[52] == b'-';
    let ending = if version == b"00" {
        b.len() == 55
    } else {
        b.len() == 55 || b[55] == b'-'
    };
    let fields_ok = hex(version)
        && version != b"ff"
        && hex(trace)
        && !zeros(trace)
        && hex(parent)
        && !zeros(parent)
        && hex(flags);
    if !(dashes && ending && fields_ok) {
        return None;
    }
    // Only version 00's flags are known: of a later version's, keep `sampled`.
    let flags = if version == b"00" {
        value[53..55].to_owned()
    } else {
        let f = u8::from_str_radix(&value[53..55], 16).ok()?;
        format!("{:02x}", f & 0x01)
    };
    Some(format!("00-{}-{}-{flags}", &value[3..35], &value[36..52]))
}

/// A new trace context: random trace-id and parent-id (never all zeros),
/// not sampled.
fn fresh_traceparent() -> String {
    let trace = rand::random::<u128>().max(1);
    let parent = rand::random::<u64>().max(1);
    format!("00-{trace:032x}-{parent:016x}-00")
}

#[cfg(test)]
mod tests {
    use super::{fresh_traceparent, valid_traceparent};

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn valid_traceparents_pass_as_they_are() {
        assert_eq!(valid_traceparent(GOOD).as_deref(), Some(GOOD));
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(valid_traceparent(unsampled).as_deref(), Some(unsampled));
    }

    #[test]
    fn later_versions_are_read_as_version_00() {
        let v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03";
        assert_eq!(valid_traceparent(v1).as_deref(), Some(GOOD));
        let longer = format!("cc-{}-what-comes-later", &GOOD[3..]);
        assert_eq!(valid_traceparent(&longer).as_deref(), Some(GOOD));
        let glued = format!("cc-{}x", &GOOD[3..]);
        assert_eq!(valid_traceparent(&glued), None, "no dash after the flags");
    }

    #[test]
    fn anything_else_is_refused() {
        let upper = GOOD.to_uppercase();
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let zero_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        let ff = format!("ff-{}", &GOOD[3..]);
        let longer_00 = format!("{GOOD}-extra");
        let short_trace = "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01";
        let non_hex = "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01";
        let bad_flags = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x";
        let wrong_dash = "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let national_id =
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nx: 01017012345";
        for bad in [
            "",
            "garbage",
            "<script>alert(1)</script>",
            upper.as_str(),
            zero_trace,
            zero_parent,
            ff.as_str(),
            longer_00.as_str(),
            short_trace,
            non_hex,
            bad_flags,
            wrong_dash,
            national_id,
        ] {
            assert_eq!(valid_traceparent(bad), None, "{bad:?}");
        }
        assert_eq!(valid_traceparent(&"0".repeat(600)), None);
    }

    #[test]
    fn a_fresh_trace_context_is_itself_valid_and_new() {
        let a = fresh_traceparent();
        assert_eq!(valid_traceparent(&a).as_deref(), Some(a.as_str()));
        assert!(a.ends_with("-00"), "not sampled: {a}");
        assert_ne!(a, fresh_traceparent());
    }

    #[test]
    fn trace_ids() {
        assert!(super::acceptable("4d2e5329-fe0a-4d20-b22b-300a24321247"));
        assert!(!super::acceptable(""));
        assert!(!super::acceptable("a b"));
        assert!(!super::acceptable("x\r\ny"));
        assert!(!super::acceptable(&"a".repeat(129)));
        assert!(!super::acceptable("01017012345"));
        assert!(!super::acceptable("ref-01017012345-x"));
        assert!(!super::acceptable("010170-12345"));
        assert!(!super::acceptable("0101701.2345"));
        assert!(!super::acceptable("01:01:70:123:45"));
        assert!(super::acceptable("case-2026-12-05"));
    }
}
