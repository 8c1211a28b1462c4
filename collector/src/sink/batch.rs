//! A prepared request, and the buffers handed back for the next one: the
//! text of a 5,000-point batch is a few MB (its gzip a fifth of that), and
//! allocating them afresh for every batch cost page faults and copies
//! (bench/sink.sh, perf).

use super::body::Encoder;
use super::points::Lines;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// A prepared request: its lines as plain text and where each ends (to
/// split on 413), its body as sent (the same bytes when not compressed,
/// not a copy), and the cursor it moves to once the server answered.
pub struct Batch {
    text: Bytes,
    ends: Vec<usize>,
    pub body: Bytes,
    pub cursor: Option<i64>,
}

impl Batch {
    /// Seals `lines` (moved, not copied) and encodes the body, into a
    /// buffer from `pool` when compressed.
    pub fn new(lines: Lines, encoder: &mut Encoder, pool: &Pool, cursor: Option<i64>) -> Batch {
        let text = Bytes::from(lines.buf);
        Batch {
            body: encoder.encode(text.clone(), || pool.take_body()),
            text,
            ends: lines.ends,
            cursor,
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The text of lines `[a, b)`, sharing the batch's buffer.
    pub fn slice(&self, a: usize, b: usize) -> Bytes {
        let at = |i: usize| if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.slice(at(a)..at(b))
    }
}

/// Up to two emptied `Lines` and two compressed bodies' buffers (one
/// batch is on the wire while the next waits in the channel and a third
/// is built).
#[derive(Clone, Default)]
pub struct Pool {
    free: Arc<Mutex<Free>>,
    reused: Arc<AtomicU64>,
}

#[derive(Default)]
struct Free {
    lines: Vec<Lines>,
    bodies: Vec<Vec<u8>>,
}

/// How many buffers of each kind the pool keeps.
const KEEP: usize = 2;

impl Pool {
    /// An empty `Lines`, reused when one was given back.
    pub fn take(&self, lines: usize) -> Lines {
        let reused = self.free().lines.pop();
        match reused {
            Some(l) => {
                self.reused.fetch_add(1, Relaxed);
                l
            }
            None => Lines::with_capacity(lines),
        }
    }

    /// A buffer for a compressed body, reused when one was given back.
    pub fn take_body(&self) -> Vec<u8> {
        self.free().bodies.pop().unwrap_or_default()
    }

    /// How many `take`s were served a buffer given back.
    pub fn reused(&self) -> u64 {
        self.reused.load(Relaxed)
    }

    /// Takes back the buffers of a delivered batch, unless something
    /// (the HTTP client) still holds them.
    pub fn give(&self, batch: Batch) {
        let Batch {
            text, body, ends, ..
        } = batch;
        // A compressed body has a buffer of its own; a plain one is the
        // text itself, still held by `text`, so it is not taken here.
        let body = body.try_into_mut().ok().map(Vec::from);
        let lines = text.try_into_mut().ok().map(|text| {
            let mut lines = Lines {
                buf: text.into(),
                ends,
            };
            lines.buf.clear();
            lines.ends.clear();
            lines
        });
        let mut free = self.free();
        if let Some(body) = body.filter(|_| free.bodies.len() < KEEP) {
            free.bodies.push(body);
        }
        if let Some(lines) = lines.filter(|_| free.lines.len() < KEEP) {
            free.lines.push(lines);
        }
    }

    fn free(&self) -> std::sync::MutexGuard<'_, Free> {
        // A panic elsewhere while the lock was held leaves plain buffers:
        // still fine to use.
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivered_batch_gives_its_buffer_back_and_slices_share_it() {
        let pool = Pool::default();
        let mut lines = pool.take(2);
        lines.buf.extend_from_slice(b"m f=1 1\nm f=2 2\n");
        lines.ends.extend([8, 16]);
        let ptr = lines.buf.as_ptr();
        let batch = Batch::new(lines, &mut Encoder::new(false), &pool, Some(7));
        assert_eq!(&batch.slice(1, 2)[..], b"m f=2 2\n");
        assert_eq!(batch.body.as_ptr(), ptr, "plain body: no copy");
        pool.give(batch);
        let again = pool.take(2);
        assert_eq!(again.buf.as_ptr(), ptr, "the same buffer, reused");
        assert_eq!(pool.reused(), 1);
        assert!(again.buf.is_empty() && again.ends.is_empty());
        // Still held elsewhere: not taken back.
        let batch = Batch::new(again, &mut Encoder::new(false), &pool, None);
        let held = batch.body.clone();
        pool.give(batch);
        assert_ne!(pool.take(1).buf.as_ptr(), held.as_ptr());
    }

    #[test]
    fn a_delivered_gzip_batch_gives_its_body_buffer_back() {
        let pool = Pool::default();
        let mut enc = Encoder::new(true);
        let batch = |pool: &Pool, enc: &mut Encoder| {
            let mut lines = pool.take(1);
            lines.buf.extend_from_slice(b"m f=1 1\n");
            lines.ends.push(8);
            Batch::new(lines, enc, pool, None)
        };
        let first = batch(&pool, &mut enc);
        let body = first.body.as_ptr();
        assert_ne!(body, first.slice(0, 1).as_ptr(), "a buffer of its own");
        pool.give(first);
        let second = batch(&pool, &mut enc);
        assert_eq!(second.body.as_ptr(), body, "the same body buffer, reused");
        assert_eq!(&second.body[..2], b"\x1f\x8b");
    }
}
