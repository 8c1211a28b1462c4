//! Parallel, iterative walk of the roots: one record per regular file (hard
//! links by (dev, inode) kept once), empty directories and broken links;
//! errors counted, never fatal; names kept as raw bytes.
//!
//! Each directory is opened relative to its parent's descriptor and its
//! entries are stat'ed relative to its own (`dir`), so the kernel resolves
//! one name per call instead of a whole path, and nothing is allocated per
//! entry; the workers share directories through `queue`, a large
//! directory's stats through `batch`, and `merge` puts their finds in path
//! order.

#[cfg(unix)]
mod batch;
#[cfg(windows)]
#[path = "batch_none.rs"]
mod batch;
mod dir;
mod merge;
mod queue;
#[cfg(all(test, unix))]
mod tests;

pub(crate) use merge::shared_prefix;

use super::pace::Pacer;
use super::rules::{Cats, Rules};
use super::{Counters, Issue, IssueKind, run_workers};
use crate::sys::{self, name::os_str};
use queue::{Job, Queue};
use std::borrow::Cow;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// How often the walk's crew is checked (see [`queue::Crew`]).
const CREW_CHECK: Duration = Duration::from_millis(20);

/// Most issues kept with their path (all are counted).
pub const MAX_ISSUES: usize = 200;

/// A regular file as found by the walk (40 bytes: 200,000 of them are
/// most of a scan's memory).
#[derive(Debug, Clone, Default)]
pub(crate) struct FileRec {
    /// Index into [`Walked::dirs`].
    pub dir: u32,
    /// Its name and whether it has others: see [`Walked::name`].
    name: NameRef,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    /// Its device, as an index into its worker's table: see [`Walked::dev`]
    /// (a scan sees a few devices; 8 bytes per file spared).
    dev: u16,
    /// Its categories but duplicates (name, folders above, size, age),
    /// found by the walkers as they go.
    pub cats: Cats,
}

impl FileRec {
    /// More than one name (hard links): checked against the others.
    pub fn multi_link(&self) -> bool {
        self.name.len & MULTI_LINK != 0
    }
}

/// The top bit of [`NameRef::len`]: the file has more than one name. A
/// name is at most 255 UTF-16 units (765 bytes of WTF-8) on Windows, 255
/// bytes on Linux: far below the 15 bits left.
const MULTI_LINK: u16 = 1 << 15;

/// Where a file's name lies: in which worker's name bytes (they are kept
/// in one buffer per worker, not in an allocation per file), where and how
/// long (the top bit: [`MULTI_LINK`]).
#[derive(Debug, Clone, Copy, Default)]
struct NameRef {
    part: u16,
    len: u16,
    at: u32,
}

/// An empty directory (`name` None: the directory `dir` itself) or a
/// broken link (`name` in `dir`).
#[derive(Debug, Clone)]
pub(crate) struct OtherRec {
    pub dir: u32,
    pub name: Option<Box<OsStr>>,
    pub dev: u64,
    pub ino: u64,
    pub mtime_ns: i64,
}

/// Counts of what the walk saw besides regular files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WalkStats {
    pub dirs: u64,
    pub symlinks: u64,
    /// FIFOs, sockets, devices: skipped.
    pub special: u64,
    /// Directories on another filesystem, skipped (`one_file_system`).
    pub other_fs: u64,
    pub excluded: u64,
    /// Extra names of files already counted (hard links).
    pub hard_link_names: u64,
    /// Entries that could not be read (permissions, I/O errors).
    pub unreadable: u64,
    /// Entries gone between being listed and being read.
    pub vanished: u64,
}

impl WalkStats {
    fn add(&mut self, o: &WalkStats) {
        self.dirs += o.dirs;
        self.symlinks += o.symlinks;
        self.special += o.special;
        self.other_fs += o.other_fs;
        self.excluded += o.excluded;
        self.hard_link_names += o.hard_link_names;
        self.unreadable += o.unreadable;
        self.vanished += o.vanished;
    }
}

