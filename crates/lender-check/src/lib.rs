//! `lender-check`: the kit a lender runs against its own endpoints
//! before go-live. It calls the lender as the broker does and judges what comes
//! back against the register's rules, one stable rule id per requirement (see
//! [`Rule`]), so a lender's developers can tell exactly what to fix.
//!
//! Modules, one rule group each: [`unknown`] (an absent customer gets `200`),
//! [`loans`] (the loan schema, `coBorrower`, amounts), [`errors`] (the error
//! JSON), [`paging`] (getalldata through the broker's ingest parser),
//! [`latency`] (an open-loop run at the required rate); [`client`] makes the
//! calls and [`report`] holds the verdict. National ids of test customers are
//! never printed or written: the report names them by position.

pub mod args;
pub mod client;
pub mod errors;
pub mod latency;
pub mod loans;
pub mod paging;
pub mod report;
pub mod unknown;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use report::{Findings, LatencySummary, Report, Rule, RuleResult};

use gjeldsbro_adapter::tls_files::LenderTlsFiles;
use gjeldsbro_domain::nin::{IdPolicy, NationalId};

/// Why a check could not be run at all (a lender's failures are in the
/// [`Report`], not here).
#[derive(Debug, thiserror::Error)]
pub enum LenderCheckError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("cannot write the report to {}: {message}", path.display())]
    Report { path: PathBuf, message: String },
}

/// What to check and how hard.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub base_url: String,
    /// The lender's financialInstitutionID.
    pub org_no: String,
    /// Test persons named by the lender; empty: picked from getalldata page 0.
    pub customers: Vec<String>,
    pub id_policy: IdPolicy,
    /// The broker's mTLS identity and the lender's CAs.
    pub tls: LenderTlsFiles,
    pub rate_per_second: u32,
    pub latency_duration: Duration,
    pub p99_limit: Duration,
    /// Per customer call.
    pub call_timeout: Duration,
    pub page_timeout: Duration,
    pub max_pages: u64,
    /// Test customers picked from page 0 at most.
    pub pick: usize,
}

impl CheckSettings {
    /// The published requirement: ≥ 50 req/s at p99 < 500 ms, run for 10 s.
    pub fn new(base_url: impl Into<String>, org_no: impl Into<String>) -> Self {
        CheckSettings {
            base_url: base_url.into(),
            org_no: org_no.into(),
            customers: Vec::new(),
            id_policy: IdPolicy::STRICT,
            tls: LenderTlsFiles::default(),
            rate_per_second: 50,
            latency_duration: Duration::from_secs(10),
            p99_limit: Duration::from_millis(500),
            call_timeout: Duration::from_secs(5),
            page_timeout: Duration::from_secs(600),
            max_pages: 100_000,
            pick: 10,
        }
    }

    fn validate(&self) -> Result<(), LenderCheckError> {
        let bad = |m: &str| Err(LenderCheckError::InvalidArgument(m.to_owned()));
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return bad("--base-url must be an http:// or https:// URL");
        }
        if !gjeldsbro_domain::org::is_org_no(&self.org_no) {
            return bad("--org must be a 9-digit organisation number");
        }
        if self.rate_per_second == 0 {
            return bad("--rate must be at least 1");
        }
        for (i, c) in self.customers.iter().enumerate() {
            // Never echo the id itself: only its position on the command line.
            if NationalId::parse(c, self.id_policy).is_err() {
                return Err(LenderCheckError::InvalidArgument(format!(
                    "--customer #{} is not a valid national id{}",
                    i + 1,
                    if self.id_policy.accept_synthetic {
                        ""
                    } else {
                        " (synthetic test ids need --accept-synthetic-ids)"
                    }
                )));
            }
        }
        Ok(())
    }
}

