//! The call stack to one lender, built from tower's own middleware: retries of
//! transient failures (`tower::retry`) under a retry budget (`TpsBudget`), and,
//! when the lender's config asks for it, hedging (`tower::hedge`): a second call
//! once the first has taken longer than a high percentile of recent calls.
//!
//! Admission (the in-flight cap, the call rate, the circuit breaker) and the
//! lookup's overall timeout stay with the caller (`lookup::Lookup::call`): a
//! logical call holds one in-flight permit however many attempts it makes, and
//! the breaker judges the logical call. Extra attempts still count against the
//! lender's call rate, and a hedge needs an in-flight permit of its own, so the
//! lender never sees more than its caps because of them.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gjeldsbro_adapter::{AdapterError, CustomerQuery, LenderAdapter, Loan};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::hedge::Hedge;
use tower::retry::Retry;
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::budget::{Budget, TpsBudget};
use tower::util::rng::HasherRng;
use tower::{Service, ServiceExt};

use super::CallRate;
use crate::nin::NationalId;

/// How a lender's calls are retried and hedged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallPolicy {
    /// Retries of one call at most (connect failures, resets, 502/503/504).
    pub max_retries: u32,
    /// Retries may add at most this share of calls (0.2 = 20 %), plus one a second.
    pub retry_budget: f32,
    /// Hedging, off by default.
    pub hedge: Option<HedgePolicy>,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            max_retries: 2,
            retry_budget: 0.2,
            hedge: None,
        }
    }
}

/// When a second call goes out, and how many there may be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgePolicy {
    /// The latency quantile of recent calls after which the hedge goes (0.95).
    pub quantile: f32,
    /// Hedges may add at most this share of calls (0.1 = 10 %).
    pub budget: f32,
    /// Calls seen in the previous period before hedging starts.
    pub min_data_points: u64,
    /// The latency histogram's period.
    pub period: Duration,
}

impl Default for HedgePolicy {
    fn default() -> Self {
        HedgePolicy {
            quantile: 0.95,
            budget: 0.1,
            min_data_points: 20,
            period: Duration::from_secs(10),
        }
    }
}

/// How long a budget remembers deposits (tower's window; 1–60 s).
const BUDGET_TTL: Duration = Duration::from_secs(10);
/// First and largest pause before a retry (jittered, doubling).
const BACKOFF_MIN: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_millis(100);

/// One attempt's request: everything needed to (re)send it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub nin: NationalId,
    pub trace_id: Arc<str>,
    pub traceparent: Option<Arc<str>>,
    /// The end of the logical call; no retry or hedge starts that could not
    /// finish before it.
    pub deadline: Instant,
    /// The breaker's single probe: no retries, no hedge.
    pub probe: bool,
    hedge: bool,
}

impl Attempt {
    pub fn new(
        nin: NationalId,
        trace_id: Arc<str>,
        traceparent: Option<Arc<str>>,
        deadline: Instant,
        probe: bool,
    ) -> Self {
        Attempt {
            nin,
            trace_id,
            traceparent,
            deadline,
            probe,
            hedge: false,
        }
    }
}

/// The caps the extra attempts must respect, shared with the lender.
#[derive(Clone)]
struct Caps {
    in_flight: Arc<Semaphore>,
    call_rate: Arc<CallRate>,
}

/// Where extra calls are counted, once metrics exist (they are made after the
/// lenders, and a lender without them, in tests and benches, counts nothing).
#[derive(Debug)]
pub struct ExtraCalls {
    pub retries: prometheus::IntCounter,
    pub hedges: prometheus::IntCounter,
}

type Counters = Arc<std::sync::OnceLock<ExtraCalls>>;

/// The innermost service: one call through the adapter.
#[derive(Clone)]
struct AdapterCall {
    adapter: Arc<dyn LenderAdapter>,
    caps: Caps,
    counters: Counters,
}

impl Service<Attempt> for AdapterCall {
    type Response = Vec<Loan>;
    type Error = AdapterError;
    type Future = BoxFuture<'static, Result<Vec<Loan>, AdapterError>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Attempt) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            // A hedge is one more call in flight: it needs a permit and a token
            // of call rate of its own. Without them it never goes out, and the
            // first call answers (pending, not an error: an error would win the
            // race and fail the lookup).
            let _permit = if req.hedge {
                match this.caps.in_flight.clone().try_acquire_owned() {
                    Ok(p) if this.caps.call_rate.check().is_ok() => {
                        if let Some(c) = this.counters.get() {
                            c.hedges.inc();
                        }
                        Some(p)
                    }
                    _ => return futures::future::pending().await,
                }
            } else {
                None
            };
            let query = CustomerQuery {
                nin: req.nin,
                trace_id: &req.trace_id,
                traceparent: req.traceparent.as_deref(),
            };
            this.adapter.fetch_customer(query).await
        })
    }
}

