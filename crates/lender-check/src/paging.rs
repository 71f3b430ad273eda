//! `getalldata-paging`: the daily dataset is walked exactly as the broker's
//! pull walks it (from `page=0` until a page holds fewer customers than the
//! first) and every page goes through the broker's own ingest parser, so a
//! dataset that passes here is one the broker accepts. Loan-level rejections
//! are reported under their loan rule; the rest under this one.

use std::time::Duration;

use gjeldsbro_adapter::{DatasetPage, IdPolicy, LoanType};

use super::client::LenderClient;
use super::report::{Findings, Rule};
use gjeldsbro_domain::delivery::SnapshotRow;
use gjeldsbro_domain::delivery::{DatasetParser, ParseError, RowSink};

/// Limits of the walk.
#[derive(Debug, Clone)]
pub struct PagingSettings {
    pub page_timeout: Duration,
    /// A lender that never sends a short page is stopped here (and fails).
    pub max_pages: u64,
    /// Test customers picked from page 0 at most.
    pub pick: usize,
}

/// What the walk found besides the verdict.
#[derive(Debug, Default)]
pub struct PagingOutcome {
    /// Customers from page 0 to use as test persons (ids stay in memory only).
    pub candidates: Vec<String>,
    /// Every customer id of page 0 (so the absent id is surely absent).
    pub page0_ids: Vec<String>,
}

/// The parser's rows are not kept: only its verdict matters here.
struct Discard;

impl RowSink for Discard {
    fn rows(&mut self, _rows: Vec<SnapshotRow>) -> bool {
        true
    }
}

/// Maps an ingest rejection onto the checker's rule.
fn rule_of(ingest_rule: &str) -> Rule {
    match ingest_rule {
        "negative_amount" => Rule::AmountsNonNegative,
        "missing_co_borrower" | "invalid_co_borrower" => Rule::CoBorrowerPresent,
        "missing_field" | "missing_account_id" => Rule::LoanTypeSchema,
        _ => Rule::GetalldataPaging,
    }
}

fn reject(findings: &mut Findings, page: u64, e: ParseError, policy: IdPolicy) {
    match e {
        ParseError::Rejected(r) => {
            // The common first-run mistake in a test environment.
            let hint = if r.rule == "invalid_national_id" && !policy.accept_synthetic {
                " (a test environment with synthetic ids needs --accept-synthetic-ids)"
            } else {
                ""
            };
            findings.fail(
                rule_of(r.rule),
                format!("getalldata page {page}, {r}{hint}"),
            )
        }
        ParseError::Aborted => findings.fail(
            Rule::GetalldataPaging,
            format!("getalldata page {page}: the check was aborted"),
        ),
    }
}

/// Walks the dataset; records the verdict in `findings`.
pub async fn check(
    findings: &mut Findings,
    client: &LenderClient,
    policy: IdPolicy,
    settings: &PagingSettings,
    trace_id: &str,
) -> PagingOutcome {
    let rule = Rule::GetalldataPaging;
    let mut outcome = PagingOutcome::default();
    let mut parser = DatasetParser::new(client.org_no(), policy, true);
    let mut first = 0u64;
    let mut page = 0u64;
    loop {
        if page >= settings.max_pages {
            findings.fail(
                rule,
                format!(
                    "no page shorter than page 0 within {} pages",
                    settings.max_pages
                ),
            );
            return outcome;
        }
        let answer = match client
            .page(&page.to_string(), trace_id, settings.page_timeout)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                findings.fail(rule, format!("getalldata page {page}: {e}"));
                return outcome;
            }
        };
        if answer.status != 200 {
            findings.fail(
                rule,
                format!(
                    "getalldata page {page}: answered {}, expected 200",
                    answer.status
                ),
            );
            return outcome;
        }
        let n = match parser.parse_document(&answer.body[..], &mut Discard) {
            Ok(n) => n,
            Err(e) => {
                reject(findings, page, e, policy);
                return outcome;
            }
        };
        if page == 0 {
            first = n;
            outcome = pick(&answer.body, settings.pick);
        } else if n > first {
            findings.fail(
                rule,
                format!(
                    "getalldata page {page} holds {n} customers, more than page 0's {first}: the broker stops at the first shorter page, so page sizes must not grow"
                ),
            );
            return outcome;
        }
        if n < first || first == 0 {
            break;
        }
        page += 1;
    }
    let customers = parser.customers();
    match parser.finish() {
        Ok(summary) => findings.note(
            rule,
            format!(
                "{} page(s) of up to {first} customers: {customers} customers, {} loans ({} open)",
                page + 1,
                summary.loans,
                summary.open_loans
            ),
        ),
        Err(e) => reject(findings, page, e, policy),
    }
    outcome
}

/// Picks test customers from page 0: first one per loan type, then customers
/// with loans, up to `n`.
fn pick(body: &[u8], n: usize) -> PagingOutcome {
    let Ok(page) = serde_json::from_slice::<DatasetPage>(body) else {
        return PagingOutcome::default();
    };
    let mut candidates: Vec<String> = Vec::new();
    for t in [
        LoanType::RepaymentLoan,
        LoanType::CreditFacility,
        LoanType::ChargeCard,
    ] {
        if let Some(c) = page
            .customers
            .iter()
            .find(|c| c.loans.iter().any(|l| l.loan_type == t))
            && !candidates.contains(&c.customer_id)
        {
            candidates.push(c.customer_id.clone());
        }
    }
    for c in page.customers.iter().filter(|c| !c.loans.is_empty()) {
        if candidates.len() >= n {
            break;
        }
        if !candidates.contains(&c.customer_id) {
            candidates.push(c.customer_id.clone());
        }
    }
    candidates.truncate(n);
    PagingOutcome {
        candidates,
        page0_ids: page.customers.into_iter().map(|c| c.customer_id).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_rules_map_onto_checker_rules() {
        assert_eq!(rule_of("negative_amount"), Rule::AmountsNonNegative);
        assert_eq!(rule_of("missing_co_borrower"), Rule::CoBorrowerPresent);
        assert_eq!(rule_of("missing_field"), Rule::LoanTypeSchema);
        assert_eq!(rule_of("duplicate_customer"), Rule::GetalldataPaging);
        assert_eq!(rule_of("wrong_provider"), Rule::GetalldataPaging);
    }

    #[test]
    fn picks_cover_each_loan_type_first() {
        let body = serde_json::json!({"providerID": "9908:920000001", "customers": [
            {"customerID": "a", "financialInstitutionID": "920000001", "loans": []},
            {"customerID": "b", "financialInstitutionID": "920000001", "loans": [
                {"type": "repaymentLoan", "coBorrower": 0}]},
            {"customerID": "c", "financialInstitutionID": "920000001", "loans": [
                {"type": "repaymentLoan", "coBorrower": 0}]},
            {"customerID": "d", "financialInstitutionID": "920000001", "loans": [
                {"type": "chargeCard", "coBorrower": 0}]}
        ]});
        let out = pick(&serde_json::to_vec(&body).unwrap(), 2);
        assert_eq!(out.candidates, vec!["b", "d"]);
        assert_eq!(out.page0_ids.len(), 4);
    }
}
