//! The token matrix. Keys are committed fixtures under `tests/fixtures/auth/`
//! (`jwks.json` trusts `ec-key.pem` as `test-ec-1` with `alg: ES256` and
//! `rsa-key.pem` as `test-rsa-1` with no `alg`, so RS256 is inferred from the key
//! type; `foreign-ec-key.pem` is trusted by nobody).

use std::path::{Path, PathBuf};

use gjeldsbro_adapter::nin::make_id;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode, get_current_timestamp};
use serde_json::{Value, json};

use super::devtoken::{self, DevClaims};
use super::*;

const ISS: &str = "https://maskinporten.example";
const AUD: &str = "gjeldsbro";
const BANK: &str = "910000001";
const LENDER: &str = "920000001";
const STRANGER: &str = "930000001";
const EC_KID: &str = "test-ec-1";
const RSA_KID: &str = "test-rsa-1";

fn root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/auth").join(name)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn auth_config(jwks: &Path) -> AuthConfig {
    AuthConfig {
        issuer: ISS.into(),
        audience: AUD.into(),
        jwks_file: jwks.to_path_buf(),
        leeway_secs: 30,
        max_token_lifetime_secs: 3600,
    }
}

fn clients() -> Vec<ClientConfig> {
    vec![
        ClientConfig {
            org_no: BANK.into(),
            name: "Eksempel Bank ASA".into(),
            roles: vec![Role::FinancialInstitution],
            requests_per_second: None,
            embed_origins: Vec::new(),
        },
        ClientConfig {
            org_no: LENDER.into(),
            name: "Eksempel Finans AS".into(),
            roles: vec![Role::Lender, Role::Partner],
            requests_per_second: None,
            embed_origins: Vec::new(),
        },
    ]
}

fn authenticator_with(policy: IdPolicy) -> Authenticator {
    let jwks = fixture("jwks.json");
    Authenticator::new(&auth_config(&jwks), &jwks, &clients(), policy).expect("fixture JWKS loads")
}

fn authenticator() -> Authenticator {
    authenticator_with(IdPolicy::STRICT)
}

fn now() -> u64 {
    get_current_timestamp()
}

fn ec_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&read(&fixture("ec-key.pem"))).expect("EC fixture")
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(&read(&fixture("rsa-key.pem"))).expect("RSA fixture")
}

fn foreign_key() -> EncodingKey {
    EncodingKey::from_ec_pem(&read(&fixture("foreign-ec-key.pem"))).expect("foreign fixture")
}

/// Good organisation-token claims for the bank.
fn org_claims(org: &str) -> Value {
    json!({
        "iss": ISS,
        "aud": AUD,
        "iat": now(),
        "exp": now() + 120,
        "jti": "jti-1",
        "client_id": "client-1",
        "scope": "debt.search consent.create",
        "consumer": {"authority": CONSUMER_AUTHORITY, "ID": format!("0192:{org}")},
    })
}

fn person_id() -> String {
    (100..200)
        .find_map(|i| make_id(1, 1, 70, i, false, false))
        .expect("a valid id")
}

fn synthetic_person_id() -> String {
    (100..200)
        .find_map(|i| make_id(3, 4, 91, i, false, true))
        .expect("a valid synthetic id")
}

fn person_claims(pid: &str) -> Value {
    json!({"iss": ISS, "aud": AUD, "iat": now(), "exp": now() + 120, "pid": pid, "scope": "openid"})
}

fn sign(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    encode(&header, claims, key).expect("signing")
}

