//! Retention: disclosure records older than the configured period, and consent
//! records two years after they ended, are deleted.
//!
//! The disclosure log is purged as a prefix: everything before the first record
//! still inside the period (a record a little older that was appended after a
//! newer one stays until the next run, never the other way round). Before
//! anything is deleted, that prefix is verified and a checkpoint (its last seq and
//! hash) is stored, so the rest of the chain stays verifiable from it. A broken
//! chain is never purged: the purge would destroy the evidence.

use time::OffsetDateTime;

use super::verify::{Break, ChainWalker};
use crate::store::{Checkpoint, PurgedRows, Store, StoreError};

/// How long consent records are kept after they end (DOMAIN.md; NoGi's privacy
/// statement: "opptil 2 år etter at samtykket er utgått").
pub const CONSENT_YEARS_AFTER_END: i32 = 2;

/// Records read per page while finding and verifying the purgeable prefix.
const PAGE: u32 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the disclosure log is broken, so nothing was purged: {0}")]
    Broken(Break),
}

/// What a purge did (or, dry, would do).
#[derive(Debug, Clone, Default)]
pub struct PurgeReport {
    /// Records before this time (RFC 3339 UTC) were due.
    pub disclosure_cutoff: String,
    /// Consents that ended before this time were due.
    pub consent_cutoff: String,
    /// The checkpoint made by this run, if it found records to purge.
    pub new_checkpoint: Option<Checkpoint>,
    /// Records verified and newly checkpointed by this run.
    pub records_checkpointed: u64,
    /// Rows deleted (zero on a dry run).
    pub purged: PurgedRows,
    /// Consent records deleted; `None` when the store has no consent table yet.
    pub consents: Option<u64>,
    pub dry_run: bool,
}

/// `t` minus whole calendar years (29 February becomes 28 February).
pub fn years_before(t: OffsetDateTime, years: i32) -> OffsetDateTime {
    let d = t.date();
    let year = d.year() - years;
    let date = time::Date::from_calendar_date(year, d.month(), d.day())
        .or_else(|_| time::Date::from_calendar_date(year, d.month(), d.day().saturating_sub(1)))
        .unwrap_or(d);
    t.replace_date(date)
}

/// Purges what is past its period at `now`. `dry_run` verifies and counts only.
pub async fn purge(
    store: &dyn Store,
    now: OffsetDateTime,
    disclosure_days: u32,
    dry_run: bool,
) -> Result<PurgeReport, RetentionError> {
    // RFC 3339 UTC, whole seconds: the cutoffs as shown and stored.
    let disclosure_cutoff =
        crate::time::format_utc_seconds(now - time::Duration::days(i64::from(disclosure_days)));
    let consent_cutoff =
        crate::time::format_utc_seconds(years_before(now, CONSENT_YEARS_AFTER_END));
    // `at` is RFC 3339 UTC with a varying number of fraction digits; compared
    // with the cutoff less its zone letter, a plain string comparison is exact.
    let bound = disclosure_cutoff.trim_end_matches('Z').to_owned();

    let mut walker = ChainWalker::new(store.latest_checkpoint().await?, None);
    let mut last: Option<(i64, String, String)> = None;
    let mut checkpointed = 0u64;
    let mut after = 0i64;
    'pages: loop {
        let page = store.disclosures_after(after, PAGE).await?;
        let Some(end) = page.last() else { break };
        after = end.seq;
        for d in &page {
            if d.record.at.as_str() >= bound.as_str() {
                break 'pages;
            }
            let before = walker.records();
            walker.push(d).map_err(RetentionError::Broken)?;
            // Records already below the checkpoint only await deletion.
            if walker.records() > before {
                checkpointed += 1;
                last = Some((d.seq, d.hash.clone(), d.record.at.clone()));
            }
        }
    }

    let new_checkpoint = last.map(|(seq, hash, record_at)| Checkpoint {
        seq,
        hash,
        record_at,
        created_at: crate::time::format_rfc3339(now),
    });
    let mut report = PurgeReport {
        disclosure_cutoff,
        consent_cutoff,
        new_checkpoint: new_checkpoint.clone(),
        records_checkpointed: checkpointed,
        dry_run,
        ..PurgeReport::default()
    };
    if dry_run {
        return Ok(report);
    }
    if let Some(c) = &new_checkpoint {
        store.add_checkpoint(c).await?;
    }
    // Also finishes a purge an earlier run left half done.
    report.purged = store.purge_checkpointed().await?;
    report.consents = store.purge_consents(&report.consent_cutoff).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn calendar_years_back() {
        assert_eq!(
            years_before(datetime!(2026-03-01 12:00 UTC), 2),
            datetime!(2024-03-01 12:00 UTC)
        );
        assert_eq!(
            years_before(datetime!(2028-02-29 08:00 UTC), 2),
            datetime!(2026-02-28 08:00 UTC)
        );
    }
}
