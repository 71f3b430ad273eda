//! Durable state behind one small trait: lender snapshots, delivery records and the
//! disclosure log. SQLite (embedded) is the default; PostgreSQL serves several
//! broker processes on one database. The lookup path sees only [`Store`].

pub mod audit;
pub mod consents;
pub mod embed;
pub mod postgres;
mod postgres_audit;
mod postgres_consents;
mod postgres_embed;
pub mod sqlite;
mod sqlite_audit;
mod sqlite_consents;
mod sqlite_embed;

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use gjeldsbro_adapter::Loan;

pub use audit::{AuditStore, Checkpoint, LetterBatch, LetterRow, PurgedRows, StoredDisclosure};
pub use consents::{
    ConsentEvent, ConsentUse, CreatedConsent, NewConsent, PersonDisclosure, StoredConsent,
    UseRequest,
};
pub use embed::{EmbedSession, NewEmbedSession};
use gjeldsbro_domain::disclosure::record::DisclosureRecord;
use gjeldsbro_domain::nin::NationalId;

/// Why the store could not do what was asked. Texts never hold a national id.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store query failed: {0}")]
    Query(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported store url (use sqlite://PATH or postgres://USER@HOST/DB)")]
    UnsupportedUrl,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                StoreError::Unavailable(gjeldsbro_adapter::scrub(&e.to_string()))
            }
            other => StoreError::Query(gjeldsbro_adapter::scrub(&other.to_string())),
        }
    }
}

pub type StoreFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// One snapshot row to load (the delivery parser's output).
pub use gjeldsbro_domain::delivery::SnapshotRow;

/// What a finished load holds, recorded with the dataset.
#[derive(Debug, Clone, Default)]
pub struct DatasetSummary {
    /// Where it came from: a file name or `pull`.
    pub source: String,
    pub customers: u64,
    pub loans: u64,
}

/// The dataset a lender has in force.
#[derive(Debug, Clone)]
pub struct DatasetInfo {
    pub lender_id: String,
    /// Changes with every accepted load; lets other processes notice one.
    pub generation: i64,
    pub loaded_at: String,
    pub source: String,
    pub customers: i64,
    pub loans: i64,
}

/// A change another process made that this one's index must follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexChange {
    /// The lender's whole dataset was replaced.
    LenderReplaced { lender_id: String },
    /// A push changed whether the lender holds an open loan for the person.
    Person {
        lender_id: String,
        nin: NationalId,
        holds: bool,
    },
}

/// Changes after a sequence number, and the number to ask from next time.
#[derive(Debug, Clone, Default)]
pub struct ChangeBatch {
    pub last: i64,
    pub changes: Vec<IndexChange>,
}

impl ChangeBatch {
    /// Adds one stored change row (skipping this process's own) and moves `last`.
    pub fn add_row(
        &mut self,
        own_origin: &str,
        seq: i64,
        origin: &str,
        lender_id: String,
        nin: Option<i64>,
        holds: Option<bool>,
    ) -> Result<(), StoreError> {
        self.last = seq;
        if origin == own_origin {
            return Ok(());
        }
        self.changes.push(match (nin, holds) {
            (Some(n), Some(h)) => IndexChange::Person {
                lender_id,
                nin: NationalId::from_stored(n as u64)
                    .ok_or_else(|| StoreError::Corrupt("a stored id is out of range".into()))?,
                holds: h,
            },
            _ => IndexChange::LenderReplaced { lender_id },
        });
        Ok(())
    }
}

/// A delivery's outcome, accepted or rejected. Holds no national id.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryRecord {
    pub lender_id: String,
    pub at: String,
    /// `file`, `pull` or `push`.
    pub kind: String,
    pub accepted: bool,
    pub rule: Option<String>,
    pub position: Option<i64>,
    pub detail: Option<String>,
    pub customers: u64,
    pub loans: u64,
}

