//! What a copy letter says, in Norwegian (bokmål), built from the disclosure
//! records it covers: one section per disclosure with the recipient, the time,
//! `referenceID`, `messageToCustomer`, and per loan type what was disclosed.

use std::collections::HashMap;

use gjeldsbro_adapter::{ChargePeriod, Loan, LoanType};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Deserialize;

use super::LettersError;
use crate::population::Resident;
use crate::store::StoredDisclosure;

/// Names the letter shows for organisation numbers and lender ids.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// Client organisation number → name.
    pub clients: HashMap<String, String>,
    /// Lender id → creditor name.
    pub lenders: HashMap<String, String>,
}

impl Names {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Names {
            clients: config
                .clients
                .iter()
                .map(|c| (c.org_no.clone(), c.name.clone()))
                .collect(),
            lenders: config
                .lenders
                .iter()
                .map(|l| (l.id.clone(), l.name.clone()))
                .collect(),
        }
    }

    fn organisation(&self, org_no: &str) -> String {
        match self.clients.get(org_no) {
            Some(name) => format!("{name} (org.nr. {org_no})"),
            None => format!("org.nr. {org_no}"),
        }
    }
}

/// One letter's text, ready to lay out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterContent {
    pub resident: Resident,
    /// The letter's date, e.g. `2. mars 2026`.
    pub letter_date: String,
    /// The day whose disclosures it covers, e.g. `1. mars 2026`.
    pub day: String,
    pub letter_id: String,
    pub entries: Vec<Entry>,
}

/// One disclosure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Who received it: name and organisation number.
    pub recipient: String,
    /// Oslo time, e.g. `1. mars 2026 kl. 11.04`.
    pub time: String,
    pub reference_id: String,
    pub message: Option<String>,
    /// Per loan type, in the register's order; empty when no debt was disclosed.
    pub groups: Vec<LoanGroup>,
    /// Lenders that did not answer (nothing of theirs was disclosed).
    pub missing: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoanGroup {
    /// `Nedbetalingslån`, `Rammekreditt` or `Faktureringskort`.
    pub title: &'static str,
    pub loans: Vec<LoanLines>,
}

/// One loan: its creditor (shown to the person only) and its disclosed facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoanLines {
    pub creditor: String,
    pub facts: Vec<String>,
}

/// The `disclosed` JSON of a record (see `disclose::disclosed_summary`).
#[derive(Deserialize)]
struct Disclosed {
    #[serde(default)]
    loans: Vec<DisclosedLoan>,
    #[serde(default)]
    missing: u64,
}

#[derive(Deserialize)]
struct DisclosedLoan {
    lender: String,
    loan: Loan,
}

const MONTHS: [&str; 12] = [
    "januar",
    "februar",
    "mars",
    "april",
    "mai",
    "juni",
    "juli",
    "august",
    "september",
    "oktober",
    "november",
    "desember",
];

pub(crate) fn oslo() -> TimeZone {
    TimeZone::get("Europe/Oslo").unwrap_or(TimeZone::UTC)
}

/// `2026-03-01` → `1. mars 2026`.
pub fn norwegian_date(d: jiff::civil::Date) -> String {
    let month = MONTHS
        .get(usize::try_from(d.month() - 1).unwrap_or(0))
        .copied()
        .unwrap_or("");
    format!("{}. {month} {}", d.day(), d.year())
}

/// An RFC 3339 instant → `1. mars 2026 kl. 11.04` in Oslo time.
fn norwegian_time(at: &str) -> Result<String, LettersError> {
    let ts: Timestamp = at
        .parse()
        .map_err(|_| LettersError::Corrupt("a disclosure's time is not RFC 3339".into()))?;
    let local = ts.to_zoned_datetime(oslo());
    Ok(format!(
        "{} kl. {:02}.{:02}",
        norwegian_date(local.date()),
        local.hour(),
        local.minute()
    ))
}

/// NOK × 100 → `85 000,00 kr` (no-break spaces, so a line never splits an amount).
pub fn kroner(ore: i64) -> String {
    let sign = if ore < 0 { "-" } else { "" };
    let ore = ore.unsigned_abs();
    let whole = (ore / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push('\u{a0}');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped},{:02}\u{a0}kr", ore % 100)
}

/// Rate × 100 → `10,20 %`.
fn percent(rate: i64) -> String {
    format!("{},{:02}\u{a0}%", rate / 100, rate.unsigned_abs() % 100)
}

fn period(p: Option<ChargePeriod>) -> &'static str {
    match p {
        Some(ChargePeriod::Monthly) => " per måned",
        Some(ChargePeriod::Quarterly) => " per kvartal",
        Some(ChargePeriod::HalfYearly) => " per halvår",
        Some(ChargePeriod::Yearly) => " per år",
        None => "",
    }
}

fn co_borrower(c: Option<i64>) -> Option<String> {
    let text = match c? {
        1 => "du er medlåntaker",
        2 => "lånet har en medlåntaker",
        _ => "nei",
    };
    Some(format!("Medlåntaker: {text}"))
}

