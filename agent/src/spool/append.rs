//! Appending: the seq reservation, the record write, the seal of the
//! segment a new one closes, and the mark that follows every append.
//!
//! Records in one segment have consecutive seqs: an append whose seq does
//! not follow the newest record (a seq spent by a failed append, a jump
//! at open) starts a new segment. Recovery relies on it to count what a
//! damaged region held.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};

use sobre_base::files;

use super::format::{self, ACK_RECORD, MARK_SLOT, Mark, RECORD_HEADER, SEAL_LEN, State};
use super::{Segment, Slot, Spool, SpoolError, disk};

/// Seqs reserved by one write of the state file: the state is rewritten
/// once per this many appends, and a crash wastes at most this many seqs.
pub(super) const RESERVE_BLOCK: u64 = 1024;

impl Spool {
    /// Assigns the next seq, calls `build(seq, floor)` to get the bytes,
    /// appends them durably (fsync if `cfg.fsync`) and returns the seq.
    ///
    /// `floor` is the lowest seq still pending once this entry is appended:
    /// the oldest unacked entry, or `seq` itself if there is none. It is
    /// computed before `build` runs, so if this append then has to drop the
    /// oldest segments to stay within `max_bytes`, `floor` may name a dropped
    /// seq: it is never above the true floor, which is what a collector
    /// forgetting its dedup state below `floor` needs.
    ///
    /// The seq is spent even if the append fails: seqs are never reused.
    /// Before a seq outside the reservation is used, the state file
    /// reserves the next [`RESERVE_BLOCK`] seqs.
    pub fn append(&mut self, build: impl FnOnce(u64, u64) -> Vec<u8>) -> Result<u64, SpoolError> {
        let seq = self.next_seq;
        let next = seq.checked_add(1).ok_or_else(|| SpoolError::SeqExhausted {
            dir: self.cfg.dir.clone(),
        })?;
        if seq >= self.reserved {
            self.reserve(seq)?;
        }
        self.next_seq = next;
        let floor = self.oldest_pending().unwrap_or(seq);
        let payload = build(seq, floor);

        let max_len = self.max_payload_len();
        let len = payload.len() as u64;
        let len32 = u32::try_from(len).ok().filter(|_| len <= max_len);
        let Some(len32) = len32 else {
            return Err(SpoolError::TooLarge {
                dir: self.cfg.dir.clone(),
                len,
                max_bytes: self.cfg.max_bytes,
                max_len,
            });
        };
        let record_len = RECORD_HEADER + len;
        // A new segment's seal is budgeted from its creation.
        self.make_room(record_len + ACK_RECORD + SEAL_LEN)?;

        let record = format::encode_record(seq, len32, &payload);
        drop(payload);
        let tail = self.tail_slot(seq, record_len);
        match tail {
            Some(slot) => self.append_to_tail(slot, &record)?,
            None => self.append_new_segment(seq, &record)?,
        }
        self.records += 1;
        self.segment_bytes += record_len;
        self.pending += 1;
        self.pending_bytes += len;
        self.appended_end = next;
        self.write_mark();
        if tail.is_none() {
            // The previous segment is no longer the newest: free it if acked.
            self.delete_acked_segments(false);
        }
        Ok(seq)
    }

    /// Where `seq` goes in the newest segment, if it may go there: it is
    /// unsealed, `seq` follows its last record, and the record fits.
    fn tail_slot(&self, seq: u64, record_len: u64) -> Option<Slot> {
        let s = self.segments.back()?;
        let follows = s.last_seq().checked_add(1) == Some(seq);
        let fits = s.bytes + record_len <= self.segment_target;
        let delta = u32::try_from(seq - s.first_seq).ok()?;
        let offset = u32::try_from(s.bytes).ok()?;
        (follows && fits && !s.sealed && !self.roll_next).then_some(Slot { delta, offset })
    }

