//! The PostgreSQL store, for several broker processes on one database.
//!
//! Same design as the SQLite store: a dataset load writes a new generation (from
//! a sequence) in short `COPY` transactions (the batches of `write` stream into
//! one COPY of up to 50,000 rows, without a round trip each) and flips the lender's current
//! generation in one tiny statement; rows of other generations are invisible and
//! removed in batches afterwards. Two things differ because other processes share
//! the database:
//!
//! - A load holds a session advisory lock on its generation (on a connection of
//!   its own) until it commits, aborts or is dropped; a crashed process's session
//!   ends and releases it. `clean_up` removes the rows of a not-yet-current
//!   generation only when that lock is free, so one broker starting up never
//!   removes the rows of a load still running in another process.
//! - Disclosure appends take `LOCK TABLE disclosures IN EXCLUSIVE MODE` inside
//!   their transaction: read the chain head, insert, commit, serialised across
//!   every process (readers are not blocked).

use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use gjeldsbro_adapter::Loan;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{
    PgConnectOptions, PgConnection, PgCopyIn, PgPool, PgPoolCopyExt, PgPoolOptions, Postgres,
};
use sqlx::{Connection, Row};

use super::prelude::*;
use super::{
    ChangeBatch, DatasetInfo, DatasetSummary, DatasetWriter, DeliveryRecord, SnapshotRow, Store,
    StoreError, StoreFuture,
};
use gjeldsbro_domain::disclosure::record::{DisclosureRecord, GENESIS, chain_hash};
use gjeldsbro_domain::nin::NationalId;

/// Connections in the pool.
const POOL_SIZE: u32 = 16;
/// Rows per COPY (one transaction each); batches from `write` stream into it.
const COPY_ROWS: usize = 50_000;
/// Rows deleted per statement when removing an old generation.
const DELETE_BATCH: i64 = 50_000;
/// First key of the advisory locks on load generations ("GJB1").
const LOAD_LOCK_CLASS: i32 = 0x474a_4231;

/// True for `postgres://...` and `postgresql://...`.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// This process's name in `index_changes`, so it can skip its own changes.
    origin: String,
}

/// The channel writers NOTIFY after recording an index change.
const CHANGES_CHANNEL: &str = "gjeldsbro_changes";

impl PostgresStore {
    /// Connects (pool of 16, 5 s acquire timeout) and runs migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Unavailable(format!(
                "bad postgres url: {}",
                gjeldsbro_adapter::scrub(&e.to_string())
            ))
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(gjeldsbro_adapter::scrub(&e.to_string())))?;
        sqlx::migrate!("../../migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        Ok(PostgresStore {
            pool,
            origin: uuid::Uuid::new_v4().to_string(),
        })
    }

    pub fn pool(&self) -> &PgPool {
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

/// The second key of a generation's advisory lock (generations never reach 2^31
/// in practice; the modulus only keeps the cast total).
fn lock_key(generation: i64) -> i32 {
    (generation % i64::from(i32::MAX)) as i32
}

/// Appends `text` as one field of `COPY ... FROM STDIN` text format. NUL cannot be
/// stored in a PostgreSQL text value and is dropped (it can only come from an
/// `accountID`; the loan's JSON escapes it).
fn push_copy_field(buf: &mut Vec<u8>, text: &str) {
    for &b in text.as_bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0 => {}
            _ => buf.push(b),
        }
    }
}

/// Escapes serialised JSON into a COPY text field as it is written. serde_json
/// emits no raw control characters, so only the backslash needs escaping.
struct CopyFieldWriter<'a>(&'a mut Vec<u8>);

impl Write for CopyFieldWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut rest = data;
        while let Some(i) = rest.iter().position(|&b| b == b'\\') {
            self.0.extend_from_slice(&rest[..i]);
            self.0.extend_from_slice(b"\\\\");
            rest = &rest[i + 1..];
        }
        self.0.extend_from_slice(rest);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Deletes the rows of one generation in batches. `unless_current`: only while
