//! Topic ACL of one MQTT connection: the agent it speaks for, and what it
//! may publish (its own `up` and `status`; its last will on its own
//! `status`) and subscribe to (its own `down`, exactly). Pure decisions,
//! no I/O.

use sobre_proto::topics::{self, Kind};

/// Why the guard turned a client away. The label is the `reason` of
/// `sobre_mqtt_refused_total`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error(
        "not an enrolled agent (or a revoked one): client id, user name and key-derived password do not match"
    )]
    NotEnrolled,
    #[error("the client id is the collector's own")]
    ReservedClientId,
    #[error("its last will is not on its own status topic ({topic:?})")]
    Will { topic: String },
    #[error("it published outside its own topics ({topic:?})")]
    Publish { topic: String },
    #[error("it subscribed outside its own downlink ({filter:?})")]
    Subscribe { filter: String },
    #[error("it broke the protocol: {0}")]
    Protocol(String),
}

impl Refusal {
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::NotEnrolled => "not_enrolled",
            Refusal::ReservedClientId => "reserved_client_id",
            Refusal::Will { .. } => "acl_will",
            Refusal::Publish { .. } => "acl_publish",
            Refusal::Subscribe { .. } => "acl_subscribe",
            Refusal::Protocol(_) => "protocol",
        }
    }
}

/// The agent a connection speaks for, if it is bound to one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    agent: Option<String>,
}

impl Acl {
    /// An enrolled agent, proven by its password (`Credentials::
    /// mqtt_connect_ok`): bound to its id.
    pub fn enrolled(agent_id: &str) -> Acl {
        Acl {
            agent: Some(agent_id.to_owned()),
        }
    }

    /// Without `security.require_enrolment` nothing is proven. A client id
    /// of the agent form (`sobre-agent-{id}`) still binds the connection to
    /// that id, as for an enrolled agent. Any other client id (the load
    /// generator, a test's history importer) is bound to no agent: it may
    /// use the agent topics of any agent id, exactly (no wildcard, nothing
    /// outside them), each packet charged to the agent its topic names.
    pub fn unproven(client_id: &str) -> Acl {
        let agent = client_id
            .strip_prefix("sobre-agent-")
            .filter(|id| topics::valid_agent_id(id))
            .map(str::to_owned);
        Acl { agent }
    }

    /// The agent this connection is bound to.
    pub fn agent(&self) -> Option<&str> {
        self.agent.as_deref()
    }

    /// The agent id of `topic` if it is `sobre/v1/agents/{id}/{kind}` with
    /// one of `kinds`, and `id` this connection's agent (any, unbound).
    fn own<'t>(&self, topic: &'t str, kinds: &[Kind]) -> Option<&'t str> {
        let (id, kind) = topics::parse(topic)?;
        let bound = self.agent.as_deref().is_none_or(|a| a == id);
        (kinds.contains(&kind) && bound).then_some(id)
    }

    /// A PUBLISH: only on the agent's own `up` and `status`. The agent
    /// to charge.
    pub fn publish<'t>(&self, topic: &'t str) -> Result<&'t str, Refusal> {
        self.own(topic, &[Kind::Up, Kind::Status])
            .ok_or_else(|| Refusal::Publish {
                topic: truncate(topic),
            })
    }

    /// A last will: only on the agent's own `status`.
    pub fn will(&self, topic: &str) -> Result<(), Refusal> {
        match self.own(topic, &[Kind::Status]) {
            Some(_) => Ok(()),
            None => Err(Refusal::Will {
                topic: truncate(topic),
            }),
        }
    }

    /// One filter of a SUBSCRIBE: only the agent's own `down`, exactly
    /// (no wildcard). The agent to charge.
    pub fn subscribe<'t>(&self, filter: &'t str) -> Result<&'t str, Refusal> {
        self.own(filter, &[Kind::Down])
            .ok_or_else(|| Refusal::Subscribe {
                filter: truncate(filter),
            })
    }
}

