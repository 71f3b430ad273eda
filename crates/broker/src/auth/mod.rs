//! Who is calling: bearer JWTs (Maskinporten organisation tokens, OIDC-style
//! person tokens) checked against the configured issuer, audience and JWKS file,
//! and verified client certificates (mTLS, [`cert`]) naming an organisation.
//!
//! [`Authenticator`] is built once at start and shared; [`Authenticator::authenticate`]
//! turns an `Authorization` header into a [`Caller`] or an [`AuthError`] (401/403).
//! Per-endpoint role and scope checks belong to the HTTP layer
//! ([`Caller::has_role`], [`Caller::has_scope`]).
//!
//! Nothing here logs or echoes a token, a claim value or a national id: error
//! texts are fixed strings.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use gjeldsbro_adapter::{IdPolicy, NationalId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde::Deserialize;
use sha2::Digest;

use crate::config::{AuthConfig, ClientConfig, Role, is_org_no};

pub mod cert;
pub mod devtoken;
pub mod embed;
mod jwks;
#[cfg(test)]
mod tests;

/// The Maskinporten `consumer` authority for Norwegian organisation numbers.
pub const CONSUMER_AUTHORITY: &str = "iso6523-actorid-upis";
/// The ISO 6523 ICD prefix of a Norwegian organisation number in `consumer.ID`.
pub const CONSUMER_ID_PREFIX: &str = "0192:";

/// Longest accepted bearer token, in bytes. Real ones are well under 4 KiB.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// An authenticated caller.
///
/// An organisation token (`consumer` claim) sets `org_no`, `org_name` and `roles`;
/// a person token (`pid` claim) sets `person`. A token carrying both sets both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// From the Maskinporten `consumer` claim `{"authority":"iso6523-actorid-upis","ID":"0192:<orgno>"}`.
    pub org_no: Option<String>,
    /// From `[[clients]]`.
    pub org_name: Option<String>,
    /// From `[[clients]]` for that organisation; empty for a person.
    pub roles: Vec<Role>,
    /// From the space-separated `scope` claim.
    pub scopes: Vec<String>,
    /// From `pid`, validated with the configured [`IdPolicy`]. Never printed.
    pub person: Option<NationalId>,
    /// The `client_id` claim, if present.
    pub client_id: Option<String>,
    /// The `jti` claim, if present.
    pub token_id: Option<String>,
}

impl Caller {
    pub fn has_role(&self, r: Role) -> bool {
        self.roles.contains(&r)
    }

    pub fn has_scope(&self, s: &str) -> bool {
        self.scopes.iter().any(|x| x == s)
    }
}

/// Why a request is refused. The texts are fixed and never echo the token or a claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No valid credentials (the HTTP crate answers 401).
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    /// Valid credentials, but the caller may not use the broker (403).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
}

impl AuthError {
    /// Which refusal, for log lines: `unauthenticated` or `forbidden` (the
    /// status code is the HTTP crate's business).
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::Unauthenticated(_) => "unauthenticated",
            AuthError::Forbidden(_) => "forbidden",
        }
    }

    /// The short reason, without the status prefix.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Unauthenticated(r) | AuthError::Forbidden(r) => r,
        }
    }
}

/// Why an [`Authenticator`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read JWKS file {path}: {source}")]
    ReadJwks {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("JWKS file {path} is not a valid JWK set: {message}")]
    ParseJwks { path: PathBuf, message: String },
    #[error("JWKS file {path} holds no usable signing key (ES256/ES384/RS*/PS* with a kid)")]
    NoUsableKeys { path: PathBuf },
    #[error("JWKS key {kid:?} cannot be used: {reason}")]
    BadKey { kid: String, reason: String },
    #[error("JWKS kid {kid:?} appears twice")]
    DuplicateKid { kid: String },
    #[error("auth.{0} must not be empty")]
    EmptySetting(&'static str),
    #[error("client org_no {0} appears twice or is not 9 digits")]
    BadClient(String),
    #[error(
        "auth.jwks_file {path} trusts the public dev key (config/dev-jwks.json, whose private key is in the repository): point jwks_file at your issuer's JWKS, or set dev_mode = true in a dev, demo or test config"
    )]
    DevKey { path: PathBuf },
    #[error("embed.audience must differ from auth.audience")]
    EmbedAudience,
}

