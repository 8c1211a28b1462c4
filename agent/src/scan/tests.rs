//! Integration-style tests of the scan: the benchmark generator's ground
//! truth, rescans, hostile trees, categories and privacy.

pub(crate) use super::test_support::{blob, config, run};
use super::*;
use prost::Message;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::time::Duration;

fn write(p: &Path, data: &[u8]) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).expect("mkdir");
    }
    fs::write(p, data).expect("write");
}

fn set_mtime(p: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(p)
        .and_then(|f| f.set_modified(t))
        .expect("set mtime");
}

#[test]
fn matches_the_generators_ground_truth() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/gen_tree.py");
    assert!(
        script.is_file(),
        "{} is missing: this test needs the benchmark tree generator bench/gen_tree.py",
        script.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = dir.path().join("tree");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(&tree)
        .args(["--files", "3000", "--seed", "42"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 (needed to generate the test tree): {e}"));
    assert!(
        out.status.success(),
        "gen_tree.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("tree.manifest.json")).expect("manifest"))
            .expect("json");
    let m = |k: &str| {
        manifest[k]
            .as_u64()
            .unwrap_or_else(|| panic!("manifest lacks {k}"))
    };
    let index = dir.path().join("index");
    let r = run(&config(&[&tree], Some(&index)));
    assert!(r.complete);
    assert_eq!(r.duplicates.groups, m("expected_dup_groups"));
    assert_eq!(
        r.duplicates.files_in_groups,
        m("expected_files_in_dup_groups")
    );
    assert_eq!(
        r.duplicates.reclaimable_bytes,
        m("expected_redundant_bytes")
    );
    // Hard links: one file each, extra names counted apart, not reclaimable
    // (the manifest's redundant bytes exclude them and match above).
    assert!(m("hardlinked_copies") > 0, "the tree has hard links");
    assert_eq!(r.walk.hard_link_names, m("hardlinked_copies"));
    assert_eq!(r.files, m("files_total") - m("hardlinked_copies"));
    assert_eq!(r.walk.symlinks, m("symlinks_valid") + m("symlinks_broken"));
    let total = |c: &str| r.totals.iter().find(|t| t.category == c).map(|t| t.files);
    assert_eq!(total("broken_links"), Some(m("symlinks_broken")));
    assert_eq!(total("empty_dirs"), Some(m("empty_dirs")));
    assert_eq!(total("empty_files"), Some(m("empty_files")));
    assert_eq!(r.unreadable(), 0);
    // Decoys (same size, one byte flipped at the end or the middle) are
    // never grouped with what they imitate: every listed group is
    // byte-for-byte identical.
    assert!(m("decoys") > 0);
    assert_eq!(
        r.duplicate_groups.len() as u64,
        m("expected_dup_groups").min(1000)
    );
    for g in &r.duplicate_groups {
        let first = fs::read(&g.files[0]).expect("read");
        assert_eq!(first.len() as u64, g.size);
        for f in &g.files[1..] {
            assert!(
                fs::read(f).expect("read") == first,
                "{} differs",
                f.display()
            );
        }
    }
    // Decoys are named `<original>_v2` (`_v2_1`... when two imitate the
    // same file, and those two may be true twins): never grouped with an
    // original.
    let decoys_grouped_with_originals = r.duplicate_groups.iter().any(|g| {
        let names: Vec<_> = g
            .files
            .iter()
            .map(|f| f.to_string_lossy().contains("_v2"))
            .collect();
        names.contains(&true) && names.contains(&false)
    });
    assert!(
        !decoys_grouped_with_originals,
        "{:?}",
        r.duplicate_groups
            .iter()
            .find(|g| g.files.iter().any(|f| f.to_string_lossy().contains("_v2")))
    );
    // A rescan reads nothing and finds the same.
    let again = run(&config(&[&tree], Some(&index)));
    assert_eq!(again.hashed_files, 0);
    assert_eq!(again.duplicates, r.duplicates);
    assert_eq!(again.categories, r.categories);
}

/// A tree with duplicates above one block (so every stage runs).
fn rescan_tree(root: &Path) {
    for i in 0..4u8 {
        let data = blob(20_000 + usize::from(i), i);
        write(&root.join(format!("a/orig{i}.bin")), &data);
        write(&root.join(format!("b/copy{i}.bin")), &data);
        let unique = blob(30_000 + 7 * usize::from(i), 100 + i);
        write(&root.join(format!("c/unique{i}.bin")), &unique);
    }
    write(&root.join("b/third0.bin"), &blob(20_000, 0));
}

/// [`rescan_tree`] in a temporary directory, with an index beside it.
fn indexed_rescan_tree() -> (tempfile::TempDir, PathBuf, PathBuf, ScanConfig) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("t");
    rescan_tree(&root);
    let index = dir.path().join("index");
    let c = config(&[&root], Some(&index));
    (dir, root, index, c)
}

#[test]
fn rescans_rehash_only_what_changed_and_equal_a_fresh_scan() {
    let (_dir, root, index, c) = indexed_rescan_tree();
    let first = run(&c);
    assert_eq!(first.duplicates.groups, 4);
    assert_eq!(
        first.duplicates.reclaimable_bytes,
        20_000 * 2 + 20_001 + 20_002 + 20_003
    );
    assert_eq!(
        first.hashed_files, 9,
        "the 9 files in size groups; unique sizes are never read"
    );
    assert!(first.index_rewritten);
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).expect("index");
    let written = mtime(&index.join(index::FILE_NAME));
    let same = run(&c);
    assert_eq!((same.hashed_files, same.hashed_bytes), (0, 0));
    assert_eq!(same.reused_hashes, 9);
    // Nothing changed: nothing written either.
    assert!(!same.index_rewritten);
    assert_eq!(mtime(&index.join(index::FILE_NAME)), written);
    // Touch one (same content, new mtime), add a copy, delete one, rename one.
    set_mtime(
        &root.join("a/orig1.bin"),
        SystemTime::now() - Duration::from_secs(60),
    );
    write(&root.join("c/new-copy2.bin"), &blob(20_002, 2));
    fs::remove_file(root.join("b/third0.bin")).expect("rm");
    fs::rename(root.join("b/copy3.bin"), root.join("c/renamed3.bin")).expect("mv");
    let rescan = run(&c);
    assert_eq!(
        rescan.hashed_files, 2,
        "the touched file and the new copy, nothing else"
    );
    assert_eq!(rescan.reused_hashes, 7);
    assert!(rescan.index_rewritten);
    let fresh = run(&config(&[&root], None));
    assert_eq!(fresh.hashed_files, 9);
    assert_eq!(rescan.duplicates, fresh.duplicates);
    assert_eq!(rescan.duplicates.groups, 4);
    assert_eq!(rescan.duplicates.files_in_groups, 9);
    assert_eq!(rescan.categories, fresh.categories);
    assert_eq!(rescan.duplicate_groups, fresh.duplicate_groups);
    assert!(
        rescan
            .duplicate_groups
            .iter()
            .any(|g| g.files.contains(&root.join("c/renamed3.bin")))
    );
    // The index holds this scan's files only, under their new names.
    let idx = index::load(&index).expect("load").expect("present");
    let mut paths: Vec<_> = idx.entries.iter().map(|e| e.path.clone()).collect();
    paths.sort();
    assert!(paths.contains(&root.join("c/renamed3.bin")));
    assert!(!paths.contains(&root.join("b/copy3.bin")));
    assert!(!paths.contains(&root.join("b/third0.bin")));
    assert_eq!(paths.len(), 13);
}

#[test]
fn a_cancelled_scan_keeps_the_index_for_the_next() {
    let (_dir, _root, index, c) = indexed_rescan_tree();
    assert_eq!(run(&c).hashed_files, 9);
    let partial = scan(&c, &|_| {}, &AtomicBool::new(true)).expect("scan");
    assert!(!partial.complete);
    assert!(
        !index::load(&index)
            .expect("load")
            .expect("present")
            .complete
    );
    let resumed = run(&c);
    assert!(resumed.complete);
    assert_eq!(resumed.hashed_files, 0, "nothing hashed before was lost");
    assert_eq!(resumed.duplicates.groups, 4);
}

#[test]
fn hostile_trees_are_counted_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("t");
    // Names that are not UTF-8, duplicated.
    let latin1 = root.join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    write(&latin1, b"same bytes in both");
    write(&root.join("cafe.txt"), b"same bytes in both");
    // A FIFO (never opened: it would block), a dangling link, a loop.
    let fifo = std::process::Command::new("mkfifo")
        .arg(root.join("pipe"))
        .status();
    let has_fifo = fifo.map(|s| s.success()).unwrap_or(false);
    symlink(root.join("nowhere"), root.join("dangling")).expect("symlink");
    symlink(root.join("loop"), root.join("loop")).expect("symlink");
    // 2,000 nested directories with a file at the bottom (no recursion in
    // the walk: no stack to overflow).
    let mut deep = root.join("d");
    for _ in 0..2000 {
        deep.push("x");
    }
    fs::create_dir_all(&deep).expect("deep");
    write(&deep.join("f"), b"bottom");
    let index = dir.path().join("index");
    let missing = dir.path().join("no-such-root");
    let r = run(&config(&[&root, &missing], Some(&index)));
    assert_eq!(r.walk.vanished, 1, "the missing root");
    assert_eq!(r.files, 3, "two cafés, the bottom file, none other");
    assert_eq!(r.walk.dirs, 1 + 2001);
    assert_eq!(r.walk.special, u64::from(has_fifo));
    assert_eq!(r.walk.symlinks, 2);
    assert_eq!(
        r.totals
            .iter()
            .find(|t| t.category == "broken_links")
            .map(|t| t.files),
        Some(2)
    );
    assert_eq!(r.duplicates.groups, 1);
    assert!(
        r.duplicate_groups[0].files.contains(&latin1),
        "the raw name, not a lossy one"
    );
    assert!(
        r.issues
            .iter()
            .any(|i| i.path == missing && i.kind == IssueKind::Vanished)
    );
    let idx = index::load(&index).expect("load").expect("present");
    assert!(idx.entries.iter().any(|e| e.path == latin1));
    assert!(idx.entries.iter().any(|e| e.path == deep.join("f")));
    // Not root: a folder we may not read is counted (root reads anything).
    if fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap_or(0)
        != 0
    {
        use std::os::unix::fs::PermissionsExt;
        let locked = root.join("locked");
        write(&locked.join("secret"), b"x");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).expect("chmod");
        let r = run(&config(&[&root], None));
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(r.walk.unreadable, 1);
    }
}

