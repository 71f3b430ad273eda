//! The person → lenders index: which lenders hold open debt for whom.
//!
//! Only the lenders named here are called for a person, so that no other lender
//! learns the person applied for credit. The index lives in memory as an immutable
//! [`IndexSnapshot`] behind an `ArcSwap`: readers load it lock-free and
//! synchronously; writers (ingest, pushes) build a new snapshot and swap it in
//! whole, so a lookup never sees half of a change.

mod table;

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use gjeldsbro_domain::nin::NationalId;
use table::{PackedTable, SetPool};

/// A lender's number in this process: its position in the configured lender list.
pub type LenderIdx = u16;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("too many distinct lender combinations for the index")]
    TooManySets,
}

/// One immutable version of the index.
#[derive(Debug, Clone)]
pub struct IndexSnapshot {
    table: PackedTable,
    pool: SetPool,
    /// Persons with at least one lender, kept so metrics need not scan.
    persons: usize,
}

impl IndexSnapshot {
    pub fn empty() -> Self {
        IndexSnapshot {
            table: PackedTable::with_capacity(0),
            pool: SetPool::default(),
            persons: 0,
        }
    }

    /// The lenders holding debt for `nin`, sorted; empty when none.
    #[inline]
    pub fn lenders_of(&self, nin: NationalId) -> &[LenderIdx] {
        match self.table.get(nin.as_u64()) {
            Some(set) => self.pool.get(set),
            None => &[],
        }
    }

    /// Persons with at least one lender.
    pub fn persons(&self) -> usize {
        self.persons
    }

    fn count_persons(table: &PackedTable, pool: &SetPool) -> usize {
        table
            .iter()
            .filter(|&(_, set)| !pool.get(set).is_empty())
            .count()
    }

    /// Bytes of memory the index holds.
    pub fn heap_bytes(&self) -> usize {
        table::heap_bytes(&self.table, &self.pool)
    }

    /// A new snapshot in which `lender` holds debt for exactly `persons` (sorted,
    /// unique id numbers), every other lender unchanged.
    pub fn with_lender_replaced(
        &self,
        lender: LenderIdx,
        persons: &[u64],
    ) -> Result<IndexSnapshot, IndexError> {
        let mut builder = IndexBuilder::with_capacity(self.table.len().max(persons.len()));
        let mut scratch: Vec<LenderIdx> = Vec::with_capacity(8);
        for (key, set) in self.table.iter() {
            scratch.clear();
            scratch.extend(self.pool.get(set).iter().copied().filter(|&l| l != lender));
            if persons.binary_search(&key).is_ok() {
                scratch.push(lender);
                scratch.sort_unstable();
            }
            builder.put(key, &scratch)?;
        }
        for &key in persons {
            if self.table.get(key).is_none() {
                builder.put(key, &[lender])?;
            }
        }
        Ok(builder.finish())
    }

    /// A new snapshot in which `lender` holds (or no longer holds) debt for `nin`.
    pub fn with_person(
        &self,
        nin: NationalId,
        lender: LenderIdx,
        holds: bool,
    ) -> Result<IndexSnapshot, IndexError> {
        self.with_changes(lender, &[(nin, holds)])
    }

    /// A new snapshot with several persons' holdings at `lender` changed. The table
    /// is copied once per call, so callers batch the changes of one delivery.
    pub fn with_changes(
        &self,
        lender: LenderIdx,
        changes: &[(NationalId, bool)],
    ) -> Result<IndexSnapshot, IndexError> {
        let mut next = self.clone();
        for &(nin, holds) in changes {
            let mut set: Vec<LenderIdx> = next.lenders_of(nin).to_vec();
            let was_held = !set.is_empty();
            match (set.binary_search(&lender), holds) {
                (Ok(_), true) | (Err(_), false) => continue,
                (Err(pos), true) => set.insert(pos, lender),
                (Ok(pos), false) => {
                    set.remove(pos);
                }
            }
            let id = next.pool.intern(&set).ok_or(IndexError::TooManySets)?;
            next.table.insert(nin.as_u64(), id);
            match (was_held, set.is_empty()) {
                (false, false) => next.persons += 1,
                (true, true) => next.persons -= 1,
                _ => {}
            }
        }
        Ok(next)
    }
}

