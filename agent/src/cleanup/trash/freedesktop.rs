//! The freedesktop.org trash (Trash spec 1.0): `files/` holds the moved
//! entry, `info/<name>.trashinfo` its original path and deletion date, on
//! the same filesystem (the home trash, else `<mount>/.Trash-<uid>`), so a
//! move is a rename and desktops can restore it too. Never a copy, never a
//! delete.

use super::{TrashError, Trashed, io, move_with_info, percent_encode};
use sobre_base::files;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The user's trash cans.
#[derive(Debug, Clone)]
pub struct Trash {
    home: PathBuf,
    uid: u32,
}

impl Trash {
    /// `$XDG_DATA_HOME/Trash`, else `~/.local/share/Trash`.
    pub fn for_user() -> Option<Trash> {
        let data = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))?;
        Some(Trash::at(data.join("Trash")))
    }

    /// A home trash at `dir` (tests, `--trash-dir`).
    pub fn at(dir: PathBuf) -> Trash {
        let uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
        Trash { home: dir, uid }
    }

    /// The trash on `path`'s filesystem: the home trash when it is there,
    /// else `.Trash-<uid>` at the top of that filesystem. Returns the trash
    /// directory and whether `.trashinfo` paths are relative to its top.
    fn can_for(&self, dev: u64) -> Option<PathBuf> {
        let mut probe = self.home.as_path();
        loop {
            if let Ok(md) = fs::metadata(probe) {
                return (md.dev() == dev).then(|| self.home.clone());
            }
            probe = probe.parent()?;
        }
    }

    fn top_of(path: &Path, dev: u64) -> PathBuf {
        let mut top = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        while let Some(up) = top.parent() {
            match fs::metadata(up) {
                Ok(md) if md.dev() == dev => top = up.to_path_buf(),
                _ => break,
            }
        }
        top
    }

    /// Moves `path` (a file, link or empty folder) to the trash.
    pub fn put(&self, path: &Path) -> Result<Trashed, TrashError> {
        let md = fs::symlink_metadata(path).map_err(io(path, "examine"))?;
        let (can, info_path) = match self.can_for(md.dev()) {
            Some(home) => (home, path.to_path_buf()),
            None => {
                let top = Trash::top_of(path, md.dev());
                let rel = path.strip_prefix(&top).unwrap_or(path).to_path_buf();
                (top.join(format!(".Trash-{}", self.uid)), rel)
            }
        };
        let (files, info) = (can.join("files"), can.join("info"));
        for d in [&files, &info] {
            files::ensure_private_dir(d).map_err(io(d, "create the trash folder"))?;
        }
        let name = path.file_name().unwrap_or(path.as_os_str());
        let text = format!(
            "[Trash Info]\nPath={}\nDeletionDate={}\n",
            percent_encode(info_path.as_os_str().as_bytes()),
            deletion_date(SystemTime::now())
        );
        // The .trashinfo is created first, exclusively: it reserves the name.
        for n in 1u32..10_000 {
            let mut candidate = name.to_os_string();
            if n > 1 {
                candidate.push(format!(".{n}"));
            }
            let mut info_name = candidate.clone();
            info_name.push(".trashinfo");
            let (dst, info_file) = (files.join(&candidate), info.join(&info_name));
            if let Some(t) = move_with_info(path, dst, info_file, text.as_bytes())? {
                return Ok(t);
            }
        }
        Err(TrashError::Exists {
            path: files.join(name),
        })
    }
}

/// `YYYY-MM-DDThh:mm:ss` in UTC (the spec asks for local time; without a
/// time-zone database UTC is the honest choice, off by the zone offset).
pub fn deletion_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::civil::from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::super::{percent_decode, restore};
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_and_escapes() {
        let t = UNIX_EPOCH + Duration::from_secs(1_735_689_600 + 3661);
        assert_eq!(deletion_date(t), "2025-01-01T01:01:01");
        assert_eq!(
            deletion_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00"
        );
        let raw = b"/home/a/Copie de caf\xe9 100%.txt";
        let enc = percent_encode(raw);
        assert_eq!(enc, "/home/a/Copie%20de%20caf%E9%20100%25.txt");
        assert_eq!(percent_decode(&enc).as_deref(), Some(&raw[..]));
    }

    #[test]
    fn put_and_restore_with_name_clashes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let trash = Trash::at(dir.path().join("Trash"));
        let a = dir.path().join("x/rapport.pdf");
        let b = dir.path().join("y/rapport.pdf");
        for p in [&a, &b] {
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, p.as_os_str().as_bytes()).expect("write");
        }
        let ta = trash.put(&a).expect("put a");
        let tb = trash.put(&b).expect("put b");
        assert_eq!(ta.file, dir.path().join("Trash/files/rapport.pdf"));
        assert_eq!(tb.file, dir.path().join("Trash/files/rapport.pdf.2"));
        let info = fs::read_to_string(&tb.info).expect("info");
        assert!(info.starts_with("[Trash Info]\nPath="), "{info}");
        assert!(info.contains(&format!(
            "Path={}\n",
            percent_encode(b.as_os_str().as_bytes())
        )));
        assert!(!a.exists() && !b.exists());
        // Something new took a's place: not overwritten.
        fs::write(&a, b"new").expect("write");
        assert!(matches!(restore(&ta), Err(TrashError::Exists { .. })));
        assert_eq!(fs::read(&a).expect("read"), b"new");
        restore(&tb).expect("restore b");
        assert_eq!(fs::read(&b).expect("read"), b.as_os_str().as_bytes());
        assert!(!tb.info.exists() && !tb.file.exists());
    }
}
