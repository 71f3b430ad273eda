//! PostgreSQL test schemas: each test gets a fresh schema of the test database
//! (`GJELDSBRO_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`),
//! dropped when the test ends, also on panic. When PostgreSQL is not reachable
//! tests print `skipping PostgreSQL: <reason>` and go on without it, unless
//! `GJELDSBRO_REQUIRE_PG=1` (as `.ci/run` sets): then they fail, so CI can never
//! pass with the PostgreSQL half of the suite silently skipped.

use std::time::Duration;

use sqlx::Connection;

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn pg_admin_url() -> String {
    std::env::var("GJELDSBRO_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// Whether the tests must have PostgreSQL (`GJELDSBRO_REQUIRE_PG=1`).
pub fn required() -> bool {
    std::env::var("GJELDSBRO_REQUIRE_PG").is_ok_and(|v| v == "1")
}

/// Skips the PostgreSQL part of a test with `reason`, or fails it when
/// PostgreSQL is required.
pub fn skip(reason: &str) {
    assert!(
        !required(),
        "PostgreSQL is required (GJELDSBRO_REQUIRE_PG=1) but {reason}"
    );
    println!("skipping PostgreSQL: {reason}");
}

/// The URL of the admin database with `search_path` set to `schema`.
pub fn pg_url_with_schema(schema: &str) -> String {
    let base = pg_admin_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// Drops a test schema when the test ends, even when it panics.
pub struct DropSchema(pub String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        let schema = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// Creates a fresh schema; `Err` with the reason when PostgreSQL is not reachable.
pub async fn pg_schema() -> Result<(DropSchema, String), String> {
    let admin = pg_admin_url();
    let mut conn =
        tokio::time::timeout(Duration::from_secs(3), sqlx::PgConnection::connect(&admin))
            .await
            .map_err(|_| format!("no answer from {admin} within 3 s"))?
            .map_err(|e| format!("cannot connect to {admin}: {e}"))?;
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("cannot create a schema: {e}"))?;
    let _ = conn.close().await;
    let url = pg_url_with_schema(&schema);
    Ok((DropSchema(schema), url))
}
