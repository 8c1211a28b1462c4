//! Every file and folder the agent makes for itself is owner-only (0700
//! folders, 0600 files) even when it is started with umask 0; the person's
//! own files keep theirs (issue 21, item 2).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::campaign::{self, Book};
use crate::cleanup::{self, Selection, trash::Trash};
use crate::scan::rules::Category;
use crate::scan::tests::{config, run};
use crate::spool::{Spool, SpoolConfig};

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

/// Every file and folder under `dir`, `dir` included.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let mut kids: Vec<PathBuf> = fs::read_dir(&out[i])
                .expect("list")
                .map(|e| e.expect("entry").path())
                .collect();
            kids.sort();
            out.extend(kids);
        }
        i += 1;
    }
    out
}

fn assert_private(dir: &Path) -> usize {
    let all = tree(dir);
    for p in &all {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(p), want, "{} is {:o}", p.display(), mode(p));
    }
    all.len()
}

/// The spool (segments, seals, ack log, state, mark, a rewrite after
/// damage), the key, nudges, the storage index, a campaign's book and
/// baseline, and a clean-up's journal and trash.
#[test]
fn every_file_and_folder_the_agent_makes_is_owner_only_even_with_umask_0() {
    // nextest runs each test in a process of its own: this umask is ours.
    rustix::process::umask(rustix::fs::Mode::empty());
    let state = tempfile::tempdir().expect("state");
    let home = tempfile::tempdir().expect("home");
    let lib = state.path().join("var/lib/sobre-agent");

    let spool_cfg = SpoolConfig {
        dir: lib.join("spool"),
        max_bytes: 64 * 1024,
        fsync: true,
    };
    let mut spool = Spool::open(spool_cfg.clone()).expect("open");
    let seqs: Vec<u64> = (0..400)
        .map(|i| spool.append(|_, _| vec![i as u8; 300]).expect("append"))
        .collect();
    spool.ack(&seqs[390..395]).expect("ack");
    drop(spool);
    let seg = fs::read_dir(&spool_cfg.dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment");
    let mut bytes = fs::read(&seg).expect("read");
    bytes[40] ^= 1;
    fs::write(&seg, bytes).expect("damage");
    fs::set_permissions(&seg, fs::Permissions::from_mode(0o644)).expect("chmod");
    Spool::open(spool_cfg).expect("reopen");

    crate::enrol::save(&lib.join("credential"), &[7; 32]).expect("key");
    let nudges = crate::nudges::NudgeBox::new(lib.join("nudges.jsonl"));
    let n = sobre_proto::v1::Nudge {
        id: "n1".into(),
        ..Default::default()
    };
    nudges.add(&n, 1).expect("nudge");

    let docs = home.path().join("Documents");
    fs::create_dir_all(&docs).expect("mkdir");
    fs::write(docs.join("rapport.pdf"), vec![1; 5000]).expect("write");
    let brouillons = home.path().join("Brouillons");
    fs::create_dir_all(&brouillons).expect("mkdir");
    fs::set_permissions(&brouillons, fs::Permissions::from_mode(0o750)).expect("chmod");
    let lock = brouillons.join("~$note.docx");
    fs::write(&lock, b"lock").expect("write");
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o664)).expect("chmod");
    let index = lib.join("index");
    let cfg = config(&[home.path()], Some(&index));
    run(&cfg);
    // Before a later scan could tighten what the first one wrote.
    assert_private(&index);

    let book_dir = index.join("campaigns");
    let mut book = Book::open(&book_dir).expect("book");
    let start = sobre_proto::v1::CampaignCommand {
        campaign_id: "c1".into(),
        action: sobre_proto::v1::CampaignAction::Start as i32,
        ends_at_ms: i64::MAX,
        rescan_interval_s: 600,
    };
    book.command(&start, 0);
    let stop = AtomicBool::new(false);
    campaign::step(&book.entries[0], &book_dir, &cfg, &stop, 0).expect("baseline");

    let trash_dir = state.path().join("Trash");
    let idx = cleanup::last_scan(&index).expect("index");
    let sel = Selection {
        duplicates: None,
        categories: vec![Category::Temp],
        under: Vec::new(),
    };
    let list = cleanup::review(&idx, &sel);
    assert_eq!(list.len(), 1, "{list:?}");
    let out = cleanup::apply(list, &Trash::at(trash_dir.clone()), &index, false).expect("apply");
    assert_eq!(out.moved.len(), 1);

    let n = assert_private(&lib);
    assert!(n >= 15, "{n} files and folders: {:?}", tree(&lib));
    for name in [
        "spool/state",
        "spool/mark",
        "spool/acks.log",
        "index/files.idx",
    ] {
        assert!(lib.join(name).exists(), "{name}");
    }
    assert!(book_dir.join("c1/files.idx").exists());
    assert!(index.join("cleanup.journal").exists());
    // The trash's bookkeeping is private; the person's file keeps its mode.
    assert_eq!(mode(&trash_dir.join("files")), 0o700);
    assert_eq!(mode(&trash_dir.join("info/~$note.docx.trashinfo")), 0o600);
    assert_eq!(mode(&trash_dir.join("files/~$note.docx")), 0o664);

    // Undo after the person removed the emptied folder: it comes back as
    // their own mkdir would make it (umask 022 here), not private.
    fs::remove_dir(&brouillons).expect("rmdir");
    let undone = cleanup::undo(&index).expect("undo");
    assert_eq!(undone.restored.len(), 1);
    assert_eq!(mode(&brouillons), 0o755);
    assert_eq!(mode(&lock), 0o664);
    assert_private(&lib);
}
