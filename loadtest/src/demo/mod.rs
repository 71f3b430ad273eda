//! `gjeldsbro demo`: everything on one machine. Five simulated API-DEBT-FI lenders
//! on loopback, a synthetic population (Tenor-style ids) whose daily datasets are
//! ingested into an embedded SQLite store, a simulated student-loan lender and a
//! collection agency (`demo_sources`), and the broker in front, with a printed
//! token and curl line that return a real answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::population::{LenderSpec, Population, generate};
use crate::sim::{self, Behaviour, SimHandle};

use gjeldsbro_broker::auth::devtoken::{
    DEV_JWKS, DEV_SIGNING_KEY, DevTokenArgs, DevTokenError, embed_token as dev_embed_token,
    for_args as dev_token,
};
use gjeldsbro_broker::config::{Config, ConfigError};
use gjeldsbro_broker::ingest::IngestError;
use gjeldsbro_http::app::{AppState, bind, bind_ops, serve_with_ops, shutdown_signal};

/// The dev key pair, compiled in so the demo runs from any directory.
mod sources;

/// Why the demo could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    DevToken(#[from] DevTokenError),
    #[error("{0}")]
    Message(String),
}

pub const DEMO_ISSUER: &str = "https://maskinporten.example";
pub const DEMO_AUDIENCE: &str = "gjeldsbro";
pub const DEMO_BANK: &str = "910000001";

const LENDER_NAMES: [&str; 5] = [
    "Nordlys Finans AS",
    "Fjordkreditt ASA",
    "Vidde Bank ASA",
    "Kyst Forbrukslån AS",
    "Polar Kortkreditt AS",
];

#[derive(Debug, Clone)]
pub struct DemoArgs {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The operations listener (metrics, readiness detail).
    pub ops_listen: SocketAddr,
    pub lender_base_port: u16,
    pub persons: usize,
    pub seed: u64,
}

/// The demo partner (Demo Nettbank AS), whose page frames the embedded view.
pub const DEMO_PARTNER: &str = "910000003";

/// Where the demo serves the partner's page: the port after the broker's.
pub fn partner_page_addr(listen: SocketAddr) -> SocketAddr {
    SocketAddr::new(listen.ip(), listen.port().wrapping_add(1))
}

/// The demo partner's page: it posts an embed token for the person once into
/// the iframe (`POST /embed/v1/session`), as a partner's net bank would after
/// the person logged in; the token never goes into a URL, and a fresh one is
/// minted for every load (each opens one session and works nowhere else).
fn partner_page_html(broker: &str, embed_token: &str) -> String {
    format!(
        r#"<!doctype html><html lang="nb"><head><meta charset="utf-8"><title>Demo Nettbank</title></head>
<body style="margin:0;font-family:sans-serif;background:#eef2f7">
<header style="background:#0b3d91;color:#fff;padding:12px 20px;font-size:18px">Demo Nettbank – Min økonomi (syntetiske data)</header>
<form id="start" method="post" action="{broker}/embed/v1/session" target="gjeld">
<input type="hidden" name="token" value="{embed_token}">
<input type="hidden" name="partner" value="{DEMO_PARTNER}">
<input type="hidden" name="ref" value="demo-session">
</form>
<iframe name="gjeld" title="Gjeldsopplysninger fra Gjeldsbro" style="display:block;border:0;width:960px;height:1400px;margin:10px 20px;background:#fff"></iframe>
<script>document.getElementById('start').submit();</script>
</body></html>"#
    )
}

/// Serves the partner's page until the process ends; `html` makes it afresh
/// for each load.
async fn serve_partner_page(
    addr: SocketAddr,
    html: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> Result<(), DemoError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        DemoError::Message(format!("cannot serve the demo partner page on {addr}: {e}"))
    })?;
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = html();
            async move { axum::response::Html(page) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(())
}

