//! The index is left alone exactly when it already holds this scan: each
//! way a tree can change without a byte being hashed makes it rewritten,
//! to what a fresh scan writes.

use crate::scan::tests::{blob, config, run};
use crate::scan::{ScanConfig, index};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, SystemTime};

fn put(p: &Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).expect("mkdir");
    }
    fs::write(p, data).expect("write");
}

/// Groups above and within one block, unique sizes, an empty file, an
/// empty folder, a broken link.
fn tree(root: &Path) {
    for i in 0..3u8 {
        let big = blob(70_000 + usize::from(i), i);
        put(&root.join(format!("a/big{i}.bin")), &big);
        put(&root.join(format!("b/big{i}.bin")), &big);
        let small = blob(500 + usize::from(i), 10 + i);
        put(&root.join(format!("a/small{i}.txt")), &small);
        put(&root.join(format!("c/small{i}.txt")), &small);
        put(
            &root.join(format!("c/unique{i}.txt")),
            &blob(900 + usize::from(i), 20 + i),
        );
    }
    put(&root.join("b/third.bin"), &blob(70_000, 0));
    put(&root.join("c/large-unique.bin"), &blob(50_000, 30));
    put(&root.join("empty.txt"), b"");
    fs::create_dir_all(root.join("d/empty")).expect("mkdir");
    symlink(root.join("nowhere"), root.join("d/dangling")).expect("symlink");
}

/// What a fresh scan writes with `c`: its digest covers every entry.
fn fresh(c: &ScanConfig) -> index::Index {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = c.clone();
    c.index_dir = Some(dir.path().to_owned());
    run(&c);
    index::load(dir.path()).expect("load").expect("present")
}

/// What changes besides the tree.
#[derive(Clone, Copy, PartialEq)]
enum Also {
    Nothing,
    /// Three years pass: ages, and so categories, change.
    Later,
    /// No more fingerprints: large unique files keep no full hash.
    NoKey,
}

#[test]
fn an_index_that_would_change_is_rewritten_though_nothing_was_hashed() {
    let now = SystemTime::now() + Duration::from_secs(86_400);
    let later = now + Duration::from_secs(3 * 366 * 86_400);
    type Change = fn(&Path);
    let none: Change = |_| {};
    let changes: [(&str, Change, Also); 11] = [
        (
            "a file renamed in its folder",
            |r| fs::rename(r.join("a/big0.bin"), r.join("a/big0-renamed.bin")).expect("mv"),
            Also::Nothing,
        ),
        (
            "a file renamed, same length, same place",
            |r| fs::rename(r.join("a/big0.bin"), r.join("a/big0.bio")).expect("mv"),
            Also::Nothing,
        ),
        (
            "a file moved to another folder",
            |r| fs::rename(r.join("c/small1.txt"), r.join("a/small1-moved.txt")).expect("mv"),
            Also::Nothing,
        ),
        (
            "a unique file deleted",
            |r| fs::remove_file(r.join("c/unique2.txt")).expect("rm"),
            Also::Nothing,
        ),
        (
            "one copy of three deleted",
            |r| fs::remove_file(r.join("b/third.bin")).expect("rm"),
            Also::Nothing,
        ),
        (
            "a file's only twin deleted",
            |r| fs::remove_file(r.join("c/small2.txt")).expect("rm"),
            Also::Nothing,
        ),
        (
            "an empty folder added",
            |r| fs::create_dir(r.join("d/empty2")).expect("mkdir"),
            Also::Nothing,
        ),
        (
            "an empty folder filled",
            |r| put(&r.join("d/empty/f.txt"), &blob(1234, 99)),
            Also::Nothing,
        ),
        (
            "a broken link deleted",
            |r| fs::remove_file(r.join("d/dangling")).expect("rm"),
            Also::Nothing,
        ),
        ("time passed", none, Also::Later),
        ("fingerprints turned off", none, Also::NoKey),
    ];
    for (what, change, also) in changes {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("t");
        tree(&root);
        let index = dir.path().join("index");
        let mut c = config(&[&root], Some(&index));
        c.now = Some(now);
        c.fingerprint_key = Some([7; 32]);
        c.fingerprint_min_bytes = 10_000;
        assert!(run(&c).index_rewritten);
        let again = run(&c);
        assert!(
            !again.index_rewritten,
            "{what}: unchanged before the change"
        );
        change(&root);
        match also {
            Also::Nothing => {}
            Also::Later => c.now = Some(later),
            Also::NoKey => c.fingerprint_key = None,
        }
        let r = run(&c);
        assert_eq!(r.hashed_files, 0, "{what}: nothing to read");
        assert!(r.index_rewritten, "{what}: the index must be rewritten");
        let idx = index::load(&index).expect("load").expect("present");
        assert_eq!(
            idx.digest,
            fresh(&c).digest,
            "{what}: as a fresh scan writes it"
        );
        assert!(!run(&c).index_rewritten, "{what}: then left alone");
    }
}

/// Regression (issue 23): a background scan's checkpoint saved as if its
/// walk were partial, and so built a set of every file it saw (4.5 MB for
/// 200,000 files, the scan's peak). Its walk is whole: what is under its
/// roots and not walked is gone, what is under other roots is kept.
#[test]
fn a_checkpoint_drops_gone_files_and_keeps_other_roots() {
    use crate::scan::{Counters, group, save, walk};
    use std::sync::atomic::AtomicBool;
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, index) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("index"),
    );
    for root in [&a, &b] {
        put(&root.join("kept.bin"), &blob(9_000, 1));
        put(&root.join("gone.bin"), &blob(9_000, 1));
    }
    run(&crate::scan::tests::config(&[&a, &b], Some(&index)));
    fs::remove_file(a.join("gone.bin")).expect("rm");
    let c = crate::scan::tests::config(&[&a], Some(&index));
    let opts = walk::WalkOptions::for_tests(&c.rules, 1);
    let (counters, cancel) = (Counters::default(), AtomicBool::new(false));
    let w = walk::walk(
        std::slice::from_ref(&a),
        &opts,
        &counters,
        &cancel,
        &mut || {},
    )
    .expect("walk");
    let d = group::Dedup {
        slot_of: vec![group::NO_SLOT; w.files.len()],
        ..group::Dedup::default()
    };
    let cats = vec![0; w.files.len()];
    let roots = [a.clone()];
    save::save_index(
        &index,
        &roots,
        None,
        false,
        &w,
        &d,
        &cats,
        save::Scope::Walked,
    )
    .expect("save");
    let idx = index::load(&index).expect("load").expect("present");
    let mut paths: Vec<_> = idx.entries.into_iter().map(|e| e.path).collect();
    paths.sort();
    assert_eq!(
        paths,
        [a.join("kept.bin"), b.join("gone.bin"), b.join("kept.bin")]
    );
    assert!(!idx.complete, "a checkpoint is not a complete scan");
}
