//! Text for people: HTML escaping, URL encoding, and numbers, bytes,
//! energy, mass and dates as French or English readers write them. Shared
//! by the console pages and the printable campaign report.

use crate::nudge::text::num;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Percent-encodes a URL path segment or query value (everything but
/// RFC 3986's unreserved characters).
pub fn urlenc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn lang(fr: bool) -> &'static str {
    if fr { "fr" } else { "en" }
}

/// Bytes in decimal units (what file managers show), "Go" in French.
pub fn bytes(n: u64, fr: bool) -> String {
    let units: [&str; 5] = if fr {
        ["o", "ko", "Mo", "Go", "To"]
    } else {
        ["B", "kB", "MB", "GB", "TB"]
    };
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} {}", units[0])
    } else {
        format!("{} {}", num(v, lang(fr)), units[u])
    }
}

/// A count with thousands separated (narrow no-break space in French).
pub fn count(n: u64, fr: bool) -> String {
    let s = n.to_string();
    let sep = if fr { '\u{202f}' } else { ',' };
    let mut o = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            o.push(sep);
        }
        o.push(c);
    }
    o
}

/// "2026-12-01 09:00 UTC".
pub fn date(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = sobre_base::civil::from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        sod / 3600,
        (sod % 3600) / 60
    )
}

/// Kilograms, or grams below one kilogram.
pub fn kg(v: f64, fr: bool) -> String {
    if v >= 1.0 {
        format!("{} kg", num(v, lang(fr)))
    } else {
        format!("{} g", num(v * 1000.0, lang(fr)))
    }
}

/// Energy in kWh, or Wh below one kWh.
pub fn kwh(v: f64, fr: bool) -> String {
    if v >= 1.0 {
        format!("{} kWh", num(v, lang(fr)))
    } else {
        format!("{} Wh", num(v * 1000.0, lang(fr)))
    }
}

/// Power in watts.
pub fn watts(v: f64, fr: bool) -> String {
    format!("{} W", num(v, lang(fr)))
}

/// A number with one decimal below 10, none above, in the reader's style.
pub fn dec(v: f64, fr: bool) -> String {
    num(v, lang(fr))
}

/// A share (0..1) as a whole percentage.
pub fn pct(share: f64, fr: bool) -> String {
    let p = (share * 100.0).round();
    if fr {
        format!("{p:.0}\u{202f}%")
    } else {
        format!("{p:.0}%")
    }
}

/// How long ago `then_ms` was, in the largest unit that fits.
pub fn ago(then_ms: i64, now_ms: i64, fr: bool) -> String {
    let s = (now_ms - then_ms).max(0) / 1000;
    let (n, fr_u, en_u) = match s {
        0..60 => (s, "s", "s"),
        60..3600 => (s / 60, "min", "min"),
        3600..86_400 => (s / 3600, "h", "h"),
        _ => (s / 86_400, "j", "d"),
    };
    if fr {
        format!("il y a {n} {fr_u}")
    } else {
        format!("{n} {en_u} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
        assert_eq!(date(1_735_689_600_000), "2025-01-01 00:00 UTC");
        assert_eq!(date(1_709_210_096_000), "2024-02-29 12:34 UTC");
    }

    #[test]
    fn bytes_and_counts_read_naturally_in_both_languages() {
        assert_eq!(bytes(12_400_000_000, true), "12 Go");
        assert_eq!(bytes(1_500_000, false), "1.5 MB");
        assert_eq!(bytes(999, false), "999 B");
        assert_eq!(count(1_234_567, false), "1,234,567");
        assert_eq!(count(1_234, true), "1\u{202f}234");
    }

    #[test]
    fn energy_mass_power_and_shares_have_their_units() {
        assert_eq!(kwh(0.25, true), "250 Wh");
        assert_eq!(kwh(12.34, false), "12 kWh");
        assert_eq!(kg(0.0123, false), "12 g");
        assert_eq!(kg(3.26, true), "3,3 kg");
        assert_eq!(watts(7.5, true), "7,5 W");
        assert_eq!(pct(0.256, false), "26%");
        assert_eq!(pct(1.0, true), "100\u{202f}%");
    }

    #[test]
    fn ago_picks_the_largest_unit() {
        assert_eq!(ago(0, 5_000, false), "5 s ago");
        assert_eq!(ago(0, 7_200_000, true), "il y a 2 h");
        assert_eq!(ago(0, 3 * 86_400_000, false), "3 d ago");
        assert_eq!(ago(10, 0, false), "0 s ago", "a clock ahead is now");
    }

    #[test]
    fn text_and_urls_are_escaped() {
        assert_eq!(
            esc("<b>\"R&D\"</b>"),
            "&lt;b&gt;&quot;R&amp;D&quot;&lt;/b&gt;"
        );
        assert_eq!(urlenc("ws a/é&b"), "ws%20a%2F%C3%A9%26b");
        assert_eq!(urlenc("cud-2027_x.y~"), "cud-2027_x.y~");
    }
}
