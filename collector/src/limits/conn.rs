//! One admitted connection: its socket (plain, or TLS once the handshake
//! is done), the permits it holds (its listener's cap, its descriptors in
//! the open-files budget; given back when it is dropped), and its
//! watchdog: a connection whose client sent no first byte within the
//! handshake timeout, or on which nothing moved either way for the idle
//! timeout, fails its next read or write with `TimedOut`, which ends it
//! in whichever server holds it (hyper, tonic, the MQTT guard).

use crate::metrics::Metrics;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;

/// What a connection holds while open; dropping it gives them back.
#[derive(Debug)]
pub struct Permits {
    pub(super) _cap: OwnedSemaphorePermit,
    pub(super) _fds: OwnedSemaphorePermit,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// When a connection's silence ends it.
struct Watch {
    listener: &'static str,
    metrics: Arc<Metrics>,
    created: Instant,
    /// Until the client's first byte (`None`: already had it, e.g. TLS).
    first: Option<Duration>,
    idle: Duration,
    /// When a byte last moved either way.
    last: Instant,
    /// Sleeps until the deadline as it was when armed; moved on lazily
    /// (activity only stamps `last`, at no timer cost).
    timer: Pin<Box<Sleep>>,
    expired: bool,
}

impl Watch {
    fn deadline(&self) -> Instant {
        match self.first {
            Some(first) => self.created + first,
            None => self.last + self.idle,
        }
    }

    fn read(&mut self, n: usize) {
        if n > 0 {
            self.first = None;
            self.last = Instant::now();
        }
    }

    fn wrote(&mut self, n: usize) {
        if n > 0 {
            self.last = Instant::now();
        }
    }

    /// On a pending read or write: whether the deadline has passed (then
    /// counted, once); otherwise the timer wakes this task at it.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.expired {
            return true;
        }
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let due = self.deadline();
            if Instant::now() >= due {
                self.expired = true;
                let phase = match self.first {
                    Some(_) => "first_byte",
                    None => "idle",
                };
                self.metrics.conn_timed_out(self.listener, phase);
                tracing::debug!(listener = self.listener, phase, "connection timed out");
                return true;
            }
            self.timer.as_mut().reset(due);
        }
    }
}

/// An admitted connection; see the module's documentation.
pub struct Conn {
    io: Io,
    watch: Watch,
    peer: SocketAddr,
    local: Option<SocketAddr>,
    _permits: Permits,
}

/// What a connection's timeouts are, and where they are counted.
pub(super) struct WatchSpec {
    pub listener: &'static str,
    pub metrics: Arc<Metrics>,
    pub first: Option<Duration>,
    pub idle: Duration,
}

impl Conn {
    pub(super) fn plain(tcp: TcpStream, peer: SocketAddr, permits: Permits, w: WatchSpec) -> Conn {
        let local = tcp.local_addr().ok();
        Conn::new(Io::Plain(tcp), peer, local, permits, w)
    }

    pub(super) fn tls(
        tls: TlsStream<TcpStream>,
        peer: SocketAddr,
        permits: Permits,
        w: WatchSpec,
    ) -> Conn {
        let local = tls.get_ref().0.local_addr().ok();
        Conn::new(Io::Tls(Box::new(tls)), peer, local, permits, w)
    }

    fn new(
        io: Io,
        peer: SocketAddr,
        local: Option<SocketAddr>,
        permits: Permits,
        w: WatchSpec,
    ) -> Conn {
        let now = Instant::now();
        let mut watch = Watch {
            listener: w.listener,
            metrics: w.metrics,
            created: now,
            first: w.first,
            idle: w.idle,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now)),
            expired: false,
        };
        let due = watch.deadline();
        watch.timer.as_mut().reset(due);
        Conn {
            io,
            watch,
            peer,
            local,
            _permits: permits,
        }
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long")
}

/// Runs `op` on the socket; a pending one checks the watchdog.
fn watched<T>(
    watch: &mut Watch,
    cx: &mut Context<'_>,
    r: Poll<io::Result<T>>,
) -> Poll<io::Result<T>> {
    match r {
        Poll::Pending if watch.poll_expired(cx) => Poll::Ready(Err(timed_out())),
        r => r,
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.watch.expired {
            return Poll::Ready(Err(timed_out()));
        }
        let before = buf.filled().len();
        let r = match &mut me.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if let Poll::Ready(Ok(())) = r {
            me.watch.read(buf.filled().len() - before);
        }
        watched(&mut me.watch, cx, r)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.watch.expired {
            return Poll::Ready(Err(timed_out()));
        }
        let r = match &mut me.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, b),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, b),
        };
        if let Poll::Ready(Ok(n)) = r {
            me.watch.wrote(n);
        }
        watched(&mut me.watch, cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.watch.expired {
            return Poll::Ready(Err(timed_out()));
        }
        let r = match &mut me.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        if let Poll::Ready(Ok(n)) = r {
            me.watch.wrote(n);
        }
        watched(&mut me.watch, cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = match &mut me.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        };
        watched(&mut me.watch, cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let r = match &mut me.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        };
        watched(&mut me.watch, cx, r)
    }
}

/// tonic reads the peer's address (`Request::remote_addr`) from this.
impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        tonic::transport::server::TcpConnectInfo {
            local_addr: self.local,
            remote_addr: Some(self.peer),
        }
    }
}
