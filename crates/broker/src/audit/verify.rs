//! The disclosure log's verifier: walks the chain in seq order, page by page (the
//! log can hold millions of records), from the latest retention checkpoint or
//! the genesis hash, and finds the first record that is missing, out of place or
//! not what its hash says.
//!
//! What it catches: an edited record (its hash no longer matches), an edited hash
//! (the next record's `prev_hash` no longer matches), a deleted record (a gap in
//! seq, or a broken link), records swapped or renumbered (broken links). What the
//! chain alone cannot show is the newest records cut off the end: an `anchor` (a
//! head seq and hash saved from an earlier run, outside this database) catches
//! that, and any rewrite up to it.

use std::fmt;

use super::record::{GENESIS, chain_hash};
use crate::store::{Checkpoint, Store, StoreError, StoredDisclosure};

/// Records read per page.
const PAGE: u32 = 5_000;

/// A head saved from an earlier run: record `seq` must still have `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
}

impl std::str::FromStr for Anchor {
    type Err = String;

    /// `SEQ:HASH`, as the verifier's summary prints the head.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (seq, hash) = s
            .split_once(':')
            .ok_or_else(|| "an anchor is SEQ:HASH".to_owned())?;
        let seq: i64 = seq
            .parse()
            .map_err(|_| "the anchor's SEQ is not a number".to_owned())?;
        let hash_ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if seq < 0 || !hash_ok {
            return Err("an anchor is SEQ:HASH with a 64-digit hex hash".into());
        }
        Ok(Anchor {
            seq,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

/// What to check beside the chain itself.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub anchor: Option<Anchor>,
    /// The start of the retention period (RFC 3339 UTC): a checkpoint that
    /// removed records at or after it purged too early.
    pub retention_cutoff: Option<String>,
}

/// An intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Records checked (those after the checkpoint).
    pub records: u64,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// The last record's hash (the checkpoint's or the genesis hash when none).
    pub head_hash: String,
    /// Where the walk started, if not at the genesis.
    pub checkpoint: Option<Checkpoint>,
    /// Records at or below the checkpoint still stored (a purge that has not
    /// finished deleting them); not checked.
    pub awaiting_purge: u64,
    /// Whether an anchor was given and checked (one older than the checkpoint
    /// cannot be).
    pub anchor_checked: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => write!(
                f,
                "intact: {} records, seq {a} to {b}, head {b}:{}",
                self.records, self.head_hash
            )?,
            _ => write!(f, "intact: no records, head hash {}", self.head_hash)?,
        }
        match &self.checkpoint {
            Some(c) => write!(
                f,
                "; verified from checkpoint {} (records up to {} removed by retention)",
                c.seq, c.record_at
            )?,
            None => write!(f, "; verified from the genesis hash")?,
        }
        if self.awaiting_purge > 0 {
            write!(
                f,
                "; {} checkpointed records still await deletion",
                self.awaiting_purge
            )?;
        }
        if self.anchor_checked {
            write!(f, "; anchor matches")?;
        }
        Ok(())
    }
}

/// Why the chain is broken, at which record. Never names a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The first bad sequence number.
    pub seq: i64,
    pub reason: BreakReason,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakReason {
    /// No record has this seq; `next` is the next stored one (none: the log ends).
    Missing { next: Option<i64> },
    /// Its `prev_hash` is not the previous record's hash: a record before it was
    /// removed, replaced or moved, or this one was.
    BrokenLink,
    /// Its content does not give its stored hash: edited.
    HashMismatch,
    /// Its hash differs from the anchor's.
    AnchorMismatch,
    /// A seq at or below one already seen (cannot happen with the primary key).
    OutOfOrder,
    /// The checkpoint removed records inside the retention period.
    CheckpointTooRecent,
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = self.seq;
        match &self.reason {
            BreakReason::Missing { next: Some(n) } => write!(
                f,
                "record {seq} is missing (the next stored record is {n}): deleted or renumbered"
            ),
            BreakReason::Missing { next: None } => write!(
                f,
                "record {seq} is missing: the log ends before the anchor (records cut off the end)"
            ),
            BreakReason::BrokenLink => write!(
                f,
                "record {seq}: prev_hash is not the hash of the record before it (a record was removed, replaced or moved)"
            ),
            BreakReason::HashMismatch => write!(
                f,
                "record {seq}: its content does not match its hash (edited)"
            ),
            BreakReason::AnchorMismatch => {
                write!(f, "record {seq}: its hash differs from the anchor's")
            }
            BreakReason::OutOfOrder => write!(f, "record {seq} is out of order"),
            BreakReason::CheckpointTooRecent => write!(
                f,
                "checkpoint {seq} removed records inside the retention period"
            ),
        }
    }
}

