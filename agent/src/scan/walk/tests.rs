//! The walk through directory descriptors against a plain recursive walk
//! with `std::fs` (paths, `lstat`), on fixtures with every kind of entry.

use super::*;
use crate::scan::Glob;
use crate::scan::tests::{blob, config};
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::symlink;

/// A file as compared: path, (dev, inode), size, mtime, several names.
type FileRow = (PathBuf, (u64, u64), u64, i64, bool);

/// What a walk found, in comparable form.
#[derive(Debug, Default, PartialEq, Eq)]
struct Found {
    dirs: Vec<PathBuf>,
    files: Vec<FileRow>,
    empty_dirs: Vec<PathBuf>,
    broken_links: Vec<(PathBuf, (u64, u64), i64)>,
    dirs_n: u64,
    symlinks: u64,
    special: u64,
    hard_link_names: u64,
    excluded: u64,
}

fn found(w: &Walked) -> Found {
    Found {
        dirs: w.dirs.clone(),
        files: w
            .files
            .iter()
            .map(|f| {
                (
                    w.path(f),
                    (w.dev(f), f.ino),
                    f.size,
                    f.mtime_ns,
                    f.multi_link(),
                )
            })
            .collect(),
        empty_dirs: w.empty_dirs.iter().map(|o| w.other_path(o)).collect(),
        broken_links: w
            .broken_links
            .iter()
            .map(|o| (w.other_path(o), (o.dev, o.ino), o.mtime_ns))
            .collect(),
        dirs_n: w.stats.dirs,
        symlinks: w.stats.symlinks,
        special: w.stats.special,
        hard_link_names: w.stats.hard_link_names,
        excluded: w.stats.excluded,
    }
}

/// The same, found with `std::fs` alone: paths, `symlink_metadata`,
/// `metadata` for links; files in walk order (by folder, then name), the
/// first name of an inode kept.
fn reference(root: &Path, rules: &Rules) -> Found {
    let mut f = Found::default();
    type Key = (PathBuf, std::ffi::OsString);
    let mut files: BTreeMap<Key, (u64, u64, u64, i64, bool)> = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        f.dirs.push(d.clone());
        f.dirs_n += 1;
        let mut n = 0;
        for e in fs::read_dir(&d).expect("read_dir") {
            let e = e.expect("entry");
            n += 1;
            let (name, path) = (e.file_name(), e.path());
            if rules.excluded_name(&name) || rules.excluded_path(&path) {
                f.excluded += 1;
                continue;
            }
            let md = fs::symlink_metadata(&path).expect("lstat");
            let ft = md.file_type();
            if ft.is_dir() {
                todo.push(path);
            } else if ft.is_file() {
                let v = (md.dev(), md.ino(), md.len(), mtime_ns(&md), md.nlink() > 1);
                files.insert((d.clone(), name), v);
            } else if ft.is_symlink() {
                f.symlinks += 1;
                if fs::metadata(&path).is_err() {
                    f.broken_links
                        .push((path, (md.dev(), md.ino()), mtime_ns(&md)));
                }
            } else {
                f.special += 1;
            }
        }
        if n == 0 {
            f.empty_dirs.push(d);
        }
    }
    f.dirs.sort();
    f.empty_dirs.sort();
    f.broken_links.sort();
    let mut seen = HashSet::new();
    for ((d, name), (dev, ino, size, mtime, multi)) in files {
        let p = d.join(name);
        if multi && !seen.insert((dev, ino)) {
            f.hard_link_names += 1;
            continue;
        }
        f.files.push((p, (dev, ino), size, mtime, multi));
    }
    f
}

fn walk_with(root: &Path, rules: &Rules, threads: usize) -> Walked {
    let opts = WalkOptions::for_tests(rules, threads);
    let w = walk(
        &[root.to_path_buf()],
        &opts,
        &Counters::default(),
        &AtomicBool::new(false),
        &mut || {},
    )
    .expect("walk");
    assert!(w.issues.is_empty(), "{:?}", w.issues);
    w
}

fn put(p: &Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).expect("mkdir");
    }
    fs::write(p, data).expect("write");
}

