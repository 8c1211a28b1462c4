//! `sobre-agent cleanup`: the review of what the last scan found (from its
//! local index), the move of the chosen entries to the trash with a
//! journal, and the undo of the last clean-up. Only entries on the
//! reviewed list are touched, and only if unchanged since the scan.

pub mod cli;
pub mod trash;

use crate::scan::rules::Category;
use crate::scan::{EntryKind, Hash, Index, IndexEntry, IndexError};
use crate::sys::name::{bytes, os_str};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use trash::{Trash, TrashError, Trashed, percent_decode, percent_encode, restore};

/// The journal of the last clean-up, in the index directory.
pub const JOURNAL: &str = "cleanup.journal";
const JOURNAL_HEADER: &str = "sobre-cleanup-journal 1";

#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("no scan to review in {0}: run `sobre-agent scan` first")]
    NoScan(PathBuf),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("cannot {op} the clean-up journal {path}: {err}")]
    Journal {
        path: PathBuf,
        op: &'static str,
        err: io::Error,
    },
    #[error("{0}")]
    Selection(String),
}

/// Which copy of each duplicate group stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Keep {
    /// The oldest (by modification time): usually the original.
    #[value(name = "keep-oldest", alias = "oldest")]
    Oldest,
    /// The newest.
    #[value(name = "keep-newest", alias = "newest")]
    Newest,
}

/// What the person chose to clear.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub duplicates: Option<Keep>,
    pub categories: Vec<Category>,
    /// Only entries under these folders (empty: all).
    pub under: Vec<PathBuf>,
}

impl Selection {
    pub fn is_empty(&self) -> bool {
        self.duplicates.is_none() && self.categories.is_empty()
    }
}

/// One entry of the reviewed list, with what it was like at the scan.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub category: &'static str,
    #[serde(serialize_with = "lossy")]
    pub path: PathBuf,
    pub size: u64,
    #[serde(skip)]
    pub entry: IndexEntry,
    /// For a duplicate: the copy that stays (checked before moving).
    #[serde(skip)]
    pub keep: Option<IndexEntry>,
}

fn lossy<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string_lossy())
}

/// Loads the index in `dir` (the last scan).
pub fn last_scan(dir: &Path) -> Result<Index, CleanupError> {
    crate::scan::index::load(dir)?.ok_or_else(|| CleanupError::NoScan(dir.to_owned()))
}

/// The reviewed list: the entries of the last scan's roots that `sel`
/// picks, largest first. A copy kept for a duplicate group is never on it,
/// whatever its other categories.
pub fn review(idx: &Index, sel: &Selection) -> Vec<Candidate> {
    let in_scope = |p: &Path| {
        idx.roots.iter().any(|r| p.starts_with(r))
            && (sel.under.is_empty() || sel.under.iter().any(|u| p.starts_with(u)))
    };
    let entries: Vec<&IndexEntry> = idx.entries.iter().filter(|e| in_scope(&e.path)).collect();
    let mut out = Vec::new();
    let mut kept: HashSet<&Path> = HashSet::new();
    // Groups are formed over the whole scan, so a copy outside `under`
    // can be the one kept.
    let mut groups: BTreeMap<(u64, Hash), Vec<&IndexEntry>> = BTreeMap::new();
    for e in idx
        .entries
        .iter()
        .filter(|e| idx.roots.iter().any(|r| e.path.starts_with(r)))
    {
        if let (EntryKind::File, Some(h), true) = (e.kind, e.full, e.size > 0) {
            groups.entry((e.size, h)).or_default().push(e);
        }
    }
    for g in groups.values_mut() {
        g.sort_by(|a, b| (a.dev, a.ino, &a.path).cmp(&(b.dev, b.ino, &b.path)));
        g.dedup_by_key(|e| (e.dev, e.ino));
        if g.len() < 2 {
            continue;
        }
        let keep = match sel.duplicates {
            Some(Keep::Newest) => g
                .iter()
                .max_by(|a, b| (a.mtime_ns, &b.path).cmp(&(b.mtime_ns, &a.path))),
            _ => g
                .iter()
                .min_by(|a, b| (a.mtime_ns, &a.path).cmp(&(b.mtime_ns, &b.path))),
        };
        let Some(&keep) = keep else { continue };
        kept.insert(&keep.path);
        if sel.duplicates.is_none() {
            continue;
        }
        for e in g
            .iter()
            .filter(|e| e.path != keep.path && in_scope(&e.path))
        {
            out.push(Candidate {
                category: Category::Duplicates.name(),
                path: e.path.clone(),
                size: e.size,
                entry: (*e).clone(),
                keep: Some(keep.clone()),
            });
        }
    }
    let mut listed: HashSet<PathBuf> = out.iter().map(|c| c.path.clone()).collect();
    for c in &sel.categories {
        for e in entries.iter().filter(|e| e.cats & c.bit() != 0) {
            if kept.contains(e.path.as_path()) || !listed.insert(e.path.clone()) {
                continue;
            }
            out.push(Candidate {
                category: c.name(),
                path: e.path.clone(),
                size: e.size,
                entry: (*e).clone(),
                keep: None,
            });
        }
    }
    // Largest first; folders after files (a folder may empty only once its
    // contents have gone).
    out.sort_by(|a, b| {
        (
            a.entry.kind == EntryKind::EmptyDir,
            std::cmp::Reverse(a.size),
            &a.path,
        )
            .cmp(&(
                b.entry.kind == EntryKind::EmptyDir,
                std::cmp::Reverse(b.size),
                &b.path,
            ))
    });
    out
}

