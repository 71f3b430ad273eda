//! Norwegian national ids (fødselsnummer, d-nummer, h-nummer, synthetic Tenor ids).
//!
//! A [`NationalId`] is parsed and validated once, at the edge, and then travels as a
//! `u64`. Its `Debug` and `Display` never print the digits, so a stray
//! `tracing::info!(?id)` cannot leak one; the digits come out only through
//! [`NationalId::expose`] and `Serialize`, which the wire encoders use on purpose.

use std::fmt;

/// Which ids a parser accepts beyond the real ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdPolicy {
    /// Accept Tenor-style synthetic ids (month + 80). Dev, demo and tests only.
    pub accept_synthetic: bool,
}

impl IdPolicy {
    pub const STRICT: IdPolicy = IdPolicy {
        accept_synthetic: false,
    };
    pub const SYNTHETIC_OK: IdPolicy = IdPolicy {
        accept_synthetic: true,
    };
}

/// What kind of number a valid id is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Fodselsnummer,
    DNumber,
    HNumber,
}

/// Why a string is not an acceptable national id. The messages never repeat the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NinError {
    #[error("a national id has exactly 11 digits")]
    Format,
    #[error("the national id holds a date that does not exist")]
    Date,
    #[error("the national id's control digits do not match")]
    Checksum,
    #[error("synthetic test ids are not accepted here")]
    SyntheticNotAllowed,
}

/// A validated national id. Copy, 8 bytes, never printed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NationalId(u64);

const K1_WEIGHTS: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
const K2_WEIGHTS: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

impl NationalId {
    /// Parses and validates an 11-digit id under `policy`.
    pub fn parse(s: &str, policy: IdPolicy) -> Result<Self, NinError> {
        let bytes = s.as_bytes();
        if bytes.len() != 11 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(NinError::Format);
        }
        let mut d = [0u32; 11];
        for (slot, b) in d.iter_mut().zip(bytes) {
            *slot = u32::from(b - b'0');
        }
        check_control_digits(&d)?;
        let (_, synthetic) = check_date(&d)?;
        if synthetic && !policy.accept_synthetic {
            return Err(NinError::SyntheticNotAllowed);
        }
        let value = d.iter().fold(0u64, |acc, &x| acc * 10 + u64::from(x));
        Ok(NationalId(value))
    }

    /// The id as a number, for compact keys (index, store). Leading zeros are implied.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds an id from a key the broker stored itself after validating it.
    /// Returns `None` for a number that cannot be an 11-digit id.
    pub fn from_stored(value: u64) -> Option<Self> {
        (value > 0 && value < 100_000_000_000).then_some(NationalId(value))
    }

    /// The 11 digits. Only wire encoders and lender calls use this; never log it.
    pub fn expose(&self) -> String {
        format!("{:011}", self.0)
    }

    /// The kind of number (d-numbers add 4 to the first digit, h-numbers 40 to the month).
    pub fn kind(&self) -> IdKind {
        let day = (self.0 / 1_000_000_000) as u32;
        let month = ((self.0 / 10_000_000) % 100) as u32;
        let month = if month > 80 { month - 80 } else { month };
        if day > 40 {
            IdKind::DNumber
        } else if month > 40 {
            IdKind::HNumber
        } else {
            IdKind::Fodselsnummer
        }
    }

    /// True for a Tenor-style synthetic id (month + 80).
    pub fn is_synthetic(&self) -> bool {
        ((self.0 / 10_000_000) % 100) > 80
    }
}

impl fmt::Debug for NationalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NationalId(***********)")
    }
}

impl fmt::Display for NationalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***********")
    }
}

impl serde::Serialize for NationalId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expose())
    }
}

/// The first control digit may, since Skatteetaten's 2032 rule, make the weighted sum
/// (including k1 with weight 1) leave any remainder 0-3 modulo 11; the old rule is the
/// remainder-0 case, so one check accepts both generations. k2 is unchanged.
fn check_control_digits(d: &[u32; 11]) -> Result<(), NinError> {
    let s1: u32 = K1_WEIGHTS.iter().zip(d).map(|(w, x)| w * x).sum::<u32>() + d[9];
    if s1 % 11 > 3 {
        return Err(NinError::Checksum);
    }
    let s2: u32 = K2_WEIGHTS.iter().zip(d).map(|(w, x)| w * x).sum();
    let k2 = match 11 - s2 % 11 {
        11 => 0,
        10 => return Err(NinError::Checksum),
        k => k,
    };
    if k2 != d[10] {
        return Err(NinError::Checksum);
    }
    Ok(())
}

