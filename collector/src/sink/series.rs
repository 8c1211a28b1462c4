//! The `usage` line, written fast: each agent's series key rendered once
//! by the `influxdb-line-protocol` builder, the fields then appended with
//! exactly the builder's rules (`{f64}`, `{i64}i`), numbers without the
//! formatting machinery. Tests check the bytes equal the builder's.

use super::points::{Carbon, HostTags, Lines, SampleRow, USAGE_FIELDS, Val, start, usage_values};

/// The series key (measurement and escaped tags) of each agent's `usage`
/// lines, rendered once by the `influxdb-line-protocol` builder and reused
/// for every sample. The builder escapes and formats one character at a
/// time (about 15 µs a `usage` line here, 7x the whole budget of 2 ms per
/// 1,000 points); the field set is then written with exactly the builder's
/// rules — fixed ASCII keys that need no escaping, `{f64}` and `{i64}i` —
/// and a test checks the bytes equal the builder's for arbitrary rows.
/// A rendered key: (power source, the tags' generation, the tags, bytes).
type Key = (Option<String>, u64, HostTags, Vec<u8>);

#[derive(Debug, Default)]
pub struct SeriesKeys {
    /// By agent, one per power source: a handful at most, so a scan
    /// beats hashing an owned string for every line.
    keys: std::collections::HashMap<i64, Vec<Key>>,
}

