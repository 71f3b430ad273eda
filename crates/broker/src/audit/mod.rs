//! The disclosure log. Every answer that discloses debt to someone other than the
//! person writes its records here before it leaves; if they cannot be written the
//! answer is not sent.
//!
//! Writes go through one writer task that commits whatever has queued up in a
//! single transaction (group commit): each record is durable before its lookup
//! answers, and a burst of lookups costs one fsync, not one each.

pub use gjeldsbro_domain::disclosure::{encoding, record};
pub mod retention;
pub mod verify;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, StoreError};
pub use record::DisclosureRecord;

/// Most records one transaction takes.
const MAX_BATCH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the disclosure log could not be written: {0}")]
    Write(#[from] StoreError),
    #[error("the disclosure log writer has stopped")]
    WriterGone,
}

type Pending = (Vec<DisclosureRecord>, oneshot::Sender<Result<(), String>>);

/// A handle to the disclosure writer; cheap to clone.
#[derive(Clone)]
pub struct DisclosureLog {
    tx: mpsc::Sender<Pending>,
}

impl DisclosureLog {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Arc<dyn Store>) -> Self {
        Self::start_timed(store, None)
    }

    /// As `start`, observing each group commit's duration in `timer`.
    pub fn start_timed(store: Arc<dyn Store>, timer: Option<prometheus::Histogram>) -> Self {
        let (tx, rx) = mpsc::channel::<Pending>(4096);
        tokio::spawn(writer(store, rx, timer));
        DisclosureLog { tx }
    }

    /// Appends the records of one answer; returns once they are committed.
    pub async fn record(&self, records: Vec<DisclosureRecord>) -> Result<(), AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((records, done))
            .await
            .map_err(|_| AuditError::WriterGone)?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(AuditError::Write(StoreError::Query(msg))),
            Err(_) => Err(AuditError::WriterGone),
        }
    }
}

async fn writer(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Pending>,
    timer: Option<prometheus::Histogram>,
) {
    let mut queue: Vec<Pending> = Vec::new();
    while let Some(first) = rx.recv().await {
        queue.push(first);
        let mut count = queue[0].0.len();
        while count < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => {
                    count += p.0.len();
                    queue.push(p);
                }
                Err(_) => break,
            }
        }
        let batch: Vec<DisclosureRecord> =
            queue.iter().flat_map(|(r, _)| r.iter().cloned()).collect();
        let started = std::time::Instant::now();
        let outcome = store
            .append_disclosures(&batch)
            .await
            .map_err(|e| e.to_string());
        if let Some(t) = &timer {
            t.observe(started.elapsed().as_secs_f64());
        }
        for (_, done) in queue.drain(..) {
            // A lookup that gave up waiting has dropped its receiver; nothing to do.
            let _ = done.send(outcome.clone());
        }
    }
}
