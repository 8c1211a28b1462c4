//! One client connection through the guard: read its CONNECT, admit it
//! (enrolment, reserved client id, last will), open its own connection to
//! rumqttd's internal listener, then relay both ways. Client to broker,
//! each packet is framed and checked, and forwarded as the client sent it;
//! the one exception is the CONNECT, re-encoded with the guard's sign-in
//! (same client id, keep-alive, session flag and will). Broker to client,
//! bytes are copied as they come.

use super::acl::{Acl, Refusal, truncate};
use super::packet::{self, Packet};
use super::{GUARD_USER, Guard};
use bytes::{Buf, BytesMut};
use rumqttc::mqttbytes::FixedHeader;
use rumqttc::mqttbytes::v4::{Connect, Login};
use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

/// Room for reading from a client (a packet may be larger: the buffer
/// grows to `max_packet_bytes` at most). Small: every agent holds one
/// while connected, most of them idle.
const READ_CHUNK: usize = 4 * 1024;

/// Room for one read from the broker (acks, downlinks).
const DOWN_CHUNK: usize = 4 * 1024;

/// Largest CONNECT taken (an agent's is ~200 bytes: client id, will,
/// user name, password). Before it, nobody is known: a stranger must not
/// make the guard hold `max_packet_bytes` per connection.
const MAX_CONNECT_BYTES: usize = 4 * 1024;

/// After the client closed, how long its last packets may take to reach
/// the broker and the broker's last answers to come back.
const LINGER: Duration = Duration::from_secs(5);

/// A client the guard turned away.
#[derive(Debug)]
pub(super) struct Refused {
    pub why: Refusal,
    /// As the client sent it, bounded (empty before its CONNECT).
    pub client_id: String,
}

/// Why the client-to-broker direction stopped.
enum Stop {
    Refused(Refusal),
    /// Either socket failed or closed; nothing to report.
    Io,
}

impl From<Refusal> for Stop {
    fn from(r: Refusal) -> Stop {
        Stop::Refused(r)
    }
}

impl From<std::io::Error> for Stop {
    fn from(_: std::io::Error) -> Stop {
        Stop::Io
    }
}

impl From<packet::PacketError> for Stop {
    fn from(e: packet::PacketError) -> Stop {
        Stop::Refused(Refusal::Protocol(e.to_string()))
    }
}

/// Serves one client connection until either side closes; `Err` when the
/// guard turned the client away (for the caller to count and log).
pub(super) async fn run<S>(g: &Guard, client: S, peer: SocketAddr) -> Result<(), Refused>
where
    S: AsyncRead + AsyncWrite + Send + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let max = g.settings.max_packet_bytes;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let anonymous = |why| Refused {
        why,
        client_id: String::new(),
    };
    let first = max.min(MAX_CONNECT_BYTES);
    let wait = g.settings.connect_timeout;
    let connect = match tokio::time::timeout(wait, read_connect(&mut cr, &mut buf, first)).await {
        Ok(Ok(c)) => c,
        Ok(Err(Stop::Refused(why))) => return Err(anonymous(why)),
        Ok(Err(Stop::Io)) => return Ok(()),
        Err(_) => {
            g.metrics.conn_timed_out("mqtt", "connect");
            tracing::debug!(%peer, "MQTT client sent no CONNECT in time");
            return Ok(());
        }
    };
    let client_id = truncate(&connect.client_id);
    let refused = |why| Refused {
        why,
        client_id: client_id.clone(),
    };
    let acl = match admit(g, &connect) {
        Ok(acl) => acl,
        Err(why) => {
            // 5: not authorised. The client learns no more than that.
            let _ = cw.write_all(&packet::connack(5)).await;
            let _ = cw.shutdown().await;
            return Err(refused(why));
        }
    };
    let Some((upstream, fds)) = upstream(g, &mut cw).await else {
        return Ok(());
    };
    let _ = upstream.set_nodelay(true);
    let (ur, uw) = upstream.into_split();
    let mut signed_in = BytesMut::new();
    let mut inner = *connect;
    inner.login = Some(Login::new(
        GUARD_USER,
        g.settings.auth.guard_password.as_str(),
    ));
    if let Err(e) = inner.write(&mut signed_in) {
        return Err(refused(Refusal::Protocol(e.to_string())));
    }
    let keep_alive = keep_alive_limit(inner.keep_alive);
    let up = pump_up(g, &acl, &mut cr, uw, buf, signed_in, keep_alive);
    let down = pump_down(&ur, &mut cw);
    tokio::pin!(up, down);
    let _fds = fds;
    tokio::select! {
        r = &mut up => match r {
            // The client closed: let its last packets and the broker's
            // answers through, then end.
            Ok(()) => {
                let _ = tokio::time::timeout(LINGER, &mut down).await;
                Ok(())
            }
            Err(Stop::Io) => Ok(()),
            Err(Stop::Refused(why)) => Err(refused(why)),
        },
        // The broker closed (or the client stopped reading): end both.
        _ = &mut down => Ok(()),
    }
}

