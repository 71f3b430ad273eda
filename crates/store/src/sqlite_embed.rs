//! The SQLite side of the embed store ([`super::embed`]). Each step is one
//! statement (or a prune and one statement), so SQLite's write lock makes it
//! atomic.

use sqlx::{Row, SqlitePool};

use super::StoreError;
use super::consents::stored_nin;
use super::embed::{EmbedSession, NewEmbedSession};

pub(super) async fn claim(
    pool: &SqlitePool,
    jti: &str,
    expires_at: &str,
    now: &str,
) -> Result<bool, StoreError> {
    sqlx::query("DELETE FROM embed_token_claims WHERE expires_at < ?")
        .bind(now.to_owned())
        .execute(pool)
        .await?;
    let done = sqlx::query(
        "INSERT INTO embed_token_claims (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti.to_owned())
    .bind(expires_at.to_owned())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn create(pool: &SqlitePool, s: &NewEmbedSession) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM embed_sessions WHERE idle_until < ? OR ends_at < ?")
        .bind(s.created_at.clone())
        .bind(s.created_at.clone())
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO embed_sessions (id_hash, nin, partner_org, created_at, idle_until, ends_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(s.id_hash.clone())
    // Ids are below 10^11, far inside i64.
    .bind(s.nin.as_u64() as i64)
    .bind(s.partner_org.clone())
    .bind(s.created_at.clone())
    .bind(s.idle_until.clone())
    .bind(s.ends_at.clone())
    .execute(pool)
    .await?;
    Ok(())
}

pub(super) async fn touch(
    pool: &SqlitePool,
    id_hash: &str,
    now: &str,
    idle_until: &str,
) -> Result<Option<EmbedSession>, StoreError> {
    let row = sqlx::query(
        "UPDATE embed_sessions SET idle_until = MIN(?, ends_at) \
         WHERE id_hash = ? AND idle_until > ? AND ends_at > ? \
         RETURNING nin, partner_org, ends_at",
    )
    .bind(idle_until.to_owned())
    .bind(id_hash.to_owned())
    .bind(now.to_owned())
    .bind(now.to_owned())
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
