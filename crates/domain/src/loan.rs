//! The API-DEBT-FI loan model: what lenders deliver and what the broker answers with.
//!
//! One flat struct carries every field of the three loan types, each optional on the
//! wire, so that a delivery can be parsed first and judged afterwards: a missing
//! `coBorrower` or a negative amount must be reported as the rule it breaks, with
//! the record's position, not as an opaque parse error. [`Loan::validate`] applies
//! the rules; [`Loan::canonical`] drops the fields that do not belong to the type.
//! Amounts are integers in øre (NOK × 100), rates in basis points (10.20 % = 1020).
//!
//! Two types come from other sources through their own adapters and are not
//! unsecured debt under the law (see [`crate::DebtKind`]): `studentLoan` (a saldo
//! split into `principal`, `interest`, `fees` and `costs`) and `collectionCase`
//! (`principal`, `interest`, `fees` and a `status`). Their fields are absent on
//! every API-DEBT-FI loan, so the register's wire format is unchanged.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::kind::DebtKind;

/// The three loan types of the register, then the other sources' types.
/// New variants go last: the derived order is the canonical order of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LoanType {
    /// Nedbetalingslån.
    #[serde(rename = "repaymentLoan")]
    RepaymentLoan,
    /// Rammekreditt.
    #[serde(rename = "creditFacility")]
    CreditFacility,
    /// Faktureringskort.
    #[serde(rename = "chargeCard")]
    ChargeCard,
    /// Studielån (not unsecured debt under the register's law).
    #[serde(rename = "studentLoan")]
    StudentLoan,
    /// Inkassosak (not unsecured debt under the register's law).
    #[serde(rename = "collectionCase")]
    CollectionCase,
}

impl LoanType {
    pub fn as_str(self) -> &'static str {
        match self {
            LoanType::RepaymentLoan => "repaymentLoan",
            LoanType::CreditFacility => "creditFacility",
            LoanType::ChargeCard => "chargeCard",
            LoanType::StudentLoan => "studentLoan",
            LoanType::CollectionCase => "collectionCase",
        }
    }

    /// The kind of debt a loan of this type is.
    pub fn kind(self) -> DebtKind {
        match self {
            LoanType::RepaymentLoan | LoanType::CreditFacility | LoanType::ChargeCard => {
                DebtKind::Unsecured
            }
            LoanType::StudentLoan => DebtKind::StudentLoan,
            LoanType::CollectionCase => DebtKind::DebtCollection,
        }
    }
}

/// Where a debt-collection case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CaseStatus {
    /// Being collected.
    Active,
    /// Paid in instalments under an agreed plan.
    PaymentPlan,
    /// The debtor disputes the claim; collection is paused.
    Disputed,
    /// Paid or withdrawn: nothing is owed.
    Closed,
}

/// How often installment charges fall due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ChargePeriod {
    #[serde(rename = "MONTHLY")]
    Monthly,
    #[serde(rename = "QUARTERLY")]
    Quarterly,
    #[serde(rename = "HALF-YEARLY")]
    HalfYearly,
    #[serde(rename = "YEARLY")]
    Yearly,
}

/// One loan as API-DEBT-FI carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Loan {
    #[serde(rename = "type")]
    pub loan_type: LoanType,
    #[serde(rename = "accountID", default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(
        rename = "coBorrower",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub co_borrower: Option<i64>,
    #[serde(
        rename = "originalBalance",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub original_balance: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<i64>,
    #[serde(
        rename = "creditLimit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub credit_limit: Option<i64>,
    #[serde(
        rename = "interestBearingBalance",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub interest_bearing_balance: Option<i64>,
    #[serde(
        rename = "nonInterestBearingBalance",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub non_interest_bearing_balance: Option<i64>,
    #[serde(
        rename = "nominalInterestRate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub nominal_interest_rate: Option<i64>,
    #[serde(
        rename = "installmentCharges",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub installment_charges: Option<i64>,
    #[serde(
        rename = "installmentChargePeriod",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub installment_charge_period: Option<ChargePeriod>,
    /// Student loan: the loan part of the saldo; collection case: the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<i64>,
    /// Accrued interest (student loans, collection cases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interest: Option<i64>,
    /// Fees (student loans, collection cases).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fees: Option<i64>,
    /// Costs (omkostninger; student loans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub costs: Option<i64>,
    /// A collection case's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CaseStatus>,
}

