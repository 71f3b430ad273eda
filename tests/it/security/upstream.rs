//! The broker's edges towards issuers and lenders (issue 12, points 2, 5, 6
//! and 8): no dev key, dev tokens or plain-HTTP lenders outside dev mode;
//! token lifetimes; lender redirects never followed; lender timestamps
//! validated and written in one form; `traceparent` forwarded only when valid.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gjeldsbro::app::AppState;
use gjeldsbro::config::{Config, ConfigError};
use gjeldsbro::ingest::IngestError;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::common::{self, AUDIENCE, Broker, FI, Fixture, ISSUER, Options};

// === helpers ===

/// The test config as a production operator would have it: `dev_mode` left
/// out (so it is off), everything else as the fixture writes it.
fn without_dev_mode(text: &str) -> String {
    let out = text.replace("dev_mode = true\n", "");
    assert_ne!(out, text, "the fixture config sets dev_mode");
    out
}

/// Runs the real binary with `args`, giving up (and killing it) after `limit`.
/// `None`: it was still running.
fn run_bin(args: &[&str], limit: Duration) -> Option<Output> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gjeldsbro"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run gjeldsbro");
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            return Some(child.wait_with_output().expect("output"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The lines of `stderr` that are not JSON log events: what an operator reads.
fn message_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('{'))
        .map(str::to_owned)
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A token for the FI signed with the dev key, with the given `iat` and `exp`.
fn token_with_times(iat: u64, exp: u64) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(gjeldsbro::auth::devtoken::DEV_KID.to_owned());
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "iat": iat, "exp": exp, "jti": "upstream-1",
        "scope": "debt.search",
        "consumer": {"authority": "iso6523-actorid-upis", "ID": format!("0192:{FI}")},
    });
    let key = EncodingKey::from_ec_pem(&common::dev_key()).expect("dev key");
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

/// A lender the test scripts: every request is recorded (its headers), and
/// answered by `script` from the `customerID` header.
struct ScriptedLender {
    url: String,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    _task: tokio::task::JoinHandle<()>,
}

type Script = Arc<dyn Fn(&str) -> Response + Send + Sync>;

impl ScriptedLender {
    async fn start(script: Script) -> ScriptedLender {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorded = seen.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let script = script.clone();
            let recorded = recorded.clone();
            async move {
                let customer = headers
                    .get("customerID")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                recorded.lock().expect("lock").push(headers);
                script(&customer)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ScriptedLender {
            url: format!("http://{addr}"),
            seen,
            _task: task,
        }
    }

    fn requests(&self) -> usize {
        self.seen.lock().expect("lock").len()
    }

    fn traceparents(&self) -> Vec<Option<String>> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .map(|h| {
                h.get("traceparent")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            })
            .collect()
    }
}

/// A fixture of one lender (1 s timeout) whose live API is a scripted lender
/// answering every customer with one charge card.
async fn one_scripted_lender(
    account: &'static str,
    timestamp: &'static str,
    balance: i64,
) -> (Fixture, ScriptedLender) {
    let fx = Fixture::new(Options {
        lenders: 1,
        timeout_ms: 1000,
        ..Options::default()
    })
    .await;
    let org = fx.specs[0].org_no.clone();
    let lender = ScriptedLender::start(Arc::new(move |c| {
        answer(c, &org, json!([card(account, timestamp, balance)]))
    }))
    .await;
    (fx, lender)
}

/// The getDataForSSN answer of lender `org` for `customer` with `loans`.
fn answer(customer: &str, org: &str, loans: Value) -> Response {
    axum::Json(json!({"customerID": customer, "financialInstitutionID": org, "loans": loans}))
        .into_response()
}

/// A charge card with the given timestamp.
fn card(account: &str, timestamp: &str, balance: i64) -> Value {
    json!({"type": "chargeCard", "accountID": account, "timestamp": timestamp, "coBorrower": 0,
           "interestBearingBalance": balance, "nonInterestBearingBalance": 0})
}

/// The fixture's config with lender `i`'s base URL replaced by `url`.
fn pointing(fx: &Fixture, i: usize, url: &str) -> impl FnOnce(String) -> String {
    let old = format!("base_url = \"{}\"\n", fx.base_urls[i]);
    let new = format!("base_url = \"{url}\"\n");
    move |text: String| {
        assert!(text.contains(&old), "lender {i}'s base_url in the config");
        text.replace(&old, &new)
    }
}

fn lender_calls(b: &Broker, lender: &str, outcome: &str) -> u64 {
    b.state
        .metrics
        .lender_calls
        .with_label_values(&[lender, outcome])
        .get()
}

