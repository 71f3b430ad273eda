//! The student-loan adapter: a Lånekassen-style saldo API (DSOP "Saldo på
//! studielån"), wire format in `docs/student-loans-api.md`.
//!
//! `GET {base_url}{saldo_path}` with the headers that API expects: `ApiKey`,
//! `Authorization` holding the Maskinporten access token *without* a `Bearer`
//! prefix, `PSU_ID` holding the national id (the protocol's own way of naming the
//! person: never a URL, never logged) and a fresh `X-Request-Id`. The token comes
//! from [`token::TokenSource`] (JWT grant, cached). The answer is a saldo split
//! into loan, interest, fees and costs ([`saldo`]), which becomes one canonical
//! `studentLoan`. `429 Too busy` is [`AdapterError::Limited`]: the broker treats
//! it as the lender's limit (snapshot, outcome `limited`), not as a failure.
//!
//! Student loans are not unsecured debt under the register's law: this adapter's
//! [`LenderAdapter::kind`] is [`DebtKind::StudentLoan`], so the broker calls it
//! only for the person's own view and for presentation consents naming student
//! loans.

pub mod saldo;
pub mod token;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
pub(crate) use gjeldsbro_adapter::http::{classify, read_capped};
use gjeldsbro_adapter::{
    AdapterError, CustomerQuery, DebtKind, LenderAdapter, LenderSetup, Loan, SetupError,
};
use serde::Deserialize;
use token::{TokenConfig, TokenSource};

/// The protocol name in config: `adapter = "student-loans"`.
pub const PROTOCOL: &str = "student-loans";

/// The lender's `[lenders.settings]` for this protocol.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The token endpoint (Maskinporten's `/token`).
    pub token_url: String,
    /// The client assertion's `aud` (Maskinporten's issuer identifier).
    pub token_audience: String,
    /// The broker's Maskinporten client id (the assertion's `iss`).
    pub client_id: String,
    /// The scope asked for.
    pub scope: String,
    /// The broker's RSA private key (PEM) registered with the issuer.
    pub key_file: PathBuf,
    /// The key's id at the issuer, sent as the assertion's `kid`.
    pub kid: String,
    /// The API key the saldo API issued to the broker (`ApiKey` header).
    pub api_key: String,
    /// The saldo resource under `base_url` (default `/v1/saldo`).
    #[serde(default = "default_saldo_path")]
    pub saldo_path: String,
    /// Seconds before expiry a token is refreshed (default 10; at most half
    /// its lifetime).
    #[serde(default = "default_refresh_margin_secs")]
    pub token_refresh_margin_secs: u64,
}

fn default_saldo_path() -> String {
    "/v1/saldo".into()
}
fn default_refresh_margin_secs() -> u64 {
    10
}

/// The broker's constructor: reads the settings, loads the key, builds the
/// adapter on the lender's configured client.
pub fn from_setup(
    setup: &LenderSetup<'_>,
    client: reqwest::Client,
) -> Result<Arc<dyn LenderAdapter>, SetupError> {
    let settings: Settings = setup.settings()?;
    setup.check_url("token_url", &settings.token_url)?;
    let path = (setup.resolve)(&settings.key_file);
    let pem = std::fs::read(&path).map_err(|e| SetupError::File {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(&pem).map_err(|_| {
        SetupError::Key(format!(
            "{} is not an RSA private key (PEM)",
            path.display()
        ))
    })?;
    Ok(Arc::new(StudentLoans::new(
        client,
        setup.base_url,
        setup.max_answer_bytes,
        settings,
        key,
    )))
}

/// One student-loan lender's client; built once at start, shared by all lookups.
pub struct StudentLoans {
    client: reqwest::Client,
    saldo_url: String,
    api_key: String,
    max_answer_bytes: usize,
    tokens: TokenSource,
}

impl StudentLoans {
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        max_answer_bytes: usize,
        settings: Settings,
        key: jsonwebtoken::EncodingKey,
    ) -> Self {
        let tokens = TokenSource::new(
            TokenConfig {
                token_url: settings.token_url,
                audience: settings.token_audience,
                client_id: settings.client_id,
                scope: settings.scope,
                kid: settings.kid,
                key,
                refresh_margin: Duration::from_secs(settings.token_refresh_margin_secs),
            },
            client.clone(),
        );
        StudentLoans {
            client,
            saldo_url: format!("{}{}", base_url.trim_end_matches('/'), settings.saldo_path),
            api_key: settings.api_key,
            max_answer_bytes,
            tokens,
        }
    }

    /// The token source (tests look at its assertion).
    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    async fn fetch(&self, query: CustomerQuery<'_>) -> Result<Vec<Loan>, AdapterError> {
        let token = self.tokens.token().await?;
        let nin = query.nin.expose();
        let mut response = self
            .client
            .get(&self.saldo_url)
            .header("ApiKey", &self.api_key)
            // The saldo API takes the token bare, without "Bearer ".
            .header(http::header::AUTHORIZATION, token)
            .header("PSU_ID", &nin)
            .header("X-Request-Id", uuid::Uuid::new_v4().to_string())
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| classify(e, "saldo API"))?;
        let status = response.status();
        if status == http::StatusCode::TOO_MANY_REQUESTS {
            return Err(AdapterError::Limited);
        }
        if status == http::StatusCode::UNAUTHORIZED {
            // Our token was refused: the next call gets a new one.
            self.tokens.invalidate().await;
        }
        if !status.is_success() {
            return Err(AdapterError::Status(status.as_u16()));
        }
        let body = read_capped(&mut response, self.max_answer_bytes, "saldo API").await?;
        Ok(saldo::parse_saldo(&body)?.into_iter().collect())
    }
}

impl LenderAdapter for StudentLoans {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn kind(&self) -> DebtKind {
        DebtKind::StudentLoan
    }

    fn fetch_customer<'a>(
        &'a self,
        query: CustomerQuery<'a>,
    ) -> BoxFuture<'a, Result<Vec<Loan>, AdapterError>> {
        self.fetch(query).boxed()
    }
}
