//! Test helpers: build fake `/proc`, `/sys`, `/etc`, `/run`, `/dev` trees.

use std::path::Path;

use super::Roots;
use tempfile::TempDir;

/// A fixture tree; dropped with the temporary directory.
pub(crate) struct Tree {
    pub dir: TempDir,
    pub roots: Roots,
}

impl Tree {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("create fixture tempdir");
        let roots = Roots::under(dir.path());
        Self { dir, roots }
    }

    /// Writes `contents` to `rel` (relative to the fixture base, e.g.
    /// `proc/stat`), creating parent directories.
    pub(crate) fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        write(&self.dir.path().join(rel), contents);
    }

    /// Creates the directory `rel` (and its parents).
    pub(crate) fn mkdir(&self, rel: &str) {
        std::fs::create_dir_all(self.dir.path().join(rel)).expect("create fixture dir");
    }
}

/// Writes `contents` to `path`, creating parent directories.
pub(crate) fn write(path: &Path, contents: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create fixture parent dir");
    }
    std::fs::write(path, contents).expect("write fixture file");
}
