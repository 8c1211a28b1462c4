//! Storage scan: finds duplicates and bloat under the configured roots,
//! keeps a local index so rescans rehash only what changed, and sums it up
//! as an aggregate-only `StorageSummary` (names stay on the machine).
//!
//! The pipeline, one module per stage (as fclones' `group.rs`): `walk`
//! (parallel, iterative: no recursion, so any depth) → hard links dropped
//! by (dev, inode) → `group`: size groups → prefix hash → suffix hash →
//! full hash → `report`: categories by age bucket, the summary → `index`:
//! saved for the next scan and for `cleanup`.
//!
//! The hash is BLAKE3: several GB/s per core with SIMD (runtime-detected
//! SSE4.1/AVX2/AVX-512), so full hashes are bounded by the disk, not the
//! CPU; and its keyed mode makes the fleet fingerprints of large files with
//! the same crate (no HMAC construction, no second dependency): a
//! fingerprint is the keyed BLAKE3 of the content's BLAKE3 hash, so it
//! costs no second read. xxHash3 is as fast but not collision-resistant,
//! which matters when a hash decides that a file may go to the trash.
//!
//! Background mode (`cpu_budget`) runs one reader per device and paces the
//! whole scan (`pace`) to a share of one core; it saves what it hashed
//! between stages and when cancelled, so the next scan resumes from the
//! index.

mod by_size;
pub mod child;
pub mod cli;
mod group;
mod hash;
pub mod human;
pub mod index;
mod pace;
mod prior;
mod report;
pub mod rules;
mod save;
mod slots;
mod walk;

#[cfg(test)]
pub(crate) mod test_support;
#[cfg(all(test, unix))]
pub(crate) mod tests;

pub use hash::{BLOCK, Hash, fingerprint};
pub use index::{EntryKind, Index, IndexEntry, IndexError};
pub use report::{CategoryRow, DuplicateStats, FingerprintRow, GroupRow, PathRow, ScanReport};
pub use rules::{Age, Category, Glob, Rules};
pub use walk::WalkStats;

use crate::config::StorageConfig;
use serde::Serialize;
use sobre_proto::v1::StorageSummary;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Everything a scan needs, resolved (see [`ScanConfig::from_storage`]).
#[derive(Debug, Clone)]
pub struct ScanConfig {
    pub roots: Vec<PathBuf>,
    pub rules: Rules,
    pub follow_symlinks: bool,
    pub one_file_system: bool,
    /// Readers per device, and walkers (of which twice the cores start;
    /// the rest join once the walk waits on the disk).
    pub threads: usize,
    /// Where the index lives; None: no index (everything hashed).
    pub index_dir: Option<PathBuf>,
    /// Background mode: share of one core (0.05 = 5 %), one reader per
    /// device. None: full speed.
    pub cpu_budget: Option<f64>,
    pub fingerprint_key: Option<[u8; 32]>,
    pub fingerprint_min_bytes: u64,
    pub max_fingerprints: usize,
    pub send_paths: bool,
    pub max_paths: usize,
    /// The scan's clock for ages; None: now. Tests pin it.
    pub now: Option<SystemTime>,
    /// List and count only: no hashing, no index (benchmarks).
    pub walk_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(
        "no folder to scan: storage.roots is empty and no home folder was found; list the folders in storage.roots"
    )]
    NoRoots,
    #[error("invalid storage configuration: {0}")]
    Config(String),
    #[error("cannot start the scan's threads: {0}")]
    Threads(#[source] io::Error),
    #[error("scan process: {0}")]
    Child(String),
}

impl ScanConfig {
    /// From the agent's `[storage]` section; empty `roots` become the
    /// users' home folders.
    pub fn from_storage(s: &StorageConfig) -> Result<ScanConfig, ScanError> {
        let globs = |v: &[String]| v.iter().map(|p| Glob::new(p)).collect::<Vec<_>>();
        let (exclude_paths, exclude_names): (Vec<&String>, Vec<&String>) =
            s.exclude.iter().partition(|p| p.starts_with('/'));
        let key = match &s.fingerprint_key {
            Some(hex) => Some(parse_key(hex).ok_or_else(|| {
                ScanError::Config(
                    "storage.fingerprint_key must be 64 hexadecimal characters".into(),
                )
            })?),
            None => None,
        };
        let roots = if s.roots.is_empty() {
            default_roots()
        } else {
            s.roots.clone()
        };
        Ok(ScanConfig {
            roots,
            rules: Rules {
                cold_years: s.cold_years,
                old_download_days: s.old_download_days,
                large_min_bytes: s.large_min_bytes,
                temp_patterns: globs(&s.temp_patterns),
                cache_dirs: globs(&s.cache_dirs),
                download_dirs: globs(&s.download_dirs),
                exclude_names: exclude_names.into_iter().map(|p| Glob::new(p)).collect(),
                exclude_paths: exclude_paths.into_iter().map(PathBuf::from).collect(),
            },
            follow_symlinks: s.follow_symlinks,
            one_file_system: s.one_file_system,
            threads: s.threads.max(1),
            index_dir: Some(s.index_dir.clone()),
            cpu_budget: s.background.then_some(s.cpu_budget_percent / 100.0),
            fingerprint_key: key,
            fingerprint_min_bytes: s.fingerprint_min_bytes,
            max_fingerprints: s.max_fingerprints,
            send_paths: s.send_paths,
            max_paths: s.max_paths,
            now: None,
            walk_only: false,
        })
    }
}

