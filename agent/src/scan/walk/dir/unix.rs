//! Linux: reading one directory through descriptors: opened relative to its
//! parent's descriptor (one name to resolve, not a whole path), listed
//! with `getdents64` into one buffer per worker (no allocation per entry),
//! and each entry stat'ed relative to it with `statx`, asking only for
//! what the scan keeps. The listing's `d_type` spares stats: links and
//! special files need none (unless a link must be checked), folders none
//! either: `openat2` with `RESOLVE_NO_XDEV` refuses to enter another
//! filesystem, which is all their stat told (an empty one is stat'ed once
//! open, for its record). Only regular files, which need size, mtime,
//! inode and links, cost one `statx` each.
//!
//! Through `rustix`: safe wrappers over these calls, where `std` has no
//! `openat`, no `openat2`, no `statx` with a mask and no listing without an
//! allocation per name (the workspace denies `unsafe_code`).

use super::super::batch::{BIG_DIR, StatBatch};
use super::super::queue::Job;
use super::super::{Kind, Meta, Shared, add_file, issue};
use super::{DirFd, Reading};
use crate::scan::pace::Pacer;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, RawDir, ResolveFlags, StatxFlags};
use rustix::io::Errno;
use std::ffi::{CStr, OsStr};
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// The fields of a `statx` the scan uses.
const MASK: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::NLINK)
    .union(StatxFlags::INO)
    .union(StatxFlags::SIZE)
    .union(StatxFlags::MTIME);

