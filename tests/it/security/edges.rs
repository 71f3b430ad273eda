//! The edges (issue 12, points 1 and 7): connection and request limits, a
//! request without credentials refused from its headers before any body is
//! read or any overload slot is taken, and the operations endpoints on their
//! own listener. Timings are printed for the reader, never asserted; "closed"
//! and "answered" are polled with a generous bound that only a connection
//! kept open forever (the old behaviour) exceeds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, BUREAU, Broker, Fixture, Options, SEARCH_PATH, token};

/// Far beyond every deadline the tests configure: a connection still open, or
/// a request still unanswered, after this is one the broker would keep forever.
const NEVER: Duration = Duration::from_secs(15);

/// `tables` inserted before the first `[[lenders]]` (top-level tables must not
/// land inside an array of tables' section by accident).
fn with_tables(text: String, tables: &str) -> String {
    match text.find("[[lenders]]") {
        Some(at) => format!("{}{tables}\n\n{}", &text[..at], &text[at..]),
        None => format!("{text}\n{tables}\n"),
    }
}

/// A broker with short deadlines and a small overload gate, so an attack that
/// held slots would show as 503s at once.
async fn broker(fx: &Fixture, server: &str) -> Broker {
    let server = server.to_owned();
    fx.broker_with(move |text| {
        with_tables(
            text,
            &format!(
                "[server]\n{server}\n\n[overload]\nmax_concurrent = 4\nmax_queued = 4\nmax_queue_wait_ms = 300"
            ),
        )
    })
    .await
}

async fn fixture() -> Fixture {
    Fixture::new(Options {
        lenders: 3,
        persons: 120,
        seed: 1212,
        ..Options::default()
    })
    .await
}

/// p50 and p99 of `samples`, in ms.
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e3
    };
    (at(0.50), at(0.99))
}

/// `n` genuine searches one after another; every one must answer 200.
async fn genuine_searches(b: &Broker, persons: &[String], n: usize, what: &str) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let p = &persons[i % persons.len()];
        let started = Instant::now();
        let r = b.search(p).await;
        times.push(started.elapsed());
        assert_eq!(r.status, 200, "{what}: search {i}: {}", r.text());
    }
    times
}

/// Reads until the connection is closed (EOF or reset) or `limit` passes;
/// returns whether it was closed, and what arrived.
async fn closed_within<R: tokio::io::AsyncRead + Unpin>(
    stream: &mut R,
    limit: Duration,
) -> (bool, Vec<u8>) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (false, got),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads a response head (up to the blank line); `None` if none came within
/// `limit` or the connection closed first.
async fn response_head(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(String::from_utf8_lossy(&got[..end]).into_owned());
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

fn status_of(head: &str) -> Option<u16> {
    head.split(' ').nth(1)?.parse().ok()
}

/// Headers of a search with a large declared body and, if `bearer`, a token.
fn slow_post_head(path: &str, bearer: Option<&str>, content_type: &str, length: usize) -> String {
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: broker\r\n{auth}Content-Type: {content_type}\r\n\
         Content-Length: {length}\r\n\r\n"
    )
}

/// Connections that send `head` and then one byte every `every`, until
/// `stop`; each reconnects when the broker closes it (as an attacker would).
fn trickle(
    addr: std::net::SocketAddr,
    head: String,
    connections: usize,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..connections)
        .map(|_| {
            let (head, stop) = (head.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect(addr).await else {
                        tokio::time::sleep(every).await;
                        continue;
                    };
                    if s.write_all(head.as_bytes()).await.is_err() {
                        continue;
                    }
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(every).await;
                        if s.write_all(b" ").await.is_err() {
                            break;
                        }
                    }
                }
            })
        })
        .collect()
}