fn es256(claims: &Value) -> String {
    sign(&ec_key(), Algorithm::ES256, Some(EC_KID), claims)
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn without(mut claims: Value, key: &str) -> Value {
    claims.as_object_mut().expect("object").remove(key);
    claims
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn check(a: &Authenticator, token: &str) -> Result<Caller, AuthError> {
    a.authenticate(Some(&format!("Bearer {token}")))
}

fn assert_401(result: Result<Caller, AuthError>, why: &str) {
    match result {
        Err(AuthError::Unauthenticated(_)) => {}
        other => panic!("{why}: expected 401, got {other:?}"),
    }
}

fn assert_401_because(result: Result<Caller, AuthError>, reason: &'static str) {
    assert_eq!(result, Err(AuthError::Unauthenticated(reason)));
}

#[test]
fn authenticator_is_send_and_sync() {
    fn is<T: Send + Sync + 'static>() {}
    is::<Authenticator>();
    let a = authenticator();
    let mut kids: Vec<&str> = a.key_ids().collect();
    kids.sort_unstable();
    assert_eq!(kids, vec![EC_KID, RSA_KID]);
}

#[test]
fn a_valid_es256_org_token_gives_the_clients_roles() {
    let c = check(&authenticator(), &es256(&org_claims(BANK))).expect("accepted");
    assert_eq!(c.org_no.as_deref(), Some(BANK));
    assert_eq!(c.org_name.as_deref(), Some("Eksempel Bank ASA"));
    assert_eq!(c.roles, vec![Role::FinancialInstitution]);
    assert!(c.has_role(Role::FinancialInstitution));
    assert!(!c.has_role(Role::Operator));
    assert_eq!(c.scopes, vec!["debt.search", "consent.create"]);
    assert!(c.has_scope("debt.search"));
    assert!(!c.has_scope("debt"));
    assert_eq!(c.person, None);
    assert_eq!(c.client_id.as_deref(), Some("client-1"));
    assert_eq!(c.token_id.as_deref(), Some("jti-1"));
}

#[test]
fn a_valid_rs256_org_token_is_accepted_with_the_alg_inferred_from_the_key() {
    let token = sign(
        &rsa_key(),
        Algorithm::RS256,
        Some(RSA_KID),
        &org_claims(LENDER),
    );
    let c = check(&authenticator(), &token).expect("accepted");
    assert_eq!(c.org_no.as_deref(), Some(LENDER));
    assert_eq!(c.roles, vec![Role::Lender, Role::Partner]);
    assert!(c.has_role(Role::Partner));
    assert!(!c.has_role(Role::FinancialInstitution));
}

#[test]
fn other_rsa_algorithms_are_not_accepted_for_an_rs256_key() {
    let a = authenticator();
    for alg in [Algorithm::RS512, Algorithm::PS256] {
        let token = sign(&rsa_key(), alg, Some(RSA_KID), &org_claims(BANK));
        assert_401_because(check(&a, &token), "algorithm not allowed for this key");
    }
}

#[test]
fn an_unregistered_org_is_forbidden_without_naming_it() {
    let err = check(&authenticator(), &es256(&org_claims(STRANGER))).expect_err("refused");
    assert!(matches!(err, AuthError::Forbidden(_)), "{err:?}");
    assert_eq!(err.kind(), "forbidden");
    assert!(!err.to_string().contains(STRANGER));
}

#[test]
fn a_person_token_sets_the_person_and_no_org() {
    let pid = person_id();
    let c = check(&authenticator(), &es256(&person_claims(&pid))).expect("accepted");
    assert_eq!(c.person.map(|p| p.expose()), Some(pid.clone()));
    assert_eq!(c.org_no, None);
    assert_eq!(c.org_name, None);
    assert!(c.roles.is_empty());
    assert_eq!(c.scopes, vec!["openid"]);
    assert!(
        !format!("{c:?}").contains(&pid),
        "Debug must not print the pid"
    );
}

#[test]
fn an_invalid_pid_is_refused_without_echoing_it() {
    let a = authenticator();
    let mut bad = person_id();
    bad.replace_range(10..11, if bad.ends_with('0') { "1" } else { "0" });
    let err = check(&a, &es256(&person_claims(&bad))).expect_err("refused");
    assert_eq!(err, AuthError::Unauthenticated("invalid person id"));
    assert!(!err.to_string().contains(&bad));
    assert_401(check(&a, &es256(&person_claims("abc"))), "non-digit pid");
    // pid of the wrong JSON type.
    let numeric = with(person_claims(&bad), "pid", json!(12345678901u64));
    assert_401(check(&a, &es256(&numeric)), "numeric pid");
}

#[test]
fn synthetic_pids_follow_the_id_policy() {
    let token = es256(&person_claims(&synthetic_person_id()));
    assert_401_because(check(&authenticator(), &token), "invalid person id");
    let c = check(&authenticator_with(IdPolicy::SYNTHETIC_OK), &token).expect("accepted");
    assert!(c.person.is_some_and(|p| p.is_synthetic()));
}

#[test]
fn headers_that_are_not_a_bearer_token_are_401() {
    let a = authenticator();
    let good = es256(&org_claims(BANK));
    assert_401_because(a.authenticate(None), "missing credentials");
    assert_401_because(a.authenticate(Some("")), "not a bearer token");
    assert_401_because(a.authenticate(Some("Bearer")), "not a bearer token");
    assert_401_because(
        a.authenticate(Some(&format!("Basic {good}"))),
        "not a bearer token",
    );
    assert_401_because(
        a.authenticate(Some(&format!("Bearer{good}"))),
        "not a bearer token",
    );
    for junk in [
        "Bearer ",
        "Bearer abc",
        "Bearer a.b",
        "Bearer a.b.c.d",
        "Bearer a b.c",
    ] {
        assert_401(a.authenticate(Some(junk)), junk);
    }
    assert_401(a.authenticate(Some("Bearer ..")), "empty parts");
    assert_401(a.authenticate(Some("Bearer !!.??.**")), "bad characters");
    let huge = format!("Bearer {}.{}.{}", "a".repeat(9000), "b".repeat(9000), "c");
    assert_401_because(a.authenticate(Some(&huge)), "malformed token");
    // The scheme is case-insensitive; the same token then passes.
    assert!(a.authenticate(Some(&format!("bearer {good}"))).is_ok());
}

#[test]
fn a_tampered_signature_or_payload_is_401() {
    let a = authenticator();
    let token = es256(&org_claims(BANK));
    let (head, sig) = token.rsplit_once('.').expect("three parts");
    let mut sig = sig.as_bytes().to_vec();
    sig[10] = if sig[10] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{head}.{}", String::from_utf8(sig).expect("ascii"));
    assert_401_because(check(&a, &tampered), "bad signature");

    // Same signature over a different payload (another org).
    let other = es256(&org_claims(LENDER));
    let parts: Vec<&str> = token.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    assert_401_because(check(&a, &spliced), "bad signature");
}

#[test]
fn expiry_and_not_before_are_checked_with_leeway() {
    let a = authenticator();
    let expired = with(org_claims(BANK), "exp", json!(now() - 3600));
    assert_401_because(check(&a, &es256(&expired)), "token expired");
    // Within the 30 s leeway: still accepted.
    let just_expired = with(org_claims(BANK), "exp", json!(now() - 10));
    assert!(check(&a, &es256(&just_expired)).is_ok());
    let no_exp = without(org_claims(BANK), "exp");
    assert_401_because(check(&a, &es256(&no_exp)), "token lacks a required claim");
    let bad_exp = with(org_claims(BANK), "exp", json!("tomorrow"));
    assert_401(check(&a, &es256(&bad_exp)), "string exp");
    let future = with(org_claims(BANK), "nbf", json!(now() + 3600));
    assert_401_because(check(&a, &es256(&future)), "token not yet valid");
    let nbf_ok = with(org_claims(BANK), "nbf", json!(now() + 10));
    assert!(check(&a, &es256(&nbf_ok)).is_ok());
}

#[test]
fn issued_at_and_lifetime_are_checked() {
    let a = authenticator();
    let year = 365 * 86_400;
    let centuries = with(org_claims(BANK), "exp", json!(now() + 260 * year));
    assert_401_because(check(&a, &es256(&centuries)), "token lifetime too long");
    let just_over = with(org_claims(BANK), "exp", json!(now() + 3601));
    assert_401_because(check(&a, &es256(&just_over)), "token lifetime too long");
    let an_hour = with(org_claims(BANK), "exp", json!(now() + 3600));
    assert!(check(&a, &es256(&an_hour)).is_ok());
    // An iat ahead of the clock beyond the leeway, whatever exp says.
    let ahead = with(
        with(org_claims(BANK), "iat", json!(now() + 3 * year)),
        "exp",
        json!(now() + 3 * year + 60),
    );
    assert_401_because(check(&a, &es256(&ahead)), "token issued in the future");
    let skewed = with(org_claims(BANK), "iat", json!(now() + 10));
    assert!(check(&a, &es256(&skewed)).is_ok(), "within the leeway");
    // Without iat the lifetime cannot be judged: refused while there is a limit.
    let no_iat = without(org_claims(BANK), "iat");
    assert_401_because(check(&a, &es256(&no_iat)), "token lacks iat");
    let bad_iat = with(org_claims(BANK), "iat", json!("yesterday"));
    assert_401(check(&a, &es256(&bad_iat)), "string iat");

    // max_token_lifetime_secs = 0: no limit, and iat may be absent; a future
    // iat is still refused.
    let jwks = fixture("jwks.json");
    let mut config = auth_config(&jwks);
    config.max_token_lifetime_secs = 0;
    let unlimited =
        Authenticator::new(&config, &jwks, &clients(), IdPolicy::STRICT).expect("builds");
    assert!(check(&unlimited, &es256(&centuries)).is_ok());
    assert!(check(&unlimited, &es256(&no_iat)).is_ok());
    assert_401_because(
        check(&unlimited, &es256(&ahead)),
        "token issued in the future",
    );
}

#[test]
fn the_dev_key_is_found_by_its_material() {
    let dev = devtoken::DEV_JWKS.as_bytes();
    let dir = tempfile::tempdir().expect("tempdir");
    let dev_path = root().join("config/dev-jwks.json");
    assert!(matches!(
        refuse_dev_key(&dev_path, false),
        Err(AuthSetupError::DevKey { .. })
    ));
    assert!(refuse_dev_key(&dev_path, true).is_ok(), "dev mode");
    let message = refuse_dev_key(&dev_path, false).unwrap_err().to_string();
    assert!(
        !message.contains('\n') && message.contains("dev_mode"),
        "{message}"
    );
    // Under another kid, beside another key, with base64 padding: still it.
    let mut set: Value = serde_json::from_slice(dev).expect("dev jwks");
    let mut key = set["keys"][0].clone();
    key["kid"] = json!("innocent-looking-kid");
    key["x"] = json!(format!("{}=", key["x"].as_str().expect("x")));
    let fixture_set: Value = serde_json::from_slice(&read(&fixture("jwks.json"))).expect("jwks");
    let mut keys = fixture_set["keys"].as_array().expect("keys").clone();
    keys.push(key);
    set["keys"] = json!(keys);
    let path = write_jwks(&dir, &set);
    assert!(matches!(
        refuse_dev_key(&path, false),
        Err(AuthSetupError::DevKey { .. })
    ));
    // Another key set is fine.
    assert!(refuse_dev_key(&fixture("jwks.json"), false).is_ok());
}

#[test]
fn issuer_and_audience_are_required_and_checked() {
    let a = authenticator();
    let wrong_iss = with(org_claims(BANK), "iss", json!("https://evil.example"));
    assert_401_because(check(&a, &es256(&wrong_iss)), "wrong issuer");
    let wrong_aud = with(org_claims(BANK), "aud", json!("someone-else"));
    assert_401_because(check(&a, &es256(&wrong_aud)), "wrong audience");
    let wrong_auds = with(org_claims(BANK), "aud", json!(["a", "b"]));
    assert_401_because(check(&a, &es256(&wrong_auds)), "wrong audience");
    let no_iss = without(org_claims(BANK), "iss");
    assert_401_because(check(&a, &es256(&no_iss)), "token lacks a required claim");
    let no_aud = without(org_claims(BANK), "aud");
    assert_401_because(check(&a, &es256(&no_aud)), "token lacks a required claim");
    // An audience list that includes ours is fine.
    let auds = with(org_claims(BANK), "aud", json!(["other", AUD]));
    assert!(check(&a, &es256(&auds)).is_ok());
}

#[test]
fn alg_none_is_401() {
    let a = authenticator();
    let claims = serde_json::to_vec(&org_claims(BANK)).expect("json");
    for alg in ["none", "None", "NONE"] {
        let header =
            serde_json::to_vec(&json!({"alg": alg, "kid": EC_KID, "typ": "JWT"})).expect("json");
        let token = format!("{}.{}.", b64(&header), b64(&claims));
        assert_401(check(&a, &token), alg);
        // And with a junk signature.
        let token = format!("{}.{}.AAAA", b64(&header), b64(&claims));
        assert_401(check(&a, &token), alg);
    }
}

#[test]
fn hs256_with_the_public_key_as_secret_is_401() {
    let a = authenticator();
    let public_pem = read(&fixture("ec-public.pem"));
    let jwks: Value = serde_json::from_slice(&read(&fixture("jwks.json"))).expect("json");
    let jwk_json = serde_json::to_vec(&jwks["keys"][0]).expect("json");
    for secret in [public_pem.as_slice(), jwk_json.as_slice()] {
        for kid in [EC_KID, RSA_KID] {
            let token = sign(
                &EncodingKey::from_secret(secret),
                Algorithm::HS256,
                Some(kid),
                &org_claims(BANK),
            );
            assert_401_because(check(&a, &token), "algorithm not allowed for this key");
        }
    }
}

#[test]
fn a_header_alg_that_does_not_match_the_key_is_401() {
    let a = authenticator();
    // RSA-signed, claiming the EC key's kid.
    let token = sign(
        &rsa_key(),
        Algorithm::RS256,
        Some(EC_KID),
        &org_claims(BANK),
    );
    assert_401_because(check(&a, &token), "algorithm not allowed for this key");
    // EC-signed, claiming the RSA key's kid.
    let token = sign(
        &ec_key(),
        Algorithm::ES256,
        Some(RSA_KID),
        &org_claims(BANK),
    );
    assert_401_because(check(&a, &token), "algorithm not allowed for this key");
}

#[test]
fn unknown_or_missing_kid_is_401() {
    let a = authenticator();
    let token = sign(
        &ec_key(),
        Algorithm::ES256,
        Some("nobody"),
        &org_claims(BANK),
    );
    assert_401_because(check(&a, &token), "unknown key id");
    let token = sign(&ec_key(), Algorithm::ES256, None, &org_claims(BANK));
    assert_401_because(check(&a, &token), "token has no key id");
}

#[test]
fn a_foreign_key_under_a_known_kid_is_401() {
    let a = authenticator();
    let token = sign(
        &foreign_key(),
        Algorithm::ES256,
        Some(EC_KID),
        &org_claims(BANK),
    );
    assert_401_because(check(&a, &token), "bad signature");
    // Embedding the foreign public key in the header changes nothing.
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(EC_KID.into());
    header.jwk = Some(Jwk::from_encoding_key(&foreign_key(), Algorithm::ES256).expect("jwk"));
    let token = encode(&header, &org_claims(BANK), &foreign_key()).expect("sign");
    assert_401_because(check(&a, &token), "bad signature");
}

#[test]
fn a_critical_header_is_401() {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(EC_KID.into());
    header.crit = Some(vec!["b64".into()]);
    let token = encode(&header, &org_claims(BANK), &ec_key()).expect("sign");
    assert_401_because(
        check(&authenticator(), &token),
        "unsupported critical header",
    );
}

#[test]
fn a_token_naming_nobody_is_401() {
    let no_consumer = without(org_claims(BANK), "consumer");
    assert_401_because(
        check(&authenticator(), &es256(&no_consumer)),
        "token names neither an organisation nor a person",
    );
}

#[test]
fn malformed_consumers_are_401_without_echoing_them() {
    let a = authenticator();
    let cases = [
        json!({"authority": "iso6523-actorid-upis-x", "ID": "0192:910000001"}),
        json!({"authority": "other", "ID": "0192:910000001"}),
        json!({"authority": CONSUMER_AUTHORITY, "ID": "910000001"}),
        json!({"authority": CONSUMER_AUTHORITY, "ID": "0193:910000001"}),
        json!({"authority": CONSUMER_AUTHORITY, "ID": "0192:91000000"}),
        json!({"authority": CONSUMER_AUTHORITY, "ID": "0192:9100000012"}),
        json!({"authority": CONSUMER_AUTHORITY, "ID": "0192:91000000a"}),
        json!({"authority": CONSUMER_AUTHORITY, "ID": "0192: 910000001"}),
        json!({"authority": CONSUMER_AUTHORITY}),
        json!({"ID": "0192:910000001"}),
        json!("0192:910000001"),
        json!({"authority": CONSUMER_AUTHORITY, "ID": 910000001}),
    ];
    for consumer in cases {
        let claims = with(org_claims(BANK), "consumer", consumer.clone());
        let result = check(&a, &es256(&claims));
        if let Err(e) = &result {
            assert!(!e.to_string().contains("910000001"), "{e}");
            assert!(!e.to_string().contains("9100000"), "{e}");
        }
        assert_401(result, &consumer.to_string());
    }
}

#[test]
fn an_org_token_with_an_invalid_pid_is_401_not_403() {
    // 401 reasons come before the client lookup.
    let claims = with(org_claims(STRANGER), "pid", json!("12345678901"));
    assert_401_because(
        check(&authenticator(), &es256(&claims)),
        "invalid person id",
    );
}

#[test]
fn a_dev_token_is_accepted_against_the_dev_jwks() {
    let key = read(&root().join("config/dev-signing-key.pem"));
    let jwks = root().join("config/dev-jwks.json");
    let a = Authenticator::new(&auth_config(&jwks), &jwks, &clients(), IdPolicy::STRICT)
        .expect("dev JWKS loads");
    assert_eq!(a.key_ids().collect::<Vec<_>>(), vec![devtoken::DEV_KID]);
    let claims = DevClaims {
        org_no: Some(BANK.into()),
        scopes: vec!["debt.search".into(), "debt.unsecured.presentation".into()],
        pid: None,
        ttl_secs: 300,
    };
    let token = devtoken::mint(&key, devtoken::DEV_KID, ISS, AUD, claims).expect("minted");
    let c = check(&a, &token).expect("accepted");
    assert_eq!(c.org_no.as_deref(), Some(BANK));
    assert_eq!(c.roles, vec![Role::FinancialInstitution]);
    assert!(c.has_scope("debt.unsecured.presentation"));
    assert_eq!(c.client_id.as_deref(), Some(devtoken::DEV_CLIENT_ID));
    let jti = c.token_id.expect("jti");
    assert!(uuid::Uuid::parse_str(&jti).is_ok());

    // A person dev token.
    let pid = person_id();
    let person = DevClaims {
        pid: Some(pid.clone()),
        ttl_secs: 60,
        ..DevClaims::default()
    };
    assert!(!format!("{person:?}").contains(&pid));
    let token = devtoken::mint(&key, devtoken::DEV_KID, ISS, AUD, person).expect("minted");
    let c = check(&a, &token).expect("accepted");
    assert_eq!(c.person.map(|p| p.expose()), Some(pid));
    assert_eq!(c.org_no, None);

    // The dev key is not trusted by the test JWKS, and vice versa.
    let dev_token = devtoken::mint(
        &key,
        EC_KID,
        ISS,
        AUD,
        DevClaims {
            org_no: Some(BANK.into()),
            ttl_secs: 60,
            ..DevClaims::default()
        },
    )
    .expect("minted");
    assert_401_because(check(&authenticator(), &dev_token), "bad signature");
}

#[test]
fn minted_tokens_carry_the_documented_claims() {
    let key = read(&root().join("config/dev-signing-key.pem"));
    let claims = DevClaims {
        org_no: Some(BANK.into()),
        scopes: vec!["a".into(), "b".into()],
        pid: Some("01017012345".into()),
        ttl_secs: 600,
    };
    let token = devtoken::mint(&key, devtoken::DEV_KID, ISS, AUD, claims).expect("minted");
    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(devtoken::DEV_KID));
    let payload: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).expect("claims");
    assert_eq!(payload["iss"], ISS);
    assert_eq!(payload["aud"], AUD);
    assert_eq!(payload["scope"], "a b");
    assert_eq!(payload["pid"], "01017012345");
    assert_eq!(payload["client_id"], devtoken::DEV_CLIENT_ID);
    assert_eq!(
        payload["consumer"],
        json!({"authority": "iso6523-actorid-upis", "ID": "0192:910000001"})
    );
    let iat = payload["iat"].as_u64().expect("iat");
    let exp = payload["exp"].as_u64().expect("exp");
    assert_eq!(exp - iat, 600);
    assert!(payload["jti"].is_string());
}

