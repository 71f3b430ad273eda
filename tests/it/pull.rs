//! The daily pull against a real simulated lender: paging until a short page, a
//! customer split across pages rejected whole, an unreachable lender leaving the
//! old dataset in force.

use std::sync::Arc;
use std::time::Duration;

use gjeldsbro::config::Config;
use gjeldsbro::ingest::pull::PullSettings;
use gjeldsbro::ingest::{IngestError, Ingestor};
use gjeldsbro::lenders::Lenders;
use gjeldsbro::nin::{IdPolicy, NationalId};
use gjeldsbro::store::{self, Store};
use gjeldsbro_loadtest::population::{LenderSpec, generate};
use gjeldsbro_loadtest::sim::{self, Behaviour};

const ORG: &str = "920000001";

fn config(db: &std::path::Path, base_url: &str) -> Config {
    let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/config/dev-jwks.json");
    Config::parse(&format!(
        r#"listen = "127.0.0.1:0"
accept_synthetic_ids = true
dev_mode = true
[store]
url = "sqlite://{}"
[auth]
issuer = "https://issuer.test"
audience = "gjeldsbro"
jwks_file = "{jwks}"
[[lenders]]
id = "lender-1"
org_no = "{ORG}"
name = "Test Finans AS"
adapter = "api-debt-fi"
base_url = "{base_url}"
"#,
        db.display()
    ))
    .expect("valid test config")
}

fn fast() -> PullSettings {
    PullSettings {
        page_timeout: Duration::from_secs(10),
        attempts: 2,
        backoff: Duration::from_millis(10),
        max_pages: 1000,
    }
}

async fn setup(
    customers: Vec<gjeldsbro_adapter::CustomerLoans>,
    page_size: usize,
) -> (tempfile::TempDir, Arc<dyn Store>, Ingestor, sim::SimHandle) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let behaviour = Behaviour {
        page_size: Some(page_size),
        ..Behaviour::default()
    };
    let lender = sim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        ORG.into(),
        customers,
        behaviour,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir.path().join("b.db"), &lender.base_url());
    let store = store::open(&cfg.store.url).await.unwrap();
    let lenders = Arc::new(Lenders::from_config(&cfg).unwrap());
    let ingestor = Ingestor::new(store.clone(), lenders, None, IdPolicy::SYNTHETIC_OK);
    (dir, store, ingestor, lender)
}

#[tokio::test]
async fn a_paged_pull_loads_every_page_until_a_short_one() {
    let population = generate(7, 120, &[LenderSpec::new("lender-1", ORG)]);
    let dataset = population.dataset("lender-1");
    let total = dataset.len() as u64;
    assert!(total > 20, "the fixture needs several pages");
    let (_dir, store, ingestor, lender) = setup(dataset.clone(), 7).await;
    let client = reqwest::Client::new();
    let report = ingestor
        .pull(&client, "lender-1", &lender.base_url(), ORG, &fast())
        .await
        .unwrap();
    assert_eq!(report.customers, total);
    // Every page was asked for once: ceil(total / 7) full-or-short pages, plus an
    // empty one when the last full page was exactly 7.
    let pages = total.div_ceil(7) + u64::from(total.is_multiple_of(7));
    assert_eq!(lender.stats().dataset_calls, pages);
    let c = &dataset[total as usize / 2];
    let nin = NationalId::parse(&c.customer_id, IdPolicy::SYNTHETIC_OK).unwrap();
    let open = c.loans.iter().filter(|l| !l.is_closed()).count();
    assert_eq!(
        store.snapshot_for("lender-1", nin).await.unwrap().len(),
        open
    );
}

#[tokio::test]
async fn a_customer_split_across_pages_rejects_the_whole_pull() {
    let population = generate(8, 60, &[LenderSpec::new("lender-1", ORG)]);
    let good = population.dataset("lender-1");
    let (_dir, store, ingestor, lender) = setup(good.clone(), 5).await;
    let client = reqwest::Client::new();
    ingestor
        .pull(&client, "lender-1", &lender.base_url(), ORG, &fast())
        .await
        .unwrap();
    let before = store.datasets().await.unwrap();

    // The same lender now serves a dataset whose first customer appears again on a
    // later page: a second lender process with the broken list, same org.
    let mut broken = good.clone();
    broken.insert(8, good[0].clone());
    let one_pass = (broken.len() as u64).div_ceil(5) + u64::from(broken.len().is_multiple_of(5));
    let broken_lender = sim::spawn(
        "127.0.0.1:0".parse().unwrap(),
        ORG.into(),
        broken,
        Behaviour {
            page_size: Some(5),
            ..Behaviour::default()
        },
    )
    .await
    .unwrap();
    let err = ingestor
        .pull(&client, "lender-1", &broken_lender.base_url(), ORG, &fast())
        .await
        .unwrap_err();
    match err {
        IngestError::Rejected(r) => assert_eq!(r.rule, "duplicate_customer"),
        other => panic!("expected a rejection, got {other}"),
    }
    // Not retried (a rejected dataset would be rejected again), and the old one stays.
    assert_eq!(broken_lender.stats().dataset_calls, one_pass);
    let after = store.datasets().await.unwrap();
    assert_eq!(before[0].generation, after[0].generation);
    let c = &good[0];
    let nin = NationalId::parse(&c.customer_id, IdPolicy::SYNTHETIC_OK).unwrap();
    let open = c.loans.iter().filter(|l| !l.is_closed()).count();
    assert_eq!(
        store.snapshot_for("lender-1", nin).await.unwrap().len(),
        open
    );
}

#[tokio::test]
async fn an_unreachable_lender_is_retried_then_leaves_the_old_dataset() {
    let population = generate(9, 40, &[LenderSpec::new("lender-1", ORG)]);
    let (_dir, store, ingestor, lender) = setup(population.dataset("lender-1"), 1000).await;
    let client = reqwest::Client::new();
    ingestor
        .pull(&client, "lender-1", &lender.base_url(), ORG, &fast())
        .await
        .unwrap();
    let before = store.datasets().await.unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let err = ingestor
        .pull(&client, "lender-1", &closed, ORG, &fast())
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::Fetch(_)), "{err}");
    let after = store.datasets().await.unwrap();
    assert_eq!(before[0].generation, after[0].generation);
    assert_eq!(before[0].customers, after[0].customers);
}