/// The attack: hundreds of connections sending full headers with a large
/// `Content-Length` and then a byte now and then, without credentials (and, to
/// be sure, some with a valid token of another organisation). Genuine searches
/// answer 200 throughout; the baseline and under-attack percentiles are printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_bodies_hold_no_slot_and_searches_keep_answering() {
    let fx = fixture().await;
    let b = broker(
        &fx,
        "header_read_timeout_secs = 2\nbody_read_timeout_secs = 2\nidle_timeout_secs = 5",
    )
    .await;
    let persons = fx.persons_with_lenders(1);
    let mut baseline = genuine_searches(&b, &persons, 40, "baseline").await;

    let stop = Arc::new(AtomicBool::new(false));
    let mut attack = trickle(
        b.addr,
        slow_post_head(SEARCH_PATH, None, "application/json", 100_000),
        150,
        Duration::from_millis(500),
        stop.clone(),
    );
    let bureau = token(BUREAU, &["debt.search"]);
    attack.extend(trickle(
        b.addr,
        slow_post_head(SEARCH_PATH, Some(&bureau), "application/json", 100_000),
        30,
        Duration::from_millis(500),
        stop.clone(),
    ));
    // Let the attack take hold (every slot and queue place would be gone by now).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut under_attack = genuine_searches(&b, &persons, 40, "under attack").await;
    stop.store(true, Ordering::Relaxed);
    for t in attack {
        t.abort();
    }
    let (p50, p99) = percentiles(&mut baseline);
    let (a50, a99) = percentiles(&mut under_attack);
    println!(
        "slow bodies: baseline p50 {p50:.1} ms p99 {p99:.1} ms; under attack p50 {a50:.1} ms p99 {a99:.1} ms"
    );
    let shed = b.ops_get("/metrics").await.text();
    assert!(
        !shed
            .lines()
            .any(|l| l.starts_with("gjeldsbro_overload_rejected_total") && !l.ends_with(" 0")),
        "load shedding refused requests during the attack:\n{shed}"
    );
}

/// A request without credentials is answered 401 from its headers: the broker
/// does not wait for (or read) the 100 000 bytes it announced.
#[tokio::test(flavor = "multi_thread")]
async fn no_credentials_is_refused_before_the_body() {
    let fx = fixture().await;
    let b = broker(&fx, "body_read_timeout_secs = 30").await;
    for bearer in [None, Some("not-a-token")] {
        let mut s = TcpStream::connect(b.addr).await.expect("connect");
        s.write_all(slow_post_head(SEARCH_PATH, bearer, "application/json", 100_000).as_bytes())
            .await
            .expect("write");
        let started = Instant::now();
        let head = response_head(&mut s, NEVER).await;
        println!("401 after {:?} ({bearer:?})", started.elapsed());
        let head = head.expect("an answer without the body being sent");
        assert_eq!(status_of(&head), Some(401), "{head}");
    }
    // Nothing was admitted past load shedding for them.
    let metrics = b.ops_get("/metrics").await.text();
    assert!(
        metrics.contains("gjeldsbro_api_requests_running 0"),
        "{metrics}"
    );
}

/// A body that does not arrive within the body deadline is answered 408, on the
/// API (with credentials) and on the embedded page's session form (whose
/// credential is in the body).
#[tokio::test(flavor = "multi_thread")]
async fn a_late_body_is_answered_408() {
    let fx = fixture().await;
    let b = broker(
        &fx,
        "body_read_timeout_secs = 1\nheader_read_timeout_secs = 5",
    )
    .await;
    let fi = common::fi_token();
    let cases = [
        slow_post_head(SEARCH_PATH, Some(&fi), "application/json", 100),
        slow_post_head(
            "/embed/v1/session",
            None,
            "application/x-www-form-urlencoded",
            200,
        ),
    ];
    for head in cases {
        let mut s = TcpStream::connect(b.addr).await.expect("connect");
        s.write_all(head.as_bytes()).await.expect("write");
        s.write_all(b"{\"ssn\":").await.expect("write");
        let head = response_head(&mut s, NEVER)
            .await
            .expect("an answer to a body that never completes");
        assert_eq!(status_of(&head), Some(408), "{head}");
    }
    // Genuine requests are unaffected.
    let p = &fx.persons_with_lenders(1)[0];
    assert_eq!(b.search(p).await.status, 200);
}