#[test]
fn mint_signs_rs256_with_an_rsa_key_and_refuses_junk() {
    let token = devtoken::mint(
        &read(&fixture("rsa-key.pem")),
        RSA_KID,
        ISS,
        AUD,
        DevClaims {
            org_no: Some(LENDER.into()),
            scopes: vec!["debt.delivery".into()],
            pid: None,
            ttl_secs: 60,
        },
    )
    .expect("minted");
    let c = check(&authenticator(), &token).expect("accepted");
    assert!(c.has_scope("debt.delivery"));
    assert!(matches!(
        devtoken::mint(b"not a key", "k", ISS, AUD, DevClaims::default()),
        Err(devtoken::DevTokenError::Key)
    ));
    // A public key cannot sign.
    assert!(
        devtoken::mint(
            &read(&fixture("ec-public.pem")),
            "k",
            ISS,
            AUD,
            DevClaims::default()
        )
        .is_err()
    );
}

fn write_jwks(dir: &tempfile::TempDir, value: &Value) -> PathBuf {
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, serde_json::to_vec(value).expect("json")).expect("write");
    path
}

fn setup(path: &Path) -> Result<Authenticator, AuthSetupError> {
    Authenticator::new(&auth_config(path), path, &clients(), IdPolicy::STRICT)
}

