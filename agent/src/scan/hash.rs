//! Reading and hashing file content for the duplicate stages: the first
//! block, the last block, or everything; a file that changed size while
//! read is reported as changed, not hashed.

use super::pace::Pacer;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Prefix and suffix block size. 4 KiB is one page: the prefix stage costs
/// one read per file, and the block holds most file formats' headers.
pub const BLOCK: u64 = 4096;
/// Read size of the full-hash stage: large enough for BLAKE3 to use all
/// SIMD lanes, small enough to stay in L2.
pub const CHUNK: usize = 128 * 1024;

/// BLAKE3 truncated to 128 bits: a collision among 2^32 files has odds
/// of 2^-64, and the index stays small.
pub type Hash = [u8; 16];

/// Which part of a file a stage hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Prefix,
    Suffix,
    Full,
}

#[derive(Debug)]
pub(crate) enum HashFail {
    Io(io::Error),
    /// The file's size is not the one the walk saw.
    Changed,
    Cancelled,
}

impl From<io::Error> for HashFail {
    fn from(e: io::Error) -> Self {
        HashFail::Io(e)
    }
}

pub(crate) fn truncate(h: blake3::Hash) -> Hash {
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.as_bytes()[..16]);
    out
}

/// Hashes one part of `path`, expected to be `size` bytes long; `read`
/// counts the bytes read (for progress).
pub(crate) fn hash_file(
    path: &Path,
    stage: Stage,
    size: u64,
    buf: &mut Vec<u8>,
    pacer: &mut Pacer,
    cancel: &AtomicBool,
    read: &AtomicU64,
) -> Result<Hash, HashFail> {
    let mut f = File::open(path)?;
    match stage {
        Stage::Prefix | Stage::Suffix => {
            let n = size.min(BLOCK) as usize;
            if stage == Stage::Suffix && size > BLOCK {
                f.seek(SeekFrom::Start(size - BLOCK))?;
            }
            buf.resize(n, 0);
            f.read_exact(&mut buf[..n]).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    HashFail::Changed
                } else {
                    HashFail::Io(e)
                }
            })?;
            read.fetch_add(n as u64, Relaxed);
            pacer.tick(cancel);
            Ok(truncate(blake3::hash(&buf[..n])))
        }
        Stage::Full => {
            buf.resize(CHUNK, 0);
            let mut hasher = blake3::Hasher::new();
            let mut total = 0u64;
            loop {
                if cancel.load(Relaxed) {
                    return Err(HashFail::Cancelled);
                }
                let n = match f.read(buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e.into()),
                };
                hasher.update(&buf[..n]);
                total += n as u64;
                read.fetch_add(n as u64, Relaxed);
                if total > size {
                    return Err(HashFail::Changed);
                }
                pacer.tick(cancel);
            }
            if total != size {
                return Err(HashFail::Changed);
            }
            Ok(truncate(hasher.finalize()))
        }
    }
}

/// The fleet fingerprint of a content: keyed BLAKE3 (the fleet's key) of
/// the content's 128-bit BLAKE3 hash, truncated to 16 bytes. Keying the
/// content hash rather than rereading the content makes it free once the
/// index holds the hash, and as hard to reverse without the key.
pub fn fingerprint(key: &[u8; 32], content: &Hash) -> Hash {
    truncate(blake3::keyed_hash(key, content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_read_the_right_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).expect("write");
        let (mut buf, mut pacer, cancel, read) = (
            Vec::new(),
            Pacer::new(None),
            AtomicBool::new(false),
            AtomicU64::new(0),
        );
        let mut h = |stage| hash_file(&p, stage, 10_000, &mut buf, &mut pacer, &cancel, &read);
        let pre = h(Stage::Prefix).expect("prefix");
        let suf = h(Stage::Suffix).expect("suffix");
        let full = h(Stage::Full).expect("full");
        assert_eq!(pre, truncate(blake3::hash(&data[..4096])));
        assert_eq!(suf, truncate(blake3::hash(&data[10_000 - 4096..])));
        assert_eq!(full, truncate(blake3::hash(&data)));
        assert_eq!(read.load(Relaxed), 4096 + 4096 + 10_000);
        // The walk saw another size: changed, not hashed.
        let r = hash_file(&p, Stage::Full, 9_999, &mut buf, &mut pacer, &cancel, &read);
        assert!(matches!(r, Err(HashFail::Changed)));
        let r = hash_file(
            &p,
            Stage::Suffix,
            20_000,
            &mut buf,
            &mut pacer,
            &cancel,
            &read,
        );
        assert!(matches!(r, Err(HashFail::Changed)));
        // Gone: an I/O error (NotFound), counted by the caller.
        std::fs::remove_file(&p).expect("rm");
        let r = hash_file(
            &p,
            Stage::Prefix,
            10_000,
            &mut buf,
            &mut pacer,
            &cancel,
            &read,
        );
        assert!(matches!(r, Err(HashFail::Io(e)) if e.kind() == io::ErrorKind::NotFound));
    }

    #[test]
    fn small_file_prefix_is_its_full_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").expect("write");
        let (mut buf, mut pacer, cancel, read) = (
            Vec::new(),
            Pacer::new(None),
            AtomicBool::new(false),
            AtomicU64::new(0),
        );
        let pre = hash_file(&p, Stage::Prefix, 5, &mut buf, &mut pacer, &cancel, &read).expect("p");
        let full = hash_file(&p, Stage::Full, 5, &mut buf, &mut pacer, &cancel, &read).expect("f");
        assert_eq!(pre, full);
    }

    #[test]
    fn fingerprints_depend_on_the_key() {
        let h = truncate(blake3::hash(b"content"));
        let a = fingerprint(&[1; 32], &h);
        assert_eq!(a, fingerprint(&[1; 32], &h));
        assert_ne!(a, fingerprint(&[2; 32], &h));
        assert_ne!(a, h);
    }
}