/// A rule a loan record breaks. Messages name fields, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoanRule {
    #[error("coBorrower is missing")]
    MissingCoBorrower,
    #[error("coBorrower must be 0, 1 or 2")]
    InvalidCoBorrower,
    #[error("{0} is negative")]
    NegativeAmount(&'static str),
    #[error("{0} is required for this loan type")]
    MissingField(&'static str),
    #[error("accountID is missing or empty")]
    MissingAccountId,
    #[error("type is not one this lender may deliver")]
    WrongKind,
    /// Not an RFC 3339 date-time or date: shown as is it could tell lenders
    /// apart, or carry markup (see [`crate::timestamp`]).
    #[error("timestamp is not an RFC 3339 date-time")]
    BadTimestamp,
}

impl LoanRule {
    /// A short stable name for reports and metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            LoanRule::MissingCoBorrower => "missing_co_borrower",
            LoanRule::InvalidCoBorrower => "invalid_co_borrower",
            LoanRule::NegativeAmount(_) => "negative_amount",
            LoanRule::MissingField(_) => "missing_field",
            LoanRule::MissingAccountId => "missing_account_id",
            LoanRule::WrongKind => "wrong_kind",
            LoanRule::BadTimestamp => "bad_timestamp",
        }
    }
}

impl Loan {
    /// A loan of `loan_type` with its identity set and every amount absent; the
    /// caller fills in the fields of its type.
    pub fn new(
        loan_type: LoanType,
        account_id: Option<String>,
        timestamp: Option<String>,
        co_borrower: Option<i64>,
    ) -> Loan {
        Loan {
            loan_type,
            account_id,
            timestamp,
            co_borrower,
            original_balance: None,
            balance: None,
            terms: None,
            credit_limit: None,
            interest_bearing_balance: None,
            non_interest_bearing_balance: None,
            nominal_interest_rate: None,
            installment_charges: None,
            installment_charge_period: None,
            principal: None,
            interest: None,
            fees: None,
            costs: None,
            status: None,
        }
    }

    fn amounts(&self) -> [(&'static str, Option<i64>); 13] {
        [
            ("originalBalance", self.original_balance),
            ("balance", self.balance),
            ("terms", self.terms),
            ("creditLimit", self.credit_limit),
            ("interestBearingBalance", self.interest_bearing_balance),
            (
                "nonInterestBearingBalance",
                self.non_interest_bearing_balance,
            ),
            ("nominalInterestRate", self.nominal_interest_rate),
            ("installmentCharges", self.installment_charges),
            ("coBorrower", self.co_borrower),
            ("principal", self.principal),
            ("interest", self.interest),
            ("fees", self.fees),
            ("costs", self.costs),
        ]
    }

    /// The outstanding amounts that decide whether the loan is closed, by type.
    fn outstanding(&self) -> &'static [&'static str] {
        match self.loan_type {
            LoanType::RepaymentLoan => &["balance"],
            LoanType::CreditFacility => &[
                "creditLimit",
                "interestBearingBalance",
                "nonInterestBearingBalance",
            ],
            LoanType::ChargeCard => &["interestBearingBalance", "nonInterestBearingBalance"],
            LoanType::StudentLoan => &["principal", "interest", "fees", "costs"],
            LoanType::CollectionCase => &["principal", "interest", "fees"],
        }
    }