#[test]
fn bad_jwks_files_are_setup_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.json");
    assert!(matches!(
        setup(&missing),
        Err(AuthSetupError::ReadJwks { .. })
    ));

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, b"{not json").expect("write");
    assert!(matches!(
        setup(&garbage),
        Err(AuthSetupError::ParseJwks { .. })
    ));

    let empty = write_jwks(&dir, &json!({"keys": []}));
    assert!(matches!(
        setup(&empty),
        Err(AuthSetupError::NoUsableKeys { .. })
    ));

    let fixture_jwks: Value = serde_json::from_slice(&read(&fixture("jwks.json"))).expect("json");
    let ec = fixture_jwks["keys"][0].clone();
    let rsa = fixture_jwks["keys"][1].clone();

    let dup = write_jwks(&dir, &json!({"keys": [ec.clone(), ec.clone()]}));
    assert!(matches!(
        setup(&dup),
        Err(AuthSetupError::DuplicateKid { .. })
    ));

    let oct = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"});
    let with_oct = write_jwks(&dir, &json!({"keys": [ec.clone(), oct]}));
    assert!(matches!(
        setup(&with_oct),
        Err(AuthSetupError::BadKey { .. })
    ));

    let ec_as_rs = with(ec.clone(), "alg", json!("RS256"));
    let mismatched = write_jwks(&dir, &json!({"keys": [ec_as_rs]}));
    assert!(matches!(
        setup(&mismatched),
        Err(AuthSetupError::BadKey { .. })
    ));

    let rsa_as_hs = with(rsa.clone(), "alg", json!("HS256"));
    let mismatched = write_jwks(&dir, &json!({"keys": [rsa_as_hs]}));
    assert!(matches!(
        setup(&mismatched),
        Err(AuthSetupError::BadKey { .. })
    ));

    // Keys without a kid or meant for encryption are skipped; the rest still load.
    let no_kid = without(rsa.clone(), "kid");
    let enc = with(with(rsa, "use", json!("enc")), "kid", json!("enc-1"));
    let skipping = write_jwks(&dir, &json!({"keys": [no_kid, enc, ec]}));
    let a = setup(&skipping).expect("loads");
    assert_eq!(a.key_ids().collect::<Vec<_>>(), vec![EC_KID]);

    let jwks = fixture("jwks.json");
    let mut cfg = auth_config(&jwks);
    cfg.issuer = " ".into();
    assert!(matches!(
        Authenticator::new(&cfg, &jwks, &clients(), IdPolicy::STRICT),
        Err(AuthSetupError::EmptySetting("issuer"))
    ));
}

