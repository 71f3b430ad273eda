//! Intraday pushes over HTTP against a running broker and real simulated lenders:
//! a new loan enters the index at once, a repaid loan leaves it, a lender may push
//! only for itself, and a push that breaks a rule changes nothing.

use std::sync::Arc;
use std::time::Duration;

use gjeldsbro::app::{AppState, serve};
use gjeldsbro::auth::devtoken::{DEV_KID, DevClaims, mint};
use gjeldsbro::config::Config;
use gjeldsbro::nin::{IdPolicy, NationalId, make_id};
use gjeldsbro_loadtest::sim::{self, Behaviour, SimHandle};
use serde_json::{Value, json};

const KEY: &[u8] = include_bytes!("../../config/dev-signing-key.pem");
const ISS: &str = "https://issuer.test";
const AUD: &str = "gjeldsbro";

struct Broker {
    url: String,
    state: Arc<AppState>,
    lenders: Vec<SimHandle>,
    config: String,
    _dir: tempfile::TempDir,
}

/// A second broker instance on the same store (its own pool, index and origin).
async fn second_instance(b: &Broker) -> Arc<AppState> {
    let state = AppState::build(Config::parse(&b.config).unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    tokio::spawn(serve(state.clone(), listener, std::future::pending()));
    state
}

fn token(org: &str, scope: &str) -> String {
    mint(
        KEY,
        DEV_KID,
        ISS,
        AUD,
        DevClaims {
            org_no: Some(org.into()),
            scopes: vec![scope.into()],
            pid: None,
            ttl_secs: 600,
        },
    )
    .unwrap()
}

async fn start() -> Broker {
    start_with("").await
}

/// A broker whose config has `extra` top-level keys.
async fn start_with(extra: &str) -> Broker {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut lenders = Vec::new();
    for org in ["920000001", "920000002"] {
        lenders.push(
            sim::spawn(
                "127.0.0.1:0".parse().unwrap(),
                org.into(),
                vec![],
                Behaviour::default(),
            )
            .await
            .unwrap(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/config/dev-jwks.json");
    let mut text = format!(
        "listen = \"127.0.0.1:0\"\naccept_synthetic_ids = true\ndev_mode = true\n{extra}[store]\nurl = \"sqlite://{}\"\n\
         [auth]\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\njwks_file = \"{jwks}\"\n\
         [[clients]]\norg_no = \"910000001\"\nname = \"Bank\"\nroles = [\"financial_institution\"]\n\
         [[clients]]\norg_no = \"910000009\"\nname = \"Drift\"\nroles = [\"operator\"]\n",
        dir.path().join("b.db").display()
    );
    for (i, l) in lenders.iter().enumerate() {
        text.push_str(&format!(
            "[[clients]]\norg_no = \"{org}\"\nname = \"L{i}\"\nroles = [\"lender\"]\n\
             [[lenders]]\nid = \"lender-{i}\"\norg_no = \"{org}\"\nname = \"L{i}\"\nadapter = \"api-debt-fi\"\nbase_url = \"{url}\"\ntimeout_ms = 300\n",
            org = l.org_no(),
            url = l.base_url()
        ));
    }
    let state = AppState::build(Config::parse(&text).unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(state.clone(), listener, std::future::pending()));
    Broker {
        url,
        state,
        lenders,
        config: text,
        _dir: dir,
    }
}

fn person() -> (String, NationalId) {
    let s = (100..200)
        .find_map(|i| make_id(12, 5, 77, i, false, true))
        .unwrap();
    let n = NationalId::parse(&s, IdPolicy::SYNTHETIC_OK).unwrap();
    (s, n)
}

fn body(org: &str, ssn: &str, balance: i64) -> Value {
    json!({"providerID": format!("9908:{org}"), "customers": [{
        "customerID": ssn, "financialInstitutionID": org,
        "loans": [{"type": "repaymentLoan", "accountID": "ACC-9", "coBorrower": 0,
                   "originalBalance": 100000, "balance": balance, "terms": 10,
                   "nominalInterestRate": 990, "installmentCharges": 0}]}]})
}

async fn post(b: &Broker, token: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/debt-information/v1/loans", b.url))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn search(b: &Broker, ssn: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/api/rest/v2/debt/search", b.url))
        .bearer_auth(token("910000001", "debt.search"))
        .json(&json!({"ssn": ssn, "referenceID": "r"}))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_new_loan_enters_the_index_at_once_and_a_repaid_one_leaves_it() {
    let b = start().await;
    let (ssn, nin) = person();
    let lender_token = token("920000001", "debt.delivery");
    assert_eq!(search(&b, &ssn).await, 204);

    let (status, _) = post(&b, &lender_token, &body("920000001", &ssn, 50_000)).await;
    assert_eq!(status, 200);
    assert_eq!(b.state.lookup.index.lenders_of(nin), vec![0]);
    // The lender itself is now asked (its live answer is empty: the simulator does
    // not know the loan), and the other lender is not.
    assert_eq!(search(&b, &ssn).await, 200);
    assert_eq!(b.lenders[0].calls_for(&ssn), 1);
    assert_eq!(b.lenders[1].calls_for(&ssn), 0);
    // The pushed loan is in the snapshot, so a failing lender is covered.
    b.lenders[0].set_behaviour(Behaviour {
        fault: gjeldsbro_loadtest::sim::Fault::Status500,
        ..Behaviour::default()
    });
    let snap = b
        .state
        .lookup
        .store
        .snapshot_for("lender-0", nin)
        .await
        .unwrap();
    assert_eq!(snap.len(), 1);
    assert_eq!(snap[0].balance, Some(50_000));

    // Repaid: all amounts 0 closes the loan and the person leaves the index.
    let (status, _) = post(&b, &lender_token, &body("920000001", &ssn, 0)).await;
    assert_eq!(status, 200);
    assert!(b.state.lookup.index.lenders_of(nin).is_empty());
    assert!(
        b.state
            .lookup
            .store
            .snapshot_for("lender-0", nin)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(search(&b, &ssn).await, 204);
}

#[tokio::test]
async fn a_lender_may_push_only_for_itself() {
    let b = start().await;
    let (ssn, nin) = person();
    // Lender 1 pushing lender 2's data, as body or as providerID.
    let (status, err) = post(
        &b,
        &token("920000001", "debt.delivery"),
        &body("920000002", &ssn, 5),
    )
    .await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["error"], "forbidden");
    assert!(b.state.lookup.index.lenders_of(nin).is_empty());
    // A bank is no lender; a lender without the delivery scope is refused.
    assert_eq!(
        post(
            &b,
            &token("910000001", "debt.delivery"),
            &body("910000001", &ssn, 5)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        post(
            &b,
            &token("920000001", "debt.search"),
            &body("920000001", &ssn, 5)
        )
        .await
        .0,
        403
    );
    assert!(b.state.lookup.index.lenders_of(nin).is_empty());
}

#[tokio::test]
async fn a_push_breaking_a_rule_changes_nothing() {
    let b = start().await;
    let (ssn, nin) = person();
    let lender_token = token("920000001", "debt.delivery");
    let mut bad = body("920000001", &ssn, 7);
    // A second customer with a negative amount rejects the whole push.
    let other = (300..400)
        .find_map(|i| make_id(3, 3, 66, i, false, true))
        .unwrap();
    bad["customers"].as_array_mut().unwrap().push(json!({
        "customerID": other, "financialInstitutionID": "920000001",
        "loans": [{"type": "chargeCard", "accountID": "C", "coBorrower": 0,
                   "interestBearingBalance": -1, "nonInterestBearingBalance": 0}]}));
    let (status, err) = post(&b, &lender_token, &bad).await;
    assert_eq!(status, 400);
    let text = err.to_string();
    assert!(
        text.contains("negative_amount") && text.contains("#1"),
        "{text}"
    );
    assert!(!text.contains(&ssn) && !text.contains(&other));
    assert!(b.state.lookup.index.lenders_of(nin).is_empty());
    assert!(
        b.state
            .lookup
            .store
            .snapshot_for("lender-0", nin)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn another_instance_on_the_same_store_follows_pushes_within_a_second() {
    let b = start().await;
    let other = second_instance(&b).await;
    let (ssn, nin) = person();
    let lender_token = token("920000001", "debt.delivery");
    assert_eq!(
        post(&b, &lender_token, &body("920000001", &ssn, 50_000))
            .await
            .0,
        200
    );
    let started = std::time::Instant::now();
    while other.lookup.index.lenders_of(nin).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the other instance never saw the push"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(other.lookup.index.lenders_of(nin), vec![0]);
    // And the repayment.
    assert_eq!(
        post(&b, &lender_token, &body("920000001", &ssn, 0)).await.0,
        200
    );
    let started = std::time::Instant::now();
    while !other.lookup.index.lenders_of(nin).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the other instance never saw the repayment"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_push_over_the_size_limit_is_refused_whole_with_or_without_a_length() {
    let b = start_with("max_push_bytes = 4096\n").await;
    let (ssn, nin) = person();
    let lender_token = token("920000001", "debt.delivery");
    let mut big = body("920000001", &ssn, 5);
    big["padding"] = json!("x".repeat(10_000));
    // With Content-Length: refused before reading.
    let (status, err) = post(&b, &lender_token, &big).await;
    assert_eq!(status, 413, "{err}");
    assert_eq!(err["error"], "payload_too_large");
    // Chunked, no length: refused while streaming.
    let bytes = serde_json::to_vec(&big).unwrap();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(1000).map(|c| Ok(c.to_vec())).collect();
    let r = reqwest::Client::new()
        .post(format!("{}/debt-information/v1/loans", b.url))
        .bearer_auth(&lender_token)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert!(b.state.lookup.index.lenders_of(nin).is_empty());
    // A push under the limit still works.
    assert_eq!(
        post(&b, &lender_token, &body("920000001", &ssn, 5)).await.0,
        200
    );
    assert_eq!(b.state.lookup.index.lenders_of(nin), vec![0]);
}
