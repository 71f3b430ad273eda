//! Deliveries in: a lender's daily dataset (from a file now; pulls and pushes build
//! on the same path). Parse and validate as a stream, write into a new store
//! generation, and only when every rule held, make it current in one step and
//! update the index. A rejected or failed load leaves the old data in force and is
//! recorded (lender, time, rule, position; never a national id).

/// The delivery parser and its rules live in the domain crate (lender-check
/// shares them).
pub use gjeldsbro_domain::delivery as parse;
pub mod pull;
pub mod push;
pub mod schedule;

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::index::{Index, IndexError};
use crate::lenders::Lenders;
use crate::nin::IdPolicy;
use crate::store::{DatasetSummary, DeliveryRecord, SnapshotRow, Store, StoreError};
pub use parse::{ParseError, ParseSummary, Rejection};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("unknown lender {0:?}")]
    UnknownLender(String),
    /// The caller may not deliver this data (another organisation's).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    #[error("delivery rejected: {0}")]
    Rejected(Rejection),
    #[error("cannot read the delivery: {0}")]
    Read(String),
    /// Fetching a pulled page failed (transport, status); the lender's data was
    /// not judged.
    #[error("cannot fetch the delivery: {0}")]
    Fetch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Index(#[from] IndexError),
}

/// Why a document producer stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoadFailure {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{0}")]
    Fetch(String),
}

/// An accepted delivery.
#[derive(Debug, Clone)]
pub struct IngestReport {
    pub lender_id: String,
    pub customers: u64,
    pub loans: u64,
    pub open_loans: u64,
    pub persons: u64,
}

/// Loads deliveries; one at a time per lender.
pub struct Ingestor {
    store: Arc<dyn Store>,
    lenders: Arc<Lenders>,
    index: Option<Arc<Index>>,
    policy: IdPolicy,
    locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    cache: Option<Arc<crate::lookup::AnswerCache>>,
}

struct ChannelSink(mpsc::Sender<Vec<SnapshotRow>>);

impl parse::RowSink for ChannelSink {
    fn rows(&mut self, rows: Vec<SnapshotRow>) -> bool {
        self.0.blocking_send(rows).is_ok()
    }
}

impl Ingestor {
    /// `index` is the live index to update, when a broker is running in-process.
    pub fn new(
        store: Arc<dyn Store>,
        lenders: Arc<Lenders>,
        index: Option<Arc<Index>>,
        policy: IdPolicy,
    ) -> Self {
        Ingestor {
            store,
            lenders,
            index,
            policy,
            locks: Default::default(),
            metrics: None,
            cache: None,
        }
    }

    /// Drops cached lender answers that a delivery makes stale.
    pub fn with_cache(mut self, cache: Arc<crate::lookup::AnswerCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Counts deliveries in `metrics` too.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count(&self, lender_id: &str, kind: &str, accepted: bool) {
        if let Some(m) = &self.metrics {
            let result = if accepted { "accepted" } else { "rejected" };
            m.deliveries
                .with_label_values(&[lender_id, kind, result])
                .inc();
            m.record_delivery(
                lender_id,
                accepted,
                time::OffsetDateTime::now_utc().unix_timestamp(),
            );
        }
    }

    fn lock_for(&self, lender_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(lender_id.to_owned()).or_default().clone()
    }

    /// Loads a full dataset for `lender_id` from one document in `reader` (read on a
    /// blocking thread). `kind` is `file` or `pull`; `source` names it in the records.
    pub async fn load_dataset<R: Read + Send + 'static>(
        &self,
        lender_id: &str,
        reader: R,
        kind: &str,
        source: &str,
        require_provider: bool,
    ) -> Result<IngestReport, IngestError> {
        self.load_with(
            lender_id,
            kind,
            source,
            require_provider,
            move |parser, sink| {
                parser.parse_document(reader, sink).map(|_| ())?;
                Ok(())
            },
        )
        .await
    }

