//! `gjeldsbro ingest --config C --lender ID FILE`, the real binary: a delivery
//! breaking a rule is rejected whole (exit 2, rule and position, never an id) and
//! the old data stays in force; a good one replaces the snapshot and a running
//! broker on the same store follows within seconds.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Broker, Fixture, Options};
use gjeldsbro_adapter::Loan;
use gjeldsbro_loadtest::sim::{Behaviour, Fault};
use serde_json::{Value, json};

fn ingest(config: &Path, lender: &str, file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gjeldsbro"))
        .args(["ingest", "--config"])
        .arg(config)
        .args(["--lender", lender])
        .arg(file)
        .env("GJELDSBRO_LOG", "debug")
        .output()
        .expect("run gjeldsbro ingest")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The longest run of ASCII digits in `s`.
fn longest_digit_run(s: &str) -> usize {
    s.split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// A fixture whose datasets were loaded with the CLI, and a broker on its store.
async fn setup() -> (Fixture, PathBuf, Broker) {
    let fx = Fixture::new(Options {
        lenders: 3,
        persons: 250,
        seed: 31,
        ..Options::default()
    })
    .await;
    let config = fx.write_config("gjeldsbro.toml", "127.0.0.1:0", true);
    for (i, spec) in fx.specs.iter().enumerate() {
        let out = ingest(&config, &spec.id, &fx.dataset_file(i));
        assert!(out.status.success(), "ingest failed: {}", text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("accepted"));
    }
    let b = Broker::start(&config).await;
    (fx, config, b)
}

fn dataset_json(fx: &Fixture, lender: usize) -> Value {
    serde_json::from_slice(&std::fs::read(fx.dataset_file(lender)).unwrap()).unwrap()
}

fn write(fx: &Fixture, name: &str, v: &Value) -> PathBuf {
    let path = fx.dir.path().join(name);
    std::fs::write(&path, serde_json::to_vec(v).unwrap()).unwrap();
    path
}

fn principal_field(loan: &Value) -> &'static str {
    match loan["type"].as_str().unwrap() {
        "repaymentLoan" => "balance",
        "creditFacility" => "creditLimit",
        _ => "interestBearingBalance",
    }
}

#[tokio::test]
async fn a_delivery_breaking_a_rule_is_rejected_whole() {
    let (fx, config, b) = setup().await;
    let lender = &fx.specs[0].id;
    let original = dataset_json(&fx, 0);
    let customers = original["customers"].as_array().unwrap().clone();
    assert!(customers.len() > 20);
    let first = customers[0]["customerID"].as_str().unwrap().to_owned();
    let last = customers.last().unwrap()["customerID"]
        .as_str()
        .unwrap()
        .to_owned();

    // Each bad file also changes the first customer's loans and drops the last
    // customer, so that a partial load would show.
    let base = |edit: &dyn Fn(&mut Vec<Value>)| -> Value {
        let mut list = customers.clone();
        list[0]["loans"] = json!([{"type": "chargeCard", "accountID": "X-1", "coBorrower": 0,
            "interestBearingBalance": 123400, "nonInterestBearingBalance": 0}]);
        list.pop();
        edit(&mut list);
        json!({"providerID": original["providerID"], "customers": list})
    };
    let mut bad_id = customers[4]["customerID"]
        .as_str()
        .unwrap()
        .as_bytes()
        .to_vec();
    bad_id[10] = b'0' + (bad_id[10] - b'0' + 1) % 10;
    let bad_id = String::from_utf8(bad_id).unwrap();
    let cases: Vec<(&str, u64, Value)> = vec![
        (
            "duplicate_customer",
            3,
            base(&|l| {
                let dup = l[1].clone();
                l.insert(3, dup);
            }),
        ),
        (
            "negative_amount",
            2,
            base(&|l| {
                let f = principal_field(&l[2]["loans"][0]);
                l[2]["loans"][0][f] = json!(-100);
            }),
        ),
        (
            "invalid_national_id",
            4,
            base(&|l| l[4]["customerID"] = json!(bad_id.clone())),
        ),
        (
            "missing_co_borrower",
            5,
            base(&|l| {
                l[5]["loans"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("coBorrower");
            }),
        ),
    ];
    for (rule, position, doc) in &cases {
        let file = write(&fx, &format!("bad-{rule}.json"), doc);
        let out = ingest(&config, lender, &file);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{rule}: {all}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("rejected"), "{rule}: {stderr}");
        assert!(stderr.contains(rule), "{rule} not named: {stderr}");
        assert!(
            stderr.contains(&format!("customer #{position}")),
            "{rule}: position not named: {stderr}"
        );
        // No national id (nor anything id-long) in anything it printed.
        assert!(longest_digit_run(&all) < 11, "{rule}: an id in {all}");
        for c in &customers {
            assert!(!all.contains(c["customerID"].as_str().unwrap()));
        }
        assert!(!all.contains(&bad_id));
    }

    // A truncated file and another lender's data are rejected the same way.
    let good = serde_json::to_vec(&base(&|_| {})).unwrap();
    let truncated = fx.dir.path().join("truncated.json");
    std::fs::write(&truncated, &good[..good.len() * 2 / 3]).unwrap();
    let foreign = write(
        &fx,
        "foreign.json",
        &base(&|l| l[7]["financialInstitutionID"] = json!("920000002")),
    );
    for (rule, file) in [
        ("malformed_json", truncated),
        ("foreign_institution", foreign),
    ] {
        let out = ingest(&config, lender, &file);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{rule}: {all}");
        assert!(all.contains(rule), "{rule}: {all}");
        assert!(longest_digit_run(&all) < 11, "{rule}: an id in {all}");
    }
    // An unknown lender is an error, not a panic, and loads nothing.
    let out = ingest(&config, "lender-x", &fx.dataset_file(1));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("unknown lender"));

    // The old dataset is still in force: with the lender failing, its snapshot
    // gives the old loans, and the dropped last customer is still called.
    fx.sim(0).set_behaviour(Behaviour {
        fault: Fault::Status500,
        ..Behaviour::default()
    });
    for p in [
        &first,
        &last,
        &customers[5]["customerID"].as_str().unwrap().to_owned(),
    ] {
        if fx.indexed_lenders(p).is_empty() {
            continue;
        }
        fx.reset_stats();
        let r = b.search(p).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.loans(), fx.expected_loans(p), "old data not in force");
        assert_eq!(r.json()["numberOfcreditorsMissing"], json!(0));
        assert_eq!(fx.sim(0).calls_for(p), 1);
    }
    // Each rejection was recorded, with rule and position and no id.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", fx.db_path.display()))
        .await
        .unwrap();
    let rows: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT rule, position, detail FROM deliveries WHERE accepted = 0 ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let got: Vec<(String, u64)> = rows.iter().map(|r| (r.0.clone(), r.1 as u64)).collect();
    let want: Vec<(String, u64)> = cases.iter().map(|c| (c.0.to_owned(), c.1)).collect();
    assert_eq!(got[..want.len()], want[..]);
    assert_eq!(got[want.len()].0, "malformed_json");
    assert_eq!(got[want.len() + 1], ("foreign_institution".to_owned(), 7));
    assert_eq!(got.len(), want.len() + 2);
    for r in &rows {
        assert!(longest_digit_run(&r.2) < 11, "an id in {}", r.2);
    }
}

