//! What the store keeps about consents: the consent itself, each use of it, and
//! the per-client feed of created/archived events. Times cross this boundary as
//! fixed-width RFC 3339 UTC text ([`gjeldsbro_domain::time::format_fixed`]); the SQLite store
//! keeps them so, PostgreSQL as `timestamptz`.

use gjeldsbro_domain::nin::NationalId;

/// A consent to create.
#[derive(Debug, Clone)]
pub struct NewConsent {
    pub id: String,
    pub client_org: String,
    pub client_consent_id: String,
    pub nin: NationalId,
    pub scope: String,
    pub requested_days: i64,
    pub one_time: bool,
    /// `partner` or `person`.
    pub given_via: String,
    pub created_at: String,
    pub ends_at: String,
}

/// A consent as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredConsent {
    pub id: String,
    pub client_org: String,
    pub client_consent_id: String,
    pub nin: NationalId,
    pub scope: String,
    pub requested_days: i64,
    pub one_time: bool,
    pub given_via: String,
    pub created_at: String,
    pub ends_at: String,
    pub spent_at: Option<String>,
    pub last_used_at: Option<String>,
    pub archived_at: Option<String>,
    /// `person` or `client`.
    pub archived_by: Option<String>,
}

/// The result of [`Store::create_consent`](super::Store::create_consent).
#[derive(Debug, Clone)]
pub struct CreatedConsent {
    pub consent: StoredConsent,
    /// False when the client's `client_consent_id` was already taken: `consent`
    /// is then the earlier one (the caller compares the data).
    pub fresh: bool,
}

/// One attempt by the owning client to use a consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentUse {
    pub consent_id: String,
    pub at: String,
    pub by_org: String,
    /// The disclosure log's query id, for a use that disclosed.
    pub query_id: Option<String>,
    /// `disclosed` or `refused`.
    pub outcome: String,
}

/// One use about to happen: the conditional spend and its records.
#[derive(Debug, Clone)]
pub struct UseRequest {
    pub consent_id: String,
    pub client_org: String,
    /// Now, fixed-width RFC 3339: the consent must end after it.
    pub at: String,
    pub query_id: String,
}

/// One event of a client's consent feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentEvent {
    pub seq: i64,
    pub consent_id: String,
    /// `created` or `archived`.
    pub kind: String,
    pub at: String,
    /// From the consent, while it is kept (absent after the retention purge).
    pub client_consent_id: Option<String>,
    pub scope: Option<String>,
    pub ends_at: Option<String>,
}

/// One disclosure record about a person, as the person sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonDisclosure {
    pub query_id: String,
    pub at: String,
    pub recipient_org: String,
    pub on_behalf_of: Option<String>,
    pub purpose: String,
    pub reference_id: String,
    pub disclosed: String,
}

/// Decodes a stored id column.
pub(super) fn stored_nin(n: i64) -> Result<NationalId, super::StoreError> {
    u64::try_from(n)
        .ok()
        .and_then(NationalId::from_stored)
        .ok_or_else(|| super::StoreError::Corrupt("a stored id is out of range".into()))
}
