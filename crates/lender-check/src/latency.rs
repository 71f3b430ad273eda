//! `latency-p99`: an open-loop run at the required rate. Each call is started
//! on its schedule whether or not earlier ones have answered, and its latency
//! is measured from when it was due, so a lender that stalls cannot slow the
//! checker down and hide its own queueing (coordinated omission). A call that
//! fails (non-200, timeout, transport) counts as slower than any limit.

use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::LenderClient;
use super::report::{Findings, LatencySummary, Rule};

/// The run's shape.
#[derive(Debug, Clone)]
pub struct LatencySettings {
    pub rate_per_second: u32,
    pub duration: Duration,
    pub p99_limit: Duration,
    /// Recorded for a failed call; at least the limit.
    pub failure_latency: Duration,
}

const MAX_TRACKED_US: u64 = 600_000_000;

/// Runs the load over `customers` (round robin); records the verdict.
pub async fn check(
    findings: &mut Findings,
    client: &LenderClient,
    customers: Arc<Vec<String>>,
    settings: &LatencySettings,
    trace_prefix: &str,
) -> Option<LatencySummary> {
    let rule = Rule::LatencyP99;
    if customers.is_empty() || settings.rate_per_second == 0 {
        findings.fail(rule, "no customer to ask for");
        return None;
    }
    let total =
        (settings.duration.as_secs_f64() * f64::from(settings.rate_per_second)).ceil() as u64;
    let interval = Duration::from_secs(1) / settings.rate_per_second;
    let failure_us = micros(
        settings
            .failure_latency
            .max(settings.p99_limit + Duration::from_millis(1)),
    );
    let start = Instant::now();
    let mut calls = JoinSet::new();
    for i in 0..total {
        let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let client = client.clone();
        let customers = customers.clone();
        let trace_id = format!("{trace_prefix}-{i}");
        calls.spawn(async move {
            let id = &customers[(i as usize) % customers.len()];
            let ok = matches!(client.customer(Some(id), &trace_id).await, Ok(a) if a.status == 200);
            (ok, micros(due.elapsed()))
        });
    }
    let mut histogram = match Histogram::<u64>::new_with_bounds(1, MAX_TRACKED_US, 3) {
        Ok(h) => h,
        Err(e) => {
            findings.fail(rule, format!("cannot set up the histogram: {e}"));
            return None;
        }
    };
    let mut failed = 0u64;
    while let Some(joined) = calls.join_next().await {
        let (ok, us) = joined.unwrap_or((false, failure_us));
        let us = if ok { us } else { failure_us.max(us) };
        if !ok {
            failed += 1;
        }
        histogram.saturating_record(us.clamp(1, MAX_TRACKED_US));
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let summary = LatencySummary {
        rate_per_second: settings.rate_per_second,
        seconds: settings.duration.as_secs_f64(),
        requests: total,
        failed,
        p50_ms: ms(histogram.value_at_quantile(0.50)),
        p90_ms: ms(histogram.value_at_quantile(0.90)),
        p99_ms: ms(histogram.value_at_quantile(0.99)),
        max_ms: ms(histogram.max()),
        limit_p99_ms: settings.p99_limit.as_millis() as u64,
    };
    let verdict = format!(
        "{total} calls at {}/s over {:.0} s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {failed} failed",
        settings.rate_per_second, summary.seconds, summary.p50_ms, summary.p99_ms, summary.max_ms
    );
    if histogram.value_at_quantile(0.99) > micros(settings.p99_limit) {
        findings.fail(
            rule,
            format!(
                "p99 {:.1} ms exceeds the required {} ms ({verdict})",
                summary.p99_ms, summary.limit_p99_ms
            ),
        );
    } else {
        findings.note(rule, verdict);
    }
    Some(summary)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
