//! The cases answer (see `docs/debt-collection-api.md`):
//!
//! ```json
//! {"agencyOrgNo": "930000001",
//!  "cases": [{"caseId": "K-2026-0001", "status": "active",
//!             "principal": 120000, "interest": 3400, "fees": 70000,
//!             "updatedAt": "2026-11-20T10:00:00Z"}]}
//! ```
//!
//! Amounts are integers in øre. The answer must be the asked agency's, every
//! case must have a unique id, a known status and no negative amount; anything
//! else is malformed as a whole (no half-understood answer is shown).

use std::collections::HashSet;

use gjeldsbro_adapter::{AdapterError, CaseStatus, Loan, LoanType, scrub};
use serde::{Deserialize, Serialize};

/// The answer to one debtor query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CasesAnswer {
    pub agency_org_no: String,
    pub cases: Vec<Case>,
}

/// One collection case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Case {
    pub case_id: String,
    pub status: CaseStatus,
    pub principal: i64,
    pub interest: i64,
    pub fees: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// The body of the debtor query (`POST`, so the national id is never in a URL).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CasesQuery {
    pub national_id: String,
}

impl std::fmt::Debug for CasesQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CasesQuery { national_id: *********** }")
    }
}

/// Checks and decodes an answer from the agency `org_no` into canonical
/// `collectionCase` loans (closed cases included: the broker drops them).
pub fn parse_cases(body: &[u8], org_no: &str) -> Result<Vec<Loan>, AdapterError> {
    let answer: CasesAnswer =
        serde_json::from_slice(body).map_err(|e| AdapterError::Malformed(scrub(&e.to_string())))?;
    if answer.agency_org_no != org_no {
        return Err(AdapterError::Malformed(
            "agencyOrgNo is not this agency's".into(),
        ));
    }
    let mut seen = HashSet::with_capacity(answer.cases.len());
    let mut loans = Vec::with_capacity(answer.cases.len());
    for (i, case) in answer.cases.into_iter().enumerate() {
        if !seen.insert(case.case_id.clone()) {
            return Err(AdapterError::Malformed(format!("case {i}: caseId repeats")));
        }
        let mut loan = Loan::new(
            LoanType::CollectionCase,
            Some(case.case_id),
            case.updated_at,
            None,
        );
        loan.principal = Some(case.principal);
        loan.interest = Some(case.interest);
        loan.fees = Some(case.fees);
        loan.status = Some(case.status);
        loan.validate_for(gjeldsbro_adapter::DebtKind::DebtCollection)
            .map_err(|rule| AdapterError::Malformed(format!("case {i}: {rule}")))?;
        loans.push(loan);
    }
    Ok(loans)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG: &str = "930000001";

    #[test]
    fn cases_become_canonical_collection_cases() {
        let body = br#"{"agencyOrgNo":"930000001","cases":[
            {"caseId":"K-1","status":"active","principal":120000,"interest":3400,"fees":70000,"updatedAt":"2026-11-20T10:00:00Z"},
            {"caseId":"K-2","status":"paymentPlan","principal":5000,"interest":0,"fees":0},
            {"caseId":"K-3","status":"closed","principal":0,"interest":0,"fees":0}]}"#;
        let loans = parse_cases(body, ORG).unwrap();
        assert_eq!(loans.len(), 3);
        assert_eq!(loans[0].loan_type, LoanType::CollectionCase);
        assert_eq!(loans[0].principal, Some(120_000));
        assert_eq!(loans[0].status, Some(CaseStatus::Active));
        assert_eq!(loans[1].status, Some(CaseStatus::PaymentPlan));
        assert!(loans[2].is_closed());
    }

    #[test]
    fn no_cases_is_an_empty_answer() {
        assert!(
            parse_cases(br#"{"agencyOrgNo":"930000001","cases":[]}"#, ORG)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn malformed_answers_are_refused() {
        for body in [
            &b"<html>"[..],
            br#"{"agencyOrgNo":"930000002","cases":[]}"#,
            br#"{"agencyOrgNo":"930000001","cases":[{"caseId":"K","status":"sold","principal":1,"interest":0,"fees":0}]}"#,
            br#"{"agencyOrgNo":"930000001","cases":[{"caseId":"K","status":"active","principal":-1,"interest":0,"fees":0}]}"#,
            br#"{"agencyOrgNo":"930000001","cases":[{"caseId":"K","status":"active","principal":1.5,"interest":0,"fees":0}]}"#,
            br#"{"agencyOrgNo":"930000001","cases":[{"caseId":" ","status":"active","principal":1,"interest":0,"fees":0}]}"#,
            br#"{"agencyOrgNo":"930000001","cases":[{"caseId":"K","status":"active","principal":1,"interest":0,"fees":0},{"caseId":"K","status":"disputed","principal":1,"interest":0,"fees":0}]}"#,
        ] {
            assert!(
                matches!(parse_cases(body, ORG), Err(AdapterError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn errors_never_quote_a_national_id() {
        let body = br#"{"agencyOrgNo":"930000001","cases":[{"caseId":01017012345}]}"#;
        let Err(AdapterError::Malformed(m)) = parse_cases(body, ORG) else {
            panic!("malformed expected")
        };
        assert!(!m.contains("01017012345"), "{m}");
        let q = CasesQuery {
            national_id: "01017012345".into(),
        };
        assert!(!format!("{q:?}").contains("0101"));
    }
}
