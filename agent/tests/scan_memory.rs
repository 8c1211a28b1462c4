//! Issue 23: a scheduled (background) scan's peak memory is a fixed part
//! of at most 8 MB plus what it must hold per file, whatever
//! `storage.threads` says. Measured as the VmHWM of the scan process the
//! agent starts (`sobre-agent scan-child`), so it is a bound, not a timing:
//! a regression (per-thread buffers, the whole index in memory, a copy of
//! every path) fails here.

use sobre_agent::config::StorageConfig;
use sobre_agent::scan::child::{Scanned, Stop, in_child};
use std::path::Path;

const MB: u64 = 1024 * 1024;
/// The scan process's peak with nothing to scan, at most (issue 23).
const FIXED_MAX: u64 = 8 * MB;
/// Of it, the data (the peak less the pages of the binary and the C
/// library, which a debug build has twice as many of): the allocator, one
/// thread's buffers, stacks. Measured 1.4 MB; 16 threads' walk and hash
/// buffers would add 2.5 MB.
const FIXED_DATA_MAX: u64 = 3 * MB;
/// What each file may add to the peak: its 48-byte record, its name, its
/// slot in the hash stages (24 B), its index entry, and the allocator's
/// slack (measured: 150 B full scan, 139 B rescan at 20,000 files, debug
/// build; 210 B before the in-place merge, the hash rounds and 24-byte
/// slots).
const PER_FILE_MAX: u64 = 200;
const FILES: usize = 20_000;

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sobre-agent"))
}

/// 200 folders of 100 files; every 10th file is a copy of the one before
/// it, so every hash stage has work.
fn fixture(root: &Path) {
    for d in 0..FILES / 100 {
        let dir = root.join(format!("dossier-{d:03}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..100 {
            let n = d * 100 + f;
            let seed = if f % 10 == 9 { n - 1 } else { n };
            let len = 100 + (seed * 37) % 5000;
            let body: Vec<u8> = (0..len).map(|i| (i * 31 + seed) as u8).collect();
            std::fs::write(dir.join(format!("rapport {n}.txt")), body).expect("write");
        }
    }
}

/// The shipped defaults (threads = 16, background), the budget lifted so
/// the test takes seconds: the same one-thread path, unpaced.
fn storage(root: &Path, index: &Path) -> StorageConfig {
    StorageConfig {
        roots: vec![root.to_owned()],
        index_dir: index.to_owned(),
        cpu_budget_percent: 100.0,
        ..StorageConfig::default()
    }
}

fn scan(root: &Path, index: &Path) -> Scanned {
    let s = storage(root, index);
    assert!(s.background && s.threads == 16, "the shipped defaults");
    match in_child(exe(), &s, &Stop::default()) {
        Ok(s) => s,
        Err(e) => panic!("scan process: {:?}", e),
    }
}

fn data(s: &Scanned) -> u64 {
    s.peak_rss_bytes.saturating_sub(s.file_rss_bytes)
}

#[test]
fn background_scan_peak_is_fixed_part_plus_per_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (empty, tree) = (tmp.path().join("empty"), tmp.path().join("tree"));
    std::fs::create_dir_all(&empty).expect("mkdir");
    fixture(&tree);

    let fixed = scan(&empty, &tmp.path().join("index-empty"));
    assert!(fixed.summary.complete);
    eprintln!(
        "empty tree: peak {} kB, of which files' pages {} kB",
        fixed.peak_rss_bytes / 1024,
        fixed.file_rss_bytes / 1024
    );
    assert!(fixed.peak_rss_bytes > fixed.file_rss_bytes);
    assert!(data(&fixed) <= FIXED_DATA_MAX, "{fixed:?}");
    if !cfg!(debug_assertions) {
        assert!(fixed.peak_rss_bytes <= FIXED_MAX, "{fixed:?}");
    }

    let index = tmp.path().join("index");
    for round in ["full scan", "rescan"] {
        let s = scan(&tree, &index);
        assert!(s.summary.complete, "{round}");
        assert_eq!(s.summary.files, FILES as u64, "{round}");
        let per_file = data(&s).saturating_sub(data(&fixed)) / FILES as u64;
        eprintln!(
            "{round}: peak {} kB, of which files' pages {} kB: {per_file} B per file",
            s.peak_rss_bytes / 1024,
            s.file_rss_bytes / 1024,
        );
        assert!(
            per_file <= PER_FILE_MAX,
            "{round}: {per_file} B per file > {PER_FILE_MAX}: {s:?}"
        );
    }
}

/// Closing the pipe stops the scan process (as when the agent stops or
/// dies): it answers with a partial summary instead of running on. At a
/// budget of 0.1 % of a core the walk of 2,000 files alone would take
/// many seconds; the pipe is closed before the child reads it.
#[test]
fn scan_process_stops_when_the_agent_closes_its_pipe() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tree = tmp.path().join("tree");
    for d in 0..20 {
        let dir = tree.join(format!("d{d}"));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f}")), format!("{d} {f}")).expect("write");
        }
    }
    let slow = StorageConfig {
        cpu_budget_percent: 0.1,
        ..storage(&tree, &tmp.path().join("index"))
    };
    let stop = Stop::default();
    stop.stop();
    let s = in_child(exe(), &slow, &stop).unwrap_or_else(|e| panic!("scan process: {e:?}"));
    assert!(!s.summary.complete, "stopped before the end");
}
