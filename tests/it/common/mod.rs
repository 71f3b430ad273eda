//! Shared setup for the integration tests: simulated lenders serving a seeded
//! synthetic population, a config written to a tempdir, a real SQLite store, the
//! real broker on 127.0.0.1:0, dev tokens, and expectations computed from the
//! population.
#![allow(dead_code)]

pub mod pg;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gjeldsbro::app::{AppState, bind, bind_ops, serve_with_ops};
use gjeldsbro::auth::devtoken::{self, DevClaims};
use gjeldsbro::config::Config;
use gjeldsbro_adapter::{Loan, LoanType};
use gjeldsbro_loadtest::population::{LenderSpec, Population, generate};
use gjeldsbro_loadtest::sim::{self, Behaviour, SimHandle};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const ISSUER: &str = "https://maskinporten.itest.example";
pub const AUDIENCE: &str = "gjeldsbro-itest";

/// A financial institution.
pub const FI: &str = "910000001";
/// A credit bureau.
pub const BUREAU: &str = "910000002";
/// A partner (consent lookups only; no search).
pub const PARTNER: &str = "910000003";
/// A registered client with no role relevant to search.
pub const OPERATOR: &str = "910000009";
/// An organisation that is not a client at all.
pub const STRANGER: &str = "910000099";

pub const SEARCH_PATH: &str = "/api/rest/v2/debt/search";

/// Lender names as creditorNames: distinctive, so a leak is easy to spot.
pub const LENDER_NAMES: [&str; 9] = [
    "Nordlys Finans AS",
    "Fjordkreditt ASA",
    "Vidde Bank ASA",
    "Kyst Forbrukslan AS",
    "Polar Kortkreditt AS",
    "Skjaergard Kreditt AS",
    "Tindesparebank Finans AS",
    "Midnattsol Lan ASA",
    "Isbre Betalingskort AS",
];

pub fn init() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub fn manifest_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub fn dev_key() -> Vec<u8> {
    std::fs::read(manifest_path("config/dev-signing-key.pem")).expect("dev key")
}

/// A token for `org` with `scopes`, signed with the dev key.
pub fn token(org: &str, scopes: &[&str]) -> String {
    devtoken::mint(
        &dev_key(),
        devtoken::DEV_KID,
        ISSUER,
        AUDIENCE,
        DevClaims {
            org_no: Some(org.to_owned()),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            pid: None,
            ttl_secs: 600,
        },
    )
    .expect("mint")
}

/// A person token (OIDC style: `pid`, no organisation), signed with the dev key.
pub fn person_token(pid: &str) -> String {
    devtoken::mint(
        &dev_key(),
        devtoken::DEV_KID,
        ISSUER,
        AUDIENCE,
        DevClaims {
            org_no: None,
            scopes: vec!["openid".into()],
            pid: Some(pid.to_owned()),
            ttl_secs: 600,
        },
    )
    .expect("mint")
}

pub fn fi_token() -> String {
    token(FI, &["debt.search"])
}

/// A port nothing listens on (bound, read, released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[derive(Debug, Clone)]
pub struct Options {
    pub lenders: usize,
    pub persons: usize,
    pub seed: u64,
    pub timeout_ms: u64,
    /// Lenders (population index) whose base_url is a closed port: no simulator.
    pub down: Vec<usize>,
    /// The config order of the lenders (population indices); default 0..n.
    pub order: Option<Vec<usize>>,
    /// TOML lines added to every lender's table.
    pub lender_extra: String,
    /// TOML lines added to the partner's `[[clients]]` table (e.g. `embed_origins`).
    pub partner_extra: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lenders: 4,
            persons: 300,
            seed: 4242,
            timeout_ms: 300,
            down: Vec::new(),
            order: None,
            lender_extra: String::new(),
            partner_extra: String::new(),
        }
    }
}

/// Simulated lenders, their population, and a tempdir with config and store.
pub struct Fixture {
    pub dir: TempDir,
    pub pop: Population,
    pub specs: Vec<LenderSpec>,
    /// Per population lender index; `None` for a lender that is down.
    pub sims: Vec<Option<SimHandle>>,
    pub base_urls: Vec<String>,
    pub db_path: PathBuf,
    pub opts: Options,
}

