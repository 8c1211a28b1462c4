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
//! time (equal digests: nothing changed, nothing is rewritten), and the
//! CRC-32 of the body. Paths
//! sorted or not, prefix sharing makes 200,000 entries about 10 MB. Written
//! to a temporary file, fsynced and renamed over the old one: a crash
//! leaves the old index or the new, never half of one.

use super::hash::Hash;
use super::rules::Cats;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
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
    /// BLAKE3 of everything but the scan time: two scans that found the
    /// same have the same digest.
    pub digest: Hash,
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

/// The hashes of the last scan, by (dev, inode), in index order. Matched
/// to a walk's files in one sorted merge ([`Cache::positions`]): a hash
/// map would take twice the memory, a binary search per file a cache miss
/// per step.
#[derive(Debug, Default)]
pub(crate) struct Cache(Vec<((u64, u64), Cached)>);

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    pub fn at(&self, pos: u32) -> Option<&Cached> {
        self.0.get(pos as usize).map(|(_, c)| c)
    }

    /// For each (dev, inode) of `keys`, its position here, or `u32::MAX`.
    pub fn positions(&self, keys: impl Iterator<Item = (u64, u64)>) -> Vec<u32> {
        let mut want: Vec<((u64, u64), u32)> =
            keys.enumerate().map(|(i, k)| (k, i as u32)).collect();
        let mut out = vec![u32::MAX; want.len()];
        if self.0.is_empty() {
            return out;
        }
        let mut have: Vec<((u64, u64), u32)> = self
            .0
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (*k, i as u32))
            .collect();
        want.sort_unstable();
        have.sort_unstable();
        let mut h = have.iter().peekable();
        for (k, i) in want {
            while h.next_if(|(hk, _)| *hk < k).is_some() {}
            if let Some((hk, pos)) = h.peek()
                && *hk == k
            {
                out[i as usize] = *pos;
            }
        }
        out
    }
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> IndexError + 'a {
    move |err| IndexError::Io {
        path: path.to_owned(),
        op,
        err,
    }
}

/// Streams a new index into `dir`; [`Writer::finish`] makes it the index.
pub(crate) struct Writer {
    /// None: a dry run, for the digest only.
    w: Option<BufWriter<File>>,
    crc: crc32fast::Hasher,
    digest: blake3::Hasher,
    prev: Vec<u8>,
    /// Body bytes not yet checksummed, digested and written: hashing in
    /// large pieces is several times cheaper than entry by entry.
    pending: Vec<u8>,
    count: u64,
    tmp: PathBuf,
    dir: PathBuf,
}

const FLUSH_AT: usize = 256 * 1024;

impl Writer {
    pub fn create(
        dir: &Path,
        scanned_at_ms: i64,
        complete: bool,
        roots: &[PathBuf],
    ) -> Result<Writer, IndexError> {
        Writer::new(dir, scanned_at_ms, complete, roots, false)
    }

    /// A writer that writes nothing: [`Writer::digest`] tells whether the
    /// index would change.
    pub fn dry(dir: &Path, complete: bool, roots: &[PathBuf]) -> Result<Writer, IndexError> {
        Writer::new(dir, 0, complete, roots, true)
    }

