//! Issue 4's protection benchmarks, printed as tables (not criterion: these are
//! load runs over loopback HTTP whose point is throughput and tail latency).
//!
//! Everything runs in this one process on one tokio runtime: simulated lenders
//! (`gjeldsbro_loadtest::sim`), the real broker (`AppState::build` + `serve`, a
//! SQLite store in a tempdir, `synchronous = FULL`), and a load generator of
//! keep-alive reqwest clients. The machine is shared, so the figures that matter
//! are the ratios between rows of one run:
//!
//! 1. **direct**: the clients call a simulated lender's customer endpoint, which
//!    answers a prepared body: the HTTP floor of this machine.
//! 2. **cache hit**: searches over a warmed working set; no lender is called
//!    (checked), but every search still authenticates, checks quota and role,
//!    validates, and commits its disclosure record before answering.
//! 3. **bare fan-out**: a bench-only axum route on the same lender adapters and
//!    index with no checks at all (no auth, quota, validation beyond parsing the
//!    id, admission, breaker, cache, fallback, disclosure record, metrics or log
//!    line), against **cache miss**: the broker with `cache.ttl_ms = 0`.
//! 4. **black hole**: an open-loop load with the cache off; one lender is switched
//!    to never answering, and p99 is followed per 100 ms window until its breaker
//!    opens.
//!
//! Then per-stage timings without HTTP (auth, in-process search, disclosure
//! commits, fsync) to show where a cache-hit lookup's time goes.
//!
//! Run: `cargo bench --bench protection` (add `-- cache`, `-- fanout` or
//! `-- blackhole` for one group of scenarios). Environment: `GJELDSBRO_BENCH_QUICK=1`
//! (short smoke run), `GJELDSBRO_BENCH_CLIENTS` (closed-loop clients, default 32),
//! `GJELDSBRO_BENCH_RATE` (open-loop cache-hit rate, default 1,000/s: fixed, so
//! runs compare), `GJELDSBRO_BENCH_BH_RATE` (black-hole load, default 200/s).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::join_all;
use gjeldsbro::app::{AppState, bind, serve};
use gjeldsbro::auth::devtoken::{self, DevClaims};
use gjeldsbro::config::Config;
use gjeldsbro::index::Index;
use gjeldsbro::lenders::Lenders;
use gjeldsbro::lenders::breaker::State as BreakerState;
use gjeldsbro::lookup::{LenderAnswer, PersonDebt, Source, TraceContext, merge};
use gjeldsbro::nin::{IdPolicy, NationalId};
use gjeldsbro::redact::{Purpose, redact};
use gjeldsbro::search::{SearchQuery, search};
use gjeldsbro_adapter::CustomerQuery;
use gjeldsbro_loadtest::population::{LenderSpec, Population, generate};
use gjeldsbro_loadtest::sim::{self, Behaviour, Fault, SimHandle};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const ISSUER: &str = "https://maskinporten.bench.example";
const AUDIENCE: &str = "gjeldsbro-bench";
const FI: &str = "910000001";
const SEARCH_PATH: &str = "/api/rest/v2/debt/search";
const LENDERS: usize = 4;
const SEED: u64 = 4_004;
/// The lender whose answers are black-holed in scenario 4 (config index).
const BLACK_HOLED: usize = 0;
/// Lender timeout in the broker's config (the tests' value, the default).
const TIMEOUT_MS: u64 = 300;
/// A window's p99 counts as back to baseline within this factor of it.
const RECOVERED_FACTOR: f64 = 1.5;

// ---------------------------------------------------------------------------
// Settings and machine state
// ---------------------------------------------------------------------------

struct Settings {
    quick: bool,
    clients: usize,
    warmup: Duration,
    measure: Duration,
    /// The single-client and open-loop rows.
    measure_short: Duration,
    working_set: usize,
    open_rate: Option<f64>,
    bh_rate: f64,
    bh_before: Duration,
    bh_after: Duration,
    window: Duration,
    /// Scenario groups named after `--` (`cache`, `fanout`, `blackhole`); all if none.
    only: Vec<String>,
}

impl Settings {
    fn runs(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }

    fn from_env() -> Settings {
        let quick = std::env::var("GJELDSBRO_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let num = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|v| *v > 0.0)
        };
        let s = |secs: f64| Duration::from_secs_f64(secs);
        Settings {
            quick,
            clients: num("GJELDSBRO_BENCH_CLIENTS").map_or(32, |n| n as usize),
            warmup: if quick { s(0.3) } else { s(1.0) },
            measure: if quick { s(2.0) } else { s(10.0) },
            measure_short: if quick { s(1.5) } else { s(5.0) },
            working_set: 1_000,
            open_rate: num("GJELDSBRO_BENCH_RATE"),
            bh_rate: num("GJELDSBRO_BENCH_BH_RATE").unwrap_or(200.0),
            bh_before: if quick { s(1.5) } else { s(3.0) },
            bh_after: if quick { s(2.5) } else { s(5.0) },
            window: Duration::from_millis(100),
            only: std::env::args()
                .skip(1)
                .filter(|a| ["cache", "fanout", "blackhole"].contains(&a.as_str()))
                .collect(),
        }
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// CPU time of this process, every thread included (lenders, broker and load
/// generator), split into user and system (kernel: sockets, fsync) time.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    user: Duration,
    sys: Duration,
}

impl Cpu {
    fn now() -> Cpu {
        // SAFETY: an all-zero rusage is valid, and getrusage only writes into it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage; RUSAGE_SELF is a constant.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        assert_eq!(rc, 0, "getrusage");
        let d = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
        Cpu {
            user: d(ru.ru_utime),
            sys: d(ru.ru_stime),
        }
    }