/// Checks that the date exists. Returns the kind and whether the id is synthetic.
fn check_date(d: &[u32; 11]) -> Result<(IdKind, bool), NinError> {
    let mut day = d[0] * 10 + d[1];
    let mut month = d[2] * 10 + d[3];
    let yy = d[4] * 10 + d[5];
    let individual = d[6] * 100 + d[7] * 10 + d[8];
    let mut kind = IdKind::Fodselsnummer;
    let mut synthetic = false;
    if day > 40 {
        day -= 40;
        kind = IdKind::DNumber;
    }
    if month > 80 {
        month -= 80;
        synthetic = true;
    }
    if month > 40 {
        month -= 40;
        if kind == IdKind::Fodselsnummer {
            kind = IdKind::HNumber;
        }
    }
    let year = century(individual, yy).ok_or(NinError::Date)? + yy;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(month, year) {
        return Err(NinError::Date);
    }
    Ok((kind, synthetic))
}

/// The century from the individual number, per Skatteetaten's allocation.
/// Combinations never issued have no century.
fn century(individual: u32, yy: u32) -> Option<u32> {
    match individual {
        0..=499 => Some(1900),
        500..=749 if yy >= 54 => Some(1800),
        500..=999 if yy <= 39 => Some(2000),
        900..=999 if yy >= 40 => Some(1900),
        _ => None,
    }
}

fn days_in_month(month: u32, year: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}

/// Builds a valid id (old control-digit rule) from a date and individual number;
/// `d_number` adds 4 to the first digit, `synthetic` 80 to the month. Returns `None`
/// when this individual number yields no valid control digit (about 1 in 11 do not).
/// For generators and tests; the broker itself only parses.
pub fn make_id(
    day: u32,
    month: u32,
    yy: u32,
    individual: u32,
    d_number: bool,
    synthetic: bool,
) -> Option<String> {
    let dd = if d_number { day + 40 } else { day };
    let mm = if synthetic { month + 80 } else { month };
    let base = format!("{dd:02}{mm:02}{yy:02}{individual:03}");
    let digits: Vec<u32> = base.bytes().map(|b| u32::from(b - b'0')).collect();
    let s1: u32 = K1_WEIGHTS.iter().zip(&digits).map(|(w, x)| w * x).sum();
    let k1 = match 11 - s1 % 11 {
        11 => 0,
        10 => return None,
        k => k,
    };
    let mut with_k1 = digits;
    with_k1.push(k1);
    let s2: u32 = K2_WEIGHTS.iter().zip(&with_k1).map(|(w, x)| w * x).sum();
    let k2 = match 11 - s2 % 11 {
        11 => 0,
        10 => return None,
        k => k,
    };
    Some(format!("{base}{k1}{k2}"))
}

