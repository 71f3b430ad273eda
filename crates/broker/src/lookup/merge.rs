//! Merging the lenders' answers for one person into one list in canonical order.

use gjeldsbro_adapter::Loan;
use gjeldsbro_adapter::timestamp::{Precision, normalise};

use super::{PersonDebt, Source};
use crate::index::LenderIdx;
use crate::nin::NationalId;

/// One line of a merged answer: a loan and the lender that holds it, or a lender
/// that could not answer (`loan: None`). The lender stays known internally (for
/// creditor names where allowed, and for the disclosure record); redaction decides
/// what leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedEntry {
    pub lender: LenderIdx,
    pub loan: Option<Loan>,
}

#[derive(Debug, Clone)]
pub struct MergedDebt {
    pub nin: NationalId,
    pub entries: Vec<MergedEntry>,
    pub answered: u32,
    pub missing: u32,
}

/// Merges: closed loans (all outstanding amounts 0) are dropped, open ones put in
/// canonical order (type, then amounts, never lender or arrival order), and one
/// `None` entry per lender that could not answer at the end. Timestamps are
/// rewritten to UTC seconds first (see [`utc_timestamp`]), so neither the order
/// nor anything later sees a lender's own way of writing them.
pub fn merge(person: &PersonDebt) -> MergedDebt {
    let mut entries = Vec::new();
    let mut missing_lenders = Vec::new();
    let mut answered = 0;
    for answer in &person.answers {
        match answer.source {
            Source::Missing => missing_lenders.push(answer.lender),
            Source::Live | Source::Snapshot => {
                answered += 1;
                entries.extend(answer.loans.iter().filter(|l| !l.is_closed()).map(|l| {
                    MergedEntry {
                        lender: answer.lender,
                        loan: Some(utc_timestamp(l.canonical())),
                    }
                }));
            }
        }
    }
    entries.sort_by(|a, b| match (&a.loan, &b.loan) {
        (Some(x), Some(y)) => x.canonical_cmp(y),
        _ => std::cmp::Ordering::Equal,
    });
    let missing = missing_lenders.len() as u32;
    entries.extend(
        missing_lenders
            .into_iter()
            .map(|lender| MergedEntry { lender, loan: None }),
    );
    MergedDebt {
        nin: person.nin,
        entries,
        answered,
        missing,
    }
}

/// The loan with its timestamp as UTC to the second. Adapters and ingest let
/// only RFC 3339 through; a stored row from before that rule that is not one
/// loses its timestamp rather than showing the lender's text.
fn utc_timestamp(mut loan: Loan) -> Loan {
    loan.timestamp = loan
        .timestamp
        .as_deref()
        .and_then(|t| normalise(t, Precision::Second));
    loan
}
