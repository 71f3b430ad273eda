//! [`AuditStore`] on SQLite: pages of the chain, checkpoints and purges, letters.

use futures::FutureExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite};

use super::audit::{
    AuditStore, Checkpoint, LetterBatch, LetterRow, PurgedRows, StoredDisclosure, nin_from_column,
};
use super::sqlite::SqliteStore;
use super::{StoreError, StoreFuture};
use gjeldsbro_domain::disclosure::record::DisclosureRecord;

/// Rows deleted per transaction when purging, so appends never wait long.
const PURGE_BATCH: i64 = 10_000;

const COLUMNS: &str = "d.seq, d.query_id, d.at, d.recipient_org, d.on_behalf_of, d.purpose, \
     d.reference_id, d.nin, d.disclosed, d.letter_owed_by, d.message, d.prev_hash, d.hash";

/// The search records the broker owes a letter for that no letter covers yet.
const OWED: &str = "d.purpose = 'search' AND d.letter_owed_by = 'broker' \
     AND NOT EXISTS (SELECT 1 FROM letter_disclosures l WHERE l.seq = d.seq)";

fn stored(r: &SqliteRow) -> Result<StoredDisclosure, StoreError> {
    Ok(StoredDisclosure {
        seq: r.try_get(0)?,
        record: DisclosureRecord {
            query_id: r.try_get(1)?,
            at: r.try_get(2)?,
            recipient_org: r.try_get(3)?,
            on_behalf_of: r.try_get(4)?,
            purpose: r.try_get(5)?,
            reference_id: r.try_get(6)?,
            nin: nin_from_column(r.try_get(7)?)?,
            disclosed: r.try_get(8)?,
            letter_owed_by: r.try_get(9)?,
            message: r.try_get(10)?,
        },
        prev_hash: r.try_get(11)?,
        hash: r.try_get(12)?,
    })
}

/// A JSON array of integers, for `IN (SELECT value FROM json_each(?))`: one
/// parameter however many values.
fn json_list<T: serde::Serialize>(values: &[T]) -> Result<String, StoreError> {
    serde_json::to_string(values).map_err(|e| StoreError::Query(format!("cannot encode: {e}")))
}

