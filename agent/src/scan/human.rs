//! Sizes and counts for people ("12.4 GB", "1,234") and the readable
//! summary of a scan, biggest wins first.

use super::report::ScanReport;
use super::rules::Category;
use std::fmt::Write;

/// Decimal units, as file managers show them: 12.4 GB, 532 kB, 17 B.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 999.95 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Thousands separated by commas: 1,234,567.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// What a category means, for the summary line.
fn describe(c: Category, cold_years: u32, download_days: u32) -> String {
    match c {
        Category::Duplicates => "of duplicates".into(),
        Category::Cold => format!("of files not modified for {cold_years} years"),
        Category::Temp => "of temporary and cache files".into(),
        Category::Trash => "in the trash".into(),
        Category::OldDownloads => format!("of downloads older than {download_days} days"),
        Category::Large => "in large files".into(),
        Category::EmptyFiles => "empty files".into(),
        Category::EmptyDirs => "empty folders".into(),
        Category::BrokenLinks => "broken links".into(),
    }
}

/// The summary printed by `sobre-agent scan`.
pub fn render(r: &ScanReport, cold_years: u32, download_days: u32) -> String {
    let mut s = String::new();
    let secs = (r.load_ms + r.walk_ms + r.hash_ms + r.index_ms) as f64 / 1000.0;
    let _ = writeln!(
        s,
        "Scanned {} ({}) in {} under {} in {secs:.1} s{}.",
        plural(r.files, "file", "files"),
        bytes(r.bytes),
        plural(r.walk.dirs, "folder", "folders"),
        plural(r.roots.len() as u64, "root", "roots"),
        if r.complete {
            ""
        } else {
            " (stopped early: partial)"
        }
    );
    let _ = writeln!(
        s,
        "\nWhat could be freed, biggest first (a file can be in several lines):"
    );
    let mut counted = Vec::new();
    for t in &r.totals {
        let Some(c) = Category::parse(t.category) else {
            continue;
        };
        if t.bytes == 0 {
            counted.push(match c {
                Category::EmptyFiles | Category::EmptyDirs | Category::BrokenLinks => {
                    format!(
                        "{} {}",
                        count(t.files),
                        describe(c, cold_years, download_days)
                    )
                }
                _ => format!(
                    "{} ({})",
                    describe(c, cold_years, download_days),
                    count(t.files)
                ),
            });
            continue;
        }
        let what = describe(c, cold_years, download_days);
        let extra = if c == Category::Duplicates {
            format!(
                " (the copies beyond the first of {})",
                plural(r.duplicates.groups, "group", "groups")
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "  {:>9} {what} in {}{extra}",
            bytes(t.bytes),
            plural(t.files, "file", "files")
        );
    }
    if !counted.is_empty() {
        let _ = writeln!(s, "  also: {}", counted.join(", "));
    }
    if r.totals.is_empty() {
        let _ = writeln!(s, "  nothing: no duplicates and no bloat found.");
    }
    if !r.duplicate_groups.is_empty() {
        let _ = writeln!(s, "\nLargest duplicates (kept copy first):");
        for g in r.duplicate_groups.iter().take(5) {
            let _ = writeln!(s, "  {} × {}", bytes(g.size), g.files.len());
            for f in &g.files {
                let _ = writeln!(s, "      {}", f.display());
            }
        }
    }
    let bad = r.unreadable();
    if bad > 0 {
        let _ = writeln!(
            s,
            "\n{} could not be read or vanished during the scan (--json lists them).",
            plural(bad, "entry", "entries")
        );
    }
    let _ = writeln!(
        s,
        "\nHashed {} ({}), reused {} from the index.",
        plural(r.hashed_files, "file", "files"),
        bytes(r.hashed_bytes),
        count(r.reused_hashes)
    );
    if let Some(e) = &r.index_error {
        let _ = writeln!(s, "Warning: {e}");
    } else {
        let _ = writeln!(
            s,
            "Review and move to the trash with: sobre-agent cleanup --dry-run"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1000), "1.0 kB");
        assert_eq!(bytes(12_400_000_000), "12.4 GB");
        assert_eq!(bytes(532_000), "532 kB");
        assert_eq!(bytes(999_999), "1.0 MB");
        assert_eq!(count(0), "0");
        assert_eq!(count(1234), "1,234");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(100), "100");
    }

    #[test]
    fn biggest_first_with_human_sizes() {
        let mut r = ScanReport {
            files: 1234,
            bytes: 5_000_000,
            complete: true,
            ..ScanReport::default()
        };
        r.duplicates.groups = 3;
        r.totals = vec![
            super::super::CategoryRow {
                category: "duplicates",
                age: "",
                files: 1234,
                bytes: 12_400_000_000,
            },
            super::super::CategoryRow {
                category: "temp",
                age: "",
                files: 2,
                bytes: 3_000,
            },
            super::super::CategoryRow {
                category: "empty_dirs",
                age: "",
                files: 7,
                bytes: 0,
            },
        ];
        let text = render(&r, 3, 90);
        assert!(
            text.contains(
                "12.4 GB of duplicates in 1,234 files (the copies beyond the first of 3 groups)"
            ),
            "{text}"
        );
        let dup = text.find("duplicates").unwrap_or(usize::MAX);
        let temp = text.find("temporary").unwrap_or(0);
        assert!(dup < temp, "{text}");
        assert!(text.contains("also: 7 empty folders"), "{text}");
    }
}