/// Retries transient failures while the budget, the call rate and the deadline
/// allow. Cloned per call by tower, so `left` and `backoff` are per call.
#[derive(Clone)]
struct RetryTransient {
    budget: Arc<TpsBudget>,
    call_rate: Arc<CallRate>,
    left: u32,
    backoff: ExponentialBackoff,
    /// The least time an attempt should have; a retry that would get less is
    /// not worth the lender's load.
    min_attempt: Duration,
    counters: Counters,
}

/// Failures worth one more try: the request most likely never reached the
/// lender's logic (refused, reset) or the lender said it is briefly unable.
/// Not timeouts (a slow lender gets slower under more load; hedging is for
/// that), not 429 (the lender asks for less), not malformed answers (they
/// would be malformed again).
pub fn is_transient(e: &AdapterError) -> bool {
    matches!(
        e,
        AdapterError::Connect(_) | AdapterError::Transport(_) | AdapterError::Status(502..=504)
    )
}

impl tower::retry::Policy<Attempt, Vec<Loan>, AdapterError> for RetryTransient {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Attempt,
        result: &mut Result<Vec<Loan>, AdapterError>,
    ) -> Option<Self::Future> {
        let Err(e) = result else { return None };
        if req.probe || self.left == 0 || !is_transient(e) {
            return None;
        }
        let pause = self.backoff.next_backoff();
        if pause.deadline() + self.min_attempt > req.deadline {
            return None;
        }
        if !self.budget.withdraw() || self.call_rate.check().is_err() {
            return None;
        }
        self.left -= 1;
        if let Some(c) = self.counters.get() {
            c.retries.inc();
        }
        Some(pause)
    }

    fn clone_request(&mut self, req: &Attempt) -> Option<Attempt> {
        Some(req.clone())
    }
}

/// Sends a hedge when the budget allows and there is time for it.
#[derive(Clone)]
struct HedgeWhenAffordable {
    budget: Arc<TpsBudget>,
}

impl tower::hedge::Policy<Attempt> for HedgeWhenAffordable {
    fn clone_request(&self, req: &Attempt) -> Option<Attempt> {
        (!req.probe).then(|| Attempt {
            hedge: true,
            ..req.clone()
        })
    }

    fn can_retry(&self, req: &Attempt) -> bool {
        Instant::now() < req.deadline && self.budget.withdraw()
    }
}

type Retrying = Retry<RetryTransient, AdapterCall>;
/// Hedge is not `Clone`; the lock is held only for `ready()` and `call()`.
type Hedged = tokio::sync::Mutex<Hedge<Retrying, HedgeWhenAffordable>>;

/// One lender's calls: retrying, and hedged when configured.
pub struct Calls {
    counters: Counters,
    retrying: Retrying,
    retry_budget: Arc<TpsBudget>,
    hedged: Option<(Hedged, Arc<TpsBudget>)>,
}

impl Calls {
    pub fn new(
        adapter: Arc<dyn LenderAdapter>,
        in_flight: Arc<Semaphore>,
        call_rate: Arc<CallRate>,
        timeout: Duration,
        policy: CallPolicy,
    ) -> Self {
        let counters = Counters::default();
        let retry_budget = Arc::new(budget(policy.retry_budget, 1));
        let backoff = ExponentialBackoffMaker::new(BACKOFF_MIN, BACKOFF_MAX, 1.0, HasherRng::new())
            .expect("the constant backoff bounds are valid")
            .make_backoff();
        let retrying = Retry::new(
            RetryTransient {
                budget: retry_budget.clone(),
                call_rate: call_rate.clone(),
                left: policy.max_retries,
                backoff,
                min_attempt: timeout / 4,
                counters: counters.clone(),
            },
            AdapterCall {
                adapter,
                caps: Caps {
                    in_flight,
                    call_rate,
                },
                counters: counters.clone(),
            },
        );
        let hedged = policy.hedge.map(|h| {
            let hedge_budget = Arc::new(budget(h.budget, 0));
            let service = Hedge::new(
                retrying.clone(),
                HedgeWhenAffordable {
                    budget: hedge_budget.clone(),
                },
                h.min_data_points,
                h.quantile,
                h.period,
            );
            (tokio::sync::Mutex::new(service), hedge_budget)
        });
        Calls {
            counters,
            retrying,
            retry_budget,
            hedged,
        }
    }

