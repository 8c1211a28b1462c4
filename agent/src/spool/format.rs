//! Byte layouts of the spool's files: segment records, ack-log records and
//! the state file. Pure functions only; all I/O lives in `disk.rs`.
//!
//! All integers are little-endian; every checksum is CRC-32 (IEEE, as
//! computed by `crc32fast`).

/// `[len u32][crc32 u32][seq u64]` in front of every payload.
pub(super) const RECORD_HEADER: u64 = 16;
/// `[seq u64][crc32 u32]` per acknowledged seq.
pub(super) const ACK_RECORD: u64 = 12;
/// `[magic 8][next_seq u64][dropped_total u64][dropped_below u64][crc32 u32]`.
pub(super) const STATE_LEN: u64 = 36;

/// The `len` of a seal frame, `[SEAL_MARK][crc32][last seq]` without a
/// payload: the last thing in a segment that will get no more records.
pub(super) const SEAL_MARK: u32 = u32::MAX;
pub(super) const SEAL_LEN: u64 = RECORD_HEADER;
/// Payloads are shorter than [`SEAL_MARK`], so a seal is never a record.
pub(super) const MAX_PAYLOAD: u64 = SEAL_MARK as u64 - 1;
/// One slot of the mark file: `[magic 8][gen u64][end u64][dropped_total
/// u64][sealed_from u64][crc32 u32][zero u32]`.
pub(super) const MARK_SLOT: u64 = 48;
/// Two slots, written in turn in place.
pub(super) const MARK_LEN: u64 = 2 * MARK_SLOT;

pub(super) const STATE_FILE: &str = "state";
pub(super) const ACKS_FILE: &str = "acks.log";
pub(super) const MARK_FILE: &str = "mark";
pub(super) const SEGMENT_EXT: &str = ".seg";
pub(super) const TMP_EXT: &str = ".tmp";

const STATE_MAGIC: &[u8; 8] = b"SOBRSPL1";
const MARK_MAGIC: &[u8; 8] = b"SOBRMRK1";
const SEGMENT_DIGITS: usize = 20;