/// The demo's config text: five lenders on `base_port..`, the dev JWKS in the data
/// folder, synthetic ids accepted.
pub fn demo_config(
    data_dir: &Path,
    listen: SocketAddr,
    ops_listen: SocketAddr,
    lender_urls: &[String],
) -> String {
    let mut out = format!(
        "# Written by `gjeldsbro demo`. Dev only: trusts the committed dev key.\n\
         listen = \"{listen}\"\n\
         ops_listen = \"{ops_listen}\"\n\
         accept_synthetic_ids = true\n\
         dev_mode = true\n\n\
         [store]\nurl = \"sqlite://{db}\"\n\n\
         [auth]\nissuer = \"{DEMO_ISSUER}\"\naudience = \"{DEMO_AUDIENCE}\"\njwks_file = \"{jwks}\"\n\
         # The tokens printed at start last a working day.\n\
         max_token_lifetime_secs = 28800\n\n\
         [population_register]\nkind = \"synthetic\"\n\n\
         [[clients]]\norg_no = \"{DEMO_BANK}\"\nname = \"Demo Bank ASA\"\nroles = [\"financial_institution\"]\n\n\
         [[clients]]\norg_no = \"910000002\"\nname = \"Demo Kredittopplysning AS\"\nroles = [\"credit_bureau\"]\n\n\
         [[clients]]\norg_no = \"910000003\"\nname = \"Demo Nettbank AS\"\nroles = [\"partner\"]\n\
         embed_origins = [\"http://{partner_page}\"]\n\n\
         [[clients]]\norg_no = \"910000009\"\nname = \"Gjeldsbro drift\"\nroles = [\"operator\"]\n",
        db = data_dir.join("broker.db").display(),
        jwks = data_dir.join("dev-jwks.json").display(),
        partner_page = partner_page_addr(listen),
    );
    for (i, url) in lender_urls.iter().enumerate() {
        let org = 920_000_001 + i;
        out.push_str(&format!(
            "\n[[clients]]\norg_no = \"{org}\"\nname = \"{name}\"\nroles = [\"lender\"]\n",
            name = LENDER_NAMES[i % LENDER_NAMES.len()],
        ));
        out.push_str(&format!(
            "\n[[lenders]]\nid = \"lender-{n}\"\norg_no = \"{org}\"\nname = \"{name}\"\nadapter = \"api-debt-fi\"\n\
             base_url = \"{url}\"\ntimeout_ms = 300\nrequests_per_second = 50\nmax_in_flight = 32\n",
            n = i + 1,
            name = LENDER_NAMES[i % LENDER_NAMES.len()],
        ));
    }
    out
}

