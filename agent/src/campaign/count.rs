//! Counting deletions: the campaign's baseline index against the latest
//! one. A pure function over two indexes, so every rule is a unit test.
//!
//! Rules (DESIGN.md, "Storage"; METHODOLOGY.md, "Clean Up Day"):
//! - a baseline file is *deleted* when no file of the latest scan has its
//!   (dev, inode) and no new file is its moved copy;
//! - a *move* is the same (dev, inode) under another name with the same
//!   size and mtime (a rename; a different size and mtime under another
//!   name is a new file that reused a deleted file's inode), or a
//!   file that was not in the baseline with the same size and the same
//!   content hash where both are known, else the same modification time to
//!   the nanosecond (`mv` across file systems, `cp -p`, `rsync -a` and file
//!   managers keep it). Each new file stands in for at most one baseline
//!   file;
//! - new files never offset deletions: they are counted apart;
//! - a baseline file now in the trash is not deleted until the trash is
//!   emptied (its bytes are still on the disk): counted apart;
//! - only what the latest scan could see counts: baseline files under a
//!   root the latest scan did not cover are neither deleted nor kept.

use crate::scan::{Category, EntryKind, Index, IndexEntry};
use sobre_proto::v1::{CampaignProgress, DeletedTotal};
use std::collections::HashMap;

/// What a deleted file was in the baseline; each file is in exactly one,
/// the first that applies in this order, so the totals add up.
pub const DELETED_CATEGORIES: [&str; 6] =
    ["trash", "duplicates", "temp", "downloads", "cold", "other"];

fn class(e: &IndexEntry, duplicated: bool) -> usize {
    let has = |c: Category| e.cats & c.bit() != 0;
    if has(Category::Trash) {
        0
    } else if duplicated || has(Category::Duplicates) {
        1
    } else if has(Category::Temp) {
        2
    } else if has(Category::OldDownloads) {
        3
    } else if has(Category::Cold) {
        4
    } else {
        5
    }
}