/// Every kind of entry, and names whose byte order and path order could
/// disagree.
fn every_kind(root: &Path) {
    let names: [&[u8]; 8] = [
        b"a",
        b"a-b",
        b"a b",
        b"a.b",
        b"ab",
        b"\xc3\xa9",
        b"caf\xe9",
        b"\x01",
    ];
    for (i, x) in names.iter().enumerate() {
        let d = root.join(OsStr::from_bytes(x));
        for (j, y) in names.iter().enumerate() {
            put(
                &d.join(OsStr::from_bytes(y)),
                &blob(100 + i * 10 + j, i as u8),
            );
        }
        put(&d.join("sub").join(OsStr::from_bytes(x)), &blob(5, 1));
    }
    put(&root.join("empty-file"), b"");
    fs::create_dir_all(root.join("empty/dir")).expect("mkdir");
    fs::create_dir_all(root.join("a/empty")).expect("mkdir");
    fs::hard_link(root.join("a/ab"), root.join("zz-link")).expect("hard link");
    fs::hard_link(root.join("a/ab"), root.join("ab/second-link")).expect("hard link");
    symlink(root.join("a"), root.join("link-to-dir")).expect("symlink");
    symlink(root.join("a/a"), root.join("link-to-file")).expect("symlink");
    symlink(root.join("nowhere"), root.join("dangling")).expect("symlink");
    symlink(root.join("loop"), root.join("loop")).expect("symlink");
    symlink("a/a/not-a-dir", root.join("through-a-file")).expect("symlink");
    let _ = std::process::Command::new("mkfifo")
        .arg(root.join("pipe"))
        .status();
    put(&root.join("skip.tmp-excluded"), b"excluded by name");
    put(&root.join("ab/excluded-by-path"), b"excluded by path");
    fs::create_dir_all(root.join("excluded-dir/below")).expect("mkdir");
    let mut deep = root.join("deep");
    for _ in 0..300 {
        deep.push("d");
    }
    put(&deep.join("bottom"), b"bottom");
}

fn rules_for(root: &Path) -> Rules {
    let mut rules = config(&[root], None).rules;
    rules.exclude_names.push(Glob::new("*.tmp-excluded"));
    rules.exclude_paths.push(root.join("ab/excluded-by-path"));
    rules.exclude_paths.push(root.join("excluded-dir"));
    rules
}

#[test]
fn the_walk_through_descriptors_finds_what_paths_and_lstat_find() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("t");
    every_kind(&root);
    let rules = rules_for(&root);
    let want = reference(&root, &rules);
    assert!(want.special <= 1 && want.symlinks == 5 && want.broken_links.len() == 3);
    assert_eq!((want.hard_link_names, want.excluded), (2, 3));
    for threads in [1, 2, 16] {
        let got = found(&walk_with(&root, &rules, threads));
        assert_eq!(got, want, "{threads} threads");
    }
}

/// More directories waiting for their parent than descriptors kept open:
/// the rest are opened by path, and nothing is missed.
#[test]
fn directories_past_the_open_descriptor_cap_are_opened_by_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("t");
    // With one worker, each level's "a" waits, holding its parent open,
    // while "b" is walked to the bottom.
    let mut d = root.clone();
    for i in 0..dir::MAX_OPEN_DIRS + 40 {
        put(&d.join("a").join("f"), &blob(10, (i % 251) as u8));
        d.push("b");
    }
    put(&d.join("bottom"), b"x");
    let rules = rules_for(&root);
    let want = reference(&root, &rules);
    for threads in [1, 3] {
        assert_eq!(found(&walk_with(&root, &rules, threads)), want);
    }
}

#[test]
fn the_walks_device_numbers_are_those_of_std() {
    let dir = tempfile::tempdir().expect("tempdir");
    put(&dir.path().join("f"), b"x");
    let rules = rules_for(dir.path());
    let w = walk_with(dir.path(), &rules, 1);
    let md = fs::metadata(dir.path().join("f")).expect("md");
    let f = &w.files[0];
    assert_eq!((w.dev(f), f.ino, f.size), (md.dev(), md.ino(), 1));
    assert_eq!(f.mtime_ns, mtime_ns(&md));
}