fn facts(loan: &Loan) -> Vec<String> {
    let mut out = Vec::new();
    let mut amount = |label: &str, v: Option<i64>| {
        if let Some(v) = v {
            out.push(format!("{label}: {}", kroner(v)));
        }
    };
    match loan.loan_type {
        LoanType::RepaymentLoan => {
            amount("Opprinnelig lånebeløp", loan.original_balance);
            amount("Saldo", loan.balance);
        }
        LoanType::CreditFacility => {
            amount("Kredittramme", loan.credit_limit);
            amount("Rentebærende saldo", loan.interest_bearing_balance);
            amount("Ikke-rentebærende saldo", loan.non_interest_bearing_balance);
        }
        LoanType::ChargeCard => {
            amount("Rentebærende saldo", loan.interest_bearing_balance);
            amount("Ikke-rentebærende saldo", loan.non_interest_bearing_balance);
        }
        // Searches never disclose these; a consent that names them owes no
        // letter. Listed so a record that holds one still reads right.
        LoanType::StudentLoan => {
            amount("Lån", loan.principal);
            amount("Renter", loan.interest);
            amount("Gebyrer", loan.fees);
            amount("Omkostninger", loan.costs);
        }
        LoanType::CollectionCase => {
            amount("Hovedstol", loan.principal);
            amount("Renter", loan.interest);
            amount("Gebyrer", loan.fees);
        }
    }
    if let Some(t) = loan.terms {
        out.push(format!("Gjenstående nedbetalingstid: {t} måneder"));
    }
    if let Some(r) = loan.nominal_interest_rate {
        out.push(format!("Nominell rente: {}", percent(r)));
    }
    if let Some(c) = loan.installment_charges {
        out.push(format!(
            "Terminomkostninger: {}{}",
            kroner(c),
            period(loan.installment_charge_period)
        ));
    }
    out.extend(co_borrower(loan.co_borrower));
    out
}

fn type_title(t: LoanType) -> &'static str {
    match t {
        LoanType::RepaymentLoan => "Nedbetalingslån",
        LoanType::CreditFacility => "Rammekreditt",
        LoanType::ChargeCard => "Faktureringskort",
        LoanType::StudentLoan => "Studielån",
        LoanType::CollectionCase => "Inkassosak",
    }
}

fn entry(d: &StoredDisclosure, names: &Names) -> Result<Entry, LettersError> {
    let disclosed: Disclosed = serde_json::from_str(&d.record.disclosed)
        .map_err(|_| LettersError::Corrupt(format!("record {}: unreadable disclosure", d.seq)))?;
    let mut groups: Vec<LoanGroup> = Vec::new();
    for t in [
        LoanType::RepaymentLoan,
        LoanType::CreditFacility,
        LoanType::ChargeCard,
        LoanType::StudentLoan,
        LoanType::CollectionCase,
    ] {
        let loans: Vec<LoanLines> = disclosed
            .loans
            .iter()
            .filter(|l| l.loan.loan_type == t)
            .map(|l| LoanLines {
                creditor: names
                    .lenders
                    .get(&l.lender)
                    .cloned()
                    .unwrap_or_else(|| l.lender.clone()),
                facts: facts(&l.loan),
            })
            .collect();
        if !loans.is_empty() {
            groups.push(LoanGroup {
                title: type_title(t),
                loans,
            });
        }
    }
    Ok(Entry {
        recipient: names.organisation(&d.record.recipient_org),
        time: norwegian_time(&d.record.at)?,
        reference_id: d.record.reference_id.clone(),
        message: d.record.message.clone(),
        groups,
        missing: disclosed.missing,
    })
}

/// The letter for one person's disclosures (in seq order).
pub fn letter(
    letter_id: &str,
    resident: Resident,
    day: jiff::civil::Date,
    created_at: &str,
    disclosures: &[StoredDisclosure],
    names: &Names,
) -> Result<LetterContent, LettersError> {
    let created: Timestamp = created_at
        .parse()
        .map_err(|_| LettersError::Corrupt("a letter's time is not RFC 3339".into()))?;
    Ok(LetterContent {
        resident,
        letter_date: norwegian_date(created.to_zoned_datetime(oslo()).date()),
        day: norwegian_date(day),
        letter_id: letter_id.to_owned(),
        entries: disclosures
            .iter()
            .map(|d| entry(d, names))
            .collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norwegian_formats() {
        assert_eq!(kroner(8_500_000), "85\u{a0}000,00\u{a0}kr");
        assert_eq!(kroner(5), "0,05\u{a0}kr");
        assert_eq!(kroner(123_456_789), "1\u{a0}234\u{a0}567,89\u{a0}kr");
        assert_eq!(percent(1020), "10,20\u{a0}%");
        assert_eq!(
            norwegian_date(jiff::civil::date(2026, 3, 1)),
            "1. mars 2026"
        );
        // 23:30 UTC on 28 February is 00:30 on 1 March in Oslo (winter time).
        assert_eq!(
            norwegian_time("2026-02-28T23:30:00.123Z").unwrap(),
            "1. mars 2026 kl. 00.30"
        );
    }
}
