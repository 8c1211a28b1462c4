//! Who is at the machine: the USER_PROCESS records of utmp, and the idle
//! time of their terminals computed like `w` does (now − the tty's atime).

use crate::sys::name::os_str;
use std::path::{Component, Path};
use std::time::SystemTime;

/// Size of one glibc `struct utmp` record on x86_64 (and 32-bit targets,
/// where `ut_session` and `ut_tv` are 32-bit as well).
pub(crate) const RECORD_LEN: usize = 384;
/// `ut_type` of a logged-in user's session.
pub(crate) const USER_PROCESS: i16 = 7;
/// `ut_type`: a session that ended (its line is free).
#[cfg(test)]
pub(crate) const DEAD_PROCESS: i16 = 8;

// Offsets into a record. ut_type is a `short` followed by 2 bytes of padding.
const TYPE: usize = 0;
const LINE: std::ops::Range<usize> = 8..40;
const USER: std::ops::Range<usize> = 44..76;

/// Seconds without input after which a session no longer counts as active.
pub(crate) const ACTIVE_IDLE_LIMIT_S: u32 = 600;

/// Logged-in users, from utmp and `/dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sessions {
    /// Number of USER_PROCESS records.
    pub count: u32,
    /// Smallest idle time over those sessions' terminals that could be
    /// stat'ed; `None` when there is no session or no such terminal.
    pub idle_s: Option<u32>,
}

impl Sessions {
    /// A person is using the machine: a session exists and, where the idle
    /// time is known, there was input within the last 10 minutes.
    pub(crate) fn user_active(&self) -> bool {
        self.count > 0 && self.idle_s.is_none_or(|s| s < ACTIVE_IDLE_LIMIT_S)
    }
}

/// The terminal lines (`ut_line`, e.g. `pts/0`, `tty1`, `:0`) of the
/// USER_PROCESS records in a utmp file's contents. A trailing partial
/// record (a write in progress) is ignored.
pub(crate) fn user_lines(utmp: &[u8]) -> Vec<&[u8]> {
    utmp.chunks_exact(RECORD_LEN)
        .filter(|rec| i16::from_ne_bytes([rec[TYPE], rec[TYPE + 1]]) == USER_PROCESS)
        // `w` and `who` skip records without a user name too.
        .filter(|rec| rec[USER.start] != 0)
        .map(|rec| until_nul(&rec[LINE]))
        .collect()
}

/// Counts the sessions of `utmp` and their smallest terminal idle time at
/// `now`, stat'ing `dev/<ut_line>`.
pub(crate) fn sessions(utmp: &[u8], dev: &Path, now: SystemTime) -> Sessions {
    let lines = user_lines(utmp);
    let idle_s = lines
        .iter()
        .filter_map(|line| tty_idle_s(dev, line, now))
        .min();
    Sessions {
        count: u32::try_from(lines.len()).unwrap_or(u32::MAX),
        idle_s,
    }
}

/// Seconds since `dev/<line>` was last read (its atime moves on input), or
/// `None` when `line` is not a plain relative path or cannot be stat'ed
/// (X sessions have `:0`, which is no device).
fn tty_idle_s(dev: &Path, line: &[u8], now: SystemTime) -> Option<u32> {
    let rel = os_str(line);
    let rel = Path::new(&*rel);
    let plain = !line.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return None;
    }
    let atime = std::fs::metadata(dev.join(rel)).ok()?.accessed().ok()?;
    // An atime in the future (clock stepped back) is "just now".
    let idle = now.duration_since(atime).unwrap_or_default().as_secs();
    Some(u32::try_from(idle).unwrap_or(u32::MAX))
}

fn until_nul(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::fs::{File, FileTimes};
    use std::time::Duration;

    /// One glibc x86_64 utmp record.
    pub(crate) fn record(ut_type: i16, line: &str, user: &str) -> Vec<u8> {
        let mut rec = vec![0u8; RECORD_LEN];
        rec[TYPE..TYPE + 4].copy_from_slice(&i32::from(ut_type).to_ne_bytes());
        rec[4..8].copy_from_slice(&1234i32.to_ne_bytes());
        rec[LINE.start..LINE.start + line.len()].copy_from_slice(line.as_bytes());
        rec[USER.start..USER.start + user.len()].copy_from_slice(user.as_bytes());
        rec[76..76 + 9].copy_from_slice(b"10.0.0.1\0");
        rec
    }

    /// Sets the access time of `path`.
    pub(crate) fn set_atime(path: &Path, atime: SystemTime) {
        File::options()
            .write(true)
            .open(path)
            .expect("open tty fixture")
            .set_times(FileTimes::new().set_accessed(atime))
            .expect("set atime");
    }

    #[test]
    fn counts_only_user_process_records() {
        let mut utmp = record(USER_PROCESS, "pts/0", "alice");
        utmp.extend(record(DEAD_PROCESS, "pts/1", ""));
        utmp.extend(record(USER_PROCESS, "tty1", "bob"));
        utmp.extend(record(2, "~", "reboot")); // BOOT_TIME
        utmp.extend(&[7, 0, 0]); // torn trailing record
        let lines = user_lines(&utmp);
        assert_eq!(lines, vec![b"pts/0".as_slice(), b"tty1".as_slice()]);
    }

    #[test]
    fn full_width_line_without_nul() {
        let line = "x".repeat(32);
        let utmp = record(USER_PROCESS, &line, "carol");
        assert_eq!(user_lines(&utmp), vec![line.as_bytes()]);
    }

    #[test]
    fn idle_is_the_smallest_tty_idle_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dev = dir.path();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        crate::probe::fixture::write(&dev.join("pts/0"), "");
        crate::probe::fixture::write(&dev.join("tty1"), "");
        set_atime(&dev.join("pts/0"), now - Duration::from_secs(900));
        set_atime(&dev.join("tty1"), now - Duration::from_secs(120));

        let mut utmp = record(USER_PROCESS, "pts/0", "alice");
        utmp.extend(record(USER_PROCESS, "tty1", "bob"));
        utmp.extend(record(USER_PROCESS, ":0", "carol")); // X, no device
        utmp.extend(record(DEAD_PROCESS, "pts/2", ""));
        let s = sessions(&utmp, dev, now);
        assert_eq!(
            s,
            Sessions {
                count: 3,
                idle_s: Some(120)
            }
        );
        assert!(s.user_active());

        // Only the 15-minute idle terminal: a session, but nobody there.
        let s = sessions(&record(USER_PROCESS, "pts/0", "alice"), dev, now);
        assert_eq!(s.idle_s, Some(900));
        assert!(!s.user_active());
    }

    #[test]
    fn unknown_idle_with_a_session_is_active() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = SystemTime::now();
        let s = sessions(&record(USER_PROCESS, ":0", "carol"), dir.path(), now);
        assert_eq!(
            s,
            Sessions {
                count: 1,
                idle_s: None
            }
        );
        assert!(s.user_active());
        let none = sessions(&[], dir.path(), now);
        assert_eq!(none, Sessions::default());
        assert!(!none.user_active());
    }

    #[test]
    fn lines_escaping_dev_are_not_stated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dev = dir.path().join("dev");
        crate::probe::fixture::write(&dir.path().join("secret"), "");
        crate::probe::fixture::write(&dev.join("tty1"), "");
        let now = SystemTime::now();
        assert_eq!(tty_idle_s(&dev, b"../secret", now), None);
        assert_eq!(tty_idle_s(&dev, b"/etc/passwd", now), None);
        assert_eq!(tty_idle_s(&dev, b"", now), None);
        assert!(tty_idle_s(&dev, b"tty1", now).is_some());
    }
}
