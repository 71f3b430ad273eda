//! `lender-check`: the go-live kit a lender runs against its own API-DEBT-FI
//! endpoints (docs/lender-check.md). Its own binary: lenders need neither the
//! broker nor its store, and the broker's production binary does not carry it.
//! Exit 0 when every rule passes, 2 when one fails, 1 when it cannot run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gjeldsbro_lender_check::args::{LenderCheckArgs, lender_check};
use tracing_subscriber::EnvFilter;

/// Check a lender's API-DEBT-FI endpoints before go-live: loan schemas,
/// coBorrower, amounts, unknown customers, errors, paging, latency. Prints a
/// pass/fail table, writes a JSON report, exits 2 if any rule fails.
#[derive(Debug, Parser)]
#[command(name = "lender-check", version)]
struct Args {
    /// The lender's base URL (as `[[lenders]] base_url`).
    #[arg(long)]
    base_url: String,
    /// The lender's organisation number (financialInstitutionID).
    #[arg(long = "org")]
    org_no: String,
    /// A test person to ask for (repeat for several); default: customers
    /// from getalldata's first page.
    #[arg(long = "customer")]
    customers: Vec<String>,
    /// Accept synthetic (Tenor) test ids: for lenders' test environments.
    #[arg(long)]
    accept_synthetic_ids: bool,
    /// Where the JSON report goes.
    #[arg(long, default_value = "lender-check-report.json")]
    report: PathBuf,
    /// How long the open-loop latency run lasts.
    #[arg(long, default_value_t = 10.0)]
    latency_seconds: f64,
    /// Calls per second in the latency run (the requirement is 50).
    #[arg(long, default_value_t = 50)]
    rate: u32,
    /// Timeout of one customer call, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// The broker's client certificate chain (PEM) for mTLS.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The key of --client-cert (PEM).
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Trust only these CAs for the lender's server certificate (PEM).
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let a = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("GJELDSBRO_LOG")
                .or_else(|_| std::env::var("RUST_LOG"))
                .ok()
                .and_then(|f| EnvFilter::try_new(f).ok())
                .unwrap_or_else(|| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .compact()
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let path = a.report.clone();
    let outcome = runtime.block_on(lender_check(LenderCheckArgs {
        base_url: a.base_url,
        org_no: a.org_no,
        customers: a.customers,
        accept_synthetic_ids: a.accept_synthetic_ids,
        report: a.report,
        latency_seconds: a.latency_seconds,
        rate: a.rate,
        timeout_ms: a.timeout_ms,
        client_cert: a.client_cert,
        client_key: a.client_key,
        ca_file: a.ca_file,
    }));
    match outcome {
        Ok(report) => {
            print!("{}", report.table());
            println!("report: {}", path.display());
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