/// Checksum of one segment record: covers the length, the seq and the payload,
/// so a torn length or a torn seq is detected as surely as a torn payload.
pub(super) fn record_crc(len: u32, seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// One whole record, ready for a single `write_all`. The caller has checked
/// that the payload length fits in a `u32`.
pub(super) fn encode_record(seq: u64, len: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER as usize + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&record_crc(len, seq, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The frame that closes a segment: `last_seq` is the seq of its last record.
pub(super) fn encode_seal(last_seq: u64) -> Vec<u8> {
    encode_record(last_seq, SEAL_MARK, &[])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordHeader {
    pub len: u32,
    pub crc: u32,
    pub seq: u64,
}

pub(super) fn decode_header(b: &[u8; RECORD_HEADER as usize]) -> RecordHeader {
    let [l0, l1, l2, l3, c0, c1, c2, c3, s @ ..] = *b;
    RecordHeader {
        len: u32::from_le_bytes([l0, l1, l2, l3]),
        crc: u32::from_le_bytes([c0, c1, c2, c3]),
        seq: u64::from_le_bytes(s),
    }
}

pub(super) fn encode_ack(seq: u64) -> [u8; ACK_RECORD as usize] {
    let s = seq.to_le_bytes();
    let c = crc32fast::hash(&s).to_le_bytes();
    let mut out = [0; ACK_RECORD as usize];
    out[..8].copy_from_slice(&s);
    out[8..].copy_from_slice(&c);
    out
}

/// Parses an ack log. Returns the acked seqs in file order and the length of
/// the valid prefix; parsing stops at the first partial or corrupt record.
pub(super) fn decode_acks(bytes: &[u8]) -> (Vec<u64>, u64) {
    let mut seqs = Vec::with_capacity(bytes.len() / ACK_RECORD as usize);
    for chunk in bytes.chunks_exact(ACK_RECORD as usize) {
        let Ok(s) = <[u8; 8]>::try_from(&chunk[..8]) else {
            break;
        };
        let Ok(c) = <[u8; 4]>::try_from(&chunk[8..]) else {
            break;
        };
        if crc32fast::hash(&s) != u32::from_le_bytes(c) {
            break;
        }
        seqs.push(u64::from_le_bytes(s));
    }
    let valid = seqs.len() as u64 * ACK_RECORD;
    (seqs, valid)
}

/// The small `state` file, always replaced whole (temp file + rename).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct State {
    /// No seq at or above this was ever handed out: the reservation, a
    /// lower bound for the next seq at open. It is moved up a block of
    /// seqs at a time, before the first seq of the block is used.
    pub next_seq: u64,
    /// Unacked entries deleted to stay within `max_bytes`, since the spool
    /// directory was created.
    pub dropped_total: u64,
    /// Every seq below this was dropped or acked: a segment holding only such
    /// seqs is a leftover of a drop interrupted by a crash and is deleted.
    pub dropped_below: u64,
}

impl State {
    pub(super) fn encode(&self) -> [u8; STATE_LEN as usize] {
        let mut out = [0; STATE_LEN as usize];
        out[..8].copy_from_slice(STATE_MAGIC);
        out[8..16].copy_from_slice(&self.next_seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.dropped_total.to_le_bytes());
        out[24..32].copy_from_slice(&self.dropped_below.to_le_bytes());
        let crc = crc32fast::hash(&out[..32]);
        out[32..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// `None` when the bytes are not a valid state file.
    pub(super) fn decode(b: &[u8]) -> Option<State> {
        let b: &[u8; STATE_LEN as usize] = b.try_into().ok()?;
        let u64_at = |i: usize| b[i..i + 8].try_into().ok().map(u64::from_le_bytes);
        let crc = b[32..].try_into().ok().map(u32::from_le_bytes)?;
        if &b[..8] != STATE_MAGIC || crc32fast::hash(&b[..32]) != crc {
            return None;
        }
        Some(State {
            next_seq: u64_at(8)?,
            dropped_total: u64_at(16)?,
            dropped_below: u64_at(24)?,
        })
    }
}

/// One slot of the `mark` file, rewritten in place after every append (the
/// two slots in turn, so a torn write leaves the other one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    /// Write generation; the valid slot with the highest one is current.
    pub generation: u64,
    /// One past the highest seq whose append returned `Ok`: the records
    /// below it that recovery cannot read are counted as dropped.
    pub end: u64,
    /// A copy of the state's `dropped_total`, so that the counter survives
    /// a lost or corrupt state file.
    pub dropped_total: u64,
    /// Segments whose first seq is at least this were written by a version
    /// that seals them: such a non-newest segment without its seal lost
    /// its tail.
    pub sealed_from: u64,
}

impl Mark {
    pub(super) fn encode(&self) -> [u8; MARK_SLOT as usize] {
        let mut out = [0; MARK_SLOT as usize];
        out[..8].copy_from_slice(MARK_MAGIC);
        out[8..16].copy_from_slice(&self.generation.to_le_bytes());
        out[16..24].copy_from_slice(&self.end.to_le_bytes());
        out[24..32].copy_from_slice(&self.dropped_total.to_le_bytes());
        out[32..40].copy_from_slice(&self.sealed_from.to_le_bytes());
        let crc = crc32fast::hash(&out[..40]);
        out[40..44].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(b: &[u8]) -> Option<Mark> {
        let b: &[u8; MARK_SLOT as usize] = b.try_into().ok()?;
        let u64_at = |i: usize| b[i..i + 8].try_into().ok().map(u64::from_le_bytes);
        let crc = b[40..44].try_into().ok().map(u32::from_le_bytes)?;
        if &b[..8] != MARK_MAGIC || crc32fast::hash(&b[..40]) != crc {
            return None;
        }
        Some(Mark {
            generation: u64_at(8)?,
            end: u64_at(16)?,
            dropped_total: u64_at(24)?,
            sealed_from: u64_at(32)?,
        })
    }
}

/// The current mark of a mark file, and whether both slots were valid
/// (otherwise the current one may be one write behind).
pub(super) fn decode_mark(b: &[u8]) -> (Option<Mark>, bool) {
    let slot = |i: u64| {
        let at = (i * MARK_SLOT) as usize;
        b.get(at..at + MARK_SLOT as usize).and_then(Mark::decode)
    };
    let (a, c) = (slot(0), slot(1));
    let whole = a.is_some() && c.is_some() && b.len() as u64 == MARK_LEN;
    let best = match (a, c) {
        (Some(a), Some(c)) => Some(if c.generation > a.generation { c } else { a }),
        (a, c) => a.or(c),
    };
    (best, whole)
}

/// `00000000000000000042.seg`: zero-padded so that names sort like seqs.
pub(super) fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:0width$}{SEGMENT_EXT}", width = SEGMENT_DIGITS)
}

pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_EXT)?;
    if digits.len() != SEGMENT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_is_len_crc_seq_payload() {
        let rec = encode_record(0x0102_0304_0506_0708, 3, b"abc");
        assert_eq!(rec.len(), 16 + 3);
        assert_eq!(&rec[..4], &3u32.to_le_bytes());
        assert_eq!(&rec[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&rec[16..], b"abc");
        let hdr: [u8; 16] = rec[..16].try_into().expect("16 bytes");
        let h = decode_header(&hdr);
        assert_eq!(h.len, 3);
        assert_eq!(h.seq, 0x0102_0304_0506_0708);
        assert_eq!(h.crc, record_crc(3, h.seq, b"abc"));
        // An all-zero header (a zero-filled tail after a crash) never checks out.
        assert_ne!(record_crc(0, 0, b""), 0);
    }

    #[test]
    fn acks_stop_at_the_first_torn_or_corrupt_record() {
        let mut log = Vec::new();
        for s in [5u64, 9, 7] {
            log.extend_from_slice(&encode_ack(s));
        }
        assert_eq!(decode_acks(&log), (vec![5, 9, 7], 36));
        assert_eq!(decode_acks(&log[..30]), (vec![5, 9], 24));
        log[14] ^= 0x40;
        assert_eq!(decode_acks(&log), (vec![5], 12));
        assert_eq!(decode_acks(&[0; 12]), (vec![], 0));
    }

    #[test]
    fn state_round_trips_and_rejects_damage() {
        let st = State {
            next_seq: 1_700_000_000_000_000,
            dropped_total: 42,
            dropped_below: 17,
        };
        let mut b = st.encode();
        assert_eq!(State::decode(&b), Some(st));
        assert_eq!(State::decode(&b[..35]), None);
        b[20] ^= 1;
        assert_eq!(State::decode(&b), None);
    }

    #[test]
    fn the_mark_keeps_its_newest_valid_slot() {
        let m = |generation| Mark {
            generation,
            end: 100 + generation,
            dropped_total: 3,
            sealed_from: 7,
        };
        let mut file = [m(4).encode(), m(5).encode()].concat();
        assert_eq!(decode_mark(&file), (Some(m(5)), true));
        file[MARK_SLOT as usize + 17] ^= 1;
        assert_eq!(decode_mark(&file), (Some(m(4)), false));
        assert_eq!(decode_mark(&file[..30]), (None, false));
        assert_eq!(decode_mark(&[0; MARK_LEN as usize]), (None, false));
        // A seal is never mistaken for a record: its length is out of range.
        assert!(u64::from(SEAL_MARK) > MAX_PAYLOAD);
        assert_eq!(encode_seal(9).len() as u64, SEAL_LEN);
    }

    #[test]
    fn segment_names_sort_like_seqs_and_parse_back() {
        assert_eq!(segment_name(42), "00000000000000000042.seg");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert!(segment_name(9) < segment_name(10));
        assert_eq!(parse_segment_name("42.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000042.seg.tmp"), None);
    }
}
