//! Freeing space: deleting acked or dropped segments, compacting the ack log,
//! and the budget that keeps the spool within `max_bytes`.

use std::fs;
use std::io::ErrorKind;

use super::format::{self, ACK_RECORD, MARK_LEN, SEAL_LEN, STATE_LEN, State};
use super::{Segment, Spool, SpoolError, disk};

impl Spool {
    pub(super) fn stale_acks(&self) -> u64 {
        self.ack_records - self.acked_live
    }

    /// What the bound is checked against: each record is charged the ack it
    /// may get later, so acks can never push the files over `max_bytes`.
    pub(super) fn budget_used(&self) -> u64 {
        self.segment_bytes
            + self.unsealed * SEAL_LEN
            + (self.records + self.stale_acks()) * ACK_RECORD
            + STATE_LEN
            + MARK_LEN
    }

    pub(super) fn state(&self) -> State {
        State {
            next_seq: self.reserved,
            dropped_total: self.dropped_total,
            dropped_below: self.dropped_below,
        }
    }

    pub(super) fn write_state(&self) -> Result<(), SpoolError> {
        disk::write_state(&self.cfg.dir, &self.state(), self.cfg.fsync)
    }

    /// Forgets segment `si` (its file is already gone or going).
    pub(super) fn forget_segment(&mut self, si: usize) -> Option<Segment> {
        let seg = self.segments.remove(si)?;
        let n = seg.slots.len() as u64;
        self.records -= n;
        self.segment_bytes -= seg.bytes;
        if !seg.sealed {
            self.unsealed -= 1;
        }
        self.acked_live -= n - seg.live;
        self.pending -= seg.live;
        self.pending_bytes -= (0..seg.slots.len())
            .filter(|&i| !seg.acked[i])
            .map(|i| seg.payload_len(i))
            .sum::<u64>();
        if si == self.segments.len() {
            self.active = None;
            self.roll_next = false;
        }
        Some(seg)
    }

    /// Deletes a segment file; false (with a warning) if it is still there.
    pub(super) fn delete_segment_file(&self, first_seq: u64) -> bool {
        let path = self.segment_path(first_seq);
        match fs::remove_file(&path) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => true,
            Err(e) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "could not delete a spool segment; will retry"
                );
                false
            }
        }
    }

    /// Deletes every fully acked segment. The newest one is kept unless
    /// `newest_too` (its highest seq would otherwise only live in `state`,
    /// and it is about to receive the next append anyway).
    pub(super) fn delete_acked_segments(&mut self, newest_too: bool) {
        let mut deleted = false;
        let mut si = 0;
        while si < self.segments.len() {
            let newest = si + 1 == self.segments.len();
            if self.segments[si].live > 0 || (newest && !newest_too) {
                si += 1;
                continue;
            }
            if newest {
                self.active = None; // closed before deleting: needed on Windows
                // The one before becomes the newest: sealed, its end stays
                // known (the mark's end is beyond it).
                if let Some(before) = si.checked_sub(1) {
                    self.seal(before);
                }
            }
            if self.delete_segment_file(self.segments[si].first_seq) {
                self.forget_segment(si);
                deleted = true;
            } else {
                // Kept in the index, and so its acks in the ack log: a
                // compaction must not resurrect its entries at the next open.
                si += 1;
            }
        }
        if deleted
            && self.cfg.fsync
            && let Err(e) = disk::sync_dir(&self.cfg.dir)
        {
            tracing::warn!(error = %e, "could not fsync the spool directory");
        }
    }

    /// Deletes the oldest segments until `need` more bytes fit in
    /// `max_bytes`, counting their unacked entries as dropped.
    pub(super) fn make_room(&mut self, need: u64) -> Result<(), SpoolError> {
        let max = self.cfg.max_bytes;
        if self.budget_used() + need <= max {
            return Ok(());
        }
        // Compaction removes every stale ack, so plan without them.
        let mut used = self.budget_used() - self.stale_acks() * ACK_RECORD;
        let mut count = 0;
        let mut dropped = 0;
        while used + need > max && count < self.segments.len() {
            let seg = &self.segments[count];
            used -= seg.bytes + seg.slots.len() as u64 * ACK_RECORD;
            if !seg.sealed {
                used -= SEAL_LEN;
            }
            dropped += seg.live;
            count += 1;
        }
        if count > 0 {
            let state = State {
                dropped_total: self.dropped_total + dropped,
                dropped_below: self.segments[count - 1].last_seq() + 1,
                ..self.state()
            };
            // Persist the drop before deleting: after a crash in between (or
            // if a deletion fails), the next open deletes the segments
            // without counting them again.
            disk::write_state(&self.cfg.dir, &state, self.cfg.fsync)?;
            self.dropped_total = state.dropped_total;
            self.dropped_below = state.dropped_below;
            self.write_mark();
            for _ in 0..count {
                if let Some(seg) = self.forget_segment(0) {
                    self.delete_segment_file(seg.first_seq);
                }
            }
            tracing::warn!(
                dir = %self.cfg.dir.display(),
                dropped,
                segments = count,
                dropped_total = self.dropped_total,
                max_bytes = max,
                "spool full: deleted the oldest entries"
            );
            if self.cfg.fsync {
                disk::sync_dir(&self.cfg.dir)?;
            }
        }
        if self.budget_used() + need > max {
            self.compact_acks()?;
        }
        Ok(())
    }

    /// Rewrites the ack log with only the acks of entries still on disk.
    pub(super) fn compact_acks(&mut self) -> Result<(), SpoolError> {
        let mut buf = Vec::with_capacity((self.acked_live * ACK_RECORD) as usize);
        for seg in &self.segments {
            for i in (0..seg.slots.len()).filter(|&i| seg.acked[i]) {
                buf.extend_from_slice(&format::encode_ack(seg.seq(i)));
            }
        }
        // Closed first: some platforms cannot replace an open file.
        self.acks = None;
        disk::replace_file(&self.cfg.dir, format::ACKS_FILE, &buf, self.cfg.fsync)?;
        self.ack_records = self.acked_live;
        self.acks_torn = false;
        Ok(())
    }
}