/// The guard's own connection to rumqttd for an admitted client, and the
/// two descriptors it costs in the open-files budget (the guard's end and
/// rumqttd's, both in this process). `None` when the budget is spent
/// (the client gets CONNACK 3, server unavailable, and retries with
/// backoff) or the broker is unreachable.
async fn upstream<W: AsyncWrite + Unpin>(
    g: &Guard,
    cw: &mut W,
) -> Option<(TcpStream, Option<tokio::sync::OwnedSemaphorePermit>)> {
    let fds = match &g.settings.budget {
        Some(b) => match b.take(2) {
            Some(p) => Some(p),
            None => {
                let _ = cw.write_all(&packet::connack(3)).await;
                g.metrics.conn_refused("mqtt", "fd_budget");
                return None;
            }
        },
        None => None,
    };
    match TcpStream::connect(g.settings.broker).await {
        Ok(s) => Some((s, fds)),
        Err(e) => {
            tracing::error!(broker = %g.settings.broker, error = %e, "the embedded broker is unreachable from the MQTT guard");
            None
        }
    }
}

/// MQTT 3.1.1 §3.1.2.10: a client silent for one and a half times its
/// keep-alive is disconnected; 0 turns the mechanism off (the listener's
/// idle timeout still applies).
fn keep_alive_limit(keep_alive_s: u16) -> Option<Duration> {
    (keep_alive_s > 0).then(|| Duration::from_millis(u64::from(keep_alive_s) * 1500))
}

/// Reads up to the client's first packet, which must be a CONNECT.
async fn read_connect<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Box<Connect>, Stop> {
    loop {
        if let Some(h) = packet::frame(buf, max)? {
            let len = h.frame_length();
            let connect = match packet::parse(h, &buf[..len])? {
                Packet::Connect(c) => c,
                _ => {
                    return Err(
                        Refusal::Protocol("the first packet must be a CONNECT".into()).into(),
                    );
                }
            };
            buf.advance(len);
            return Ok(connect);
        }
        reserve(buf);
        if r.read_buf(buf).await? == 0 {
            return Err(Stop::Io);
        }
    }
}

/// Who the client is, and whether its CONNECT may go on.
fn admit(g: &Guard, c: &Connect) -> Result<Acl, Refusal> {
    let own = &g.settings.auth.own_client_id;
    if &c.client_id == own {
        return Err(Refusal::ReservedClientId);
    }
    let acl = if g.credentials.required() {
        let (user, pass) = c
            .login
            .as_ref()
            .map_or(("", ""), |l| (l.username.as_str(), l.password.as_str()));
        if !g.credentials.mqtt_connect_ok(own, &c.client_id, user, pass) {
            return Err(Refusal::NotEnrolled);
        }
        Acl::enrolled(user)
    } else {
        Acl::unproven(&c.client_id)
    };
    if let Some(w) = &c.last_will {
        acl.will(&w.topic)?;
    }
    Ok(acl)
}

fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}

