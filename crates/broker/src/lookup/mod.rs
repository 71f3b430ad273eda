//! One lookup: ask exactly the lenders the index names for a person, concurrently,
//! each within its own timeout and the lookup's deadline; replace a lender that
//! fails by its snapshot rows; merge. No HTTP types in here.

pub mod cache;
pub mod merge;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use futures::stream::{FuturesUnordered, StreamExt};
use gjeldsbro_adapter::{KindSet, Loan};
use tokio::time::Instant;

use crate::index::{Index, LenderIdx};
use crate::lenders::breaker::Admission;
use crate::lenders::calls::Attempt;
use crate::lenders::{Lender, Lenders};
use crate::metrics::Metrics;
use crate::nin::NationalId;
use crate::store::Store;
pub use cache::AnswerCache;
pub use merge::{MergedDebt, MergedEntry, merge};

/// The longest a snapshot read may take before the lender counts as missing.
const SNAPSHOT_READ_LIMIT: Duration = Duration::from_millis(1_000);

/// Where a lender's rows came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Live,
    Snapshot,
    Missing,
}

/// One lender's part of a lookup.
#[derive(Debug, Clone)]
pub struct LenderAnswer {
    pub lender: LenderIdx,
    pub source: Source,
    pub loans: Vec<Loan>,
    /// `ok`, or why there was no live answer: `timeout`, `error`, `malformed`,
    /// `limited` (the lender's 429, or the broker's own cap on calls in flight or
    /// per second), `circuit_open`.
    pub outcome: &'static str,
    pub elapsed: Duration,
}

/// Everything the lenders said about one person.
#[derive(Debug, Clone)]
pub struct PersonDebt {
    pub nin: NationalId,
    pub answers: Vec<LenderAnswer>,
}

impl PersonDebt {
    pub fn fan_out(&self) -> usize {
        self.answers.len()
    }
}

/// Correlation passed on to lenders.
#[derive(Debug, Clone)]
pub struct TraceContext {
    pub trace_id: Arc<str>,
    pub traceparent: Option<Arc<str>>,
}

/// The lookup engine, shared by all requests.
pub struct Lookup {
    pub index: Arc<Index>,
    pub lenders: Arc<Lenders>,
    pub store: Arc<dyn Store>,
    pub metrics: Arc<Metrics>,
    pub cache: Arc<AnswerCache>,
}

impl Lookup {
    pub fn new(
        index: Arc<Index>,
        lenders: Arc<Lenders>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        cache: Arc<AnswerCache>,
    ) -> Self {
        Lookup {
            index,
            lenders,
            store,
            metrics,
            cache,
        }
    }

    /// Looks up one person: only the indexed lenders whose kind of debt is in
    /// `kinds` are called. A lender of another kind is not asked at all, so it
    /// never learns of the lookup (a search must not reach a student-loan lender).
    pub async fn person(
        &self,
        nin: NationalId,
        kinds: KindSet,
        deadline: Instant,
        trace: &TraceContext,
    ) -> PersonDebt {
        let lenders = self.index.lenders_of(nin);
        let mut calls: FuturesUnordered<_> = lenders
            .iter()
            .filter_map(|&idx| self.lenders.get(idx))
            .filter(|lender| kinds.contains(lender.kind))
            .map(|lender| self.ask(lender, nin, deadline, trace))
            .collect();
        let mut answers = Vec::with_capacity(lenders.len());
        while let Some(answer) = calls.next().await {
            answers.push(answer);
        }
        // Arrival order must not show in the answer; keep a fixed order here too.
        answers.sort_by_key(|a| a.lender);
        PersonDebt { nin, answers }
    }

    /// Looks up several persons (applicant and co-borrowers) concurrently.
    pub async fn persons(
        &self,
        nins: &[NationalId],
        kinds: KindSet,
        deadline: Instant,
        trace: &TraceContext,
    ) -> Vec<PersonDebt> {
        join_all(nins.iter().map(|&n| self.person(n, kinds, deadline, trace))).await
    }

