//! Intraday pushes (`POST /debt-information/v1/loans`): a lender reports new loans,
//! credit-limit changes and repaid loans within minutes. Same format and rules as
//! the daily dataset; all or nothing; a lender may push only for its own
//! organisation. Open loans are inserted or replace the stored loan with the same
//! `accountID`; a loan with all amounts 0 is closed and removed, and the person
//! leaves the index for that lender when no open loan remains there.

use super::parse::{DatasetParser, ParseError, RowSink};
use super::{IngestError, Ingestor};
use crate::store::{DeliveryRecord, SnapshotRow};

/// An accepted push.
#[derive(Debug, Clone)]
pub struct PushReport {
    pub lender_id: String,
    pub customers: u64,
    pub loans: u64,
    /// Persons now held by the lender / no longer held.
    pub persons_added_or_kept: u64,
    pub persons_removed: u64,
}

struct Collect(Vec<SnapshotRow>);

impl RowSink for Collect {
    fn rows(&mut self, rows: Vec<SnapshotRow>) -> bool {
        self.0.extend(rows);
        true
    }
}

impl Ingestor {
    /// Validates and applies one push from the lender with organisation `caller_org`.
    /// The body is parsed as it is read, on a blocking thread; it may block (a
    /// request body streaming in).
    pub async fn push<R: std::io::Read + Send + 'static>(
        &self,
        caller_org: &str,
        body: R,
    ) -> Result<PushReport, IngestError> {
        let lender = self
            .lenders
            .idx_of_org(caller_org)
            .and_then(|i| self.lenders.get(i))
            .ok_or(IngestError::Forbidden(
                "the organisation is not a configured lender",
            ))?;
        let (lender_idx, lender_id, kind) = (lender.idx, lender.id.clone(), lender.kind);

        let (org, policy) = (caller_org.to_owned(), self.policy);
        let parsed = tokio::task::spawn_blocking(move || {
            let mut sink = Collect(Vec::new());
            let mut parser = DatasetParser::new(&org, policy, true)
                .including_closed()
                .of_kind(kind);
            parser
                .parse_document(body, &mut sink)
                .and_then(|_| parser.finish())
                .map(|summary| (summary, sink.0))
        })
        .await
        .map_err(|e| IngestError::Read(format!("parser task failed: {e}")))?;
        let (summary, rows) = match parsed {
            Ok(done) => done,
            Err(ParseError::Rejected(r))
                if matches!(r.rule, "foreign_institution" | "wrong_provider") =>
            {
                self.record_push(&lender_id, false, Some(&r), 0, 0).await;
                return Err(IngestError::Forbidden(
                    "a lender may push only for its own organisation",
                ));
            }
            Err(ParseError::Rejected(r)) => {
                self.record_push(&lender_id, false, Some(&r), 0, 0).await;
                return Err(IngestError::Rejected(r));
            }
            Err(ParseError::Aborted) => {
                return Err(IngestError::Read("the push was aborted".into()));
            }
        };

        // Pushes of one lender apply one at a time; they do not wait for a
        // running load (the load replays them onto its dataset when it flips).
        let lock = self.lock_for(&format!("push:{lender_id}"));
        let _one_push_at_a_time = lock.lock().await;
        let holds = self.store.apply_push(&lender_id, &rows).await?;
        if let Some(index) = &self.index {
            index.update(|s| s.with_changes(lender_idx, &holds))?;
        }
        if let Some(cache) = &self.cache {
            for (nin, _) in &holds {
                cache.person_changed(*nin, lender_idx).await;
            }
        }
        self.record_push(&lender_id, true, None, summary.customers, summary.loans)
            .await;
        let removed = holds.iter().filter(|(_, h)| !h).count() as u64;
        tracing::info!(lender = %lender_id, customers = summary.customers, loans = summary.loans, persons_removed = removed, "push applied");
        Ok(PushReport {
            lender_id,
            customers: summary.customers,
            loans: summary.loans,
            persons_added_or_kept: holds.len() as u64 - removed,
            persons_removed: removed,
        })
    }

    async fn record_push(
        &self,
        lender_id: &str,
        accepted: bool,
        rejection: Option<&super::Rejection>,
        customers: u64,
        loans: u64,
    ) {
        self.count(lender_id, "push", accepted);
        let record = DeliveryRecord {
            lender_id: lender_id.to_owned(),
            at: crate::time::now_rfc3339(),
            kind: "push".to_owned(),
            accepted,
            rule: rejection.map(|r| r.rule.to_owned()),
            position: rejection.map(|r| r.position as i64),
            detail: rejection.map(|r| r.detail.clone()),
            customers,
            loans,
        };
        if let Err(e) = self.store.record_delivery(&record).await {
            tracing::error!(lender = lender_id, error = %e, "could not record a push");
        }
    }
}
