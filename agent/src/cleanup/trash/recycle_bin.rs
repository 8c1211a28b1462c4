//! Windows' Recycle Bin, written the way Explorer writes it, so that
//! Explorer lists, restores and empties what a clean-up moved there:
//! `<volume>\$Recycle.Bin\<user's SID>\` holds the entry renamed
//! `$R<six characters><extension>` and, beside it, `$I<same>`: format 2
//! (Windows 10 and later), little-endian: version 2 (8 bytes), the size
//! (8), the deletion time as a FILETIME (8), the original path's length
//! in UTF-16 units with its NUL (4), then the path in UTF-16 with its
//! NUL. The move is a rename on the same volume: never a copy.

use super::{TrashError, Trashed, io, move_with_info};
use sobre_base::files;
use std::fs;
use std::os::windows::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The user's Recycle Bin folders (one per volume).
#[derive(Debug, Clone)]
pub struct Trash {
    /// The folder to use on every volume (tests, `--trash-dir`), or None:
    /// `<volume>\$Recycle.Bin\<sid>`.
    fixed: Option<PathBuf>,
    sid: String,
}

impl Trash {
    /// The Recycle Bin of the user running the agent.
    pub fn for_user() -> Option<Trash> {
        let sid = crate::sys::win::user_sid().ok()?;
        Some(Trash { fixed: None, sid })
    }

    /// Entries go to `dir` whatever their volume (tests, `--trash-dir`).
    pub fn at(dir: PathBuf) -> Trash {
        Trash {
            fixed: Some(dir),
            sid: String::new(),
        }
    }

    fn can_for(&self, path: &Path) -> PathBuf {
        if let Some(d) = &self.fixed {
            return d.clone();
        }
        let root: PathBuf = path
            .components()
            .take_while(|c| matches!(c, Component::Prefix(_) | Component::RootDir))
            .collect();
        root.join("$Recycle.Bin").join(&self.sid)
    }

    /// Moves `path` (a file, link or empty folder) to the Recycle Bin.
    pub fn put(&self, path: &Path) -> Result<Trashed, TrashError> {
        let md = fs::symlink_metadata(path).map_err(io(path, "examine"))?;
        let can = self.can_for(path);
        files::ensure_private_dir(&can).map_err(io(&can, "create the Recycle Bin folder"))?;
        let ext = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let record = info_record(path, md.len(), SystemTime::now());
        for _ in 0..10_000 {
            let id: String = (0..6)
                .map(|_| char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"[fastrand::usize(..36)]))
                .collect();
            let dst = can.join(format!("$R{id}{ext}"));
            let info_file = can.join(format!("$I{id}{ext}"));
            if let Some(t) = move_with_info(path, dst, info_file, &record)? {
                return Ok(t);
            }
        }
        Err(TrashError::Exists { path: can })
    }
}

/// The `$I` record of `path` (format 2).
fn info_record(path: &Path, size: u64, at: SystemTime) -> Vec<u8> {
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let filetime = 116_444_736_000_000_000u64
        .saturating_add(since.as_secs().saturating_mul(10_000_000))
        .saturating_add(u64::from(since.subsec_nanos() / 100));
    let mut r = Vec::with_capacity(28 + 2 * wide.len());
    r.extend_from_slice(&2u64.to_le_bytes());
    r.extend_from_slice(&size.to_le_bytes());
    r.extend_from_slice(&filetime.to_le_bytes());
    r.extend_from_slice(&u32::try_from(wide.len()).unwrap_or(u32::MAX).to_le_bytes());
    for u in wide {
        r.extend_from_slice(&u.to_le_bytes());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::super::restore;
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_info_record_is_explorers_format_2() {
        let at = UNIX_EPOCH + Duration::from_secs(1);
        let r = info_record(Path::new(r"C:\a.txt"), 5, at);
        assert_eq!(&r[0..8], &2u64.to_le_bytes());
        assert_eq!(&r[8..16], &5u64.to_le_bytes());
        assert_eq!(&r[16..24], &116_444_736_010_000_000u64.to_le_bytes());
        assert_eq!(&r[24..28], &9u32.to_le_bytes());
        assert_eq!(r.len(), 28 + 18);
        assert_eq!(&r[28..30], &[b'C', 0]);
    }

    #[test]
    fn put_and_restore_never_clobber() {
        let dir = tempfile::tempdir().expect("tempdir");
        let trash = Trash::at(dir.path().join("bin"));
        let a = dir.path().join("x").join("rapport.pdf");
        fs::create_dir_all(a.parent().expect("parent")).expect("mkdir");
        fs::write(&a, b"report").expect("write");
        let t = trash.put(&a).expect("put");
        assert!(!a.exists());
        let name = t
            .file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("$R") && name.ends_with(".pdf"), "{name}");
        assert_eq!(fs::read(&t.info).expect("info")[0..8], 2u64.to_le_bytes());
        fs::write(&a, b"new").expect("write");
        assert!(matches!(restore(&t), Err(TrashError::Exists { .. })));
        fs::remove_file(&a).expect("rm");
        restore(&t).expect("restore");
        assert_eq!(fs::read(&a).expect("read"), b"report");
        assert!(!t.info.exists() && !t.file.exists());
    }
}
