//! Building the index from the store: whole at start, per lender when another
//! process (the `ingest` command, another instance) loads a dataset.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{Index, IndexBuilder, IndexSnapshot};
use crate::lenders::Lenders;
use crate::store::{Store, StoreError};

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

/// Watches the store for datasets loaded elsewhere and brings the index up to date,
/// lender by lender. Returns when `stop` fires.
pub async fn follow_datasets(
    store: Arc<dyn Store>,
    lenders: Arc<Lenders>,
    index: Arc<Index>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut known: HashMap<String, i64> = match store.datasets().await {
        Ok(list) => list
            .into_iter()
            .map(|d| (d.lender_id, d.generation))
            .collect(),
        Err(_) => HashMap::new(),
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let Ok(current) = store.datasets().await else {
            continue;
        };
        for d in current {
            if known.get(&d.lender_id) == Some(&d.generation) {
                continue;
            }
            let Some(lender) = lenders.idx_of(&d.lender_id) else {
                continue;
            };
            match store.persons_of(&d.lender_id).await {
                Ok(persons) => {
                    if index
                        .update(|s| s.with_lender_replaced(lender, &persons))
                        .is_ok()
                    {
                        tracing::info!(lender = %d.lender_id, persons = persons.len(), "index updated from a new dataset");
                        known.insert(d.lender_id, d.generation);
                    }
                }
                Err(e) => {
                    tracing::warn!(lender = %d.lender_id, error = %e, "could not read a new dataset's persons")
                }
            }
        }
    }
}
