//! Duplicate finding in stages, each one narrowing the candidates before
//! the next reads more: size → (hard links already dropped by the walk) →
//! prefix hash → suffix hash → full hash. Hashes the index still holds for
//! an unchanged file (same dev, inode, size, mtime) are reused, not read.

use super::hash::{self, BLOCK, Hash, HashFail, Stage};
use super::index::Cache;
use super::pace::Pacer;
use super::walk::Walked;
use super::{Counters, Issue, IssueKind, run_workers};
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// Marks a file that has no slot.
pub(crate) const NO_SLOT: u32 = u32::MAX;

/// What is known of one candidate file's content.
#[derive(Debug, Clone, Default)]
pub(crate) struct Slot {
    pub file: u32,
    pub prefix: Option<Hash>,
    pub suffix: Option<Hash>,
    pub full: Option<Hash>,
    /// Its content was read in this scan.
    pub read: bool,
}

impl Slot {
    fn get(&self, s: Stage) -> Option<Hash> {
        match s {
            Stage::Prefix => self.prefix,
            Stage::Suffix => self.suffix,
            Stage::Full => self.full,
        }
    }
}

pub(crate) struct DedupOptions<'a> {
    pub threads: usize,
    pub budget: Option<&'a super::pace::Budget>,
    pub poll: Duration,
    /// Files at least this large get a full hash even when unique (for
    /// fleet fingerprints).
    pub full_hash_min: Option<u64>,
}

/// The outcome: duplicate groups as slot indices, each group's content
/// identical, at least two physical files.
#[derive(Debug, Default)]
pub(crate) struct Dedup {
    pub slots: Vec<Slot>,
    /// For each file of the walk, its slot or [`NO_SLOT`].
    pub slot_of: Vec<u32>,
    pub groups: Vec<Vec<u32>>,
    /// Files whose hashes came from the index.
    pub reused: u64,
    /// Stopped before the end (cancelled).
    pub partial: bool,
    pub issues: Vec<Issue>,
    pub unreadable: u64,
    pub vanished: u64,
    pub changed: u64,
}

struct Ctx<'a> {
    w: &'a Walked,
    /// Each file's position in the cache, or `u32::MAX`.
    cached: Vec<u32>,
    opts: &'a DedupOptions<'a>,
    counters: &'a Counters,
    cancel: &'a AtomicBool,
    d: Dedup,
}

/// Runs every stage over the walk's files. The cache is dropped as soon
/// as every candidate has its slot (it is the largest thing in memory on a
/// rescan).
pub(crate) fn find_duplicates(
    w: &Walked,
    cache: Cache,
    opts: &DedupOptions<'_>,
    counters: &Counters,
    cancel: &AtomicBool,
    poll: &mut dyn FnMut(),
    checkpoint: &mut dyn FnMut(&Dedup),
) -> io::Result<Dedup> {
    let mut ctx = Ctx {
        w,
        cached: cache.positions(w.files.iter().map(|f| (f.dev, f.ino))),
        opts,
        counters,
        cancel,
        d: Dedup {
            slot_of: vec![NO_SLOT; w.files.len()],
            ..Dedup::default()
        },
    };
    let groups = ctx.size_groups(&cache);
    let large = opts
        .full_hash_min
        .map(|min| ctx.large_slots(min, &cache))
        .unwrap_or_default();
    drop(cache);
    ctx.cached = Vec::new();
    let groups = ctx.stage(Stage::Prefix, groups, poll)?;
    checkpoint(&ctx.d);
    let groups = ctx.stage(Stage::Suffix, groups, poll)?;
    checkpoint(&ctx.d);
    let groups = ctx.stage(Stage::Full, groups, poll)?;
    ctx.d.groups = groups;
    ctx.full_hash_large(large, poll)?;
    ctx.d.partial = cancel.load(Relaxed);
    Ok(ctx.d)
}

