//! A failing lender is replaced by its daily snapshot: the answer is 200 with the
//! person's loans intact, nobody missing, within the lender's timeout. Without a
//! snapshot row either, the lender counts as missing.

use crate::common;

use std::time::{Duration, Instant};

use common::{Fixture, Options};
use gjeldsbro_loadtest::sim::{Behaviour, Fault};
use serde_json::json;

const TIMEOUT_MS: u64 = 300;
/// A slow lender answers after this long: far beyond `TIMEOUT_MS` and beyond
/// `LATE_MS`, so an answer before `LATE_MS` shows the timeout cut the wait.
const SLOW_MS: u64 = 30_000;
/// Generous for two busy cores: only a broker that waited for the faulty lender
/// (a black hole never answers, a slow one after `SLOW_MS`) takes this long.
const LATE_MS: u64 = 15_000;

fn opts(down: Vec<usize>) -> Options {
    Options {
        lenders: 3,
        persons: 250,
        seed: 77,
        timeout_ms: TIMEOUT_MS,
        down,
        order: None,
        // Long enough that no probe goes out during a test, however slow the
        // machine: the searches after the threshold must not reach the lender.
        lender_extra: "breaker_backoff_ms = 60000\n".into(),
        ..Options::default()
    }
}

/// Lender 0 misbehaves as `fault` (or is down); every person it holds must still
/// get their full answer from the other lenders plus lender 0's snapshot.
async fn falls_back(fault: Option<Fault>) {
    let down = if fault.is_none() { vec![0] } else { vec![] };
    let fx = Fixture::new(opts(down)).await;
    let b = fx.broker().await;
    if let Some(f) = &fault {
        fx.sim(0).set_behaviour(Behaviour {
            fault: f.clone(),
            ..Behaviour::default()
        });
    }
    let persons = fx.persons_at(0);
    assert!(persons.len() >= 10);
    let before = snapshot_fallbacks(&b, &fx.specs[0].id).await;
    let threshold =
        gjeldsbro::lenders::breaker::BreakerSettings::default().consecutive_failures as usize;
    for (i, p) in persons.iter().take(8).enumerate() {
        let started = Instant::now();
        let r = b.search(p).await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{fault:?}: {}", r.text());
        let v = r.json();
        assert_eq!(v["numberOfcreditorsMissing"], json!(0), "{fault:?}: {v}");
        assert_eq!(
            v["numberOfCreditorsAnswered"],
            json!(fx.indexed_lenders(p).len())
        );
        assert_eq!(r.loans(), fx.expected_loans(p), "{fault:?}: loans changed");
        assert!(
            took < Duration::from_millis(LATE_MS),
            "{fault:?}: took {took:?}, as if it waited for the lender"
        );
        if fault.is_some() {
            // The faulty lender was really asked (and failed), once, until its
            // circuit breaker opened; after that it is not asked at all. A 429
            // is the lender's limit, not a failure: it never opens the breaker,
            // so that lender is asked every time (within its call rate).
            let expected = if fault == Some(Fault::Status429) {
                1
            } else {
                u64::from(i < threshold)
            };
            let calls = fx.sim(0).calls_for(p);
            assert_eq!(calls, expected, "{fault:?}, search {i}");
            fx.sim(0).reset_stats();
        }
    }
    // The answers came from the snapshot, not from a live call that got through.
    assert_eq!(
        snapshot_fallbacks(&b, &fx.specs[0].id).await - before,
        8.0,
        "{fault:?}: not every search fell back to the snapshot"
    );
}

