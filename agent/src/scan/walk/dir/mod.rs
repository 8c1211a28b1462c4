//! Reading one directory: opened (relative to its parent where the system
//! allows), listed into one buffer per worker, each entry handled as a
//! file, a folder to queue, a link or something else. What the system
//! tells and how is in `unix` (descriptors, `getdents64`, `statx`) and
//! `windows` (handles, one directory-information call that also gives
//! each entry's size, time and file id); the bookkeeping is here.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as os;
#[cfg(unix)]
pub(crate) use unix::stat_at;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as os;

pub(super) use os::Listing;
#[cfg(all(test, unix))]
pub(super) use os::open;

use super::queue::Job;
use super::{Local, Meta, Shared, WalkOptions, issue, mark_visited};
use crate::scan::pace::Pacer;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

#[cfg(unix)]
type Handle = rustix::fd::OwnedFd;
#[cfg(windows)]
type Handle = std::os::windows::io::OwnedHandle;

/// Each worker's listing buffer (`getdents64`, or Windows' directory
/// information).
pub(super) const BUF_BYTES: usize = 32 * 1024;

/// Directory descriptors kept open for their subdirectories waiting in
/// the queue; past this, subdirectories are opened by their whole path
/// (the soft limit on open files is often 1,024).
pub(super) const MAX_OPEN_DIRS: usize = 128;

/// An open directory, counted in [`Shared::open_dirs`] while it is.
pub(super) struct DirFd<'a> {
    pub fd: Handle,
    open: &'a AtomicUsize,
}

impl Drop for DirFd<'_> {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Relaxed);
    }
}

/// A directory being read, and where what it holds goes.
struct Reading<'r, 'a> {
    shared: &'r Shared<'a>,
    local: &'r mut Local,
    /// This worker's stack of directories to read.
    mine: &'r mut Vec<Job<'a>>,
    job: &'r Job<'a>,
    fd: &'r Arc<DirFd<'a>>,
}

/// The names excluded by path in `job`'s directory: those of the excluded
/// paths whose parent it is (found once per directory, not per entry).
fn excluded_here<'o>(opts: &'o WalkOptions<'_>, job: &Job<'_>) -> Vec<&'o OsStr> {
    opts.rules
        .exclude_paths
        .iter()
        .filter(|p| p.parent() == Some(job.path.as_path()))
        .filter_map(|p| p.file_name())
        .collect()
}

/// Reads one directory: its files into `local`, its subdirectories onto
/// `mine` (this worker's stack).
pub(super) fn read<'a>(
    shared: &Shared<'a>,
    mut job: Job<'a>,
    local: &mut Local,
    pacer: &mut Pacer,
    buf: &mut Vec<u8>,
    lst: &mut Listing,
    mine: &mut Vec<Job<'a>>,
) {
    let opened = os::open(shared, &mut job);
    // The parent may close once its last waiting child is open.
    drop(job.parent.take());
    let fd = match opened {
        Ok(Some(fd)) => fd,
        Ok(None) => {
            local.out.stats.other_fs += 1;
            return;
        }
        Err(e) => {
            local.out.stats.dirs += 1;
            return issue(&mut local.out, &job.path, &e);
        }
    };
    local.out.stats.dirs += 1;
    shared.counters.dirs.fetch_add(1, Relaxed);
    let start = local.out.files.len();
    let first_kid = mine.len();
    let mut r = Reading {
        shared,
        local,
        mine,
        job: &job,
        fd: &fd,
    };
    let entries = r.entries(pacer, buf, lst);
    let Reading { local, mine, .. } = r;
    // This directory's subdirectories, by name (listed so: the merge's
    // order), and its files, by name too (the index's order).
    let kids_at = local.kids.len();
    local.kids.extend(mine[first_kid..].iter().map(|j| j.id));
    if local.kids.len() > kids_at {
        local
            .tree
            .push((job.id, kids_at, local.kids.len() - kids_at));
    }
    let files = &local.out.files[start..];
    shared.counters.files.fetch_add(files.len() as u64, Relaxed);
    shared
        .counters
        .bytes
        .fetch_add(files.iter().map(|f| f.size).sum(), Relaxed);
    local.runs.push((job.id, start, files.len()));
    if entries == 0 {
        // Listed as a folder and never stat'ed: it is now.
        let md = if job.stat {
            Ok((job.dev, job.ino, job.mtime_ns))
        } else {
            os::stat_dir(&fd).map(|m| (m.dev, m.ino, m.mtime_ns))
        };
        match md {
            Ok((dev, ino, mtime_ns)) => local.out.empty_dirs.push(super::OtherRec {
                dir: job.id,
                name: None,
                dev,
                ino,
                mtime_ns,
            }),
            Err(e) => issue(&mut local.out, &job.path, &e),
        }
    }
}

impl<'a> Reading<'_, 'a> {
    /// Queues a subdirectory; `stat`: `md` is its own, from a stat (else
    /// the device is the parent's, checked when it is opened).
    fn push_dir(&mut self, path: PathBuf, md: &Meta, stat: bool, via_link: bool) {
        let (shared, parent) = (self.shared, self.job);
        let opts = shared.opts;
        if stat && opts.one_file_system && md.dev != parent.dev {
            self.local.out.stats.other_fs += 1;
            return;
        }
        if opts.follow_symlinks && !mark_visited(shared, md) {
            return;
        }
        let id = shared.next_id.fetch_add(1, Relaxed);
        let name = path.file_name().unwrap_or_default();
        let flags = parent.flags | opts.rules.dir_flags(name, &path);
        self.local.dirs.push((id, path.clone()));
        let keep = shared.open_dirs.load(Relaxed) < MAX_OPEN_DIRS;
        self.mine.push(Job {
            id,
            path,
            parent: keep.then(|| Arc::clone(self.fd)),
            via_link,
            stat,
            dev: md.dev,
            ino: md.ino,
            mtime_ns: md.mtime_ns,
            flags,
        });
    }
}
