//! What campaigns send, on every dispatch pass: the start and end of
//! campaigns whose dates have come, START to hosts in scope with no
//! baseline yet (again on each reconnection until one arrives), END to
//! hosts with a baseline and no final count, and the campaign nudges
//! (the day before, and once during). Hosts outside a campaign's scope
//! get nothing.

use super::{Campaign, CampaignError, Host, State};
use crate::db::Db;
use crate::ingest::routes::Routes;
use crate::nudge::text::{gb, num};
use crate::store::campaigns::{self as db, HostRow};
use sobre_proto::v1::{CampaignAction, CampaignCommand, Command, Downlink, command, downlink};
use std::collections::HashMap;

const DAY_MS: i64 = 86_400_000;

/// What one pass sent.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Sent {
    pub commands: usize,
    pub nudges_queued: usize,
}

fn command(c: &Campaign, action: CampaignAction) -> Downlink {
    Downlink {
        mac: Vec::new(),
        body: Some(downlink::Body::Command(Command {
            kind: Some(command::Kind::Campaign(CampaignCommand {
                campaign_id: c.id.clone(),
                action: action as i32,
                ends_at_ms: c.ends_at_ms,
                rescan_interval_s: c.rescan_interval_s,
            })),
        })),
    }
}

/// The next command a host needs, if any.
fn needs(c: &Campaign, row: Option<&HostRow>) -> Option<CampaignAction> {
    let (baseline, done, error) = row.map_or((false, false, false), |r| {
        (r.baseline_ms.is_some(), r.is_final, r.error.is_some())
    });
    match c.state {
        State::Running if !baseline && !error && !done => Some(CampaignAction::Start),
        State::Ended if baseline && !done => Some(CampaignAction::End),
        _ => None,
    }
}

/// One pass over every live campaign. Only the cluster's leader (`lead`)
/// moves campaigns along their dates and queues nudges; every collector
/// sends the commands its routes can carry.
pub fn pass(
    conn: &dyn Db,
    routes: &Routes,
    lead: bool,
    lang: &str,
    resend_after_ms: i64,
    now_ms: i64,
) -> Result<Sent, CampaignError> {
    if lead {
        db::advance(conn, now_ms)?;
    }
    let hosts = db::hosts(conn)?;
    // Each nudge is queued once: known ones cost no query per pass.
    let queued = db::campaign_nudge_ids(conn)?;
    let mut sent = Sent::default();
    for c in db::list(conn)? {
        if c.state == State::Archived {
            continue;
        }
        let rows: HashMap<String, HostRow> = db::host_rows(conn, &c.id)?
            .into_iter()
            .map(|r| (r.agent_id.clone(), r))
            .collect();
        for h in hosts.iter().filter(|h| c.scope.contains(h)) {
            let row = rows.get(&h.agent_id);
            if lead {
                sent.nudges_queued += nudge(conn, &queued, &c, h, lang, now_ms)? as usize;
            }
            let Some(action) = needs(&c, row) else {
                continue;
            };
            let recent = row
                .and_then(|r| r.command_sent_ms)
                .is_some_and(|t| now_ms - t < resend_after_ms);
            if !h.online || recent {
                continue;
            }
            if routes.send(&h.agent_id, h.mqtt, command(&c, action)) {
                db::mark_command_sent(conn, &c.id, &h.agent_id, now_ms)?;
                tracing::info!(campaign = %c.id, agent = %h.agent_id, ?action, "campaign command sent");
                sent.commands += 1;
            }
        }
    }
    Ok(sent)
}

/// Queues the campaign nudge due for this host now, if any: once in the
/// day before the start, once while the campaign runs.
fn nudge(
    conn: &dyn Db,
    queued: &std::collections::HashSet<String>,
    c: &Campaign,
    h: &Host,
    lang: &str,
    now_ms: i64,
) -> Result<bool, CampaignError> {
    let when = match c.state {
        State::Planned if c.starts_at_ms - now_ms <= DAY_MS => "before",
        State::Running => "during",
        _ => return Ok(false),
    };
    let id = format!("campaign-{when}-{}-{}", c.id, h.agent_id);
    if queued.contains(&id) {
        return Ok(false);
    }
    let dups = db::duplicate_bytes(conn, &h.agent_id)?;
    let t = text(c, when, dups, lang, now_ms);
    Ok(db::queue_nudge(
        conn,
        &id,
        &h.agent_id,
        lang,
        &t.title,
        &t.body,
        &t.action,
        now_ms,
    )?)
}

