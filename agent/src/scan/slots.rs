//! What the hash stages know of each candidate file, in 24 bytes, not 56
//! (three `Option<Hash>` and a flag): its prefix hash in the slot, its
//! suffix and full hashes in a side table that only the files that reach
//! those stages use (a file within one block has its prefix hash as its
//! full hash, and no suffix). 180,000 candidates: 10.1 -> 4.3 MB plus the
//! side table.

use super::hash::{Hash, Stage};

const READ: u32 = 1 << 31;
const HAS_PREFIX: u32 = 1 << 30;
const HAS_SUFFIX: u32 = 1 << 29;
const HAS_FULL: u32 = 1 << 28;
/// Its full hash is its prefix hash (no side entry needed for it).
const FULL_IS_PREFIX: u32 = 1 << 27;
const FLAGS: u32 = READ | HAS_PREFIX | HAS_SUFFIX | HAS_FULL | FULL_IS_PREFIX;
/// No side entry (in the bits below [`FLAGS`]).
const NO_MORE: u32 = !FLAGS;

/// One candidate file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// Index into the walk's files.
    pub file: u32,
    /// [`FLAGS`], and the index of its side entry (or [`NO_MORE`]).
    bits: u32,
    prefix: Hash,
}

/// The candidates' slots and their side table of (suffix, full) hashes.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    slots: Vec<Slot>,
    more: Vec<[Hash; 2]>,
}

impl std::ops::Index<usize> for Slots {
    type Output = Slot;
    fn index(&self, i: usize) -> &Slot {
        &self.slots[i]
    }
}

impl Slots {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn reserve_exact(&mut self, n: usize) {
        self.slots.reserve_exact(n);
    }

    pub fn push(&mut self, file: u32) {
        self.slots.push(Slot {
            file,
            bits: NO_MORE,
            prefix: [0; 16],
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter()
    }

    /// (prefix, suffix, full) of slot `s`.
    pub fn hashes(&self, s: u32) -> [Option<Hash>; 3] {
        let Some(slot) = self.slots.get(s as usize) else {
            return [None; 3];
        };
        let b = slot.bits;
        let more = self.more.get((b & NO_MORE) as usize);
        let has = |f: u32| b & f != 0;
        [
            has(HAS_PREFIX).then_some(slot.prefix),
            more.filter(|_| has(HAS_SUFFIX)).map(|m| m[0]),
            if has(FULL_IS_PREFIX) {
                Some(slot.prefix)
            } else {
                more.filter(|_| has(HAS_FULL)).map(|m| m[1])
            },
        ]
    }

    pub fn get(&self, s: u32, stage: Stage) -> Option<Hash> {
        self.hashes(s)[stage as usize]
    }

    pub fn full(&self, s: u32) -> Option<Hash> {
        self.hashes(s)[2]
    }

    /// Sets every hash of slot `s` (the read flag kept).
    pub fn set_all(&mut self, s: u32, [prefix, suffix, full]: [Option<Hash>; 3]) {
        let Some(slot) = self.slots.get_mut(s as usize) else {
            return;
        };
        let mut bits = (slot.bits & READ) | (slot.bits & NO_MORE);
        slot.prefix = prefix.unwrap_or_default();
        if prefix.is_some() {
            bits |= HAS_PREFIX;
        }
        let full_in_slot = prefix.is_some() && full == prefix;
        if full_in_slot {
            bits |= FULL_IS_PREFIX;
        }
        let side = [suffix, full.filter(|_| !full_in_slot)];
        if side.iter().any(Option::is_some) {
            let at = bits & NO_MORE;
            let at = if at == NO_MORE {
                self.more.push([[0; 16]; 2]);
                (self.more.len() - 1) as u32 & NO_MORE
            } else {
                at
            };
            bits = (bits & FLAGS) | at;
            if let Some(m) = self.more.get_mut(at as usize) {
                *m = [suffix.unwrap_or_default(), side[1].unwrap_or_default()];
            }
            bits |= if suffix.is_some() { HAS_SUFFIX } else { 0 };
            bits |= if side[1].is_some() { HAS_FULL } else { 0 };
        }
        slot.bits = bits;
    }

    /// Sets one hash of slot `s`.
    pub fn set(&mut self, s: u32, stage: Stage, h: Hash) {
        let mut all = self.hashes(s);
        all[stage as usize] = Some(h);
        self.set_all(s, all);
    }

    /// Marks slot `s` read in this scan; true the first time.
    pub fn mark_read(&mut self, s: u32) -> bool {
        self.slots.get_mut(s as usize).is_some_and(|slot| {
            let first = slot.bits & READ == 0;
            slot.bits |= READ;
            first
        })
    }

    /// Forgets every hash (the index they came from was damaged).
    pub fn clear_hashes(&mut self) {
        for slot in &mut self.slots {
            slot.bits = (slot.bits & READ) | NO_MORE;
        }
        self.more.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_round_trip() {
        let mut s = Slots::default();
        for f in 0..4 {
            s.push(f);
        }
        let (a, b, c) = (Some([1; 16]), Some([2; 16]), Some([3; 16]));
        let cases = [[a, None, a], [a, b, c], [None, None, None], [a, b, None]];
        for (i, h) in cases.iter().enumerate() {
            s.set_all(i as u32, *h);
        }
        for (i, h) in cases.iter().enumerate() {
            assert_eq!(s.hashes(i as u32), *h, "{i}");
        }
        s.set(3, Stage::Full, [4; 16]);
        assert_eq!(s.hashes(3), [a, b, Some([4; 16])]);
        assert!(s.mark_read(1) && !s.mark_read(1));
        s.clear_hashes();
        assert_eq!(s.hashes(1), [None; 3]);
        assert_eq!(std::mem::size_of::<Slot>(), 24);
    }
}
