//! The `usage` line, written fast: each agent's series key rendered once
//! by the `influxdb-line-protocol` builder, the fields then appended with
//! exactly the builder's rules (`{f64}`, `{i64}i`), numbers without the
//! formatting machinery. Tests check the bytes equal the builder's.

use super::points::{Carbon, HostTags, Lines, SampleRow, Val, start, usage_fields};

/// The series key (measurement and escaped tags) of each agent's `usage`
/// lines, rendered once by the `influxdb-line-protocol` builder and reused
/// for every sample. The builder escapes and formats one character at a
/// time (about 15 µs a `usage` line here, 7x the whole budget of 2 ms per
/// 1,000 points); the field set is then written with exactly the builder's
/// rules — fixed ASCII keys that need no escaping, `{f64}` and `{i64}i` —
/// and a test checks the bytes equal the builder's for arbitrary rows.
/// A rendered key: (power source, the tags it was rendered from, bytes).
type Key = (Option<String>, HostTags, Vec<u8>);

#[derive(Debug, Default)]
pub struct SeriesKeys {
    /// By agent, one per power source: a handful at most, so a scan
    /// beats hashing an owned string for every line.
    keys: std::collections::HashMap<i64, Vec<Key>>,
}

impl SeriesKeys {
    fn key(&mut self, agent: i64, tags: &HostTags, source: Option<&str>) -> &[u8] {
        let source = source.filter(|s| !s.is_empty());
        let keys = self.keys.entry(agent).or_default();
        let i = match keys.iter().position(|(s, _, _)| s.as_deref() == source) {
            Some(i) if keys[i].1 == *tags => i,
            found => {
                let mut buf = Vec::with_capacity(128);
                let mut m = start(&mut buf, "usage", tags);
                if let Some(src) = source {
                    m = m.tag("source", src);
                }
                m.field("x", true).close_line();
                buf.truncate(buf.len() - " x=true\n".len());
                let entry = (source.map(str::to_owned), tags.clone(), buf);
                match found {
                    Some(i) => {
                        keys[i] = entry;
                        i
                    }
                    None => {
                        keys.push(entry);
                        keys.len() - 1
                    }
                }
            }
        };
        &keys[i].2
    }

    /// The same line as [`super::points::sample`].
    pub fn sample(&mut self, out: &mut Lines, tags: &HostTags, r: &SampleRow, carbon: &Carbon) {
        use std::io::Write;
        let key = self.key(r.agent, tags, r.power_source.as_deref());
        out.buf.extend_from_slice(key);
        let mut sep = b' ';
        for (k, v) in usage_fields(r, tags, carbon) {
            // Writing to a Vec cannot fail.
            match v {
                Val::F(Some(x)) if x.is_finite() => {
                    out.buf.push(sep);
                    out.buf.extend_from_slice(k.as_bytes());
                    out.buf.push(b'=');
                    if !push_decimal(&mut out.buf, x) {
                        let _ = write!(out.buf, "{x}");
                    }
                }
                Val::I(Some(x)) => {
                    out.buf.push(sep);
                    out.buf.extend_from_slice(k.as_bytes());
                    out.buf.push(b'=');
                    push_i64(&mut out.buf, x);
                    out.buf.push(b'i');
                }
                _ => continue,
            }
            sep = b',';
        }
        out.buf.push(b' ');
        push_i64(&mut out.buf, r.sent_ms);
        out.buf.push(b'\n');
        out.closed();
    }
}

/// `x` as `{x}` formats it, without the float formatting machinery, when
/// `x` is a decimal of at most 6 places (what `points::round` returns, and
/// milliseconds in seconds): false, and nothing written, otherwise.
///
/// Why the bytes are the same: `x` is then the double nearest to
/// k / 10^d (division is correctly rounded), so the decimal k / 10^d reads
/// back as `x`; with |k| < 10^12 the doubles near `x` are far closer
/// together than 10^-d, so no other decimal of d places or fewer reads
/// back as `x`, and the shortest one, which `{x}` prints (never with an
/// exponent), is k / 10^d without its trailing zeros.
fn push_decimal(buf: &mut Vec<u8>, x: f64) -> bool {
    const LIMIT: f64 = 1e12;
    if x == 0.0 {
        buf.extend_from_slice(if x.is_sign_negative() { b"-0" } else { b"0" });
        return true;
    }
    for (places, scale) in [(3u32, 1e3), (6, 1e6)] {
        let k = (x * scale).round();
        if k.abs() >= LIMIT || k / scale != x {
            continue;
        }
        let k = k as i64;
        if k < 0 {
            buf.push(b'-');
        }
        let k = k.unsigned_abs();
        let div = 10u64.pow(places);
        let (int, mut frac) = (k / div, k % div);
        push_i64(buf, int as i64);
        if frac != 0 {
            let mut digits = places;
            while frac % 10 == 0 {
                frac /= 10;
                digits -= 1;
            }
            buf.push(b'.');
            let mut text = [b'0'; 6];
            for d in text[..digits as usize].iter_mut().rev() {
                *d = b'0' + (frac % 10) as u8;
                frac /= 10;
            }
            buf.extend_from_slice(&text[..digits as usize]);
        }
        return true;
    }
    false
}

/// `v` in decimal, as `{i64}` formats it, without the formatting machinery.
/// Two digits at a time (a line has 16 integers, some of 10+ digits).
fn push_i64(buf: &mut Vec<u8>, v: i64) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut digits = [0u8; 20];
    let mut n = v.unsigned_abs();
    let mut i = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + n as u8;
    }
    if v < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_decimal_writes_what_display_writes() {
        let mut checked = 0;
        let edge = [
            0.0,
            -0.0,
            0.001,
            -0.001,
            0.5,
            -0.5,
            1.0,
            12.345,
            100.0,
            0.000_001,
            1e-7,
            0.1 + 0.2,
            999_999.999_999,
            1_234_567.891,
            999_999_999.999,
            1e9,
            1e12,
            123_456_789_012.345,
            -42.000_5,
            3.6e6,
            1.0 / 3.0,
        ];
        let grid = (-3000..3000).flat_map(|k| [k as f64 / 1e3, k as f64 / 1e6, k as f64 * 7.77]);
        for x in edge.into_iter().chain(grid) {
            for x in [x, (x * 1e3).round() / 1e3, (x * 1e6).round() / 1e6] {
                let mut fast = Vec::new();
                if push_decimal(&mut fast, x) {
                    assert_eq!(String::from_utf8_lossy(&fast), format!("{x}"), "{x:?}");
                    checked += 1;
                } else {
                    assert!(fast.is_empty(), "nothing written when it declines");
                }
            }
        }
        assert!(checked > 10_000, "the fast path is taken: {checked}");
    }
}