impl Fixture {
    pub async fn new(opts: Options) -> Fixture {
        init();
        let dir = tempfile::tempdir().unwrap();
        let specs = LenderSpec::numbered(opts.lenders);
        let pop = generate(opts.seed, opts.persons, &specs);
        let mut sims = Vec::new();
        let mut base_urls = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            if opts.down.contains(&i) {
                sims.push(None);
                base_urls.push(format!("http://127.0.0.1:{}", closed_port()));
                continue;
            }
            let s = sim::spawn(
                "127.0.0.1:0".parse().unwrap(),
                spec.org_no.clone(),
                pop.dataset(&spec.id),
                Behaviour::default(),
            )
            .await
            .unwrap();
            base_urls.push(s.base_url());
            sims.push(Some(s));
        }
        let db_path = dir.path().join("broker.db");
        Fixture {
            dir,
            pop,
            specs,
            sims,
            base_urls,
            db_path,
            opts,
        }
    }

    pub fn sim(&self, lender: usize) -> &SimHandle {
        self.sims[lender].as_ref().expect("lender is up")
    }

    pub fn live_sims(&self) -> impl Iterator<Item = (usize, &SimHandle)> {
        self.sims
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
    }

    pub fn reset_stats(&self) {
        for (_, s) in self.live_sims() {
            s.reset_stats();
        }
    }

    pub fn total_customer_calls(&self) -> u64 {
        self.live_sims()
            .map(|(_, s)| s.stats().customer_calls)
            .sum()
    }

    pub fn lender_name(i: usize) -> &'static str {
        LENDER_NAMES[i % LENDER_NAMES.len()]
    }

    /// The broker config text (TOML).
    pub fn config_text(&self, listen: &str, accept_synthetic: bool) -> String {
        let jwks = manifest_path("config/dev-jwks.json");
        let mut out = format!(
            "listen = \"{listen}\"\nops_listen = \"127.0.0.1:0\"\naccept_synthetic_ids = {accept_synthetic}\ndev_mode = true\n\n\
             [store]\nurl = \"sqlite://{db}\"\n\n\
             [auth]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_file = \"{jwks}\"\n\n\
             [[clients]]\norg_no = \"{FI}\"\nname = \"Itest Bank ASA\"\nroles = [\"financial_institution\"]\n\n\
             [[clients]]\norg_no = \"{BUREAU}\"\nname = \"Itest Kredittopplysning AS\"\nroles = [\"credit_bureau\"]\n\n\
             [[clients]]\norg_no = \"{PARTNER}\"\nname = \"Itest Nettbank AS\"\nroles = [\"partner\"]\n{partner_extra}\n\
             [[clients]]\norg_no = \"{OPERATOR}\"\nname = \"Itest Drift\"\nroles = [\"operator\"]\n",
            db = self.db_path.display(),
            jwks = jwks.display(),
            partner_extra = self.opts.partner_extra,
        );
        let order: Vec<usize> = self
            .opts
            .order
            .clone()
            .unwrap_or_else(|| (0..self.specs.len()).collect());
        for i in order {
            let spec = &self.specs[i];
            out.push_str(&format!(
                "\n[[lenders]]\nid = \"{id}\"\norg_no = \"{org}\"\nname = \"{name}\"\nadapter = \"api-debt-fi\"\n\
                 base_url = \"{url}\"\ntimeout_ms = {t}\n{extra}",
                id = spec.id,
                org = spec.org_no,
                name = Self::lender_name(i),
                url = self.base_urls[i],
                t = self.opts.timeout_ms,
                extra = self.opts.lender_extra,
            ));
        }
        out
    }

    /// Writes a config file into the tempdir and returns its path.
    pub fn write_config(&self, file: &str, listen: &str, accept_synthetic: bool) -> PathBuf {
        let path = self.dir.path().join(file);
        std::fs::write(&path, self.config_text(listen, accept_synthetic)).unwrap();
        path
    }

    /// Writes the lender's dataset file as the population has it.
    pub fn dataset_file(&self, lender: usize) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("{}.json", self.specs[lender].id));
        self.pop
            .write_dataset(&self.specs[lender].id, &path)
            .unwrap();
        path
    }

    /// A broker with every lender's dataset ingested in-process, serving.
    pub async fn broker(&self) -> Broker {
        self.broker_with(|text| text).await
    }

    /// Like [`Fixture::broker`], with the config text passed through `edit` first
    /// (to add a `[tls]` table, say).
    pub async fn broker_with(&self, edit: impl FnOnce(String) -> String) -> Broker {
        let path = self.dir.path().join("gjeldsbro.toml");
        std::fs::write(&path, edit(self.config_text("127.0.0.1:0", true))).unwrap();
        let b = Broker::start(&path).await;
        for spec in &self.specs {
            let bytes = serde_json::to_vec(&json!({
                "providerID": gjeldsbro_adapter::provider_id(&spec.org_no),
                "customers": self.pop.dataset(&spec.id),
            }))
            .unwrap();
            b.state
                .ingestor
                .load_dataset(
                    &spec.id,
                    std::io::Cursor::new(bytes),
                    "file",
                    "itest",
                    false,
                )
                .await
                .expect("ingest");
        }
        b
    }

    /// The same on another store (e.g. a PostgreSQL test schema's URL).
    pub async fn broker_on(&self, store_url: &str) -> Broker {
        let sqlite_url = format!("sqlite://{}", self.db_path.display());
        let store_url = store_url.to_owned();
        self.broker_with(move |text| text.replace(&sqlite_url, &store_url))
            .await
    }

    /// Every accountID of every lender.
    pub fn all_account_ids(&self) -> Vec<String> {
        self.specs
            .iter()
            .flat_map(|s| self.pop.dataset(&s.id))
            .flat_map(|c| c.loans.into_iter().filter_map(|l| l.account_id))
            .collect()
    }

    /// Population indices of the lenders holding open debt for `person`: the ones
    /// the index names.
    pub fn indexed_lenders(&self, person: &str) -> Vec<usize> {
        self.specs
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                self.pop
                    .loans_of(&s.id, person)
                    .iter()
                    .any(|l| !l.is_closed())
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Persons with open debt at exactly the given number of lenders or more.
    pub fn persons_with_lenders(&self, at_least: usize) -> Vec<String> {
        self.pop
            .persons()
            .iter()
            .filter(|p| self.indexed_lenders(p).len() >= at_least)
            .cloned()
            .collect()
    }

    /// Persons with open debt at lender `i`.
    pub fn persons_at(&self, lender: usize) -> Vec<String> {
        self.pop
            .persons()
            .iter()
            .filter(|p| self.indexed_lenders(p).contains(&lender))
            .cloned()
            .collect()
    }

    /// Persons held by no lender.
    pub fn persons_without_debt(&self) -> Vec<String> {
        self.pop
            .persons()
            .iter()
            .filter(|p| self.indexed_lenders(p).is_empty())
            .cloned()
            .collect()
    }

    /// The `loan` objects a search answer must hold for `person`: open loans of
    /// every lender, canonical, without accountID, in canonical order.
    pub fn expected_loans(&self, person: &str) -> Vec<Value> {
        let mut loans: Vec<Loan> = self
            .specs
            .iter()
            .flat_map(|s| self.pop.loans_of(&s.id, person).iter())
            .filter(|l| !l.is_closed())
            .map(Loan::canonical)
            .collect();
        loans.sort_by(Loan::canonical_cmp);
        loans
            .into_iter()
            .map(|mut l| {
                l.account_id = None;
                serde_json::to_value(l).unwrap()
            })
            .collect()
    }
}

