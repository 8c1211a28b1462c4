//! File-level helpers of the spool: error mapping, atomic replacement,
//! directory fsync, and the scans that recovery runs at open.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, ErrorKind, Read};
use std::path::Path;

use super::format::{self, RECORD_HEADER, State, TMP_EXT};
use super::{Slot, SpoolError};

/// Maps an I/O failure on `path` to the [`SpoolError`] that tells the
/// operator what to do about it.
pub(super) fn io_err(path: &Path, op: &'static str, err: io::Error) -> SpoolError {
    let path = path.to_path_buf();
    match err.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded => SpoolError::DiskFull { path, op, err },
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            SpoolError::PermissionDenied { path, op, err }
        }
        _ => SpoolError::Io { path, op, err },
    }
}

/// Makes creations, renames and deletions in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(dir, "fsync the spool directory", e))
    }
    #[cfg(not(unix))]
    {
        // Directory handles cannot be fsynced portably; NTFS journals renames.
        let _ = dir;
        Ok(())
    }
}

/// Replaces `dir/name` with `bytes` atomically: a crash leaves either the old
/// or the new content, never a mix (temp file, fsync, rename, dir fsync).
pub(super) fn replace_file(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    fsync: bool,
) -> Result<(), SpoolError> {
    let tmp = dir.join(format!("{name}{TMP_EXT}"));
    let dst = dir.join(name);
    let written = File::create(&tmp).and_then(|mut f| {
        io::Write::write_all(&mut f, bytes)?;
        if fsync { f.sync_data() } else { Ok(()) }
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp, "write", e));
    }
    if let Err(e) = fs::rename(&tmp, &dst) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&dst, "replace", e));
    }
    if fsync {
        sync_dir(dir)?;
    }
    Ok(())
}

pub(super) fn write_state(dir: &Path, state: &State, fsync: bool) -> Result<(), SpoolError> {
    replace_file(dir, format::STATE_FILE, &state.encode(), fsync)
}

pub(super) enum StateRead {
    Missing,
    Corrupt,
    Valid(State),
}

pub(super) fn read_state(dir: &Path) -> Result<StateRead, SpoolError> {
    let path = dir.join(format::STATE_FILE);
    match fs::read(&path) {
        Ok(b) => Ok(State::decode(&b).map_or(StateRead::Corrupt, StateRead::Valid)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(StateRead::Missing),
        Err(e) => Err(io_err(&path, "read", e)),
    }
}

/// Cuts `path` back to `len` bytes (recovery of a torn tail).
pub(super) fn truncate(path: &Path, len: u64, fsync: bool) -> Result<(), SpoolError> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| {
            f.set_len(len)?;
            if fsync { f.sync_data() } else { Ok(()) }
        })
        .map_err(|e| io_err(path, "truncate the torn tail of", e))
}

pub(super) struct SegmentScan {
    pub slots: Vec<Slot>,
    pub last_seq: Option<u64>,
    /// Length of the prefix made of complete, valid records.
    pub valid_len: u64,
    pub file_len: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub problem: Option<&'static str>,
}

/// Reads a segment from the start and keeps every record up to the first
/// one that is incomplete, fails its checksum, or does not carry a seq
/// greater than `after` (the last valid seq of the previous segment) and at
/// least `first_seq` (from the file name). Payloads are checked and then
/// discarded: only the index is kept.
pub(super) fn scan_segment(
    path: &Path,
    first_seq: u64,
    after: Option<u64>,
) -> Result<SegmentScan, SpoolError> {
    let file = File::open(path).map_err(|e| io_err(path, "open", e))?;
    let file_len = file.metadata().map_err(|e| io_err(path, "stat", e))?.len();
    let mut r = BufReader::with_capacity(64 * 1024, file);
    let mut slots = Vec::new();
    let mut payload = Vec::new();
    let mut off = 0u64;
    let mut prev = after;
    let problem = loop {
        let left = file_len - off;
        if left == 0 {
            break None;
        }
        if left < RECORD_HEADER {
            break Some("incomplete record header (torn write)");
        }
        let mut hdr = [0u8; RECORD_HEADER as usize];
        r.read_exact(&mut hdr)
            .map_err(|e| io_err(path, "read", e))?;
        let h = format::decode_header(&hdr);
        if u64::from(h.len) > left - RECORD_HEADER {
            break Some("record runs past the end of the file (torn write)");
        }
        payload.resize(h.len as usize, 0);
        r.read_exact(&mut payload)
            .map_err(|e| io_err(path, "read", e))?;
        if format::record_crc(h.len, h.seq, &payload) != h.crc {
            break Some("checksum mismatch (torn or corrupt record)");
        }
        if h.seq < first_seq || prev.is_some_and(|p| h.seq <= p) {
            break Some("sequence number out of order");
        }
        // Never true for files this module wrote: a segment only grows past
        // its first record while it is under 1 MiB.
        let (Ok(delta), Ok(offset)) = (u32::try_from(h.seq - first_seq), u32::try_from(off)) else {
            break Some("record cannot be indexed (offset or seq gap over 2^32)");
        };
        slots.push(Slot { delta, offset });
        prev = Some(h.seq);
        off += RECORD_HEADER + u64::from(h.len);
    };
    Ok(SegmentScan {
        last_seq: slots.last().map(|s| first_seq + u64::from(s.delta)),
        slots,
        valid_len: off,
        file_len,
        problem,
    })
}
