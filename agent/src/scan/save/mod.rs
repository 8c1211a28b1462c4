//! Saving a scan to the index: this scan's entries, the old entries it did
//! not cover carried over, and no write at all when nothing changed
//! ([`Unchanged`] tells, as the old index streams by).

use super::hash::Hash;
use super::index::{self, EntryKind, EntryRef, Index, IndexError};
use super::rules::{self, Category, Cats};
use super::{group, ms, walk};
use crate::sys::name::{bytes, os_str};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// How much of its roots a scan went through, which decides what of the
/// old index is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    /// Walked and hashed whole.
    Complete,
    /// Walked whole, hashing under way (a background scan's checkpoint):
    /// a file under the roots the walk did not see is gone.
    Walked,
    /// Stopped before the end: old entries of files it did not see are
    /// kept (they may lie where the walk did not reach).
    Partial,
}

/// Writes the new index: this scan's entries, then the old entries this
/// scan did not cover (outside its roots, or not reached when stopped).
/// `old` is the old index's header (needed whenever the scan is complete:
/// it says which roots the old entries may lie under). Returns false when
/// `same` (the old index already holds exactly this scan: see
/// [`Unchanged`]) and it was left alone.
#[allow(clippy::too_many_arguments)]
pub(super) fn save_index(
    dir: &Path,
    roots: &[PathBuf],
    old: Option<&Index>,
    same: bool,
    w: &walk::Walked,
    d: &group::Dedup,
    cats: &[rules::Cats],
    scope: Scope,
) -> Result<bool, IndexError> {
    let complete = scope == Scope::Complete;
    let covered = old.is_none_or(|o| {
        o.roots
            .iter()
            .all(|or| roots.iter().any(|r| or.starts_with(r)))
    });
    if complete && covered {
        if same {
            return Ok(false);
        }
        let mut out = index::Writer::create(dir, ms(SystemTime::now()), complete, roots)?;
        add_entries(&mut out, w, d, cats)?;
        return out.finish().map(|_| true);
    }
    // Only a partial walk needs to know which files it saw (4.5 MB for
    // 200,000: a checkpoint's walk is whole, issue 23).
    let seen: std::collections::HashSet<(u64, u64)> = if scope != Scope::Partial {
        Default::default()
    } else {
        w.files.iter().map(|f| (w.dev(f), f.ino)).collect()
    };
    // Carried over only if the old index reads whole: a damaged one could
    // hand on wrong hashes under a fresh checksum.
    let mut keep = Vec::new();
    let read = index::read(dir, |e| {
        let p = os_str(e.path);
        let p = Path::new(&*p);
        let covered = roots.iter().any(|r| p.starts_with(r));
        let unseen = || e.kind == EntryKind::File && !seen.contains(&(e.dev, e.ino));
        if !covered || (scope == Scope::Partial && unseen()) {
            keep.push(index::OwnedEntry::new(&e));
        }
    });
    // The header lists the old roots this scan does not cover too: the
    // entries carried over lie under them, and the next scan must know it
    // to carry them over again.
    let mut all_roots = roots.to_vec();
    match read {
        Ok(header) => all_roots.extend(
            header
                .iter()
                .flat_map(|h| &h.roots)
                .filter(|or| !roots.iter().any(|r| or.starts_with(r)))
                .cloned(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "old storage index unreadable; not carried over");
            keep.clear();
        }
    }
    let mut out = index::Writer::create(dir, ms(SystemTime::now()), complete, &all_roots)?;
    add_entries(&mut out, w, d, cats)?;
    for e in &keep {
        out.add(&e.as_ref())?;
    }
    out.finish().map(|_| true)
}

/// This scan's files, empty folders and broken links, in walk order.
fn add_entries(
    out: &mut index::Writer,
    w: &walk::Walked,
    d: &group::Dedup,
    cats: &[rules::Cats],
) -> Result<(), IndexError> {
    let mut path: Vec<u8> = Vec::with_capacity(4096);
    for (i, f) in w.files.iter().enumerate() {
        path.clear();
        for part in file_path(w, f) {
            path.extend_from_slice(part);
        }
        let s = d.slot_of[i];
        let [prefix, suffix, full] = d.slots.hashes(s);
        out.add(&index::EntryRef {
            path: &path,
            kind: EntryKind::File,
            cats: cats[i],
            dev: w.dev(f),
            ino: f.ino,
            size: f.size,
            mtime_ns: f.mtime_ns,
            prefix,
            suffix,
            full,
        })?;
    }
    for (kind, list, cat) in [
        (EntryKind::EmptyDir, &w.empty_dirs, Category::EmptyDirs),
        (
            EntryKind::BrokenLink,
            &w.broken_links,
            Category::BrokenLinks,
        ),
    ] {
        for o in list {
            let p = w.other_path(o);
            out.add(&index::EntryRef {
                path: bytes(p.as_os_str()),
                kind,
                cats: cat.bit(),
                dev: o.dev,
                ino: o.ino,
                size: 0,
                mtime_ns: o.mtime_ns,
                prefix: None,
                suffix: None,
                full: None,
            })?;
        }
    }
    Ok(())
}

/// A file's path in the index: its folder, a slash, its name.
fn file_path<'w>(w: &'w walk::Walked, f: &walk::FileRec) -> [&'w [u8]; 3] {
    [
        bytes(w.dirs[f.dir as usize].as_os_str()),
        b"/",
        w.name_bytes(f),
    ]
}