/// Runs the demo until Ctrl-C.
pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let io = |what: &str, e: std::io::Error| DemoError::Message(format!("{what}: {e}"));
    std::fs::create_dir_all(args.data_dir.join("datasets"))
        .map_err(|e| io("cannot create the data folder", e))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)
        .map_err(|e| io("cannot resolve the data folder", e))?;
    std::fs::write(data_dir.join("dev-jwks.json"), DEV_JWKS)
        .map_err(|e| io("cannot write the JWKS", e))?;

    println!(
        "Generating {} synthetic persons across {} lenders…",
        args.persons,
        LENDER_NAMES.len()
    );
    let specs = LenderSpec::numbered(LENDER_NAMES.len());
    let population = generate(args.seed, args.persons, &specs);

    let mut sims: Vec<SimHandle> = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let port = args.lender_base_port + i as u16;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let handle = sim::spawn(
            addr,
            spec.org_no.clone(),
            population.dataset(&spec.id),
            Behaviour::default(),
        )
        .await
        .map_err(|e| io(&format!("cannot start simulated lender on {addr}"), e))?;
        sims.push(handle);
    }
    let urls: Vec<String> = sims.iter().map(SimHandle::base_url).collect();
    let person = demo_person(&population);
    let sources = sources::start(&population, &person).await?;
    let config_path = data_dir.join("gjeldsbro.toml");
    let config_text = demo_config(&data_dir, args.listen, args.ops_listen, &urls)
        + &sources::config(&data_dir, &sources)?;
    std::fs::write(&config_path, config_text).map_err(|e| io("cannot write the config", e))?;
    let config = Config::load(&config_path)?;
    let state = AppState::build(config)
        .await
        .map_err(|e| DemoError::Message(format!("cannot start the broker: {e}")))?;

    for spec in &specs {
        let path = data_dir.join("datasets").join(format!("{}.json", spec.id));
        population
            .write_dataset(&spec.id, &path)
            .map_err(|e| io("cannot write a dataset", e))?;
        let file = std::fs::File::open(&path).map_err(|e| io("cannot open a dataset", e))?;
        let report = state
            .ingestor
            .load_dataset(&spec.id, file, "file", &format!("{}.json", spec.id), false)
            .await?;
        println!(
            "  {} ({}) at {}: {} customers, {} loans ingested",
            spec.id,
            spec.org_no,
            sims.iter()
                .find(|s| s.org_no() == spec.org_no)
                .map(SimHandle::base_url)
                .unwrap_or_default(),
            report.customers,
            report.loans
        );
    }
    sources::ingest(&state, &data_dir, &sources).await?;

    let listener = bind(&state.config)
        .await
        .map_err(|e| DemoError::Message(e.to_string()))?;
    let ops = bind_ops(&state.config)
        .await
        .map_err(|e| DemoError::Message(e.to_string()))?;
    let person_token = dev_token(
        DEV_SIGNING_KEY.as_bytes(),
        DevTokenArgs {
            issuer: DEMO_ISSUER.into(),
            audience: DEMO_AUDIENCE.into(),
            org: None,
            scopes: vec!["openid".into()],
            pid: Some(person.clone()),
            ttl_secs: 8 * 3600,
        },
    )?;
    let (broker_url, config, page_person) = (
        format!("http://{}", state.config.listen),
        std::sync::Arc::new(state.config.clone()),
        person.clone(),
    );
    serve_partner_page(partner_page_addr(args.listen), move || {
        // A token that cannot be minted leaves the frame empty; the log says why.
        match dev_embed_token(DEV_SIGNING_KEY.as_bytes(), &config, &page_person, 120) {
            Ok(t) => partner_page_html(&broker_url, &t),
            Err(e) => {
                tracing::warn!(error = %e, "cannot mint the demo's embed token");
                partner_page_html(&broker_url, "")
            }
        }
    })
    .await?;
    print_banner(
        &state.config,
        &population,
        &config_path,
        &person,
        &person_token,
    )?;
    let result = serve_with_ops(state, listener, Some(ops), shutdown_signal()).await;
    for s in sims {
        s.shutdown().await;
    }
    sources.students.shutdown().await;
    sources.agency.shutdown().await;
    println!("Stopped.");
    result.map_err(|e| DemoError::Message(e.to_string()))
}

/// The synthetic person with debt at the most lenders.
fn demo_person(population: &Population) -> String {
    population
        .persons_with_debt()
        .into_iter()
        .max_by_key(|p| population.lenders_of(p).len())
        .unwrap_or_default()
        .to_owned()
}

