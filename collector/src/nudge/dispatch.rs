//! Delivery of queued nudges over the downlink, outside quiet hours, to
//! agents that are online; resent until the agent's receipt arrives.

use crate::db::Db;
use crate::ingest::routes::Routes;
use crate::store::StoreError;
use crate::store::findings::{self, StoredNudge};
use sobre_proto::v1::{Downlink, Nudge, downlink};

use super::NudgeConfig;

fn downlink(n: &StoredNudge) -> Downlink {
    Downlink {
        mac: Vec::new(),
        body: Some(downlink::Body::Nudge(Nudge {
            id: n.id.clone(),
            kind: n.kind.clone(),
            title: n.title.clone(),
            body: n.body.clone(),
            action: n.action.clone(),
            created_at_ms: n.created_ms,
            lang: n.lang.clone(),
        })),
    }
}

/// Sends what is due; returns how many nudges were handed over.
pub fn dispatch(
    conn: &dyn Db,
    cfg: &NudgeConfig,
    utc_offset_hours: i64,
    routes: &Routes,
    now_ms: i64,
) -> Result<usize, StoreError> {
    if !cfg.enabled || cfg.quiet(now_ms, utc_offset_hours) {
        return Ok(0);
    }
    let mut sent = 0;
    for n in findings::pending(conn, now_ms - cfg.resend_after_s * 1000)? {
        if routes.send(&n.agent_id, n.mqtt_online, downlink(&n)) {
            findings::mark_sent(conn, &n.id, now_ms)?;
            tracing::info!(agent = %n.agent_id, kind = %n.kind, nudge = %n.id, "nudge sent");
            sent += 1;
        }
    }
    Ok(sent)
}
