//! Organisation numbers (Brønnøysund's nine digits).

/// Whether `s` is written as an organisation number: exactly nine digits.
pub fn is_org_no(s: &str) -> bool {
    s.len() == 9 && s.bytes().all(|b| b.is_ascii_digit())
}
