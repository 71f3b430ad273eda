//! Wall-clock helpers: RFC 3339 UTC timestamps as the wire formats use them.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, as RFC 3339 UTC with fractional seconds (`2026-11-24T18:26:38.123456Z`).
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// Now, as RFC 3339 UTC to the second (`2026-11-24T18:26:38Z`).
pub fn now_utc_seconds() -> String {
    format_utc_seconds(OffsetDateTime::now_utc())
}

/// `t` as RFC 3339 to the second, the fraction dropped (`2026-11-24T18:26:38Z`
/// for a UTC time).
pub fn format_utc_seconds(t: OffsetDateTime) -> String {
    format_rfc3339(t.replace_nanosecond(0).unwrap_or(t))
}

pub fn format_rfc3339(t: OffsetDateTime) -> String {
    // Formatting a valid UTC date-time with Rfc3339 cannot fail for years 0-9999.
    t.format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

/// RFC 3339 UTC with exactly six fractional digits (`2026-11-24T18:26:38.123456Z`):
/// one width for every timestamp, so stored text sorts and compares as time.
pub fn format_fixed(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Unix seconds of a stored RFC 3339 time; one that does not parse reads as the
/// epoch, i.e. as very old, which is the safe side for ages and staleness.
pub fn unix_seconds_or_epoch(stored: &str) -> i64 {
    parse_rfc3339(stored).map_or(0, OffsetDateTime::unix_timestamp)
}

/// Parses an RFC 3339 timestamp (as stored or sent).
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape() {
        let s = super::now_rfc3339();
        assert!(s.ends_with('Z') && s.contains('T'), "{s}");
        let s = super::now_utc_seconds();
        assert_eq!(s.len(), "2026-11-24T18:26:38Z".len(), "{s}");
    }

    #[test]
    fn fixed_width_round_trips_and_sorts() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.000007 UTC);
        let s = super::format_fixed(t);
        assert_eq!(s, "2026-01-02T03:04:05.000007Z");
        assert_eq!(super::parse_rfc3339(&s), Some(t));
        let later = super::format_fixed(t + time::Duration::seconds(1));
        assert!(later > s);
    }
}