/// A broker serving on 127.0.0.1:0 in this test's runtime.
pub struct Broker {
    pub state: Arc<AppState>,
    pub addr: SocketAddr,
    pub url: String,
    /// The operations listener (`ops_listen`): `/metrics`, detailed `/readyz`.
    pub ops_addr: SocketAddr,
    pub ops_url: String,
    pub client: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Broker {
    /// Builds the state from the config file, binds port 0 and serves.
    pub async fn start(config_path: &Path) -> Broker {
        init();
        let config = Config::load(config_path).expect("config");
        let state = AppState::build(config).await.expect("build");
        let listener = bind(&state.config).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let ops = bind_ops(&state.config).await.expect("bind ops");
        let ops_addr = ops.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_with_ops(
            state.clone(),
            listener,
            Some(ops),
            async move {
                let _ = rx.await;
            },
        ));
        Broker {
            state,
            addr,
            url: format!("http://{addr}"),
            ops_addr,
            ops_url: format!("http://{ops_addr}"),
            client: client(),
            stop: Some(tx),
        }
    }

    /// POSTs raw bytes with `Content-Type: application/json`.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self
            .client
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Resp::from(req.send().await.expect("request")).await
    }

    pub async fn search_as(&self, token: &str, body: &Value) -> Resp {
        self.post_raw(
            SEARCH_PATH,
            Some(token),
            serde_json::to_vec(body).unwrap(),
            &[],
        )
        .await
    }

    /// A search for `ssn` by the FI.
    pub async fn search(&self, ssn: &str) -> Resp {
        self.search_as(&fi_token(), &json!({"ssn": ssn, "referenceID": "itest"}))
            .await
    }

    /// A request with an optional bearer token and JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(b).unwrap());
        }
        Resp::from(req.send().await.expect("request")).await
    }

    pub async fn get_as(&self, path: &str, token: &str) -> Resp {
        self.send(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn delete_as(&self, path: &str, token: &str) -> Resp {
        self.send(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    pub async fn put_json(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.send(reqwest::Method::PUT, path, Some(token), Some(body))
            .await
    }

    /// A GET on the operations listener (`/metrics`, `/readyz` with detail).
    pub async fn ops_get(&self, path: &str) -> Resp {
        Resp::from(
            self.client
                .get(format!("{}{path}", self.ops_url))
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Resp {
        Resp::from(
            self.client
                .get(format!("{}{path}", self.url))
                .send()
                .await
                .expect("request"),
        )
        .await
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn client() -> reqwest::Client {
    init();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A finished response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub async fn from(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.bytes().await.expect("body").to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `loan` objects of the answer (null entries included).
    pub fn loans(&self) -> Vec<Value> {
        loans_of(&self.json())
    }

    /// Asserts the registry's error JSON and returns it.
    pub fn assert_error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        let v = self.json();
        let obj = v.as_object().expect("error body is an object");
        for k in ["error", "error_description", "timestamp", "trace_id"] {
            assert!(
                obj.get(k)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty()),
                "error body lacks {k}: {v}"
            );
        }
        assert_eq!(obj.len(), 4, "error body has extra fields: {v}");
        assert_eq!(
            self.header("x-trace-id"),
            obj["trace_id"].as_str(),
            "trace id header and body differ"
        );
        v
    }
}

pub fn loans_of(debt_information: &Value) -> Vec<Value> {
    debt_information["loans"]
        .as_array()
        .expect("loans array")
        .iter()
        .map(|e| e["loan"].clone())
        .collect()
}

fn type_rank(t: &str) -> u8 {
    match t {
        "repaymentLoan" => 0,
        "creditFacility" => 1,
        "chargeCard" => 2,
        other => panic!("unknown loan type {other}"),
    }
}

/// Asserts the canonical order: by type (repaymentLoan, creditFacility,
/// chargeCard), then the main amount, largest first; null entries last.
pub fn assert_canonical_order(loans: &[Value]) {
    let principal = |l: &Value| -> i64 {
        let f = |k: &str| l[k].as_i64().unwrap_or(0);
        match l["type"].as_str().unwrap() {
            "repaymentLoan" => f("balance"),
            "creditFacility" => f("creditLimit"),
            _ => f("interestBearingBalance") + f("nonInterestBearingBalance"),
        }
    };
    let mut seen_null = false;
    for pair in loans.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        if a.is_null() {
            seen_null = true;
        }
        if seen_null {
            assert!(
                b.is_null(),
                "a loan after an unanswered creditor: {loans:?}"
            );
            continue;
        }
        if b.is_null() {
            continue;
        }
        let (ra, rb) = (
            type_rank(a["type"].as_str().unwrap()),
            type_rank(b["type"].as_str().unwrap()),
        );
        assert!(ra <= rb, "types out of order: {loans:?}");
        if ra == rb {
            assert!(
                principal(a) >= principal(b),
                "amounts out of order: {loans:?}"
            );
        }
    }
    let _ = LoanType::RepaymentLoan;
}

/// A synthetic (Tenor) id from nine digits, or `None` if no control digits exist.
pub fn with_control_digits(first9: &str) -> Option<String> {
    let d: Vec<u32> = first9.bytes().map(|b| u32::from(b - b'0')).collect();
    let w1 = [3, 7, 6, 1, 8, 9, 4, 5, 2];
    let w2 = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
    let k = |s: u32| match 11 - s % 11 {
        11 => Some(0),
        10 => None,
        k => Some(k),
    };
    let k1 = k(w1.iter().zip(&d).map(|(w, x)| w * x).sum())?;
    let mut d2 = d.clone();
    d2.push(k1);
    let k2 = k(w2.iter().zip(&d2).map(|(w, x)| w * x).sum())?;
    Some(format!("{first9}{k1}{k2}"))
}

/// A valid synthetic id not in the population, from a date prefix `DDMMYY`.
pub fn fresh_synthetic_id(pop: &Population, ddmmyy: &str) -> String {
    (100..500)
        .filter_map(|i| with_control_digits(&format!("{ddmmyy}{i:03}")))
        .find(|id| !pop.persons().contains(id))
        .expect("a fresh id")
}

/// Polls `f` until it returns true or `limit` passes; returns whether it did.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
