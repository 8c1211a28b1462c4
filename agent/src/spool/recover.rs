//! Opening a spool: every valid record is kept (a damaged region is
//! skipped, not everything after it), every record that cannot be read is
//! counted as dropped, damaged segments are rewritten clean, and the next
//! seq is above every seq that may have been handed out.

use std::collections::VecDeque;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use sobre_base::files;

use super::append::RESERVE_BLOCK;
use super::format::{self, State};
use super::scan::{self, Frame, SegmentScan};
use super::{
    MAX_SEGMENT, MIN_MAX_BYTES, MIN_SEGMENT, Segment, Slot, Spool, SpoolConfig, SpoolError, disk,
};

/// The first seq of a spool without any state: the Unix time in ms × 1000.
pub(super) fn clock_seq_floor() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    ms.saturating_mul(1000)
}

/// What the small files said at open.
struct Books {
    state: Option<State>,
    mark: Option<format::Mark>,
    /// Both mark slots were valid.
    mark_whole: bool,
    /// Acked seqs, in ack-log order.
    acked: Vec<u64>,
    /// The same, sorted and deduplicated, to count lost seqs.
    acked_sorted: Vec<u64>,
}

impl Books {
    /// One past the last seq whose append returned. With one slot of the
    /// mark damaged, the other may be one write behind: one more.
    fn mark_end(&self) -> Option<u64> {
        let behind = u64::from(!self.mark_whole);
        self.mark.map(|m| m.end.saturating_add(behind))
    }

    /// Seqs in `[lo, hi)` that were not acked: records lost there.
    fn unacked(&self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return 0;
        }
        let a = &self.acked_sorted;
        let acked = a.partition_point(|&s| s < hi) - a.partition_point(|&s| s < lo);
        (hi - lo) - acked as u64
    }
}

/// One segment file after its scan: what to keep, and what it lost.
struct Planned {
    first_seq: u64,
    frames: Vec<Frame>,
    sealed: Option<u64>,
    /// Unacked records it held that cannot be read.
    lost: u64,
    /// Rewrite it as its valid records, sealed or not.
    rewrite: Option<bool>,
    /// Remove the file (nothing in it to keep).
    delete: bool,
}

impl Spool {
    /// See [`Spool::open`].
    pub(super) fn recover(cfg: SpoolConfig) -> Result<Spool, SpoolError> {
        if cfg.max_bytes < MIN_MAX_BYTES {
            return Err(SpoolError::MaxBytesTooSmall {
                dir: cfg.dir,
                max_bytes: cfg.max_bytes,
                min: MIN_MAX_BYTES,
            });
        }
        files::create_private_dir(&cfg.dir)
            .and_then(|()| files::tighten_dir(&cfg.dir))
            .map_err(|err| SpoolError::CreateDir {
                path: cfg.dir.clone(),
                err,
            })?;
        let dir = cfg.dir.clone();
        let names = list_segments(&dir)?;
        let books = read_books(&dir, cfg.fsync)?;
        let dropped_below = books.state.map_or(0, |s| s.dropped_below);
        // Without a mark, the segments were written by a version that did
        // not seal them.
        let sealed_from = books.mark.map_or(u64::MAX, |m| m.sealed_from);

        let mut plans = Vec::with_capacity(names.len());
        for (i, &first_seq) in names.iter().enumerate() {
            let path = dir.join(format::segment_name(first_seq));
            if first_seq < dropped_below {
                // Recorded as dropped in `state` but not deleted before a crash.
                fs::remove_file(&path).map_err(|e| disk::io_err(&path, "delete", e))?;
                continue;
            }
            let next = names.get(i + 1).copied();
            let bytes = fs::read(&path).map_err(|e| disk::io_err(&path, "read", e))?;
            let limit = next.unwrap_or(first_seq.saturating_add(1 << 32));
            let found = scan::scan(&bytes, first_seq, limit);
            let plan = plan(first_seq, found, next, &books, sealed_from);
            if plan.lost > 0 || plan.rewrite.is_some() {
                tracing::warn!(
                    path = %path.display(),
                    kept = plan.frames.len(),
                    lost = plan.lost,
                    "spool segment is damaged (torn write, disk error or truncation); its \
                     readable records are kept and the unacked ones it lost are counted as \
                     dropped"
                );
            }
            plans.push(plan);
        }

        let next_seq = next_seq(&names, &plans, &books);
        let lost: u64 = plans.iter().fold(0, |n, p| n.saturating_add(p.lost));
        let dropped_total = books
            .state
            .map_or(0, |s| s.dropped_total)
            .max(books.mark.map_or(0, |m| m.dropped_total))
            .saturating_add(lost);
        let segment_target = (cfg.max_bytes / 8)
            .clamp(MIN_SEGMENT, MAX_SEGMENT)
            .min(cfg.max_bytes / 4);
        let mut spool = Spool {
            segment_target,
            segments: VecDeque::with_capacity(plans.len()),
            active: None,
            roll_next: false,
            acks: None,
            acks_torn: false,
            ack_records: books.acked.len() as u64,
            acked_live: 0,
            records: 0,
            segment_bytes: 0,
            pending: 0,
            pending_bytes: 0,
            next_seq,
            reserved: next_seq.saturating_add(RESERVE_BLOCK),
            appended_end: books.mark.map_or(next_seq, |m| m.end.max(next_seq)),
            unsealed: 0,
            mark: None,
            mark_generation: books.mark.map_or(0, |m| m.generation),
            mark_failed: false,
            sealed_from: books.mark.map_or(next_seq, |m| m.sealed_from),
            dropped_total,
            dropped_below,
            cfg,
        };
        // The count and the reservation are durable before any damaged
        // segment is rewritten (a crash in between can only count twice),
        // and an unwritable directory fails here.
        spool.write_state()?;
        spool.write_mark();
        spool.write_mark();
        for plan in plans {
            spool.apply(plan)?;
        }
        if let Some(seg) = spool.segments.back()
            && seg.last_seq().checked_add(1) != Some(spool.next_seq)
        {
            // The reservation moved seqs on: the next record starts a segment.
            let newest = spool.segments.len() - 1;
            spool.seal(newest);
        }
        for &seq in &books.acked {
            spool.mark_acked(seq);
        }
        // The state holds the highest seq: even the newest segment may go.
        spool.delete_acked_segments(true);
        spool.make_room(0)?;
        if spool.ack_records > spool.acked_live {
            spool.compact_acks()?;
        }
        tracing::info!(
            dir = %spool.cfg.dir.display(),
            pending = spool.pending,
            next_seq = spool.next_seq,
            dropped_total = spool.dropped_total,
            lost_at_open = lost,
            "spool opened"
        );
        Ok(spool)
    }

