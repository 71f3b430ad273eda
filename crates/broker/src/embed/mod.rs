//! The embeddable page: the person's own debt and their consents for one
//! partner, server-rendered for the partner's iframe. This module holds the
//! session's rules: its id, the cookie value's tag, the CSRF token, the
//! partner's reference; the cookie and security headers and the HTML are the
//! HTTP crate's (`embed_headers`, `embed_page`).
//!
//! How the iframe is authenticated (see `docs/architecture.md`, "The embedded
//! page"): the partner's page POSTs an *embed token* for the person (a short-lived
//! token for the embed audience with the `gjeldsbro:embed` scope, see
//! [`crate::auth::embed`]) once, as a form field, into the iframe
//! (`POST /embed/v1/session`). The broker checks it, claims its `jti` (each
//! token opens one session), and starts a session of its own: a random id
//! (32 bytes, base64url) in an `HttpOnly; Secure; SameSite=None; Partitioned`
//! cookie on `/embed/`, stored only as its SHA-256 with the person, the partner
//! and its ends (idle and absolute). The token works nowhere else, the cookie
//! is not the token, and the forms' CSRF token is an HMAC of the session id, so
//! nothing the partner held is enough to press a button for the person.

use std::sync::OnceLock;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// The session cookie's name.
pub const COOKIE: &str = "gjeldsbro_embed";
/// Random bytes in a session id.
const SESSION_ID_BYTES: usize = 32;
/// Its length as unpadded base64url.
const SESSION_ID_LEN: usize = 43;

/// A fresh session id: 32 random bytes as unpadded base64url.
pub fn new_session_id() -> String {
    let mut id = [0u8; SESSION_ID_BYTES];
    rand::fill(&mut id);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

/// Whether `s` has the shape of a session id (checked before any lookup).
pub fn valid_session_id(s: &str) -> bool {
    s.len() == SESSION_ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the store keeps of a session id: its SHA-256, hex. A copy of the table
/// opens no session.
pub fn session_id_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// The key CSRF tokens are made with: from `log_hash_key` when set (so every
/// instance agrees), else one random key for this process.
fn csrf_key(config: &Config) -> [u8; 32] {
    static RANDOM: OnceLock<[u8; 32]> = OnceLock::new();
    match config.log_hash_key.as_deref() {
        Some(k) => {
            let mut h = Sha256::new();
            // A separate purpose, so a log hash is never a CSRF token.
            h.update(b"gjeldsbro embed session csrf\n");
            h.update(k.trim().as_bytes());
            h.finalize().into()
        }
        None => *RANDOM.get_or_init(|| {
            let mut key = [0u8; 32];
            rand::fill(&mut key);
            key
        }),
    }
}

fn csrf_mac(config: &Config, session_id: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&csrf_key(config))
        .expect("HMAC takes keys of any length");
    mac.update(session_id.as_bytes());
    mac
}

/// The cookie's tag on a session id: a cookie the broker did not issue is
/// refused without touching the store (a flood of well-formed random ids would
/// otherwise cost a store write each). A separate message from the CSRF
/// token's (ids never hold a newline), so the one is never the other.
fn cookie_mac(config: &Config, session_id: &str) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&csrf_key(config))
        .expect("HMAC takes keys of any length");
    mac.update(b"session cookie\n");
    mac.update(session_id.as_bytes());
    mac
}

/// The cookie's value for the session `session_id`: `<id>.<tag>`.
pub fn session_cookie_value(config: &Config, session_id: &str) -> String {
    let tag = cookie_mac(config, session_id).finalize().into_bytes();
    format!("{session_id}.{}", hex::encode(&tag[..16]))
}

/// The session id in a cookie value, if the broker issued it (tag checked in
/// constant time); `None` for anything else.
pub fn session_id_of_cookie<'a>(config: &Config, value: &'a str) -> Option<&'a str> {
    let (id, tag) = value.split_once('.')?;
    if !valid_session_id(id) {
        return None;
    }
    let tag = hex::decode(tag).ok().filter(|t| t.len() == 16)?;
    cookie_mac(config, id)
        .verify_truncated_left(&tag)
        .is_ok()
        .then_some(id)
}

/// The CSRF token for forms of the session `session_id`.
pub fn csrf_token(config: &Config, session_id: &str) -> String {
    hex::encode(&csrf_mac(config, session_id).finalize().into_bytes()[..16])
}

/// Whether `given` is the session's CSRF token (compared in constant time).
pub fn csrf_ok(config: &Config, session_id: &str, given: &str) -> bool {
    match hex::decode(given) {
        Ok(bytes) if bytes.len() == 16 => csrf_mac(config, session_id)
            .verify_truncated_left(&bytes)
            .is_ok(),
        _ => false,
    }
}

/// A partner's reference for the embedding session (`ref`): it goes into URLs
/// and into the consent's `client_consent_id`, so only `[A-Za-z0-9._:-]`, at
/// most 64 characters, and never a run of 11 digits (it could be a national id).
pub fn valid_reference(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
        && !s
            .split(|c: char| !c.is_ascii_digit())
            .any(|run| run.len() >= 11)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut c = Config::parse(
            "listen = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://x.db\"\n[auth]\nissuer = \"i\"\naudience = \"a\"\njwks_file = \"j\"\n",
        )
        .unwrap();
        c.log_hash_key = Some("00112233445566778899aabbccddeeff".into());
        c
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let c = config();
        let (a, b) = (new_session_id(), new_session_id());
        let t = csrf_token(&c, &a);
        assert_eq!(t.len(), 32);
        assert!(csrf_ok(&c, &a, &t));
        assert!(!csrf_ok(&c, &b, &t));
        assert!(!csrf_ok(&c, &a, "00"));
        assert!(!csrf_ok(&c, &a, "not hex"));
    }

    #[test]
    fn session_ids_are_random_and_stored_hashed() {
        let a = new_session_id();
        assert!(valid_session_id(&a), "{a}");
        assert_ne!(a, new_session_id());
        assert!(!valid_session_id("a.b.c"));
        assert!(!valid_session_id(&format!("{}=", &a[..42])));
        let h = session_id_hash(&a);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&a));
    }

    #[test]
    fn references() {
        assert!(valid_reference("session-42.a:b_c"));
        assert!(!valid_reference(""));
        assert!(!valid_reference("a b"));
        assert!(!valid_reference("x01017012345"));
        assert!(!valid_reference(&"a".repeat(65)));
    }

    #[test]
    fn only_cookies_the_broker_issued_name_a_session() {
        let c = config();
        let id = new_session_id();
        let value = session_cookie_value(&c, &id);
        assert_eq!(session_id_of_cookie(&c, &value), Some(id.as_str()));
        // A bare id, another id's tag, a cut tag, junk: none names a session.
        let other = session_cookie_value(&c, &new_session_id());
        let (_, other_tag) = other.split_once('.').unwrap();
        for bad in [
            id.clone(),
            format!("{id}.{other_tag}"),
            value[..value.len() - 2].to_owned(),
            format!("{id}.zz"),
            ".".to_owned(),
        ] {
            assert_eq!(session_id_of_cookie(&c, &bad), None, "{bad}");
        }
        // The CSRF token of a session is not its cookie tag.
        let csrf = csrf_token(&c, &id);
        assert_eq!(session_id_of_cookie(&c, &format!("{id}.{csrf}")), None);
    }
}
