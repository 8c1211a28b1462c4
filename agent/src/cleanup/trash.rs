//! The freedesktop.org trash (Trash spec 1.0): `files/` holds the moved
//! entry, `info/<name>.trashinfo` its original path and deletion date, on
//! the same filesystem (the home trash, else `<mount>/.Trash-<uid>`), so a
//! move is a rename and desktops can restore it too. Never a copy, never a
//! delete.

use std::fs;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;

use sobre_base::files;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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

fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> TrashError + 'a {
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
            let f = files::private_options()
                .write(true)
                .create_new(true)
                .open(&info_file);
            let mut f = match f {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&info_file, "create")(e)),
            };
            if fs::symlink_metadata(&dst).is_ok() {
                drop(f);
                let _ = fs::remove_file(&info_file);
                continue;
            }
            f.write_all(text.as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(io(&info_file, "write"))?;
            if let Err(e) = fs::rename(path, &dst) {
                let _ = fs::remove_file(&info_file);
                return Err(io(path, "move to the trash")(e));
            }
            return Ok(Trashed {
                original: path.to_path_buf(),
                file: dst,
                info: info_file,
            });
        }
        Err(TrashError::Exists {
            path: files.join(name),
        })
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
        assert!(matches!(
            Trash::restore(&ta),
            Err(TrashError::Exists { .. })
        ));
        assert_eq!(fs::read(&a).expect("read"), b"new");
        Trash::restore(&tb).expect("restore b");
        assert_eq!(fs::read(&b).expect("read"), b.as_os_str().as_bytes());
        assert!(!tb.info.exists() && !tb.file.exists());
    }
}