/// Client to broker: frames, checks and charges each packet, forwards it
/// unchanged (from the read buffer itself). An agent out of tokens is not
/// read until one is back, so TCP pushes back on that client alone and
/// nothing of its excess reaches rumqttd's shared log. `connect` (the
/// re-encoded CONNECT) goes first.
async fn pump_up<R, W>(
    g: &Guard,
    acl: &Acl,
    r: &mut R,
    mut w: W,
    mut buf: BytesMut,
    connect: BytesMut,
    keep_alive: Option<Duration>,
) -> Result<(), Stop>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let max = g.settings.max_packet_bytes;
    w.write_all(&connect).await?;
    drop(connect);
    loop {
        // buf[..sent] is written, buf[sent..pos] checked and due.
        let (mut sent, mut pos) = (0, 0);
        loop {
            let (len, charge) = match next_packet(acl, &buf[pos..], max) {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(why) => {
                    // What came before the offence was within the rules.
                    let _ = w.write_all(&buf[sent..pos]).await;
                    return Err(why);
                }
            };
            if let Some(agent) = charge {
                while let Err(wait) = g.rate.take_or_wait(&agent, Instant::now()) {
                    // What was let through goes now; then nothing more is
                    // read from this client until its token is due.
                    w.write_all(&buf[sent..pos]).await?;
                    sent = pos;
                    g.throttled(&agent, wait.log);
                    tokio::time::sleep(wait.after).await;
                }
            }
            pos += len;
        }
        w.write_all(&buf[sent..pos]).await?;
        buf.advance(pos);
        // After a large packet (a storage summary), back to a small buffer.
        if buf.is_empty() && buf.capacity() > 4 * READ_CHUNK {
            buf = BytesMut::new();
        }
        reserve(&mut buf);
        let read = match keep_alive {
            Some(limit) => match tokio::time::timeout(limit, r.read_buf(&mut buf)).await {
                Ok(r) => r?,
                Err(_) => {
                    g.metrics.conn_timed_out("mqtt", "keep_alive");
                    return Err(Stop::Io);
                }
            },
            None => r.read_buf(&mut buf).await?,
        };
        if read == 0 {
            let _ = w.shutdown().await;
            return Ok(());
        }
    }
}

/// A packet that may pass: its length, and the agent charged for it.
type Passed<'b> = (usize, Option<Cow<'b, str>>);

/// The next whole packet (after the CONNECT) at the start of `buf` if it
/// may pass; `None` until a whole one is there.
fn next_packet<'b>(acl: &Acl, buf: &'b [u8], max: usize) -> Result<Option<Passed<'b>>, Stop> {
    let Some(h) = packet::frame(buf, max)? else {
        return Ok(None);
    };
    let len = h.frame_length();
    let charge = check(acl, h, &buf[..len])?;
    Ok(Some((len, charge)))
}

/// Whether one packet may pass, and the agent it is charged to: every
/// PUBLISH, SUBSCRIBE and UNSUBSCRIBE (what touches rumqttd's router),
/// not the acks and pings. An UNSUBSCRIBE of an unbound client (no
/// enrolment, not an agent's client id) is charged to no one.
fn check<'f>(acl: &Acl, h: FixedHeader, frame: &'f [u8]) -> Result<Option<Cow<'f, str>>, Stop> {
    Ok(match packet::parse(h, frame)? {
        Packet::Publish { topic } => Some(Cow::Borrowed(acl.publish(topic)?)),
        Packet::Subscribe { filters } => {
            let mut charge = None;
            for f in &filters {
                let id = acl.subscribe(f)?;
                charge.get_or_insert_with(|| Cow::Owned(id.to_owned()));
            }
            charge
        }
        Packet::Unsubscribe => acl.agent().map(|a| Cow::Owned(a.to_owned())),
        Packet::Connect(_) => return Err(Refusal::Protocol("a second CONNECT".into()).into()),
        Packet::Other => None,
    })
}

/// Broker to client: the bytes as they come, flushed at once (a TLS
/// client's record must not wait for more). The buffer exists only while
/// there is something to copy: most agents hear from the broker once per
/// report, and hold no memory for it in between.
async fn pump_down<W>(r: &OwnedReadHalf, w: &mut W) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    loop {
        r.readable().await?;
        let mut buf = BytesMut::with_capacity(DOWN_CHUNK);
        match r.try_read_buf(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {
                w.write_all(&buf).await?;
                w.flush().await?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
