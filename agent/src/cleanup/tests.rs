//! Clean-up from a real scan's index: moves, skips, dry runs and undo.

use super::*;
use crate::scan::tests::{blob, config, run};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Every file under `root` (the trash excluded) with its content.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            let md = fs::symlink_metadata(&p).expect("md");
            if md.is_dir() {
                stack.push(p);
            } else if md.is_file() {
                out.insert(p.clone(), fs::read(&p).expect("read"));
            }
        }
    }
    out
}

fn put(p: &Path, data: &[u8], age_days: u64) {
    fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    fs::write(p, data).expect("write");
    let t = SystemTime::now() - Duration::from_secs(age_days * 86_400);
    fs::File::options()
        .write(true)
        .open(p)
        .and_then(|f| f.set_modified(t))
        .expect("mtime");
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    index: PathBuf,
    trash: Trash,
    trash_dir: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("home");
    put(&root.join("Documents/rapport.pdf"), &blob(9000, 1), 400);
    put(
        &root.join("Documents/Copie de rapport.pdf"),
        &blob(9000, 1),
        30,
    );
    put(&root.join("Bureau/rapport (1).pdf"), &blob(9000, 1), 10);
    put(&root.join("Photos/plage.jpg"), &blob(5000, 2), 100);
    put(&root.join("Photos/plage - Copie.jpg"), &blob(5000, 2), 5);
    put(&root.join("Documents/~$note.docx"), b"lock", 1);
    put(&root.join("Documents/budget.xlsx"), &blob(7000, 3), 1);
    fs::create_dir_all(root.join("Documents/Nouveau dossier")).expect("mkdir");
    let index = dir.path().join("index");
    let r = run(&config(&[&root], Some(&index)));
    assert_eq!(r.duplicates.groups, 2);
    let trash_dir = dir.path().join("Trash");
    Fixture {
        trash: Trash::at(trash_dir.clone()),
        _dir: dir,
        root,
        index,
        trash_dir,
    }
}

fn sel(keep: Keep, cats: &[Category]) -> Selection {
    Selection {
        duplicates: Some(keep),
        categories: cats.to_vec(),
        under: Vec::new(),
    }
}

#[test]
fn moves_exactly_the_reviewed_list_to_the_trash_and_undo_restores_it() {
    let f = fixture();
    let before = snapshot(&f.root);
    let idx = last_scan(&f.index).expect("index");
    let list = review(
        &idx,
        &sel(Keep::Oldest, &[Category::Temp, Category::EmptyDirs]),
    );
    let names: Vec<_> = list
        .iter()
        .map(|c| c.path.strip_prefix(&f.root).expect("under").to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "Bureau/rapport (1).pdf",
            "Documents/Copie de rapport.pdf",
            "Photos/plage - Copie.jpg",
            "Documents/~$note.docx",
            "Documents/Nouveau dossier",
        ]
        .map(PathBuf::from)
    );
    let out = apply(list.clone(), &f.trash, &f.index, false).expect("apply");
    assert_eq!(out.moved.len(), 5);
    assert_eq!(out.moved_bytes, 9000 * 2 + 5000 + 4);
    assert!(out.skipped.is_empty());
    // Exactly the list went; everything else is byte-for-byte where it was.
    let after = snapshot(&f.root);
    let listed: HashSet<&PathBuf> = list.iter().map(|c| &c.path).collect();
    let expected: BTreeMap<_, _> = before.iter().filter(|(p, _)| !listed.contains(p)).collect();
    assert_eq!(after.iter().collect::<BTreeMap<_, _>>(), expected);
    assert!(!f.root.join("Documents/Nouveau dossier").exists());
    // Freedesktop layout: files/ and info/*.trashinfo.
    assert_eq!(
        fs::read_dir(f.trash_dir.join("files"))
            .expect("files")
            .count(),
        5
    );
    assert_eq!(
        fs::read_dir(f.trash_dir.join("info"))
            .expect("info")
            .count(),
        5
    );
    let info = fs::read_to_string(f.trash_dir.join("info/~$note.docx.trashinfo")).expect("info");
    assert!(info.contains("/Documents/~%24note.docx\n"), "{info}");
    // Undo puts every entry back, contents intact.
    let done = undo(&f.index).expect("undo");
    assert_eq!(done.restored.len(), 5);
    assert!(done.failed.is_empty());
    assert_eq!(snapshot(&f.root), before);
    assert!(f.root.join("Documents/Nouveau dossier").is_dir());
    assert_eq!(
        fs::read_dir(f.trash_dir.join("files"))
            .expect("files")
            .count(),
        0
    );
    assert!(f.index.join("cleanup.journal.undone").exists());
    let again = undo(&f.index).expect("undo");
    assert!(
        again.restored.is_empty() && again.failed.is_empty(),
        "nothing left to undo"
    );
}

