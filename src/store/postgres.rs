//! The PostgreSQL store, for several broker processes on one database.
//!
//! Same design as the SQLite store: a dataset load writes a new generation (from
//! a sequence) in short autocommitted `COPY` batches and flips the lender's current
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
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};

use super::{
    DatasetInfo, DatasetSummary, DatasetWriter, DeliveryRecord, SnapshotRow, Store, StoreError,
    StoreFuture,
};
use crate::audit::record::{DisclosureRecord, GENESIS, chain_hash};
use crate::nin::NationalId;

/// Connections in the pool.
const POOL_SIZE: u32 = 16;
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
}

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
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        Ok(PostgresStore { pool })
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

/// Deletes rows of `lender_id` in batches: of generations below `generation`
/// (`older`) or of exactly `generation`.
async fn delete_in_batches(
    conn: &mut PgConnection,
    lender_id: &str,
    generation: i64,
    older: bool,
) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let query = if older {
            sqlx::query(
                "DELETE FROM snapshot_loans WHERE ctid = ANY(ARRAY(SELECT ctid FROM snapshot_loans \
                 WHERE lender_id = $1 AND generation < $2 LIMIT $3))",
            )
        } else {
            sqlx::query(
                "DELETE FROM snapshot_loans WHERE ctid = ANY(ARRAY(SELECT ctid FROM snapshot_loans \
                 WHERE lender_id = $1 AND generation = $2 LIMIT $3))",
            )
        };
        let done = query
            .bind(lender_id.to_owned())
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

impl Store for PostgresStore {
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
            Ok(Box::new(PostgresDatasetWriter {
                pool: self.pool.clone(),
                conn: Some(conn),
                lender_id: lender_id.to_owned(),
                generation,
                buf: Vec::new(),
            }) as Box<dyn DatasetWriter>)
        }
        .boxed()
    }

    fn index_pairs(&self) -> futures::stream::BoxStream<'_, Result<(u64, String), StoreError>> {
        sqlx::query(
            "SELECT DISTINCT s.nin, s.lender_id FROM snapshot_loans s JOIN datasets d \
             ON d.lender_id = s.lender_id AND d.generation = s.generation \
             ORDER BY s.nin, s.lender_id",
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

    fn append_disclosures<'a>(&'a self, records: &'a [DisclosureRecord]) -> StoreFuture<'a, ()> {
        async move {
            if records.is_empty() {
                return Ok(());
            }
            // Dropping the transaction on any error rolls it back: all or nothing.
            let mut tx = self.pool.begin().await?;
            // Serialises appends across every connection and process; plain reads
            // (ACCESS SHARE) are not blocked.
            sqlx::query("LOCK TABLE disclosures IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
            let mut prev: String =
                sqlx::query_scalar("SELECT hash FROM disclosures ORDER BY seq DESC LIMIT 1")
                    .fetch_optional(&mut *tx)
                    .await?
                    .unwrap_or_else(|| GENESIS.to_owned());
            let n = records.len();
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
            for r in records {
                let h = chain_hash(&prev, r);
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
            // Rows are inserted in array order, so `seq` follows the chain.
            sqlx::query(
                "INSERT INTO disclosures (query_id, at, recipient_org, on_behalf_of, purpose, reference_id, \
                 nin, disclosed, letter_owed_by, message, prev_hash, hash) \
                 SELECT q, a, r, o, p, f, n, d, l, m, ph, h FROM UNNEST(\
                 $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[]) \
                 WITH ORDINALITY AS u(q, a, r, o, p, f, n, d, l, m, ph, h, ord) ORDER BY ord",
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
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(())
        }
        .boxed()
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        }
        .boxed()
    }

    fn clean_up(&self) -> StoreFuture<'_, u64> {
        async move {
            let mut conn = self.pool.acquire().await?;
            let mut total = 0u64;
            // Superseded generations can never become current: remove them.
            loop {
                let done = sqlx::query(
                    "DELETE FROM snapshot_loans WHERE ctid = ANY(ARRAY(SELECT s.ctid FROM snapshot_loans s \
                     JOIN datasets d ON d.lender_id = s.lender_id WHERE s.generation < d.generation LIMIT $1))",
                )
                .bind(DELETE_BATCH)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                total += done;
                if done == 0 {
                    break;
                }
            }
            // Newer generations than the current one (or of a lender without a
            // dataset) belong to loads: running ones hold their lock, dead ones
            // (aborted, dropped, crashed) do not.
            let candidates: Vec<(String, i64)> = sqlx::query_as(
                "SELECT DISTINCT s.lender_id, s.generation FROM snapshot_loans s \
                 LEFT JOIN datasets d ON d.lender_id = s.lender_id \
                 WHERE d.generation IS NULL OR s.generation > d.generation",
            )
            .fetch_all(&mut *conn)
            .await?;
            for (lender_id, generation) in candidates {
                // Taken and released at once: free means no live load owns it.
                let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, $2)")
                    .bind(LOAD_LOCK_CLASS)
                    .bind(lock_key(generation))
                    .fetch_one(&mut *conn)
                    .await?;
                if !free {
                    continue;
                }
                // Re-checked per batch: a load that committed (and so released its
                // lock) just before the check above has become current.
                loop {
                    let done = sqlx::query(
                        "DELETE FROM snapshot_loans WHERE ctid = ANY(ARRAY(SELECT ctid FROM snapshot_loans \
                         WHERE lender_id = $1 AND generation = $2 AND NOT EXISTS (SELECT 1 FROM datasets d \
                         WHERE d.lender_id = $1 AND d.generation >= $2) LIMIT $3))",
                    )
                    .bind(lender_id.clone())
                    .bind(generation)
                    .bind(DELETE_BATCH)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
                    total += done;
                    if done == 0 {
                        break;
                    }
                }
            }
            Ok(total)
        }
        .boxed()
    }
}

