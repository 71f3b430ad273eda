//! `unknown-customer-200`: a customer the lender does not hold is answered
//! `200` with empty `loans`. A `404` would be read by the broker as a failure
//! (and answered from the snapshot), and worse, a lender that answers
//! differently for known and unknown persons tells anyone who can call it who
//! its customers are.

use std::collections::HashSet;

use rand::Rng;
use serde_json::Value;

use super::client::{Answer, CallFailure};
use super::report::{Findings, Rule};
use gjeldsbro_domain::nin::{IdPolicy, NationalId, make_id};

/// A valid synthetic (Tenor, month + 80) national id not in `exclude`: it can
/// belong to no real person, and the lender does not hold it.
pub fn absent_synthetic_id(exclude: &HashSet<String>) -> String {
    let mut rng = rand::rng();
    loop {
        let candidate = make_id(
            rng.random_range(1..=28),
            rng.random_range(1..=12),
            rng.random_range(0..=99),
            rng.random_range(0..=999),
            false,
            true,
        );
        // make_id gets the control digits right but not the century rules
        // (some individual numbers were never issued for some years): parse.
        if let Some(id) = candidate
            && NationalId::parse(&id, IdPolicy::SYNTHETIC_OK).is_ok()
            && !exclude.contains(&id)
        {
            return id;
        }
    }
}

/// Judges the answer for the absent customer `nin`.
pub fn check(
    findings: &mut Findings,
    answer: Result<&Answer, &CallFailure>,
    nin: &str,
    org_no: &str,
) {
    let rule = Rule::UnknownCustomer200;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            findings.fail(
                rule,
                format!("the call for an unknown customer failed: {e}"),
            );
            return;
        }
    };
    if answer.status != 200 {
        findings.fail(
            rule,
            format!(
                "answered {} for a customer the lender does not hold; the standard wants 200 with \"loans\": []",
                answer.status
            ),
        );
        return;
    }
    let Ok(value) = serde_json::from_slice::<Value>(&answer.body) else {
        findings.fail(rule, "the 200 answer is not JSON");
        return;
    };
    match value.get("loans").and_then(Value::as_array) {
        Some(loans) if loans.is_empty() => {}
        Some(_) => findings.fail(rule, "a customer the lender cannot hold has loans"),
        None => findings.fail(rule, "loans is missing or not an array (want [])"),
    }
    if value.get("customerID").and_then(Value::as_str) != Some(nin) {
        findings.fail(rule, "customerID is missing or not the customer asked for");
    }
    if value.get("financialInstitutionID").and_then(Value::as_str) != Some(org_no) {
        findings.fail(
            rule,
            format!("financialInstitutionID is missing or not {org_no}"),
        );
    }
    if !findings.failed(rule) {
        findings.note(rule, "200 with empty loans for a synthetic absent id");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_absent_id_is_valid_synthetic_and_not_excluded() {
        for _ in 0..500 {
            let id = absent_synthetic_id(&HashSet::new());
            let parsed = NationalId::parse(&id, IdPolicy::SYNTHETIC_OK).unwrap();
            assert!(parsed.is_synthetic());
            assert!(NationalId::parse(&id, IdPolicy::STRICT).is_err());
            let again = absent_synthetic_id(&HashSet::from([id.clone()]));
            assert_ne!(again, id);
        }
    }
}