/// Runs every check against the lender and returns the verdict.
pub async fn run(settings: &CheckSettings) -> Result<Report, LenderCheckError> {
    settings.validate()?;
    let started_at = gjeldsbro_domain::time::now_rfc3339();
    let client = client::LenderClient::new(
        &settings.base_url,
        &settings.org_no,
        &settings.tls,
        settings.call_timeout,
    )?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let trace = |what: &str| format!("lender-check-{run_id}-{what}");
    let mut findings = Findings::default();

    let paged = paging::check(
        &mut findings,
        &client,
        settings.id_policy,
        &paging::PagingSettings {
            page_timeout: settings.page_timeout,
            max_pages: settings.max_pages,
            pick: settings.pick,
        },
        &trace("getalldata"),
    )
    .await;
    let customers = if settings.customers.is_empty() {
        paged.candidates.clone()
    } else {
        settings.customers.clone()
    };

    let mut known: HashSet<String> = paged.page0_ids.iter().cloned().collect();
    known.extend(customers.iter().cloned());
    let absent = unknown::absent_synthetic_id(&known);
    let answer = client.customer(Some(&absent), &trace("unknown")).await;
    unknown::check(&mut findings, answer.as_ref(), &absent, &settings.org_no);

    let id = trace("error-no-customer-id");
    let answer = client.customer(None, &id).await;
    errors::check(
        &mut findings,
        "customer call without customerID",
        answer.as_ref(),
        &id,
    );
    let id = trace("error-bad-page");
    let answer = client
        .page("not-a-number", &id, settings.call_timeout)
        .await;
    errors::check(
        &mut findings,
        "getalldata with page=not-a-number",
        answer.as_ref(),
        &id,
    );

    check_customers(
        &mut findings,
        &client,
        &customers,
        settings,
        &trace("customer"),
    )
    .await;

    // The broker only calls a lender for persons the index says it holds, so
    // the load asks for the test customers (the absent one only if there are
    // none): a lender that fails unknown-customer-200 does not fail this too.
    let load = if customers.is_empty() {
        vec![absent]
    } else {
        customers.clone()
    };
    let latency = latency::check(
        &mut findings,
        &client,
        Arc::new(load),
        &latency::LatencySettings {
            rate_per_second: settings.rate_per_second,
            duration: settings.latency_duration,
            p99_limit: settings.p99_limit,
            failure_latency: settings.call_timeout,
        },
        &trace("load"),
    )
    .await;

    let rules = findings.into_results();
    Ok(Report {
        base_url: settings.base_url.clone(),
        financial_institution_id: settings.org_no.clone(),
        started_at,
        passed: rules.iter().all(|r| r.passed),
        test_customers: customers.len(),
        rules,
        latency,
    })
}

async fn check_customers(
    findings: &mut Findings,
    client: &client::LenderClient,
    customers: &[String],
    settings: &CheckSettings,
    trace_prefix: &str,
) {
    let loan_rules = [
        Rule::LoanTypeSchema,
        Rule::CoBorrowerPresent,
        Rule::AmountsNonNegative,
    ];
    if customers.is_empty() {
        findings.fail(
            Rule::CustomerAnswer,
            "no test customer: name them with --customer, or serve them on getalldata page 0",
        );
    }
    let mut tally = loans::LoanTally::default();
    for (i, nin) in customers.iter().enumerate() {
        let who = format!("test customer #{}", i + 1);
        let trace_id = format!("{trace_prefix}-{}", i + 1);
        match client.customer(Some(nin), &trace_id).await {
            Ok(answer) => {
                loans::check_answer(findings, &mut tally, &who, &answer, nin, &settings.org_no)
            }
            Err(e) => findings.fail(Rule::CustomerAnswer, format!("{who}: {e}")),
        }
    }
    if tally.total() == 0 {
        // A vacuous pass would tell a lender it is ready when nothing was seen.
        for rule in loan_rules {
            findings.fail(
                rule,
                "no loan was checked: name test customers that have loans (--customer)",
            );
        }
    } else {
        let seen = format!(
            "{} loans of {} test customers: {}",
            tally.total(),
            customers.len(),
            tally.describe()
        );
        for rule in loan_rules {
            findings.note(rule, seen.clone());
        }
    }
    if !findings.failed(Rule::CustomerAnswer) && !customers.is_empty() {
        findings.note(
            Rule::CustomerAnswer,
            format!(
                "{} test customers answered and accepted by the broker's adapter",
                customers.len()
            ),
        );
    }
}

/// Writes the JSON report (pretty, for people and for CI artefacts).
pub fn write_report(report: &Report, path: &Path) -> Result<(), LenderCheckError> {
    let fail = |message: String| LenderCheckError::Report {
        path: path.to_path_buf(),
        message,
    };
    let json = serde_json::to_vec_pretty(report).map_err(|e| fail(e.to_string()))?;
    std::fs::write(path, json).map_err(|e| fail(e.to_string()))
}
