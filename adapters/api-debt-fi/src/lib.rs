//! The API-DEBT-FI adapter: the Norwegian lenders' standard interface.
//!
//! `getDataForSSN` is `GET {base}/debt-information/v1/loans/{org}/customer` with the
//! national id in the `customerID` header (never in the URL). The answer is
//! untrusted input: its size is capped while it streams in, it must be the
//! documented JSON, name the customer and institution that were asked for, and
//! every loan must pass the register's rules. Anything else is a failure of this
//! lender, reported as [`AdapterError::Malformed`], never a panic.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use gjeldsbro_adapter::http::{classify, read_capped};
use gjeldsbro_adapter::{
    AdapterError, CustomerLoans, CustomerQuery, DebtKind, LenderAdapter, LenderSetup, Loan,
    SetupError, scrub,
};

/// The protocol name in config: `adapter = "api-debt-fi"`.
pub const PROTOCOL: &str = "api-debt-fi";

/// API-DEBT-FI has no settings of its own; a `[lenders.settings]` table for
/// it is a mistake worth refusing at start.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {}

/// The broker's constructor: the adapter on the lender's configured client.
pub fn from_setup(
    setup: &LenderSetup<'_>,
    client: reqwest::Client,
) -> Result<Arc<dyn LenderAdapter>, SetupError> {
    let _: Settings = setup.settings()?;
    Ok(Arc::new(ApiDebtFi::with_client(
        client,
        ApiDebtFiConfig {
            base_url: setup.base_url.to_owned(),
            org_no: setup.org_no.to_owned(),
            max_answer_bytes: setup.max_answer_bytes,
            connect_timeout: setup.timeout.min(Duration::from_secs(2)),
            pool_max_idle: 32,
        },
    )))
}

/// Settings for one lender's client.
#[derive(Debug, Clone)]
pub struct ApiDebtFiConfig {
    pub base_url: String,
    /// The lender's financialInstitutionID (organisation number).
    pub org_no: String,
    /// Largest accepted answer, in bytes.
    pub max_answer_bytes: usize,
    pub connect_timeout: Duration,
    /// Idle pooled connections kept per host.
    pub pool_max_idle: usize,
}

/// One lender's API-DEBT-FI client; built once at start, shared by all lookups.
pub struct ApiDebtFi {
    client: reqwest::Client,
    customer_url: String,
    org_no: String,
    max_answer_bytes: usize,
}

impl ApiDebtFi {
    /// Builds the adapter with its own pooled keep-alive client.
    pub fn new(config: ApiDebtFiConfig) -> Result<Self, AdapterError> {
        let client = gjeldsbro_adapter::http::client_builder()
            .connect_timeout(config.connect_timeout)
            .pool_max_idle_per_host(config.pool_max_idle)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("gjeldsbro/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AdapterError::Transport(scrub(&e.to_string())))?;
        Ok(Self::with_client(client, config))
    }

    /// Builds the adapter on a client the caller configured (TLS, mTLS identity).
    pub fn with_client(client: reqwest::Client, config: ApiDebtFiConfig) -> Self {
        let base = config.base_url.trim_end_matches('/');
        ApiDebtFi {
            client,
            customer_url: format!(
                "{base}/debt-information/v1/loans/{}/customer",
                config.org_no
            ),
            org_no: config.org_no,
            max_answer_bytes: config.max_answer_bytes,
        }
    }

    async fn fetch(&self, query: CustomerQuery<'_>) -> Result<Vec<Loan>, AdapterError> {
        let nin = query.nin.expose();
        let mut request = self
            .client
            .get(&self.customer_url)
            .header("customerID", &nin)
            .header("X-Trace-ID", query.trace_id)
            .header(http::header::ACCEPT, "application/json");
        if let Some(tp) = query.traceparent {
            request = request.header("traceparent", tp);
        }
        let mut response = request.send().await.map_err(|e| classify(e, "lender"))?;
        let status = response.status();
        if status == http::StatusCode::TOO_MANY_REQUESTS {
            return Err(AdapterError::Limited);
        }
        if !status.is_success() {
            return Err(AdapterError::Status(status.as_u16()));
        }
        let body = read_capped(&mut response, self.max_answer_bytes, "lender").await?;
        parse_answer(&body, &nin, &self.org_no)
    }
}

/// Checks and decodes a getDataForSSN answer for customer `nin` at `org_no`.
pub fn parse_answer(body: &[u8], nin: &str, org_no: &str) -> Result<Vec<Loan>, AdapterError> {
    let answer: CustomerLoans =
        serde_json::from_slice(body).map_err(|e| AdapterError::Malformed(scrub(&e.to_string())))?;
    if answer.customer_id != nin {
        return Err(AdapterError::Malformed(
            "customerID does not match the customer asked for".into(),
        ));
    }
    if answer.financial_institution_id != org_no {
        return Err(AdapterError::Malformed(
            "financialInstitutionID is not this lender's".into(),
        ));
    }
    for (i, loan) in answer.loans.iter().enumerate() {
        // A register lender's answer holds register loans only: a `studentLoan`
        // here would slip another source's data past the consent rules.
        loan.validate_for(DebtKind::Unsecured)
            .map_err(|rule| AdapterError::Malformed(format!("loan {i}: {rule}")))?;
    }
    Ok(answer.loans)
}

impl LenderAdapter for ApiDebtFi {
    fn protocol(&self) -> &'static str {
        PROTOCOL
    }

