//! A run's report: the numbers of both paths side by side, what the broker
//! added, its CPU and memory, and for a fault scenario the timeline around the
//! fault. Written as `<scenario>.json` (everything, including the per-window
//! timeline and the percentile curve the chart is drawn from) and `<scenario>.md`;
//! `summary.md` combines every report in the folder.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::openloop::{PathRun, WINDOW, new_histogram};
use crate::scenario::BrokerSpec;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot encode the report: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("cannot draw the chart {path}: {message}")]
    Chart { path: String, message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub description: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// The command line that made this report.
    pub command: String,
    /// How the two paths were run against each other.
    pub order: String,
    pub rate_per_s: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// Lenders per lookup when fixed; `None` for a mixed population.
    pub fan_out: Option<usize>,
    pub persons: usize,
    pub lenders: usize,
    pub lender_timeout_ms: u64,
    /// The lenders' behaviour (JSON, as the simulator takes it).
    pub lender_behaviour: String,
    pub events: Vec<String>,
    pub broker_settings: BrokerSpec,
    pub direct: PathStats,
    pub broker: PathStats,
    pub added: Added,
    /// Broker answers per second over direct answers per second.
    pub throughput_ratio: f64,
    pub broker_process: ProcessStats,
    pub broker_metrics: BTreeMap<String, f64>,
    /// `/proc/loadavg` (1, 5, 15 min) at start and end.
    pub load_average: (String, String),
    pub fault: Option<FaultReport>,
}

/// One path's numbers over the measured period. Latencies in µs, from the
/// requests' due times; only answered requests carry a latency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathStats {
    pub requests: u64,
    pub answered: u64,
    pub achieved_rate: f64,
    pub degraded: u64,
    pub not_live_answers: u64,
    pub errors: BTreeMap<String, u64>,
    pub error_total: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
    pub send_lag_p99_us: u64,
    pub send_lag_max_us: u64,
    /// (quantile, latency µs), from p0 to p99.99 and the max.
    pub percentile_curve: Vec<(f64, u64)>,
    pub windows: Vec<WindowStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    /// Start of the window, seconds into the measured period.
    pub t_s: f64,
    pub answered: u64,
    pub errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Broker minus direct, in µs (negative when the broker was faster, e.g. from
/// its cache).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Added {
    pub p50_us: i64,
    pub p99_us: i64,
    pub p999_us: i64,
}

/// The broker process over the measured period of the broker path.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ProcessStats {
    /// User + system CPU seconds (from /proc/<pid>/stat).
    pub cpu_seconds: f64,
    /// CPU seconds per wall second (1.0 = one core busy).
    pub cpu_per_second: f64,
    pub cpu_us_per_request: f64,
    /// VmHWM of the broker over its whole life, in KiB.
    pub peak_rss_kib: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultReport {
    pub lender: usize,
    pub direct: FaultTimeline,
    pub broker: FaultTimeline,
}

/// What one path did around the scenario's first event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultTimeline {
    pub fault_at_s: f64,
    /// p99 of the answers due before the fault.
    pub baseline_p99_us: u64,
    /// A window counts as back to baseline when its p99 is at most this
    /// (1.5 × baseline p99 + 1 ms, so noise does not hide a recovery).
    pub tolerance_us: u64,
    /// When the broker reported the lender's circuit open (scraped every 50 ms),
    /// seconds into the measured period; `None` on the direct path or if it
    /// never opened.
    pub breaker_opened_at_s: Option<f64>,
    /// p99 of answers due from the fault until the breaker opened (or the end).
    pub p99_before_breaker_us: u64,
    /// p99 of answers due after the breaker opened.
    pub p99_after_breaker_us: Option<u64>,
    /// p99 of every answer due after the fault.
    pub p99_after_fault_us: u64,
    /// Start of the first window after the breaker opened (after the fault when
    /// it never did) whose p99 is within the tolerance.
    pub recovered_at_s: Option<f64>,
    /// `recovered_at_s` minus the breaker opening (or the fault), in ms.
    pub recovery_ms: Option<f64>,
    /// Windows after the recovery still above the tolerance (breaker probes).
    pub windows_over_tolerance_after_recovery: usize,
}