#[test]
fn files_vanishing_or_changing_between_walk_and_hash_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("t");
    for name in ["a", "b", "c", "d"] {
        write(&root.join(name), &blob(10_000, 1));
    }
    let c = config(&[&root], None);
    let counters = Counters::default();
    let cancel = AtomicBool::new(false);
    let opts = walk::WalkOptions::for_tests(&c.rules, 2);
    let walked = walk::walk(
        std::slice::from_ref(&root),
        &opts,
        &counters,
        &cancel,
        &mut || {},
    )
    .expect("walk");
    assert_eq!(walked.files.len(), 4);
    // Between the walk and the hashing: one file goes, one grows.
    fs::remove_file(root.join("b")).expect("rm");
    write(&root.join("c"), &blob(10_001, 1));
    let dedup_opts = group::DedupOptions {
        threads: 2,
        budget: None,
        poll: Duration::from_millis(100),
        full_hash_min: None,
    };
    let d = group::find_duplicates(
        &walked,
        &mut |_| true,
        &dedup_opts,
        &counters,
        &cancel,
        &mut || {},
        &mut |_| {},
    )
    .expect("dedup");
    assert_eq!((d.vanished, d.changed, d.unreadable), (1, 1, 0));
    assert_eq!(d.groups.len(), 1);
    let first = d.groups.iter().next().map(|(_, g)| g.len());
    assert_eq!(first, Some(2), "a and d, still identical");
    assert!(
        d.issues
            .iter()
            .any(|i| i.path == root.join("b") && i.kind == IssueKind::Vanished)
    );
}

