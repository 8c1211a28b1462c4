//! The spool's error type: every message names the file or directory and
//! says what the operator can do about it.

use std::io;
use std::path::PathBuf;

/// Why a spool operation failed. `err` fields carry the OS error, which is
/// also part of the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    #[error(
        "spool max_bytes = {max_bytes} is too small for {dir}: it must be at least {min} bytes; \
         raise the spool's max_bytes in the agent configuration"
    )]
    MaxBytesTooSmall {
        dir: PathBuf,
        max_bytes: u64,
        min: u64,
    },
    #[error(
        "cannot create the spool directory {path}: {err}; make sure every parent is a \
         directory the agent's user may write to, or configure another spool directory"
    )]
    CreateDir { path: PathBuf, err: io::Error },
    #[error(
        "cannot {op} {path}: {err}; the spool directory must be readable and writable by the \
         agent's user (fix its ownership or permissions, remount it read-write, or configure \
         another spool directory)"
    )]
    PermissionDenied {
        path: PathBuf,
        op: &'static str,
        err: io::Error,
    },
    #[error(
        "cannot {op} {path}: the disk is full ({err}); free space on that filesystem or lower \
         the spool's max_bytes"
    )]
    DiskFull {
        path: PathBuf,
        op: &'static str,
        err: io::Error,
    },
    #[error("cannot {op} {path}: {err}; check the disk and the spool directory")]
    Io {
        path: PathBuf,
        op: &'static str,
        err: io::Error,
    },
    #[error(
        "an envelope of {len} bytes does not fit in the spool at {dir} (max_bytes = {max_bytes} \
         allows at most {max_len} bytes per envelope); raise max_bytes or send smaller envelopes"
    )]
    TooLarge {
        dir: PathBuf,
        len: u64,
        max_bytes: u64,
        max_len: u64,
    },
    #[error(
        "spool entry {seq} in {path} at offset {offset} is corrupt on disk ({reason}); it \
         cannot be read: ack it to discard it, and check the disk"
    )]
    Corrupt {
        path: PathBuf,
        seq: u64,
        offset: u64,
        reason: &'static str,
    },
    #[error("the spool at {dir} has used up all sequence numbers; wipe the directory")]
    SeqExhausted { dir: PathBuf },
}
