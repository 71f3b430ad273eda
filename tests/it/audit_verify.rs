//! `gjeldsbro audit verify`: any edit, deletion or reordering of disclosure
//! records is reported at the first bad seq; an untouched log verifies. The
//! database's triggers refuse such changes, so the tests drop them in a copy of
//! the log first: the verifier must catch what gets past them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use gjeldsbro::audit::record::DisclosureRecord;
use gjeldsbro::audit::verify::{self, Anchor, Verdict, VerifyOptions};
use gjeldsbro::store::prelude::*;
use gjeldsbro::store::sqlite::SqliteStore;
use proptest::prelude::*;
use sqlx::Row;

/// Records in the template log.
const N: i64 = 12;

const FIELDS: [&str; 13] = [
    "query_id",
    "at",
    "recipient_org",
    "on_behalf_of",
    "purpose",
    "reference_id",
    "nin",
    "disclosed",
    "letter_owed_by",
    "message",
    "prev_hash",
    "hash",
    "seq",
];

/// Synthetic (Tenor-style) 11-digit ids, so a leak into the output would show.
fn nin(i: i64) -> u64 {
    1_819_040_000 + i as u64 * 101
}

fn records() -> Vec<DisclosureRecord> {
    (1..=N)
        .map(|i| DisclosureRecord {
            query_id: format!("q-{}", (i + 1) / 2),
            at: format!("2026-03-01T10:{i:02}:00.{i}Z"),
            recipient_org: "910000001".into(),
            on_behalf_of: (i % 3 == 0).then(|| "910000002".to_owned()),
            purpose: "search".into(),
            reference_id: format!("sak-{i}"),
            nin: nin(i),
            disclosed: format!(r#"{{"loans":[],"missing":{}}}"#, i % 2),
            letter_owed_by: if i % 3 == 0 {
                "credit_bureau"
            } else {
                "broker"
            }
            .into(),
            message: (i % 2 == 0).then(|| format!("Søknad nr. {i} – æøå")),
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A log of N records made once through the store; each case copies it.
struct Template {
    _dir: tempfile::TempDir,
    path: PathBuf,
    head: Anchor,
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("template.db");
        // On a thread of its own: the first caller may already be inside a runtime.
        let at = path.clone();
        let head = std::thread::spawn(move || {
            runtime().block_on(async {
                let path = at;
                let store = SqliteStore::open(&path).await.expect("open");
                store.append_disclosures(&records()).await.expect("append");
                let head: (i64, String) =
                    sqlx::query_as("SELECT seq, hash FROM disclosures ORDER BY seq DESC LIMIT 1")
                        .fetch_one(store.pool())
                        .await
                        .expect("head");
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(store.pool())
                    .await
                    .expect("checkpoint");
                store.pool().close().await;
                Anchor {
                    seq: head.0,
                    hash: head.1,
                }
            })
        })
        .join()
        .expect("template");
        Template {
            _dir: dir,
            path,
            head,
        }
    })
}

/// A fresh copy of the template log with the append-only triggers dropped.
async fn tamperable_copy(dir: &Path) -> (PathBuf, sqlx::SqlitePool) {
    let path = dir.join("broker.db");
    std::fs::copy(&template().path, &path).expect("copy");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("connect");
    for t in ["disclosures_no_update", "disclosures_no_delete"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER {t}")))
            .execute(&pool)
            .await
            .expect("drop trigger");
    }
    (path, pool)
}

/// Every column of every row, by seq, for comparing before and after.
async fn rows(pool: &sqlx::SqlitePool) -> Vec<(i64, Vec<Option<String>>)> {
    let cols = FIELDS.join(", ");
    let all = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT seq, {cols} FROM disclosures ORDER BY seq"
    )))
    .fetch_all(pool)
    .await
    .expect("rows");
    all.iter()
        .map(|r| {
            let values = (1..=FIELDS.len())
                .map(|i| match r.try_get::<Option<String>, _>(i) {
                    Ok(text) => text,
                    Err(_) => Some(r.get::<i64, _>(i).to_string()),
                })
                .collect();
            (r.get(0), values)
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Tamper {
    /// Sets one column of one record.
    Edit { seq: i64, field: usize, value: u64 },
    /// Deletes a record.
    Delete { seq: i64 },
    /// Swaps two records' places (renumbers them).
    Swap { a: i64, b: i64 },
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (1..=N, 0..FIELDS.len(), any::<u64>()).prop_map(|(seq, field, value)| Tamper::Edit {
            seq,
            field,
            value
        }),
        (1..=N).prop_map(|seq| Tamper::Delete { seq }),
        (1..=N, 1..=N).prop_map(|(a, b)| Tamper::Swap { a, b }),
    ]
}

async fn apply(pool: &sqlx::SqlitePool, t: &Tamper) {
    let q = |sql: String| sqlx::query(sqlx::AssertSqlSafe(sql));
    match *t {
        Tamper::Edit { seq, field, value } => {
            let column = FIELDS[field];
            let edit = match column {
                // Ids stay in range (the store reads them as unsigned).
                "nin" => q("UPDATE disclosures SET nin = ? WHERE seq = ?".into())
                    .bind((value % 100_000_000_000) as i64),
                // Moved far past the end: a hole where it was.
                "seq" => q("UPDATE disclosures SET seq = ? WHERE seq = ?".into()).bind(1_000 + seq),
                "on_behalf_of" | "message" if value % 3 == 0 => q(format!(
                    "UPDATE disclosures SET {column} = NULL WHERE seq = ?"
                )),
                _ => q(format!("UPDATE disclosures SET {column} = ? WHERE seq = ?"))
                    .bind(format!("{value:x}")),
            };
            edit.bind(seq).execute(pool).await.expect("edit");
        }
        Tamper::Delete { seq } => {
            q("DELETE FROM disclosures WHERE seq = ?".into())
                .bind(seq)
                .execute(pool)
                .await
                .expect("delete");
        }
        Tamper::Swap { a, b } => {
            for (from, to) in [(a, -1), (b, a), (-1, b)] {
                q("UPDATE disclosures SET seq = ? WHERE seq = ?".into())
                    .bind(to)
                    .bind(from)
                    .execute(pool)
                    .await
                    .expect("swap");
            }
        }
    }
}

/// The first seq in 1..=N whose row differs from the original (or is gone).
fn first_difference(
    before: &[(i64, Vec<Option<String>>)],
    after: &[(i64, Vec<Option<String>>)],
) -> Option<i64> {
    (1..=N).find(|seq| {
        let find = |rows: &[(i64, Vec<Option<String>>)]| {
            rows.iter().find(|(s, _)| s == seq).map(|(_, v)| v.clone())
        };
        find(before) != find(after)
    })
}

async fn verify_copy(path: &Path, anchor: Option<Anchor>) -> Verdict {
    let store = SqliteStore::open(path).await.expect("open");
    let v = verify::verify(
        &store,
        &VerifyOptions {
            anchor,
            retention_cutoff: None,
        },
    )
    .await
    .expect("verify");
    store.pool().close().await;
    v
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random edits of any column, deletions and swaps: the verifier (with the
    /// head saved before as its anchor) names exactly the first changed seq.
    #[test]
    fn tampering_is_reported_at_the_first_bad_seq(ops in prop::collection::vec(tamper(), 1..4)) {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("tempdir");
        let (expected, verdict) = rt.block_on(async {
            let (path, pool) = tamperable_copy(dir.path()).await;
            let before = rows(&pool).await;
            for op in &ops {
                apply(&pool, op).await;
            }
            let after = rows(&pool).await;
            pool.close().await;
            let expected = first_difference(&before, &after);
            (expected, verify_copy(&path, Some(template().head.clone())).await)
        });
        match (expected, verdict) {
            (None, Verdict::Intact(s)) => prop_assert_eq!(s.last_seq, Some(N)),
            (Some(seq), Verdict::Broken(b)) => prop_assert_eq!(b.seq, seq, "{}", b),
            (e, v) => prop_assert!(false, "expected first bad seq {:?}, got {:?}", e, v),
        }
    }
}

#[test]
fn an_untouched_log_verifies_with_and_without_its_anchor() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    rt.block_on(async {
        let (path, pool) = tamperable_copy(dir.path()).await;
        pool.close().await;
        for anchor in [None, Some(template().head.clone())] {
            match verify_copy(&path, anchor).await {
                Verdict::Intact(s) => {
                    assert_eq!(
                        (s.records, s.first_seq, s.last_seq),
                        (N as u64, Some(1), Some(N))
                    );
                    assert_eq!(s.head_hash, template().head.hash);
                }
                Verdict::Broken(b) => panic!("{b}"),
            }
        }
    });
}

fn config(dir: &Path, db: &Path) -> PathBuf {
    let path = dir.join("gjeldsbro.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:0\"\naccept_synthetic_ids = true\n[store]\nurl = \"sqlite://{}\"\n\
             [auth]\nissuer = \"https://issuer.example\"\naudience = \"gjeldsbro\"\njwks_file = \"none.json\"\n",
            db.display()
        ),
    )
    .expect("config");
    path
}

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gjeldsbro"))
        .args(args)
        .output()
        .expect("run gjeldsbro");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 1..=N {
        assert!(
            !text.contains(&format!("{:011}", nin(i))),
            "a national id in: {text}"
        );
    }
    (out.status.code().unwrap_or(-1), text)
}

/// The real binary: exit 0 with a summary, or 2 naming the first bad record;
/// never a national id in its output.
#[test]
fn the_command_exits_by_the_verdict() {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let (path, pool) = rt.block_on(tamperable_copy(dir.path()));
    let cfg = config(dir.path(), &path);
    let cfg = cfg.to_str().expect("utf-8 path");
    let head = format!("{}:{}", template().head.seq, template().head.hash);

    let (code, text) = run(&["audit", "verify", "--config", cfg, "--anchor", &head]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!("intact: {N} records, seq 1 to {N}, head {head}")),
        "{text}"
    );
    assert!(text.contains("anchor matches"), "{text}");

    rt.block_on(async {
        sqlx::query("UPDATE disclosures SET message = 'endret' WHERE seq = 7")
            .execute(&pool)
            .await
            .expect("edit");
        pool.close().await;
    });
    let (code, text) = run(&["audit", "verify", "--config", cfg]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("BROKEN: record 7: its content does not match its hash"),
        "{text}"
    );

    let (code, text) = run(&["audit", "verify", "--config", cfg, "--anchor", "7:xyz"]);
    assert_eq!(code, 2, "a malformed anchor is a usage error: {text}");
}
