//! Consents (issue 5): a person's permission for one client organisation to
//! fetch their debt for one purpose, with names of the creditors.
//!
//! A consent belongs to the organisation that created it; to anyone else it does
//! not exist. A lookup under a consent runs in three steps (see
//! `docs/architecture.md`, "Consents"):
//!
//! 1. a cheap read: the consent exists, is the caller's, and is active — nothing
//!    is asked of any lender otherwise;
//! 2. the fan-out to the person's lenders, merge;
//! 3. one store transaction that spends the consent (a conditional UPDATE), records
//!    the use and appends the disclosure record. This step decides: a lookup that
//!    loses a race (a one-time consent used by a concurrent lookup, a withdrawal in
//!    between) is refused and its assembled answer dropped.
//!
//! No HTTP here; `src/http/consent.rs`, `me.rs` and `embed.rs` translate.

pub mod rules;

use std::time::Duration;

use time::OffsetDateTime;

use crate::Broker;
use crate::disclose::{Ask, Commit, DiscloseError, LetterOwedBy, Recipient, Record, disclose};
use crate::lookup::TraceContext;
use crate::model::{ConsentMeta, DebtInformation};
use crate::nin::NationalId;
use crate::store::{NewConsent, Store, StoreError, StoredConsent};
pub use rules::{ConsentScope, Scope, ScopeError, State};

/// The scope that lets a client create consents.
pub const SCOPE_CREATE: &str = "consent.create";
/// The scope that lets a client read its consent feed.
pub const SCOPE_EVENTS: &str = "client.access.consent.events";

#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    /// No such consent for this caller (it may exist for someone else).
    #[error("no such consent")]
    NotFound,
    /// The consent exists for the caller but may not be used.
    #[error("{}", .0.refusal())]
    Inactive(State),
    /// The client reused its `client_consent_id` with other data.
    #[error("client_consent_id was used before with other data")]
    Conflict,
    /// The store could not be read or written (nothing was disclosed).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the person's agreement reached the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GivenVia {
    /// The client asserts the person agreed in the client's own flow.
    Partner,
    /// The person pressed the button in the embedded page with their own token.
    Person,
}

impl GivenVia {
    pub fn as_str(self) -> &'static str {
        match self {
            GivenVia::Partner => "partner",
            GivenVia::Person => "person",
        }
    }
}

/// A consent to create, validated.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub client_org: String,
    pub client_consent_id: String,
    pub nin: NationalId,
    pub scope: Scope,
    /// Other kinds of debt the consent names (student loans, collection cases).
    pub kinds: gjeldsbro_adapter::KindSet,
    pub requested_days: u32,
    pub given_via: GivenVia,
}

/// Creates a consent, or returns the one the client created before under the
/// same `client_consent_id` if the data is the same (`Conflict` otherwise).
pub async fn create(
    store: &dyn Store,
    req: &CreateRequest,
    now: OffsetDateTime,
) -> Result<StoredConsent, ConsentError> {
    let term = rules::term(req.scope, req.requested_days, now);
    let new = NewConsent {
        id: uuid::Uuid::new_v4().to_string(),
        client_org: req.client_org.clone(),
        client_consent_id: req.client_consent_id.clone(),
        nin: req.nin,
        scope: ConsentScope {
            purpose: req.scope,
            kinds: req.kinds,
        }
        .to_scope_string(),
        requested_days: i64::from(req.requested_days),
        one_time: term.one_time,
        given_via: req.given_via.as_str().to_owned(),
        created_at: crate::time::format_fixed(now),
        ends_at: crate::time::format_fixed(term.ends_at),
    };
    let created = store.create_consent(&new).await?;
    if created.fresh {
        return Ok(created.consent);
    }
    let c = created.consent;
    if c.nin == new.nin && c.scope == new.scope && c.requested_days == new.requested_days {
        Ok(c)
    } else {
        Err(ConsentError::Conflict)
    }
}

/// The consent `id` if it belongs to `client_org`. Any other organisation gets
/// `NotFound`, exactly as for an id that does not exist.
pub async fn owned_by(
    store: &dyn Store,
    id: &str,
    client_org: &str,
) -> Result<StoredConsent, ConsentError> {
    match store.consent(id).await? {
        Some(c) if c.client_org == client_org => Ok(c),
        _ => Err(ConsentError::NotFound),
    }
}

