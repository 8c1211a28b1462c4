//! Agent identity: one-time enrolment tokens (issued by an admin, stored
//! as hashes), the key each enrolled agent MACs its envelopes with, and
//! revocation. Keys live in the store and in a cache here, so checking an
//! envelope costs one encode and one keyed BLAKE3, no query.

use super::Reject;
use crate::args;
use crate::db::{Db, DbError};
use prost::Message;
use sobre_proto::v1::Envelope;
use std::collections::HashMap;
use std::sync::RwLock;

#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("invalid agent id {0:?}: 1 to 64 of A-Z a-z 0-9 . _ -")]
    AgentId(String),
    #[error(
        "enrolment token not valid: unknown, already used, expired, or issued for another agent; ask an admin for a new one (sobre-collector enrol --agent ID)"
    )]
    Token,
    #[error(
        "agent {0:?} is already enrolled: a token for any id cannot replace its key; an admin re-enrols it with a token bound to its id (sobre-collector enrol --agent ID)"
    )]
    Taken(String),
    #[error("this enrolment token has been revoked by an admin; ask for a new one")]
    TokenRevoked,
    #[error("this enrolment token has expired; ask an admin for a new one")]
    TokenExpired,
    #[error(
        "this enrolment token has been used {0} times, its limit; ask an admin for another (sobre-collector enrol --group G --uses N)"
    )]
    TokenUsedUp(i64),
    #[error("no enrolment token {0:?}; GET /api/v1/enrolments lists them")]
    UnknownToken(String),
    #[error("invalid enrolment token request: {0}")]
    Spec(String),
    #[error("no agent {0:?} has a credential")]
    Unknown(String),
    #[error("cannot generate a key: {0}")]
    Random(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl EnrolError {
    /// A refusal of what the caller sent (a bad id or token), not a fault
    /// of the collector.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, EnrolError::Random(_) | EnrolError::Store(_))
    }
}

impl From<DbError> for EnrolError {
    fn from(e: DbError) -> Self {
        EnrolError::Store(e.into())
    }
}

#[derive(Debug, Clone, Copy)]
enum Cred {
    Key([u8; 32]),
    Revoked,
}

/// The credentials in force, and whether envelopes must carry a MAC.
#[derive(Debug)]
pub struct Credentials {
    required: bool,
    creds: RwLock<HashMap<String, Cred>>,
    /// The collector's own password on the embedded broker, new at each
    /// start (it never leaves the process).
    own_mqtt_password: String,
    /// Bumped by every change made here, so that a reload that read the
    /// store before the change does not undo it.
    local_changes: std::sync::atomic::AtomicU64,
}

/// The MQTT client id an agent uses (see the agent's MQTT transport).
pub fn agent_client_id(agent_id: &str) -> String {
    format!("sobre-agent-{agent_id}")
}

impl Credentials {
    /// Loads every credential from the store.
    pub fn load(conn: &dyn Db, required: bool) -> Result<Credentials, EnrolError> {
        Ok(Credentials {
            required,
            creds: RwLock::new(read_all(conn)?),
            own_mqtt_password: crate::http::auth::random_token()?,
            local_changes: Default::default(),
        })
    }

    /// Reads the credentials again (a cluster: another collector may have
    /// enrolled or revoked an agent). Returns how many are in force.
    pub fn reload(&self, conn: &dyn Db) -> Result<usize, EnrolError> {
        use std::sync::atomic::Ordering::SeqCst;
        let before = self.local_changes.load(SeqCst);
        let fresh = read_all(conn)?;
        let n = fresh.values().filter(|c| matches!(c, Cred::Key(_))).count();
        if let Ok(mut m) = self.creds.write()
            && self.local_changes.load(SeqCst) == before
        {
            // (Otherwise an enrolment or revocation made here since the
            // read is newer than it: the next reload picks both up.)
            *m = fresh;
        }
        Ok(n)
    }

    pub fn required(&self) -> bool {
        self.required
    }

    /// The collector's own password on the embedded broker.
    pub fn own_mqtt_password(&self) -> &str {
        &self.own_mqtt_password
    }

