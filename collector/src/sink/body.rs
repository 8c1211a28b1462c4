//! Request bodies as they go on the wire: the batch's lines themselves, or
//! gzip of them from one deflate stream kept from batch to batch, written
//! into a buffer a delivered batch handed back.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};

/// Encodes request bodies: plain (the text itself, no copy) or gzip
/// (RFC 1952) at level 1, the fastest: line protocol still compresses
/// ~5x, and the collector's CPU is the budget that matters here
/// (BENCHMARKS.md, "InfluxDB sink": gzip is ~0.8 ms per 1,000 `usage`
/// points, a third of the sink's CPU).
///
/// Each body is deflated in one call into an output buffer of the
/// worst-case size, so the stream always finishes and is reset, never
/// left half-done (zlib-rs 0.6.8 produced a corrupt stream after a reset
/// of an unfinished one). Keeping the stream (~300 KB of hash tables and
/// window) and taking the output buffer from the pool saves their fresh
/// allocation and page faults on every batch.
#[derive(Debug)]
pub struct Encoder {
    deflate: Option<Compress>,
}

impl Encoder {
    pub fn new(gzip: bool) -> Encoder {
        Encoder {
            // Window bits 15: deflate's largest window, as gzip(1) uses.
            deflate: gzip.then(|| Compress::new_gzip(Compression::fast(), 15)),
        }
    }

    /// The body for `text`: `text` itself, or its gzip written into
    /// `spare()` (a buffer given back by a delivered batch, or a new one).
    pub fn encode(&mut self, text: Bytes, spare: impl FnOnce() -> Vec<u8>) -> Bytes {
        let Some(deflate) = &mut self.deflate else {
            return text;
        };
        let mut out = spare();
        out.clear();
        out.reserve(worst_case(text.len()));
        let status = deflate.compress_vec(&text, &mut out, FlushCompress::Finish);
        // Invariant: with room for deflate's worst case, one call finishes
        // the stream (a proptest feeds it incompressible bytes); the
        // request's Content-Encoding says gzip, so a plain or truncated
        // body sent instead would be refused or stored as garbage.
        assert!(
            matches!(status, Ok(Status::StreamEnd)),
            "gzip with room for its worst case did not finish: {status:?}"
        );
        deflate.reset();
        Bytes::from(out)
    }
}

/// The body for a one-off request (a batch split after a 413).
pub fn encode(gzip: bool, text: Bytes) -> Bytes {
    Encoder::new(gzip).encode(text, Vec::new)
}

/// The most deflate can write for `len` bytes, with gzip's header and
/// trailer: `compress_bound` counts zlib's 6-byte wrapper, gzip's is 18.
fn worst_case(len: usize) -> usize {
    zlib_rs::compress_bound(len) + (18 - 6)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gunzip(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut out)
            .expect("gunzip");
        out
    }

    #[test]
    fn gzip_round_trips_through_one_stream_and_reused_buffers() {
        let mut enc = Encoder::new(true);
        // Several MB of varied lines (more than one deflate block, past
        // the 32 KiB window), then shorter bodies into the buffer that
        // still holds the first one's bytes, then the first again.
        let mut big = String::new();
        for i in 0..60_000u64 {
            big.push_str(&format!(
                "usage,agent=a{} seq={i}i,cpu={}.{} {i}\n",
                i % 37,
                i * 7919 % 100,
                i % 10
            ));
        }
        let mut spare = Vec::new();
        for (i, text) in [big.as_str(), "", "m f=1 1\n", big.as_str()]
            .iter()
            .enumerate()
        {
            let ptr = spare.as_ptr();
            let body = enc.encode(Bytes::from(text.to_string()), || spare);
            assert_eq!(&body[..2], b"\x1f\x8b", "a gzip member");
            assert_eq!(gunzip(&body), text.as_bytes());
            if i > 0 {
                // The first body's buffer has room for every later one.
                assert_eq!(body.as_ptr(), ptr, "written into the spare buffer");
            }
            spare = Vec::from(body.try_into_mut().expect("sole owner"));
        }
        assert!(
            enc.encode(Bytes::from(big.clone()), Vec::new).len() < big.len() / 3,
            "compressed"
        );
        let plain = Bytes::from_static(b"m f=1 1\n");
        assert_eq!(
            Encoder::new(false)
                .encode(plain.clone(), || unreachable!("plain takes no buffer"))
                .as_ptr(),
            plain.as_ptr(),
            "plain: no copy"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Incompressible bytes are deflate's worst case: one call must
        /// still finish the stream, and the next body from the same
        /// stream must still be right.
        #[test]
        fn gzip_of_incompressible_bytes_finishes_in_one_call_and_round_trips(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..70_000)
        ) {
            let mut enc = Encoder::new(true);
            let body = enc.encode(Bytes::from(bytes.clone()), Vec::new);
            proptest::prop_assert_eq!(gunzip(&body), bytes.clone());
            let again = enc.encode(Bytes::from(bytes.clone()), || Vec::from(body.try_into_mut().expect("sole owner")));
            proptest::prop_assert_eq!(gunzip(&again), bytes);
        }
    }
}
