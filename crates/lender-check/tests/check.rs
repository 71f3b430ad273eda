//! `lender-check` run as the real binary against simulated lenders:
//! a healthy one passes every rule; each deliberately broken one fails, naming
//! the rule it breaks (and only that rule).

use std::net::SocketAddr;
use std::process::Output;

use gjeldsbro_adapter::CustomerLoans;
use gjeldsbro_loadtest::{Behaviour, Fault, Latency, LenderSpec, SimHandle, generate, sim};
use serde_json::Value;

const ORG: &str = "920000001";

const RULES: [&str; 8] = [
    "unknown-customer-200",
    "customer-answer",
    "loan-type-schema",
    "coBorrower-present",
    "amounts-non-negative",
    "error-format",
    "getalldata-paging",
    "latency-p99",
];

async fn start(behaviour: Behaviour) -> (SimHandle, Vec<CustomerLoans>) {
    let pop = generate(7, 300, &LenderSpec::numbered(1));
    let dataset = pop.dataset("lender-1");
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let sim = sim::spawn(listen, ORG.into(), dataset.clone(), behaviour)
        .await
        .unwrap();
    (sim, dataset)
}

fn with_fault(fault: Fault) -> Behaviour {
    Behaviour {
        fault,
        ..Behaviour::default()
    }
}

struct Run {
    output: Output,
    stdout: String,
    report_text: String,
    report: Value,
}

impl Run {
    fn failed_rules(&self) -> Vec<String> {
        self.report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["passed"] == false)
            .map(|r| r["rule"].as_str().unwrap().to_owned())
            .collect()
    }

    fn rule(&self, id: &str) -> &Value {
        self.report["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rule"] == id)
            .unwrap_or_else(|| panic!("no rule {id} in {}", self.report_text))
    }
}