    fn fetch_customer<'a>(
        &'a self,
        query: CustomerQuery<'a>,
    ) -> BoxFuture<'a, Result<Vec<Loan>, AdapterError>> {
        self.fetch(query).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NIN: &str = "01017012345";

    #[test]
    fn answers_are_checked() {
        let good = br#"{"customerID":"01017012345","financialInstitutionID":"920000001","loans":[
            {"type":"chargeCard","accountID":"A","coBorrower":0,"interestBearingBalance":1,"nonInterestBearingBalance":2}]}"#;
        assert_eq!(parse_answer(good, NIN, "920000001").unwrap().len(), 1);
        let empty =
            br#"{"customerID":"01017012345","financialInstitutionID":"920000001","loans":[]}"#;
        assert!(parse_answer(empty, NIN, "920000001").unwrap().is_empty());
        assert!(matches!(
            parse_answer(good, "02017012345", "920000001"),
            Err(AdapterError::Malformed(_))
        ));
        assert!(matches!(
            parse_answer(good, NIN, "920000002"),
            Err(AdapterError::Malformed(_))
        ));
        assert!(matches!(
            parse_answer(b"<html>", NIN, "920000001"),
            Err(AdapterError::Malformed(_))
        ));
        let negative = br#"{"customerID":"01017012345","financialInstitutionID":"920000001","loans":[
            {"type":"chargeCard","accountID":"A","coBorrower":0,"interestBearingBalance":-1,"nonInterestBearingBalance":2}]}"#;
        assert!(matches!(
            parse_answer(negative, NIN, "920000001"),
            Err(AdapterError::Malformed(_))
        ));
        let markup = br#"{"customerID":"01017012345","financialInstitutionID":"920000001","loans":[
            {"type":"chargeCard","accountID":"A","timestamp":"<b>x</b>","coBorrower":0,"interestBearingBalance":1,"nonInterestBearingBalance":2}]}"#;
        assert!(matches!(
            parse_answer(markup, NIN, "920000001"),
            Err(AdapterError::Malformed(_))
        ));
        let student = br#"{"customerID":"01017012345","financialInstitutionID":"920000001","loans":[
            {"type":"studentLoan","accountID":"S","principal":1,"interest":0,"fees":0,"costs":0}]}"#;
        assert!(matches!(
            parse_answer(student, NIN, "920000001"),
            Err(AdapterError::Malformed(_))
        ));
    }

    #[test]
    fn malformed_texts_never_quote_a_national_id() {
        let wrong_type = br#"{"customerID":01017012345}"#;
        let Err(AdapterError::Malformed(msg)) = parse_answer(wrong_type, NIN, "920000001") else {
            panic!("expected malformed")
        };
        assert!(!msg.contains("01017012345"), "{msg}");
    }
}