/// no dataset has made this generation (or a newer one) current.
/// Appends `records` to the hash-chained disclosure log inside the caller's
/// transaction on `conn`: takes the table lock that serialises appends across
/// processes, reads the chain head, inserts. Shared by plain appends and consent
/// uses.
pub(super) async fn insert_chained(
    conn: &mut PgConnection,
    records: &[DisclosureRecord],
) -> Result<(), StoreError> {
    // Serialises appends across every connection and process; plain reads
    // (ACCESS SHARE) are not blocked.
    sqlx::query("LOCK TABLE disclosures IN EXCLUSIVE MODE")
        .execute(&mut *conn)
        .await?;
    // The chain head: the newest record, else (everything purged) the
    // latest checkpoint, else the genesis. Seq numbers are given here, not
    // drawn from the identity sequence, which a rolled-back append would
    // leave with a gap the verifier could not tell from a deleted record.
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
    let (head_seq, mut prev) = head.unwrap_or_else(|| (0, GENESIS.to_owned()));
    let n = records.len();
    let mut seq = Vec::with_capacity(n);
    let mut query_id = Vec::with_capacity(n);
    let mut at = Vec::with_capacity(n);
    let mut recipient = Vec::with_capacity(n);
    let mut on_behalf_of = Vec::with_capacity(n);
    let mut purpose = Vec::with_capacity(n);
    let mut reference = Vec::with_capacity(n);
    let mut nin = Vec::with_capacity(n);
    let mut disclosed = Vec::with_capacity(n);
    let mut letter = Vec::with_capacity(n);
    let mut message = Vec::with_capacity(n);
    let mut prev_hash = Vec::with_capacity(n);
    let mut hash = Vec::with_capacity(n);
    for (i, r) in records.iter().enumerate() {
        let h = chain_hash(&prev, r);
        seq.push(head_seq + 1 + i as i64);
        query_id.push(r.query_id.clone());
        at.push(r.at.clone());
        recipient.push(r.recipient_org.clone());
        on_behalf_of.push(r.on_behalf_of.clone());
        purpose.push(r.purpose.clone());
        reference.push(r.reference_id.clone());
        nin.push(r.nin as i64);
        disclosed.push(r.disclosed.clone());
        letter.push(r.letter_owed_by.clone());
        message.push(r.message.clone());
        prev_hash.push(std::mem::replace(&mut prev, h.clone()));
        hash.push(h);
    }
    // Each row carries its own seq, one past the head and in chain order.
    sqlx::query(
        "INSERT INTO disclosures (seq, query_id, at, recipient_org, on_behalf_of, purpose, reference_id, \
         nin, disclosed, letter_owed_by, message, prev_hash, hash) OVERRIDING SYSTEM VALUE \
         SELECT s, q, a, r, o, p, f, n, d, l, m, ph, h FROM UNNEST(\
         $13::bigint[], $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[]) \
         AS u(s, q, a, r, o, p, f, n, d, l, m, ph, h) ORDER BY s",
    )
    .bind(query_id)
    .bind(at)
    .bind(recipient)
    .bind(on_behalf_of)
    .bind(purpose)
    .bind(reference)
    .bind(nin)
    .bind(disclosed)
    .bind(letter)
    .bind(message)
    .bind(prev_hash)
    .bind(hash)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn delete_generation(
    conn: &mut PgConnection,
    generation: i64,
    unless_current: bool,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let query = if unless_current {
            sqlx::query(
                "DELETE FROM snapshot_loans WHERE ctid = ANY(ARRAY(SELECT s.ctid FROM snapshot_loans s \
                 WHERE s.generation = $1 AND NOT EXISTS (SELECT 1 FROM datasets d \
                 WHERE d.lender_id = s.lender_id AND d.generation >= $1) LIMIT $2))",
            )
        } else {
            sqlx::query(
                "DELETE FROM snapshot_loans WHERE ctid = ANY(ARRAY(SELECT ctid FROM snapshot_loans \
                 WHERE generation = $1 LIMIT $2))",
            )
        };
        let done = query
            .bind(generation)
            .bind(DELETE_BATCH)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        total += done;
        if done == 0 {
            return Ok(total);
        }
    }
}

