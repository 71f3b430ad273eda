//! The lender simulator over real HTTP.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gjeldsbro_adapter::{CustomerLoans, DatasetPage};
use gjeldsbro_loadtest::{
    Behaviour, Fault, Flapping, Latency, LenderSpec, SimHandle, SimStats, generate, sim,
};
use reqwest::StatusCode;

const ORG: &str = "920000001";

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A simulator serving lender-1 of a small population, and that dataset.
async fn start(behaviour: Behaviour) -> (SimHandle, Vec<CustomerLoans>, Vec<String>) {
    let pop = generate(99, 200, &LenderSpec::numbered(2));
    let dataset = pop.dataset("lender-1");
    let strangers = pop
        .persons()
        .iter()
        .filter(|p| !pop.lenders_of(p).contains(&"lender-1"))
        .cloned()
        .collect();
    let sim = sim::spawn(any_port(), ORG.into(), dataset.clone(), behaviour)
        .await
        .unwrap();
    (sim, dataset, strangers)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn ask(sim: &SimHandle, id: &str) -> reqwest::Response {
    ask_with(&client(), sim, id).await.unwrap()
}

async fn ask_with(
    client: &reqwest::Client,
    sim: &SimHandle,
    id: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .get(format!(
            "{}/debt-information/v1/loans/{ORG}/customer",
            sim.base_url()
        ))
        .header("customerID", id)
        .send()
        .await
}

fn faulty(fault: Fault) -> Behaviour {
    Behaviour {
        fault,
        ..Behaviour::default()
    }
}

#[tokio::test]
async fn known_and_unknown_customers_are_answered_and_counted() {
    let (sim, dataset, strangers) = start(Behaviour::default()).await;
    assert!(sim.base_url().starts_with("http://127.0.0.1:"));
    let known = &dataset[3];
    let resp = ask(&sim, &known.customer_id).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: CustomerLoans = resp.json().await.unwrap();
    assert_eq!(&body, known);
    ask(&sim, &known.customer_id).await;

    let stranger = &strangers[0];
    let resp = ask(&sim, stranger).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let raw: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(raw["customerID"], stranger.as_str());
    assert_eq!(raw["financialInstitutionID"], ORG);
    assert_eq!(raw["loans"], serde_json::json!([]));

    assert_eq!(sim.calls_for(&known.customer_id), 2);
    assert_eq!(sim.calls_for(stranger), 1);
    assert_eq!(sim.calls_for(&dataset[4].customer_id), 0);
    let stats = sim.stats();
    assert_eq!(stats.customer_calls, 3);
    assert_eq!(stats.dataset_calls, 0);
    assert_eq!(stats.in_flight, 0);
    assert!(stats.max_in_flight >= 1);

    sim.reset_stats();
    assert_eq!(sim.calls_for(&known.customer_id), 0);
    assert_eq!(sim.calls_for(stranger), 0);
    assert_eq!(sim.stats(), SimStats::default());
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_400_and_other_orgs_404() {
    let (sim, dataset, _) = start(Behaviour::default()).await;
    let c = client();
    let url = format!(
        "{}/debt-information/v1/loans/{ORG}/customer",
        sim.base_url()
    );
    let missing = c
        .get(&url)
        .header("X-Trace-ID", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let err: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(err["trace_id"], "trace-123");
    for key in ["error", "error_description", "timestamp"] {
        assert!(err[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
    for bad in ["1234567890", "123456789012", "1234567890a"] {
        let resp = ask(&sim, bad).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            !resp.text().await.unwrap().contains(bad),
            "error echoes the input"
        );
    }
    let other = c
        .get(format!(
            "{}/debt-information/v1/loans/999999999/customer",
            sim.base_url()
        ))
        .header("customerID", &dataset[0].customer_id)
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    let ds = c
        .get(format!(
            "{}/debt-information/v1/loans/999999999",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ds.status(), StatusCode::NOT_FOUND);
    assert_eq!(sim.calls_for(&dataset[0].customer_id), 0);
}

#[tokio::test]
async fn status_faults() {
    let (sim, dataset, _) = start(faulty(Fault::Status500)).await;
    let id = &dataset[0].customer_id;
    let resp = ask(&sim, id).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let err: serde_json::Value = resp.json().await.unwrap();
    assert!(err["error"].is_string());

    sim.set_behaviour(faulty(Fault::Status429));
    let resp = ask(&sim, id).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(resp.headers()["retry-after"], "1");

    sim.set_behaviour(Behaviour::default());
    assert_eq!(ask(&sim, id).await.status(), StatusCode::OK);
    // Faults do not touch the dataset endpoint.
    sim.set_behaviour(faulty(Fault::Status500));
    let ds = client()
        .get(format!(
            "{}/debt-information/v1/loans/{ORG}",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ds.status(), StatusCode::OK);
    assert_eq!(sim.calls_for(id), 3);
}

#[tokio::test]
async fn garbage_wrong_customer_and_oversized() {
    let (sim, dataset, strangers) = start(faulty(Fault::Garbage)).await;
    let id = &dataset[0].customer_id;
    let resp = ask(&sim, id).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());

    sim.set_behaviour(faulty(Fault::WrongCustomer));
    for asked in [id, &strangers[0]] {
        let resp = ask(&sim, asked).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: CustomerLoans = resp.json().await.unwrap();
        assert_eq!(body.customer_id.len(), 11);
        assert_ne!(&body.customer_id, asked);
    }

    sim.set_behaviour(faulty(Fault::Oversized));
    let resp = ask(&sim, id).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.bytes().await.unwrap();
    assert!(bytes.len() >= 3 * 1024 * 1024, "{} bytes", bytes.len());
    let body: CustomerLoans = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(&body.customer_id, id);
    assert!(body.loans.iter().all(|l| l.validate().is_ok()));
}

#[tokio::test]
async fn black_hole_holds_until_the_client_gives_up() {
    let (sim, dataset, _) = start(faulty(Fault::BlackHole)).await;
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = ask_with(&short, &sim, &dataset[0].customer_id)
        .await
        .expect_err("a black hole never answers");
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(sim.stats().max_in_flight, 1);
    // The server notices the client left and lets the request go.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sim.stats().in_flight > 0 {
        assert!(
            Instant::now() < deadline,
            "request still held after the client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Shutdown is not blocked by a held request.
    let held = tokio::spawn({
        let url = format!(
            "{}/debt-information/v1/loans/{ORG}/customer",
            sim.base_url()
        );
        let id = dataset[0].customer_id.clone();
        async move { client().get(url).header("customerID", id).send().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sim.stats().in_flight, 1);
    tokio::time::timeout(Duration::from_secs(5), sim.shutdown())
        .await
        .expect("graceful shutdown with a held request");
    let answered = held.await.unwrap();
    assert!(answered.is_err() || answered.unwrap().status() == StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn slow_fault_and_latency_delay_the_answer() {
    let (sim, dataset, _) = start(faulty(Fault::Slow { ms: 250 })).await;
    let id = &dataset[0].customer_id;
    let started = Instant::now();
    let resp = ask(&sim, id).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(resp.json::<CustomerLoans>().await.unwrap(), dataset[0]);

    sim.set_behaviour(Behaviour {
        latency: Latency::Fixed { ms: 150 },
        ..Behaviour::default()
    });
    let started = Instant::now();
    assert_eq!(ask(&sim, id).await.status(), StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));

    sim.set_behaviour(Behaviour {
        latency: Latency::Bimodal {
            fast_ms: 0,
            slow_ms: 200,
            slow_fraction: 1.0,
        },
        ..Behaviour::default()
    });
    let started = Instant::now();
    ask(&sim, id).await;
    assert!(started.elapsed() >= Duration::from_millis(200));

    sim.set_behaviour(Behaviour::default());
    let started = Instant::now();
    ask(&sim, id).await;
    assert!(started.elapsed() < Duration::from_millis(150));
}

#[tokio::test]
async fn concurrent_calls_are_counted_in_flight() {
    let (sim, dataset, _) = start(faulty(Fault::Slow { ms: 300 })).await;
    let c = client();
    let calls = (0..5).map(|i| ask_with(&c, &sim, &dataset[i].customer_id));
    let answers = futures::future::join_all(calls).await;
    assert!(
        answers
            .iter()
            .all(|r| r.as_ref().unwrap().status() == StatusCode::OK)
    );
    let stats = sim.stats();
    assert_eq!(stats.customer_calls, 5);
    assert_eq!(stats.in_flight, 0);
    assert!(stats.max_in_flight >= 4, "{stats:?}");
}

#[tokio::test]
async fn error_rate_and_flapping() {
    let (sim, dataset, _) = start(Behaviour {
        error_rate: 1.0,
        ..Behaviour::default()
    })
    .await;
    let id = &dataset[0].customer_id;
    for _ in 0..5 {
        assert_eq!(
            ask(&sim, id).await.status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
    sim.set_behaviour(Behaviour {
        error_rate: 0.5,
        ..Behaviour::default()
    });
    let mut failed = 0;
    for _ in 0..100 {
        if ask(&sim, id).await.status() == StatusCode::INTERNAL_SERVER_ERROR {
            failed += 1;
        }
    }
    assert!((20..=80).contains(&failed), "{failed} of 100 failed");

    sim.set_behaviour(Behaviour {
        flapping: Some(Flapping {
            up_ms: 300,
            down_ms: 60_000,
        }),
        ..Behaviour::default()
    });
    assert_eq!(ask(&sim, id).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        ask(&sim, id).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
}

async fn page(sim: &SimHandle, query: &str) -> reqwest::Response {
    client()
        .get(format!(
            "{}/debt-information/v1/loans/{ORG}{query}",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn paging_splits_the_dataset() {
    let (sim, dataset, _) = start(Behaviour::default()).await;
    assert!(dataset.len() > 20);

    // Default: all on page 0, nothing after; no page parameter means page 0.
    let whole: DatasetPage = page(&sim, "").await.json().await.unwrap();
    assert_eq!(whole.provider_id, "9908:920000001");
    assert_eq!(whole.customers, dataset);
    let p0: DatasetPage = page(&sim, "?page=0").await.json().await.unwrap();
    assert_eq!(p0.customers, dataset);
    let p1: DatasetPage = page(&sim, "?page=1").await.json().await.unwrap();
    assert!(p1.customers.is_empty());
    assert_eq!(
        page(&sim, "?page=-1").await.status(),
        StatusCode::BAD_REQUEST
    );

    let size = 7;
    sim.set_behaviour(Behaviour {
        page_size: Some(size),
        ..Behaviour::default()
    });
    let mut union = Vec::new();
    let mut n = 0;
    loop {
        let p: DatasetPage = page(&sim, &format!("?page={n}"))
            .await
            .json()
            .await
            .unwrap();
        assert!(p.customers.len() <= size);
        let last = p.customers.len() < size;
        union.extend(p.customers);
        n += 1;
        if last {
            break;
        }
        assert!(n < 1000);
    }
    assert_eq!(n, dataset.len() / size + 1);
    assert_eq!(union, dataset);
    let past: DatasetPage = page(&sim, "?page=500").await.json().await.unwrap();
    assert!(past.customers.is_empty());
    assert_eq!(sim.stats().dataset_calls, 4 + n as u64 + 1);
    assert_eq!(sim.stats().customer_calls, 0);
}

#[tokio::test]
async fn admin_api_steers_the_simulator() {
    let (sim, dataset, _) = start(Behaviour::default()).await;
    let c = client();
    let id = &dataset[0].customer_id;
    assert_eq!(ask(&sim, id).await.status(), StatusCode::OK);

    let stats: SimStats = c
        .get(format!("{}/__sim/stats", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats.customer_calls, 1);

    let put = c
        .put(format!("{}/__sim/behaviour", sim.base_url()))
        .body(r#"{"fault":"status429","latency":{"fixed":{"ms":1}}}"#)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
    assert_eq!(sim.behaviour().fault, Fault::Status429);
    assert_eq!(ask(&sim, id).await.status(), StatusCode::TOO_MANY_REQUESTS);

    let typo = c
        .put(format!("{}/__sim/behaviour", sim.base_url()))
        .body(r#"{"faults":"status500"}"#)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert!(typo.status().is_client_error());
    assert_eq!(sim.behaviour().fault, Fault::Status429);

    let reset = c
        .post(format!("{}/__sim/reset", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert!(reset.status().is_success());
    assert_eq!(sim.stats().customer_calls, 0);
    assert_eq!(sim.calls_for(id), 0);
}

#[test]
fn behaviour_json_round_trips() {
    let b = Behaviour {
        latency: Latency::LogNormal {
            median_ms: 20.0,
            sigma: 0.5,
        },
        error_rate: 0.01,
        fault: Fault::Slow { ms: 10 },
        flapping: Some(Flapping {
            up_ms: 1000,
            down_ms: 500,
        }),
        page_size: Some(100),
    };
    let json = serde_json::to_string(&b).unwrap();
    assert_eq!(serde_json::from_str::<Behaviour>(&json).unwrap(), b);
    let empty: Behaviour = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, Behaviour::default());
    assert_eq!(empty.latency, Latency::Fixed { ms: 0 });
    let bh: Behaviour = serde_json::from_str(r#"{"fault":"black_hole"}"#).unwrap();
    assert_eq!(bh.fault, Fault::BlackHole);
}

#[tokio::test]
async fn shutdown_frees_the_port() {
    let (sim, dataset, _) = start(Behaviour::default()).await;
    let addr = sim.addr();
    assert_eq!(
        ask(&sim, &dataset[0].customer_id).await.status(),
        StatusCode::OK
    );
    sim.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

/// The broken-lender modes `lender-check` is tested against.
#[tokio::test]
async fn lender_check_faults_break_one_rule_each() {
    let (sim, dataset, strangers) = start(faulty(Fault::NotFoundForUnknown)).await;
    assert_eq!(
        ask(&sim, &strangers[0]).await.status(),
        StatusCode::NOT_FOUND
    );
    let known = dataset.iter().find(|c| !c.loans.is_empty()).unwrap();
    let body: CustomerLoans = ask(&sim, &known.customer_id).await.json().await.unwrap();
    assert_eq!(&body, known, "known customers are answered normally");

    sim.set_behaviour(faulty(Fault::NegativeAmount));
    let body: serde_json::Value = ask(&sim, &known.customer_id).await.json().await.unwrap();
    let first = &body["loans"][0];
    let amount = first
        .get("balance")
        .or_else(|| first.get("interestBearingBalance"))
        .and_then(serde_json::Value::as_i64)
        .unwrap();
    assert!(amount < 0, "{first}");
    assert_eq!(ask(&sim, &strangers[0]).await.status(), StatusCode::OK);

    sim.set_behaviour(faulty(Fault::MissingCoBorrower));
    let body: serde_json::Value = ask(&sim, &known.customer_id).await.json().await.unwrap();
    let loans = body["loans"].as_array().unwrap();
    assert!(!loans.is_empty());
    assert!(
        loans.iter().all(|l| l.get("coBorrower").is_none()),
        "{body}"
    );
}
