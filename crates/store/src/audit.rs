//! What the disclosure log's verifier, the retention job and the copy-letter job
//! need from the store, beside the lookup path's [`Store`](super::Store). A
//! supertrait of `Store`, so every backend has it and `dyn Store` offers it; kept
//! apart so the lookup path's trait stays small.

use super::{StoreError, StoreFuture};
use gjeldsbro_domain::disclosure::record::DisclosureRecord;

/// A disclosure record as stored: its place in the chain and its hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDisclosure {
    pub seq: i64,
    pub record: DisclosureRecord,
    pub prev_hash: String,
    pub hash: String,
}

/// A retention checkpoint: the records up to and including `seq` were verified
/// and may be deleted; the chain goes on from `hash` (record `seq`'s hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    /// The `at` of record `seq`, the newest record it allows to delete.
    pub record_at: String,
    pub created_at: String,
}

/// What one purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedRows {
    pub disclosures: u64,
    /// Letter rows (with their links to disclosures) that covered only purged records.
    pub letters: u64,
}

/// One run of the letters job: one manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterBatch {
    pub batch_id: String,
    /// The day (Europe/Oslo) whose disclosures the batch's letters cover, `YYYY-MM-DD`.
    pub day: String,
    /// The manifest's file name.
    pub manifest: String,
    pub created_at: String,
}

/// One letter: a person's owed disclosures of one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterRow {
    pub letter_id: String,
    pub nin: u64,
    pub day: String,
    /// The PDF's file name (named by the letter id, never by the person).
    pub file: String,
    pub created_at: String,
    /// The disclosure records it covers, ascending.
    pub seqs: Vec<i64>,
}

/// The store's side of the disclosure log's verification, retention and letters.
pub trait AuditStore {
    /// Up to `limit` records with `seq > after`, in seq order (a page of the
    /// chain; callers walk it page by page, so the log can be any size).
    fn disclosures_after(&self, after: i64, limit: u32) -> StoreFuture<'_, Vec<StoredDisclosure>>;

    /// The records with these sequence numbers, in seq order (missing ones are
    /// left out).
    fn disclosures_by_seq<'a>(&'a self, seqs: &'a [i64]) -> StoreFuture<'a, Vec<StoredDisclosure>>;

    /// The newest retention checkpoint, if any.
    fn latest_checkpoint(&self) -> StoreFuture<'_, Option<Checkpoint>>;

    /// Stores a checkpoint. The database refuses one that does not follow the
    /// latest or does not name a stored record with exactly that hash.
    fn add_checkpoint<'a>(&'a self, checkpoint: &'a Checkpoint) -> StoreFuture<'a, ()>;

    /// Deletes the records up to the latest checkpoint, and the letters (and
    /// links) that covered only such records, in short batches.
    fn purge_checkpointed(&self) -> StoreFuture<'_, PurgedRows>;

    /// Deletes consent records that ended before `ended_before` (RFC 3339 UTC).
    /// `None` when the store has no consent table yet.
    fn purge_consents<'a>(&'a self, ended_before: &'a str) -> StoreFuture<'a, Option<u64>>;

    /// The persons with disclosures the broker owes a letter for (purpose
    /// `search`, `letter_owed_by = broker`) at or after `from` and before `to`
    /// (RFC 3339 UTC without the zone letter: a plain string comparison is then
    /// exact at every precision) that no letter covers yet; ascending.
    fn owed_persons<'a>(&'a self, from: &'a str, to: &'a str) -> StoreFuture<'a, Vec<u64>>;

    /// Those persons' owed, not yet lettered records in the same window, in seq order.
    fn owed_disclosures<'a>(
        &'a self,
        persons: &'a [u64],
        from: &'a str,
        to: &'a str,
    ) -> StoreFuture<'a, Vec<StoredDisclosure>>;

    /// Records a new batch before any of its letters.
    fn add_letter_batch<'a>(&'a self, batch: &'a LetterBatch) -> StoreFuture<'a, ()>;

    /// Records letters and the disclosures each covers, all or nothing. Fails
    /// (writing nothing) if any of the disclosures is already in a letter.
    fn add_letters<'a>(
        &'a self,
        batch_id: &'a str,
        letters: &'a [LetterRow],
    ) -> StoreFuture<'a, ()>;

    /// Batches whose files and manifest were not all written (a run that
    /// crashed), oldest first.
    fn incomplete_letter_batches(&self) -> StoreFuture<'_, Vec<LetterBatch>>;

    /// The letters of a batch, with the disclosures each covers.
    fn letters_of_batch<'a>(&'a self, batch_id: &'a str) -> StoreFuture<'a, Vec<LetterRow>>;

    /// Marks a batch as written whole.
    fn complete_letter_batch<'a>(&'a self, batch_id: &'a str, at: &'a str) -> StoreFuture<'a, ()>;
}

/// Turns a stored `nin` column back into the record's number.
pub(crate) fn nin_from_column(n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt("a stored id is negative".into()))
}