/// The outcome of a verification that could read the whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact(Summary),
    Broken(Break),
}

/// Checks one record after another; the store-free core of [`verify`].
#[derive(Debug, Clone)]
pub struct ChainWalker {
    start: i64,
    expected: i64,
    prev: String,
    summary: Summary,
    anchor: Option<Anchor>,
}

impl ChainWalker {
    /// Starts after `checkpoint` (or at the genesis).
    pub fn new(checkpoint: Option<Checkpoint>, anchor: Option<Anchor>) -> Self {
        let (start, prev) = checkpoint
            .as_ref()
            .map_or((0, GENESIS.to_owned()), |c| (c.seq, c.hash.clone()));
        ChainWalker {
            start,
            expected: start + 1,
            prev: prev.clone(),
            summary: Summary {
                records: 0,
                first_seq: None,
                last_seq: None,
                head_hash: prev,
                checkpoint,
                awaiting_purge: 0,
                anchor_checked: false,
            },
            anchor,
        }
    }

    /// Records checked so far (not counting those below the checkpoint).
    pub fn records(&self) -> u64 {
        self.summary.records
    }

    /// Checks the next stored record (in seq order).
    pub fn push(&mut self, d: &StoredDisclosure) -> Result<(), Break> {
        if d.seq <= self.start {
            self.summary.awaiting_purge += 1;
            return Ok(());
        }
        if d.seq > self.expected {
            return Err(Break {
                seq: self.expected,
                reason: BreakReason::Missing { next: Some(d.seq) },
            });
        }
        if d.seq < self.expected {
            return Err(Break {
                seq: d.seq,
                reason: BreakReason::OutOfOrder,
            });
        }
        let broken = |reason| Break { seq: d.seq, reason };
        if d.prev_hash != self.prev {
            return Err(broken(BreakReason::BrokenLink));
        }
        if chain_hash(&d.prev_hash, &d.record) != d.hash {
            return Err(broken(BreakReason::HashMismatch));
        }
        if let Some(a) = &self.anchor
            && a.seq == d.seq
        {
            if a.hash != d.hash {
                return Err(broken(BreakReason::AnchorMismatch));
            }
            self.summary.anchor_checked = true;
        }
        self.prev.clone_from(&d.hash);
        self.expected += 1;
        self.summary.records += 1;
        self.summary.first_seq.get_or_insert(d.seq);
        self.summary.last_seq = Some(d.seq);
        self.summary.head_hash.clone_from(&d.hash);
        Ok(())
    }

    /// Ends the walk: the anchor must not lie beyond the last record.
    pub fn finish(mut self) -> Result<Summary, Break> {
        if let Some(a) = &self.anchor {
            if a.seq >= self.expected {
                return Err(Break {
                    seq: self.expected,
                    reason: BreakReason::Missing { next: None },
                });
            }
            // An anchor at the checkpoint is checked against the checkpoint's
            // hash (what record `start` had); an older one cannot be checked.
            if a.seq == self.start && self.start > 0 {
                let cp_hash = self.summary.checkpoint.as_ref().map(|c| c.hash.as_str());
                if cp_hash != Some(a.hash.as_str()) {
                    return Err(Break {
                        seq: a.seq,
                        reason: BreakReason::AnchorMismatch,
                    });
                }
                self.summary.anchor_checked = true;
            }
        }
        Ok(self.summary)
    }
}

