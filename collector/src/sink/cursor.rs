//! The sink's position in the store: the rowid of the last sample the
//! server accepted (2xx) or refused for good (4xx, counted as dropped),
//! with the target it was sent to. A small text file in `data_dir`,
//! replaced atomically (temp file, fsync, rename) after each batch. Not a
//! table: the store's schema is not the sink's to migrate.

use std::path::{Path, PathBuf};

pub const FILE: &str = "sink.cursor";

#[derive(Debug)]
pub struct Cursor {
    path: PathBuf,
    /// Which server/database the rowid is about: another target starts
    /// from the beginning of the store.
    target: String,
    pub rowid: i64,
}

impl Cursor {
    /// Loads the cursor for `target`; a missing, unreadable or other
    /// target's file starts at 0 (the whole store is sent; points carry
    /// their own timestamps, so what the server already has is
    /// overwritten with the same values, not doubled).
    pub fn load(data_dir: &Path, target: &str) -> Cursor {
        let path = data_dir.join(FILE);
        let mut rowid = 0;
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse(&text) {
                Some((t, r)) if t == target => rowid = r,
                Some((t, _)) => tracing::info!(
                    previous = %t,
                    now = %target,
                    "sink target changed; sending the store's samples from the start"
                ),
                None => tracing::warn!(
                    path = %path.display(),
                    "unreadable sink cursor; sending the store's samples from the start"
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot read the sink cursor; sending the store's samples from the start"
            ),
        }
        Cursor {
            path,
            target: target.to_owned(),
            rowid,
        }
    }

    /// A task that saves the latest rowid sent to it, one write at a time
    /// on the blocking pool, skipping values overtaken meanwhile. When the
    /// sender is dropped it saves the last value and returns it.
    pub fn saver(
        mut self,
    ) -> (
        tokio::sync::watch::Sender<i64>,
        tokio::task::JoinHandle<i64>,
    ) {
        let (tx, mut rx) = tokio::sync::watch::channel(self.rowid);
        let task = tokio::spawn(async move {
            loop {
                let open = rx.changed().await.is_ok();
                let rowid = *rx.borrow_and_update();
                if rowid != self.rowid {
                    let (me, res) = match tokio::task::spawn_blocking(move || {
                        let r = self.advance(rowid);
                        (self, r)
                    })
                    .await
                    {
                        Ok(v) => v,
                        Err(_) => return rowid,
                    };
                    self = me;
                    if let Err(e) = res {
                        // After a restart the batches since the last saved
                        // rowid are sent again (the same points).
                        tracing::error!(error = %e, "cannot save the sink cursor in data_dir");
                    }
                }
                if !open {
                    return self.rowid;
                }
            }
        });
        (tx, task)
    }

    /// Moves the cursor and writes it durably before returning.
    pub fn advance(&mut self, rowid: i64) -> std::io::Result<()> {
        self.rowid = rowid;
        let text = format!("target {}\nrowid {}\n", self.target, rowid);
        sobre_base::files::write_private_atomic(&self.path, text.as_bytes())
    }
}

fn parse(text: &str) -> Option<(String, i64)> {
    let mut target = None;
    let mut rowid = None;
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("target ") {
            target = Some(t.to_owned());
        } else if let Some(r) = line.strip_prefix("rowid ") {
            rowid = r.trim().parse().ok();
        }
    }
    Some((target?, rowid?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_saver_keeps_the_last_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (tx, task) = Cursor::load(dir.path(), "t").saver();
        for r in 1..=100 {
            tx.send(r).expect("send");
        }
        drop(tx);
        assert_eq!(task.await.expect("saver"), 100);
        assert_eq!(Cursor::load(dir.path(), "t").rowid, 100);
    }

    #[test]
    fn survives_restart_and_resets_on_new_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Cursor::load(dir.path(), "v1 http://a/ db=x");
        assert_eq!(c.rowid, 0);
        c.advance(42).expect("advance");
        assert_eq!(Cursor::load(dir.path(), "v1 http://a/ db=x").rowid, 42);
        assert_eq!(Cursor::load(dir.path(), "v1 http://b/ db=x").rowid, 0);
        std::fs::write(dir.path().join(FILE), "garbage").expect("write");
        assert_eq!(Cursor::load(dir.path(), "v1 http://a/ db=x").rowid, 0);
        assert!(!dir.path().join("sink.cursor.tmp").exists());
    }
}
