//! Retries against the running broker and a simulated lender: a lender that
//! answers `503` to every other call still answers every lookup live, because
//! the failed call is retried at once within the lender's timeout; one that
//! answers `500` (a fault that would repeat) is asked once and the snapshot
//! answers.

use crate::common;

use common::{Broker, Fixture, Options, fi_token};
use gjeldsbro_loadtest::sim::{Behaviour, Fault};
use serde_json::json;

/// `gjeldsbro_lender_calls_total` and `gjeldsbro_lender_fallbacks_total` lines
/// for one lender, summed by a label value.
async fn metric(b: &Broker, name: &str, lender: &str, label: &str) -> f64 {
    let text = b.ops_get("/metrics").await.text();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| l.contains(&format!("lender=\"{lender}\"")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_briefly_unavailable_lender_is_retried_and_answers_live() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let lender = fx.specs[0].id.clone();
    fx.sim(0).set_behaviour(Behaviour {
        fault: Fault::Unavailable { every: 2 },
        ..Behaviour::default()
    });
    fx.reset_stats();
    let persons: Vec<_> = fx.persons_at(0).into_iter().take(8).collect();
    for p in &persons {
        let r = b
            .search_as(&fi_token(), &json!({"ssn": p, "referenceID": "retry"}))
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(fx.sim(0).calls_for(p), 2, "a 503, then the retry");
    }
    assert_eq!(
        metric(&b, "gjeldsbro_lender_fallbacks_total", &lender, "snapshot").await,
        0.0,
        "every answer was live"
    );
    assert_eq!(
        metric(
            &b,
            "gjeldsbro_lender_calls_total",
            &lender,
            "outcome=\"ok\""
        )
        .await,
        persons.len() as f64
    );
    let retries = metric(&b, "gjeldsbro_lender_extra_calls_total", &lender, "retry").await;
    assert_eq!(retries, persons.len() as f64);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_500_is_not_retried() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    fx.sim(0).set_behaviour(Behaviour {
        fault: Fault::Status500,
        ..Behaviour::default()
    });
    fx.reset_stats();
    let p = fx.persons_at(0)[0].clone();
    let r = b
        .search_as(&fi_token(), &json!({"ssn": p, "referenceID": "retry"}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(fx.sim(0).calls_for(&p), 1);
    assert_eq!(
        metric(
            &b,
            "gjeldsbro_lender_fallbacks_total",
            &fx.specs[0].id,
            "snapshot"
        )
        .await,
        1.0
    );
}