    /// Loads a full dataset whose documents `produce` feeds to the parser, on a
    /// blocking thread (it may block on I/O, e.g. the pages of a pull).
    pub async fn load_with<F>(
        &self,
        lender_id: &str,
        kind: &str,
        source: &str,
        require_provider: bool,
        produce: F,
    ) -> Result<IngestReport, IngestError>
    where
        F: FnOnce(&mut parse::DatasetParser, &mut dyn parse::RowSink) -> Result<(), LoadFailure>
            + Send
            + 'static,
    {
        let lender = self
            .lenders
            .idx_of(lender_id)
            .and_then(|i| self.lenders.get(i))
            .ok_or_else(|| IngestError::UnknownLender(lender_id.to_owned()))?;
        let (lender_idx, org_no, debt_kind) = (lender.idx, lender.org_no.clone(), lender.kind);
        let lock = self.lock_for(lender_id);
        let _one_load_per_lender = lock.lock().await;

        let mut writer = self.store.begin_dataset(lender_id).await?;
        let (tx, mut rx) = mpsc::channel::<Vec<SnapshotRow>>(4);
        let policy = self.policy;
        let parser = tokio::task::spawn_blocking(move || {
            let mut sink = ChannelSink(tx);
            let mut parser =
                parse::DatasetParser::new(&org_no, policy, require_provider).of_kind(debt_kind);
            produce(&mut parser, &mut sink)?;
            Ok::<_, LoadFailure>(parser.finish()?)
        });
        let mut write_error = None;
        while let Some(rows) = rx.recv().await {
            if let Err(e) = writer.write(&rows).await {
                write_error = Some(e);
                // Dropping the receiver stops the parser at its next batch.
                break;
            }
        }
        drop(rx);
        let parsed = parser
            .await
            .map_err(|e| IngestError::Read(format!("parser task failed: {e}")))?;

        let at = crate::time::now_rfc3339();
        let outcome = match (write_error, parsed) {
            (Some(e), _) => Err(IngestError::Store(e)),
            (None, Err(LoadFailure::Parse(ParseError::Aborted))) => {
                Err(IngestError::Read("the load was aborted".into()))
            }
            (None, Err(LoadFailure::Parse(ParseError::Rejected(r)))) => {
                Err(IngestError::Rejected(r))
            }
            (None, Err(LoadFailure::Fetch(msg))) => Err(IngestError::Fetch(msg)),
            (None, Ok(summary)) => Ok(summary),
        };
        let summary = match outcome {
            Ok(summary) => summary,
            Err(e) => {
                // Best effort: leftovers of an aborted generation are invisible and
                // are also removed at the next start.
                let _ = writer.abort().await;
                let (rule, position, detail) = match &e {
                    IngestError::Rejected(r) => (
                        Some(r.rule.to_owned()),
                        Some(r.position as i64),
                        r.detail.clone(),
                    ),
                    IngestError::Fetch(msg) => (Some("fetch_failed".to_owned()), None, msg.clone()),
                    other => (Some("load_failed".to_owned()), None, other.to_string()),
                };
                let record = DeliveryRecord {
                    lender_id: lender_id.to_owned(),
                    at,
                    kind: kind.to_owned(),
                    accepted: false,
                    rule,
                    position,
                    detail: Some(format!("{source}: {detail}")),
                    customers: 0,
                    loans: 0,
                };
                self.count(lender_id, kind, false);
                if let Err(store_err) = self.store.record_delivery(&record).await {
                    tracing::error!(lender = lender_id, error = %store_err, "could not record a rejected delivery");
                }
                tracing::warn!(
                    lender = lender_id,
                    kind,
                    rule = record.rule.as_deref(),
                    position,
                    "delivery rejected"
                );
                return Err(e);
            }
        };

        writer
            .commit(DatasetSummary {
                source: source.to_owned(),
                customers: summary.customers,
                loans: summary.open_loans,
            })
            .await?;
        if let Some(index) = &self.index {
            // From the store, not the parse: pushes that arrived during the load
            // were replayed onto the new dataset at the flip. Pushes wait for this
            // step, so none can slip between the read and the swap.
            let push_lock = self.lock_for(&format!("push:{lender_id}"));
            let _no_push_meanwhile = push_lock.lock().await;
            let persons = self.store.persons_of(lender_id).await?;
            index.update(|s| s.with_lender_replaced(lender_idx, &persons))?;
        }
        if let Some(cache) = &self.cache {
            cache.lender_replaced(lender_idx);
        }
        self.store
            .record_delivery(&DeliveryRecord {
                lender_id: lender_id.to_owned(),
                at,
                kind: kind.to_owned(),
                accepted: true,
                rule: None,
                position: None,
                detail: Some(source.to_owned()),
                customers: summary.customers,
                loans: summary.loans,
            })
            .await?;
        self.count(lender_id, kind, true);
        tracing::info!(
            lender = lender_id,
            kind,
            customers = summary.customers,
            loans = summary.loans,
            open_loans = summary.open_loans,
            "delivery accepted"
        );
        Ok(IngestReport {
            lender_id: lender_id.to_owned(),
            customers: summary.customers,
            loans: summary.loans,
            open_loans: summary.open_loans,
            persons: summary.persons.len() as u64,
        })
    }
}
