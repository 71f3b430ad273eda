//! A compact, immutable open-addressing table from a person to an interned lender set.
//!
//! Each slot is one `u64`: the id's number in the low 37 bits (10^11 < 2^37) and the
//! set number in the high 27. Zero marks an empty slot (no id is 0). With the load
//! kept at or below 0.8 that is ≤ 10 bytes a person, plus the interned sets, which
//! are few because most people share the same handful of lender combinations.
//! Lookups hash once and probe linearly: one cache miss in the common case.

use std::collections::HashMap;

const KEY_BITS: u32 = 37;
const KEY_MASK: u64 = (1 << KEY_BITS) - 1;
/// Set numbers must fit in the 27 high bits.
pub const MAX_SETS: usize = 1 << (64 - KEY_BITS);

/// Interned lender sets: each a sorted, duplicate-free list of lender numbers.
#[derive(Debug, Clone, Default)]
pub struct SetPool {
    sets: Vec<Box<[u16]>>,
    ids: HashMap<Box<[u16]>, u32>,
}

impl SetPool {
    /// The set number of `lenders` (sorted, unique), interning it if new.
    /// `None` when the pool is full.
    pub fn intern(&mut self, lenders: &[u16]) -> Option<u32> {
        if let Some(&id) = self.ids.get(lenders) {
            return Some(id);
        }
        if self.sets.len() >= MAX_SETS {
            return None;
        }
        let id = self.sets.len() as u32;
        let boxed: Box<[u16]> = lenders.into();
        self.sets.push(boxed.clone());
        self.ids.insert(boxed, id);
        Some(id)
    }

    pub fn get(&self, id: u32) -> &[u16] {
        self.sets.get(id as usize).map(|s| &s[..]).unwrap_or(&[])
    }

    fn heap_bytes(&self) -> usize {
        // Each set is stored twice (list and map key) plus map overhead.
        self.sets.iter().map(|s| 2 * (s.len() * 2 + 16) + 24).sum()
    }
}

/// The slot array.
#[derive(Debug, Clone)]
pub struct PackedTable {
    slots: Box<[u64]>,
    len: usize,
}

#[inline]
fn hash(key: u64) -> u64 {
    // Fibonacci hashing spreads the structured id numbers (dates, sequential
    // individual numbers) over the whole range.
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (key >> 29)
}

impl PackedTable {
    /// An empty table with room for `persons` at load ≤ 0.8.
    pub fn with_capacity(persons: usize) -> Self {
        let cap = (persons + persons / 4 + 8).max(16);
        PackedTable {
            slots: vec![0u64; cap].into_boxed_slice(),
            len: 0,
        }
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        ((u128::from(hash(key)) * self.slots.len() as u128) >> 64) as usize
    }

    /// The set number for `key`, if present.
    #[inline]
    pub fn get(&self, key: u64) -> Option<u32> {
        let n = self.slots.len();
        let mut i = self.home(key);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if slot & KEY_MASK == key {
                return Some((slot >> KEY_BITS) as u32);
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Inserts or overwrites. Grows when the load would pass 0.8.
    /// Keys must be non-zero and below 2^37; set numbers below [`MAX_SETS`].
    pub fn insert(&mut self, key: u64, set: u32) {
        debug_assert!(key != 0 && key <= KEY_MASK && (set as usize) < MAX_SETS);
        if (self.len + 1) * 5 > self.slots.len() * 4 {
            self.grow();
        }
        let n = self.slots.len();
        let mut i = self.home(key);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                self.slots[i] = key | (u64::from(set) << KEY_BITS);
                self.len += 1;
                return;
            }
            if slot & KEY_MASK == key {
                self.slots[i] = key | (u64::from(set) << KEY_BITS);
                return;
            }
            i += 1;
            if i == n {
                i = 0;
            }
        }
    }

    /// Rehashes into the smallest table that keeps the load ≤ 0.8, when growth by
    /// doubling left it much larger (a build from a stream of unknown length).
    pub fn shrink_to_fit(&mut self) {
        let fitted = PackedTable::with_capacity(self.len);
        if fitted.slots.len() * 5 / 4 < self.slots.len() {
            let mut t = fitted;
            for (key, set) in self.iter() {
                t.insert(key, set);
            }
            *self = t;
        }
    }

    fn grow(&mut self) {
        let mut bigger = PackedTable::with_capacity(self.slots.len() * 2);
        for (key, set) in self.iter() {
            bigger.insert(key, set);
        }
        *self = bigger;
    }

    /// Every (key, set number) pair, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.slots
            .iter()
            .filter(|&&s| s != 0)
            .map(|&s| (s & KEY_MASK, (s >> KEY_BITS) as u32))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    fn heap_bytes(&self) -> usize {
        self.slots.len() * 8
    }
}

/// Bytes held by a table and its set pool: what the index costs in memory.
pub fn heap_bytes(table: &PackedTable, pool: &SetPool) -> usize {
    table.heap_bytes() + pool.heap_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_overwrite_and_grow() {
        let mut t = PackedTable::with_capacity(4);
        for k in 1..=10_000u64 {
            t.insert(k * 7919, (k % 5) as u32);
        }
        assert_eq!(t.len(), 10_000);
        for k in 1..=10_000u64 {
            assert_eq!(t.get(k * 7919), Some((k % 5) as u32));
        }
        assert_eq!(t.get(3), None);
        t.insert(7919, 4);
        assert_eq!(t.get(7919), Some(4));
        assert_eq!(t.len(), 10_000);
        // The largest possible id number round-trips with the largest set number.
        t.insert(99_999_999_999, (MAX_SETS - 1) as u32);
        assert_eq!(t.get(99_999_999_999), Some((MAX_SETS - 1) as u32));
    }

    #[test]
    fn pool_interns() {
        let mut p = SetPool::default();
        let a = p.intern(&[1, 3]).unwrap();
        let b = p.intern(&[2]).unwrap();
        assert_eq!(p.intern(&[1, 3]), Some(a));
        assert_ne!(a, b);
        assert_eq!(p.get(a), &[1, 3]);
        assert_eq!(p.get(999), &[] as &[u16]);
    }
}
