//! Building the index from the store: whole at start, per lender when another
//! process (the `ingest` command, another instance) loads a dataset.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{Index, IndexBuilder, IndexSnapshot};
use crate::lenders::Lenders;
use crate::lookup::AnswerCache;
use crate::store::{IndexChange, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] super::IndexError),
}

/// Reads every current (person, lender) pair and builds a snapshot. Pairs of
/// lenders no longer configured are skipped.
pub async fn build_from_store(
    store: &dyn Store,
    lenders: &Lenders,
) -> Result<IndexSnapshot, RebuildError> {
    let mut builder = IndexBuilder::with_capacity(1 << 16);
    let idx: HashMap<&str, u16> = lenders.iter().map(|l| (l.id.as_str(), l.idx)).collect();
    let mut pairs = store.index_pairs();
    while let Some(pair) = pairs.next().await {
        let (nin, lender) = pair?;
        if let Some(&i) = idx.get(lender.as_str()) {
            builder.push(nin, i)?;
        }
    }
    Ok(builder.finish())
}

/// What follows the change feed: the store it comes from, and the index and
/// answer cache it keeps current.
pub struct Followers {
    pub store: Arc<dyn Store>,
    pub lenders: Arc<Lenders>,
    pub index: Arc<Index>,
    pub cache: Arc<AnswerCache>,
}

/// Follows the changes other processes make to the store (datasets loaded by the
/// `ingest` command or another instance, pushes received by another instance) and
/// applies them to this process's index, starting after change `after`. Wakes every
/// `every`, or at once when `wake` is notified. Returns when `stop` fires.
pub async fn follow_changes(
    targets: Followers,
    mut after: i64,
    every: Duration,
    wake: Arc<tokio::sync::Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let Followers {
        store,
        lenders,
        index,
        cache,
    } = targets;
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = wake.notified() => {}
            _ = stop.changed() => return,
        }
        loop {
            let batch = match store.changes_since(after, 10_000).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read index changes; retrying");
                    break;
                }
            };
            if apply(&*store, &lenders, &index, &cache, &batch.changes)
                .await
                .is_err()
            {
                // Not advancing `after`: the same changes are tried again.
                break;
            }
            let done = batch.last == after;
            after = batch.last;
            if done {
                break;
            }
        }
    }
}

async fn apply(
    store: &dyn Store,
    lenders: &Lenders,
    index: &Index,
    cache: &AnswerCache,
    changes: &[IndexChange],
) -> Result<(), RebuildError> {
    // Consecutive person changes of one lender go into one index swap.
    let mut pending: Vec<(u16, crate::nin::NationalId, bool)> = Vec::new();
    for change in changes {
        match change {
            IndexChange::Person {
                lender_id,
                nin,
                holds,
            } => {
                if let Some(l) = lenders.idx_of(lender_id) {
                    pending.push((l, *nin, *holds));
                    cache.person_changed(*nin, l).await;
                }
            }
            IndexChange::LenderReplaced { lender_id } => {
                flush(index, &mut pending)?;
                let Some(l) = lenders.idx_of(lender_id) else {
                    continue;
                };
                let persons = store.persons_of(lender_id).await?;
                index.update(|s| s.with_lender_replaced(l, &persons))?;
                cache.lender_replaced(l);
                tracing::info!(lender = %lender_id, persons = persons.len(), "index updated from a dataset loaded elsewhere");
            }
        }
    }
    flush(index, &mut pending)
}

fn flush(
    index: &Index,
    pending: &mut Vec<(u16, crate::nin::NationalId, bool)>,
) -> Result<(), RebuildError> {
    if pending.is_empty() {
        return Ok(());
    }
    let mut lenders: Vec<u16> = pending.iter().map(|p| p.0).collect();
    lenders.sort_unstable();
    lenders.dedup();
    for l in lenders {
        let changes: Vec<_> = pending
            .iter()
            .filter(|p| p.0 == l)
            .map(|p| (p.1, p.2))
            .collect();
        index.update(|s| s.with_changes(l, &changes))?;
    }
    pending.clear();
    Ok(())
}