/// The words of a campaign nudge; the numbers come from the host's latest
/// storage summary.
pub fn text(
    c: &Campaign,
    when: &str,
    duplicate_bytes: u64,
    lang: &str,
    now_ms: i64,
) -> crate::nudge::text::Text {
    let fr = lang == "fr";
    let hours = ((c.starts_at_ms - now_ms) as f64 / 3_600_000.0).max(1.0);
    let title = match (when, fr) {
        ("before", true) => format!("{} commence dans {} h", c.name, num(hours.round(), lang)),
        ("before", false) => format!("{} starts in {} h", c.name, num(hours.round(), lang)),
        (_, true) => format!("{} a commencé", c.name),
        (_, false) => format!("{} is on", c.name),
    };
    let dup = if duplicate_bytes >= 100_000_000 {
        Some(gb(duplicate_bytes, lang))
    } else {
        None
    };
    let body = match (dup, fr) {
        (Some(d), true) => format!(
            "Vous avez {d} de doublons sur ce poste. Chaque fichier supprimé pendant la \
             campagne est compté (un déplacement ne compte pas)."
        ),
        (Some(d), false) => format!(
            "You have {d} of duplicates on this machine. Every file deleted during the \
             campaign is counted (a move is not)."
        ),
        (None, true) => "Faites le tri dans vos fichiers : chaque fichier supprimé pendant la \
                         campagne est compté (un déplacement ne compte pas)."
            .into(),
        (None, false) => "Sort out your files: every file deleted during the campaign is \
                          counted (a move is not)."
            .into(),
    };
    crate::nudge::text::Text {
        title,
        body,
        action: "sobre-agent cleanup".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::Scope;

    fn campaign(state: State) -> Campaign {
        Campaign {
            id: "cud".into(),
            name: "Clean Up Day".into(),
            starts_at_ms: 10 * DAY_MS,
            ends_at_ms: 11 * DAY_MS,
            scope: Scope::default(),
            factor: "ccf-ssd".into(),
            state,
            rescan_interval_s: 3600,
            created_ms: 0,
            started_ms: None,
            ended_ms: None,
        }
    }

    #[test]
    fn start_until_a_baseline_then_end_until_a_final_count() {
        let running = campaign(State::Running);
        assert_eq!(needs(&running, None), Some(CampaignAction::Start));
        let with_base = HostRow {
            baseline_ms: Some(1),
            ..Default::default()
        };
        assert_eq!(needs(&running, Some(&with_base)), None);
        let failed = HostRow {
            error: Some("scans disabled".into()),
            ..Default::default()
        };
        assert_eq!(
            needs(&running, Some(&failed)),
            None,
            "no resend to a host that cannot"
        );
        let ended = campaign(State::Ended);
        assert_eq!(needs(&ended, Some(&with_base)), Some(CampaignAction::End));
        assert_eq!(needs(&ended, None), None, "no baseline: nothing to end");
        let done = HostRow {
            is_final: true,
            ..with_base
        };
        assert_eq!(needs(&ended, Some(&done)), None);
        assert_eq!(needs(&campaign(State::Planned), None), None);
    }

    #[test]
    fn nudge_texts_carry_the_hosts_duplicates() {
        let c = campaign(State::Planned);
        let t = text(&c, "before", 12_000_000_000, "en", 9 * DAY_MS);
        assert_eq!(t.title, "Clean Up Day starts in 24 h");
        assert!(t.body.contains("12 GB of duplicates"), "{}", t.body);
        let t = text(&c, "during", 12_400_000_000, "fr", 10 * DAY_MS);
        assert_eq!(t.title, "Clean Up Day a commencé");
        assert!(t.body.contains("12 Go de doublons"), "{}", t.body);
        let t = text(&c, "during", 0, "en", 10 * DAY_MS);
        assert!(!t.body.contains("duplicates"), "{}", t.body);
    }
}
