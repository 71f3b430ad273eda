//! The load generator's smoke scenario, end to end, as CI runs it: simulated
//! lenders, the real broker binary (this build's `gjeldsbro`, debug is fine)
//! started with `serve` after `pull`, and 10 s of open-model lookups on each
//! path. Asserts that lookups were made, that none failed, and that the report
//! files were written. Never timings: this machine is shared and busy.

use std::path::Path;

use gjeldsbro_loadtest::runner::{self, RunOptions};
use gjeldsbro_loadtest::scenario::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smoke_scenario_runs_without_errors() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let scenario_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/scenarios/smoke.toml");
    let scenario = Scenario::load(&scenario_file).expect("the smoke scenario is valid");
    let out = tempfile::tempdir().expect("tempdir");
    let opts = RunOptions {
        broker_bin: env!("CARGO_BIN_EXE_gjeldsbro").into(),
        out_dir: out.path().to_owned(),
        duration_s: None,
        warmup_s: None,
        rate_per_s: None,
        command: "tests/loadtest_smoke.rs".into(),
    };
    let run = runner::run(&scenario, &opts)
        .await
        .expect("the run completes");
    let r = &run.report;

    for (name, path) in [("direct", &r.direct), ("broker", &r.broker)] {
        // Every lookup due in the measured period was made and answered.
        assert!(path.requests > 0, "{name}: no requests were made");
        assert_eq!(
            path.error_total, 0,
            "{name}: lookups failed: {:?}",
            path.errors
        );
        assert_eq!(path.answered, path.requests, "{name}: unanswered lookups");
    }
    // Both paths ran the same schedule.
    assert_eq!(r.direct.requests, r.broker.requests);
    // The direct path really reached the lenders (a failed lender call counts
    // as degraded there, not as an error).
    assert!(
        r.direct.degraded < r.direct.requests,
        "no direct lookup got every lender's answer"
    );
    // The broker fanned out to the lenders (its counters moved).
    assert!(
        r.broker_metrics.get("cache_misses").copied().unwrap_or(0.0) > 0.0,
        "the broker made no lender calls: {:?}",
        r.broker_metrics
    );
    assert!(r.broker_process.peak_rss_kib > 0, "peak RSS not read");

    for ext in ["json", "md", "svg"] {
        let f = out.path().join(format!("smoke.{ext}"));
        let len = std::fs::metadata(&f)
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
            .len();
        assert!(len > 0, "{} is empty", f.display());
    }
    let summary =
        std::fs::read_to_string(out.path().join("summary.md")).expect("summary.md written");
    assert!(summary.contains("| smoke |"), "{summary}");
}
