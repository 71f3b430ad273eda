//! Mints tokens with the dev signing key (`config/dev-signing-key.pem`, trusted by
//! `config/dev-jwks.json`). For dev, demo and tests only: that private key is
//! public in the repository.
//!
//! [`mint`] validates nothing (an org number or `pid` goes into the token as
//! given), so tests can mint tokens the [`Authenticator`](super::Authenticator)
//! must refuse; [`for_args`] and [`allowed`] are the checks of the
//! `dev-token` command and the demo.

use std::fmt;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde::Serialize;

use super::{CONSUMER_AUTHORITY, CONSUMER_ID_PREFIX};
use crate::config::{Config, is_org_no};

/// The committed dev JWKS (`config/dev-jwks.json`): the public half of the dev
/// signing key. Outside dev mode the broker refuses a JWKS holding this key.
pub const DEV_JWKS: &str = include_str!("../../../../config/dev-jwks.json");

/// The committed dev signing key (`config/dev-signing-key.pem`): public in the
/// repository, so only dev and demo configs trust it.
pub const DEV_SIGNING_KEY: &str = include_str!("../../../../config/dev-signing-key.pem");

/// The kid of the committed dev key.
pub const DEV_KID: &str = "gjeldsbro-dev-1";
/// The `client_id` claim of minted tokens.
pub const DEV_CLIENT_ID: &str = "gjeldsbro-dev-token";

/// What to put in a dev token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DevClaims {
    /// Becomes `consumer: {"authority":"iso6523-actorid-upis","ID":"0192:<org_no>"}`.
    pub org_no: Option<String>,
    /// Space-joined into `scope`.
    pub scopes: Vec<String>,
    /// A person's national id, as `pid`.
    pub pid: Option<String>,
    /// Lifetime: `exp = iat + ttl_secs`.
    pub ttl_secs: u64,
}

impl fmt::Debug for DevClaims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevClaims")
            .field("org_no", &self.org_no)
            .field("scopes", &self.scopes)
            .field("pid", &self.pid.as_ref().map(|_| "***********"))
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DevTokenError {
    #[error("the signing key is not a PKCS#8 PEM EC (P-256) or RSA private key")]
    Key,
    #[error("signing failed: {0}")]
    Sign(String),
    #[error("the system clock is before 1970")]
    Clock,
    /// What `gjeldsbro dev-token` will not mint, and why.
    #[error("{0}")]
    Refused(String),
}

#[derive(Serialize)]
struct Consumer {
    authority: &'static str,
    #[serde(rename = "ID")]
    id: String,
}

#[derive(Serialize)]
struct Payload<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
    scope: String,
    client_id: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumer: Option<Consumer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<&'a str>,
}

/// Signs a token with `key_pem` (an EC P-256 key → ES256, an RSA key → RS256)
/// under `kid`.
pub fn mint(
    key_pem: &[u8],
    kid: &str,
    issuer: &str,
    audience: &str,
    claims: DevClaims,
) -> Result<String, DevTokenError> {
    let (key, alg) = match EncodingKey::from_ec_pem(key_pem) {
        Ok(k) => (k, Algorithm::ES256),
        Err(_) => (
            EncodingKey::from_rsa_pem(key_pem).map_err(|_| DevTokenError::Key)?,
            Algorithm::RS256,
        ),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| DevTokenError::Clock)?
        .as_secs();
    let payload = Payload {
        iss: issuer,
        aud: audience,
        iat: now,
        exp: now.saturating_add(claims.ttl_secs),
        jti: uuid::Uuid::new_v4().to_string(),
        scope: claims.scopes.join(" "),
        client_id: DEV_CLIENT_ID,
        consumer: claims.org_no.map(|org| Consumer {
            authority: CONSUMER_AUTHORITY,
            id: format!("{CONSUMER_ID_PREFIX}{org}"),
        }),
        pid: claims.pid.as_deref(),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    encode(&header, &payload, &key).map_err(|e| DevTokenError::Sign(e.to_string()))
}

/// Arguments of `gjeldsbro dev-token`.
#[derive(Debug, Clone)]
pub struct DevTokenArgs {
    pub issuer: String,
    pub audience: String,
    pub org: Option<String>,
    pub scopes: Vec<String>,
    pub pid: Option<String>,
    pub ttl_secs: u64,
}

/// Whether `gjeldsbro dev-token` may mint for `config`: only for a config that
/// says it is a dev one (`dev_mode = true`; a production broker refuses the dev
/// key anyway, and the command must not hint otherwise), and only a token that
/// config's broker would accept (`[auth] max_token_lifetime_secs`).
pub fn allowed(config: &Config, ttl_secs: u64) -> Result<(), DevTokenError> {
    if !config.dev_mode {
        return Err(DevTokenError::Refused(
            "dev-token mints only for configs with dev_mode = true (dev, demo and tests)".into(),
        ));
    }
    let max = config.auth.max_token_lifetime_secs;
    if max > 0 && ttl_secs > max {
        return Err(DevTokenError::Refused(format!(
            "--ttl-secs {ttl_secs} is longer than the config's [auth] max_token_lifetime_secs = {max}"
        )));
    }
    if ttl_secs == 0 {
        return Err(DevTokenError::Refused("--ttl-secs must be > 0".into()));
    }
    Ok(())
}

/// Mints an embed token for `pid` (what a partner posts into the embedded
/// page's iframe): the config's embed audience, the `gjeldsbro:embed` scope,
/// and a lifetime capped at `[embed] token_max_lifetime_secs`. It opens one
/// session of the page and works nowhere else.
pub fn embed_token(
    key_pem: &[u8],
    config: &Config,
    pid: &str,
    ttl_secs: u64,
) -> Result<String, DevTokenError> {
    for_args(
        key_pem,
        DevTokenArgs {
            issuer: config.auth.issuer.clone(),
            audience: config.embed.audience(&config.auth),
            org: None,
            scopes: vec![super::embed::EMBED_SCOPE.to_owned()],
            pid: Some(pid.to_owned()),
            ttl_secs: ttl_secs.min(config.embed.token_max_lifetime_secs()),
        },
    )
}

/// Mints a token signed with the dev key (trusted only by dev and demo configs).
pub fn for_args(key_pem: &[u8], args: DevTokenArgs) -> Result<String, DevTokenError> {
    if let Some(org) = &args.org
        && !is_org_no(org)
    {
        return Err(DevTokenError::Refused(
            "--org must be a 9-digit organisation number".into(),
        ));
    }
    if args.org.is_none() && args.pid.is_none() {
        return Err(DevTokenError::Refused(
            "give --org (an organisation token) or --pid (a person token)".into(),
        ));
    }
    let scopes = args
        .scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_owned)
        .collect();
    mint(
        key_pem,
        DEV_KID,
        &args.issuer,
        &args.audience,
        DevClaims {
            org_no: args.org,
            scopes,
            pid: args.pid,
            ttl_secs: args.ttl_secs,
        },
    )
    .map_err(|e| DevTokenError::Refused(format!("cannot mint the token: {e}")))
}
