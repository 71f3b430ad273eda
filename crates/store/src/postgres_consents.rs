//! The PostgreSQL side of the consent store, for several brokers on one
//! database. Times are `timestamptz` in the tables and fixed-width RFC 3339 text
//! at the boundary (bound as text and cast; read back through `to_char`).
//! Concurrency comes from the database: `ON CONFLICT` for idempotent creation, a
//! row lock on the client's feed counter for gap-free numbering, and a
//! conditional `UPDATE` for the one-time spend.

use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool, PgRow};

use super::consents::stored_nin;
use super::{
    ConsentEvent, ConsentUse, CreatedConsent, NewConsent, PersonDisclosure, StoreError,
    StoredConsent, UseRequest,
};
use gjeldsbro_domain::disclosure::record::DisclosureRecord;
use gjeldsbro_domain::nin::NationalId;

/// A timestamptz column as fixed-width RFC 3339 UTC text.
macro_rules! ts {
    ($col:literal) => {
        concat!(
            "to_char(",
            $col,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}

const COLS: &str = concat!(
    "id, client_org, client_consent_id, nin, scope, requested_days, one_time, given_via, ",
    ts!("created_at"),
    ", ",
    ts!("ends_at"),
    ", ",
    ts!("spent_at"),
    ", ",
    ts!("last_used_at"),
    ", ",
    ts!("archived_at"),
    ", archived_by"
);

fn decode(r: &PgRow) -> Result<StoredConsent, StoreError> {
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

/// Appends a feed event under the client's next sequence number. The upsert
/// locks the client's counter row until commit, so numbers have no gaps and no
/// repeats across processes.
async fn add_event(
    conn: &mut PgConnection,
    client_org: &str,
    consent_id: &str,
    kind: &str,
    at: &str,
) -> Result<(), StoreError> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO consent_feed_counters (client_org, last_seq) VALUES ($1, 1) \
         ON CONFLICT (client_org) DO UPDATE SET last_seq = consent_feed_counters.last_seq + 1 \
         RETURNING last_seq",
    )
    .bind(client_org)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO consent_events (client_org, seq, consent_id, kind, at) \
         VALUES ($1, $2, $3, $4, $5::timestamptz)",
    )
    .bind(client_org)
    .bind(seq)
    .bind(consent_id)
    .bind(kind)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn by_id(conn: &mut PgConnection, id: &str) -> Result<Option<StoredConsent>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM consents WHERE id = $1"));
    sqlx::query(sql)
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .as_ref()
        .map(decode)
        .transpose()
}

pub(super) async fn create(pool: &PgPool, c: &NewConsent) -> Result<CreatedConsent, StoreError> {
    // Dropping the transaction on any error rolls it back.
    let mut tx = pool.begin().await?;
    // A concurrent create with the same client id waits for the first to
    // commit and then inserts nothing.
    let inserted: Option<String> = sqlx::query_scalar(
        "INSERT INTO consents (id, client_org, client_consent_id, nin, scope, requested_days, \
         one_time, given_via, created_at, ends_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::timestamptz, $10::timestamptz) \
         ON CONFLICT (client_org, client_consent_id) DO NOTHING RETURNING id",
    )
    .bind(&c.id)
    .bind(&c.client_org)
    .bind(&c.client_consent_id)
    .bind(key(c.nin))
    .bind(&c.scope)
    .bind(c.requested_days)
    .bind(c.one_time)
    .bind(&c.given_via)
    .bind(&c.created_at)
    .bind(&c.ends_at)
    .fetch_optional(&mut *tx)
    .await?;
    let fresh = inserted.is_some();
    if fresh {
        add_event(&mut tx, &c.client_org, &c.id, "created", &c.created_at).await?;
    }
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM consents WHERE client_org = $1 AND client_consent_id = $2"
    ));
    let row = sqlx::query(sql)
        .bind(&c.client_org)
        .bind(&c.client_consent_id)
        .fetch_one(&mut *tx)
        .await?;
    let consent = decode(&row)?;
    tx.commit().await?;
    Ok(CreatedConsent { consent, fresh })
}

