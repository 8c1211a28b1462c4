//! The last scan's index, read by a rescan: each old entry is matched to
//! the walk's file with the same (dev, inode), and when its size and mtime
//! are the same too its hashes go to the dedup ([`Known`]); on the way,
//! [`Unchanged`] compares the old entries with this scan's.
//!
//! Read in line, after the grouping by size. On a thread of its own beside
//! it, handing the hashes over in batches through a bounded channel, the
//! rescan took 2-4 % more CPU and 4 MB more memory and no less time on the
//! 2-core benchmark VM: the reader alone took 34 ms there against 21 ms in
//! line, at load 2.5 as at load 6.

use super::group::Known;
use super::index::{self, EntryKind, EntryRef, Index};
use super::save::Unchanged;
use super::walk::Walked;
use std::path::Path;
use std::time::{Duration, Instant};

/// What reading the old index gave, besides the hashes.
pub(super) struct Old<'w> {
    /// The header (None: there was no index).
    pub header: Option<Index>,
    pub unchanged: Unchanged<'w>,
    /// Read whole, checksum right (or there was none): the hashes handed
    /// out may be used.
    pub whole: bool,
    pub load: Duration,
}

/// Reads the index in `dir`, handing `each` the hashes of the files it
/// still describes.
pub(super) fn read<'w>(dir: &Path, w: &'w Walked, each: &mut dyn FnMut(Known)) -> Old<'w> {
    let t = Instant::now();
    let mut unchanged = Unchanged::new(w);
    let mut find = Finder {
        w,
        next: 0,
        sorted: None,
        in_step: true,
    };
    let read = index::read(dir, |e| {
        unchanged.entry(&e);
        if let Some(k) = find.known(&e) {
            each(k);
        }
    });
    unchanged.in_step(find.in_step);
    tracing::debug!(
        out_of_order = find.sorted.is_some(),
        ms = t.elapsed().as_millis() as u64,
        "scan: index read"
    );
    let (header, whole) = match read {
        Ok(header) => (header, true),
        Err(e) => {
            tracing::warn!(error = %e, "storage index unreadable; hashing everything again");
            (None, false)
        }
    };
    Old {
        header,
        unchanged,
        whole,
        load: t.elapsed(),
    }
}

/// Finds the walk's file of an index entry: the index lists files in walk
/// order, so on a rescan the next entry is nearly always the next file, or
/// one of the few after it (a file added); anything else (a file moved)
/// is looked up by (dev, inode) in a table made on the first such miss.
struct Finder<'a> {
    w: &'a Walked,
    next: usize,
    sorted: Option<Vec<(u64, u64, u32)>>,
    /// Every entry found was the file expected next.
    in_step: bool,
}

/// Files after the expected one tried before the table.
const LOOK_AHEAD: usize = 4;

impl Finder<'_> {
    /// The hashes of `e` for the walk's file, if it is the same file
    /// (dev, inode), unchanged (size, mtime), and has some.
    fn known(&mut self, e: &EntryRef<'_>) -> Option<Known> {
        if e.kind != EntryKind::File {
            return None;
        }
        // Found first, hashes or not: the next entry is then looked for
        // where it should be.
        let i = self.find(e.dev, e.ino)?;
        let f = &self.w.files[i];
        let some = e.prefix.is_some() || e.full.is_some();
        (some && f.size == e.size && f.mtime_ns == e.mtime_ns).then_some(Known {
            file: i as u32,
            hashes: [e.prefix, e.suffix, e.full],
        })
    }

    fn find(&mut self, dev: u64, ino: u64) -> Option<usize> {
        let w = self.w;
        let ahead = w.files.get(self.next..).unwrap_or_default();
        if let Some(k) = ahead
            .iter()
            .take(LOOK_AHEAD + 1)
            .position(|f| (f.ino, w.dev(f)) == (ino, dev))
        {
            self.next += k + 1;
            self.in_step &= k == 0;
            return Some(self.next - 1);
        }
        self.in_step = false;
        let sorted = self.sorted.get_or_insert_with(|| {
            let mut v: Vec<(u64, u64, u32)> = w
                .files
                .iter()
                .enumerate()
                .map(|(i, f)| (w.dev(f), f.ino, i as u32))
                .collect();
            v.sort_unstable();
            v
        });
        let k = sorted
            .binary_search_by(|&(d, i, _)| (d, i).cmp(&(dev, ino)))
            .ok()?;
        self.next = sorted[k].2 as usize + 1;
        Some(self.next - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: entries without hashes (files of a size no other file
    /// has) did not move the finder on, so after a few of them in a row
    /// every entry was looked up in a sorted table of all files (+15 ms
    /// on the 200,000-file rescan).
    #[test]
    fn entries_without_hashes_keep_the_finder_in_step() {
        let mut w = Walked::default();
        for i in 0..100 {
            w.push_test_file(1, 1000 + i, 10);
        }
        let mut find = Finder {
            w: &w,
            next: 0,
            sorted: None,
            in_step: true,
        };
        let mut known = Vec::new();
        for (i, f) in w.files.iter().enumerate() {
            let hashed = i % 10 == 0;
            let e = EntryRef {
                path: b"/x",
                kind: EntryKind::File,
                cats: 0,
                dev: w.dev(f),
                ino: f.ino,
                size: f.size,
                mtime_ns: f.mtime_ns,
                prefix: hashed.then_some([i as u8; 16]),
                suffix: None,
                full: None,
            };
            known.extend(find.known(&e).map(|k| k.file));
        }
        assert_eq!(known, (0..100).step_by(10).collect::<Vec<u32>>());
        assert!(
            find.sorted.is_none() && find.in_step,
            "every entry found in step"
        );
    }
}
