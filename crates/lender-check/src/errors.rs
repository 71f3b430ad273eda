//! `error-format`: a lender's errors are the register's error JSON
//! `{error, error_description, timestamp, trace_id}` with a 4xx for bad input,
//! `trace_id` echoing the `X-Trace-ID` the broker sent (operators of both sides
//! find one call by it). Provoked with requests that carry no national id.

use serde_json::Value;

use super::client::{Answer, CallFailure};
use super::report::{Findings, Rule};

/// Judges the answer to the bad request `what` sent with `trace_id`.
pub fn check(
    findings: &mut Findings,
    what: &str,
    answer: Result<&Answer, &CallFailure>,
    trace_id: &str,
) {
    let rule = Rule::ErrorFormat;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            findings.fail(rule, format!("{what}: {e}"));
            return;
        }
    };
    if !(400..500).contains(&answer.status) {
        findings.fail(
            rule,
            format!("{what}: answered {}, expected a 4xx (400)", answer.status),
        );
        return;
    }
    if !answer
        .content_type
        .as_deref()
        .is_some_and(|c| c.starts_with("application/json"))
    {
        findings.fail(
            rule,
            format!("{what}: Content-Type is not application/json"),
        );
    }
    for problem in body_problems(&answer.body, trace_id) {
        findings.fail(rule, format!("{what}: {problem}"));
    }
    if !findings.failed(rule) {
        findings.note(
            rule,
            format!("{what}: {} with the error JSON", answer.status),
        );
    }
}

/// What is wrong with an error body (empty when nothing).
pub fn body_problems(body: &[u8], trace_id: &str) -> Vec<String> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return vec!["the body is not a JSON object".into()];
    };
    let mut out = Vec::new();
    let text = |key: &str| map.get(key).and_then(Value::as_str);
    if text("error").is_none_or(str::is_empty) {
        out.push("error is missing or empty".into());
    }
    if text("error_description").is_none() {
        out.push("error_description is missing".into());
    }
    match text("timestamp") {
        None => out.push("timestamp is missing".into()),
        Some(ts) => {
            if time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
                .is_err()
            {
                out.push("timestamp is not an RFC 3339 date-time".into());
            }
        }
    }
    match text("trace_id") {
        None => out.push("trace_id is missing".into()),
        Some(t) if t != trace_id => out.push("trace_id does not echo X-Trace-ID".into()),
        Some(_) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_json_is_checked_field_by_field() {
        let good = br#"{"error":"invalid_request","error_description":"no customerID",
            "timestamp":"2026-01-15T05:00:00Z","trace_id":"t-1"}"#;
        assert!(body_problems(good, "t-1").is_empty());
        assert_eq!(
            body_problems(good, "t-2"),
            vec!["trace_id does not echo X-Trace-ID"]
        );
        assert_eq!(body_problems(b"<html>", "t-1").len(), 1);
        let bare = br#"{"message":"bad"}"#;
        assert_eq!(body_problems(bare, "t-1").len(), 4);
    }
}
