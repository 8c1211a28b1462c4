//! Parallel, iterative walk of the roots: one record per regular file (hard
//! links by (dev, inode) kept once), empty directories and broken links;
//! errors counted, never fatal; names kept as raw bytes.

mod merge;

pub(crate) use merge::shared_prefix;

use super::pace::Pacer;
use super::rules::Rules;
use super::{Counters, Issue, IssueKind, run_workers};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Most issues kept with their path (all are counted).
pub const MAX_ISSUES: usize = 200;

/// A regular file as found by the walk (48 bytes: 200,000 of them are
/// most of a scan's memory).
#[derive(Debug, Clone, Default)]
pub(crate) struct FileRec {
    /// Index into [`Walked::dirs`].
    pub dir: u32,
    /// Its name: see [`Walked::name`].
    name: NameRef,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    /// More than one name (hard links): checked against the others.
    pub multi_link: bool,
    /// Flags inherited from the directories above it.
    pub dir_flags: u8,
}

/// Where a file's name lies: in which worker's name bytes (they are kept
/// in one buffer per worker, not in an allocation per file), where and how
/// long.
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
    pub empty_dirs: Vec<OtherRec>,
    pub broken_links: Vec<OtherRec>,
    pub stats: WalkStats,
    pub issues: Vec<Issue>,
}

impl Walked {
    pub fn name(&self, f: &FileRec) -> &OsStr {
        let n = f.name;
        let part = self.names.get(usize::from(n.part)).map_or(&[][..], |p| p);
        let at = n.at as usize;
        OsStr::from_bytes(part.get(at..at + usize::from(n.len)).unwrap_or_default())
    }

    pub fn path(&self, f: &FileRec) -> PathBuf {
        self.dirs[f.dir as usize].join(self.name(f))
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
}

struct Job {
    id: u32,
    path: PathBuf,
    dev: u64,
    mtime_ns: i64,
    ino: u64,
    flags: u8,
}

#[derive(Default)]
struct QState {
    jobs: Vec<Job>,
    busy: usize,
    done: bool,
}

struct Shared<'a> {
    q: Mutex<QState>,
    cv: Condvar,
    next_id: AtomicU32,
    visited: Mutex<HashSet<(u64, u64)>>,
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
}

