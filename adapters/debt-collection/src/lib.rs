//! The debt-collection adapter: a collection agency's cases for one debtor over
//! a small JSON API (`docs/debt-collection-api.md`,
//! `docs/openapi/debt-collection.yaml`).
//!
//! `POST {base_url}{cases_path}` with `{"nationalId": ...}` in the body (never
//! in the URL), `Authorization: Bearer <api key>` and a fresh `X-Request-Id`;
//! the answer's cases become canonical `collectionCase` loans (principal,
//! interest, fees, status). `429` is [`AdapterError::Limited`].
//!
//! Collection cases are not unsecured debt under the register's law: this
//! adapter's [`LenderAdapter::kind`] is [`DebtKind::DebtCollection`], so the
//! broker calls it only for the person's own view and for presentation consents
//! naming collection cases.

pub mod cases;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use gjeldsbro_adapter::http::{classify, read_capped};
use gjeldsbro_adapter::{
    AdapterError, CustomerQuery, DebtKind, LenderAdapter, LenderSetup, Loan, SetupError,
};
use serde::Deserialize;

/// The protocol name in config: `adapter = "debt-collection"`.
pub const PROTOCOL: &str = "debt-collection";

/// The lender's `[lenders.settings]` for this protocol.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The API key the agency issued to the broker (sent as a bearer token).
    pub api_key: String,
    /// The cases resource under `base_url` (default `/v1/debtors/cases`).
    #[serde(default = "default_cases_path")]
    pub cases_path: String,
}

fn default_cases_path() -> String {
    "/v1/debtors/cases".into()
}

/// The broker's constructor.
pub fn from_setup(
    setup: &LenderSetup<'_>,
    client: reqwest::Client,
) -> Result<Arc<dyn LenderAdapter>, SetupError> {
    let settings: Settings = setup.settings()?;
    Ok(Arc::new(DebtCollection::new(
        client,
        setup.base_url,
        setup.org_no,
        setup.max_answer_bytes,
        settings,
    )))
}

/// One agency's client; built once at start, shared by all lookups.
pub struct DebtCollection {
    client: reqwest::Client,
    cases_url: String,
    org_no: String,
    authorization: String,
    max_answer_bytes: usize,
}

impl DebtCollection {
    pub fn new(
        client: reqwest::Client,
        base_url: &str,
        org_no: &str,
        max_answer_bytes: usize,
        settings: Settings,
    ) -> Self {
        DebtCollection {
            client,
            cases_url: format!("{}{}", base_url.trim_end_matches('/'), settings.cases_path),
            org_no: org_no.to_owned(),
            authorization: format!("Bearer {}", settings.api_key),
            max_answer_bytes,
        }
    }

    async fn fetch(&self, query: CustomerQuery<'_>) -> Result<Vec<Loan>, AdapterError> {
        let body = serde_json::to_vec(&cases::CasesQuery {
            national_id: query.nin.expose(),
        })
        .map_err(|_| AdapterError::Transport("cannot encode the query".into()))?;
        let mut request = self
            .client
            .post(&self.cases_url)
            .header(http::header::AUTHORIZATION, &self.authorization)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .header("X-Request-Id", uuid::Uuid::new_v4().to_string())
            .header("X-Trace-ID", query.trace_id);
        if let Some(tp) = query.traceparent {
            request = request.header("traceparent", tp);
        }
        let mut response = request
            .body(body)
            .send()
            .await
            .map_err(|e| classify(e, "agency"))?;
        let status = response.status();
        if status == http::StatusCode::TOO_MANY_REQUESTS {
            return Err(AdapterError::Limited);
        }
        if !status.is_success() {
            return Err(AdapterError::Status(status.as_u16()));
        }
        let body = read_capped(&mut response, self.max_answer_bytes, "agency").await?;
        cases::parse_cases(&body, &self.org_no)
    }
}

impl LenderAdapter for DebtCollection {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn kind(&self) -> DebtKind {
        DebtKind::DebtCollection
    }

    fn fetch_customer<'a>(
        &'a self,
        query: CustomerQuery<'a>,
    ) -> BoxFuture<'a, Result<Vec<Loan>, AdapterError>> {
        self.fetch(query).boxed()
    }
}
