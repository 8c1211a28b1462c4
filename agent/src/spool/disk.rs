//! File-level helpers of the spool: error mapping, atomic replacement,
//! directory fsync, and reading the small files at open.

use std::fs::{self, OpenOptions};
use std::io::{self, ErrorKind};
use std::path::Path;

use super::SpoolError;
use super::format::{self, Mark, State, TMP_EXT};

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
    crate::sys::sync_dir(dir).map_err(|e| io_err(dir, "fsync the spool directory", e))
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
    let written = sobre_base::files::create_private(&tmp).and_then(|mut f| {
        io::Write::write_all(&mut f, bytes)?;
        if fsync { f.sync_data() } else { Ok(()) }
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_err(&tmp, "write", e));
    }
    if let Err(e) = crate::sys::rename_durable(&tmp, &dst) {
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

/// The mark file's current slot and whether both were valid; `None` when
/// the file is missing.
pub(super) fn read_mark(dir: &Path) -> Result<Option<(Option<Mark>, bool)>, SpoolError> {
    let path = dir.join(format::MARK_FILE);
    match fs::read(&path) {
        Ok(b) => Ok(Some(format::decode_mark(&b))),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&path, "read", e)),
    }
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
