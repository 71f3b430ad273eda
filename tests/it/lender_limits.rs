//! Per-lender protection against the running broker and a simulated lender: the
//! lender never sees more calls in flight than its cap, nor more calls per second
//! than its rate, and the lookups beyond either still answer from the snapshot.

use crate::common;

use std::sync::Arc;
use std::time::Instant;

use common::{Broker, Fixture, Options, client, fi_token};
use gjeldsbro_loadtest::sim::{Behaviour, Latency};
use serde_json::json;

/// A broker where lender 0 has the given limits and the bank a quota high
/// enough that only the lender's limits are in play.
async fn limited_broker(fx: &Fixture, lender_limits: &str) -> Broker {
    let lender0 = format!("id = \"{}\"\n", fx.specs[0].id);
    let limits = lender_limits.to_owned();
    fx.broker_with(move |text| {
        let text = text
            .replace(
                "roles = [\"financial_institution\"]\n",
                "roles = [\"financial_institution\"]\nrequests_per_second = 100000\n",
            )
            .replace(&lender0, &format!("{lender0}{limits}"));
        assert!(text.contains(&limits), "the limits went in");
        text
    })
    .await
}

async fn search(url: &str, ssn: &str) -> (u16, serde_json::Value) {
    let r = client()
        .post(format!("{url}/api/rest/v2/debt/search"))
        .bearer_auth(fi_token())
        .json(&json!({"ssn": ssn, "referenceID": "lender-limits"}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_lender_never_has_more_than_its_cap_in_flight() {
    let fx = Fixture::new(Options {
        persons: 1500,
        timeout_ms: 3000,
        ..Options::default()
    })
    .await;
    let b = limited_broker(&fx, "max_in_flight = 4\nrequests_per_second = 100000\n").await;
    fx.sim(0).set_behaviour(Behaviour {
        latency: Latency::Fixed { ms: 300 },
        ..Behaviour::default()
    });
    fx.reset_stats();
    let persons = fx.persons_at(0);
    assert!(persons.len() >= 200, "population has {}", persons.len());
    let url = Arc::new(b.url.clone());
    let tasks: Vec<_> = persons[..200]
        .iter()
        .map(|p| {
            let (url, p) = (url.clone(), p.clone());
            tokio::spawn(async move { search(&url, &p).await.0 })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.unwrap(),
            200,
            "beyond the cap, the snapshot answers"
        );
    }
    let stats = fx.sim(0).stats();
    assert!(
        stats.max_in_flight <= 4,
        "the lender saw {} calls in flight",
        stats.max_in_flight
    );
    assert!(
        stats.max_in_flight >= 2,
        "the lookups did overlap at the lender"
    );
    assert!(
        stats.customer_calls < 200,
        "the lookups beyond the cap were not sent: {} calls",
        stats.customer_calls
    );
    let text = b.ops_get("/metrics").await.text();
    let limited = format!(
        "gjeldsbro_lender_calls_total{{lender=\"{}\",outcome=\"limited\"}}",
        fx.specs[0].id
    );
    assert!(
        text.lines().any(|l| l.starts_with(&limited)),
        "lookups beyond the cap are counted as limited"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lender_never_gets_more_than_its_call_rate() {
    let fx = Fixture::new(Options {
        persons: 1500,
        timeout_ms: 3000,
        ..Options::default()
    })
    .await;
    let b = limited_broker(&fx, "requests_per_second = 5\n").await;
    fx.reset_stats();
    let persons = fx.persons_at(0);
    let started = Instant::now();
    for p in persons.iter().take(40) {
        assert_eq!(search(&b.url, p).await.0, 200);
    }
    let elapsed = started.elapsed();
    let calls = fx.sim(0).stats().customer_calls;
    // One second of burst, then the refill over the time the lookups took.
    let allowed = 5 + (elapsed.as_secs_f64() * 5.0).ceil() as u64;
    assert!(
        calls <= allowed,
        "{calls} calls in {elapsed:?}, allowed {allowed}"
    );
    assert!(calls >= 5, "the burst was used: {calls}");
}
