//! A circuit breaker per lender. Consecutive failures, or a failure rate over a
//! window of recent calls, open it; while open, lookups go straight to the
//! snapshot without waiting on the lender. After a backoff one probe call is let
//! through: success closes the breaker, failure opens it again with a longer
//! backoff (doubling, capped).
//!
//! Time is `tokio::time::Instant`, so tests can drive it with paused time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// When a breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Consecutive failures that open it.
    pub consecutive_failures: u32,
    /// Failure share over the window that opens it (with at least `min_calls`).
    pub failure_rate: f64,
    pub window: usize,
    pub min_calls: usize,
    /// First backoff before a probe; doubles after a failed probe up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            consecutive_failures: 5,
            failure_rate: 0.5,
            window: 20,
            min_calls: 10,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// The breaker's state, as exported (`gjeldsbro_lender_circuit_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

/// Whether a call may go to the lender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: call.
    Call,
    /// Half-open: this call is the one probe.
    Probe,
    /// Open (or a probe is already out): answer from the snapshot.
    Rejected,
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive: u32,
    recent: VecDeque<bool>,
    open_until: Instant,
    backoff: Duration,
}

#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Breaker {
            settings,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive: 0,
                recent: VecDeque::with_capacity(settings.window),
                open_until: Instant::now(),
                backoff: settings.backoff,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Asks to call the lender now.
    pub fn admit(&self) -> Admission {
        let mut s = self.lock();
        match s.state {
            State::Closed => Admission::Call,
            State::Open if Instant::now() >= s.open_until => {
                s.state = State::HalfOpen;
                Admission::Probe
            }
            State::Open | State::HalfOpen => Admission::Rejected,
        }
    }

    /// Ends an admitted call that neither succeeded nor failed: the lender said
    /// it is at its limit (429). A normal call leaves no trace; a probe puts the
    /// breaker back to open with the same backoff (the lender is alive but asks
    /// for less: neither close nor back off further).
    pub fn release(&self, admission: Admission) {
        if admission != Admission::Probe {
            return;
        }
        let mut s = self.lock();
        let backoff = s.backoff;
        open(&mut s, backoff);
    }

    /// Records the outcome of an admitted call.
    pub fn record(&self, admission: Admission, success: bool) {
        let settings = self.settings;
        let mut s = self.lock();
        match admission {
            Admission::Rejected => {}
            Admission::Probe => {
                if success {
                    s.state = State::Closed;
                    s.consecutive = 0;
                    s.recent.clear();
                    s.backoff = settings.backoff;
                } else {
                    s.backoff = (s.backoff * 2).min(settings.max_backoff);
                    let backoff = s.backoff;
                    open(&mut s, backoff);
                }
            }
            Admission::Call => {
                if s.state != State::Closed {
                    // A call admitted before the breaker opened: its outcome no
                    // longer decides anything.
                    return;
                }
                s.consecutive = if success { 0 } else { s.consecutive + 1 };
                if s.recent.len() == settings.window {
                    s.recent.pop_front();
                }
                s.recent.push_back(success);
                let failures = s.recent.iter().filter(|ok| !**ok).count();
                let rate_trips = s.recent.len() >= settings.min_calls
                    && failures as f64 >= settings.failure_rate * s.recent.len() as f64;
                if s.consecutive >= settings.consecutive_failures || rate_trips {
                    let backoff = s.backoff;
                    open(&mut s, backoff);
                }
            }
        }
    }
}

fn open(s: &mut Inner, backoff: Duration) {
    s.state = State::Open;
    s.open_until = Instant::now() + backoff;
    s.consecutive = 0;
    s.recent.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail(b: &Breaker, n: u32) {
        for _ in 0..n {
            let a = b.admit();
            assert_eq!(a, Admission::Call);
            b.record(a, false);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_then_probes_once_and_closes() {
        let b = Breaker::new(BreakerSettings::default());
        fail(&b, 4);
        assert_eq!(b.state(), State::Closed);
        fail(&b, 1);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.admit(), Admission::Rejected);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(
            b.admit(),
            Admission::Rejected,
            "no call before the backoff ends"
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        let probe = b.admit();
        assert_eq!(probe, Admission::Probe);
        assert_eq!(b.admit(), Admission::Rejected, "only one probe at a time");
        b.record(probe, true);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.admit(), Admission::Call);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_probe_reopens_with_a_longer_backoff() {
        let b = Breaker::new(BreakerSettings::default());
        fail(&b, 5);
        tokio::time::advance(Duration::from_secs(1)).await;
        let probe = b.admit();
        b.record(probe, false);
        assert_eq!(b.state(), State::Open);
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(b.admit(), Admission::Rejected, "the backoff doubled to 2 s");
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(b.admit(), Admission::Probe);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lenders_limit_is_not_a_failure() {
        let b = Breaker::new(BreakerSettings::default());
        for _ in 0..50 {
            let a = b.admit();
            assert_eq!(a, Admission::Call);
            b.release(a);
        }
        assert_eq!(b.state(), State::Closed, "429s never open it");
        fail(&b, 4);
        b.release(b.admit());
        fail(&b, 1);
        assert_eq!(b.state(), State::Open, "nor reset the failure count");
        tokio::time::advance(Duration::from_secs(1)).await;
        let probe = b.admit();
        assert_eq!(probe, Admission::Probe);
        b.release(probe);
        assert_eq!(b.state(), State::Open);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.admit(), Admission::Probe, "the backoff did not double");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_rate_over_the_window_opens_it() {
        let b = Breaker::new(BreakerSettings::default());
        // Alternating: never 5 in a row, but half of ten calls fail.
        for i in 0..10 {
            let a = b.admit();
            assert_eq!(a, Admission::Call, "call {i}");
            b.record(a, i % 2 == 0);
        }
        assert_eq!(b.state(), State::Open);
    }
}
