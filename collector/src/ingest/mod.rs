//! Ingest: turns raw uplink bytes from any transport into checked
//! envelopes for the store, and routes acks back the way they came.

pub mod acks;
pub mod broker;
pub mod credentials;
pub mod enrol_tokens;
pub mod grpc;
pub mod guard;
pub mod mqtt;
pub mod rate;
pub mod routes;
pub mod tls_front;

use crate::config::Limits;
use crate::metrics::Metrics;
use prost::Message;
use sobre_proto::v1::{Downlink, Envelope, envelope::Body};
use std::sync::Arc;
use tokio::sync::mpsc;

/// How an ack reaches the agent that sent an envelope.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Publish a Downlink on `sobre/v1/agents/{id}/down`.
    Mqtt,
    /// Send on the agent's open gRPC stream.
    Grpc(mpsc::Sender<Result<Downlink, tonic::Status>>),
}

/// What ingest hands to the store writer. Envelopes are nearly all of the
/// traffic, so boxing them would add an allocation per message and save
/// nothing.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Event {
    Envelope {
        env: Envelope,
        reply: Reply,
        received_ms: i64,
    },
    Presence {
        agent_id: String,
        online: bool,
        transport: &'static str,
        at_ms: i64,
    },
}

/// Why an uplink message was refused. The label is the `reason` of the
/// `sobre_envelopes_rejected_total` counter.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Reject {
    #[error("payload of {size} bytes exceeds limits.max_envelope_bytes = {max}")]
    Oversized { size: usize, max: usize },
    #[error("payload is not a sobre.v1 Envelope: {0}")]
    Malformed(String),
    #[error(
        "envelope version {0} is not supported by this collector (it speaks 1); upgrade the collector or downgrade the agent"
    )]
    UnsupportedVersion(u32),
    #[error("envelope agent_id {found:?} does not match the sender {expected:?}")]
    AgentMismatch { expected: String, found: String },
    #[error("agent_id {0:?} is not 1-64 characters of [A-Za-z0-9._-]")]
    InvalidAgentId(String),
    #[error("envelope has no body (usage or inventory)")]
    EmptyBody,
    #[error(
        "agent {0:?} has not enrolled: the collector requires enrolment; issue a token with `sobre-collector enrol --agent {0}` and set [enrol] token in the agent's config"
    )]
    Unenrolled(String),
    #[error(
        "envelope from {0:?} fails its MAC check (another agent's key, a tampered message, or an agent newer than this collector: upgrade the collector first)"
    )]
    BadMac(String),
    #[error("agent {0:?} is revoked: an admin must enrol it again")]
    Revoked(String),
    /// `log`: refusals to report in this line (one line per agent per
    /// `rate::LOG_EVERY`); `None`: counted, not logged.
    #[error(
        "agent {agent:?} exceeds limits.max_envelopes_per_s; refused unacked, it will resend ({} refused since the last line)",
        log.unwrap_or(1)
    )]
    RateLimited { agent: String, log: Option<u64> },
    #[error(
        "envelope sent_at_ms {0} is more than limits.max_clock_ahead_s in the future: fix the agent's clock"
    )]
    BadTimestamp(i64),
    #[error("envelope field {field} is too long ({len}, limit {max})")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

impl Reject {
    pub fn label(&self) -> &'static str {
        match self {
            Reject::Oversized { .. } => "oversized",
            Reject::Malformed(_) => "malformed",
            Reject::UnsupportedVersion(_) => "unsupported_version",
            Reject::AgentMismatch { .. } => "agent_mismatch",
            Reject::InvalidAgentId(_) => "invalid_agent_id",
            Reject::EmptyBody => "empty_body",
            Reject::FieldTooLong { .. } => "field_too_long",
            Reject::Unenrolled(_) => "unenrolled",
            Reject::BadMac(_) => "bad_mac",
            Reject::Revoked(_) => "revoked",
            Reject::RateLimited { .. } => "rate_limited",
            Reject::BadTimestamp(_) => "bad_timestamp",
        }
    }
}

