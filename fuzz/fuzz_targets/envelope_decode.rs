//! Exercises `sobre_collector::ingest::decode`, the first code that touches
//! bytes from the network (MQTT payloads, gRPC messages): arbitrary bytes
//! must never panic, and whatever it accepts must satisfy the documented
//! `[limits]` (version 1, a valid agent id, a body, every string and
//! repeated field bounded).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sobre_collector::config::Limits;
use sobre_proto::v1::{Envelope, envelope::Body};

/// The id the transport vouches for when the fuzzer asks for a sender.
const SENDER: &str = "pc-042";

fuzz_target!(|data: &[u8]| {
    // The first byte picks the sender and the limits; the rest is the payload.
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let sender = (mode & 1 == 1).then_some(SENDER);
    let limits = if mode & 2 == 2 {
        // Tight limits, so that short inputs reach every bound.
        Limits {
            max_envelope_bytes: 4096,
            max_repeated: 3,
            max_string_bytes: 8,
            max_fingerprints: 3,
            ..Limits::default()
        }
    } else {
        Limits::default()
    };
    if let Ok(env) = sobre_collector::ingest::decode(payload, sender, &limits) {
        assert!(payload.len() <= limits.max_envelope_bytes);
        check_invariants(&env, sender, &limits);
    }
});

fn check_invariants(env: &Envelope, sender: Option<&str>, l: &Limits) {
    assert_eq!(env.version, sobre_proto::v1::VERSION);
    assert!(sobre_proto::topics::valid_agent_id(&env.agent_id));
    if let Some(s) = sender {
        assert_eq!(env.agent_id, s);
    }
    let s = |what: &str, v: &str| {
        assert!(
            v.len() <= l.max_string_bytes,
            "{what}: {} bytes accepted, limit {}",
            v.len(),
            l.max_string_bytes
        )
    };
    let r = |what: &str, n: usize, max: usize| {
        assert!(n <= max, "{what}: {n} entries accepted, limit {max}")
    };
    match env.body.as_ref().expect("an accepted envelope has a body") {
        Body::Usage(u) => {
            r("usage.power_parts", u.power_parts.len(), l.max_repeated);
            for p in &u.power_parts {
                s("usage.power_parts.name", &p.name);
            }
        }
        Body::Inventory(inv) => {
            for (what, v) in [
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
                s(what, v);
            }
            r("disks", inv.disks.len(), l.max_repeated);
            r("batteries", inv.batteries.len(), l.max_repeated);
            r("monitors", inv.monitors.len(), l.max_repeated);
            for d in &inv.disks {
                s("disks.name", &d.name);
                s("disks.model", &d.model);
            }
            for b in &inv.batteries {
                s("batteries.name", &b.name);
            }
            for m in &inv.monitors {
                s("monitors.connector", &m.connector);
                s("monitors.manufacturer", &m.manufacturer);
                s("monitors.model", &m.model);
            }
        }
        Body::Storage(st) => {
            r("categories", st.categories.len(), l.max_repeated);
            r("large_files", st.large_files.len(), l.max_fingerprints);
            r(
                "opted_in_paths",
                st.opted_in_paths.len(),
                l.max_fingerprints,
            );
            for c in &st.categories {
                assert!(c.category.len() + c.age.len() <= 64);
            }
            for f in &st.large_files {
                assert!(f.keyed_hash.len() <= 32);
            }
            for p in &st.opted_in_paths {
                s("opted_in_paths.category", &p.category);
                assert!(p.path.len() <= l.max_string_bytes * 4);
            }
        }
        Body::NudgeReceipt(n) => {
            assert!(n.nudge_id.len() <= 64 && n.how.len() <= 16);
        }
        Body::Campaign(c) => {
            assert!(sobre_proto::topics::valid_agent_id(&c.campaign_id));
            s("campaign.error", &c.error);
            r("campaign.deleted", c.deleted.len(), 16);
            for d in &c.deleted {
                assert!(d.category.len() <= 32);
            }
        }
    }
}