impl Shared<'_> {
    fn lock(&self) -> MutexGuard<'_, QState> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next directory to read, or None when there is none and no
    /// worker can add one (or the scan is cancelled).
    fn next(&self) -> Option<Job> {
        let mut q = self.lock();
        loop {
            if q.done || self.cancel.load(Relaxed) {
                q.done = true;
                self.cv.notify_all();
                return None;
            }
            if let Some(j) = q.jobs.pop() {
                q.busy += 1;
                return Some(j);
            }
            if q.busy == 0 {
                q.done = true;
                self.cv.notify_all();
                return None;
            }
            q = self.cv.wait(q).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn finish(&self, new: Vec<Job>) {
        let mut q = self.lock();
        q.busy -= 1;
        let n = new.len();
        q.jobs.extend(new);
        if n > 1 || q.busy == 0 {
            self.cv.notify_all();
        } else if n == 1 {
            self.cv.notify_one();
        }
    }
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
    let shared = Shared {
        q: Mutex::new(QState::default()),
        cv: Condvar::new(),
        next_id: AtomicU32::new(0),
        visited: Mutex::new(HashSet::new()),
        opts,
        counters,
        cancel,
    };
    let mut seed = Local::default();
    for root in roots {
        seed_root(&shared, root, &mut seed);
    }
    let threads = opts.threads.max(1);
    let locals = run_workers(
        threads,
        |_| {
            let mut local = Local::default();
            let mut pacer = Pacer::new(opts.budget);
            while let Some(job) = shared.next() {
                let new = read_dir(&shared, &job, &mut local, &mut pacer);
                shared.finish(new);
            }
            local
        },
        opts.poll,
        poll,
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

fn seed_root(shared: &Shared<'_>, root: &Path, local: &mut Local) {
    let md = match fs::metadata(root) {
        Ok(md) => md,
        Err(e) => return issue(&mut local.out, root, &e),
    };
    let flags = root
        .ancestors()
        .filter_map(|a| a.file_name().map(|n| shared.opts.rules.dir_flags(n, a)))
        .fold(0, |acc, f| acc | f);
    if md.is_dir() {
        if shared.opts.follow_symlinks && !mark_visited(shared, &md) {
            return;
        }
        let id = shared.next_id.fetch_add(1, Relaxed);
        local.dirs.push((id, root.to_owned()));
        local.out.stats.dirs += 1;
        let mut q = shared.lock();
        q.jobs.push(Job {
            id,
            path: root.to_owned(),
            dev: md.dev(),
            ino: md.ino(),
            mtime_ns: mtime_ns(&md),
            flags,
        });
    } else if md.is_file() {
        // A file given as a root: its directory becomes a record of its own.
        let (Some(parent), Some(name)) = (root.parent(), root.file_name()) else {
            return;
        };
        let id = shared.next_id.fetch_add(1, Relaxed);
        local.dirs.push((id, parent.to_owned()));
        add_file(&mut local.out, id, name, &md, flags);
        local.runs.push((id, local.out.files.len() - 1, 1));
        shared.counters.files.fetch_add(1, Relaxed);
        shared.counters.bytes.fetch_add(md.len(), Relaxed);
    } else {
        local.out.stats.special += 1;
    }
}

fn mark_visited(shared: &Shared<'_>, md: &Metadata) -> bool {
    let mut v = shared.visited.lock().unwrap_or_else(|p| p.into_inner());
    v.insert((md.dev(), md.ino()))
}

pub(crate) fn mtime_ns(md: &Metadata) -> i64 {
    md.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(md.mtime_nsec())
}

/// Adds a file found by one worker (its names are in `out.names[0]`).
fn add_file(out: &mut Walked, dir: u32, name: &OsStr, md: &Metadata, flags: u8) {
    if out.names.is_empty() {
        out.names.push(Vec::new());
    }
    let names = &mut out.names[0];
    let (Ok(at), Ok(len)) = (u32::try_from(names.len()), u16::try_from(name.len())) else {
        let e = io::Error::other("too many names in one scan worker");
        return issue(out, Path::new(name), &e);
    };
    names.extend_from_slice(name.as_bytes());
    out.files.push(FileRec {
        dir,
        name: NameRef { part: 0, len, at },
        dev: md.dev(),
        ino: md.ino(),
        size: md.len(),
        mtime_ns: mtime_ns(md),
        multi_link: md.nlink() > 1,
        dir_flags: flags,
    });
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

/// Reads one directory; returns the subdirectories to read next.
fn read_dir(shared: &Shared<'_>, job: &Job, local: &mut Local, pacer: &mut Pacer) -> Vec<Job> {
    let opts = shared.opts;
    let mut new = Vec::new();
    let rd = match fs::read_dir(&job.path) {
        Ok(rd) => rd,
        Err(e) => {
            issue(&mut local.out, &job.path, &e);
            return new;
        }
    };
    shared.counters.dirs.fetch_add(1, Relaxed);
    let mut entries = 0u64;
    let start = local.out.files.len();
    // Files excluded by path: only those whose parent is this directory.
    let here: Vec<&OsStr> = opts
        .rules
        .exclude_paths
        .iter()
        .filter(|p| p.parent() == Some(job.path.as_path()))
        .filter_map(|p| p.file_name())
        .collect();
    for ent in rd {
        pacer.tick(shared.cancel);
        let ent = match ent {
            Ok(ent) => ent,
            Err(e) => {
                issue(&mut local.out, &job.path, &e);
                continue;
            }
        };
        entries += 1;
        let name = ent.file_name();
        if opts.rules.excluded_name(&name) || here.contains(&name.as_os_str()) {
            local.out.stats.excluded += 1;
            continue;
        }
        let ft = match ent.file_type() {
            Ok(ft) => ft,
            Err(e) => {
                issue(&mut local.out, &job.path.join(&name), &e);
                continue;
            }
        };
        if ft.is_file() {
            match ent.metadata() {
                Ok(md) => add_file(&mut local.out, job.id, &name, &md, job.flags),
                Err(e) => issue(&mut local.out, &job.path.join(&name), &e),
            }
        } else if ft.is_dir() {
            let path = job.path.join(&name);
            if opts.rules.excluded_path(&path) {
                local.out.stats.excluded += 1;
                continue;
            }
            match ent.metadata() {
                Ok(md) => push_dir(shared, local, &mut new, job, path, &name, &md),
                Err(e) => issue(&mut local.out, &path, &e),
            }
        } else if ft.is_symlink() {
            local.out.stats.symlinks += 1;
            let path = job.path.join(&name);
            symlink(shared, local, &mut new, job, path, &name);
        } else {
            local.out.stats.special += 1;
        }
    }
    let Walked { files, names, .. } = &mut local.out;
    let files = &mut files[start..];
    if let Some(names) = names.first() {
        let name = |f: &FileRec| &names[f.name.at as usize..][..usize::from(f.name.len)];
        files.sort_unstable_by(|a, b| name(a).cmp(name(b)));
    }
    shared.counters.files.fetch_add(files.len() as u64, Relaxed);
    shared
        .counters
        .bytes
        .fetch_add(files.iter().map(|f| f.size).sum(), Relaxed);
    local.runs.push((job.id, start, files.len()));
    if entries == 0 {
        local.out.empty_dirs.push(OtherRec {
            dir: job.id,
            name: None,
            dev: job.dev,
            ino: job.ino,
            mtime_ns: job.mtime_ns,
        });
    }
    new
}

fn push_dir(
    shared: &Shared<'_>,
    local: &mut Local,
    new: &mut Vec<Job>,
    parent: &Job,
    path: PathBuf,
    name: &OsStr,
    md: &Metadata,
) {
    let opts = shared.opts;
    if opts.one_file_system && md.dev() != parent.dev {
        local.out.stats.other_fs += 1;
        return;
    }
    if opts.follow_symlinks && !mark_visited(shared, md) {
        return;
    }
    let id = shared.next_id.fetch_add(1, Relaxed);
    let flags = parent.flags | opts.rules.dir_flags(name, &path);
    local.dirs.push((id, path.clone()));
    local.out.stats.dirs += 1;
    new.push(Job {
        id,
        path,
        dev: md.dev(),
        ino: md.ino(),
        mtime_ns: mtime_ns(md),
        flags,
    });
}

fn symlink(
    shared: &Shared<'_>,
    local: &mut Local,
    new: &mut Vec<Job>,
    job: &Job,
    path: PathBuf,
    name: &OsStr,
) {
    match fs::metadata(&path) {
        Ok(md) if shared.opts.follow_symlinks => {
            if md.is_dir() {
                push_dir(shared, local, new, job, path, name, &md);
            } else if md.is_file() {
                add_file(&mut local.out, job.id, name, &md, job.flags);
            }
        }
        Ok(_) => {}
        // Dangling, a loop, or a component that is not a directory.
        Err(e)
            if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory)
                || e.raw_os_error() == Some(40) =>
        {
            match fs::symlink_metadata(&path) {
                Ok(md) => local.out.broken_links.push(OtherRec {
                    dir: job.id,
                    name: Some(name.into()),
                    dev: md.dev(),
                    ino: md.ino(),
                    mtime_ns: mtime_ns(&md),
                }),
                Err(e) => issue(&mut local.out, &path, &e),
            }
        }
        Err(e) => issue(&mut local.out, &path, &e),
    }
}
