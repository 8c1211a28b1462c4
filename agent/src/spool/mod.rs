//! Owns the agent's on-disk store-and-forward queue (the spool) and the
//! envelope sequence numbers: every envelope is appended here before it is
//! sent and stays until the collector acknowledges that it committed it.
//!
//! # Guarantees
//!
//! - **Seqs** are strictly increasing and never reused, also across restarts,
//!   after every entry was acked and deleted, and whatever damage the files
//!   took: before a seq is used it is covered by a durable reservation in
//!   `state` (moved [`RESERVE_BLOCK`](append::RESERVE_BLOCK) seqs ahead at a
//!   time, so one small write per 1024 appends). At open the next seq is
//!   above every seq still on disk and the mark's end, which is exact (so a
//!   restart leaves no gap); when the mark is damaged or missing, it is the
//!   reservation. When the
//!   directory holds no state at all (first start, or it was wiped) the first
//!   seq is at least `unix_time_ms * 1000`: a re-installed agent starts far
//!   above anything an older install could have reached (at one envelope
//!   every 10 s, the old counter would need ~300 000 years to catch up with
//!   the clock), so the collector never mistakes a new envelope for one it
//!   already stored.
//! - **Crash safety** (`kill -9` at any instant, or power loss with
//!   `fsync = true`): a torn last record is detected by its length and CRC-32
//!   and cut away at [`Spool::open`] with a warning; nothing half-written is
//!   ever returned. Delivery is at-least-once: an ack lost in a crash makes
//!   its entry pending again, and the collector deduplicates by seq.
//! - **Damage** (a flipped byte, a zeroed run, a truncated or emptied file
//!   anywhere): recovery skips a damaged region by looking for the next valid
//!   frame (length, CRC-32, seq in order) at every following offset, keeps
//!   every record it can read, and adds every unacked record it cannot read
//!   to `dropped_total`, once (damaged segments are rewritten clean). Records
//!   of one segment have consecutive seqs, so a region lost exactly the seqs
//!   between the records around it; a segment's end is told by its seal, or
//!   for the newest by the mark. Not counted: a whole segment file deleted
//!   by hand. Over-counted (never under): a segment that lost both its tail
//!   and its seal, when seqs were skipped after it (a failed append, a
//!   restart), or a crash during recovery itself.
//! - **Bounded disk**: [`SpoolStats::disk_bytes`] (segments + ack log +
//!   state + mark) never exceeds `max_bytes` (a compaction briefly adds one
//!   temp file no larger than the compacted ack log). When an append would
//!   exceed it, whole oldest segments are deleted first; their still-unacked
//!   entries are added to [`SpoolStats::dropped_total`], which is persisted.
//! - **Small memory**: only an index of 9 bytes per entry is kept in memory;
//!   payloads are read from disk by [`Spool::read`].
//! - **Small writes**: appends and acks only append to files (one
//!   `write_all` each, plus `sync_data` with `fsync`), and an append rewrites
//!   one 48-byte slot of the mark in place. Whole files are only rewritten
//!   when tiny (`state`, 36 bytes, at open, once per 1024 appends and when
//!   segments are dropped), when damaged, or when the ack log is compacted
//!   (about once per 1024 acks).
//! - **Owner-only**: the directory is 0700 and every file 0600 whatever the
//!   umask (`sobre_base::files`); files of an older version are tightened
//!   at open.
//!
//! # On-disk layout (all integers little-endian, CRC-32 IEEE)
//!
//! - `NNNNNNNNNNNNNNNNNNNN.seg` — segment files named by the zero-padded seq
//!   of their first record. Records are `[len u32][crc32 u32][seq u64]
//!   [payload; len]`, the CRC covering `len`, `seq` and the payload; their
//!   seqs are consecutive. A segment that gets no more records ends with a
//!   seal, `[u32::MAX][crc32][seq of its last record]`. A new
//!   segment is started when the current one would grow past
//!   `max_bytes / 8`, clamped to [4 KiB, 1 MiB] and to at most
//!   `max_bytes / 4` (so that dropping one segment never empties a small
//!   spool), or when the next seq does not follow its last one. A segment is
//!   deleted once all its records are acked (the newest
//!   one only once a newer one exists, or at open), or when it is the oldest
//!   one and room is needed.
//! - `acks.log` — `[seq u64][crc32 u32 of the seq]` per acked seq, appended
//!   by [`Spool::ack`] and replayed at open. It is compacted (temp file +
//!   rename + directory fsync) to the acks of entries still on disk when it
//!   holds more than `2 × those + 1024` records, at open, or when the space
//!   is needed.
//! - `state` — `[magic "SOBRSPL1"][next_seq u64][dropped_total u64]
//!   [dropped_below u64][crc32 u32]`, replaced atomically (temp + rename).
//!   `next_seq` is the reservation: no seq at or above it was handed out.
//!   It is written at open, before a seq at the reservation is used, and
//!   before any deletion that could remove unacked entries.
//!   `dropped_below` makes a drop idempotent: if the agent dies after
//!   recording a drop but before deleting the segment, the segment is
//!   deleted at the next open and not counted twice.
//! - `mark` — two 48-byte slots `[magic "SOBRMRK1"][generation][end]
//!   [dropped_total][sealed_from][crc32][0u32]`, rewritten in turn in place
//!   after every append (a torn write leaves the other): `end` is one past
//!   the last seq whose append returned, so recovery knows how many records
//!   the newest segment held; `dropped_total` survives a lost `state`.
//! - `*.tmp` — leftovers of an interrupted replacement, deleted at open.
//!
//! To keep `disk_bytes ≤ max_bytes` whatever is acked later, each record is
//! budgeted with the 12 bytes its future ack will take in the ack log, and
//! each unsealed segment with its seal.
//!
//! One `Spool` must own a directory at a time (the agent opens it once).

