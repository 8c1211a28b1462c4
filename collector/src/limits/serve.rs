//! The accept loop every listener runs: a connection is admitted if its
//! listener is under its cap and the open-files budget has room (else it
//! is closed at once, counted and logged at most once per period), its
//! TLS handshake (if any) must end within the handshake timeout, and it
//! is then handed to the listener's server wrapped in a [`Conn`].

use super::auth::AuthFailures;
use super::conn::{Conn, Permits, WatchSpec};
use super::log::logs;
use super::settings::Cap;
use crate::metrics::Metrics;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The descriptors every connection of every listener draws from
/// ([`super::fd::NoFile::budget`]), so that connections never take the
/// process to its open-files limit.
#[derive(Debug, Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    total: u64,
}

impl Budget {
    pub fn new(total: u64, metrics: &Metrics) -> Budget {
        let n = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        let sem = Arc::new(Semaphore::new(n));
        metrics.register_fd_budget(sem.clone(), n as u64);
        Budget {
            sem,
            total: n as u64,
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// `n` descriptors, if the budget has them now.
    pub fn take(&self, n: u32) -> Option<OwnedSemaphorePermit> {
        self.sem.clone().try_acquire_many_owned(n).ok()
    }
}

/// One listener's admission rules; see the module's documentation.
pub struct Listener {
    /// Its name in the config and in `/metrics`: `http`, `grpc`, `mqtt`,
    /// `mqtt_tls`.
    name: &'static str,
    cap: Arc<Semaphore>,
    idle: Duration,
    handshake: Duration,
    budget: Budget,
    tls: Option<TlsAcceptor>,
    /// Sources refused at once for their failed sign-ins.
    blocked: Option<Arc<AuthFailures>>,
    metrics: Arc<Metrics>,
}

impl Listener {
    pub fn new(
        name: &'static str,
        cap: Cap,
        handshake: Duration,
        budget: &Budget,
        metrics: Arc<Metrics>,
    ) -> Listener {
        let sem = Arc::new(Semaphore::new(cap.max_connections));
        metrics.register_cap(name, sem.clone(), cap.max_connections);
        Listener {
            name,
            cap: sem,
            idle: cap.idle(),
            handshake,
            budget: budget.clone(),
            tls: None,
            blocked: None,
            metrics,
        }
    }

    /// Connections complete this TLS handshake first.
    pub fn tls(mut self, acceptor: TlsAcceptor) -> Listener {
        self.tls = Some(acceptor);
        self
    }

    /// A source that failed to sign in too often is closed at once.
    pub fn refuse_blocked(mut self, failures: Arc<AuthFailures>) -> Listener {
        self.blocked = Some(failures);
        self
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The permits of a new connection from `peer`, or why not (counted
    /// and logged here; the caller closes it).
    fn admit(&self, peer: SocketAddr) -> Option<Permits> {
        if let Some(f) = &self.blocked
            && f.check(peer.ip(), self.name).is_err()
        {
            self.metrics.conn_refused(self.name, "auth_blocked");
            return None;
        }
        let Ok(cap) = self.cap.clone().try_acquire_owned() else {
            self.refused(peer, "cap");
            return None;
        };
        let Some(fds) = self.budget.take(1) else {
            self.refused(peer, "fd_budget");
            return None;
        };
        Some(Permits {
            _cap: cap,
            _fds: fds,
        })
    }

    fn refused(&self, peer: SocketAddr, reason: &'static str) {
        self.metrics.conn_refused(self.name, reason);
        if let Some(more) = logs().due((self.name, reason), Instant::now()) {
            let what = match reason {
                "cap" => "the listener holds listeners.<name>.max_connections already",
                _ => "the open-files budget (RLIMIT_NOFILE) is spent",
            };
            tracing::warn!(
                listener = self.name,
                %peer,
                reason,
                "{} connection closed at once: {what}{more}",
                self.name
            );
        }
    }

    fn watch(&self, first: Option<Duration>) -> WatchSpec {
        WatchSpec {
            listener: self.name,
            metrics: self.metrics.clone(),
            first,
            idle: self.idle,
        }
    }

    /// The connection ready for its server: the TLS handshake done within
    /// its timeout; `None` when it failed (counted, logged once a period).
    async fn ready(&self, tcp: TcpStream, peer: SocketAddr, permits: Permits) -> Option<Conn> {
        let _ = tcp.set_nodelay(true);
        let Some(acceptor) = &self.tls else {
            return Some(Conn::plain(
                tcp,
                peer,
                permits,
                self.watch(Some(self.handshake)),
            ));
        };
        let why = match tokio::time::timeout(self.handshake, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => return Some(Conn::tls(tls, peer, permits, self.watch(None))),
            Ok(Err(e)) => e.to_string(),
            Err(_) => {
                self.metrics.conn_timed_out(self.name, "handshake");
                format!(
                    "no TLS handshake within listeners.handshake_timeout_s = {} s",
                    self.handshake.as_secs()
                )
            }
        };
        if let Some(more) = logs().due((self.name, "tls_handshake"), Instant::now()) {
            let what = match self.name {
                "http" => "HTTPS",
                "grpc" => "gRPC TLS",
                _ => "MQTT TLS",
            };
            tracing::warn!(listener = self.name, %peer, error = %why, "{what} handshake refused{more}");
        }
        None
    }

    /// Accepts connections until `cancel`; each admitted one is served by
    /// `handle` until it ends or `cancel`.
    pub async fn serve<F, Fut>(
        self: Arc<Self>,
        listener: TcpListener,
        cancel: CancellationToken,
        handle: F,
    ) where
        F: Fn(Conn, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let tracker = TaskTracker::new();
        while let Some((tcp, peer)) = accept(&listener, self.name, &cancel).await {
            let Some(permits) = self.admit(peer) else {
                drop(tcp);
                continue;
            };
            let (me, cancel, handle) = (self.clone(), cancel.clone(), handle.clone());
            tracker.spawn(async move {
                let serve = async move {
                    if let Some(conn) = me.ready(tcp, peer, permits).await {
                        handle(conn, peer).await;
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = serve => {}
                }
            });
        }
        tracker.close();
        tracker.wait().await;
    }
}

/// The next connection on `listener`, or `None` once `cancel`. A failed
/// accept (out of file descriptors, typically) is logged and retried after
/// 50 ms, giving running connections a moment instead of spinning.
async fn accept(
    listener: &TcpListener,
    what: &'static str,
    cancel: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return None,
            a = listener.accept() => match a {
                Ok(a) => return Some(a),
                Err(e) => {
                    if let Some(more) = logs().due((what, "accept_failed"), Instant::now()) {
                        tracing::warn!(listener = what, error = %e, "{what} accept failed{more}");
                    }
                }
            },
        }
        tokio::select! {
            _ = cancel.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}