#[test]
fn categories_and_age_buckets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let days = |d: u64| now - Duration::from_secs(d * 86_400);
    let files: [(&str, usize, u64); 8] = [
        ("Documents/~$rapport.docx", 10, 10),
        ("Documents/vieux.odt", 20, 4 * 365),
        (".cache/thumbnails/a.png", 30, 10),
        (".local/share/Trash/files/jeté.pdf", 40, 10),
        ("Téléchargements/setup.exe", 50, 100),
        ("Downloads/récent.zip", 60, 10),
        ("Vidéos/film.mkv", 2000, 800),
        ("Documents/vide.txt", 0, 2000),
    ];
    for (p, size, age) in files {
        write(&home.join(p), &blob(size, size as u8));
        set_mtime(&home.join(p), days(age));
    }
    fs::create_dir_all(home.join("Documents/Nouveau dossier")).expect("mkdir");
    symlink(home.join("gone"), home.join("Documents/raccourci.lnk")).expect("symlink");
    let mut c = config(&[&home], None);
    c.now = Some(now);
    c.rules.large_min_bytes = 1000;
    let r = run(&c);
    let rows: Vec<(&str, &str, u64, u64)> = r
        .categories
        .iter()
        .map(|c| (c.category, c.age, c.files, c.bytes))
        .collect();
    let dir_age = Age::of(
        walk::mtime_ns(&fs::metadata(home.join("Documents/Nouveau dossier")).expect("md")),
        1_800_000_000 * 1_000_000_000,
    )
    .name();
    let link_age = dir_age;
    assert_eq!(
        rows,
        [
            ("cold", "2-5y", 1, 20),
            ("cold", ">5y", 1, 0),
            ("temp", "<1y", 2, 40),
            ("trash", "<1y", 1, 40),
            ("old_downloads", "<1y", 1, 50),
            ("large", "2-5y", 1, 2000),
            ("empty_files", ">5y", 1, 0),
            ("empty_dirs", dir_age, 1, 0),
            ("broken_links", link_age, 1, 0),
        ]
    );
}