#[tokio::test]
async fn a_good_delivery_replaces_the_snapshot_and_the_running_broker_follows() {
    let (fx, config, b) = setup().await;
    let lender = &fx.specs[0].id;
    let original = dataset_json(&fx, 0);
    let mut list = original["customers"].as_array().unwrap().clone();

    // D: held only by lender 0; dropped from the new file.
    let dropped = fx
        .persons_at(0)
        .into_iter()
        .find(|p| fx.indexed_lenders(p) == vec![0])
        .expect("someone only at lender 0");
    list.retain(|c| c["customerID"] != json!(dropped));
    // P: held by lender 0; their first loan changes amount.
    let changed = list[0]["customerID"].as_str().unwrap().to_owned();
    let f = principal_field(&list[0]["loans"][0]);
    let old_amount = list[0]["loans"][0][f].as_i64().unwrap();
    list[0]["loans"][0][f] = json!(old_amount + 77_700);
    // N: a new customer, in no one's data before.
    let newcomer = common::fresh_synthetic_id(&fx.pop, "120890");
    let new_loan = json!({"type": "creditFacility", "accountID": "920000001-NEW-1",
        "timestamp": "2026-01-10T08:00:00Z", "coBorrower": 0, "creditLimit": 5_000_000,
        "interestBearingBalance": 120_000, "nonInterestBearingBalance": 0,
        "nominalInterestRate": 1990, "installmentCharges": 4500,
        "installmentChargePeriod": "MONTHLY"});
    list.push(
        json!({"customerID": newcomer, "financialInstitutionID": fx.specs[0].org_no,
        "loans": [new_loan.clone()]}),
    );
    let doc = json!({"providerID": original["providerID"], "customers": list});
    let file = write(&fx, "lender-1-new.json", &doc);

    // Before: the newcomer is unknown (204, nobody called); D is called.
    fx.reset_stats();
    assert_eq!(b.search(&newcomer).await.status, 204);
    assert_eq!(b.search(&dropped).await.status, 200);
    assert_eq!(fx.sim(0).calls_for(&dropped), 1);
    assert_eq!(fx.total_customer_calls(), 1);

    // The lender now fails, so that answers show the snapshot in force.
    fx.sim(0).set_behaviour(Behaviour {
        fault: Fault::Status500,
        ..Behaviour::default()
    });
    let out = ingest(&config, lender, &file);
    assert!(out.status.success(), "{}", text(&out));
    assert!(longest_digit_run(&text(&out)) < 11, "{}", text(&out));
    let loaded = Instant::now();

    // The running broker picks up the new index.
    let mut picked_up = None;
    // The broker polls for changes every second; 30 s only bounds a hung test.
    while loaded.elapsed() < Duration::from_secs(30) {
        let r = b.search(&newcomer).await;
        if r.status == 200 {
            picked_up = Some((loaded.elapsed(), r));
            break;
        }
        assert_eq!(r.status, 204);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (took, r) = picked_up.expect("the broker never picked up the new dataset");
    println!("the running broker picked up the dataset after {took:?}");
    let mut want: Loan = serde_json::from_value(new_loan).unwrap();
    want = want.canonical();
    want.account_id = None;
    // A search answer shows the UTC date only (issue 12).
    want.timestamp = Some("2026-01-10T00:00:00Z".into());
    assert_eq!(r.loans(), vec![serde_json::to_value(want).unwrap()]);
    assert!(
        fx.sim(0).calls_for(&newcomer) >= 1,
        "lender 0 was not asked"
    );
    for i in 1..fx.specs.len() {
        assert_eq!(fx.sim(i).calls_for(&newcomer), 0);
    }

    // D is no longer anyone's: 204 and no call.
    fx.reset_stats();
    let r = b.search(&dropped).await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(fx.sim(0).calls_for(&dropped), 0);
    assert_eq!(fx.total_customer_calls(), 0);

    // P's snapshot holds the new amount.
    let r = b.search(&changed).await;
    assert_eq!(r.status, 200);
    let amounts: Vec<i64> = r.loans().iter().filter_map(|l| l[f].as_i64()).collect();
    assert!(amounts.contains(&(old_amount + 77_700)), "{amounts:?}");
    assert!(!fx.expected_loans(&changed).is_empty());
}
