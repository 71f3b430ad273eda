//! See `main.rs`. The embedded page (issue 12, points 3, 4 and the persons'
//! quotas of 8): the token a partner posts opens the page once and works
//! nowhere else; the page's session and CSRF token are the broker's own; every
//! consent the partner holds for the person is listed and withdrawable there;
//! persons have a quota.

use gjeldsbro::auth::devtoken::{self, DevClaims};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::common::{self, AUDIENCE, Broker, FI, Fixture, ISSUER, Options, PARTNER, Resp};

const FORM: &str = "application/x-www-form-urlencoded";
const EMBED_SCOPE: &str = "gjeldsbro:embed";
const PRESENTATION: &str = "debt.unsecured.presentation";
const PROCESSING: &str = "debt.unsecured.processing";
/// The `log_hash_key` of the CSRF test, so it can compute what the old page
/// derived from the posted token.
const HASH_KEY: &str = "00112233445566778899aabbccddeeff";

fn embed_audience() -> String {
    format!("{AUDIENCE}/embed")
}

fn mint(aud: &str, org: Option<&str>, scopes: &[&str], pid: &str, ttl_secs: u64) -> String {
    devtoken::mint(
        &common::dev_key(),
        devtoken::DEV_KID,
        ISSUER,
        aud,
        DevClaims {
            org_no: org.map(str::to_owned),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            pid: Some(pid.to_owned()),
            ttl_secs,
        },
    )
    .expect("mint")
}

/// What a partner posts into the iframe: an embed token, two minutes.
fn embed_token(pid: &str) -> String {
    mint(&embed_audience(), None, &[EMBED_SCOPE], pid, 120)
}

fn partner_token() -> String {
    common::token(
        PARTNER,
        &[
            "consent.create",
            PRESENTATION,
            PROCESSING,
            "client.access.consent.events",
        ],
    )
}

async fn fixture() -> Fixture {
    Fixture::new(Options {
        partner_extra: "embed_origins = [\"https://nettbank.example\"]\n".into(),
        ..Options::default()
    })
    .await
}

fn no_redirect() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `POST /embed/v1/session` as the partner's page does.
async fn post_session(b: &Broker, token: &str) -> Resp {
    Resp::from(
        no_redirect()
            .post(format!("{}/embed/v1/session", b.url))
            .header("content-type", FORM)
            .body(format!("token={token}&partner={PARTNER}&ref=sec-1"))
            .send()
            .await
            .expect("request"),
    )
    .await
}

/// Opens a session; returns the `Cookie` header value for it.
async fn open_session(b: &Broker, token: &str) -> String {
    let r = post_session(b, token).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let set = r.header("set-cookie").expect("a session cookie").to_owned();
    for attr in ["HttpOnly", "Secure", "SameSite=None", "Path=/embed/"] {
        assert!(set.contains(attr), "{set}");
    }
    let pair = set.split(';').next().unwrap().trim().to_owned();
    assert!(
        pair.starts_with("gjeldsbro_embed="),
        "the session cookie: {set}"
    );
    assert!(
        !set.contains(token),
        "the cookie is the broker's session, not the posted token"
    );
    pair
}

async fn page(b: &Broker, cookie: &str) -> Resp {
    Resp::from(
        no_redirect()
            .get(format!(
                "{}/embed/v1/debt?partner={PARTNER}&ref=sec-1",
                b.url
            ))
            .header("cookie", cookie)
            .send()
            .await
            .expect("request"),
    )
    .await
}

fn csrf_of(html: &str) -> String {
    html.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a CSRF field")
        .to_owned()
}

async fn post_form(
    b: &Broker,
    path: &str,
    cookie: Option<&str>,
    bearer: Option<&str>,
    body: String,
) -> Resp {
    let mut req = no_redirect()
        .post(format!("{}{path}", b.url))
        .header("content-type", FORM)
        .body(body);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    Resp::from(req.send().await.expect("request")).await
}

async fn give(b: &Broker, cookie: &str, csrf: &str) -> Resp {
    post_form(
        b,
        "/embed/v1/consent",
        Some(cookie),
        None,
        format!("csrf={csrf}&partner={PARTNER}&ref=sec-1"),
    )
    .await
}

async fn withdraw(b: &Broker, cookie: &str, csrf: &str, id: &str) -> Resp {
    post_form(
        b,
        "/embed/v1/consent/withdraw",
        Some(cookie),
        None,
        format!("csrf={csrf}&partner={PARTNER}&ref=sec-1&consent_id={id}"),
    )
    .await
}

