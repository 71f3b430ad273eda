//! The SQLite side of the consent store. Every writing step runs in a
//! `BEGIN IMMEDIATE` transaction: it takes the database's write lock at once, so
//! a read-then-write (idempotent create, feed numbering, conditional spend plus
//! the disclosure chain) cannot interleave with another writer.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::consents::stored_nin;
use super::{
    ConsentEvent, ConsentUse, CreatedConsent, NewConsent, PersonDisclosure, StoreError,
    StoredConsent, UseRequest,
};
use gjeldsbro_domain::disclosure::record::DisclosureRecord;
use gjeldsbro_domain::nin::NationalId;

const COLS: &str = "id, client_org, client_consent_id, nin, scope, requested_days, one_time, \
                    given_via, created_at, ends_at, spent_at, last_used_at, archived_at, archived_by";

fn decode(r: &SqliteRow) -> Result<StoredConsent, StoreError> {
    Ok(StoredConsent {
        id: r.try_get(0)?,
        client_org: r.try_get(1)?,
        client_consent_id: r.try_get(2)?,
        nin: stored_nin(r.try_get(3)?)?,
        scope: r.try_get(4)?,
        requested_days: r.try_get(5)?,
        one_time: r.try_get(6)?,
        given_via: r.try_get(7)?,
        created_at: r.try_get(8)?,
        ends_at: r.try_get(9)?,
        spent_at: r.try_get(10)?,
        last_used_at: r.try_get(11)?,
        archived_at: r.try_get(12)?,
        archived_by: r.try_get(13)?,
    })
}

fn key(nin: NationalId) -> i64 {
    // Ids are below 10^11, far inside i64.
    nin.as_u64() as i64
}

/// Commits on success, rolls back on error.
async fn finish<T>(
    conn: &mut SqliteConnection,
    result: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match result {
        Ok(v) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(v)
        }
        Err(e) => {
            // Best effort: SQLite rolls back an unfinished transaction anyway.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(e)
        }
    }
}

/// Appends a feed event under the client's next sequence number.
async fn add_event(
    conn: &mut SqliteConnection,
    client_org: &str,
    consent_id: &str,
    kind: &str,
    at: &str,
) -> Result<(), StoreError> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO consent_feed_counters (client_org, last_seq) VALUES (?, 1) \
         ON CONFLICT (client_org) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq",
    )
    .bind(client_org.to_owned())
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO consent_events (client_org, seq, consent_id, kind, at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(client_org.to_owned())
    .bind(seq)
    .bind(consent_id.to_owned())
    .bind(kind.to_owned())
    .bind(at.to_owned())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn by_id(conn: &mut SqliteConnection, id: &str) -> Result<Option<StoredConsent>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM consents WHERE id = ?"));
    sqlx::query(sql)
        .bind(id.to_owned())
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(decode)
        .transpose()
}

pub(super) async fn create(
    pool: &SqlitePool,
    c: &NewConsent,
) -> Result<CreatedConsent, StoreError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let result = async {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {COLS} FROM consents WHERE client_org = ? AND client_consent_id = ?"
        ));
        let existing = sqlx::query(sql)
            .bind(c.client_org.clone())
            .bind(c.client_consent_id.clone())
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = existing {
            return Ok(CreatedConsent {
                consent: decode(&row)?,
                fresh: false,
            });
        }
        sqlx::query(
            "INSERT INTO consents (id, client_org, client_consent_id, nin, scope, requested_days, \
             one_time, given_via, created_at, ends_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(c.id.clone())
        .bind(c.client_org.clone())
        .bind(c.client_consent_id.clone())
        .bind(key(c.nin))
        .bind(c.scope.clone())
        .bind(c.requested_days)
        .bind(c.one_time)
        .bind(c.given_via.clone())
        .bind(c.created_at.clone())
        .bind(c.ends_at.clone())
        .execute(&mut *conn)
        .await?;
        add_event(&mut conn, &c.client_org, &c.id, "created", &c.created_at).await?;
        let consent = by_id(&mut conn, &c.id)
            .await?
            .ok_or_else(|| StoreError::Query("the new consent is not there".into()))?;
        Ok(CreatedConsent {
            consent,
            fresh: true,
        })
    }
    .await;
    finish(&mut conn, result).await
}

pub(super) async fn get(pool: &SqlitePool, id: &str) -> Result<Option<StoredConsent>, StoreError> {
    let mut conn = pool.acquire().await?;
    by_id(&mut conn, id).await
}

