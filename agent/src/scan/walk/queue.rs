//! The walk's directories to read: each worker keeps the subdirectories it
//! finds on a stack of its own, and hands half of them (those nearest the
//! roots, the largest subtrees) to the shared queue only when another
//! worker is waiting. The lock is taken when a worker runs dry or shares,
//! not twice per directory.

use super::Meta;
use super::dir::DirFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A directory to read.
pub(super) struct Job<'a> {
    pub id: u32,
    pub path: PathBuf,
    /// Its parent, still open: it is opened relative to it by its name
    /// (one lookup, not the whole path). None: opened by its path.
    pub parent: Option<Arc<DirFd<'a>>>,
    /// Reached through a symbolic link being followed, or a root: opened
    /// without `O_NOFOLLOW`.
    pub via_link: bool,
    /// `dev`, `ino` and `mtime_ns` are its own, from a stat. False: it was
    /// listed as a folder and not stat'ed; `dev` is its parent's (it is
    /// opened without crossing a mount point, or stat'ed when opened),
    /// the rest unknown until then.
    pub stat: bool,
    pub dev: u64,
    pub ino: u64,
    pub mtime_ns: i64,
    pub flags: u8,
}

impl Job<'_> {
    pub fn root(id: u32, path: PathBuf, md: &Meta, flags: u8) -> Self {
        Job {
            id,
            path,
            parent: None,
            via_link: true,
            stat: true,
            dev: md.dev,
            ino: md.ino,
            mtime_ns: md.mtime_ns,
            flags,
        }
    }
}

#[derive(Default)]
struct State<'a> {
    jobs: Vec<Job<'a>>,
    /// Workers holding jobs of their own (or reading one).
    busy: usize,
    done: bool,
}

pub(super) struct Queue<'a> {
    q: Mutex<State<'a>>,
    cv: Condvar,
    /// Workers waiting for a job.
    hungry: AtomicUsize,
    cancel: &'a AtomicBool,
}

impl<'a> Queue<'a> {
    pub fn new(cancel: &'a AtomicBool) -> Self {
        Queue {
            q: Mutex::new(State::default()),
            cv: Condvar::new(),
            hungry: AtomicUsize::new(0),
            cancel,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<'a>> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn seed(&self, jobs: Vec<Job<'a>>) {
        self.lock().jobs.extend(jobs);
    }

    /// The next directory for a worker whose own stack is empty (`was_busy`:
    /// it had taken a job before), or None when there is none and no
    /// worker can add one (or the scan is cancelled).
    pub fn next(&self, was_busy: bool) -> Option<Job<'a>> {
        let mut q = self.lock();
        if was_busy {
            q.busy -= 1;
        }
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
            self.hungry.fetch_add(1, Relaxed);
            q = self.cv.wait(q).unwrap_or_else(|p| p.into_inner());
            self.hungry.fetch_sub(1, Relaxed);
        }
    }

    /// Gives the bottom half of `mine` to waiting workers, if any wait.
    pub fn share(&self, mine: &mut Vec<Job<'a>>) {
        if mine.len() < 2 || self.hungry.load(Relaxed) == 0 {
            return;
        }
        let n = mine.len() / 2;
        self.lock().jobs.extend(mine.drain(..n));
        self.cv.notify_all();
    }
}
