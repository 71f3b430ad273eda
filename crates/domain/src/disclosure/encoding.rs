//! The bytes of a disclosure record that the chain's hash covers.
//!
//! This is the log's on-disk meaning: change a byte here and every existing
//! log fails `audit verify`. So it is written out field by field, in a fixed
//! order, by code that does nothing else, and pinned by golden vectors and by
//! logs written before it existed (`tests/it/chain_v1.rs`). A new layout is a
//! new [`ChainVersion`], never an edit of an old one.
//!
//! Version 1 is the JSON object serde_json made of the record struct before
//! this module existed: keys in declaration order, no whitespace, strings
//! escaped as serde_json escapes them (`"` `\` and control characters only;
//! everything else, `/` and non-ASCII included, as raw UTF-8), absent options
//! as `null`, the id number as a bare integer.

use sha2::{Digest, Sha256};

use super::record::DisclosureRecord;

/// A layout of the hashed bytes. Every log written so far is version 1, and
/// no row says which version wrote it: before a version 2 becomes
/// [`ChainVersion::CURRENT`], the log needs a version per record (a column
/// defaulting to 1) that appends write and the verifier reads, or every
/// existing log would be checked against the new layout and fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainVersion {
    V1,
}

impl ChainVersion {
    /// The version new records are written with.
    pub const CURRENT: ChainVersion = ChainVersion::V1;

    /// The record's hashed bytes in this version.
    pub fn encode(self, record: &DisclosureRecord) -> Vec<u8> {
        match self {
            ChainVersion::V1 => encode_v1(record),
        }
    }

    /// SHA-256 over the previous hash, a newline and the record's bytes, hex.
    pub fn hash(self, prev_hash: &str, record: &DisclosureRecord) -> String {
        let mut h = Sha256::new();
        h.update(prev_hash.as_bytes());
        h.update(b"\n");
        h.update(self.encode(record));
        hex::encode(h.finalize())
    }
}

/// Version 1: `{"query_id":…,"at":…,"recipient_org":…,"on_behalf_of":…,
/// "purpose":…,"reference_id":…,"nin":…,"disclosed":…,"letter_owed_by":…,
/// "message":…}`.
pub fn encode_v1(r: &DisclosureRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + r.disclosed.len());
    out.push(b'{');
    field(&mut out, "query_id", true);
    string(&mut out, &r.query_id);
    field(&mut out, "at", false);
    string(&mut out, &r.at);
    field(&mut out, "recipient_org", false);
    string(&mut out, &r.recipient_org);
    field(&mut out, "on_behalf_of", false);
    optional(&mut out, r.on_behalf_of.as_deref());
    field(&mut out, "purpose", false);
    string(&mut out, &r.purpose);
    field(&mut out, "reference_id", false);
    string(&mut out, &r.reference_id);
    field(&mut out, "nin", false);
    out.extend_from_slice(r.nin.to_string().as_bytes());
    field(&mut out, "disclosed", false);
    string(&mut out, &r.disclosed);
    field(&mut out, "letter_owed_by", false);
    string(&mut out, &r.letter_owed_by);
    field(&mut out, "message", false);
    optional(&mut out, r.message.as_deref());
    out.push(b'}');
    out
}

/// `"key":`, after a comma unless it is the first.
fn field(out: &mut Vec<u8>, key: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    string(out, key);
    out.push(b':');
}

