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
//! present; then `0`, the entry count, and the CRC-32 of the body. Paths
//! sorted or not, prefix sharing makes 200,000 entries about 10 MB. Written
//! to a temporary file, fsynced and renamed over the old one: a crash
//! leaves the old index or the new, never half of one.

use super::hash::Hash;
use super::rules::Cats;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
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
    pub complete: bool,
    pub roots: Vec<PathBuf>,
    pub entries: Vec<IndexEntry>,
}

/// Hashes of a file as of the last scan, by (dev, inode).
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub size: u64,
    pub mtime_ns: i64,
    pub prefix: Option<Hash>,
    pub suffix: Option<Hash>,
    pub full: Option<Hash>,
}

pub(crate) type Cache = HashMap<(u64, u64), Cached>;

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> IndexError + 'a {
    move |err| IndexError::Io {
        path: path.to_owned(),
        op,
        err,
    }
}

/// Streams a new index into `dir`; [`Writer::finish`] makes it the index.
pub(crate) struct Writer {
    w: BufWriter<File>,
    crc: crc32fast::Hasher,
    prev: Vec<u8>,
    count: u64,
    tmp: PathBuf,
    dir: PathBuf,
}

impl Writer {
    pub fn create(
        dir: &Path,
        scanned_at_ms: i64,
        complete: bool,
        roots: &[PathBuf],
    ) -> Result<Writer, IndexError> {
        fs::create_dir_all(dir).map_err(io_err(dir, "create the index directory"))?;
        let tmp = dir.join(format!("{FILE_NAME}.tmp"));
        let f = File::create(&tmp).map_err(io_err(&tmp, "create"))?;
        let mut w = Writer {
            w: BufWriter::with_capacity(256 * 1024, f),
            crc: crc32fast::Hasher::new(),
            prev: Vec::new(),
            count: 0,
            tmp,
            dir: dir.to_owned(),
        };
        w.w.write_all(MAGIC).map_err(io_err(&w.tmp, "write"))?;
        let mut b = Vec::new();
        put(&mut b, zigzag(scanned_at_ms));
        put(&mut b, u64::from(complete));
        put(&mut b, roots.len() as u64);
        for r in roots {
            let r = r.as_os_str().as_bytes();
            put(&mut b, r.len() as u64);
            b.extend_from_slice(r);
        }
        w.body(&b)?;
        Ok(w)
    }

    fn body(&mut self, b: &[u8]) -> Result<(), IndexError> {
        self.crc.update(b);
        self.w.write_all(b).map_err(io_err(&self.tmp, "write"))
    }

    pub fn add(&mut self, e: &EntryRef<'_>) -> Result<(), IndexError> {
        let shared = self
            .prev
            .iter()
            .zip(e.path)
            .take_while(|(a, b)| a == b)
            .count();
        let mut b = Vec::with_capacity(96);
        b.push(1);
        put(&mut b, shared as u64);
        put(&mut b, (e.path.len() - shared) as u64);
        b.extend_from_slice(&e.path[shared..]);
        b.push(e.kind as u8);
        put(&mut b, u64::from(e.cats));
        let hs = [e.prefix, e.suffix, e.full];
        b.push(
            hs.iter()
                .enumerate()
                .fold(0u8, |acc, (i, h)| acc | (u8::from(h.is_some()) << i)),
        );
        put(&mut b, e.dev);
        put(&mut b, e.ino);
        put(&mut b, e.size);
        put(&mut b, zigzag(e.mtime_ns));
        for h in hs.into_iter().flatten() {
            b.extend_from_slice(&h);
        }
        self.body(&b)?;
        self.prev.clear();
        self.prev.extend_from_slice(e.path);
        self.count += 1;
        Ok(())
    }

    /// Ends the file, flushes it to disk and renames it over the index.
    pub fn finish(mut self) -> Result<u64, IndexError> {
        let mut b = vec![0];
        put(&mut b, self.count);
        self.body(&b)?;
        let crc = self.crc.clone().finalize();
        self.w
            .write_all(&crc.to_le_bytes())
            .map_err(io_err(&self.tmp, "write"))?;
        let f = self.w.into_inner().map_err(|e| IndexError::Io {
            path: self.tmp.clone(),
            op: "write",
            err: e.into_error(),
        })?;
        f.sync_all().map_err(io_err(&self.tmp, "fsync"))?;
        let dst = self.dir.join(FILE_NAME);
        fs::rename(&self.tmp, &dst).map_err(io_err(&dst, "replace"))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir, "fsync"))?;
        Ok(self.count)
    }
}

