//! MQTT topic layout shared by agent and collector (`sobre/v1/agents/{id}/...`).

/// Prefix of every v1 topic.
pub const PREFIX: &str = "sobre/v1/agents";

/// Longest agent id accepted anywhere.
pub const MAX_AGENT_ID_LEN: usize = 64;

/// Uplink: the agent publishes Envelopes here (QoS 1).
pub fn up(agent_id: &str) -> String {
    format!("{PREFIX}/{agent_id}/up")
}

/// Downlink: the collector publishes Downlinks here (QoS 1).
pub fn down(agent_id: &str) -> String {
    format!("{PREFIX}/{agent_id}/down")
}

/// Presence: retained `online`, last will `offline`.
pub fn status(agent_id: &str) -> String {
    format!("{PREFIX}/{agent_id}/status")
}

/// Subscription filter for every agent's uplink.
pub const ALL_UP: &str = "sobre/v1/agents/+/up";
/// Subscription filter for every agent's presence.
pub const ALL_STATUS: &str = "sobre/v1/agents/+/status";

/// Payloads of the status topic.
pub const ONLINE: &[u8] = b"online";
pub const OFFLINE: &[u8] = b"offline";

/// What kind of topic a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Up,
    Down,
    Status,
}

/// Splits `sobre/v1/agents/{id}/{kind}` into id and kind; `None` for any
/// other topic (including other protocol versions).
pub fn parse(topic: &str) -> Option<(&str, Kind)> {
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix('/')?;
    let (id, kind) = rest.split_once('/')?;
    if !valid_agent_id(id) {
        return None;
    }
    let kind = match kind {
        "up" => Kind::Up,
        "down" => Kind::Down,
        "status" => Kind::Status,
        _ => return None,
    };
    Some((id, kind))
}

/// An agent id is 1 to 64 characters of `[A-Za-z0-9._-]`: safe in topics,
/// paths and URLs without escaping.
pub fn valid_agent_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_AGENT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        assert_eq!(parse(&up("host-1")), Some(("host-1", Kind::Up)));
        assert_eq!(parse(&down("a.b_c")), Some(("a.b_c", Kind::Down)));
        assert_eq!(parse(&status("x")), Some(("x", Kind::Status)));
    }

    #[test]
    fn foreign_topics_are_refused() {
        assert_eq!(parse("sobre/v2/agents/x/up"), None);
        assert_eq!(parse("sobre/v1/agents/x/other"), None);
        assert_eq!(parse("sobre/v1/agents/x/y/up"), None);
        assert_eq!(parse("sobre/v1/agents//up"), None);
        assert_eq!(parse("sobre/v1/agents/a+b/up"), None);
    }

    #[test]
    fn agent_id_length_is_bounded() {
        assert!(valid_agent_id(&"a".repeat(64)));
        assert!(!valid_agent_id(&"a".repeat(65)));
    }
}
