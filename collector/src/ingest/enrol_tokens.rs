//! Enrolment tokens: issued by an admin for one agent id, or for a group
//! or site that many agents may use during a window (`uses_max`, an
//! expiry, revocable), stored as hashes; each use recorded with the agent
//! id that made it. The key each agent then gets is its own
//! (`credentials.rs`).

use super::credentials::EnrolError;
use crate::args;
use crate::db::{Db, OptionalExt};
use serde::Serialize;

/// The most uses one token may have (a department of a large city).
pub const MAX_USES: u32 = 100_000;
/// The longest a token may stay valid: a roll-out's window.
pub const MAX_TTL_MS: i64 = 90 * 86_400_000;

/// What an admin asks for.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Bound to this agent id (then one use, and it may re-enrol that
    /// agent: the key rotates).
    pub agent_id: Option<String>,
    /// A label for the roll-out it serves (a group or site), shown in the
    /// list of enrolments.
    pub group: Option<String>,
    pub uses: u32,
    pub ttl_ms: i64,
}

/// A token as the list shows it: never the token itself.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenInfo {
    /// The first 16 hex digits of the token's hash: names it in the list
    /// and for revocation.
    pub id: String,
    pub agent_id: Option<String>,
    pub group: Option<String>,
    pub uses: i64,
    pub uses_max: i64,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// One use of a token.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Use {
    pub agent_id: String,
    pub at_ms: i64,
}

/// Who a token is for, as lists and messages say it: the agent id, the
/// group, or any new id.
pub fn audience(agent_id: Option<&str>, group: Option<&str>) -> String {
    match (agent_id, group) {
        (Some(a), _) => a.to_owned(),
        (None, Some(g)) => format!("group {g}"),
        (None, None) => "any new agent id".into(),
    }
}

pub(crate) fn hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

fn id_of(hash: &[u8]) -> String {
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Spec {
    pub fn validate(&self) -> Result<(), EnrolError> {
        let bad = |m: String| Err(EnrolError::Spec(m));
        if let Some(id) = &self.agent_id {
            if !sobre_proto::topics::valid_agent_id(id) {
                return Err(EnrolError::AgentId(id.clone()));
            }
            if self.uses != 1 {
                return bad(
                    "a token bound to one agent id has one use; use --group for many".into(),
                );
            }
        }
        if let Some(g) = &self.group
            && !sobre_proto::topics::valid_agent_id(g)
        {
            return bad(format!("group {g:?}: use 1 to 64 of A-Z a-z 0-9 . _ -"));
        }
        if !(1..=MAX_USES).contains(&self.uses) {
            return bad(format!("uses = {}: give 1 to {MAX_USES}", self.uses));
        }
        if !(60_000..=MAX_TTL_MS).contains(&self.ttl_ms) {
            return bad(format!(
                "expiry {} ms: give a minute to 90 days (e.g. 7d, 12h, 30m)",
                self.ttl_ms
            ));
        }
        Ok(())
    }
}

/// Issues a token; returns it (shown once, only its hash is kept) and its id.
pub fn issue(conn: &dyn Db, spec: &Spec, now_ms: i64) -> Result<(String, String), EnrolError> {
    spec.validate()?;
    let token = crate::http::auth::random_token()?;
    let h = hash(&token);
    conn.execute(
        "INSERT INTO enrol_tokens (token_hash, agent_id, created_ms, expires_ms, grp, uses_max)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![
            &h[..],
            spec.agent_id.as_deref(),
            now_ms,
            now_ms + spec.ttl_ms,
            spec.group.as_deref(),
            i64::from(spec.uses)
        ],
    )?;
    tracing::info!(
        agent = spec.agent_id.as_deref().unwrap_or("*"),
        group = spec.group.as_deref().unwrap_or(""),
        uses = spec.uses,
        "enrolment token issued"
    );
    Ok((token, id_of(&h)))
}

