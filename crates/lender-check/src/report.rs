//! The outcome of a lender check: one result per rule, the pass/fail table and
//! the JSON report. Nothing here holds a national id: test customers are named
//! by their position ("test customer #2"), never by their id.

use serde::Serialize;

/// The rules a lender must pass before go-live. The ids are stable: lenders'
/// onboarding notes and the JSON report refer to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Rule {
    /// An unknown customer gets `200` with empty `loans`, not `404`.
    #[serde(rename = "unknown-customer-200")]
    UnknownCustomer200,
    /// Test customers are answered `200` with the documented envelope, naming
    /// the customer and institution asked for, and the broker accepts it.
    #[serde(rename = "customer-answer")]
    CustomerAnswer,
    /// Every loan has a known `type`, the fields of that type, of the right
    /// JSON types (integers, never floats or strings), and an `accountID`.
    #[serde(rename = "loan-type-schema")]
    LoanTypeSchema,
    /// Every loan has `coBorrower` 0, 1 or 2.
    #[serde(rename = "coBorrower-present")]
    CoBorrowerPresent,
    /// No amount is negative.
    #[serde(rename = "amounts-non-negative")]
    AmountsNonNegative,
    /// Errors are `{error, error_description, timestamp, trace_id}` with a 4xx.
    #[serde(rename = "error-format")]
    ErrorFormat,
    /// getalldata pages from 0 until a short page, and the whole dataset
    /// passes the broker's ingest rules.
    #[serde(rename = "getalldata-paging")]
    GetalldataPaging,
    /// p99 under the published limit at the required rate.
    #[serde(rename = "latency-p99")]
    LatencyP99,
}

impl Rule {
    /// Every rule, in the order the table shows them.
    pub const ALL: [Rule; 8] = [
        Rule::UnknownCustomer200,
        Rule::CustomerAnswer,
        Rule::LoanTypeSchema,
        Rule::CoBorrowerPresent,
        Rule::AmountsNonNegative,
        Rule::ErrorFormat,
        Rule::GetalldataPaging,
        Rule::LatencyP99,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::UnknownCustomer200 => "unknown-customer-200",
            Rule::CustomerAnswer => "customer-answer",
            Rule::LoanTypeSchema => "loan-type-schema",
            Rule::CoBorrowerPresent => "coBorrower-present",
            Rule::AmountsNonNegative => "amounts-non-negative",
            Rule::ErrorFormat => "error-format",
            Rule::GetalldataPaging => "getalldata-paging",
            Rule::LatencyP99 => "latency-p99",
        }
    }
}

/// Findings collected while checking: problems per rule, plus notes that
/// explain a pass (what was checked, how much).
#[derive(Debug, Default)]
pub struct Findings {
    problems: Vec<(Rule, String)>,
    notes: Vec<(Rule, String)>,
}

impl Findings {
    pub fn fail(&mut self, rule: Rule, problem: impl Into<String>) {
        self.problems.push((rule, problem.into()));
    }

    pub fn note(&mut self, rule: Rule, note: impl Into<String>) {
        self.notes.push((rule, note.into()));
    }

    pub fn failed(&self, rule: Rule) -> bool {
        self.problems.iter().any(|(r, _)| *r == rule)
    }

    /// One result per rule. A rule with many problems keeps the first
    /// `MAX_PROBLEMS` and says how many more there were.
    pub fn into_results(self) -> Vec<RuleResult> {
        Rule::ALL
            .iter()
            .map(|&rule| {
                let all: Vec<String> = self
                    .problems
                    .iter()
                    .filter(|(r, _)| *r == rule)
                    .map(|(_, p)| p.clone())
                    .collect();
                let more = all.len().saturating_sub(MAX_PROBLEMS);
                let mut problems: Vec<String> = all.into_iter().take(MAX_PROBLEMS).collect();
                if more > 0 {
                    problems.push(format!("... and {more} more"));
                }
                RuleResult {
                    rule,
                    passed: problems.is_empty(),
                    problems,
                    notes: self
                        .notes
                        .iter()
                        .filter(|(r, _)| *r == rule)
                        .map(|(_, n)| n.clone())
                        .collect(),
                }
            })
            .collect()
    }
}

/// Problems kept per rule in the report.
const MAX_PROBLEMS: usize = 20;

/// One rule's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct RuleResult {
    pub rule: Rule,
    pub passed: bool,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

/// What the latency run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub rate_per_second: u32,
    pub seconds: f64,
    pub requests: u64,
    /// Calls that did not end in a `200` (status, timeout, transport error).
    pub failed: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub limit_p99_ms: u64,
}

/// The whole check, as written to `--report`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub base_url: String,
    pub financial_institution_id: String,
    pub started_at: String,
    pub passed: bool,
    pub test_customers: usize,
    pub rules: Vec<RuleResult>,
    pub latency: Option<LatencySummary>,
}

impl Report {
    pub fn result(&self, rule: Rule) -> Option<&RuleResult> {
        self.rules.iter().find(|r| r.rule == rule)
    }

    /// The pass/fail table for a terminal.
    pub fn table(&self) -> String {
        let width = Rule::ALL.iter().map(|r| r.id().len()).max().unwrap_or(0);
        let mut out = format!(
            "lender check of {} (financialInstitutionID {})\n\n",
            self.base_url, self.financial_institution_id
        );
        out.push_str(&format!("{:<width$}  result  detail\n", "rule"));
        for r in &self.rules {
            let verdict = if r.passed { "PASS" } else { "FAIL" };
            let mut lines = if r.passed {
                r.notes.clone()
            } else {
                r.problems.clone()
            };
            if lines.is_empty() {
                lines.push(String::new());
            }
            for (i, line) in lines.iter().enumerate() {
                if i == 0 {
                    out.push_str(&format!("{:<width$}  {verdict:<6}  {line}\n", r.rule.id()));
                } else {
                    out.push_str(&format!("{:<width$}  {:<6}  {line}\n", "", ""));
                }
            }
        }
        let failed = self.rules.iter().filter(|r| !r.passed).count();
        out.push_str(&if failed == 0 {
            format!("\nall {} rules passed\n", self.rules.len())
        } else {
            format!("\n{failed} of {} rules FAILED\n", self.rules.len())
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_gets_one_result_and_problems_are_capped() {
        let mut f = Findings::default();
        for i in 0..25 {
            f.fail(Rule::AmountsNonNegative, format!("loan {i}"));
        }
        f.note(Rule::LatencyP99, "p99 12 ms");
        let results = f.into_results();
        assert_eq!(results.len(), Rule::ALL.len());
        let amounts = results
            .iter()
            .find(|r| r.rule == Rule::AmountsNonNegative)
            .unwrap();
        assert!(!amounts.passed);
        assert_eq!(amounts.problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(amounts.problems.last().unwrap(), "... and 5 more");
        assert!(results.iter().filter(|r| r.passed).count() == Rule::ALL.len() - 1);
    }

    #[test]
    fn rule_ids_serialise_as_their_stable_names() {
        for rule in Rule::ALL {
            assert_eq!(serde_json::to_value(rule).unwrap(), rule.id());
        }
    }
}
