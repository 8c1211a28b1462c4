//! File names as bytes, the form the scan keeps and its index stores: on
//! Linux the name's own bytes; on Windows its WTF-8 form (UTF-8, with a
//! lone UTF-16 surrogate, which NTFS allows, encoded like any other code
//! point), decoded here rather than through `std`'s unspecified internal
//! encoding, so an index written by one build reads in any other.

use std::borrow::Cow;
use std::ffi::OsStr;

/// `s` as bytes (borrowed: no copy on either system).
pub(crate) fn bytes(s: &OsStr) -> &[u8] {
    #[cfg(unix)]
    {
        std::os::unix::ffi::OsStrExt::as_bytes(s)
    }
    #[cfg(windows)]
    {
        // Documented as WTF-8 for Windows' OsStr, a superset of UTF-8.
        s.as_encoded_bytes()
    }
}

/// The name `b` holds (borrowed unless, on Windows, it has a lone
/// surrogate).
pub(crate) fn os_str(b: &[u8]) -> Cow<'_, OsStr> {
    #[cfg(unix)]
    {
        Cow::Borrowed(std::os::unix::ffi::OsStrExt::from_bytes(b))
    }
    #[cfg(windows)]
    {
        match std::str::from_utf8(b) {
            Ok(s) => Cow::Borrowed(OsStr::new(s)),
            Err(_) => {
                use std::os::windows::ffi::OsStringExt;
                Cow::Owned(std::ffi::OsString::from_wide(&wtf8_to_wide(b)))
            }
        }
    }
}

/// Appends UTF-16 `units` (little-endian bytes, as a Windows listing
/// holds them) to `out` as WTF-8: the inverse of [`wtf8_to_wide`], with
/// no allocation.
#[cfg_attr(unix, allow(dead_code))]
pub(crate) fn push_wtf8(units: &[u8], out: &mut Vec<u8>) {
    let it = units
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    for r in char::decode_utf16(it) {
        match r {
            Ok(ch) => {
                let mut b = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
            }
            Err(e) => {
                let u = e.unpaired_surrogate();
                out.extend_from_slice(&[
                    0xe0 | (u >> 12) as u8,
                    0x80 | ((u >> 6) & 0x3f) as u8,
                    0x80 | (u & 0x3f) as u8,
                ]);
            }
        }
    }
}

/// Decodes WTF-8 (generalised UTF-8: surrogates allowed as 3-byte
/// sequences) to UTF-16; a byte that fits no sequence becomes U+FFFD.
#[cfg_attr(unix, allow(dead_code))]
fn wtf8_to_wide(b: &[u8]) -> Vec<u16> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c0 = u32::from(b[i]);
        let (len, init) = match c0 {
            0x00..=0x7f => (1, c0),
            0xc2..=0xdf => (2, c0 & 0x1f),
            0xe0..=0xef => (3, c0 & 0x0f),
            0xf0..=0xf4 => (4, c0 & 0x07),
            _ => (0, 0),
        };
        let tail = b.get(i + 1..i + len.max(1)).unwrap_or(&[]);
        if len == 0 || tail.len() + 1 != len || tail.iter().any(|&t| t & 0xc0 != 0x80) {
            out.push(0xfffd);
            i += 1;
            continue;
        }
        let cp = tail
            .iter()
            .fold(init, |cp, &t| (cp << 6) | u32::from(t & 0x3f));
        match char::from_u32(cp) {
            Some(ch) => {
                let mut buf = [0u16; 2];
                out.extend_from_slice(ch.encode_utf16(&mut buf));
            }
            // A surrogate on its own: kept as it was.
            None if (0xd800..0xe000).contains(&cp) => out.push(cp as u16),
            None => out.push(0xfffd),
        }
        i += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_bytes() {
        for n in ["plain", "é€😀", "", "a b.txt"] {
            let os = OsStr::new(n);
            assert_eq!(&*os_str(bytes(os)), os);
        }
    }

    #[test]
    fn wtf8_decodes_a_lone_surrogate_and_marks_garbage() {
        // U+D800 alone, as WTF-8.
        assert_eq!(wtf8_to_wide(&[0x61, 0xed, 0xa0, 0x80]), vec![0x61, 0xd800]);
        assert_eq!(
            wtf8_to_wide("é😀".as_bytes()),
            "é😀".encode_utf16().collect::<Vec<_>>()
        );
        assert_eq!(wtf8_to_wide(&[0xff, 0x61]), vec![0xfffd, 0x61]);
        assert_eq!(wtf8_to_wide(&[0xe2, 0x82]), vec![0xfffd, 0xfffd]);
    }

    #[test]
    fn utf16_listing_names_become_wtf8_and_back() {
        let units: Vec<u16> = vec![0x72, 0xe9, 0xd83d, 0xde00, 0xdc00, 0x2e];
        let le: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
        let mut out = Vec::new();
        push_wtf8(&le, &mut out);
        assert_eq!(wtf8_to_wide(&out), units);
    }

    #[cfg(windows)]
    #[test]
    fn a_lone_surrogate_survives_the_round_trip() {
        use std::os::windows::ffi::{OsStrExt, OsStringExt};
        let odd = std::ffi::OsString::from_wide(&[0x61, 0xd800, 0x62]);
        let back = os_str(bytes(&odd)).into_owned();
        assert_eq!(
            back.encode_wide().collect::<Vec<_>>(),
            vec![0x61, 0xd800, 0x62]
        );
    }
}