#[test]
fn changed_entries_and_changed_kept_copies_are_skipped() {
    let f = fixture();
    let idx = last_scan(&f.index).expect("index");
    let list = review(&idx, &sel(Keep::Oldest, &[Category::Temp]));
    // After the review: a listed copy is edited, and the copy the photo
    // group keeps is replaced. Neither group may lose a copy now.
    fs::write(f.root.join("Bureau/rapport (1).pdf"), blob(9001, 1)).expect("edit");
    fs::remove_file(f.root.join("Photos/plage.jpg")).expect("rm");
    fs::write(f.root.join("Photos/plage.jpg"), blob(5000, 9)).expect("replace");
    let out = apply(list, &f.trash, &f.index, false).expect("apply");
    let moved: Vec<_> = out
        .moved
        .iter()
        .map(|c| c.path.file_name().expect("name").to_owned())
        .collect();
    assert_eq!(moved, ["Copie de rapport.pdf", "~$note.docx"]);
    let skipped: Vec<_> = out
        .skipped
        .iter()
        .map(|(c, why)| (c.path.file_name().expect("n").to_owned(), why.clone()))
        .collect();
    assert_eq!(skipped.len(), 2);
    assert!(skipped[0].0 == "rapport (1).pdf" && skipped[0].1.contains("changed since the scan"));
    assert!(skipped[1].0 == "plage - Copie.jpg" && skipped[1].1.contains("the copy kept"));
    assert!(f.root.join("Bureau/rapport (1).pdf").exists());
    assert!(f.root.join("Photos/plage - Copie.jpg").exists());
    // A clean-up that moves nothing keeps the last one undoable.
    let journal = fs::read(f.index.join(JOURNAL)).expect("journal");
    let again = apply(
        review(
            &last_scan(&f.index).expect("index"),
            &sel(Keep::Oldest, &[]),
        ),
        &f.trash,
        &f.index,
        false,
    )
    .expect("apply");
    assert!(again.moved.is_empty());
    assert_eq!(fs::read(f.index.join(JOURNAL)).expect("journal"), journal);
    assert_eq!(undo(&f.index).expect("undo").restored.len(), 2);
}

#[test]
fn dry_run_and_narrowing_touch_nothing_else() {
    let f = fixture();
    let before = snapshot(&f.root);
    let idx = last_scan(&f.index).expect("index");
    let out = apply(
        review(&idx, &sel(Keep::Newest, &[])),
        &f.trash,
        &f.index,
        true,
    )
    .expect("dry run");
    assert_eq!(
        out.moved.len(),
        3,
        "keeping the newest: the two older reports and the older photo"
    );
    assert!(
        out.moved
            .iter()
            .any(|c| c.path.ends_with("Documents/rapport.pdf"))
    );
    assert_eq!(snapshot(&f.root), before);
    assert!(!f.trash_dir.exists());
    assert!(!f.index.join(JOURNAL).exists());
    let photos = Selection {
        under: vec![f.root.join("Photos")],
        ..sel(Keep::Oldest, &[Category::Temp])
    };
    let list = review(&idx, &photos);
    assert_eq!(list.len(), 1);
    assert!(list[0].path.ends_with("Photos/plage - Copie.jpg"));
}

#[test]
fn a_kept_copy_is_never_listed_whatever_its_categories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("h");
    put(&root.join("~$a.docx"), &blob(6000, 5), 50);
    put(&root.join("b.docx"), &blob(6000, 5), 1);
    let index = dir.path().join("index");
    run(&config(&[&root], Some(&index)));
    let idx = last_scan(&index).expect("index");
    let list = review(&idx, &sel(Keep::Oldest, &[Category::Temp]));
    let paths: Vec<_> = list.iter().map(|c| c.path.clone()).collect();
    assert_eq!(
        paths,
        [root.join("b.docx")],
        "the temp-named oldest copy stays"
    );
}

#[test]
fn names_that_are_not_utf8_go_to_the_trash_and_back_intact() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("h");
    let latin1 = root.join(std::ffi::OsStr::from_bytes(b"r\xe9sum\xe9 (1).pdf"));
    put(&root.join("resume.pdf"), &blob(7000, 4), 30);
    put(&latin1, &blob(7000, 4), 1);
    let index = dir.path().join("index");
    run(&config(&[&root], Some(&index)));
    let list = review(&last_scan(&index).expect("index"), &sel(Keep::Oldest, &[]));
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].path, latin1, "the raw bytes, not a lossy copy");
    let trash = Trash::at(dir.path().join("Trash"));
    let out = apply(list, &trash, &index, false).expect("apply");
    assert_eq!(out.moved.len(), 1);
    assert!(!latin1.exists());
    let info = fs::read_to_string(
        dir.path()
            .join("Trash/info/r\u{fffd}sum\u{fffd} (1).pdf.trashinfo"),
    );
    assert!(info.is_err(), "the info file keeps the raw name too");
    let info_name = fs::read_dir(dir.path().join("Trash/info"))
        .expect("info")
        .map(|e| e.expect("entry").file_name())
        .next()
        .expect("one");
    assert_eq!(info_name.as_bytes(), b"r\xe9sum\xe9 (1).pdf.trashinfo");
    assert_eq!(
        undo(&index).expect("undo").restored,
        std::slice::from_ref(&latin1)
    );
    assert_eq!(fs::read(&latin1).expect("back"), blob(7000, 4));
}
