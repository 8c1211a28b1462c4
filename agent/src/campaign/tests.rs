//! The campaign book and a baseline-then-count cycle on a real tree.

use super::*;
use crate::scan::test_support::config;
use std::fs;
use std::sync::atomic::AtomicBool;

fn start(id: &str, ends_at_ms: i64) -> CampaignCommand {
    CampaignCommand {
        campaign_id: id.into(),
        action: CampaignAction::Start as i32,
        ends_at_ms,
        rescan_interval_s: 600,
    }
}

fn end(id: &str) -> CampaignCommand {
    CampaignCommand {
        action: CampaignAction::End as i32,
        ..start(id, 0)
    }
}

#[test]
fn the_book_survives_a_restart_and_a_repeated_start_keeps_the_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut book = Book::open(dir.path()).expect("open");
    assert!(book.command(&start("cud-2026", 10_000), 1).is_none());
    assert_eq!(book.due(1), Some(0));
    let p = CampaignProgress {
        campaign_id: "cud-2026".into(),
        baseline_at_ms: 5,
        ..Default::default()
    };
    book.record(0, &p, 1);
    assert_eq!(book.entries[0].baseline_at_ms, Some(5));
    assert_eq!(book.due(1), None, "next count is an interval away");

    let mut again = Book::open(dir.path()).expect("reopen");
    assert_eq!(again.entries, book.entries);
    again.command(&start("cud-2026", 20_000), 2);
    assert_eq!(again.entries.len(), 1);
    assert_eq!(again.entries[0].baseline_at_ms, Some(5));
    assert_eq!(again.entries[0].ends_at_ms, 20_000);
}

#[test]
fn end_makes_the_count_due_now_and_a_done_campaign_resends_its_final() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut book = Book::open(dir.path()).expect("open");
    book.command(&start("c1", i64::MAX), 1);
    book.record(
        0,
        &CampaignProgress {
            baseline_at_ms: 3,
            ..Default::default()
        },
        1,
    );
    assert_eq!(book.due(2), None);
    book.command(&end("c1"), 2);
    assert_eq!(book.due(2), Some(0));
    let fin = CampaignProgress {
        campaign_id: "c1".into(),
        files_deleted: 4,
        r#final: true,
        ..Default::default()
    };
    book.record(0, &fin, 3);
    assert!(book.entries[0].done);
    assert_eq!(book.next_wake_ms(), None);
    assert_eq!(book.command(&end("c1"), 4), Some(fin.clone()));
    assert_eq!(book.command(&start("c1", 9), 4), Some(fin));
}

#[test]
fn end_for_a_campaign_never_started_here_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut book = Book::open(dir.path()).expect("open");
    let p = book.command(&end("other"), 1).expect("a reply");
    assert!(p.r#final);
    assert!(p.error.contains("no baseline"), "{}", p.error);
}

#[test]
fn a_damaged_book_is_set_aside_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("state.json"), b"{not json").expect("write");
    let err = Book::open(dir.path()).expect_err("damaged");
    assert!(err.to_string().contains("state.json.bad"), "{err}");
    assert!(dir.path().join("state.json.bad").exists());
    assert!(Book::open(dir.path()).expect("reopen").entries.is_empty());
}

#[test]
fn baseline_then_count_on_a_real_tree() {
    let tree = tempfile::tempdir().expect("tree");
    let state = tempfile::tempdir().expect("state");
    let root = tree.path();
    let write = |name: &str, data: &[u8]| fs::write(root.join(name), data).expect("write");
    write("keep.txt", b"kept");
    write("gone.bin", &[1u8; 5000]);
    write("dup-a.bin", &[2u8; 3000]);
    write("dup-b.bin", &[2u8; 3000]);
    write("renamed.txt", b"renamed later");
    let index_dir = state.path().join("index");
    let cfg = config(&[root], Some(&index_dir));
    let book_dir = state.path().join("campaigns");
    let mut book = Book::open(&book_dir).expect("open");
    book.command(&start("c", i64::MAX), 0);
    let stop = AtomicBool::new(false);

    let (_, base) = step(&book.entries[0], &book_dir, &cfg, &stop, 0).expect("baseline");
    assert!(base.baseline_at_ms > 0);
    assert_eq!(
        (base.baseline_files, base.baseline_bytes),
        (5, 4 + 5000 + 6000 + 13)
    );
    assert_eq!((base.files_deleted, base.files_added), (0, 0));
    book.record(0, &base, 0);

    fs::remove_file(root.join("gone.bin")).expect("rm");
    fs::remove_file(root.join("dup-b.bin")).expect("rm");
    fs::rename(root.join("renamed.txt"), root.join("moved.txt")).expect("mv");
    write("new.bin", &[3u8; 70_000]);

    let (summary, p) = step(&book.entries[0], &book_dir, &cfg, &stop, 1).expect("count");
    assert!(summary.complete);
    assert_eq!((p.files_deleted, p.bytes_deleted), (2, 8000));
    assert_eq!(p.files_moved, 1);
    assert_eq!((p.files_added, p.bytes_added), (1, 70_000));
    let dups = p.deleted.iter().find(|d| d.category == "duplicates");
    assert_eq!(dups.map(|d| (d.files, d.bytes)), Some((1, 3000)));
    assert!(!p.r#final);
    assert_eq!(
        p.baseline_at_ms, base.baseline_at_ms,
        "the baseline is kept"
    );
}