#[derive(Debug, Default)]
pub(crate) struct Walked {
    pub dirs: Vec<PathBuf>,
    pub files: Vec<FileRec>,
    /// The files' names, one buffer per worker (see [`NameRef`]).
    names: Vec<Vec<u8>>,
    /// The files' devices, one table per worker, as the names.
    devs: Vec<Vec<u64>>,
    pub empty_dirs: Vec<OtherRec>,
    pub broken_links: Vec<OtherRec>,
    pub stats: WalkStats,
    pub issues: Vec<Issue>,
}

impl Walked {
    /// A file's name as the walk keeps it (see [`sys::name`]).
    pub fn name_bytes(&self, f: &FileRec) -> &[u8] {
        let n = f.name;
        let part = self.names.get(usize::from(n.part)).map_or(&[][..], |p| p);
        let at = n.at as usize;
        part.get(at..at + usize::from(n.len & !MULTI_LINK))
            .unwrap_or_default()
    }

    /// A file's device (its `st_dev`; its volume's serial on Windows).
    pub fn dev(&self, f: &FileRec) -> u64 {
        dev_at(&self.devs, f.name.part, f.dev)
    }

    /// Adds a file of size `size` on device `dev` (in the first worker's
    /// tables), as a walker would.
    #[cfg(test)]
    pub fn push_test_file(&mut self, dev: u64, ino: u64, size: u64) {
        let (names, devs) = (self.names.is_empty(), self.devs.is_empty());
        if names {
            self.names.push(Vec::new());
        }
        if devs {
            self.devs.push(Vec::new());
        }
        self.files.push(FileRec {
            dev: dev_index(&mut self.devs[0], dev).expect("few test devices"),
            ino,
            size,
            ..FileRec::default()
        });
    }

    pub fn name(&self, f: &FileRec) -> Cow<'_, OsStr> {
        os_str(self.name_bytes(f))
    }

    pub fn path(&self, f: &FileRec) -> PathBuf {
        self.dirs[f.dir as usize].join(&*self.name(f))
    }

    pub fn other_path(&self, o: &OtherRec) -> PathBuf {
        let d = &self.dirs[o.dir as usize];
        match &o.name {
            Some(n) => d.join(&**n),
            None => d.clone(),
        }
    }
}

pub(crate) struct WalkOptions<'a> {
    pub rules: &'a Rules,
    pub follow_symlinks: bool,
    pub one_file_system: bool,
    pub threads: usize,
    /// The CPU budget, background mode only.
    pub budget: Option<&'a super::pace::Budget>,
    pub poll: Duration,
    /// The scan's clock, for the categories by age.
    pub now_ns: i64,
}

#[cfg(all(test, unix))]
impl<'a> WalkOptions<'a> {
    /// A foreground walk by `threads` that stays on one filesystem, at
    /// the epoch (the tests' walk).
    pub fn for_tests(rules: &'a Rules, threads: usize) -> WalkOptions<'a> {
        WalkOptions {
            rules,
            follow_symlinks: false,
            one_file_system: true,
            threads,
            budget: None,
            poll: Duration::from_millis(100),
            now_ns: 0,
        }
    }
}

/// What one entry is, from `statx` (or `fstatat` where there is none).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub kind: Kind,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub nlink: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    /// FIFOs, sockets, devices.
    Other,
}

impl Meta {
    /// What `path` is, from its metadata (the link itself if `md` is a
    /// link's).
    pub fn of(path: &Path, md: &fs::Metadata) -> io::Result<Meta> {
        let ft = md.file_type();
        let id = sys::ident(path, md)?;
        Ok(Meta {
            kind: if ft.is_file() {
                Kind::File
            } else if ft.is_dir() {
                Kind::Dir
            } else if ft.is_symlink() {
                Kind::Symlink
            } else {
                Kind::Other
            },
            dev: id.dev,
            ino: id.ino,
            size: md.len(),
            mtime_ns: id.mtime_ns,
            nlink: id.nlink,
        })
    }
}

struct Shared<'a> {
    queue: Queue<'a>,
    next_id: AtomicU32,
    visited: Mutex<HashSet<(u64, u64)>>,
    /// Directory descriptors open (see [`dir::MAX_OPEN_DIRS`]).
    open_dirs: &'a AtomicUsize,
    /// `openat2` is missing (before Linux 5.6) or filtered: folders are
    /// stat'ed for their device once open.
    #[cfg_attr(windows, allow(dead_code))]
    no_openat2: AtomicBool,
    opts: &'a WalkOptions<'a>,
    counters: &'a Counters,
    cancel: &'a AtomicBool,
}

