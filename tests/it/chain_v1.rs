//! Chain version 1 as the logs on disk were written before the encoding was
//! spelled out field by field (issue 13): a SQLite log and a PostgreSQL log
//! written by the code of commit 201d439 through the stores' own append
//! (`tests/fixtures/chain_v1/`), verified by today's binary. If these fail,
//! every register's existing log would fail `audit verify` after an upgrade.
//!
//! The fixtures were made once by `write_the_fixtures` (ignored) at that
//! commit; rerunning it with later code would pin the later code instead, so
//! it stays ignored and is kept only to show how they were made.

use std::path::{Path, PathBuf};
use std::process::Command;

use gjeldsbro::audit::record::DisclosureRecord;
use gjeldsbro::audit::verify::{self, Verdict, VerifyOptions};
use gjeldsbro::store::postgres::PostgresStore;
use gjeldsbro::store::prelude::*;
use gjeldsbro::store::sqlite::SqliteStore;

use crate::common::pg;

/// Records in each fixture log.
const RECORDS: i64 = 9;
/// The last record's hash in both fixture logs (the same records, the same chain).
const HEAD: &str = "26a4eb6058a0a4497349a8285edd208e76f8cae6d46268d9d4137b51e3167221";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/chain_v1")
        .join(name)
}

/// Records as the three paths wrote them, with every field shape the encoding
/// has to keep: absent and present options, non-ASCII, quotes, backslashes,
/// control characters, `<`/`>`/`&` (which serde_json does not escape) and a
/// disclosed JSON document inside a string.
fn records() -> Vec<DisclosureRecord> {
    let search = |i: u64, nin: u64| {
        DisclosureRecord {
        query_id: "5f0c8d4e-3a1b-4c2d-9e8f-0a1b2c3d4e5f".into(),
        at: "2026-03-01T10:15:30.123456789Z".into(),
        recipient_org: "910000001".into(),
        on_behalf_of: None,
        purpose: "search".into(),
        reference_id: format!("sak-{i}"),
        nin,
        disclosed: r#"{"loans":[{"lender":"lender-a","loan":{"type":"creditFacility","balance":12345,"currency":"NOK"}}],"missing":0}"#.into(),
        letter_owed_by: "broker".into(),
        message: None,
    }
    };
    vec![
        search(1, 18_190_400_101),
        // A co-borrower of the same answer: same query id.
        search(2, 18_190_400_202),
        DisclosureRecord {
            on_behalf_of: Some("910000002".into()),
            letter_owed_by: "credit_bureau".into(),
            message: Some("Søknad nr. 3 – æøå «sitat» 🙂".into()),
            ..search(3, 18_190_400_303)
        },
        DisclosureRecord {
            letter_owed_by: "recipient".into(),
            message: Some("line one\nline two\ttab \"quoted\" back\\slash \u{1}\u{1f}".into()),
            ..search(4, 18_190_400_404)
        },
        DisclosureRecord {
            message: Some("<script>alert('x')</script> & \u{7f} \u{2028}".into()),
            disclosed: r#"{"loans":[],"missing":2}"#.into(),
            ..search(5, 18_190_400_505)
        },
        DisclosureRecord {
            query_id: "7a1e0c2b-0000-4000-8000-000000000006".into(),
            at: "2026-03-02T08:00:00Z".into(),
            recipient_org: "910000003".into(),
            on_behalf_of: None,
            purpose: "debt.unsecured.presentation".into(),
            reference_id: "partner-consent-6".into(),
            nin: 18_190_400_606,
            disclosed: r#"{"loans":[],"missing":0}"#.into(),
            letter_owed_by: "none".into(),
            message: None,
        },
        DisclosureRecord {
            query_id: "7a1e0c2b-0000-4000-8000-000000000007".into(),
            at: "2026-03-02T08:00:01.5Z".into(),
            recipient_org: "910000003".into(),
            on_behalf_of: None,
            purpose: "debt.unsecured.processing".into(),
            reference_id: "".into(),
            nin: 0,
            disclosed: "{}".into(),
            letter_owed_by: "none".into(),
            message: Some("".into()),
        },
        DisclosureRecord {
            nin: 99_999_999_999,
            ..search(8, 0)
        },
        DisclosureRecord {
            nin: u64::from(u32::MAX) * 7,
            ..search(9, 0)
        },
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Writes both fixtures with the code of the commit it runs at. Run once, at
/// commit 201d439 (chain version 1 as it was), with
/// `cargo test --test it chain_v1::write_the_fixtures -- --ignored`.
#[test]
#[ignore = "made the fixtures once; rerunning would pin later code"]
fn write_the_fixtures() {
    runtime().block_on(async {
        std::fs::create_dir_all(fixture("")).expect("fixture dir");
        let path = fixture("log.sqlite");
        let _ = std::fs::remove_file(&path);
        let store = SqliteStore::open(&path).await.expect("open sqlite");
        store
            .append_disclosures(&records()[..5])
            .await
            .expect("append");
        store
            .append_disclosures(&records()[5..])
            .await
            .expect("append");
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(store.pool())
            .await
            .expect("checkpoint");
        store.pool().close().await;

        let (_drop, url) = pg::pg_schema().await.expect("PostgreSQL for the fixture");
        let store = PostgresStore::open(&url).await.expect("open postgres");
        store
            .append_disclosures(&records()[..5])
            .await
            .expect("append");
        store
            .append_disclosures(&records()[5..])
            .await
            .expect("append");
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT row_to_json(d)::text FROM disclosures d ORDER BY seq")
                .fetch_all(store.pool())
                .await
                .expect("rows");
        let lines: Vec<String> = rows.into_iter().map(|r| r.0).collect();
        std::fs::write(fixture("log.postgres.jsonl"), lines.join("\n") + "\n").expect("write");
        store.pool().close().await;
    });
}

fn assert_intact(v: Verdict) {
    match v {
        Verdict::Intact(s) => {
            assert_eq!(
                (s.records, s.first_seq, s.last_seq),
                (RECORDS as u64, Some(1), Some(RECORDS))
            );
            assert_eq!(s.head_hash, HEAD);
        }
        Verdict::Broken(b) => panic!("a chain-v1 log no longer verifies: {b}"),
    }
}

const ALL: VerifyOptions = VerifyOptions {
    anchor: None,
    retention_cutoff: None,
};

#[test]
fn a_sqlite_log_written_by_chain_v1_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("broker.db");
    std::fs::copy(fixture("log.sqlite"), &db).expect("copy fixture");
    runtime().block_on(async {
        let store = SqliteStore::open(&db).await.expect("open");
        assert_intact(verify::verify(&store, &ALL).await.expect("verify"));
        store.pool().close().await;
    });

    // And through the command an operator runs.
    let config = dir.path().join("gjeldsbro.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\naccept_synthetic_ids = true\n[store]\nurl = \"sqlite://{}\"\n\
             [auth]\nissuer = \"https://issuer.example\"\naudience = \"gjeldsbro\"\njwks_file = \"none.json\"\n",
            db.display()
        ),
    )
    .expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_gjeldsbro"))
        .args(["audit", "verify", "--config", &config.to_string_lossy()])
        .output()
        .expect("run gjeldsbro");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "audit verify failed: {text}");
    assert!(
        text.contains(&format!(
            "intact: {RECORDS} records, seq 1 to {RECORDS}, head {RECORDS}:{HEAD}"
        )),
        "{text}"
    );
}

#[test]
fn a_postgres_log_written_by_chain_v1_verifies() {
    let lines = std::fs::read_to_string(fixture("log.postgres.jsonl")).expect("fixture");
    runtime().block_on(async {
        let (_drop, url) = match pg::pg_schema().await {
            Ok(s) => s,
            Err(reason) => return pg::skip(&reason),
        };
        let store = PostgresStore::open(&url).await.expect("open");
        for line in lines.lines() {
            // The rows exactly as PostgreSQL held them, seq included.
            sqlx::query(
                "INSERT INTO disclosures OVERRIDING SYSTEM VALUE \
                 SELECT * FROM json_populate_record(NULL::disclosures, $1::json)",
            )
            .bind(line)
            .execute(store.pool())
            .await
            .expect("insert fixture row");
        }
        assert_intact(verify::verify(&store, &ALL).await.expect("verify"));
        store.pool().close().await;
    });
}