mod hasher;
pub use hasher::{BadHashKey, NinHasher};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SYN: IdPolicy = IdPolicy::SYNTHETIC_OK;
    const STRICT: IdPolicy = IdPolicy::STRICT;

    /// Gives a 2032-rule variant of a valid id: k1 shifted so the remainder is `r`,
    /// with k2 recomputed. `None` when that k1 or k2 would be 10.
    fn with_new_k1(id: &str, r: u32) -> Option<String> {
        let d: Vec<u32> = id.bytes().map(|b| u32::from(b - b'0')).collect();
        let s: u32 = K1_WEIGHTS.iter().zip(&d).map(|(w, x)| w * x).sum();
        let k1 = (11 + r - s % 11) % 11;
        if k1 == 10 {
            return None;
        }
        let mut v: Vec<u32> = d[..9].to_vec();
        v.push(k1);
        let s2: u32 = K2_WEIGHTS.iter().zip(&v).map(|(w, x)| w * x).sum();
        let k2 = match 11 - s2 % 11 {
            11 => 0,
            10 => return None,
            k => k,
        };
        v.push(k2);
        Some(v.iter().map(|x| char::from(b'0' + *x as u8)).collect())
    }

    #[test]
    fn table_of_cases() {
        let real_fnr = make_id(1, 1, 70, 123, false, false)
            .or_else(|| make_id(1, 1, 70, 124, false, false))
            .unwrap();
        let d_number = make_id(15, 6, 85, 234, true, false)
            .or_else(|| make_id(15, 6, 85, 235, true, false))
            .unwrap();
        let synthetic = make_id(3, 4, 91, 456, false, true)
            .or_else(|| make_id(3, 4, 91, 457, false, true))
            .unwrap();
        let h_number = {
            let mut found = None;
            for i in 100..200 {
                if let Some(id) = make_id(12, 45, 80, i, false, false) {
                    found = Some(id);
                    break;
                }
            }
            found.unwrap()
        };
        let cases: Vec<(String, IdPolicy, Result<IdKind, NinError>)> = vec![
            (real_fnr.clone(), STRICT, Ok(IdKind::Fodselsnummer)),
            (d_number.clone(), STRICT, Ok(IdKind::DNumber)),
            (h_number.clone(), STRICT, Ok(IdKind::HNumber)),
            (synthetic.clone(), SYN, Ok(IdKind::Fodselsnummer)),
            (
                synthetic.clone(),
                STRICT,
                Err(NinError::SyntheticNotAllowed),
            ),
            ("1234567890".into(), SYN, Err(NinError::Format)),
            ("123456789012".into(), SYN, Err(NinError::Format)),
            ("1234567890a".into(), SYN, Err(NinError::Format)),
            (" 1234567890".into(), SYN, Err(NinError::Format)),
            ("".into(), SYN, Err(NinError::Format)),
            ("١٢٣٤٥٦٧٨٩٠١".into(), SYN, Err(NinError::Format)),
            ("00000000000".into(), SYN, Err(NinError::Date)),
        ];
        for (id, policy, expected) in cases {
            let got = NationalId::parse(&id, policy).map(|n| n.kind());
            assert_eq!(got, expected, "case {id:?}");
        }
    }

    #[test]
    fn impossible_dates_are_rejected_even_with_good_checksums() {
        // 31 April, 30 February, 29 February 1900 (not a leap year) and month 13.
        for (day, month, yy, ind) in [
            (31, 4, 85, 100),
            (30, 2, 85, 100),
            (29, 2, 0, 100),
            (1, 13, 85, 100),
        ] {
            for i in ind..ind + 20 {
                if let Some(id) = make_id(day, month, yy, i, false, false) {
                    assert_eq!(
                        NationalId::parse(&id, SYN),
                        Err(NinError::Date),
                        "{day}.{month}.{yy}"
                    );
                }
            }
        }
        // 29 February 2000 exists (individual number 500-999 with yy 00 is 2000).
        let leap = (500..600)
            .find_map(|i| make_id(29, 2, 0, i, false, false))
            .unwrap();
        assert!(NationalId::parse(&leap, STRICT).is_ok());
    }

    #[test]
    fn numbers_under_the_2032_rule_are_accepted() {
        let mut checked = 0;
        for i in 100..160 {
            let Some(old) = make_id(7, 8, 95, i, false, false) else {
                continue;
            };
            for r in 1..=3 {
                if let Some(new) = with_new_k1(&old, r) {
                    assert!(NationalId::parse(&new, STRICT).is_ok(), "2032 rule r={r}");
                    checked += 1;
                }
            }
            // A remainder of 4 is outside both generations.
            if let Some(bad) = with_new_k1(&old, 4) {
                assert_eq!(NationalId::parse(&bad, STRICT), Err(NinError::Checksum));
            }
        }
        assert!(checked > 50);
    }

    #[test]
    fn never_printed() {
        let id = NationalId::parse(&make_id(1, 1, 70, 123, false, false).unwrap(), STRICT).unwrap();
        let digits = id.expose();
        assert!(!format!("{id:?}").contains(&digits));
        assert!(!format!("{id}").contains(&digits[..6]));
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("\"{digits}\""));
        assert_eq!(NationalId::from_stored(id.as_u64()), Some(id));
    }

    fn valid_id() -> impl Strategy<Value = String> {
        (
            1u32..=28,
            1u32..=12,
            0u32..=99,
            0u32..=499,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_filter_map("no control digit", |(d, m, y, i, dn, syn)| {
                make_id(d, m, y, i, dn, syn)
            })
    }

    proptest! {
        #[test]
        fn generated_ids_are_valid(id in valid_id()) {
            prop_assert!(NationalId::parse(&id, SYN).is_ok());
        }

        #[test]
        fn any_single_digit_change_is_rejected(id in valid_id(), pos in 0usize..11, delta in 1u8..10) {
            let mut b = id.into_bytes();
            b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
            let changed = String::from_utf8(b).unwrap();
            prop_assert!(NationalId::parse(&changed, SYN).is_err());
        }

        #[test]
        fn any_adjacent_swap_is_rejected(id in valid_id(), pos in 0usize..10) {
            let mut b = id.into_bytes();
            prop_assume!(b[pos] != b[pos + 1]);
            b.swap(pos, pos + 1);
            let swapped = String::from_utf8(b).unwrap();
            prop_assert!(NationalId::parse(&swapped, SYN).is_err());
        }
    }
}