    fn since(self, earlier: Cpu) -> Cpu {
        Cpu {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }

    fn share(self, part: usize, whole: usize) -> Cpu {
        let f = part as f64 / whole.max(1) as f64;
        Cpu {
            user: self.user.mul_f64(f),
            sys: self.sys.mul_f64(f),
        }
    }

    /// `user + sys` per operation, in µs.
    fn per(self, n: u64) -> String {
        let us = |d: Duration| d.as_secs_f64() * 1e6 / n.max(1) as f64;
        format!("{:.0} + {:.0} µs", us(self.user), us(self.sys))
    }
}

/// The filesystem type holding `path` (longest matching mount point).
fn filesystem_of(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, mount, fs) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(mount)
                .then(|| (mount.len(), fs.to_owned()))
        })
        .max()
        .map_or_else(|| "?".into(), |(_, fs)| fs)
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 100_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.0} ms", us as f64 / 1e3)
    }
}

// ---------------------------------------------------------------------------
// Lenders, population, broker
// ---------------------------------------------------------------------------

struct World {
    dir: tempfile::TempDir,
    pop: Population,
    specs: Vec<LenderSpec>,
    sims: Vec<SimHandle>,
    /// Persons with open debt and the config indices of the lenders holding it.
    held: Vec<(String, Vec<usize>)>,
    token: Arc<str>,
}

impl World {
    async fn new(working_set: usize) -> World {
        let dir = tempfile::tempdir().unwrap();
        let specs = LenderSpec::numbered(LENDERS);
        // About 80 % of a population hold debt.
        let pop = generate(SEED, working_set * 3 / 2 + 100, &specs);
        let mut sims = Vec::new();
        for spec in &specs {
            let s = sim::spawn(
                "127.0.0.1:0".parse().unwrap(),
                spec.org_no.clone(),
                pop.dataset(&spec.id),
                Behaviour::default(),
            )
            .await
            .unwrap();
            sims.push(s);
        }
        let held: Vec<(String, Vec<usize>)> = pop
            .persons()
            .iter()
            .filter_map(|p| {
                let lenders: Vec<usize> = (0..specs.len())
                    .filter(|&i| pop.loans_of(&specs[i].id, p).iter().any(|l| !l.is_closed()))
                    .collect();
                (!lenders.is_empty()).then(|| (p.clone(), lenders))
            })
            .collect();
        assert!(held.len() >= working_set, "population too small");
        let key = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/config/dev-signing-key.pem"
        ))
        .unwrap();
        let token = devtoken::mint(
            &key,
            devtoken::DEV_KID,
            ISSUER,
            AUDIENCE,
            DevClaims {
                org_no: Some(FI.to_owned()),
                scopes: vec!["debt.search".into()],
                pid: None,
                ttl_secs: 3_600,
            },
        )
        .unwrap();
        World {
            dir,
            pop,
            specs,
            sims,
            held,
            token: token.into(),
        }
    }

    fn customer_calls(&self) -> u64 {
        self.sims.iter().map(|s| s.stats().customer_calls).sum()
    }

    fn config_text(&self, db: &Path, cache_ttl_ms: u64) -> String {
        let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/config/dev-jwks.json");
        let mut t = format!(
            "listen = \"127.0.0.1:0\"\naccept_synthetic_ids = true\ndev_mode = true\n\n\
             [store]\nurl = \"sqlite://{db}\"\n\n\
             [auth]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"{jwks}\"\n\n\
             [cache]\nttl_ms = {cache_ttl_ms}\n\n\
             [[clients]]\norg_no = \"{FI}\"\nname = \"Bench Bank ASA\"\n\
             roles = [\"financial_institution\"]\nrequests_per_second = 10000000\n",
            db = db.display(),
        );
        for (i, spec) in self.specs.iter().enumerate() {
            t.push_str(&format!(
                "\n[[lenders]]\nid = \"{id}\"\norg_no = \"{org}\"\nname = \"Bench Lender {i}\"\n\
                 adapter = \"api-debt-fi\"\nbase_url = \"{url}\"\ntimeout_ms = {TIMEOUT_MS}\n\
                 requests_per_second = 10000000\nmax_in_flight = 4096\n",
                id = spec.id,
                org = spec.org_no,
                url = self.sims[i].base_url(),
            ));
        }
        t
    }

    /// A broker on its own SQLite file with every dataset ingested, serving.
    async fn broker(&self, name: &str, cache_ttl_ms: u64) -> Broker {
        let db = self.dir.path().join(format!("{name}.db"));
        let config = Config::parse(&self.config_text(&db, cache_ttl_ms)).expect("config");
        let state = AppState::build(config).await.expect("build");
        for spec in &self.specs {
            let bytes = serde_json::to_vec(&json!({
                "providerID": gjeldsbro_adapter::provider_id(&spec.org_no),
                "customers": self.pop.dataset(&spec.id),
            }))
            .unwrap();
            state
                .ingestor
                .load_dataset(
                    &spec.id,
                    std::io::Cursor::new(bytes),
                    "file",
                    "bench",
                    false,
                )
                .await
                .expect("ingest");
        }
        let listener = bind(&state.config).await.expect("bind");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(state.clone(), listener, async move {
            let _ = rx.await;
        }));
        Broker {
            state,
            url,
            stop,
            task,
        }
    }

    fn search_target(&self, url: &str, persons: &[(String, Vec<usize>)]) -> Target {
        Target::Search {
            url: format!("{url}{SEARCH_PATH}"),
            token: self.token.clone(),
            bodies: Arc::new(
                persons
                    .iter()
                    .map(|(p, _)| {
                        Bytes::from(
                            serde_json::to_vec(&json!({"ssn": p, "referenceID": "bench"})).unwrap(),
                        )
                    })
                    .collect(),
            ),
        }
    }

    /// Each person at the first lender holding them.
    fn direct_target(&self, persons: &[(String, Vec<usize>)]) -> Target {
        Target::Direct {
            calls: Arc::new(
                persons
                    .iter()
                    .map(|(p, lenders)| {
                        let l = lenders[0];
                        (
                            format!(
                                "{}/debt-information/v1/loans/{}/customer",
                                self.sims[l].base_url(),
                                self.specs[l].org_no
                            ),
                            p.clone(),
                        )
                    })
                    .collect(),
            ),
        }
    }
}

