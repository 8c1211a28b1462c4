//! What makes a file bloat: category and age-bucket names (exactly as in
//! the proto), name patterns, and the flags a directory passes to what it
//! holds (cache, trash, downloads).

use crate::sys::name::bytes;
use std::ffi::OsStr;
use std::path::Path;

/// One year for age buckets and `cold_years`: 365.25 days.
pub const YEAR_NS: i64 = 31_557_600 * 1_000_000_000;
/// One day in nanoseconds.
pub const DAY_NS: i64 = 86_400 * 1_000_000_000;

/// Categories of the summary. A file may be in several (a cold large
/// duplicate counts in three): never add categories together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Duplicates,
    Cold,
    Temp,
    Trash,
    OldDownloads,
    Large,
    EmptyFiles,
    EmptyDirs,
    BrokenLinks,
}

impl Category {
    pub const ALL: [Category; 9] = [
        Category::Duplicates,
        Category::Cold,
        Category::Temp,
        Category::Trash,
        Category::OldDownloads,
        Category::Large,
        Category::EmptyFiles,
        Category::EmptyDirs,
        Category::BrokenLinks,
    ];

    /// The name used in `CategoryTotal.category`.
    pub fn name(self) -> &'static str {
        match self {
            Category::Duplicates => "duplicates",
            Category::Cold => "cold",
            Category::Temp => "temp",
            Category::Trash => "trash",
            Category::OldDownloads => "old_downloads",
            Category::Large => "large",
            Category::EmptyFiles => "empty_files",
            Category::EmptyDirs => "empty_dirs",
            Category::BrokenLinks => "broken_links",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == s)
    }

    /// The bit of this category in [`Cats`].
    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A set of categories as bits (see [`Category::bit`]), as stored in the
/// index.
pub type Cats = u16;

/// Age buckets by modification time, as in `CategoryTotal.age`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Age {
    UnderOne,
    OneToTwo,
    TwoToFive,
    OverFive,
}

impl Age {
    pub const ALL: [Age; 4] = [Age::UnderOne, Age::OneToTwo, Age::TwoToFive, Age::OverFive];