    fn new(
        dir: &Path,
        scanned_at_ms: i64,
        complete: bool,
        roots: &[PathBuf],
        dry: bool,
    ) -> Result<Writer, IndexError> {
        let tmp = dir.join(format!("{FILE_NAME}.tmp"));
        let w = if dry {
            None
        } else {
            fs::create_dir_all(dir).map_err(io_err(dir, "create the index directory"))?;
            let f = File::create(&tmp).map_err(io_err(&tmp, "create"))?;
            Some(BufWriter::with_capacity(256 * 1024, f))
        };
        let mut w = Writer {
            w,
            crc: crc32fast::Hasher::new(),
            digest: blake3::Hasher::new(),
            prev: Vec::new(),
            pending: Vec::with_capacity(FLUSH_AT + 4096),
            count: 0,
            tmp,
            dir: dir.to_owned(),
        };
        if let Some(f) = w.w.as_mut() {
            f.write_all(MAGIC).map_err(io_err(&w.tmp, "write"))?;
        }
        let mut b = Vec::new();
        put(&mut b, zigzag(scanned_at_ms));
        w.crc.update(&b);
        if let Some(f) = w.w.as_mut() {
            f.write_all(&b).map_err(io_err(&w.tmp, "write"))?;
        }
        b.clear();
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

    /// Checksummed and digested (everything after the scan time).
    fn body(&mut self, b: &[u8]) -> Result<(), IndexError> {
        self.pending.extend_from_slice(b);
        self.flush(false)
    }

    fn flush(&mut self, all: bool) -> Result<(), IndexError> {
        if self.pending.len() < FLUSH_AT && !all {
            return Ok(());
        }
        self.crc.update(&self.pending);
        self.digest.update(&self.pending);
        if let Some(f) = self.w.as_mut() {
            f.write_all(&self.pending)
                .map_err(io_err(&self.tmp, "write"))?;
        }
        self.pending.clear();
        Ok(())
    }

    pub fn add(&mut self, e: &EntryRef<'_>) -> Result<(), IndexError> {
        let shared = self
            .prev
            .iter()
            .zip(e.path)
            .take_while(|(a, b)| a == b)
            .count();
        let b = &mut self.pending;
        b.push(1);
        put(b, shared as u64);
        put(b, (e.path.len() - shared) as u64);
        b.extend_from_slice(&e.path[shared..]);
        b.push(e.kind as u8);
        put(b, u64::from(e.cats));
        // A file within one block has one hash for prefix and content:
        // stored once (bit 8).
        let same = e.full.is_some() && e.full == e.prefix;
        let hs = [e.prefix, e.suffix, if same { None } else { e.full }];
        b.push(
            hs.iter()
                .enumerate()
                .fold(u8::from(same) << 3, |acc, (i, h)| {
                    acc | (u8::from(h.is_some()) << i)
                }),
        );
        put(b, e.dev);
        put(b, e.ino);
        put(b, e.size);
        put(b, zigzag(e.mtime_ns));
        for h in hs.into_iter().flatten() {
            b.extend_from_slice(&h);
        }
        self.prev.truncate(shared);
        self.prev.extend_from_slice(&e.path[shared..]);
        self.count += 1;
        self.flush(false)
    }

    fn end(&mut self) -> Result<Hash, IndexError> {
        let mut b = vec![0];
        put(&mut b, self.count);
        self.body(&b)?;
        self.flush(true)?;
        let digest = super::hash::truncate(self.digest.finalize());
        self.crc.update(&digest);
        if let Some(f) = self.w.as_mut() {
            f.write_all(&digest).map_err(io_err(&self.tmp, "write"))?;
        }
        Ok(digest)
    }

    /// A dry run's digest.
    pub fn digest(mut self) -> Result<Hash, IndexError> {
        self.end()
    }

    /// Ends the file, flushes it to disk and renames it over the index.
    pub fn finish(mut self) -> Result<u64, IndexError> {
        self.end()?;
        let crc = self.crc.clone().finalize();
        let Some(mut w) = self.w.take() else {
            return Ok(self.count);
        };
        w.write_all(&crc.to_le_bytes())
            .map_err(io_err(&self.tmp, "write"))?;
        let f = w.into_inner().map_err(|e| IndexError::Io {
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
/// header (without entries). `Ok(None)`: there is no index yet. The file is
/// read whole and checked before any entry is handed out.
pub(crate) fn read(
    dir: &Path,
    mut each: impl FnMut(EntryRef<'_>),
) -> Result<Option<Index>, IndexError> {
    let path = dir.join(FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path, "read")(e)),
    };
    let corrupt = |what| IndexError::Corrupt {
        path: path.clone(),
        what,
    };
    if bytes.len() < MAGIC.len() + 4 {
        return Err(corrupt("too short"));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt("not a Sobre index, or another version"));
    }
    let (body, stored) = bytes[8..].split_at(bytes.len() - 12);
    if crc32fast::hash(body) != u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]) {
        return Err(corrupt("checksum"));
    }
    let mut r = Cur { b: body, pos: 0 };
    let bad = |_: Short| corrupt("truncated");
    let mut idx = Index {
        scanned_at_ms: unzigzag(r.get().map_err(bad)?),
        complete: r.get().map_err(bad)? & 1 == 1,
        ..Index::default()
    };
    let n_roots = r.get().map_err(bad)?;
    for _ in 0..n_roots.min(4096) {
        let n = r.get().map_err(bad)? as usize;
        idx.roots
            .push(PathBuf::from(OsStr::from_bytes(r.take(n).map_err(bad)?)));
    }
    let mut path: Vec<u8> = Vec::new();
    let mut count = 0u64;
    loop {
        match r.byte().map_err(bad)? {
            0 => break,
            1 => {}
            _ => return Err(corrupt("unknown record")),
        }
        let shared = r.get().map_err(bad)? as usize;
        if shared > path.len() {
            return Err(corrupt("path prefix"));
        }
        path.truncate(shared);
        let n = r.get().map_err(bad)? as usize;
        path.extend_from_slice(r.take(n).map_err(bad)?);
        let kind = match r.byte().map_err(bad)? {
            0 => EntryKind::File,
            1 => EntryKind::EmptyDir,
            2 => EntryKind::BrokenLink,
            _ => return Err(corrupt("unknown kind")),
        };
        let cats = r.get().map_err(bad)? as Cats;
        let bits = r.byte().map_err(bad)?;
        let (dev, ino, size) = (
            r.get().map_err(bad)?,
            r.get().map_err(bad)?,
            r.get().map_err(bad)?,
        );
        let mtime_ns = unzigzag(r.get().map_err(bad)?);
        let mut hs = [None; 3];
        for (i, h) in hs.iter_mut().enumerate() {
            if bits & (1 << i) != 0 {
                let mut b = [0u8; 16];
                b.copy_from_slice(r.take(16).map_err(bad)?);
                *h = Some(b);
            }
        }
        if bits & 8 != 0 {
            hs[2] = hs[0];
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
    if r.get().map_err(bad)? != count {
        return Err(corrupt("entry count"));
    }
    idx.digest.copy_from_slice(r.take(16).map_err(bad)?);
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

/// The hashes of the last scans by (dev, inode): what a rescan may reuse,
/// and the roots the index covers.
pub(crate) fn load_cache(dir: &Path) -> Result<(Cache, Option<Index>), IndexError> {
    let t = std::time::Instant::now();
    let mut cache = Cache::new();
    let header = read(dir, |e| {
        if e.kind == EntryKind::File && (e.prefix.is_some() || e.full.is_some()) {
            cache.0.push((
                (e.dev, e.ino),
                Cached {
                    size: e.size,
                    mtime_ns: e.mtime_ns,
                    prefix: e.prefix,
                    suffix: e.suffix,
                    full: e.full,
                },
            ));
        }
    })?;
    cache.0.shrink_to_fit();
    tracing::debug!(
        entries = cache.0.len(),
        ms = t.elapsed().as_millis() as u64,
        "index cache loaded"
    );
    Ok((cache, header))
}

/// Ran past the end of the body.
#[derive(Debug)]
struct Short;

struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    fn byte(&mut self) -> Result<u8, Short> {
        let v = *self.b.get(self.pos).ok_or(Short)?;
        self.pos += 1;
        Ok(v)
    }

    fn get(&mut self) -> Result<u64, Short> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Short)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Short> {
        let s = self
            .b
            .get(self.pos..self.pos.checked_add(n).ok_or(Short)?)
            .ok_or(Short)?;
        self.pos += n;
        Ok(s)
    }
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
        let (cache, header) = load_cache(dir.path()).expect("cache");
        assert_eq!(
            header.map(|h| h.roots),
            Some(vec![PathBuf::from("/home/a")])
        );
        assert_eq!(cache.0.len(), 3, "entries with hashes");
        let pos = cache.positions([(1, 1), (2049, 1 << 40)].into_iter());
        assert_eq!(pos[0], u32::MAX);
        assert!(cache.at(pos[1]).is_some_and(|c| c.size == 123_456));
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
            assert_eq!(Cur { b: &b, pos: 0 }.get().expect("get"), v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }
}
