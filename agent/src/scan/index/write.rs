//! Writing the index: streamed to a temporary file in large pieces,
//! checksummed and digested on the way, then fsynced and renamed over the
//! old one.

use super::{EntryRef, FILE_NAME, IndexError, MAGIC, io_err, put, zigzag};
use crate::scan::hash::{self, Hash};
use crate::scan::walk::shared_prefix;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Streams a new index into `dir`; [`Writer::finish`] makes it the index.
pub(crate) struct Writer {
    w: BufWriter<File>,
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
        let tmp = dir.join(format!("{FILE_NAME}.tmp"));
        sobre_base::files::create_private_dir(dir)
            .map_err(io_err(dir, "create the index directory"))?;
        let f = sobre_base::files::create_private(&tmp).map_err(io_err(&tmp, "create"))?;
        let w = BufWriter::with_capacity(256 * 1024, f);
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
        w.w.write_all(MAGIC).map_err(io_err(&w.tmp, "write"))?;
        let mut b = Vec::new();
        put(&mut b, zigzag(scanned_at_ms));
        w.crc.update(&b);
        w.w.write_all(&b).map_err(io_err(&w.tmp, "write"))?;
        b.clear();
        put(&mut b, u64::from(complete));
        put(&mut b, roots.len() as u64);
        for r in roots {
            let r = crate::sys::name::bytes(r.as_os_str());
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
        self.w
            .write_all(&self.pending)
            .map_err(io_err(&self.tmp, "write"))?;
        self.pending.clear();
        Ok(())
    }

    pub fn add(&mut self, e: &EntryRef<'_>) -> Result<(), IndexError> {
        let shared = shared_prefix(&self.prev, e.path);
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
        let digest = hash::truncate(self.digest.finalize());
        self.crc.update(&digest);
        self.w
            .write_all(&digest)
            .map_err(io_err(&self.tmp, "write"))?;
        Ok(digest)
    }

    /// Ends the file, flushes it to disk and renames it over the index.
    pub fn finish(mut self) -> Result<u64, IndexError> {
        self.end()?;
        let crc = self.crc.clone().finalize();
        let mut w = self.w;
        w.write_all(&crc.to_le_bytes())
            .map_err(io_err(&self.tmp, "write"))?;
        let f = w.into_inner().map_err(|e| IndexError::Io {
            path: self.tmp.clone(),
            op: "write",
            err: e.into_error(),
        })?;
        f.sync_all().map_err(io_err(&self.tmp, "fsync"))?;
        let dst = self.dir.join(FILE_NAME);
        crate::sys::rename_durable(&self.tmp, &dst).map_err(io_err(&dst, "replace"))?;
        crate::sys::sync_dir(&self.dir).map_err(io_err(&self.dir, "fsync"))?;
        Ok(self.count)
    }
}
