//! Customer answers judged on their raw JSON, so each defect is reported under
//! the rule it breaks (a typed parse would only say "malformed"). The adapter's
//! own `parse_answer` runs afterwards as the last word: what the broker accepts.

use std::collections::BTreeMap;

use gjeldsbro_adapter::{LoanType, scrub};
use serde_json::{Map, Value};

use super::client::Answer;
use super::report::{Findings, Rule};

/// The fields each loan type carries besides `type`, `accountID`, `timestamp`
/// and `coBorrower` (DOMAIN.md, API-DEBT-FI).
fn fields_of(loan_type: LoanType) -> &'static [&'static str] {
    match loan_type {
        LoanType::RepaymentLoan => &[
            "originalBalance",
            "balance",
            "terms",
            "nominalInterestRate",
            "installmentCharges",
            "installmentChargePeriod",
        ],
        LoanType::CreditFacility => &[
            "creditLimit",
            "interestBearingBalance",
            "nonInterestBearingBalance",
            "nominalInterestRate",
            "installmentCharges",
            "installmentChargePeriod",
        ],
        LoanType::ChargeCard => &["interestBearingBalance", "nonInterestBearingBalance"],
        // Other sources' kinds, never API-DEBT-FI: `loan_type` does not map their
        // names, so an API-DEBT-FI lender sending one fails as an unknown type.
        LoanType::StudentLoan | LoanType::CollectionCase => &[],
    }
}

/// Every integer amount (øre, basis points, months) of any loan type.
const AMOUNTS: [&str; 8] = [
    "originalBalance",
    "balance",
    "terms",
    "creditLimit",
    "interestBearingBalance",
    "nonInterestBearingBalance",
    "nominalInterestRate",
    "installmentCharges",
];

const PERIODS: [&str; 4] = ["MONTHLY", "QUARTERLY", "HALF-YEARLY", "YEARLY"];

fn loan_type(name: &str) -> Option<LoanType> {
    match name {
        "repaymentLoan" => Some(LoanType::RepaymentLoan),
        "creditFacility" => Some(LoanType::CreditFacility),
        "chargeCard" => Some(LoanType::ChargeCard),
        _ => None,
    }
}

/// Loans checked so far, by type: the report says which types were seen.
#[derive(Debug, Default)]
pub struct LoanTally {
    pub by_type: BTreeMap<&'static str, u64>,
}

impl LoanTally {
    pub fn total(&self) -> u64 {
        self.by_type.values().sum()
    }

    /// "repaymentLoan 3, creditFacility 2, chargeCard none seen".
    pub fn describe(&self) -> String {
        [
            LoanType::RepaymentLoan,
            LoanType::CreditFacility,
            LoanType::ChargeCard,
        ]
        .iter()
        .map(|t| match self.by_type.get(t.as_str()) {
            Some(n) => format!("{} {n}", t.as_str()),
            None => format!("{} none seen", t.as_str()),
        })
        .collect::<Vec<_>>()
        .join(", ")
    }
}

