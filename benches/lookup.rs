//! Benchmarks of the lookup path, from the edge inwards:
//!
//! * `nin/*`: national-id validation (`NationalId::parse`), valid and invalid ids.
//! * `index_5m/*`: the person → lenders index at 5,000,000 persons (about
//!   Norway's population).
//! * `answer_4x2/*`: merge, redaction and JSON encoding for 4 lenders × 2 loans.
//! * `pipeline_fanout4/*`: `Lookup::person` → merge → redact → JSON against four
//!   in-process lenders on a current-thread runtime, all live and with one lender
//!   failing over to its SQLite snapshot. The `*_cpu` variants report process CPU
//!   time (all threads, so SQLite's worker threads count) instead of wall time.
//!
//! * `auth/*`: bearer-token checks: an ES256 token seen for the first time (full
//!   signature and claims verification) and one already verified (remembered).
//!
//! Run: `cargo bench --bench lookup -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use futures::FutureExt;
use futures::future::BoxFuture;
use gjeldsbro::index::{Index, IndexBuilder, IndexSnapshot, LenderIdx};
use gjeldsbro::lenders::{Lender, Lenders};
use gjeldsbro::lookup::{LenderAnswer, Lookup, PersonDebt, Source, TraceContext, merge};
use gjeldsbro::metrics::Metrics;
use gjeldsbro::nin::{IdPolicy, NationalId, NinError, make_id};
use gjeldsbro::redact::{Purpose, redact};
use gjeldsbro::store::{DatasetSummary, SnapshotRow};
use gjeldsbro_adapter::{AdapterError, ChargePeriod, CustomerQuery, LenderAdapter, Loan, LoanType};

const POLICY: IdPolicy = IdPolicy::SYNTHETIC_OK;
const INDEX_PERSONS: usize = 5_000_000;
const INDEX_LENDERS: u64 = 8;

// ---------------------------------------------------------------------------
// Synthetic data
// ---------------------------------------------------------------------------

/// SplitMix64: small, deterministic, good enough to scatter ids and lender sets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A random valid id string: fødselsnummer, d-number or synthetic, in turn by `kind`.
fn random_id(rng: &mut Rng, kind: u64) -> String {
    loop {
        let day = rng.below(28) as u32 + 1;
        let month = rng.below(12) as u32 + 1;
        let yy = rng.below(100) as u32;
        let individual = rng.below(500) as u32;
        if let Some(id) = make_id(day, month, yy, individual, kind == 1, kind == 2) {
            return id;
        }
    }
}

/// `n` distinct valid ids, mixed kinds.
fn distinct_ids(rng: &mut Rng, n: usize, exclude: &HashSet<u64>) -> Vec<NationalId> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    let mut i = 0u64;
    while out.len() < n {
        let id =
            NationalId::parse(&random_id(rng, i % 3), POLICY).expect("generated ids are valid");
        i += 1;
        if !exclude.contains(&id.as_u64()) && seen.insert(id.as_u64()) {
            out.push(id);
        }
    }
    out
}

fn loan(lender: usize, n: usize) -> Loan {
    let base = (lender * 10 + n + 1) as i64;
    let mut l = Loan::new(
        LoanType::RepaymentLoan,
        Some(format!("ACC-{lender}-{n}")),
        Some("2026-01-15T08:00:00Z".into()),
        Some(0),
    );
    match (lender + n) % 3 {
        0 => {
            l.original_balance = Some(base * 1_000_000);
            l.balance = Some(base * 700_000);
            l.terms = Some(60);
            l.nominal_interest_rate = Some(1_290);
            l.installment_charges = Some(4_500);
            l.installment_charge_period = Some(ChargePeriod::Monthly);
        }
        1 => {
            l.loan_type = LoanType::CreditFacility;
            l.credit_limit = Some(base * 500_000);
            l.interest_bearing_balance = Some(base * 120_000);
            l.non_interest_bearing_balance = Some(base * 3_000);
            l.nominal_interest_rate = Some(2_190);
            l.installment_charges = Some(0);
            l.installment_charge_period = Some(ChargePeriod::Monthly);
        }
        _ => {
            l.loan_type = LoanType::ChargeCard;
            l.interest_bearing_balance = Some(0);
            l.non_interest_bearing_balance = Some(base * 25_000);
        }
    }
    l
}