    pub fn name(self) -> &'static str {
        match self {
            Age::UnderOne => "<1y",
            Age::OneToTwo => "1-2y",
            Age::TwoToFive => "2-5y",
            Age::OverFive => ">5y",
        }
    }

    /// The bucket of a file modified at `mtime_ns` seen at `now_ns` (both
    /// since the epoch). A file from the future is "<1y".
    pub fn of(mtime_ns: i64, now_ns: i64) -> Age {
        let age = now_ns.saturating_sub(mtime_ns);
        if age < YEAR_NS {
            Age::UnderOne
        } else if age < 2 * YEAR_NS {
            Age::OneToTwo
        } else if age < 5 * YEAR_NS {
            Age::TwoToFive
        } else {
            Age::OverFive
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Flags a directory hands down to everything below it.
pub mod dirflag {
    /// Below a cache directory (`.cache`, thumbnails...): temp.
    pub const CACHE: u8 = 1;
    /// Below a trash directory.
    pub const TRASH: u8 = 2;
    /// Below a downloads directory.
    pub const DOWNLOADS: u8 = 4;
}

/// The classification settings, compiled once per scan.
#[derive(Debug, Clone)]
pub struct Rules {
    pub cold_years: u32,
    pub old_download_days: u32,
    pub large_min_bytes: u64,
    pub temp_patterns: Vec<Glob>,
    pub cache_dirs: Vec<Glob>,
    pub download_dirs: Vec<Glob>,
    pub exclude_names: Vec<Glob>,
    pub exclude_paths: Vec<std::path::PathBuf>,
}

impl Rules {
    /// The flags a directory named `name` at `path` adds for its contents.
    pub fn dir_flags(&self, name: &OsStr, path: &Path) -> u8 {
        let mut f = 0;
        if matches_any(&self.cache_dirs, name) {
            f |= dirflag::CACHE;
        }
        if matches_any(&self.download_dirs, name) {
            f |= dirflag::DOWNLOADS;
        }
        if is_trash_dir(name, path) {
            f |= dirflag::TRASH;
        }
        f
    }

    /// Whether an entry is excluded: its name matches a name pattern, or
    /// its path is (under) an excluded absolute path.
    pub fn excluded(&self, name: &OsStr, path: &Path) -> bool {
        self.excluded_name(name) || self.excluded_path(path)
    }

    pub fn excluded_name(&self, name: &OsStr) -> bool {
        matches_any(&self.exclude_names, name)
    }

    pub fn excluded_path(&self, path: &Path) -> bool {
        self.exclude_paths.iter().any(|p| path.starts_with(p))
    }

    /// Categories of a regular file that do not need its content: every
    /// category but duplicates.
    pub fn file_cats(
        &self,
        name: &OsStr,
        dir_flags: u8,
        size: u64,
        mtime_ns: i64,
        now_ns: i64,
    ) -> Cats {
        let mut c = 0;
        let age = now_ns.saturating_sub(mtime_ns);
        if dir_flags & dirflag::CACHE != 0 || matches_any(&self.temp_patterns, name) {
            c |= Category::Temp.bit();
        }
        if dir_flags & dirflag::TRASH != 0 {
            c |= Category::Trash.bit();
        }
        if dir_flags & dirflag::DOWNLOADS != 0
            && age >= i64::from(self.old_download_days).saturating_mul(DAY_NS)
        {
            c |= Category::OldDownloads.bit();
        }
        if age >= i64::from(self.cold_years).saturating_mul(YEAR_NS) {
            c |= Category::Cold.bit();
        }
        if size >= self.large_min_bytes {
            c |= Category::Large.bit();
        }
        if size == 0 {
            c |= Category::EmptyFiles.bit();
        }
        c
    }
}

/// `~/.local/share/Trash` (the freedesktop home trash), a per-volume
/// `.Trash`/`.Trash-<uid>` directory, or Windows' Recycle Bin
/// (`$Recycle.Bin` at the top of each volume).
fn is_trash_dir(name: &OsStr, path: &Path) -> bool {
    let n = bytes(name);
    if n == b".Trash" || n.starts_with(b".Trash-") || n.eq_ignore_ascii_case(b"$Recycle.Bin") {
        return true;
    }
    n == b"Trash" && path.parent().is_some_and(|p| p.ends_with(".local/share"))
}

fn matches_any(globs: &[Glob], name: &OsStr) -> bool {
    globs.iter().any(|g| g.matches(bytes(name)))
}

/// A shell-like pattern on one file name: `*` any run of bytes, `?` one
/// byte, everything else literal (case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    p: Vec<u8>,
    /// Where its one `*` is, when it has at most one and no `?` (every
    /// default pattern): then it is a prefix and a suffix, checked without
    /// a loop over the name (this runs for every file).
    star: Option<Star>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Star {
    None,
    At(usize),
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let p = pattern.as_bytes().to_vec();
        let stars: Vec<usize> = (0..p.len()).filter(|&i| p[i] == b'*').collect();
        let star = match (stars.as_slice(), p.contains(&b'?')) {
            (_, true) => None,
            ([], false) => Some(Star::None),
            ([at], false) => Some(Star::At(*at)),
            _ => None,
        };
        Glob { p, star }
    }

    pub fn matches(&self, name: &[u8]) -> bool {
        let p = &self.p;
        match self.star {
            Some(Star::None) => name == p.as_slice(),
            Some(Star::At(at)) => {
                // Byte loops, not `starts_with`: patterns are a few bytes,
                // and a call to `memcmp` per pattern per file costs more.
                let (pre, suf) = (&p[..at], &p[at + 1..]);
                name.len() >= pre.len() + suf.len()
                    && suf.iter().rev().zip(name.iter().rev()).all(|(a, b)| a == b)
                    && pre.iter().zip(name).all(|(a, b)| a == b)
            }
            None => self.matches_any_shape(name),
        }
    }

    /// Iterative matching with one backtrack point: linear in practice, no
    /// recursion whatever the pattern.
    fn matches_any_shape(&self, name: &[u8]) -> bool {
        let p = &self.p;
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < name.len() {
            if pi < p.len() && (p[pi] == b'?' || p[pi] == name[ni]) {
                pi += 1;
                ni += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ni));
                pi += 1;
            } else if let Some((sp, sn)) = star {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn rules() -> Rules {
        Rules {
            cold_years: 3,
            old_download_days: 90,
            large_min_bytes: 100,
            temp_patterns: ["~$*", "*.tmp", "*.bak"].map(Glob::new).to_vec(),
            cache_dirs: [".cache"].map(Glob::new).to_vec(),
            download_dirs: ["Downloads", "Téléchargements"].map(Glob::new).to_vec(),
            exclude_names: [".git"].map(Glob::new).to_vec(),
            exclude_paths: vec![PathBuf::from("/home/a/skip")],
        }
    }

    #[test]
    fn globs() {
        let g = Glob::new("~$*");
        assert!(g.matches(b"~$rapport.docx"));
        assert!(!g.matches(b"rapport.docx"));
        assert!(Glob::new("*.tmp").matches(b"a.b.tmp"));
        assert!(!Glob::new("*.tmp").matches(b"a.tmp.x"));
        assert!(Glob::new("a*b*c").matches(b"aXXbYYc"));
        assert!(!Glob::new("a*b*c").matches(b"aXXbYY"));
        assert!(Glob::new("?").matches(b"\xff"), "bytes, not UTF-8");
        assert!(Glob::new("*").matches(b""));
        // The prefix-and-suffix shortcut agrees with the general matcher,
        // overlaps included ("ab*ba" is not "aba").
        let names: [&[u8]; 9] = [
            b"",
            b"a",
            b"ab",
            b"aba",
            b"abba",
            b"ab.tmp",
            b".~lock.x#",
            b"x~",
            b"Thumbs.db",
        ];
        for pat in [
            "ab*ba",
            "*.tmp",
            ".~lock.*#",
            "*~",
            "Thumbs.db",
            "*",
            "ab*",
            "a",
            "",
        ] {
            let g = Glob::new(pat);
            assert!(g.star.is_some(), "{pat}");
            for n in names {
                assert_eq!(g.matches(n), g.matches_any_shape(n), "{pat} on {n:?}");
            }
        }
    }

    #[test]
    fn ages_and_names() {
        let now = 10 * YEAR_NS;
        assert_eq!(Age::of(now - 1, now).name(), "<1y");
        assert_eq!(Age::of(now - YEAR_NS, now).name(), "1-2y");
        assert_eq!(Age::of(now - 3 * YEAR_NS, now).name(), "2-5y");
        assert_eq!(Age::of(now - 5 * YEAR_NS, now).name(), ">5y");
        assert_eq!(Age::of(now + DAY_NS, now).name(), "<1y");
        let names: Vec<_> = Category::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(
            names.join("|"),
            "duplicates|cold|temp|trash|old_downloads|large|empty_files|empty_dirs|broken_links"
        );
        assert_eq!(
            Category::parse("old_downloads"),
            Some(Category::OldDownloads)
        );
    }

    #[test]
    fn file_categories() {
        let r = rules();
        let now = 10 * YEAR_NS;
        let name = OsStr::new("~$x.docx");
        let c = r.file_cats(name, 0, 10, now - 4 * YEAR_NS, now);
        assert_eq!(c, Category::Temp.bit() | Category::Cold.bit());
        let c = r.file_cats(
            OsStr::new("a"),
            dirflag::DOWNLOADS,
            0,
            now - 91 * DAY_NS,
            now,
        );
        assert_eq!(c, Category::OldDownloads.bit() | Category::EmptyFiles.bit());
        let c = r.file_cats(
            OsStr::new("a"),
            dirflag::DOWNLOADS,
            100,
            now - 89 * DAY_NS,
            now,
        );
        assert_eq!(c, Category::Large.bit());
        let c = r.file_cats(
            OsStr::new("a"),
            dirflag::TRASH | dirflag::CACHE,
            1,
            now,
            now,
        );
        assert_eq!(c, Category::Trash.bit() | Category::Temp.bit());
    }

    #[test]
    fn directory_flags_and_excludes() {
        let r = rules();
        let f = |p: &str| {
            let p = Path::new(p);
            r.dir_flags(p.file_name().unwrap_or_default(), p)
        };
        assert_eq!(f("/home/a/.local/share/Trash"), dirflag::TRASH);
        assert_eq!(f("/srv/.Trash-1000"), dirflag::TRASH);
        assert_eq!(f("/home/a/Trash"), 0, "only the freedesktop one");
        assert_eq!(f("/home/a/Téléchargements"), dirflag::DOWNLOADS);
        assert_eq!(f("/home/a/.cache"), dirflag::CACHE);
        assert!(r.excluded(OsStr::new(".git"), Path::new("/x/.git")));
        assert!(r.excluded(OsStr::new("b"), Path::new("/home/a/skip/b")));
        assert!(!r.excluded(OsStr::new("skipper"), Path::new("/home/a/skipper")));
    }
}
