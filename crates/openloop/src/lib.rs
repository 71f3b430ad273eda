//! The open-model load generator shared by `loadgen` (the test kit) and
//! `lender-check`'s latency run: request `i` is due at `start + i / rate`, and
//! is started at that time whether or not earlier ones have been answered. Its
//! latency is measured from when it was due, not from when it was sent, so a
//! stalled server (or a stalled generator) shows up in the numbers instead of
//! quietly lowering the rate (no coordinated omission).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The width of one timeline window (by due time).
pub const WINDOW: Duration = Duration::from_millis(100);

/// The largest latency recorded, in µs (a minute); longer ones are clamped.
const MAX_US: u64 = 60_000_000;

/// A fresh latency histogram in µs, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts (1 ≤ low, high ≥ 2·low).
    Histogram::new_with_bounds(1, MAX_US, 3).unwrap_or_else(|_| unreachable!())
}

/// When each request is due, relative to the start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub rate_per_s: f64,
    pub warmup: Duration,
    pub duration: Duration,
}

impl Schedule {
    /// Request `i` is due `i / rate` after the start.
    pub fn due(&self, i: u64) -> Duration {
        Duration::from_secs_f64(i as f64 / self.rate_per_s)
    }

    /// How many requests are due before warm-up plus measured period end: the
    /// smallest `i` with `due(i) >= warmup + duration`.
    pub fn total(&self) -> u64 {
        let end = self.warmup + self.duration;
        let mut n = (end.as_secs_f64() * self.rate_per_s).ceil().max(0.0) as u64;
        // Float rounding may put the estimate one off either way.
        while n > 0 && self.due(n - 1) >= end {
            n -= 1;
        }
        while self.due(n) < end {
            n += 1;
        }
        n
    }

    /// The timeline window of a request due at `due`, `None` outside the
    /// measured period (warm-up or after it).
    pub fn window_of(&self, due: Duration) -> Option<usize> {
        let since = due.checked_sub(self.warmup)?;
        if since >= self.duration {
            return None;
        }
        Some((since.as_nanos() / WINDOW.as_nanos()) as usize)
    }

    /// The number of timeline windows in the measured period.
    pub fn windows(&self) -> usize {
        self.duration.as_nanos().div_ceil(WINDOW.as_nanos()) as usize
    }
}

/// What became of one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Answered in full.
    Ok,
    /// Answered, with this many lender answers not live (from the snapshot or
    /// missing in the broker's answer; failed lender calls on the direct path,
    /// which a broker would replace by its snapshot). Not an error.
    Degraded(u32),
    /// The lookup failed; the kind names how (`status_503`, `timeout`, ...).
    Error(String),
}

/// Everything one path recorded in its measured period.
#[derive(Debug, Clone)]
pub struct PathRun {
    /// Requests due in the measured period.
    pub scheduled: u64,
    /// Of those, answered (fully or degraded).
    pub answered: u64,
    /// Of the answered, degraded, and their not-live lender answers in total.
    pub degraded: u64,
    pub not_live_answers: u64,
    /// Failed requests by kind; `not_sent` counts requests skipped because the
    /// generator already had `max_outstanding` waiting.
    pub errors: BTreeMap<String, u64>,
    /// Latency of the answered requests from their due time, in µs.
    pub latency: Histogram<u64>,
    /// How late the generator started requests (lag behind the due time), in µs:
    /// large values mean the generator, not the system under test, was saturated.
    pub send_lag: Histogram<u64>,
    /// Per [`WINDOW`] of due time: answered latencies and errors.
    pub windows: Vec<(Histogram<u64>, u64)>,
}

