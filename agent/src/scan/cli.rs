//! `sobre-agent scan` at a terminal: progress on stderr, a readable summary
//! (or `--json`), Ctrl-C stops cleanly and keeps what was hashed.

use super::{Phase, Progress, ScanConfig, human, scan};
use crate::config::AgentConfig;
use anyhow::Context;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// `sobre-agent scan`'s options, over the `[storage]` section.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScanArgs {
    /// Folders to scan (default: storage.roots, else the home folders).
    pub paths: Vec<PathBuf>,
    /// Print the whole report, and the summary the collector would get, as
    /// JSON.
    #[arg(long)]
    pub json: bool,
    /// Scan as the schedule does: one reader, paced to
    /// storage.cpu_budget_percent of one core.
    #[arg(long)]
    pub background: bool,
    /// Readers per device (default: storage.threads).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Index directory (default: storage.index_dir; without a config file
    /// and not root, ~/.local/share/sobre-agent/index).
    #[arg(long)]
    pub index_dir: Option<PathBuf>,
    /// Neither read nor write the index.
    #[arg(long)]
    pub no_index: bool,
    /// Only list and count files: no hashing, no index.
    #[arg(long)]
    pub walk_only: bool,
}

fn is_root() -> bool {
    crate::sys::privileged()
}

/// Where the CLI keeps its index: `--index-dir`, else `storage.index_dir`
/// from a config file or as root, else the user's data folder
/// (`$XDG_DATA_HOME/sobre-agent/index`, `~/.local/share/...`).
pub fn index_dir(cfg: &AgentConfig, explicit: Option<PathBuf>, config_given: bool) -> PathBuf {
    if let Some(d) = explicit {
        return d;
    }
    if config_given || is_root() {
        return cfg.storage.index_dir.clone();
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
    match data {
        Some(d) => d.join("sobre-agent/index"),
        None => cfg.storage.index_dir.clone(),
    }
}

/// Sets the returned flag on the first SIGINT or SIGTERM; a second one
/// exits at once.
pub fn cancel_on_signal() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let spawned = std::thread::Builder::new()
        .name("sobre-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                #[cfg(unix)]
                let (Ok(mut term), Ok(mut int)) = (
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()),
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()),
                ) else {
                    return;
                };
                #[cfg(unix)]
                let mut stop = async || {
                    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
                };
                #[cfg(windows)]
                let stop = async || {
                    let _ = tokio::signal::ctrl_c().await;
                };
                stop().await;
                eprintln!("\nstopping: saving what was hashed (again to quit at once)");
                f.store(true, Relaxed);
                stop().await;
                std::process::exit(130);
            });
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch for Ctrl-C");
    }
    flag
}

fn bar(p: Progress) -> String {
    match p.phase {
        Phase::Walking => format!(
            "listing: {} files, {} in {} folders",
            human::count(p.files),
            human::bytes(p.bytes),
            human::count(p.dirs)
        ),
        Phase::Hashing => {
            let pct = if p.to_hash_bytes > 0 {
                (p.hashed_bytes as f64 / p.to_hash_bytes as f64 * 100.0).min(100.0)
            } else {
                0.0
            };
            format!(
                "comparing: {pct:3.0} % ({} of {}), {} files read",
                human::bytes(p.hashed_bytes),
                human::bytes(p.to_hash_bytes),
                human::count(p.hashed_files)
            )
        }
        Phase::Saving => "saving the index".into(),
    }
}

/// Runs `sobre-agent scan`.
pub fn run(cfg: &AgentConfig, args: ScanArgs, config_given: bool) -> anyhow::Result<()> {
    let mut sc = ScanConfig::from_storage(&cfg.storage)?;
    if !args.paths.is_empty() {
        sc.roots = args.paths.clone();
    }
    if let Some(t) = args.threads {
        sc.threads = t.clamp(1, 64);
    }
    // At the terminal the scan runs at full speed unless asked otherwise.
    sc.cpu_budget = args
        .background
        .then_some(cfg.storage.cpu_budget_percent / 100.0);
    sc.walk_only = args.walk_only;
    sc.index_dir = (!args.no_index && !args.walk_only)
        .then(|| index_dir(cfg, args.index_dir.clone(), config_given));
    let cancel = cancel_on_signal();
    let tty = std::io::stderr().is_terminal();
    let show = |p: Progress| {
        if tty {
            let mut e = std::io::stderr().lock();
            let _ = write!(e, "\r\x1b[2K{}", bar(p));
            let _ = e.flush();
        }
    };
    let report = scan(&sc, &show, &cancel).context("storage scan failed")?;
    if tty {
        eprint!("\r\x1b[2K");
    }
    if args.json {
        let out = serde_json::json!({
            "report": report,
            "summary_sent_to_collector": report.summary(&sc),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!(
            "{}",
            human::render(&report, sc.rules.cold_years, sc.rules.old_download_days)
        );
    }
    Ok(())
}
