//! A prepared request, and the buffers handed back for the next one: the
//! text of a 5,000-point batch is a few MB, and allocating it afresh for
//! every batch cost page faults and copies (bench/sink.sh, perf).

use super::client;
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
    /// Seals `lines` (moved, not copied) and encodes the body.
    pub fn new(lines: Lines, encoder: &mut client::Encoder, cursor: Option<i64>) -> Batch {
        let text = Bytes::from(lines.buf);
        Batch {
            body: encoder.encode(text.clone()),
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

/// Up to two emptied `Lines` (one batch is on the wire while the next
/// waits in the channel and a third is built).
#[derive(Clone, Default)]
pub struct Pool {
    free: Arc<Mutex<Vec<Lines>>>,
    reused: Arc<AtomicU64>,
}

impl Pool {
    /// An empty `Lines`, reused when one was given back.
    pub fn take(&self, lines: usize) -> Lines {
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match reused {
            Some(l) => {
                self.reused.fetch_add(1, Relaxed);
                l
            }
            None => Lines::with_capacity(lines),
        }
    }

    /// How many `take`s were served a buffer given back.
    pub fn reused(&self) -> u64 {
        self.reused.load(Relaxed)
    }

    /// Takes back the buffers of a delivered batch, unless something
    /// (the HTTP client) still holds its text.
    pub fn give(&self, batch: Batch) {
        let Batch {
            text, body, ends, ..
        } = batch;
        drop(body);
        let Ok(text) = text.try_into_mut() else {
            return;
        };
        let mut lines = Lines {
            buf: text.into(),
            ends,
        };
        lines.buf.clear();
        lines.ends.clear();
        let mut pool = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 2 {
            pool.push(lines);
        }
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
        let batch = Batch::new(lines, &mut client::Encoder::new(false), Some(7));
        assert_eq!(&batch.slice(1, 2)[..], b"m f=2 2\n");
        assert_eq!(batch.body.as_ptr(), ptr, "plain body: no copy");
        pool.give(batch);
        let again = pool.take(2);
        assert_eq!(again.buf.as_ptr(), ptr, "the same buffer, reused");
        assert_eq!(pool.reused(), 1);
        assert!(again.buf.is_empty() && again.ends.is_empty());
        // Still held elsewhere: not taken back.
        let batch = Batch::new(again, &mut client::Encoder::new(false), None);
        let held = batch.body.clone();
        pool.give(batch);
        assert_ne!(pool.take(1).buf.as_ptr(), held.as_ptr());
    }
}