struct Broker {
    state: Arc<AppState>,
    url: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), gjeldsbro::app::StartError>>,
}

impl Broker {
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }

    fn counter(&self, name: &str, labels: &[&str]) -> u64 {
        let m = &self.state.metrics;
        match name {
            "cache" => m.cache_requests.with_label_values(labels).get(),
            "lender_calls" => m.lender_calls.with_label_values(labels).get(),
            "fallbacks" => m.fallbacks.with_label_values(labels).get(),
            _ => unreachable!(),
        }
    }
}

// ---------------------------------------------------------------------------
// The bare fan-out: the same adapters and index, no checks
// ---------------------------------------------------------------------------

struct Bare {
    index: Arc<Index>,
    lenders: Arc<Lenders>,
}

#[derive(serde::Deserialize)]
struct BareRequest {
    ssn: String,
}

async fn bare_search(State(bare): State<Arc<Bare>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<BareRequest>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Ok(nin) = NationalId::parse(&request.ssn, IdPolicy::SYNTHETIC_OK) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let calls = bare.index.lenders_of(nin).into_iter().filter_map(|idx| {
        let lender = bare.lenders.get(idx)?;
        Some(async move {
            let started = Instant::now();
            let query = CustomerQuery {
                nin,
                trace_id: "bare",
                traceparent: None,
            };
            let answer = tokio::time::timeout(lender.timeout, lender.adapter.fetch_customer(query))
                .await
                .ok()
                .and_then(Result::ok);
            LenderAnswer {
                lender: idx,
                source: if answer.is_some() {
                    Source::Live
                } else {
                    Source::Missing
                },
                outcome: if answer.is_some() { "ok" } else { "error" },
                loans: answer.unwrap_or_default(),
                elapsed: started.elapsed(),
            }
        })
    });
    let answers = join_all(calls).await;
    if answers.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let merged = merge(&PersonDebt { nin, answers });
    let info = redact(&merged, Purpose::Search, &bare.lenders);
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&info).unwrap(),
    )
        .into_response()
}

async fn start_bare(state: &AppState) -> (String, oneshot::Sender<()>) {
    let bare = Arc::new(Bare {
        index: state.lookup.index.clone(),
        lenders: state.lookup.lenders.clone(),
    });
    let app = axum::Router::new()
        .route(SEARCH_PATH, axum::routing::post(bare_search))
        .with_state(bare);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    (url, stop)
}

// ---------------------------------------------------------------------------
// Load generation
// ---------------------------------------------------------------------------

/// What the load generator sends.
#[derive(Clone)]
enum Target {
    /// `POST` a search, one prepared body per person.
    Search {
        url: String,
        token: Arc<str>,
        bodies: Arc<Vec<Bytes>>,
    },
    /// `GET` a lender's customer endpoint: (url, customerID) per person.
    Direct { calls: Arc<Vec<(String, String)>> },
}

