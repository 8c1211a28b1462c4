//! Signals and logging shared by Sobre's binaries: SIGINT or SIGTERM
//! (Ctrl-C or Ctrl-Break on Windows) starts an orderly shutdown, a second
//! one exits at once; logs go to stderr, filtered by `SOBRE_LOG`.

use tokio_util::sync::CancellationToken;

/// Cancels `cancel` on the first signal; exits with 130 on the second
/// (what is on disk is always consistent: spool, store).
pub async fn cancel_on_signal(cancel: CancellationToken) {
    wait_signal().await;
    tracing::info!("signal received; draining (send it again to exit at once)");
    cancel.cancel();
    wait_signal().await;
    tracing::warn!("second signal: exiting without draining");
    std::process::exit(130);
}

#[cfg(unix)]
async fn wait_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(windows)]
async fn wait_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// Logs to stderr, colours only on a terminal; `SOBRE_LOG` (a list of
/// `target=level` or `level`, e.g. `info,sobre_agent=debug`) overrides
/// `default_filter`. A `Targets` filter, not an `EnvFilter`: the same
/// syntax as every SOBRE_LOG the docs show, without the regex engine the
/// latter links in (issue 23: about 0.3 MB of the agent's binary, and of
/// its resident code pages).
pub fn init_logging(default_filter: &str) {
    use tracing_subscriber::prelude::*;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish()
        .with(log_filter(default_filter))
        .init();
}

/// Logs to `path` (a [`CappedLog`](crate::logfile::CappedLog) of `cap`
/// bytes, owner-only) instead of stderr, with the same filter: for a
/// Windows service, which has no stderr.
pub fn init_logging_to_file(
    default_filter: &str,
    path: &std::path::Path,
    cap: u64,
) -> std::io::Result<()> {
    use tracing_subscriber::prelude::*;
    let log = crate::logfile::CappedLog::open(path, cap)?;
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(log))
        .with_ansi(false)
        .finish()
        .with(log_filter(default_filter))
        .init();
    Ok(())
}

fn log_filter(default_filter: &str) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::Targets;
    let from_env = std::env::var("SOBRE_LOG")
        .ok()
        .map(|s| s.parse::<Targets>());
    if let Some(Err(e)) = &from_env {
        // Logging is not set up yet: say it plainly on stderr.
        eprintln!("SOBRE_LOG ignored ({e}): use e.g. SOBRE_LOG=info,sobre_agent=debug");
    }
    from_env
        .and_then(Result::ok)
        .or_else(|| default_filter.parse().ok())
        .unwrap_or_default()
}