    fn append_to_tail(&mut self, slot: Slot, record: &[u8]) -> Result<(), SpoolError> {
        let path = self.segment_path(super::newest_first_seq(&self.segments));
        let fsync = self.cfg.fsync;
        let file = match self.active_file() {
            Ok(f) => f,
            Err(e) => {
                self.roll_next = true;
                return Err(e);
            }
        };
        let written = file
            .write_all(record)
            .and_then(|()| if fsync { file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            // Keep the file a sequence of whole records for the next append.
            if file.set_len(u64::from(slot.offset)).is_err() {
                self.active = None;
                self.roll_next = true;
            }
            return Err(disk::io_err(&path, "append to", e));
        }
        if let Some(seg) = self.segments.back_mut() {
            seg.slots.push(slot);
            seg.acked.push(false);
            seg.live += 1;
            seg.bytes += record.len() as u64;
        }
        Ok(())
    }

    fn append_new_segment(&mut self, seq: u64, record: &[u8]) -> Result<(), SpoolError> {
        if let Some(newest) = self.segments.len().checked_sub(1) {
            self.seal(newest);
        }
        let path = self.segment_path(seq);
        let mut file = files::private_options()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| disk::io_err(&path, "create", e))?;
        let fsync = self.cfg.fsync;
        let written = file
            .write_all(record)
            .and_then(|()| if fsync { file.sync_data() } else { Ok(()) })
            .map_err(|e| disk::io_err(&path, "append to", e))
            .and_then(|()| {
                if fsync {
                    disk::sync_dir(&self.cfg.dir)
                } else {
                    Ok(())
                }
            });
        if let Err(e) = written {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.segments.push_back(Segment {
            first_seq: seq,
            slots: vec![Slot {
                delta: 0,
                offset: 0,
            }],
            acked: vec![false],
            live: 1,
            bytes: record.len() as u64,
            sealed: false,
        });
        self.unsealed += 1;
        self.active = Some(file);
        self.roll_next = false;
        Ok(())
    }

    /// Closes segment `si` with a seal naming its last seq, so that a later
    /// loss of its tail is seen and counted. A failure only costs that
    /// precision (logged); the segment gets no more appends either way.
    pub(super) fn seal(&mut self, si: usize) {
        let Some(seg) = self.segments.get(si) else {
            return;
        };
        if seg.sealed {
            return;
        }
        if si + 1 == self.segments.len() {
            self.active = None;
            self.roll_next = true;
        }
        let (at, path) = (seg.bytes, self.segment_path(seg.first_seq));
        let seal = format::encode_seal(seg.last_seq());
        let fsync = self.cfg.fsync;
        let written = files::private_options()
            .write(true)
            .open(&path)
            .and_then(|mut f| {
                f.seek(SeekFrom::Start(at))?;
                f.write_all(&seal)?;
                f.set_len(at + SEAL_LEN)?;
                if fsync { f.sync_data() } else { Ok(()) }
            });
        match written {
            Ok(()) => {
                if let Some(seg) = self.segments.get_mut(si) {
                    seg.sealed = true;
                    seg.bytes += SEAL_LEN;
                }
                self.segment_bytes += SEAL_LEN;
                self.unsealed -= 1;
            }
            Err(e) => {
                let _ = fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(at));
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "could not seal a spool segment; a later loss of its tail could be \
                     over-counted"
                );
            }
        }
    }

    /// Moves the reservation past `seq` before `seq` is used.
    fn reserve(&mut self, seq: u64) -> Result<(), SpoolError> {
        let reserved = seq.saturating_add(RESERVE_BLOCK);
        let state = State {
            next_seq: reserved,
            ..self.state()
        };
        disk::write_state(&self.cfg.dir, &state, self.cfg.fsync)?;
        self.reserved = reserved;
        Ok(())
    }

    /// Writes the next slot of the mark file (the end of what was appended
    /// and the drop counter). A failure is logged once; the reservation
    /// still guarantees that no seq is reused, only the count of a later
    /// loss may be short.
    pub(super) fn write_mark(&mut self) {
        self.mark_generation += 1;
        let mark = Mark {
            generation: self.mark_generation,
            end: self.appended_end,
            dropped_total: self.dropped_total,
            sealed_from: self.sealed_from,
        };
        let at = (self.mark_generation % 2) * MARK_SLOT;
        let path = self.cfg.dir.join(format::MARK_FILE);
        let fsync = self.cfg.fsync;
        let written = match &mut self.mark {
            Some(f) => write_slot(f, at, &mark.encode(), fsync),
            slot @ None => files::private_options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .and_then(|mut f| {
                    write_slot(&mut f, at, &mark.encode(), fsync)?;
                    *slot = Some(f);
                    Ok(())
                }),
        };
        match written {
            Ok(()) => self.mark_failed = false,
            Err(e) => {
                // A stale mark must not be trusted at the next open: without
                // it, seqs continue from the reservation there.
                self.mark = None;
                let _ = fs::remove_file(&path);
                if !self.mark_failed {
                    tracing::warn!(
                        path = %path.display(),
                        error = %e,
                        "could not update the spool's mark file; records lost later may not \
                         all be counted"
                    );
                }
                self.mark_failed = true;
            }
        }
    }
}

fn write_slot(f: &mut File, at: u64, bytes: &[u8], fsync: bool) -> std::io::Result<()> {
    f.seek(SeekFrom::Start(at))?;
    f.write_all(bytes)?;
    if fsync { f.sync_data() } else { Ok(()) }
}