    /// Whether the embedded broker lets this MQTT connection in: the
    /// collector's own client (its id and password), or an enrolled,
    /// unrevoked agent under its own client id with the password derived
    /// from its key (`sobre_proto::mac::mqtt_password`). Without
    /// `required`, everyone may connect (reports are still checked).
    pub fn mqtt_connect_ok(
        &self,
        own_client_id: &str,
        client_id: &str,
        user: &str,
        password: &str,
    ) -> bool {
        if !self.required {
            return true;
        }
        let ct = |a: &str, b: &str| crate::http::auth::ct_eq(a.as_bytes(), b.as_bytes());
        if client_id == own_client_id {
            return ct(password, &self.own_mqtt_password);
        }
        let Some(Cred::Key(key)) = self.creds.read().ok().and_then(|m| m.get(user).copied()) else {
            return false;
        };
        client_id == agent_client_id(user) && ct(password, &sobre_proto::mac::mqtt_password(&key))
    }

    /// Whether `agent_id` may send at all: it has a credential in force,
    /// or enrolment is not required.
    pub fn may_send(&self, agent_id: &str) -> bool {
        let cred = self
            .creds
            .read()
            .ok()
            .and_then(|m| m.get(agent_id).copied());
        match cred {
            Some(Cred::Key(_)) => true,
            Some(Cred::Revoked) => false,
            None => !self.required,
        }
    }

    /// Checks an envelope's MAC against its agent's key. Without
    /// `required`, envelopes of agents with no credential pass (a MAC that
    /// is present is still checked).
    pub fn verify(&self, mut env: Envelope) -> Result<Envelope, Reject> {
        let cred = self
            .creds
            .read()
            .ok()
            .and_then(|m| m.get(&env.agent_id).copied());
        let key = match cred {
            Some(Cred::Key(k)) => k,
            Some(Cred::Revoked) => return Err(Reject::Revoked(env.agent_id)),
            None if self.required => return Err(Reject::Unenrolled(env.agent_id)),
            None => return Ok(env),
        };
        // The agent's side: `sobre_proto::mac::sign`.
        let mac = std::mem::take(&mut env.mac);
        let want = blake3::keyed_hash(&key, &env.encode_to_vec());
        // blake3::Hash compares in constant time.
        match <[u8; 32]>::try_from(mac.as_slice()) {
            Ok(m) if blake3::Hash::from(m) == want => Ok(env),
            _ => Err(Reject::BadMac(env.agent_id)),
        }
    }

    /// Signs a downlink for `agent_id` with its key (unsigned when the
    /// agent has none: it is not enrolled and checks nothing).
    pub fn sign(&self, agent_id: &str, dl: &mut sobre_proto::v1::Downlink) {
        let key = match self
            .creds
            .read()
            .ok()
            .and_then(|m| m.get(agent_id).copied())
        {
            Some(Cred::Key(k)) => k,
            _ => return,
        };
        dl.mac.clear();
        dl.mac = blake3::keyed_hash(&key, &dl.encode_to_vec())
            .as_bytes()
            .to_vec();
    }

    /// Issues a one-time token, for one agent id or any; returns it (it is
    /// shown once, only its hash is kept). Tokens for many uses:
    /// [`super::enrol_tokens::issue`].
    pub fn issue(
        conn: &dyn Db,
        agent_id: Option<&str>,
        ttl_ms: i64,
        now_ms: i64,
    ) -> Result<String, EnrolError> {
        let spec = super::enrol_tokens::Spec {
            agent_id: agent_id.map(str::to_owned),
            group: None,
            uses: 1,
            ttl_ms,
        };
        Ok(super::enrol_tokens::issue(conn, &spec, now_ms)?.0)
    }

    /// Trades a valid token for a new key for `agent_id`. A token bound to
    /// that id is an admin's re-enrolment and replaces any earlier key (the
    /// key rotates); a token for any id enrols only an id that has no
    /// credential yet (issue #21: one took over an existing agent).
    pub fn enrol(
        &self,
        conn: &dyn Db,
        agent_id: &str,
        token: &str,
        now_ms: i64,
    ) -> Result<[u8; 32], EnrolError> {
        if !sobre_proto::topics::valid_agent_id(agent_id) {
            return Err(EnrolError::AgentId(agent_id.chars().take(80).collect()));
        }
        let rebind = match super::enrol_tokens::check(conn, token, now_ms)? {
            None => false,
            Some(b) if b == agent_id => true,
            Some(_) => return Err(EnrolError::Token),
        };
        let mut key = [0u8; 32];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut key)?;
        conn.transaction(|tx| {
            super::enrol_tokens::consume(tx, token, agent_id, now_ms)?;
            let sql = if rebind {
                "INSERT INTO credentials (agent_id, key, created_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (agent_id) DO UPDATE SET key = ?2, created_ms = ?3, revoked_ms = NULL"
            } else {
                "INSERT INTO credentials (agent_id, key, created_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (agent_id) DO NOTHING"
            };
            if tx.execute(sql, args![agent_id, &key[..], now_ms])? != 1 {
                // Rolled back: the token stays unused.
                return Err(EnrolError::Taken(agent_id.to_owned()));
            }
            Ok(())
        })?;
        if let Ok(mut m) = self.creds.write() {
            m.insert(agent_id.to_owned(), Cred::Key(key));
            // Under the lock: a reload that took it first has already
            // applied its (older) read; one that takes it next sees this.
            self.local_changes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        tracing::info!(agent = agent_id, "agent enrolled");
        Ok(key)
    }