/// What one worker found.
#[derive(Default)]
struct Local {
    dirs: Vec<(u32, PathBuf)>,
    out: Walked,
    /// Each directory's files, sorted by name: (dir id, start, len) in
    /// `out.files`, so the merge needs no global sort.
    runs: Vec<(u32, usize, usize)>,
    /// Each directory's subdirectories, sorted by name: (dir id, start,
    /// len) in `kids`, so the merge orders directories without comparing
    /// paths.
    tree: Vec<(u32, usize, usize)>,
    kids: Vec<u32>,
    /// Directories with no parent here (roots, and the folders of files
    /// given as roots), ordered by path in the merge.
    tops: Vec<u32>,
}

/// Walks `roots`. Never fails: what cannot be read is counted in
/// [`WalkStats`] and listed (up to [`MAX_ISSUES`]) in `issues`.
pub(crate) fn walk(
    roots: &[PathBuf],
    opts: &WalkOptions<'_>,
    counters: &Counters,
    cancel: &AtomicBool,
    poll: &mut dyn FnMut(),
) -> io::Result<Walked> {
    let open_dirs = AtomicUsize::new(0);
    let threads = opts.threads.max(1);
    let (mut crew, first) = queue::Crew::new(threads);
    let shared = Shared {
        queue: Queue::new(cancel, first),
        next_id: AtomicU32::new(0),
        visited: Mutex::new(HashSet::new()),
        open_dirs: &open_dirs,
        no_openat2: AtomicBool::new(false),
        opts,
        counters,
        cancel,
    };
    let mut seed = Local::default();
    let mut jobs = Vec::new();
    for root in roots {
        seed_root(&shared, root, &mut seed, &mut jobs);
    }
    shared.queue.seed(jobs);
    // The crew is checked more often than the caller is called back.
    let mut last_poll = std::time::Instant::now();
    let mut check = || {
        crew.check(&shared.queue);
        if last_poll.elapsed() >= opts.poll {
            poll();
            last_poll = std::time::Instant::now();
        }
    };
    let locals = run_workers(
        threads,
        |worker| {
            let mut local = Local::default();
            let mut pacer = Pacer::new(opts.budget);
            let mut buf = Vec::with_capacity(dir::BUF_BYTES);
            let mut lst = dir::Listing::default();
            let mut mine: Vec<Job<'_>> = Vec::new();
            let mut busy = false;
            loop {
                let job = match mine.pop() {
                    Some(j) => j,
                    None => match shared.queue.next(worker, busy) {
                        Some(queue::Work::Dir(j)) => j,
                        Some(queue::Work::Help(b)) => {
                            b.work();
                            busy = false;
                            continue;
                        }
                        None => break,
                    },
                };
                busy = true;
                dir::read(
                    &shared, job, &mut local, &mut pacer, &mut buf, &mut lst, &mut mine,
                );
                if cancel.load(Relaxed) {
                    mine.clear();
                }
                shared.queue.share(&mut mine);
            }
            local
        },
        opts.poll.min(CREW_CHECK),
        &mut check,
    )?;
    let n_dirs = shared.next_id.load(Relaxed) as usize;
    let t = std::time::Instant::now();
    let walked = merge::merge(seed, locals, n_dirs, opts.follow_symlinks);
    tracing::debug!(
        dirs = n_dirs,
        files = walked.files.len(),
        merge_ms = t.elapsed().as_millis() as u64,
        "scan: walk merged"
    );
    Ok(walked)
}