async fn check(sim: &SimHandle, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let report_path = dir.path().join("report.json");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_lender-check"))
        .args([
            "--base-url",
            &sim.base_url(),
            "--org",
            ORG,
            "--accept-synthetic-ids",
            "--report",
            report_path.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let report_text = std::fs::read_to_string(&report_path).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let report = serde_json::from_str(&report_text).unwrap();
    Run {
        output,
        stdout,
        report_text,
        report,
    }
}

/// No national id of the dataset leaks into the table or the report.
fn assert_no_ids(run: &Run, dataset: &[CustomerLoans]) {
    for c in dataset {
        assert!(
            !run.report_text.contains(&c.customer_id) && !run.stdout.contains(&c.customer_id),
            "a national id is in the output"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_lender_passes_every_rule() {
    // Paged, so the walk over several pages and the short last page is tested.
    let (sim, dataset) = start(Behaviour {
        page_size: Some(40),
        ..Behaviour::default()
    })
    .await;
    let run = check(&sim, &["--latency-seconds", "1"]).await;
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stdout);
    assert_eq!(run.report["passed"], true);
    let ids: Vec<&str> = run.report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(ids, RULES);
    assert!(run.failed_rules().is_empty(), "{}", run.report_text);
    assert!(run.report["test_customers"].as_u64().unwrap() >= 3);
    let paging = run.rule("getalldata-paging")["notes"][0].as_str().unwrap();
    let pages = dataset.len().div_ceil(40) + usize::from(dataset.len() % 40 == 0);
    assert!(
        paging.starts_with(&format!("{pages} page(s) of up to 40 customers")),
        "{paging}"
    );
    let latency = &run.report["latency"];
    assert_eq!(latency["requests"], 50);
    assert_eq!(latency["failed"], 0);
    assert!(latency["p99_ms"].as_f64().unwrap() < 500.0);
    for rule in RULES {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.starts_with(rule) && l.contains("PASS")),
            "{rule} not PASS in the table:\n{}",
            run.stdout
        );
    }
    assert_no_ids(&run, &dataset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_for_an_unknown_customer_fails_unknown_customer_200() {
    let (sim, dataset) = start(with_fault(Fault::NotFoundForUnknown)).await;
    let run = check(&sim, &["--latency-seconds", "1"]).await;
    assert_eq!(run.output.status.code(), Some(2), "{}", run.stdout);
    assert_eq!(run.report["passed"], false);
    assert_eq!(run.failed_rules(), vec!["unknown-customer-200"]);
    let problem = run.rule("unknown-customer-200")["problems"][0]
        .as_str()
        .unwrap();
    assert!(problem.contains("404"), "{problem}");
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("unknown-customer-200") && l.contains("FAIL")),
        "{}",
        run.stdout
    );
    assert_no_ids(&run, &dataset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_amount_fails_amounts_non_negative() {
    let (sim, dataset) = start(with_fault(Fault::NegativeAmount)).await;
    // The lender names its test persons itself here (--customer, repeated).
    let named: Vec<&str> = dataset
        .iter()
        .filter(|c| !c.loans.is_empty())
        .take(2)
        .map(|c| c.customer_id.as_str())
        .collect();
    let mut args = vec!["--latency-seconds", "1"];
    for id in &named {
        args.extend(["--customer", id]);
    }
    let run = check(&sim, &args).await;
    assert_eq!(run.output.status.code(), Some(2), "{}", run.stdout);
    assert_eq!(run.report["test_customers"], 2);
    assert_eq!(run.failed_rules(), vec!["amounts-non-negative"]);
    let problems = run.rule("amounts-non-negative")["problems"]
        .as_array()
        .unwrap();
    assert_eq!(problems.len(), 2, "one per test customer: {problems:?}");
    assert!(problems[0].as_str().unwrap().contains("is negative"));
    assert_no_ids(&run, &dataset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_co_borrower_fails_co_borrower_present() {
    let (sim, dataset) = start(with_fault(Fault::MissingCoBorrower)).await;
    let run = check(&sim, &["--latency-seconds", "1"]).await;
    assert_eq!(run.output.status.code(), Some(2), "{}", run.stdout);
    assert_eq!(run.failed_rules(), vec!["coBorrower-present"]);
    let problem = run.rule("coBorrower-present")["problems"][0]
        .as_str()
        .unwrap();
    assert!(problem.contains("coBorrower is missing"), "{problem}");
    assert_no_ids(&run, &dataset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lender_fails_latency_p99() {
    let (sim, _) = start(Behaviour {
        latency: Latency::Fixed { ms: 600 },
        ..Behaviour::default()
    })
    .await;
    let run = check(&sim, &["--latency-seconds", "2"]).await;
    assert_eq!(run.output.status.code(), Some(2), "{}", run.stdout);
    assert_eq!(run.failed_rules(), vec!["latency-p99"]);
    let latency = &run.report["latency"];
    assert_eq!(latency["requests"], 100);
    assert_eq!(latency["failed"], 0, "slow, but every call answered");
    assert!(latency["p99_ms"].as_f64().unwrap() >= 600.0, "{latency}");
    let problem = run.rule("latency-p99")["problems"][0].as_str().unwrap();
    assert!(problem.contains("exceeds the required 500 ms"), "{problem}");
}

#[tokio::test]
async fn a_bad_customer_id_is_refused_without_echoing_it() {
    let not_an_id = "12345678901";
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_lender-check"))
        .args([
            "--base-url",
            "http://127.0.0.1:9",
            "--org",
            ORG,
            "--customer",
            not_an_id,
            "--report",
            "/nonexistent/never-written.json",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--customer #1 is not a valid national id"),
        "{stderr}"
    );
    assert!(!stderr.contains(not_an_id), "{stderr}");
}

/// A lender that requires the broker's client certificate (mTLS) on a private
/// CA: the check passes with the broker's certificate and the lender's CA, and
/// without the certificate nothing gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_lenders_are_checked_with_the_brokers_certificate() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let pem = p.self_signed(&key).unwrap().pem();
        (pem, Issuer::new(p, key))
    };
    let leaf = |issuer: &Issuer<'static, KeyPair>, sans: Vec<String>, usage| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(sans).unwrap();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![usage];
        (
            p.signed_by(&key, issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    };
    let (lender_ca_pem, lender_ca) = ca("Itest Lender CA");
    let (broker_ca_pem, broker_ca) = ca("Itest Broker Client CA");
    let (server_cert, server_key) = leaf(
        &lender_ca,
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_cert, client_key) =
        leaf(&broker_ca, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);

    let pop = generate(7, 200, &LenderSpec::numbered(1));
    let sim = sim::spawn_tls(
        "127.0.0.1:0".parse().unwrap(),
        ORG.into(),
        pop.dataset("lender-1"),
        Behaviour::default(),
        sim::SimTls {
            cert_pem: server_cert,
            key_pem: server_key,
            client_ca_pem: Some(broker_ca_pem),
        },
    )
    .await
    .unwrap();
    assert!(sim.base_url().starts_with("https://"));
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (cert, key, ca_file) = (
        write("broker.pem", &client_cert),
        write("broker.key", &client_key),
        write("lender-ca.pem", &lender_ca_pem),
    );

    let run = check(
        &sim,
        &[
            "--latency-seconds",
            "1",
            "--client-cert",
            &cert,
            "--client-key",
            &key,
            "--ca-file",
            &ca_file,
        ],
    )
    .await;
    assert_eq!(run.output.status.code(), Some(0), "{}", run.stdout);
    assert!(run.failed_rules().is_empty(), "{}", run.report_text);

    let refused_before = sim.failed_handshakes();
    let run = check(&sim, &["--latency-seconds", "1", "--ca-file", &ca_file]).await;
    assert_eq!(run.output.status.code(), Some(2), "{}", run.stdout);
    assert!(run.failed_rules().contains(&"getalldata-paging".to_owned()));
    assert!(run.failed_rules().contains(&"latency-p99".to_owned()));
    assert!(sim.failed_handshakes() > refused_before);
}