/// Refuses a JWKS file holding the committed dev key (compared by key
/// material) unless `dev_mode` is set: anyone can sign tokens for that key.
pub fn refuse_dev_key(jwks_path: &Path, dev_mode: bool) -> Result<(), AuthSetupError> {
    if dev_mode {
        return Ok(());
    }
    let text = std::fs::read(jwks_path).map_err(|source| AuthSetupError::ReadJwks {
        path: jwks_path.to_path_buf(),
        source,
    })?;
    let holds = jwks::shares_a_key(&text, devtoken::DEV_JWKS.as_bytes()).map_err(|message| {
        AuthSetupError::ParseJwks {
            path: jwks_path.to_path_buf(),
            message,
        }
    })?;
    if holds {
        return Err(AuthSetupError::DevKey {
            path: jwks_path.to_path_buf(),
        });
    }
    Ok(())
}

struct Client {
    name: String,
    roles: Vec<Role>,
}

/// Checks bearer tokens. Built once at start; `Send + Sync`, share it in an `Arc`.
pub struct Authenticator {
    /// One validation per key: its own single algorithm, plus issuer, audience, exp, nbf.
    keys: HashMap<String, (jsonwebtoken::DecodingKey, Validation)>,
    clients: HashMap<String, Client>,
    policy: IdPolicy,
    leeway_secs: u64,
    /// `[auth] max_token_lifetime_secs`; 0: no limit.
    max_lifetime_secs: u64,
    /// Tokens already verified, by their SHA-256, with their `exp`. Clients reuse
    /// a token until it expires, and a signature check is the largest single cost
    /// of a cached lookup (about 40 µs for ES256). Keys and clients are fixed for
    /// the process, so a verified token stays valid until its `exp`, which is
    /// checked again on every hit; the TTL only bounds memory for tokens no
    /// longer used. Failures are never cached. Embed tokens never enter it.
    verified: moka::sync::Cache<[u8; 32], (Caller, u64)>,
    /// The API's audience and the embedded page's ([`embed`]): a token for one
    /// is refused by the other.
    audience: String,
    embed_audience: String,
}

/// How many verified tokens are remembered, and for how long at most.
const VERIFIED_CAPACITY: u64 = 10_000;
const VERIFIED_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Whether a token with this `exp` is still acceptable at `now` (as
/// `jsonwebtoken` judges it: expired once `exp` is more than `leeway` past).
fn unexpired(exp: u64, leeway: u64, now: u64) -> bool {
    exp.saturating_add(leeway) >= now
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&str> = self.keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        f.debug_struct("Authenticator")
            .field("kids", &kids)
            .field("clients", &self.clients.len())
            .field("policy", &self.policy)
            .finish()
    }
}

/// The claims we read beyond the registered ones `jsonwebtoken` validates.
#[derive(Deserialize)]
struct Claims {
    /// Required and checked by `jsonwebtoken`; kept for the verified-token cache.
    #[serde(default)]
    exp: u64,
    /// Issued at: bounds the lifetime (`exp` − `iat`) and must not lie ahead.
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    consumer: Option<Consumer>,
    #[serde(default)]
    pid: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    jti: Option<String>,
    /// Validated by `jsonwebtoken`; read again to tell an API token from an
    /// embed token.
    #[serde(default)]
    aud: Option<embed::Audiences>,
}

#[derive(Deserialize)]
struct Consumer {
    authority: String,
    #[serde(rename = "ID")]
    id: String,
}

