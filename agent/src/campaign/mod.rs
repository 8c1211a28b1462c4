//! Clean Up Day campaigns on the agent: the collector's START takes a
//! baseline of the storage index, the agent rescans and counts deletions
//! against it on a schedule (`count`), and END (or the end date) sends a
//! final count. The book of campaigns (`state.json`) and each baseline
//! (`<id>/files.idx`, a copy of the index) live under
//! `storage.index_dir/campaigns` and never leave the machine; only counts
//! do, as `CampaignProgress`.

pub mod count;

use crate::scan::{self, ScanConfig};
use serde::{Deserialize, Serialize};
use sobre_proto::v1::{
    CampaignAction, CampaignCommand, CampaignProgress, StorageSummary, envelope::Body,
};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error(
        "cannot {op} {path}: {err}; the storage index directory must be writable by the agent's user"
    )]
    Io {
        op: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error("campaign book {path} is damaged ({err}); it was set aside as state.json.bad")]
    Corrupt { path: PathBuf, err: String },
    #[error("the storage scan stopped before the end (budget or shutdown); counting again later")]
    Incomplete,
    #[error("storage scan failed: {0}")]
    Scan(String),
    #[error("no storage index after the scan: {0}")]
    Index(String),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CampaignError + 'a {
    move |err| CampaignError::Io {
        op,
        path: path.to_owned(),
        err,
    }
}

/// One campaign as this agent knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub id: String,
    pub ends_at_ms: i64,
    pub rescan_interval_s: u32,
    /// When the baseline scan finished; None until taken.
    pub baseline_at_ms: Option<i64>,
    /// When to count next (0: at once).
    pub next_ms: i64,
    /// The final count was sent; `last` is resent if asked again.
    pub done: bool,
    pub last: Option<CampaignProgress>,
}

/// The campaigns of this agent, persisted after every change.
#[derive(Debug)]
pub struct Book {
    dir: PathBuf,
    pub entries: Vec<Entry>,
}