/// The generations present in `snapshot_loans` with their lender, read by a skip
/// scan of the generation index (a few probes per generation, never a table scan).
async fn stored_generations(conn: &mut PgConnection) -> Result<Vec<(i64, String)>, StoreError> {
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
        "WITH RECURSIVE g(generation) AS ( \
           (SELECT generation FROM snapshot_loans ORDER BY generation LIMIT 1) \
           UNION ALL \
           SELECT (SELECT s.generation FROM snapshot_loans s WHERE s.generation > g.generation \
                   ORDER BY s.generation LIMIT 1) \
           FROM g WHERE g.generation IS NOT NULL) \
         SELECT g.generation, (SELECT s.lender_id FROM snapshot_loans s \
                               WHERE s.generation = g.generation LIMIT 1) \
         FROM g WHERE g.generation IS NOT NULL",
    )
    .fetch_all(&mut *conn)
    .await?;
    // A generation removed meanwhile has no lender any more.
    Ok(rows
        .into_iter()
        .filter_map(|(g, lender)| lender.map(|l| (g, l)))
        .collect())
}

impl Store for PostgresStore {
    fn ping(&self) -> StoreFuture<'_, ()> {
        async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        }
        .boxed()
    }
}

impl Snapshots for PostgresStore {
    fn snapshot_for<'a>(
        &'a self,
        lender_id: &'a str,
        nin: NationalId,
    ) -> StoreFuture<'a, Vec<Loan>> {
        async move {
            let rows = sqlx::query(
                "SELECT s.loan FROM snapshot_loans s JOIN datasets d \
                 ON d.lender_id = s.lender_id AND d.generation = s.generation \
                 WHERE s.nin = $1 AND s.lender_id = $2",
            )
            .bind(key(nin))
            .bind(lender_id.to_owned())
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| parse_loan(r.try_get::<&str, _>(0)?))
                .collect()
        }
        .boxed()
    }

    fn begin_dataset<'a>(&'a self, lender_id: &'a str) -> StoreFuture<'a, Box<dyn DatasetWriter>> {
        async move {
            // A connection of the load's own: it holds the generation's session
            // lock, and closing it (or the process dying) releases the lock.
            let mut conn = self.pool.acquire().await?.detach();
            let generation: i64 = sqlx::query_scalar("SELECT nextval('snapshot_generation')")
                .fetch_one(&mut conn)
                .await?;
            sqlx::query("SELECT pg_advisory_lock($1, $2)")
                .bind(LOAD_LOCK_CLASS)
                .bind(lock_key(generation))
                .execute(&mut conn)
                .await?;
            // Pushes after this point are replayed onto the new generation at commit.
            let journal_from: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM push_journal")
                    .fetch_one(&mut conn)
                    .await?;
            Ok(Box::new(PostgresDatasetWriter {
                pool: self.pool.clone(),
                origin: self.origin.clone(),
                journal_from,
                lock: Some(conn),
                copy: None,
                rows_in_copy: 0,
                lender_id: lender_id.to_owned(),
                generation,
                buf: Vec::new(),
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
                 WHERE s.lender_id = $1 ORDER BY s.nin",
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
            let mut tx = self.pool.begin().await?;
            // Pushes for one lender serialise across every process; FOR UPDATE on
            // the datasets row below also orders a push against a dataset flip.
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
                .bind(LOAD_LOCK_CLASS + 1)
                .bind(lender_id.to_owned())
                .execute(&mut *tx)
                .await?;
            let generation: Option<i64> =
                sqlx::query_scalar("SELECT generation FROM datasets WHERE lender_id = $1 FOR UPDATE")
                    .bind(lender_id.to_owned())
                    .fetch_optional(&mut *tx)
                    .await?;
            let generation = match generation {
                Some(g) => g,
                None => {
                    // Generation 0, below any load's: a load already running still
                    // flips over it (and replays these pushes).
                    sqlx::query(
                        "INSERT INTO datasets (lender_id, generation, loaded_at, source, customers, loans) \
                         VALUES ($1, 0, $2, 'push', 0, 0)",
                    )
                    .bind(lender_id.to_owned())
                    .bind(gjeldsbro_domain::time::now_rfc3339())
                    .execute(&mut *tx)
                    .await?;
                    0
                }
            };
            let mut touched: Vec<NationalId> = Vec::new();
            for row in rows {
                let account = row.loan.account_id.clone().unwrap_or_default();
                sqlx::query(
                    "DELETE FROM snapshot_loans WHERE nin = $1 AND lender_id = $2 AND generation = $3 AND account_id = $4",
                )
                .bind(key(row.nin))
                .bind(lender_id.to_owned())
                .bind(generation)
                .bind(account.clone())
                .execute(&mut *tx)
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
                    "INSERT INTO push_journal (lender_id, nin, account_id, loan, at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(lender_id.to_owned())
                .bind(key(row.nin))
                .bind(account.clone())
                .bind(journal_loan)
                .bind(gjeldsbro_domain::time::now_rfc3339())
                .execute(&mut *tx)
                .await?;
                if !row.loan.is_closed() {
                    let json = serde_json::to_string(&row.loan)
                        .map_err(|e| StoreError::Query(format!("cannot encode loan: {e}")))?;
                    sqlx::query(
                        "INSERT INTO snapshot_loans (lender_id, generation, nin, account_id, loan) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(lender_id.to_owned())
                    .bind(generation)
                    .bind(key(row.nin))
                    .bind(account)
                    .bind(json)
                    .execute(&mut *tx)
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
                    "SELECT COUNT(*) FROM snapshot_loans WHERE nin = $1 AND lender_id = $2 AND generation = $3",
                )
                .bind(key(nin))
                .bind(lender_id.to_owned())
                .bind(generation)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query("INSERT INTO index_changes (origin, lender_id, nin, holds, at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(self.origin.clone())
                    .bind(lender_id.to_owned())
                    .bind(key(nin))
                    .bind(n > 0)
                    .bind(now.clone())
                    .execute(&mut *tx)
                    .await?;
                holds.push((nin, n > 0));
            }
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANGES_CHANNEL)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(holds)
        }
        .boxed()
    }

    fn clean_up(&self) -> StoreFuture<'_, u64> {
        async move {
            let mut conn = self.pool.acquire().await?;
            let current: std::collections::HashMap<String, i64> =
                sqlx::query_as::<_, (String, i64)>("SELECT lender_id, generation FROM datasets")
                    .fetch_all(&mut *conn)
                    .await?
                    .into_iter()
                    .collect();
            let mut total = 0u64;
            for (generation, lender_id) in stored_generations(&mut conn).await? {
                match current.get(&lender_id) {
                    Some(&c) if generation == c => {}
                    // Superseded: can never become current.
                    Some(&c) if generation < c => {
                        total += delete_generation(&mut conn, generation, false).await?;
                    }
                    // A load's (or a lender without a dataset): running loads hold
                    // their lock, dead ones (aborted, dropped, crashed) do not.
                    _ => {
                        // Taken and released at once: free means no live load owns it.
                        let free: bool =
                            sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, $2)")
                                .bind(LOAD_LOCK_CLASS)
                                .bind(lock_key(generation))
                                .fetch_one(&mut *conn)
                                .await?;
                        if free {
                            // Guarded: a load that committed (releasing its lock)
                            // after `current` was read has become current.
                            total += delete_generation(&mut conn, generation, true).await?;
                        }
                    }
                }
            }
            Ok(total)
        }
        .boxed()
    }
}

impl Datasets for PostgresStore {
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

    fn record_delivery<'a>(&'a self, d: &'a DeliveryRecord) -> StoreFuture<'a, ()> {
        async move {
            sqlx::query(
                "INSERT INTO deliveries (lender_id, at, kind, accepted, rule, position, detail, customers, loans) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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

    fn deliveries(&self, limit: u32) -> StoreFuture<'_, Vec<DeliveryRecord>> {
        async move {
            let rows = sqlx::query(
                "SELECT lender_id, at, kind, accepted, rule, position, detail, customers, loans \
                 FROM deliveries ORDER BY id DESC LIMIT $1",
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
}

impl ChangeFeed for PostgresStore {
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
                "SELECT seq, origin, lender_id, nin, holds FROM index_changes WHERE seq > $1 ORDER BY seq LIMIT $2",
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

    fn watch_changes(&self, wake: std::sync::Arc<tokio::sync::Notify>) -> StoreFuture<'_, ()> {
        async move {
            let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
            listener.listen(CHANGES_CHANNEL).await?;
            tokio::spawn(async move {
                loop {
                    // recv() reconnects by itself after a lost connection; the
                    // follower's poll covers anything missed meanwhile.
                    match listener.recv().await {
                        Ok(_) => wake.notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %gjeldsbro_adapter::scrub(&e.to_string()), "change notifications interrupted");
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                }
            });
            Ok(())
        }
        .boxed()
    }
}

impl Disclosures for PostgresStore {
    fn append_disclosures<'a>(&'a self, records: &'a [DisclosureRecord]) -> StoreFuture<'a, ()> {
        async move {
            if records.is_empty() {
                return Ok(());
            }
            // Dropping the transaction on any error rolls it back: all or nothing.
            let mut tx = self.pool.begin().await?;
            insert_chained(&mut tx, records).await?;
            tx.commit().await?;
            Ok(())
        }
        .boxed()
    }
}

impl Consents for PostgresStore {
    fn create_consent<'a>(
        &'a self,
        consent: &'a super::NewConsent,
    ) -> StoreFuture<'a, super::CreatedConsent> {
        super::postgres_consents::create(&self.pool, consent).boxed()
    }

    fn consent<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<super::StoredConsent>> {
        super::postgres_consents::get(&self.pool, id).boxed()
    }

    fn archive_consent<'a>(
        &'a self,
        id: &'a str,
        at: &'a str,
        by: &'a str,
    ) -> StoreFuture<'a, bool> {
        super::postgres_consents::archive(&self.pool, id, at, by).boxed()
    }

    fn use_consent_and_record<'a>(
        &'a self,
        request: &'a super::UseRequest,
        records: &'a [DisclosureRecord],
    ) -> StoreFuture<'a, bool> {
        super::postgres_consents::use_and_record(&self.pool, request, records).boxed()
    }

    fn record_consent_refusal<'a>(
        &'a self,
        consent_id: &'a str,
        by_org: &'a str,
        at: &'a str,
    ) -> StoreFuture<'a, ()> {
        super::postgres_consents::refusal(&self.pool, consent_id, by_org, at).boxed()
    }

    fn consents_of_person(&self, nin: NationalId) -> StoreFuture<'_, Vec<super::StoredConsent>> {
        super::postgres_consents::of_person(&self.pool, nin).boxed()
    }

    fn consent_uses_of_person(&self, nin: NationalId) -> StoreFuture<'_, Vec<super::ConsentUse>> {
        super::postgres_consents::uses_of_person(&self.pool, nin).boxed()
    }

    fn consent_events<'a>(
        &'a self,
        client_org: &'a str,
        from: i64,
        limit: u32,
    ) -> StoreFuture<'a, Vec<super::ConsentEvent>> {
        super::postgres_consents::events(&self.pool, client_org, from, limit).boxed()
    }

    fn disclosures_of_person(
        &self,
        nin: NationalId,
        limit: u32,
    ) -> StoreFuture<'_, Vec<super::PersonDisclosure>> {
        super::postgres_consents::disclosures_of_person(&self.pool, nin, limit).boxed()
    }
}

