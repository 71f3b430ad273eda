//! Crash safety of dataset loads: `gjeldsbro ingest` killed with SIGKILL at several
//! points of a large load leaves either the old dataset or (once committed) the new
//! one in force — never a mix — and the next start is consistent: leftovers of the
//! unfinished load are removed and the index matches the dataset in force.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gjeldsbro::app::AppState;
use gjeldsbro::config::Config;
use gjeldsbro::nin::{IdPolicy, NationalId};
use gjeldsbro::store;
use gjeldsbro_loadtest::population::{LenderSpec, generate};
use sqlx::Row;

const ORG: &str = "920000001";

fn write_config(dir: &Path) -> std::path::PathBuf {
    let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/config/dev-jwks.json");
    let text = format!(
        "listen = \"127.0.0.1:0\"\naccept_synthetic_ids = true\ndev_mode = true\n[store]\nurl = \"sqlite://{}\"\n\
         [auth]\nissuer = \"https://issuer.test\"\naudience = \"gjeldsbro\"\njwks_file = \"{jwks}\"\n\
         [[lenders]]\nid = \"lender-1\"\norg_no = \"{ORG}\"\nname = \"Test Finans AS\"\nadapter = \"api-debt-fi\"\n\
         base_url = \"http://127.0.0.1:9\"\n",
        dir.join("broker.db").display()
    );
    let path = dir.join("gjeldsbro.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The persons with an open loan in a dataset file's population.
fn open_persons(population: &gjeldsbro_loadtest::Population) -> BTreeSet<u64> {
    population
        .dataset("lender-1")
        .iter()
        .filter(|c| c.loans.iter().any(|l| !l.is_closed()))
        .map(|c| {
            NationalId::parse(&c.customer_id, IdPolicy::SYNTHETIC_OK)
                .unwrap()
                .as_u64()
        })
        .collect()
}

fn ingest(config: &Path, file: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_gjeldsbro"))
        .args(["ingest", "--config"])
        .arg(config)
        .args(["--lender", "lender-1"])
        .arg(file)
        .env("GJELDSBRO_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_load_killed_at_any_point_leaves_the_old_or_the_new_dataset() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let spec = [LenderSpec::new("lender-1", ORG)];
    let old = generate(1, 3_000, &spec);
    let new = generate(2, 120_000, &spec);
    let old_file = dir.path().join("old.json");
    let new_file = dir.path().join("new.json");
    old.write_dataset("lender-1", &old_file).unwrap();
    new.write_dataset("lender-1", &new_file).unwrap();
    let (old_persons, new_persons) = (open_persons(&old), open_persons(&new));

    assert!(ingest(&config, &old_file).wait().unwrap().success());
    // How long a whole load takes here, so the kills spread over it.
    let db = dir.path().join("broker.db");
    let url = format!("sqlite://{}", db.display());
    // (A separate store of its own: copying a live WAL database file is not safe.)
    let probe_config = dir.path().join("probe.toml");
    std::fs::write(
        &probe_config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("broker.db", "probe.db"),
    )
    .unwrap();
    assert!(ingest(&probe_config, &old_file).wait().unwrap().success());
    let started = Instant::now();
    assert!(ingest(&probe_config, &new_file).wait().unwrap().success());
    let full = started.elapsed();

    let mut saw_unfinished_load = false;
    for fraction in [0.05, 0.2, 0.4, 0.6, 0.8, 0.95] {
        let mut child = ingest(&config, &new_file);
        std::thread::sleep(full.mul_f64(fraction));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill(); // SIGKILL on Unix
        let _ = child.wait();

        // Before any clean-up: what is in force is exactly one whole dataset.
        let store = store::open(&url).await.unwrap();
        let in_force: BTreeSet<u64> = store
            .persons_of("lender-1")
            .await
            .unwrap()
            .into_iter()
            .collect();
        assert!(
            in_force == old_persons || in_force == new_persons,
            "kill at {fraction}: a mix of datasets is in force ({} persons)",
            in_force.len()
        );
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let stray: i64 = sqlx::query(
            "SELECT COUNT(*) FROM snapshot_loans s JOIN datasets d ON d.lender_id = s.lender_id \
             WHERE s.generation <> d.generation",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
        if stray > 0 && !finished {
            saw_unfinished_load = true;
        }
        pool.close().await;
        drop(store);

        // The next start is consistent: leftovers gone, index = dataset in force.
        let state = AppState::build(Config::load(&config).unwrap())
            .await
            .unwrap();
        assert_eq!(
            state.lookup.index.load().persons(),
            in_force.len(),
            "kill at {fraction}"
        );
        let sample = *in_force.iter().nth(in_force.len() / 2).unwrap();
        assert_eq!(
            state
                .lookup
                .index
                .lenders_of(NationalId::from_stored(sample).unwrap()),
            vec![0]
        );
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let stray_after: i64 = sqlx::query(
            "SELECT COUNT(*) FROM snapshot_loans s LEFT JOIN datasets d ON d.lender_id = s.lender_id \
             WHERE d.generation IS NULL OR s.generation <> d.generation",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
        assert_eq!(
            stray_after, 0,
            "kill at {fraction}: leftovers survived the restart"
        );
        pool.close().await;
        drop(state);
        tokio::time::sleep(Duration::from_millis(50)).await;

        // Put the old dataset back for the next round.
        assert!(ingest(&config, &old_file).wait().unwrap().success());
    }
    assert!(
        saw_unfinished_load,
        "no kill landed inside a load; the test proved nothing"
    );
}