/// Decodes and checks one uplink payload. `sender` is the agent id the
/// transport vouches for (the MQTT topic, or the gRPC stream's first
/// envelope), if any.
pub fn decode(payload: &[u8], sender: Option<&str>, limits: &Limits) -> Result<Envelope, Reject> {
    if payload.len() > limits.max_envelope_bytes {
        return Err(Reject::Oversized {
            size: payload.len(),
            max: limits.max_envelope_bytes,
        });
    }
    let env = Envelope::decode(payload).map_err(|e| Reject::Malformed(e.to_string()))?;
    check(env, sender, limits)
}

/// The checks that apply to an envelope however it was decoded.
pub fn check(env: Envelope, sender: Option<&str>, limits: &Limits) -> Result<Envelope, Reject> {
    if env.version != sobre_proto::v1::VERSION {
        return Err(Reject::UnsupportedVersion(env.version));
    }
    if !sobre_proto::topics::valid_agent_id(&env.agent_id) {
        return Err(Reject::InvalidAgentId(truncate(&env.agent_id, 80)));
    }
    if let Some(expected) = sender
        && expected != env.agent_id
    {
        return Err(Reject::AgentMismatch {
            expected: expected.to_owned(),
            found: env.agent_id,
        });
    }
    match &env.body {
        None => return Err(Reject::EmptyBody),
        Some(Body::Inventory(inv)) => check_inventory(inv, limits)?,
        Some(Body::Usage(u)) => check_usage(u, limits)?,
        Some(Body::Storage(st)) => check_storage(st, limits)?,
        Some(Body::NudgeReceipt(r)) => {
            if r.nudge_id.len() > 64 || r.how.len() > 16 {
                return Err(Reject::FieldTooLong {
                    field: "nudge_receipt",
                    len: r.nudge_id.len().max(r.how.len()),
                    max: 64,
                });
            }
        }
        Some(Body::Campaign(c)) => check_campaign(c, limits)?,
    }
    Ok(env)
}

/// `FieldTooLong` when `len > max`.
fn long(field: &'static str, len: usize, max: usize) -> Result<(), Reject> {
    if len > max {
        Err(Reject::FieldTooLong { field, len, max })
    } else {
        Ok(())
    }
}

fn check_usage(u: &sobre_proto::v1::UsageReport, limits: &Limits) -> Result<(), Reject> {
    long("power_parts", u.power_parts.len(), limits.max_repeated)?;
    for p in &u.power_parts {
        long("power_parts.name", p.name.len(), limits.max_string_bytes)?;
    }
    Ok(())
}

/// Every string and list of an inventory: all of them are stored, and
/// several (hostname, chassis, group, site) become InfluxDB tags.
fn check_inventory(inv: &sobre_proto::v1::Inventory, limits: &Limits) -> Result<(), Reject> {
    let s = limits.max_string_bytes;
    for (field, v) in [
        ("hostname", &inv.hostname),
        ("os_name", &inv.os_name),
        ("os_version", &inv.os_version),
        ("kernel", &inv.kernel),
        ("arch", &inv.arch),
        ("cpu_model", &inv.cpu_model),
        ("chassis", &inv.chassis),
        ("vendor", &inv.vendor),
        ("model", &inv.model),
        ("bios_date", &inv.bios_date),
        ("agent_version", &inv.agent_version),
        ("group", &inv.group),
        ("site", &inv.site),
        ("cpu_tdp_source", &inv.cpu_tdp_source),
    ] {
        long(field, v.len(), s)?;
    }
    long("disks", inv.disks.len(), limits.max_repeated)?;
    long("batteries", inv.batteries.len(), limits.max_repeated)?;
    long("monitors", inv.monitors.len(), limits.max_repeated)?;
    for d in &inv.disks {
        long("disks.name", d.name.len(), s)?;
        long("disks.model", d.model.len(), s)?;
    }
    for b in &inv.batteries {
        long("batteries.name", b.name.len(), s)?;
    }
    for m in &inv.monitors {
        long("monitors.connector", m.connector.len(), s)?;
        long("monitors.manufacturer", m.manufacturer.len(), s)?;
        long("monitors.model", m.model.len(), s)?;
    }
    Ok(())
}