/// Whether the entry at `e.path` is still what the scan saw.
fn unchanged(e: &IndexEntry) -> Result<(), String> {
    let md = fs::symlink_metadata(&e.path)
        .map_err(|err| format!("gone or unreadable since the scan ({err})"))?;
    let id = crate::sys::ident(&e.path, &md)
        .map_err(|err| format!("gone or unreadable since the scan ({err})"))?;
    let kind_ok = match e.kind {
        EntryKind::File => md.is_file() && md.len() == e.size,
        EntryKind::EmptyDir => md.is_dir(),
        EntryKind::BrokenLink => md.file_type().is_symlink(),
    };
    if !kind_ok || id.dev != e.dev || id.ino != e.ino || id.mtime_ns != e.mtime_ns {
        return Err("changed since the scan".into());
    }
    if e.kind == EntryKind::EmptyDir
        && fs::read_dir(&e.path)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err("no longer empty".into());
    }
    Ok(())
}

/// What a clean-up did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub dry_run: bool,
    pub moved: Vec<Candidate>,
    pub moved_bytes: u64,
    /// Entries left where they are, and why.
    pub skipped: Vec<(Candidate, String)>,
}

/// Moves the candidates to `trash`, each after checking that it (and the
/// copy its group keeps) is unchanged since the scan; records every move
/// in the journal in `journal_dir` first thing after it happens.
pub fn apply(
    cands: Vec<Candidate>,
    trash: &Trash,
    journal_dir: &Path,
    dry_run: bool,
) -> Result<Outcome, CleanupError> {
    let mut out = Outcome {
        dry_run,
        ..Outcome::default()
    };
    // Created at the first move: a clean-up that moves nothing leaves the
    // previous one undoable.
    let mut journal: Option<Journal> = None;
    for c in cands {
        let check = unchanged(&c.entry).and_then(|()| match &c.keep {
            Some(k) => {
                unchanged(k).map_err(|why| format!("the copy kept, {}, is {why}", k.path.display()))
            }
            None => Ok(()),
        });
        if let Err(why) = check {
            out.skipped.push((c, why));
            continue;
        }
        if !dry_run {
            let j = match journal.as_mut() {
                Some(j) => j,
                None => journal.insert(Journal::create(journal_dir)?),
            };
            match trash.put(&c.path) {
                Ok(t) => j.record(&t)?,
                Err(e) => {
                    out.skipped.push((c, e.to_string()));
                    continue;
                }
            }
        }
        out.moved_bytes += c.size;
        out.moved.push(c);
    }
    if let Some(j) = journal {
        j.finish()?;
    }
    tracing::info!(
        moved = out.moved.len(),
        moved_bytes = out.moved_bytes,
        skipped = out.skipped.len(),
        dry_run,
        "clean-up done"
    );
    Ok(out)
}