fn quantile(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

/// The percentile curve drawn in the chart: quantiles 1 − 10^−x for x in
/// 0, 0.05, …, 4 (p0 to p99.99), then the max.
fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<(f64, u64)> = (0..=80)
        .map(|k| {
            let q = 1.0 - 10f64.powf(-(k as f64) * 0.05);
            (q, h.value_at_quantile(q))
        })
        .collect();
    out.push((1.0, h.max()));
    out
}

impl PathStats {
    pub fn from_run(run: &PathRun, duration_s: f64) -> PathStats {
        let h = &run.latency;
        PathStats {
            requests: run.scheduled,
            answered: run.answered,
            achieved_rate: if duration_s > 0.0 {
                run.answered as f64 / duration_s
            } else {
                0.0
            },
            degraded: run.degraded,
            not_live_answers: run.not_live_answers,
            errors: run.errors.clone(),
            error_total: run.error_count(),
            p50_us: quantile(h, 0.5),
            p90_us: quantile(h, 0.9),
            p99_us: quantile(h, 0.99),
            p999_us: quantile(h, 0.999),
            max_us: h.max(),
            mean_us: if h.is_empty() { 0.0 } else { h.mean() },
            send_lag_p99_us: quantile(&run.send_lag, 0.99),
            send_lag_max_us: run.send_lag.max(),
            percentile_curve: percentile_curve(h),
            windows: run
                .windows
                .iter()
                .enumerate()
                .map(|(i, (h, errors))| WindowStats {
                    // Whole milliseconds divided once: prints short and reads back exactly.
                    t_s: (i as u128 * WINDOW.as_millis()) as f64 / 1000.0,
                    answered: h.len(),
                    errors: *errors,
                    p50_us: quantile(h, 0.5),
                    p99_us: quantile(h, 0.99),
                    max_us: h.max(),
                })
                .collect(),
        }
    }
}

impl Added {
    pub fn between(direct: &PathStats, broker: &PathStats) -> Added {
        let d = |b: u64, d: u64| {
            i64::try_from(b).unwrap_or(i64::MAX) - i64::try_from(d).unwrap_or(i64::MAX)
        };
        Added {
            p50_us: d(broker.p50_us, direct.p50_us),
            p99_us: d(broker.p99_us, direct.p99_us),
            p999_us: d(broker.p999_us, direct.p999_us),
        }
    }
}

/// The fault timeline of one path from its windows.
pub fn fault_timeline(
    windows: &[(Histogram<u64>, u64)],
    fault_at_s: f64,
    breaker_opened_at_s: Option<f64>,
) -> FaultTimeline {
    let w = WINDOW.as_secs_f64();
    let start = |i: usize| i as f64 * w;
    // A window belongs to a phase by its start time: windows straddling the
    // fault count as "after".
    let merged = |range: &mut dyn Iterator<Item = &(Histogram<u64>, u64)>| {
        let mut h = new_histogram();
        for (wh, _) in range {
            let _ = h.add(wh);
        }
        h
    };
    let fault_window = (fault_at_s / w).floor() as usize;
    let breaker_window = breaker_opened_at_s.map(|t| (t / w).ceil() as usize);
    let baseline = merged(&mut windows.iter().take(fault_window));
    let baseline_p99 = quantile(&baseline, 0.99);
    let tolerance = baseline_p99 + baseline_p99 / 2 + 1000;
    let after_fault = merged(&mut windows.iter().skip(fault_window));
    let until = breaker_window.unwrap_or(windows.len()).max(fault_window);
    let before_breaker = merged(&mut windows.iter().take(until).skip(fault_window));
    let after_breaker = breaker_window.map(|b| merged(&mut windows.iter().skip(b)));
    let from = breaker_window.unwrap_or(fault_window + 1);
    let recovered = windows
        .iter()
        .enumerate()
        .skip(from)
        .find(|(_, (h, _))| !h.is_empty() && quantile(h, 0.99) <= tolerance)
        .map(|(i, _)| i);
    let over_after = recovered
        .map(|r| {
            windows
                .iter()
                .skip(r)
                .filter(|(h, _)| quantile(h, 0.99) > tolerance)
                .count()
        })
        .unwrap_or(0);
    let reference = breaker_opened_at_s.unwrap_or(fault_at_s);
    FaultTimeline {
        fault_at_s,
        baseline_p99_us: baseline_p99,
        tolerance_us: tolerance,
        breaker_opened_at_s,
        p99_before_breaker_us: quantile(&before_breaker, 0.99),
        p99_after_breaker_us: after_breaker
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| quantile(h, 0.99)),
        p99_after_fault_us: quantile(&after_fault, 0.99),
        recovered_at_s: recovered.map(start),
        recovery_ms: recovered.map(|r| ((start(r) - reference) * 1000.0).max(0.0)),
        windows_over_tolerance_after_recovery: over_after,
    }
}

