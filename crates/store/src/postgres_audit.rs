//! [`AuditStore`] on PostgreSQL: pages of the chain, checkpoints and purges,
//! letters. The same statements as on SQLite, in PostgreSQL's dialect; `at` is
//! compared `COLLATE "C"` (bytewise, as SQLite does), which the `disclosures_at`
//! index is built for.

use futures::FutureExt;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, QueryBuilder, Row};

use super::audit::{
    AuditStore, Checkpoint, LetterBatch, LetterRow, PurgedRows, StoredDisclosure, nin_from_column,
};
use super::postgres::PostgresStore;
use super::sqlite_audit::group_letters;
use super::{StoreError, StoreFuture};
use gjeldsbro_domain::disclosure::record::DisclosureRecord;

/// Rows deleted per transaction when purging, so appends never wait long.
const PURGE_BATCH: i64 = 50_000;

const COLUMNS: &str = "d.seq, d.query_id, d.at, d.recipient_org, d.on_behalf_of, d.purpose, \
     d.reference_id, d.nin, d.disclosed, d.letter_owed_by, d.message, d.prev_hash, d.hash";

/// The search records the broker owes a letter for that no letter covers yet.
const OWED: &str = "d.purpose = 'search' AND d.letter_owed_by = 'broker' \
     AND NOT EXISTS (SELECT 1 FROM letter_disclosures l WHERE l.seq = d.seq)";

fn stored(r: &PgRow) -> Result<StoredDisclosure, StoreError> {
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

impl AuditStore for PostgresStore {
    fn disclosures_after(&self, after: i64, limit: u32) -> StoreFuture<'_, Vec<StoredDisclosure>> {
        async move {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM disclosures d WHERE d.seq > $1 ORDER BY d.seq LIMIT $2"
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
                 WHERE d.seq = ANY($1) ORDER BY d.seq"
            )))
            .bind(seqs.to_vec())
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
                "INSERT INTO disclosure_checkpoints (seq, hash, record_at, created_at) VALUES ($1, $2, $3, $4)",
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
                     (SELECT seq FROM letter_disclosures WHERE seq <= $1 LIMIT $2)",
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
                     (SELECT seq FROM disclosures WHERE seq <= $1 ORDER BY seq LIMIT $2)",
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
            // to_regclass follows search_path, as every other statement here does.
            let exists: bool = sqlx::query_scalar("SELECT to_regclass('consents') IS NOT NULL")
                .fetch_one(self.pool())
                .await?;
            if !exists {
                return Ok(None);
            }
            let done = sqlx::query("DELETE FROM consents WHERE ends_at < $1::timestamptz")
                .bind(ended_before.to_owned())
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
                "SELECT DISTINCT d.nin FROM disclosures d WHERE d.at COLLATE \"C\" >= $1 AND d.at COLLATE \"C\" < $2 AND {OWED} \
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
                "SELECT {COLUMNS} FROM disclosures d WHERE d.at COLLATE \"C\" >= $1 AND d.at COLLATE \"C\" < $2 AND {OWED} \
                 AND d.nin = ANY($3) ORDER BY d.seq"
            )))
            .bind(from.to_owned())
            .bind(to.to_owned())
            .bind(persons.iter().map(|n| *n as i64).collect::<Vec<i64>>())
            .fetch_all(self.pool())
            .await?;
            rows.iter().map(stored).collect()
        }
        .boxed()
    }

    fn add_letter_batch<'a>(&'a self, b: &'a LetterBatch) -> StoreFuture<'a, ()> {
        async move {
            sqlx::query(
                "INSERT INTO letter_batches (batch_id, day, manifest, created_at) VALUES ($1, $2, $3, $4)",
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
            let mut tx = self.pool().begin().await?;
            let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
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
            for chunk in links.chunks(5_000) {
                let mut qb: QueryBuilder<Postgres> =
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
                 WHERE l.batch_id = $1 ORDER BY l.file, d.seq",
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
            sqlx::query("UPDATE letter_batches SET completed_at = $1 WHERE batch_id = $2")
                .bind(at.to_owned())
                .bind(batch_id.to_owned())
                .execute(self.pool())
                .await?;
            Ok(())
        }
        .boxed()
    }
}
