//! The outbound Maskinporten-style access token: a JWT grant (RFC 7523) whose
//! client assertion is signed RS256 with the broker's registered key and carries
//! its `kid`. The token is cached and reused until shortly before it expires,
//! so a lookup normally costs no token round trip; one refresh at a time runs,
//! and the lookups that arrive meanwhile wait for it instead of each fetching
//! their own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gjeldsbro_adapter::AdapterError;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Maskinporten refuses assertions that live longer than 120 s.
const ASSERTION_LIFETIME_SECS: u64 = 120;
/// The most a token's answer may hold.
const MAX_TOKEN_ANSWER_BYTES: usize = 64 * 1024;
/// A token is trusted for at most this long, whatever `expires_in` says (the
/// number is the issuer's input; a silly one must neither overflow a clock nor
/// pin a token for ever).
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3_600);

/// What the token client needs to know.
pub struct TokenConfig {
    pub token_url: String,
    /// The assertion's `aud`: the token issuer's identifier.
    pub audience: String,
    /// The assertion's `iss`: the broker's client id at the issuer.
    pub client_id: String,
    pub scope: String,
    pub kid: String,
    pub key: EncodingKey,
    /// Refresh this long before expiry (at most half the token's lifetime).
    pub refresh_margin: Duration,
}

#[derive(Serialize)]
struct Assertion<'a> {
    aud: &'a str,
    iss: &'a str,
    scope: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

/// When a token fetched at `fetched_at` that lives `expires_in` seconds is
/// replaced: `margin` before it expires, but never later than half-way, so a
/// short-lived token is not used up to its last second.
pub fn refresh_at(fetched_at: Instant, expires_in: u64, margin: Duration) -> Instant {
    let lifetime = Duration::from_secs(expires_in).min(MAX_TOKEN_LIFETIME);
    fetched_at + (lifetime - margin.min(lifetime / 2))
}

/// A cached access token and the means to get a new one.
pub struct TokenSource {
    config: TokenConfig,
    client: reqwest::Client,
    cached: Mutex<Option<Cached>>,
}

impl TokenSource {
    pub fn new(config: TokenConfig, client: reqwest::Client) -> Self {
        TokenSource {
            config,
            client,
            cached: Mutex::new(None),
        }
    }

    /// A token valid for a while yet: the cached one, or a fresh one.
    pub async fn token(&self) -> Result<String, AdapterError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        // Counted from before the request: the token's clock started no later.
        let fetched_at = Instant::now();
        let answer = self.fetch().await?;
        *cached = Some(Cached {
            token: answer.access_token.clone(),
            refresh_at: refresh_at(fetched_at, answer.expires_in, self.config.refresh_margin),
        });
        Ok(answer.access_token)
    }

    /// Forgets the cached token (the API refused it: revoked, or the issuer's
    /// keys rotated); the next call fetches a new one.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    /// The signed client assertion.
    pub fn assertion(&self) -> Result<String, AdapterError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| AdapterError::Transport("the clock is before 1970".into()))?
            .as_secs();
        let claims = Assertion {
            aud: &self.config.audience,
            iss: &self.config.client_id,
            scope: &self.config.scope,
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.config.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.config.key)
            .map_err(|e| AdapterError::Transport(format!("cannot sign the client assertion: {e}")))
    }

    async fn fetch(&self) -> Result<TokenAnswer, AdapterError> {
        let assertion = self.assertion()?;
        // The assertion is base64url and dots: nothing to escape in a form body.
        let body = format!(
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}"
        );
        let mut response = self
            .client
            .post(&self.config.token_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| crate::classify(e, "token endpoint"))?;
        let status = response.status();
        if status == http::StatusCode::TOO_MANY_REQUESTS {
            return Err(AdapterError::Limited);
        }
        if !status.is_success() {
            return Err(AdapterError::Status(status.as_u16()));
        }
        let body =
            crate::read_capped(&mut response, MAX_TOKEN_ANSWER_BYTES, "token endpoint").await?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            AdapterError::Malformed("the token endpoint's answer is not a token".into())
        })?;
        if answer.access_token.is_empty()
            || answer.expires_in == 0
            || !answer.access_token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(AdapterError::Malformed(
                "the token endpoint's answer is not a usable token".into(),
            ));
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_before_they_expire() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(refresh_at(t0, 120, s(10)), t0 + s(110));
        assert_eq!(refresh_at(t0, 2, s(10)), t0 + s(1), "at most half-way");
        assert_eq!(refresh_at(t0, 1, s(0)), t0 + s(1));
        assert_eq!(
            refresh_at(t0, u64::MAX, s(10)),
            t0 + s(3_590),
            "a silly lifetime is capped, not an overflow"
        );
    }
}
