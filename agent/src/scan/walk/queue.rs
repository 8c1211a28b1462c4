//! The walk's directories to read: each worker keeps the subdirectories it
//! finds on a stack of its own, and hands half of them (those nearest the
//! roots, the largest subtrees) to the shared queue only when another
//! worker is waiting. The lock is taken when a worker runs dry or shares,
//! not twice per directory. Only the first `active` workers take jobs; the
//! others wait until the walk turns out to wait on the disk (see `walk`).

use super::Meta;
use super::batch::StatBatch;
use super::dir::DirFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A directory to read.
pub(super) struct Job<'a> {
    pub id: u32,
    pub path: PathBuf,
    /// Its parent, still open: it is opened relative to it by its name
    /// (one lookup, not the whole path). None: opened by its path.
    pub parent: Option<Arc<DirFd<'a>>>,
    /// Reached through a symbolic link being followed, or a root: opened
    /// without `O_NOFOLLOW`.
    #[cfg_attr(windows, allow(dead_code))]
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

/// What a worker is given.
pub(super) enum Work<'a> {
    /// A directory to read.
    Dir(Job<'a>),
    /// Stats of a large directory another worker reads.
    Help(Arc<StatBatch<'a>>),
}

#[derive(Default)]
struct State<'a> {
    jobs: Vec<Job<'a>>,
    /// Large directories' stats to share.
    help: Vec<Arc<StatBatch<'a>>>,
    /// Workers holding jobs of their own (or reading one).
    busy: usize,
    done: bool,
}

pub(super) struct Queue<'a> {
    q: Mutex<State<'a>>,
    cv: Condvar,
    /// Workers waiting for a job.
    hungry: AtomicUsize,
    /// Workers allowed to take jobs (by index); the others wait.
    active: AtomicUsize,
    cancel: &'a AtomicBool,
}

impl<'a> Queue<'a> {
    pub fn new(cancel: &'a AtomicBool, active: usize) -> Self {
        Queue {
            q: Mutex::new(State::default()),
            cv: Condvar::new(),
            hungry: AtomicUsize::new(0),
            active: AtomicUsize::new(active),
            cancel,
        }
    }

    /// Lets the first `n` workers take jobs.
    pub fn activate(&self, n: usize) {
        self.active.store(n, Relaxed);
        let _q = self.lock();
        self.cv.notify_all();
    }

    pub fn active(&self) -> usize {
        self.active.load(Relaxed)
    }

    /// Workers waiting for a job now.
    pub fn hungry(&self) -> usize {
        self.hungry.load(Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State<'a>> {
        self.q.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn seed(&self, jobs: Vec<Job<'a>>) {
        self.lock().jobs.extend(jobs);
    }

    /// The next directory for `worker`, whose own stack is empty
    /// (`was_busy`: it had taken a job before), or None when there is none
    /// and no worker can add one (or the scan is cancelled).
    pub fn next(&self, worker: usize, was_busy: bool) -> Option<Work<'a>> {
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
            let active = worker < self.active.load(Relaxed);
            if active {
                // Helping first: the reader of that directory waits.
                q.help.retain(|b| !b.taken());
                if let Some(b) = q.help.last() {
                    return Some(Work::Help(Arc::clone(b)));
                }
                if let Some(j) = q.jobs.pop() {
                    q.busy += 1;
                    return Some(Work::Dir(j));
                }
            }
            if q.busy == 0 && q.jobs.is_empty() {
                q.done = true;
                self.cv.notify_all();
                return None;
            }
            if active {
                self.hungry.fetch_add(1, Relaxed);
            }
            q = self.cv.wait(q).unwrap_or_else(|p| p.into_inner());
            if active {
                self.hungry.fetch_sub(1, Relaxed);
            }
        }
    }

    /// Offers a large directory's stats to the other workers, now waiting
    /// or later; false: there is no other.
    #[cfg_attr(windows, allow(dead_code))]
    pub fn offer(&self, b: &Arc<StatBatch<'a>>) -> bool {
        if self.active.load(Relaxed) < 2 {
            return false;
        }
        self.lock().help.push(Arc::clone(b));
        self.cv.notify_all();
        true
    }