impl Book {
    pub fn open(dir: &Path) -> Result<Book, CampaignError> {
        let path = dir.join("state.json");
        let entries = match std::fs::read(&path) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(e) => e,
                Err(e) => {
                    let _ = std::fs::rename(&path, dir.join("state.json.bad"));
                    return Err(CampaignError::Corrupt {
                        path,
                        err: e.to_string(),
                    });
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err("read", &path)(e)),
        };
        Ok(Book {
            dir: dir.to_owned(),
            entries,
        })
    }

    /// An empty book in `dir` (after a damaged one was set aside).
    pub fn empty(dir: &Path) -> Book {
        Book {
            dir: dir.to_owned(),
            entries: Vec::new(),
        }
    }

    fn save(&self) -> Result<(), CampaignError> {
        sobre_base::files::create_private_dir(&self.dir).map_err(io_err("create", &self.dir))?;
        let path = self.dir.join("state.json");
        // Serialising plain data cannot fail.
        let json = serde_json::to_vec_pretty(&self.entries).unwrap_or_default();
        sobre_base::files::write_private_atomic(&path, &json).map_err(io_err("write", &path))
    }

    fn baseline_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Applies a command. Returns a progress to send at once when the
    /// command repeats one already done.
    pub fn command(&mut self, c: &CampaignCommand, now_ms: i64) -> Option<CampaignProgress> {
        if !sobre_proto::topics::valid_agent_id(&c.campaign_id) {
            tracing::warn!("ignoring a campaign command with an invalid id");
            return None;
        }
        let pos = self.entries.iter().position(|e| e.id == c.campaign_id);
        let out = match (c.action(), pos) {
            (_, Some(i)) if self.entries[i].done => self.entries[i].last.clone(),
            (CampaignAction::Start, Some(i)) => {
                let e = &mut self.entries[i];
                e.ends_at_ms = c.ends_at_ms;
                e.rescan_interval_s = c.rescan_interval_s;
                None
            }
            (CampaignAction::Start, None) => {
                tracing::info!(campaign = %c.campaign_id, "campaign started: taking a baseline");
                self.entries.push(Entry {
                    id: c.campaign_id.clone(),
                    ends_at_ms: c.ends_at_ms,
                    rescan_interval_s: c.rescan_interval_s,
                    baseline_at_ms: None,
                    next_ms: 0,
                    done: false,
                    last: None,
                });
                None
            }
            (CampaignAction::End, Some(i)) => {
                let e = &mut self.entries[i];
                e.ends_at_ms = e.ends_at_ms.min(now_ms);
                e.next_ms = 0;
                None
            }
            (CampaignAction::End, None) => Some(CampaignProgress {
                campaign_id: c.campaign_id.clone(),
                r#final: true,
                error: "this host has no baseline for the campaign (it was not started here)"
                    .into(),
                ..Default::default()
            }),
            (CampaignAction::Unspecified, _) => {
                tracing::warn!(campaign = %c.campaign_id, "ignoring a campaign command without an action");
                None
            }
        };
        if let Err(e) = self.save() {
            tracing::error!(error = %e, "cannot save the campaign book");
        }
        out
    }

    /// The first campaign due for a count at `now_ms`.
    pub fn due(&self, now_ms: i64) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| !e.done && e.next_ms <= now_ms)
    }

    /// When the next count is due, if any.
    pub fn next_wake_ms(&self) -> Option<i64> {
        self.entries
            .iter()
            .filter(|e| !e.done)
            .map(|e| e.next_ms)
            .min()
    }

    /// Records a count (or a failure) for entry `i` and plans the next.
    fn record(&mut self, i: usize, p: &CampaignProgress, now_ms: i64) {
        let e = &mut self.entries[i];
        if p.error.is_empty() && e.baseline_at_ms.is_none() {
            e.baseline_at_ms = Some(p.baseline_at_ms);
        }
        e.done = p.r#final;
        let every = i64::from(e.rescan_interval_s.max(60)) * 1000;
        e.next_ms = (now_ms + every).min(e.ends_at_ms.max(now_ms));
        e.last = Some(p.clone());
        if e.done {
            let id = e.id.clone();
            let dir = self.baseline_dir(&id);
            if let Err(err) = std::fs::remove_dir_all(&dir)
                && err.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(error = %err, dir = %dir.display(), "cannot remove a finished campaign's baseline");
            }
        }
        if let Err(e) = self.save() {
            tracing::error!(error = %e, "cannot save the campaign book");
        }
    }
}

/// Scans, then takes the baseline (first time) or counts against it.
/// Blocking. Returns the scan's summary (it is news for the collector too)
/// and the progress to report.
pub fn step(
    entry: &Entry,
    book_dir: &Path,
    cfg: &ScanConfig,
    cancel: &AtomicBool,
    now_ms: i64,
) -> Result<(StorageSummary, CampaignProgress), CampaignError> {
    let summary =
        scan::scan_summary(cfg, cancel).map_err(|e| CampaignError::Scan(e.to_string()))?;
    if !summary.complete {
        return Err(CampaignError::Incomplete);
    }
    let index_dir = cfg
        .index_dir
        .as_deref()
        .ok_or_else(|| CampaignError::Index("the scan keeps no index".into()))?;
    let base_dir = book_dir.join(&entry.id);
    if entry.baseline_at_ms.is_none() || !base_dir.join(scan::index::FILE_NAME).exists() {
        sobre_base::files::create_private_dir(&base_dir).map_err(io_err("create", &base_dir))?;
        let (from, tmp) = (
            index_dir.join(scan::index::FILE_NAME),
            base_dir.join("files.idx.tmp"),
        );
        sobre_base::files::copy_private(&from, &tmp).map_err(io_err("copy", &from))?;
        std::fs::rename(&tmp, base_dir.join(scan::index::FILE_NAME))
            .map_err(io_err("rename", &tmp))?;
    }
    let load = |d: &Path| {
        scan::index::load(d)
            .map_err(|e| CampaignError::Index(e.to_string()))?
            .ok_or_else(|| CampaignError::Index(format!("{} holds no index", d.display())))
    };
    let (base, now) = (load(&base_dir)?, load(index_dir)?);
    let mut p = count::count(&base, &now);
    p.campaign_id = entry.id.clone();
    p.baseline_at_ms = base.scanned_at_ms;
    p.counted_at_ms = now.scanned_at_ms;
    p.r#final = now_ms >= entry.ends_at_ms;
    Ok((summary, p))
}