/// Verifies the whole log in the store. `Err` only when the store cannot be read.
pub async fn verify(store: &dyn Store, options: &VerifyOptions) -> Result<Verdict, StoreError> {
    let checkpoint = store.latest_checkpoint().await?;
    if let (Some(c), Some(cutoff)) = (&checkpoint, &options.retention_cutoff)
        && c.record_at.as_str() >= cutoff.as_str()
    {
        return Ok(Verdict::Broken(Break {
            seq: c.seq,
            reason: BreakReason::CheckpointTooRecent,
        }));
    }
    let mut walker = ChainWalker::new(checkpoint, options.anchor.clone());
    let mut after = 0i64;
    loop {
        let page = store.disclosures_after(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for d in &page {
            if let Err(b) = walker.push(d) {
                return Ok(Verdict::Broken(b));
            }
        }
    }
    Ok(match walker.finish() {
        Ok(s) => Verdict::Intact(s),
        Err(b) => Verdict::Broken(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::DisclosureRecord;

    fn chain(n: i64) -> Vec<StoredDisclosure> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let record = DisclosureRecord {
                    query_id: format!("q{seq}"),
                    at: "2026-01-01T00:00:00Z".into(),
                    recipient_org: "910000001".into(),
                    on_behalf_of: None,
                    purpose: "search".into(),
                    reference_id: format!("r{seq}"),
                    nin: 1,
                    disclosed: "{}".into(),
                    letter_owed_by: "broker".into(),
                    message: None,
                };
                let hash = chain_hash(&prev, &record);
                let d = StoredDisclosure {
                    seq,
                    record,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                d
            })
            .collect()
    }

    fn walk(rows: &[StoredDisclosure], anchor: Option<Anchor>) -> Result<Summary, Break> {
        let mut w = ChainWalker::new(None, anchor);
        for d in rows {
            w.push(d)?;
        }
        w.finish()
    }

    #[test]
    fn an_intact_chain_and_its_anchor() {
        let rows = chain(5);
        let s = walk(&rows, None).unwrap();
        assert_eq!((s.records, s.first_seq, s.last_seq), (5, Some(1), Some(5)));
        assert_eq!(s.head_hash, rows[4].hash);
        let anchor = Anchor {
            seq: 5,
            hash: rows[4].hash.clone(),
        };
        assert!(walk(&rows, Some(anchor.clone())).unwrap().anchor_checked);
        // The end cut off: only the anchor shows it.
        assert!(walk(&rows[..3], None).is_ok());
        assert_eq!(
            walk(&rows[..3], Some(anchor)).unwrap_err(),
            Break {
                seq: 4,
                reason: BreakReason::Missing { next: None }
            }
        );
    }

    #[test]
    fn starts_from_a_checkpoint() {
        let rows = chain(6);
        let cp = Checkpoint {
            seq: 3,
            hash: rows[2].hash.clone(),
            record_at: rows[2].record.at.clone(),
            created_at: "2026-01-02T00:00:00Z".into(),
        };
        let mut w = ChainWalker::new(Some(cp.clone()), None);
        // One checkpointed record still stored, then the rest.
        for d in &rows[2..] {
            w.push(d).unwrap();
        }
        let s = w.finish().unwrap();
        assert_eq!((s.records, s.first_seq, s.awaiting_purge), (3, Some(4), 1));
        // A gap right after the checkpoint.
        let mut w = ChainWalker::new(Some(cp), None);
        assert_eq!(w.push(&rows[4]).unwrap_err().seq, 4);
    }

    #[test]
    fn anchors_parse() {
        let h = "a".repeat(64);
        assert_eq!(
            format!("12:{h}").parse::<Anchor>().unwrap(),
            Anchor { seq: 12, hash: h }
        );
        for bad in ["12", "x:abc", "-1:00", "3:zz"] {
            assert!(bad.parse::<Anchor>().is_err(), "{bad}");
        }
    }
}
