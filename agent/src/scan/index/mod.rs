//! The persistent local index: every file, empty directory and broken link
//! of the last scans with its (dev, inode, size, mtime), categories and
//! content hashes, so a rescan rehashes only what changed and `cleanup`
//! works from what the person reviewed. Never leaves the machine.
//!
//! Format (`files.idx`, little endian, integers as LEB128 varints):
//! `SOBRIDX1`, then a CRC-32-checked body: scan time (ms, zigzag), flags
//! (bit 0: complete), the roots (count, then length + bytes each), then
//! entries, each `1`, path as (bytes shared with the previous path, length
//! of the rest, rest), kind, categories, hash bits (1 prefix, 2 suffix,
//! 4 full), dev, inode, size, mtime (ns, zigzag), the 16-byte hashes
//! present (bit 8: the full hash is the prefix hash, stored once); then
//! `0`, the entry count, a 16-byte BLAKE3 digest of the body after the scan
//! time (equal digests: the same entries), and the CRC-32 of the body. A
//! rescan that finds the same entries does not rewrite the index: it
//! compares them as it reads them (`save::Unchanged`). Entries are in walk order (directories by path,
//! files by name), so a rescan of an unchanged tree meets them in the
//! order it walked; prefix sharing makes 200,000 entries about 10 MB.
//! Written to a temporary file, fsynced and renamed over the old one
//! (`write`): a crash leaves the old index or the new, never half of one;
//! read as a stream (`read`).

mod read;
mod write;

pub(crate) use read::read;
pub(crate) use write::Writer;

use super::hash::Hash;
use super::rules::Cats;
use std::io;
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "files.idx";
const MAGIC: &[u8; 8] = b"SOBRIDX1";

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(
        "cannot {op} {path}: {err}; the storage index directory must be writable by the \
         agent's user (set storage.index_dir to another directory)"
    )]
    Io {
        path: PathBuf,
        op: &'static str,
        err: io::Error,
    },
    #[error("the storage index {path} is damaged ({what}); it will be rebuilt by the next scan")]
    Corrupt { path: PathBuf, what: &'static str },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    EmptyDir,
    BrokenLink,
}

/// One entry, borrowed: what the scan writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryRef<'a> {
    pub path: &'a [u8],
    pub kind: EntryKind,
    pub cats: Cats,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub prefix: Option<Hash>,
    pub suffix: Option<Hash>,
    pub full: Option<Hash>,
}

/// An [`EntryRef`] kept for later.
#[derive(Debug, Clone)]
pub(crate) struct OwnedEntry {
    path: Vec<u8>,
    e: (EntryKind, Cats, u64, u64, u64, i64, [Option<Hash>; 3]),
}

impl OwnedEntry {
    pub fn new(e: &EntryRef<'_>) -> OwnedEntry {
        OwnedEntry {
            path: e.path.to_vec(),
            e: (
                e.kind,
                e.cats,
                e.dev,
                e.ino,
                e.size,
                e.mtime_ns,
                [e.prefix, e.suffix, e.full],
            ),
        }
    }

    pub fn as_ref(&self) -> EntryRef<'_> {
        let (kind, cats, dev, ino, size, mtime_ns, [prefix, suffix, full]) = self.e;
        EntryRef {
            path: &self.path,
            kind,
            cats,
            dev,
            ino,
            size,
            mtime_ns,
            prefix,
            suffix,
            full,
        }
    }
}

/// One entry, owned: what `cleanup` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub path: PathBuf,
    pub kind: EntryKind,
    pub cats: Cats,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub full: Option<Hash>,
}

/// The header and, when loaded whole, the entries.
#[derive(Debug, Clone, Default)]
pub struct Index {
    pub scanned_at_ms: i64,
    /// BLAKE3 of everything but the scan time: two scans that found the
    /// same have the same digest.
    pub digest: Hash,
    pub complete: bool,
    pub roots: Vec<PathBuf>,
    pub entries: Vec<IndexEntry>,
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> IndexError + 'a {
    move |err| IndexError::Io {
        path: path.to_owned(),
        op,
        err,
    }
}

/// The whole index, entries included (for `cleanup`).
pub fn load(dir: &Path) -> Result<Option<Index>, IndexError> {
    let mut entries = Vec::new();
    let idx = read(dir, |e| {
        entries.push(IndexEntry {
            path: PathBuf::from(&*crate::sys::name::os_str(e.path)),
            kind: e.kind,
            cats: e.cats,
            dev: e.dev,
            ino: e.ino,
            size: e.size,
            mtime_ns: e.mtime_ns,
            full: e.full,
        })
    })?;
    Ok(idx.map(|mut i| {
        i.entries = entries;
        i
    }))
}

