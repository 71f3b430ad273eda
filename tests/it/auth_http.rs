//! The token matrix over HTTP against the running broker: every bad token is a
//! 401 with the error JSON; the wrong organisation, role or scope a 403; a credit
//! bureau must ask on behalf of a known financial institution.

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{AUDIENCE, BUREAU, FI, Fixture, ISSUER, OPERATOR, Options, PARTNER, STRANGER, token};
use gjeldsbro::auth::devtoken::{self, DEV_KID, DevClaims};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(org: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 600,
        "scope": "debt.search",
        "consumer": {"authority": "iso6523-actorid-upis", "ID": format!("0192:{org}")},
    })
}

fn sign_es256(key_pem: &[u8], kid: &str, payload: &Value) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        payload,
        &EncodingKey::from_ec_pem(key_pem).unwrap(),
    )
    .unwrap()
}

fn mint_with(issuer: &str, audience: &str, claims: DevClaims) -> String {
    devtoken::mint(&common::dev_key(), DEV_KID, issuer, audience, claims).unwrap()
}

fn fi_claims() -> DevClaims {
    DevClaims {
        org_no: Some(FI.into()),
        scopes: vec!["debt.search".into()],
        pid: None,
        ttl_secs: 600,
    }
}

/// The dev key's public half as a PEM (SubjectPublicKeyInfo), built from the
/// committed JWKS: what an attacker would use as an HMAC secret.
fn dev_public_pem() -> String {
    let jwks: Value = serde_json::from_slice(
        &std::fs::read(common::manifest_path("config/dev-jwks.json")).unwrap(),
    )
    .unwrap();
    let k = &jwks["keys"][0];
    let x = URL_SAFE_NO_PAD.decode(k["x"].as_str().unwrap()).unwrap();
    let y = URL_SAFE_NO_PAD.decode(k["y"].as_str().unwrap()).unwrap();
    let mut der = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
    der.push(0x04);
    der.extend(x);
    der.extend(y);
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

fn unsigned(header: &Value, payload: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap())
    )
}

#[tokio::test]
async fn bad_tokens_are_401_with_the_error_json() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let person = fx.persons_with_lenders(1)[0].clone();
    let body = serde_json::to_vec(&json!({"ssn": person, "referenceID": "auth"})).unwrap();
    let dev_key = common::dev_key();

    let mut expired = claims(FI);
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    let mut no_consumer = claims(FI);
    no_consumer.as_object_mut().unwrap().remove("consumer");
    let mut not_yet = claims(FI);
    not_yet["nbf"] = json!(now() + 3600);
    let mut no_exp = claims(FI);
    no_exp.as_object_mut().unwrap().remove("exp");
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims(FI),
        &EncodingKey::from_ec_pem(&dev_key).unwrap(),
    )
    .unwrap();
    let mut bad_consumer = claims(FI);
    bad_consumer["consumer"]["ID"] = json!("0192:12345");
    let hs256_with_public_key = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some(DEV_KID.into());
        jsonwebtoken::encode(
            &h,
            &claims(FI),
            &EncodingKey::from_secret(dev_public_pem().as_bytes()),
        )
        .unwrap()
    };
    let good = common::fi_token();
    let mut parts: Vec<&str> = good.split('.').collect();
    let tampered_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(BUREAU)).unwrap());
    parts[1] = &tampered_payload;
    let tampered = parts.join(".");

    let cases: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("expired", Some(sign_es256(&dev_key, DEV_KID, &expired))),
        (
            "not yet valid",
            Some(sign_es256(&dev_key, DEV_KID, &not_yet)),
        ),
        (
            "wrong issuer",
            Some(mint_with("https://evil.example", AUDIENCE, fi_claims())),
        ),
        (
            "wrong audience",
            Some(mint_with(ISSUER, "someone-else", fi_claims())),
        ),
        (
            "alg none",
            Some(unsigned(
                &json!({"alg": "none", "typ": "JWT", "kid": DEV_KID}),
                &claims(FI),
            )),
        ),
        ("HS256 with the public key", Some(hs256_with_public_key)),
        (
            "unknown kid",
            Some(sign_es256(&dev_key, "gjeldsbro-dev-9", &claims(FI))),
        ),
        (
            "foreign key with the dev kid",
            Some(sign_es256(
                &std::fs::read(common::manifest_path(
                    "tests/fixtures/auth/foreign-ec-key.pem",
                ))
                .unwrap(),
                DEV_KID,
                &claims(FI),
            )),
        ),
        (
            "no consumer claim",
            Some(sign_es256(&dev_key, DEV_KID, &no_consumer)),
        ),
        (
            "malformed consumer",
            Some(sign_es256(&dev_key, DEV_KID, &bad_consumer)),
        ),
        ("tampered payload", Some(tampered)),
        ("no exp", Some(sign_es256(&dev_key, DEV_KID, &no_exp))),
        ("no kid", Some(no_kid)),
        ("garbage", Some("not-a-jwt".into())),
    ];
    for (what, tok) in &cases {
        let r = b
            .post_raw(
                common::SEARCH_PATH,
                tok.as_deref(),
                body.clone(),
                &[("x-trace-id", "auth-trace-1")],
            )
            .await;
        let v = r.assert_error(401);
        assert_eq!(v["trace_id"], json!("auth-trace-1"), "{what}");
        assert_eq!(v["error"], json!("invalid_token"), "{what}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
        if let Some(t) = tok {
            assert!(!r.text().contains(t.as_str()), "{what}: token echoed");
        }
        assert!(!r.text().contains(&person), "{what}: id echoed");
    }
    // Not a bearer scheme at all.
    let r = b
        .client
        .post(format!("{}{}", b.url, common::SEARCH_PATH))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    common::Resp::from(r).await.assert_error(401);
    // No lender learned of any of these.
    assert_eq!(fx.total_customer_calls(), 0);
}