impl EmbedSessions for PostgresStore {
    fn claim_embed_token<'a>(
        &'a self,
        jti: &'a str,
        expires_at: &'a str,
        now: &'a str,
    ) -> StoreFuture<'a, bool> {
        super::postgres_embed::claim(&self.pool, jti, expires_at, now).boxed()
    }

    fn create_embed_session<'a>(
        &'a self,
        session: &'a super::NewEmbedSession,
    ) -> StoreFuture<'a, ()> {
        super::postgres_embed::create(&self.pool, session).boxed()
    }

    fn touch_embed_session<'a>(
        &'a self,
        id_hash: &'a str,
        now: &'a str,
        idle_until: &'a str,
    ) -> StoreFuture<'a, Option<super::EmbedSession>> {
        super::postgres_embed::touch(&self.pool, id_hash, now, idle_until).boxed()
    }
}

struct PostgresDatasetWriter {
    pool: PgPool,
    origin: String,
    /// The push journal's last entry when the load began.
    journal_from: i64,
    /// The load's own session, holding the generation's advisory lock (closing
    /// it, or the process dying, releases the lock).
    lock: Option<PgConnection>,
    /// The COPY in progress: batches stream into it without a round trip each,
    /// and it is finished every [`COPY_ROWS`] rows (one short transaction).
    copy: Option<PgCopyIn<PoolConnection<Postgres>>>,
    rows_in_copy: usize,
    lender_id: String,
    generation: i64,
    /// The COPY text of one batch, reused between writes.
    buf: Vec<u8>,
}

