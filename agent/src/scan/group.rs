//! Duplicate finding in stages, each one narrowing the candidates before
//! the next reads more: size → (hard links already dropped by the walk) →
//! prefix hash → suffix hash → full hash. Hashes the index still holds for
//! an unchanged file (same dev, inode, size, mtime) are reused, not read:
//! they go straight from the streamed index into the slots, with no cache
//! of the whole index in memory.

use super::by_size::BySize;
use super::hash::{self, BLOCK, Hash, HashFail, Stage};
use super::pace::Pacer;
use super::walk::Walked;
use super::{Counters, Issue, IssueKind, run_workers};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

/// Marks a file that has no slot.
pub(crate) const NO_SLOT: u32 = u32::MAX;

/// Files hashed per device in one round of [`Ctx::run_io`].
const ROUND: usize = 16_384;

pub(crate) use super::slots::Slots;

/// Candidates in groups of the same size and so far the same hashes:
/// every group's slots side by side in one vector, not a vector per group
/// (18,000 groups on the benchmark's tree: 1.3 MB in small allocations,
/// twice over while a stage splits them).
#[derive(Debug, Default)]
pub(crate) struct Groups {
    slots: Vec<u32>,
    /// Each group's file size and the end of its slots in `slots`.
    ends: Vec<(u64, u32)>,
}

impl Groups {
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Each group: its file size and its slots.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &[u32])> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|&(_, e)| e));
        self.ends.iter().zip(starts).map(|(&(size, end), start)| {
            let run = self.slots.get(start as usize..end as usize);
            (size, run.unwrap_or_default())
        })
    }

    /// Closes the group of the slots pushed since the last one.
    fn close(&mut self, size: u64) {
        // At most one slot per file of the walk, whose count fits in u32.
        let end = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.ends.push((size, end));
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
    pub slots: Slots,
    /// For each file of the walk, its slot or [`NO_SLOT`].
    pub slot_of: Vec<u32>,
    pub groups: Groups,
    /// Files whose hashes came from the index.
    pub reused: u64,
    /// Stopped before the end (cancelled).
    pub partial: bool,
    pub issues: Vec<Issue>,
    pub unreadable: u64,
    pub vanished: u64,
    pub changed: u64,
}

/// A file still as the last scan saw it (same dev, inode, size and mtime),
/// and the hashes it had then (prefix, suffix, full).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Known {
    /// Index into the walk's files.
    pub file: u32,
    pub hashes: [Option<Hash>; 3],
}

/// Where a rescan finds the last scan's hashes: calls `each` with every
/// file the old index still describes; false when the index could not be
/// read whole (what it handed out is then forgotten).
pub(crate) type Prior<'a> = dyn FnMut(&mut dyn FnMut(Known)) -> bool + 'a;

struct Ctx<'a> {
    w: &'a Walked,
    opts: &'a DedupOptions<'a>,
    counters: &'a Counters,
    cancel: &'a AtomicBool,
    d: Dedup,
}