/// Whether the index this scan would write is the old one, byte for byte
/// (then it is not rewritten), checked field by field as the old index
/// streams by for its hashes, instead of encoding this scan's index and
/// digesting it (tens of milliseconds for 200,000 files, the rescan's
/// last step). The old entries must be this scan's entries in the same
/// order: the same paths, kinds, devices, inodes, sizes and mtimes (while
/// streaming), then the same categories and hashes (at the end, from a few
/// bytes kept per file).
pub(super) struct Unchanged<'w> {
    w: &'w walk::Walked,
    /// Entries seen.
    seen: usize,
    differs: bool,
    /// Each file's old categories, hash bits and a check of its hashes.
    old: Vec<(Cats, u8, u32)>,
    /// The rescan met every file's entry where it expected it, so the
    /// hashes it handed over are each file's own (see [`Unchanged::finish`]).
    in_step: bool,
}

/// Which hashes an entry holds (1 prefix, 2 suffix, 4 full) and 32 bits of
/// them (they come from the index, written from this same function's
/// inputs: equal hashes give equal checks).
fn hash_check(h: [Option<Hash>; 3]) -> (u8, u32) {
    let mut bits = 0;
    let mut check = 0u32;
    for (i, h) in h.iter().enumerate() {
        if let Some(h) = h {
            bits |= 1 << i;
            let word = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            check ^= word.rotate_left(11 * i as u32);
        }
    }
    (bits, check)
}

impl<'w> Unchanged<'w> {
    pub fn new(w: &'w walk::Walked) -> Self {
        Unchanged {
            w,
            seen: 0,
            differs: false,
            old: Vec::with_capacity(w.files.len()),
            in_step: false,
        }
    }

    /// Whether the reader handed each file the hashes of the old entry at
    /// its own place (none elsewhere).
    pub fn in_step(&mut self, yes: bool) {
        self.in_step = yes;
    }

    /// The next entry of the old index.
    pub fn entry(&mut self, e: &EntryRef<'_>) {
        if self.differs {
            return;
        }
        let (w, i) = (self.w, self.seen);
        self.seen += 1;
        let same = if let Some(f) = w.files.get(i) {
            let [dir, slash, name] = file_path(w, f);
            let n = dir.len() + slash.len();
            let same = e.kind == EntryKind::File
                && (e.dev, e.ino, e.size, e.mtime_ns) == (w.dev(f), f.ino, f.size, f.mtime_ns)
                && e.path.len() == n + name.len()
                && e.path.get(..dir.len()) == Some(dir)
                && e.path.get(dir.len()..n) == Some(slash)
                && e.path.get(n..) == Some(name);
            let (bits, check) = hash_check([e.prefix, e.suffix, e.full]);
            self.old.push((e.cats, bits, check));
            same
        } else {
            let i = i - w.files.len();
            let (o, kind, cat) = match w.empty_dirs.get(i) {
                Some(o) => (Some(o), EntryKind::EmptyDir, Category::EmptyDirs),
                None => (
                    w.broken_links.get(i - w.empty_dirs.len()),
                    EntryKind::BrokenLink,
                    Category::BrokenLinks,
                ),
            };
            o.is_some_and(|o| {
                e.kind == kind
                    && e.cats == cat.bit()
                    && (e.dev, e.ino, e.size, e.mtime_ns) == (o.dev, o.ino, 0, o.mtime_ns)
                    && (e.prefix, e.suffix, e.full) == (None, None, None)
                    && e.path == bytes(w.other_path(o).as_os_str())
            })
        };
        self.differs = !same;
    }

    /// After the scan: did the old index (`old`, read whole) hold exactly
    /// this complete scan of `roots`, with these categories and hashes?
    pub fn finish(
        &self,
        old: Option<&Index>,
        roots: &[PathBuf],
        d: &group::Dedup,
        cats: &[Cats],
    ) -> bool {
        let w = self.w;
        let Some(old) = old else {
            return false;
        };
        let total = w.files.len() + w.empty_dirs.len() + w.broken_links.len();
        let same_roots = old.roots.len() == roots.len()
            && old
                .roots
                .iter()
                .zip(roots)
                .all(|(a, b)| bytes(a.as_os_str()) == bytes(b.as_os_str()));
        if self.differs || self.seen != total || !old.complete || !same_roots {
            return false;
        }
        if self.in_step {
            // Every file got the hashes of the old entry at its place, if it
            // has a slot and they include a prefix or full hash (the ones
            // handed over), and nothing was read: it keeps them. Else it has
            // none, and had to have none.
            return self.old.iter().enumerate().all(|(i, &(c, bits, _))| {
                let kept = d.slot_of[i] != group::NO_SLOT && bits & 0b101 != 0;
                cats.get(i) == Some(&c) && (bits == 0 || kept)
            });
        }
        // Files, then slots, each in their order (slots are not in the
        // files' order: one pass each, no jumping about).
        let files_same = self.old.iter().enumerate().all(|(i, &(c, bits, check))| {
            cats.get(i) == Some(&c) && (d.slot_of[i] != group::NO_SLOT || (bits, check) == (0, 0))
        });
        files_same
            && d.slots.iter().enumerate().all(|(i, s)| {
                let old = self.old.get(s.file as usize).map(|&(_, b, c)| (b, c));
                old == Some(hash_check(d.slots.hashes(i as u32)))
            })
    }
}

#[cfg(all(test, unix))]
mod tests;
