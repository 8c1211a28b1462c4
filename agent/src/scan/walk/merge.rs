//! Putting the walk's workers' finds together: one vector of files in
//! path order, gathered directory by directory.

use super::{Local, MAX_ISSUES, Walked, dev_at};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// `Path`'s order (component by component) computed on the bytes, several
/// times faster: a separator sorts before any other byte. The same for the
/// walk's paths (joined names: no `//`, no `.` components).
fn path_order(a: &Path, b: &Path) -> std::cmp::Ordering {
    use crate::sys::name::bytes;
    let (a, b) = (bytes(a.as_os_str()), bytes(b.as_os_str()));
    let i = shared_prefix(a, b);
    // Windows takes `/` and `\` alike.
    let sep = |c: u8| c == b'/' || (cfg!(windows) && c == b'\\');
    let key = |p: &[u8]| p.get(i).map(|&c| if sep(c) { 0 } else { c });
    key(a).cmp(&key(b))
}

/// How many leading bytes `a` and `b` share, 16 at a time (paths sorted
/// or written one after the other share their folders', often 50 bytes).
pub(crate) fn shared_prefix(a: &[u8], b: &[u8]) -> usize {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let wide = |c: &[u8]| u128::from_ne_bytes(c.try_into().unwrap_or([0; 16]));
    let same = a
        .chunks_exact(16)
        .zip(b.chunks_exact(16))
        .take_while(|(x, y)| wide(x) == wide(y))
        .count()
        * 16;
    same + a[same..]
        .iter()
        .zip(&b[same..])
        .take_while(|(x, y)| x == y)
        .count()
}

/// Puts the workers' finds together in a deterministic order (directories
/// by path, files by directory then name) and keeps one name per inode.
/// The files are gathered once into one vector, directory by directory:
/// each directory's files lie side by side in its worker's vector.
pub(super) fn merge(seed: Local, locals: Vec<Local>, n_dirs: usize, follow: bool) -> Walked {
    let mut dirs_by_id: Vec<PathBuf> = vec![PathBuf::new(); n_dirs];
    let mut out = Walked::default();
    let mut parts: Vec<Local> = std::iter::once(seed).chain(locals).collect();
    // (dir id, worker, start, len) of every directory's sorted files.
    let mut runs: Vec<(u32, u16, usize, usize)> = Vec::new();
    // Each directory's subdirectories: (start, len) in `kids`.
    let mut kids_of: Vec<(usize, usize)> = vec![(0, 0); n_dirs];
    let mut kids: Vec<u32> = Vec::new();
    let mut tops: Vec<u32> = Vec::new();
    for (w, l) in parts.iter_mut().enumerate() {
        for (id, p) in l.dirs.drain(..) {
            dirs_by_id[id as usize] = p;
        }
        for &(id, s, n) in &l.tree {
            kids_of[id as usize] = (kids.len() + s, n);
        }
        kids.append(&mut l.kids);
        tops.append(&mut l.tops);
        let part = u16::try_from(w).unwrap_or(u16::MAX);
        runs.extend(l.runs.iter().map(|&(d, s, n)| (d, part, s, n)));
        out.names.push(l.out.names.pop().unwrap_or_default());
        out.devs.push(l.out.devs.pop().unwrap_or_default());
        out.empty_dirs.append(&mut l.out.empty_dirs);
        out.broken_links.append(&mut l.out.broken_links);
        out.stats.add(&l.out.stats);
        let room = MAX_ISSUES.saturating_sub(out.issues.len());
        out.issues.extend(l.out.issues.drain(..).take(room));
    }
    // Directories in path order: the workers listed each one's
    // subdirectories by name, so the order is the tree's, depth first,
    // from the top directories sorted by path.
    let mut order = tree_order(&dirs_by_id, &tops, &kids_of, &kids);
    if order.len() != n_dirs {
        // Not one tree (never seen): sort the paths.
        order = (0..n_dirs as u32).collect();
        order.sort_by(|&a, &b| path_order(&dirs_by_id[a as usize], &dirs_by_id[b as usize]));
    }
    let mut remap = vec![0u32; n_dirs];
    for (new_id, &old) in order.iter().enumerate() {
        remap[old as usize] = new_id as u32;
    }
    out.dirs = order
        .iter()
        .map(|&old| std::mem::take(&mut dirs_by_id[old as usize]))
        .collect();
    // Files: each directory's run, in directory order (no global sort),
    // one record per physical file: the first name in path order wins.
    runs.sort_unstable_by_key(|r| (remap[r.0 as usize], r.1, r.2));
    out.files = in_tree_order(&mut parts, &runs, &remap, follow, &out.devs, &mut out.stats);
    drop(parts);
    // Windows' listings give no link count: hard links are found here, by
    // file id, among all files (with links followed, already done above).
    if cfg!(windows) && !follow {
        drop_repeated_ids(&mut out);
    }
    for o in out.empty_dirs.iter_mut().chain(out.broken_links.iter_mut()) {
        o.dir = remap[o.dir as usize];
    }
    out.empty_dirs.sort_unstable_by_key(|o| o.dir);
    out.broken_links
        .sort_unstable_by(|a, b| (a.dir, &a.name).cmp(&(b.dir, &b.name)));
    out
}