/// Runs every stage over the walk's files, after taking from `prior` the
/// hashes of files unchanged since the last scan (same dev, inode, size
/// and mtime).
pub(crate) fn find_duplicates(
    w: &Walked,
    prior: &mut Prior<'_>,
    opts: &DedupOptions<'_>,
    counters: &Counters,
    cancel: &AtomicBool,
    poll: &mut dyn FnMut(),
    checkpoint: &mut dyn FnMut(&Dedup),
) -> io::Result<Dedup> {
    let mut ctx = Ctx {
        w,
        opts,
        counters,
        cancel,
        d: Dedup {
            slot_of: vec![NO_SLOT; w.files.len()],
            ..Dedup::default()
        },
    };
    let t = std::time::Instant::now();
    let (groups, large) = ctx.candidates();
    tracing::debug!(
        groups = groups.len(),
        slots = ctx.d.slots.len(),
        ms = t.elapsed().as_millis() as u64,
        "scan: size groups"
    );
    ctx.reuse(prior);
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
    /// Stage 1: groups of files of the same non-zero size (one per inode
    /// already), and the large files that need a full hash anyway; each
    /// gets a slot, in walk order (the index's order: a rescan fills them
    /// front to back).
    fn candidates(&mut self) -> (Groups, Vec<u32>) {
        const WANTED: u32 = NO_SLOT - 1;
        let files = &self.w.files;
        let slot_of = &mut self.d.slot_of;
        let order = BySize::new(files);
        for (_, run) in order.runs() {
            for f in run {
                slot_of[f as usize] = WANTED;
            }
        }
        let large_min = self.opts.full_hash_min.map(|m| m.max(1));
        if let Some(min) = large_min {
            for (i, f) in files.iter().enumerate() {
                if f.size >= min {
                    slot_of[i] = WANTED;
                }
            }
        }
        let slots = &mut self.d.slots;
        slots.reserve_exact(slot_of.iter().filter(|&&s| s == WANTED).count());
        for (i, s) in slot_of.iter_mut().enumerate() {
            if *s == WANTED {
                *s = slots.len() as u32;
                slots.push(i as u32);
            }
        }
        let mut groups = Groups {
            slots: Vec::with_capacity(slots.len()),
            ends: Vec::new(),
        };
        for (size, run) in order.runs() {
            groups.slots.extend(run.map(|f| slot_of[f as usize]));
            groups.close(size);
        }
        let large = match large_min {
            Some(min) => (0..files.len())
                .filter(|&i| files[i].size >= min)
                .map(|i| slot_of[i])
                .collect(),
            None => Vec::new(),
        };
        (groups, large)
    }

    /// Takes the hashes of unchanged files from the last scan's index.
    fn reuse(&mut self, prior: &mut Prior<'_>) {
        let Dedup {
            slots,
            slot_of,
            reused,
            ..
        } = &mut self.d;
        let whole = prior(&mut |k| {
            let Some(&slot) = slot_of.get(k.file as usize).filter(|&&s| s != NO_SLOT) else {
                return;
            };
            let [prefix, _, full] = slots.hashes(slot);
            if prefix.is_none() && full.is_none() {
                *reused += 1;
            }
            slots.set_all(slot, k.hashes);
        });
        if !whole {
            slots.clear_hashes();
            *reused = 0;
        }
        tracing::debug!(reused = *reused, "scan: hashes taken from the index");
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
        groups: Groups,
        poll: &mut dyn FnMut(),
    ) -> io::Result<Groups> {
        let applies = |size: u64| stage == Stage::Prefix || size > BLOCK;
        // One look at each group's slots (they lie all over: each look is
        // a cache miss) tells what to read, and whether a group has all
        // its hashes and they are one: then it stays as it is (true
        // copies, the common case, and every group of an unchanged tree).
        let mut jobs = Vec::new();
        let mut whole = vec![false; groups.len()];
        for ((size, slots), whole) in groups.iter().zip(&mut whole) {
            if !applies(size) {
                *whole = true;
                continue;
            }
            let first = slots.first().map(|&s| self.d.slots.get(s, stage));
            let mut one = first.is_some_and(|h| h.is_some());
            for &s in slots {
                let h = self.d.slots.get(s, stage);
                if h.is_none() {
                    jobs.push(s);
                }
                one &= Some(h) == first;
            }
            *whole = one && slots.len() > 1;
        }
        let (t, n_jobs) = (std::time::Instant::now(), jobs.len());
        self.run_io(stage, jobs, poll)?;
        tracing::debug!(
            ?stage,
            groups = groups.len(),
            split = whole.iter().filter(|w| !**w).count(),
            read = n_jobs,
            ms = t.elapsed().as_millis() as u64,
            "scan stage"
        );
        Ok(split(groups, &whole, |s| self.d.slots.get(s, stage)))
    }

    /// Large files get a full hash whether or not they have a twin here:
    /// their fingerprint finds twins on other hosts.
    fn full_hash_large(&mut self, large: Vec<u32>, poll: &mut dyn FnMut()) -> io::Result<()> {
        let jobs = large
            .into_iter()
            .filter(|&s| self.d.slots.full(s).is_none())
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
        // Sorted in place by device, then inode: one list, not a copy
        // per device beside it.
        let mut jobs = jobs;
        jobs.sort_unstable_by_key(|&s| (w.dev(file(s)), file(s).ino));
        let devs: Vec<(&[u32], AtomicUsize)> = jobs
            .chunk_by(|&a, &b| w.dev(file(a)) == w.dev(file(b)))
            .map(|l| (l, AtomicUsize::new(0)))
            .collect();
        let per = self.opts.threads.max(1);
        let longest = devs.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        // In rounds: each round's outcomes (32 B each) wait in memory until
        // it ends, not every job's (5.7 MB for 180,000 prefix hashes).
        for end in (1..=longest.div_ceil(ROUND)).map(|r| r * ROUND) {
            for (_, next) in &devs {
                next.store(end - ROUND, Relaxed);
            }
            let results = self.round(stage, &devs, end, per, poll)?;
            for (s, r) in results.into_iter().flatten() {
                self.record(stage, s, r);
            }
            if self.cancel.load(Relaxed) {
                break;
            }
        }
        Ok(())
    }

    /// One round of [`Ctx::run_io`]: each device's jobs up to `end`.
    #[allow(clippy::type_complexity)]
    fn round(
        &self,
        stage: Stage,
        devs: &[(&[u32], AtomicUsize)],
        end: usize,
        per: usize,
        poll: &mut dyn FnMut(),
    ) -> io::Result<Vec<Vec<(u32, Result<Hash, HashFail>)>>> {
        let (w, slots) = (self.w, &self.d.slots);
        let file = |s: u32| &w.files[slots[s as usize].file as usize];
        let budget = self.opts.budget;
        let (counters, cancel) = (self.counters, self.cancel);
        run_workers(
            devs.len() * per,
            |i| {
                let (list, next) = &devs[i / per];
                let (mut out, mut buf, mut pacer) = (Vec::new(), Vec::new(), Pacer::new(budget));
                loop {
                    let k = next.fetch_add(1, Relaxed);
                    if k >= list.len().min(end) || cancel.load(Relaxed) {
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
        )
    }

    fn record(&mut self, stage: Stage, s: u32, r: Result<Hash, HashFail>) {
        let size = self.size(s);
        let h = match r {
            Ok(h) => h,
            Err(HashFail::Cancelled) => return,
            Err(fail) => {
                let path = self
                    .w
                    .path(&self.w.files[self.d.slots[s as usize].file as usize]);
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
        if self.d.slots.mark_read(s) {
            self.counters.hashed_files.fetch_add(1, Relaxed);
        }
        self.d.slots.set(s, stage, h);
        if stage == Stage::Prefix && size <= BLOCK {
            self.d.slots.set(s, Stage::Full, h);
        }
    }
}

/// Splits each group not `whole` by its slots' hashes (`hash`), in place:
/// a group's part groups never take more room than it did, so they are
/// written over the slots already read. Slots without a hash (unreadable)
/// leave their group. Slots are in walk order and stay so within a group.
fn split(groups: Groups, whole: &[bool], hash: impl Fn(u32) -> Option<Hash>) -> Groups {
    let Groups { mut slots, ends } = groups;
    let mut out = Groups {
        slots: Vec::new(),
        ends: Vec::with_capacity(ends.len()),
    };
    // Each slot's hash fetched once, then sorted beside it (sorting the
    // slots by a hash fetched at each comparison missed the cache at each).
    let mut keyed: Vec<(Hash, u32)> = Vec::new();
    let (mut start, mut at) = (0usize, 0usize);
    for (&(size, end), &whole) in ends.iter().zip(whole) {
        let range = start..end as usize;
        start = end as usize;
        keyed.clear();
        if !whole {
            let run = slots.get(range.clone()).unwrap_or_default();
            keyed.extend(run.iter().filter_map(|&s| hash(s).map(|h| (h, s))));
            keyed.sort_unstable();
        }
        let one = !keyed.is_empty()
            && keyed.len() == range.len()
            && keyed.first().map(|k| k.0) == keyed.last().map(|k| k.0);
        if whole || one {
            // Still one group: as it is, still in walk order.
            let n = range.len();
            slots.copy_within(range, at);
            at += n;
            out.ends.push((size, at as u32));
            continue;
        }
        for run in keyed.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1) {
            for (&(_, s), to) in run.iter().zip(&mut slots[at..]) {
                *to = s;
            }
            at += run.len();
            out.ends.push((size, at as u32));
        }
    }
    slots.truncate(at);
    out.slots = slots;
    out
}

fn read_len(stage: Stage, size: u64) -> u64 {
    match stage {
        Stage::Prefix | Stage::Suffix => size.min(BLOCK),
        Stage::Full => size,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// Splitting in place gives what splitting into new vectors, group
        /// by group, gives: the groups kept whole as they were, the others
        /// by hash (no hash: out), parts of one file dropped.
        #[test]
        fn split_in_place(
            groups in proptest::collection::vec((0u64..4, proptest::collection::vec(0u8..4, 0..12), any::<bool>()), 0..40),
        ) {
            let mut flat = super::Groups::default();
            let (mut hashes, mut whole, mut want) = (Vec::new(), Vec::new(), Vec::new());
            for (size, hs, w) in &groups {
                let base = hashes.len() as u32;
                hashes.extend(hs.iter().map(|&h| (h > 0).then_some([h; 16])));
                let slots: Vec<u32> = (base..hashes.len() as u32).collect();
                flat.slots.extend(&slots);
                flat.close(*size);
                whole.push(*w);
                let mut by: std::collections::BTreeMap<[u8; 16], Vec<u32>> = Default::default();
                for &s in &slots {
                    if let Some(h) = hashes[s as usize] {
                        by.entry(h).or_default().push(s);
                    }
                }
                if *w || (by.len() == 1 && by.values().all(|v| v.len() == slots.len())) {
                    want.push((*size, slots));
                } else {
                    want.extend(by.into_values().filter(|v| v.len() > 1).map(|v| (*size, v)));
                }
            }
            let got = super::split(flat, &whole, |s| hashes[s as usize]);
            let got: Vec<(u64, Vec<u32>)> = got.iter().map(|(z, s)| (z, s.to_vec())).collect();
            prop_assert_eq!(got, want);
        }
    }
}
