//! The embeddable page in a real browser (headless Chromium, driven over the
//! DevTools protocol): a partner's page frames it, the person reads the totals,
//! gives the consent with the keyboard, and withdraws it with the mouse; the
//! consent exists in between. A page on an origin the config does not name
//! cannot frame it. Also the page's headers and CSRF check without a browser.
//!
//! Needs `chromium` (Debian's package; `GJELDSBRO_CHROMIUM` names another
//! binary). Without it the browser test prints why and passes, unless
//! `GJELDSBRO_REQUIRE_CHROMIUM=1` (CI sets it). The screenshot goes to
//! `target/tmp/embed-screenshot.png`, and to `docs/embed-screenshot.png` with
//! `GJELDSBRO_UPDATE_SCREENSHOT=1`.

use crate::common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use axum::response::Html;
use base64::Engine;
use common::{AUDIENCE, Fixture, ISSUER, Options, PARTNER, person_token, token};
use futures::{SinkExt, StreamExt};
use gjeldsbro::auth::devtoken::{self, DevClaims};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

const FORM: &str = "application/x-www-form-urlencoded";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A minimal DevTools-protocol client: one WebSocket to the browser, commands
/// to one page session (flattened), events ignored.
struct Cdp {
    ws: Ws,
    next: u64,
    session: Option<String>,
}

impl Cdp {
    async fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next += 1;
        let mut msg = json!({"id": self.next, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .expect("send to chromium");
        loop {
            let m = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer from chromium"))
                .expect("chromium closed the connection")
                .expect("websocket error");
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).expect("CDP JSON");
                if v["id"] == json!(self.next) {
                    return match v.get("error") {
                        Some(e) => Err(e.clone()),
                        None => Ok(v["result"].clone()),
                    };
                }
            }
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        match self.try_call(method, params).await {
            Ok(v) => v,
            Err(e) => panic!("{method}: {e}"),
        }
    }

    /// Evaluates `expr` in the top page.
    async fn eval_top(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// The id of the child frame whose URL contains `part`.
    async fn frame(&mut self, part: &str) -> Option<String> {
        let tree = self.call("Page.getFrameTree", json!({})).await;
        tree["frameTree"]["childFrames"]
            .as_array()?
            .iter()
            .map(|f| &f["frame"])
            .find(|f| f["url"].as_str().is_some_and(|u| u.contains(part)))
            .and_then(|f| f["id"].as_str().map(str::to_owned))
    }

    /// Evaluates `expr` inside a frame (an isolated world: DevTools may look
    /// into a cross-origin frame; the partner's own scripts may not).
    async fn eval_in(&mut self, frame: &str, expr: &str) -> Option<Value> {
        let world = self
            .try_call(
                "Page.createIsolatedWorld",
                json!({"frameId": frame, "worldName": "itest"}),
            )
            .await
            .ok()?;
        let r = self
            .try_call(
                "Runtime.evaluate",
                json!({"expression": expr, "contextId": world["executionContextId"], "returnByValue": true}),
            )
            .await
            .ok()?;
        if r.get("exceptionDetails").is_some() {
            return None;
        }
        Some(r["result"]["value"].clone())
    }

    /// Polls `expr` in the frame until it gives a string containing `want`.
    async fn wait_for_text(&mut self, part: &str, expr: &str, want: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(frame) = self.frame(part).await
                && let Some(Value::String(s)) = self.eval_in(&frame, expr).await
                && s.contains(want)
            {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {want:?} from {expr}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn key(&mut self, key: &str, code: u32, text: Option<&str>) {
        let mut down = json!({"type": "keyDown", "key": key, "code": key,
            "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code});
        if let Some(t) = text {
            down["text"] = json!(t);
        }
        self.call("Input.dispatchKeyEvent", down).await;
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": key,
                "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}),
        )
        .await;
    }

    async fn click(&mut self, x: f64, y: f64) {
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }
}

/// A headless Chromium with a DevTools session on one blank page.
struct Browser {
    _child: tokio::process::Child,
    _profile: tempfile::TempDir,
    cdp: Cdp,
}

fn chromium_binary() -> Option<String> {
    if let Ok(b) = std::env::var("GJELDSBRO_CHROMIUM") {
        return Some(b);
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new("which")
                .arg(b)
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(str::to_owned)
}

async fn launch(binary: &str) -> Browser {
    let profile = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--window-size=1000,1500",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromium");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let ws_url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(i) = line.find("ws://") {
                return line[i..].trim().to_owned();
            }
        }
        panic!("chromium exited without a DevTools address");
    })
    .await
    .expect("chromium did not start within 30 s");
    // Keep draining stderr so Chromium never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let (ws, _) = tokio_tungstenite::connect_async(ws_url.as_str())
        .await
        .expect("connect to chromium");
    let mut cdp = Cdp {
        ws,
        next: 0,
        session: None,
    };
    let target = cdp
        .call("Target.createTarget", json!({"url": "about:blank"}))
        .await;
    let attached = cdp
        .call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        )
        .await;
    cdp.session = attached["sessionId"].as_str().map(str::to_owned);
    cdp.call("Page.enable", json!({})).await;
    cdp.call("Runtime.enable", json!({})).await;
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1000, "height": 1500, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    Browser {
        _child: child,
        _profile: profile,
        cdp,
    }
}

