//! What the scan's tests share, on every system: a test configuration, a
//! run, distinct contents; and the scan of a small tree with duplicates,
//! which also runs on Windows (under Wine), through its own walk.

use super::*;
use crate::config::StorageConfig;

pub(crate) fn config(roots: &[&Path], index: Option<&Path>) -> ScanConfig {
    let mut c = ScanConfig::from_storage(&StorageConfig::default()).expect("defaults");
    c.roots = roots.iter().map(|r| r.to_path_buf()).collect();
    c.index_dir = index.map(Path::to_path_buf);
    c.threads = 2;
    c.cpu_budget = None;
    c
}

pub(crate) fn run(c: &ScanConfig) -> ScanReport {
    scan(c, &|_| {}, &AtomicBool::new(false)).expect("scan")
}

/// Content that differs from any other `blob(n, seed')`.
pub(crate) fn blob(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

#[test]
fn a_small_tree_with_duplicates_is_scanned_on_every_system() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let put = |rel: &str, data: &[u8]| {
        let p = home.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, data).expect("write");
    };
    put("Documents/rapport.pdf", &blob(5000, 1));
    put("Téléchargements/rapport (1).pdf", &blob(5000, 1));
    put("Documents/autre.txt", &blob(5000, 2));
    put("vide.txt", b"");
    std::fs::create_dir_all(home.join("Dossier vide")).expect("mkdir");
    let report = run(&config(&[&home], None));
    assert!(report.complete);
    assert_eq!(report.files, 4, "{report:?}");
    assert_eq!(report.bytes, 15_000);
    assert_eq!(report.duplicates.groups, 1, "{:?}", report.duplicates);
    assert_eq!(
        report.duplicates.reclaimable_bytes, 5000,
        "{:?}",
        report.duplicates
    );
}

/// A hard link is one file on every system: on Linux the walk tells by the
/// link count, on Windows (no link count in a listing) by the file id.
#[test]
fn a_hard_link_is_one_file_on_every_system() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("a")).expect("mkdir");
    std::fs::create_dir_all(home.join("b")).expect("mkdir");
    std::fs::write(home.join("a/photo.jpg"), blob(7000, 3)).expect("write");
    std::fs::hard_link(home.join("a/photo.jpg"), home.join("b/photo.jpg")).expect("link");
    let report = run(&config(&[&home], None));
    assert_eq!((report.files, report.bytes), (1, 7000), "{report:?}");
    assert_eq!(report.walk.hard_link_names, 1, "{:?}", report.walk);
    assert_eq!(report.duplicates.groups, 0, "{:?}", report.duplicates);
}
