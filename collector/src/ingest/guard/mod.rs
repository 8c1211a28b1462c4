//! The MQTT guard: every agent's connection to the embedded broker passes
//! here (plain, and TLS once `tls_front` has terminated it). It reads the
//! client's packets, holds each connection to its agent's own topics
//! (`acl`) and to its agent's rate (a token bucket charged per PUBLISH,
//! SUBSCRIBE and UNSUBSCRIBE; when empty the client is not read), and
//! relays the bytes unchanged to rumqttd (`relay`). rumqttd listens on a
//! loopback port that only the guard and the collector's own client can
//! sign in to (`InternalAuth`).

pub mod acl;
pub mod packet;
mod relay;

use super::credentials::Credentials;
use super::rate::RateLimit;
use crate::limits::{AuthFailures, Budget, logs};
use crate::metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};

pub use acl::Refusal;

/// The user name the guard signs in to rumqttd with (its password is
/// [`InternalAuth`]'s, new at each start).
pub const GUARD_USER: &str = "sobre-guard";

/// Who may sign in to rumqttd's internal listener: the collector's own
/// client (its per-start password, `Credentials::own_mqtt_password`) and
/// the guard (a per-start password of its own, under [`GUARD_USER`]).
/// Agents' own credentials are checked by the guard, not by rumqttd: a
/// local user of the collector's host who finds the loopback port gets
/// nowhere without one of these two passwords, which never leave the
/// process.
#[derive(Clone)]
pub struct InternalAuth {
    own_client_id: String,
    own_password: String,
    guard_password: String,
}

impl std::fmt::Debug for InternalAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InternalAuth")
            .field("own_client_id", &self.own_client_id)
            .finish_non_exhaustive()
    }
}

impl InternalAuth {
    pub fn new(own_client_id: &str, own_password: &str) -> std::io::Result<InternalAuth> {
        Ok(InternalAuth {
            own_client_id: own_client_id.to_owned(),
            own_password: own_password.to_owned(),
            guard_password: crate::http::auth::random_token()?,
        })
    }

    /// rumqttd's connect check: (client id, user name, password).
    pub fn allows(&self, client_id: &str, user: &str, password: &str) -> bool {
        let ct = |a: &str, b: &str| crate::http::auth::ct_eq(a.as_bytes(), b.as_bytes());
        if client_id == self.own_client_id {
            return ct(password, &self.own_password);
        }
        user == GUARD_USER && ct(password, &self.guard_password)
    }
}

/// What the guard is told at start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// rumqttd's internal listener.
    pub broker: SocketAddr,
    pub auth: InternalAuth,
    /// `mqtt.max_packet_bytes`, as rumqttd applies it.
    pub max_packet_bytes: usize,
    /// `limits.max_envelopes_per_s` and `limits.burst`, per agent.
    pub per_s: f64,
    pub burst: f64,
    /// `listeners.mqtt_connect_timeout_s`: a client's CONNECT must come
    /// within this.
    pub connect_timeout: Duration,
    /// Where failed sign-ins are counted per source (none in unit tests).
    pub failures: Option<Arc<AuthFailures>>,
    /// The open-files budget: an admitted client costs two more
    /// descriptors (the guard's connection to rumqttd and rumqttd's end of
    /// it, both in this process).
    pub budget: Option<Budget>,
}

pub struct Guard {
    settings: Settings,
    credentials: Arc<Credentials>,
    metrics: Arc<Metrics>,
    /// Per agent id, shared by all its connections: reconnecting does
    /// not refill it. Its own buckets, not ingest's: a packet let through
    /// here is charged again, after its MAC, by `IngestCtx::admit`.
    rate: RateLimit,
}

impl Guard {
    pub fn new(settings: Settings, credentials: Arc<Credentials>, metrics: Arc<Metrics>) -> Guard {
        Guard {
            rate: RateLimit::new(settings.per_s, settings.burst),
            settings,
            credentials,
            metrics,
        }
    }

    /// Serves one client connection (plain TCP, or TLS already
    /// terminated) until either side closes or the client breaks a rule.
    pub async fn relay<S>(self: Arc<Self>, client: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin,
    {
        if let Err(r) = relay::run(&self, client, peer).await {
            let reason = r.why.label();
            self.metrics.mqtt_refused(reason);
            if let (Refusal::NotEnrolled, Some(f)) = (&r.why, &self.settings.failures) {
                f.record(peer.ip(), "mqtt");
            }
            // One line per reason and period, whatever the client id: a
            // stranger varying it must not fill the disk.
            if let Some(more) = logs().due(("mqtt", reason), Instant::now()) {
                tracing::warn!(
                    %peer,
                    client_id = ?r.client_id,
                    reason,
                    "MQTT client refused by the guard: {}{more}",
                    r.why
                );
            }
        }
    }

    /// A packet of `agent` waits for a token; `log` as in `RateLimit`.
    fn throttled(&self, agent: &str, log: Option<u64>) {
        self.metrics.mqtt_throttled.fetch_add(1, Relaxed);
        if let Some(n) = log {
            tracing::warn!(
                transport = "mqtt",
                agent,
                reason = "rate_limited",
                held = n,
                "agent {agent:?} exceeds limits.max_envelopes_per_s; its MQTT connection is not read until a token is back ({n} packets held back since the last line)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_internal_listener_admits_the_collector_and_the_guard_only() {
        let auth = InternalAuth::new("sobre-collector", "own-pw").expect("random");
        let guard_pw = auth.guard_password.clone();
        assert!(auth.allows("sobre-collector", "sobre-collector", "own-pw"));
        assert!(!auth.allows("sobre-collector", "sobre-collector", "wrong"));
        // The guard's password opens no door for the collector's id.
        assert!(!auth.allows("sobre-collector", GUARD_USER, &guard_pw));
        assert!(auth.allows("sobre-agent-a1", GUARD_USER, &guard_pw));
        assert!(!auth.allows("sobre-agent-a1", "a1", &guard_pw));
        assert!(!auth.allows("sobre-agent-a1", GUARD_USER, "own-pw"));
        assert!(!auth.allows("sobre-agent-a1", "", ""));
        assert!(!format!("{auth:?}").contains(&guard_pw), "never printed");
    }
}
