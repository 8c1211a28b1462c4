//! The one place that creates Sobre's files and folders: folders 0700,
//! files 0600, set explicitly so that the inherited umask does not matter
//! (a umask of 0 would otherwise leave a key world-readable). Both
//! binaries call [`restrict_umask`] first thing, so that files made by
//! libraries (SQLite's `-wal` and `-shm`, rustls' key logs, temporary
//! files) are owner-only too; the functions here do not rely on it.
//!
//! On Windows the folder's inherited ACL decides (the service's state
//! folder under `%ProgramData%` is restricted at install time).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// The mode of every folder Sobre creates.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file Sobre creates.
pub const FILE_MODE: u32 = 0o600;

/// Makes every file and folder this process creates from now on
/// owner-only, whatever umask it was started with. Returns the old umask.
pub fn restrict_umask() -> u32 {
    #[cfg(unix)]
    {
        use rustix::fs::Mode;
        rustix::process::umask(Mode::from_raw_mode(0o077)).bits() as u32
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// Creates `dir` and any missing parents, each new one 0700. A folder
/// that already exists is left as it is, except `dir` itself when Sobre
/// owns it: see [`tighten_dir`].
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(DIR_MODE);
    }
    b.create(dir)?;
    #[cfg(unix)]
    set_mode(dir, DIR_MODE)?;
    Ok(())
}

/// Takes group and other access away from an existing folder of Sobre's
/// own (a data dir made by an older version with 0755). Never widens.
pub fn tighten_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            set_mode(dir, mode & 0o700)?;
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Takes group and other access away from an existing file of Sobre's
/// (a store or spool made by an older version with 0644).
pub fn tighten_file(path: &Path) -> io::Result<()> {
    match fs::metadata(path) {
        Ok(_) => tighten_dir(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Open options that create a file 0600 (and nothing wider whatever the
/// umask). Add `.write(true)`, `.append(true)`, `.create(true)` or
/// `.create_new(true)` as needed.
pub fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(FILE_MODE);
    }
    o
}

/// Creates (or truncates) `path` for writing, 0600.
pub fn create_private(path: &Path) -> io::Result<File> {
    let f = private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    fix_file_mode(&f)?;
    Ok(f)
}

/// Creates `path` for writing, 0600; fails if it exists.
pub fn create_private_new(path: &Path) -> io::Result<File> {
    let f = private_options().write(true).create_new(true).open(path)?;
    fix_file_mode(&f)?;
    Ok(f)
}

/// Writes `bytes` to `path` atomically (a 0600 temporary file beside it,
/// synced, then renamed over it).
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let _ = fs::remove_file(tmp);
    let mut f = create_private_new(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)
}

/// A file opened with `private_options` keeps the mode it already had if
/// it existed: an older 0644 file is tightened here.
fn fix_file_mode(f: &File) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = f.metadata()?.permissions().mode() & 0o7777;
        if mode != FILE_MODE {
            f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
        }
    }
    #[cfg(not(unix))]
    let _ = f;
    Ok(())
}

#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).expect("stat").permissions().mode() & 0o7777
    }

    #[test]
    fn files_and_folders_are_owner_only_even_with_umask_zero() {
        let old = rustix::process::umask(rustix::fs::Mode::empty());
        let d = tempfile::tempdir().expect("tempdir");
        let nested = d.path().join("a/b/c");
        create_private_dir(&nested).expect("mkdir");
        let f = nested.join("key");
        create_private_new(&f).expect("create");
        let g = nested.join("state");
        write_private_atomic(&g, b"x").expect("write");
        rustix::process::umask(old);
        assert_eq!(mode(&d.path().join("a")), 0o700);
        assert_eq!(mode(&d.path().join("a/b")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&f), 0o600);
        assert_eq!(mode(&g), 0o600);
    }

    #[test]
    fn an_older_world_readable_file_is_tightened_on_open() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("old");
        fs::write(&f, b"x").expect("write");
        set_mode(&f, 0o644).expect("chmod");
        create_private(&f).expect("open");
        assert_eq!(mode(&f), 0o600);
        set_mode(d.path(), 0o755).expect("chmod");
        tighten_dir(d.path()).expect("tighten");
        assert_eq!(mode(d.path()), 0o700);
    }
}
