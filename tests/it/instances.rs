//! Several broker processes on one PostgreSQL database: each learns of another's
//! ingest and pushes (LISTEN/NOTIFY, with a poll behind it) and updates its index
//! within about a second. Two real `gjeldsbro serve` processes, a third process
//! running `gjeldsbro ingest`, real simulated lenders.
//!
//! Skips, with the reason printed, when PostgreSQL is not reachable
//! (`GJELDSBRO_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`).

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::pg::pg_schema;
use common::{Fixture, Options, client, closed_port, fi_token, token};
use serde_json::{Value, json};

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(config: &std::path::Path) -> Serve {
    Serve(
        Command::new(env!("CARGO_BIN_EXE_gjeldsbro"))
            .args(["serve", "--config"])
            .arg(config)
            .env("GJELDSBRO_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start gjeldsbro serve"),
    )
}

async fn wait_ready(url: &str) {
    let started = Instant::now();
    loop {
        if let Ok(r) = client().get(format!("{url}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{url} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn search_status(url: &str, ssn: &str) -> u16 {
    client()
        .post(format!("{url}/api/rest/v2/debt/search"))
        .bearer_auth(fi_token())
        .json(&json!({"ssn": ssn, "referenceID": "instances"}))
        .send()
        .await
        .expect("search")
        .status()
        .as_u16()
}

/// Polls until the search answers `want`; returns how long that took.
async fn until_status(url: &str, ssn: &str, want: u16) -> Duration {
    let started = Instant::now();
    loop {
        if search_status(url, ssn).await == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{url} never answered {want}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_on_one_database_follow_each_others_ingests_and_pushes() {
    let (schema, pg_url) = match pg_schema().await {
        Ok(s) => s,
        Err(reason) => {
            common::pg::skip(&reason);
            return;
        }
    };
    let fx = Fixture::new(Options {
        lenders: 2,
        persons: 120,
        ..Options::default()
    })
    .await;
    let sqlite_url = format!("sqlite://{}", fx.db_path.display());
    let mut configs = Vec::new();
    let mut urls = Vec::new();
    for name in ["a", "b"] {
        let port = closed_port();
        let text = fx
            .config_text(&format!("127.0.0.1:{port}"), true)
            .replace(&sqlite_url, &pg_url)
            .replace(
                "roles = [\"operator\"]\n",
                "roles = [\"operator\"]\n\n[[clients]]\norg_no = \"920000001\"\nname = \"L1\"\nroles = [\"lender\"]\n",
            );
        let path = fx.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        configs.push(path);
        urls.push(format!("http://127.0.0.1:{port}"));
    }
    // A migrates first so the two do not race on creating the schema's tables.
    let a = serve(&configs[0]);
    wait_ready(&urls[0]).await;
    let b = serve(&configs[1]);
    wait_ready(&urls[1]).await;

    // 1. A third process ingests lender 1's dataset: B learns of it.
    let person = fx.persons_at(0)[0].clone();
    assert_eq!(search_status(&urls[1], &person).await, 204);
    let ingest = Command::new(env!("CARGO_BIN_EXE_gjeldsbro"))
        .args(["ingest", "--config"])
        .arg(&configs[0])
        .args(["--lender", &fx.specs[0].id])
        .arg(fx.dataset_file(0))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ingest.success());
    let took = until_status(&urls[1], &person, 200).await;
    println!("B saw the ingest after {took:?}");
    until_status(&urls[0], &person, 200).await;

    // 2. A push received by A: B learns of it.
    let newcomer = (100..200)
        .find_map(|i| gjeldsbro::nin::make_id(9, 9, 66, i, false, true))
        .unwrap();
    assert_eq!(search_status(&urls[1], &newcomer).await, 204);
    let body: Value = json!({"providerID": "9908:920000001", "customers": [{
        "customerID": newcomer, "financialInstitutionID": "920000001",
        "loans": [{"type": "chargeCard", "accountID": "P-1", "coBorrower": 0,
                   "interestBearingBalance": 1000, "nonInterestBearingBalance": 0}]}]});
    let pushed = client()
        .post(format!("{}/debt-information/v1/loans", urls[0]))
        .bearer_auth(token("920000001", &["debt.delivery"]))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status().as_u16(), 200);
    let took = until_status(&urls[1], &newcomer, 200).await;
    println!("B saw the push after {took:?}");

    drop((a, b));
    drop(schema);
}
