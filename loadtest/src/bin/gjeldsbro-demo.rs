//! `gjeldsbro-demo`: everything on one machine, synthetic data only: simulated
//! lenders and sources, a generated population, and the real broker in front.
//! What `cargo run --release -- demo` runs: the production `gjeldsbro` binary
//! carries no simulator, so its `demo` subcommand hands over to this one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gjeldsbro_loadtest::demo::{self, DemoArgs};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "gjeldsbro-demo",
    about = "Gjeldsbro on one machine: simulated lenders, synthetic data, the broker"
)]
struct Args {
    /// Where the demo keeps its store, datasets and config.
    #[arg(long, default_value = "demo-data")]
    data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The operations listener (metrics, readiness detail).
    #[arg(long, default_value = "127.0.0.1:9464")]
    ops_listen: SocketAddr,
    /// The first simulated lender's port; the others follow.
    #[arg(long, default_value_t = 9001)]
    lender_base_port: u16,
    #[arg(long, default_value_t = 10_000)]
    persons: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn main() -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = Args::parse();
    let filter = std::env::var("GJELDSBRO_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
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
    match runtime.block_on(demo::run(DemoArgs {
        data_dir: args.data_dir,
        listen: args.listen,
        ops_listen: args.ops_listen,
        lender_base_port: args.lender_base_port,
        persons: args.persons,
        seed: args.seed,
    })) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
