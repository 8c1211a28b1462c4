//! Envelopes agents dropped from their spools (full, or damaged and
//! recovered), made visible on the collector: each stored envelope's
//! footprint carries the agent's running `spool_dropped`, and its rises
//! are added to `sobre_agent_spool_dropped_total` with one warning each.

use std::collections::HashMap;

use sobre_proto::v1::Envelope;

use crate::args;
use crate::db::DbError;
use crate::store::Conn;

/// The highest `spool_dropped` each agent reported.
#[derive(Debug, Default)]
pub(super) struct SpoolDrops {
    highest: HashMap<String, u64>,
}

impl SpoolDrops {
    /// Starts from what the store kept of each agent's latest footprint,
    /// so a collector restart does not count old drops again.
    pub(super) fn load(conn: &Conn) -> Result<SpoolDrops, DbError> {
        let rows = conn.query_map(
            "SELECT agent_id, footprint FROM agents WHERE footprint IS NOT NULL",
            args![],
            |r| Ok((r.get::<String>(0)?, r.get::<Option<String>>(1)?)),
        )?;
        let highest = rows
            .into_iter()
            .filter_map(|(id, fp)| {
                let v: serde_json::Value = serde_json::from_str(fp.as_deref()?).ok()?;
                Some((id, v.get("spool_dropped")?.as_u64()?))
            })
            .collect();
        Ok(SpoolDrops { highest })
    }

    /// Notes a committed envelope; returns by how much its agent's count
    /// rose. Envelopes may arrive out of order (resends), so only a new
    /// highest value counts; a counter that went back (the agent lost its
    /// spool state) is taken up again once it passes the old highest.
    pub(super) fn observe(&mut self, env: &Envelope) -> u64 {
        let Some(reported) = env.footprint.as_ref().map(|f| f.spool_dropped) else {
            return 0;
        };
        let highest = self.highest.entry(env.agent_id.clone()).or_insert(0);
        let rise = reported.saturating_sub(*highest);
        if rise > 0 {
            *highest = reported;
            tracing::warn!(
                agent = %env.agent_id,
                dropped = rise,
                spool_dropped = reported,
                "agent reports envelopes dropped from its spool (full, or damaged on its disk): \
                 their data is lost; see the agent's log"
            );
        }
        rise
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sobre_proto::v1::AgentFootprint;

    fn env(agent: &str, dropped: Option<u64>) -> Envelope {
        Envelope {
            agent_id: agent.into(),
            footprint: dropped.map(|d| AgentFootprint {
                spool_dropped: d,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_rises_count_and_each_once() {
        let mut d = SpoolDrops::default();
        assert_eq!(d.observe(&env("a", Some(0))), 0);
        assert_eq!(d.observe(&env("a", Some(3))), 3);
        assert_eq!(d.observe(&env("a", Some(3))), 0);
        assert_eq!(d.observe(&env("a", Some(1))), 0, "an older envelope resent");
        assert_eq!(d.observe(&env("a", None)), 0);
        assert_eq!(d.observe(&env("a", Some(5))), 2);
        assert_eq!(
            d.observe(&env("b", Some(4))),
            4,
            "a new agent's drops count"
        );
    }
}