fn optional(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(v) => string(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string as serde_json 1 writes it: the two-character escapes for
/// `"`, `\`, backspace, form feed, newline, carriage return and tab; `\u00xx`
/// (lowercase hex) for the other control characters below 0x20; every other
/// character as its UTF-8 bytes.
fn string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;
    use crate::disclosure::record::GENESIS;

    fn rec() -> DisclosureRecord {
        DisclosureRecord {
            query_id: "q-1".into(),
            at: "2026-03-01T10:15:30.123456789Z".into(),
            recipient_org: "910000001".into(),
            on_behalf_of: None,
            purpose: "search".into(),
            reference_id: "sak-1".into(),
            nin: 18_190_400_101,
            disclosed: r#"{"loans":[],"missing":0}"#.into(),
            letter_owed_by: "broker".into(),
            message: None,
        }
    }

    /// Golden vectors: the exact bytes and hashes of version 1. These strings
    /// are the format; if one fails, the change breaks every existing log.
    #[test]
    fn version_1_bytes_and_hashes_are_pinned() {
        let plain = rec();
        assert_eq!(
            String::from_utf8(encode_v1(&plain)).expect("utf-8"),
            r#"{"query_id":"q-1","at":"2026-03-01T10:15:30.123456789Z","recipient_org":"910000001","on_behalf_of":null,"purpose":"search","reference_id":"sak-1","nin":18190400101,"disclosed":"{\"loans\":[],\"missing\":0}","letter_owed_by":"broker","message":null}"#
        );
        assert_eq!(
            ChainVersion::V1.hash(GENESIS, &plain),
            "ed50e73315c9bdc5b1e9bf8201dfe064df5fcf7d41b3918d890b7e38b6ac85ca"
        );

        let odd = DisclosureRecord {
            on_behalf_of: Some("910000002".into()),
            message: Some(
                "Søknad «nr» 1\n\t\"q\" \\ \u{1}\u{1f}\u{7f} </x> & 🙂\u{8}\u{c}\r".into(),
            ),
            ..rec()
        };
        assert_eq!(
            String::from_utf8(encode_v1(&odd)).expect("utf-8"),
            "{\"query_id\":\"q-1\",\"at\":\"2026-03-01T10:15:30.123456789Z\",\"recipient_org\":\"910000001\",\
             \"on_behalf_of\":\"910000002\",\"purpose\":\"search\",\"reference_id\":\"sak-1\",\"nin\":18190400101,\
             \"disclosed\":\"{\\\"loans\\\":[],\\\"missing\\\":0}\",\"letter_owed_by\":\"broker\",\
             \"message\":\"Søknad «nr» 1\\n\\t\\\"q\\\" \\\\ \\u0001\\u001f\u{7f} </x> & 🙂\\b\\f\\r\"}"
        );
        assert_eq!(
            ChainVersion::V1.hash(GENESIS, &odd),
            "bcdeb595a7707ff75721af75b9f1fd942af5e49d3cdb3b90a77959fc2e90fd37"
        );
    }

    /// The struct as it was derived before this module: the reference the
    /// explicit encoding must equal for every record.
    #[derive(Serialize)]
    struct AsDerived<'a> {
        query_id: &'a str,
        at: &'a str,
        recipient_org: &'a str,
        on_behalf_of: Option<&'a str>,
        purpose: &'a str,
        reference_id: &'a str,
        nin: u64,
        disclosed: &'a str,
        letter_owed_by: &'a str,
        message: Option<&'a str>,
    }

    fn as_derived(r: &DisclosureRecord) -> Vec<u8> {
        serde_json::to_vec(&AsDerived {
            query_id: &r.query_id,
            at: &r.at,
            recipient_org: &r.recipient_org,
            on_behalf_of: r.on_behalf_of.as_deref(),
            purpose: &r.purpose,
            reference_id: &r.reference_id,
            nin: r.nin,
            disclosed: &r.disclosed,
            letter_owed_by: &r.letter_owed_by,
            message: r.message.as_deref(),
        })
        .expect("serialise")
    }

    proptest! {
        #[test]
        fn version_1_equals_what_the_derive_wrote(
            query_id in any::<String>(),
            at in any::<String>(),
            on_behalf_of in proptest::option::of(any::<String>()),
            purpose in any::<String>(),
            nin in any::<u64>(),
            disclosed in any::<String>(),
            message in proptest::option::of("[\\x00-\\x7f\u{80}-\u{10ffff}]{0,40}"),
        ) {
            let r = DisclosureRecord {
                query_id, at, recipient_org: "910000001".into(), on_behalf_of, purpose,
                reference_id: "r".into(), nin, disclosed, letter_owed_by: "broker".into(), message,
            };
            prop_assert_eq!(encode_v1(&r), as_derived(&r));
        }
    }
}