/// What the partner posts into the iframe: a fresh embed token for the person
/// (the embed audience and scope, two minutes, used once).
fn embed_token(pid: &str) -> String {
    devtoken::mint(
        &common::dev_key(),
        devtoken::DEV_KID,
        ISSUER,
        &format!("{AUDIENCE}/embed"),
        DevClaims {
            org_no: None,
            scopes: vec!["gjeldsbro:embed".into()],
            pid: Some(pid.to_owned()),
            ttl_secs: 120,
        },
    )
    .expect("mint")
}

/// The partner's page: starts the person's session in the iframe by posting
/// an embed token for the person into it (never in a URL).
fn partner_page(broker: &str, person_token: &str) -> String {
    format!(
        r#"<!doctype html><html lang="nb"><head><meta charset="utf-8"><title>Itest Nettbank</title></head>
<body style="margin:0;font-family:sans-serif;background:#eef2f7">
<header style="background:#0b3d91;color:#fff;padding:12px 20px;font-size:18px">Itest Nettbank – Min økonomi</header>
<form id="start" method="post" action="{broker}/embed/v1/session" target="gjeld">
<input type="hidden" name="token" value="{person_token}">
<input type="hidden" name="partner" value="{PARTNER}">
<input type="hidden" name="ref" value="sess-1">
</form>
<iframe name="gjeld" id="gjeld" title="Gjeldsopplysninger fra Gjeldsbro"
 style="display:block;border:0;width:960px;height:1400px;margin:10px 20px;background:#fff"></iframe>
<script>document.getElementById('start').submit();</script>
</body></html>"#
    )
}