fn print_banner(
    config: &Config,
    population: &Population,
    config_path: &Path,
    with_debt: &str,
    person_token: &str,
) -> Result<(), DemoError> {
    let token = dev_token(
        DEV_SIGNING_KEY.as_bytes(),
        DevTokenArgs {
            issuer: DEMO_ISSUER.into(),
            audience: DEMO_AUDIENCE.into(),
            org: Some(DEMO_BANK.into()),
            scopes: vec!["debt.search".into()],
            pid: None,
            ttl_secs: 8 * 3600,
        },
    )?;
    let partner_token = dev_token(
        DEV_SIGNING_KEY.as_bytes(),
        DevTokenArgs {
            issuer: DEMO_ISSUER.into(),
            audience: DEMO_AUDIENCE.into(),
            org: Some(DEMO_PARTNER.into()),
            scopes: vec![
                "consent.create".into(),
                "debt.unsecured.presentation".into(),
                "client.access.consent.events".into(),
            ],
            pid: None,
            ttl_secs: 8 * 3600,
        },
    )?;
    let without = population
        .persons_without_debt()
        .first()
        .map(|s| s.to_string())
        .unwrap_or_default();
    let url = format!("http://{}", config.listen);
    println!();
    println!("Gjeldsbro demo is running (synthetic data only). Ctrl-C stops it.");
    let ops = format!("http://{}", config.ops_listen);
    println!("  broker:   {url}   (health: {url}/readyz)");
    println!("  ops:      {ops}   (metrics: {ops}/metrics, readiness detail: {ops}/readyz)");
    println!("  config:   {}", config_path.display());
    println!();
    println!("A dev token for Demo Bank ASA ({DEMO_BANK}, scope debt.search), valid 8 hours:");
    println!("  export TOKEN={token}");
    println!();
    println!("Look up a synthetic person with debt at several lenders:");
    println!(
        "  curl -s -X POST {url}/api/rest/v2/debt/search -H \"Authorization: Bearer $TOKEN\" \
         -H 'Content-Type: application/json' -d '{{\"ssn\":\"{with_debt}\",\"referenceID\":\"demo-1\"}}'"
    );
    println!();
    println!("A person with no debt answers 204:");
    println!(
        "  curl -si -X POST {url}/api/rest/v2/debt/search -H \"Authorization: Bearer $TOKEN\" \
         -H 'Content-Type: application/json' -d '{{\"ssn\":\"{without}\",\"referenceID\":\"demo-2\"}}'"
    );
    println!();
    println!(
        "Consents: Demo Nettbank AS ({DEMO_PARTNER}) records the person's consent, then uses it:"
    );
    println!("  export PARTNER_TOKEN={partner_token}");
    println!(
        "  CONSENT=$(curl -s -X PUT {url}/v1/consent/agreement -H \"Authorization: Bearer $PARTNER_TOKEN\" \
         -H 'Content-Type: application/json' -d '{{\"nin\":\"{with_debt}\",\"scope_of_consent\":\"debt.unsecured.presentation\",\
         \"consent_duration_days\":30,\"client_consent_id\":\"demo-consent-1\"}}' | sed -n 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/p')"
    );
    println!("  curl -s {url}/v1/debt/$CONSENT -H \"Authorization: Bearer $PARTNER_TOKEN\"");
    println!(
        "A consent that names student loans and collection cases shows them too (a search never does):"
    );
    println!(
        "  CONSENT2=$(curl -s -X PUT {url}/v1/consent/agreement -H \"Authorization: Bearer $PARTNER_TOKEN\" \
         -H 'Content-Type: application/json' -d '{{\"nin\":\"{with_debt}\",\"scope_of_consent\":\"debt.unsecured.presentation debt.student_loans debt.debt_collection\",\
         \"consent_duration_days\":30,\"client_consent_id\":\"demo-consent-2\"}}' | sed -n 's/.*\"id\":\"\\([^\"]*\\)\".*/\\1/p')"
    );
    println!("  curl -s {url}/v1/debt/$CONSENT2 -H \"Authorization: Bearer $PARTNER_TOKEN\"");
    println!("  curl -s {url}/v1/debt/$CONSENT/status -H \"Authorization: Bearer $PARTNER_TOKEN\"");
    println!(
        "  curl -s '{url}/feed/v1/consent?fromSequenceNr=1&limit=10' -H \"Authorization: Bearer $PARTNER_TOKEN\""
    );
    println!();
    println!(
        "The person's own view (a person token with pid), student loan and collection cases included:"
    );
    println!("  export PERSON_TOKEN={person_token}");
    println!("  curl -s {url}/v1/me/debt -H \"Authorization: Bearer $PERSON_TOKEN\"");
    println!("  curl -s {url}/v1/me/consents -H \"Authorization: Bearer $PERSON_TOKEN\"");
    println!("  curl -s {url}/v1/me/disclosures -H \"Authorization: Bearer $PERSON_TOKEN\"");
    println!();
    println!(
        "The embedded page as the person sees it in Demo Nettbank's iframe (open in a browser):"
    );
    println!("  http://{}/", partner_page_addr(config.listen));
    println!();
    println!(
        "Other tokens: cargo run -- dev-token --config {} --org 910000002 --scope debt.search",
        config_path.display()
    );
    println!(
        "An embed token (what the partner posts into the iframe; one session, 5 minutes, nothing else):"
    );
    println!(
        "  cargo run -- dev-token --config {} --embed --pid {with_debt}",
        config_path.display()
    );
    println!();
    println!("Copy letters (PDF) for today's searches, and a check of the disclosure log:");
    println!(
        "  cargo run -- letters --config {c} --date {today} --out {dir}",
        c = config_path.display(),
        today = jiff::Timestamp::now()
            .to_zoned_datetime(
                jiff::tz::TimeZone::get("Europe/Oslo").unwrap_or(jiff::tz::TimeZone::UTC)
            )
            .date(),
        dir = config_path.with_file_name("letters").display(),
    );
    println!(
        "  cargo run -- audit verify --config {}",
        config_path.display()
    );
    Ok(())
}
