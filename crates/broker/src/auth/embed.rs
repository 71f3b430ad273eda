//! Embed tokens: the only credential a partner holds for the embedded page.
//!
//! The partner's page posts a token into the iframe to open the person's
//! session there (`POST /embed/v1/session`). Whatever the partner posts, it can
//! also keep and use itself, so that token must open the page and do nothing
//! else. An embed token is a person token (`pid`, no `consumer`) that
//!
//! - names the embed audience and not the API's (`[embed] audience`, default
//!   `<auth.audience>/embed`) and carries the scope [`EMBED_SCOPE`];
//! - lives at most `[embed] token_max_lifetime_secs` from now (default 300);
//! - carries a `jti`, which the HTTP layer claims in the store, so each token
//!   opens one session only.
//!
//! Every other use refuses it: [`Authenticator::authenticate`] (every API route,
//! `/v1/me/*` included) answers `401` for a token that names the embed audience
//! or scope, and [`Authenticator::authenticate_embed`] answers `401` for any
//! token that is not an embed token. Embed tokens never enter the verified-token
//! cache.

use std::fmt;

use gjeldsbro_adapter::NationalId;
use serde::Deserialize;

use super::{AuthError, AuthSetupError, Authenticator, Claims};

/// The scope an embed token carries (and no other token may).
pub const EMBED_SCOPE: &str = "gjeldsbro:embed";
/// The longest an embed token may live from the moment it is posted, unless
/// configured otherwise: long enough for the partner's page to load and post it.
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 300;
/// Longest accepted `jti`.
const MAX_JTI_LEN: usize = 128;

/// The embed audience when none is configured: the API's audience with `/embed`.
pub fn default_audience(api_audience: &str) -> String {
    format!("{}/embed", api_audience.trim_end_matches('/'))
}

/// A token's `aud`: one string or a list (RFC 7519 § 4.1.3).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Audiences {
    One(String),
    Many(Vec<String>),
}

impl Audiences {
    fn contains(&self, audience: &str) -> bool {
        match self {
            Audiences::One(a) => a == audience,
            Audiences::Many(list) => list.iter().any(|a| a == audience),
        }
    }
}

/// What a token is being checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenUse {
    /// Any API route (bearer tokens).
    Api,
    /// Opening the embedded page's session, once.
    Embed,
}

/// A verified embed token: whom it names, its `jti` (to claim once) and its `exp`.
#[derive(Clone, PartialEq, Eq)]
pub struct EmbedGrant {
    pub person: NationalId,
    pub token_id: String,
    /// Unix seconds.
    pub expires_at: u64,
}

impl fmt::Debug for EmbedGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbedGrant")
            .field("person", &"***********")
            .field("token_id", &self.token_id)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

fn valid_jti(jti: &str) -> bool {
    !jti.is_empty() && jti.len() <= MAX_JTI_LEN && jti.bytes().all(|b| b.is_ascii_graphic())
}

impl Authenticator {
    /// The audience embed tokens name.
    pub fn embed_audience(&self) -> &str {
        &self.embed_audience
    }

    /// Sets the embed audience (`[embed] audience`). It must differ from the
    /// API's, or an API token would open the page and an embed token the API.
    pub fn with_embed_audience(mut self, audience: &str) -> Result<Self, AuthSetupError> {
        let audience = audience.trim();
        if audience.is_empty() {
            return Err(AuthSetupError::EmptySetting("embed audience"));
        }
        if audience == self.audience {
            return Err(AuthSetupError::EmbedAudience);
        }
        for (_, v) in self.keys.values_mut() {
            v.set_audience(&[self.audience.as_str(), audience]);
        }
        self.embed_audience = audience.to_owned();
        self.verified.invalidate_all();
        Ok(self)
    }

    /// Checks a token posted to open the embedded page: an embed token, and
    /// one that expires within `max_lifetime_secs` (plus the leeway). Does not
    /// claim its `jti`: the caller does, in the store.
    pub fn authenticate_embed(
        &self,
        token: &str,
        max_lifetime_secs: u64,
    ) -> Result<EmbedGrant, AuthError> {
        let result = self.check_embed(token, max_lifetime_secs);
        if let Err(e) = &result {
            // The reason only: never the token or a claim.
            tracing::debug!(
                reason = e.reason(),
                refused = e.kind(),
                "embed token refused"
            );
        }
        result
    }

    fn check_embed(&self, token: &str, max_lifetime_secs: u64) -> Result<EmbedGrant, AuthError> {
        // The same shape checks as a bearer token gets, before any decoding.
        let header = format!("Bearer {}", token.trim());
        let token = super::bearer_token(&header)?;
        let (caller, exp) = self.verify(token, TokenUse::Embed)?;
        let now = jsonwebtoken::get_current_timestamp();
        if exp > now.saturating_add(max_lifetime_secs.saturating_add(self.leeway_secs)) {
            return Err(AuthError::Unauthenticated(
                "the embed token lives too long: mint one per page load",
            ));
        }
        match (caller.person, caller.token_id) {
            (Some(person), Some(token_id)) => Ok(EmbedGrant {
                person,
                token_id,
                expires_at: exp,
            }),
            // `check_use` already demanded both.
            _ => Err(AuthError::Unauthenticated("not an embed token")),
        }
    }