impl AuditStore for SqliteStore {
    fn disclosures_after(&self, after: i64, limit: u32) -> StoreFuture<'_, Vec<StoredDisclosure>> {
        async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM disclosures d WHERE d.seq > ? ORDER BY d.seq LIMIT ?"
            )))
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await?;
            rows.iter().map(stored).collect()
        }
        .boxed()
    }

    fn disclosures_by_seq<'a>(&'a self, seqs: &'a [i64]) -> StoreFuture<'a, Vec<StoredDisclosure>> {
        async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM disclosures d \
                 WHERE d.seq IN (SELECT value FROM json_each(?)) ORDER BY d.seq"
            )))
            .bind(json_list(seqs)?)
            .fetch_all(self.pool())
            .await?;
            rows.iter().map(stored).collect()
        }
        .boxed()
    }

    fn latest_checkpoint(&self) -> StoreFuture<'_, Option<Checkpoint>> {
        async move {
            let row: Option<(i64, String, String, String)> = sqlx::query_as(
                "SELECT seq, hash, record_at, created_at FROM disclosure_checkpoints \
                 ORDER BY seq DESC LIMIT 1",
            )
            .fetch_optional(self.pool())
            .await?;
            Ok(row.map(|(seq, hash, record_at, created_at)| Checkpoint {
                seq,
                hash,
                record_at,
                created_at,
            }))
        }
        .boxed()
    }

    fn add_checkpoint<'a>(&'a self, c: &'a Checkpoint) -> StoreFuture<'a, ()> {
        async move {
            sqlx::query(
                "INSERT INTO disclosure_checkpoints (seq, hash, record_at, created_at) VALUES (?, ?, ?, ?)",
            )
            .bind(c.seq)
            .bind(c.hash.clone())
            .bind(c.record_at.clone())
            .bind(c.created_at.clone())
            .execute(self.pool())
            .await?;
            Ok(())
        }
        .boxed()
    }

    fn purge_checkpointed(&self) -> StoreFuture<'_, PurgedRows> {
        async move {
            let through: Option<i64> =
                sqlx::query_scalar("SELECT MAX(seq) FROM disclosure_checkpoints")
                    .fetch_one(self.pool())
                    .await?;
            let Some(through) = through else {
                return Ok(PurgedRows::default());
            };
            let mut purged = PurgedRows::default();
            // Links first, so no letter row outlives the records it names.
            loop {
                let done = sqlx::query(
                    "DELETE FROM letter_disclosures WHERE seq IN \
                     (SELECT seq FROM letter_disclosures WHERE seq <= ? LIMIT ?)",
                )
                .bind(through)
                .bind(PURGE_BATCH)
                .execute(self.pool())
                .await?
                .rows_affected();
                if done == 0 {
                    break;
                }
            }
            purged.letters = sqlx::query(
                "DELETE FROM letters WHERE NOT EXISTS \
                 (SELECT 1 FROM letter_disclosures l WHERE l.letter_id = letters.letter_id)",
            )
            .execute(self.pool())
            .await?
            .rows_affected();
            sqlx::query(
                "DELETE FROM letter_batches WHERE completed_at IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM letters l WHERE l.batch_id = letter_batches.batch_id)",
            )
            .execute(self.pool())
            .await?;
            loop {
                let done = sqlx::query(
                    "DELETE FROM disclosures WHERE seq IN \
                     (SELECT seq FROM disclosures WHERE seq <= ? ORDER BY seq LIMIT ?)",
                )
                .bind(through)
                .bind(PURGE_BATCH)
                .execute(self.pool())
                .await?
                .rows_affected();
                purged.disclosures += done;
                if done == 0 {
                    return Ok(purged);
                }
            }
        }
        .boxed()
    }

    fn purge_consents<'a>(&'a self, ended_before: &'a str) -> StoreFuture<'a, Option<u64>> {
        async move {
            let exists: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'consents'",
            )
            .fetch_one(self.pool())
            .await?;
            if exists == 0 {
                return Ok(None);
            }
            // RFC 3339 UTC text compared as text; without the zone letter the
            // bound is exact whatever the stored fraction digits.
            let bound = ended_before.trim_end_matches('Z');
            let done = sqlx::query("DELETE FROM consents WHERE ends_at < ?")
                .bind(bound.to_owned())
                .execute(self.pool())
                .await?
                .rows_affected();
            Ok(Some(done))
        }
        .boxed()
    }

    fn owed_persons<'a>(&'a self, from: &'a str, to: &'a str) -> StoreFuture<'a, Vec<u64>> {
        async move {
            let rows: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT DISTINCT d.nin FROM disclosures d WHERE d.at >= ? AND d.at < ? AND {OWED} \
                 ORDER BY d.nin"
            )))
            .bind(from.to_owned())
            .bind(to.to_owned())
            .fetch_all(self.pool())
            .await?;
            rows.into_iter().map(nin_from_column).collect()
        }
        .boxed()
    }

    fn owed_disclosures<'a>(
        &'a self,
        persons: &'a [u64],
        from: &'a str,
        to: &'a str,
    ) -> StoreFuture<'a, Vec<StoredDisclosure>> {
        async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM disclosures d WHERE d.at >= ? AND d.at < ? AND {OWED} \
                 AND d.nin IN (SELECT value FROM json_each(?)) ORDER BY d.seq"
            )))
            .bind(from.to_owned())
            .bind(to.to_owned())
            .bind(json_list(persons)?)
            .fetch_all(self.pool())
            .await?;
            rows.iter().map(stored).collect()
        }
        .boxed()
    }

    fn add_letter_batch<'a>(&'a self, b: &'a LetterBatch) -> StoreFuture<'a, ()> {
        async move {
            sqlx::query(
                "INSERT INTO letter_batches (batch_id, day, manifest, created_at) VALUES (?, ?, ?, ?)",
            )
            .bind(b.batch_id.clone())
            .bind(b.day.clone())
            .bind(b.manifest.clone())
            .bind(b.created_at.clone())
            .execute(self.pool())
            .await?;
            Ok(())
        }
        .boxed()
    }

    fn add_letters<'a>(
        &'a self,
        batch_id: &'a str,
        letters: &'a [LetterRow],
    ) -> StoreFuture<'a, ()> {
        async move {
            if letters.is_empty() {
                return Ok(());
            }
            // Dropping the transaction on an error rolls it back: all or nothing.
            let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO letters (letter_id, batch_id, nin, day, file, created_at) ",
            );
            qb.push_values(letters, |mut b, l| {
                b.push_bind(l.letter_id.clone())
                    .push_bind(batch_id.to_owned())
                    .push_bind(l.nin as i64)
                    .push_bind(l.day.clone())
                    .push_bind(l.file.clone())
                    .push_bind(l.created_at.clone());
            });
            qb.build().execute(&mut *tx).await?;
            let links: Vec<(&str, i64)> = letters
                .iter()
                .flat_map(|l| l.seqs.iter().map(move |s| (l.letter_id.as_str(), *s)))
                .collect();
            for chunk in links.chunks(400) {
                let mut qb: QueryBuilder<Sqlite> =
                    QueryBuilder::new("INSERT INTO letter_disclosures (letter_id, seq) ");
                qb.push_values(chunk, |mut b, (letter, seq)| {
                    b.push_bind(letter.to_string()).push_bind(*seq);
                });
                qb.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .boxed()
    }

    fn incomplete_letter_batches(&self) -> StoreFuture<'_, Vec<LetterBatch>> {
        async move {
            let rows: Vec<(String, String, String, String)> = sqlx::query_as(
                "SELECT batch_id, day, manifest, created_at FROM letter_batches \
                 WHERE completed_at IS NULL ORDER BY created_at, batch_id",
            )
            .fetch_all(self.pool())
            .await?;
            Ok(rows
                .into_iter()
                .map(|(batch_id, day, manifest, created_at)| LetterBatch {
                    batch_id,
                    day,
                    manifest,
                    created_at,
                })
                .collect())
        }
        .boxed()
    }

    fn letters_of_batch<'a>(&'a self, batch_id: &'a str) -> StoreFuture<'a, Vec<LetterRow>> {
        async move {
            let rows: Vec<(String, i64, String, String, String, i64)> = sqlx::query_as(
                "SELECT l.letter_id, l.nin, l.day, l.file, l.created_at, d.seq FROM letters l \
                 JOIN letter_disclosures d ON d.letter_id = l.letter_id \
                 WHERE l.batch_id = ? ORDER BY l.file, d.seq",
            )
            .bind(batch_id.to_owned())
            .fetch_all(self.pool())
            .await?;
            group_letters(rows)
        }
        .boxed()
    }

    fn complete_letter_batch<'a>(&'a self, batch_id: &'a str, at: &'a str) -> StoreFuture<'a, ()> {
        async move {
            sqlx::query("UPDATE letter_batches SET completed_at = ? WHERE batch_id = ?")
                .bind(at.to_owned())
                .bind(batch_id.to_owned())
                .execute(self.pool())
                .await?;
            Ok(())
        }
        .boxed()
    }
}

/// Folds (letter columns…, seq) rows, ordered by letter, into letters.
pub(crate) fn group_letters(
    rows: Vec<(String, i64, String, String, String, i64)>,
) -> Result<Vec<LetterRow>, StoreError> {
    let mut out: Vec<LetterRow> = Vec::new();
    for (letter_id, nin, day, file, created_at, seq) in rows {
        match out.last_mut() {
            Some(last) if last.letter_id == letter_id => last.seqs.push(seq),
            _ => out.push(LetterRow {
                letter_id,
                nin: nin_from_column(nin)?,
                day,
                file,
                created_at,
                seqs: vec![seq],
            }),
        }
    }
    Ok(out)
}