/// Who a valid token is bound to (`Some(None)`: any new id), or why it
/// cannot be used.
pub(crate) fn check(conn: &dyn Db, token: &str, now_ms: i64) -> Result<Option<String>, EnrolError> {
    type Row = (Option<String>, i64, i64, i64, Option<i64>);
    let row: Option<Row> = conn
        .query_row(
            "SELECT agent_id, uses, uses_max, expires_ms, revoked_ms FROM enrol_tokens
             WHERE token_hash = ?1",
            args![&hash(token)[..]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    match row {
        None => Err(EnrolError::Token),
        Some((_, _, _, _, Some(_))) => Err(EnrolError::TokenRevoked),
        Some((_, _, _, exp, _)) if exp <= now_ms => Err(EnrolError::TokenExpired),
        Some((_, uses, max, _, _)) if uses >= max => Err(EnrolError::TokenUsedUp(max)),
        Some((bound, ..)) => Ok(bound),
    }
}

/// Counts one use by `agent_id`, inside the caller's transaction; fails
/// if another use took the last one first.
pub(crate) fn consume(
    tx: &dyn Db,
    token: &str,
    agent_id: &str,
    now_ms: i64,
) -> Result<(), EnrolError> {
    let h = hash(token);
    let n = tx.execute(
        "UPDATE enrol_tokens SET uses = uses + 1, used_ms = ?2, used_by = ?3
         WHERE token_hash = ?1 AND uses < uses_max AND revoked_ms IS NULL AND expires_ms > ?2",
        args![&h[..], now_ms, agent_id],
    )?;
    if n != 1 {
        return Err(EnrolError::Token);
    }
    tx.execute(
        "INSERT INTO enrolments (token_hash, agent_id, at_ms) VALUES (?1, ?2, ?3)",
        args![&h[..], agent_id, now_ms],
    )?;
    Ok(())
}

const INFO: &str =
    "SELECT token_hash, agent_id, grp, uses, uses_max, created_ms, expires_ms, revoked_ms
     FROM enrol_tokens";

fn info(r: &crate::db::Row) -> Result<TokenInfo, crate::db::DbError> {
    let h: Vec<u8> = r.get(0)?;
    Ok(TokenInfo {
        id: id_of(&h),
        agent_id: r.get(1)?,
        group: r.get(2)?,
        uses: r.get(3)?,
        uses_max: r.get(4)?,
        created_ms: r.get(5)?,
        expires_ms: r.get(6)?,
        revoked_ms: r.get(7)?,
    })
}

/// The most recent tokens, newest first.
pub fn list(conn: &dyn Db, limit: u32) -> Result<Vec<TokenInfo>, EnrolError> {
    Ok(conn.query_map(
        &format!("{INFO} ORDER BY created_ms DESC LIMIT ?1"),
        args![i64::from(limit)],
        info,
    )?)
}

/// The full hash of the token whose id is `id`.
fn find(conn: &dyn Db, id: &str) -> Result<Vec<u8>, EnrolError> {
    let hashes: Vec<Vec<u8>> =
        conn.query_map("SELECT token_hash FROM enrol_tokens", args![], |r| r.get(0))?;
    hashes
        .into_iter()
        .find(|h| id_of(h) == id)
        .ok_or_else(|| EnrolError::UnknownToken(id.chars().take(40).collect()))
}

/// One token and who used it, in order.
pub fn uses(conn: &dyn Db, id: &str) -> Result<(TokenInfo, Vec<Use>), EnrolError> {
    let h = find(conn, id)?;
    let token = conn.query_row(
        &format!("{INFO} WHERE token_hash = ?1"),
        args![&h[..]],
        info,
    )?;
    let used = conn.query_map(
        "SELECT agent_id, at_ms FROM enrolments WHERE token_hash = ?1 ORDER BY at_ms, agent_id",
        args![&h[..]],
        |r| {
            Ok(Use {
                agent_id: r.get(0)?,
                at_ms: r.get(1)?,
            })
        },
    )?;
    Ok((token, used))
}

/// Stops further use of a token; agents it enrolled keep their keys.
pub fn revoke(conn: &dyn Db, id: &str, now_ms: i64) -> Result<(), EnrolError> {
    let h = find(conn, id)?;
    conn.execute(
        "UPDATE enrol_tokens SET revoked_ms = ?2 WHERE token_hash = ?1 AND revoked_ms IS NULL",
        args![&h[..], now_ms],
    )?;
    tracing::warn!(token = id, "enrolment token revoked");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::credentials::Credentials;

    use crate::store::test_store as store;

    fn group(uses: u32) -> Spec {
        Spec {
            agent_id: None,
            group: Some("dsi".into()),
            uses,
            ttl_ms: 7 * 86_400_000,
        }
    }

    #[test]
    fn a_group_token_enrols_up_to_its_uses_then_says_it_is_used_up() {
        let (_d, conn) = store();
        let creds = Credentials::load(&conn, true).expect("load");
        let (token, id) = issue(&conn, &group(5), 0).expect("issue");
        let mut keys = Vec::new();
        for i in 0..7 {
            match creds.enrol(&conn, &format!("ws-{i}"), &token, 10 + i) {
                Ok(k) => keys.push(k),
                Err(EnrolError::TokenUsedUp(5)) if i >= 5 => {}
                other => panic!("ws-{i}: {other:?}"),
            }
        }
        assert_eq!(keys.len(), 5);
        let all: std::collections::HashSet<_> = keys.iter().collect();
        assert_eq!(all.len(), 5, "each agent gets its own key");
        let (info, used) = uses(&conn, &id).expect("uses");
        assert_eq!((info.uses, info.uses_max), (5, 5));
        assert_eq!(info.group.as_deref(), Some("dsi"));
        let who: Vec<&str> = used.iter().map(|u| u.agent_id.as_str()).collect();
        assert_eq!(who, ["ws-0", "ws-1", "ws-2", "ws-3", "ws-4"]);
    }

    #[test]
    fn a_revoked_or_expired_token_says_so_and_enrolled_agents_keep_their_keys() {
        let (_d, conn) = store();
        let creds = Credentials::load(&conn, true).expect("load");
        let (token, id) = issue(&conn, &group(100), 0).expect("issue");
        creds.enrol(&conn, "ws-a", &token, 1).expect("enrol");
        revoke(&conn, &id, 2).expect("revoke");
        assert!(matches!(
            creds.enrol(&conn, "ws-b", &token, 3),
            Err(EnrolError::TokenRevoked)
        ));
        assert!(creds.may_send("ws-a"), "enrolled before the revocation");
        let (t2, _) = issue(&conn, &group(100), 0).expect("issue");
        assert!(matches!(
            creds.enrol(&conn, "ws-c", &t2, 7 * 86_400_000),
            Err(EnrolError::TokenExpired)
        ));
        assert!(matches!(
            revoke(&conn, "0000000000000000", 4),
            Err(EnrolError::UnknownToken(_))
        ));
    }

    #[test]
    fn token_requests_out_of_range_are_refused_with_the_range() {
        let (_d, conn) = store();
        let cases = [
            Spec {
                uses: 0,
                ..group(1)
            },
            Spec {
                uses: MAX_USES + 1,
                ..group(1)
            },
            Spec {
                ttl_ms: 0,
                ..group(1)
            },
            Spec {
                ttl_ms: i64::MAX,
                ..group(1)
            },
            Spec {
                ttl_ms: -1,
                ..group(1)
            },
            Spec {
                group: Some("a/b".into()),
                ..group(1)
            },
            Spec {
                agent_id: Some("ws-1".into()),
                ..group(2)
            },
        ];
        for spec in cases {
            let e = issue(&conn, &spec, 0).expect_err("refused");
            assert!(matches!(e, EnrolError::Spec(_)), "{spec:?}: {e}");
        }
        assert!(list(&conn, 10).expect("list").is_empty(), "nothing stored");
    }
}