/// `gjeldsbro_lender_fallbacks_total{lender=ID,result="snapshot"}` from /metrics.
async fn snapshot_fallbacks(b: &common::Broker, lender: &str) -> f64 {
    let text = b.ops_get("/metrics").await.text();
    text.lines()
        .filter(|l| l.starts_with("gjeldsbro_lender_fallbacks_total{"))
        .filter(|l| l.contains(&format!("\"{lender}\"")) && l.contains("\"snapshot\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn lender_down_falls_back_to_snapshot() {
    falls_back(None).await;
}

#[tokio::test]
async fn status_500_falls_back_to_snapshot() {
    falls_back(Some(Fault::Status500)).await;
}

#[tokio::test]
async fn status_429_falls_back_to_snapshot() {
    falls_back(Some(Fault::Status429)).await;
}

#[tokio::test]
async fn garbage_falls_back_to_snapshot() {
    falls_back(Some(Fault::Garbage)).await;
}

#[tokio::test]
async fn wrong_customer_falls_back_to_snapshot() {
    falls_back(Some(Fault::WrongCustomer)).await;
}

#[tokio::test]
async fn oversized_answer_falls_back_to_snapshot() {
    falls_back(Some(Fault::Oversized)).await;
}

#[tokio::test]
async fn black_hole_falls_back_to_snapshot() {
    falls_back(Some(Fault::BlackHole)).await;
}

#[tokio::test]
async fn slow_beyond_timeout_falls_back_to_snapshot() {
    falls_back(Some(Fault::Slow { ms: SLOW_MS })).await;
}

#[tokio::test]
async fn a_lender_shut_down_while_running_falls_back_to_snapshot() {
    let mut fx = Fixture::new(opts(vec![])).await;
    let b = fx.broker().await;
    let p = fx.persons_at(0)[0].clone();
    assert_eq!(b.search(&p).await.status, 200);
    // Stop the simulator (its keep-alive connection in the broker's pool dies too).
    fx.sims[0].take().unwrap().shutdown().await;
    for p in fx.persons_at(0).iter().take(4) {
        let r = b.search(p).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["numberOfcreditorsMissing"], json!(0));
        assert_eq!(r.loans(), fx.expected_loans(p));
    }
}

/// With no snapshot row either, the failing lender counts as missing: a `null`
/// loan entry at the end, `numberOfcreditorsMissing` 1, the other lenders' loans
/// still there. The index and snapshot are always loaded together, so the only
/// way to get an indexed person without snapshot rows is to remove the rows
/// behind the running broker's back (the index in memory keeps naming the lender).
#[tokio::test]
async fn failing_lender_without_snapshot_counts_as_missing() {
    let fx = Fixture::new(opts(vec![])).await;
    let b = fx.broker().await;
    fx.sim(0).set_behaviour(Behaviour {
        fault: Fault::Status500,
        ..Behaviour::default()
    });
    // Someone at lender 0 and at least one other lender.
    let p = fx
        .persons_at(0)
        .into_iter()
        .find(|p| fx.indexed_lenders(p).len() >= 2)
        .expect("a person at two lenders");
    let nin: i64 = p.parse().unwrap();
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", fx.db_path.display()))
        .await
        .unwrap();
    let removed = sqlx::query("DELETE FROM snapshot_loans WHERE nin = ? AND lender_id = ?")
        .bind(nin)
        .bind(&fx.specs[0].id)
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    assert!(removed > 0);
    pool.close().await;

    let r = b.search(&p).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["numberOfcreditorsMissing"], json!(1));
    let indexed = fx.indexed_lenders(&p).len();
    assert_eq!(v["numberOfCreditorsAnswered"], json!(indexed - 1));
    let loans = r.loans();
    assert_eq!(loans.last(), Some(&serde_json::Value::Null));
    assert_eq!(loans.iter().filter(|l| l.is_null()).count(), 1);
    // The other lenders' loans are all there, in canonical order.
    assert_eq!(loans.len() - 1, open_loans_elsewhere(&fx, &p));
    common::assert_canonical_order(&loans);
    // The missing entry names no creditor.
    assert!(
        v["loans"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .get("creditorName")
            .is_none()
    );
}

fn open_loans_elsewhere(fx: &Fixture, p: &str) -> usize {
    fx.indexed_lenders(p)
        .into_iter()
        .filter(|&i| i != 0)
        .map(|i| {
            fx.pop
                .loans_of(&fx.specs[i].id, p)
                .iter()
                .filter(|l| !l.is_closed())
                .count()
        })
        .sum()
}

/// The caller's maxTimeToWait bounds the wait when it is shorter than the
/// lender's own timeout: a black hole still falls back to the snapshot in time.
#[tokio::test]
async fn max_time_to_wait_bounds_a_slow_lender() {
    let fx = Fixture::new(Options {
        timeout_ms: 10_000,
        ..opts(vec![])
    })
    .await;
    let b = fx.broker().await;
    fx.sim(0).set_behaviour(Behaviour {
        fault: Fault::BlackHole,
        ..Behaviour::default()
    });
    let p = fx.persons_at(0)[0].clone();
    let started = Instant::now();
    let r = b
        .search_as(
            &common::fi_token(),
            &json!({"ssn": p, "referenceID": "wait", "maxTimeToWait": 1000}),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["numberOfcreditorsMissing"], json!(0));
    assert_eq!(r.loans(), fx.expected_loans(&p));
    assert!(
        took >= Duration::from_millis(900),
        "gave up early: {took:?}"
    );
    // The lender's own timeout is 10 s: an answer well before it shows that
    // maxTimeToWait, not the timeout, ended the wait (generous for busy cores).
    println!("answered after {took:?} (maxTimeToWait 1 s, lender timeout 10 s)");
    assert!(
        took < Duration::from_millis(8_000),
        "took {took:?}: the lender timeout, not maxTimeToWait, ended the wait"
    );
}
