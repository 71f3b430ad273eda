//! One scenario run, end to end:
//!
//! 1. generate the population and start its simulated lenders in this process,
//!    on a tokio runtime of their own (their worker threads are not the
//!    generator's, so a busy generator does not slow the lenders down and
//!    vice versa);
//! 2. write a broker config for them, fill each lender's snapshot and the index
//!    through the real path (`gjeldsbro pull`, the sims serve getalldata), mint
//!    a token (`gjeldsbro dev-token`) and start `gjeldsbro serve`;
//! 3. run the direct path, then the broker path, each with its own warm-up and
//!    the same arrival schedule and sequence of persons, timed events applied
//!    at the same moment of each;
//! 4. build the report (JSON, markdown, SVG chart) and refresh `summary.md`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::broker::{self, BrokerProcess, metric_sum, run_cli};
use crate::openloop::{self, PathRun, Schedule};
use crate::population::{self, LenderSpec, Population};
use crate::report::{self, Added, FaultReport, PathStats, ProcessStats, Report};
use crate::scenario::{PopulationKind, Scenario};
use crate::sim::{self, SimHandle};
use crate::targets::{self, Broker, Direct};
use crate::workload;

/// The client token's lifetime: longer than any run, and what the broker's
/// config then allows (`[auth] max_token_lifetime_secs`).
const TOKEN_TTL_SECS: u64 = 86_400;