/// Keeps one record per (device, file id), the first in path order, and
/// counts the others as extra names: one sort of the files' indices (4
/// bytes each, not a set of every id).
pub(super) fn drop_repeated_ids(w: &mut Walked) {
    let mut order: Vec<u32> = (0..w.files.len() as u32).collect();
    order.sort_unstable_by_key(|&i| {
        let f = &w.files[i as usize];
        (w.dev(f), f.ino, i)
    });
    let mut keep = vec![true; w.files.len()];
    for pair in order.windows(2) {
        let (a, b) = (&w.files[pair[0] as usize], &w.files[pair[1] as usize]);
        if (w.dev(a), a.ino) == (w.dev(b), b.ino) {
            keep[pair[1] as usize] = false;
        }
    }
    drop(order);
    let before = w.files.len();
    let mut i = 0;
    w.files.retain(|_| {
        i += 1;
        keep[i - 1]
    });
    w.stats.hard_link_names += (before - w.files.len()) as u64;
}

/// The workers' files in one vector, in the order of `runs` (sorted), one
/// record per physical file: without following links only files with
/// several names can repeat. In place: the largest worker's vector is
/// kept, the others' appended to it, and each record moved once to its
/// place (its rank held for the while in `dir`), so every record is held
/// once, not copied into a second vector (9.6 MB for 200,000 files).
fn in_tree_order(
    parts: &mut [Local],
    runs: &[(u32, u16, usize, usize)],
    remap: &[u32],
    follow: bool,
    devs: &[Vec<u64>],
    stats: &mut super::WalkStats,
) -> Vec<super::FileRec> {
    let big = (0..parts.len())
        .max_by_key(|&w| parts[w].out.files.len())
        .unwrap_or(0);
    let mut offset = vec![0usize; parts.len()];
    let mut files = parts
        .get_mut(big)
        .map(|l| std::mem::take(&mut l.out.files))
        .unwrap_or_default();
    for (w, l) in parts.iter_mut().enumerate() {
        if w != big {
            offset[w] = files.len();
            files.append(&mut std::mem::take(&mut l.out.files));
        }
    }
    const UNPLACED: u32 = u32::MAX;
    for f in files.iter_mut() {
        f.dir = UNPLACED;
    }
    // Each run's directory and how many of its files are kept, in order.
    let mut kept: Vec<(u32, usize)> = Vec::with_capacity(runs.len());
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut rank = 0u32;
    for &(dir, part, start, n) in runs {
        let at = offset[usize::from(part)] + start;
        let mut k = 0;
        for f in files.get_mut(at..at + n).unwrap_or_default() {
            let dev = dev_at(devs, part, f.dev);
            if (f.multi_link() || follow) && !seen.insert((dev, f.ino)) {
                stats.hard_link_names += 1;
                continue;
            }
            f.dir = rank;
            f.name.part = part;
            rank += 1;
            k += 1;
        }
        kept.push((remap[dir as usize], k));
    }
    let n_kept = rank as usize;
    for f in files.iter_mut().filter(|f| f.dir == UNPLACED) {
        f.dir = rank;
        rank += 1;
    }
    // Each swap puts one record at its place (its rank).
    for i in 0..files.len() {
        while let Some(to) = Some(files[i].dir as usize).filter(|&to| to != i && to < files.len()) {
            files.swap(i, to);
        }
    }
    files.truncate(n_kept);
    files.shrink_to_fit();
    let mut at = 0;
    for (dir, k) in kept {
        for f in files.get_mut(at..at + k).unwrap_or_default() {
            f.dir = dir;
        }
        at += k;
    }
    files
}

