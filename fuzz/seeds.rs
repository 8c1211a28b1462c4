//! Writes the seed corpus of `envelope_decode` (real encoded envelopes of
//! each body, as an agent sends them) and of `line_protocol` under
//! `fuzz/corpus/` (run from `fuzz/`; bench/fuzz.sh runs it before fuzzing).
//! A binary of this crate so that it reuses the fuzz build; it is not a
//! fuzz target.
//! `config_parse` is seeded with the example config files by bench/fuzz.sh.

use prost::Message;
use sobre_proto::v1::{
    AgentFootprint, CampaignProgress, CategoryTotal, DeletedTotal, Disk, Envelope, Fingerprint,
    Inventory, Monitor, NudgeReceipt, PathEntry, PowerPart, StorageSummary, UsageReport,
    envelope::Body,
};
use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new("corpus/envelope_decode");
    std::fs::create_dir_all(dir)?;
    let bodies = [
        (
            "usage",
            Body::Usage(UsageReport {
                interval_ms: 10_000,
                cpu_percent: 12.5,
                mem_total_bytes: 16 << 30,
                mem_available_bytes: 9 << 30,
                load1: 0.42,
                uptime_s: 86_400,
                user_sessions: 1,
                input_idle_s: Some(30),
                user_active: true,
                power_w: 11.2,
                energy_j: 112.0,
                power_source: 1,
                power_parts: vec![PowerPart {
                    name: "package-0".into(),
                    energy_j: 100.0,
                }],
                ..Default::default()
            }),
        ),
        (
            "inventory",
            Body::Inventory(Inventory {
                hostname: "pc-042".into(),
                os_name: "Debian GNU/Linux".into(),
                os_version: "12".into(),
                kernel: "6.1.0-18-amd64".into(),
                arch: "x86_64".into(),
                cpu_model: "AMD Ryzen 5 PRO 4650U".into(),
                cpu_cores: 6,
                cpu_threads: 12,
                disks: vec![Disk {
                    name: "nvme0n1".into(),
                    size_bytes: 512 << 30,
                    model: "SAMSUNG".into(),
                    ..Default::default()
                }],
                chassis: "laptop".into(),
                bios_date: "03/14/2021".into(),
                monitors: vec![Monitor {
                    connector: "DP-1".into(),
                    manufacturer: "DEL".into(),
                    model: "P2419H".into(),
                    year: 2019,
                    ..Default::default()
                }],
                group: "mairie".into(),
                site: "hotel-de-ville".into(),
                ..Default::default()
            }),
        ),
        (
            "storage",
            Body::Storage(StorageSummary {
                files: 1000,
                bytes: 1 << 30,
                categories: vec![CategoryTotal {
                    category: "cache".into(),
                    age: "1y".into(),
                    files: 10,
                    bytes: 1 << 20,
                }],
                large_files: vec![Fingerprint {
                    keyed_hash: vec![7; 32],
                    size: 1 << 28,
                    copies: 2,
                }],
                opted_in_paths: vec![PathEntry {
                    category: "large".into(),
                    path: "/home/a/film.mkv".into(),
                    size: 1 << 28,
                }],
                complete: true,
                ..Default::default()
            }),
        ),
        (
            "nudge_receipt",
            Body::NudgeReceipt(NudgeReceipt {
                nudge_id: "n-1".into(),
                how: "shown".into(),
                at_ms: 1_700_000_000_000,
            }),
        ),
        (
            "campaign",
            Body::Campaign(CampaignProgress {
                campaign_id: "spring-clean".into(),
                deleted: vec![DeletedTotal {
                    category: "cache".into(),
                    files: 3,
                    bytes: 4096,
                }],
                ..Default::default()
            }),
        ),
    ];
    for (name, body) in bodies {
        let env = Envelope {
            mac: Vec::new(),
            agent_id: "pc-042".into(),
            seq: 7,
            sent_at_ms: 1_700_000_000_000,
            version: 1,
            spool_floor: 3,
            footprint: Some(AgentFootprint {
                cpu_seconds: 1.5,
                rss_bytes: 8 << 20,
                ..Default::default()
            }),
            body: Some(body),
        };
        // The target's first byte: bit 0 = sender given, bit 1 = tight limits.
        for mode in [0u8, 1] {
            let mut bytes = vec![mode];
            env.encode(&mut bytes).map_err(std::io::Error::other)?;
            std::fs::write(dir.join(format!("{name}-{mode}")), bytes)?;
        }
    }

    // Any bytes are an input of `line_protocol` (`arbitrary`); these carry
    // the characters line protocol escapes, for its strings to pick up.
    let dir = Path::new("corpus/line_protocol");
    std::fs::create_dir_all(dir)?;
    let mut special = b"\x06pc 1,host=a\"b\\\x08poste,1\x05g=r p\x03\\\n\x02\x00\x00".to_vec();
    special.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
    special.extend_from_slice(&[0xff; 64]);
    std::fs::write(dir.join("special-characters"), special)?;
    Ok(())
}
