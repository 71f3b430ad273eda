//! The PostgreSQL side of the embed store ([`super::embed`]): the claim is one
//! `INSERT … ON CONFLICT DO NOTHING` (of concurrent claims of one `jti` exactly
//! one inserts), the touch one conditional `UPDATE … RETURNING`.

use sqlx::Row;
use sqlx::postgres::PgPool;

use super::StoreError;
use super::consents::stored_nin;
use super::embed::{EmbedSession, NewEmbedSession};

pub(super) async fn claim(
    pool: &PgPool,
    jti: &str,
    expires_at: &str,
    now: &str,
) -> Result<bool, StoreError> {
    sqlx::query("DELETE FROM embed_token_claims WHERE expires_at < $1::timestamptz")
        .bind(now)
        .execute(pool)
        .await?;
    let done = sqlx::query(
        "INSERT INTO embed_token_claims (jti, expires_at) VALUES ($1, $2::timestamptz) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(expires_at)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn create(pool: &PgPool, s: &NewEmbedSession) -> Result<(), StoreError> {
    sqlx::query(
        "DELETE FROM embed_sessions WHERE idle_until < $1::timestamptz OR ends_at < $1::timestamptz",
    )
    .bind(&s.created_at)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO embed_sessions (id_hash, nin, partner_org, created_at, idle_until, ends_at) \
         VALUES ($1, $2, $3, $4::timestamptz, $5::timestamptz, $6::timestamptz)",
    )
    .bind(&s.id_hash)
    // Ids are below 10^11, far inside i64.
    .bind(s.nin.as_u64() as i64)
    .bind(&s.partner_org)
    .bind(&s.created_at)
    .bind(&s.idle_until)
    .bind(&s.ends_at)
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn touch(
    pool: &PgPool,
    id_hash: &str,
    now: &str,
    idle_until: &str,
) -> Result<Option<EmbedSession>, StoreError> {
    let row = sqlx::query(
        "UPDATE embed_sessions SET idle_until = LEAST($1::timestamptz, ends_at) \
         WHERE id_hash = $2 AND idle_until > $3::timestamptz AND ends_at > $3::timestamptz \
         RETURNING nin, partner_org, to_char(ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .bind(idle_until)
    .bind(id_hash)
    .bind(now)
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(EmbedSession {
            nin: stored_nin(r.try_get(0)?)?,
            partner_org: r.try_get(1)?,
            ends_at: r.try_get(2)?,
        })
    })
    .transpose()
}
