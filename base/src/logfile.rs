//! A log file that cannot fill the disk: appended to, owner-only, and
//! when it reaches its cap renamed to `NAME.1` (the one older file kept)
//! before a new one starts. For a Windows service, which has no stderr;
//! at most twice the cap on disk.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The log file and how much it may hold; `Write` for the logger (wrap it
/// in a `Mutex` for `tracing_subscriber`).
#[derive(Debug)]
pub struct CappedLog {
    path: PathBuf,
    cap: u64,
    file: File,
    len: u64,
}

impl CappedLog {
    /// Opens `path` for appending (created owner-only if new); it is
    /// rotated once it holds `cap` bytes.
    pub fn open(path: &Path, cap: u64) -> io::Result<CappedLog> {
        let file = crate::files::private_options()
            .append(true)
            .create(true)
            .open(path)?;
        let len = file.metadata()?.len();
        Ok(CappedLog {
            path: path.to_path_buf(),
            cap: cap.max(1),
            file,
            len,
        })
    }

    /// The older file a rotation keeps.
    pub fn older(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        // The open file is renamed (std opens files shareable for delete,
        // so this works on Windows too), then a new one takes its place.
        let _ = std::fs::remove_file(self.older());
        std::fs::rename(&self.path, self.older())?;
        self.file = crate::files::private_options()
            .append(true)
            .create(true)
            .open(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

impl Write for CappedLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.len > 0 && self.len + buf.len() as u64 > self.cap {
            // A log line is worth less than the disk: if the rotation
            // fails, keep writing to the file as it is.
            if self.rotate().is_err() {
                self.len = 0;
            }
        }
        let n = self.file.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_at_its_cap_and_keeps_one_older_file() {
        let dir = tempfile::tempdir().expect("test io");
        let path = dir.path().join("agent.log");
        let mut log = CappedLog::open(&path, 100).expect("test io");
        for i in 0..50 {
            log.write_all(format!("line {i:02} of the log\n").as_bytes())
                .expect("write");
        }
        let now = std::fs::read_to_string(&path).expect("test io");
        let older = std::fs::read_to_string(log.older()).expect("test io");
        assert!(now.len() <= 100 && older.len() <= 100, "{now:?} {older:?}");
        assert!(now.ends_with("line 49 of the log\n"), "{now:?}");
        assert!(older.ends_with("line 44 of the log\n"), "{older:?}");
        let files = std::fs::read_dir(dir.path()).expect("test io").count();
        assert_eq!(files, 2, "one log and one older file, no more");
    }

    #[test]
    fn a_reopened_log_counts_what_it_already_holds() {
        let dir = tempfile::tempdir().expect("test io");
        let path = dir.path().join("agent.log");
        std::fs::write(&path, [b'x'; 90]).expect("test io");
        let mut log = CappedLog::open(&path, 100).expect("test io");
        log.write_all(b"0123456789abcdef\n").expect("test io");
        assert_eq!(std::fs::read(log.older()).expect("test io").len(), 90);
        assert_eq!(
            std::fs::read(&path).expect("test io"),
            b"0123456789abcdef\n"
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_log_is_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("test io");
        let path = dir.path().join("agent.log");
        let mut log = CappedLog::open(&path, 10).expect("test io");
        log.write_all(b"first line\nsecond\n").expect("test io");
        log.write_all(b"third\n").expect("test io");
        for p in [path.clone(), log.older()] {
            let mode = std::fs::metadata(&p).expect("test io").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", p.display());
        }
    }
}