const COPY_STATEMENT: &str =
    "COPY snapshot_loans (lender_id, generation, nin, account_id, loan) FROM STDIN";

impl PostgresDatasetWriter {
    fn encode(&mut self, rows: &[SnapshotRow]) -> Result<(), StoreError> {
        let buf = &mut self.buf;
        buf.clear();
        let mut prefix = Vec::with_capacity(self.lender_id.len() + 24);
        push_copy_field(&mut prefix, &self.lender_id);
        write!(prefix, "\t{}\t", self.generation).expect("writing to a Vec cannot fail");
        for row in rows {
            buf.extend_from_slice(&prefix);
            write!(buf, "{}\t", key(row.nin)).expect("writing to a Vec cannot fail");
            push_copy_field(buf, row.loan.account_id.as_deref().unwrap_or_default());
            buf.push(b'\t');
            serde_json::to_writer(CopyFieldWriter(buf), &row.loan)
                .map_err(|e| StoreError::Query(format!("cannot encode loan: {e}")))?;
            buf.push(b'\n');
        }
        Ok(())
    }

    /// Commits the COPY in progress, if any.
    async fn finish_copy(&mut self) -> Result<(), StoreError> {
        self.rows_in_copy = 0;
        if let Some(copy) = self.copy.take() {
            copy.finish().await?;
        }
        Ok(())
    }

