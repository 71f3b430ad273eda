//! Load shedding against the running broker: with two requests running and two
//! waiting, the rest are refused with `503`, `Retry-After` and the error JSON at
//! once (before any admitted request has finished), a queued request that
//! cannot get a turn in time is refused too, and health and metrics stay
//! reachable throughout.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Fixture, Options, client, fi_token};
use gjeldsbro_loadtest::sim::{Behaviour, Latency};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn beyond_the_queue_requests_are_refused_at_once() {
    let fx = Fixture::new(Options {
        timeout_ms: 10_000,
        ..Options::default()
    })
    .await;
    let b = fx
        .broker_with(|text| {
            // [overload] must come before the [[lenders]] arrays of tables.
            let at = text.find("[[lenders]]").unwrap();
            format!(
                "{}[overload]\nmax_concurrent = 2\nmax_queued = 2\nmax_queue_wait_ms = 300\n\n{}",
                &text[..at],
                &text[at..]
            )
        })
        .await;
    for (_, sim) in fx.live_sims() {
        sim.set_behaviour(Behaviour {
            // Far beyond the queue wait (300 ms): every refusal comes before the
            // first admitted answer however slowly a busy machine sends them.
            latency: Latency::Fixed { ms: 4000 },
            ..Behaviour::default()
        });
    }
    let persons = fx.persons_with_lenders(1);
    assert!(persons.len() >= 10);
    let url = Arc::new(b.url.clone());
    let finished = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = persons[..10]
        .iter()
        .map(|p| {
            let (url, p, finished) = (url.clone(), p.clone(), finished.clone());
            tokio::spawn(async move {
                let r = client()
                    .post(format!("{url}/api/rest/v2/debt/search"))
                    .bearer_auth(fi_token())
                    .json(&json!({"ssn": p, "referenceID": "overload"}))
                    .send()
                    .await
                    .unwrap();
                let order = finished.fetch_add(1, Ordering::SeqCst);
                let status = r.status().as_u16();
                let retry_after = r.headers().get("retry-after").cloned();
                let body: serde_json::Value = r.json().await.unwrap();
                (status, order, retry_after, body)
            })
        })
        .collect();
    // While they run, the operational routes answer.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(b.get("/healthz").await.status, 200);
    assert_eq!(b.ops_get("/metrics").await.status, 200);

    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for t in tasks {
        let (status, order, retry_after, body) = t.await.unwrap();
        match status {
            200 => admitted.push(order),
            503 => {
                assert_eq!(retry_after.unwrap(), "1");
                assert_eq!(body["error"], "service_unavailable");
                refused.push(order);
            }
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(admitted.len(), 2, "two ran; the queued ones timed out");
    assert_eq!(refused.len(), 8);
    let first_admitted = *admitted.iter().min().unwrap();
    assert!(
        refused.iter().all(|&o| o < first_admitted),
        "every refusal came before the first admitted answer"
    );
    let metrics = b.ops_get("/metrics").await.text();
    let count = |reason: &str| -> f64 {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "gjeldsbro_overload_rejected_total{{reason=\"{reason}\"}}"
                ))
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    assert_eq!(count("queue_full"), 6.0);
    assert_eq!(count("queue_timeout"), 2.0);
}