    /// Counts retries and hedges from now on (the first call wins).
    pub fn count_into(&self, counters: ExtraCalls) {
        let _ = self.counters.set(counters);
    }

    /// One logical call. The caller bounds it in time (`Attempt::deadline`).
    pub async fn call(&self, attempt: Attempt) -> Result<Vec<Loan>, AdapterError> {
        if attempt.probe {
            // The probe is one plain call: its answer decides the breaker.
            let mut once = self.retrying.get_ref().clone();
            return once.call(attempt).await;
        }
        self.retry_budget.deposit();
        let Some((hedged, hedge_budget)) = &self.hedged else {
            return self.retrying.clone().oneshot(attempt).await;
        };
        hedge_budget.deposit();
        let call = {
            let mut service = hedged.lock().await;
            match service.ready().await {
                Ok(ready) => ready.call(attempt),
                Err(e) => return Err(from_box(e)),
            }
        };
        call.await.map_err(from_box)
    }
}

/// A budget for `share` extra calls per call, plus `min_per_sec` regardless.
fn budget(share: f32, min_per_sec: u32) -> TpsBudget {
    // TpsBudget asserts its range; the config check keeps values inside it, and
    // this keeps a bad value from ever reaching the assert.
    let share = if share.is_finite() {
        share.clamp(0.0, 1000.0)
    } else {
        0.0
    };
    TpsBudget::new(BUDGET_TTL, min_per_sec, share)
}

