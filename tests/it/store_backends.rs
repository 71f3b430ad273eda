//! One suite of store-level tests, run against every available backend: SQLite in a
//! temporary directory always, PostgreSQL when it is reachable (at
//! `GJELDSBRO_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//! Each PostgreSQL run gets a fresh schema, dropped at the end (also on panic).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;

use common::pg::{DropSchema, pg_schema};
use futures::TryStreamExt;
use gjeldsbro::audit::record::{DisclosureRecord, GENESIS, chain_hash};
use gjeldsbro::audit::retention;
use gjeldsbro::audit::verify::{self, Anchor, Break, BreakReason, Verdict, VerifyOptions};
use gjeldsbro::nin::{IdPolicy, NationalId, make_id};
use gjeldsbro::store::IndexChange;
use gjeldsbro::store::postgres::PostgresStore;
use gjeldsbro::store::sqlite::SqliteStore;
use gjeldsbro::store::{
    Checkpoint, DatasetSummary, DeliveryRecord, LetterBatch, LetterRow, SnapshotRow, Store,
};
use gjeldsbro_adapter::Loan;
use sqlx::Row;

fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Raw access beside the store, for what the trait does not expose.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// One backend under test.
struct Backend {
    name: &'static str,
    /// The store's URL, to open a second instance on the same data.
    url: String,
    store: Arc<dyn Store>,
    raw: Raw,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<DropSchema>,
}

async fn sqlite_backend() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("broker.db"))
        .await
        .expect("open sqlite");
    Backend {
        name: "sqlite",
        url: format!("sqlite://{}", dir.path().join("broker.db").display()),
        raw: Raw::Sqlite(store.pool().clone()),
        store: Arc::new(store),
        _dir: Some(dir),
        _schema: None,
    }
}

async fn postgres_backend() -> Result<Backend, String> {
    let (guard, url) = pg_schema().await?;
    // Reachable but not openable is a broken store, not a missing server: fail.
    let store = PostgresStore::open(&url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is reachable but the store cannot be opened: {e}"));
    Ok(Backend {
        name: "postgres",
        url: url.clone(),
        raw: Raw::Postgres(store.pool().clone()),
        store: Arc::new(store),
        _dir: None,
        _schema: Some(guard),
    })
}

/// Every available backend, each fresh.
async fn backends() -> Vec<Backend> {
    init();
    let mut all = vec![sqlite_backend().await];
    match postgres_backend().await {
        Ok(b) => all.push(b),
        Err(reason) => common::pg::skip(&reason),
    }
    all
}

impl Backend {
    async fn count(&self, table_and_filter: &'static str) -> i64 {
        let sql = sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table_and_filter}"));
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Raw::Postgres(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }

    async fn exec(&self, sql: &'static str) -> Result<u64, String> {
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()),
            Raw::Postgres(p) => sqlx::query(sql).execute(p).await.map(|r| r.rows_affected()),
        }
        .map_err(|e| e.to_string())
    }

    async fn raw_loans(&self) -> Vec<String> {
        let sql = "SELECT loan FROM snapshot_loans ORDER BY nin, account_id";
        match &self.raw {
            Raw::Sqlite(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
            Raw::Postgres(p) => sqlx::query_scalar(sql).fetch_all(p).await.unwrap(),
        }
    }

    /// The disclosure log ordered by seq: (record, prev_hash, hash).
    async fn chain(&self) -> Vec<(DisclosureRecord, String, String)> {
        let sql = "SELECT query_id, at, recipient_org, on_behalf_of, purpose, reference_id, nin, \
                   disclosed, letter_owed_by, message, prev_hash, hash FROM disclosures ORDER BY seq";
        macro_rules! read {
            ($rows:expr) => {
                $rows
                    .iter()
                    .map(|r| {
                        (
                            DisclosureRecord {
                                query_id: r.get(0),
                                at: r.get(1),
                                recipient_org: r.get(2),
                                on_behalf_of: r.get(3),
                                purpose: r.get(4),
                                reference_id: r.get(5),
                                nin: r.get::<i64, _>(6) as u64,
                                disclosed: r.get(7),
                                letter_owed_by: r.get(8),
                                message: r.get(9),
                            },
                            r.get(10),
                            r.get(11),
                        )
                    })
                    .collect()
            };
        }
        match &self.raw {
            Raw::Sqlite(p) => read!(sqlx::query(sql).fetch_all(p).await.unwrap()),
            Raw::Postgres(p) => read!(sqlx::query(sql).fetch_all(p).await.unwrap()),
        }
    }

    async fn deliveries(&self) -> Vec<(String, String, String, bool, Option<String>, i64, i64)> {
        let sql = "SELECT lender_id, at, kind, accepted, rule, customers, loans FROM deliveries ORDER BY id";
        macro_rules! read {
            ($rows:expr) => {
                $rows
                    .iter()
                    .map(|r| {
                        (
                            r.get(0),
                            r.get(1),
                            r.get(2),
                            r.get(3),
                            r.get(4),
                            r.get(5),
                            r.get(6),
                        )
                    })
                    .collect()
            };
        }
        match &self.raw {
            Raw::Sqlite(p) => read!(sqlx::query(sql).fetch_all(p).await.unwrap()),
            Raw::Postgres(p) => read!(sqlx::query(sql).fetch_all(p).await.unwrap()),
        }
    }
}

/// `n` distinct synthetic ids, ascending.
fn ids(n: usize) -> Vec<NationalId> {
    let mut out: Vec<NationalId> = (1..=28)
        .flat_map(|day| (0..1000).map(move |i| (day, i)))
        .filter_map(|(day, i)| make_id(day, 5, 91, i, false, true))
        .map(|s| NationalId::parse(&s, IdPolicy::SYNTHETIC_OK).expect("valid id"))
        .take(n)
        .collect();
    out.sort_by_key(|id| id.as_u64());
    out
}

fn loan(account: &str, balance: i64) -> Loan {
    serde_json::from_value(serde_json::json!({
        "type": "repaymentLoan",
        "accountID": account,
        "timestamp": "2026-03-01T06:00:00Z",
        "coBorrower": 0,
        "originalBalance": 10_000_000,
        "balance": balance,
        "terms": 48,
        "nominalInterestRate": 1020,
        "installmentCharges": 5000,
        "installmentChargePeriod": "MONTHLY"
    }))
    .expect("loan")
}

fn row(nin: NationalId, account: &str, balance: i64) -> SnapshotRow {
    SnapshotRow {
        nin,
        loan: loan(account, balance),
    }
}

async fn load(store: &dyn Store, lender: &str, rows: &[SnapshotRow]) {
    let mut w = store.begin_dataset(lender).await.expect("begin");
    for chunk in rows.chunks(2) {
        w.write(chunk).await.expect("write");
    }
    w.commit(DatasetSummary {
        source: "test.json".into(),
        customers: rows.len() as u64,
        loans: rows.len() as u64,
    })
    .await
    .expect("commit");
}

async fn pairs(store: &dyn Store) -> Vec<(u64, String)> {
    store.index_pairs().try_collect().await.expect("pairs")
}