/// A load in progress. Rows written through it stay invisible until `commit`;
/// dropping it (or a crash) leaves the lender's previous dataset in force.
pub trait DatasetWriter: Send {
    fn write<'a>(&'a mut self, rows: &'a [SnapshotRow]) -> StoreFuture<'a, ()>;
    /// Makes the new dataset the lender's current one in a single step.
    fn commit(self: Box<Self>, summary: DatasetSummary) -> StoreFuture<'static, ()>;
    /// Removes what was written so far. Optional: leftovers are also cleaned at start.
    fn abort(self: Box<Self>) -> StoreFuture<'static, ()>;
}

/// The store as the broker opens it: every small trait below in one object
/// (and, through [`AuditStore`], the disclosure log's verifier, retention and
/// letters jobs). Code that needs one part takes that trait; calling a part's
/// method on a `dyn Store` needs the part in scope (`use gjeldsbro_store::prelude::*`).
pub trait Store:
    Snapshots
    + Datasets
    + ChangeFeed
    + Disclosures
    + Consents
    + EmbedSessions
    + AuditStore
    + Send
    + Sync
    + 'static
{
    /// Cheap reachability check for readiness.
    fn ping(&self) -> StoreFuture<'_, ()>;
}

/// The lenders' snapshot rows: what answers when a lender cannot, and what the index is built from.
pub trait Snapshots: Send + Sync {
    /// The lender's current snapshot rows for one person (empty when none).
    fn snapshot_for<'a>(
        &'a self,
        lender_id: &'a str,
        nin: NationalId,
    ) -> StoreFuture<'a, Vec<Loan>>;

    /// Starts loading a new dataset for a lender.
    fn begin_dataset<'a>(&'a self, lender_id: &'a str) -> StoreFuture<'a, Box<dyn DatasetWriter>>;

    /// Every (person, lender id) pair of the current datasets, in storage order
    /// (repeats and any order allowed: the index builder merges; no sort of
    /// millions of rows at start).
    fn index_pairs(&self) -> BoxStream<'_, Result<(u64, String), StoreError>>;

    /// The persons of one lender's current dataset, sorted and unique.
    fn persons_of<'a>(&'a self, lender_id: &'a str) -> StoreFuture<'a, Vec<u64>>;

    /// Applies an intraday push in one transaction: each open loan is inserted or
    /// replaces the stored loan with the same `accountID`; each closed loan removes
    /// it. Loans not named are untouched. Returns, for every person touched,
    /// whether the lender still holds an open loan for them afterwards.
    fn apply_push<'a>(
        &'a self,
        lender_id: &'a str,
        rows: &'a [SnapshotRow],
    ) -> StoreFuture<'a, Vec<(NationalId, bool)>>;

    /// Removes rows of unfinished or superseded loads (at start, after a crash).
    fn clean_up(&self) -> StoreFuture<'_, u64>;
}

/// Which dataset each lender has in force, and the record of every delivery.
pub trait Datasets: Send + Sync {
    /// The datasets in force.
    fn datasets(&self) -> StoreFuture<'_, Vec<DatasetInfo>>;

    /// The latest delivery records, newest first.
    fn deliveries(&self, limit: u32) -> StoreFuture<'_, Vec<DeliveryRecord>>;

    /// Records a delivery's outcome.
    fn record_delivery<'a>(&'a self, record: &'a DeliveryRecord) -> StoreFuture<'a, ()>;
}

/// The change feed other broker processes follow (datasets flipped, persons pushed).
pub trait ChangeFeed: Send + Sync {
    /// The newest change's sequence number (0 when none).
    fn latest_change(&self) -> StoreFuture<'_, i64>;

    /// Changes made by other processes after `after`, oldest first, at most
    /// `limit`.
    fn changes_since(&self, after: i64, limit: u32) -> StoreFuture<'_, ChangeBatch>;

    /// Wakes `wake` whenever another process records a change, where the store can
    /// tell (PostgreSQL LISTEN/NOTIFY); runs in the background until the process
    /// ends. Stores without notifications return at once: followers poll.
    fn watch_changes(&self, wake: std::sync::Arc<tokio::sync::Notify>) -> StoreFuture<'_, ()>;
}

/// Appending to the disclosure log (reading it back is [`AuditStore`]'s).
pub trait Disclosures: Send + Sync {
    /// Appends disclosure records durably, chaining each to the previous, in one
    /// transaction: all are written or none.
    fn append_disclosures<'a>(&'a self, records: &'a [DisclosureRecord]) -> StoreFuture<'a, ()>;
}

