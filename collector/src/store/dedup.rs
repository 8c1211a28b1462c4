//! Per-agent memory of which sequence numbers are already stored, so that
//! redelivered envelopes are acked again but stored once.
//!
//! An agent never sends a seq below the `spool_floor` it announced (those
//! were acked or dropped from its spool), so the window only remembers the
//! seqs at or above the highest floor seen: its size is bounded by what the
//! agent still holds unacked, not by history.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeqWindow {
    floor: u64,
    seen: BTreeSet<u64>,
}

impl SeqWindow {
    /// True when `seq` has not been stored yet.
    pub fn is_new(&self, seq: u64) -> bool {
        seq >= self.floor && !self.seen.contains(&seq)
    }

    /// Records `seq` as stored and forgets what lies below `floor`.
    pub fn insert(&mut self, seq: u64, floor: u64) {
        self.seen.insert(seq);
        self.raise_floor(floor.min(seq));
    }

    fn raise_floor(&mut self, floor: u64) {
        if floor > self.floor {
            self.floor = floor;
            self.seen = self.seen.split_off(&floor);
        }
    }

    /// Number of seqs remembered (for tests and metrics).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Compact encoding stored with the agent's row: floor, then each seq
    /// as a delta from the previous one, all LEB128 varints.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(10 + self.seen.len() * 2);
        put_varint(&mut out, self.floor);
        let mut prev = self.floor;
        for &s in &self.seen {
            put_varint(&mut out, s - prev);
            prev = s;
        }
        out
    }

    /// Inverse of [`encode`](Self::encode); `None` on corrupt bytes.
    pub fn decode(mut bytes: &[u8]) -> Option<SeqWindow> {
        let floor = get_varint(&mut bytes)?;
        let mut seen = BTreeSet::new();
        let mut prev = floor;
        while !bytes.is_empty() {
            prev = prev.checked_add(get_varint(&mut bytes)?)?;
            seen.insert(prev);
        }
        Some(SeqWindow { floor, seen })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn duplicates_are_seen_and_floor_forgets() {
        let mut w = SeqWindow::default();
        assert!(w.is_new(5));
        w.insert(5, 5);
        assert!(!w.is_new(5));
        w.insert(7, 5);
        assert!(w.is_new(6));
        w.insert(6, 6);
        w.insert(8, 8);
        assert_eq!(w.len(), 1, "only 8 remains at or above floor 8");
        assert!(!w.is_new(7), "below the floor counts as stored");
    }

    #[test]
    fn floor_never_passes_the_seq_being_stored() {
        let mut w = SeqWindow::default();
        // A buggy floor above the seq must not make the seq itself forgotten.
        w.insert(3, 10);
        assert!(!w.is_new(3));
    }

    proptest! {
        #[test]
        fn encode_round_trips(floor in 0u64..u64::MAX / 2, seqs in proptest::collection::vec(0u64..1_000_000, 0..50)) {
            let mut w = SeqWindow::default();
            for s in seqs {
                w.insert(floor + s, floor);
            }
            prop_assert_eq!(SeqWindow::decode(&w.encode()), Some(w));
        }
    }
}
