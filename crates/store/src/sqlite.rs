//! The embedded SQLite store.
//!
//! WAL mode, `synchronous = FULL`: a committed disclosure survives a power cut.
//! Dataset loads write a new generation in short batched transactions and flip the
//! lender's current generation in one tiny transaction, so a load of millions of
//! rows never holds the write lock for long (disclosures keep flowing) and a crash
//! at any point leaves the previous dataset in force.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use gjeldsbro_adapter::Loan;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::prelude::*;
use super::{
    ChangeBatch, DatasetInfo, DatasetSummary, DatasetWriter, DeliveryRecord, SnapshotRow, Store,
    StoreError, StoreFuture,
};
use gjeldsbro_domain::disclosure::record::{DisclosureRecord, GENESIS, chain_hash};
use gjeldsbro_domain::nin::NationalId;

/// Rows per INSERT statement (4 parameters each, well under SQLite's limit).
const ROWS_PER_STATEMENT: usize = 500;
/// Rows deleted per transaction when cleaning an old generation.
const DELETE_BATCH: i64 = 20_000;

/// `sqlite:///abs/path.db`, `sqlite://rel/path.db` or `sqlite:path.db` → the path.
pub fn path_from_url(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let rest = rest.split('?').next().unwrap_or(rest);
    (!rest.is_empty()).then(|| PathBuf::from(rest))
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// This process's name in `index_changes`, so it can skip its own changes.
    origin: String,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and runs migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        }
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(StoreError::from)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        Ok(SqliteStore {
            pool,
            origin: uuid::Uuid::new_v4().to_string(),
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn parse_loan(json: &str) -> Result<Loan, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(gjeldsbro_adapter::scrub(&e.to_string())))
}

fn key(nin: NationalId) -> i64 {
    // Ids are below 10^11, far inside i64.
    nin.as_u64() as i64
}

impl Store for SqliteStore {
    fn ping(&self) -> StoreFuture<'_, ()> {
        async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        }
        .boxed()
    }
}