pub(super) async fn archive(
    pool: &SqlitePool,
    id: &str,
    at: &str,
    by: &str,
) -> Result<bool, StoreError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let result = async {
        let client: Option<String> = sqlx::query_scalar(
            "UPDATE consents SET archived_at = ?, archived_by = ? \
             WHERE id = ? AND archived_at IS NULL RETURNING client_org",
        )
        .bind(at.to_owned())
        .bind(by.to_owned())
        .bind(id.to_owned())
        .fetch_optional(&mut *conn)
        .await?;
        match client {
            Some(client) => {
                add_event(&mut conn, &client, id, "archived", at).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
    .await;
    finish(&mut conn, result).await
}

pub(super) async fn use_and_record(
    pool: &SqlitePool,
    u: &UseRequest,
    records: &[DisclosureRecord],
) -> Result<bool, StoreError> {
    let mut conn = pool.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let result = async {
        // The deciding step: of concurrent uses of a one-time consent only the
        // first UPDATE finds spent_at NULL; the others change no row.
        let done = sqlx::query(
            "UPDATE consents SET last_used_at = ?1, \
             spent_at = CASE WHEN one_time THEN ?1 ELSE spent_at END \
             WHERE id = ?2 AND client_org = ?3 AND archived_at IS NULL AND spent_at IS NULL \
             AND ends_at > ?1",
        )
        .bind(u.at.clone())
        .bind(u.consent_id.clone())
        .bind(u.client_org.clone())
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO consent_uses (consent_id, at, by_org, query_id, outcome) \
             VALUES (?, ?, ?, ?, 'disclosed')",
        )
        .bind(u.consent_id.clone())
        .bind(u.at.clone())
        .bind(u.client_org.clone())
        .bind(u.query_id.clone())
        .execute(&mut *conn)
        .await?;
        super::sqlite::insert_chained(&mut conn, records).await?;
        Ok(true)
    }
    .await;
    finish(&mut conn, result).await
}

pub(super) async fn refusal(
    pool: &SqlitePool,
    consent_id: &str,
    by_org: &str,
    at: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO consent_uses (consent_id, at, by_org, query_id, outcome) \
         VALUES (?, ?, ?, NULL, 'refused')",
    )
    .bind(consent_id.to_owned())
    .bind(at.to_owned())
    .bind(by_org.to_owned())
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn of_person(
    pool: &SqlitePool,
    nin: NationalId,
) -> Result<Vec<StoredConsent>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM consents WHERE nin = ? ORDER BY created_at DESC, id"
    ));
    sqlx::query(sql)
        .bind(key(nin))
        .fetch_all(pool)
        .await?
        .iter()
        .map(decode)
        .collect()
}

pub(super) async fn uses_of_person(
    pool: &SqlitePool,
    nin: NationalId,
) -> Result<Vec<ConsentUse>, StoreError> {
    let rows = sqlx::query(
        "SELECT u.consent_id, u.at, u.by_org, u.query_id, u.outcome FROM consent_uses u \
         JOIN consents c ON c.id = u.consent_id WHERE c.nin = ? ORDER BY u.seq",
    )
    .bind(key(nin))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ConsentUse {
                consent_id: r.try_get(0)?,
                at: r.try_get(1)?,
                by_org: r.try_get(2)?,
                query_id: r.try_get(3)?,
                outcome: r.try_get(4)?,
            })
        })
        .collect()
}

pub(super) async fn events(
    pool: &SqlitePool,
    client_org: &str,
    from: i64,
    limit: u32,
) -> Result<Vec<ConsentEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT e.seq, e.consent_id, e.kind, e.at, c.client_consent_id, c.scope, c.ends_at \
         FROM consent_events e LEFT JOIN consents c ON c.id = e.consent_id \
         WHERE e.client_org = ? AND e.seq >= ? ORDER BY e.seq LIMIT ?",
    )
    .bind(client_org.to_owned())
    .bind(from)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ConsentEvent {
                seq: r.try_get(0)?,
                consent_id: r.try_get(1)?,
                kind: r.try_get(2)?,
                at: r.try_get(3)?,
                client_consent_id: r.try_get(4)?,
                scope: r.try_get(5)?,
                ends_at: r.try_get(6)?,
            })
        })
        .collect()
}

pub(super) async fn disclosures_of_person(
    pool: &SqlitePool,
    nin: NationalId,
    limit: u32,
) -> Result<Vec<PersonDisclosure>, StoreError> {
    let rows = sqlx::query(
        "SELECT query_id, at, recipient_org, on_behalf_of, purpose, reference_id, disclosed \
         FROM disclosures WHERE nin = ? ORDER BY seq DESC LIMIT ?",
    )
    .bind(key(nin))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PersonDisclosure {
                query_id: r.try_get(0)?,
                at: r.try_get(1)?,
                recipient_org: r.try_get(2)?,
                on_behalf_of: r.try_get(3)?,
                purpose: r.try_get(4)?,
                reference_id: r.try_get(5)?,
                disclosed: r.try_get(6)?,
            })
        })
        .collect()
}