fn put(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn entry(path: &[u8], full: Option<Hash>) -> EntryRef<'_> {
        EntryRef {
            path,
            kind: EntryKind::File,
            cats: 5,
            dev: 2049,
            ino: 1 << 40,
            size: 123_456,
            mtime_ns: -5,
            prefix: Some([1; 16]),
            suffix: None,
            full,
        }
    }

    /// Names that are not UTF-8 exist on Linux only (Windows' are UTF-16).
    #[cfg(unix)]
    #[test]
    fn round_trip_with_raw_names_and_shared_prefixes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let roots = vec![PathBuf::from("/home/a")];
        let mut w = Writer::create(dir.path(), 1_700_000_000_000, true, &roots).expect("create");
        w.add(&entry(b"/home/a/docs/r\xe9sum\xe9.pdf", Some([7; 16])))
            .expect("add");
        w.add(&entry(b"/home/a/docs/r", None)).expect("add");
        w.add(&entry(b"/z", None)).expect("add");
        assert_eq!(w.finish().expect("finish"), 3);
        let idx = load(dir.path()).expect("load").expect("present");
        assert_eq!((idx.scanned_at_ms, idx.complete), (1_700_000_000_000, true));
        assert_eq!(idx.roots, roots);
        let paths: Vec<_> = idx
            .entries
            .iter()
            .map(|e| crate::sys::name::bytes(e.path.as_os_str()).to_vec())
            .collect();
        assert_eq!(
            paths,
            [
                &b"/home/a/docs/r\xe9sum\xe9.pdf"[..],
                b"/home/a/docs/r",
                b"/z"
            ]
        );
        let e = &idx.entries[0];
        assert_eq!(
            (e.cats, e.dev, e.ino, e.size, e.mtime_ns),
            (5, 2049, 1 << 40, 123_456, -5)
        );
        assert_eq!(e.full, Some([7; 16]));
        let mut with_hashes = 0;
        let header = read(dir.path(), |e| {
            with_hashes += usize::from(e.prefix.is_some())
        })
        .expect("read")
        .expect("present");
        assert_eq!(header.roots, [PathBuf::from("/home/a")]);
        assert!(
            header.entries.is_empty(),
            "read hands entries out, keeps none"
        );
        assert_eq!(with_hashes, 3);
        assert!(!dir.path().join("files.idx.tmp").exists());
    }

    #[test]
    fn damage_is_detected_and_absence_is_not_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(dir.path()).expect("none").is_none());
        let mut w = Writer::create(dir.path(), 1, false, &[]).expect("create");
        w.add(&entry(b"/a", Some([9; 16]))).expect("add");
        w.finish().expect("finish");
        let p = dir.path().join(FILE_NAME);
        let mut bytes = fs::read(&p).expect("read");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(&p, &bytes).expect("write");
        assert!(matches!(load(dir.path()), Err(IndexError::Corrupt { .. })));
        fs::write(&p, &bytes[..bytes.len() - 3]).expect("write");
        assert!(matches!(
            read(dir.path(), |_| {}),
            Err(IndexError::Corrupt { .. })
        ));
    }

    /// The reader streams: entries straddle its pieces, one is larger
    /// than a piece, and damage in the last piece is still found (after
    /// the entries before it were handed out).
    #[test]
    fn a_large_index_streams_and_late_damage_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = Writer::create(dir.path(), 1, true, &[]).expect("create");
        let long = vec![b'x'; 300 * 1024];
        let names: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| format!("/srv/partage/{}/fichier-{i}.pdf", i % 97).into_bytes())
            .chain([long])
            .collect();
        for (i, n) in names.iter().enumerate() {
            w.add(&EntryRef {
                ino: i as u64,
                ..entry(n, Some([i as u8; 16]))
            })
            .expect("add");
        }
        w.finish().expect("finish");
        let p = dir.path().join(FILE_NAME);
        assert!(fs::metadata(&p).expect("md").len() > 3 * 256 * 1024);
        let idx = load(dir.path()).expect("load").expect("present");
        let got: Vec<&[u8]> = idx
            .entries
            .iter()
            .map(|e| crate::sys::name::bytes(e.path.as_os_str()))
            .collect();
        let want: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        assert_eq!(got, want);
        assert!(
            idx.entries
                .iter()
                .enumerate()
                .all(|(i, e)| e.ino == i as u64)
        );
        let mut bytes = fs::read(&p).expect("read");
        let late = bytes.len() - 30;
        bytes[late] ^= 1;
        fs::write(&p, &bytes).expect("write");
        let mut seen = 0;
        let r = read(dir.path(), |_| seen += 1);
        assert!(matches!(r, Err(IndexError::Corrupt { .. })), "{r:?}");
        assert!(seen > 0);
    }

    #[test]
    fn an_unfinished_write_leaves_the_old_index() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut w = Writer::create(dir.path(), 1, true, &[]).expect("create");
        w.add(&entry(b"/old", None)).expect("add");
        w.finish().expect("finish");
        // A crash mid-write: the temporary file is never renamed.
        let mut w = Writer::create(dir.path(), 2, true, &[]).expect("create");
        w.add(&entry(b"/new", None)).expect("add");
        drop(w);
        let idx = load(dir.path()).expect("load").expect("present");
        assert_eq!(idx.entries[0].path, Path::new("/old"));
        assert_eq!(idx.scanned_at_ms, 1);
    }

    #[test]
    fn varints() {
        for v in [0, 1, 127, 128, 300, u64::MAX] {
            let mut b = Vec::new();
            put(&mut b, v);
            assert_eq!(read::varint(&b), Some(v), "the last bytes of a piece");
            b.extend_from_slice(&[0x80; 10]);
            assert_eq!(read::varint(&b), Some(v), "the bytes in hand");
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
