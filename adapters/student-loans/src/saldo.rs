//! The saldo answer: the person's total debt at the student-loan lender, split
//! into the account types loan, interest, fees and costs (lån, renter, gebyrer,
//! omkostninger).
//!
//! ```json
//! {"saldoDato": "2026-11-24",
//!  "saldo": [{"kontotype": "LAAN", "belop": "312345.67"},
//!            {"kontotype": "RENTER", "belop": "1234.50"}]}
//! ```
//!
//! Amounts are decimal strings in kroner with at most two decimals, turned into
//! øre exactly (never through floating point). An account type that is not
//! listed is 0; `"saldo": []` means the person owes nothing. Anything else
//! (unknown or repeated account type, negative or malformed amount) is
//! malformed: the broker shows no half-understood saldo.

use gjeldsbro_adapter::{AdapterError, Loan, LoanType, scrub};
use serde::Deserialize;

/// The account id the broker keeps for the one student loan a person has (the
/// API answers a total, not accounts; client answers never show it).
pub const ACCOUNT_ID: &str = "saldo";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SaldoAnswer {
    saldo: Vec<Account>,
    #[serde(default)]
    saldo_dato: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Account {
    kontotype: String,
    belop: String,
}

/// Decodes a saldo answer into the canonical student loan, or `None` when the
/// person owes nothing.
pub fn parse_saldo(body: &[u8]) -> Result<Option<Loan>, AdapterError> {
    let answer: SaldoAnswer =
        serde_json::from_slice(body).map_err(|e| AdapterError::Malformed(scrub(&e.to_string())))?;
    if answer.saldo.is_empty() {
        return Ok(None);
    }
    let mut amounts: [Option<i64>; 4] = [None; 4];
    for account in &answer.saldo {
        let slot = match account.kontotype.as_str() {
            "LAAN" => 0,
            "RENTER" => 1,
            "GEBYRER" => 2,
            "OMKOSTNINGER" => 3,
            _ => {
                return Err(AdapterError::Malformed(
                    "saldo holds an unknown kontotype".into(),
                ));
            }
        };
        if amounts[slot].is_some() {
            return Err(AdapterError::Malformed(
                "saldo lists a kontotype twice".into(),
            ));
        }
        amounts[slot] = Some(ore(&account.belop).ok_or_else(|| {
            AdapterError::Malformed("belop is not a non-negative amount in kroner".into())
        })?);
    }
    let mut loan = Loan::new(
        LoanType::StudentLoan,
        Some(ACCOUNT_ID.into()),
        answer
            .saldo_dato
            .filter(|d| is_plain_date(d) && gjeldsbro_adapter::timestamp::is_valid(d)),
        None,
    );
    let [principal, interest, fees, costs] = amounts.map(|a| Some(a.unwrap_or(0)));
    loan.principal = principal;
    loan.interest = interest;
    loan.fees = fees;
    loan.costs = costs;
    Ok(Some(loan))
}

/// `"1234.5"` → 123450 øre. Digits, at most one point, at most two decimals,
/// nothing negative, nothing that overflows.
pub fn ore(text: &str) -> Option<i64> {
    let (kroner, decimals) = match text.split_once('.') {
        Some((k, d)) => (k, d),
        None => (text, ""),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(kroner) || decimals.len() > 2 || (text.contains('.') && !digits(decimals)) {
        return None;
    }
    let kroner: i64 = kroner.parse().ok()?;
    let mut fraction: i64 = if decimals.is_empty() {
        0
    } else {
        decimals.parse().ok()?
    };
    if decimals.len() == 1 {
        fraction *= 10;
    }
    kroner.checked_mul(100)?.checked_add(fraction)
}

/// `YYYY-MM-DD`, so a timestamp shown to the person is what it claims to be.
fn is_plain_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_become_ore_exactly() {
        assert_eq!(ore("0"), Some(0));
        assert_eq!(ore("312345.67"), Some(31_234_567));
        assert_eq!(ore("1234.5"), Some(123_450));
        assert_eq!(ore("0.07"), Some(7));
        for bad in [
            "",
            "-1.00",
            "1.234",
            "1,50",
            "1.",
            ".5",
            "1e3",
            " 1",
            "99999999999999999999",
        ] {
            assert_eq!(ore(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_saldo_is_split_into_its_account_types() {
        let body = br#"{"saldoDato":"2026-11-24","saldo":[
            {"kontotype":"LAAN","belop":"312345.67"},{"kontotype":"RENTER","belop":"1234.50"},
            {"kontotype":"GEBYRER","belop":"70"}]}"#;
        let loan = parse_saldo(body).unwrap().unwrap();
        assert_eq!(loan.loan_type, LoanType::StudentLoan);
        assert_eq!(loan.principal, Some(31_234_567));
        assert_eq!(loan.interest, Some(123_450));
        assert_eq!(loan.fees, Some(7_000));
        assert_eq!(loan.costs, Some(0), "an unlisted account type is 0");
        assert_eq!(loan.timestamp.as_deref(), Some("2026-11-24"));
        assert!(loan.validate().is_ok());
    }

    #[test]
    fn an_empty_saldo_is_no_loan() {
        assert_eq!(parse_saldo(br#"{"saldo":[]}"#).unwrap(), None);
    }

    #[test]
    fn malformed_answers_are_refused() {
        for body in [
            &br#"<html>"#[..],
            br#"{"saldo":[{"kontotype":"LAAN","belop":"-1.00"}]}"#,
            br#"{"saldo":[{"kontotype":"LAAN","belop":1.5}]}"#,
            br#"{"saldo":[{"kontotype":"BOLIG","belop":"1"}]}"#,
            br#"{"saldo":[{"kontotype":"LAAN","belop":"1"},{"kontotype":"LAAN","belop":"2"}]}"#,
            br#"{"saldoDato":"2026-11-24"}"#,
        ] {
            assert!(
                matches!(parse_saldo(body), Err(AdapterError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn a_strange_date_is_dropped_not_shown() {
        let body = br#"{"saldoDato":"<script>","saldo":[{"kontotype":"LAAN","belop":"1"}]}"#;
        assert_eq!(parse_saldo(body).unwrap().unwrap().timestamp, None);
        let body = br#"{"saldoDato":"2026-02-30","saldo":[{"kontotype":"LAAN","belop":"1"}]}"#;
        assert_eq!(
            parse_saldo(body).unwrap().unwrap().timestamp,
            None,
            "no such day"
        );
    }
}