/// Builds a snapshot from (person, lender) pairs, fastest when they arrive grouped
/// by person (as the store returns them), correct in any order.
pub struct IndexBuilder {
    table: PackedTable,
    pool: SetPool,
    current: Option<u64>,
    group: Vec<LenderIdx>,
}

impl IndexBuilder {
    pub fn with_capacity(persons: usize) -> Self {
        IndexBuilder {
            table: PackedTable::with_capacity(persons),
            pool: SetPool::default(),
            current: None,
            group: Vec::with_capacity(8),
        }
    }

    /// Adds one (person, lender) pair.
    pub fn push(&mut self, nin: u64, lender: LenderIdx) -> Result<(), IndexError> {
        if self.current != Some(nin) {
            self.flush()?;
            self.current = Some(nin);
        }
        self.group.push(lender);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), IndexError> {
        let Some(key) = self.current.take() else {
            return Ok(());
        };
        // A person seen before (pairs out of order) keeps the union of both groups.
        if let Some(existing) = self.table.get(key) {
            self.group.extend_from_slice(self.pool.get(existing));
        }
        self.group.sort_unstable();
        self.group.dedup();
        let group = std::mem::take(&mut self.group);
        self.put(key, &group)?;
        self.group = group;
        self.group.clear();
        Ok(())
    }

    /// Sets a person's whole (sorted, unique) lender list; an empty list is skipped.
    fn put(&mut self, key: u64, lenders: &[LenderIdx]) -> Result<(), IndexError> {
        if lenders.is_empty() {
            return Ok(());
        }
        let id = self.pool.intern(lenders).ok_or(IndexError::TooManySets)?;
        self.table.insert(key, id);
        Ok(())
    }

    pub fn finish(mut self) -> IndexSnapshot {
        // flush() only fails on a full pool; the pairs so far are kept either way.
        let _ = self.flush();
        self.table.shrink_to_fit();
        let persons = IndexSnapshot::count_persons(&self.table, &self.pool);
        IndexSnapshot {
            table: self.table,
            pool: self.pool,
            persons,
        }
    }
}

/// The live index: the current snapshot plus a lock that serialises writers.
#[derive(Debug)]
pub struct Index {
    current: ArcSwap<IndexSnapshot>,
    writer: Mutex<()>,
}

impl Index {
    pub fn new(snapshot: IndexSnapshot) -> Self {
        Index {
            current: ArcSwap::from_pointee(snapshot),
            writer: Mutex::new(()),
        }
    }

    /// The current snapshot. Cheap; hold it only for the length of one decision.
    pub fn load(&self) -> Arc<IndexSnapshot> {
        self.current.load_full()
    }

    /// The lenders of `nin`, copied out of the current snapshot.
    pub fn lenders_of(&self, nin: NationalId) -> Vec<LenderIdx> {
        self.current.load().lenders_of(nin).to_vec()
    }