/// The dev JWKS the broker trusts for `gjeldsbro dev-token` tokens.
const DEV_JWKS: &str = include_str!("../../config/dev-jwks.json");
const ISSUER: &str = "https://maskinporten.example";
const AUDIENCE: &str = "gjeldsbro";
/// The financial institution the generator searches as.
const CLIENT_ORG: &str = "910000001";
/// Requests waiting at once at most, per path (see [`openloop::run`]).
const MAX_OUTSTANDING: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Scenario(#[from] crate::scenario::ScenarioError),
    #[error("I/O: {0}")]
    Io(String),
    #[error("lender simulator: {0}")]
    Sim(String),
    #[error("broker: {0}")]
    Broker(String),
    #[error("report: {0}")]
    Report(#[from] report::ReportError),
}

/// How to run a scenario.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `gjeldsbro` binary.
    pub broker_bin: PathBuf,
    /// Where the report files go (created if missing).
    pub out_dir: PathBuf,
    /// Replaces the scenario's measured duration.
    pub duration_s: Option<f64>,
    /// Replaces the scenario's warm-up.
    pub warmup_s: Option<f64>,
    /// Replaces the scenario's rate.
    pub rate_per_s: Option<f64>,
    /// The command line, recorded in the report.
    pub command: String,
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutput {
    pub report: Report,
    /// The report files written (JSON, markdown, SVG).
    pub files: Vec<PathBuf>,
}

/// The simulated lenders and their runtime. Dropping it stops the lenders, then
/// the runtime (in the background: dropping a runtime may not block inside the
/// generator's async context).
struct Sims {
    handles: Vec<SimHandle>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Sims {
    fn drop(&mut self) {
        self.handles.clear();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Sims {
    async fn start(population: &Population, scenario: &Scenario) -> Result<Sims, RunError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(scenario.lenders.threads)
            .thread_name("lender-sim")
            .enable_all()
            .build()
            .map_err(|e| RunError::Sim(format!("cannot start the lenders' runtime: {e}")))?;
        let spawner = runtime.handle().clone();
        // Owned by `sims` from here on, so an early return drops it through
        // `Sims::drop` (in the background), never inside this async context.
        let mut sims = Sims {
            handles: Vec::new(),
            runtime: Some(runtime),
        };
        for spec in population.lenders() {
            let task = spawner.spawn(sim::spawn(
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                spec.org_no.clone(),
                population.dataset(&spec.id),
                scenario.lenders.behaviour.clone(),
            ));
            let handle = task
                .await
                .map_err(|e| RunError::Sim(format!("{}: {e}", spec.id)))?
                .map_err(|e| RunError::Sim(format!("cannot start {}: {e}", spec.id)))?;
            sims.handles.push(handle);
        }
        Ok(sims)
    }

    fn reset(&self, scenario: &Scenario) {
        for h in &self.handles {
            h.set_behaviour(scenario.lenders.behaviour.clone());
        }
    }
}

/// The broker config for the scenario's lenders at `lender_urls`.
pub fn broker_config(
    scenario: &Scenario,
    listen: SocketAddr,
    ops_listen: SocketAddr,
    db: &Path,
    jwks: &Path,
    lenders: &[LenderSpec],
    lender_urls: &[String],
) -> String {
    let b = &scenario.broker;
    // Quotas far above the load: this measures the broker's path, not its rate
    // limits (the default 50 calls/s per lender would send most lookups to the
    // snapshot, and the client's default 100/s would answer 429).
    let quota = ((scenario.rate_per_s * 10.0) as u64).clamp(10_000, u64::from(u32::MAX / 2));
    let in_flight = quota.min(100_000);
    let mut out = format!(
        "# Written by the Gjeldsbro load generator for scenario {name:?}.\n\
         listen = \"{listen}\"\n\
         ops_listen = \"{ops_listen}\"\n\
         accept_synthetic_ids = true\n\
         dev_mode = true\n\n\
         [store]\nurl = \"sqlite://{db}\"\n\n\
         [auth]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"{jwks}\"\n\
         max_token_lifetime_secs = {TOKEN_TTL_SECS}\n\n\
         [cache]\nttl_ms = {ttl}\n\n",
        name = scenario.name,
        db = db.display(),
        jwks = jwks.display(),
        ttl = b.cache_ttl_ms,
    );
    if let Some(n) = b.max_concurrent {
        out.push_str(&format!(
            "[overload]\nmax_concurrent = {n}\nmax_queued = {n}\n\n"
        ));
    }
    out.push_str(&format!(
        "[[clients]]\norg_no = \"{CLIENT_ORG}\"\nname = \"Lasttest Bank ASA\"\n\
         roles = [\"financial_institution\"]\nrequests_per_second = {quota}\n"
    ));
    for (spec, url) in lenders.iter().zip(lender_urls) {
        out.push_str(&format!(
            "\n[[lenders]]\nid = \"{id}\"\norg_no = \"{org}\"\nname = \"Simulert Långiver {id}\"\n\
             adapter = \"api-debt-fi\"\nbase_url = \"{url}\"\ntimeout_ms = {timeout}\n\
             requests_per_second = {quota}\nmax_in_flight = {in_flight}\nhedge = {hedge}\n",
            id = spec.id,
            org = spec.org_no,
            timeout = scenario.lenders.timeout_ms,
            hedge = b.hedge,
        ));
        if let Some(p) = b.hedge_percentile {
            out.push_str(&format!("hedge_percentile = {p:?}\n"));
        }
        if let Some(p) = b.hedge_budget_percent {
            out.push_str(&format!("hedge_budget_percent = {p:?}\n"));
        }
        if let Some(n) = b.breaker_failures {
            out.push_str(&format!("breaker_failures = {n}\n"));
        }
        if let Some(n) = b.breaker_backoff_ms {
            out.push_str(&format!("breaker_backoff_ms = {n}\n"));
        }
    }
    out
}

/// The scenario with the command line's overrides applied (and re-validated).
pub fn apply_overrides(scenario: &Scenario, opts: &RunOptions) -> Result<Scenario, RunError> {
    let mut s = scenario.clone();
    if let Some(d) = opts.duration_s {
        s.duration_s = d;
        // An event past a shortened run would never fire; drop it rather than
        // fail, and say so in the report's event list.
        s.events.retain(|e| e.at_s < d);
    }
    if let Some(w) = opts.warmup_s {
        s.warmup_s = w;
    }
    if let Some(r) = opts.rate_per_s {
        s.rate_per_s = r;
    }
    s.validate()?;
    Ok(s)
}

fn free_port() -> Result<SocketAddr, RunError> {
    // Bound and released: the broker binds it a moment later. Another process
    // could take it in between; the run then fails at start, loudly.
    let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| RunError::Io(format!("no free port: {e}")))?;
    l.local_addr()
        .map_err(|e| RunError::Io(format!("no free port: {e}")))
}

fn io(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> RunError {
    let text = format!("{what} {}", path.display());
    move |e| RunError::Io(format!("{text}: {e}"))
}

/// Writes the broker's config into `work`, fills every lender's snapshot and
/// the index through `gjeldsbro pull` (the sims serve getalldata), mints the
/// client's token and starts `gjeldsbro serve`.
async fn start_broker(
    scenario: &Scenario,
    opts: &RunOptions,
    work: &Path,
    specs: &[LenderSpec],
    urls: &[String],
) -> Result<(BrokerProcess, String), RunError> {
    let jwks = work.join("dev-jwks.json");
    std::fs::write(&jwks, DEV_JWKS).map_err(io("cannot write", &jwks))?;
    let listen = free_port()?;
    let ops_listen = free_port()?;
    let config = work.join("gjeldsbro.toml");
    let config_text = broker_config(
        scenario,
        listen,
        ops_listen,
        &work.join("broker.db"),
        &jwks,
        specs,
        urls,
    );
    std::fs::write(&config, config_text).map_err(io("cannot write", &config))?;
    let config_arg = config.to_string_lossy().into_owned();
    for spec in specs {
        run_cli(
            &opts.broker_bin,
            &["pull", "--config", &config_arg, "--lender", &spec.id],
        )
        .await?;
    }
    let token = run_cli(
        &opts.broker_bin,
        &[
            "dev-token",
            "--config",
            &config_arg,
            "--org",
            CLIENT_ORG,
            "--scope",
            "debt.search",
            "--ttl-secs",
            &TOKEN_TTL_SECS.to_string(),
        ],
    )
    .await?
    .trim()
    .to_owned();
    let broker = BrokerProcess::start(
        &opts.broker_bin,
        &config,
        listen,
        ops_listen,
        &work.join("broker.log"),
    )
    .await?;
    Ok((broker, token))
}

/// Runs one scenario and writes its report into `opts.out_dir`.
pub async fn run(scenario: &Scenario, opts: &RunOptions) -> Result<RunOutput, RunError> {
    let scenario = apply_overrides(scenario, opts)?;
    let now = OffsetDateTime::now_utc();
    let started_at = now
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&Rfc3339)
        .unwrap_or_default();
    let load_start = broker::load_average();
    let work = tempfile::tempdir().map_err(|e| RunError::Io(format!("no temp dir: {e}")))?;
    std::fs::create_dir_all(&opts.out_dir).map_err(io("cannot create", &opts.out_dir))?;

    // Population and lenders.
    let specs = LenderSpec::numbered(scenario.lenders.count);
    let p = &scenario.population;
    let population = match p.kind {
        PopulationKind::AllLenders => population::generate_at_all(p.seed, p.persons, &specs),
        PopulationKind::Demo => population::generate(p.seed, p.persons, &specs),
    };
    let persons: Vec<String> = population
        .persons_with_debt()
        .into_iter()
        .map(str::to_owned)
        .collect();
    if persons.is_empty() {
        return Err(RunError::Scenario(
            crate::scenario::ScenarioError::Invalid {
                name: scenario.name.clone(),
                message: "the population has nobody with debt to look up".into(),
            },
        ));
    }
    let holdings: Vec<Vec<usize>> = persons
        .iter()
        .map(|person| {
            population
                .lenders_of(person)
                .iter()
                .filter_map(|id| specs.iter().position(|s| s.id == *id))
                .collect()
        })
        .collect();
    let sims = Sims::start(&population, &scenario).await?;
    let urls: Vec<String> = sims.handles.iter().map(SimHandle::base_url).collect();

    let (broker_proc, token) = start_broker(&scenario, opts, work.path(), &specs, &urls).await?;

    let schedule = Schedule {
        rate_per_s: scenario.rate_per_s,
        warmup: Duration::from_secs_f64(scenario.warmup_s),
        duration: Duration::from_secs_f64(scenario.duration_s),
    };
    let sequence = Arc::new(workload::sequence(
        p.choice,
        persons.len(),
        usize::try_from(schedule.total())
            .unwrap_or(usize::MAX)
            .min(50_000_000),
        p.seed ^ 0x5eed,
    ));
    let pool = 1024;
    let lender_timeout = Duration::from_millis(scenario.lenders.timeout_ms);

    // Direct path.
    let direct = Direct {
        client: targets::client(pool, lender_timeout + Duration::from_secs(5))
            .map_err(|e| RunError::Io(format!("HTTP client: {e}")))?,
        persons: Arc::new(persons.clone()),
        holdings: Arc::new(holdings),
        customer_urls: Arc::new(
            specs
                .iter()
                .zip(&urls)
                .map(|(s, u)| format!("{u}/debt-information/v1/loans/{}/customer", s.org_no))
                .collect(),
        ),
        sequence: sequence.clone(),
        lender_timeout,
    };
    let sims = Arc::new(sims);
    let direct_run = {
        let start = Instant::now() + Duration::from_millis(100);
        let events = spawn_events(&scenario, &sims, start + schedule.warmup);
        let run = openloop::run(schedule, start, MAX_OUTSTANDING, move |i| {
            let d = direct.clone();
            async move { d.send(i).await }
        })
        .await;
        events.abort();
        sims.reset(&scenario);
        run
    };

    // Broker path.
    let bodies: Vec<bytes::Bytes> = persons
        .iter()
        .map(|ssn| targets::search_body(ssn, "loadgen", scenario.broker.max_time_to_wait_ms))
        .collect();
    let target = Broker {
        client: targets::client(
            pool,
            Duration::from_millis(scenario.broker.max_time_to_wait_ms) + Duration::from_secs(5),
        )
        .map_err(|e| RunError::Io(format!("HTTP client: {e}")))?,
        url: format!("{}/api/rest/v2/debt/search", broker_proc.url),
        token: Arc::from(token.as_str()),
        bodies: Arc::new(bodies),
        sequence,
    };
    let scraper = targets::client(4, Duration::from_secs(5))
        .map_err(|e| RunError::Io(format!("HTTP client: {e}")))?;
    let metrics_url = format!("{}/metrics", broker_proc.ops_url);
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + schedule.warmup;
    let measure_to = measure_from + schedule.duration;
    // CPU and metrics at both ends of the measured period, taken by tasks that
    // wake at those moments (the generator loop is busy sending).
    let at_edges = {
        let (scraper, url) = (scraper.clone(), metrics_url.clone());
        let pid = broker_proc.pid();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let cpu0 = broker::cpu_seconds_of(pid);
            let m0 = scrape(&scraper, &url).await;
            tokio::time::sleep_until(measure_to.into()).await;
            let cpu1 = broker::cpu_seconds_of(pid);
            let m1 = scrape(&scraper, &url).await;
            (cpu0, cpu1, m0, m1)
        })
    };
    let breaker_watch = scenario.first_event().map(|e| {
        watch_breaker(
            scraper.clone(),
            metrics_url.clone(),
            e.lender,
            measure_from + Duration::from_secs_f64(e.at_s),
            measure_from,
            measure_to,
        )
    });
    let events = spawn_events(&scenario, &sims, measure_from);
    let broker_run = openloop::run(schedule, start, MAX_OUTSTANDING, move |i| {
        let b = target.clone();
        async move { b.send(i).await }
    })
    .await;
    events.abort();
    sims.reset(&scenario);
    let (cpu0, cpu1, m0, m1) = at_edges
        .await
        .map_err(|e| RunError::Broker(format!("measuring the broker: {e}")))?;
    let breaker_opened_at_s = match breaker_watch {
        Some(w) => w.await.ok().flatten(),
        None => None,
    };
    let peak_rss_kib = broker_proc.peak_rss_kib().unwrap_or(0);
    broker_proc.stop().await;
    drop(sims);

    let report = build_report(BuildInput {
        scenario: &scenario,
        opts,
        started_at,
        load: (load_start, broker::load_average()),
        persons: persons.len(),
        direct: &direct_run,
        broker: &broker_run,
        cpu: cpu0.zip(cpu1).map(|(a, b)| b - a).unwrap_or(0.0),
        peak_rss_kib,
        metrics: metric_deltas(&m0, &m1),
        breaker_opened_at_s,
    });
    let mut files = report.write(&opts.out_dir)?;
    let svg = opts.out_dir.join(format!("{}.svg", report.scenario));
    crate::chart::draw(&report, &svg)?;
    files.push(svg);
    files.push(report::write_summary(&opts.out_dir)?);
    Ok(RunOutput { report, files })
}