impl Ctx<'_> {
    fn slot_for(&mut self, file: u32, cache: &Cache) -> u32 {
        let cur = self.d.slot_of[file as usize];
        if cur != NO_SLOT {
            return cur;
        }
        let f = &self.w.files[file as usize];
        let mut slot = Slot {
            file,
            ..Slot::default()
        };
        if let Some(c) = cache.at(self.cached[file as usize])
            && c.size == f.size
            && c.mtime_ns == f.mtime_ns
        {
            (slot.prefix, slot.suffix, slot.full) = (c.prefix, c.suffix, c.full);
            if c.prefix.is_some() || c.full.is_some() {
                self.d.reused += 1;
            }
        }
        let id = self.d.slots.len() as u32;
        self.d.slots.push(slot);
        self.d.slot_of[file as usize] = id;
        id
    }

    /// Stage 1: files of the same non-zero size (one per inode already).
    fn size_groups(&mut self, cache: &Cache) -> Vec<Vec<u32>> {
        let files = &self.w.files;
        // (size, file) pairs sort in place, without chasing each file.
        let mut order: Vec<(u64, u32)> = files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.size > 0)
            .map(|(i, f)| (f.size, i as u32))
            .collect();
        order.sort_unstable();
        let mut groups = Vec::new();
        for run in order.chunk_by(|a, b| a.0 == b.0) {
            if run.len() > 1 {
                groups.push(run.iter().map(|&(_, f)| self.slot_for(f, cache)).collect());
            }
        }
        groups
    }

    fn size(&self, slot: u32) -> u64 {
        self.w.files[self.d.slots[slot as usize].file as usize].size
    }

    /// One hashing stage: hash what is missing, then split each group by
    /// the hash. Groups of files within one block pass the suffix and full
    /// stages as they are: their prefix hash is their full hash.
    fn stage(
        &mut self,
        stage: Stage,
        groups: Vec<Vec<u32>>,
        poll: &mut dyn FnMut(),
    ) -> io::Result<Vec<Vec<u32>>> {
        let applies = |size: u64| stage == Stage::Prefix || size > BLOCK;
        let mut jobs = Vec::new();
        for g in &groups {
            if !applies(self.size(g[0])) {
                continue;
            }
            jobs.extend(
                g.iter()
                    .copied()
                    .filter(|&s| self.d.slots[s as usize].get(stage).is_none()),
            );
        }
        let (t, n_jobs) = (std::time::Instant::now(), jobs.len());
        self.run_io(stage, jobs, poll)?;
        tracing::debug!(
            ?stage,
            groups = groups.len(),
            read = n_jobs,
            ms = t.elapsed().as_millis() as u64,
            "scan stage"
        );
        let mut out = Vec::with_capacity(groups.len());
        for mut g in groups {
            if !applies(self.size(g[0])) {
                out.push(g);
                continue;
            }
            let slots = &self.d.slots;
            g.retain(|&s| slots[s as usize].get(stage).is_some());
            g.sort_unstable_by_key(|&s| (slots[s as usize].get(stage), slots[s as usize].file));
            for run in
                g.chunk_by(|&a, &b| slots[a as usize].get(stage) == slots[b as usize].get(stage))
            {
                if run.len() > 1 {
                    out.push(run.to_vec());
                }
            }
        }
        Ok(out)
    }

    /// Slots for the files of at least `min` bytes.
    fn large_slots(&mut self, min: u64, cache: &Cache) -> Vec<u32> {
        (0..self.w.files.len() as u32)
            .filter(|&i| self.w.files[i as usize].size >= min.max(1))
            .map(|f| self.slot_for(f, cache))
            .collect()
    }

    /// Large files get a full hash whether or not they have a twin here:
    /// their fingerprint finds twins on other hosts.
    fn full_hash_large(&mut self, large: Vec<u32>, poll: &mut dyn FnMut()) -> io::Result<()> {
        let jobs = large
            .into_iter()
            .filter(|&s| self.d.slots[s as usize].full.is_none())
            .collect();
        self.run_io(Stage::Full, jobs, poll)
    }

    /// Hashes `jobs` (slot indices): `threads` readers per device, each
    /// device's files in inode order (close on disk on most filesystems).
    fn run_io(&mut self, stage: Stage, jobs: Vec<u32>, poll: &mut dyn FnMut()) -> io::Result<()> {
        if jobs.is_empty() || self.cancel.load(Relaxed) {
            return Ok(());
        }
        let (w, slots) = (self.w, &self.d.slots);
        let file = |s: u32| &w.files[slots[s as usize].file as usize];
        let todo: u64 = jobs.iter().map(|&s| read_len(stage, file(s).size)).sum();
        self.counters.to_hash_bytes.fetch_add(todo, Relaxed);
        let mut by_dev: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for s in jobs {
            by_dev.entry(file(s).dev).or_default().push(s);
        }
        let devs: Vec<(Vec<u32>, AtomicUsize)> = by_dev
            .into_values()
            .map(|mut v| {
                v.sort_unstable_by_key(|&s| file(s).ino);
                (v, AtomicUsize::new(0))
            })
            .collect();
        let per = self.opts.threads.max(1);
        let total = devs.len() * per;
        let budget = self.opts.budget;
        let (counters, cancel) = (self.counters, self.cancel);
        let results = run_workers(
            total,
            |i| {
                let (list, next) = &devs[i / per];
                let (mut out, mut buf, mut pacer) = (Vec::new(), Vec::new(), Pacer::new(budget));
                loop {
                    let k = next.fetch_add(1, Relaxed);
                    if k >= list.len() || cancel.load(Relaxed) {
                        break;
                    }
                    let f = file(list[k]);
                    let r = hash::hash_file(
                        &w.path(f),
                        stage,
                        f.size,
                        &mut buf,
                        &mut pacer,
                        cancel,
                        &counters.hashed_bytes,
                    );
                    out.push((list[k], r));
                }
                out
            },
            self.opts.poll,
            poll,
        )?;
        for (s, r) in results.into_iter().flatten() {
            self.record(stage, s, r);
        }
        Ok(())
    }

    fn record(&mut self, stage: Stage, s: u32, r: Result<Hash, HashFail>) {
        let size = self.size(s);
        let slot = &mut self.d.slots[s as usize];
        let h = match r {
            Ok(h) => h,
            Err(HashFail::Cancelled) => return,
            Err(fail) => {
                let path = self.w.path(&self.w.files[slot.file as usize]);
                let (kind, error) = match fail {
                    HashFail::Io(e) if e.kind() == io::ErrorKind::NotFound => {
                        self.d.vanished += 1;
                        (IssueKind::Vanished, e.to_string())
                    }
                    HashFail::Io(e) => {
                        self.d.unreadable += 1;
                        (IssueKind::Unreadable, e.to_string())
                    }
                    _ => {
                        self.d.changed += 1;
                        (IssueKind::Changed, "size changed while scanning".to_owned())
                    }
                };
                tracing::debug!(path = %path.display(), error, "scan: cannot hash file");
                if self.d.issues.len() < super::walk::MAX_ISSUES {
                    self.d.issues.push(Issue { path, kind, error });
                }
                return;
            }
        };
        if !slot.read {
            slot.read = true;
            self.counters.hashed_files.fetch_add(1, Relaxed);
        }
        match stage {
            Stage::Prefix => {
                slot.prefix = Some(h);
                if size <= BLOCK {
                    slot.full = Some(h);
                }
            }
            Stage::Suffix => slot.suffix = Some(h),
            Stage::Full => slot.full = Some(h),
        }
    }
}

fn read_len(stage: Stage, size: u64) -> u64 {
    match stage {
        Stage::Prefix | Stage::Suffix => size.min(BLOCK),
        Stage::Full => size,
    }
}
