//! The one disclosure pipeline: fan out, merge, record, redact. Search, consent
//! lookups and the person's own view all run through [`disclose`]; they differ
//! only in what they ask ([`Ask`]) and whether a record is written ([`Record`]).
//!
//! The rule this module exists to keep in one place: when debt is disclosed to
//! someone other than the person, the records are committed before an answer
//! exists, and a failed commit leaves no answer (DOMAIN.md; `audit`).

mod ports;
#[cfg(test)]
mod tests;

use std::time::Duration;

use gjeldsbro_adapter::KindSet;
use tokio::time::Instant;

use crate::audit::{AuditError, DisclosureRecord};
use crate::lookup::{MergedDebt, PersonDebt, TraceContext, merge};
use crate::model::DebtInformation;
use crate::nin::NationalId;
use crate::redact::Purpose;
use crate::store::{StoreError, UseRequest};
pub use gjeldsbro_domain::disclosure::LetterOwedBy;
pub use ports::Ports;

/// One lookup to run through the pipeline.
#[derive(Debug)]
pub struct Ask<'a> {
    /// The persons looked up together (applicant first, then co-borrowers).
    pub persons: &'a [NationalId],
    /// The kinds of debt asked for: lenders of other kinds are never called, and
    /// redaction cuts the answer to these too.
    pub kinds: KindSet,
    pub purpose: Purpose,
    /// How long the lenders get, from the start of the fan-out.
    pub wait: Duration,
    pub trace: &'a TraceContext,
    pub record: Record<'a>,
}

/// Whether the lookup discloses to someone other than the person.
#[derive(Debug)]
pub enum Record<'a> {
    /// The person's own view: they are not "someone other than the person
    /// themself" (DOMAIN.md), so nothing is recorded.
    No,
    /// Disclosed to `to`; one record per person, committed as `commit` says.
    Yes {
        to: Recipient<'a>,
        commit: Commit<'a>,
    },
}

/// Who receives a disclosure, as the record names it.
#[derive(Debug)]
pub struct Recipient<'a> {
    pub org: &'a str,
    pub on_behalf_of: Option<&'a str>,
    /// The recipient's own reference (a search's `referenceID`, a consent's
    /// `client_consent_id`).
    pub reference_id: &'a str,
    /// The message to the person, carried into the copy letter.
    pub message: Option<&'a str>,
    pub letter: LetterOwedBy,
}

/// How the records are committed.
#[derive(Debug)]
pub enum Commit<'a> {
    /// Through the disclosure log's group-commit writer (a search).
    Log,
    /// In the one transaction that spends the consent (a consent lookup): a
    /// lookup that loses the race for the consent records nothing.
    WithConsentUse { consent_id: &'a str },
}

/// What the lookup found and may show, per person in the order asked.
#[derive(Debug)]
pub struct Disclosed {
    pub persons: Vec<DisclosedPerson>,
    /// Time spent waiting on lenders (the rest is broker overhead).
    pub lender_wait: Duration,
}