    /// Carries out a segment's plan and adds it to the index.
    fn apply(&mut self, plan: Planned) -> Result<(), SpoolError> {
        let path = self.segment_path(plan.first_seq);
        if plan.delete {
            return fs::remove_file(&path).map_err(|e| disk::io_err(&path, "delete", e));
        }
        let mut sealed = plan.sealed.is_some();
        let mut slots = Vec::with_capacity(plan.frames.len());
        let mut bytes = 0u64;
        if let Some(seal) = plan.rewrite {
            let old = fs::read(&path).map_err(|e| disk::io_err(&path, "read", e))?;
            let mut clean = Vec::with_capacity(old.len());
            for f in &plan.frames {
                slots.push(slot(plan.first_seq, f.seq, clean.len() as u64));
                clean.extend_from_slice(&old[f.offset as usize..f.end() as usize]);
            }
            if let (true, Some(last)) = (seal, plan.frames.last()) {
                clean.extend(format::encode_seal(last.seq));
            }
            sealed = seal;
            bytes = clean.len() as u64;
            let name = format::segment_name(plan.first_seq);
            disk::replace_file(&self.cfg.dir, &name, &clean, self.cfg.fsync)?;
        } else {
            for f in &plan.frames {
                slots.push(slot(plan.first_seq, f.seq, f.offset));
                bytes = f.end();
            }
            if sealed {
                bytes += format::SEAL_LEN;
            }
        }
        let n = slots.len();
        self.records += n as u64;
        self.segment_bytes += bytes;
        self.pending += n as u64;
        self.unsealed += u64::from(!sealed);
        let seg = Segment {
            first_seq: plan.first_seq,
            slots,
            acked: vec![false; n],
            live: n as u64,
            bytes,
            sealed,
        };
        self.pending_bytes += (0..n).map(|i| seg.payload_len(i)).sum::<u64>();
        self.segments.push_back(seg);
        Ok(())
    }
}

/// The index entry of a frame the scan proved indexable.
fn slot(first_seq: u64, seq: u64, offset: u64) -> Slot {
    Slot {
        delta: u32::try_from(seq - first_seq).unwrap_or(u32::MAX),
        offset: u32::try_from(offset).unwrap_or(u32::MAX),
    }
}

