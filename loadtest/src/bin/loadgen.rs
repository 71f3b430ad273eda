//! `loadgen`: runs load-test scenarios against simulated lenders, directly and
//! through the broker, and writes the reports.
//!
//! ```text
//! loadgen --scenario loadtest/scenarios/fanout-4.toml --broker-bin target/release/gjeldsbro
//! loadgen --all --broker-bin target/release/gjeldsbro [--out loadtest/reports] [--duration-s 5]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use gjeldsbro_loadtest::report::fmt_us;
use gjeldsbro_loadtest::runner::{self, RunOptions};
use gjeldsbro_loadtest::scenario::Scenario;

/// The same allocator as the broker's: the generator shares the two cores, so
/// its own malloc cost would show up as the broker's latency.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Open-model load tests of Gjeldsbro: direct lender calls vs the broker"
)]
struct Args {
    /// A scenario file; repeat for several (run in the order given).
    #[arg(long = "scenario")]
    scenarios: Vec<PathBuf>,
    /// Every scenario in the scenarios folder except the smoke test.
    #[arg(long)]
    all: bool,
    /// Where `--all` looks for scenarios.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios"))]
    scenarios_dir: PathBuf,
    /// The `gjeldsbro` binary to test (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/gjeldsbro")]
    broker_bin: PathBuf,
    /// Where the reports go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/reports"))]
    out: PathBuf,
    /// Override every scenario's measured duration (seconds).
    #[arg(long)]
    duration_s: Option<f64>,
    /// Override every scenario's warm-up (seconds).
    #[arg(long)]
    warmup_s: Option<f64>,
    /// Override every scenario's rate (lookups per second).
    #[arg(long)]
    rate: Option<f64>,
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    raise_open_files_limit();
    // The generator's runtime; the simulated lenders get their own (see runner).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("loadgen")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft limit on open files to the hard limit: at fan-out 16 the
/// lenders' server sockets and the direct path's client sockets live in this
/// process, and the usual soft limit of 1024 would turn load into `EMFILE`
/// errors. The broker child inherits the raised limit.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                eprintln!("warning: could not raise the open-files limit");
            }
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut files = args.scenarios.clone();
    if args.all {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&args.scenarios_dir)
            .with_context(|| format!("reading {}", args.scenarios_dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .filter(|p| p.file_stem().is_none_or(|s| s != "smoke"))
            .collect();
        found.sort();
        files.extend(found);
    }
    if files.is_empty() {
        bail!("give --scenario FILE (repeatable) or --all");
    }
    if !args.broker_bin.is_file() {
        bail!(
            "no broker binary at {} (build it: cargo build --release -p gjeldsbro, or pass --broker-bin)",
            args.broker_bin.display()
        );
    }
    // Validate everything before the first (long) run starts.
    let scenarios = files
        .iter()
        .map(|f| Scenario::load(f))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = RunOptions {
        broker_bin: args.broker_bin.clone(),
        out_dir: args.out.clone(),
        duration_s: args.duration_s,
        warmup_s: args.warmup_s,
        rate_per_s: args.rate,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let mut failed = false;
    for s in &scenarios {
        eprintln!(
            "== {}: {} lookups/s, {} s warm-up + {} s per path",
            s.name,
            args.rate.unwrap_or(s.rate_per_s),
            args.warmup_s.unwrap_or(s.warmup_s),
            args.duration_s.unwrap_or(s.duration_s)
        );
        let out = runner::run(s, &opts)
            .await
            .with_context(|| format!("scenario {}", s.name))?;
        let r = &out.report;
        for (name, p) in [("direct", &r.direct), ("broker", &r.broker)] {
            println!(
                "{:<16} {name:<6} requests {:>7}  answered/s {:>8.1}  p50 {:>9}  p99 {:>9}  p99.9 {:>9}  max {:>9}  errors {}",
                r.scenario,
                p.requests,
                p.achieved_rate,
                fmt_us(p.p50_us),
                fmt_us(p.p99_us),
                fmt_us(p.p999_us),
                fmt_us(p.max_us),
                p.error_total
            );
        }
        println!(
            "{:<16} added p50 {:+} µs, p99 {:+} µs, p99.9 {:+} µs; throughput ratio {:.3}; broker CPU {:.0} µs/lookup, peak RSS {:.1} MiB",
            r.scenario,
            r.added.p50_us,
            r.added.p99_us,
            r.added.p999_us,
            r.throughput_ratio,
            r.broker_process.cpu_us_per_request,
            r.broker_process.peak_rss_kib as f64 / 1024.0
        );
        for f in &out.files {
            println!("{:<16} wrote {}", r.scenario, f.display());
        }
        failed |= r.direct.error_total + r.broker.error_total > 0;
    }
    // Errors are reported, and the exit code says so, but timings never fail a run.
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