impl PathRun {
    fn new(windows: usize) -> PathRun {
        PathRun {
            scheduled: 0,
            answered: 0,
            degraded: 0,
            not_live_answers: 0,
            errors: BTreeMap::new(),
            latency: new_histogram(),
            send_lag: new_histogram(),
            windows: (0..windows).map(|_| (new_histogram(), 0)).collect(),
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn record(&mut self, window: usize, latency_us: u64, lag_us: u64, outcome: Outcome) {
        self.scheduled += 1;
        self.send_lag.saturating_record(lag_us.clamp(1, MAX_US));
        let slot = self.windows.get_mut(window);
        match outcome {
            Outcome::Ok | Outcome::Degraded(_) => {
                self.answered += 1;
                if let Outcome::Degraded(n) = outcome {
                    self.degraded += 1;
                    self.not_live_answers += u64::from(n);
                }
                let us = latency_us.clamp(1, MAX_US);
                self.latency.saturating_record(us);
                if let Some((h, _)) = slot {
                    h.saturating_record(us);
                }
            }
            Outcome::Error(kind) => {
                *self.errors.entry(kind).or_insert(0) += 1;
                if let Some((_, e)) = slot {
                    *e += 1;
                }
            }
        }
    }
}

/// For other crates' tests of what reads a run (the report).
impl PathRun {
    #[doc(hidden)]
    pub fn new_for_test(windows: usize) -> PathRun {
        PathRun::new(windows)
    }

    #[doc(hidden)]
    pub fn record_for_test(&mut self, window: usize, latency_us: u64, outcome: Outcome) {
        self.record(window, latency_us, 1, outcome);
    }
}

struct Sample {
    window: usize,
    latency_us: u64,
    lag_us: u64,
    outcome: Outcome,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Runs `send(i)` for every request of `schedule` from `start` (which may lie a
/// little in the future, so the caller can time events against it), each on
/// its own task at its due time, and waits for all of them. At most
/// `max_outstanding` requests wait at once; beyond that a request is not sent
/// and counts as the error `not_sent` (a bound on memory, far above any sane
/// load, so it only trips when the system under test has stopped answering).
pub async fn run<F, Fut>(
    schedule: Schedule,
    start: Instant,
    max_outstanding: usize,
    send: F,
) -> PathRun
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let send = Arc::new(send);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Sample>();
    // Recorded as answers arrive, so memory does not grow with the run.
    let collector = tokio::spawn(async move {
        let mut run = PathRun::new(schedule.windows());
        while let Some(s) = rx.recv().await {
            run.record(s.window, s.latency_us, s.lag_us, s.outcome);
        }
        run
    });
    let outstanding = Arc::new(AtomicUsize::new(0));
    for i in 0..schedule.total() {
        let offset = schedule.due(i);
        let due = start + offset;
        if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
        }
        // Warm-up requests are sent but not recorded.
        let window = schedule.window_of(offset);
        if outstanding.load(Ordering::Relaxed) >= max_outstanding {
            if let Some(window) = window {
                let _ = tx.send(Sample {
                    window,
                    latency_us: 0,
                    lag_us: micros(due.elapsed()),
                    outcome: Outcome::Error("not_sent".into()),
                });
            }
            continue;
        }
        outstanding.fetch_add(1, Ordering::Relaxed);
        let (send, tx, outstanding) = (send.clone(), tx.clone(), outstanding.clone());
        tokio::spawn(async move {
            let lag_us = micros(due.elapsed());
            let outcome = send(i).await;
            let latency_us = micros(due.elapsed());
            outstanding.fetch_sub(1, Ordering::Relaxed);
            if let Some(window) = window {
                let _ = tx.send(Sample {
                    window,
                    latency_us,
                    lag_us,
                    outcome,
                });
            }
        });
    }
    drop(tx);
    match collector.await {
        Ok(run) => run,
        // The collector only records; it cannot panic short of a bug here.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(rate: f64, warmup_ms: u64, duration_ms: u64) -> Schedule {
        Schedule {
            rate_per_s: rate,
            warmup: Duration::from_millis(warmup_ms),
            duration: Duration::from_millis(duration_ms),
        }
    }

    #[test]
    fn requests_are_due_at_fixed_intervals() {
        let s = schedule(2000.0, 0, 1000);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_micros(500));
        assert_eq!(s.due(2000), Duration::from_secs(1));
        assert_eq!(s.total(), 2000);
        // A rate that does not divide the period: due times 0, 1/3 s, 2/3 s, 1 s
        // lie before 1.1 s, the next (4/3 s) does not.
        assert_eq!(schedule(3.0, 0, 1100).total(), 4);
        assert_eq!(schedule(3.0, 100, 1000).total(), 4);
        // Fractional rates.
        assert_eq!(schedule(0.5, 0, 4000).total(), 2);
    }

    #[test]
    fn warm_up_is_outside_the_measured_windows() {
        let s = schedule(1000.0, 500, 1000);
        assert_eq!(s.windows(), 10);
        assert_eq!(s.window_of(Duration::from_millis(499)), None);
        assert_eq!(s.window_of(Duration::from_millis(500)), Some(0));
        assert_eq!(s.window_of(Duration::from_millis(699)), Some(1));
        assert_eq!(s.window_of(Duration::from_millis(1499)), Some(9));
        assert_eq!(s.window_of(Duration::from_millis(1500)), None);
        assert_eq!(schedule(1.0, 0, 250).windows(), 3);
    }

    #[test]
    fn outcomes_are_counted_by_kind_and_window() {
        let mut run = PathRun::new(2);
        run.record(0, 1000, 5, Outcome::Ok);
        run.record(0, 3000, 5, Outcome::Degraded(2));
        run.record(1, 0, 5, Outcome::Error("timeout".into()));
        run.record(1, 0, 5, Outcome::Error("timeout".into()));
        run.record(7, 500, 5, Outcome::Ok); // out of range: counted, no window
        assert_eq!(run.scheduled, 5);
        assert_eq!(run.answered, 3);
        assert_eq!(run.degraded, 1);
        assert_eq!(run.not_live_answers, 2);
        assert_eq!(run.errors.get("timeout"), Some(&2));
        assert_eq!(run.error_count(), 2);
        assert_eq!(run.latency.len(), 3);
        assert_eq!(run.windows[0].0.len(), 2);
        assert_eq!(run.windows[1].1, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_answer_does_not_hold_back_the_next_requests() {
        // 100/s for 0.5 s; every request takes 200 ms. A closed loop with one
        // client would manage 3; the open model sends all 50 on time.
        let s = schedule(100.0, 0, 500);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (f, m) = (in_flight.clone(), most.clone());
        let run = run(s, Instant::now(), 10_000, move |i| {
            let (f, m) = (f.clone(), m.clone());
            async move {
                m.fetch_max(f.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                f.fetch_sub(1, Ordering::SeqCst);
                if i == 7 {
                    Outcome::Error("status_500".into())
                } else {
                    Outcome::Ok
                }
            }
        })
        .await;
        assert_eq!(run.scheduled, 50);
        assert_eq!(run.answered, 49);
        assert_eq!(run.errors.get("status_500"), Some(&1));
        // Requests overlapped: the next did not wait for the last answer.
        assert!(most.load(Ordering::SeqCst) >= 2);
        // Latency counts from the due time, so it is never below the service time.
        assert!(run.latency.min() >= 200_000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn past_max_outstanding_requests_are_not_sent_and_counted() {
        let s = schedule(200.0, 0, 100);
        // Held far longer than the 0.1 s of sending, so none finishes early.
        let run = run(s, Instant::now(), 5, |_| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            Outcome::Ok
        })
        .await;
        assert_eq!(run.scheduled, 20);
        assert_eq!(run.answered, 5);
        assert_eq!(run.errors.get("not_sent"), Some(&15));
    }
}
