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

/// Logs to stderr, colours only on a terminal; `SOBRE_LOG` (an
/// `EnvFilter`) overrides `default_filter`.
pub fn init_logging(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SOBRE_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