    /// Revokes an agent's credential: its envelopes are refused from now
    /// on, until an admin enrols it again.
    pub fn revoke(&self, conn: &dyn Db, agent_id: &str, now_ms: i64) -> Result<(), EnrolError> {
        let n = conn.execute(
            "UPDATE credentials SET revoked_ms = ?2 WHERE agent_id = ?1",
            args![agent_id, now_ms],
        )?;
        if n == 0 {
            return Err(EnrolError::Unknown(agent_id.into()));
        }
        if let Ok(mut m) = self.creds.write() {
            m.insert(agent_id.to_owned(), Cred::Revoked);
            // Under the lock: a reload that took it first has already
            // applied its (older) read; one that takes it next sees this.
            self.local_changes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        tracing::warn!(agent = agent_id, "agent credential revoked");
        Ok(())
    }
}

/// Every credential in the store.
fn read_all(conn: &dyn Db) -> Result<HashMap<String, Cred>, DbError> {
    let rows = conn.query_map(
        "SELECT agent_id, key, revoked_ms FROM credentials",
        args![],
        |r| {
            let key: Vec<u8> = r.get(1)?;
            let revoked: Option<i64> = r.get(2)?;
            Ok((r.get::<String>(0)?, key, revoked))
        },
    )?;
    Ok(rows
        .into_iter()
        .map(|(id, key, revoked)| {
            let cred = match (revoked, <[u8; 32]>::try_from(key.as_slice())) {
                (None, Ok(k)) => Cred::Key(k),
                _ => Cred::Revoked,
            };
            (id, cred)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::test_store as store;

    fn env(agent: &str, seq: u64) -> Envelope {
        Envelope {
            agent_id: agent.into(),
            seq,
            version: 1,
            ..Default::default()
        }
    }

    /// Signed as the agent signs (`sobre_proto::mac::sign`).
    fn signed(key: &[u8; 32], agent: &str, seq: u64) -> Envelope {
        let bytes = sobre_proto::mac::sign(key, &env(agent, seq).encode_to_vec()).expect("sign");
        Envelope::decode(&bytes[..]).expect("decode")
    }

    #[test]
    fn an_unbound_token_no_longer_takes_over_an_existing_agent() {
        let (_d, conn) = store();
        let creds = Credentials::load(&conn, true).expect("load");
        let t1 = Credentials::issue(&conn, None, 60_000, 0).expect("issue");
        let key = creds.enrol(&conn, "ws-1", &t1, 1).expect("enrol");
        // The attack: a token for any id, used with an enrolled one.
        let t2 = Credentials::issue(&conn, None, 60_000, 2).expect("issue");
        assert!(matches!(
            creds.enrol(&conn, "ws-1", &t2, 3),
            Err(EnrolError::Taken(id)) if id == "ws-1"
        ));
        assert!(creds.verify(signed(&key, "ws-1", 7)).is_ok(), "key kept");
        let again = Credentials::load(&conn, true).expect("reload");
        assert!(
            again.verify(signed(&key, "ws-1", 8)).is_ok(),
            "key kept in the store"
        );
        // The refused token was not spent: it still enrols a new id.
        creds.enrol(&conn, "ws-2", &t2, 4).expect("enrol another");
        // A revoked agent is not free for the taking either.
        creds.revoke(&conn, "ws-2", 5).expect("revoke");
        let t3 = Credentials::issue(&conn, None, 60_000, 6).expect("issue");
        assert!(matches!(
            creds.enrol(&conn, "ws-2", &t3, 7),
            Err(EnrolError::Taken(_))
        ));
        // An admin's token bound to the id re-enrols it: the key rotates.
        let t4 = Credentials::issue(&conn, Some("ws-1"), 60_000, 8).expect("issue");
        let new_key = creds.enrol(&conn, "ws-1", &t4, 9).expect("re-enrol");
        assert_ne!(new_key, key);
        assert!(creds.verify(signed(&key, "ws-1", 10)).is_err());
    }

    #[test]
    fn a_token_enrols_once_and_the_key_authenticates_envelopes() {
        let (_d, conn) = store();
        let creds = Credentials::load(&conn, true).expect("load");
        let t = Credentials::issue(&conn, None, 60_000, 0).expect("issue");
        let key = creds.enrol(&conn, "ws-1", &t, 1).expect("enrol");
        assert!(creds.verify(signed(&key, "ws-1", 5)).is_ok());
        assert!(matches!(
            creds.enrol(&conn, "ws-2", &t, 2),
            Err(EnrolError::TokenUsedUp(1))
        ));
        // Survives a restart of the collector.
        let again = Credentials::load(&conn, true).expect("reload");
        assert!(again.verify(signed(&key, "ws-1", 6)).is_ok());
    }

    #[test]
    fn unenrolled_forged_tampered_and_revoked_envelopes_are_refused() {
        let (_d, conn) = store();
        let creds = Credentials::load(&conn, true).expect("load");
        let t1 = Credentials::issue(&conn, Some("ws-1"), 60_000, 0).expect("issue");
        let t2 = Credentials::issue(&conn, Some("ws-2"), 60_000, 0).expect("issue");
        assert!(matches!(
            creds.enrol(&conn, "ws-2", &t1, 1),
            Err(EnrolError::Token)
        ));
        let k1 = creds.enrol(&conn, "ws-1", &t1, 1).expect("enrol 1");
        let k2 = creds.enrol(&conn, "ws-2", &t2, 1).expect("enrol 2");
        assert!(matches!(
            creds.verify(env("ws-3", 1)),
            Err(Reject::Unenrolled(_))
        ));
        // Another agent's key.
        assert!(matches!(
            creds.verify(signed(&k2, "ws-1", 1)),
            Err(Reject::BadMac(_))
        ));
        let mut tampered = signed(&k1, "ws-1", 1);
        tampered.seq = 2;
        assert!(matches!(creds.verify(tampered), Err(Reject::BadMac(_))));
        assert!(matches!(
            creds.verify(env("ws-1", 1)),
            Err(Reject::BadMac(_))
        ));
        creds.revoke(&conn, "ws-1", 2).expect("revoke");
        assert!(matches!(
            creds.verify(signed(&k1, "ws-1", 3)),
            Err(Reject::Revoked(_))
        ));
        assert!(
            creds.verify(signed(&k2, "ws-2", 3)).is_ok(),
            "others unaffected"
        );
        assert!(matches!(
            Credentials::load(&conn, true)
                .expect("reload")
                .verify(signed(&k1, "ws-1", 4)),
            Err(Reject::Revoked(_))
        ));
    }

    #[test]
    fn downlinks_are_signed_with_the_recipients_key_only() {
        use sobre_proto::v1::{Ack, Downlink, downlink};
        let (_d, conn) = store();
        let creds = Credentials::load(&conn, true).expect("load");
        let t = Credentials::issue(&conn, None, 60_000, 0).expect("issue");
        let key = creds.enrol(&conn, "ws-1", &t, 1).expect("enrol");
        let dl = || Downlink {
            body: Some(downlink::Body::Ack(Ack { seqs: vec![7] })),
            mac: Vec::new(),
        };
        let mut signed = dl();
        creds.sign("ws-1", &mut signed);
        assert!(sobre_proto::mac::verify_downlink(&key, signed).is_some());
        let mut other = dl();
        creds.sign("not-enrolled", &mut other);
        assert!(other.mac.is_empty());
    }

    #[test]
    fn expired_tokens_do_not_enrol_and_optional_mode_lets_unknown_agents_in() {
        let (_d, conn) = store();
        let creds = Credentials::load(&conn, false).expect("load");
        let t = Credentials::issue(&conn, None, 60_000, 0).expect("issue");
        assert!(matches!(
            creds.enrol(&conn, "ws-1", &t, 60_000),
            Err(EnrolError::TokenExpired)
        ));
        assert!(creds.verify(env("anyone", 1)).is_ok());
    }
}
