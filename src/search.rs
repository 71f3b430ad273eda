//! A credit-assessment search (gjeldsinformasjonsloven § 12): the applicant and any
//! co-borrowers looked up together, redacted for the search purpose, and recorded
//! in the disclosure log before the answer leaves.

use std::time::Duration;

use gjeldsbro_adapter::KindSet;
use tokio::time::Instant;

use crate::app::AppState;
use crate::audit::{AuditError, DisclosureRecord};
use crate::lookup::{PersonDebt, TraceContext, merge};
use crate::model::DebtInformation;
use crate::nin::NationalId;
use crate::redact::{Purpose, redact};

/// A validated search.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub person: NationalId,
    pub co_borrowers: Vec<NationalId>,
    pub reference_id: String,
    pub message_to_customer: Option<String>,
    pub max_time_to_wait: Duration,
    pub recipient_org: String,
    pub on_behalf_of: Option<String>,
    pub using_own_notification: bool,
    /// True when asked through a credit bureau (which then owes the letter).
    pub via_bureau: bool,
}

pub enum SearchOutcome {
    /// Neither the person nor any co-borrower is held by any lender.
    NoDebt,
    Answer(Box<DebtInformation>),
}

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Disclosure(#[from] AuditError),
}

/// What a finished search did, for the lookup's log line.
#[derive(Debug, Default, Clone)]
pub struct SearchStats {
    pub fan_out: usize,
    pub live: usize,
    pub snapshot: usize,
    pub missing: usize,
    pub lender_wait: Duration,
}

pub async fn search(
    app: &AppState,
    query: &SearchQuery,
    trace: &TraceContext,
) -> Result<(SearchOutcome, SearchStats), SearchError> {
    let deadline = Instant::now() + query.max_time_to_wait;
    let mut nins = Vec::with_capacity(1 + query.co_borrowers.len());
    nins.push(query.person);
    nins.extend(query.co_borrowers.iter().copied());
    let started = Instant::now();
    // The register's debt only: lenders of other kinds (student loans, debt
    // collection) are never asked for a search, so they do not learn of it,
    // and a person held only by them gets 204 like anyone without debt.
    let people = app
        .lookup
        .persons(&nins, KindSet::UNSECURED, deadline, trace)
        .await;
    let mut stats = stats_of(&people);
    stats.lender_wait = started.elapsed();
    for p in &people {
        app.metrics
            .fan_out
            .with_label_values(&["search"])
            .observe(p.fan_out() as f64);
    }

    let merged: Vec<_> = people.iter().map(merge).collect();
    let query_id = uuid::Uuid::new_v4().to_string();
    let at = crate::time::now_rfc3339();
    let letter_owed_by = if query.via_bureau {
        "credit_bureau"
    } else if query.using_own_notification {
        "recipient"
    } else {
        "broker"
    };
    let records: Vec<DisclosureRecord> = merged
        .iter()
        .map(|m| DisclosureRecord {
            query_id: query_id.clone(),
            at: at.clone(),
            recipient_org: query.recipient_org.clone(),
            on_behalf_of: query.on_behalf_of.clone(),
            purpose: Purpose::Search.as_str().to_owned(),
            reference_id: query.reference_id.clone(),
            nin: m.nin.as_u64(),
            disclosed: disclosed_summary(app, m),
            letter_owed_by: letter_owed_by.to_owned(),
            message: query.message_to_customer.clone(),
        })
        .collect();
    // Recorded before anything is answered: no record, no answer.
    if let Err(e) = app.disclosures.record(records).await {
        app.metrics
            .disclosure_failures
            .with_label_values(&["search"])
            .inc();
        return Err(e.into());
    }

    if people.iter().all(|p| p.answers.is_empty()) {
        return Ok((SearchOutcome::NoDebt, stats));
    }
    let lenders = &app.lookup.lenders;
    let mut answers = merged.iter().map(|m| redact(m, Purpose::Search, lenders));
    let Some(mut main) = answers.next() else {
        return Ok((SearchOutcome::NoDebt, stats));
    };
    if !query.co_borrowers.is_empty() {
        main.co_borrowers = Some(answers.collect());
    }
    Ok((SearchOutcome::Answer(Box::new(main)), stats))
}

fn stats_of(people: &[PersonDebt]) -> SearchStats {
    let mut s = SearchStats::default();
    for p in people {
        for a in &p.answers {
            s.fan_out += 1;
            match a.source {
                crate::lookup::Source::Live => s.live += 1,
                crate::lookup::Source::Snapshot => s.snapshot += 1,
                crate::lookup::Source::Missing => s.missing += 1,
            }
        }
    }
    s
}

/// What was disclosed about one person, for the record and the copy letter: each
/// loan with its lender (the letter tells the person everything), and the number
/// of lenders that could not answer.
pub(crate) fn disclosed_summary(app: &AppState, merged: &crate::lookup::MergedDebt) -> String {
    let loans: Vec<serde_json::Value> = merged
        .entries
        .iter()
        .filter_map(|e| {
            let loan = e.loan.as_ref()?;
            let lender = app.lookup.lenders.get(e.lender)?;
            let mut loan = loan.clone();
            loan.account_id = None;
            Some(serde_json::json!({"lender": lender.id, "loan": loan}))
        })
        .collect();
    serde_json::json!({"loans": loans, "missing": merged.missing}).to_string()
}