    /// Applies a change to the current snapshot and swaps the result in whole.
    /// Writers are serialised so that no change is lost between load and store.
    pub fn update<F>(&self, change: F) -> Result<(), IndexError>
    where
        F: FnOnce(&IndexSnapshot) -> Result<IndexSnapshot, IndexError>,
    {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let next = change(&self.current.load())?;
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// Replaces the whole snapshot (start-up rebuild).
    pub fn replace(&self, snapshot: IndexSnapshot) {
        let _guard = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.current.store(Arc::new(snapshot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gjeldsbro_domain::nin::{IdPolicy, make_id};

    fn ids(n: usize) -> Vec<NationalId> {
        let mut out = Vec::new();
        let mut i = 0;
        while out.len() < n {
            let day = (i % 28) as u32 + 1;
            let ind = (i / 28 % 500) as u32;
            if let Some(s) = make_id(day, 3, 80, ind, false, true) {
                out.push(NationalId::parse(&s, IdPolicy::SYNTHETIC_OK).unwrap());
            }
            i += 1;
        }
        out
    }

    #[test]
    fn builds_from_grouped_and_scattered_pairs() {
        let p = ids(3);
        let mut b = IndexBuilder::with_capacity(2);
        b.push(p[0].as_u64(), 2).unwrap();
        b.push(p[0].as_u64(), 0).unwrap();
        b.push(p[1].as_u64(), 1).unwrap();
        b.push(p[0].as_u64(), 3).unwrap(); // out of order: merged
        let s = b.finish();
        assert_eq!(s.lenders_of(p[0]), &[0, 2, 3]);
        assert_eq!(s.lenders_of(p[1]), &[1]);
        assert_eq!(s.lenders_of(p[2]), &[] as &[u16]);
        assert_eq!(s.persons(), 2);
    }

    #[test]
    fn replacing_a_lender_touches_only_that_lender() {
        let p = ids(4);
        let mut b = IndexBuilder::with_capacity(4);
        b.push(p[0].as_u64(), 0).unwrap();
        b.push(p[0].as_u64(), 1).unwrap();
        b.push(p[1].as_u64(), 1).unwrap();
        b.push(p[2].as_u64(), 0).unwrap();
        let s = b.finish();
        let mut new_persons = vec![p[2].as_u64(), p[3].as_u64()];
        new_persons.sort_unstable();
        let s2 = s.with_lender_replaced(1, &new_persons).unwrap();
        assert_eq!(s2.lenders_of(p[0]), &[0]);
        assert_eq!(s2.lenders_of(p[1]), &[] as &[u16]);
        assert_eq!(s2.lenders_of(p[2]), &[0, 1]);
        assert_eq!(s2.lenders_of(p[3]), &[1]);
        assert_eq!(s2.persons(), 3);
        // The old snapshot is untouched: readers holding it see a consistent view.
        assert_eq!(s.lenders_of(p[0]), &[0, 1]);
    }

    #[test]
    fn single_person_changes() {
        let p = ids(1);
        let index = Index::new(IndexSnapshot::empty());
        index.update(|s| s.with_person(p[0], 4, true)).unwrap();
        index.update(|s| s.with_person(p[0], 2, true)).unwrap();
        assert_eq!(index.lenders_of(p[0]), vec![2, 4]);
        index.update(|s| s.with_person(p[0], 4, false)).unwrap();
        assert_eq!(index.lenders_of(p[0]), vec![2]);
        index.update(|s| s.with_person(p[0], 2, false)).unwrap();
        assert!(index.lenders_of(p[0]).is_empty());
        assert_eq!(index.load().persons(), 0);
    }

    /// Pushes for different persons arrive on different threads at once. Each
    /// writer reads the snapshot, builds the next and swaps it in; without the
    /// writer lock two of them read the same snapshot and one change is lost.
    #[test]
    fn concurrent_writers_lose_no_change() {
        const THREADS: usize = 8;
        const EACH: usize = 25;
        let p = ids(THREADS * EACH);
        let index = Index::new(IndexSnapshot::empty());
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (index, p) = (&index, &p);
                scope.spawn(move || {
                    for i in 0..EACH {
                        index
                            .update(|s| {
                                // Widen the window between load and store, as a
                                // larger snapshot's copy would.
                                std::thread::sleep(std::time::Duration::from_micros(200));
                                s.with_person(p[t * EACH + i], (t % 4) as LenderIdx, true)
                            })
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(index.load().persons(), THREADS * EACH);
        for (n, nin) in p.iter().enumerate() {
            assert_eq!(index.lenders_of(*nin), vec![((n / EACH) % 4) as LenderIdx]);
        }
    }
}