fn two_loans(lender: usize) -> Vec<Loan> {
    vec![loan(lender, 0), loan(lender, 1)]
}

// ---------------------------------------------------------------------------
// In-process lenders
// ---------------------------------------------------------------------------

/// Answers at once with canned loans, or with HTTP 500.
struct CannedLender {
    loans: Vec<Loan>,
    fail: bool,
}

impl LenderAdapter for CannedLender {
    fn protocol(&self) -> &'static str {
        "canned"
    }

    fn fetch_customer<'a>(
        &'a self,
        _query: CustomerQuery<'a>,
    ) -> BoxFuture<'a, Result<Vec<Loan>, AdapterError>> {
        let answer = if self.fail {
            Err(AdapterError::Status(500))
        } else {
            Ok(self.loans.clone())
        };
        futures::future::ready(answer).boxed()
    }
}

fn lender_id(i: usize) -> String {
    format!("lender-{i}")
}

/// Four lenders; `failing` (if any) answers HTTP 500.
fn lenders(failing: Option<usize>) -> Lenders {
    Lenders::from_list(
        (0..4)
            .map(|i| {
                Lender::with_adapter(
                    i as LenderIdx,
                    lender_id(i),
                    format!("99999999{i}"),
                    format!("Långiver {i} ASA"),
                    Duration::from_secs(2),
                    Arc::new(CannedLender {
                        loans: two_loans(i),
                        fail: failing == Some(i),
                    }),
                )
            })
            .collect(),
    )
}

/// Process CPU time, every thread included.
fn process_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

// ---------------------------------------------------------------------------
// 1. National-id validation
// ---------------------------------------------------------------------------