fn timestamps(v: &Value) -> Vec<String> {
    common::loans_of(v)
        .iter()
        .filter_map(|l| l["timestamp"].as_str().map(str::to_owned))
        .collect()
}

// === point 2: no dev key, dev tokens or plain HTTP outside dev mode ===

#[tokio::test]
async fn serve_refuses_the_dev_jwks_without_dev_mode_in_one_line() {
    let fx = Fixture::new(Options {
        lenders: 0,
        ..Options::default()
    })
    .await;
    let text = without_dev_mode(&fx.config_text("127.0.0.1:0", false));
    let config = write(fx.dir.path(), "production.toml", &text);
    let config_arg = config.to_string_lossy().into_owned();
    let out = run_bin(&["serve", "--config", &config_arg], Duration::from_secs(20))
        .expect("serve started on the public dev key");
    assert!(!out.status.success(), "serve exited successfully");
    let lines = message_lines(&out);
    assert_eq!(lines.len(), 1, "one line: {lines:?}");
    let line = &lines[0];
    println!("serve said: {line}");
    assert!(line.starts_with("error:"), "{line}");
    assert!(
        line.contains("dev key") && line.contains("dev_mode"),
        "names the problem and the way out: {line}"
    );

    // The same in-process, and with dev_mode the same JWKS is fine.
    match AppState::build(Config::parse(&text).expect("config")).await {
        Ok(_) => panic!("the broker built on the dev key without dev_mode"),
        Err(e) => assert!(e.to_string().contains("dev key"), "{e}"),
    }
    let dev = fx.config_text("127.0.0.1:0", false);
    assert!(
        AppState::build(Config::parse(&dev).expect("config"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn dev_token_refuses_a_config_without_dev_mode() {
    let fx = Fixture::new(Options {
        lenders: 0,
        ..Options::default()
    })
    .await;
    let production = write(
        fx.dir.path(),
        "production.toml",
        &without_dev_mode(&fx.config_text("127.0.0.1:0", false)),
    );
    let dev = write(
        fx.dir.path(),
        "dev.toml",
        &fx.config_text("127.0.0.1:0", false),
    );
    let mint = |config: &Path, extra: &[&str]| {
        let config = config.to_string_lossy().into_owned();
        let mut args = vec!["dev-token", "--config", &config, "--org", FI];
        args.extend_from_slice(extra);
        run_bin(&args, Duration::from_secs(20)).expect("dev-token finishes")
    };

    let out = mint(&production, &[]);
    assert!(!out.status.success(), "minted for a production config");
    assert!(out.stdout.is_empty(), "no token printed");
    let said = message_lines(&out).join("\n");
    println!("dev-token said: {said}");
    assert!(said.contains("dev_mode"), "{said}");

    // In dev mode it mints, for no longer than the broker accepts.
    let ok = mint(&dev, &[]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout)
            .trim()
            .split('.')
            .count(),
        3
    );
    let ten_years = mint(&dev, &["--ttl-secs", "315360000"]);
    assert!(!ten_years.status.success(), "a 10-year dev token");
    assert!(ten_years.stdout.is_empty());
}

#[tokio::test]
async fn plain_http_lenders_are_refused_outside_dev_mode() {
    let fx = Fixture::new(Options {
        lenders: 2,
        ..Options::default()
    })
    .await;
    let text = without_dev_mode(&fx.config_text("127.0.0.1:0", false));
    assert!(text.contains("base_url = \"http://"));
    match Config::parse(&text) {
        Ok(_) => panic!("http:// lender URLs accepted outside dev mode"),
        Err(ConfigError::Invalid(e)) => {
            assert!(e.contains("https") && e.contains("lender-1"), "{e}")
        }
        Err(e) => panic!("refused for another reason: {e}"),
    }
    let https = text.replace("base_url = \"http://", "base_url = \"https://");
    assert!(Config::parse(&https).is_ok(), "https:// is fine");
}

#[tokio::test]
async fn long_lived_and_future_tokens_are_refused() {
    let fx = Fixture::new(Options {
        lenders: 1,
        ..Options::default()
    })
    .await;
    let b = fx.broker().await;
    let person = fx.persons_at(0)[0].clone();
    let body = json!({"ssn": person, "referenceID": "upstream"});
    let year = 365 * 86_400;

    let good = b
        .search_as(&token_with_times(now(), now() + 600), &body)
        .await;
    assert_eq!(good.status, 200, "{}", good.text());

    let centuries = token_with_times(now(), now() + 260 * year);
    b.search_as(&centuries, &body).await.assert_error(401);
    let ahead = token_with_times(now() + 3 * year, now() + 3 * year + 600);
    b.search_as(&ahead, &body).await.assert_error(401);
}

// === point 5: lender redirects are never followed ===

/// A listener that counts the connections it is offered (and holds them).
async fn catcher() -> (SocketAddr, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (addr, count)
}

#[tokio::test]
async fn a_lender_redirect_sends_nothing_to_the_location_and_counts_as_its_failure() {
    for status in [StatusCode::FOUND, StatusCode::TEMPORARY_REDIRECT] {
        let fx = Fixture::new(Options {
            lenders: 1,
            timeout_ms: 1000,
            ..Options::default()
        })
        .await;
        let (elsewhere, offered) = catcher().await;
        let location = format!("http://{elsewhere}/steal");
        let redirector = ScriptedLender::start(Arc::new(move |_| {
            (status, [(header::LOCATION, location.clone())]).into_response()
        }))
        .await;
        let b = fx.broker_with(pointing(&fx, 0, &redirector.url)).await;
        let id = fx.specs[0].id.clone();
        let person = fx.persons_at(0)[0].clone();

        let r = b.search(&person).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(redirector.requests() >= 1, "the lender was asked");
        // Let anything that was going to follow the redirect arrive.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            offered.load(Ordering::SeqCst),
            0,
            "{status}: the broker followed the redirect with the person's id"
        );
        assert_eq!(
            r.loans(),
            fx.expected_loans(&person),
            "{status}: the snapshot answers for the lender"
        );
        assert_eq!(
            lender_calls(&b, &id, "error"),
            1,
            "{status}: counted as the lender's failure"
        );
        assert_eq!(lender_calls(&b, &id, "ok"), 0);
        assert_eq!(
            b.state
                .metrics
                .fallbacks
                .with_label_values(&[id.as_str(), "snapshot"])
                .get(),
            1
        );
    }
}

// === point 6: lender timestamps validated and written in one form ===

#[tokio::test]
async fn lender_timestamps_come_out_in_one_form() {
    let fx = Fixture::new(Options {
        lenders: 2,
        timeout_ms: 1000,
        ..Options::default()
    })
    .await;
    // Two lenders, one instant, each written the lender's own way.
    let orgs: Vec<String> = fx.specs.iter().map(|s| s.org_no.clone()).collect();
    let (org_a, org_b) = (orgs[0].clone(), orgs[1].clone());
    let a = ScriptedLender::start(Arc::new(move |c| {
        answer(
            c,
            &org_a,
            json!([card("A-1", "2026-01-15T05:00:00Z", 1000)]),
        )
    }))
    .await;
    let b_lender = ScriptedLender::start(Arc::new(move |c| {
        answer(
            c,
            &org_b,
            json!([card("B-1", "2026-01-15T06:00:00.123+01:00", 2000)]),
        )
    }))
    .await;
    let to_a = pointing(&fx, 0, &a.url);
    let to_b = pointing(&fx, 1, &b_lender.url);
    let b = fx.broker_with(|t| to_b(to_a(t))).await;
    let person = fx
        .persons_with_lenders(2)
        .into_iter()
        .find(|p| fx.indexed_lenders(p) == vec![0, 1])
        .expect("a person at both lenders");

    let r = b.search(&person).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let shown = timestamps(&r.json());
    println!("search answer timestamps: {shown:?}");
    assert_eq!(
        shown,
        vec!["2026-01-15T00:00:00Z", "2026-01-15T00:00:00Z"],
        "one form, the UTC date, in a redacted answer"
    );

    // The person's own view names the creditors: UTC to the second.
    let own = b
        .get_as("/v1/me/debt", &common::person_token(&person))
        .await;
    assert_eq!(own.status, 200, "{}", own.text());
    assert_eq!(
        timestamps(&own.json()),
        vec!["2026-01-15T05:00:00Z", "2026-01-15T05:00:00Z"]
    );
}

#[tokio::test]
async fn a_markup_timestamp_is_a_malformed_answer() {
    let (fx, lender) = one_scripted_lender("X-1", "<b>x</b>", 1000).await;
    let b = fx.broker_with(pointing(&fx, 0, &lender.url)).await;
    let id = fx.specs[0].id.clone();
    let person = fx.persons_at(0)[0].clone();

    let r = b.search(&person).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(lender.requests() >= 1);
    assert!(!r.text().contains("<b>"), "{}", r.text());
    assert_eq!(
        r.loans(),
        fx.expected_loans(&person),
        "the snapshot answers instead"
    );
    assert_eq!(lender_calls(&b, &id, "malformed"), 1);
}

#[tokio::test]
async fn snapshot_rows_do_not_carry_the_delivery_instant() {
    let fx = Fixture::new(Options {
        lenders: 1,
        down: vec![0],
        ..Options::default()
    })
    .await;
    let b = fx.broker().await;
    let spec = &fx.specs[0];
    let person = fx.persons_at(0)[0].clone();
    // A delivery whose loans carry no timestamp: the rows get the time the
    // delivery was received, the same for every person of this lender.
    let mut customers = serde_json::to_value(fx.pop.dataset(&spec.id)).expect("json");
    for c in customers.as_array_mut().expect("customers") {
        for l in c["loans"].as_array_mut().expect("loans") {
            l.as_object_mut().expect("loan").remove("timestamp");
        }
    }
    let doc = json!({"providerID": gjeldsbro_adapter::provider_id(&spec.org_no),
                     "customers": customers});
    b.state
        .ingestor
        .load_dataset(
            &spec.id,
            std::io::Cursor::new(serde_json::to_vec(&doc).expect("json")),
            "file",
            "upstream",
            false,
        )
        .await
        .expect("ingest");

    let r = b.search(&person).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let today = time::OffsetDateTime::now_utc().date();
    let shown = timestamps(&r.json());
    println!("snapshot timestamps: {shown:?}");
    assert!(!shown.is_empty());
    for t in &shown {
        assert!(
            *t == format!("{today}T00:00:00Z")
                || *t == format!("{}T00:00:00Z", today.previous_day().expect("a day")),
            "the day only, not the delivery instant: {t}"
        );
    }
}

#[tokio::test]
async fn ingest_rejects_a_bad_timestamp_and_keeps_the_old_data() {
    let fx = Fixture::new(Options {
        lenders: 1,
        down: vec![0],
        ..Options::default()
    })
    .await;
    let b = fx.broker().await;
    let spec = &fx.specs[0];
    let person = fx.persons_at(0)[0].clone();
    for bad in ["<b>x</b>", "15.01.2026", "2026-01-15T25:00:00Z"] {
        let mut customers = serde_json::to_value(fx.pop.dataset(&spec.id)).expect("json");
        let last = customers
            .as_array_mut()
            .expect("customers")
            .last_mut()
            .expect("a customer");
        last["loans"][0]["timestamp"] = json!(bad);
        let doc = json!({"providerID": gjeldsbro_adapter::provider_id(&spec.org_no),
                         "customers": customers});
        let result = b
            .state
            .ingestor
            .load_dataset(
                &spec.id,
                std::io::Cursor::new(serde_json::to_vec(&doc).expect("json")),
                "file",
                "upstream",
                false,
            )
            .await;
        match result {
            Err(IngestError::Rejected(r)) => assert_eq!(r.rule, "bad_timestamp", "{bad}: {r}"),
            other => panic!("{bad}: delivery not rejected: {other:?}"),
        }
        // The lender is down: the snapshot in force answers, unchanged.
        let r = b.search(&person).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.loans(), fx.expected_loans(&person), "{bad}: old data");
    }
}

// === point 8: traceparent forwarded only when valid ===

#[tokio::test]
async fn only_a_valid_traceparent_reaches_the_lender() {
    let (fx, lender) = one_scripted_lender("T-1", "2026-01-15T05:00:00Z", 1000).await;
    // No cache: every search reaches the lender.
    let b = fx
        .broker_with(|t| {
            let t = pointing(&fx, 0, &lender.url)(t);
            format!("{t}\n[cache]\nttl_ms = 0\n")
        })
        .await;
    let person = fx.persons_at(0)[0].clone();
    let body = json!({"ssn": person, "referenceID": "upstream"});
    let valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let garbage = [
        "garbage",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-and-more",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ];
    let token = common::fi_token();
    for sent in std::iter::once(valid).chain(garbage) {
        let before = lender.requests();
        let r = b
            .post_raw(
                common::SEARCH_PATH,
                Some(&token),
                serde_json::to_vec(&body).expect("json"),
                &[("traceparent", sent)],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let got = lender.traceparents();
        assert_eq!(got.len(), before + 1, "one call per search");
        let forwarded = got[before].clone().expect("a traceparent is sent");
        if sent == valid {
            assert_eq!(forwarded, valid, "a valid one is passed on");
        } else {
            assert_ne!(forwarded, sent, "garbage forwarded");
            assert!(
                !forwarded.contains("4bf92f3577b34da6a3ce929d0e0e4736")
                    && !forwarded.contains("4BF92F3577B34DA6A3CE929D0E0E4736"),
                "a fresh trace, not the caller's: {forwarded}"
            );
            let fields: Vec<&str> = forwarded.split('-').collect();
            assert_eq!(fields.len(), 4, "{forwarded}");
            assert_eq!(
                (fields[0], fields[1].len(), fields[2].len()),
                ("00", 32, 16)
            );
        }
    }
}