/// The directories depth first, each one's subdirectories in the order
/// listed (by name), from `tops` sorted by path: the paths' order, without
/// comparing paths (only the few tops are). A directory's path starts with
/// its parent's and a separator, which sorts before any other byte. A
/// directory reached twice is listed once.
fn tree_order(
    dirs: &[PathBuf],
    tops: &[u32],
    kids_of: &[(usize, usize)],
    kids: &[u32],
) -> Vec<u32> {
    let mut tops = tops.to_vec();
    tops.sort_by(|&a, &b| path_order(&dirs[a as usize], &dirs[b as usize]).then(a.cmp(&b)));
    let mut placed = vec![false; dirs.len()];
    let mut order = Vec::with_capacity(dirs.len());
    let mut stack: Vec<u32> = tops.into_iter().rev().collect();
    while let Some(d) = stack.pop() {
        let Some(p) = placed.get_mut(d as usize).filter(|p| !**p) else {
            continue;
        };
        *p = true;
        order.push(d);
        let (s, n) = kids_of[d as usize];
        stack.extend(kids.get(s..s + n).unwrap_or_default().iter().rev());
    }
    order
}

#[cfg(test)]
mod tests {
    /// Hard links on Windows (the same file id under two names): the first
    /// name in path order is kept, the others counted.
    #[test]
    fn repeated_file_ids_are_kept_once() {
        let mut w = super::Walked::default();
        for (dev, ino) in [
            (1, 10),
            (1, 11),
            (2, 10),
            (1, 10),
            (1, 12),
            (1, 11),
            (1, 10),
        ] {
            w.push_test_file(dev, ino, 5);
        }
        super::drop_repeated_ids(&mut w);
        let ids: Vec<(u64, u64)> = w.files.iter().map(|f| (w.dev(f), f.ino)).collect();
        assert_eq!(ids, [(1, 10), (1, 11), (2, 10), (1, 12)]);
        assert_eq!(w.stats.hard_link_names, 3);
    }

    use std::path::PathBuf;

    #[test]
    fn path_order_is_paths_order() {
        let names = [
            "a", "a-b", "a b", "a.b", "ab", "b", "é", "a/b", "a-b/c", "\u{1}",
        ];
        // A name holding a separator is a walk's joined name on Linux; on
        // Windows no name holds one.
        let names: Vec<&str> = names
            .into_iter()
            .filter(|n| cfg!(unix) || !n.contains('/'))
            .collect();
        let mut paths: Vec<PathBuf> = Vec::new();
        for &x in &names {
            for &y in &names {
                paths.push(PathBuf::from("/r").join(x).join(y));
            }
            paths.push(PathBuf::from("/r").join(x));
        }
        paths.push(PathBuf::from("/r"));
        paths.push(PathBuf::from("/r-s/t"));
        let mut by_path = paths.clone();
        by_path.sort();
        paths.sort_by(|a, b| super::path_order(a, b));
        assert_eq!(paths, by_path);
    }

    #[test]
    fn shared_prefix() {
        let long = b"/home/agent/Documents/Projets/2024/rapport-final.pdf";
        for (a, b) in [
            (
                &long[..],
                &b"/home/agent/Documents/Projets/2024/rapport-final.odt"[..],
            ),
            (long, b"/home/agent/Documents/Projets/2023"),
            (long, long),
            (long, b""),
            (b"/a", b"/b"),
        ] {
            let slow = a.iter().zip(b).take_while(|(x, y)| x == y).count();
            assert_eq!(super::shared_prefix(a, b), slow, "{a:?} {b:?}");
            assert_eq!(super::shared_prefix(b, a), slow);
        }
    }
}
