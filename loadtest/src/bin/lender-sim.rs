//! `lender-sim`: serves one lender from a getalldata file, or a whole synthetic
//! population of lenders on consecutive ports, until Ctrl-C.
//!
//! ```text
//! lender-sim --dataset FILE --org ORGNO --listen 127.0.0.1:9001
//! lender-sim --population-seed 42 --persons 10000 --lenders 3 --base-port 9001
//! ```
//! Both accept `--behaviour JSON` (e.g. `{"latency":{"fixed":{"ms":20}}}`),
//! `--page-size N`, and `--tls-cert FILE --tls-key FILE [--client-ca FILE]` to
//! serve HTTPS (requiring client certificates from the CA with `--client-ca`). Each lender can be steered later through `PUT /__sim/behaviour`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use gjeldsbro_loadtest::{Behaviour, LenderSpec, generate, read_dataset, sim};

#[derive(Debug, Parser)]
#[command(
    name = "lender-sim",
    about = "Simulated API-DEBT-FI lenders for Gjeldsbro"
)]
struct Args {
    /// Serve this getalldata JSON file (needs --org and --listen).
    #[arg(long, conflicts_with_all = ["population_seed", "persons", "lenders", "base_port"], requires_all = ["org", "listen"])]
    dataset: Option<PathBuf>,
    /// The lender's organisation number (financialInstitutionID).
    #[arg(long)]
    org: Option<String>,
    /// Address to listen on, e.g. 127.0.0.1:9001.
    #[arg(long)]
    listen: Option<SocketAddr>,

    /// Generate a synthetic population from this seed.
    #[arg(long, requires_all = ["persons", "lenders", "base_port"])]
    population_seed: Option<u64>,
    /// Number of persons in the population.
    #[arg(long)]
    persons: Option<usize>,
    /// Number of lenders (lender-1..K, org numbers 920000001..).
    #[arg(long)]
    lenders: Option<usize>,
    /// Lender i listens on 127.0.0.1:(base-port + i - 1).
    #[arg(long)]
    base_port: Option<u16>,
    /// Also write each lender's getalldata JSON into this directory (<lender-id>.json).
    #[arg(long, requires = "population_seed")]
    write_datasets: Option<PathBuf>,

    /// Initial behaviour as JSON (see the `sim::Behaviour` type).
    #[arg(long)]
    behaviour: Option<String>,
    /// Customers per dataset page (default: the whole dataset on page 0).
    #[arg(long)]
    page_size: Option<usize>,

    /// Serve HTTPS with this certificate chain (PEM; needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates from these CAs (PEM; needs --tls-cert).
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
}

fn read_text(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Plain HTTP, or HTTPS with the TLS options.
async fn start(
    listen: SocketAddr,
    org: String,
    customers: Vec<gjeldsbro_adapter::CustomerLoans>,
    behaviour: Behaviour,
    tls: Option<&sim::SimTls>,
) -> anyhow::Result<sim::SimHandle> {
    let handle = match tls {
        Some(tls) => sim::spawn_tls(listen, org, customers, behaviour, tls.clone()).await,
        None => sim::spawn(listen, org, customers, behaviour).await,
    };
    handle.with_context(|| format!("listening on {listen}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let mut behaviour: Behaviour = match &args.behaviour {
        Some(json) => serde_json::from_str(json).context("parsing --behaviour")?,
        None => Behaviour::default(),
    };
    if args.page_size.is_some() {
        behaviour.page_size = args.page_size;
    }

    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(sim::SimTls {
            cert_pem: read_text(cert)?,
            key_pem: read_text(key)?,
            client_ca_pem: args.client_ca.as_deref().map(read_text).transpose()?,
        }),
        _ => None,
    };

    let mut handles = Vec::new();
    if let Some(path) = &args.dataset {
        let (Some(org), Some(listen)) = (args.org.clone(), args.listen) else {
            bail!("--dataset needs --org and --listen");
        };
        let page = read_dataset(path)?;
        let n = page.customers.len();
        let handle = start(listen, org.clone(), page.customers, behaviour, tls.as_ref()).await?;
        println!("{org} {} customers={n}", handle.base_url());
        handles.push(handle);
    } else if let Some(seed) = args.population_seed {
        let (Some(persons), Some(k), Some(base_port)) =
            (args.persons, args.lenders, args.base_port)
        else {
            bail!("--population-seed needs --persons, --lenders and --base-port");
        };
        if usize::from(base_port) + k > usize::from(u16::MAX) + 1 {
            bail!("--base-port + --lenders runs past port 65535");
        }
        let lenders = LenderSpec::numbered(k);
        let population = generate(seed, persons, &lenders);
        if let Some(dir) = &args.write_datasets {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for l in &lenders {
                let file = dir.join(format!("{}.json", l.id));
                population
                    .write_dataset(&l.id, &file)
                    .with_context(|| format!("writing {}", file.display()))?;
            }
        }
        for (i, l) in lenders.iter().enumerate() {
            let port = base_port + i as u16;
            let listen = SocketAddr::from(([127, 0, 0, 1], port));
            let customers = population.dataset(&l.id);
            let n = customers.len();
            let handle = start(
                listen,
                l.org_no.clone(),
                customers,
                behaviour.clone(),
                tls.as_ref(),
            )
            .await?;
            println!("{} {} {} customers={n}", l.id, l.org_no, handle.base_url());
            handles.push(handle);
        }
        eprintln!(
            "population seed={seed}: {} persons, {} with debt, {} loans",
            population.persons().len(),
            population.persons_with_debt().len(),
            population.loan_count()
        );
    } else {
        bail!(
            "give either --dataset FILE --org ORGNO --listen ADDR, or --population-seed N --persons N --lenders K --base-port P"
        );
    }

    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    eprintln!("stopping");
    for h in handles {
        h.shutdown().await;
    }
    Ok(())
}