fn seed_root<'a>(shared: &Shared<'a>, root: &Path, local: &mut Local, jobs: &mut Vec<Job<'a>>) {
    let md = match fs::metadata(root) {
        Ok(md) => md,
        Err(e) => return issue(&mut local.out, root, &e),
    };
    let flags = root
        .ancestors()
        .filter_map(|a| a.file_name().map(|n| shared.opts.rules.dir_flags(n, a)))
        .fold(0, |acc, f| acc | f);
    let md = match Meta::of(root, &md) {
        Ok(md) => md,
        Err(e) => return issue(&mut local.out, root, &e),
    };
    if md.kind == Kind::Dir {
        if shared.opts.follow_symlinks && !mark_visited(shared, &md) {
            return;
        }
        let id = shared.next_id.fetch_add(1, Relaxed);
        local.dirs.push((id, root.to_owned()));
        local.tops.push(id);
        jobs.push(Job::root(id, root.to_owned(), &md, flags));
    } else if md.kind == Kind::File {
        // A file given as a root: its directory becomes a record of its own.
        let (Some(parent), Some(name)) = (root.parent(), root.file_name()) else {
            return;
        };
        let id = shared.next_id.fetch_add(1, Relaxed);
        local.dirs.push((id, parent.to_owned()));
        local.tops.push(id);
        add_file(
            &mut local.out,
            shared.opts,
            id,
            sys::name::bytes(name),
            &md,
            flags,
        );
        local.runs.push((id, local.out.files.len() - 1, 1));
        shared.counters.files.fetch_add(1, Relaxed);
        shared.counters.bytes.fetch_add(md.size, Relaxed);
    } else {
        local.out.stats.special += 1;
    }
}

fn mark_visited(shared: &Shared<'_>, md: &Meta) -> bool {
    let mut v = shared.visited.lock().unwrap_or_else(|p| p.into_inner());
    v.insert((md.dev, md.ino))
}

/// A file's modification time in ns (the tests' reference).
#[cfg(all(test, unix))]
pub(crate) fn mtime_ns(md: &fs::Metadata) -> i64 {
    use std::os::unix::fs::MetadataExt;
    md.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(md.mtime_nsec())
}

/// Adds a file found by one worker (its names are in `out.names[0]`);
/// `flags`: those of the folders above it.
fn add_file(out: &mut Walked, opts: &WalkOptions<'_>, dir: u32, name: &[u8], md: &Meta, flags: u8) {
    if out.names.is_empty() {
        out.names.push(Vec::new());
    }
    if out.devs.is_empty() {
        out.devs.push(Vec::new());
    }
    let (names, devs) = (&mut out.names[0], &mut out.devs[0]);
    let fits = u32::try_from(names.len()).ok().zip(
        u16::try_from(name.len())
            .ok()
            .filter(|&l| l < MULTI_LINK)
            .zip(dev_index(devs, md.dev)),
    );
    let Some((at, (len, dev))) = fits else {
        let e = io::Error::other("too many names or devices in one scan worker");
        return issue(out, Path::new(&*os_str(name)), &e);
    };
    names.extend_from_slice(name);
    let links = if md.nlink > 1 { MULTI_LINK } else { 0 };
    out.files.push(FileRec {
        dir,
        name: NameRef {
            part: 0,
            len: len | links,
            at,
        },
        dev,
        ino: md.ino,
        size: md.size,
        mtime_ns: md.mtime_ns,
        cats: opts
            .rules
            .file_cats(&os_str(name), flags, md.size, md.mtime_ns, opts.now_ns),
    });
}

/// Where `dev` is in a worker's device table, added if new (None past
/// 65,536 devices). The last one first: a folder's files are on its device.
fn dev_index(table: &mut Vec<u64>, dev: u64) -> Option<u16> {
    let i = table.iter().rposition(|&d| d == dev).unwrap_or(table.len());
    let i = u16::try_from(i).ok()?;
    if usize::from(i) == table.len() {
        table.push(dev);
    }
    Some(i)
}

/// The device at `index` in worker `part`'s table (0 if there is none).
fn dev_at(tables: &[Vec<u64>], part: u16, index: u16) -> u64 {
    let table = tables.get(usize::from(part));
    table
        .and_then(|t| t.get(usize::from(index)))
        .copied()
        .unwrap_or(0)
}

pub(crate) fn issue(out: &mut Walked, path: &Path, e: &io::Error) {
    let kind = if e.kind() == ErrorKind::NotFound {
        out.stats.vanished += 1;
        IssueKind::Vanished
    } else {
        out.stats.unreadable += 1;
        IssueKind::Unreadable
    };
    tracing::debug!(path = %path.display(), error = %e, "scan: cannot read entry");
    if out.issues.len() < MAX_ISSUES {
        out.issues.push(Issue {
            path: path.to_owned(),
            kind,
            error: e.to_string(),
        });
    }
}
