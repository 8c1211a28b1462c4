//! From the walk and the duplicate groups to the local [`ScanReport`]
//! (names included, for the person at the machine) and to the
//! aggregate-only [`StorageSummary`] sent to the collector.

use super::group::{Dedup, NO_SLOT};
use super::hash::{Hash, fingerprint};
use super::rules::{Age, Category, Cats};
use super::walk::{WalkStats, Walked};
use super::{Issue, ScanConfig};
use serde::Serialize;
use sobre_proto::v1::{self, StorageSummary};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};

/// Duplicate groups listed in a report, largest reclaimable first (all are
/// counted, and all are in the index for `cleanup`).
pub const MAX_GROUPS_LISTED: usize = 1000;
/// Largest files listed per category in a report.
pub const TOP_PER_CATEGORY: usize = 10;

/// What a scan found, for this machine only: it names files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanReport {
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    #[serde(serialize_with = "lossy_paths")]
    pub roots: Vec<PathBuf>,
    /// False when cancelled (or the budget ran out): totals are partial.
    pub complete: bool,
    /// Regular files, one per physical file, and their bytes.
    pub files: u64,
    pub bytes: u64,
    pub walk: WalkStats,
    /// Files gone, unreadable or changed between the walk and hashing.
    pub hash_vanished: u64,
    pub hash_unreadable: u64,
    pub hash_changed: u64,
    /// Files whose content was read in this scan, and the bytes read.
    pub hashed_files: u64,
    pub hashed_bytes: u64,
    /// Files whose hashes came from the index unchanged.
    pub reused_hashes: u64,
    pub duplicates: DuplicateStats,
    /// Per category and age bucket, rows with at least one file.
    pub categories: Vec<CategoryRow>,
    /// Per category, all ages together, largest first.
    pub totals: Vec<CategoryRow>,
    /// The largest entries of each category (duplicates: the redundant
    /// copies).
    pub largest: Vec<PathRow>,
    pub duplicate_groups: Vec<GroupRow>,
    /// Only with a fingerprint key.
    pub fingerprints: Vec<FingerprintRow>,
    pub issues: Vec<Issue>,
    /// Time reading the old index, walking, grouping and hashing, writing
    /// the index (or checking it unchanged).
    pub load_ms: u64,
    pub walk_ms: u64,
    pub hash_ms: u64,
    pub index_ms: u64,
    /// Time slept to stay within the CPU budget (background mode).
    pub paced_ms: u64,
    /// The index was written (false: it already held exactly this scan,
    /// or there is no index).
    pub index_rewritten: bool,
    /// The index could not be saved (the scan itself is fine).
    pub index_error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DuplicateStats {
    pub groups: u64,
    /// Physical files in groups, including the copy each group keeps.
    pub files_in_groups: u64,
    /// All copies but one per group.
    pub redundant_files: u64,
    pub reclaimable_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryRow {
    pub category: &'static str,
    /// Empty in `totals`.
    pub age: &'static str,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathRow {
    pub category: &'static str,
    #[serde(serialize_with = "lossy_path")]
    pub path: PathBuf,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupRow {
    pub size: u64,
    /// The copy kept (the oldest) first.
    #[serde(serialize_with = "lossy_paths")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FingerprintRow {
    #[serde(serialize_with = "hex")]
    pub keyed_hash: Hash,
    pub size: u64,
    pub copies: u32,
}

fn lossy_path<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

fn lossy_paths<S: serde::Serializer>(ps: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ps.iter().map(|p| p.to_string_lossy()))
}

fn hex<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&h.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Per-file categories, duplicates included, in walk order.
pub(crate) fn file_cats(w: &Walked, d: &Dedup) -> Vec<Cats> {
    let mut cats: Vec<Cats> = w.files.iter().map(|f| f.cats).collect();
    for (_, g) in d.groups.iter() {
        let keep = kept(w, d, g);
        for &s in g {
            let file = d.slots[s as usize].file;
            if file != keep {
                cats[file as usize] |= Category::Duplicates.bit();
            }
        }
    }
    cats
}

/// The copy a group keeps in the summary's arithmetic: the oldest, then
/// the first by path.
fn kept(w: &Walked, d: &Dedup, g: &[u32]) -> u32 {
    g.iter()
        .map(|&s| d.slots[s as usize].file)
        .min_by_key(|&f| (w.files[f as usize].mtime_ns, f))
        .unwrap_or(u32::MAX)
}

#[derive(Default)]
struct Tops(Vec<BinaryHeap<Reverse<(u64, u32, u32)>>>);

impl Tops {
    fn push(&mut self, cat: Category, size: u64, kind: u32, idx: u32, k: usize) {
        if self.0.is_empty() {
            self.0 = (0..Category::ALL.len())
                .map(|_| BinaryHeap::new())
                .collect();
        }
        let h = &mut self.0[cat.index()];
        // Most files are not among the largest: no push and pop for them.
        if h.len() >= k
            && h.peek()
                .is_some_and(|Reverse(min)| *min >= (size, kind, idx))
        {
            return;
        }
        h.push(Reverse((size, kind, idx)));
        if h.len() > k {
            h.pop();
        }
    }
}

/// Fills the totals, the lists and the fingerprints of `r`.
pub(crate) fn fill(
    r: &mut ScanReport,
    w: &Walked,
    d: &Dedup,
    cats: &[Cats],
    cfg: &ScanConfig,
    now_ns: i64,
) {
    let mut rows = [[(0u64, 0u64); 4]; 9];
    let k = TOP_PER_CATEGORY.max(if cfg.send_paths { cfg.max_paths } else { 0 });
    let mut tops = Tops::default();
    for (i, f) in w.files.iter().enumerate() {
        r.files += 1;
        r.bytes += f.size;
        let age = Age::of(f.mtime_ns, now_ns).index();
        for c in Category::ALL {
            if cats[i] & c.bit() != 0 {
                let row = &mut rows[c.index()][age];
                row.0 += 1;
                row.1 += f.size;
                tops.push(c, f.size, 0, i as u32, k);
            }
        }
    }
    for (kind, list, cat) in [
        (1, &w.empty_dirs, Category::EmptyDirs),
        (2, &w.broken_links, Category::BrokenLinks),
    ] {
        for (i, o) in list.iter().enumerate() {
            rows[cat.index()][Age::of(o.mtime_ns, now_ns).index()].0 += 1;
            tops.push(cat, 0, kind, i as u32, k);
        }
    }
    for c in Category::ALL {
        let (mut files, mut bytes) = (0, 0);
        for a in Age::ALL {
            let (n, b) = rows[c.index()][a.index()];
            if n > 0 {
                r.categories.push(CategoryRow {
                    category: c.name(),
                    age: a.name(),
                    files: n,
                    bytes: b,
                });
            }
            files += n;
            bytes += b;
        }
        if files > 0 {
            r.totals.push(CategoryRow {
                category: c.name(),
                age: "",
                files,
                bytes,
            });
        }
    }
    r.totals.sort_by_key(|t| Reverse((t.bytes, t.files)));
    for c in Category::ALL {
        let Some(h) = tops.0.get(c.index()) else {
            continue;
        };
        let mut v: Vec<_> = h.iter().map(|Reverse(t)| *t).collect();
        v.sort_by_key(|&t| Reverse(t));
        for (size, kind, idx) in v {
            let path = match kind {
                0 => w.path(&w.files[idx as usize]),
                1 => w.other_path(&w.empty_dirs[idx as usize]),
                _ => w.other_path(&w.broken_links[idx as usize]),
            };
            r.largest.push(PathRow {
                category: c.name(),
                path,
                size,
            });
        }
    }
    duplicates(r, w, d);
    if let Some(key) = &cfg.fingerprint_key {
        r.fingerprints = fingerprints(w, d, key, cfg.fingerprint_min_bytes, cfg.max_fingerprints);
    }
}

fn duplicates(r: &mut ScanReport, w: &Walked, d: &Dedup) {
    let size_of = |g: &[u32]| w.files[d.slots[g[0] as usize].file as usize].size;
    let mut order: Vec<&[u32]> = d.groups.iter().map(|(_, g)| g).collect();
    order.sort_by_cached_key(|g| Reverse(size_of(g) * (g.len() as u64 - 1)));
    for g in &order {
        let n = g.len() as u64;
        r.duplicates.groups += 1;
        r.duplicates.files_in_groups += n;
        r.duplicates.redundant_files += n - 1;
        r.duplicates.reclaimable_bytes += size_of(g) * (n - 1);
    }
    for g in order.into_iter().take(MAX_GROUPS_LISTED) {
        let keep = kept(w, d, g);
        let mut files: Vec<u32> = g.iter().map(|&s| d.slots[s as usize].file).collect();
        files.sort_by_key(|&f| (f != keep, f));
        r.duplicate_groups.push(GroupRow {
            size: size_of(g),
            files: files
                .into_iter()
                .map(|f| w.path(&w.files[f as usize]))
                .collect(),
        });
    }
}

/// One fingerprint per distinct large content, with its number of
/// physical copies here; largest first, at most `max`.
fn fingerprints(
    w: &Walked,
    d: &Dedup,
    key: &[u8; 32],
    min: u64,
    max: usize,
) -> Vec<FingerprintRow> {
    let mut by_content: HashMap<(u64, Hash), u32> = HashMap::new();
    for (i, f) in w.files.iter().enumerate() {
        let s = d.slot_of[i];
        if f.size < min.max(1) || s == NO_SLOT {
            continue;
        }
        if let Some(full) = d.slots.full(s) {
            *by_content.entry((f.size, full)).or_default() += 1;
        }
    }
    let mut rows: Vec<FingerprintRow> = by_content
        .into_iter()
        .map(|((size, full), copies)| FingerprintRow {
            keyed_hash: fingerprint(key, &full),
            size,
            copies,
        })
        .collect();
    rows.sort_by_key(|r| Reverse((r.size, r.keyed_hash)));
    rows.truncate(max);
    rows
}

impl ScanReport {
    /// Entries that could not be read, vanished or changed mid-scan.
    pub fn unreadable(&self) -> u64 {
        self.walk.unreadable
            + self.walk.vanished
            + self.hash_vanished
            + self.hash_unreadable
            + self.hash_changed
    }

    /// The summary for the collector: counts and bytes per category and
    /// age, keyed fingerprints when a key is configured, and paths only
    /// when `send_paths` opts in. No name, path or plain hash otherwise.
    pub fn summary(&self, cfg: &ScanConfig) -> StorageSummary {
        let mut paths: Vec<v1::PathEntry> = Vec::new();
        if cfg.send_paths {
            let mut rows: Vec<&PathRow> = self.largest.iter().collect();
            rows.sort_by_key(|p| Reverse(p.size));
            paths = rows
                .into_iter()
                .take(cfg.max_paths)
                .map(|p| v1::PathEntry {
                    category: p.category.to_owned(),
                    path: p.path.to_string_lossy().into_owned(),
                    size: p.size,
                })
                .collect();
        }
        StorageSummary {
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms,
            roots: self.roots.len() as u32,
            files: self.files,
            bytes: self.bytes,
            dirs: self.walk.dirs,
            unreadable: self.unreadable(),
            categories: self
                .categories
                .iter()
                .map(|c| v1::CategoryTotal {
                    category: c.category.to_owned(),
                    age: c.age.to_owned(),
                    files: c.files,
                    bytes: c.bytes,
                })
                .collect(),
            large_files: if cfg.fingerprint_key.is_some() {
                self.fingerprints
                    .iter()
                    .take(cfg.max_fingerprints)
                    .map(|f| v1::Fingerprint {
                        keyed_hash: f.keyed_hash.to_vec(),
                        size: f.size,
                        copies: f.copies,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            complete: self.complete,
            hashed_files: self.hashed_files,
            hashed_bytes: self.hashed_bytes,
            opted_in_paths: paths,
        }
    }
}
