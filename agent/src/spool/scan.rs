//! Reading a segment's bytes back at open: every valid frame (length and
//! CRC-32 check out, seq in order), also past a damaged region, which is
//! skipped by looking for the next valid frame at every following offset
//! instead of giving up on the rest of the file. Pure: the bytes are read
//! and the verdicts acted on in `recover.rs`.

use super::format::{self, RECORD_HEADER, SEAL_LEN, SEAL_MARK};

/// A valid record found in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Frame {
    pub seq: u64,
    pub offset: u64,
    pub len: u32,
}

impl Frame {
    pub(super) fn end(&self) -> u64 {
        self.offset + RECORD_HEADER + u64::from(self.len)
    }
}

/// What a segment holds, damage included.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct SegmentScan {
    /// Valid records, seqs strictly increasing.
    pub frames: Vec<Frame>,
    /// The seq its seal names, if it ends with a valid one.
    pub seal: Option<u64>,
    /// Damaged regions between two valid records (or before the first):
    /// `(after, before)` are the seqs on either side, `after` being `None`
    /// before the first record. The records of seqs strictly between them
    /// are lost.
    pub holes: Vec<(Option<u64>, u64)>,
    /// Bytes after the last valid record that are neither a record nor its
    /// seal: a torn or damaged tail.
    pub damaged_tail: u64,
}

impl SegmentScan {
    /// True when the file is not exactly its frames (and seal) end to end.
    pub(super) fn damaged(&self) -> bool {
        !self.holes.is_empty() || self.damaged_tail > 0
    }

    pub(super) fn last_seq(&self) -> Option<u64> {
        self.frames.last().map(|f| f.seq)
    }
}

/// Bytes the checksums of candidate frames inside damaged regions may
/// cover, beyond one pass over the file: a region crafted to look like
/// frames at every offset must not make the open quadratic.
const RESYNC_BUDGET: u64 = 8;

/// Scans `bytes`, the content of the segment named `first_seq`; `limit`
/// is a seq no record of it can reach (the next segment's first seq).
pub(super) fn scan(bytes: &[u8], first_seq: u64, limit: u64) -> SegmentScan {
    let n = bytes.len() as u64;
    let mut out = SegmentScan::default();
    let mut budget = n.saturating_mul(RESYNC_BUDGET).saturating_add(64 * 1024);
    let mut off = 0u64;
    // Where the current damaged region began, if in one.
    let mut hole: Option<u64> = None;
    while off < n {
        let prev = out.last_seq();
        let in_hole = hole.is_some();
        match frame_at(bytes, off, first_seq, prev, limit, in_hole, &mut budget) {
            Found::Record(f) => {
                if hole.take().is_some() {
                    out.holes.push((prev, f.seq));
                }
                off = f.end();
                out.frames.push(f);
            }
            Found::Seal(seq) => {
                out.seal = Some(seq);
                // A seal ends the segment: what follows is damage.
                out.damaged_tail = hole.map_or(0, |h| off - h) + (n - off - SEAL_LEN);
                return out;
            }
            Found::Nothing => {
                hole.get_or_insert(off);
                off += 1;
            }
            Found::OutOfBudget => {
                hole.get_or_insert(off);
                break;
            }
        }
    }
    out.damaged_tail = hole.map_or(0, |h| n - h);
    out
}

enum Found {
    Record(Frame),
    Seal(u64),
    Nothing,
    OutOfBudget,
}

/// Whether a valid frame starts at `off`. `prev` is the last valid seq
/// before it; checksums computed while `in_hole` are charged to `budget`.
fn frame_at(
    bytes: &[u8],
    off: u64,
    first_seq: u64,
    prev: Option<u64>,
    limit: u64,
    in_hole: bool,
    budget: &mut u64,
) -> Found {
    let n = bytes.len() as u64;
    let Some(hdr) = bytes
        .get(off as usize..)
        .and_then(|b| b.first_chunk::<{ RECORD_HEADER as usize }>())
    else {
        return Found::Nothing;
    };
    let h = format::decode_header(hdr);
    let lowest = prev.map_or(Some(first_seq), |p| p.checked_add(1));
    let in_range = |seq: u64| lowest.is_some_and(|lo| seq >= lo) && seq < limit;
    if h.len == SEAL_MARK {
        // The seal names the last record: at least the last one seen.
        let sealable = prev.map_or(h.seq >= first_seq, |p| h.seq >= p) && h.seq < limit;
        if sealable && format::record_crc(h.len, h.seq, &[]) == h.crc {
            return Found::Seal(h.seq);
        }
        return Found::Nothing;
    }
    let body = off + RECORD_HEADER;
    let len = u64::from(h.len);
    let indexable =
        h.seq - first_seq.min(h.seq) <= u64::from(u32::MAX) && off <= u64::from(u32::MAX);
    if !in_range(h.seq) || len > n - body || !indexable {
        return Found::Nothing;
    }
    if in_hole {
        if *budget < len {
            return Found::OutOfBudget;
        }
        *budget -= len;
    }
    let payload = &bytes[body as usize..(body + len) as usize];
    if format::record_crc(h.len, h.seq, payload) != h.crc {
        return Found::Nothing;
    }
    Found::Record(Frame {
        seq: h.seq,
        offset: off,
        len: h.len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::format::{encode_record, encode_seal};

    fn segment(first: u64, n: u64) -> (Vec<u8>, Vec<u64>) {
        let mut out = Vec::new();
        let mut offs = Vec::new();
        for s in first..first + n {
            offs.push(out.len() as u64);
            out.extend(encode_record(s, 5, b"hello"));
        }
        (out, offs)
    }

    #[test]
    fn a_clean_segment_is_its_frames_and_seal() {
        let (mut b, _) = segment(10, 3);
        let s = scan(&b, 10, 100);
        assert_eq!(
            s.frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [10, 11, 12]
        );
        assert!(!s.damaged());
        b.extend(encode_seal(12));
        let s = scan(&b, 10, 100);
        assert_eq!((s.seal, s.damaged()), (Some(12), false));
    }

    #[test]
    fn a_flipped_byte_in_the_middle_is_skipped_and_the_next_record_found() {
        let (mut b, offs) = segment(10, 4);
        b[offs[1] as usize + 18] ^= 0x10;
        let s = scan(&b, 10, 100);
        assert_eq!(
            s.frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [10, 12, 13]
        );
        assert_eq!(s.holes, [(Some(10), 12)]);
        assert_eq!(s.damaged_tail, 0);
    }

    #[test]
    fn seqs_outside_the_segment_or_out_of_order_are_damage() {
        let (mut b, _) = segment(10, 2);
        b.extend(encode_record(10, 5, b"hello"));
        b.extend(encode_record(100, 5, b"hello"));
        let s = scan(&b, 10, 100);
        assert_eq!(s.frames.len(), 2);
        assert_eq!(s.damaged_tail, 42);
    }

    #[test]
    fn frames_everywhere_with_bad_checksums_stay_within_the_budget() {
        // Every offset holds a plausible header with a long payload.
        let mut b = Vec::new();
        while b.len() < 64 * 1024 {
            b.extend_from_slice(&60_000u32.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            b.extend_from_slice(&10u64.to_le_bytes());
        }
        let s = scan(&b, 10, 100);
        assert!(s.frames.is_empty());
        assert_eq!(s.damaged_tail, b.len() as u64);
    }
}