/// Hedge wraps errors in a `BoxError`; every error inside is ours.
fn from_box(e: tower::BoxError) -> AdapterError {
    match e.downcast::<AdapterError>() {
        Ok(e) => *e,
        Err(other) => AdapterError::Transport(gjeldsbro_adapter::scrub(&other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// An adapter answering from a script: each call takes the next
    /// (delay, result); when the script runs out, it answers empty at once.
    struct Scripted {
        script: Mutex<VecDeque<(Duration, Result<(), AdapterError>)>>,
        calls: AtomicU32,
    }

    impl Scripted {
        fn new(script: Vec<(u64, Result<(), AdapterError>)>) -> Arc<Self> {
            Arc::new(Scripted {
                script: Mutex::new(
                    script
                        .into_iter()
                        .map(|(ms, r)| (Duration::from_millis(ms), r))
                        .collect(),
                ),
                calls: AtomicU32::new(0),
            })
        }
        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl LenderAdapter for Scripted {
        fn protocol(&self) -> &'static str {
            "scripted"
        }
        fn fetch_customer<'a>(
            &'a self,
            _query: CustomerQuery<'a>,
        ) -> BoxFuture<'a, Result<Vec<Loan>, AdapterError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let next = self.script.lock().map(|mut s| s.pop_front()).ok().flatten();
            Box::pin(async move {
                let (delay, result) = next.unwrap_or((Duration::ZERO, Ok(())));
                tokio::time::sleep(delay).await;
                result.map(|()| Vec::new())
            })
        }
    }

    fn nin() -> NationalId {
        let text = crate::nin::make_id(1, 1, 70, 123, false, false).expect("valid id");
        NationalId::parse(&text, crate::nin::IdPolicy::STRICT).expect("valid id")
    }

    fn calls(adapter: Arc<Scripted>, policy: CallPolicy) -> Calls {
        Calls::new(
            adapter,
            Arc::new(Semaphore::new(8)),
            Arc::new(super::super::call_rate(1_000)),
            Duration::from_millis(400),
            policy,
        )
    }

    fn attempt(within_ms: u64) -> Attempt {
        Attempt::new(
            nin(),
            Arc::from("trace"),
            None,
            Instant::now() + Duration::from_millis(within_ms),
            false,
        )
    }

    fn refused() -> AdapterError {
        AdapterError::Connect("refused".into())
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_connection_is_retried() {
        let a = Scripted::new(vec![(0, Err(refused()))]);
        let c = calls(a.clone(), CallPolicy::default());
        assert!(c.call(attempt(400)).await.is_ok());
        assert_eq!(a.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_max_retries() {
        let a = Scripted::new(vec![(0, Err(AdapterError::Status(503))); 5]);
        let c = calls(a.clone(), CallPolicy::default());
        assert!(matches!(
            c.call(attempt(400)).await,
            Err(AdapterError::Status(503))
        ));
        assert_eq!(a.calls(), 3, "one call and two retries");
    }

    #[tokio::test(start_paused = true)]
    async fn answers_that_would_repeat_are_not_retried() {
        for e in [
            AdapterError::Status(500),
            AdapterError::Limited,
            AdapterError::Timeout,
            AdapterError::Malformed("x".into()),
            AdapterError::TooLarge,
        ] {
            let a = Scripted::new(vec![(0, Err(e))]);
            let c = calls(a.clone(), CallPolicy::default());
            assert!(c.call(attempt(400)).await.is_err());
            assert_eq!(a.calls(), 1);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_that_could_not_finish_before_the_deadline() {
        // 350 ms into a 400 ms call, less than a quarter of the timeout is left.
        let a = Scripted::new(vec![(350, Err(refused()))]);
        let c = calls(a.clone(), CallPolicy::default());
        assert!(c.call(attempt(400)).await.is_err());
        assert_eq!(a.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_probe_is_never_retried() {
        let a = Scripted::new(vec![(0, Err(refused()))]);
        let c = calls(a.clone(), CallPolicy::default());
        let mut probe = attempt(400);
        probe.probe = true;
        assert!(c.call(probe).await.is_err());
        assert_eq!(a.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_caps_retries_when_everything_fails() {
        let a = Scripted::new(vec![(0, Err(refused())); 1_000]);
        let c = calls(a.clone(), CallPolicy::default());
        for _ in 0..200 {
            let _ = c.call(attempt(400)).await;
        }
        // 200 calls earn 40 retries (20 %), plus the reserve of one a second
        // over the budget's 10 s window; without the budget it would be 400.
        let retries = a.calls() - 200;
        assert!(retries <= 40 + 10 + 1, "{retries} retries");
        assert!(retries >= 40, "the budget was used: {retries}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_hedging_by_default() {
        let a = Scripted::new((0..40).map(|_| (10, Ok(()))).collect());
        let c = calls(a.clone(), CallPolicy::default());
        for _ in 0..20 {
            c.call(attempt(400)).await.expect("answer");
        }
        let before = a.calls();
        a.script
            .lock()
            .expect("script")
            .push_front((Duration::from_millis(300), Ok(())));
        c.call(attempt(400)).await.expect("answer");
        assert_eq!(a.calls(), before + 1);
    }

    /// Hedging that starts after a 1 s period of 10 calls, with budget for all.
    fn hedging() -> CallPolicy {
        CallPolicy {
            hedge: Some(HedgePolicy {
                min_data_points: 10,
                period: Duration::from_secs(1),
                budget: 1.0,
                ..HedgePolicy::default()
            }),
            ..CallPolicy::default()
        }
    }

    /// A period of 10 ms calls teaches the hedge's histogram what is normal.
    async fn teach_normal_latency(a: &Scripted, c: &Calls) {
        for _ in 0..20 {
            a.script
                .lock()
                .expect("script")
                .push_back((Duration::from_millis(10), Ok(())));
            c.call(attempt(400)).await.expect("answer");
        }
        tokio::time::advance(Duration::from_millis(1_100)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_call_is_hedged_and_the_faster_answer_wins() {
        let policy = hedging();
        let a = Scripted::new(Vec::new());
        let c = calls(a.clone(), policy);
        teach_normal_latency(&a, &c).await;
        let before = a.calls();
        // The next call hangs for 300 ms; its hedge answers after 10 ms more.
        {
            let mut s = a.script.lock().expect("script");
            s.push_back((Duration::from_millis(300), Ok(())));
            s.push_back((Duration::from_millis(10), Ok(())));
        }
        let started = Instant::now();
        c.call(attempt(400)).await.expect("answer");
        let took = started.elapsed();
        assert_eq!(a.calls(), before + 2, "one hedge went out");
        assert!(
            took < Duration::from_millis(100),
            "the hedge answered: {took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hedge_waits_for_an_in_flight_permit() {
        let policy = hedging();
        let a = Scripted::new(Vec::new());
        let in_flight = Arc::new(Semaphore::new(1));
        let c = Calls::new(
            a.clone(),
            in_flight.clone(),
            Arc::new(super::super::call_rate(1_000)),
            Duration::from_millis(400),
            policy,
        );
        teach_normal_latency(&a, &c).await;
        let before = a.calls();
        a.script
            .lock()
            .expect("script")
            .push_back((Duration::from_millis(300), Ok(())));
        // The caller holds the only permit, as the lookup does.
        let _permit = in_flight.try_acquire().expect("permit");
        c.call(attempt(400)).await.expect("answer");
        assert_eq!(a.calls(), before + 1, "no hedge beyond the cap");
    }
}