struct Journal {
    f: File,
    path: PathBuf,
}

impl Journal {
    fn err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> CleanupError + 'a {
        move |err| CleanupError::Journal {
            path: path.to_owned(),
            op,
            err,
        }
    }

    /// A new journal; the previous clean-up can no longer be undone here
    /// (its files stay in the trash, restorable from the desktop).
    fn create(dir: &Path) -> Result<Journal, CleanupError> {
        let path = dir.join(JOURNAL);
        sobre_base::files::create_private_dir(dir)
            .map_err(Journal::err(dir, "create the folder of"))?;
        let mut f =
            sobre_base::files::create_private(&path).map_err(Journal::err(&path, "create"))?;
        writeln!(f, "{JOURNAL_HEADER}").map_err(Journal::err(&path, "write"))?;
        Ok(Journal { f, path })
    }

    fn record(&mut self, t: &Trashed) -> Result<(), CleanupError> {
        let enc = |p: &Path| percent_encode(bytes(p.as_os_str()));
        writeln!(
            self.f,
            "{}\t{}\t{}",
            enc(&t.original),
            enc(&t.file),
            enc(&t.info)
        )
        .and_then(|_| self.f.sync_data())
        .map_err(Journal::err(&self.path, "write"))
    }

    fn finish(self) -> Result<(), CleanupError> {
        self.f.sync_all().map_err(Journal::err(&self.path, "flush"))
    }
}

/// What an undo put back, and what it could not.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Undone {
    #[serde(serialize_with = "lossy_all")]
    pub restored: Vec<PathBuf>,
    pub failed: Vec<String>,
}

fn lossy_all<S: serde::Serializer>(ps: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ps.iter().map(|p| p.to_string_lossy()))
}

/// Puts back everything the last clean-up moved, last moved first. The
/// journal is retired once everything is back; what failed stays in it
/// for another try.
pub fn undo(journal_dir: &Path) -> Result<Undone, CleanupError> {
    let path = journal_dir.join(JOURNAL);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Undone::default()),
        Err(e) => return Err(Journal::err(&path, "open")(e)),
    };
    let mut moves = Vec::new();
    for (n, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(Journal::err(&path, "read"))?;
        if n == 0 {
            if line != JOURNAL_HEADER {
                return Err(CleanupError::Selection(format!(
                    "{} is not a clean-up journal",
                    path.display()
                )));
            }
            continue;
        }
        let parts: Option<Vec<PathBuf>> = line
            .split('\t')
            .map(|p| percent_decode(p).map(|b| PathBuf::from(&*os_str(&b))))
            .collect();
        match parts.as_deref() {
            Some([original, file, info]) => moves.push(Trashed {
                original: original.clone(),
                file: file.clone(),
                info: info.clone(),
            }),
            // A line cut by a crash: its move may not have happened.
            _ => tracing::warn!(line = n + 1, "clean-up journal: unreadable line skipped"),
        }
    }
    let mut done = Undone::default();
    let mut left = Vec::new();
    for t in moves.into_iter().rev() {
        match restore(&t) {
            Ok(()) => done.restored.push(t.original),
            Err(e) => {
                done.failed.push(e.to_string());
                if !matches!(e, TrashError::Io { ref err, .. } if err.kind() == io::ErrorKind::NotFound)
                {
                    left.push(t);
                }
            }
        }
    }
    if left.is_empty() {
        let retired = journal_dir.join(format!("{JOURNAL}.undone"));
        fs::rename(&path, &retired).map_err(Journal::err(&path, "retire"))?;
    } else {
        let mut j = Journal::create(journal_dir)?;
        for t in left.iter().rev() {
            j.record(t)?;
        }
        j.finish()?;
    }
    Ok(done)
}

#[cfg(all(test, unix))]
mod tests;