    /// Best effort: drops this load's rows and releases its lock.
    async fn discard(&mut self) -> Result<(), StoreError> {
        if let Some(copy) = self.copy.take() {
            let _ = copy.abort("load aborted").await;
        }
        let result = match self.lock.as_mut() {
            Some(conn) => delete_generation(conn, self.generation, false).await,
            None => match self.pool.acquire().await {
                Ok(mut conn) => delete_generation(&mut conn, self.generation, false).await,
                Err(e) => Err(e.into()),
            },
        };
        if let Some(conn) = self.lock.take() {
            let _ = conn.close().await;
        }
        result.map(|_| ())
    }
}

impl DatasetWriter for PostgresDatasetWriter {
    fn write<'a>(&'a mut self, rows: &'a [SnapshotRow]) -> StoreFuture<'a, ()> {
        async move {
            if rows.is_empty() {
                return Ok(());
            }
            self.encode(rows)?;
            if self.copy.is_none() {
                self.copy = Some(self.pool.copy_in_raw(COPY_STATEMENT).await?);
            }
            let copy = self.copy.as_mut().expect("a copy in progress");
            if let Err(e) = copy.send(self.buf.as_slice()).await {
                if let Some(copy) = self.copy.take() {
                    let _ = copy.abort("send failed").await;
                }
                self.rows_in_copy = 0;
                return Err(e.into());
            }
            self.rows_in_copy += rows.len();
            if self.rows_in_copy >= COPY_ROWS {
                self.finish_copy().await?;
            }
            Ok(())
        }
        .boxed()
    }