mod append;
mod disk;
mod error;
mod format;
mod reclaim;
mod recover;
mod scan;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_damage;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use format::{ACK_RECORD, MARK_LEN, RECORD_HEADER, SEAL_LEN, STATE_LEN};

/// The smallest accepted `max_bytes`: the state file plus one envelope of a
/// few hundred bytes with its record header and its future ack.
pub const MIN_MAX_BYTES: u64 = 1024;
const MIN_SEGMENT: u64 = 4 * 1024;
const MAX_SEGMENT: u64 = 1024 * 1024;
/// Stale ack-log records tolerated beyond the live ones before compacting.
const ACK_COMPACT_SLACK: u64 = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// Directory owned by the spool; created if missing.
    pub dir: PathBuf,
    /// Upper bound of [`SpoolStats::disk_bytes`]; at least [`MIN_MAX_BYTES`].
    pub max_bytes: u64,
    /// `fsync` every append and ack (and the directory on file creation,
    /// deletion and rename): survives power loss, not only process crashes.
    pub fsync: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Entries appended and neither acked nor dropped.
    pub pending: u64,
    /// Sum of the payload lengths of the pending entries.
    pub pending_bytes: u64,
    /// Bytes of all spool files: segments, ack log and state.
    pub disk_bytes: u64,
    /// Unacked entries deleted to stay within `max_bytes`, ever.
    pub dropped_total: u64,
}

pub use error::SpoolError;

/// Where one record sits: its seq relative to the segment's first seq and
/// its byte offset in the segment file. Both fit in 32 bits because a
/// segment only grows past its first record while it is under 1 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    delta: u32,
    offset: u32,
}

#[derive(Debug)]
struct Segment {
    first_seq: u64,
    slots: Vec<Slot>,
    acked: Vec<bool>,
    /// Slots not acked.
    live: u64,
    /// File length: its records, and its seal if `sealed`.
    bytes: u64,
    /// Ends with a seal: it gets no more records.
    sealed: bool,
}

impl Segment {
    fn seq(&self, i: usize) -> u64 {
        self.first_seq + u64::from(self.slots[i].delta)
    }

    fn last_seq(&self) -> u64 {
        self.seq(self.slots.len() - 1)
    }

    fn payload_len(&self, i: usize) -> u64 {
        let records_end = self.bytes - if self.sealed { SEAL_LEN } else { 0 };
        let end = self
            .slots
            .get(i + 1)
            .map_or(records_end, |s| u64::from(s.offset));
        end - u64::from(self.slots[i].offset) - RECORD_HEADER
    }

    fn find(&self, seq: u64) -> Option<usize> {
        let delta = u32::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.slots.binary_search_by_key(&delta, |s| s.delta).ok()
    }
}

