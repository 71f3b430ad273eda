//! Redaction: what a purpose may see. The one place an answer is cut down, after
//! merge and before encoding; deny by default.

use gjeldsbro_adapter::KindSet;
use gjeldsbro_adapter::timestamp::normalise;

use crate::lenders::Lenders;
use crate::lookup::MergedDebt;
use crate::model::{DebtInformation, LoanEntry};

pub use gjeldsbro_domain::purpose::Purpose;

/// Cuts a merged answer down to what `purpose` may see, with the purpose's
/// default kinds of debt. See [`redact_kinds`].
pub fn redact(merged: &MergedDebt, purpose: Purpose, lenders: &Lenders) -> DebtInformation {
    redact_kinds(merged, purpose, purpose.default_kinds(), lenders)
}

/// Cuts a merged answer down to what `purpose` may see. `accountID` never leaves
/// (it names the lender's account); creditor names leave only where allowed;
/// timestamps leave in one fixed form, the UTC date where names are removed,
/// UTC seconds elsewhere (`Purpose::timestamp_precision`). A
/// loan (or an unanswered lender) of a kind outside `kinds`, or outside what the
/// purpose may ever see, is dropped: the fan-out should not have asked such a
/// lender at all, and this is the last line if it did.
pub fn redact_kinds(
    merged: &MergedDebt,
    purpose: Purpose,
    kinds: KindSet,
    lenders: &Lenders,
) -> DebtInformation {
    let names = purpose.shows_creditor_names();
    let precision = purpose.timestamp_precision();
    let kinds = kinds.intersect(purpose.allowed_kinds());
    let shown = |e: &&crate::lookup::MergedEntry| {
        let lender_ok = lenders
            .get(e.lender)
            .is_some_and(|l| kinds.contains(l.kind));
        let loan_ok = e
            .loan
            .as_ref()
            .is_none_or(|l| kinds.contains(l.loan_type.kind()));
        lender_ok && loan_ok
    };
    let loans = merged
        .entries
        .iter()
        .filter(shown)
        .map(|e| LoanEntry {
            creditor_name: if names {
                lenders.get(e.lender).map(|l| l.name.clone())
            } else {
                None
            },
            loan: e.loan.as_ref().map(|l| {
                let mut l = l.clone();
                l.account_id = None;
                l.timestamp = l.timestamp.as_deref().and_then(|t| normalise(t, precision));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::lookup::MergedEntry;
    use crate::nin::{IdPolicy, NationalId, make_id};
    use gjeldsbro_adapter::{Loan, LoanType};

    /// Lender 0 holds unsecured debt, lender 1 collection cases.
    fn lenders() -> Lenders {
        let text = "listen = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite::memory:\"\n\
             [auth]\nissuer = \"i\"\naudience = \"a\"\njwks_file = \"jwks.json\"\n\
             [[lenders]]\nid = \"bank\"\norg_no = \"920000001\"\nname = \"Bank ASA\"\n\
             adapter = \"api-debt-fi\"\nbase_url = \"https://127.0.0.1:1\"\n\
             [[lenders]]\nid = \"inkasso\"\norg_no = \"920000002\"\nname = \"Inkasso AS\"\n\
             adapter = \"debt-collection\"\nbase_url = \"https://127.0.0.1:1\"\n\
             [lenders.settings]\napi_key = \"k\"\n";
        Lenders::from_config(&Config::parse(text).expect("config")).expect("lenders")
    }

    fn loan(t: LoanType) -> Loan {
        serde_json::from_value(serde_json::json!({
            "type": t.as_str(), "accountID": "A-1", "balance": 100,
            "interestBearingBalance": 100, "nonInterestBearingBalance": 0
        }))
        .expect("loan")
    }

    fn merged() -> MergedDebt {
        let id = (0..1000)
            .find_map(|i| make_id(1, 3, 80, i, false, true))
            .expect("an id");
        let entry = |lender, loan| MergedEntry { lender, loan };
        MergedDebt {
            nin: NationalId::parse(&id, IdPolicy::SYNTHETIC_OK).expect("id"),
            entries: vec![
                entry(0, Some(loan(LoanType::RepaymentLoan))),
                // An unsecured lender answering with a kind it should not hold.
                entry(0, Some(loan(LoanType::CollectionCase))),
                entry(1, Some(loan(LoanType::CollectionCase))),
                // The collection agency did not answer.
                entry(1, None),
            ],
            answered: 2,
            missing: 0,
        }
    }

    fn types(d: &DebtInformation) -> Vec<Option<LoanType>> {
        d.loans
            .iter()
            .map(|e| e.loan.as_ref().map(|l| l.loan_type))
            .collect()
    }

    /// The last line: a search or a processing consent sees only the register's
    /// unsecured debt, whatever the fan-out let through.
    #[test]
    fn credit_assessment_sees_only_unsecured_debt_and_no_names() {
        let lenders = lenders();
        for purpose in [Purpose::Search, Purpose::Processing] {
            let d = redact(&merged(), purpose, &lenders);
            assert_eq!(
                types(&d),
                vec![Some(LoanType::RepaymentLoan)],
                "{purpose:?}"
            );
        }
        let d = redact(&merged(), Purpose::Search, &lenders);
        assert!(d.loans.iter().all(|e| e.creditor_name.is_none()));
        assert!(
            d.loans
                .iter()
                .all(|e| e.loan.as_ref().unwrap().account_id.is_none())
        );
    }

    /// Even a purpose that may see everything is cut to the kinds asked for.
    #[test]
    fn kinds_asked_for_are_intersected_with_what_the_purpose_may_see() {
        let lenders = lenders();
        let own = redact(&merged(), Purpose::OwnView, &lenders);
        assert_eq!(own.loans.len(), 4);
        let only_unsecured =
            redact_kinds(&merged(), Purpose::OwnView, KindSet::UNSECURED, &lenders);
        assert_eq!(types(&only_unsecured), vec![Some(LoanType::RepaymentLoan)]);
        let asked_all = redact_kinds(&merged(), Purpose::Search, KindSet::ALL, &lenders);
        assert_eq!(types(&asked_all), vec![Some(LoanType::RepaymentLoan)]);
    }
}
