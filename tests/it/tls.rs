//! TLS on the listener and mTLS, with certificates made here (rcgen): the right
//! organisation's client certificate is accepted (no token needed) and its
//! disclosure recorded under that organisation; an unknown CA or an expired
//! certificate fails the handshake; an organisation not in `[[clients]]` gets
//! 403; certificates are reloaded without a restart (and a broken file leaves
//! the old one in force); and the broker presents its own certificate to a
//! lender that requires one, falling back to the snapshot when it has none.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{FI, Fixture, Options, PARTNER, SEARCH_PATH, STRANGER, eventually};
use gjeldsbro_loadtest::sim::{self, Behaviour, Latency, SimTls};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use serde_json::json;

/// A certificate authority made for one test.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = p.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    fn sign(&self, mut p: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    fn server(&self, cn: &str) -> Leaf {
        let mut p = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(p)
    }

    /// A client certificate with `organizationIdentifier` = `org_id`, if given.
    fn client(&self, org_id: Option<&str>) -> Leaf {
        self.sign(client_params(org_id))
    }

    /// A client certificate that expired in 2021.
    fn expired_client(&self, org_id: &str) -> Leaf {
        let mut p = client_params(Some(org_id));
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2021, 1, 1);
        self.sign(p)
    }
}

fn client_params(org_id: Option<&str>) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "Itest virksomhetssertifikat");
    if let Some(id) = org_id {
        p.distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 97]), id);
    }
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p
}

impl Leaf {
    fn identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.cert_pem, self.key_pem).as_bytes())
            .unwrap()
    }

    fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&key, &self.key_pem).unwrap();
        std::fs::write(&cert, &self.cert_pem).unwrap();
        (cert, key)
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A client trusting only `server_ca`, presenting `identity` if given, on a
/// fresh connection each time (no pool, no session resumption across clients).
fn tls_client(server_ca: &Ca, identity: Option<&Leaf>) -> reqwest::Client {
    common::init();
    let mut b = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(server_ca.pem.as_bytes()).unwrap()])
        .tls_info(true)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20));
    if let Some(leaf) = identity {
        b = b.identity(leaf.identity());
    }
    b.build().unwrap()
}