/// The spool. See the [module documentation](self) for the guarantees and
/// the on-disk format.
pub struct Spool {
    cfg: SpoolConfig,
    segment_target: u64,
    /// Oldest first; every segment holds at least one record.
    segments: VecDeque<Segment>,
    /// Append handle on the newest segment, opened lazily.
    active: Option<File>,
    /// The newest segment's tail could not be restored after a failed write:
    /// the next append starts a new segment.
    roll_next: bool,
    /// Append handle on the ack log, opened lazily.
    acks: Option<File>,
    /// The ack log's tail could not be restored after a failed write: it is
    /// rewritten before the next ack is appended.
    acks_torn: bool,
    /// Records in the ack log.
    ack_records: u64,
    /// Acked slots in `segments` (each has exactly one ack-log record).
    acked_live: u64,
    records: u64,
    segment_bytes: u64,
    pending: u64,
    pending_bytes: u64,
    next_seq: u64,
    /// No seq at or above this was handed out (the state file's `next_seq`).
    reserved: u64,
    /// One past the highest seq appended with success (the mark's `end`).
    appended_end: u64,
    /// Segments not sealed: each is budgeted its future seal.
    unsealed: u64,
    /// Handle on the mark file, and its last generation written.
    mark: Option<File>,
    mark_generation: u64,
    /// The last mark write failed (warned once).
    mark_failed: bool,
    /// See [`format::Mark::sealed_from`].
    sealed_from: u64,
    dropped_total: u64,
    dropped_below: u64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.cfg.dir)
            .field("next_seq", &self.next_seq)
            .field("segments", &self.segments.len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Spool {
    /// Opens the spool in `cfg.dir`, creating the directory if needed, and
    /// recovers it: torn tails of segments and of the ack log are cut off
    /// (with a warning), acks are replayed, fully acked segments deleted,
    /// and the `max_bytes` bound re-established (dropping the oldest entries
    /// if `max_bytes` was lowered).
    pub fn open(cfg: SpoolConfig) -> Result<Spool, SpoolError> {
        Spool::recover(cfg)
    }

    /// Marks seqs as committed by the collector; unknown and already acked
    /// seqs are ignored. Returns how many were newly acked. The acks are
    /// durable (fsynced if `cfg.fsync`) when this returns `Ok`.
    pub fn ack(&mut self, seqs: &[u64]) -> Result<usize, SpoolError> {
        let mut new: Vec<u64> = seqs
            .iter()
            .copied()
            .filter(|&s| self.is_pending(s))
            .collect();
        new.sort_unstable();
        new.dedup();
        if new.is_empty() {
            return Ok(0);
        }
        if self.acks_torn {
            self.compact_acks()?;
        }
        let mut buf = Vec::with_capacity(new.len() * ACK_RECORD as usize);
        for &s in &new {
            buf.extend_from_slice(&format::encode_ack(s));
        }
        let path = self.cfg.dir.join(format::ACKS_FILE);
        let good_len = self.ack_records * ACK_RECORD;
        let fsync = self.cfg.fsync;
        let file = self.ack_file()?;
        let written = file
            .write_all(&buf)
            .and_then(|()| if fsync { file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            if file.set_len(good_len).is_err() {
                self.acks = None;
                self.acks_torn = true;
            }
            return Err(disk::io_err(&path, "append to", e));
        }
        self.ack_records += new.len() as u64;
        for &s in &new {
            self.mark_acked(s);
        }
        self.delete_acked_segments(false);
        if self.stale_acks() > self.acked_live + ACK_COMPACT_SLACK {
            // The acks are durable already; a failed compaction is retried later.
            if let Err(e) = self.compact_acks() {
                tracing::warn!(error = %e, "could not compact the spool ack log");
            }
        }
        Ok(new.len())
    }

    /// Pending seqs in increasing order, from the in-memory index (no I/O).
    pub fn pending(&self) -> Vec<u64> {
        self.pending_iter().collect()
    }

    /// Like [`pending`](Self::pending) without allocating: pending seqs in
    /// increasing order.
    pub fn pending_iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.segments.iter().flat_map(|seg| {
            (0..seg.slots.len())
                .filter(|&i| !seg.acked[i])
                .map(|i| seg.seq(i))
        })
    }

    /// Reads one pending entry's bytes from disk; `None` if `seq` is not
    /// pending (never appended, acked, or dropped).
    pub fn read(&self, seq: u64) -> Result<Option<Vec<u8>>, SpoolError> {
        let Some((si, i)) = self.locate(seq) else {
            return Ok(None);
        };
        let seg = &self.segments[si];
        if seg.acked[i] {
            return Ok(None);
        }
        let offset = u64::from(seg.slots[i].offset);
        let len = seg.payload_len(i);
        let path = self.segment_path(seg.first_seq);
        let corrupt = |reason| SpoolError::Corrupt {
            path: path.clone(),
            seq,
            offset,
            reason,
        };
        let mut file = File::open(&path).map_err(|e| disk::io_err(&path, "open", e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| disk::io_err(&path, "seek in", e))?;
        let mut hdr = [0u8; RECORD_HEADER as usize];
        let mut payload = vec![0u8; usize::try_from(len).map_err(|_| corrupt("too long"))?];
        let read = file
            .read_exact(&mut hdr)
            .and_then(|()| file.read_exact(&mut payload));
        match read {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                return Err(corrupt("the file is shorter than when it was opened"));
            }
            Err(e) => return Err(disk::io_err(&path, "read", e)),
        }
        let h = format::decode_header(&hdr);
        if u64::from(h.len) != len || h.seq != seq {
            return Err(corrupt(
                "the record header changed since the spool was opened",
            ));
        }
        if format::record_crc(h.len, h.seq, &payload) != h.crc {
            return Err(corrupt("checksum mismatch"));
        }
        Ok(Some(payload))
    }

    /// The lowest pending seq, if any.
    pub fn oldest_pending(&self) -> Option<u64> {
        self.pending_iter().next()
    }

    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            pending: self.pending,
            pending_bytes: self.pending_bytes,
            disk_bytes: self.segment_bytes + self.ack_records * ACK_RECORD + STATE_LEN + MARK_LEN,
            dropped_total: self.dropped_total,
        }
    }

    /// The largest payload a single append accepts.
    fn max_payload_len(&self) -> u64 {
        self.cfg
            .max_bytes
            .saturating_sub(STATE_LEN + MARK_LEN + RECORD_HEADER + ACK_RECORD + SEAL_LEN)
            .min(format::MAX_PAYLOAD)
    }

    fn segment_path(&self, first_seq: u64) -> PathBuf {
        self.cfg.dir.join(format::segment_name(first_seq))
    }

    fn locate(&self, seq: u64) -> Option<(usize, usize)> {
        let si = self
            .segments
            .partition_point(|s| s.first_seq <= seq)
            .checked_sub(1)?;
        Some((si, self.segments[si].find(seq)?))
    }

    fn is_pending(&self, seq: u64) -> bool {
        self.locate(seq)
            .is_some_and(|(si, i)| !self.segments[si].acked[i])
    }

    /// In-memory bookkeeping of one ack already in the ack log.
    fn mark_acked(&mut self, seq: u64) {
        let Some((si, i)) = self.locate(seq) else {
            return;
        };
        let seg = &mut self.segments[si];
        if seg.acked[i] {
            return;
        }
        seg.acked[i] = true;
        seg.live -= 1;
        self.pending -= 1;
        self.pending_bytes -= seg.payload_len(i);
        self.acked_live += 1;
    }

    fn active_file(&mut self) -> Result<&mut File, SpoolError> {
        let first_seq = newest_first_seq(&self.segments);
        let path = self.segment_path(first_seq);
        match &mut self.active {
            Some(f) => Ok(f),
            slot @ None => {
                let f = sobre_base::files::private_options()
                    .append(true)
                    .open(&path)
                    .map_err(|e| disk::io_err(&path, "open", e))?;
                Ok(slot.insert(f))
            }
        }
    }

    fn ack_file(&mut self) -> Result<&mut File, SpoolError> {
        let path = self.cfg.dir.join(format::ACKS_FILE);
        match &mut self.acks {
            Some(f) => Ok(f),
            slot @ None => {
                let f = sobre_base::files::private_options()
                    .append(true)
                    .create(true)
                    .open(&path)
                    .map_err(|e| disk::io_err(&path, "open", e))?;
                Ok(slot.insert(f))
            }
        }
    }
}

/// First seq of the newest segment (0 if there is none; callers check).
fn newest_first_seq(segments: &VecDeque<Segment>) -> u64 {
    segments.back().map_or(0, |s| s.first_seq)
}