impl Target {
    /// Sends request `i` (mod the working set) and reads the whole answer; true
    /// for a `200`.
    async fn send(&self, client: &reqwest::Client, i: usize) -> bool {
        let request = match self {
            Target::Search { url, token, bodies } => client
                .post(url)
                .bearer_auth(token)
                .header(header::CONTENT_TYPE, "application/json")
                .body(bodies[i % bodies.len()].clone()),
            Target::Direct { calls } => {
                let (url, id) = &calls[i % calls.len()];
                client
                    .get(url)
                    .header("customerID", id)
                    .header("X-Trace-ID", "bench-direct")
                    .header(header::ACCEPT, "application/json")
            }
        };
        match request.send().await {
            Ok(r) => {
                let ok = r.status() == StatusCode::OK;
                r.bytes().await.is_ok() && ok
            }
            Err(_) => false,
        }
    }
}

fn client(pool: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(pool)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One finished row.
struct Row {
    label: String,
    hist: Histogram<u64>,
    errors: u64,
    elapsed: Duration,
    cpu: Cpu,
    load: (String, String),
}

impl Row {
    fn rate(&self) -> f64 {
        self.hist.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn print(&self) {
        let h = &self.hist;
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} → {} |",
            self.label,
            h.len(),
            self.rate(),
            fmt_us(h.value_at_quantile(0.50)),
            fmt_us(h.value_at_quantile(0.90)),
            fmt_us(h.value_at_quantile(0.99)),
            fmt_us(h.value_at_quantile(0.999)),
            fmt_us(h.max()),
            self.errors,
            self.cpu.per(h.len()),
            self.load.0,
            self.load.1,
        );
    }
}

fn print_header() {
    println!(
        "| scenario | requests | lookups/s | p50 | p90 | p99 | p99.9 | max | errors | CPU/req, user + sys | load avg start → end |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
}

/// `clients` keep-alive clients, each sending its next request as soon as the
/// last is answered; records the requests sent and answered inside the measured
/// period (after `warmup`).
async fn closed_loop(
    label: &str,
    target: &Target,
    clients: usize,
    warmup: Duration,
    measure: Duration,
) -> Row {
    let load_start = load_average();
    let start = Instant::now();
    let (t_rec, t_end) = (start + warmup, start + warmup + measure);
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let target = target.clone();
            tokio::spawn(async move {
                let client = client(1);
                let (mut hist, mut errors) = (new_hist(), 0u64);
                let mut i = c;
                loop {
                    let sent = Instant::now();
                    if sent >= t_end {
                        break;
                    }
                    let ok = target.send(&client, i).await;
                    let done = Instant::now();
                    if sent >= t_rec && done <= t_end {
                        hist.record(micros(done - sent)).unwrap();
                        errors += u64::from(!ok);
                    }
                    i += clients;
                }
                (hist, errors)
            })
        })
        .collect();
    tokio::time::sleep_until(t_rec.into()).await;
    let cpu0 = Cpu::now();
    tokio::time::sleep_until(t_end.into()).await;
    let cpu = Cpu::now().since(cpu0);
    let (mut hist, mut errors) = (new_hist(), 0);
    for w in workers {
        let (h, e) = w.await.unwrap();
        hist.add(h).unwrap();
        errors += e;
    }
    Row {
        label: label.to_owned(),
        hist,
        errors,
        elapsed: measure,
        cpu,
        load: (load_start, load_average()),
    }
}

/// One open-loop sample: when it was due (from the start), its latency from then
/// (so a stalled server is not hidden by a stalled generator), and whether it was
/// a `200`.
struct Sample {
    due: Duration,
    latency_us: u64,
    ok: bool,
}

struct OpenRun {
    samples: Vec<Sample>,
    /// Requests not sent because `max_outstanding` were already waiting.
    not_sent: u64,
    cpu: Cpu,
}

