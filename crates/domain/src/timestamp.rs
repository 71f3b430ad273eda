//! Lender timestamps: checked when they arrive, rewritten to one form when they
//! leave.
//!
//! A loan's `timestamp` says when the lender's data was current. Lenders write
//! it as their systems do (`...05:00:00Z`, `...06:00:00.123+01:00`), and that
//! form is a fingerprint: in a redacted answer it would tell which lender a loan
//! came from. So a timestamp must be RFC 3339 to be accepted at all (a
//! `date-time`, or a `full-date`, which the other sources' saldo dates are, read
//! as midnight UTC), and every answer writes it in one of two fixed forms,
//! [`Precision::Day`] for answers without creditor names and
//! [`Precision::Second`] for the others.

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, UtcOffset};

/// How much of a timestamp an answer shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// The UTC date at midnight, `YYYY-MM-DDT00:00:00Z`: what a redacted
    /// (credit-assessment) answer shows, so neither a lender's precision, its
    /// offset, nor its delivery time of day tells lenders apart.
    Day,
    /// UTC to the second, `YYYY-MM-DDTHH:MM:SSZ`: answers that name creditors.
    Second,
}

/// Parses a lender's timestamp: an RFC 3339 `date-time` (any offset, any
/// fraction) or `full-date` (midnight UTC). `None` for anything else, and for
/// an instant whose UTC year falls outside 0001-9999 (it could not be written
/// back in the fixed forms).
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    // RFC 3339 timestamps are short; a long one is not worth a parser's time.
    if s.len() > 64 {
        return None;
    }
    let t = if s.len() == 10 {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        Date::parse(s, &format).ok()?.midnight().assume_utc()
    } else {
        OffsetDateTime::parse(s, &Rfc3339).ok()?
    };
    let utc = t.checked_to_offset(UtcOffset::UTC)?;
    (1..=9999).contains(&utc.year()).then_some(utc)
}

/// Whether `s` is a timestamp [`parse`] accepts.
pub fn is_valid(s: &str) -> bool {
    parse(s).is_some()
}

/// `s` rewritten in the fixed form of `precision`; `None` when it is not a
/// valid timestamp (the caller then shows none rather than the lender's text).
pub fn normalise(s: &str, precision: Precision) -> Option<String> {
    let t = parse(s)?;
    Some(match precision {
        Precision::Day => format!(
            "{:04}-{:02}-{:02}T00:00:00Z",
            t.year(),
            u8::from(t.month()),
            t.day()
        ),
        Precision::Second => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_date_times_and_dates_are_accepted() {
        for ok in [
            "2026-01-15T05:00:00Z",
            "2026-01-15T06:00:00.123+01:00",
            "2026-01-15T05:00:00.123456789Z",
            "2026-01-14T23:00:00-06:00",
            "2026-11-24",
            // RFC 3339 lets applications use a space for the T (its 5.6 note).
            "2026-01-15 05:00:00Z",
        ] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "<b>x</b>",
            "2026-01-15T05:00:00",
            "2026-13-01T00:00:00Z",
            "2026-02-30",
            "15.01.2026",
            "1768453200",
            "2026-01-15T05:00:00Z<script>",
            "0000-01-01T00:30:00+01:00",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn every_form_of_one_instant_comes_out_the_same() {
        let forms = [
            "2026-01-15T05:00:00Z",
            "2026-01-15T06:00:00.000+01:00",
            "2026-01-15T05:00:00.999999999Z",
            "2026-01-14T23:00:00.5-06:00",
        ];
        for f in forms {
            assert_eq!(
                normalise(f, Precision::Day).as_deref(),
                Some("2026-01-15T00:00:00Z"),
                "{f}"
            );
        }
        assert_eq!(
            normalise("2026-01-15T06:00:00.123+01:00", Precision::Second).as_deref(),
            Some("2026-01-15T05:00:00Z")
        );
        assert_eq!(
            normalise("2026-11-24", Precision::Second).as_deref(),
            Some("2026-11-24T00:00:00Z")
        );
        // An offset can move the date: the UTC date is the one shown.
        assert_eq!(
            normalise("2026-01-15T00:30:00+01:00", Precision::Day).as_deref(),
            Some("2026-01-14T00:00:00Z")
        );
        assert_eq!(normalise("<b>x</b>", Precision::Day), None);
    }
}
