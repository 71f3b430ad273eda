//! The circuit breaker in the lookup path: after its threshold
//! of failures the lender gets no call until the probe, the probe is a single
//! call, and a good probe closes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use gjeldsbro::config::CacheConfig;
use gjeldsbro::index::{Index, IndexBuilder};
use gjeldsbro::lenders::breaker::State;
use gjeldsbro::lenders::{Lender, Lenders};
use gjeldsbro::lookup::{AnswerCache, Lookup, Source, TraceContext};
use gjeldsbro::metrics::Metrics;
use gjeldsbro::nin::{IdPolicy, NationalId, make_id};
use gjeldsbro_adapter::{AdapterError, CustomerQuery, LenderAdapter, Loan};

struct Flaky {
    calls: AtomicU64,
    failing: AtomicBool,
}

impl LenderAdapter for Flaky {
    fn protocol(&self) -> &'static str {
        "test"
    }
    fn fetch_customer<'a>(
        &'a self,
        _q: CustomerQuery<'a>,
    ) -> BoxFuture<'a, Result<Vec<Loan>, AdapterError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let failing = self.failing.load(Ordering::SeqCst);
        async move {
            if failing {
                Err(AdapterError::Status(500))
            } else {
                Ok(vec![])
            }
        }
        .boxed()
    }
}

/// A lookup over one lender (`adapter`) holding one person, with the cache off.
async fn lookup_over(
    adapter: Arc<dyn LenderAdapter>,
) -> (Lookup, Arc<Lenders>, NationalId, tempfile::TempDir) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let nin = NationalId::parse(
        &(100..200)
            .find_map(|i| make_id(4, 4, 74, i, false, true))
            .unwrap(),
        IdPolicy::SYNTHETIC_OK,
    )
    .unwrap();
    let lender = Lender::with_adapter(
        0,
        "lender-0",
        "920000001",
        "L0",
        Duration::from_millis(300),
        adapter,
    );
    let lenders = Arc::new(Lenders::from_list(vec![lender]));
    let mut b = IndexBuilder::with_capacity(1);
    b.push(nin.as_u64(), 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = gjeldsbro::store::open(&format!("sqlite://{}", dir.path().join("b.db").display()))
        .await
        .unwrap();
    let off = CacheConfig {
        ttl_ms: 0,
        ..CacheConfig::default()
    };
    let lookup = Lookup::new(
        Arc::new(Index::new(b.finish())),
        lenders.clone(),
        store,
        Arc::new(Metrics::new()),
        Arc::new(AnswerCache::new(&off, 1)),
    );
    (lookup, lenders, nin, dir)
}

fn trace() -> TraceContext {
    TraceContext {
        trace_id: "t".into(),
        traceparent: None,
    }
}

#[tokio::test]
async fn the_breaker_opens_waits_probes_once_and_closes() {
    let adapter = Arc::new(Flaky {
        calls: AtomicU64::new(0),
        failing: AtomicBool::new(true),
    });
    let (lookup, lenders, nin, _dir) = lookup_over(adapter.clone()).await;
    let trace = trace();
    let ask = || async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        lookup
            .person(nin, gjeldsbro_adapter::KindSet::ALL, deadline, &trace)
            .await
            .answers[0]
            .clone()
    };

    // Five failures in a row open it.
    for _ in 0..5 {
        assert_eq!(ask().await.outcome, "error");
    }
    assert_eq!(adapter.calls.load(Ordering::SeqCst), 5);
    assert_eq!(lenders.get(0).unwrap().breaker.state(), State::Open);

    // Open: no call reaches the lender, the answer comes at once from the fallback.
    let started = tokio::time::Instant::now();
    for _ in 0..20 {
        let a = ask().await;
        assert_eq!(a.outcome, "circuit_open");
        assert_ne!(a.source, Source::Live);
    }
    assert_eq!(
        adapter.calls.load(Ordering::SeqCst),
        5,
        "no call while open"
    );
    // Not waiting for anything: generous, since the count above is the proof.
    assert!(started.elapsed() < Duration::from_secs(10));

    // After the backoff, exactly one probe; the lender has recovered, so it closes.
    // (Real time here: the snapshot reads run on SQLite's thread, and a paused
    // clock would jump past the backoff while waiting for them. The breaker's
    // own timing is tested on paused time in src/lenders/breaker.rs.)
    tokio::time::sleep(Duration::from_millis(1_050)).await;
    adapter.failing.store(false, Ordering::SeqCst);
    assert_eq!(ask().await.outcome, "ok");
    assert_eq!(adapter.calls.load(Ordering::SeqCst), 6, "one probe");
    assert_eq!(lenders.get(0).unwrap().breaker.state(), State::Closed);
    for _ in 0..3 {
        assert_eq!(ask().await.source, Source::Live);
    }
    assert_eq!(adapter.calls.load(Ordering::SeqCst), 9);
}

/// Never answers.
struct Hanging(AtomicU64);

impl LenderAdapter for Hanging {
    fn protocol(&self) -> &'static str {
        "test"
    }
    fn fetch_customer<'a>(
        &'a self,
        _q: CustomerQuery<'a>,
    ) -> BoxFuture<'a, Result<Vec<Loan>, AdapterError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        futures::future::pending().boxed()
    }
}

/// A lookup abandoned before its lender answers (the client went away, or a
/// shared call's waiters all reached their deadlines a tick before the call's
/// own timeout) still counts as the lender's failure.
#[tokio::test]
async fn abandoned_calls_still_count_against_the_lender() {
    let adapter = Arc::new(Hanging(AtomicU64::new(0)));
    let (lookup, lenders, nin, _dir) = lookup_over(adapter.clone()).await;
    let trace = trace();
    for _ in 0..5 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let abandoned = tokio::time::timeout(
            Duration::from_millis(20),
            lookup.person(nin, gjeldsbro_adapter::KindSet::ALL, deadline, &trace),
        )
        .await;
        assert!(abandoned.is_err(), "the lender never answers");
    }
    assert_eq!(adapter.0.load(Ordering::SeqCst), 5);
    assert_eq!(lenders.get(0).unwrap().breaker.state(), State::Open);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let a = lookup
        .person(nin, gjeldsbro_adapter::KindSet::ALL, deadline, &trace)
        .await
        .answers[0]
        .clone();
    assert_eq!(a.outcome, "circuit_open");
    assert_eq!(adapter.0.load(Ordering::SeqCst), 5);
}