impl Authenticator {
    /// Loads the JWKS file (once) and indexes the clients. `jwks_path` is the resolved
    /// `auth.jwks_file`.
    pub fn new(
        auth: &AuthConfig,
        jwks_path: &Path,
        clients: &[ClientConfig],
        policy: IdPolicy,
    ) -> Result<Self, AuthSetupError> {
        if auth.issuer.trim().is_empty() {
            return Err(AuthSetupError::EmptySetting("issuer"));
        }
        if auth.audience.trim().is_empty() {
            return Err(AuthSetupError::EmptySetting("audience"));
        }
        let embed_audience = embed::default_audience(&auth.audience);
        let keys = jwks::load(jwks_path)?
            .into_iter()
            .map(|(kid, k)| {
                let mut v = Validation::new(k.alg);
                v.set_issuer(&[&auth.issuer]);
                // Either audience passes here; `verify` then refuses a token
                // used where its audience does not belong.
                v.set_audience(&[&auth.audience, &embed_audience]);
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                v.validate_exp = true;
                v.validate_nbf = true;
                v.validate_aud = true;
                v.leeway = auth.leeway_secs;
                (kid, (k.key, v))
            })
            .collect();
        let mut by_org = HashMap::new();
        for c in clients {
            let fresh = by_org
                .insert(
                    c.org_no.clone(),
                    Client {
                        name: c.name.clone(),
                        roles: c.roles.clone(),
                    },
                )
                .is_none();
            if !fresh || !is_org_no(&c.org_no) {
                return Err(AuthSetupError::BadClient(c.org_no.clone()));
            }
        }
        Ok(Authenticator {
            keys,
            clients: by_org,
            policy,
            leeway_secs: auth.leeway_secs,
            max_lifetime_secs: auth.max_token_lifetime_secs,
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_CAPACITY)
                .time_to_live(VERIFIED_TTL)
                .build(),
            audience: auth.audience.clone(),
            embed_audience,
        })
    }

    /// The key ids this authenticator trusts.
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Checks the raw `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let result = self.check(authorization);
        if let Err(e) = &result {
            // The reason only: never the header, the token or a claim.
            tracing::debug!(reason = e.reason(), refused = e.kind(), "caller refused");
        }
        result
    }

    fn check(&self, authorization: Option<&str>) -> Result<Caller, AuthError> {
        let header = authorization.ok_or(AuthError::Unauthenticated("missing credentials"))?;
        let token = bearer_token(header)?;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some((caller, exp)) = self.verified.get(&digest) {
            if unexpired(exp, self.leeway_secs, jsonwebtoken::get_current_timestamp()) {
                return Ok(caller);
            }
            self.verified.invalidate(&digest);
            return Err(AuthError::Unauthenticated("token expired"));
        }
        let (caller, exp) = self.verify(token, embed::TokenUse::Api)?;
        self.verified.insert(digest, (caller.clone(), exp));
        Ok(caller)
    }

    /// The full check of a token not seen before: signature, claims, client,
    /// and that the token is meant for `usage` (an embed token opens the
    /// embedded page and nothing else).
    fn verify(&self, token: &str, usage: embed::TokenUse) -> Result<(Caller, u64), AuthError> {
        let jwt_header =
            decode_header(token).map_err(|_| AuthError::Unauthenticated("malformed token"))?;
        if jwt_header.crit.is_some() {
            // We understand no JWS extensions, so any critical one must be refused.
            return Err(AuthError::Unauthenticated("unsupported critical header"));
        }
        let kid = jwt_header
            .kid
            .as_deref()
            .ok_or(AuthError::Unauthenticated("token has no key id"))?;
        let (key, validation) = self
            .keys
            .get(kid)
            .ok_or(AuthError::Unauthenticated("unknown key id"))?;
        let data = decode::<Claims>(token, key, validation).map_err(|e| map_jwt_error(e.kind()))?;
        let claims = data.claims;
        check_lifetime(
            claims.iat,
            claims.exp,
            jsonwebtoken::get_current_timestamp(),
            self.leeway_secs,
            self.max_lifetime_secs,
        )?;
        self.check_use(&claims, usage)?;

        let org_no = match &claims.consumer {
            Some(c) => Some(org_from_consumer(c)?),
            None => None,
        };
        let person = match claims.pid.as_deref() {
            Some(pid) => Some(
                NationalId::parse(pid, self.policy)
                    .map_err(|_| AuthError::Unauthenticated("invalid person id"))?,
            ),
            None => None,
        };
        if org_no.is_none() && person.is_none() {
            return Err(AuthError::Unauthenticated(
                "token names neither an organisation nor a person",
            ));
        }
        let (org_name, roles) = match &org_no {
            Some(org) => {
                let client = self.clients.get(org).ok_or(AuthError::Forbidden(
                    "organisation is not a registered client",
                ))?;
                (Some(client.name.clone()), client.roles.clone())
            }
            None => (None, Vec::new()),
        };
        let scopes = claims
            .scope
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let caller = Caller {
            org_no,
            org_name,
            roles,
            scopes,
            person,
            client_id: claims.client_id,
            token_id: claims.jti,
        };
        Ok((caller, claims.exp))
    }
}

/// `iat` and the lifetime it implies, which `jsonwebtoken` does not check: a
/// token issued in the future (beyond the leeway) or living longer than
/// `max_lifetime` (0: no limit) is refused, and so, when there is a limit, is a
/// token without `iat`, whose lifetime cannot be judged. A stolen long-lived
/// token would otherwise stay good for as long as its issuer wrote.
fn check_lifetime(
    iat: Option<u64>,
    exp: u64,
    now: u64,
    leeway: u64,
    max_lifetime: u64,
) -> Result<(), AuthError> {
    let Some(iat) = iat else {
        if max_lifetime > 0 {
            return Err(AuthError::Unauthenticated("token lacks iat"));
        }
        return Ok(());
    };
    if iat > now.saturating_add(leeway) {
        return Err(AuthError::Unauthenticated("token issued in the future"));
    }
    // An exp before iat is a lifetime of 0: jsonwebtoken has judged exp.
    if max_lifetime > 0 && exp.saturating_sub(iat) > max_lifetime {
        return Err(AuthError::Unauthenticated("token lifetime too long"));
    }
    Ok(())
}

/// Extracts the token from `Bearer <token>` (scheme case-insensitive, RFC 7235).
fn bearer_token(header: &str) -> Result<&str, AuthError> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(' ')
        .ok_or(AuthError::Unauthenticated("not a bearer token"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Unauthenticated("not a bearer token"));
    }
    let token = rest.trim_start();
    if token.is_empty()
        || token.len() > MAX_TOKEN_LEN
        || token.bytes().filter(|&b| b == b'.').count() != 2
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(AuthError::Unauthenticated("malformed token"));
    }
    Ok(token)
}

/// `{"authority":"iso6523-actorid-upis","ID":"0192:<9 digits>"}` → the org number.
fn org_from_consumer(c: &Consumer) -> Result<String, AuthError> {
    if c.authority != CONSUMER_AUTHORITY {
        return Err(AuthError::Unauthenticated("unsupported consumer authority"));
    }
    match c.id.strip_prefix(CONSUMER_ID_PREFIX) {
        Some(org) if is_org_no(org) => Ok(org.to_string()),
        _ => Err(AuthError::Unauthenticated("malformed consumer id")),
    }
}

/// Maps a `jsonwebtoken` failure to a fixed reason. Its own texts are not used:
/// JSON errors can quote claim values.
fn map_jwt_error(kind: &ErrorKind) -> AuthError {
    AuthError::Unauthenticated(match kind {
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm => "algorithm not allowed for this key",
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::MissingRequiredClaim(_) => "token lacks a required claim",
        ErrorKind::InvalidClaimFormat(_) => "malformed claim",
        _ => "malformed token",
    })
}
