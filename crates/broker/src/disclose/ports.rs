//! What the disclosure pipeline needs from the rest of the broker, as one small
//! trait: the real broker implements it on `Broker` (in `broker.rs`), the tests
//! with fakes, so the pipeline's rules are tested without SQLite or sockets.

use std::future::Future;

use gjeldsbro_adapter::KindSet;
use time::OffsetDateTime;
use tokio::time::Instant;

use crate::audit::{AuditError, DisclosureRecord};
use crate::index::LenderIdx;
use crate::lookup::{MergedDebt, PersonDebt, TraceContext};
use crate::metrics::Metrics;
use crate::model::DebtInformation;
use crate::nin::NationalId;
use crate::redact::Purpose;
use crate::store::{StoreError, UseRequest};

/// The broker as the disclosure pipeline sees it.
///
/// The futures are `Send` because the pipeline runs inside axum handlers.
pub trait Ports: Sync {
    /// The fan-out: one `PersonDebt` per id, in the order asked, of lenders of
    /// `kinds` only.
    fn persons(
        &self,
        nins: &[NationalId],
        kinds: KindSet,
        deadline: Instant,
        trace: &TraceContext,
    ) -> impl Future<Output = Vec<PersonDebt>> + Send;

    /// Appends the records of one answer to the disclosure log; returns once
    /// they are committed.
    fn record(
        &self,
        records: Vec<DisclosureRecord>,
    ) -> impl Future<Output = Result<(), AuditError>> + Send;

    /// Spends a consent and appends its records in one transaction; false when
    /// the consent could no longer be used (nothing written).
    fn use_consent_and_record(
        &self,
        request: &UseRequest,
        records: &[DisclosureRecord],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The configured id of the lender at `idx` (what the record names).
    fn lender_id(&self, idx: LenderIdx) -> Option<&str>;

    /// Cuts a merged answer down to what `purpose` may see of `kinds`. Behind
    /// the port only because redaction still needs the lender table, whose
    /// entries carry HTTP clients; the pipeline calls it in one place.
    fn redact(&self, merged: &MergedDebt, purpose: Purpose, kinds: KindSet) -> DebtInformation;

    fn metrics(&self) -> &Metrics;

    /// The wall clock, for the records' `at`.
    fn now(&self) -> OffsetDateTime;
}
