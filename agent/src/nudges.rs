//! Nudges received from the collector, kept in a small local file for the
//! person at the machine (`sobre-agent nudges`), each acknowledged to the
//! collector once kept.

use serde::{Deserialize, Serialize};
use sobre_proto::v1::Nudge;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// A nudge as kept on disk: one JSON object per line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeptNudge {
    #[serde(flatten)]
    pub nudge: Nudge,
    pub received_at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum NudgeError {
    #[error(
        "cannot keep nudges in {path}: {source}; check nudges_file in the agent config and its folder's permissions"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
pub struct NudgeBox {
    path: PathBuf,
}

impl NudgeBox {
    pub fn new(path: PathBuf) -> Self {
        NudgeBox { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: std::io::Error) -> NudgeError {
        NudgeError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Keeps `n` unless a nudge with its id is already kept; true if new.
    pub fn add(&self, n: &Nudge, now_ms: i64) -> Result<bool, NudgeError> {
        if self.list()?.iter().any(|k| k.nudge.id == n.id) {
            return Ok(false);
        }
        // After a torn last line, start on a fresh one.
        let torn = std::fs::read(&self.path)
            .map(|b| b.last().is_some_and(|c| *c != b'\n'))
            .unwrap_or(false);
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            sobre_base::files::ensure_private_dir(dir).map_err(|e| self.err(e))?;
        }
        let line = serde_json::to_string(&KeptNudge {
            nudge: n.clone(),
            received_at_ms: now_ms,
        })
        .map_err(|e| self.err(std::io::Error::other(e)))?;
        let mut f = sobre_base::files::private_options()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.err(e))?;
        sobre_base::files::tighten_file(&self.path).map_err(|e| self.err(e))?;
        // One write of one line: a crash leaves at most a torn last line,
        // which `list` skips.
        let text = if torn {
            format!("\n{line}\n")
        } else {
            format!("{line}\n")
        };
        f.write_all(text.as_bytes()).map_err(|e| self.err(e))?;
        Ok(true)
    }

    /// Kept nudges, oldest first; unreadable lines are skipped.
    pub fn list(&self) -> Result<Vec<KeptNudge>, NudgeError> {
        let f = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        Ok(std::io::BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nudge(id: &str) -> Nudge {
        Nudge {
            id: id.into(),
            kind: "left_on".into(),
            title: "Votre ordinateur reste allumé".into(),
            body: "80 heures".into(),
            action: "Éteignez-le".into(),
            created_at_ms: 5,
            lang: "fr".into(),
        }
    }

    #[test]
    fn keeps_each_nudge_once_and_survives_a_torn_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = NudgeBox::new(dir.path().join("sub/nudges.jsonl"));
        assert!(b.list().expect("empty").is_empty());
        assert!(b.add(&nudge("a"), 10).expect("add"));
        assert!(!b.add(&nudge("a"), 11).expect("again"), "same id kept once");
        assert!(b.add(&nudge("b"), 12).expect("add"));
        std::fs::OpenOptions::new()
            .append(true)
            .open(b.path())
            .and_then(|mut f| f.write_all(b"{\"id\":\"c\",\"tit"))
            .expect("tear");
        assert!(b.add(&nudge("d"), 13).expect("after a torn line"));
        let kept = b.list().expect("list");
        assert_eq!(
            kept.iter().map(|k| k.nudge.id.as_str()).collect::<Vec<_>>(),
            ["a", "b", "d"]
        );
        assert_eq!(kept[0].received_at_ms, 10);
        assert_eq!(kept[0].nudge.title, "Votre ordinateur reste allumé");
    }
}