fn check_campaign(c: &sobre_proto::v1::CampaignProgress, limits: &Limits) -> Result<(), Reject> {
    if !sobre_proto::topics::valid_agent_id(&c.campaign_id) {
        return Err(Reject::FieldTooLong {
            field: "campaign_id ([A-Za-z0-9._-]{1,64})",
            len: c.campaign_id.len(),
            max: 64,
        });
    }
    for (field, len, max) in [
        ("campaign.error", c.error.len(), limits.max_string_bytes),
        ("campaign.deleted", c.deleted.len(), 16),
    ] {
        if len > max {
            return Err(Reject::FieldTooLong { field, len, max });
        }
    }
    if let Some(d) = c.deleted.iter().find(|d| d.category.len() > 32) {
        return Err(Reject::FieldTooLong {
            field: "campaign.deleted.category",
            len: d.category.len(),
            max: 32,
        });
    }
    Ok(())
}

fn check_storage(st: &sobre_proto::v1::StorageSummary, limits: &Limits) -> Result<(), Reject> {
    long("categories", st.categories.len(), limits.max_repeated)?;
    long("large_files", st.large_files.len(), limits.max_fingerprints)?;
    long(
        "opted_in_paths",
        st.opted_in_paths.len(),
        limits.max_fingerprints,
    )?;
    for c in &st.categories {
        long("category", c.category.len() + c.age.len(), 64)?;
    }
    for f in &st.large_files {
        long("keyed_hash", f.keyed_hash.len(), 32)?;
    }
    for p in &st.opted_in_paths {
        long("path", p.path.len(), limits.max_string_bytes * 4)?;
        long("path.category", p.category.len(), limits.max_string_bytes)?;
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Records a refusal: one counter, and a warn line with the reason (for
/// rate-limited agents, only the lines the limiter asks for; for the
/// rest, one per transport and reason per period, `limits::log`: anyone
/// can send unsigned envelopes over gRPC).
pub fn rejected(metrics: &Metrics, transport: &'static str, source: &str, why: &Reject) {
    metrics.rejected(why.label());
    let more = match why {
        Reject::RateLimited { log: None, .. } => return,
        Reject::RateLimited { .. } => None,
        _ => match crate::limits::logs().due((transport, why.label()), std::time::Instant::now()) {
            None => return,
            more => more,
        },
    };
    let more = more.map(|m| m.to_string()).unwrap_or_default();
    tracing::warn!(
        transport,
        source,
        reason = why.label(),
        "envelope refused: {why}{more}"
    );
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Shared by every ingest path.
#[derive(Clone)]
pub struct IngestCtx {
    pub events: mpsc::Sender<Event>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub routes: routes::Routes,
    pub credentials: Arc<credentials::Credentials>,
    pub rate: Arc<rate::RateLimit>,
}

impl IngestCtx {
    /// What comes after the structural checks: the agent's identity (its
    /// MAC), a sane clock, and its rate.
    pub fn admit(&self, env: Envelope) -> Result<Envelope, Reject> {
        let env = self.credentials.verify(env)?;
        if env.sent_at_ms > now_ms() + self.limits.max_clock_ahead_s * 1000 {
            return Err(Reject::BadTimestamp(env.sent_at_ms));
        }
        if let Err(log) = self.rate.take(&env.agent_id, std::time::Instant::now()) {
            return Err(Reject::RateLimited {
                agent: env.agent_id,
                log,
            });
        }
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sobre_proto::v1::{Inventory, UsageReport};

    fn env(id: &str) -> Envelope {
        Envelope {
            agent_id: id.into(),
            seq: 7,
            version: 1,
            body: Some(Body::Usage(UsageReport::default())),
            ..Default::default()
        }
    }

    #[test]
    fn accepts_a_good_envelope() {
        let bytes = env("a1").encode_to_vec();
        let got = decode(&bytes, Some("a1"), &Limits::default()).expect("ok");
        assert_eq!(got.seq, 7);
    }

    #[test]
    fn refusals_carry_their_reason() {
        let l = Limits::default();
        assert_eq!(
            decode(&[0xff, 0xff, 0xff], None, &l).map_err(|e| e.label()),
            Err("malformed")
        );
        let big = vec![0u8; l.max_envelope_bytes + 1];
        assert_eq!(
            decode(&big, None, &l).map_err(|e| e.label()),
            Err("oversized")
        );
        let mut v2 = env("a1");
        v2.version = 2;
        assert_eq!(
            decode(&v2.encode_to_vec(), None, &l).map_err(|e| e.label()),
            Err("unsupported_version")
        );
        assert_eq!(
            decode(&env("a1").encode_to_vec(), Some("b2"), &l).map_err(|e| e.label()),
            Err("agent_mismatch")
        );
        assert_eq!(
            decode(&env("a/1").encode_to_vec(), None, &l).map_err(|e| e.label()),
            Err("invalid_agent_id")
        );
        let mut empty = env("a1");
        empty.body = None;
        assert_eq!(
            decode(&empty.encode_to_vec(), None, &l).map_err(|e| e.label()),
            Err("empty_body")
        );
        let mut inv = env("a1");
        inv.body = Some(Body::Inventory(Inventory {
            hostname: "h".repeat(l.max_string_bytes + 1),
            ..Default::default()
        }));
        assert_eq!(
            decode(&inv.encode_to_vec(), None, &l).map_err(|e| e.label()),
            Err("field_too_long")
        );
    }

    /// Found by fuzz/fuzz_targets/envelope_decode.rs: a usage report's
    /// `power_parts` names (and the inventory's arch, chassis, group, site,
    /// monitors...) were not held to `limits`, unlike the other strings.
    #[test]
    fn power_part_name_over_max_string_bytes_was_accepted() {
        // The fuzzer's input without its first byte (mode 0x32: tight
        // limits, no sender): "package-0" is 9 bytes, the limit 8.
        let payload = b"\x0a\x06pc-042\x10\x07\x18\x80\xd0\x95\xff\xbc\x31\x20\x01\x28\x03\x32\x0e\x09\x00\x00\x00\x00\x00\x00\xf8\x3f\x18\x80\x80\x80\x04\x52\x4f\x08\x90\x4e\x15\x00\x00\x48\x41\x18\x80\x80\x80\x80\x40\x20\x80\x80\x80\x80\x24\x5d\x3d\x0a\xd7\x3e\x70\x80\xa3\x05\x78\x01\x80\x01\x1e\x88\x01\x01\x95\x01\x33\x33\x33\xda\x99\x01\x00\x00\x00\x00\x00\x00\x5c\x40\xa0\x01\x01\xaa\x01\x14\x0a\x09package-0\x11\x00\x00\x00\x00\x00\x00\x59\x40";
        let tight = Limits {
            max_envelope_bytes: 4096,
            max_repeated: 3,
            max_string_bytes: 8,
            max_fingerprints: 3,
            ..Limits::default()
        };
        assert_eq!(
            decode(payload, None, &tight),
            Err(Reject::FieldTooLong {
                field: "power_parts.name",
                len: 9,
                max: 8
            })
        );
        assert!(decode(payload, None, &Limits::default()).is_ok());

        let l = Limits::default();
        for inv in [
            Inventory {
                group: "g".repeat(l.max_string_bytes + 1),
                ..Default::default()
            },
            Inventory {
                monitors: vec![Default::default(); l.max_repeated + 1],
                ..Default::default()
            },
        ] {
            let mut e = env("a1");
            e.body = Some(Body::Inventory(inv));
            assert_eq!(
                decode(&e.encode_to_vec(), None, &l).map_err(|e| e.label()),
                Err("field_too_long")
            );
        }
    }
}