#[derive(Debug)]
pub struct DisclosedPerson {
    /// What each lender said, for the callers' log lines.
    pub debt: PersonDebt,
    /// Lenders that could not answer, after merge.
    pub missing: u32,
    /// The answer, redacted for the purpose and the kinds asked.
    pub answer: DebtInformation,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscloseError {
    /// The fan-out answered for fewer persons than asked; nothing is recorded,
    /// since a record per person is the rule.
    #[error("the lookup returned {got} of {asked} persons")]
    Incomplete { asked: usize, got: usize },
    /// The disclosure log could not be written (nothing was disclosed).
    #[error(transparent)]
    Log(#[from] AuditError),
    /// The consent transaction failed (nothing was disclosed).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The consent was spent, withdrawn or expired between the caller's check
    /// and the spend; nothing was recorded or disclosed.
    #[error("the consent could no longer be used")]
    ConsentGone,
}

/// Runs one lookup through the pipeline. An answer is returned only after its
/// records (if any) are committed.
pub async fn disclose(ports: &impl Ports, ask: &Ask<'_>) -> Result<Disclosed, DiscloseError> {
    let label = metric_label(ask.purpose);
    let started = Instant::now();
    let people = ports
        .persons(ask.persons, ask.kinds, started + ask.wait, ask.trace)
        .await;
    let lender_wait = started.elapsed();
    for p in &people {
        ports
            .metrics()
            .fan_out
            .with_label_values(&[label])
            .observe(p.fan_out() as f64);
    }
    let merged: Vec<MergedDebt> = people.iter().map(merge).collect();

    if let Record::Yes { to, commit } = &ask.record {
        if people.len() != ask.persons.len() {
            return Err(DiscloseError::Incomplete {
                asked: ask.persons.len(),
                got: people.len(),
            });
        }
        commit_records(ports, ask.purpose, to, commit, &merged)
            .await
            .inspect_err(|e| {
                // A lost race is the consent's state, not a failure to record.
                if !matches!(e, DiscloseError::ConsentGone) {
                    ports
                        .metrics()
                        .disclosure_failures
                        .with_label_values(&[label])
                        .inc();
                }
            })?;
    }

    // Redaction: after merge, after the commit, the one place the answer is cut.
    let persons = people
        .into_iter()
        .zip(&merged)
        .map(|(debt, m)| DisclosedPerson {
            answer: ports.redact(m, ask.purpose, ask.kinds),
            missing: m.missing,
            debt,
        })
        .collect();
    Ok(Disclosed {
        persons,
        lender_wait,
    })
}

/// Builds the answer's records, one per person with one shared `query_id`, and
/// commits them. The only place a record is made outside the store and tests.
async fn commit_records(
    ports: &impl Ports,
    purpose: Purpose,
    to: &Recipient<'_>,
    commit: &Commit<'_>,
    merged: &[MergedDebt],
) -> Result<(), DiscloseError> {
    let query_id = uuid::Uuid::new_v4().to_string();
    let now = ports.now();
    // Two formats, as the log has always held them: a search's `at` as `time`
    // writes RFC 3339 (fraction trimmed), a consent's at the fixed width the
    // consent tables use. Changing either changes bytes in the chained log.
    let at = match commit {
        Commit::Log => crate::time::format_rfc3339(now),
        Commit::WithConsentUse { .. } => crate::time::format_fixed(now),
    };
    let records: Vec<DisclosureRecord> = merged
        .iter()
        .map(|m| DisclosureRecord {
            query_id: query_id.clone(),
            at: at.clone(),
            recipient_org: to.org.to_owned(),
            on_behalf_of: to.on_behalf_of.map(str::to_owned),
            purpose: purpose.as_str().to_owned(),
            reference_id: to.reference_id.to_owned(),
            nin: m.nin.as_u64(),
            disclosed: disclosed_summary(ports, m),
            letter_owed_by: to.letter.as_str().to_owned(),
            message: to.message.map(str::to_owned),
        })
        .collect();
    match commit {
        Commit::Log => Ok(ports.record(records).await?),
        Commit::WithConsentUse { consent_id } => {
            let request = UseRequest {
                consent_id: (*consent_id).to_owned(),
                client_org: to.org.to_owned(),
                at,
                query_id,
            };
            if ports.use_consent_and_record(&request, &records).await? {
                Ok(())
            } else {
                Err(DiscloseError::ConsentGone)
            }
        }
    }
}

/// The label of the fan-out and disclosure-failure metrics: the two consent
/// purposes share one, as they always have on the dashboards.
fn metric_label(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::Search => "search",
        Purpose::Presentation | Purpose::Processing => "consent",
        Purpose::OwnView => "own_view",
    }
}

/// What was disclosed about one person, for the record and the copy letter: each
/// loan with its lender (the letter tells the person everything), and the number
/// of lenders that could not answer.
fn disclosed_summary(ports: &impl Ports, merged: &MergedDebt) -> String {
    let loans: Vec<serde_json::Value> = merged
        .entries
        .iter()
        .filter_map(|e| {
            let loan = e.loan.as_ref()?;
            let lender = ports.lender_id(e.lender)?;
            let mut loan = loan.clone();
            loan.account_id = None;
            Some(serde_json::json!({"lender": lender, "loan": loan}))
        })
        .collect();
    serde_json::json!({"loans": loans, "missing": merged.missing}).to_string()
}