/// `64 hex characters` → 32 bytes.
pub fn parse_key(hex: &str) -> Option<[u8; 32]> {
    let b = hex.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, k) in key.iter_mut().enumerate() {
        let s = std::str::from_utf8(&b[2 * i..2 * i + 2]).ok()?;
        *k = u8::from_str_radix(s, 16).ok()?;
    }
    Some(key)
}

/// The users' home folders: as root, those of /etc/passwd's human users
/// (uid 1000 to 59999) that exist; otherwise `$HOME`.
#[cfg(unix)]
pub fn default_roots() -> Vec<PathBuf> {
    if crate::sys::privileged() {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let homes: Vec<PathBuf> = passwd
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                let uid: u32 = f.get(2)?.parse().ok()?;
                let home = Path::new(f.get(5)?);
                ((1000..60000).contains(&uid) && home.is_dir()).then(|| home.to_owned())
            })
            .collect();
        if !homes.is_empty() {
            return homes;
        }
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .into_iter()
        .collect()
}

/// The users' profile folders: with the machine's rights (the service),
/// every folder of `%SystemDrive%\Users` but the shared ones and the
/// junctions Windows keeps there for old programs; otherwise
/// `%USERPROFILE%`.
#[cfg(windows)]
pub fn default_roots() -> Vec<PathBuf> {
    const SHARED: [&str; 4] = ["Public", "Default", "Default User", "All Users"];
    if crate::sys::privileged() {
        let drive = std::env::var_os("SystemDrive").unwrap_or_else(|| "C:".into());
        let users = PathBuf::from(drive).join("\\Users");
        let homes: Vec<PathBuf> = std::fs::read_dir(&users)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir() && !t.is_symlink()))
            .filter(|e| !SHARED.iter().any(|s| e.file_name().eq_ignore_ascii_case(s)))
            .map(|e| e.path())
            .collect();
        if !homes.is_empty() {
            return homes;
        }
    }
    std::env::var_os("USERPROFILE")
        .map(PathBuf::from)
        .into_iter()
        .collect()
}

/// What the scan is doing, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Walking,
    Hashing,
    Saving,
}

/// A snapshot of the scan's progress, passed to the caller's callback
/// (on the caller's thread) about ten times a second, once a second in
/// background mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub phase: Phase,
    pub files: u64,
    pub bytes: u64,
    pub dirs: u64,
    pub hashed_files: u64,
    pub hashed_bytes: u64,
    /// Bytes the hashing stages started so far will read in all.
    pub to_hash_bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub phase: AtomicU8,
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub dirs: AtomicU64,
    pub hashed_files: AtomicU64,
    pub hashed_bytes: AtomicU64,
    pub to_hash_bytes: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Progress {
        Progress {
            phase: match self.phase.load(Relaxed) {
                0 => Phase::Walking,
                1 => Phase::Hashing,
                _ => Phase::Saving,
            },
            files: self.files.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            dirs: self.dirs.load(Relaxed),
            hashed_files: self.hashed_files.load(Relaxed),
            hashed_bytes: self.hashed_bytes.load(Relaxed),
            to_hash_bytes: self.to_hash_bytes.load(Relaxed),
        }
    }
}

/// An entry that could not be scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    #[serde(serialize_with = "lossy")]
    pub path: PathBuf,
    pub kind: IssueKind,
    pub error: String,
}

fn lossy<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssueKind {
    Unreadable,
    Vanished,
    Changed,
}