async fn scrape(client: &reqwest::Client, url: &str) -> String {
    match client.get(url).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Applies the scenario's events at their times after `measure_from`.
fn spawn_events(
    scenario: &Scenario,
    sims: &Arc<Sims>,
    measure_from: Instant,
) -> tokio::task::JoinHandle<()> {
    let mut events = scenario.events.clone();
    events.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    let sims = sims.clone();
    tokio::spawn(async move {
        for e in events {
            let at = measure_from + Duration::from_secs_f64(e.at_s);
            tokio::time::sleep_until(at.into()).await;
            if let Some(h) = e.lender.checked_sub(1).and_then(|i| sims.handles.get(i)) {
                h.set_behaviour(e.behaviour);
            }
        }
    })
}

/// Polls `/metrics` every 50 ms from the fault on, and returns when (seconds
/// after `measure_from`) lender number `lender`'s circuit was first seen open.
/// An opening before the fault (a slow broker timing out a healthy lender) is
/// not the one the timeline is about, so polling starts at the fault.
fn watch_breaker(
    client: reqwest::Client,
    url: String,
    lender: usize,
    fault_at: Instant,
    measure_from: Instant,
    measure_to: Instant,
) -> tokio::task::JoinHandle<Option<f64>> {
    let id = format!("lender-{lender}");
    tokio::spawn(async move {
        tokio::time::sleep_until(fault_at.into()).await;
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while Instant::now() < measure_to {
            tick.tick().await;
            let text = scrape(&client, &url).await;
            // 1 = open (0 closed, 2 half-open).
            if metric_sum(&text, "gjeldsbro_lender_circuit_state", &[("lender", &id)]) == 1.0 {
                return Some(measure_from.elapsed().as_secs_f64());
            }
        }
        None
    })
}

/// A short name, a metric and the labels its samples must carry.
type MetricRow = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Broker counters over the measured period, by a short name.
fn metric_deltas(before: &str, after: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let rows: [MetricRow; 5] = [
        ("fallbacks", "gjeldsbro_lender_fallbacks_total", &[]),
        (
            "cache_hits",
            "gjeldsbro_cache_requests_total",
            &[("result", "hit")],
        ),
        (
            "cache_misses",
            "gjeldsbro_cache_requests_total",
            &[("result", "miss")],
        ),
        (
            "hedges",
            "gjeldsbro_lender_extra_calls_total",
            &[("kind", "hedge")],
        ),
        (
            "retries",
            "gjeldsbro_lender_extra_calls_total",
            &[("kind", "retry")],
        ),
    ];
    if before.is_empty() || after.is_empty() {
        return out;
    }
    for (short, name, labels) in rows {
        out.insert(
            short.to_owned(),
            metric_sum(after, name, labels) - metric_sum(before, name, labels),
        );
    }
    out
}

struct BuildInput<'a> {
    scenario: &'a Scenario,
    opts: &'a RunOptions,
    started_at: String,
    load: (String, String),
    persons: usize,
    direct: &'a PathRun,
    broker: &'a PathRun,
    cpu: f64,
    peak_rss_kib: u64,
    metrics: BTreeMap<String, f64>,
    breaker_opened_at_s: Option<f64>,
}