impl Snapshots for SqliteStore {
    fn snapshot_for<'a>(
        &'a self,
        lender_id: &'a str,
        nin: NationalId,
    ) -> StoreFuture<'a, Vec<Loan>> {
        async move {
            let rows = sqlx::query(
                "SELECT s.loan FROM snapshot_loans s JOIN datasets d \
                 ON d.lender_id = s.lender_id AND d.generation = s.generation \
                 WHERE s.nin = ? AND s.lender_id = ?",
            )
            .bind(key(nin))
            .bind(lender_id.to_owned())
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| parse_loan(r.get::<&str, _>(0)))
                .collect()
        }
        .boxed()
    }

    fn begin_dataset<'a>(&'a self, lender_id: &'a str) -> StoreFuture<'a, Box<dyn DatasetWriter>> {
        async move {
            let generation: i64 = sqlx::query_scalar(
                "UPDATE counters SET value = value + 1 WHERE name = 'generation' RETURNING value",
            )
            .fetch_one(&self.pool)
            .await?;
            // Pushes after this point are replayed onto the new generation at commit.
            let journal_from: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM push_journal")
                    .fetch_one(&self.pool)
                    .await?;
            Ok(Box::new(SqliteDatasetWriter {
                pool: self.pool.clone(),
                origin: self.origin.clone(),
                lender_id: lender_id.to_owned(),
                generation,
                journal_from,
            }) as Box<dyn DatasetWriter>)
        }
        .boxed()
    }

    fn index_pairs(&self) -> futures::stream::BoxStream<'_, Result<(u64, String), StoreError>> {
        sqlx::query(
            "SELECT s.nin, s.lender_id FROM snapshot_loans s JOIN datasets d \
             ON d.lender_id = s.lender_id AND d.generation = s.generation",
        )
        .fetch(&self.pool)
        .map_err(StoreError::from)
        .map(|row| {
            let row = row?;
            let nin: i64 = row.try_get(0)?;
            let lender: String = row.try_get(1)?;
            Ok((nin as u64, lender))
        })
        .boxed()
    }

    fn persons_of<'a>(&'a self, lender_id: &'a str) -> StoreFuture<'a, Vec<u64>> {
        async move {
            let rows: Vec<i64> = sqlx::query_scalar(
                "SELECT DISTINCT s.nin FROM snapshot_loans s JOIN datasets d \
                 ON d.lender_id = s.lender_id AND d.generation = s.generation \
                 WHERE s.lender_id = ? ORDER BY s.nin",
            )
            .bind(lender_id.to_owned())
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(|n| n as u64).collect())
        }
        .boxed()
    }

    fn apply_push<'a>(
        &'a self,
        lender_id: &'a str,
        rows: &'a [SnapshotRow],
    ) -> StoreFuture<'a, Vec<(NationalId, bool)>> {
        async move {
            let mut conn = self.pool.acquire().await?;
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            let result: Result<Vec<(NationalId, bool)>, StoreError> = async {
                // A lender that has never delivered a dataset gets an empty one to
                // attach its pushed loans to.
                let generation: Option<i64> =
                    sqlx::query_scalar("SELECT generation FROM datasets WHERE lender_id = ?")
                        .bind(lender_id.to_owned())
                        .fetch_optional(&mut *conn)
                        .await?;
                let generation = match generation {
                    Some(g) => g,
                    None => {
                        // Generation 0, below any load's: a load already running
                        // still flips over it (and replays these pushes).
                        sqlx::query(
                            "INSERT INTO datasets (lender_id, generation, loaded_at, source, customers, loans) \
                             VALUES (?, 0, ?, 'push', 0, 0)",
                        )
                        .bind(lender_id.to_owned())
                        .bind(gjeldsbro_domain::time::now_rfc3339())
                        .execute(&mut *conn)
                        .await?;
                        0
                    }
                };
                let mut touched: Vec<NationalId> = Vec::new();
                for row in rows {
                    let account = row.loan.account_id.clone().unwrap_or_default();
                    sqlx::query(
                        "DELETE FROM snapshot_loans WHERE lender_id = ? AND generation = ? AND nin = ? AND account_id = ?",
                    )
                    .bind(lender_id.to_owned())
                    .bind(generation)
                    .bind(key(row.nin))
                    .bind(account.clone())
                    .execute(&mut *conn)
                    .await?;
                    let journal_loan = if row.loan.is_closed() {
                        None
                    } else {
                        Some(
                            serde_json::to_string(&row.loan)
                                .map_err(|e| StoreError::Query(format!("cannot encode loan: {e}")))?,
                        )
                    };
                    sqlx::query(
                        "INSERT INTO push_journal (lender_id, nin, account_id, loan, at) VALUES (?, ?, ?, ?, ?)",
                    )
                    .bind(lender_id.to_owned())
                    .bind(key(row.nin))
                    .bind(account.clone())
                    .bind(journal_loan)
                    .bind(gjeldsbro_domain::time::now_rfc3339())
                    .execute(&mut *conn)
                    .await?;
                    if !row.loan.is_closed() {
                        let json = serde_json::to_string(&row.loan)
                            .map_err(|e| StoreError::Query(format!("cannot encode loan: {e}")))?;
                        sqlx::query(
                            "INSERT INTO snapshot_loans (lender_id, generation, nin, account_id, loan) VALUES (?, ?, ?, ?, ?)",
                        )
                        .bind(lender_id.to_owned())
                        .bind(generation)
                        .bind(key(row.nin))
                        .bind(account)
                        .bind(json)
                        .execute(&mut *conn)
                        .await?;
                    }
                    if !touched.contains(&row.nin) {
                        touched.push(row.nin);
                    }
                }
                let now = gjeldsbro_domain::time::now_rfc3339();
                let mut holds = Vec::with_capacity(touched.len());
                for nin in touched {
                    let n: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM snapshot_loans WHERE lender_id = ? AND generation = ? AND nin = ?",
                    )
                    .bind(lender_id.to_owned())
                    .bind(generation)
                    .bind(key(nin))
                    .fetch_one(&mut *conn)
                    .await?;
                    sqlx::query("INSERT INTO index_changes (origin, lender_id, nin, holds, at) VALUES (?, ?, ?, ?, ?)")
                        .bind(self.origin.clone())
                        .bind(lender_id.to_owned())
                        .bind(key(nin))
                        .bind(n > 0)
                        .bind(now.clone())
                        .execute(&mut *conn)
                        .await?;
                    holds.push((nin, n > 0));
                }
                Ok(holds)
            }
            .await;
            match result {
                Ok(holds) => {
                    sqlx::query("COMMIT").execute(&mut *conn).await?;
                    Ok(holds)
                }
                Err(e) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    Err(e)
                }
            }
        }
        .boxed()
    }

    fn clean_up(&self) -> StoreFuture<'_, u64> {
        async move {
            let mut total = 0u64;
            loop {
                let done = sqlx::query(
                    "DELETE FROM snapshot_loans WHERE rowid IN (SELECT s.rowid FROM snapshot_loans s \
                     LEFT JOIN datasets d ON d.lender_id = s.lender_id \
                     WHERE d.generation IS NULL OR d.generation <> s.generation LIMIT ?)",
                )
                .bind(DELETE_BATCH)
                .execute(&self.pool)
                .await?
                .rows_affected();
                total += done;
                if done == 0 {
                    return Ok(total);
                }
            }
        }
        .boxed()
    }
}