#[test]
fn the_default_summary_names_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("Dossier-Confidentiel");
    let secret = blob(50_000, 7);
    write(&root.join("DISTINCTIVE-nom-4711.pdf"), &secret);
    write(&root.join("Copie de DISTINCTIVE-nom-4711.pdf"), &secret);
    write(&root.join("~$brouillon-4711.docx"), b"tmp");
    let mut c = config(&[&root], None);
    c.fingerprint_min_bytes = 1000;
    let r = run(&c);
    assert_eq!(r.duplicates.groups, 1);
    let bytes = r.summary(&c).encode_to_vec();
    let content_hash = hash::truncate(blake3::hash(&secret));
    let leaks = |bytes: &[u8]| -> Vec<String> {
        let needles: Vec<Vec<u8>> = vec![
            b"DISTINCTIVE".to_vec(),
            b"4711".to_vec(),
            b"Confidentiel".to_vec(),
            b"brouillon".to_vec(),
            dir.path().as_os_str().as_bytes().to_vec(),
            content_hash.to_vec(),
        ];
        needles
            .iter()
            .filter(|n| bytes.windows(n.len()).any(|w| w == &n[..]))
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    };
    assert!(leaks(&bytes).is_empty(), "leaked: {:?}", leaks(&bytes));
    let s = r.summary(&c);
    assert!(s.large_files.is_empty() && s.opted_in_paths.is_empty());
    assert_eq!(
        s.categories
            .iter()
            .find(|c| c.category == "duplicates")
            .map(|c| c.bytes),
        Some(50_000)
    );
    // With the fleet's key: one 16-byte fingerprint for the two copies,
    // still no name and no plain hash.
    c.fingerprint_key = Some([42; 32]);
    let s = run(&c).summary(&c);
    assert_eq!(s.large_files.len(), 1);
    assert_eq!(s.large_files[0].keyed_hash.len(), 16);
    assert_eq!(
        (s.large_files[0].size, s.large_files[0].copies),
        (50_000, 2)
    );
    assert_eq!(
        s.large_files[0].keyed_hash,
        fingerprint(&[42; 32], &content_hash).to_vec()
    );
    assert!(leaks(&s.encode_to_vec()).is_empty());
    // Opting in sends paths, largest first, capped.
    c.send_paths = true;
    c.max_paths = 1;
    let r = run(&c);
    assert_eq!(r.largest.len(), 2, "a duplicate and a temp file");
    let s = r.summary(&c);
    assert_eq!(s.opted_in_paths.len(), 1);
    let p = &s.opted_in_paths[0];
    assert!(p.path.contains("DISTINCTIVE") && p.size == 50_000 && p.category == "duplicates");
}