fn build_report(i: BuildInput<'_>) -> Report {
    let s = i.scenario;
    let direct = PathStats::from_run(i.direct, s.duration_s);
    let broker = PathStats::from_run(i.broker, s.duration_s);
    let fault = s.first_event().map(|e| FaultReport {
        lender: e.lender,
        direct: report::fault_timeline(&i.direct.windows, e.at_s, None),
        broker: report::fault_timeline(&i.broker.windows, e.at_s, i.breaker_opened_at_s),
    });
    let answered = broker.answered.max(1) as f64;
    Report {
        scenario: s.name.clone(),
        description: s.description.clone(),
        started_at: i.started_at,
        command: i.opts.command.clone(),
        order: "direct path first, then the broker path, each with its own warm-up, at the same rate over the same sequence of persons".into(),
        rate_per_s: s.rate_per_s,
        warmup_s: s.warmup_s,
        duration_s: s.duration_s,
        fan_out: s.fixed_fan_out(),
        persons: i.persons,
        lenders: s.lenders.count,
        lender_timeout_ms: s.lenders.timeout_ms,
        lender_behaviour: serde_json::to_string(&s.lenders.behaviour).unwrap_or_default(),
        events: s
            .events
            .iter()
            .map(|e| {
                format!(
                    "at {} s lender-{} switches to `{}`",
                    e.at_s,
                    e.lender,
                    serde_json::to_string(&e.behaviour).unwrap_or_default()
                )
            })
            .collect(),
        broker_settings: s.broker.clone(),
        added: Added::between(&direct, &broker),
        throughput_ratio: if direct.achieved_rate > 0.0 {
            broker.achieved_rate / direct.achieved_rate
        } else {
            0.0
        },
        direct,
        broker_process: ProcessStats {
            cpu_seconds: i.cpu,
            cpu_per_second: i.cpu / s.duration_s,
            cpu_us_per_request: i.cpu * 1e6 / answered,
            peak_rss_kib: i.peak_rss_kib,
        },
        broker,
        broker_metrics: i.metrics,
        load_average: i.load,
        fault,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario() -> Scenario {
        Scenario::from_toml(
            r#"
name = "t"
rate_per_s = 500
duration_s = 10
[population]
kind = "all_lenders"
persons = 10
[lenders]
count = 2
timeout_ms = 150
[[events]]
at_s = 8.0
lender = 2
behaviour = { fault = "black_hole" }
[broker]
cache_ttl_ms = 5000
hedge = true
hedge_percentile = 90
breaker_failures = 3
"#,
            "t",
        )
        .expect("scenario")
    }

    #[test]
    fn the_broker_config_names_every_lender_and_lifts_the_limits() {
        let s = scenario();
        let specs = LenderSpec::numbered(2);
        let text = broker_config(
            &s,
            "127.0.0.1:18080".parse().expect("addr"),
            "127.0.0.1:19464".parse().expect("addr"),
            Path::new("/tmp/x/broker.db"),
            Path::new("/tmp/x/dev-jwks.json"),
            &specs,
            &["http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()],
        );
        let v: toml::Value = toml::from_str(&text).expect("valid TOML");
        assert_eq!(v["listen"].as_str(), Some("127.0.0.1:18080"));
        assert_eq!(v["ops_listen"].as_str(), Some("127.0.0.1:19464"));
        assert_eq!(v["accept_synthetic_ids"].as_bool(), Some(true));
        assert_eq!(v["dev_mode"].as_bool(), Some(true), "it trusts the dev key");
        assert_eq!(
            v["store"]["url"].as_str(),
            Some("sqlite:///tmp/x/broker.db")
        );
        assert_eq!(v["auth"]["issuer"].as_str(), Some(ISSUER));
        assert_eq!(v["cache"]["ttl_ms"].as_integer(), Some(5000));
        let client = &v["clients"][0];
        assert_eq!(client["roles"][0].as_str(), Some("financial_institution"));
        assert!(client["requests_per_second"].as_integer() >= Some(10_000));
        let lenders = v["lenders"].as_array().expect("lenders");
        assert_eq!(lenders.len(), 2);
        assert_eq!(lenders[1]["base_url"].as_str(), Some("http://127.0.0.1:2"));
        assert_eq!(lenders[1]["org_no"].as_str(), Some("920000002"));
        assert_eq!(lenders[0]["timeout_ms"].as_integer(), Some(150));
        // Far above the load, so the per-lender limit never sends lookups to
        // the snapshot.
        assert!(lenders[0]["requests_per_second"].as_integer() >= Some(5_000));
        assert!(lenders[0]["max_in_flight"].as_integer() >= Some(5_000));
        assert_eq!(lenders[0]["hedge"].as_bool(), Some(true));
        assert_eq!(lenders[0]["hedge_percentile"].as_float(), Some(90.0));
        assert_eq!(lenders[0]["breaker_failures"].as_integer(), Some(3));
        assert!(lenders[0].get("breaker_backoff_ms").is_none());
    }

    #[test]
    fn overrides_replace_and_drop_events_past_a_shorter_run() {
        let opts = RunOptions {
            broker_bin: "gjeldsbro".into(),
            out_dir: "out".into(),
            duration_s: Some(5.0),
            warmup_s: Some(0.5),
            rate_per_s: Some(50.0),
            command: String::new(),
        };
        let s = apply_overrides(&scenario(), &opts).expect("valid");
        assert_eq!(s.duration_s, 5.0);
        assert_eq!(s.warmup_s, 0.5);
        assert_eq!(s.rate_per_s, 50.0);
        assert!(s.events.is_empty(), "the event at 8 s is past a 5 s run");
        let bad = RunOptions {
            rate_per_s: Some(-1.0),
            ..opts
        };
        assert!(matches!(
            apply_overrides(&scenario(), &bad),
            Err(RunError::Scenario(_))
        ));
    }

    #[test]
    fn metric_deltas_subtract_the_start() {
        let before = "gjeldsbro_lender_fallbacks_total{lender=\"lender-1\",result=\"snapshot\"} 2\n\
                      gjeldsbro_cache_requests_total{result=\"hit\"} 10\n";
        let after = "gjeldsbro_lender_fallbacks_total{lender=\"lender-1\",result=\"snapshot\"} 5\n\
                     gjeldsbro_cache_requests_total{result=\"hit\"} 110\n";
        let d = metric_deltas(before, after);
        assert_eq!(d.get("fallbacks"), Some(&3.0));
        assert_eq!(d.get("cache_hits"), Some(&100.0));
        assert_eq!(d.get("hedges"), Some(&0.0));
        assert!(metric_deltas("", after).is_empty());
    }
}
