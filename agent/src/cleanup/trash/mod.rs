//! The trash a clean-up moves entries to, never a copy, never a delete:
//! on Linux the freedesktop.org trash (`freedesktop`), on Windows the
//! Recycle Bin (`recycle_bin`); both keep where each entry came from, so
//! the desktop can put it back, and so can `cleanup --undo`.

#[cfg(unix)]
mod freedesktop;
#[cfg(unix)]
pub use freedesktop::{Trash, deletion_date};
#[cfg(windows)]
mod recycle_bin;
#[cfg(windows)]
pub use recycle_bin::Trash;

use sobre_base::files;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrashError {
    #[error("cannot {op} {path}: {err}")]
    Io {
        path: PathBuf,
        op: &'static str,
        err: io::Error,
    },
    #[error("{path} already exists: not overwritten (move it away, then undo again)")]
    Exists { path: PathBuf },
}

pub(crate) fn io<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(io::Error) -> TrashError + 'a {
    move |err| TrashError::Io {
        path: path.to_owned(),
        op,
        err,
    }
}

/// Where one moved entry went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trashed {
    pub original: PathBuf,
    pub file: PathBuf,
    pub info: PathBuf,
}

/// Moves `path` to `dst` with its `record` in `info`: the info file is
/// created first, exclusively, which reserves the name; then written and
/// synced, then the entry renamed. None: the name is taken (the caller
/// tries another); a failed move removes the info file again.
fn move_with_info(
    path: &Path,
    dst: PathBuf,
    info: PathBuf,
    record: &[u8],
) -> Result<Option<Trashed>, TrashError> {
    use std::io::Write;
    let mut f = match files::private_options()
        .write(true)
        .create_new(true)
        .open(&info)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(io(&info, "create")(e)),
    };
    if fs::symlink_metadata(&dst).is_ok() {
        drop(f);
        let _ = fs::remove_file(&info);
        return Ok(None);
    }
    f.write_all(record)
        .and_then(|_| f.sync_all())
        .map_err(io(&info, "write"))?;
    drop(f);
    if let Err(e) = fs::rename(path, &dst) {
        let _ = fs::remove_file(&info);
        return Err(io(path, "move to the trash")(e));
    }
    Ok(Some(Trashed {
        original: path.to_path_buf(),
        file: dst,
        info,
    }))
}

/// Puts a trashed entry back where it was, never over something new.
pub fn restore(t: &Trashed) -> Result<(), TrashError> {
    if fs::symlink_metadata(&t.original).is_ok() {
        return Err(TrashError::Exists {
            path: t.original.clone(),
        });
    }
    if let Some(parent) = t.original.parent() {
        // A folder of the person's, gone meanwhile: made as their own
        // mkdir would (their umask), not private like Sobre's files.
        files::create_dir_as_user(parent).map_err(io(parent, "recreate"))?;
    }
    let md = fs::symlink_metadata(&t.file).map_err(io(&t.file, "find in the trash"))?;
    if md.is_dir() {
        fs::rename(&t.file, &t.original).map_err(io(&t.original, "restore"))?;
    } else {
        // A hard link fails if the name was taken meanwhile: no clobbering.
        fs::hard_link(&t.file, &t.original).map_err(|err| {
            if err.kind() == io::ErrorKind::AlreadyExists {
                TrashError::Exists {
                    path: t.original.clone(),
                }
            } else {
                io(&t.original, "restore")(err)
            }
        })?;
        fs::remove_file(&t.file).map_err(io(&t.file, "remove from the trash"))?;
    }
    match fs::remove_file(&t.info) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(&t.info, "remove")(e)),
    }
}

/// RFC 2396 escaping of a path, byte by byte (non-UTF-8 names survive).
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~/!*'()".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}