    fn commit(mut self: Box<Self>, summary: DatasetSummary) -> StoreFuture<'static, ()> {
        async move {
            if let Err(e) = self.finish_copy().await {
                let _ = self.discard().await;
                return Err(e);
            }
            let Some(mut conn) = self.lock.take() else {
                return Err(StoreError::Unavailable("the load's session is gone".into()));
            };
            let now = gjeldsbro_domain::time::now_rfc3339();
            // The commit point: flips only if this generation is newer; the index
            // change and its notification commit with it.
            let flipped = async {
                let mut tx = conn.begin().await?;
                // Waits for a push in flight (it holds this row) and keeps new ones
                // out until the flip commits; then replays what was pushed since
                // the load began onto the new generation.
                sqlx::query("SELECT generation FROM datasets WHERE lender_id = $1 FOR UPDATE")
                    .bind(self.lender_id.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
                let pushed: Vec<(i64, String, Option<String>)> = sqlx::query_as(
                    "SELECT nin, account_id, loan FROM push_journal WHERE lender_id = $1 AND seq > $2 ORDER BY seq",
                )
                .bind(self.lender_id.clone())
                .bind(self.journal_from)
                .fetch_all(&mut *tx)
                .await?;
                for (nin, account, loan) in pushed {
                    sqlx::query(
                        "DELETE FROM snapshot_loans WHERE nin = $1 AND lender_id = $2 AND generation = $3 AND account_id = $4",
                    )
                    .bind(nin)
                    .bind(self.lender_id.clone())
                    .bind(self.generation)
                    .bind(account.clone())
                    .execute(&mut *tx)
                    .await?;
                    if let Some(loan) = loan {
                        sqlx::query(
                            "INSERT INTO snapshot_loans (lender_id, generation, nin, account_id, loan) VALUES ($1, $2, $3, $4, $5)",
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
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (lender_id) DO UPDATE SET generation = excluded.generation, \
                     loaded_at = excluded.loaded_at, source = excluded.source, \
                     customers = excluded.customers, loans = excluded.loans \
                     WHERE excluded.generation > datasets.generation",
                )
                .bind(self.lender_id.clone())
                .bind(self.generation)
                .bind(now.clone())
                .bind(summary.source.clone())
                .bind(summary.customers as i64)
                .bind(summary.loans as i64)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                if flipped {
                    sqlx::query(
                        "INSERT INTO index_changes (origin, lender_id, nin, holds, at) VALUES ($1, $2, NULL, NULL, $3)",
                    )
                    .bind(self.origin.clone())
                    .bind(self.lender_id.clone())
                    .bind(now.clone())
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("SELECT pg_notify($1, '')")
                        .bind(CHANGES_CHANNEL)
                        .execute(&mut *tx)
                        .await?;
                }
                let day_ago = gjeldsbro_domain::time::format_rfc3339(time::OffsetDateTime::now_utc() - time::Duration::DAY);
                sqlx::query("DELETE FROM index_changes WHERE at < $1")
                    .bind(day_ago)
                    .execute(&mut *tx)
                    .await?;
                let two_days_ago =
                    gjeldsbro_domain::time::format_rfc3339(time::OffsetDateTime::now_utc() - time::Duration::days(2));
                sqlx::query("DELETE FROM push_journal WHERE at < $1")
                    .bind(two_days_ago)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok::<bool, sqlx::Error>(flipped)
            }
            .await;
            let flipped = match flipped {
                Ok(flipped) => flipped,
                Err(e) => {
                    // Closing the session releases the lock; `clean_up` removes the rows.
                    let _ = conn.close().await;
                    return Err(e.into());
                }
            };
            // Housekeeping after the flip: superseded rows (and this load's own, if
            // a newer load won). A failure here leaves rows for `clean_up`, not a
            // failed load.
            let housekeeping = async {
                for (generation, lender_id) in stored_generations(&mut conn).await? {
                    if lender_id == self.lender_id
                        && (generation < self.generation
                            || (generation == self.generation && !flipped))
                    {
                        delete_generation(&mut conn, generation, false).await?;
                    }
                }
                Ok::<(), StoreError>(())
            }
            .await;
            if let Err(e) = housekeeping {
                tracing::warn!(lender = %self.lender_id, error = %e, "could not remove superseded snapshot rows");
            }
            let _ = conn.close().await;
            Ok(())
        }
        .boxed()
    }

    fn abort(mut self: Box<Self>) -> StoreFuture<'static, ()> {
        async move { self.discard().await }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(is_postgres_url("postgres://u@h/db"));
        assert!(is_postgres_url("postgresql://u@h/db"));
        assert!(!is_postgres_url("sqlite://x.db"));
        assert!(!is_postgres_url("postgres:x"));
    }

    #[test]
    fn copy_text_escapes() {
        let mut buf = Vec::new();
        push_copy_field(&mut buf, "a\\b\tc\nd\re\0f");
        assert_eq!(buf, b"a\\\\b\\tc\\nd\\ref");
        let mut json = Vec::new();
        serde_json::to_writer(CopyFieldWriter(&mut json), &"x\"\\\n").unwrap();
        assert_eq!(json, br#""x\\"\\\\\\n""#);
    }
}