#[test]
fn a_declared_jwk_alg_is_the_only_one_accepted() {
    // A declared alg is honoured exactly: the RSA key declared RS384 accepts only RS384.
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture_jwks: Value = serde_json::from_slice(&read(&fixture("jwks.json"))).expect("json");
    let rsa384 = with(fixture_jwks["keys"][1].clone(), "alg", json!("RS384"));
    let path = write_jwks(&dir, &json!({"keys": [rsa384]}));
    let a = setup(&path).expect("loads");
    let rs384 = sign(
        &rsa_key(),
        Algorithm::RS384,
        Some(RSA_KID),
        &org_claims(BANK),
    );
    assert!(check(&a, &rs384).is_ok());
    let rs256 = sign(
        &rsa_key(),
        Algorithm::RS256,
        Some(RSA_KID),
        &org_claims(BANK),
    );
    assert_401_because(check(&a, &rs256), "algorithm not allowed for this key");
}

// ---- client certificates (mTLS) ----

use crate::tls::PeerIdentity;

fn cert_of(org: &str) -> PeerIdentity {
    PeerIdentity::Organisation(org.into())
}

#[test]
fn a_certificate_alone_gets_its_clients_roles_and_their_scopes() {
    let a = authenticator();
    let c = a.authenticate_request(None, Some(&cert_of(BANK))).unwrap();
    assert_eq!(c.org_no.as_deref(), Some(BANK));
    assert_eq!(c.org_name.as_deref(), Some("Eksempel Bank ASA"));
    assert_eq!(c.roles, vec![Role::FinancialInstitution]);
    assert!(c.has_scope("debt.search"));
    assert!(!c.has_scope("debt.delivery"));
    assert!(c.person.is_none() && c.token_id.is_none());
    // Two roles: the union of their scopes, each once.
    let l = a
        .authenticate_request(None, Some(&cert_of(LENDER)))
        .unwrap();
    assert!(l.has_scope("debt.delivery") && l.has_scope("debt.unsecured.presentation"));
    assert!(!l.has_scope("debt.search"));
    let mut scopes = l.scopes.clone();
    scopes.dedup();
    assert_eq!(scopes.len(), l.scopes.len());
}

