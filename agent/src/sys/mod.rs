//! What differs between Linux and Windows, at the bottom of the agent:
//! names as bytes, a file's identity, who runs the agent. Everything above
//! calls these and stays the same on both.
//!
//! Windows calls go through Microsoft's `windows-sys` bindings in
//! [`win`], the one module of the agent allowed `unsafe` (each call with
//! the invariant it relies on); Linux needs none here.

#[cfg(any(windows, test))]
pub(crate) mod dirinfo;
pub(crate) mod name;
#[cfg(windows)]
pub(crate) mod win;

use std::fs::Metadata;
use std::io;
use std::path::Path;

/// A file as the scan and the clean-up identify it: on Linux its device
/// and inode; on Windows its volume serial number and NTFS file id (the
/// same for every hard link, like an inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ident {
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    pub mtime_ns: i64,
}

/// `path`'s identity, its last link not followed.
pub(crate) fn ident(path: &Path, md: &Metadata) -> io::Result<Ident> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let _ = path;
        Ok(Ident {
            dev: md.dev(),
            ino: md.ino(),
            nlink: md.nlink(),
            mtime_ns: md
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(md.mtime_nsec()),
        })
    }
    #[cfg(windows)]
    {
        let _ = md;
        win::ident(path)
    }
}

/// Replaces `dst` with `src` atomically, and durably: on Linux a rename
/// (the caller syncs the folder); on Windows a move written through to
/// the disk before it returns.
pub(crate) fn rename_durable(src: &Path, dst: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::rename(src, dst)
    }
    #[cfg(windows)]
    {
        win::rename_durable(src, dst)
    }
}

/// Makes the creations, renames and deletions in `dir` durable: on Linux
/// an fsync of the folder; on Windows nothing to do (a folder cannot be
/// flushed; NTFS journals its entries and [`rename_durable`] writes
/// through).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir).and_then(|d| d.sync_all())
    }
    #[cfg(windows)]
    {
        let _ = dir;
        Ok(())
    }
}

/// Whether the agent runs with the machine's rights: root on Linux; on
/// Windows, as a service (LocalSystem) or from an elevated prompt.
pub(crate) fn privileged() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false)
    }
    #[cfg(windows)]
    {
        win::elevated()
    }
}

/// Where the agent keeps its state (spool, index, key, nudges) unless
/// configured: `/var/lib/sobre-agent` on Linux; `%ProgramData%\Sobre` on
/// Windows (`C:\ProgramData\Sobre` when the variable is unset), beside
/// the service's `agent.toml`.
pub(crate) fn state_dir() -> std::path::PathBuf {
    #[cfg(unix)]
    {
        std::path::PathBuf::from("/var/lib/sobre-agent")
    }
    #[cfg(windows)]
    {
        let base = std::env::var_os("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
        std::path::PathBuf::from(base).join("Sobre")
    }
}

/// The lowest CPU and I/O priority, for the Windows service.
#[cfg(windows)]
pub(crate) fn background_priority() -> io::Result<()> {
    win::background_priority()
}

/// Nanoseconds since 1970 from a Windows FILETIME (100 ns since 1601).
#[cfg_attr(unix, allow(dead_code))]
pub(crate) fn filetime_ns(ft: u64) -> i64 {
    const UNIX_EPOCH_100NS: i64 = 116_444_736_000_000_000;
    i64::try_from(ft)
        .unwrap_or(i64::MAX)
        .saturating_sub(UNIX_EPOCH_100NS)
        .saturating_mul(100)
}

#[cfg(test)]
mod tests {
    #[test]
    fn filetime_of_the_unix_epoch_is_zero() {
        assert_eq!(super::filetime_ns(116_444_736_000_000_000), 0);
        assert_eq!(super::filetime_ns(116_444_736_000_000_001), 100);
        assert!(super::filetime_ns(0) < 0);
    }
}