/// Slowloris: connections that send half a request head (or nothing at all, or
/// only the HTTP/2 preface) are closed at the header deadline, while genuine
/// searches answer 200 throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_sent_headers_are_closed_at_the_header_deadline() {
    let fx = fixture().await;
    let b = broker(&fx, "header_read_timeout_secs = 1\nidle_timeout_secs = 5").await;
    let persons = fx.persons_with_lenders(1);
    let mut baseline = genuine_searches(&b, &persons, 30, "baseline").await;

    // Half a head, trickled; nothing at all; the HTTP/2 preface and SETTINGS only.
    let mut victims = Vec::new();
    for i in 0..60 {
        let mut s = TcpStream::connect(b.addr).await.expect("connect");
        match i % 3 {
            0 => s
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: broker\r\n")
                .await
                .expect("write"),
            1 => {}
            _ => s
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
                .await
                .expect("write"),
        }
        victims.push(s);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let loris = {
        let stop = stop.clone();
        let mut streams: Vec<TcpStream> = victims.drain(..20).collect();
        tokio::spawn(async move {
            let mut closed = vec![false; streams.len()];
            let mut probe = [0u8; 64];
            while !stop.load(Ordering::Relaxed) && closed.iter().any(|c| !c) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                for (s, c) in streams.iter_mut().zip(closed.iter_mut()) {
                    if *c {
                        continue;
                    }
                    // One more header line, never the blank line that ends the head.
                    if s.write_all(b"X-Slow: 1\r\n").await.is_err() {
                        *c = true;
                        continue;
                    }
                    if let Ok(Ok(0)) =
                        tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
                    {
                        *c = true;
                    }
                }
            }
            closed.iter().all(|c| *c)
        })
    };
    let mut under_attack = genuine_searches(&b, &persons, 30, "under slowloris").await;
    let (p50, p99) = percentiles(&mut baseline);
    let (a50, a99) = percentiles(&mut under_attack);
    println!(
        "slowloris: baseline p50 {p50:.1} ms p99 {p99:.1} ms; under attack p50 {a50:.1} ms p99 {a99:.1} ms"
    );
    for (i, s) in victims.iter_mut().enumerate() {
        let (closed, _) = closed_within(s, NEVER).await;
        assert!(closed, "silent connection {i} is still open");
    }
    let all_closed = tokio::time::timeout(NEVER, loris).await;
    stop.store(true, Ordering::Relaxed);
    assert!(
        matches!(all_closed, Ok(Ok(true))),
        "a trickling half-sent head was kept open"
    );
    let metrics = b.ops_get("/metrics").await.text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("gjeldsbro_http_connections_closed_total")
                && l.contains("reason=\"header_timeout\"")),
        "{metrics}"
    );
}

