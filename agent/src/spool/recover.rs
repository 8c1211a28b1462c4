//! Opening a spool: recovery of torn tails, replay of the ack log, and the
//! choice of the next seq.

use std::collections::VecDeque;
use std::fs;
use std::io::ErrorKind;
use std::time::{SystemTime, UNIX_EPOCH};

use super::format;
use super::{
    MAX_SEGMENT, MIN_MAX_BYTES, MIN_SEGMENT, Segment, Spool, SpoolConfig, SpoolError, disk,
};

/// The first seq of a spool without any state: the Unix time in ms × 1000.
pub(super) fn clock_seq_floor() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    ms.saturating_mul(1000)
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
        fs::create_dir_all(&cfg.dir).map_err(|err| SpoolError::CreateDir {
            path: cfg.dir.clone(),
            err,
        })?;
        let dir = cfg.dir.clone();
        let state = match disk::read_state(&dir)? {
            disk::StateRead::Valid(st) => Some(st),
            disk::StateRead::Missing => None,
            disk::StateRead::Corrupt => {
                tracing::warn!(
                    path = %dir.join(format::STATE_FILE).display(),
                    "spool state file is corrupt: dropped_total restarts at 0 and seqs continue \
                     from the clock"
                );
                None
            }
        };
        let dropped_below = state.map_or(0, |s| s.dropped_below);

        let mut names = Vec::new();
        let entries = fs::read_dir(&dir).map_err(|e| disk::io_err(&dir, "list", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| disk::io_err(&dir, "list", e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(format::TMP_EXT) {
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| disk::io_err(&path, "delete", e))?;
            } else if let Some(first) = format::parse_segment_name(name) {
                names.push(first);
            }
        }
        names.sort_unstable();

        let mut highest = names.last().copied();
        let mut segments = VecDeque::with_capacity(names.len());
        let mut last_valid: Option<u64> = None;
        for first_seq in names {
            let path = dir.join(format::segment_name(first_seq));
            let scan = disk::scan_segment(&path, first_seq, last_valid)?;
            if let Some(reason) = scan.problem {
                tracing::warn!(
                    path = %path.display(),
                    offset = scan.valid_len,
                    discarded_bytes = scan.file_len - scan.valid_len,
                    reason,
                    "spool segment has a torn or corrupt tail (agent killed while writing?); \
                     truncating it, the complete records before it are kept"
                );
                disk::truncate(&path, scan.valid_len, cfg.fsync)?;
            }
            let Some(last_seq) = scan.last_seq else {
                // Created but never written to: a crash right after creation.
                fs::remove_file(&path).map_err(|e| disk::io_err(&path, "delete", e))?;
                continue;
            };
            last_valid = Some(last_seq);
            if last_seq < dropped_below {
                // Recorded as dropped in `state` but not deleted before a crash.
                fs::remove_file(&path).map_err(|e| disk::io_err(&path, "delete", e))?;
                continue;
            }
            let n = scan.slots.len();
            segments.push_back(Segment {
                first_seq,
                slots: scan.slots,
                acked: vec![false; n],
                live: n as u64,
                bytes: scan.valid_len,
            });
        }
        highest = highest.max(last_valid);

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
            disk::truncate(&acks_path, valid, cfg.fsync)?;
        }
        drop(ack_bytes);
        highest = highest.max(acked.iter().copied().max());

        let derived = highest.map_or(0, |h| h.saturating_add(1));
        let next_seq = match state {
            Some(st) => st.next_seq.max(derived),
            None => derived.max(clock_seq_floor()),
        };
        let segment_target = (cfg.max_bytes / 8)
            .clamp(MIN_SEGMENT, MAX_SEGMENT)
            .min(cfg.max_bytes / 4);
        let mut spool = Spool {
            segment_target,
            segments,
            active: None,
            roll_next: false,
            acks: None,
            acks_torn: false,
            ack_records: acked.len() as u64,
            acked_live: 0,
            records: 0,
            segment_bytes: 0,
            pending: 0,
            pending_bytes: 0,
            next_seq,
            dropped_total: state.map_or(0, |s| s.dropped_total),
            dropped_below,
            cfg,
        };
        for seg in &spool.segments {
            spool.records += seg.slots.len() as u64;
            spool.segment_bytes += seg.bytes;
            spool.pending += seg.live;
            spool.pending_bytes += (0..seg.slots.len())
                .map(|i| seg.payload_len(i))
                .sum::<u64>();
        }
        for seq in acked {
            spool.mark_acked(seq);
        }

        // Records that this directory is initialized and the seq high-water
        // mark, and fails early if the directory is not writable.
        spool.write_state()?;
        // The state now holds the highest seq: even the newest segment may go.
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
            "spool opened"
        );
        Ok(spool)
    }
}