    /// Takes back an offer whose chunks are all taken.
    #[cfg_attr(windows, allow(dead_code))]
    pub fn withdraw(&self, b: &Arc<StatBatch<'a>>) {
        self.lock().help.retain(|h| !Arc::ptr_eq(h, b));
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

/// How the walk sizes its crew. With a warm cache it is CPU work: workers
/// beyond twice the cores only take turns (on the 2-core benchmark VM, 16
/// walked the 200,000-file tree some 25 ms, 10 %, slower than 4). With a
/// cold cache they wait on the disk, and more of them keep more reads in
/// flight (16: 1.7 s, 4: 2.0 s, 2: 3.6 s). So the walk starts with twice
/// the cores and lets all in once the process uses less than 60 % of the
/// cores its active workers could use, none of them waiting for work.
pub(super) struct Crew {
    all: usize,
    cores: usize,
    since: Instant,
    cpu: Duration,
}

/// Time over which the CPU use is judged.
const WINDOW: Duration = Duration::from_millis(40);

impl Crew {
    /// For `all` workers: the crew, and how many start.
    pub fn new(all: usize) -> (Crew, usize) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let crew = Crew {
            all,
            cores,
            since: Instant::now(),
            cpu: process_cpu(),
        };
        (crew, all.min(2 * cores).max(1))
    }

    /// Called every few tens of milliseconds while the walk runs.
    pub fn check(&mut self, q: &Queue<'_>) {
        let active = q.active();
        let wall = self.since.elapsed();
        if active >= self.all || wall < WINDOW {
            return;
        }
        let cpu = process_cpu();
        let used = cpu.saturating_sub(self.cpu).as_secs_f64() / wall.as_secs_f64();
        let could = active.min(self.cores) as f64;
        if used < 0.6 * could && q.hungry() == 0 {
            tracing::debug!(
                used,
                active,
                workers = self.all,
                "scan: the walk waits on the disk; all workers on"
            );
            q.activate(self.all);
        }
        (self.since, self.cpu) = (Instant::now(), cpu);
    }
}

/// CPU time of the whole process, every thread.
#[cfg(windows)]
fn process_cpu() -> Duration {
    let t = crate::sys::win::process_use().map_or(0, |u| u.cpu_100ns);
    Duration::from_nanos(t.saturating_mul(100))
}

/// CPU time of the whole process, every thread.
#[cfg(unix)]
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::walk::{Kind, Meta};

    /// A tree of `depth` levels, `fan` subdirectories each, walked by
    /// `workers` of which `active` start; worker 0 lets all in after its
    /// first job if `open_up`. Every directory is read once and every
    /// worker returns.
    fn run(workers: usize, active: usize, open_up: bool) -> usize {
        const FAN: u32 = 3;
        const DEPTH: u64 = 6;
        let cancel = AtomicBool::new(false);
        let q = Queue::new(&cancel, active);
        let md = Meta {
            kind: Kind::Dir,
            dev: 1,
            ino: 0,
            size: 0,
            mtime_ns: 0,
            nlink: 1,
        };
        q.seed(vec![Job::root(0, PathBuf::new(), &md, 0)]);
        let read = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for w in 0..workers {
                let (q, read, md) = (&q, &read, &md);
                s.spawn(move || {
                    let mut mine: Vec<Job<'_>> = Vec::new();
                    let mut busy = false;
                    loop {
                        let job = match mine.pop() {
                            Some(j) => j,
                            None => match q.next(w, busy) {
                                Some(Work::Dir(j)) => j,
                                Some(Work::Help(b)) => {
                                    b.work();
                                    busy = false;
                                    continue;
                                }
                                None => break,
                            },
                        };
                        busy = true;
                        if read.fetch_add(1, Relaxed) == 0 && open_up {
                            q.activate(workers);
                        }
                        // `ino` holds the depth.
                        if job.ino < DEPTH {
                            for _ in 0..FAN {
                                let md = Meta {
                                    ino: job.ino + 1,
                                    ..*md
                                };
                                mine.push(Job::root(0, PathBuf::new(), &md, 0));
                            }
                        }
                        q.share(&mut mine);
                    }
                });
            }
        });
        read.into_inner()
    }

    #[test]
    fn waiting_workers_neither_block_the_end_nor_lose_jobs() {
        let all: usize = (0..=6).map(|d| 3usize.pow(d)).sum();
        for (workers, active, open_up) in
            [(1, 1, false), (4, 1, false), (8, 2, true), (8, 8, false)]
        {
            assert_eq!(
                run(workers, active, open_up),
                all,
                "{workers} {active} {open_up}"
            );
        }
    }
}
