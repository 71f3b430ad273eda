//! One disclosure record and the hash that chains it to the one before.

use super::encoding::ChainVersion;

/// The hash the first record chains to.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What one answer disclosed about one person to one recipient.
// No `Serialize`: what the hash covers is written by `encoding`, field by
// field; a derive here would let a field's order decide the log's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisclosureRecord {
    /// Shared by the records of one answer (applicant and co-borrowers).
    pub query_id: String,
    /// RFC 3339 UTC.
    pub at: String,
    pub recipient_org: String,
    pub on_behalf_of: Option<String>,
    /// `search`, `debt.unsecured.presentation`, `debt.unsecured.processing`.
    pub purpose: String,
    pub reference_id: String,
    /// The person's id number (the store is the one place that holds it).
    pub nin: u64,
    /// Canonical JSON of what was disclosed (loans per lender, missing count).
    pub disclosed: String,
    /// `broker`, `credit_bureau` or `recipient` (usingOwnNotification).
    pub letter_owed_by: String,
    pub message: Option<String>,
}

/// The hash chaining `record` to `prev_hash`, in the version new records are
/// written with (see [`ChainVersion`]).
pub fn chain_hash(prev_hash: &str, record: &DisclosureRecord) -> String {
    ChainVersion::CURRENT.hash(prev_hash, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(reference: &str) -> DisclosureRecord {
        DisclosureRecord {
            query_id: "q".into(),
            at: "2026-01-01T00:00:00Z".into(),
            recipient_org: "910000001".into(),
            on_behalf_of: None,
            purpose: "search".into(),
            reference_id: reference.into(),
            nin: 1,
            disclosed: "{}".into(),
            letter_owed_by: "broker".into(),
            message: None,
        }
    }

    #[test]
    fn chain_depends_on_previous_hash_and_every_field() {
        let a = chain_hash(GENESIS, &rec("A"));
        assert_eq!(a.len(), 64);
        assert_ne!(a, chain_hash(GENESIS, &rec("B")));
        assert_ne!(a, chain_hash(&a, &rec("A")));
        assert_eq!(a, chain_hash(GENESIS, &rec("A")));
    }
}