    async fn ask(
        &self,
        lender: &Lender,
        nin: NationalId,
        deadline: Instant,
        trace: &TraceContext,
    ) -> LenderAnswer {
        let started = Instant::now();
        let budget = lender
            .timeout
            .min(deadline.saturating_duration_since(started));
        let live = if let Some(hit) = self.cache.get(nin, lender.idx).await {
            self.metrics
                .cache_requests
                .with_label_values(&["hit"])
                .inc();
            Ok(hit.as_ref().clone())
        } else if budget.is_zero() {
            Err("timeout")
        } else {
            // Identical lookups in flight share one call; each waits only as long
            // as its own budget allows.
            let shared =
                self.cache
                    .get_or_fetch(nin, lender.idx, self.call(lender, nin, budget, trace));
            match tokio::time::timeout(budget, shared).await {
                Ok((result, ran)) => {
                    let kind = if ran { "miss" } else { "shared" };
                    self.metrics.cache_requests.with_label_values(&[kind]).inc();
                    if !ran {
                        self.metrics.lookups_deduplicated.inc();
                    }
                    result.map(|loans| loans.as_ref().clone())
                }
                Err(_) => Err("timeout"),
            }
        };
        match live {
            Ok(loans) => LenderAnswer {
                lender: lender.idx,
                source: Source::Live,
                loans,
                outcome: "ok",
                elapsed: started.elapsed(),
            },
            Err(outcome) => {
                let snapshot = tokio::time::timeout(
                    SNAPSHOT_READ_LIMIT,
                    self.store.snapshot_for(&lender.id, nin),
                )
                .await;
                let (source, loans) = match snapshot {
                    Ok(Ok(rows)) if !rows.is_empty() => (Source::Snapshot, rows),
                    _ => (Source::Missing, Vec::new()),
                };
                self.metrics
                    .record_fallback(&lender.id, source == Source::Snapshot);
                LenderAnswer {
                    lender: lender.idx,
                    source,
                    loans,
                    outcome,
                    elapsed: started.elapsed(),
                }
            }
        }
    }

    /// One live call to the lender, within `budget` and its in-flight cap.
    async fn call(
        &self,
        lender: &Lender,
        nin: NationalId,
        budget: std::time::Duration,
        trace: &TraceContext,
    ) -> Result<Vec<Loan>, &'static str> {
        let started = Instant::now();
        let result = match lender.in_flight.try_acquire() {
            // Our own caps (in flight, calls per second) are not the lender's
            // failures: the breaker is not asked.
            Err(_) => Err("limited"),
            Ok(_) if lender.call_rate.check().is_err() => Err("limited"),
            Ok(_permit) => {
                let admission = lender.breaker.admit();
                let result = if admission == Admission::Rejected {
                    Err("circuit_open")
                } else {
                    let attempt = Attempt::new(
                        nin,
                        trace.trace_id.clone(),
                        trace.traceparent.clone(),
                        started + budget,
                        admission == Admission::Probe,
                    );
                    let pending = Unfinished {
                        metrics: &self.metrics,
                        lender,
                        admission,
                        started,
                    };
                    let result =
                        match tokio::time::timeout(budget, lender.calls.call(attempt)).await {
                            Ok(Ok(loans)) => Ok(loans),
                            Ok(Err(e)) => Err(e.outcome()),
                            Err(_) => Err("timeout"),
                        };
                    std::mem::forget(pending);
                    match result {
                        // The lender's 429 is its limit, like our own caps: it
                        // answered, so it is not failing, and the breaker is
                        // not told of a failure.
                        Err("limited") => lender.breaker.release(admission),
                        _ => lender.breaker.record(admission, result.is_ok()),
                    }
                    result
                };
                self.metrics
                    .circuit_state
                    .with_label_values(&[&lender.id])
                    .set(lender.breaker.state() as i64);
                result
            }
        };
        let outcome = match &result {
            Ok(_) => "ok",
            Err(o) => o,
        };
        self.metrics
            .record_lender_call(&lender.id, outcome, started.elapsed());
        result
    }
}

/// A lender call in progress. Every waiter on a shared call gives up at its own
/// deadline, which can come a tick before the call's own timeout; the call is
/// then dropped unfinished. It still counts as a timeout: the breaker must hear
/// of every failed call, and a probe that vanished unheard would leave the
/// breaker half-open, and the lender unasked, for good.
struct Unfinished<'a> {
    metrics: &'a Metrics,
    lender: &'a Lender,
    admission: Admission,
    started: Instant,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        self.lender.breaker.record(self.admission, false);
        self.metrics
            .circuit_state
            .with_label_values(&[&self.lender.id])
            .set(self.lender.breaker.state() as i64);
        self.metrics
            .record_lender_call(&self.lender.id, "timeout", self.started.elapsed());
    }
}