/// Stats `name` in `dir` (following a last symbolic link if `follow`;
/// `more`: `AT_EMPTY_PATH` to stat `dir` itself).
pub(crate) fn stat_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    follow: bool,
    more: AtFlags,
) -> io::Result<Meta> {
    let flags = more
        | if follow {
            AtFlags::empty()
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
    match rustix::fs::statx(dir, name, flags, MASK) {
        Ok(s) => Ok(Meta {
            kind: kind(FileType::from_raw_mode(u32::from(s.stx_mode))),
            dev: rustix::fs::makedev(s.stx_dev_major, s.stx_dev_minor),
            ino: s.stx_ino,
            size: s.stx_size,
            mtime_ns: ns(s.stx_mtime.tv_sec, i64::from(s.stx_mtime.tv_nsec)),
            nlink: u64::from(s.stx_nlink),
        }),
        // Kernels before 4.11, or a sandbox that filters statx. (The
        // conversions: `struct stat`'s field types differ by architecture.)
        #[allow(clippy::useless_conversion)]
        Err(Errno::NOSYS) => {
            let s = rustix::fs::statat(dir, name, flags)?;
            Ok(Meta {
                kind: kind(FileType::from_raw_mode(s.st_mode)),
                dev: u64::from(s.st_dev),
                ino: u64::from(s.st_ino),
                size: u64::try_from(s.st_size).unwrap_or(0),
                mtime_ns: ns(
                    i64::from(s.st_mtime),
                    i64::try_from(s.st_mtime_nsec).unwrap_or(0),
                ),
                nlink: u64::from(s.st_nlink),
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn ns(sec: i64, nsec: i64) -> i64 {
    sec.saturating_mul(1_000_000_000).saturating_add(nsec)
}

fn kind(t: FileType) -> Kind {
    match t {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    }
}

/// Opens `job`'s directory; None: it is on another filesystem
/// (`one_file_system`), counted by the caller.
pub(in super::super) fn open<'a>(
    shared: &Shared<'a>,
    job: &mut Job<'a>,
) -> io::Result<Option<Arc<DirFd<'a>>>> {
    let one_fs = shared.opts.one_file_system;
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOCTTY;
    if !job.via_link {
        // Listed as a directory: if a link took its place since, it is
        // not followed.
        flags |= OFlags::NOFOLLOW;
    }
    let mut crossed_checked = false;
    let fd = match (&job.parent, job.path.file_name()) {
        (Some(p), Some(name)) if one_fs && !job.stat && !shared.no_openat2.load(Relaxed) => {
            // Not stat'ed: the kernel refuses to cross a mount point
            // instead (no stat of each folder for its device).
            match rustix::fs::openat2(&p.fd, name, flags, Mode::empty(), ResolveFlags::NO_XDEV) {
                Err(Errno::XDEV) => return Ok(None),
                Err(Errno::NOSYS | Errno::PERM) => {
                    // Before Linux 5.6, or filtered: stat each folder.
                    shared.no_openat2.store(true, Relaxed);
                    rustix::fs::openat(&p.fd, name, flags, Mode::empty())?
                }
                r => {
                    crossed_checked = true;
                    r?
                }
            }
        }
        (Some(p), Some(name)) => rustix::fs::openat(&p.fd, name, flags, Mode::empty())?,
        _ => rustix::fs::openat(CWD, &job.path, flags, Mode::empty())?,
    };
    if one_fs && !job.stat && !crossed_checked {
        let md = stat_fd(fd.as_fd())?;
        if md.dev != job.dev {
            return Ok(None);
        }
        (job.ino, job.mtime_ns, job.stat) = (md.ino, md.mtime_ns, true);
    }
    shared.open_dirs.fetch_add(1, Relaxed);
    Ok(Some(Arc::new(DirFd {
        fd,
        open: shared.open_dirs,
    })))
}

/// Stats an open descriptor.
fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Meta> {
    stat_at(fd, c"", false, AtFlags::EMPTY_PATH)
}

/// Stats an open directory.
pub(in super::super) fn stat_dir(d: &DirFd<'_>) -> io::Result<Meta> {
    stat_fd(d.fd.as_fd())
}

/// One directory's entries, listed before any is handled (so that a large
/// directory's stats can be shared out). One per worker, reused.
#[derive(Default)]
pub(in super::super) struct Listing {
    ents: Vec<Ent>,
    /// The names, each ending with a NUL.
    names: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Ent {
    at: u32,
    len: u16,
    kind: FileType,
    ino: u64,
    excluded: bool,
}

impl Listing {
    fn name(&self, e: &Ent) -> &CStr {
        let bytes = self.names.get(e.at as usize..).unwrap_or_default();
        CStr::from_bytes_until_nul(bytes).unwrap_or_default()
    }

    /// Lists `dir` (but `.` and `..`).
    fn list(&mut self, dir: BorrowedFd<'_>, buf: &mut Vec<u8>) -> rustix::io::Result<()> {
        self.ents.clear();
        self.names.clear();
        let mut raw = RawDir::new(dir, buf.spare_capacity_mut());
        while let Some(ent) = raw.next() {
            let ent = ent?;
            let name = ent.file_name().to_bytes_with_nul();
            if name == b".\0" || name == b"..\0" {
                continue;
            }
            let (Ok(at), Ok(len)) = (
                u32::try_from(self.names.len()),
                u16::try_from(name.len() - 1),
            ) else {
                return Err(Errno::NOMEM);
            };
            self.names.extend_from_slice(name);
            self.ents.push(Ent {
                at,
                len,
                kind: ent.file_type(),
                ino: ent.ino(),
                excluded: false,
            });
        }
        // By name: files and subdirectories are then found in the walk's
        // order, with nothing to sort after.
        let names = &self.names;
        let key = |e: &Ent| &names[e.at as usize..][..usize::from(e.len)];
        self.ents.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        Ok(())
    }
}

/// What the listing's type leaves to a stat: regular files, untyped
/// entries, and folders when links are followed (their inode is needed).
fn needs_stat(kind: FileType, follow: bool) -> bool {
    match kind {
        FileType::Symlink
        | FileType::Fifo
        | FileType::Socket
        | FileType::CharacterDevice
        | FileType::BlockDevice => false,
        FileType::Directory => follow,
        _ => true,
    }
}

impl<'a> Reading<'_, 'a> {
    /// Lists the directory and handles each entry; returns how many there
    /// were (excluded ones included, `.` and `..` not).
    pub(super) fn entries(
        &mut self,
        pacer: &mut Pacer,
        buf: &mut Vec<u8>,
        lst: &mut Listing,
    ) -> u64 {
        let (opts, job) = (self.shared.opts, self.job);
        let follow = opts.follow_symlinks;
        let dir = self.fd.fd.as_fd();
        if let Err(e) = lst.list(dir, buf) {
            issue(&mut self.local.out, &job.path, &e.into());
        }
        let here = super::excluded_here(opts, job);
        let mut to_stat = 0;
        for i in 0..lst.ents.len() {
            let e = lst.ents[i];
            let os = OsStr::from_bytes(lst.name(&e).to_bytes());
            let excluded = opts.rules.excluded_name(os) || here.contains(&os);
            lst.ents[i].excluded = excluded;
            to_stat += usize::from(!excluded && needs_stat(e.kind, follow));
        }
        // A large directory's stats are shared with waiting workers.
        let batch = (to_stat >= BIG_DIR).then(|| {
            let (mut names, mut at) = (Vec::new(), Vec::with_capacity(to_stat));
            for e in lst
                .ents
                .iter()
                .filter(|e| !e.excluded && needs_stat(e.kind, follow))
            {
                at.push(names.len() as u32);
                names.extend_from_slice(lst.name(e).to_bytes_with_nul());
            }
            Arc::new(StatBatch::new(Arc::clone(self.fd), names, at))
        });
        let mut stated = batch.as_ref().map(|b| {
            let offered = self.shared.queue.offer(b);
            b.work();
            if offered {
                self.shared.queue.withdraw(b);
            }
            b.results()
        });
        for e in &lst.ents {
            pacer.tick(self.shared.cancel);
            if e.excluded {
                self.local.out.stats.excluded += 1;
                continue;
            }
            let cname = lst.name(e);
            let name = cname.to_bytes();
            let os = OsStr::from_bytes(name);
            match e.kind {
                FileType::Symlink => self.symlink(cname),
                FileType::Fifo
                | FileType::Socket
                | FileType::CharacterDevice
                | FileType::BlockDevice => self.local.out.stats.special += 1,
                // Listed as a folder: not stat'ed (opening it tells
                // whether it lies on another filesystem); links followed
                // need its inode to see a loop.
                FileType::Directory if !follow => {
                    let path = job.path.join(os);
                    if opts.rules.excluded_path(&path) {
                        self.local.out.stats.excluded += 1;
                        continue;
                    }
                    let md = Meta {
                        kind: Kind::Dir,
                        dev: job.dev,
                        ino: e.ino,
                        size: 0,
                        mtime_ns: 0,
                        nlink: 1,
                    };
                    self.push_dir(path, &md, false, false);
                }
                // Regular files, and what the listing did not type: the
                // stat says what they are now.
                _ => {
                    let md = match stated.as_mut().and_then(|r| r.next()) {
                        Some(md) => md,
                        None => stat_at(dir, cname, false, AtFlags::empty()),
                    };
                    match md {
                        Ok(md) => match md.kind {
                            Kind::File => {
                                add_file(&mut self.local.out, opts, job.id, name, &md, job.flags)
                            }
                            Kind::Dir => {
                                let path = job.path.join(os);
                                if opts.rules.excluded_path(&path) {
                                    self.local.out.stats.excluded += 1;
                                    continue;
                                }
                                self.push_dir(path, &md, true, false);
                            }
                            Kind::Symlink => self.symlink(cname),
                            Kind::Other => self.local.out.stats.special += 1,
                        },
                        Err(e) => issue(&mut self.local.out, &job.path.join(os), &e),
                    }
                }
            }
        }
        lst.ents.len() as u64
    }

    fn symlink(&mut self, cname: &CStr) {
        self.local.out.stats.symlinks += 1;
        let (dir, job) = (self.fd.fd.as_fd(), self.job);
        let name = cname.to_bytes();
        let path = || job.path.join(OsStr::from_bytes(name));
        match stat_at(dir, cname, true, AtFlags::empty()) {
            Ok(md) if self.shared.opts.follow_symlinks => match md.kind {
                Kind::Dir => self.push_dir(path(), &md, true, true),
                Kind::File => add_file(
                    &mut self.local.out,
                    self.shared.opts,
                    job.id,
                    name,
                    &md,
                    job.flags,
                ),
                _ => {}
            },
            Ok(_) => {}
            // Dangling, a loop, or a component that is not a directory.
            Err(e)
                if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
                    || e.raw_os_error() == Some(Errno::LOOP.raw_os_error()) =>
            {
                match stat_at(dir, cname, false, AtFlags::empty()) {
                    Ok(md) => self.local.out.broken_links.push(super::super::OtherRec {
                        dir: job.id,
                        name: Some(OsStr::from_bytes(name).into()),
                        dev: md.dev,
                        ino: md.ino,
                        mtime_ns: md.mtime_ns,
                    }),
                    Err(e) => issue(&mut self.local.out, &path(), &e),
                }
            }
            Err(e) => issue(&mut self.local.out, &path(), &e),
        }
    }
}
