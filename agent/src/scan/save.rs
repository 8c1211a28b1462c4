//! Saving a scan to the index: this scan's entries, the old entries it did
//! not cover carried over, and no write at all when nothing changed.

use super::index::{self, EntryKind, Index, IndexError};
use super::rules::{self, Category};
use super::{group, ms, walk};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Writes the new index: this scan's entries, then the old entries this
/// scan did not cover (outside its roots, or not reached when cancelled).
/// `old` is the old index's header (needed whenever `complete`: it says
/// which roots the old entries may lie under). Returns false when `same`
/// (nothing was hashed) and the index already held exactly this (its
/// digest matched) and was left alone.
#[allow(clippy::too_many_arguments)]
pub(super) fn save_index(
    dir: &Path,
    roots: &[PathBuf],
    old: Option<&Index>,
    same: bool,
    w: &walk::Walked,
    d: &group::Dedup,
    cats: &[rules::Cats],
    complete: bool,
) -> Result<bool, IndexError> {
    let covered = old.is_none_or(|o| {
        o.roots
            .iter()
            .all(|or| roots.iter().any(|r| or.starts_with(r)))
    });
    if complete && covered {
        if let Some(o) = old.filter(|o| o.complete && same) {
            let mut dry = index::Writer::dry(dir, complete, roots)?;
            add_entries(&mut dry, w, d, cats)?;
            if dry.digest()? == o.digest {
                return Ok(false);
            }
        }
        let mut out = index::Writer::create(dir, ms(SystemTime::now()), complete, roots)?;
        add_entries(&mut out, w, d, cats)?;
        return out.finish().map(|_| true);
    }
    let seen: std::collections::HashSet<(u64, u64)> = if complete {
        Default::default()
    } else {
        w.files.iter().map(|f| (f.dev, f.ino)).collect()
    };
    // Carried over only if the old index reads whole: a damaged one could
    // hand on wrong hashes under a fresh checksum.
    let mut keep = Vec::new();
    let read = index::read(dir, |e| {
        let p = Path::new(std::ffi::OsStr::from_bytes(e.path));
        let covered = roots.iter().any(|r| p.starts_with(r));
        if !covered || (!complete && e.kind == EntryKind::File && !seen.contains(&(e.dev, e.ino))) {
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
        path.extend_from_slice(w.dirs[f.dir as usize].as_os_str().as_bytes());
        path.push(b'/');
        path.extend_from_slice(w.name(f).as_bytes());
        let s = d.slot_of[i];
        let slot = (s != group::NO_SLOT).then(|| &d.slots[s as usize]);
        out.add(&index::EntryRef {
            path: &path,
            kind: EntryKind::File,
            cats: cats[i],
            dev: f.dev,
            ino: f.ino,
            size: f.size,
            mtime_ns: f.mtime_ns,
            prefix: slot.and_then(|s| s.prefix),
            suffix: slot.and_then(|s| s.suffix),
            full: slot.and_then(|s| s.full),
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
                path: p.as_os_str().as_bytes(),
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