#[tokio::test]
async fn roles_scopes_and_bureaus() {
    let fx = Fixture::new(Options::default()).await;
    let b = fx.broker().await;
    let person = fx.persons_with_lenders(1)[0].clone();
    let plain = json!({"ssn": person, "referenceID": "roles"});

    // Organisation not a client; a partner; a client without a search role; an
    // FI without the scope; an FI with another scope only.
    for (what, tok) in [
        ("unregistered org", token(STRANGER, &["debt.search"])),
        ("partner", token(PARTNER, &["debt.search"])),
        ("operator", token(OPERATOR, &["debt.search"])),
        ("FI without scope", token(FI, &[])),
        (
            "FI with other scopes",
            token(FI, &["debt.unsecured.processing", "consent.create"]),
        ),
        (
            "bureau without scope",
            token(BUREAU, &["debt.unsecured.presentation"]),
        ),
    ] {
        let r = b.search_as(&tok, &plain).await;
        let v = r.assert_error(403);
        assert_eq!(v["error"], json!("forbidden"), "{what}");
    }
    // A person token (pid only) may not search.
    let pid_token = devtoken::mint(
        &common::dev_key(),
        DEV_KID,
        ISSUER,
        AUDIENCE,
        DevClaims {
            org_no: None,
            scopes: vec!["debt.search".into()],
            pid: Some(person.clone()),
            ttl_secs: 600,
        },
    )
    .unwrap();
    b.search_as(&pid_token, &plain).await.assert_error(403);
    // An FI may not ask on behalf of someone else.
    let r = b
        .search_as(
            &common::fi_token(),
            &json!({"ssn": person, "referenceID": "r", "onBehalfOfOrganization": BUREAU}),
        )
        .await;
    r.assert_error(403);
    assert_eq!(
        fx.total_customer_calls(),
        0,
        "a refused search reached a lender"
    );

    // Credit bureau: needs onBehalfOfOrganization of a known FI.
    let bureau = token(BUREAU, &["debt.search"]);
    b.search_as(&bureau, &plain).await.assert_error(400);
    for unknown in [STRANGER, PARTNER, OPERATOR, BUREAU] {
        let r = b
            .search_as(
                &bureau,
                &json!({"ssn": person, "referenceID": "r", "onBehalfOfOrganization": unknown}),
            )
            .await;
        r.assert_error(403);
    }
    let r = b
        .search_as(
            &bureau,
            &json!({"ssn": person, "referenceID": "r", "onBehalfOfOrganization": "12345"}),
        )
        .await;
    r.assert_error(400);
    assert_eq!(
        fx.total_customer_calls(),
        0,
        "a refused search reached a lender"
    );
    let r = b
        .search_as(
            &bureau,
            &json!({"ssn": person, "referenceID": "r", "onBehalfOfOrganization": FI}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.loans(), fx.expected_loans(&person));

    // And the FI itself, of course.
    assert_eq!(b.search_as(&common::fi_token(), &plain).await.status, 200);
}
