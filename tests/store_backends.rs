//! One suite of store-level tests, run against every available backend: SQLite in a
//! temporary directory always, PostgreSQL when it is reachable (at
//! `GJELDSBRO_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//! Each PostgreSQL run gets a fresh schema, dropped at the end (also on panic).

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::pg::{DropSchema, pg_schema};
use futures::TryStreamExt;
use gjeldsbro::audit::record::{DisclosureRecord, GENESIS, chain_hash};
use gjeldsbro::nin::{IdPolicy, NationalId, make_id};
use gjeldsbro::store::IndexChange;
use gjeldsbro::store::postgres::PostgresStore;
use gjeldsbro::store::sqlite::SqliteStore;
use gjeldsbro::store::{DatasetSummary, DeliveryRecord, SnapshotRow, Store};
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
    let store = PostgresStore::open(&url)
        .await
        .map_err(|e| format!("cannot open the store: {e}"))?;
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
        Err(reason) => println!("skipping PostgreSQL: {reason}"),
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
            println!("skipping PostgreSQL: {reason}");
            return;
        }
    };
    let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/config/dev-jwks.json");
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
accept_synthetic_ids = true
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

/// Times a 1,000,000-loan ingest into PostgreSQL through the ingest path (parse,
/// validate, COPY, flip). Run with
/// `cargo test --release --test store_backends -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing run; needs PostgreSQL and about a minute"]
async fn postgres_ingest_rate_for_a_million_loans() {
    use std::io::Write as _;
    init();
    let (_guard, url) = match pg_schema().await {
        Ok(x) => x,
        Err(reason) => {
            println!("skipping PostgreSQL: {reason}");
            return;
        }
    };
    const PERSONS: usize = 500_000;
    const LOANS_EACH: usize = 2;
    // The dataset in a temporary file (about 250 MB), streamed like a real one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.json");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        write!(f, r#"{{"providerID":"9908:920000001","customers":["#).unwrap();
        let mut n = 0usize;
        'outer: for yy in 0..100 {
            for day in 1..=28 {
                for i in 0..1000 {
                    let Some(id) = make_id(day, 7, yy, i, false, true) else {
                        continue;
                    };
                    if n > 0 {
                        f.write_all(b",").unwrap();
                    }
                    write!(
                        f,
                        r#"{{"customerID":"{id}","financialInstitutionID":"920000001","loans":["#
                    )
                    .unwrap();
                    for k in 0..LOANS_EACH {
                        if k > 0 {
                            f.write_all(b",").unwrap();
                        }
                        serde_json::to_writer(&mut f, &loan(&format!("ACC-{n}-{k}"), 1 + n as i64))
                            .unwrap();
                    }
                    f.write_all(b"]}").unwrap();
                    n += 1;
                    if n == PERSONS {
                        break 'outer;
                    }
                }
            }
        }
        f.write_all(b"]}").unwrap();
        f.flush().unwrap();
    }
    // For scale: the parse and validation alone, with a sink that drops the rows.
    struct Discard;
    impl gjeldsbro::ingest::parse::RowSink for Discard {
        fn rows(&mut self, _rows: Vec<SnapshotRow>) -> bool {
            true
        }
    }
    let started = Instant::now();
    let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    gjeldsbro::ingest::parse::parse_dataset(
        file,
        "920000001",
        IdPolicy::SYNTHETIC_OK,
        true,
        &mut Discard,
    )
    .unwrap();
    println!("parse only: {:.2} s", started.elapsed().as_secs_f64());
    let store = gjeldsbro::store::open(&url).await.unwrap();
    let lenders = gjeldsbro::config::Config::parse(&format!(
        r#"
listen = "127.0.0.1:0"
accept_synthetic_ids = true
[store]
url = "{url}"
[auth]
issuer = "i"
audience = "a"
jwks_file = "x"
[[lenders]]
id = "lender-a"
org_no = "920000001"
name = "L"
adapter = "api-debt-fi"
base_url = "http://127.0.0.1:9"
"#
    ))
    .unwrap();
    let lenders = Arc::new(gjeldsbro::lenders::Lenders::from_config(&lenders).unwrap());
    let ingestor =
        gjeldsbro::ingest::Ingestor::new(store.clone(), lenders, None, IdPolicy::SYNTHETIC_OK);
    for round in 0..2 {
        let file = std::fs::File::open(&path).unwrap();
        let started = Instant::now();
        let report = ingestor
            .load_dataset(
                "lender-a",
                std::io::BufReader::new(file),
                "file",
                "big.json",
                true,
            )
            .await
            .unwrap();
        let secs = started.elapsed().as_secs_f64();
        println!(
            "round {round}: {} loans in {secs:.2} s = {:.0} loans/s (postgres, including parse and the flip)",
            report.loans,
            report.loans as f64 / secs
        );
        assert_eq!(report.loans as usize, PERSONS * LOANS_EACH);
    }
    assert_eq!(store.persons_of("lender-a").await.unwrap().len(), PERSONS);
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