impl SeriesKeys {
    /// `generation` names a version of the caller's tags: the same
    /// generation promises the same tags, so they are compared (five
    /// strings, 2 % of the sink's CPU when done for every line) only when
    /// it changes.
    fn key(&mut self, agent: i64, tags: &HostTags, generation: u64, source: Option<&str>) -> &[u8] {
        let source = source.filter(|s| !s.is_empty());
        let keys = self.keys.entry(agent).or_default();
        let found = keys.iter().position(|(s, _, _, _)| s.as_deref() == source);
        let i = match found {
            Some(i) if keys[i].1 == generation => i,
            Some(i) if keys[i].2 == *tags => {
                keys[i].1 = generation;
                i
            }
            found => {
                let mut buf = Vec::with_capacity(128);
                let mut m = start(&mut buf, "usage", tags);
                if let Some(src) = source {
                    m = m.tag("source", src);
                }
                m.field("x", true).close_line();
                buf.truncate(buf.len() - " x=true\n".len());
                let entry = (source.map(str::to_owned), generation, tags.clone(), buf);
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
        &keys[i].3
    }

    /// The same line as [`super::points::sample`]; `tags` are those of
    /// `generation` (see [`SeriesKeys::key`]).
    pub fn sample(
        &mut self,
        out: &mut Lines,
        tags: &HostTags,
        generation: u64,
        r: &SampleRow,
        carbon: &Carbon,
    ) {
        use std::io::Write;
        let key = self.key(r.agent, tags, generation, r.power_source.as_deref());
        out.buf.extend_from_slice(key);
        let mut sep = b' ';
        for (field, v) in FIELD_KEYS.iter().zip(usage_values(r, tags, carbon)) {
            match v {
                Val::F(Some(x)) if x.is_finite() => {
                    push_key(&mut out.buf, field, sep);
                    if !push_decimal(&mut out.buf, x) {
                        // Writing to a Vec cannot fail.
                        let _ = write!(out.buf, "{x}");
                    }
                }
                Val::I(Some(x)) => {
                    push_key(&mut out.buf, field, sep);
                    push_i64(&mut out.buf, x, b"i");
                }
                _ => continue,
            }
            sep = b',';
        }
        out.buf.push(b' ');
        push_i64(&mut out.buf, r.sent_ms, b"\n");
        out.closed();
    }
}

/// Room for ",key=" or " key=" of every `usage` field, and for any number
/// [`push_i64`] and [`push_decimal`] write.
const SMALL: usize = 32;

/// `bytes[..len]`, appended by copying all of `bytes` and cutting the
/// tail: a fixed-size copy the compiler turns into two vector stores,
/// where a copy of a length it does not know calls `memcpy` (calls for a
/// few bytes each were 5 % of the sink's CPU, perf on bench/sink.sh).
#[inline(always)]
fn push_small(buf: &mut Vec<u8>, bytes: &[u8; SMALL], len: usize) {
    let at = buf.len();
    buf.extend_from_slice(bytes);
    buf.truncate(at + len);
}

/// ",key=" of each `usage` field, padded to [`SMALL`] bytes, and its length.
const FIELD_KEYS: [([u8; SMALL], usize); 25] = {
    let mut out = [([0u8; SMALL], 0); 25];
    let mut f = 0;
    while f < USAGE_FIELDS.len() {
        let name = USAGE_FIELDS[f].as_bytes();
        assert!(name.len() + 2 <= SMALL, "a usage field key is too long");
        out[f].0[0] = b',';
        let mut i = 0;
        while i < name.len() {
            out[f].0[i + 1] = name[i];
            i += 1;
        }
        out[f].0[name.len() + 1] = b'=';
        out[f].1 = name.len() + 2;
        f += 1;
    }
    out
};

/// Appends a field's key with `sep` (' ' for the first field, ',' after).
#[inline(always)]
fn push_key(buf: &mut Vec<u8>, (bytes, len): &([u8; SMALL], usize), sep: u8) {
    let at = buf.len();
    push_small(buf, bytes, *len);
    buf[at] = sep;
}

/// Two decimal digits for each value below 100.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

/// Writes `n` in decimal into `out[..digits]`, `digits` being its number
/// of digits (from [`u64::checked_ilog10`]), two digits at a time.
#[inline(always)]
fn digits_into(out: &mut [u8], mut n: u64, digits: usize) {
    let mut i = digits;
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        out[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        out[i - 2..i].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        out[i - 1] = b'0' + n as u8;
    }
}

fn count_digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// `v` in decimal, as `{i64}` formats it, then `suffix` (at most two
/// bytes), without the formatting machinery.
fn push_i64(buf: &mut Vec<u8>, v: i64, suffix: &[u8]) {
    let mut text = [0u8; SMALL];
    let sign = usize::from(v < 0);
    text[0] = b'-';
    let n = v.unsigned_abs();
    let digits = count_digits(n);
    digits_into(&mut text[sign..], n, digits);
    let len = sign + digits;
    text[len..len + suffix.len()].copy_from_slice(suffix);
    push_small(buf, &text, len + suffix.len());
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
        let k = super::points::round_half_away(x * scale);
        if k.abs() >= LIMIT || k / scale != x {
            continue;
        }
        // Sign, at most 12 integer digits, the point, at most 6 decimals.
        let mut text = [0u8; SMALL];
        let sign = usize::from(k < 0.0);
        text[0] = b'-';
        let k = (k as i64).unsigned_abs();
        let div = 10u64.pow(places);
        let (int, mut frac) = (k / div, k % div);
        let digits = count_digits(int);
        digits_into(&mut text[sign..], int, digits);
        let mut len = sign + digits;
        if frac != 0 {
            let mut decimals = places as usize;
            while frac % 10 == 0 {
                frac /= 10;
                decimals -= 1;
            }
            text[len] = b'.';
            // Leading zeros of the decimals stay as written here.
            text[len + 1..len + 1 + decimals].fill(b'0');
            digits_into(&mut text[len + 1..], frac, decimals);
            len += 1 + decimals;
        }
        push_small(buf, &text, len);
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_i64_writes_what_display_writes_then_its_suffix() {
        let mut values = vec![0, 1, 9, 10, 99, 100, 101, 999, 1000, i64::MAX, i64::MIN];
        for p in 0..19 {
            let t = 10i64.pow(p);
            values.extend([t - 1, t, t + 1, -t, -(t - 1), -(t + 1)]);
        }
        values.extend((0..2000).map(|i| i * 7919 - 5_000_000));
        for v in values {
            for suffix in [&b""[..], b"i", b"\n"] {
                let mut buf = b"x=".to_vec();
                push_i64(&mut buf, v, suffix);
                let want = format!("x={v}{}", String::from_utf8_lossy(suffix));
                assert_eq!(String::from_utf8_lossy(&buf), want);
            }
        }
    }

    #[test]
    fn field_keys_are_the_usage_fields_with_separators() {
        for ((bytes, len), name) in FIELD_KEYS.iter().zip(USAGE_FIELDS) {
            assert_eq!(&bytes[..*len], format!(",{name}=").as_bytes());
        }
    }

    #[test]
    fn a_new_tag_generation_renders_the_key_again_only_when_the_tags_changed() {
        let fp = crate::footprint::FootprintConfig::default();
        let grid = crate::footprint::GridIntensity::flat(56.0);
        let carbon = Carbon {
            footprint: &fp,
            grid: &grid,
        };
        let r = SampleRow {
            agent: 1,
            seq: 1,
            sent_ms: 1,
            ..Default::default()
        };
        let tags = |group: &str| HostTags {
            agent: "a".into(),
            group: Some(group.into()),
            ..Default::default()
        };
        let mut keys = SeriesKeys::default();
        let mut out = Lines::default();
        keys.sample(&mut out, &tags("ecoles"), 1, &r, &carbon);
        // The same generation promises the same tags: the key is reused.
        keys.sample(&mut out, &tags("mairie"), 1, &r, &carbon);
        // A new generation with the same tags: still the same key.
        keys.sample(&mut out, &tags("ecoles"), 2, &r, &carbon);
        // A new generation with new tags: rendered again.
        keys.sample(&mut out, &tags("mairie"), 3, &r, &carbon);
        let lines: Vec<String> = (0..4)
            .map(|i| String::from_utf8_lossy(out.slice(i, i + 1)).into_owned())
            .collect();
        assert!(
            lines[0].starts_with("usage,agent=a,group=ecoles "),
            "{}",
            lines[0]
        );
        assert_eq!(lines[1], lines[0]);
        assert_eq!(lines[2], lines[0]);
        assert!(
            lines[3].starts_with("usage,agent=a,group=mairie "),
            "{}",
            lines[3]
        );
    }

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
