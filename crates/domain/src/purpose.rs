//! Why debt is disclosed, and what each purpose may see (DOMAIN.md, the
//! purposes table). Redaction applies it in the broker; the chained log stores
//! [`Purpose::as_str`].

use crate::kind::KindSet;
use crate::timestamp::Precision;

/// Why debt is being disclosed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Credit assessment without consent (gjeldsinformasjonsloven § 12).
    Search,
    /// `debt.unsecured.presentation` under consent.
    Presentation,
    /// `debt.unsecured.processing` under consent.
    Processing,
    /// The person's own view.
    OwnView,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Search => "search",
            Purpose::Presentation => "debt.unsecured.presentation",
            Purpose::Processing => "debt.unsecured.processing",
            Purpose::OwnView => "own_view",
        }
    }

    /// The kinds of debt the purpose may ever see. Student loans and collection
    /// cases are not unsecured debt under the law: only the person sees them
    /// unasked, and a presentation consent only when it names them (so the
    /// consent's own kinds are intersected with this).
    pub fn allowed_kinds(self) -> KindSet {
        match self {
            Purpose::OwnView | Purpose::Presentation => KindSet::ALL,
            Purpose::Search | Purpose::Processing => KindSet::UNSECURED,
        }
    }

    /// The kinds a lookup for the purpose asks for when nothing else names
    /// kinds: the own view everything, everything else the register's debt.
    pub fn default_kinds(self) -> KindSet {
        match self {
            Purpose::OwnView => KindSet::ALL,
            _ => KindSet::UNSECURED,
        }
    }

    /// How much of a loan's timestamp the purpose sees. Where creditor names
    /// are removed, the time of day is too: a lender's delivery hour (the same
    /// for every person served from its snapshot) or its habits would tell
    /// which lender a loan came from. The date still tells the data's age.
    pub fn timestamp_precision(self) -> Precision {
        if self.shows_creditor_names() {
            Precision::Second
        } else {
            Precision::Day
        }
    }

    /// Whether creditor names may be shown. Only an explicit yes shows them.
    pub fn shows_creditor_names(self) -> bool {
        match self {
            Purpose::Presentation | Purpose::Processing | Purpose::OwnView => true,
            Purpose::Search => false,
        }
    }
}