async fn agree(b: &Broker, tok: &str, nin: &str, scope: &str, days: i64, cid: &str) -> String {
    let r = b
        .put_json(
            "/v1/consent/agreement",
            tok,
            &json!({"nin": nin, "scope_of_consent": scope, "consent_duration_days": days, "client_consent_id": cid}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["consent"]["id"].as_str().unwrap().to_owned()
}

const OWN_VIEW: [&str; 3] = ["/v1/me/debt", "/v1/me/consents", "/v1/me/disclosures"];

#[tokio::test]
async fn the_token_that_opens_the_page_is_refused_by_the_own_view() {
    let fx = fixture().await;
    let b = fx.broker().await;
    let person = fx.persons_with_lenders(1)[0].clone();

    let posted = embed_token(&person);
    let cookie = open_session(&b, &posted).await;
    assert_eq!(page(&b, &cookie).await.status, 200);
    let unused = embed_token(&person);
    for path in OWN_VIEW {
        b.get_as(path, &posted).await.assert_error(401);
        b.get_as(path, &unused).await.assert_error(401);
    }
    // Nor anywhere else a token is taken.
    b.search_as(&posted, &json!({"ssn": person, "referenceID": "x"}))
        .await
        .assert_error(401);

    // A person's API token no longer opens the page: the partner would hold it.
    let api = common::person_token(&person);
    post_session(&b, &api).await.assert_error(401);
    // An organisation's token with the embed audience does not either.
    post_session(
        &b,
        &mint(
            &embed_audience(),
            Some(PARTNER),
            &[EMBED_SCOPE],
            &person,
            120,
        ),
    )
    .await
    .assert_error(401);
    // An API-audience token that claims the embed scope is refused everywhere.
    let hybrid = mint(AUDIENCE, None, &["openid", EMBED_SCOPE], &person, 120);
    post_session(&b, &hybrid).await.assert_error(401);
    b.get_as("/v1/me/debt", &hybrid).await.assert_error(401);
    // And the embed scope alone, without the embed audience, opens nothing.
    let wrong_aud = mint(AUDIENCE, None, &[EMBED_SCOPE], &person, 120);
    post_session(&b, &wrong_aud).await.assert_error(401);
}

#[tokio::test]
async fn a_bearer_token_is_refused_on_the_embedded_page() {
    let fx = fixture().await;
    let b = fx.broker().await;
    let person = fx.persons_with_lenders(1)[0].clone();
    let api = common::person_token(&person);
    let url = format!("/embed/v1/debt?partner={PARTNER}");

    b.get_as(&url, &api).await.assert_error(401);
    b.get_as(&url, &embed_token(&person))
        .await
        .assert_error(401);
    // The old attack: fetch the page with the bearer, read its CSRF token,
    // press the button for the person.
    for tok in [api.clone(), embed_token(&person)] {
        let r = post_form(
            &b,
            "/embed/v1/consent",
            None,
            Some(&tok),
            format!("csrf={}&partner={PARTNER}", "00".repeat(16)),
        )
        .await;
        r.assert_error(401);
    }
    // A bearer next to a valid session cookie is refused too: the page takes
    // the broker's session and nothing else.
    let cookie = open_session(&b, &embed_token(&person)).await;
    let r = Resp::from(
        no_redirect()
            .get(format!("{}{url}", b.url))
            .header("cookie", &cookie)
            .bearer_auth(&api)
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_error(401);
    let mine = b.get_as("/v1/me/consents", &api).await.json();
    assert_eq!(mine["consents"], json!([]), "nothing was given");
}

#[tokio::test]
async fn an_embed_token_opens_one_session_and_lives_briefly() {
    let fx = fixture().await;
    let b = fx.broker().await;
    let person = fx.persons_with_lenders(1)[0].clone();

    let tok = embed_token(&person);
    let cookie = open_session(&b, &tok).await;
    // Replayed: refused, and the first session is unaffected.
    post_session(&b, &tok).await.assert_error(401);
    assert_eq!(page(&b, &cookie).await.status, 200);
    // Two sessions from two tokens are two sessions.
    let other = open_session(&b, &embed_token(&person)).await;
    assert_ne!(cookie, other);
    // A long-lived embed token (an hour; the default limit is five minutes).
    post_session(
        &b,
        &mint(&embed_audience(), None, &[EMBED_SCOPE], &person, 3600),
    )
    .await
    .assert_error(401);
    // A forged or unknown session id opens nothing.
    page(
        &b,
        "gjeldsbro_embed=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    )
    .await
    .assert_error(401);
    // Only a cookie the broker issued names a session: the session's own id
    // without its tag (a well-formed guess costs no store work) is refused.
    let bare = cookie.split_once('.').map(|(id, _)| id.to_owned());
    let bare = bare.expect("the cookie carries the broker's tag");
    page(&b, &bare).await.assert_error(401);
}

/// What the old page used as CSRF token: an HMAC of the posted token under a
/// key derived from `log_hash_key`.
fn old_csrf(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"gjeldsbro embed csrf\n");
    h.update(HASH_KEY.as_bytes());
    let key: [u8; 32] = h.finalize().into();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
    mac.update(token.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

#[tokio::test]
async fn the_csrf_token_is_bound_to_the_brokers_session() {
    let fx = fixture().await;
    let b = fx
        .broker_with(|t| {
            t.replacen(
                "accept_synthetic_ids = true\n",
                &format!("accept_synthetic_ids = true\nlog_hash_key = \"{HASH_KEY}\"\n"),
                1,
            )
        })
        .await;
    let person = fx.persons_with_lenders(1)[0].clone();
    let tok_a = embed_token(&person);
    let cookie_a = open_session(&b, &tok_a).await;
    let html = page(&b, &cookie_a).await.text();
    let csrf_a = csrf_of(&html);

    // The token as the session and a CSRF token derived from it: the old page
    // accepted both, so whoever held the token could press the button.
    assert_ne!(csrf_a, old_csrf(&tok_a));
    give(&b, &format!("gjeldsbro_embed={tok_a}"), &old_csrf(&tok_a))
        .await
        .assert_error(401);
    give(&b, &cookie_a, &old_csrf(&tok_a))
        .await
        .assert_error(403);
    // Another session of the same person does not take session A's token.
    let cookie_b = open_session(&b, &embed_token(&person)).await;
    give(&b, &cookie_b, &csrf_a).await.assert_error(403);
    let api = common::person_token(&person);
    assert_eq!(
        b.get_as("/v1/me/consents", &api).await.json()["consents"],
        json!([])
    );

    // The click in session A, with session A's token, gives the consent.
    let r = give(&b, &cookie_a, &csrf_a).await;
    assert_eq!(r.status, 303, "{}", r.text());
    let mine = b.get_as("/v1/me/consents", &api).await.json();
    let list = mine["consents"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{mine}");
    assert_eq!(list[0]["givenVia"], json!("person"));
    assert_eq!(list[0]["client"]["orgNo"], json!(PARTNER));
}

#[tokio::test]
async fn every_consent_of_the_partner_is_listed_and_withdrawable() {
    let fx = fixture().await;
    let b = fx.broker().await;
    let person = fx.persons_with_lenders(1)[0].clone();
    let partner = partner_token();
    let wide = agree(
        &b,
        &partner,
        &person,
        "debt.unsecured.presentation debt.student_loans debt.debt_collection",
        30,
        "wide-1",
    )
    .await;
    let processing = agree(&b, &partner, &person, PROCESSING, 10, "proc-1").await;
    let fi = common::token(FI, &["consent.create", PROCESSING]);
    let foreign = agree(&b, &fi, &person, PROCESSING, 10, "fi-1").await;
    // One use of the wide consent, for the page to show.
    assert_eq!(
        b.get_as(&format!("/v1/debt/{wide}"), &partner).await.status,
        200
    );

    let cookie = open_session(&b, &embed_token(&person)).await;
    let r = page(&b, &cookie).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let html = r.text();
    for id in [&wide, &processing] {
        assert!(
            html.contains(&format!("name=\"consent_id\" value=\"{id}\"")),
            "the partner's consent {id} is listed with a withdraw button: {html}"
        );
    }
    assert!(
        !html.contains(&foreign),
        "another organisation's consent is not the partner's to show"
    );
    // Scope, expiry and uses, in words.
    assert!(
        html.contains("studielån") && html.contains("inkassosaker"),
        "{html}"
    );
    assert!(html.contains("kredittvurdering"), "{html}");
    assert!(html.contains("Brukt 1 gang"), "{html}");
    assert!(html.contains("Ikke brukt"), "{html}");
    assert!(html.contains("Gjelder til og med"), "{html}");

    let csrf = csrf_of(&html);
    // Another organisation's consent cannot be withdrawn here.
    withdraw(&b, &cookie, &csrf, &foreign)
        .await
        .assert_error(404);
    for id in [&wide, &processing] {
        let r = withdraw(&b, &cookie, &csrf, id).await;
        assert_eq!(r.status, 303, "{}", r.text());
    }
    for id in [&wide, &processing] {
        b.get_as(&format!("/v1/debt/{id}"), &partner)
            .await
            .assert_error(403);
    }
    let status = b.get_as(&format!("/v1/debt/{foreign}/status"), &fi).await;
    assert_eq!(status.json()["active"], json!(true), "{}", status.text());
    let after = page(&b, &cookie).await.text();
    assert!(!after.contains("name=\"consent_id\""), "{after}");
    assert!(after.contains("id=\"give-consent\""), "{after}");
}

#[tokio::test]
async fn persons_have_a_quota_on_the_own_view_and_the_page() {
    let fx = fixture().await;
    let b = fx
        .broker_with(|t| t + "\n[quota]\nperson_requests_per_second = 1\nperson_burst = 3\n")
        .await;
    let persons = fx.persons_with_lenders(1);
    let (p1, p2, p3) = (&persons[0], &persons[1], &persons[2]);

    let t1 = common::person_token(p1);
    for _ in 0..3 {
        assert_eq!(b.get_as("/v1/me/consents", &t1).await.status, 200);
    }
    let over = b.get_as("/v1/me/debt", &t1).await;
    over.assert_error(429);
    let wait: u64 = over.header("retry-after").unwrap().parse().unwrap();
    assert!(wait >= 1);
    // Another person is not slowed by the first.
    assert_eq!(
        b.get_as("/v1/me/disclosures", &common::person_token(p2))
            .await
            .status,
        200
    );

    // The page: opening the session counts, then each view.
    let cookie = open_session(&b, &embed_token(p3)).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = page(&b, &cookie).await;
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.header("retry-after").is_some());
            break;
        }
    }
    assert_eq!(statuses.first(), Some(&200), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}