/// A keep-alive connection with nothing in flight is closed after the idle
/// timeout, over HTTP/1.1 and HTTP/2 alike.
#[tokio::test(flavor = "multi_thread")]
async fn idle_keep_alive_connections_are_closed() {
    let fx = fixture().await;
    let b = broker(&fx, "header_read_timeout_secs = 2\nidle_timeout_secs = 1").await;
    // HTTP/1.1: one request, its answer, then silence.
    let mut s = TcpStream::connect(b.addr).await.expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: broker\r\n\r\n")
        .await
        .expect("write");
    let head = response_head(&mut s, NEVER).await.expect("an answer");
    assert_eq!(status_of(&head), Some(200), "{head}");
    let started = Instant::now();
    let (closed, _) = closed_within(&mut s, NEVER).await;
    println!(
        "idle HTTP/1.1 connection closed after {:?}",
        started.elapsed()
    );
    assert!(closed, "an idle keep-alive connection stayed open");

    // HTTP/2 (prior knowledge): a request, then an idle connection.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let r = h2
        .get(format!("{}/healthz", b.url))
        .send()
        .await
        .expect("h2 request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let open = || async {
        let m = b.ops_get("/metrics").await.text();
        m.lines()
            .find(|l| l.starts_with("gjeldsbro_http_connections_open{listener=\"public\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let drained = common::eventually(NEVER, || async { open().await == Some(0.0) }).await;
    assert!(drained, "idle connections still open: {:?}", open().await);
}

/// With the cap reached by silent connections, the broker stops accepting
/// (no file descriptors spent, no accept errors), closes them at the header
/// deadline, and `/healthz` answers on both listeners.
#[tokio::test(flavor = "multi_thread")]
async fn the_connection_cap_holds_and_health_still_answers() {
    let fx = fixture().await;
    let b = broker(&fx, "max_connections = 8\nheader_read_timeout_secs = 2").await;
    let open = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("gjeldsbro_http_connections_open{listener=\"public\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let mut silent = Vec::new();
    for _ in 0..40 {
        silent.push(TcpStream::connect(b.addr).await.expect("connect"));
    }
    // The operations listener is not behind the public cap.
    let mut peak = 0.0f64;
    for _ in 0..10 {
        let m = b.ops_get("/metrics").await;
        assert_eq!(m.status, 200);
        let now = open(&m.text()).expect("the open-connections gauge");
        peak = peak.max(now);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("open public connections at peak: {peak}");
    assert!(peak <= 8.0, "{peak} connections open past a cap of 8");
    assert_eq!(b.ops_get("/healthz").await.status, 200);
    // The public /healthz waits its turn behind the silent ones, which are
    // closed at the header deadline, and answers.
    let started = Instant::now();
    let health = b.get("/healthz").await;
    println!("public /healthz answered after {:?}", started.elapsed());
    assert_eq!(health.status, 200);
    for (i, s) in silent.iter_mut().enumerate() {
        let (closed, _) = closed_within(s, NEVER + NEVER).await;
        assert!(closed, "silent connection {i} is still open");
    }
}

/// `/metrics` and the detailed readiness are served on `ops_listen` only; the
/// public port answers `/metrics` with 404 and `/readyz` with a bare status.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_on_the_operations_listener_only() {
    let fx = fixture().await;
    let b = fx.broker().await;
    let p = &fx.persons_with_lenders(1)[0];
    assert_eq!(b.search(p).await.status, 200);

    b.get("/metrics").await.assert_error(404);
    let ops = b.ops_get("/metrics").await;
    assert_eq!(ops.status, 200);
    assert!(ops.text().contains("gjeldsbro_lender_calls_total"));

    let bare = b.get("/readyz").await;
    assert_eq!(bare.status, 200);
    assert_eq!(bare.json(), json!({"status": "ready"}));
    let detail = b.ops_get("/readyz").await;
    assert_eq!(detail.status, 200);
    assert_eq!(detail.json()["store"], json!(true));
    assert_eq!(b.get("/healthz").await.status, 200);
    assert_eq!(b.ops_get("/healthz").await.status, 200);
    // The API is not on the operations listener.
    assert_eq!(b.ops_get(SEARCH_PATH).await.status, 404);
    assert_ne!(b.ops_addr.port(), b.addr.port());
}

/// The TLS listener has the same limits: a connection that never completes its
/// handshake, and one that completes it and then sends half a head or nothing,
/// are closed at the header deadline; a genuine search over TLS answers.
#[tokio::test(flavor = "multi_thread")]
async fn the_tls_listener_closes_silent_and_half_sent_connections() {
    let fx = fixture().await;
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let cert_pem = certified.cert.pem();
    let cert_path = fx.dir.path().join("edge-cert.pem");
    let key_path = fx.dir.path().join("edge-key.pem");
    std::fs::write(&cert_path, &cert_pem).expect("write cert");
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).expect("write key");
    let tls = format!(
        "\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert_path.display(),
        key_path.display()
    );
    let b = fx
        .broker_with(move |text| {
            with_tables(
                text,
                "[server]\nheader_read_timeout_secs = 1\nidle_timeout_secs = 5",
            ) + &tls
        })
        .await;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(certified.cert.der().clone())
        .expect("trust the certificate");
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let handshaken = || async {
        let tcp = TcpStream::connect(b.addr).await.expect("connect");
        connector
            .connect(name.clone(), tcp)
            .await
            .expect("handshake")
    };

    // A genuine search over TLS.
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem")])
        .build()
        .expect("client");
    let p = &fx.persons_with_lenders(1)[0];
    let r = client
        .post(format!("https://127.0.0.1:{}{SEARCH_PATH}", b.addr.port()))
        .bearer_auth(common::fi_token())
        .json(&json!({"ssn": p, "referenceID": "edges-tls"}))
        .send()
        .await
        .expect("search over TLS");
    assert_eq!(r.status(), 200);

    let mut no_handshake = TcpStream::connect(b.addr).await.expect("connect");
    let mut silent = handshaken().await;
    let mut half = handshaken().await;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: broker\r\n")
        .await
        .expect("write");
    half.flush().await.expect("flush");
    assert!(
        closed_within(&mut no_handshake, NEVER).await.0,
        "a connection without a handshake stayed open"
    );
    assert!(
        closed_within(&mut silent, NEVER).await.0,
        "a silent TLS connection stayed open"
    );
    assert!(
        closed_within(&mut half, NEVER).await.0,
        "a half-sent head over TLS stayed open"
    );
}

/// The embedded page authenticates by its session cookie (a header), so a
/// request without a session is refused before it may take an overload slot:
/// with the gate full it gets `401`, not `503`. Opening a session takes no slot
/// at all (its credential is in the form body; it calls no lender).
#[tokio::test(flavor = "multi_thread")]
async fn the_embedded_page_without_a_session_takes_no_slot() {
    use gjeldsbro_loadtest::sim::{Behaviour, Latency};
    // A lender timeout beyond the lenders' latency: the searches hold the gate
    // for the whole test.
    let fx = Fixture::new(Options {
        lenders: 3,
        persons: 120,
        seed: 1212,
        timeout_ms: 10_000,
        ..Options::default()
    })
    .await;
    let b = fx
        .broker_with(|text| {
            with_tables(
                text,
                "[overload]\nmax_concurrent = 1\nmax_queued = 1\nmax_queue_wait_ms = 5000",
            )
        })
        .await;
    for (_, sim) in fx.live_sims() {
        sim.set_behaviour(Behaviour {
            latency: Latency::Fixed { ms: 4000 },
            ..Behaviour::default()
        });
    }
    // One search runs and one waits: the gate is full.
    let person = fx.persons_with_lenders(1)[0].clone();
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let (url, p) = (b.url.clone(), person.clone());
            tokio::spawn(async move {
                common::client()
                    .post(format!("{url}{SEARCH_PATH}"))
                    .bearer_auth(common::fi_token())
                    .json(&json!({"ssn": p, "referenceID": "hold"}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let full = common::eventually(NEVER, || async {
        b.ops_get("/metrics")
            .await
            .text()
            .contains("gjeldsbro_api_requests_running 1")
    })
    .await;
    assert!(full, "the searches never took the gate");

    let page = b
        .get(&format!("/embed/v1/debt?partner={}", common::PARTNER))
        .await;
    assert_eq!(page.status, 401, "{}", page.text());
    // A person's token on an organisation's route is refused before the slot
    // too (it would otherwise queue, then get 403).
    let as_person = b
        .search_as(
            &common::person_token(&person),
            &json!({"ssn": person, "referenceID": "person"}),
        )
        .await;
    assert_eq!(as_person.status, 403, "{}", as_person.text());
    let client = common::client();
    for (path, form) in [
        ("/embed/v1/consent", "csrf=x&partner=910000003"),
        ("/embed/v1/consent/withdraw", "csrf=x&consent_id=y"),
        ("/embed/v1/session", "token=not-a-token&partner=910000003"),
    ] {
        let r = client
            .post(format!("{}{path}", b.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status().as_u16(), 401, "{path}");
    }
    for h in holders {
        let _ = h.await;
    }
}