/// Client-chosen text, bounded before it reaches a log line.
pub fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_agent_uses_its_own_topics_only() {
        let a = Acl::enrolled("a1");
        assert_eq!(a.publish(&topics::up("a1")), Ok("a1"));
        assert_eq!(a.publish(&topics::status("a1")), Ok("a1"));
        assert_eq!(a.will(&topics::status("a1")), Ok(()));
        assert_eq!(a.subscribe(&topics::down("a1")), Ok("a1"));
        for t in [
            topics::up("a2"),
            topics::down("a1"),
            topics::status("a2"),
            "sobre/v1/agents/a1/up/".into(),
            "sobre/v1/agents/+/up".into(),
            "sobre/v1/agents/#".into(),
            "sobre/v2/agents/a1/up".into(),
            "other".into(),
            String::new(),
        ] {
            assert!(a.publish(&t).is_err(), "{t}");
        }
        for f in [
            topics::down("a2"),
            topics::up("a1"),
            topics::ALL_UP.into(),
            "sobre/v1/agents/+/down".into(),
            "sobre/v1/agents/a1/#".into(),
            "#".into(),
            "$share/g/sobre/v1/agents/a1/down".into(),
        ] {
            assert!(a.subscribe(&f).is_err(), "{f}");
        }
        assert!(a.will(&topics::up("a1")).is_err());
        assert!(a.will(&topics::status("a2")).is_err());
    }

    #[test]
    fn without_enrolment_an_agent_client_id_still_binds() {
        let a = Acl::unproven("sobre-agent-a1");
        assert_eq!(a.agent(), Some("a1"));
        assert!(a.publish(&topics::up("a2")).is_err());
        assert!(a.subscribe(&topics::down("a2")).is_err());
        // An invalid id after the prefix binds nothing.
        assert_eq!(Acl::unproven("sobre-agent-a/b").agent(), None);
        assert_eq!(Acl::unproven("sobre-agent-").agent(), None);
        // Other client ids: any agent's topics, charged to that agent;
        // nothing else.
        let l = Acl::unproven("sobre-loadgen-x");
        assert_eq!(l.agent(), None);
        assert_eq!(l.publish(&topics::up("x7")), Ok("x7"));
        assert_eq!(l.publish(&topics::status("x8")), Ok("x8"));
        assert_eq!(l.subscribe(&topics::down("x7")), Ok("x7"));
        assert!(l.publish(&topics::down("x7")).is_err());
        assert!(l.publish("elsewhere").is_err());
        assert!(l.subscribe(topics::ALL_UP).is_err());
        assert!(l.subscribe("#").is_err());
    }

    proptest! {
        /// Whatever the topic, an agent's connection is allowed only the
        /// exact topics built for its own id.
        #[test]
        fn never_a_foreign_topic(topic in "\\PC{0,80}", id in "[A-Za-z0-9._-]{1,8}") {
            let a = Acl::enrolled(&id);
            if a.publish(&topic).is_ok() {
                prop_assert!(topic == topics::up(&id) || topic == topics::status(&id), "{topic}");
            }
            if a.subscribe(&topic).is_ok() {
                prop_assert_eq!(&topic, &topics::down(&id));
            }
            if a.will(&topic).is_ok() {
                prop_assert_eq!(&topic, &topics::status(&id));
            }
            let b = Acl::unproven(&format!("sobre-agent-{id}"));
            prop_assert_eq!(b.publish(&topic).is_ok(), a.publish(&topic).is_ok());
            prop_assert_eq!(b.subscribe(&topic).is_ok(), a.subscribe(&topic).is_ok());
        }

        /// Near misses of real topics (the generator above rarely builds
        /// one): other ids, kinds, separators and wildcards.
        #[test]
        fn never_a_near_miss(
            id in "[a-c]{1,2}",
            other in "[a-c+#/]{0,3}",
            kind in prop::sample::select(vec!["up", "down", "status", "up/", "+", "#", ""]),
        ) {
            let topic = format!("sobre/v1/agents/{other}/{kind}");
            let a = Acl::enrolled(&id);
            let own = other == id;
            prop_assert_eq!(a.publish(&topic).is_ok(), own && (kind == "up" || kind == "status"));
            prop_assert_eq!(a.subscribe(&topic).is_ok(), own && kind == "down");
        }

        /// Unbound, only exact agent topics, charged to the agent named.
        #[test]
        fn an_unbound_client_stays_on_agent_topics(topic in "\\PC{0,60}") {
            let a = Acl::unproven("tool");
            if let Ok(id) = a.publish(&topic) {
                prop_assert!(topic == topics::up(id) || topic == topics::status(id), "{topic}");
            }
            if let Ok(id) = a.subscribe(&topic) {
                prop_assert_eq!(&topic, &topics::down(id));
            }
        }
    }
}
