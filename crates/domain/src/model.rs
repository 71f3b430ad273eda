//! The client API's request and answer bodies, exactly as Norsk Gjeldsinformasjon
//! publishes them (`debt_information`, the search request).

use crate::loan::Loan;
use serde::{Deserialize, Serialize};

use crate::nin::NationalId;

/// `POST /api/rest/v2/debt/search` body as sent; validated into a search later.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    pub ssn: Option<String>,
    #[serde(rename = "referenceID")]
    pub reference_id: Option<String>,
    pub message_to_customer: Option<String>,
    pub co_borrowers: Option<Vec<CoBorrowerRef>>,
    pub max_time_to_wait: Option<i64>,
    pub on_behalf_of_organization: Option<String>,
    pub using_own_notification: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct CoBorrowerRef {
    pub ssn: Option<String>,
}

/// One line of `debt_information.loans`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoanEntry {
    #[serde(rename = "creditorName", skip_serializing_if = "Option::is_none")]
    pub creditor_name: Option<String>,
    pub loan: Option<Loan>,
}

/// `consent: {id, exp, scope}` on consent lookups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsentMeta {
    pub id: String,
    pub exp: i64,
    pub scope: String,
}

/// `debt_information`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DebtInformation {
    pub ssn: NationalId,
    pub loans: Vec<LoanEntry>,
    #[serde(rename = "numberOfCreditorsAnswered")]
    pub number_of_creditors_answered: u32,
    #[serde(rename = "numberOfcreditorsMissing")]
    pub number_of_creditors_missing: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentMeta>,
    #[serde(rename = "coBorrowers", skip_serializing_if = "Option::is_none")]
    pub co_borrowers: Option<Vec<DebtInformation>>,
}
