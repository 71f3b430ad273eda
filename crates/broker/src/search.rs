//! A credit-assessment search (gjeldsinformasjonsloven § 12): the applicant and any
//! co-borrowers looked up together, redacted for the search purpose, and recorded
//! in the disclosure log before the answer leaves.

use std::time::Duration;

use gjeldsbro_adapter::KindSet;

use crate::Broker;
use crate::disclose::{
    Ask, Commit, DiscloseError, DisclosedPerson, LetterOwedBy, Recipient, Record, disclose,
};
use crate::lookup::TraceContext;
use crate::model::DebtInformation;
use crate::nin::NationalId;
use crate::redact::Purpose;

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
    Disclosure(#[from] DiscloseError),
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
    app: &Broker,
    query: &SearchQuery,
    trace: &TraceContext,
) -> Result<(SearchOutcome, SearchStats), SearchError> {
    let mut nins = Vec::with_capacity(1 + query.co_borrowers.len());
    nins.push(query.person);
    nins.extend(query.co_borrowers.iter().copied());
    let ask = Ask {
        persons: &nins,
        // The register's debt only: lenders of other kinds (student loans, debt
        // collection) are never asked for a search, so they do not learn of it,
        // and a person held only by them gets 204 like anyone without debt.
        kinds: KindSet::UNSECURED,
        purpose: Purpose::Search,
        wait: query.max_time_to_wait,
        trace,
        record: Record::Yes {
            to: Recipient {
                org: &query.recipient_org,
                on_behalf_of: query.on_behalf_of.as_deref(),
                reference_id: &query.reference_id,
                message: query.message_to_customer.as_deref(),
                letter: LetterOwedBy::for_search(query.via_bureau, query.using_own_notification),
            },
            commit: Commit::Log,
        },
    };
    let disclosed = disclose(app, &ask).await?;
    let mut stats = stats_of(&disclosed.persons);
    stats.lender_wait = disclosed.lender_wait;

    // Recorded above even so: that the person was searched for is disclosed.
    if disclosed.persons.iter().all(|p| p.debt.answers.is_empty()) {
        return Ok((SearchOutcome::NoDebt, stats));
    }
    let mut answers = disclosed.persons.into_iter().map(|p| p.answer);
    let Some(mut main) = answers.next() else {
        return Ok((SearchOutcome::NoDebt, stats));
    };
    if !query.co_borrowers.is_empty() {
        main.co_borrowers = Some(answers.collect());
    }
    Ok((SearchOutcome::Answer(Box::new(main)), stats))
}

fn stats_of(people: &[DisclosedPerson]) -> SearchStats {
    let mut s = SearchStats::default();
    for p in people {
        for a in &p.debt.answers {
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