impl Datasets for SqliteStore {
    fn datasets(&self) -> StoreFuture<'_, Vec<DatasetInfo>> {
        async move {
            let rows = sqlx::query(
                "SELECT lender_id, generation, loaded_at, source, customers, loans FROM datasets ORDER BY lender_id",
            )
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(DatasetInfo {
                        lender_id: r.try_get(0)?,
                        generation: r.try_get(1)?,
                        loaded_at: r.try_get(2)?,
                        source: r.try_get(3)?,
                        customers: r.try_get(4)?,
                        loans: r.try_get(5)?,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn deliveries(&self, limit: u32) -> StoreFuture<'_, Vec<DeliveryRecord>> {
        async move {
            let rows = sqlx::query(
                "SELECT lender_id, at, kind, accepted, rule, position, detail, customers, loans \
                 FROM deliveries ORDER BY id DESC LIMIT ?",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(DeliveryRecord {
                        lender_id: r.try_get(0)?,
                        at: r.try_get(1)?,
                        kind: r.try_get(2)?,
                        accepted: r.try_get(3)?,
                        rule: r.try_get(4)?,
                        position: r.try_get(5)?,
                        detail: r.try_get(6)?,
                        customers: r.try_get::<i64, _>(7)? as u64,
                        loans: r.try_get::<i64, _>(8)? as u64,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn record_delivery<'a>(&'a self, d: &'a DeliveryRecord) -> StoreFuture<'a, ()> {
        async move {
            sqlx::query(
                "INSERT INTO deliveries (lender_id, at, kind, accepted, rule, position, detail, customers, loans) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(d.lender_id.clone())
            .bind(d.at.clone())
            .bind(d.kind.clone())
            .bind(d.accepted)
            .bind(d.rule.clone())
            .bind(d.position)
            .bind(d.detail.clone())
            .bind(d.customers as i64)
            .bind(d.loans as i64)
            .execute(&self.pool)
            .await?;
            Ok(())
        }
        .boxed()
    }
}

impl ChangeFeed for SqliteStore {
    fn latest_change(&self) -> StoreFuture<'_, i64> {
        async move {
            let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM index_changes")
                .fetch_one(&self.pool)
                .await?;
            Ok(last.unwrap_or(0))
        }
        .boxed()
    }

    fn changes_since(&self, after: i64, limit: u32) -> StoreFuture<'_, ChangeBatch> {
        async move {
            let rows = sqlx::query(
                "SELECT seq, origin, lender_id, nin, holds FROM index_changes WHERE seq > ? ORDER BY seq LIMIT ?",
            )
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            let mut batch = ChangeBatch {
                last: after,
                changes: Vec::new(),
            };
            for r in &rows {
                let origin: String = r.try_get(1)?;
                batch.add_row(&self.origin, r.try_get(0)?, &origin, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?)?;
            }
            Ok(batch)
        }
        .boxed()
    }

    fn watch_changes(&self, _wake: std::sync::Arc<tokio::sync::Notify>) -> StoreFuture<'_, ()> {
        // SQLite has no notifications; followers poll.
        async { Ok(()) }.boxed()
    }
}

impl Disclosures for SqliteStore {
    fn append_disclosures<'a>(&'a self, records: &'a [DisclosureRecord]) -> StoreFuture<'a, ()> {
        async move {
            if records.is_empty() {
                return Ok(());
            }
            let mut conn = self.pool.acquire().await?;
            // IMMEDIATE takes the write lock now, so reading the chain head and
            // appending cannot interleave with another writer.
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            let result = insert_chained(&mut conn, records).await;
            match result {
                Ok(()) => {
                    sqlx::query("COMMIT").execute(&mut *conn).await?;
                    Ok(())
                }
                Err(e) => {
                    // Best effort: a failed rollback leaves the connection to be
                    // discarded, and SQLite rolls the transaction back anyway.
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    Err(e)
                }
            }
        }
        .boxed()
    }
}

impl Consents for SqliteStore {
    fn create_consent<'a>(
        &'a self,
        consent: &'a super::NewConsent,
    ) -> StoreFuture<'a, super::CreatedConsent> {
        super::sqlite_consents::create(&self.pool, consent).boxed()
    }

    fn consent<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<super::StoredConsent>> {
        super::sqlite_consents::get(&self.pool, id).boxed()
    }

    fn archive_consent<'a>(
        &'a self,
        id: &'a str,
        at: &'a str,
        by: &'a str,
    ) -> StoreFuture<'a, bool> {
        super::sqlite_consents::archive(&self.pool, id, at, by).boxed()
    }

    fn use_consent_and_record<'a>(
        &'a self,
        request: &'a super::UseRequest,
        records: &'a [DisclosureRecord],
    ) -> StoreFuture<'a, bool> {
        super::sqlite_consents::use_and_record(&self.pool, request, records).boxed()
    }

    fn record_consent_refusal<'a>(
        &'a self,
        consent_id: &'a str,
        by_org: &'a str,
        at: &'a str,
    ) -> StoreFuture<'a, ()> {
        super::sqlite_consents::refusal(&self.pool, consent_id, by_org, at).boxed()
    }

    fn consents_of_person(&self, nin: NationalId) -> StoreFuture<'_, Vec<super::StoredConsent>> {
        super::sqlite_consents::of_person(&self.pool, nin).boxed()
    }

    fn consent_uses_of_person(&self, nin: NationalId) -> StoreFuture<'_, Vec<super::ConsentUse>> {
        super::sqlite_consents::uses_of_person(&self.pool, nin).boxed()
    }

    fn consent_events<'a>(
        &'a self,
        client_org: &'a str,
        from: i64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<super::ConsentEvent>> {
        super::sqlite_consents::events(&self.pool, client_org, from, limit).boxed()
    }

    fn disclosures_of_person(
        &self,
        nin: NationalId,
        limit: u32,
    ) -> StoreFuture<'_, Vec<super::PersonDisclosure>> {
        super::sqlite_consents::disclosures_of_person(&self.pool, nin, limit).boxed()
    }
}