/// Counts what changed between `base` and `now`; fills the counting
/// fields of a [`CampaignProgress`] (identity and times are the caller's).
pub fn count(base: &Index, now: &Index) -> CampaignProgress {
    fn files(i: &Index) -> Vec<&IndexEntry> {
        i.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .collect()
    }
    let (base_files, now_files) = (files(base), files(now));
    let base_by_inode: HashMap<(u64, u64), &IndexEntry> =
        base_files.iter().map(|e| ((e.dev, e.ino), *e)).collect();
    // The same file in both scans: same (dev, inode), and the same path
    // (maybe edited) or the same size and mtime (renamed). Anything else
    // with that inode is a new file that reused a deleted file's inode.
    let same = |b: &IndexEntry, n: &IndexEntry| {
        b.path == n.path || (b.size == n.size && b.mtime_ns == n.mtime_ns)
    };
    let now_by_inode: HashMap<(u64, u64), &IndexEntry> = now_files
        .iter()
        .filter(|n| {
            base_by_inode
                .get(&(n.dev, n.ino))
                .is_some_and(|b| same(b, n))
        })
        .map(|e| ((e.dev, e.ino), *e))
        .collect();
    // Contents present more than once in the baseline.
    let mut copies: HashMap<[u8; 16], u32> = HashMap::new();
    for h in base_files.iter().filter_map(|e| e.full) {
        *copies.entry(h).or_default() += 1;
    }
    // New files by size, each usable once as a moved copy.
    let mut new_by_size: HashMap<u64, Vec<(&IndexEntry, bool)>> = HashMap::new();
    for e in now_files
        .iter()
        .filter(|e| !now_by_inode.contains_key(&(e.dev, e.ino)))
    {
        new_by_size.entry(e.size).or_default().push((e, false));
    }
    let observed = |e: &IndexEntry| now.roots.iter().any(|r| e.path.starts_with(r));

    let mut p = CampaignProgress {
        baseline_files: base_files.len() as u64,
        baseline_bytes: base_files.iter().map(|e| e.size).sum(),
        ..Default::default()
    };
    let mut by_class = [(0u64, 0u64); DELETED_CATEGORIES.len()];
    for b in &base_files {
        if let Some(n) = now_by_inode.get(&(b.dev, b.ino)) {
            let trash = Category::Trash.bit();
            if n.cats & trash != 0 && b.cats & trash == 0 {
                p.files_in_trash += 1;
                p.bytes_in_trash += b.size;
            } else if n.path != b.path {
                p.files_moved += 1;
            }
            continue;
        }
        if !observed(b) {
            continue;
        }
        let moved = new_by_size.get_mut(&b.size).and_then(|cands| {
            cands.iter_mut().find(|(n, used)| {
                !*used
                    && match (b.full, n.full) {
                        (Some(x), Some(y)) => x == y,
                        _ => b.mtime_ns == n.mtime_ns,
                    }
            })
        });
        if let Some((_, used)) = moved {
            *used = true;
            p.files_moved += 1;
            continue;
        }
        let dup = b
            .full
            .is_some_and(|h| copies.get(&h).copied().unwrap_or(0) > 1);
        let c = &mut by_class[class(b, dup)];
        c.0 += 1;
        c.1 += b.size;
        p.files_deleted += 1;
        p.bytes_deleted += b.size;
    }
    for (n, used) in new_by_size.values().flatten() {
        if !used {
            p.files_added += 1;
            p.bytes_added += n.size;
        }
    }
    p.deleted = DELETED_CATEGORIES
        .iter()
        .zip(by_class)
        .filter(|(_, (files, _))| *files > 0)
        .map(|(name, (files, bytes))| DeletedTotal {
            category: (*name).to_owned(),
            files,
            bytes,
        })
        .collect();
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file(path: &str, ino: u64, size: u64, mtime_ns: i64) -> IndexEntry {
        IndexEntry {
            path: PathBuf::from(path),
            kind: EntryKind::File,
            cats: 0,
            dev: 1,
            ino,
            size,
            mtime_ns,
            full: None,
        }
    }

    fn index(entries: Vec<IndexEntry>) -> Index {
        Index {
            roots: vec![PathBuf::from("/home/a")],
            complete: true,
            entries,
            ..Default::default()
        }
    }

    fn deleted(p: &CampaignProgress, cat: &str) -> (u64, u64) {
        p.deleted
            .iter()
            .find(|d| d.category == cat)
            .map_or((0, 0), |d| (d.files, d.bytes))
    }

    #[test]
    fn a_gone_file_is_deleted_and_a_renamed_one_is_not() {
        let base = index(vec![
            file("/home/a/x", 1, 100, 5),
            file("/home/a/y", 2, 200, 6),
        ]);
        let now = index(vec![file("/home/a/z", 2, 200, 6)]);
        let p = count(&base, &now);
        assert_eq!((p.files_deleted, p.bytes_deleted), (1, 100));
        assert_eq!(p.files_moved, 1);
        assert_eq!((p.files_added, p.bytes_added), (0, 0));
        assert_eq!(deleted(&p, "other"), (1, 100));
        assert_eq!((p.baseline_files, p.baseline_bytes), (2, 300));
    }

    #[test]
    fn a_new_file_that_reuses_a_deleted_files_inode_is_not_that_file() {
        // Regression: `rm gone.bin; write new.bin` got gone.bin's inode,
        // and the deletion was counted as a rename.
        let base = index(vec![file("/home/a/gone.bin", 7, 5000, 5)]);
        let now = index(vec![file("/home/a/new.bin", 7, 70_000, 99)]);
        let p = count(&base, &now);
        assert_eq!((p.files_deleted, p.bytes_deleted), (1, 5000));
        assert_eq!((p.files_added, p.bytes_added), (1, 70_000));
        assert_eq!(p.files_moved, 0);
    }

    #[test]
    fn a_file_edited_in_place_is_kept() {
        let base = index(vec![file("/home/a/doc", 7, 5000, 5)]);
        let now = index(vec![file("/home/a/doc", 7, 6000, 9)]);
        let p = count(&base, &now);
        assert_eq!((p.files_deleted, p.files_added, p.files_moved), (0, 0, 0));
    }

    #[test]
    fn new_files_do_not_offset_deletions() {
        let base = index(vec![file("/home/a/x", 1, 100, 5)]);
        let now = index(vec![file("/home/a/new", 9, 5000, 77)]);
        let p = count(&base, &now);
        assert_eq!((p.files_deleted, p.bytes_deleted), (1, 100));
        assert_eq!((p.files_added, p.bytes_added), (1, 5000));
    }

    #[test]
    fn a_copy_elsewhere_with_the_same_size_and_mtime_is_a_move() {
        // mv across file systems: new inode, same size and mtime.
        let base = index(vec![file("/home/a/x", 1, 100, 5)]);
        let now = index(vec![file("/home/a/sub/x", 50, 100, 5)]);
        let p = count(&base, &now);
        assert_eq!(p.files_deleted, 0);
        assert_eq!(p.files_moved, 1);
        assert_eq!(p.files_added, 0);
    }

    #[test]
    fn a_new_file_stands_in_for_one_deleted_file_only() {
        // Two copies deleted, one "moved" copy appears: one deletion.
        let h = Some([7u8; 16]);
        let mut a = file("/home/a/x", 1, 100, 5);
        let mut b = file("/home/a/x (1)", 2, 100, 5);
        a.full = h;
        b.full = h;
        let mut n = file("/home/a/moved", 3, 100, 5);
        n.full = h;
        let p = count(&index(vec![a, b]), &index(vec![n]));
        assert_eq!((p.files_deleted, p.bytes_deleted), (1, 100));
        assert_eq!(p.files_moved, 1);
        assert_eq!(deleted(&p, "duplicates"), (1, 100));
    }

    #[test]
    fn same_size_and_mtime_but_a_different_hash_is_not_a_move() {
        let mut b = file("/home/a/x", 1, 100, 5);
        b.full = Some([1; 16]);
        let mut n = file("/home/a/y", 2, 100, 5);
        n.full = Some([2; 16]);
        let p = count(&index(vec![b]), &index(vec![n]));
        assert_eq!(p.files_deleted, 1);
        assert_eq!(p.files_added, 1);
    }

    #[test]
    fn deleting_one_of_two_duplicates_counts_as_a_duplicate() {
        let h = Some([7u8; 16]);
        let mut a = file("/home/a/x", 1, 100, 5);
        let mut b = file("/home/a/x (1)", 2, 100, 5);
        a.full = h;
        b.full = h;
        let p = count(&index(vec![a.clone(), b]), &index(vec![a]));
        assert_eq!(deleted(&p, "duplicates"), (1, 100));
        assert_eq!(p.files_moved, 0);
    }

    #[test]
    fn categories_follow_their_precedence_and_sum_to_the_total() {
        let with = |mut e: IndexEntry, cats: &[Category]| {
            e.cats = cats.iter().map(|c| c.bit()).fold(0, |a, b| a | b);
            e
        };
        let base = index(vec![
            with(
                file("/home/a/1", 1, 1, 1),
                &[Category::Temp, Category::Cold],
            ),
            with(
                file("/home/a/2", 2, 10, 2),
                &[Category::OldDownloads, Category::Cold],
            ),
            with(file("/home/a/3", 3, 100, 3), &[Category::Cold]),
            with(
                file("/home/a/4", 4, 1000, 4),
                &[Category::Trash, Category::Temp],
            ),
            with(file("/home/a/5", 5, 10000, 5), &[Category::Large]),
        ]);
        let p = count(&base, &index(vec![]));
        assert_eq!(deleted(&p, "temp"), (1, 1));
        assert_eq!(deleted(&p, "downloads"), (1, 10));
        assert_eq!(deleted(&p, "cold"), (1, 100));
        assert_eq!(deleted(&p, "trash"), (1, 1000));
        assert_eq!(deleted(&p, "other"), (1, 10000));
        let sum: u64 = p.deleted.iter().map(|d| d.bytes).sum();
        assert_eq!(sum, p.bytes_deleted);
    }

    #[test]
    fn a_file_in_the_trash_is_not_deleted_until_emptied() {
        let base = index(vec![file("/home/a/x", 1, 100, 5)]);
        let mut trashed = file("/home/a/.local/share/Trash/files/x", 1, 100, 5);
        trashed.cats = Category::Trash.bit();
        let p = count(&base, &index(vec![trashed]));
        assert_eq!(p.files_deleted, 0);
        assert_eq!((p.files_in_trash, p.bytes_in_trash), (1, 100));
        assert_eq!(p.files_moved, 0);
    }

    #[test]
    fn files_under_a_root_the_latest_scan_skipped_are_not_deleted() {
        let mut base = index(vec![
            file("/home/a/x", 1, 100, 5),
            file("/home/b/y", 2, 200, 5),
        ]);
        base.roots.push(PathBuf::from("/home/b"));
        let p = count(&base, &index(vec![]));
        assert_eq!((p.files_deleted, p.bytes_deleted), (1, 100));
    }

    #[test]
    fn empty_dirs_and_broken_links_are_not_files() {
        let mut d = file("/home/a/empty", 1, 0, 5);
        d.kind = EntryKind::EmptyDir;
        let p = count(&index(vec![d]), &index(vec![]));
        assert_eq!(p.files_deleted, 0);
        assert_eq!(p.baseline_files, 0);
    }
}