/// Runs `n` workers in a scope; the calling thread calls `poll` every
/// `every` until they are all done.
pub(crate) fn run_workers<R: Send>(
    n: usize,
    work: impl Fn(usize) -> R + Sync,
    every: Duration,
    poll: &mut dyn FnMut(),
) -> io::Result<Vec<R>> {
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<()>();
        let work = &work;
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let tx = tx.clone();
            let h = std::thread::Builder::new()
                .name(format!("sobre-scan-{i}"))
                .spawn_scoped(s, move || {
                    let r = work(i);
                    drop(tx);
                    r
                })?;
            handles.push(h);
        }
        drop(tx);
        // Disconnected once every worker has dropped its sender.
        while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
            poll();
        }
        Ok(handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect())
    })
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Absolute, each once, none inside another.
fn normalize_roots(roots: &[PathBuf]) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = roots
        .iter()
        .map(|r| std::path::absolute(r).unwrap_or_else(|_| r.clone()))
        .collect();
    v.sort();
    v.dedup();
    let all = v.clone();
    v.retain(|r| !all.iter().any(|o| o != r && r.starts_with(o)));
    v
}

/// Scans `cfg.roots`. Unreadable or vanishing entries are counted, never
/// fatal; `cancel` stops it early with a partial report (`complete =
/// false`) and an index that the next scan resumes from.
pub fn scan(
    cfg: &ScanConfig,
    progress: &dyn Fn(Progress),
    cancel: &AtomicBool,
) -> Result<ScanReport, ScanError> {
    let started = SystemTime::now();
    let now_ns = cfg
        .now
        .unwrap_or(started)
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let roots = normalize_roots(&cfg.roots);
    if roots.is_empty() {
        return Err(ScanError::NoRoots);
    }
    let counters = Counters::default();
    let every = Duration::from_millis(if cfg.cpu_budget.is_some() { 1000 } else { 100 });
    let mut poll = || progress(counters.snapshot());
    let mut rules = cfg.rules.clone();
    if let Some(dir) = &cfg.index_dir {
        // An index an older version left readable by all: owner-only now.
        let idx = dir.join(index::FILE_NAME);
        if let Err(e) =
            sobre_base::files::tighten_dir(dir).and(sobre_base::files::tighten_file(&idx))
        {
            tracing::debug!(error = %e, "cannot make the storage index owner-only");
        }
        rules
            .exclude_paths
            .push(std::path::absolute(dir).unwrap_or_else(|_| dir.clone()));
    }
    let budget = cfg.cpu_budget.map(pace::Budget::new);
    let threads = if cfg.cpu_budget.is_some() {
        1
    } else {
        cfg.threads.max(1)
    };
    let t0 = Instant::now();
    let walked = walk::walk(
        &roots,
        &walk::WalkOptions {
            rules: &rules,
            follow_symlinks: cfg.follow_symlinks,
            one_file_system: cfg.one_file_system,
            threads,
            budget: budget.as_ref(),
            poll: every,
            now_ns,
        },
        &counters,
        cancel,
        &mut poll,
    )
    .map_err(ScanError::Threads)?;
    let walk_ms = t0.elapsed().as_millis() as u64;
    counters.phase.store(1, Relaxed);
    let t1 = Instant::now();
    // The old index is read after the walk, as a stream, and its hashes go
    // straight to the files they belong to: it is never whole in memory.
    let index_dir = cfg.index_dir.as_deref().filter(|_| !cfg.walk_only);
    let mut old: Option<prior::Old<'_>> = None;
    let skip = AtomicBool::new(cfg.walk_only);
    // Slow (background) scans save what they hashed between stages, at
    // most once a minute, so a crash or a reboot loses little. (Not complete:
    // the old index's header does not matter.)
    let mut last_save = Instant::now();
    let mut checkpoint = |d: &group::Dedup| {
        let Some(dir) = cfg.index_dir.as_ref() else {
            return;
        };
        if cfg.cpu_budget.is_none()
            || cfg.walk_only
            || last_save.elapsed() < Duration::from_secs(60)
        {
            return;
        }
        let cats = report::file_cats(&walked, d);
        if let Err(e) = save::save_index(
            dir,
            &roots,
            None,
            false,
            &walked,
            d,
            &cats,
            save::Scope::Walked,
        ) {
            tracing::warn!(error = %e, "cannot save the storage index checkpoint");
        }
        last_save = Instant::now();
    };
    let mut prior = |each: &mut dyn FnMut(group::Known)| -> bool {
        let Some(dir) = index_dir else {
            return true;
        };
        let read = prior::read(dir, &walked, each);
        let whole = read.whole;
        old = Some(read);
        whole
    };
    let dedup = group::find_duplicates(
        &walked,
        &mut prior,
        &group::DedupOptions {
            threads,
            budget: budget.as_ref(),
            poll: every,
            full_hash_min: cfg.fingerprint_key.map(|_| cfg.fingerprint_min_bytes),
        },
        &counters,
        if cfg.walk_only { &skip } else { cancel },
        &mut poll,
        &mut checkpoint,
    )
    .map_err(ScanError::Threads)?;
    let (old, unchanged, load) = match old {
        Some(o) => (o.header, Some(o.unchanged), o.load),
        None => (None, None, Duration::ZERO),
    };
    let load_ms = load.as_millis() as u64;
    let hash_ms = t1.elapsed().saturating_sub(load).as_millis() as u64;
    counters.phase.store(2, Relaxed);
    poll();
    let t_report = Instant::now();
    let complete = !cancel.load(Relaxed) && !dedup.partial;
    let hashed_files = counters.hashed_files.load(Relaxed);
    let cats = report::file_cats(&walked, &dedup);
    let build = || {
        let mut r = ScanReport {
            started_at_ms: ms(started),
            roots: roots.clone(),
            complete,
            walk: walked.stats,
            hash_vanished: dedup.vanished,
            hash_unreadable: dedup.unreadable,
            hash_changed: dedup.changed,
            hashed_files,
            hashed_bytes: counters.hashed_bytes.load(Relaxed),
            reused_hashes: dedup.reused,
            load_ms,
            walk_ms,
            hash_ms,
            ..ScanReport::default()
        };
        report::fill(&mut r, &walked, &dedup, &cats, cfg, now_ns);
        r.issues = walked
            .issues
            .iter()
            .chain(&dedup.issues)
            .take(walk::MAX_ISSUES)
            .cloned()
            .collect();
        tracing::debug!(
            ms = t_report.elapsed().as_millis() as u64,
            "scan: categories and report"
        );
        r
    };
    let save = || {
        let t = Instant::now();
        let dir = cfg.index_dir.as_ref().filter(|_| !cfg.walk_only);
        let saved = dir.map(|dir| {
            let old = old.as_ref();
            // Nothing hashed, and the old index holds exactly this scan:
            // nothing is written.
            let same = hashed_files == 0
                && unchanged
                    .as_ref()
                    .is_some_and(|u| u.finish(old, &roots, &dedup, &cats));
            let scope = if complete {
                save::Scope::Complete
            } else {
                save::Scope::Partial
            };
            save::save_index(dir, &roots, old, same, &walked, &dedup, &cats, scope)
        });
        (saved, t.elapsed().as_millis() as u64)
    };
    // At full speed the report and the index (or the check that it is
    // unchanged) are made side by side: the walkers are done, a core is
    // free. Background scans keep to one thread.
    let (mut r, (saved, index_ms)) = if cfg.cpu_budget.is_none() {
        std::thread::scope(|s| {
            let saving = std::thread::Builder::new()
                .name("sobre-scan-save".into())
                .spawn_scoped(s, save);
            let r = build();
            let saved = match saving {
                Ok(h) => h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Err(_) => save(),
            };
            (r, saved)
        })
    } else {
        (build(), save())
    };
    match saved {
        Some(Ok(written)) => r.index_rewritten = written,
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot save the storage index");
            r.index_error = Some(e.to_string());
        }
        None => {}
    }
    r.index_ms = index_ms;
    r.paced_ms = budget.as_ref().map_or(0, |b| b.slept().as_millis() as u64);
    r.finished_at_ms = ms(SystemTime::now());
    tracing::info!(
        files = r.files,
        bytes = r.bytes,
        duplicate_groups = r.duplicates.groups,
        reclaimable_bytes = r.duplicates.reclaimable_bytes,
        hashed_files = r.hashed_files,
        reused_hashes = r.reused_hashes,
        unreadable = r.unreadable(),
        complete = r.complete,
        walk_ms,
        hash_ms,
        "storage scan done"
    );
    // What the scan holds (some 30 MB for 200,000 files, 30,000 blocks)
    // is freed on a thread of its own: the caller has the report at once.
    drop(unchanged);
    let held = (walked, dedup, cats, old);
    let _ = std::thread::Builder::new()
        .name("sobre-scan-free".into())
        .spawn(move || drop(held));
    Ok(r)
}

/// Scans and returns the summary for the collector: what the runtime
/// calls on its schedule (from a blocking thread).
pub fn scan_summary(cfg: &ScanConfig, cancel: &AtomicBool) -> Result<StorageSummary, ScanError> {
    Ok(scan(cfg, &|_| {}, cancel)?.summary(cfg))
}