impl EmbedSessions for SqliteStore {
    fn claim_embed_token<'a>(
        &'a self,
        jti: &'a str,
        expires_at: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool> {
        super::sqlite_embed::claim(&self.pool, jti, expires_at, now).boxed()
    }

    fn create_embed_session<'a>(
        &'a self,
        session: &'a super::NewEmbedSession,
    ) -> StoreFuture<'a, ()> {
        super::sqlite_embed::create(&self.pool, session).boxed()
    }

    fn touch_embed_session<'a>(
        &'a self,
        id_hash: &'a str,
        now: &'a str,
        idle_until: &'a str,
    ) -> StoreFuture<'a, Option<super::EmbedSession>> {
        super::sqlite_embed::touch(&self.pool, id_hash, now, idle_until).boxed()
    }
}

struct SqliteDatasetWriter {
    pool: SqlitePool,
    origin: String,
    /// The push journal's last entry when the load began.
    journal_from: i64,
    lender_id: String,
    generation: i64,
}

impl DatasetWriter for SqliteDatasetWriter {
    fn write<'a>(&'a mut self, rows: &'a [SnapshotRow]) -> StoreFuture<'a, ()> {
        async move {
            let mut tx = self.pool.begin().await?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "INSERT INTO snapshot_loans (lender_id, generation, nin, account_id, loan) ",
                );
                let mut encoded = Vec::with_capacity(chunk.len());
                for row in chunk {
                    let json = serde_json::to_string(&row.loan)
                        .map_err(|e| StoreError::Query(format!("cannot encode loan: {e}")))?;
                    encoded.push((
                        key(row.nin),
                        row.loan.account_id.clone().unwrap_or_default(),
                        json,
                    ));
                }
                qb.push_values(encoded, |mut b, (nin, account, json)| {
                    b.push_bind(self.lender_id.clone())
                        .push_bind(self.generation)
                        .push_bind(nin)
                        .push_bind(account)
                        .push_bind(json);
                });
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .boxed()
    }

