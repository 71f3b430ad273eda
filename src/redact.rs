//! Redaction: what a purpose may see. The one place an answer is cut down, after
//! merge and before encoding; deny by default.

use crate::lenders::Lenders;
use crate::lookup::MergedDebt;
use crate::model::{DebtInformation, LoanEntry};

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

    /// Whether creditor names may be shown. Only an explicit yes shows them.
    fn shows_creditor_names(self) -> bool {
        match self {
            Purpose::Presentation | Purpose::Processing | Purpose::OwnView => true,
            Purpose::Search => false,
        }
    }
}

/// Cuts a merged answer down to what `purpose` may see. `accountID` never leaves
/// (it names the lender's account); creditor names leave only where allowed.
pub fn redact(merged: &MergedDebt, purpose: Purpose, lenders: &Lenders) -> DebtInformation {
    let names = purpose.shows_creditor_names();
    let loans = merged
        .entries
        .iter()
        .map(|e| LoanEntry {
            creditor_name: if names {
                lenders.get(e.lender).map(|l| l.name.clone())
            } else {
                None
            },
            loan: e.loan.as_ref().map(|l| {
                let mut l = l.clone();
                l.account_id = None;
                l
            }),
        })
        .collect();
    DebtInformation {
        ssn: merged.nin,
        loans,
        number_of_creditors_answered: merged.answered,
        number_of_creditors_missing: merged.missing,
        consent: None,
        co_borrowers: None,
    }
}
