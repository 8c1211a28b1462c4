//! The stats of one large folder, shared out: its reader hands them to
//! the queue in chunks, waiting workers take chunks, and the reader takes
//! them too, then waits for the last. Without it one folder of 38,000
//! files (the benchmark tree's Photos/Tmp) kept one core busy for the
//! walk's last 50 ms while the other idled.

use super::Meta;
use super::dir::{DirFd, stat_at};
use rustix::fd::AsFd;
use rustix::fs::AtFlags;
use std::ffi::CStr;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A folder is shared out from this many entries to stat.
pub(super) const BIG_DIR: usize = 2048;
/// Entries stat'ed per chunk taken.
const CHUNK: usize = 256;

/// Names in one folder to stat, in chunks, and their results.
pub(crate) struct StatBatch<'a> {
    dir: Arc<DirFd<'a>>,
    /// The names, each ending with a NUL, and where each starts.
    names: Vec<u8>,
    at: Vec<u32>,
    /// The next chunk to take.
    next: AtomicUsize,
    results: Vec<Mutex<Vec<io::Result<Meta>>>>,
    /// Chunks not done yet.
    left: Mutex<usize>,
    done: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<'a> StatBatch<'a> {
    /// `names`: NUL-terminated names, `at`: where each starts.
    pub fn new(dir: Arc<DirFd<'a>>, names: Vec<u8>, at: Vec<u32>) -> Self {
        let n = at.len().div_ceil(CHUNK);
        StatBatch {
            dir,
            names,
            at,
            next: AtomicUsize::new(0),
            results: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
            left: Mutex::new(n),
            done: Condvar::new(),
        }
    }

    /// Every chunk has been taken.
    pub fn taken(&self) -> bool {
        self.next.load(Relaxed) >= self.results.len()
    }

    /// Stats chunks until none is left to take.
    pub fn work(&self) {
        let dir = self.dir.fd.as_fd();
        loop {
            let c = self.next.fetch_add(1, Relaxed);
            let Some(slot) = self.results.get(c) else {
                return;
            };
            let ats = self.at.get(c * CHUNK..).unwrap_or_default();
            let r = ats
                .iter()
                .take(CHUNK)
                .map(|&a| {
                    let name = self.names.get(a as usize..).unwrap_or_default();
                    match CStr::from_bytes_until_nul(name) {
                        Ok(name) => stat_at(dir, name, false, AtFlags::empty()),
                        Err(e) => Err(io::Error::other(e)),
                    }
                })
                .collect();
            *lock(slot) = r;
            let mut left = lock(&self.left);
            *left -= 1;
            if *left == 0 {
                self.done.notify_all();
            }
        }
    }

    /// Waits for the chunks others took, then hands out the results in
    /// the names' order.
    pub fn results(&self) -> impl Iterator<Item = io::Result<Meta>> + '_ {
        let mut left = lock(&self.left);
        while *left > 0 {
            left = self.done.wait(left).unwrap_or_else(|p| p.into_inner());
        }
        drop(left);
        self.results
            .iter()
            .flat_map(|r| std::mem::take(&mut *lock(r)))
    }
}