/// The consent `id` if it is about `person`.
pub async fn of_person(
    store: &dyn Store,
    id: &str,
    person: NationalId,
) -> Result<StoredConsent, ConsentError> {
    match store.consent(id).await? {
        Some(c) if c.nin == person => Ok(c),
        _ => Err(ConsentError::NotFound),
    }
}

/// Whether a string is a consent id as we issue them (a UUID).
pub fn is_consent_id(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
}

/// Unix seconds of a stored time (0 if unreadable, which never happens for
/// times we wrote).
pub fn unix_seconds(stored: &str) -> i64 {
    crate::time::parse_rfc3339(stored)
        .map(OffsetDateTime::unix_timestamp)
        .unwrap_or(0)
}

/// What a consent lookup did, for its log line.
#[derive(Debug, Clone, Default)]
pub struct LookupStats {
    pub fan_out: usize,
    pub missing: u32,
    /// Time spent waiting on lenders (the rest is broker overhead).
    pub lender_wait: Duration,
}

/// Steps 2 and 3 of a consent lookup, for a consent the caller owns and that
/// was active a moment ago (step 1, the caller's). Returns the answer only once
/// the use and the disclosure record are committed.
pub async fn fetch(
    app: &Broker,
    consent: &StoredConsent,
    consent_scope: ConsentScope,
    wait: Duration,
    trace: &TraceContext,
) -> Result<(DebtInformation, LookupStats), ConsentError> {
    let ask = Ask {
        persons: std::slice::from_ref(&consent.nin),
        // Only the kinds of debt the consent names are asked for: a lender of
        // another kind never hears of the lookup.
        kinds: consent_scope.lookup_kinds(),
        purpose: consent_scope.purpose.purpose(),
        wait,
        trace,
        record: Record::Yes {
            to: Recipient {
                org: &consent.client_org,
                on_behalf_of: None,
                // The client's own reference for the consent.
                reference_id: &consent.client_consent_id,
                message: None,
                // The person agreed to it (see the purposes table in DOMAIN.md);
                // the letter batch skips these records.
                letter: LetterOwedBy::None,
            },
            commit: Commit::WithConsentUse {
                consent_id: &consent.id,
            },
        },
    };
    let disclosed = match disclose(app, &ask).await {
        Ok(d) => d,
        Err(DiscloseError::ConsentGone) => {
            // Lost the race: spent, withdrawn or expired in the meantime. Tell
            // the owner which, as far as the store now says.
            let now = OffsetDateTime::now_utc();
            let state = match app.lookup.store.consent(&consent.id).await {
                Ok(Some(c)) => rules::state(&c, now),
                _ => State::Withdrawn,
            };
            let state = if state == State::Active {
                State::Expired
            } else {
                state
            };
            return Err(ConsentError::Inactive(state));
        }
        Err(DiscloseError::Store(e)) => return Err(ConsentError::Store(e)),
        // The consent path commits through the store, never the log writer;
        // kept as a store error so the caller answers as for any failed commit.
        Err(e @ (DiscloseError::Log(_) | DiscloseError::Incomplete { .. })) => {
            return Err(ConsentError::Store(StoreError::Query(e.to_string())));
        }
    };
    let lender_wait = disclosed.lender_wait;
    let Some(person) = disclosed.persons.into_iter().next() else {
        // `disclose` answers for every person asked or not at all.
        return Err(ConsentError::Store(StoreError::Query(
            "the lookup returned no person".into(),
        )));
    };
    let mut info = person.answer;
    info.consent = Some(ConsentMeta {
        id: consent.id.clone(),
        exp: unix_seconds(&consent.ends_at),
        scope: consent.scope.clone(),
    });
    Ok((
        info,
        LookupStats {
            fan_out: person.debt.fan_out(),
            missing: person.missing,
            lender_wait,
        },
    ))
}

/// Records a refused attempt by the owner; a failure here only logs (the
/// refusal itself discloses nothing).
pub async fn record_refusal(app: &Broker, consent: &StoredConsent) {
    let at = crate::time::format_fixed(OffsetDateTime::now_utc());
    if let Err(e) = app
        .lookup
        .store
        .record_consent_refusal(&consent.id, &consent.client_org, &at)
        .await
    {
        tracing::warn!(consent_id = %consent.id, error = %e, "refused consent use not recorded");
    }
}