    fn field(&self, name: &str) -> Option<i64> {
        self.amounts()
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| *v)
    }

    /// Checks the register's rules: `coBorrower` set (0-2), every amount ≥ 0, an
    /// `accountID`, and the outstanding amounts of the type present (without them a
    /// loan cannot be judged open or closed), and a `timestamp`, when there is
    /// one, in RFC 3339. The other sources' types have no
    /// co-borrowers (the field may be absent), and a collection case needs a status.
    /// Whether a lender may deliver a type at all is [`Loan::validate_for`].
    pub fn validate(&self) -> Result<(), LoanRule> {
        match (self.co_borrower, self.loan_type.kind()) {
            (None, DebtKind::Unsecured) => return Err(LoanRule::MissingCoBorrower),
            (None | Some(0..=2), _) => {}
            (Some(_), _) => return Err(LoanRule::InvalidCoBorrower),
        }
        for (name, value) in self.amounts() {
            if value.is_some_and(|v| v < 0) {
                return Err(LoanRule::NegativeAmount(name));
            }
        }
        if self
            .account_id
            .as_deref()
            .is_none_or(|a| a.trim().is_empty())
        {
            return Err(LoanRule::MissingAccountId);
        }
        for name in self.outstanding() {
            if self.field(name).is_none() {
                return Err(LoanRule::MissingField(name));
            }
        }
        if self.loan_type == LoanType::CollectionCase && self.status.is_none() {
            return Err(LoanRule::MissingField("status"));
        }
        if self
            .timestamp
            .as_deref()
            .is_some_and(|t| !crate::timestamp::is_valid(t))
        {
            return Err(LoanRule::BadTimestamp);
        }
        Ok(())
    }

    /// [`Loan::validate`], and the loan is of the kind the lender serves: an
    /// API-DEBT-FI lender cannot deliver a student loan, nor a collection agency
    /// a credit card.
    pub fn validate_for(&self, kind: DebtKind) -> Result<(), LoanRule> {
        if self.loan_type.kind() != kind {
            return Err(LoanRule::WrongKind);
        }
        self.validate()
    }

    /// True when every outstanding amount of the type is 0: the loan is repaid.
    /// `originalBalance` and charges do not count. A collection case is also
    /// closed when its status says so.
    pub fn is_closed(&self) -> bool {
        if self.status == Some(CaseStatus::Closed) {
            return true;
        }
        self.outstanding()
            .iter()
            .all(|name| self.field(name).unwrap_or(0) == 0)
    }

    /// The loan with only its type's fields, as the client API shows it.
    pub fn canonical(&self) -> Loan {
        let mut out = Loan::new(
            self.loan_type,
            self.account_id.clone(),
            self.timestamp.clone(),
            self.co_borrower,
        );
        match self.loan_type {
            LoanType::RepaymentLoan => {
                out.original_balance = self.original_balance;
                out.balance = self.balance;
                out.terms = self.terms;
                out.nominal_interest_rate = self.nominal_interest_rate;
                out.installment_charges = self.installment_charges;
                out.installment_charge_period = self.installment_charge_period;
            }
            LoanType::CreditFacility => {
                out.credit_limit = self.credit_limit;
                out.interest_bearing_balance = self.interest_bearing_balance;
                out.non_interest_bearing_balance = self.non_interest_bearing_balance;
                out.nominal_interest_rate = self.nominal_interest_rate;
                out.installment_charges = self.installment_charges;
                out.installment_charge_period = self.installment_charge_period;
            }
            LoanType::ChargeCard => {
                out.interest_bearing_balance = self.interest_bearing_balance;
                out.non_interest_bearing_balance = self.non_interest_bearing_balance;
            }
            LoanType::StudentLoan => {
                out.principal = self.principal;
                out.interest = self.interest;
                out.fees = self.fees;
                out.costs = self.costs;
            }
            LoanType::CollectionCase => {
                out.principal = self.principal;
                out.interest = self.interest;
                out.fees = self.fees;
                out.status = self.status;
            }
        }
        out
    }

    /// The main amount used for ordering: what the person owes (or may draw) now.
    fn principal(&self) -> i64 {
        match self.loan_type {
            LoanType::RepaymentLoan => self.balance.unwrap_or(0),
            LoanType::CreditFacility => self.credit_limit.unwrap_or(0),
            LoanType::ChargeCard => {
                self.interest_bearing_balance.unwrap_or(0)
                    + self.non_interest_bearing_balance.unwrap_or(0)
            }
            LoanType::StudentLoan | LoanType::CollectionCase => self
                .outstanding()
                .iter()
                .map(|name| self.field(name).unwrap_or(0))
                .fold(0i64, i64::saturating_add),
        }
    }

    /// The canonical order of an answer: by type, then by amount (largest first),
    /// then by every other field, so that the order depends on the loans alone and
    /// never on which lender answered or when. `accountID` is compared last, and only
    /// to make the order total.
    pub fn canonical_cmp(&self, other: &Loan) -> Ordering {
        self.loan_type
            .cmp(&other.loan_type)
            .then_with(|| other.principal().cmp(&self.principal()))
            .then_with(|| {
                let a = self.amounts().map(|(_, v)| v);
                let b = other.amounts().map(|(_, v)| v);
                b.cmp(&a)
            })
            .then_with(|| {
                self.installment_charge_period
                    .cmp(&other.installment_charge_period)
            })
            .then_with(|| self.status.cmp(&other.status))
            .then_with(|| self.timestamp.cmp(&other.timestamp))
            .then_with(|| self.account_id.cmp(&other.account_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repayment(balance: i64) -> Loan {
        serde_json::from_value(serde_json::json!({
            "type": "repaymentLoan", "accountID": "A1", "coBorrower": 0,
            "originalBalance": 500000, "balance": balance, "terms": 12,
            "nominalInterestRate": 1020, "installmentCharges": 5000,
            "installmentChargePeriod": "MONTHLY", "creditLimit": 99
        }))
        .unwrap()
    }

    #[test]
    fn parses_and_roundtrips_the_wire_format() {
        let loan = repayment(320000);
        assert!(loan.validate().is_ok());
        let json = serde_json::to_value(loan.canonical()).unwrap();
        assert_eq!(json["type"], "repaymentLoan");
        assert_eq!(json["installmentChargePeriod"], "MONTHLY");
        assert_eq!(json["nominalInterestRate"], 1020);
        // A field of another type is dropped by canonical().
        assert!(json.get("creditLimit").is_none());
    }

    #[test]
    fn rules() {
        let mut l = repayment(1);
        l.co_borrower = None;
        assert_eq!(l.validate(), Err(LoanRule::MissingCoBorrower));
        l.co_borrower = Some(3);
        assert_eq!(l.validate(), Err(LoanRule::InvalidCoBorrower));
        let mut l = repayment(-1);
        assert_eq!(l.validate(), Err(LoanRule::NegativeAmount("balance")));
        l.balance = None;
        assert_eq!(l.validate(), Err(LoanRule::MissingField("balance")));
        let mut l = repayment(1);
        l.account_id = Some(" ".into());
        assert_eq!(l.validate(), Err(LoanRule::MissingAccountId));
        let mut l = repayment(1);
        l.timestamp = Some("<b>x</b>".into());
        assert_eq!(l.validate(), Err(LoanRule::BadTimestamp));
        l.timestamp = Some("2026-01-15T06:00:00.123+01:00".into());
        assert_eq!(l.validate(), Ok(()));
    }

    #[test]
    fn closed_means_every_outstanding_amount_is_zero() {
        assert!(repayment(0).is_closed());
        assert!(!repayment(1).is_closed());
        let card: Loan = serde_json::from_value(serde_json::json!({
            "type": "chargeCard", "accountID": "C", "coBorrower": 0,
            "interestBearingBalance": 0, "nonInterestBearingBalance": 0, "originalBalance": 7
        }))
        .unwrap();
        assert!(card.is_closed());
        let facility: Loan = serde_json::from_value(serde_json::json!({
            "type": "creditFacility", "accountID": "F", "coBorrower": 0,
            "creditLimit": 1, "interestBearingBalance": 0, "nonInterestBearingBalance": 0
        }))
        .unwrap();
        assert!(!facility.is_closed());
    }

    #[test]
    fn canonical_order_is_by_type_then_amount() {
        let mut loans = [repayment(10), repayment(30), repayment(20)];
        loans.sort_by(Loan::canonical_cmp);
        let balances: Vec<_> = loans.iter().map(|l| l.balance.unwrap()).collect();
        assert_eq!(balances, vec![30, 20, 10]);
    }

    #[test]
    fn other_sources_types() {
        let student: Loan = serde_json::from_value(serde_json::json!({
            "type": "studentLoan", "accountID": "S", "principal": 30000000,
            "interest": 12000, "fees": 0, "costs": 0, "balance": 5
        }))
        .unwrap();
        assert_eq!(student.loan_type.kind(), DebtKind::StudentLoan);
        assert!(student.validate().is_ok(), "no coBorrower needed");
        assert_eq!(
            student.validate_for(DebtKind::Unsecured),
            Err(LoanRule::WrongKind)
        );
        assert!(student.validate_for(DebtKind::StudentLoan).is_ok());
        assert!(!student.is_closed());
        let json = serde_json::to_value(student.canonical()).unwrap();
        assert!(json.get("balance").is_none());
        assert_eq!(json["principal"], 30000000);

        let mut case: Loan = serde_json::from_value(serde_json::json!({
            "type": "collectionCase", "accountID": "K-1", "principal": 100,
            "interest": 1, "fees": 2, "status": "paymentPlan"
        }))
        .unwrap();
        assert!(case.validate_for(DebtKind::DebtCollection).is_ok());
        assert!(!case.is_closed());
        case.status = Some(CaseStatus::Closed);
        assert!(
            case.is_closed(),
            "a closed case is closed whatever it says it owes"
        );
        case.status = None;
        assert_eq!(case.validate(), Err(LoanRule::MissingField("status")));

        // An API-DEBT-FI loan is of the unsecured kind and only that.
        assert_eq!(
            repayment(1).validate_for(DebtKind::StudentLoan),
            Err(LoanRule::WrongKind)
        );
        assert!(repayment(1).validate_for(DebtKind::Unsecured).is_ok());
    }

    #[test]
    fn register_loans_serialise_without_the_new_fields() {
        let json = serde_json::to_string(&repayment(320000).canonical()).unwrap();
        assert_eq!(
            json,
            r#"{"type":"repaymentLoan","accountID":"A1","coBorrower":0,"originalBalance":500000,"balance":320000,"terms":12,"nominalInterestRate":1020,"installmentCharges":5000,"installmentChargePeriod":"MONTHLY"}"#
        );
    }

    #[test]
    fn unknown_type_is_a_parse_error() {
        let r: Result<Loan, _> = serde_json::from_str(r#"{"type":"mortgage","coBorrower":0}"#);
        assert!(r.is_err());
    }
}