    fn commit(self: Box<Self>, summary: DatasetSummary) -> StoreFuture<'static, ()> {
        async move {
            let now = gjeldsbro_domain::time::now_rfc3339();
            // IMMEDIATE: the write lock from the start, so no push can land between
            // the replay below and the flip.
            let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
            let pushed: Vec<(i64, String, Option<String>)> = sqlx::query_as(
                "SELECT nin, account_id, loan FROM push_journal WHERE lender_id = ? AND seq > ? ORDER BY seq",
            )
            .bind(self.lender_id.clone())
            .bind(self.journal_from)
            .fetch_all(&mut *tx)
            .await?;
            for (nin, account, loan) in pushed {
                sqlx::query(
                    "DELETE FROM snapshot_loans WHERE lender_id = ? AND generation = ? AND nin = ? AND account_id = ?",
                )
                .bind(self.lender_id.clone())
                .bind(self.generation)
                .bind(nin)
                .bind(account.clone())
                .execute(&mut *tx)
                .await?;
                if let Some(loan) = loan {
                    sqlx::query(
                        "INSERT INTO snapshot_loans (lender_id, generation, nin, account_id, loan) VALUES (?, ?, ?, ?, ?)",
                    )
                    .bind(self.lender_id.clone())
                    .bind(self.generation)
                    .bind(nin)
                    .bind(account)
                    .bind(loan)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            let flipped = sqlx::query(
                "INSERT INTO datasets (lender_id, generation, loaded_at, source, customers, loans) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (lender_id) DO UPDATE SET generation = excluded.generation, \
                 loaded_at = excluded.loaded_at, source = excluded.source, \
                 customers = excluded.customers, loans = excluded.loans \
                 WHERE excluded.generation > datasets.generation",
            )
            .bind(self.lender_id.clone())
            .bind(self.generation)
            .bind(now.clone())
            .bind(summary.source)
            .bind(summary.customers as i64)
            .bind(summary.loans as i64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if flipped > 0 {
                sqlx::query("INSERT INTO index_changes (origin, lender_id, nin, holds, at) VALUES (?, ?, NULL, NULL, ?)")
                    .bind(self.origin.clone())
                    .bind(self.lender_id.clone())
                    .bind(now.clone())
                    .execute(&mut *tx)
                    .await?;
            }
            let day_ago = gjeldsbro_domain::time::format_rfc3339(time::OffsetDateTime::now_utc() - time::Duration::DAY);
            sqlx::query("DELETE FROM index_changes WHERE at < ?")
                .bind(day_ago)
                .execute(&mut *tx)
                .await?;
            let two_days_ago =
                gjeldsbro_domain::time::format_rfc3339(time::OffsetDateTime::now_utc() - time::Duration::days(2));
            sqlx::query("DELETE FROM push_journal WHERE at < ?")
                .bind(two_days_ago)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            // The flip above is the commit point; removing the superseded rows is
            // housekeeping, done in batches so no lock is held for long.
            delete_other_generations(&self.pool, &self.lender_id, self.generation).await?;
            Ok(())
        }
        .boxed()
    }

    fn abort(self: Box<Self>) -> StoreFuture<'static, ()> {
        async move {
            loop {
                let done = sqlx::query(
                    "DELETE FROM snapshot_loans WHERE rowid IN (SELECT rowid FROM snapshot_loans \
                     WHERE lender_id = ? AND generation = ? LIMIT ?)",
                )
                .bind(self.lender_id.clone())
                .bind(self.generation)
                .bind(DELETE_BATCH)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if done == 0 {
                    return Ok(());
                }
            }
        }
        .boxed()
    }
}

/// Appends `records` to the hash-chained disclosure log on `conn`, inside the
/// caller's `BEGIN IMMEDIATE` transaction (which holds the write lock, so the
/// chain head cannot move underneath). Shared by plain appends and consent uses.
pub(super) async fn insert_chained(
    conn: &mut sqlx::SqliteConnection,
    records: &[DisclosureRecord],
) -> Result<(), StoreError> {
    // The chain head: the newest record, else (everything purged) the latest
    // checkpoint, else the genesis. Seq numbers are given here, not left to the
    // table, so they stay contiguous across purges.
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM disclosures ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let head = match head {
        Some(h) => Some(h),
        None => {
            sqlx::query_as("SELECT seq, hash FROM disclosure_checkpoints ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    let (mut seq, mut prev) = head.unwrap_or_else(|| (0, GENESIS.to_owned()));
    let mut rows = Vec::with_capacity(records.len());
    for r in records {
        let hash = chain_hash(&prev, r);
        seq += 1;
        rows.push((seq, r, std::mem::replace(&mut prev, hash.clone()), hash));
    }
    // One multi-row INSERT per chunk: each statement is a hand-off to sqlx's
    // SQLite worker thread and back, which cost more than the insert itself
    // when a group commit carried a statement per record.
    for chunk in rows.chunks(DISCLOSURE_ROWS_PER_INSERT) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO disclosures (seq, query_id, at, recipient_org, on_behalf_of, purpose, \
             reference_id, nin, disclosed, letter_owed_by, message, prev_hash, hash) ",
        );
        insert.push_values(chunk, |mut row, (seq, r, prev, hash)| {
            row.push_bind(*seq)
                .push_bind(r.query_id.clone())
                .push_bind(r.at.clone())
                .push_bind(r.recipient_org.clone())
                .push_bind(r.on_behalf_of.clone())
                .push_bind(r.purpose.clone())
                .push_bind(r.reference_id.clone())
                .push_bind(r.nin as i64)
                .push_bind(r.disclosed.clone())
                .push_bind(r.letter_owed_by.clone())
                .push_bind(r.message.clone())
                .push_bind(prev.clone())
                .push_bind(hash.clone());
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Rows per disclosure INSERT: 13 parameters each stays far below SQLite's
/// 32,766-parameter limit.
const DISCLOSURE_ROWS_PER_INSERT: usize = 500;

async fn delete_other_generations(
    pool: &SqlitePool,
    lender_id: &str,
    keep: i64,
) -> Result<(), StoreError> {
    loop {
        let done = sqlx::query(
            "DELETE FROM snapshot_loans WHERE rowid IN (SELECT rowid FROM snapshot_loans \
             WHERE lender_id = ? AND generation < ? LIMIT ?)",
        )
        .bind(lender_id.to_owned())
        .bind(keep)
        .bind(DELETE_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        if done == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            path_from_url("sqlite:///var/lib/x.db"),
            Some(PathBuf::from("/var/lib/x.db"))
        );
        assert_eq!(
            path_from_url("sqlite://data/x.db"),
            Some(PathBuf::from("data/x.db"))
        );
        assert_eq!(
            path_from_url("sqlite:x.db?mode=rwc"),
            Some(PathBuf::from("x.db"))
        );
        assert_eq!(path_from_url("postgres://x"), None);
        assert_eq!(path_from_url("sqlite://"), None);
    }
}