/// Regression: a scan that hashed anything rewrote the index with its own
/// files only, dropping what scans of other folders had indexed (and the
/// header named only the last roots, so the next scan dropped them too).
#[test]
fn scans_of_other_folders_keep_each_others_index_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for (root, seed) in [(&a, 1), (&b, 2)] {
        write(&root.join("one.bin"), &blob(9_000, seed));
        write(&root.join("two.bin"), &blob(9_000, seed));
    }
    let index = dir.path().join("index");
    let paths = || {
        let idx = index::load(&index).expect("load").expect("present");
        let mut p: Vec<PathBuf> = idx.entries.into_iter().map(|e| e.path).collect();
        p.sort();
        (p, idx.roots)
    };
    let all = vec![
        a.join("one.bin"),
        a.join("two.bin"),
        b.join("one.bin"),
        b.join("two.bin"),
    ];
    assert_eq!(run(&config(&[&a], Some(&index))).hashed_files, 2);
    assert_eq!(run(&config(&[&b], Some(&index))).hashed_files, 2);
    let (p, roots) = paths();
    assert_eq!(p, all, "b's scan kept a's entries");
    assert!(roots.contains(&a) && roots.contains(&b), "{roots:?}");
    // b changes and is scanned again: a's entries stay.
    write(&b.join("two.bin"), &blob(9_000, 3));
    let again = run(&config(&[&b], Some(&index)));
    assert_eq!((again.hashed_files, again.duplicates.groups), (1, 0));
    assert_eq!(paths().0, all);
    // And a's files are still known: nothing of a is read again.
    assert_eq!(run(&config(&[&a], Some(&index))).hashed_files, 0);
    assert_eq!(paths().0, all);
}

/// The index is streamed and its checksum checked at the end: hashes
/// handed out before damage is found must not be used.
#[test]
fn a_damaged_index_is_not_trusted_even_in_part() {
    let (_dir, _root, index, c) = indexed_rescan_tree();
    let first = run(&c);
    let p = index.join(index::FILE_NAME);
    let mut bytes = fs::read(&p).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // the stored CRC
    fs::write(&p, &bytes).expect("write");
    let again = run(&c);
    assert_eq!((again.hashed_files, again.reused_hashes), (9, 0));
    assert_eq!(again.duplicates, first.duplicates);
    assert!(index::load(&index).is_ok(), "rewritten whole");
}