/// `1234` µs as `1.23 ms`, `456` as `456 µs`.
pub fn fmt_us(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2} s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.2} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

fn fmt_signed_us(us: i64) -> String {
    if us < 0 {
        format!("−{}", fmt_us(us.unsigned_abs()))
    } else {
        format!("+{}", fmt_us(us.unsigned_abs()))
    }
}

fn fmt_errors(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "0".into();
    }
    let total: u64 = errors.values().sum();
    let kinds: Vec<String> = errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    format!("{total} ({})", kinds.join(", "))
}

impl Report {
    /// The markdown report.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Load test: {}\n", self.scenario);
        if !self.description.is_empty() {
            let _ = writeln!(s, "{}\n", self.description);
        }
        let _ = writeln!(s, "- started: {}", self.started_at);
        let _ = writeln!(s, "- command: `{}`", self.command);
        let _ = writeln!(
            s,
            "- load: {} lookups/s (open model, latency from the scheduled send time), {} s warm-up, {} s measured; {}",
            self.rate_per_s, self.warmup_s, self.duration_s, self.order
        );
        let fan_out = self.fan_out.map_or_else(
            || "mixed (the demo population)".to_owned(),
            |n| n.to_string(),
        );
        let _ = writeln!(
            s,
            "- lenders: {} simulated, fan-out {fan_out}, {} persons looked up, lender timeout {} ms, behaviour `{}`",
            self.lenders, self.persons, self.lender_timeout_ms, self.lender_behaviour
        );
        for e in &self.events {
            let _ = writeln!(s, "- event: {e}");
        }
        let _ = writeln!(
            s,
            "- broker: cache TTL {} ms, hedge {}, breaker failures {}, breaker backoff {}",
            self.broker_settings.cache_ttl_ms,
            if self.broker_settings.hedge {
                format!(
                    "on (p{})",
                    self.broker_settings.hedge_percentile.unwrap_or(95.0)
                )
            } else {
                "off".into()
            },
            self.broker_settings
                .breaker_failures
                .map_or("default".into(), |n| n.to_string()),
            self.broker_settings
                .breaker_backoff_ms
                .map_or("default".into(), |n| format!("{n} ms")),
        );
        let _ = writeln!(
            s,
            "- load average (1, 5, 15 min): {} at start, {} at end\n",
            self.load_average.0, self.load_average.1
        );
        let _ = writeln!(
            s,
            "| path | requests | answered/s | p50 | p90 | p99 | p99.9 | max | errors | degraded | send lag p99 |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        for (name, p) in [("direct", &self.direct), ("broker", &self.broker)] {
            let _ = writeln!(
                s,
                "| {name} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
                p.requests,
                p.achieved_rate,
                fmt_us(p.p50_us),
                fmt_us(p.p90_us),
                fmt_us(p.p99_us),
                fmt_us(p.p999_us),
                fmt_us(p.max_us),
                fmt_errors(&p.errors),
                p.degraded,
                fmt_us(p.send_lag_p99_us),
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Added by the broker: p50 {}, p99 {}, p99.9 {}; throughput ratio {:.3}.\n",
            fmt_signed_us(self.added.p50_us),
            fmt_signed_us(self.added.p99_us),
            fmt_signed_us(self.added.p999_us),
            self.throughput_ratio
        );
        let bp = &self.broker_process;
        let _ = writeln!(
            s,
            "Broker process: {:.2} CPU s over the measured period ({:.2} cores), {:.0} µs CPU per lookup, peak RSS {:.1} MiB.\n",
            bp.cpu_seconds,
            bp.cpu_per_second,
            bp.cpu_us_per_request,
            bp.peak_rss_kib as f64 / 1024.0
        );
        if !self.broker_metrics.is_empty() {
            let parts: Vec<String> = self
                .broker_metrics
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                s,
                "Broker metrics over the measured period: {}.\n",
                parts.join(", ")
            );
        }
        if let Some(f) = &self.fault {
            let _ = writeln!(s, "## Fault timeline (lender-{})\n", f.lender);
            let _ = writeln!(
                s,
                "| path | fault at | baseline p99 | breaker open at | p99 fault→breaker | p99 after breaker | p99 after fault | back to baseline at | after breaker | windows over tolerance after |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
            for (name, t) in [("direct", &f.direct), ("broker", &f.broker)] {
                let opt_s = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.2} s"));
                let _ = writeln!(
                    s,
                    "| {name} | {:.2} s | {} | {} | {} | {} | {} | {} | {} | {} |",
                    t.fault_at_s,
                    fmt_us(t.baseline_p99_us),
                    opt_s(t.breaker_opened_at_s),
                    fmt_us(t.p99_before_breaker_us),
                    t.p99_after_breaker_us.map_or("–".into(), fmt_us),
                    fmt_us(t.p99_after_fault_us),
                    opt_s(t.recovered_at_s),
                    t.recovery_ms.map_or("–".into(), |v| format!("{v:.0} ms")),
                    t.windows_over_tolerance_after_recovery,
                );
            }
            let _ = writeln!(
                s,
                "\nBack to baseline: the first 100 ms window whose p99 is within 1.5 × the pre-fault p99 + 1 ms.\n"
            );
        }
        let _ = writeln!(
            s,
            "Latencies count from each request's scheduled time. Errors are failed lookups (non-2xx, transport errors, timeouts); \"degraded\" answers had lender answers that were not live (direct: failed lender calls a broker would answer from its snapshot; broker: `numberOfcreditorsMissing`; snapshot fallbacks are in the broker metrics). Chart: `{}.svg`.",
            self.scenario
        );
        s
    }

    /// Writes `<scenario>.json` and `<scenario>.md` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
        let json = dir.join(format!("{}.json", self.scenario));
        write(&json, serde_json::to_vec_pretty(self)?)?;
        let md = dir.join(format!("{}.md", self.scenario));
        write(&md, self.to_markdown().into_bytes())?;
        Ok(vec![json, md])
    }
}