/// Decides what segment `first_seq` lost and how to repair it. Records
/// in a segment have consecutive seqs, so a damaged region between two
/// valid records lost exactly the seqs between them. Where the segment's
/// records end is told by its seal, else for the newest one by the mark
/// (one past the last successful append), else for a sealing version's
/// segment by the next segment's first seq; an older version's unsealed
/// segment that ends cleanly is taken as complete.
fn plan(
    first_seq: u64,
    found: SegmentScan,
    next: Option<u64>,
    books: &Books,
    sealed_from: u64,
) -> Planned {
    let newest = next.is_none();
    let last = found.last_seq();
    let mut lost = 0u64;
    for &(after, before) in &found.holes {
        let lo = after.map_or(first_seq, |a| a.saturating_add(1));
        lost = lost.saturating_add(books.unacked(lo, before));
    }
    let end = match (found.seal, next) {
        (Some(seal), _) => Some(seal),
        (None, None) => books.mark_end().map(|e| e.saturating_sub(1)),
        (None, Some(n)) if first_seq >= sealed_from || found.damaged_tail > 0 => {
            Some(n.saturating_sub(1))
        }
        (None, Some(_)) => None,
    };
    let tail_from = last.map_or(first_seq, |l| l.saturating_add(1));
    let tail = match end {
        Some(e) => books.unacked(tail_from, e.saturating_add(1).min(next.unwrap_or(u64::MAX))),
        // The newest segment without a readable mark: its damaged tail held
        // at least one record.
        None if newest && found.damaged_tail > 0 => 1,
        None => 0,
    };
    lost = lost.saturating_add(tail);
    let lost_seal = !newest && found.seal.is_none() && first_seq >= sealed_from;
    let rewrite = (found.damaged() || tail > 0 || lost_seal).then_some(!newest || tail > 0);
    Planned {
        first_seq,
        delete: found.frames.is_empty(),
        frames: found.frames,
        sealed: found.seal,
        lost,
        rewrite,
    }
}

/// Above every seq that may have been handed out: in segment names and
/// records, in the ack log and the mark's end; the state's reservation
/// when the mark is not whole, and the clock when there is no state.
fn next_seq(names: &[u64], plans: &[Planned], books: &Books) -> u64 {
    let found = plans
        .iter()
        .flat_map(|p| p.frames.last().map(|f| f.seq).into_iter().chain(p.sealed))
        .chain(names.last().copied())
        .chain(books.acked_sorted.last().copied())
        .max()
        .map_or(0, |h| h.saturating_add(1));
    let next = found.max(books.mark_end().unwrap_or(0));
    match (books.state, books.mark_whole) {
        // Both slots of the mark are intact: its end is exact (it is
        // written after each record, and removed if a write fails), so a
        // restart leaves no gap in the seqs.
        (Some(_), true) => next,
        (Some(st), false) => {
            if books.mark.is_some() {
                tracing::warn!("spool mark file is damaged; seqs continue from the reservation");
            }
            next.max(st.next_seq)
        }
        (None, _) => next.max(clock_seq_floor()),
    }
}

/// Segment files by first seq; deletes leftover temp files and takes group
/// and other access away from files an older version made.
fn list_segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut names = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| disk::io_err(dir, "list", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| disk::io_err(dir, "list", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.ends_with(format::TMP_EXT) {
            fs::remove_file(&path).map_err(|e| disk::io_err(&path, "delete", e))?;
            continue;
        }
        if let Err(e) = files::tighten_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot make a spool file owner-only");
        }
        if let Some(first) = format::parse_segment_name(name) {
            names.push(first);
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Reads the state, the mark and the ack log (cutting a torn ack-log tail).
fn read_books(dir: &Path, fsync: bool) -> Result<Books, SpoolError> {
    let state = match disk::read_state(dir)? {
        disk::StateRead::Valid(st) => Some(st),
        disk::StateRead::Missing => None,
        disk::StateRead::Corrupt => {
            tracing::warn!(
                path = %dir.join(format::STATE_FILE).display(),
                "spool state file is corrupt: seqs continue from the mark file and the clock"
            );
            None
        }
    };
    let (mark, mark_whole) = disk::read_mark(dir)?.unwrap_or((None, false));
    let acks_path = dir.join(format::ACKS_FILE);
    let ack_bytes = match fs::read(&acks_path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(disk::io_err(&acks_path, "read", e)),
    };
    let (acked, valid) = format::decode_acks(&ack_bytes);
    if valid < ack_bytes.len() as u64 {
        tracing::warn!(
            path = %acks_path.display(),
            offset = valid,
            discarded_bytes = ack_bytes.len() as u64 - valid,
            "spool ack log has a torn or corrupt tail; truncating it (the entries whose acks \
             were lost will be sent again)"
        );
        disk::truncate(&acks_path, valid, fsync)?;
    }
    let mut acked_sorted = acked.clone();
    acked_sorted.sort_unstable();
    acked_sorted.dedup();
    Ok(Books {
        state,
        mark,
        mark_whole,
        acked,
        acked_sorted,
    })
}