/// Judges the answer for test customer `who` (a label, never the id), asked
/// for with national id `nin` at institution `org_no`.
pub fn check_answer(
    findings: &mut Findings,
    tally: &mut LoanTally,
    who: &str,
    answer: &Answer,
    nin: &str,
    org_no: &str,
) {
    if answer.status != 200 {
        findings.fail(
            Rule::CustomerAnswer,
            format!("{who}: answered {}, expected 200", answer.status),
        );
        return;
    }
    let value: Value = match serde_json::from_slice(&answer.body) {
        Ok(v) => v,
        Err(e) => {
            findings.fail(
                Rule::CustomerAnswer,
                format!("{who}: the answer is not JSON ({})", scrub(&e.to_string())),
            );
            return;
        }
    };
    let Some(envelope) = value.as_object() else {
        findings.fail(
            Rule::CustomerAnswer,
            format!("{who}: the answer is not a JSON object"),
        );
        return;
    };
    let mut broken = false;
    let mut fail = |rule: Rule, problem: String| {
        broken = true;
        findings.fail(rule, problem);
    };
    if envelope.get("customerID").and_then(Value::as_str) != Some(nin) {
        fail(
            Rule::CustomerAnswer,
            format!("{who}: customerID is missing or not the customer asked for"),
        );
    }
    if envelope
        .get("financialInstitutionID")
        .and_then(Value::as_str)
        != Some(org_no)
    {
        fail(
            Rule::CustomerAnswer,
            format!("{who}: financialInstitutionID is missing or not {org_no}"),
        );
    }
    match envelope.get("loans").and_then(Value::as_array) {
        None => fail(
            Rule::CustomerAnswer,
            format!("{who}: loans is missing or not an array"),
        ),
        Some(loans) => {
            for (i, loan) in loans.iter().enumerate() {
                for (rule, problem) in loan_problems(loan, tally) {
                    fail(rule, format!("{who}, loan {i}: {problem}"));
                }
            }
        }
    }
    // The backstop: anything the raw checks let through but the broker's
    // adapter would refuse is still a failure.
    if !broken && let Err(e) = gjeldsbro_api_debt_fi::parse_answer(&answer.body, nin, org_no) {
        findings.fail(
            Rule::CustomerAnswer,
            format!("{who}: the broker's adapter refuses the answer: {e}"),
        );
    }
}

/// The rules one loan object breaks.
pub fn loan_problems(loan: &Value, tally: &mut LoanTally) -> Vec<(Rule, String)> {
    let mut out = Vec::new();
    let Some(loan) = loan.as_object() else {
        out.push((Rule::LoanTypeSchema, "a loan is not a JSON object".into()));
        return out;
    };
    check_co_borrower(loan, &mut out);
    check_amounts(loan, &mut out);
    match loan.get("type").and_then(Value::as_str) {
        None => out.push((Rule::LoanTypeSchema, "type is missing".into())),
        Some(name) => match loan_type(name) {
            None => out.push((
                Rule::LoanTypeSchema,
                format!(
                    "type {:?} is not repaymentLoan, creditFacility or chargeCard",
                    scrub(name)
                ),
            )),
            Some(t) => {
                *tally.by_type.entry(t.as_str()).or_default() += 1;
                for field in fields_of(t) {
                    if !loan.contains_key(*field) {
                        out.push((
                            Rule::LoanTypeSchema,
                            format!("{field} is missing for {}", t.as_str()),
                        ));
                    }
                }
            }
        },
    }
    if loan
        .get("accountID")
        .and_then(Value::as_str)
        .is_none_or(|a| a.trim().is_empty())
    {
        out.push((Rule::LoanTypeSchema, "accountID is missing or empty".into()));
    }
    if let Some(ts) = loan.get("timestamp") {
        let valid = ts.as_str().is_some_and(|s| {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
        });
        if !valid {
            out.push((
                Rule::LoanTypeSchema,
                "timestamp is not an RFC 3339 date-time".into(),
            ));
        }
    }
    if let Some(p) = loan.get("installmentChargePeriod")
        && !p.as_str().is_some_and(|p| PERIODS.contains(&p))
    {
        out.push((
            Rule::LoanTypeSchema,
            "installmentChargePeriod is not MONTHLY, QUARTERLY, HALF-YEARLY or YEARLY".into(),
        ));
    }
    out
}

fn check_co_borrower(loan: &Map<String, Value>, out: &mut Vec<(Rule, String)>) {
    match loan.get("coBorrower") {
        None | Some(Value::Null) => {
            out.push((Rule::CoBorrowerPresent, "coBorrower is missing".into()));
        }
        Some(v) if !matches!(v.as_i64(), Some(0..=2)) => {
            out.push((
                Rule::CoBorrowerPresent,
                "coBorrower must be the integer 0, 1 or 2".into(),
            ));
        }
        Some(_) => {}
    }
}

