//! `latency-p99`: an open-loop run at the required rate, on the shared
//! generator (`gjeldsbro-openloop`, as `loadgen`). Each call is started
//! on its schedule whether or not earlier ones have answered, and its latency
//! is measured from when it was due, so a lender that stalls cannot slow the
//! checker down and hide its own queueing (coordinated omission). A call that
//! fails (non-200, timeout, transport) counts as slower than any limit.

use std::sync::Arc;
use std::time::Duration;

use gjeldsbro_openloop::{self as openloop, Outcome, Schedule};

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

/// The generator's histograms stop at a minute; a failure is recorded there at most.
const MAX_TRACKED_US: u64 = 60_000_000;

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
    let schedule = Schedule {
        rate_per_s: f64::from(settings.rate_per_second),
        warmup: Duration::ZERO,
        duration: settings.duration,
    };
    let total = schedule.total();
    let failure_us = micros(
        settings
            .failure_latency
            .max(settings.p99_limit + Duration::from_millis(1)),
    );
    let client = client.clone();
    let trace_prefix = trace_prefix.to_owned();
    // No cap on calls waiting: every due call goes, as the broker would send it.
    let outstanding = usize::try_from(total).unwrap_or(usize::MAX).max(1);
    let run = openloop::run(schedule, std::time::Instant::now(), outstanding, move |i| {
        let client = client.clone();
        let customers = customers.clone();
        let trace_id = format!("{trace_prefix}-{i}");
        async move {
            let id = &customers[(i as usize) % customers.len()];
            match client.customer(Some(id), &trace_id).await {
                Ok(a) if a.status == 200 => Outcome::Ok,
                Ok(a) => Outcome::Error(format!("status_{}", a.status)),
                Err(_) => Outcome::Error("call".into()),
            }
        }
    })
    .await;
    // A failed call counts as slower than any limit.
    let mut histogram = run.latency.clone();
    let failed = run.error_count();
    if failed > 0 {
        histogram.saturating_record_n(failure_us.clamp(1, MAX_TRACKED_US), failed);
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