/// Serves the partner's page at `/` on the given listener, with a fresh embed
/// token for `person` on every load (each token opens one session).
fn serve_partner(listener: tokio::net::TcpListener, broker: String, person: String) {
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let html = partner_page(&broker, &embed_token(&person));
            async move { Html(html) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

/// NOK from øre as the page writes it: `12 345,67 kr` with non-breaking spaces.
fn nok(ore: i64) -> String {
    let kr = (ore / 100).to_string();
    let mut out = String::new();
    for (i, c) in kr.chars().enumerate() {
        if i > 0 && (kr.len() - i).is_multiple_of(3) {
            out.push('\u{a0}');
        }
        out.push(c);
    }
    format!("{out},{:02}\u{a0}kr", ore % 100)
}

/// What is owed, per loan type, from the population (independent of the page).
fn expected_totals(fx: &Fixture, person: &str) -> Vec<(&'static str, i64)> {
    let mut totals = vec![
        ("repaymentLoan", 0),
        ("creditFacility", 0),
        ("chargeCard", 0),
    ];
    for l in fx.expected_loans(person) {
        let f = |k: &str| l[k].as_i64().unwrap_or(0);
        let (t, owed) = match l["type"].as_str().unwrap() {
            "repaymentLoan" => ("repaymentLoan", f("balance")),
            "creditFacility" => (
                "creditFacility",
                f("interestBearingBalance") + f("nonInterestBearingBalance"),
            ),
            _ => (
                "chargeCard",
                f("interestBearingBalance") + f("nonInterestBearingBalance"),
            ),
        };
        if let Some(e) = totals.iter_mut().find(|(k, _)| *k == t) {
            e.1 += owed;
        }
    }
    totals
}

/// A person with loans of as many types as possible (a fuller page).
fn person_with_most_types(fx: &Fixture) -> String {
    fx.persons_with_lenders(2)
        .into_iter()
        .max_by_key(|p| {
            expected_totals(fx, p)
                .iter()
                .filter(|(_, t)| *t > 0)
                .count()
        })
        .expect("a person with debt")
}

async fn partner_listener() -> (tokio::net::TcpListener, SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_reads_the_totals_consents_and_withdraws_in_the_partners_iframe() {
    let Some(binary) = chromium_binary() else {
        assert!(
            std::env::var("GJELDSBRO_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "chromium is required (GJELDSBRO_REQUIRE_CHROMIUM=1) but not installed"
        );
        println!("skipping the browser test: no chromium (apt-get install chromium)");
        return;
    };
    let (listener, partner_addr) = partner_listener().await;
    let (other_listener, other_addr) = partner_listener().await;
    let fx = Fixture::new(Options {
        partner_extra: format!("embed_origins = [\"http://{partner_addr}\"]\n"),
        ..Options::default()
    })
    .await;
    let b = fx.broker().await;
    let person = person_with_most_types(&fx);
    let person_tok = person_token(&person);
    serve_partner(listener, b.url.clone(), person.clone());
    serve_partner(other_listener, b.url.clone(), person.clone());

    let mut browser = launch(&binary).await;
    let cdp = &mut browser.cdp;
    cdp.call(
        "Page.navigate",
        json!({"url": format!("http://{partner_addr}/")}),
    )
    .await;

    // The totals, read from the framed page.
    let part = "/embed/v1/debt";
    let all = cdp
        .wait_for_text(
            part,
            "document.getElementById('sum-all') && document.getElementById('sum-all').textContent",
            "kr",
        )
        .await;
    let totals = expected_totals(&fx, &person);
    let grand: i64 = totals.iter().map(|(_, t)| t).sum();
    assert_eq!(all, nok(grand), "grand total");
    let frame = cdp.frame(part).await.expect("the embed frame");
    for (key, total) in &totals {
        let shown = cdp
            .eval_in(
                &frame,
                &format!("(e => e && e.textContent)(document.getElementById('sum-{key}'))"),
            )
            .await
            .expect("evaluate");
        if *total > 0 {
            assert_eq!(shown, json!(nok(*total)), "total of {key}");
        } else {
            assert_eq!(shown, Value::Null, "no table for {key}");
        }
    }
    let text = cdp
        .eval_in(&frame, "document.body.innerText")
        .await
        .unwrap();
    let text = text.as_str().unwrap();
    assert!(text.contains("Din usikrede gjeld"), "{text}");
    assert!(
        text.contains("Ditt samtykke gir Itest Nettbank AS tilgang"),
        "{text}"
    );
    let lang = cdp
        .eval_in(&frame, "document.documentElement.lang")
        .await
        .unwrap();
    assert_eq!(lang, json!("nb"));
    for i in fx.indexed_lenders(&person) {
        assert!(
            text.contains(Fixture::lender_name(i)),
            "creditor names shown"
        );
    }
    assert!(!text.contains(&person), "the page shows no national id");
    let shot = cdp
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("embed-screenshot.png");
    std::fs::write(&out, &png).unwrap();
    if std::env::var("GJELDSBRO_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        std::fs::write(common::manifest_path("docs/embed-screenshot.png"), &png).unwrap();
    }

    // Consent with the keyboard: Tab from the partner's page into the frame
    // reaches the consent button; Enter presses it.
    let mut focused = false;
    for _ in 0..10 {
        cdp.key("Tab", 9, None).await;
        if cdp
            .eval_in(&frame, "document.hasFocus() && document.activeElement.id")
            .await
            == Some(json!("give-consent"))
        {
            focused = true;
            break;
        }
    }
    assert!(focused, "the consent button is reachable with Tab");
    cdp.key("Enter", 13, Some("\r")).await;
    cdp.wait_for_text(
        part,
        "(e => e && e.textContent)(document.querySelector('[role=status]'))",
        "Samtykket er gitt",
    )
    .await;

    // The consent exists: for the partner, given by the person, in force.
    let mine = b.get_as("/v1/me/consents", &person_tok).await.json();
    let list = mine["consents"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{mine}");
    assert_eq!(list[0]["client"]["orgNo"], json!(PARTNER));
    assert_eq!(list[0]["givenVia"], json!("person"));
    assert_eq!(list[0]["status"], json!("active"));
    assert_eq!(list[0]["scope"], json!("debt.unsecured.presentation"));
    let id = list[0]["id"].as_str().unwrap().to_owned();
    let partner_tok = token(
        PARTNER,
        &[
            "debt.unsecured.presentation",
            "client.access.consent.events",
        ],
    );
    let feed = b.get_as("/feed/v1/consent", &partner_tok).await.json();
    assert_eq!(feed["events"][0]["consentId"], json!(id));
    assert!(
        feed["events"][0]["clientConsentId"]
            .as_str()
            .unwrap()
            .starts_with("sess-1/"),
        "the partner finds it by its ref: {feed}"
    );
    assert_eq!(
        b.get_as(&format!("/v1/debt/{id}"), &partner_tok)
            .await
            .status,
        200
    );

    // Withdraw with the mouse.
    let frame = cdp.frame(part).await.expect("the embed frame");
    let button = cdp
        .eval_in(
            &frame,
            "(() => { const b = document.querySelector('button.withdraw'); b.scrollIntoView({block: 'center'}); \
             const r = b.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })()",
        )
        .await
        .expect("a withdraw button");
    let origin = cdp
        .eval_top(
            "(() => { const r = document.getElementById('gjeld').getBoundingClientRect(); return [r.left, r.top]; })()",
        )
        .await;
    let xy = |v: &Value, i: usize| v[i].as_f64().unwrap();
    cdp.click(
        xy(&origin, 0) + xy(&button, 0),
        xy(&origin, 1) + xy(&button, 1),
    )
    .await;
    cdp.wait_for_text(
        part,
        "(e => e && e.textContent)(document.querySelector('[role=status]'))",
        "Samtykket er trukket tilbake",
    )
    .await;
    let mine = b.get_as("/v1/me/consents", &person_tok).await.json();
    assert_eq!(mine["consents"][0]["status"], json!("withdrawn"));
    b.get_as(&format!("/v1/debt/{id}"), &partner_tok)
        .await
        .assert_error(403);

    // A page on an origin the config does not name cannot frame it.
    cdp.call(
        "Page.navigate",
        json!({"url": format!("http://{other_addr}/")}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let shown = match cdp.frame("/embed/").await {
        Some(f) => cdp
            .eval_in(
                &f,
                "(e => e && e.textContent)(document.getElementById('sum-all'))",
            )
            .await
            .unwrap_or(Value::Null),
        None => Value::Null,
    };
    assert_eq!(
        shown,
        Value::Null,
        "framed from an origin not in the config"
    );
}

/// Without a browser: the page's headers, the session cookie, CSRF, and who
/// may embed.
#[tokio::test]
async fn the_page_sets_its_headers_and_refuses_forged_posts() {
    let fx = Fixture::new(Options {
        partner_extra: "embed_origins = [\"https://nettbank.example\"]\n".into(),
        ..Options::default()
    })
    .await;
    let b = fx.broker().await;
    let person = fx.persons_with_lenders(1)[0].clone();
    let tok = person_token(&person);
    let page = format!("/embed/v1/debt?partner={PARTNER}&ref=abc");
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let start = |body: String| {
        no_redirect
            .post(format!("{}/embed/v1/session", b.url))
            .header("content-type", FORM)
            .body(body)
            .send()
    };

    // The session starts from a posted embed token: a cookie of the broker's
    // own, and a redirect without either.
    let r = start(format!(
        "token={}&partner={PARTNER}&ref=abc",
        embed_token(&person)
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        format!("/embed/v1/debt?partner={PARTNER}&ref=abc")
    );
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=None",
        "Partitioned",
        "Path=/embed/",
    ] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_owned();
    let bad = start(format!("token=not.a.token&partner={PARTNER}"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);

    let get = |path: String| {
        no_redirect
            .get(format!("{}{path}", b.url))
            .header("cookie", session.clone())
            .send()
    };
    let r = common::Resp::from(get(page.clone()).await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("frame-ancestors https://nettbank.example"),
        "{csp}"
    );
    assert!(csp.contains("script-src 'none'"), "{csp}");
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let html = r.text();
    assert!(html.contains("<html lang=\"nb\">"));
    assert!(html.contains("<caption>") && html.contains("scope=\"col\""));
    assert!(!html.contains(&person));
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();

    // A post without the right CSRF token is refused and creates nothing.
    let post = |csrf: String| {
        no_redirect
            .post(format!("{}/embed/v1/consent", b.url))
            .header("cookie", session.clone())
            .header("content-type", FORM)
            .body(format!("csrf={csrf}&partner={PARTNER}"))
            .send()
    };
    assert_eq!(post("00".repeat(16)).await.unwrap().status(), 403);
    assert_eq!(post(String::new()).await.unwrap().status(), 403);
    let mine = b.get_as("/v1/me/consents", &tok).await.json();
    assert_eq!(mine["consents"], json!([]));
    let ok = post(csrf).await.unwrap();
    assert_eq!(ok.status(), 303);
    let mine = b.get_as("/v1/me/consents", &tok).await.json();
    assert_eq!(mine["consents"].as_array().unwrap().len(), 1);

    // Who may be embedded for: a partner with embed origins, opened with an
    // embed token; the page then serves that partner only.
    let opened = |partner: &str, r: &str| {
        start(format!(
            "token={}&partner={partner}&ref={r}",
            embed_token(&person)
        ))
    };
    assert_eq!(opened(common::FI, "a").await.unwrap().status(), 403);
    assert_eq!(opened("12", "a").await.unwrap().status(), 400);
    assert_eq!(opened(PARTNER, "a%20b").await.unwrap().status(), 400);
    assert_eq!(
        get(format!("/embed/v1/debt?partner={PARTNER}&ref=a%20b"))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        get(format!("/embed/v1/debt?partner={}", common::FI))
            .await
            .unwrap()
            .status(),
        403,
        "the session is the partner's it was opened for"
    );
    b.get(&format!("/embed/v1/debt?partner={PARTNER}"))
        .await
        .assert_error(401);
    b.get_as(
        &format!("/embed/v1/debt?partner={PARTNER}"),
        &common::fi_token(),
    )
    .await
    .assert_error(401);
}