/// Consents, their uses and refusals, and what the person's own view lists.
pub trait Consents: Send + Sync {
    // Consents (issue 5). Times are fixed-width RFC 3339 UTC text.

    /// Creates a consent and its `created` feed event in one transaction, unless
    /// the client already used `client_consent_id`: then the earlier consent is
    /// returned with `fresh: false` and nothing is written.
    fn create_consent<'a>(&'a self, consent: &'a NewConsent) -> StoreFuture<'a, CreatedConsent>;

    /// One consent by id.
    fn consent<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<StoredConsent>>;

    /// Archives (withdraws) a consent and writes its `archived` feed event in one
    /// transaction. False when it was archived already (nothing written).
    fn archive_consent<'a>(
        &'a self,
        id: &'a str,
        at: &'a str,
        by: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// The one step that decides a consent lookup, in one transaction: spends the
    /// consent if it belongs to `client_org`, is not archived, not spent and ends
    /// after `at` (a conditional UPDATE: of concurrent uses of a one-time consent
    /// exactly one succeeds), records the use, and appends the disclosure records
    /// to the hash-chained log. False: refused, nothing written.
    fn use_consent_and_record<'a>(
        &'a self,
        request: &'a UseRequest,
        records: &'a [DisclosureRecord],
    ) -> StoreFuture<'a, bool>;

    /// Records a refused attempt of the owning client to use its consent.
    fn record_consent_refusal<'a>(
        &'a self,
        consent_id: &'a str,
        by_org: &'a str,
        at: &'a str,
    ) -> StoreFuture<'a, ()>;

    /// The person's consents, newest first.
    fn consents_of_person(&self, nin: NationalId) -> StoreFuture<'_, Vec<StoredConsent>>;

    /// Every use of the person's consents, oldest first.
    fn consent_uses_of_person(&self, nin: NationalId) -> StoreFuture<'_, Vec<ConsentUse>>;

    /// A client's feed events with sequence number ≥ `from`, oldest first.
    fn consent_events<'a>(
        &'a self,
        client_org: &'a str,
        from: i64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<ConsentEvent>>;

    /// The newest disclosure records about a person, newest first.
    fn disclosures_of_person(
        &self,
        nin: NationalId,
        limit: u32,
    ) -> StoreFuture<'_, Vec<PersonDisclosure>>;
}

/// The embedded page's single-use tokens and sessions.
pub trait EmbedSessions: Send + Sync {
    // The embedded page (issue 12). Times are fixed-width RFC 3339 UTC text.

    /// Claims an embed token's `jti`: true the first time, false ever after
    /// (of concurrent claims exactly one wins). The claim is kept until
    /// `expires_at`; claims past it are pruned (before `now`).
    fn claim_embed_token<'a>(
        &'a self,
        jti: &'a str,
        expires_at: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool>;

    /// Stores a new session of the embedded page; prunes ended ones.
    fn create_embed_session<'a>(&'a self, session: &'a NewEmbedSession) -> StoreFuture<'a, ()>;

    /// The session whose id hashes to `id_hash`, if in force at `now`, with its
    /// idle end moved on to `idle_until` (never past its end).
    fn touch_embed_session<'a>(
        &'a self,
        id_hash: &'a str,
        now: &'a str,
        idle_until: &'a str,
    ) -> StoreFuture<'a, Option<EmbedSession>>;
}

/// Every store trait, for `use gjeldsbro_store::prelude::*` where a whole
/// `Store` is used.
pub mod prelude {
    pub use crate::{
        AuditStore, ChangeFeed, Consents, Datasets, Disclosures, EmbedSessions, Snapshots, Store,
    };
}

/// Opens the store named by `url` (`sqlite://PATH`, `postgres://...` or
/// `postgresql://...`), running migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if postgres::is_postgres_url(url) {
        return Ok(Arc::new(postgres::PostgresStore::open(url).await?));
    }
    if let Some(path) = sqlite::path_from_url(url) {
        return Ok(Arc::new(sqlite::SqliteStore::open(&path).await?));
    }
    Err(StoreError::UnsupportedUrl)
}
