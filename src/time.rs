//! Wall-clock helpers: RFC 3339 UTC timestamps as the wire formats use them.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, as RFC 3339 UTC with fractional seconds (`2026-11-24T18:26:38.123456Z`).
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

pub fn format_rfc3339(t: OffsetDateTime) -> String {
    // Formatting a valid UTC date-time with Rfc3339 cannot fail for years 0-9999.
    t.format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn shape() {
        let s = super::now_rfc3339();
        assert!(s.ends_with('Z') && s.contains('T'), "{s}");
    }
}
