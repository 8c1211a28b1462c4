//! This collector's place among others sharing one PostgreSQL store: its
//! node name (written on the samples it stores, so its own sink sends
//! them) and whether it holds the leader lease, under which the periodic
//! work runs (detection, campaign dispatch, MQTT nudges, the sink's
//! fleet-wide points). On SQLite there is one collector: always leader.

use crate::store::{self, lease};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Name of the lease the periodic work runs under.
pub const LEADER: &str = "leader";

#[derive(Debug, Clone)]
pub struct Cluster {
    /// This collector's name among the others (config `cluster.node`).
    pub node: String,
    /// True on PostgreSQL: other collectors may share the store.
    pub shared: bool,
    leader: Arc<AtomicBool>,
    /// Woken when this collector takes the lease, so the periodic work
    /// starts at once rather than at its next interval.
    pub took_lead: Arc<tokio::sync::Notify>,
}

impl Cluster {
    /// One collector alone on its store: always the leader.
    pub fn single(node: String) -> Cluster {
        Cluster {
            node,
            shared: false,
            leader: Arc::new(AtomicBool::new(true)),
            took_lead: Arc::default(),
        }
    }

    /// One of several: leader only once [`lease_loop`] took the lease.
    pub fn shared(node: String) -> Cluster {
        Cluster {
            node,
            shared: true,
            leader: Arc::new(AtomicBool::new(false)),
            took_lead: Arc::default(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Relaxed)
    }

    /// The node name to write on samples: only when the store is shared.
    pub fn sample_node(&self) -> Option<String> {
        self.shared.then(|| self.node.clone())
    }
}

/// Takes and renews the leader lease every third of `lease`, until
/// `cancel`; then gives it up so another collector need not wait. A
/// collector that cannot reach the store stops acting as leader at once:
/// it cannot know whether its lease is still its own.
pub async fn lease_loop(
    cluster: Cluster,
    location: store::Location,
    lease: Duration,
    cancel: CancellationToken,
) {
    let ttl_ms = lease.as_millis() as i64;
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let conn: Arc<std::sync::Mutex<Option<store::Conn>>> = Arc::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        let (c, node, loc) = (conn.clone(), cluster.node.clone(), location.clone());
        let held = tokio::task::spawn_blocking(move || {
            let mut slot = c.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(loc.open()?);
            }
            let db = slot.as_deref().expect("invariant: filled just above");
            let r = lease::acquire(db, LEADER, &node, crate::ingest::now_ms(), ttl_ms);
            if r.is_err() {
                // Reopened next time.
                *slot = None;
            }
            Ok::<_, store::StoreError>(r?)
        })
        .await;
        let held = match held {
            Ok(Ok(h)) => h,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot renew the leader lease; periodic work paused here");
                false
            }
            Err(_) => false,
        };
        let was = cluster.leader.swap(held, Relaxed);
        if held && !was {
            cluster.took_lead.notify_waiters();
        }
        if held != was {
            tracing::info!(node = %cluster.node, leader = held, "leader lease {}", if held { "taken: this collector runs the periodic work" } else { "lost" });
        }
    }
    cluster.leader.store(false, Relaxed);
    let (c, node) = (conn.clone(), cluster.node.clone());
    let _ = tokio::task::spawn_blocking(move || {
        let slot = c.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = slot.as_deref()
            && let Err(e) = lease::release(db, LEADER, &node)
        {
            tracing::warn!(error = %e, "could not give up the leader lease; it expires by itself");
        }
    })
    .await;
}

/// Reads the agents' credentials again every `every`: another collector
/// may have enrolled or revoked one (a revocation reaches every collector
/// within this time).
pub async fn refresh_credentials(
    credentials: Arc<crate::ingest::credentials::Credentials>,
    location: store::Location,
    every: Duration,
    cancel: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let conn: Arc<std::sync::Mutex<Option<store::Conn>>> = Arc::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (c, creds, loc) = (conn.clone(), credentials.clone(), location.clone());
        let r = tokio::task::spawn_blocking(move || {
            let mut slot = c.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(loc.open().map_err(|e| e.to_string())?);
            }
            let db = slot.as_deref().expect("invariant: filled just above");
            let r = creds.reload(db).map_err(|e| e.to_string());
            if r.is_err() {
                *slot = None;
            }
            r
        })
        .await;
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "cannot reload the agents' credentials; keeping the ones in memory");
        }
    }
}
