//! The one place that creates Sobre's files and folders: folders 0700,
//! files 0600, set explicitly so that the inherited umask does not matter
//! (a umask of 0 would otherwise leave a key world-readable). Both
//! binaries call [`restrict_umask`] first thing, so that files made by
//! libraries (SQLite's `-wal` and `-shm`, rustls' key logs, temporary
//! files) are owner-only too; the functions here do not rely on it.
//!
//! On Windows, modes do not exist: a folder Sobre creates gets an
//! owner-only ACL instead (`acl`), which the files made in it inherit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// The mode of every folder Sobre creates.
pub const DIR_MODE: u32 = 0o700;
/// The mode of every file Sobre creates.
pub const FILE_MODE: u32 = 0o600;

/// The umask the process started with, kept by [`restrict_umask`]
/// (`u32::MAX`: not called).
static INHERITED_UMASK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(u32::MAX);

/// Makes every file and folder this process creates from now on
/// owner-only, whatever umask it was started with. Returns the old umask,
/// which [`inherited_umask`] keeps.
pub fn restrict_umask() -> u32 {
    #[cfg(unix)]
    {
        use rustix::fs::Mode;
        let old = rustix::process::umask(Mode::from_raw_mode(0o077)).bits() as u32;
        let _ = INHERITED_UMASK.compare_exchange(
            u32::MAX,
            old,
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
        );
        old
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// The umask of whoever started the process (before [`restrict_umask`]),
/// or 022 if it was never called: what the person's own `mkdir` would use.
pub fn inherited_umask() -> u32 {
    match INHERITED_UMASK.load(std::sync::atomic::Ordering::Relaxed) {
        u32::MAX => 0o022,
        m => m,
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
    #[cfg(windows)]
    crate::acl::protect(dir)?;
    Ok(())
}

/// Creates `dir` and any missing parents, each new one 0700, and leaves
/// every folder that already exists as it is: for the folder of a file
/// Sobre keeps somewhere it does not own (the parent of the spool, a
/// trash can).
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    create_missing(dir, DIR_MODE)
}

/// Creates `dir` and any missing parents the way the person who started
/// the process would have: mode 0777 minus their umask (not Sobre's
/// 077). For folders of the person's own, such as the parent of a file put
/// back from the trash.
pub fn create_dir_as_user(dir: &Path) -> io::Result<()> {
    create_missing(dir, 0o777 & !inherited_umask())
}

/// Creates the missing folders down to `dir`, each set to `mode` whatever
/// the umask; existing ones are not touched.
fn create_missing(dir: &Path, mode: u32) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while fs::symlink_metadata(at).is_err() {
        missing.push(at);
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => break,
        }
    }
    for d in missing.into_iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {
                #[cfg(unix)]
                set_mode(d, mode)?;
                #[cfg(windows)]
                if mode == DIR_MODE {
                    crate::acl::protect(d)?;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    #[cfg(not(unix))]
    let _ = mode;
    if !fs::metadata(dir)?.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} is not a folder", dir.display()),
        ));
    }
    Ok(())
}

/// Copies `from` to a new `to`, 0600 (not `from`'s mode), synced.
pub fn copy_private(from: &Path, to: &Path) -> io::Result<u64> {
    let mut src = File::open(from)?;
    let _ = fs::remove_file(to);
    let mut dst = create_private_new(to)?;
    let n = io::copy(&mut src, &mut dst)?;
    dst.sync_all()?;
    Ok(n)
}

/// Takes group and other access away from an existing folder of Sobre's
/// own (a data dir made by an older version with 0755). Never widens.
pub fn tighten_dir(dir: &Path) -> io::Result<()> {
    tighten(dir)
}

/// Takes group and other access away from an existing file of Sobre's
/// (a store or spool made by an older version with 0644).
pub fn tighten_file(path: &Path) -> io::Result<()> {
    match tighten(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Group and other bits off `path`, with one `stat`.
fn tighten(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            set_mode(path, mode & 0o700)?;
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Open options that create a file 0600 (and nothing wider whatever the
/// umask). Add `.write(true)`, `.append(true)`, `.create(true)` or
/// `.create_new(true)` as needed.
pub fn private_options() -> OpenOptions {
    #[cfg_attr(not(unix), allow(unused_mut))]
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
    fn kept_folders_are_left_alone_and_the_persons_get_their_umask() {
        let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        let d = tempfile::tempdir().expect("tempdir");
        set_mode(d.path(), 0o755).expect("chmod");
        ensure_private_dir(&d.path().join("x/y")).expect("mkdir");
        // Never called restrict_umask here: the person's umask is 022.
        create_dir_as_user(&d.path().join("home/docs")).expect("mkdir");
        let f = d.path().join("x/copy");
        fs::write(d.path().join("src"), b"abc").expect("write");
        set_mode(&d.path().join("src"), 0o644).expect("chmod");
        assert_eq!(copy_private(&d.path().join("src"), &f).expect("copy"), 3);
        rustix::process::umask(old);
        assert_eq!(mode(d.path()), 0o755, "an existing folder is not changed");
        assert_eq!(mode(&d.path().join("x")), 0o700);
        assert_eq!(mode(&d.path().join("x/y")), 0o700);
        assert_eq!(mode(&d.path().join("home")), 0o755);
        assert_eq!(mode(&d.path().join("home/docs")), 0o755);
        assert_eq!(mode(&f), 0o600);
        assert_eq!(fs::read(&f).expect("read"), b"abc");
        assert!(
            ensure_private_dir(&d.path().join("src")).is_err(),
            "a file is not a folder"
        );
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