fn bench_nin(c: &mut Criterion) {
    let mut rng = Rng(0x006E_696E);
    let valid: Vec<String> = (0..4096).map(|i| random_id(&mut rng, i % 3)).collect();

    // Invalid ids, sorted by why they fail.
    let mut checksum = Vec::new();
    for id in &valid {
        let mut b = id.clone().into_bytes();
        let pos = (rng.below(11)) as usize;
        b[pos] = b'0' + (b[pos] - b'0' + 1 + rng.below(9) as u8) % 10;
        let s = String::from_utf8(b).unwrap();
        if NationalId::parse(&s, POLICY) == Err(NinError::Checksum) {
            checksum.push(s);
        }
    }
    checksum.truncate(1024);
    // Good control digits, impossible dates (31 April, 30 February, month 13, ...).
    let mut date = Vec::new();
    for (day, month) in [(31, 4), (30, 2), (31, 6), (1, 13), (15, 0), (31, 11)] {
        for ind in 0..500 {
            for yy in [17, 85] {
                if let Some(s) = make_id(day, month, yy, ind, false, false) {
                    assert_eq!(NationalId::parse(&s, POLICY), Err(NinError::Date));
                    date.push(s);
                }
            }
        }
    }
    date.truncate(1024);
    let format: Vec<String> = valid
        .iter()
        .take(1024)
        .enumerate()
        .map(|(i, id)| match i % 4 {
            0 => id[..10].to_owned(),
            1 => format!("{id}0"),
            2 => format!("{}a", &id[..10]),
            _ => format!(" {}", &id[..10]),
        })
        .collect();
    for s in &format {
        assert_eq!(NationalId::parse(s, POLICY), Err(NinError::Format));
    }
    println!(
        "nin: {} valid (fnr/d-number/synthetic), {} checksum, {} date, {} format inputs",
        valid.len(),
        checksum.len(),
        date.len(),
        format.len()
    );

    let mut g = c.benchmark_group("nin");
    for (name, inputs, ok) in [
        ("parse_valid_mixed", &valid, true),
        ("parse_invalid_checksum", &checksum, false),
        ("parse_invalid_date", &date, false),
        ("parse_invalid_format", &format, false),
    ] {
        for s in inputs {
            assert_eq!(NationalId::parse(s, POLICY).is_ok(), ok, "{name}");
        }
        g.bench_function(name, |b| {
            let mut i = 0usize;
            b.iter(|| {
                let s = &inputs[i % inputs.len()];
                i = i.wrapping_add(1);
                NationalId::parse(black_box(s), POLICY)
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// 2. The index at 5 M persons
// ---------------------------------------------------------------------------

fn bench_index(c: &mut Criterion) {
    let mut rng = Rng(0x1DE7);
    let persons = distinct_ids(&mut rng, INDEX_PERSONS, &HashSet::new());
    let present: HashSet<u64> = persons.iter().map(|p| p.as_u64()).collect();
    let absent = distinct_ids(&mut rng, 1 << 16, &present);

    // 1-4 distinct lenders of 8 per person.
    let started = Instant::now();
    let mut builder = IndexBuilder::with_capacity(persons.len());
    let mut pairs = 0usize;
    for p in &persons {
        let n = 1 + rng.below(4);
        let mut set: Vec<LenderIdx> = Vec::with_capacity(4);
        while (set.len() as u64) < n {
            let l = rng.below(INDEX_LENDERS) as LenderIdx;
            if !set.contains(&l) {
                set.push(l);
            }
        }
        for l in set {
            builder.push(p.as_u64(), l).unwrap();
            pairs += 1;
        }
    }
    let snapshot: IndexSnapshot = builder.finish();
    let build_time = started.elapsed();
    assert_eq!(snapshot.persons(), INDEX_PERSONS);
    let heap = snapshot.heap_bytes();
    println!(
        "index_5m: {} persons, {} (person, lender) pairs over {} lenders, built in {:.0?}; \
         heap_bytes() = {} ({:.2} bytes/person)",
        INDEX_PERSONS,
        pairs,
        INDEX_LENDERS,
        build_time,
        heap,
        heap as f64 / INDEX_PERSONS as f64
    );

    // Query order: a random permutation of every person, so each lookup lands on a
    // cold-ish slot rather than walking the table.
    let mut queries = persons.clone();
    for i in (1..queries.len()).rev() {
        queries.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for q in queries.iter().take(1000) {
        assert!(!snapshot.lenders_of(*q).is_empty());
    }
    for q in absent.iter().take(1000) {
        assert!(snapshot.lenders_of(*q).is_empty());
    }

    let mut g = c.benchmark_group("index_5m");
    g.bench_function("lenders_of_present", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let q = queries[i % queries.len()];
            i = i.wrapping_add(1);
            snapshot.lenders_of(black_box(q)).len()
        })
    });
    g.bench_function("lenders_of_absent", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let q = absent[i % absent.len()];
            i = i.wrapping_add(1);
            snapshot.lenders_of(black_box(q)).len()
        })
    });
    // What `Lookup::person` calls: ArcSwap load + copy into a Vec.
    let live = Index::new(snapshot);
    g.bench_function("live_index_lenders_of_present", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let q = queries[i % queries.len()];
            i = i.wrapping_add(1);
            live.lenders_of(black_box(q))
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// 3. Merge, redact, encode: 4 lenders × 2 loans
// ---------------------------------------------------------------------------

fn the_person() -> NationalId {
    NationalId::parse(
        &make_id(14, 3, 85, 123, false, false).unwrap(),
        IdPolicy::STRICT,
    )
    .unwrap()
}

fn bench_answer(c: &mut Criterion) {
    let lenders = lenders(None);
    let person = PersonDebt {
        nin: the_person(),
        answers: (0..4)
            .map(|i| LenderAnswer {
                lender: i as LenderIdx,
                source: Source::Live,
                loans: two_loans(i),
                outcome: "ok",
                elapsed: Duration::from_micros(800),
            })
            .collect(),
    };
    let merged = merge(&person);
    assert_eq!(merged.entries.len(), 8);
    let info = redact(&merged, Purpose::Search, &lenders);
    let body = serde_json::to_vec(&info).unwrap();
    assert!(!body.windows(9).any(|w| w == b"accountID"));
    println!("answer_4x2: debt_information JSON is {} bytes", body.len());

    let mut g = c.benchmark_group("answer_4x2");
    g.bench_function("merge", |b| b.iter(|| merge(black_box(&person))));
    g.bench_function("redact_search", |b| {
        b.iter(|| redact(black_box(&merged), Purpose::Search, &lenders))
    });
    g.bench_function("json_encode", |b| {
        b.iter(|| serde_json::to_vec(black_box(&info)).unwrap())
    });
    g.bench_function("merge_redact_encode", |b| {
        b.iter(|| {
            let merged = merge(black_box(&person));
            let info = redact(&merged, Purpose::Search, &lenders);
            serde_json::to_vec(&info).unwrap()
        })
    });
    g.finish();
}

// ---------------------------------------------------------------------------
// 4. The in-process pipeline at fan-out 4
// ---------------------------------------------------------------------------

/// One lookup as the search handler runs it, minus HTTP, auth and audit.
async fn one_lookup(lookup: &Lookup, nin: NationalId, trace: &TraceContext) -> Vec<u8> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let debt = lookup
        .person(nin, gjeldsbro_adapter::KindSet::ALL, deadline, trace)
        .await;
    let merged = merge(&debt);
    let info = redact(&merged, Purpose::Search, &lookup.lenders);
    serde_json::to_vec(&info).unwrap()
}

fn bench_pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let nin = the_person();
    let failing = 3;

    let store = rt.block_on(async {
        let store = gjeldsbro::store::open(&url).await.unwrap();
        // The failing lender's snapshot: its two loans for the person.
        let rows: Vec<SnapshotRow> = two_loans(failing)
            .into_iter()
            .map(|loan| SnapshotRow { nin, loan })
            .collect();
        let mut writer = store.begin_dataset(&lender_id(failing)).await.unwrap();
        writer.write(&rows).await.unwrap();
        writer
            .commit(DatasetSummary {
                source: "bench".into(),
                customers: 1,
                loans: rows.len() as u64,
            })
            .await
            .unwrap();
        store
    });

    // The person is held by all four lenders, among 1,000 others.
    let mut rng = Rng(0x00FA_0047);
    let others = distinct_ids(&mut rng, 1000, &HashSet::from([nin.as_u64()]));
    let mut builder = IndexBuilder::with_capacity(others.len() + 1);
    for l in 0..4 {
        builder.push(nin.as_u64(), l).unwrap();
    }
    for p in &others {
        builder.push(p.as_u64(), rng.below(4) as LenderIdx).unwrap();
    }
    let index = Arc::new(Index::new(builder.finish()));
    assert_eq!(index.lenders_of(nin), vec![0, 1, 2, 3]);

    let metrics = Arc::new(Metrics::new());
    let make = |failing: Option<usize>| {
        // The cache off: every iteration runs the whole fan-out.
        let off = gjeldsbro::config::CacheConfig {
            ttl_ms: 0,
            ..Default::default()
        };
        Arc::new(Lookup::new(
            index.clone(),
            Arc::new(lenders(failing)),
            store.clone(),
            metrics.clone(),
            Arc::new(gjeldsbro::lookup::AnswerCache::new(&off, 4)),
        ))
    };
    let trace = TraceContext {
        trace_id: "bench-0000".into(),
        traceparent: None,
    };

    let mut g = c.benchmark_group("pipeline_fanout4");
    for (name, lookup, expect) in [
        ("all_live", make(None), [Source::Live; 4]),
        (
            "one_snapshot",
            make(Some(failing)),
            [Source::Live, Source::Live, Source::Live, Source::Snapshot],
        ),
    ] {
        // Check the path really is the one named before timing it.
        let (debt, body) = rt.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let debt = lookup
                .person(nin, gjeldsbro_adapter::KindSet::ALL, deadline, &trace)
                .await;
            (debt, one_lookup(&lookup, nin, &trace).await)
        });
        let sources: Vec<Source> = debt.answers.iter().map(|a| a.source).collect();
        assert_eq!(sources, expect, "{name}");
        let merged = merge(&debt);
        assert_eq!((merged.entries.len(), merged.missing), (8, 0), "{name}");
        println!("pipeline_fanout4/{name}: answer is {} bytes", body.len());

        g.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { one_lookup(&lookup, black_box(nin), &trace).await })
        });
        g.bench_function(format!("{name}_cpu"), |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let lookup = lookup.clone();
                let trace = trace.clone();
                async move {
                    let start = process_cpu_time();
                    for _ in 0..iters {
                        black_box(one_lookup(&lookup, black_box(nin), &trace).await);
                    }
                    process_cpu_time() - start
                }
            })
        });
    }
    // The fallback's own cost: one snapshot read from SQLite.
    let lender = lender_id(failing);
    g.bench_function("snapshot_read", |b| {
        b.to_async(&rt)
            .iter(|| async { store.snapshot_for(&lender, black_box(nin)).await.unwrap() })
    });
    g.bench_function("snapshot_read_cpu", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let store = store.clone();
            let lender = lender.clone();
            async move {
                let start = process_cpu_time();
                for _ in 0..iters {
                    black_box(store.snapshot_for(&lender, black_box(nin)).await.unwrap());
                }
                process_cpu_time() - start
            }
        })
    });
    g.finish();
    drop(rt);
    drop(dir);
}