/// Reads the index in `dir`, calling `each` for every entry; returns the
/// header (without entries). `Ok(None)`: there is no index yet.
pub(crate) fn read(
    dir: &Path,
    mut each: impl FnMut(EntryRef<'_>),
) -> Result<Option<Index>, IndexError> {
    let path = dir.join(FILE_NAME);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path, "open")(e)),
    };
    let corrupt = |what| IndexError::Corrupt {
        path: path.clone(),
        what,
    };
    let mut r = Crc {
        r: BufReader::with_capacity(256 * 1024, f),
        crc: crc32fast::Hasher::new(),
    };
    let mut magic = [0u8; 8];
    r.r.read_exact(&mut magic)
        .map_err(|_| corrupt("too short"))?;
    if &magic != MAGIC {
        return Err(corrupt("not a Sobre index, or another version"));
    }
    let bad = |_| corrupt("truncated");
    let mut idx = Index {
        scanned_at_ms: unzigzag(get(&mut r).map_err(bad)?),
        complete: get(&mut r).map_err(bad)? & 1 == 1,
        ..Index::default()
    };
    let n_roots = get(&mut r).map_err(bad)?;
    for _ in 0..n_roots.min(4096) {
        let bytes = get_bytes(&mut r).map_err(bad)?;
        idx.roots.push(PathBuf::from(OsStr::from_bytes(&bytes)));
    }
    let mut path: Vec<u8> = Vec::new();
    let mut count = 0u64;
    loop {
        match byte(&mut r).map_err(bad)? {
            0 => break,
            1 => {}
            _ => return Err(corrupt("unknown record")),
        }
        let shared = get(&mut r).map_err(bad)? as usize;
        if shared > path.len() {
            return Err(corrupt("path prefix"));
        }
        path.truncate(shared);
        path.extend_from_slice(&get_bytes(&mut r).map_err(bad)?);
        let kind = match byte(&mut r).map_err(bad)? {
            0 => EntryKind::File,
            1 => EntryKind::EmptyDir,
            2 => EntryKind::BrokenLink,
            _ => return Err(corrupt("unknown kind")),
        };
        let cats = get(&mut r).map_err(bad)? as Cats;
        let bits = byte(&mut r).map_err(bad)?;
        let (dev, ino, size) = (
            get(&mut r).map_err(bad)?,
            get(&mut r).map_err(bad)?,
            get(&mut r).map_err(bad)?,
        );
        let mtime_ns = unzigzag(get(&mut r).map_err(bad)?);
        let mut hs = [None; 3];
        for (i, h) in hs.iter_mut().enumerate() {
            if bits & (1 << i) != 0 {
                let mut b = [0u8; 16];
                r.read_exact(&mut b).map_err(bad)?;
                *h = Some(b);
            }
        }
        each(EntryRef {
            path: &path,
            kind,
            cats,
            dev,
            ino,
            size,
            mtime_ns,
            prefix: hs[0],
            suffix: hs[1],
            full: hs[2],
        });
        count += 1;
    }
    if get(&mut r).map_err(bad)? != count {
        return Err(corrupt("entry count"));
    }
    let crc = r.crc.clone().finalize();
    let mut stored = [0u8; 4];
    r.r.read_exact(&mut stored).map_err(bad)?;
    if u32::from_le_bytes(stored) != crc {
        return Err(corrupt("checksum"));
    }
    Ok(Some(idx))
}

/// The whole index, entries included (for `cleanup`).
pub fn load(dir: &Path) -> Result<Option<Index>, IndexError> {
    let mut entries = Vec::new();
    let idx = read(dir, |e| {
        entries.push(IndexEntry {
            path: PathBuf::from(OsStr::from_bytes(e.path)),
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

/// The hashes of the last scans by (dev, inode): what a rescan may reuse.
/// A damaged index gives an empty cache (everything is hashed again).
pub(crate) fn load_cache(dir: &Path) -> Result<Cache, IndexError> {
    let mut cache = Cache::new();
    read(dir, |e| {
        if e.kind == EntryKind::File && (e.prefix.is_some() || e.full.is_some()) {
            cache.insert(
                (e.dev, e.ino),
                Cached {
                    size: e.size,
                    mtime_ns: e.mtime_ns,
                    prefix: e.prefix,
                    suffix: e.suffix,
                    full: e.full,
                },
            );
        }
    })?;
    Ok(cache)
}

struct Crc<R> {
    r: R,
    crc: crc32fast::Hasher,
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.crc.update(&buf[..n]);
        Ok(n)
    }
}

fn put(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn byte(r: &mut impl Read) -> io::Result<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

fn get(r: &mut impl Read) -> io::Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = byte(r)?;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(io::ErrorKind::InvalidData.into())
}

fn get_bytes(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let n = get(r)?;
    if n > 1 << 20 {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let mut b = vec![0u8; n as usize];
    r.read_exact(&mut b)?;
    Ok(b)
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
            .map(|e| e.path.as_os_str().as_bytes().to_vec())
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
        let cache = load_cache(dir.path()).expect("cache");
        assert_eq!(cache.len(), 1, "one inode");
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
            load_cache(dir.path()),
            Err(IndexError::Corrupt { .. })
        ));
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
            assert_eq!(get(&mut &b[..]).expect("get"), v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