#[test]
fn a_certificate_for_an_unknown_organisation_is_forbidden() {
    let a = authenticator();
    let e = a
        .authenticate_request(None, Some(&cert_of(STRANGER)))
        .unwrap_err();
    assert_eq!(e.kind(), "forbidden");
    // Also with a good token for a registered client: the certificate decides.
    let token = sign(&ec_key(), Algorithm::ES256, Some(EC_KID), &org_claims(BANK));
    let header = format!("Bearer {token}");
    let e = a
        .authenticate_request(Some(&header), Some(&cert_of(STRANGER)))
        .unwrap_err();
    assert_eq!(e.kind(), "forbidden");
}

#[test]
fn a_certificate_without_an_organisation_is_unauthenticated() {
    let e = authenticator()
        .authenticate_request(
            None,
            Some(&PeerIdentity::NoOrganisation("no organizationIdentifier")),
        )
        .unwrap_err();
    assert_eq!(e, AuthError::Unauthenticated("no organizationIdentifier"));
}

#[test]
fn certificate_and_token_must_name_the_same_organisation() {
    let a = authenticator();
    let same = format!(
        "Bearer {}",
        sign(&ec_key(), Algorithm::ES256, Some(EC_KID), &org_claims(BANK))
    );
    let c = a
        .authenticate_request(Some(&same), Some(&cert_of(BANK)))
        .unwrap();
    // The token's scopes, not the role's: a token narrows a connection.
    assert_eq!(c.scopes, vec!["debt.search", "consent.create"]);
    assert_eq!(c.token_id.as_deref(), Some("jti-1"));
    let other = format!(
        "Bearer {}",
        sign(
            &ec_key(),
            Algorithm::ES256,
            Some(EC_KID),
            &org_claims(LENDER)
        )
    );
    let e = a
        .authenticate_request(Some(&other), Some(&cert_of(BANK)))
        .unwrap_err();
    assert_eq!(e.kind(), "unauthenticated");
    // A bad token is not rescued by the certificate.
    let e = a
        .authenticate_request(Some("Bearer a.b.c"), Some(&cert_of(BANK)))
        .unwrap_err();
    assert_eq!(e.kind(), "unauthenticated");
}

#[test]
fn a_verified_token_is_remembered_and_a_failure_is_not() {
    let a = authenticator();
    let token = es256(&org_claims("910000001"));
    let header = format!("Bearer {token}");
    let first = a.authenticate(Some(&header)).expect("valid");
    let second = a.authenticate(Some(&header)).expect("remembered");
    assert_eq!(first, second);
    assert!(a.verified.contains_key(&digest(&token)));
    // A failed check is never remembered.
    let bad = format!("Bearer {}x", token);
    assert!(a.authenticate(Some(&bad)).is_err());
    assert!(!a.verified.contains_key(&digest(&format!("{token}x"))));
}

#[test]
fn a_remembered_token_is_judged_by_its_exp() {
    assert!(unexpired(100, 0, 100));
    assert!(!unexpired(100, 0, 101));
    assert!(unexpired(100, 30, 130));
    assert!(!unexpired(100, 30, 131));
    assert!(unexpired(u64::MAX, 30, u64::MAX), "no overflow");
}

fn digest(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}