/// A broker serving TLS with a server certificate from `server_ca`, trusting
/// client certificates from `client_ca`, checking its files every second.
struct TlsBroker {
    fx: Fixture,
    broker: common::Broker,
    server_ca: Ca,
    client_ca: Ca,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl TlsBroker {
    async fn start() -> TlsBroker {
        Self::start_with(1, "").await
    }

    /// `reload_secs`: how often the broker checks its files (0: SIGHUP only);
    /// `extra`: more lines for the `[tls]` table.
    async fn start_with(reload_secs: u64, extra: &str) -> TlsBroker {
        let fx = Fixture::new(Options {
            lenders: 2,
            persons: 120,
            ..Options::default()
        })
        .await;
        let server_ca = Ca::new("Itest Server CA");
        let client_ca = Ca::new("Itest Virksomhet CA");
        let dir = fx.dir.path().to_path_buf();
        let (cert_path, key_path) = server_ca.server("broker one").write(&dir, "server");
        let ca_path = write(&dir, "client-ca.pem", &client_ca.pem);
        let table = format!(
            "\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\nreload_secs = {reload_secs}\n{extra}",
            cert_path.display(),
            key_path.display(),
            ca_path.display()
        );
        let broker = fx.broker_with(|text| text + &table).await;
        TlsBroker {
            fx,
            broker,
            server_ca,
            client_ca,
            cert_path,
            key_path,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.broker.addr.port())
    }

    /// A person with debt at some lender.
    fn person(&self) -> String {
        self.fx.persons_with_lenders(1)[0].clone()
    }

    async fn search(
        &self,
        client: &reqwest::Client,
        token: Option<&str>,
    ) -> Result<common::Resp, reqwest::Error> {
        let mut req = client
            .post(self.url(SEARCH_PATH))
            .json(&json!({"ssn": self.person(), "referenceID": "mtls-itest"}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Ok(common::Resp::from(req.send().await?).await)
    }

    fn metrics(&self) -> String {
        self.broker.state.metrics.render()
    }

    /// The leaf certificate the broker presents on a new connection.
    async fn served_cert(&self) -> Option<Vec<u8>> {
        let r = tls_client(&self.server_ca, None)
            .get(self.url("/healthz"))
            .send()
            .await
            .ok()?;
        r.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate())
            .map(<[u8]>::to_vec)
    }
}

/// An error and all its sources, as one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The recipients of every disclosure record, in order.
async fn recipients(fx: &Fixture) -> Vec<String> {
    use sqlx::Row;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", fx.db_path.display()))
        .await
        .unwrap();
    let rows = sqlx::query("SELECT recipient_org FROM disclosures ORDER BY seq")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.iter().map(|r| r.get::<String, _>(0)).collect()
}

#[tokio::test]
async fn the_right_organisations_certificate_is_accepted_without_a_token() {
    let t = TlsBroker::start().await;
    let leaf = t.client_ca.client(Some(&format!("NTRNO-{FI}")));
    let r = t
        .search(&tls_client(&t.server_ca, Some(&leaf)), None)
        .await
        .expect("handshake with a trusted certificate");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.loans(), t.fx.expected_loans(&t.person()));
    assert_eq!(recipients(&t.fx).await, vec![FI.to_string()]);

    // Certificate and a token for the same organisation: fine.
    let r = t
        .search(
            &tls_client(&t.server_ca, Some(&leaf)),
            Some(&common::fi_token()),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // A token for another organisation on this connection: 401.
    let other = common::token(PARTNER, &["debt.search"]);
    let r = t
        .search(&tls_client(&t.server_ca, Some(&leaf)), Some(&other))
        .await
        .unwrap();
    r.assert_error(401);
}

#[tokio::test]
async fn without_a_client_certificate_bearer_tokens_work_over_tls() {
    let t = TlsBroker::start().await;
    let client = tls_client(&t.server_ca, None);
    let r = t.search(&client, Some(&common::fi_token())).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // And with neither: 401 with the error JSON.
    t.search(&client, None).await.unwrap().assert_error(401);
}

#[tokio::test]
async fn with_require_client_cert_a_connection_without_one_is_refused() {
    let t = TlsBroker::start_with(1, "require_client_cert = true\n").await;
    match t
        .search(&tls_client(&t.server_ca, None), Some(&common::fi_token()))
        .await
    {
        Ok(r) => panic!("answered without a client certificate: {}", r.status),
        Err(e) => assert!(error_chain(&e).contains("CertificateRequired"), "{e:?}"),
    }
    let leaf = t.client_ca.client(Some(&format!("NTRNO-{FI}")));
    let r = t
        .search(&tls_client(&t.server_ca, Some(&leaf)), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[tokio::test]
async fn an_unknown_ca_or_an_expired_certificate_fails_the_handshake() {
    let t = TlsBroker::start().await;
    let org_id = format!("NTRNO-{FI}");
    let foreign = Ca::new("Itest Foreign CA").client(Some(&org_id));
    let expired = t.client_ca.expired_client(&org_id);
    for (leaf, alert) in [(&foreign, "UnknownCA"), (&expired, "CertificateExpired")] {
        match t.search(&tls_client(&t.server_ca, Some(leaf)), None).await {
            Ok(r) => panic!("{alert}: got an answer, status {}", r.status),
            // The server's TLS alert says why.
            Err(e) => assert!(error_chain(&e).contains(alert), "{alert}: {e:?}"),
        }
    }
    // The accept loop survived: a good certificate still gets through.
    let good = t.client_ca.client(Some(&org_id));
    let r = t
        .search(&tls_client(&t.server_ca, Some(&good)), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // Nothing was disclosed to the refused callers.
    assert_eq!(recipients(&t.fx).await, vec![FI.to_string()]);
}

#[tokio::test]
async fn an_organisation_not_in_clients_gets_403_and_no_organisation_401() {
    let t = TlsBroker::start().await;
    let stranger = t.client_ca.client(Some(&format!("NTRNO-{STRANGER}")));
    let r = t
        .search(&tls_client(&t.server_ca, Some(&stranger)), None)
        .await
        .unwrap();
    let body = r.assert_error(403);
    assert_eq!(body["error"], "forbidden");

    for org_id in [None, Some("NTRNO-12345"), Some(FI)] {
        let leaf = t.client_ca.client(org_id);
        let r = t
            .search(&tls_client(&t.server_ca, Some(&leaf)), None)
            .await
            .unwrap();
        r.assert_error(401);
    }
    assert!(recipients(&t.fx).await.is_empty());
}

#[tokio::test]
async fn certificates_are_reloaded_without_a_restart() {
    let t = TlsBroker::start().await;
    let first = t.served_cert().await.expect("serves TLS");

    // A new pair: new connections get it within a few seconds.
    let second = t.server_ca.server("broker two");
    std::fs::write(&t.key_path, &second.key_pem).unwrap();
    std::fs::write(&t.cert_path, &second.cert_pem).unwrap();
    assert_ne!(first, second.der);
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.served_cert().await.as_deref() == Some(&second.der[..])
        })
        .await,
        "the new certificate was not picked up"
    );

    // A broken certificate file: refused, the second certificate stays.
    std::fs::write(&t.cert_path, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(t.served_cert().await.as_deref(), Some(&second.der[..]));
    assert!(t.metrics().contains("gjeldsbro_tls_reload_refused 1"));
    let leaf = t.client_ca.client(Some(&format!("NTRNO-{FI}")));
    let r = t
        .search(&tls_client(&t.server_ca, Some(&leaf)), None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // A certificate that does not belong to the key: refused too.
    let stray = t.server_ca.server("broker stray");
    std::fs::write(&t.cert_path, &stray.cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(t.served_cert().await.as_deref(), Some(&second.der[..]));

    // Fixed: the watcher is still at work.
    let third = t.server_ca.server("broker three");
    third.write(t.fx.dir.path(), "server");
    assert!(
        eventually(Duration::from_secs(10), || async {
            t.served_cert().await.as_deref() == Some(&third.der[..])
        })
        .await,
        "the watcher stopped after a refused reload"
    );
    let metrics = t.metrics();
    assert!(
        metrics.contains("gjeldsbro_tls_reload_refused 0"),
        "{metrics}"
    );
    // rcgen's default notAfter: 4096-01-01T00:00:00Z.
    assert!(metrics.contains("gjeldsbro_tls_certificate_expiry_timestamp_seconds 67090118400"));
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish_then_stops_accepting() {
    let t = TlsBroker::start().await;
    // Every lender slower than its timeout: a search takes about 300 ms.
    for (_, s) in t.fx.live_sims() {
        s.set_behaviour(Behaviour {
            latency: Latency::Fixed { ms: 2_000 },
            ..Behaviour::default()
        });
    }
    let leaf = t.client_ca.client(Some(&format!("NTRNO-{FI}")));
    let client = tls_client(&t.server_ca, Some(&leaf));
    let request = client
        .post(t.url(SEARCH_PATH))
        .json(&json!({"ssn": t.person(), "referenceID": "shutdown"}))
        .send();
    let in_flight = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let url = t.url("/healthz");
    // Stop the broker only; the fixture (lenders, store) stays until the end.
    let TlsBroker {
        broker,
        server_ca,
        fx: _fx,
        ..
    } = t;
    drop(broker);
    let answer = in_flight
        .await
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(answer.status(), 200);
    assert!(
        eventually(Duration::from_secs(5), || async {
            tls_client(&server_ca, None).get(&url).send().await.is_err()
        })
        .await,
        "still accepting after shutdown"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_at_once() {
    // Our own listener first: from now on SIGHUP cannot end the test process,
    // whether or not the broker's watcher has registered yet.
    let _ours = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).unwrap();
    let t = TlsBroker::start_with(0, "").await;
    let first = t.served_cert().await.expect("serves TLS");
    let second = t.server_ca.server("broker after SIGHUP");
    second.write(t.fx.dir.path(), "server");
    // No polling: the files alone change nothing.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(t.served_cert().await, Some(first));
    let (t, der) = (&t, &second.der);
    assert!(
        eventually(Duration::from_secs(10), || async move {
            // SAFETY: raise(3) only sends this process a signal it now handles.
            unsafe { libc::raise(libc::SIGHUP) };
            tokio::time::sleep(Duration::from_millis(200)).await;
            t.served_cert().await.as_deref() == Some(&der[..])
        })
        .await,
        "SIGHUP did not reload"
    );
}

/// Lender 0 served over TLS, requiring a client certificate from `broker_ca`.
struct TlsLender {
    fx: Fixture,
    lender_ca: Ca,
    broker_ca: Ca,
}

impl TlsLender {
    async fn start() -> TlsLender {
        let mut fx = Fixture::new(Options {
            lenders: 2,
            persons: 150,
            seed: 515,
            ..Options::default()
        })
        .await;
        let lender_ca = Ca::new("Itest Lender CA");
        let broker_ca = Ca::new("Itest Broker Client CA");
        let server = lender_ca.server("lender one");
        let spec = fx.specs[0].clone();
        let lender = sim::spawn_tls(
            "127.0.0.1:0".parse().unwrap(),
            spec.org_no.clone(),
            fx.pop.dataset(&spec.id),
            Behaviour::default(),
            SimTls {
                cert_pem: server.cert_pem.clone(),
                key_pem: server.key_pem.clone(),
                client_ca_pem: Some(broker_ca.pem.clone()),
            },
        )
        .await
        .unwrap();
        fx.base_urls[0] = lender.base_url();
        assert!(fx.base_urls[0].starts_with("https://"));
        fx.sims[0] = Some(lender);
        TlsLender {
            fx,
            lender_ca,
            broker_ca,
        }
    }

    /// The config: lender 0 trusts the lender CA; `identity` adds the broker's
    /// certificate in `[lender_tls]`.
    fn edit(&self, text: String, identity: Option<&Leaf>) -> String {
        let dir = self.fx.dir.path();
        let ca = write(dir, "lender-ca.pem", &self.lender_ca.pem);
        let url_line = format!("base_url = \"{}\"\n", self.fx.base_urls[0]);
        assert!(text.contains(&url_line));
        let mut text = text.replace(
            &url_line,
            &format!("{url_line}ca_file = \"{}\"\n", ca.display()),
        );
        if let Some(leaf) = identity {
            let (cert, key) = leaf.write(dir, "broker-client");
            text.push_str(&format!(
                "\n[lender_tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                cert.display(),
                key.display()
            ));
        }
        text
    }
}

fn metric(b: &common::Broker, lender: &str, outcome: &str) -> u64 {
    b.state
        .metrics
        .lender_calls
        .with_label_values(&[lender, outcome])
        .get()
}

fn snapshot_fallbacks(b: &common::Broker, lender: &str) -> u64 {
    b.state
        .metrics
        .fallbacks
        .with_label_values(&[lender, "snapshot"])
        .get()
}

#[tokio::test]
async fn the_broker_presents_its_certificate_to_lenders() {
    let l = TlsLender::start().await;
    let identity = l.broker_ca.client(Some("NTRNO-999000001"));
    let b = l.fx.broker_with(|t| l.edit(t, Some(&identity))).await;
    let id = l.fx.specs[0].id.clone();
    let persons = l.fx.persons_at(0);
    assert!(!persons.is_empty());
    for p in persons.iter().take(3) {
        let r = b.search(p).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.loans(), l.fx.expected_loans(p));
        assert_eq!(l.fx.sim(0).calls_for(p), 1, "the lender saw the call");
    }
    // Live answers, not the snapshot.
    assert_eq!(metric(&b, &id, "ok"), 3);
    assert_eq!(snapshot_fallbacks(&b, &id), 0);
    assert_eq!(l.fx.sim(0).failed_handshakes(), 0);
}

#[tokio::test]
async fn without_its_certificate_the_call_fails_and_the_snapshot_answers() {
    let l = TlsLender::start().await;
    let b = l.fx.broker_with(|t| l.edit(t, None)).await;
    let id = l.fx.specs[0].id.clone();
    let p = l.fx.persons_at(0)[0].clone();
    let r = b.search(&p).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Same loans, from the daily snapshot.
    assert_eq!(r.loans(), l.fx.expected_loans(&p));
    assert_eq!(r.json()["numberOfcreditorsMissing"], json!(0));
    assert_eq!(l.fx.sim(0).calls_for(&p), 0, "no request got through");
    assert_eq!(metric(&b, &id, "ok"), 0);
    assert_eq!(snapshot_fallbacks(&b, &id), 1);
    assert!(
        eventually(Duration::from_secs(5), || async {
            l.fx.sim(0).failed_handshakes() > 0
        })
        .await,
        "the lender refused no handshake"
    );
}