fn bench_auth(c: &mut Criterion) {
    use gjeldsbro::auth::Authenticator;
    use gjeldsbro::auth::devtoken::{DEV_KID, DevClaims, mint};
    use gjeldsbro::config::{AuthConfig, ClientConfig, Role};

    const ISS: &str = "https://maskinporten.bench";
    const AUD: &str = "gjeldsbro-bench";
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let jwks = root.join("config/dev-jwks.json");
    let key = std::fs::read(root.join("config/dev-signing-key.pem")).expect("dev key");
    let auth = Authenticator::new(
        &AuthConfig {
            issuer: ISS.into(),
            audience: AUD.into(),
            jwks_file: jwks.clone(),
            leeway_secs: 30,
            max_token_lifetime_secs: 3600,
        },
        &jwks,
        &[ClientConfig {
            org_no: "910000001".into(),
            name: "Bench Bank ASA".into(),
            roles: vec![Role::FinancialInstitution],
            requests_per_second: None,
            embed_origins: Vec::new(),
        }],
        POLICY,
    )
    .expect("authenticator");
    let token = || {
        let t = mint(
            &key,
            DEV_KID,
            ISS,
            AUD,
            DevClaims {
                org_no: Some("910000001".into()),
                scopes: vec!["debt.search".into()],
                pid: None,
                ttl_secs: 3600,
            },
        )
        .expect("mint");
        format!("Bearer {t}")
    };
    let mut g = c.benchmark_group("auth");
    // A fresh token each time (minting is setup, not measured): the full check.
    g.bench_function("es256_first_sight", |b| {
        b.iter_batched(
            token,
            |t| black_box(auth.authenticate(Some(&t)).expect("valid")),
            criterion::BatchSize::SmallInput,
        )
    });
    let remembered = token();
    auth.authenticate(Some(&remembered)).expect("valid");
    g.bench_function("es256_remembered", |b| {
        b.iter(|| black_box(auth.authenticate(Some(&remembered)).expect("valid")))
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_nin,
    bench_index,
    bench_answer,
    bench_pipeline,
    bench_auth
);
criterion_main!(benches);
