//! Issue 3's store benchmarks, printed as a table (not criterion: these are
//! single long runs whose point is throughput and memory at size).
//!
//! 1. Ingest of getalldata files with 100k and 1M loans through the real
//!    `gjeldsbro ingest` binary: loans/s and the child's peak RSS (VmHWM), for
//!    SQLite and, when `GJELDSBRO_BENCH_PG_URL` names a database, PostgreSQL.
//!    Flat memory means the 1M peak is close to the 100k peak.
//! 2. Index rebuild from the store at 5M persons: seconds and bytes per person.
//!
//! Run: `cargo bench --bench ingest` (add `-- quick` for 1/10 of the sizes).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gjeldsbro::index::rebuild::build_from_store;
use gjeldsbro::lenders::Lenders;
use gjeldsbro::nin::{IdPolicy, NationalId, make_id};
use gjeldsbro::store::{self, SnapshotRow};
use gjeldsbro_adapter::Loan;
use gjeldsbro_loadtest::population::{LenderSpec, generate};

const ORG: &str = "920000001";

fn config_text(store_url: &str, lenders: usize) -> String {
    let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/config/dev-jwks.json");
    let mut t = format!(
        "listen = \"127.0.0.1:0\"\naccept_synthetic_ids = true\ndev_mode = true\n[store]\nurl = \"{store_url}\"\n\
         [auth]\nissuer = \"https://issuer.test\"\naudience = \"gjeldsbro\"\njwks_file = \"{jwks}\"\n"
    );
    for i in 0..lenders {
        t.push_str(&format!(
            "[[lenders]]\nid = \"lender-{}\"\norg_no = \"{}\"\nname = \"L{i}\"\nadapter = \"api-debt-fi\"\nbase_url = \"http://127.0.0.1:9\"\n",
            i + 1,
            920_000_001 + i
        ));
    }
    t
}

/// Peak resident set size of a running child, polled from /proc until it exits.
fn run_measuring_rss(mut cmd: Command) -> (bool, Duration, u64) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gjeldsbro");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kb = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak_kb = peak_kb.max(kb);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return (status.success(), started.elapsed(), peak_kb);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ingest_case(dir: &Path, label: &str, store_url: &str, file: &Path, loans: usize) {
    let config = dir.join(format!("{label}.toml"));
    std::fs::write(&config, config_text(store_url, 1)).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gjeldsbro"));
    cmd.args(["ingest", "--config"])
        .arg(&config)
        .args(["--lender", "lender-1"])
        .arg(file);
    cmd.env("GJELDSBRO_LOG", "warn");
    let (ok, took, peak_kb) = run_measuring_rss(cmd);
    assert!(ok, "ingest failed for {label}");
    println!(
        "| ingest {label:<22} | {loans:>9} loans | {:>7.2} s | {:>9.0} loans/s | peak RSS {:>6.1} MiB |",
        took.as_secs_f64(),
        loans as f64 / took.as_secs_f64(),
        peak_kb as f64 / 1024.0
    );
}

fn dataset_file(dir: &Path, target_loans: usize) -> (std::path::PathBuf, usize) {
    // About 1.6 loans a person in the synthetic population, 80 % with debt.
    let persons = target_loans * 100 / 128;
    let population = generate(
        target_loans as u64,
        persons,
        &[LenderSpec::new("lender-1", ORG)],
    );
    let path = dir.join(format!("dataset-{target_loans}.json"));
    population.write_dataset("lender-1", &path).unwrap();
    let loans = population
        .dataset("lender-1")
        .iter()
        .map(|c| c.loans.len())
        .sum();
    (path, loans)
}

fn synthetic_ids(n: usize) -> Vec<NationalId> {
    let mut out = Vec::with_capacity(n);
    'outer: for yy in 0..100u32 {
        for month in 1..=12u32 {
            for day in 1..=28u32 {
                for ind in 0..500u32 {
                    if let Some(s) = make_id(day, month, yy, ind, false, true) {
                        out.push(NationalId::parse(&s, IdPolicy::SYNTHETIC_OK).unwrap());
                        if out.len() == n {
                            break 'outer;
                        }
                    }
                }
            }
        }
    }
    out
}

async fn rebuild_case(dir: &Path, persons: usize) {
    let url = format!("sqlite://{}", dir.join("rebuild.db").display());
    let store = store::open(&url).await.unwrap();
    let ids = synthetic_ids(persons);
    let lenders = 8;
    let loan: Loan = serde_json::from_str(
        r#"{"type":"chargeCard","accountID":"A","coBorrower":0,"interestBearingBalance":100,"nonInterestBearingBalance":0}"#,
    )
    .unwrap();
    let started = Instant::now();
    let mut rows_total = 0;
    for l in 0..lenders {
        let mut writer = store
            .begin_dataset(&format!("lender-{}", l + 1))
            .await
            .unwrap();
        let mut batch = Vec::with_capacity(50_000);
        // Each person is held by 1-3 lenders (a fixed spread, so runs compare).
        for (i, nin) in ids.iter().enumerate() {
            let held = (i % 3) + 1;
            if (0..held).any(|k| (i + k * 3) % lenders == l) {
                batch.push(SnapshotRow {
                    nin: *nin,
                    loan: loan.clone(),
                });
                if batch.len() == 50_000 {
                    writer.write(&batch).await.unwrap();
                    rows_total += batch.len();
                    batch.clear();
                }
            }
        }
        writer.write(&batch).await.unwrap();
        rows_total += batch.len();
        writer.commit(Default::default()).await.unwrap();
    }
    println!(
        "| store fill for rebuild       | {rows_total:>9} rows  | {:>7.2} s |",
        started.elapsed().as_secs_f64()
    );
    let config = gjeldsbro::config::Config::parse(&config_text(&url, lenders)).unwrap();
    let lender_list = Arc::new(Lenders::from_config(&config).unwrap());
    let started = Instant::now();
    let snapshot = build_from_store(&*store, &lender_list).await.unwrap();
    let took = started.elapsed();
    println!(
        "| index rebuild from SQLite    | {:>9} persons | {:>7.2} s | {:>5.1} bytes/person |",
        snapshot.persons(),
        took.as_secs_f64(),
        snapshot.heap_bytes() as f64 / snapshot.persons() as f64
    );
}

fn main() {
    // `cargo bench` passes `--bench`; anything else after `--` selects a mode.
    let quick = std::env::args().any(|a| a == "quick");
    let scale = if quick { 10 } else { 1 };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    println!("| case | size | time | rate | memory |");
    println!("|---|---|---|---|---|");
    for target in [100_000 / scale, 1_000_000 / scale] {
        let (file, loans) = dataset_file(dir.path(), target);
        let sqlite = format!(
            "sqlite://{}",
            dir.path().join(format!("ingest-{target}.db")).display()
        );
        ingest_case(
            dir.path(),
            &format!("SQLite {target}"),
            &sqlite,
            &file,
            loans,
        );
        if let Ok(pg) = std::env::var("GJELDSBRO_BENCH_PG_URL") {
            ingest_case(
                dir.path(),
                &format!("PostgreSQL {target}"),
                &pg,
                &file,
                loans,
            );
        }
        std::fs::remove_file(&file).ok();
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(rebuild_case(dir.path(), 5_000_000 / scale));
}