fn check_amounts(loan: &Map<String, Value>, out: &mut Vec<(Rule, String)>) {
    for field in AMOUNTS {
        let Some(v) = loan.get(field) else { continue };
        match v.as_i64() {
            Some(n) if n < 0 => {
                out.push((Rule::AmountsNonNegative, format!("{field} is negative")));
            }
            Some(_) => {}
            // A float, string or null where an integer (øre, basis points) belongs.
            None => out.push((Rule::LoanTypeSchema, format!("{field} is not an integer"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules_of(loan: Value) -> Vec<Rule> {
        loan_problems(&loan, &mut LoanTally::default())
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }

    fn card() -> Value {
        json!({"type": "chargeCard", "accountID": "C1", "coBorrower": 0,
               "interestBearingBalance": 100, "nonInterestBearingBalance": 0,
               "timestamp": "2026-01-15T05:00:00Z"})
    }

    #[test]
    fn a_complete_loan_breaks_nothing() {
        assert!(rules_of(card()).is_empty());
        let repayment = json!({"type": "repaymentLoan", "accountID": "R1", "coBorrower": 2,
            "originalBalance": 500000, "balance": 320000, "terms": 12,
            "nominalInterestRate": 1020, "installmentCharges": 5000,
            "installmentChargePeriod": "HALF-YEARLY"});
        assert!(rules_of(repayment).is_empty());
    }

    #[test]
    fn each_defect_is_named_by_its_rule() {
        let mut l = card();
        l.as_object_mut().unwrap().remove("coBorrower");
        assert_eq!(rules_of(l), vec![Rule::CoBorrowerPresent]);
        let mut l = card();
        l["coBorrower"] = json!(3);
        assert_eq!(rules_of(l), vec![Rule::CoBorrowerPresent]);
        let mut l = card();
        l["interestBearingBalance"] = json!(-1);
        assert_eq!(rules_of(l), vec![Rule::AmountsNonNegative]);
        let mut l = card();
        l["interestBearingBalance"] = json!(1.5);
        assert_eq!(rules_of(l), vec![Rule::LoanTypeSchema]);
        let mut l = card();
        l.as_object_mut()
            .unwrap()
            .remove("nonInterestBearingBalance");
        assert_eq!(rules_of(l), vec![Rule::LoanTypeSchema]);
        let mut l = card();
        l["type"] = json!("mortgage");
        assert_eq!(rules_of(l), vec![Rule::LoanTypeSchema]);
        let mut l = card();
        l["timestamp"] = json!("yesterday");
        assert_eq!(rules_of(l), vec![Rule::LoanTypeSchema]);
    }

    #[test]
    fn answers_are_checked_against_the_customer_asked_for() {
        const NIN: &str = "01017012345";
        let answer = |body: Value| Answer {
            status: 200,
            content_type: Some("application/json".into()),
            body: serde_json::to_vec(&body).unwrap().into(),
            elapsed: std::time::Duration::ZERO,
        };
        let good = json!({"customerID": NIN, "financialInstitutionID": "920000001",
                          "loans": [card()]});
        let mut f = Findings::default();
        let mut tally = LoanTally::default();
        check_answer(
            &mut f,
            &mut tally,
            "c",
            &answer(good.clone()),
            NIN,
            "920000001",
        );
        assert!(Rule::ALL.iter().all(|r| !f.failed(*r)), "{f:?}");
        assert_eq!(tally.total(), 1);

        let mut f = Findings::default();
        check_answer(
            &mut f,
            &mut tally,
            "c",
            &answer(good),
            "02017012345",
            "920000001",
        );
        assert!(f.failed(Rule::CustomerAnswer));
        let text = format!("{f:?}");
        assert!(
            !text.contains(NIN) && !text.contains("02017012345"),
            "{text}"
        );
    }
}