    /// Refuses a token used where it does not belong: an embed token anywhere
    /// but the page's session, any other token there.
    pub(super) fn check_use(&self, claims: &Claims, usage: TokenUse) -> Result<(), AuthError> {
        let aud = claims.aud.as_ref();
        let names_embed = aud.is_some_and(|a| a.contains(&self.embed_audience));
        let names_api = aud.is_some_and(|a| a.contains(&self.audience));
        let embed_scope = claims
            .scope
            .as_deref()
            .is_some_and(|s| s.split_whitespace().any(|x| x == EMBED_SCOPE));
        match usage {
            TokenUse::Api if names_embed || embed_scope => Err(AuthError::Unauthenticated(
                "an embed token opens the embedded page and is accepted nowhere else",
            )),
            TokenUse::Api => Ok(()),
            TokenUse::Embed => {
                if !names_embed || names_api || !embed_scope {
                    return Err(AuthError::Unauthenticated(
                        "not an embed token (the embed audience alone and the gjeldsbro:embed scope)",
                    ));
                }
                if claims.consumer.is_some() || claims.pid.is_none() {
                    return Err(AuthError::Unauthenticated(
                        "an embed token names a person and no organisation",
                    ));
                }
                if !claims.jti.as_deref().is_some_and(valid_jti) {
                    return Err(AuthError::Unauthenticated(
                        "an embed token needs a jti (at most 128 printable characters)",
                    ));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::devtoken::{self, DevClaims};
    use super::*;
    use gjeldsbro_adapter::IdPolicy;
    use gjeldsbro_adapter::nin::make_id;

    const ISS: &str = "https://issuer.example";

    fn authenticator() -> Authenticator {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let jwks = root.join("config/dev-jwks.json");
        let config = crate::config::Config::parse(&format!(
            "listen = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://x.db\"\n\
             [auth]\nissuer = \"{ISS}\"\naudience = \"api\"\njwks_file = \"{}\"\n",
            jwks.display()
        ))
        .unwrap();
        Authenticator::new(&config.auth, &jwks, &[], IdPolicy::STRICT)
            .unwrap()
            .with_embed_audience("api/embed")
            .unwrap()
    }

    fn mint(aud: &str, scopes: &[&str], org: Option<&str>, ttl_secs: u64) -> String {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let key = std::fs::read(root.join("config/dev-signing-key.pem")).unwrap();
        devtoken::mint(
            &key,
            devtoken::DEV_KID,
            ISS,
            aud,
            DevClaims {
                org_no: org.map(str::to_owned),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                pid: (100..200).find_map(|i| make_id(1, 1, 70, i, false, false)),
                ttl_secs,
            },
        )
        .unwrap()
    }

    #[test]
    fn an_embed_token_opens_the_page_and_nothing_else() {
        let a = authenticator();
        let embed = mint("api/embed", &[EMBED_SCOPE], None, 120);
        let grant = a.authenticate_embed(&embed, 300).expect("an embed token");
        assert!(!grant.token_id.is_empty());
        assert!(!format!("{grant:?}").contains("010170"), "no id in Debug");
        assert_eq!(
            a.authenticate(Some(&format!("Bearer {embed}"))),
            Err(AuthError::Unauthenticated(
                "an embed token opens the embedded page and is accepted nowhere else"
            ))
        );
        let api = mint("api", &["openid"], None, 120);
        assert!(a.authenticate(Some(&format!("Bearer {api}"))).is_ok());
        assert!(a.authenticate_embed(&api, 300).is_err(), "an API token");
        for bad in [
            mint("api", &[EMBED_SCOPE], None, 120),
            mint("api/embed", &["openid"], None, 120),
            mint("api/embed", &[EMBED_SCOPE], Some("910000001"), 120),
            mint("api/embed", &[EMBED_SCOPE], None, 3600),
            mint("other/embed", &[EMBED_SCOPE], None, 120),
        ] {
            assert!(a.authenticate_embed(&bad, 300).is_err());
            assert!(a.authenticate(Some(&format!("Bearer {bad}"))).is_err());
        }
        assert!(authenticator().with_embed_audience("api").is_err());
    }

    #[test]
    fn audiences_and_ids() {
        assert_eq!(default_audience("gjeldsbro"), "gjeldsbro/embed");
        assert_eq!(
            default_audience("https://api.example/"),
            "https://api.example/embed"
        );
        let one: Audiences = serde_json::from_str("\"a\"").unwrap();
        assert!(one.contains("a") && !one.contains("b"));
        let many: Audiences = serde_json::from_str("[\"a\",\"b\"]").unwrap();
        assert!(many.contains("b"));
        assert!(valid_jti("8f0c-11"));
        assert!(!valid_jti(""));
        assert!(!valid_jti("a b"));
        assert!(!valid_jti(&"x".repeat(129)));
    }
}