/// What the campaign loop needs from the agent around it.
pub struct Ctx {
    /// `storage.index_dir/campaigns`.
    pub dir: PathBuf,
    /// Err: why this host cannot take part (scans disabled, bad config).
    pub scan: Result<ScanConfig, String>,
    /// Held during any scan: campaign counts and scheduled scans share the
    /// index.
    pub scan_lock: Arc<tokio::sync::Mutex<()>>,
    /// Spools an envelope body for the collector.
    pub send: Box<dyn Fn(Body) + Send + Sync>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Runs the campaigns until `cancel`: commands from the downlink, counts
/// when due. A count stopped by shutdown is done again at the next start.
pub async fn run(
    ctx: Ctx,
    mut commands: mpsc::Receiver<CampaignCommand>,
    cancel: CancellationToken,
) {
    let mut book = match Book::open(&ctx.dir) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "starting with no campaigns");
            Book::empty(&ctx.dir)
        }
    };
    loop {
        let wait = book
            .next_wake_ms()
            .map(|t| Duration::from_millis((t - now_ms()).max(0) as u64));
        tokio::select! {
            _ = cancel.cancelled() => return,
            c = commands.recv() => match c {
                Some(c) => {
                    if let Some(p) = book.command(&c, now_ms()) {
                        (ctx.send)(Body::Campaign(p));
                    }
                    continue;
                }
                None => return,
            },
            _ = async { match wait { Some(w) => tokio::time::sleep(w).await, None => std::future::pending().await } } => {}
        }
        while let Some(i) = book.due(now_ms()) {
            if cancel.is_cancelled() {
                return;
            }
            let entry = book.entries[i].clone();
            let cfg = match &ctx.scan {
                Ok(c) => c.clone(),
                Err(why) => {
                    let p = CampaignProgress {
                        campaign_id: entry.id.clone(),
                        r#final: true,
                        error: why.clone(),
                        ..Default::default()
                    };
                    book.record(i, &p, now_ms());
                    (ctx.send)(Body::Campaign(p));
                    continue;
                }
            };
            let _scanning = ctx.scan_lock.lock().await;
            let stop = Arc::new(AtomicBool::new(false));
            let stopper = {
                let (cancel, stop) = (cancel.clone(), stop.clone());
                tokio::spawn(async move {
                    cancel.cancelled().await;
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                })
            };
            let dir = ctx.dir.clone();
            let job = {
                let (entry, stop) = (entry.clone(), stop.clone());
                tokio::task::spawn_blocking(move || step(&entry, &dir, &cfg, &stop, now_ms()))
            };
            let result = job.await;
            stopper.abort();
            match result {
                Ok(Ok((summary, p))) => {
                    tracing::info!(
                        campaign = %p.campaign_id,
                        files_deleted = p.files_deleted,
                        bytes_deleted = p.bytes_deleted,
                        files_moved = p.files_moved,
                        files_added = p.files_added,
                        is_final = p.r#final,
                        "campaign count"
                    );
                    book.record(i, &p, now_ms());
                    (ctx.send)(Body::Storage(summary));
                    (ctx.send)(Body::Campaign(p));
                }
                Ok(Err(CampaignError::Incomplete)) if cancel.is_cancelled() => return,
                Ok(Err(e)) => {
                    tracing::warn!(campaign = %entry.id, error = %e, "campaign count failed; trying again later");
                    let retry = if matches!(e, CampaignError::Incomplete) {
                        60_000
                    } else {
                        i64::from(entry.rescan_interval_s.max(60)) * 1000
                    };
                    book.entries[i].next_ms = now_ms() + retry;
                    if entry.baseline_at_ms.is_none() && !matches!(e, CampaignError::Incomplete) {
                        // Tell the collector why there is no baseline yet.
                        (ctx.send)(Body::Campaign(CampaignProgress {
                            campaign_id: entry.id.clone(),
                            error: e.to_string(),
                            ..Default::default()
                        }));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "campaign count panicked");
                    book.entries[i].next_ms = now_ms() + 3_600_000;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
