//! Reading the index: streamed in 256 KiB pieces (the file holds some
//! 50 bytes per entry; read whole it would weigh as much as a rescan's
//! own records), its CRC checked once the last byte is in.

use super::{EntryKind, EntryRef, FILE_NAME, Index, IndexError, MAGIC, io_err, unzigzag};
use crate::scan::rules::Cats;
use crate::sys::name::os_str;
use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

/// Bytes read from the file at a time.
const CHUNK: usize = 256 * 1024;

/// Why a read stopped.
enum Fail {
    Io(io::Error),
    /// Ran past the end of the body.
    Short,
    Bad(&'static str),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Fail::Short
        } else {
            Fail::Io(e)
        }
    }
}

/// The body of the file (everything between the magic and the CRC), read
/// piece by piece into `buf` and checksummed as it comes in.
struct Body {
    f: File,
    buf: Vec<u8>,
    pos: usize,
    /// Body bytes still in the file.
    left: u64,
    crc: crc32fast::Hasher,
}

impl Body {
    /// Makes `n` bytes available at `buf[pos..]`.
    fn fill(&mut self, n: usize) -> Result<(), Fail> {
        let have = self.buf.len() - self.pos;
        if have >= n {
            return Ok(());
        }
        if (n - have) as u64 > self.left {
            return Err(Fail::Short);
        }
        self.buf.drain(..self.pos);
        self.pos = 0;
        let start = self.buf.len();
        let want = (CHUNK.max(n) - start).min(self.left as usize);
        self.buf.resize(start + want, 0);
        self.f.read_exact(&mut self.buf[start..])?;
        self.crc.update(&self.buf[start..]);
        self.left -= want as u64;
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, Fail> {
        if self.pos == self.buf.len() {
            self.fill(1)?;
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn get(&mut self) -> Result<u64, Fail> {
        // Ten bytes in hand (all but the last few of each piece): no
        // refill check per byte.
        if let Some(b) = self.buf.get(self.pos..self.pos + 10) {
            let mut v = 0u64;
            for (i, &b) in b.iter().enumerate() {
                v |= u64::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    self.pos += i + 1;
                    return Ok(v);
                }
            }
            return Err(Fail::Short);
        }
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Fail::Short)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], Fail> {
        self.fill(n)?;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Reads the rest of the body, then the stored CRC: do they agree?
    fn check(mut self) -> Result<bool, Fail> {
        while self.left > 0 {
            self.pos = self.buf.len();
            self.fill(1)?;
        }
        let mut stored = [0u8; 4];
        self.f.read_exact(&mut stored)?;
        Ok(self.crc.finalize() == u32::from_le_bytes(stored))
    }
}

/// Reads the index in `dir`, calling `each` for every entry; returns the
/// header (without entries). `Ok(None)`: there is no index yet. The file
/// is streamed and its checksum is checked at the end: on an error, drop
/// whatever `each` was given.
pub(crate) fn read(
    dir: &std::path::Path,
    mut each: impl FnMut(EntryRef<'_>),
) -> Result<Option<Index>, IndexError> {
    let path = dir.join(FILE_NAME);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path, "read")(e)),
    };
    let corrupt = |what| IndexError::Corrupt {
        path: path.clone(),
        what,
    };
    let len = f.metadata().map_err(io_err(&path, "read"))?.len();
    if len < MAGIC.len() as u64 + 4 {
        return Err(corrupt("too short"));
    }
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic).map_err(io_err(&path, "read"))?;
    if &magic != MAGIC {
        return Err(corrupt("not a Sobre index, or another version"));
    }
    let mut body = Body {
        f,
        buf: Vec::with_capacity(CHUNK),
        pos: 0,
        left: len - MAGIC.len() as u64 - 4,
        crc: crc32fast::Hasher::new(),
    };
    let parsed = entries(&mut body, &mut each).and_then(|idx| Ok((idx, body.check()?)));
    match parsed {
        Ok((idx, true)) => Ok(Some(idx)),
        Ok((_, false)) => Err(corrupt("checksum")),
        Err(Fail::Io(e)) => Err(io_err(&path, "read")(e)),
        Err(Fail::Short) => Err(corrupt("truncated")),
        Err(Fail::Bad(what)) => Err(corrupt(what)),
    }
}

/// The header, every entry through `each`, the count and the digest.
fn entries(r: &mut Body, each: &mut impl FnMut(EntryRef<'_>)) -> Result<Index, Fail> {
    let mut idx = Index {
        scanned_at_ms: unzigzag(r.get()?),
        complete: r.get()? & 1 == 1,
        ..Index::default()
    };
    let n_roots = r.get()?;
    for _ in 0..n_roots.min(4096) {
        let n = r.get()? as usize;
        idx.roots.push(PathBuf::from(&*os_str(r.take(n)?)));
    }
    let mut path: Vec<u8> = Vec::new();
    let mut count = 0u64;
    loop {
        match r.byte()? {
            0 => break,
            1 => {}
            _ => return Err(Fail::Bad("unknown record")),
        }
        let shared = r.get()? as usize;
        if shared > path.len() {
            return Err(Fail::Bad("path prefix"));
        }
        path.truncate(shared);
        let n = r.get()? as usize;
        path.extend_from_slice(r.take(n)?);
        let kind = match r.byte()? {
            0 => EntryKind::File,
            1 => EntryKind::EmptyDir,
            2 => EntryKind::BrokenLink,
            _ => return Err(Fail::Bad("unknown kind")),
        };
        let cats = r.get()? as Cats;
        let bits = r.byte()?;
        let (dev, ino, size) = (r.get()?, r.get()?, r.get()?);
        let mtime_ns = unzigzag(r.get()?);
        let mut hs = [None; 3];
        for (i, h) in hs.iter_mut().enumerate() {
            if bits & (1 << i) != 0 {
                let mut b = [0u8; 16];
                b.copy_from_slice(r.take(16)?);
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
    if r.get()? != count {
        return Err(Fail::Bad("entry count"));
    }
    idx.digest.copy_from_slice(r.take(16)?);
    Ok(idx)
}

#[cfg(test)]
pub(super) fn varint(b: &[u8]) -> Option<u64> {
    let mut f = tempfile::tempfile().ok()?;
    std::io::Write::write_all(&mut f, b).ok()?;
    std::io::Seek::rewind(&mut f).ok()?;
    let mut body = Body {
        f,
        buf: Vec::new(),
        pos: 0,
        left: b.len() as u64,
        crc: crc32fast::Hasher::new(),
    };
    body.get().ok()
}