struct PostgresDatasetWriter {
    pool: PgPool,
    /// The load's own connection, holding the generation's advisory lock.
    /// `None` once it broke mid-copy.
    conn: Option<PgConnection>,
    lender_id: String,
    generation: i64,
    /// The COPY text of one batch, reused between writes.
    buf: Vec<u8>,
}

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
}

impl DatasetWriter for PostgresDatasetWriter {
    fn write<'a>(&'a mut self, rows: &'a [SnapshotRow]) -> StoreFuture<'a, ()> {
        async move {
            if rows.is_empty() {
                return Ok(());
            }
            self.encode(rows)?;
            let Some(conn) = self.conn.as_mut() else {
                return Err(StoreError::Unavailable(
                    "the load's connection broke earlier".into(),
                ));
            };
            // One autocommitted COPY per batch: short transactions, no long locks.
            let result: Result<(), sqlx::Error> = async {
                let mut copy = conn
                    .copy_in_raw(
                        "COPY snapshot_loans (lender_id, generation, nin, account_id, loan) FROM STDIN",
                    )
                    .await?;
                if let Err(e) = copy.send(self.buf.as_slice()).await {
                    let _ = copy.abort("send failed").await;
                    return Err(e);
                }
                copy.finish().await?;
                Ok(())
            }
            .await;
            if let Err(e) = result {
                if !matches!(e, sqlx::Error::Database(_)) {
                    // The connection's state is unknown; dropping it releases the lock.
                    self.conn = None;
                }
                return Err(e.into());
            }
            Ok(())
        }
        .boxed()
    }

    fn commit(mut self: Box<Self>, summary: DatasetSummary) -> StoreFuture<'static, ()> {
        async move {
            let Some(mut conn) = self.conn.take() else {
                return Err(StoreError::Unavailable(
                    "the load's connection broke earlier".into(),
                ));
            };
            let now = crate::time::now_rfc3339();
            // The commit point: flips only if this generation is newer.
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
            .bind(now)
            .bind(summary.source)
            .bind(summary.customers as i64)
            .bind(summary.loans as i64)
            .execute(&mut conn)
            .await?
            .rows_affected()
                > 0;
            // Housekeeping after the flip: superseded rows (and this load's own, if
            // a newer load won). A failure here leaves rows for `clean_up`, not a
            // failed load.
            let mut housekeeping =
                delete_in_batches(&mut conn, &self.lender_id, self.generation, true).await;
            if housekeeping.is_ok() && !flipped {
                housekeeping =
                    delete_in_batches(&mut conn, &self.lender_id, self.generation, false).await;
            }
            if let Err(e) = housekeeping {
                tracing::warn!(lender = %self.lender_id, error = %e, "could not remove superseded snapshot rows");
            }
            // Closing the session releases the generation's lock.
            let _ = conn.close().await;
            Ok(())
        }
        .boxed()
    }

    fn abort(mut self: Box<Self>) -> StoreFuture<'static, ()> {
        async move {
            let result = match self.conn.as_mut() {
                Some(conn) => {
                    delete_in_batches(conn, &self.lender_id, self.generation, false).await
                }
                None => match self.pool.acquire().await {
                    Ok(mut conn) => {
                        delete_in_batches(&mut conn, &self.lender_id, self.generation, false)
                            .await
                    }
                    Err(e) => Err(e.into()),
                },
            };
            if let Some(conn) = self.conn.take() {
                let _ = conn.close().await;
            }
            result.map(|_| ())
        }
        .boxed()
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