/// Requests at a fixed `rate` from `start` for `duration`, whatever the answers do.
async fn open_loop(
    target: &Target,
    rate: f64,
    start: Instant,
    duration: Duration,
    max_outstanding: usize,
) -> OpenRun {
    let client = client(max_outstanding);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Sample>();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let mut not_sent = 0;
    let cpu0 = Cpu::now();
    for i in 0u64.. {
        let due_offset = Duration::from_secs_f64(i as f64 / rate);
        if due_offset >= duration {
            break;
        }
        let due = start + due_offset;
        tokio::time::sleep_until(due.into()).await;
        if outstanding.load(Ordering::Relaxed) >= max_outstanding {
            not_sent += 1;
            continue;
        }
        outstanding.fetch_add(1, Ordering::Relaxed);
        let (target, client, tx, outstanding) = (
            target.clone(),
            client.clone(),
            tx.clone(),
            outstanding.clone(),
        );
        tokio::spawn(async move {
            let ok = target.send(&client, i as usize).await;
            let _ = tx.send(Sample {
                due: due_offset,
                latency_us: micros(due.elapsed()),
                ok,
            });
            outstanding.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(tx);
    let mut samples = Vec::new();
    while let Some(s) = rx.recv().await {
        samples.push(s);
    }
    let cpu = Cpu::now().since(cpu0);
    samples.sort_by_key(|s| s.due);
    OpenRun {
        samples,
        not_sent,
        cpu,
    }
}

fn hist_of<'a>(samples: impl Iterator<Item = &'a Sample>) -> (Histogram<u64>, u64) {
    let (mut h, mut errors) = (new_hist(), 0);
    for s in samples {
        h.record(s.latency_us).unwrap();
        errors += u64::from(!s.ok);
    }
    (h, errors)
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

async fn cache_scenarios(world: &World, settings: &Settings) -> (f64, f64) {
    let set = &world.held[..settings.working_set];
    let direct = world.direct_target(set);
    let n = settings.clients;

    print_header();
    let row = closed_loop(
        &format!("direct to a simulated lender, {n} clients"),
        &direct,
        n,
        settings.warmup,
        settings.measure,
    )
    .await;
    row.print();
    let direct_rate = row.rate();

    // The cache outlives the whole scenario (entries are never refreshed).
    let broker = world.broker("cache-hit", 3_600_000).await;
    let target = world.search_target(&broker.url, set);
    // Warm: every person of the working set once.
    let warm = client(8);
    for i in 0..set.len() {
        assert!(target.send(&warm, i).await, "warm-up search failed");
    }
    let calls_before = world.customer_calls();
    let hits_before = broker.counter("cache", &["hit"]);

    let row = closed_loop(
        &format!("cache hit, {n} clients"),
        &target,
        n,
        settings.warmup,
        settings.measure,
    )
    .await;
    row.print();
    let hit_rate = row.rate();
    let hit_row_p99 = row.hist.value_at_quantile(0.99);

    let row = closed_loop(
        "cache hit, 1 client",
        &target,
        1,
        settings.warmup,
        settings.measure_short,
    )
    .await;
    row.print();

    let rate = settings.open_rate.unwrap_or(1_000.0);
    let load_start = load_average();
    let started = Instant::now();
    let run = open_loop(
        &target,
        rate,
        started + Duration::from_millis(50),
        settings.warmup + settings.measure_short,
        4_096,
    )
    .await;
    let measured: Vec<&Sample> = run
        .samples
        .iter()
        .filter(|s| s.due >= settings.warmup)
        .collect();
    let (hist, errors) = hist_of(measured.iter().copied());
    Row {
        label: format!("cache hit, open loop at {rate:.0}/s"),
        hist,
        errors: errors + run.not_sent,
        elapsed: settings.measure_short,
        // The CPU of the whole run (warm-up included) over the measured requests'
        // share of it.
        cpu: run.cpu.share(measured.len(), run.samples.len()),
        load: (load_start, load_average()),
    }
    .print();

    let calls_during = world.customer_calls() - calls_before;
    let hits = broker.counter("cache", &["hit"]) - hits_before;
    let misses = broker.counter("cache", &["miss"]);
    println!();
    println!(
        "cache hit rows: lender customer calls during the runs: {calls_during} \
         (cache hits {hits}; misses since start {misses}, all during warm-up of {} persons); \
         closed-loop p99 {}",
        set.len(),
        fmt_us(hit_row_p99)
    );
    assert_eq!(calls_during, 0, "a cache-hit run called a lender");

    stages(world, &broker, settings).await;
    broker.stop().await;
    (direct_rate, hit_rate)
}

async fn fan_out_scenarios(world: &World, settings: &Settings) -> (f64, f64) {
    let set = &world.held[..settings.working_set];
    let n = settings.clients;
    let broker = world.broker("cache-miss", 0).await;
    let fan_out: usize = set.iter().map(|(_, l)| l.len()).sum();
    println!();
    println!(
        "fan-out rows: {} persons, {:.2} lenders a person on average; lender timeout {TIMEOUT_MS} ms",
        set.len(),
        fan_out as f64 / set.len() as f64
    );
    print_header();

    let (bare_url, bare_stop) = start_bare(&broker.state).await;
    let calls0 = world.customer_calls();
    let row = closed_loop(
        &format!("bare fan-out (no checks, no cache), {n} clients"),
        &world.search_target(&bare_url, set),
        n,
        settings.warmup,
        settings.measure,
    )
    .await;
    row.print();
    let bare_rate = row.rate();
    let bare_calls = world.customer_calls() - calls0;
    let _ = bare_stop.send(());

    let calls0 = world.customer_calls();
    let target = world.search_target(&broker.url, set);
    let row = closed_loop(
        &format!("cache miss (ttl_ms = 0), {n} clients"),
        &target,
        n,
        settings.warmup,
        settings.measure,
    )
    .await;
    row.print();
    let miss_rate = row.rate();
    let miss_calls = world.customer_calls() - calls0;
    let not_ok: u64 = ["timeout", "error", "malformed", "limited", "circuit_open"]
        .iter()
        .flat_map(|o| world.specs.iter().map(move |s| (s, o)))
        .map(|(s, o)| broker.counter("lender_calls", &[&s.id, o]))
        .sum();
    println!();
    println!(
        "lender calls (warm-up included): bare {bare_calls}, cache miss {miss_calls}; \
         broker calls not answered live: {not_ok}"
    );
    broker.stop().await;
    (bare_rate, miss_rate)
}

/// Windows of `window` over `samples` (by due time): (start, histogram).
fn windows(
    samples: &[Sample],
    window: Duration,
    total: Duration,
) -> Vec<(Duration, Histogram<u64>)> {
    let n = (total.as_nanos() / window.as_nanos()) as usize;
    let mut out: Vec<(Duration, Histogram<u64>)> =
        (0..n).map(|i| (window * i as u32, new_hist())).collect();
    for s in samples {
        let w = (s.due.as_nanos() / window.as_nanos()) as usize;
        if let Some((_, h)) = out.get_mut(w) {
            h.record(s.latency_us).unwrap();
        }
    }
    out
}

async fn black_hole(world: &World, settings: &Settings) {
    let broker = world.broker("black-hole", 0).await;
    let x = BLACK_HOLED;
    let persons: Vec<(String, Vec<usize>)> = world
        .held
        .iter()
        .filter(|(_, l)| l.len() >= 2 && l.contains(&x))
        .cloned()
        .collect();
    let target = world.search_target(&broker.url, &persons);
    let rate = settings.bh_rate;
    println!();
    println!(
        "black hole: {rate:.0} searches/s open loop, cache off, over {} persons held by {} and \
         at least one other lender; lender timeout_ms = {TIMEOUT_MS}; breaker defaults (opens \
         after 5 consecutive failures or 50 % of >= 10 in the last 20 calls; probe after 1 s, \
         doubling to 30 s); {} lenders' max_in_flight 4096",
        persons.len(),
        world.specs[x].id,
        world.specs.len()
    );

    let total = settings.bh_before + settings.bh_after;
    let load_start = load_average();
    let start = Instant::now() + Duration::from_millis(50);
    let switch_at = start + settings.bh_before;
    let stop = AtomicBool::new(false);
    let breaker = &broker.state.lookup.lenders.get(x as u16).unwrap().breaker;
    let switch = async {
        tokio::time::sleep_until(switch_at.into()).await;
        world.sims[x].set_behaviour(Behaviour {
            fault: Fault::BlackHole,
            ..Behaviour::default()
        });
    };
    // Breaker transitions, relative to the switch.
    let watch = async {
        let mut seen = BreakerState::Closed;
        let mut changes = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let now = breaker.state();
            if now != seen {
                changes.push((Instant::now().saturating_duration_since(switch_at), now));
                seen = now;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        changes
    };
    let run = async {
        let r = open_loop(&target, rate, start, total, 65_536).await;
        stop.store(true, Ordering::Relaxed);
        r
    };
    let ((), changes, run) = tokio::join!(switch, watch, run);
    let load_end = load_average();
    world.sims[x].set_behaviour(Behaviour::default());

    let warm = Duration::from_millis(500).min(settings.bh_before / 2);
    let before: Vec<&Sample> = run
        .samples
        .iter()
        .filter(|s| s.due >= warm && s.due < settings.bh_before)
        .collect();
    let after: Vec<&Sample> = run
        .samples
        .iter()
        .filter(|s| s.due >= settings.bh_before)
        .collect();
    let row = |label: &str, s: &[&Sample], secs: Duration| {
        let (hist, errors) = hist_of(s.iter().copied());
        Row {
            label: label.to_owned(),
            hist,
            errors,
            elapsed: secs,
            cpu: run.cpu.share(s.len(), run.samples.len()),
            load: (load_start.clone(), load_end.clone()),
        }
    };
    print_header();
    let before_row = row(
        "black hole: before the switch",
        &before,
        settings.bh_before - warm,
    );
    before_row.print();
    row(
        &format!(
            "black hole: {:.1} s after the switch",
            settings.bh_after.as_secs_f64()
        ),
        &after,
        settings.bh_after,
    )
    .print();
    let baseline = before_row.hist.value_at_quantile(0.99);
    let threshold = (baseline as f64 * RECOVERED_FACTOR) as u64;

    let wins = windows(&run.samples, settings.window, total);
    let first_after = (settings.bh_before.as_nanos() / settings.window.as_nanos()) as usize;
    let first_warm = (warm.as_nanos() / settings.window.as_nanos()) as usize;
    let p99 = |h: &Histogram<u64>| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(0.99)
        }
    };
    let pre_over = wins[first_warm..first_after]
        .iter()
        .filter(|(_, h)| p99(h) > threshold)
        .count();
    let (worst_at, worst) = wins[first_after..]
        .iter()
        .map(|(t, h)| (*t, p99(h)))
        .max_by_key(|(_, p)| *p)
        .unwrap_or_default();
    // Back to baseline: the first window after the switch from which three in a
    // row are within the threshold.
    let recovered = (first_after..wins.len().saturating_sub(2))
        .find(|&w| (w..w + 3).all(|k| p99(&wins[k].1) <= threshold))
        .map(|w| wins[w].0 - settings.bh_before);
    let later_spikes: Vec<String> = match recovered {
        Some(r) => wins[first_after..]
            .iter()
            .filter(|(t, h)| *t >= settings.bh_before + r && p99(h) > threshold)
            .map(|(t, h)| {
                let rel = *t - settings.bh_before;
                // A window whose requests include the breaker's probe.
                let probe = changes.iter().any(|(at, s)| {
                    *s == BreakerState::HalfOpen && *at >= rel && *at < rel + settings.window
                });
                format!(
                    "+{} ms ({}{})",
                    rel.as_millis(),
                    fmt_us(p99(h)),
                    if probe { ", the breaker's probe" } else { "" }
                )
            })
            .collect(),
        None => Vec::new(),
    };
    println!();
    println!(
        "per-{} ms window p99 around the switch (window by send time; t from the switch):",
        settings.window.as_millis()
    );
    println!("| t | requests | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    let show_from = first_after.saturating_sub(3);
    let show_to = (first_after + 15).min(wins.len());
    for (t, h) in &wins[show_from..show_to] {
        let rel = t.as_millis() as i64 - settings.bh_before.as_millis() as i64;
        if h.is_empty() {
            continue;
        }
        println!(
            "| {rel:+} ms | {} | {} | {} | {} |",
            h.len(),
            fmt_us(h.value_at_quantile(0.5)),
            fmt_us(p99(h)),
            fmt_us(h.max())
        );
    }
    println!();
    println!(
        "breaker of {}: {}",
        world.specs[x].id,
        changes
            .iter()
            .map(|(t, s)| format!("{s:?} at +{} ms", t.as_millis()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let lender = &world.specs[x].id;
    println!(
        "{lender} calls: timeout {}, circuit_open {}, ok {}; fallbacks to snapshot {}, missing {}; \
         not sent (generator backlog) {}",
        broker.counter("lender_calls", &[lender, "timeout"]),
        broker.counter("lender_calls", &[lender, "circuit_open"]),
        broker.counter("lender_calls", &[lender, "ok"]),
        broker.counter("fallbacks", &[lender, "snapshot"]),
        broker.counter("fallbacks", &[lender, "missing"]),
        run.not_sent,
    );
    println!(
        "baseline p99 {} (threshold {:.1}x = {}; {} of {} windows before the switch were over it); \
         worst window p99 {} at +{} ms; back within the threshold (3 windows in a row) {}; \
         later windows over it: {}",
        fmt_us(baseline),
        RECOVERED_FACTOR,
        fmt_us(threshold),
        pre_over,
        first_after - first_warm,
        fmt_us(worst),
        (worst_at.saturating_sub(settings.bh_before)).as_millis(),
        match recovered {
            Some(r) => format!(
                "+{} ms after the switch ({} the 1 s goal)",
                r.as_millis(),
                if r <= Duration::from_secs(1) {
                    "meets"
                } else {
                    "misses"
                }
            ),
            None => "never".into(),
        },
        if later_spikes.is_empty() {
            "none".into()
        } else {
            later_spikes.join(", ")
        }
    );
    broker.stop().await;
}

// ---------------------------------------------------------------------------
// Where a cache-hit lookup's time goes (no HTTP)
// ---------------------------------------------------------------------------

async fn stages(world: &World, broker: &Broker, settings: &Settings) {
    let state = &broker.state;
    let iters = if settings.quick { 2_000 } else { 20_000 };
    let per = |wall: Duration, cpu: Cpu, n: usize| {
        format!(
            "{:.1} µs wall, CPU {} (user + sys)",
            wall.as_secs_f64() * 1e6 / n as f64,
            cpu.per(n as u64)
        )
    };
    println!();
    println!("stages of a cache-hit search, in-process (no HTTP, no load generator):");

    let bearer = format!("Bearer {}", world.token);
    let (t, c) = (Instant::now(), Cpu::now());
    for _ in 0..iters {
        std::hint::black_box(state.auth.authenticate(Some(&bearer)).unwrap());
    }
    println!(
        "- authenticate (ES256 JWT, claims, roles): {}",
        per(t.elapsed(), Cpu::now().since(c), iters)
    );

    let nins: Vec<NationalId> = world.held[..settings.working_set]
        .iter()
        .map(|(p, _)| NationalId::parse(p, IdPolicy::SYNTHETIC_OK).unwrap())
        .collect();
    let trace = TraceContext {
        trace_id: "bench-stage".into(),
        traceparent: None,
    };
    let (t, c) = (Instant::now(), Cpu::now());
    for i in 0..iters {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        let debt = state
            .lookup
            .person(
                nins[i % nins.len()],
                gjeldsbro_adapter::KindSet::ALL,
                deadline,
                &trace,
            )
            .await;
        assert!(debt.answers.iter().all(|a| a.source == Source::Live));
    }
    println!(
        "- lookup.person from the cache (index, moka get per lender): {}",
        per(t.elapsed(), Cpu::now().since(c), iters)
    );

    let query = |i: usize| SearchQuery {
        person: nins[i % nins.len()],
        co_borrowers: Vec::new(),
        reference_id: "bench-stage".into(),
        message_to_customer: None,
        max_time_to_wait: Duration::from_secs(3),
        recipient_org: FI.into(),
        on_behalf_of: None,
        using_own_notification: false,
        via_bureau: false,
    };
    // One at a time: every search waits for its own commit (one fsync each).
    let n = iters / 20;
    let mut hist = new_hist();
    let (t, c) = (Instant::now(), Cpu::now());
    for i in 0..n {
        let s = Instant::now();
        search(state, &query(i), &trace).await.unwrap();
        hist.record(micros(s.elapsed())).unwrap();
    }
    println!(
        "- search() alone, one at a time (lookup, merge, disclosure commit, redact): {}; p50 {}, p99 {}",
        per(t.elapsed(), Cpu::now().since(c), n),
        fmt_us(hist.value_at_quantile(0.5)),
        fmt_us(hist.value_at_quantile(0.99))
    );

    // The same with the load generator's concurrency: group commit at work.
    let clients = settings.clients;
    let duration = settings.measure_short.min(Duration::from_secs(3));
    let end = Instant::now() + duration;
    let (t, c) = (Instant::now(), Cpu::now());
    let query = &query;
    let trace = &trace;
    let tasks = (0..clients).map(|k| async move {
        let mut h = new_hist();
        let mut i = k;
        while Instant::now() < end {
            let s = Instant::now();
            search(state, &query(i), trace).await.unwrap();
            h.record(micros(s.elapsed())).unwrap();
            i += clients;
        }
        h
    });
    let mut hist = new_hist();
    for h in join_all(tasks).await {
        hist.add(h).unwrap();
    }
    let (wall, cpu) = (t.elapsed(), Cpu::now().since(c));
    println!(
        "- search() alone, {clients} concurrent: {:.0}/s, p50 {}, p99 {}, p99.9 {}; CPU {} (user + sys) each",
        hist.len() as f64 / wall.as_secs_f64(),
        fmt_us(hist.value_at_quantile(0.5)),
        fmt_us(hist.value_at_quantile(0.99)),
        fmt_us(hist.value_at_quantile(0.999)),
        cpu.per(hist.len())
    );

    // The disclosure log's floor: a small write and fdatasync on the same disk.
    let path: PathBuf = world.dir.path().join("fsync-probe");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut hist = new_hist();
    for _ in 0..if settings.quick { 50 } else { 200 } {
        use std::io::Write;
        let s = Instant::now();
        file.write_all(&[b'x'; 512]).unwrap();
        file.sync_data().unwrap();
        hist.record(micros(s.elapsed())).unwrap();
    }
    println!(
        "- write 512 B + fdatasync on the store's disk ({}): p50 {}, p99 {}",
        filesystem_of(world.dir.path()),
        fmt_us(hist.value_at_quantile(0.5)),
        fmt_us(hist.value_at_quantile(0.99))
    );
}

// ---------------------------------------------------------------------------

fn main() {
    let settings = Settings::from_env();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // The `serve` command's log set-up, into a sink: each search still formats
    // its JSON log line.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,sqlx=warn"))
        .with_writer(std::io::sink)
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let world = World::new(settings.working_set).await;
        println!(
            "protection bench: {} CPUs, one process (lenders, broker, load generator on one \
             tokio runtime), store on {}; {} clients closed loop; {} s measured per row \
             after {} s warm-up{}; load average {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            filesystem_of(world.dir.path()),
            settings.clients,
            settings.measure.as_secs_f64(),
            settings.warmup.as_secs_f64(),
            if settings.quick { " (QUICK)" } else { "" },
            load_average()
        );
        println!();
        let (mut direct, mut hit, mut bare, mut miss) = (f64::NAN, f64::NAN, f64::NAN, f64::NAN);
        if settings.runs("cache") {
            (direct, hit) = cache_scenarios(&world, &settings).await;
            println!();
        }
        if settings.runs("fanout") {
            (bare, miss) = fan_out_scenarios(&world, &settings).await;
            println!();
        }
        println!(
            "ratios (closed loop, {} clients): cache hit / direct = {:.2}; cache miss / bare \
             fan-out = {:.2}; cache hit / cache miss = {:.2}",
            settings.clients,
            hit / direct,
            miss / bare,
            hit / miss
        );
        if settings.runs("blackhole") {
            black_hole(&world, &settings).await;
        }
        println!();
        println!("load average at the end: {}", load_average());
    });
}