/// A folder on another filesystem (`/proc` below `/`) is refused when it
/// is opened, whichever way: relative to its parent with `openat2`, or
/// without it (old kernels), or by path (past the descriptor cap).
#[test]
fn a_folder_listed_but_not_stated_is_not_entered_on_another_filesystem() {
    let slash = fs::metadata("/").expect("/");
    if fs::metadata("/proc").map(|m| m.dev()).ok() == Some(slash.dev()) {
        return; // No separate /proc here: nothing to cross.
    }
    let rules = config(&[Path::new("/")], None).rules;
    let opts = WalkOptions::for_tests(&rules, 1);
    let (cancel, counters, open_dirs) = (
        AtomicBool::new(false),
        Counters::default(),
        AtomicUsize::new(0),
    );
    let shared = Shared {
        queue: Queue::new(&cancel, 1),
        next_id: AtomicU32::new(0),
        visited: Mutex::new(HashSet::new()),
        open_dirs: &open_dirs,
        no_openat2: AtomicBool::new(false),
        opts: &opts,
        counters: &counters,
        cancel: &cancel,
    };
    let md = Meta::of(Path::new("/"), &slash).expect("meta of /");
    let mut root = Job::root(0, PathBuf::from("/"), &md, 0);
    let parent = dir::open(&shared, &mut root)
        .expect("open /")
        .expect("same fs");
    for (keep_parent, no_openat2) in [(true, false), (true, true), (false, false)] {
        shared.no_openat2.store(no_openat2, Relaxed);
        let mut job = Job {
            stat: false,
            via_link: false,
            parent: keep_parent.then(|| parent.clone()),
            ..Job::root(1, PathBuf::from("/proc"), &md, 0)
        };
        let opened = dir::open(&shared, &mut job).expect("open /proc");
        assert!(opened.is_none(), "{keep_parent} {no_openat2}");
    }
}

/// A folder with more entries to stat than one worker stats alone: its
/// stats are shared out in chunks, and the results still go to the right
/// names, among folders, links and excluded names listed in between.
#[test]
fn a_large_folder_stated_by_several_workers_finds_what_paths_find() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("t");
    let big = root.join("big");
    fs::create_dir_all(&big).expect("mkdir");
    for i in 0..batch::BIG_DIR + 700 {
        let name = format!("f{i:05}");
        match i % 97 {
            0 => fs::create_dir(big.join(&name)).expect("mkdir"),
            1 => symlink(big.join("f00002"), big.join(&name)).expect("symlink"),
            2 => put(&big.join(format!("{name}.tmp-excluded")), b"x"),
            _ => put(&big.join(&name), &blob(i % 50, (i % 251) as u8)),
        }
    }
    put(&root.join("small/one"), b"1");
    let rules = rules_for(&root);
    let want = reference(&root, &rules);
    for threads in [1, 2, 4] {
        assert_eq!(
            found(&walk_with(&root, &rules, threads)),
            want,
            "{threads} threads"
        );
    }
}

/// 200,000 records are most of a scan's memory: 8 bytes more each is
/// 1.6 MB more at the peak (issue 23).
#[test]
fn a_file_record_is_40_bytes() {
    assert_eq!(std::mem::size_of::<FileRec>(), 40);
}

/// The device and the hard-link mark share their words with others (an
/// index into a table, the name length's top bit): both read back.
#[test]
fn a_files_device_and_links_read_back_with_several_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in 0..8 {
        for f in 0..20 {
            put(&dir.path().join(format!("d{d}/f{f}")), b"x");
        }
    }
    fs::hard_link(dir.path().join("d0/f0"), dir.path().join("d7/z")).expect("link");
    let rules = rules_for(dir.path());
    let w = walk_with(dir.path(), &rules, 4);
    for f in &w.files {
        let md = fs::metadata(w.path(f)).expect("md");
        assert_eq!((w.dev(f), f.ino), (md.dev(), md.ino()), "{:?}", w.path(f));
        assert_eq!(f.multi_link(), md.nlink() > 1, "{:?}", w.path(f));
        assert_eq!(w.name_bytes(f), md_name(&w.path(f)));
    }
    assert_eq!(w.files.len(), 160);
}

fn md_name(p: &Path) -> &[u8] {
    p.file_name().expect("name").as_bytes()
}