fn write(path: &Path, bytes: Vec<u8>) -> Result<(), ReportError> {
    std::fs::write(path, bytes).map_err(|source| ReportError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// `summary.md`: one row per report JSON in `dir` (other JSON files are skipped).
pub fn write_summary(dir: &Path) -> Result<PathBuf, ReportError> {
    let mut reports: Vec<Report> = std::fs::read_dir(dir)
        .map_err(|source| ReportError::Write {
            path: dir.display().to_string(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| std::fs::read(&p).ok())
        .filter_map(|b| serde_json::from_slice::<Report>(&b).ok())
        .collect();
    reports.sort_by(|a, b| a.scenario.cmp(&b.scenario));
    let path = dir.join("summary.md");
    write(&path, summary_markdown(&reports).into_bytes())?;
    Ok(path)
}

pub fn summary_markdown(reports: &[Report]) -> String {
    let mut s = String::from(
        "# Load-test summary\n\nOne row per scenario report in this folder (each from its own run; see its `.md`).\n\n\
         | scenario | run at | rate/s | fan-out | direct p50 / p99 | broker p50 / p99 / p99.9 | added p50 / p99 / p99.9 | throughput ratio | errors (direct / broker) | broker CPU/lookup | peak RSS |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in reports {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} / {} | {} / {} / {} | {} / {} / {} | {:.3} | {} / {} | {:.0} µs | {:.1} MiB |",
            r.scenario,
            r.started_at,
            r.rate_per_s,
            r.fan_out.map_or("mixed".into(), |n| n.to_string()),
            fmt_us(r.direct.p50_us),
            fmt_us(r.direct.p99_us),
            fmt_us(r.broker.p50_us),
            fmt_us(r.broker.p99_us),
            fmt_us(r.broker.p999_us),
            fmt_signed_us(r.added.p50_us),
            fmt_signed_us(r.added.p99_us),
            fmt_signed_us(r.added.p999_us),
            r.throughput_ratio,
            r.direct.error_total,
            r.broker.error_total,
            r.broker_process.cpu_us_per_request,
            r.broker_process.peak_rss_kib as f64 / 1024.0,
        );
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::openloop::{Outcome, PathRun};

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = new_histogram();
        for &v in values {
            h.saturating_record(v);
        }
        h
    }

    pub(crate) fn sample_report() -> Report {
        let stats = |p50: u64, p99: u64| PathStats {
            requests: 1000,
            answered: 998,
            achieved_rate: 99.8,
            degraded: 0,
            not_live_answers: 0,
            errors: BTreeMap::from([("timeout".to_owned(), 2)]),
            error_total: 2,
            p50_us: p50,
            p90_us: p99 - 1,
            p99_us: p99,
            p999_us: p99 + 10,
            max_us: p99 + 20,
            mean_us: p50 as f64,
            send_lag_p99_us: 900,
            send_lag_max_us: 1500,
            percentile_curve: vec![(0.0, p50 - 10), (0.5, p50), (0.99, p99), (1.0, p99 + 20)],
            windows: (0..20)
                .map(|i| WindowStats {
                    t_s: i as f64 / 10.0,
                    answered: 50,
                    errors: 0,
                    p50_us: p50,
                    p99_us: p99,
                    max_us: p99 + 20,
                })
                .collect(),
        };
        let direct = stats(20_300, 21_000);
        let broker = stats(20_400, 21_800);
        Report {
            scenario: "fanout-4".into(),
            description: "Fan-out 4".into(),
            started_at: "2026-11-24T22:00:00Z".into(),
            command: "loadgen --scenario fanout-4.toml".into(),
            order: "direct first, then broker".into(),
            rate_per_s: 100.0,
            warmup_s: 1.0,
            duration_s: 10.0,
            fan_out: Some(4),
            persons: 100,
            lenders: 4,
            lender_timeout_ms: 300,
            lender_behaviour: "{}".into(),
            events: vec![],
            broker_settings: BrokerSpec::default(),
            added: Added::between(&direct, &broker),
            direct,
            broker,
            throughput_ratio: 1.0,
            broker_process: ProcessStats {
                cpu_seconds: 1.5,
                cpu_per_second: 0.15,
                cpu_us_per_request: 150.0,
                peak_rss_kib: 40 * 1024,
            },
            broker_metrics: BTreeMap::from([("fallbacks".to_owned(), 0.0)]),
            load_average: ("1.00 0.50 0.20".into(), "1.10 0.60 0.20".into()),
            fault: None,
        }
    }

    #[test]
    fn added_latency_is_broker_minus_direct() {
        let r = sample_report();
        assert_eq!(r.added.p50_us, 100);
        assert_eq!(r.added.p99_us, 800);
        let faster = Added::between(&r.broker, &r.direct);
        assert_eq!(faster.p99_us, -800);
    }

    #[test]
    fn path_stats_come_from_the_run() {
        let mut run = PathRun::new_for_test(3);
        for (w, us) in [(0, 1000), (0, 2000), (1, 3000), (2, 40_000)] {
            run.record_for_test(w, us, Outcome::Ok);
        }
        run.record_for_test(2, 0, Outcome::Error("status_503".into()));
        let p = PathStats::from_run(&run, 0.3);
        assert_eq!(p.requests, 5);
        assert_eq!(p.answered, 4);
        assert!((p.achieved_rate - 4.0 / 0.3).abs() < 1e-9);
        assert_eq!(p.error_total, 1);
        assert_eq!(p.windows.len(), 3);
        assert_eq!(p.windows[0].answered, 2);
        assert_eq!(p.windows[2].errors, 1);
        assert!(p.max_us >= 40_000 && p.max_us < 40_100);
        assert_eq!(p.percentile_curve.last().map(|c| c.0), Some(1.0));
        assert!(p.percentile_curve.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn markdown_has_both_paths_added_latency_and_the_command() {
        let md = sample_report().to_markdown();
        assert!(md.contains("# Load test: fanout-4"), "{md}");
        assert!(md.contains("| direct | 1000 | 100 | 20.30 ms |"), "{md}");
        assert!(md.contains("| broker | 1000 | 100 | 20.40 ms |"), "{md}");
        assert!(md.contains("p50 +100 µs, p99 +800 µs"), "{md}");
        assert!(md.contains("2 (timeout: 2)"), "{md}");
        assert!(md.contains("`loadgen --scenario fanout-4.toml`"), "{md}");
        assert!(md.contains("peak RSS 40.0 MiB"), "{md}");
        assert!(!md.contains("Fault timeline"));
    }

    #[test]
    fn reports_round_trip_and_the_summary_lists_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = sample_report();
        let files = r.write(dir.path()).expect("write");
        assert_eq!(files.len(), 2);
        let back: Report =
            serde_json::from_slice(&std::fs::read(&files[0]).expect("read")).expect("parse");
        assert_eq!(back, r);
        std::fs::write(dir.path().join("other.json"), b"{\"not\":\"a report\"}").expect("write");
        let summary = std::fs::read_to_string(write_summary(dir.path()).expect("summary"))
            .expect("read summary");
        assert!(summary.contains("| fanout-4 |"), "{summary}");
        assert!(summary.contains("+100 µs / +800 µs"), "{summary}");
        assert_eq!(
            summary.matches("\n| ").count(),
            2,
            "header + one row: {summary}"
        );
    }

    #[test]
    fn the_fault_timeline_finds_the_breaker_and_the_recovery() {
        // 10 windows of 100 ms: fast before the fault at 0.3 s, slow until the
        // breaker opens at 0.55 s, slow in window 6 too, fast from window 7.
        let fast = || (hist(&[10_000; 20]), 0);
        let slow = || (hist(&[110_000; 20]), 0);
        let windows = vec![
            fast(),
            fast(),
            fast(),
            slow(),
            slow(),
            slow(),
            slow(),
            fast(),
            fast(),
            fast(),
        ];
        let t = fault_timeline(&windows, 0.3, Some(0.55));
        assert!((9_990..10_100).contains(&t.baseline_p99_us), "{t:?}");
        assert_eq!(t.tolerance_us, t.baseline_p99_us * 3 / 2 + 1000);
        assert!(t.p99_before_breaker_us >= 109_000, "{t:?}");
        assert_eq!(t.recovered_at_s.map(|s| (s * 10.0).round()), Some(7.0));
        let ms = t.recovery_ms.expect("recovered");
        assert!((ms - 150.0).abs() < 1.0, "{ms}");
        assert_eq!(t.windows_over_tolerance_after_recovery, 0);
        assert!(t.p99_after_fault_us >= 109_000);

        // No breaker (the direct path): never back, p99 after the fault is slow.
        let stuck: Vec<_> = (0..10)
            .map(|i| if i < 3 { fast() } else { slow() })
            .collect();
        let t = fault_timeline(&stuck, 0.3, None);
        assert_eq!(t.recovered_at_s, None);
        assert_eq!(t.p99_after_breaker_us, None);
    }

    #[test]
    fn durations_format_readably() {
        assert_eq!(fmt_us(456), "456 µs");
        assert_eq!(fmt_us(1234), "1.23 ms");
        assert_eq!(fmt_us(2_500_000), "2.50 s");
        assert_eq!(fmt_signed_us(-1500), "−1.50 ms");
    }
}