pub(super) async fn get(pool: &PgPool, id: &str) -> Result<Option<StoredConsent>, StoreError> {
    let mut conn = pool.acquire().await?;
    by_id(&mut conn, id).await
}

pub(super) async fn archive(
    pool: &PgPool,
    id: &str,
    at: &str,
    by: &str,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let client: Option<String> = sqlx::query_scalar(
        "UPDATE consents SET archived_at = $1::timestamptz, archived_by = $2 \
         WHERE id = $3 AND archived_at IS NULL RETURNING client_org",
    )
    .bind(at)
    .bind(by)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(client) = client else {
        return Ok(false);
    };
    add_event(&mut tx, &client, id, "archived", at).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn use_and_record(
    pool: &PgPool,
    u: &UseRequest,
    records: &[DisclosureRecord],
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    // The deciding step. A concurrent use of the same one-time consent blocks on
    // this row until the first commits, then re-checks `spent_at IS NULL`
    // (READ COMMITTED re-evaluates the WHERE on the new row version) and
    // changes nothing.
    let done = sqlx::query(
        "UPDATE consents SET last_used_at = $1::timestamptz, \
         spent_at = CASE WHEN one_time THEN $1::timestamptz ELSE spent_at END \
         WHERE id = $2 AND client_org = $3 AND archived_at IS NULL AND spent_at IS NULL \
         AND ends_at > $1::timestamptz",
    )
    .bind(&u.at)
    .bind(&u.consent_id)
    .bind(&u.client_org)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO consent_uses (consent_id, at, by_org, query_id, outcome) \
         VALUES ($1, $2::timestamptz, $3, $4, 'disclosed')",
    )
    .bind(&u.consent_id)
    .bind(&u.at)
    .bind(&u.client_org)
    .bind(&u.query_id)
    .execute(&mut *tx)
    .await?;
    // Lock order: the consent row, then the disclosure table. Plain appends
    // take only the table lock, so no cycle.
    super::postgres::insert_chained(&mut tx, records).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn refusal(
    pool: &PgPool,
    consent_id: &str,
    by_org: &str,
    at: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO consent_uses (consent_id, at, by_org, query_id, outcome) \
         VALUES ($1, $2::timestamptz, $3, NULL, 'refused')",
    )
    .bind(consent_id)
    .bind(at)
    .bind(by_org)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn of_person(
    pool: &PgPool,
    nin: NationalId,
) -> Result<Vec<StoredConsent>, StoreError> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {COLS} FROM consents WHERE nin = $1 ORDER BY consents.created_at DESC, id"
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
    pool: &PgPool,
    nin: NationalId,
) -> Result<Vec<ConsentUse>, StoreError> {
    let sql = concat!(
        "SELECT u.consent_id, ",
        ts!("u.at"),
        ", u.by_org, u.query_id, u.outcome FROM consent_uses u \
         JOIN consents c ON c.id = u.consent_id WHERE c.nin = $1 ORDER BY u.seq"
    );
    let rows = sqlx::query(sql).bind(key(nin)).fetch_all(pool).await?;
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
    pool: &PgPool,
    client_org: &str,
    from: i64,
    limit: u32,
) -> Result<Vec<ConsentEvent>, StoreError> {
    let sql = concat!(
        "SELECT e.seq, e.consent_id, e.kind, ",
        ts!("e.at"),
        ", c.client_consent_id, c.scope, ",
        ts!("c.ends_at"),
        " FROM consent_events e LEFT JOIN consents c ON c.id = e.consent_id \
         WHERE e.client_org = $1 AND e.seq >= $2 ORDER BY e.seq LIMIT $3"
    );
    let rows = sqlx::query(sql)
        .bind(client_org)
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
    pool: &PgPool,
    nin: NationalId,
    limit: u32,
) -> Result<Vec<PersonDisclosure>, StoreError> {
    let rows = sqlx::query(
        "SELECT query_id, at, recipient_org, on_behalf_of, purpose, reference_id, disclosed \
         FROM disclosures WHERE nin = $1 ORDER BY seq DESC LIMIT $2",
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