fn record(reference: String, nin: u64) -> DisclosureRecord {
    DisclosureRecord {
        query_id: format!("q-{reference}"),
        at: "2026-03-01T10:00:00Z".into(),
        recipient_org: "910000001".into(),
        on_behalf_of: None,
        purpose: "search".into(),
        reference_id: reference,
        nin,
        disclosed: r#"{"loans":[],"missing":0}"#.into(),
        letter_owed_by: "broker".into(),
        message: Some("hei \\ \"x\"\nlinje 2".into()),
    }
}

#[tokio::test]
async fn load_then_read_snapshot_pairs_and_persons() {
    for b in backends().await {
        let s = &*b.store;
        let p = ids(4);
        // An account id with every character COPY text format must escape.
        let odd = "K\\1\t\"q\"\nr\r";
        load(s, "lender-b", &[row(p[3], "B1", 100), row(p[0], "B2", 200)]).await;
        load(
            s,
            "lender-a",
            &[row(p[2], "A1", 1), row(p[0], odd, 2), row(p[0], "A3", 3)],
        )
        .await;

        let mut got = s.snapshot_for("lender-a", p[0]).await.unwrap();
        got.sort_by(|x, y| x.account_id.cmp(&y.account_id));
        let mut want = vec![loan(odd, 2), loan("A3", 3)];
        want.sort_by(|x, y| x.account_id.cmp(&y.account_id));
        assert_eq!(got, want, "{}", b.name);
        assert!(
            s.snapshot_for("lender-a", p[1]).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        assert!(
            s.snapshot_for("nobody", p[0]).await.unwrap().is_empty(),
            "{}",
            b.name
        );
        // The stored JSON is exactly serde_json's text of the loan, on every backend.
        let raw = b.raw_loans().await;
        assert!(
            raw.contains(&serde_json::to_string(&loan(odd, 2)).unwrap()),
            "{}",
            b.name
        );

        let want_pairs = vec![
            (p[0].as_u64(), "lender-a".to_owned()),
            (p[0].as_u64(), "lender-b".to_owned()),
            (p[2].as_u64(), "lender-a".to_owned()),
            (p[3].as_u64(), "lender-b".to_owned()),
        ];
        // Any order, repeats allowed (one per loan): the index builder merges.
        let mut got_pairs = pairs(s).await;
        got_pairs.sort();
        got_pairs.dedup();
        assert_eq!(got_pairs, want_pairs, "{}", b.name);
        assert_eq!(
            s.persons_of("lender-a").await.unwrap(),
            vec![p[0].as_u64(), p[2].as_u64()],
            "{}",
            b.name
        );
        assert!(s.persons_of("nobody").await.unwrap().is_empty());
        s.ping().await.unwrap();
    }
}

#[tokio::test]
async fn second_load_replaces_the_first_entirely() {
    for b in backends().await {
        let s = &*b.store;
        let p = ids(3);
        load(s, "lender-a", &[row(p[0], "OLD", 1), row(p[1], "KEEP", 2)]).await;
        let first = s.datasets().await.unwrap()[0].generation;
        load(s, "lender-a", &[row(p[1], "KEEP", 5), row(p[2], "NEW", 3)]).await;
        let second = s.datasets().await.unwrap()[0].generation;
        assert!(second > first, "{}", b.name);

        assert!(
            s.snapshot_for("lender-a", p[0]).await.unwrap().is_empty(),
            "{}: a loan only in the first load is gone",
            b.name
        );
        assert_eq!(
            s.snapshot_for("lender-a", p[1]).await.unwrap(),
            vec![loan("KEEP", 5)]
        );
        assert_eq!(
            s.persons_of("lender-a").await.unwrap(),
            vec![p[1].as_u64(), p[2].as_u64()],
            "{}",
            b.name
        );
        assert_eq!(pairs(s).await.len(), 2, "{}", b.name);
        // The superseded rows were removed, not just hidden.
        assert_eq!(b.count("snapshot_loans").await, 2, "{}", b.name);
    }
}

#[tokio::test]
async fn aborted_and_dropped_loads_leave_the_old_data_and_clean_up_removes_leftovers() {
    for b in backends().await {
        let s = &*b.store;
        let p = ids(3);
        load(s, "lender-a", &[row(p[0], "A", 1)]).await;
        let before = s.datasets().await.unwrap();

        // Aborted: rows written, then abort.
        let mut w = s.begin_dataset("lender-a").await.unwrap();
        w.write(&[row(p[1], "X", 1), row(p[2], "Y", 1)])
            .await
            .unwrap();
        w.abort().await.unwrap();
        // Dropped without commit (an interrupted load).
        let mut w = s.begin_dataset("lender-a").await.unwrap();
        w.write(&[row(p[1], "Z", 1)]).await.unwrap();
        drop(w);
        // A load of a lender that has no dataset yet, dropped as well.
        let mut w = s.begin_dataset("lender-new").await.unwrap();
        w.write(&[row(p[2], "N", 1)]).await.unwrap();
        drop(w);

        for (who, nin) in [("lender-a", p[1]), ("lender-a", p[2]), ("lender-new", p[2])] {
            assert!(
                s.snapshot_for(who, nin).await.unwrap().is_empty(),
                "{}",
                b.name
            );
        }
        assert_eq!(
            s.snapshot_for("lender-a", p[0]).await.unwrap(),
            vec![loan("A", 1)]
        );
        assert_eq!(pairs(s).await, vec![(p[0].as_u64(), "lender-a".into())]);
        assert_eq!(s.persons_of("lender-new").await.unwrap(), Vec::<u64>::new());
        let after = s.datasets().await.unwrap();
        assert_eq!(after.len(), 1, "{}", b.name);
        assert_eq!(after[0].generation, before[0].generation, "{}", b.name);

        // The aborted rows are gone already; what the dropped loads wrote stays
        // (invisible) until clean_up. (On PostgreSQL a dropped load's unfinished
        // COPY never commits, and its session ends asynchronously: allow the
        // server a moment to release its lock.)
        let leftovers = b.count("snapshot_loans").await - 1;
        assert!(leftovers <= 2, "{}", b.name);
        if b.name == "sqlite" {
            assert_eq!(leftovers, 2);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut removed = 0;
        loop {
            removed += s.clean_up().await.unwrap();
            if b.count("snapshot_loans").await == 1 || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(removed as i64, leftovers, "{}", b.name);
        // The store still works after loads were dropped mid-COPY.
        for _ in 0..40 {
            s.ping().await.unwrap();
            assert_eq!(s.persons_of("lender-a").await.unwrap(), vec![p[0].as_u64()]);
        }
        assert_eq!(b.count("snapshot_loans").await, 1, "{}", b.name);
        assert_eq!(s.clean_up().await.unwrap(), 0, "{}", b.name);
        assert_eq!(
            s.snapshot_for("lender-a", p[0]).await.unwrap(),
            vec![loan("A", 1)]
        );
    }
}

/// PostgreSQL is shared by several processes: one broker's clean-up at start must
/// not remove the rows of a load another process is still writing. (SQLite's
/// clean-up runs with one writer process and removes every non-current row.)
#[tokio::test]
async fn postgres_clean_up_spares_a_load_in_progress() {
    for b in backends().await {
        if b.name != "postgres" {
            continue;
        }
        let s = &*b.store;
        let p = ids(2);
        load(s, "lender-a", &[row(p[0], "A", 1)]).await;
        let mut w = s.begin_dataset("lender-a").await.unwrap();
        // Enough rows that at least one COPY transaction has committed.
        let many: Vec<SnapshotRow> = (0..50_000)
            .map(|i| row(p[1], &format!("B{i}"), 1))
            .collect();
        for chunk in many.chunks(5_000) {
            w.write(chunk).await.unwrap();
        }
        assert_eq!(b.count("snapshot_loans").await, 50_001);
        assert_eq!(s.clean_up().await.unwrap(), 0);
        w.write(&[row(p[0], "C", 1)]).await.unwrap();
        w.commit(DatasetSummary::default()).await.unwrap();
        assert_eq!(
            s.persons_of("lender-a").await.unwrap(),
            vec![p[0].as_u64(), p[1].as_u64()]
        );
        assert_eq!(b.count("snapshot_loans").await, 50_001);
    }
}

/// Two loads of one lender overlapping: the newer generation wins even when the
/// older one commits last, and the older one's rows are removed.
#[tokio::test]
async fn an_older_load_committing_last_does_not_win() {
    for b in backends().await {
        let s = &*b.store;
        let p = ids(2);
        let mut older = s.begin_dataset("lender-a").await.unwrap();
        let mut newer = s.begin_dataset("lender-a").await.unwrap();
        older.write(&[row(p[0], "OLD", 1)]).await.unwrap();
        newer.write(&[row(p[1], "NEW", 1)]).await.unwrap();
        newer.commit(DatasetSummary::default()).await.unwrap();
        older.commit(DatasetSummary::default()).await.unwrap();
        assert_eq!(
            s.persons_of("lender-a").await.unwrap(),
            vec![p[1].as_u64()],
            "{}",
            b.name
        );
        s.clean_up().await.unwrap();
        assert_eq!(b.count("snapshot_loans").await, 1, "{}", b.name);
    }
}

#[tokio::test]
async fn concurrent_appends_make_one_valid_chain() {
    const TASKS: usize = 16;
    const APPENDS: usize = 10;
    for b in backends().await {
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let store = b.store.clone();
            tasks.push(tokio::spawn(async move {
                for a in 0..APPENDS {
                    // 1 to 3 records per append, like an answer with co-borrowers.
                    let batch: Vec<DisclosureRecord> = (0..1 + (t + a) % 3)
                        .map(|k| record(format!("{t}-{a}-{k}"), (t * 1000 + a) as u64))
                        .collect();
                    store.append_disclosures(&batch).await.expect("append");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let expected: usize = (0..TASKS)
            .flat_map(|t| (0..APPENDS).map(move |a| 1 + (t + a) % 3))
            .sum();
        let chain = b.chain().await;
        assert_eq!(chain.len(), expected, "{}", b.name);
        let mut prev = GENESIS.to_owned();
        for (i, (rec, stored_prev, stored_hash)) in chain.iter().enumerate() {
            assert_eq!(stored_prev, &prev, "{}: prev_hash of row {i}", b.name);
            let h = chain_hash(&prev, rec);
            assert_eq!(stored_hash, &h, "{}: hash of row {i}", b.name);
            prev = h;
        }
        // The records of one append are contiguous and in order.
        for w in chain.windows(2) {
            let (a, b2) = (&w[0].0.reference_id, &w[1].0.reference_id);
            let (pa, pb) = (a.rsplit_once('-').unwrap(), b2.rsplit_once('-').unwrap());
            if pa.0 == pb.0 {
                assert!(pa.1 < pb.1, "{}", b.name);
            }
        }
        assert!(b.store.append_disclosures(&[]).await.is_ok());
    }
}

#[tokio::test]
async fn the_disclosure_log_refuses_update_and_delete() {
    for b in backends().await {
        b.store
            .append_disclosures(&[record("r1".into(), 1), record("r2".into(), 2)])
            .await
            .unwrap();
        let update = b.exec("UPDATE disclosures SET purpose = 'changed'").await;
        assert!(
            update.as_ref().is_err_and(|e| e.contains("append-only")),
            "{}: {update:?}",
            b.name
        );
        let delete = b.exec("DELETE FROM disclosures").await;
        assert!(
            delete.as_ref().is_err_and(|e| e.contains("append-only")),
            "{}: {delete:?}",
            b.name
        );
        if b.name == "postgres" {
            let truncate = b.exec("TRUNCATE disclosures").await;
            assert!(truncate.is_err(), "{truncate:?}");
        }
        assert_eq!(b.count("disclosures").await, 2, "{}", b.name);
        assert_eq!(
            b.count("disclosures WHERE purpose = 'search'").await,
            2,
            "{}",
            b.name
        );
    }
}

/// An append that fails part-way writes nothing (PostgreSQL refuses a NUL in
/// text; SQLite would store it, so the failing record is PostgreSQL-only).
#[tokio::test]
async fn postgres_a_failed_append_writes_nothing() {
    for b in backends().await {
        if b.name != "postgres" {
            continue;
        }
        b.store
            .append_disclosures(&[record("ok".into(), 1)])
            .await
            .unwrap();
        let bad = [
            record("a".into(), 2),
            record("nul\0".into(), 3),
            record("c".into(), 4),
        ];
        assert!(b.store.append_disclosures(&bad).await.is_err());
        assert_eq!(b.count("disclosures").await, 1);
        b.store
            .append_disclosures(&[record("after".into(), 5)])
            .await
            .unwrap();
        let chain = b.chain().await;
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1].1, chain[0].2);
    }
}

#[tokio::test]
async fn deliveries_and_datasets_round_trip() {
    for b in backends().await {
        let s = &*b.store;
        let accepted = DeliveryRecord {
            lender_id: "lender-a".into(),
            at: "2026-03-01T05:10:00Z".into(),
            kind: "pull".into(),
            accepted: true,
            rule: None,
            position: None,
            detail: Some("pull".into()),
            customers: 7,
            loans: 9,
        };
        let rejected = DeliveryRecord {
            lender_id: "lender-b".into(),
            at: "2026-03-01T05:11:00.123Z".into(),
            kind: "file".into(),
            accepted: false,
            rule: Some("duplicate_customer".into()),
            position: Some(3),
            detail: Some("b.json: customer #3".into()),
            customers: 0,
            loans: 0,
        };
        s.record_delivery(&accepted).await.unwrap();
        s.record_delivery(&rejected).await.unwrap();
        assert_eq!(
            b.deliveries().await,
            vec![
                (
                    "lender-a".into(),
                    "2026-03-01T05:10:00Z".into(),
                    "pull".into(),
                    true,
                    None,
                    7,
                    9
                ),
                (
                    "lender-b".into(),
                    "2026-03-01T05:11:00.123Z".into(),
                    "file".into(),
                    false,
                    Some("duplicate_customer".into()),
                    0,
                    0
                ),
            ],
            "{}",
            b.name
        );

        assert!(s.datasets().await.unwrap().is_empty());
        let p = ids(2);
        let mut w = s.begin_dataset("lender-a").await.unwrap();
        w.write(&[row(p[0], "A", 1), row(p[1], "B", 1)])
            .await
            .unwrap();
        w.commit(DatasetSummary {
            source: "a.json".into(),
            customers: 2,
            loans: 2,
        })
        .await
        .unwrap();
        let d = s.datasets().await.unwrap();
        assert_eq!(d.len(), 1, "{}", b.name);
        assert_eq!(
            (
                d[0].lender_id.as_str(),
                d[0].source.as_str(),
                d[0].customers,
                d[0].loans
            ),
            ("lender-a", "a.json", 2, 2),
            "{}",
            b.name
        );
        assert!(d[0].generation > 0);
        assert!(
            time::OffsetDateTime::parse(
                &d[0].loaded_at,
                &time::format_description::well_known::Rfc3339
            )
            .is_ok(),
            "{}: {}",
            b.name,
            d[0].loaded_at
        );
    }
}

/// The whole broker on PostgreSQL: `store::open` picks the backend by URL, the
/// index is built from it, and an ingest updates the live index.
#[tokio::test]
async fn app_state_builds_on_postgres_and_ingest_updates_the_index() {
    init();
    let (_guard, url) = match pg_schema().await {
        Ok(x) => x,
        Err(reason) => {
            common::pg::skip(&reason);
            return;
        }
    };
    let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/config/dev-jwks.json");
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
accept_synthetic_ids = true
dev_mode = true
[store]
url = "{url}"
[auth]
issuer = "https://maskinporten.example"
audience = "gjeldsbro"
jwks_file = "{jwks}"
[[lenders]]
id = "lender-a"
org_no = "920000001"
name = "Eksempel Finans AS"
adapter = "api-debt-fi"
base_url = "http://127.0.0.1:9"
"#
    );
    let config = gjeldsbro::config::Config::parse(&toml).expect("config");
    let state = gjeldsbro::app::AppState::build(config)
        .await
        .expect("build on postgres");
    let p = ids(3);
    let dataset = serde_json::json!({
        "providerID": "9908:920000001",
        "customers": [
            {"customerID": p[0].expose(), "financialInstitutionID": "920000001",
             "loans": [serde_json::to_value(loan("A1", 100)).unwrap()]},
            {"customerID": p[1].expose(), "financialInstitutionID": "920000001",
             "loans": [serde_json::to_value(loan("A2", 0)).unwrap()]},
        ]
    });
    let body = serde_json::to_vec(&dataset).unwrap();
    let report = state
        .ingestor
        .load_dataset(
            "lender-a",
            std::io::Cursor::new(body),
            "file",
            "a.json",
            true,
        )
        .await
        .expect("ingest");
    assert_eq!(
        (report.customers, report.loans, report.open_loans),
        (2, 2, 1)
    );
    let idx = state.lookup.lenders.idx_of("lender-a").unwrap();
    assert_eq!(state.lookup.index.lenders_of(p[0]), vec![idx]);
    // The repaid loan is not an open loan: no index entry.
    assert!(state.lookup.index.lenders_of(p[1]).is_empty());
    assert!(state.lookup.index.lenders_of(p[2]).is_empty());
    assert_eq!(
        state
            .lookup
            .store
            .snapshot_for("lender-a", p[0])
            .await
            .unwrap(),
        vec![loan("A1", 100)]
    );
    let d = state.lookup.store.datasets().await.unwrap();
    assert_eq!((d[0].customers, d[0].loans), (2, 1));
}

#[tokio::test]
async fn pushes_upsert_by_account_close_loans_and_reach_other_instances() {
    for b in backends().await {
        let other = gjeldsbro::store::open(&b.url)
            .await
            .expect("second instance");
        let start = other.latest_change().await.expect("latest");
        let p = ids(2);
        load(&*b.store, "lender-a", &[row(p[0], "A1", 100)]).await;

        // Upsert by accountID, a second account added, another person touched.
        let holds = b
            .store
            .apply_push(
                "lender-a",
                &[row(p[0], "A1", 250), row(p[0], "A2", 5), row(p[1], "B1", 9)],
            )
            .await
            .expect("push");
        assert_eq!(holds, vec![(p[0], true), (p[1], true)], "{}", b.name);
        let mut balances: Vec<_> = b
            .store
            .snapshot_for("lender-a", p[0])
            .await
            .unwrap()
            .iter()
            .map(|l| l.balance.unwrap())
            .collect();
        balances.sort_unstable();
        assert_eq!(balances, vec![5, 250], "{}", b.name);

        // Closing both loans: the person no longer holds debt at the lender.
        let holds = b
            .store
            .apply_push("lender-a", &[row(p[0], "A1", 0), row(p[0], "A2", 0)])
            .await
            .unwrap();
        assert_eq!(holds, vec![(p[0], false)], "{}", b.name);
        assert!(
            b.store
                .snapshot_for("lender-a", p[0])
                .await
                .unwrap()
                .is_empty(),
            "{}",
            b.name
        );
        // A lender with no dataset yet gets one to hold its pushes.
        let holds = b
            .store
            .apply_push("lender-new", &[row(p[1], "N1", 1)])
            .await
            .unwrap();
        assert_eq!(holds, vec![(p[1], true)]);
        assert_eq!(
            b.store.persons_of("lender-new").await.unwrap(),
            vec![p[1].as_u64()]
        );

        // The other instance sees every change, in order; the writer sees none of
        // its own.
        let seen = other.changes_since(start, 100).await.unwrap();
        let expected = vec![
            IndexChange::LenderReplaced {
                lender_id: "lender-a".into(),
            },
            IndexChange::Person {
                lender_id: "lender-a".into(),
                nin: p[0],
                holds: true,
            },
            IndexChange::Person {
                lender_id: "lender-a".into(),
                nin: p[1],
                holds: true,
            },
            IndexChange::Person {
                lender_id: "lender-a".into(),
                nin: p[0],
                holds: false,
            },
            IndexChange::Person {
                lender_id: "lender-new".into(),
                nin: p[1],
                holds: true,
            },
        ];
        assert_eq!(seen.changes, expected, "{}", b.name);
        let own = b.store.changes_since(start, 100).await.unwrap();
        assert!(own.changes.is_empty(), "{}", b.name);
        assert_eq!(own.last, seen.last, "{}", b.name);
        // Paging: asking from the last one gives nothing new.
        assert!(
            other
                .changes_since(seen.last, 100)
                .await
                .unwrap()
                .changes
                .is_empty()
        );
        let deliveries = b.store.deliveries(10).await.unwrap();
        assert!(
            deliveries.is_empty(),
            "{}: store-level pushes record no delivery",
            b.name
        );
    }
}

#[tokio::test]
async fn pushes_during_a_load_survive_its_flip() {
    for b in backends().await {
        let p = ids(4);
        // In force: p0 with A1.
        load(&*b.store, "lender-a", &[row(p[0], "A1", 100)]).await;
        // A load extracted earlier starts: it still has A1 open and knows nothing of p3.
        let mut w = b.store.begin_dataset("lender-a").await.expect("begin");
        w.write(&[row(p[0], "A1", 100), row(p[1], "B1", 7)])
            .await
            .expect("write");
        // Meanwhile the lender pushes: A1 repaid, a new loan for p3, B1 changed.
        b.store
            .apply_push(
                "lender-a",
                &[row(p[0], "A1", 0), row(p[3], "D1", 42), row(p[1], "B1", 8)],
            )
            .await
            .expect("push");
        w.commit(DatasetSummary::default()).await.expect("commit");
        // The flip replayed the pushes: nothing pushed is lost or undone.
        assert!(
            b.store
                .snapshot_for("lender-a", p[0])
                .await
                .unwrap()
                .is_empty(),
            "{}: A1 stays repaid",
            b.name
        );
        let d = b.store.snapshot_for("lender-a", p[3]).await.unwrap();
        assert_eq!(d.len(), 1, "{}: the pushed loan survives", b.name);
        assert_eq!(d[0].balance, Some(42));
        let bl = b.store.snapshot_for("lender-a", p[1]).await.unwrap();
        assert_eq!(
            bl.iter().map(|l| l.balance).collect::<Vec<_>>(),
            vec![Some(8)],
            "{}",
            b.name
        );
        let mut want = vec![p[1].as_u64(), p[3].as_u64()];
        want.sort_unstable();
        assert_eq!(
            b.store.persons_of("lender-a").await.unwrap(),
            want,
            "{}",
            b.name
        );

        // A push that creates a lender's first dataset does not block a load that
        // began before it.
        let mut w = b.store.begin_dataset("lender-z").await.expect("begin");
        w.write(&[row(p[2], "Z1", 1)]).await.unwrap();
        b.store
            .apply_push("lender-z", &[row(p[3], "Z2", 2)])
            .await
            .unwrap();
        w.commit(DatasetSummary::default()).await.unwrap();
        let mut want = vec![p[2].as_u64(), p[3].as_u64()];
        want.sort_unstable();
        assert_eq!(
            b.store.persons_of("lender-z").await.unwrap(),
            want,
            "{}",
            b.name
        );
    }
}

// ---- Consents (issue 5) ----

fn new_consent(
    id: &str,
    client: &str,
    cid: &str,
    nin: NationalId,
    one_time: bool,
    ends_at: &str,
) -> gjeldsbro::store::NewConsent {
    gjeldsbro::store::NewConsent {
        id: id.into(),
        client_org: client.into(),
        client_consent_id: cid.into(),
        nin,
        scope: "debt.unsecured.presentation".into(),
        requested_days: if one_time { 0 } else { 30 },
        one_time,
        given_via: "partner".into(),
        created_at: "2026-03-01T10:00:00.000000Z".into(),
        ends_at: ends_at.into(),
    }
}

fn use_at(id: &str, client: &str, at: &str, q: &str) -> gjeldsbro::store::UseRequest {
    gjeldsbro::store::UseRequest {
        consent_id: id.into(),
        client_org: client.into(),
        at: at.into(),
        query_id: q.into(),
    }
}

#[tokio::test]
async fn consents_are_idempotent_per_client_and_feeds_number_per_client() {
    let people = ids(3);
    for b in backends().await {
        let s = &b.store;
        let a = new_consent(
            "00000000-0000-4000-8000-000000000001",
            "910000003",
            "ref-1",
            people[0],
            false,
            "2026-04-01T10:00:00.000000Z",
        );
        let first = s.create_consent(&a).await.expect("create");
        assert!(first.fresh, "{}", b.name);
        assert_eq!(
            first.consent.ends_at, "2026-04-01T10:00:00.000000Z",
            "{}",
            b.name
        );
        assert_eq!(first.consent.created_at, a.created_at, "{}", b.name);
        assert_eq!(first.consent.nin, people[0]);
        // The same client id again: the earlier consent, nothing written.
        let mut again = a.clone();
        again.id = "00000000-0000-4000-8000-000000000002".into();
        again.nin = people[1];
        let second = s.create_consent(&again).await.expect("repeat");
        assert!(!second.fresh, "{}", b.name);
        assert_eq!(second.consent.id, a.id, "{}", b.name);
        // Another client may use the same client id.
        let mut other = again.clone();
        other.client_org = "910000001".into();
        assert!(s.create_consent(&other).await.unwrap().fresh, "{}", b.name);
        assert_eq!(b.count("consents").await, 2, "{}", b.name);

        // Archive: once (the second is a no-op), with an event for the owner.
        assert!(
            s.archive_consent(&a.id, "2026-03-02T10:00:00.000000Z", "person")
                .await
                .unwrap()
        );
        assert!(
            !s.archive_consent(&a.id, "2026-03-03T10:00:00.000000Z", "client")
                .await
                .unwrap()
        );
        let got = s.consent(&a.id).await.unwrap().expect("stored");
        assert_eq!(
            got.archived_at.as_deref(),
            Some("2026-03-02T10:00:00.000000Z"),
            "{}",
            b.name
        );
        assert_eq!(got.archived_by.as_deref(), Some("person"));

        let feed = s.consent_events("910000003", 0, 100).await.unwrap();
        let kinds: Vec<(i64, &str, &str)> = feed
            .iter()
            .map(|e| (e.seq, e.kind.as_str(), e.consent_id.as_str()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (1, "created", a.id.as_str()),
                (2, "archived", a.id.as_str())
            ],
            "{}",
            b.name
        );
        assert_eq!(feed[0].client_consent_id.as_deref(), Some("ref-1"));
        assert_eq!(
            feed[0].ends_at.as_deref(),
            Some("2026-04-01T10:00:00.000000Z"),
            "{}",
            b.name
        );
        // Each client counts from 1 and sees only its own.
        let theirs = s.consent_events("910000001", 0, 100).await.unwrap();
        assert_eq!(theirs.len(), 1);
        assert_eq!(
            (theirs[0].seq, theirs[0].consent_id.as_str()),
            (1, other.id.as_str()),
            "{}",
            b.name
        );
        assert_eq!(
            s.consent_events("910000003", 2, 100).await.unwrap().len(),
            1
        );
        assert_eq!(s.consent_events("910000003", 1, 1).await.unwrap().len(), 1);

        assert_eq!(s.consents_of_person(people[0]).await.unwrap().len(), 1);
        assert_eq!(s.consents_of_person(people[1]).await.unwrap().len(), 1);
        assert!(s.consents_of_person(people[2]).await.unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_time_consent_is_spent_by_exactly_one_of_concurrent_uses() {
    const USES: usize = 20;
    let people = ids(1);
    for b in backends().await {
        let c = new_consent(
            "00000000-0000-4000-8000-0000000000a1",
            "910000003",
            "once",
            people[0],
            true,
            "2026-03-01T10:10:00.000000Z",
        );
        b.store.create_consent(&c).await.unwrap();
        b.store
            .append_disclosures(&[record("before".into(), 1)])
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..USES {
            let store = b.store.clone();
            tasks.push(tokio::spawn(async move {
                let mut r = record(format!("use-{i}"), 7);
                r.purpose = "debt.unsecured.presentation".into();
                store
                    .use_consent_and_record(
                        &use_at(
                            "00000000-0000-4000-8000-0000000000a1",
                            "910000003",
                            "2026-03-01T10:05:00.000000Z",
                            &format!("q{i}"),
                        ),
                        &[r],
                    )
                    .await
                    .expect("use")
            }));
        }
        let mut won = 0;
        for t in tasks {
            if t.await.unwrap() {
                won += 1;
            }
        }
        assert_eq!(won, 1, "{}: exactly one use wins", b.name);
        assert_eq!(b.count("consent_uses").await, 1, "{}", b.name);
        let chain = b.chain().await;
        assert_eq!(
            chain.len(),
            2,
            "{}: one disclosure besides the earlier one",
            b.name
        );
        assert_eq!(
            chain[1].1, chain[0].2,
            "{}: the use's record is chained",
            b.name
        );
        assert_eq!(chain[1].2, chain_hash(&chain[0].2, &chain[1].0));
        let stored = b.store.consent(&c.id).await.unwrap().unwrap();
        assert_eq!(
            stored.spent_at.as_deref(),
            Some("2026-03-01T10:05:00.000000Z"),
            "{}",
            b.name
        );
        let uses = b.store.consent_uses_of_person(people[0]).await.unwrap();
        assert_eq!(uses.len(), 1);
        assert_eq!(uses[0].outcome, "disclosed");
        assert_eq!(uses[0].at, "2026-03-01T10:05:00.000000Z", "{}", b.name);
    }
}

#[tokio::test]
async fn consent_uses_are_refused_when_foreign_archived_or_ended() {
    let people = ids(1);
    for b in backends().await {
        let s = &b.store;
        let long = new_consent(
            "00000000-0000-4000-8000-0000000000b1",
            "910000003",
            "long",
            people[0],
            false,
            "2026-03-01T11:00:00.000000Z",
        );
        s.create_consent(&long).await.unwrap();
        let rec = || {
            let mut r = record("r".into(), people[0].as_u64());
            r.purpose = "debt.unsecured.presentation".into();
            vec![r]
        };
        // Another client, or after the end: refused, nothing written.
        assert!(
            !s.use_consent_and_record(
                &use_at(&long.id, "910000001", "2026-03-01T10:30:00.000000Z", "q1"),
                &rec()
            )
            .await
            .unwrap()
        );
        assert!(
            !s.use_consent_and_record(
                &use_at(&long.id, "910000003", "2026-03-01T11:00:00.000000Z", "q2"),
                &rec()
            )
            .await
            .unwrap()
        );
        assert_eq!(b.count("disclosures").await, 0, "{}", b.name);
        // A lasting consent may be used again and again.
        for q in ["q3", "q4"] {
            assert!(
                s.use_consent_and_record(
                    &use_at(&long.id, "910000003", "2026-03-01T10:30:00.000000Z", q),
                    &rec()
                )
                .await
                .unwrap(),
                "{}",
                b.name
            );
        }
        s.record_consent_refusal(&long.id, "910000003", "2026-03-01T10:31:00.000000Z")
            .await
            .unwrap();
        s.archive_consent(&long.id, "2026-03-01T10:40:00.000000Z", "client")
            .await
            .unwrap();
        assert!(
            !s.use_consent_and_record(
                &use_at(&long.id, "910000003", "2026-03-01T10:45:00.000000Z", "q5"),
                &rec()
            )
            .await
            .unwrap()
        );
        assert_eq!(b.count("disclosures").await, 2, "{}", b.name);
        let outcomes: Vec<String> = s
            .consent_uses_of_person(people[0])
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.outcome)
            .collect();
        assert_eq!(
            outcomes,
            vec!["disclosed", "disclosed", "refused"],
            "{}",
            b.name
        );
        let seen = s.disclosures_of_person(people[0], 10).await.unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].purpose, "debt.unsecured.presentation");
        // An unknown id is simply absent.
        assert!(
            s.consent("00000000-0000-4000-8000-0000000000ff")
                .await
                .unwrap()
                .is_none()
        );
    }
}
/// The embedded page's store (issue 12): each embed token's `jti` is claimed
/// once, also under concurrency; claims past their end are pruned; sessions
/// are found by their hash while in force, their idle end moving on but never
/// past their end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embed_tokens_are_claimed_once_and_sessions_end() {
    let people = ids(1);
    for b in backends().await {
        let s = &b.store;
        let now = "2026-03-01T10:00:00.000000Z";
        let claims = futures::future::join_all((0..20).map(|_| {
            let s = s.clone();
            async move {
                s.claim_embed_token("jti-1", "2026-03-01T10:05:00.000000Z", now)
                    .await
                    .unwrap()
            }
        }))
        .await;
        assert_eq!(
            claims.iter().filter(|won| **won).count(),
            1,
            "{}: exactly one claim wins",
            b.name
        );
        // Still claimed before its end; pruned (and so claimable) after it,
        // when the token itself is no longer accepted anyway.
        assert!(
            !s.claim_embed_token(
                "jti-1",
                "2026-03-01T10:05:00.000000Z",
                "2026-03-01T10:04:00.000000Z"
            )
            .await
            .unwrap()
        );
        assert!(
            s.claim_embed_token(
                "jti-2",
                "2026-03-01T10:20:00.000000Z",
                "2026-03-01T10:06:00.000000Z"
            )
            .await
            .unwrap()
        );
        assert_eq!(b.count("embed_token_claims").await, 1, "{}", b.name);

        let session = gjeldsbro::store::NewEmbedSession {
            id_hash: "ab".repeat(32),
            nin: people[0],
            partner_org: "910000003".into(),
            created_at: now.into(),
            idle_until: "2026-03-01T10:15:00.000000Z".into(),
            ends_at: "2026-03-01T11:00:00.000000Z".into(),
        };
        s.create_embed_session(&session).await.unwrap();
        let touch = |at: &'static str, idle: &'static str| {
            let s = s.clone();
            let id = session.id_hash.clone();
            async move { s.touch_embed_session(&id, at, idle).await.unwrap() }
        };
        let found = touch("2026-03-01T10:10:00.000000Z", "2026-03-01T10:25:00.000000Z")
            .await
            .expect("in force");
        assert_eq!(found.nin, people[0], "{}", b.name);
        assert_eq!(found.partner_org, "910000003");
        assert_eq!(found.ends_at, "2026-03-01T11:00:00.000000Z");
        // The idle end moved on to 10:25, so 10:20 is still in force.
        assert!(
            touch("2026-03-01T10:20:00.000000Z", "2026-03-01T11:30:00.000000Z")
                .await
                .is_some()
        );
        // Idle end capped at the end: at 11:00 it is over.
        assert!(
            touch("2026-03-01T11:00:00.000000Z", "2026-03-01T11:15:00.000000Z")
                .await
                .is_none(),
            "{}",
            b.name
        );
        assert!(
            s.touch_embed_session(&"cd".repeat(32), now, now)
                .await
                .unwrap()
                .is_none()
        );
        // A new session prunes ended ones.
        let later = gjeldsbro::store::NewEmbedSession {
            id_hash: "ef".repeat(32),
            created_at: "2026-03-01T12:00:00.000000Z".into(),
            idle_until: "2026-03-01T12:15:00.000000Z".into(),
            ends_at: "2026-03-01T13:00:00.000000Z".into(),
            ..session.clone()
        };
        s.create_embed_session(&later).await.unwrap();
        assert_eq!(b.count("embed_sessions").await, 1, "{}", b.name);
    }
}

fn record_at(reference: &str, at: &str) -> DisclosureRecord {
    DisclosureRecord {
        at: at.to_owned(),
        ..record(reference.to_owned(), 1)
    }
}

async fn verdict(store: &dyn Store) -> Verdict {
    verify::verify(store, &VerifyOptions::default())
        .await
        .expect("verify")
}

fn intact(v: Verdict) -> verify::Summary {
    match v {
        Verdict::Intact(s) => s,
        Verdict::Broken(b) => panic!("broken: {b}"),
    }
}

/// Seq numbers stay contiguous on PostgreSQL after a failed append (they are
/// not drawn from the identity sequence), so the verifier sees no gap.
#[tokio::test]
async fn a_failed_append_leaves_no_gap_in_seq() {
    for b in backends().await {
        b.store
            .append_disclosures(&[record("ok".into(), 1)])
            .await
            .unwrap();
        // A NUL fails on PostgreSQL; on SQLite an append to a missing table does.
        let failed = if b.name == "postgres" {
            b.store
                .append_disclosures(&[record("nul\0".into(), 3)])
                .await
        } else {
            b.exec("ALTER TABLE disclosures RENAME TO away")
                .await
                .unwrap();
            let r = b.store.append_disclosures(&[record("x".into(), 3)]).await;
            b.exec("ALTER TABLE away RENAME TO disclosures")
                .await
                .unwrap();
            r
        };
        assert!(failed.is_err(), "{}", b.name);
        b.store
            .append_disclosures(&[record("after".into(), 5)])
            .await
            .unwrap();
        let s = intact(verdict(&*b.store).await);
        assert_eq!((s.first_seq, s.last_seq), (Some(1), Some(2)), "{}", b.name);
    }
}

/// Records past the period are verified, checkpointed and deleted with the
/// letters that covered only them; records inside it are untouched; the chain
/// verifies from the checkpoint, appends go on from it, and ordinary deletes are
/// still refused.
#[tokio::test]
async fn retention_purges_past_the_period_and_keeps_the_chain_verifiable() {
    let now = time::OffsetDateTime::now_utc();
    let recent = gjeldsbro::time::format_rfc3339(now - time::Duration::days(3));
    for b in backends().await {
        let s = &*b.store;
        let old: Vec<DisclosureRecord> = (1..=5)
            .map(|i| record_at(&format!("old-{i}"), &format!("2010-01-0{i}T12:00:00.5Z")))
            .collect();
        s.append_disclosures(&old).await.unwrap();
        let new: Vec<DisclosureRecord> = (1..=3)
            .map(|i| record_at(&format!("new-{i}"), &recent))
            .collect();
        s.append_disclosures(&new).await.unwrap();
        let before = b.chain().await;
        // A letter covering only old records goes; one covering a new one stays.
        s.add_letter_batch(&batch("b1")).await.unwrap();
        s.add_letters("b1", &[letter("l-old", &[1, 2]), letter("l-new", &[5, 6])])
            .await
            .unwrap();

        // Consents: one ended long ago (purged with its uses), one in force.
        let person = ids(1)[0];
        let ended = new_consent(
            "00000000-0000-4000-8000-0000000000e1",
            "910000003",
            "ended",
            person,
            false,
            "2010-02-01T00:00:00.000000Z",
        );
        let current_end = gjeldsbro::time::format_fixed(now + time::Duration::days(30));
        let current = new_consent(
            "00000000-0000-4000-8000-0000000000e2",
            "910000003",
            "current",
            person,
            false,
            &current_end,
        );
        s.create_consent(&ended).await.unwrap();
        s.create_consent(&current).await.unwrap();
        s.record_consent_refusal(&ended.id, "910000003", "2010-01-15T00:00:00.000000Z")
            .await
            .unwrap();

        let dry = retention::purge(s, now, 3650, true).await.unwrap();
        assert_eq!(dry.records_checkpointed, 5, "{}", b.name);
        assert_eq!(b.count("disclosures").await, 8, "{}: dry run", b.name);

        let report = retention::purge(s, now, 3650, false).await.unwrap();
        let cp = report.new_checkpoint.clone().expect("a checkpoint");
        assert_eq!((cp.seq, &cp.hash), (5, &before[4].2), "{}", b.name);
        assert_eq!(report.purged.disclosures, 5, "{}", b.name);
        assert_eq!(report.purged.letters, 1, "{}", b.name);
        assert_eq!(report.consents, Some(1), "{}: the ended consent", b.name);
        assert!(s.consent(&ended.id).await.unwrap().is_none(), "{}", b.name);
        assert!(
            s.consent(&current.id).await.unwrap().is_some(),
            "{}",
            b.name
        );
        assert_eq!(
            b.count("consent_uses").await,
            0,
            "{}: its uses go with it",
            b.name
        );
        assert_eq!(s.latest_checkpoint().await.unwrap(), Some(cp.clone()));
        let after = b.chain().await;
        assert_eq!(
            after,
            before[5..].to_vec(),
            "{}: the period untouched",
            b.name
        );
        assert_eq!(b.count("letter_disclosures").await, 1, "{}", b.name);
        assert_eq!(b.count("letters").await, 1, "{}", b.name);

        let sum = intact(verdict(s).await);
        assert_eq!(
            (sum.first_seq, sum.last_seq, sum.records),
            (Some(6), Some(8), 3)
        );
        assert_eq!(sum.checkpoint, Some(cp.clone()));

        // Still append-only above the checkpoint; checkpoints are append-only and
        // must name a stored record with its hash.
        let delete = b.exec("DELETE FROM disclosures").await;
        assert!(
            delete.is_err_and(|e| e.contains("append-only")),
            "{}",
            b.name
        );
        assert!(b.exec("DELETE FROM disclosure_checkpoints").await.is_err());
        let fake = Checkpoint {
            seq: 7,
            hash: "0".repeat(64),
            record_at: recent.clone(),
            created_at: recent.clone(),
        };
        assert!(s.add_checkpoint(&fake).await.is_err(), "{}", b.name);
        assert_eq!(b.count("disclosures").await, 3, "{}", b.name);

        // Appends go on; a second purge finds nothing more.
        s.append_disclosures(&[record_at("later", &recent)])
            .await
            .unwrap();
        assert_eq!(intact(verdict(s).await).last_seq, Some(9));
        let again = retention::purge(s, now, 3650, false).await.unwrap();
        assert!(again.new_checkpoint.is_none(), "{}", b.name);
        assert_eq!(again.purged.disclosures, 0);
        // The verifier refuses a checkpoint inside the period.
        let short = verify::verify(
            s,
            &VerifyOptions {
                anchor: None,
                retention_cutoff: Some("2009-01-01T00:00:00Z".into()),
            },
        )
        .await
        .unwrap();
        assert!(
            matches!(short, Verdict::Broken(ref x) if x.reason == BreakReason::CheckpointTooRecent),
            "{short:?}"
        );
    }
}

/// A log purged whole goes on from the checkpoint's hash and seq.
#[tokio::test]
async fn after_a_whole_purge_appends_chain_to_the_checkpoint() {
    let now = time::OffsetDateTime::now_utc();
    for b in backends().await {
        let s = &*b.store;
        let old: Vec<DisclosureRecord> = (1..=3)
            .map(|i| record_at(&format!("old-{i}"), "2011-06-01T00:00:00Z"))
            .collect();
        s.append_disclosures(&old).await.unwrap();
        let report = retention::purge(s, now, 3650, false).await.unwrap();
        assert_eq!(report.purged.disclosures, 3, "{}", b.name);
        assert_eq!(b.count("disclosures").await, 0);
        let cp = s.latest_checkpoint().await.unwrap().unwrap();
        s.append_disclosures(&[record("fresh".into(), 9)])
            .await
            .unwrap();
        let chain = b.chain().await;
        assert_eq!(chain[0].1, cp.hash, "{}: chained to the checkpoint", b.name);
        let sum = intact(verdict(s).await);
        assert_eq!((sum.first_seq, sum.records), (Some(4), 1), "{}", b.name);
    }
}

/// With the triggers out of the way, edits and deletions are caught by the
/// verifier at the first bad record, on both backends.
#[tokio::test]
async fn the_verifier_catches_tampering_behind_the_triggers() {
    for b in backends().await {
        let recs: Vec<DisclosureRecord> =
            (1..=6).map(|i| record(format!("r{i}"), i as u64)).collect();
        b.store.append_disclosures(&recs).await.unwrap();
        let head = intact(verdict(&*b.store).await);
        assert_eq!(head.last_seq, Some(6));
        match b.name {
            "postgres" => b.exec("ALTER TABLE disclosures DISABLE TRIGGER USER").await,
            _ => b
                .exec("DROP TRIGGER disclosures_no_update")
                .await
                .and(b.exec("DROP TRIGGER disclosures_no_delete").await),
        }
        .unwrap();
        b.exec("UPDATE disclosures SET nin = 77 WHERE seq = 4")
            .await
            .unwrap();
        let v = verdict(&*b.store).await;
        assert_eq!(
            v,
            Verdict::Broken(Break {
                seq: 4,
                reason: BreakReason::HashMismatch
            }),
            "{}",
            b.name
        );
        b.exec("DELETE FROM disclosures WHERE seq = 2")
            .await
            .unwrap();
        let v = verdict(&*b.store).await;
        assert_eq!(
            v,
            Verdict::Broken(Break {
                seq: 2,
                reason: BreakReason::Missing { next: Some(3) }
            }),
            "{}",
            b.name
        );
        // Cutting off the end shows only against an anchor.
        b.exec("DELETE FROM disclosures WHERE seq <> 1")
            .await
            .unwrap();
        assert!(matches!(verdict(&*b.store).await, Verdict::Intact(_)));
        let anchored = verify::verify(
            &*b.store,
            &VerifyOptions {
                anchor: Some(Anchor {
                    seq: 6,
                    hash: head.head_hash.clone(),
                }),
                retention_cutoff: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            anchored,
            Verdict::Broken(Break {
                seq: 2,
                reason: BreakReason::Missing { next: None }
            }),
            "{}",
            b.name
        );
    }
}

fn batch(id: &str) -> LetterBatch {
    LetterBatch {
        batch_id: id.to_owned(),
        day: "2026-03-01".into(),
        manifest: format!("manifest-{id}.ndjson"),
        created_at: "2026-03-02T06:00:00Z".into(),
    }
}

fn letter(id: &str, seqs: &[i64]) -> LetterRow {
    LetterRow {
        letter_id: id.to_owned(),
        nin: 1,
        day: "2026-03-01".into(),
        file: format!("{id}.pdf"),
        created_at: "2026-03-02T06:00:00Z".into(),
        seqs: seqs.to_vec(),
    }
}

/// The letters' bookkeeping: owed records only (search, broker), each in at
/// most one letter, incomplete batches found again.
#[tokio::test]
async fn letters_bookkeeping_round_trips() {
    for b in backends().await {
        let s = &*b.store;
        let mut recs = vec![
            record_at("a", "2026-03-01T10:00:00Z"),
            record_at("b", "2026-03-01T10:00:00.25Z"),
            record_at("c", "2026-03-01T23:00:00Z"),
            record_at("d", "2026-03-01T12:00:00Z"),
            record_at("e", "2026-03-01T12:00:00Z"),
        ];
        recs[1].nin = 2;
        recs[3].letter_owed_by = "credit_bureau".into();
        recs[4].purpose = "debt.unsecured.presentation".into();
        s.append_disclosures(&recs).await.unwrap();
        let (from, to) = ("2026-03-01T00:00:00", "2026-03-01T23:00:00");
        assert_eq!(
            s.owed_persons(from, to).await.unwrap(),
            vec![1, 2],
            "{}",
            b.name
        );
        let owed = s.owed_disclosures(&[1, 2], from, to).await.unwrap();
        let seqs: Vec<i64> = owed.iter().map(|d| d.seq).collect();
        assert_eq!(seqs, vec![1, 2], "{}: exact at the bounds", b.name);
        assert_eq!(owed[1].record, recs[1]);

        s.add_letter_batch(&batch("b1")).await.unwrap();
        s.add_letters("b1", &[letter("l1", &[1])]).await.unwrap();
        assert_eq!(s.owed_persons(from, to).await.unwrap(), vec![2]);
        // A disclosure already in a letter cannot go into another: all or nothing.
        let twice = s
            .add_letters("b1", &[letter("l2", &[2]), letter("l3", &[1])])
            .await;
        assert!(twice.is_err(), "{}", b.name);
        assert_eq!(s.owed_persons(from, to).await.unwrap(), vec![2]);

        assert_eq!(
            s.incomplete_letter_batches().await.unwrap(),
            vec![batch("b1")]
        );
        assert_eq!(
            s.letters_of_batch("b1").await.unwrap(),
            vec![letter("l1", &[1])]
        );
        s.complete_letter_batch("b1", "2026-03-02T06:01:00Z")
            .await
            .unwrap();
        assert!(s.incomplete_letter_batches().await.unwrap().is_empty());
        let by_seq = s.disclosures_by_seq(&[3, 1]).await.unwrap();
        assert_eq!(by_seq.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![1, 3]);
    }
}

/// Retention deletes only what it has verified: a record past its period that
/// was changed behind the triggers stops the purge before anything is
/// checkpointed or deleted, so the evidence stays for `audit verify`.
#[tokio::test]
async fn retention_refuses_to_purge_a_broken_chain() {
    let now = time::OffsetDateTime::now_utc();
    for b in backends().await {
        let s = &*b.store;
        let old: Vec<DisclosureRecord> = (1..=4)
            .map(|i| record_at(&format!("old-{i}"), "2011-06-01T00:00:00Z"))
            .collect();
        s.append_disclosures(&old).await.unwrap();
        match b.name {
            "postgres" => b.exec("ALTER TABLE disclosures DISABLE TRIGGER USER").await,
            _ => b.exec("DROP TRIGGER disclosures_no_update").await,
        }
        .unwrap();
        b.exec("UPDATE disclosures SET nin = 77 WHERE seq = 2")
            .await
            .unwrap();
        let refused = retention::purge(s, now, 3650, false).await;
        assert!(
            matches!(refused, Err(retention::RetentionError::Broken(ref x)) if x.seq == 2),
            "{}: {refused:?}",
            b.name
        );
        assert_eq!(
            b.count("disclosures").await,
            4,
            "{}: nothing deleted",
            b.name
        );
        assert!(
            s.latest_checkpoint().await.unwrap().is_none(),
            "{}: no checkpoint over a broken chain",
            b.name
        );
    }
}
