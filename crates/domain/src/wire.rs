//! The API-DEBT-FI envelopes: one customer's loans (getDataForSSN, and each entry of
//! a dataset), and a page of the daily dataset (getalldata, pushUpdates).

use serde::{Deserialize, Serialize};

use crate::loan::Loan;

/// One customer's loans at one financial institution. `customer_id` is the raw
/// 11-digit string as the lender sent it: it is validated into a
/// [`crate::NationalId`] by whoever reads it, never logged.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerLoans {
    #[serde(rename = "customerID")]
    pub customer_id: String,
    #[serde(rename = "financialInstitutionID")]
    pub financial_institution_id: String,
    #[serde(default)]
    pub loans: Vec<Loan>,
}

impl std::fmt::Debug for CustomerLoans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomerLoans")
            .field("customer_id", &"***********")
            .field("financial_institution_id", &self.financial_institution_id)
            .field("loans", &self.loans.len())
            .finish()
    }
}

/// A page of a daily dataset, or the body of an intraday push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetPage {
    #[serde(rename = "providerID")]
    pub provider_id: String,
    pub customers: Vec<CustomerLoans>,
}

/// The `providerID` a lender with organisation number `org_no` puts on its pages.
pub fn provider_id(org_no: &str) -> String {
    format!("9908:{org_no}")
}

/// Replaces every run of six or more digits by `<redacted>`: error texts from parsers
/// and HTTP clients may quote input, and input may hold a national id.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
            continue;
        }
        flush_run(&mut out, &mut run);
        out.push(c);
    }
    flush_run(&mut out, &mut run);
    out
}

fn flush_run(out: &mut String, run: &mut String) {
    if run.len() >= 6 {
        out.push_str("<redacted>");
    } else {
        out.push_str(run);
    }
    run.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_long_digit_runs_only() {
        assert_eq!(
            scrub("invalid value: \"01017012345\" at line 3 column 12"),
            "invalid value: \"<redacted>\" at line 3 column 12"
        );
        assert_eq!(scrub("12345"), "12345");
    }

    #[test]
    fn debug_hides_the_customer_id() {
        let c = CustomerLoans {
            customer_id: "01017012345".into(),
            financial_institution_id: "9".into(),
            loans: vec![],
        };
        assert!(!format!("{c:?}").contains("01017012345"));
    }
}
