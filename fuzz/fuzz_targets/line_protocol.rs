//! Exercises the InfluxDB sink's line building (`sink::points`: `sample`,
//! `SeriesKeys::sample`, `host`, `storage`, `storage_fleet`) with tag values
//! an agent controls (hostname, group, site, chassis, storage categories,
//! power source: spaces, commas, `=`, quotes, newlines, backslashes, long
//! strings) and agent-sent numbers (NaN, infinities, extreme timestamps).
//! The output must parse back as line protocol, one parsed line per
//! written line, with the same tag values; the fast `SeriesKeys` path must
//! write the builder's bytes.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use influxdb_line_protocol::{ParsedLine, parse_lines};
use libfuzzer_sys::fuzz_target;
use sobre_collector::footprint::compute::{Device, HostFootprint, Totals};
use sobre_collector::footprint::{FootprintConfig, GridIntensity};
use sobre_collector::sink::points::{self, Carbon, HostTags, Lines, SampleRow};
use sobre_collector::sink::series::SeriesKeys;
use sobre_collector::storage::FleetStorage;
use sobre_proto::v1::{CategoryTotal, StorageSummary};

/// Latest time the collector's clock can plausibly show (9999-12-31):
/// snapshot times and device ages come from it, not from agents.
const MAX_CLOCK_MS: i64 = 253_402_300_799_999;

#[derive(Debug, Arbitrary)]
struct Row {
    agent: i64,
    seq: i64,
    sent_ms: i64,
    interval_ms: Option<i64>,
    floats: [Option<f64>; 7],
    ints: [Option<i64>; 13],
    user_active: Option<bool>,
    power_source: Option<u8>,
}

#[derive(Debug, Arbitrary)]
struct Dev {
    monitor: bool,
    class: String,
    embodied_kg: f64,
    lifetime_years: f64,
    since_ms: i64,
    since_from: u8,
    past_lifetime: bool,
    assumed: bool,
}

#[derive(Debug, Arbitrary)]
struct Input {
    agent: String,
    host: Option<String>,
    group: Option<String>,
    site: Option<String>,
    chassis: Option<String>,
    rows: Vec<Row>,
    pue: f64,
    devices: Vec<Dev>,
    online: bool,
    at_ms: i64,
    categories: Vec<(String, String, u64, u64)>,
    summary: [u64; 4],
    finished_at_ms: i64,
    fleet: [u64; 5],
}

fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    // Agent ids are checked at ingest (1-64 of [A-Za-z0-9._-]) or made up
    // as `agent-{n}`: never empty. Everything else is as an agent sent it.
    if clean(&input.agent).is_empty() {
        return;
    }
    let tags = HostTags {
        agent: input.agent.clone(),
        host: input.host.clone(),
        group: input.group.clone(),
        site: input.site.clone(),
        chassis: input.chassis.clone(),
    };
    let fp = FootprintConfig::default();
    let grid = GridIntensity::flat(56.0);
    let carbon = Carbon {
        footprint: &fp,
        grid: &grid,
    };
    let at_ms = input.at_ms.rem_euclid(MAX_CLOCK_MS);

    let mut lines = Lines::default();
    let mut fast = Lines::default();
    let mut keys = SeriesKeys::default();
    let mut expected: Vec<(&str, Vec<(&str, String)>)> = Vec::new();
    for r in &input.rows {
        let row = sample_row(r);
        points::sample(&mut lines, &tags, &row, &carbon);
        // One host, its tags never change: one generation.
        keys.sample(&mut fast, &tags, 0, &row, &carbon);
        let mut t = host_tags(&tags);
        push_tag(&mut t, "source", row.power_source.as_deref());
        expected.push(("usage", t));
    }
    assert_eq!(
        lines.buf, fast.buf,
        "SeriesKeys::sample must write the builder's bytes"
    );
    assert_eq!(lines.ends, fast.ends);

    let h = host_footprint(&input);
    points::host(&mut lines, &tags, &h, input.online, at_ms);
    expected.push(("host", host_tags(&tags)));

    let summary = StorageSummary {
        files: input.summary[0],
        bytes: input.summary[1],
        dirs: input.summary[2],
        unreadable: input.summary[3],
        finished_at_ms: input.finished_at_ms,
        categories: input
            .categories
            .iter()
            .map(|(c, a, f, b)| CategoryTotal {
                category: c.clone(),
                age: a.clone(),
                files: *f,
                bytes: *b,
            })
            .collect(),
        ..Default::default()
    };
    points::storage(&mut lines, &tags, &summary, at_ms);
    for (c, a, _, _) in &input.categories {
        if clean(c).is_empty() {
            continue;
        }
        let mut t = host_tags(&tags);
        push_tag(&mut t, "category", Some(c));
        push_tag(&mut t, "age", Some(a));
        expected.push(("storage", t));
    }
    expected.push(("storage_host", host_tags(&tags)));

    let f = &input.fleet;
    let fleet = FleetStorage {
        hosts: f[0] as usize,
        files: f[1],
        bytes: f[2],
        unreadable: 0,
        partial_hosts: f[3] as usize,
        reclaimable_bytes: f[4],
        categories: Vec::new(),
        by_age: Vec::new(),
        by_group: Vec::new(),
        redundant: Vec::new(),
        redundant_bytes: f[0],
    };
    points::storage_fleet(&mut lines, &fleet, at_ms);
    expected.push(("storage_fleet", Vec::new()));

    check(&lines, &expected);
});

fn sample_row(r: &Row) -> SampleRow {
    let [cpu, l1, l5, l15, cpu_s, power, energy] = r.floats;
    let [mt, ma, st, su, dr, dw, rx, tx, up, us, idle, rss, sent] = r.ints;
    SampleRow {
        rowid: 1,
        agent: r.agent,
        seq: r.seq,
        sent_ms: r.sent_ms,
        interval_ms: r.interval_ms,
        cpu_percent: cpu,
        mem_total: mt,
        mem_available: ma,
        swap_total: st,
        swap_used: su,
        disk_read: dr,
        disk_written: dw,
        net_rx: rx,
        net_tx: tx,
        load1: l1,
        load5: l5,
        load15: l15,
        uptime_s: up,
        user_sessions: us,
        input_idle_s: idle,
        user_active: r.user_active,
        agent_cpu_s: cpu_s,
        agent_rss: rss,
        agent_sent: sent,
        power_w: power,
        energy_j: energy,
        // The store keeps the collector's name of the agent's enum.
        power_source: r
            .power_source
            .map(|s| ["", "rapl", "battery", "model"][usize::from(s % 4)].to_owned()),
    }
}

/// A host's footprint as `compute` makes it from a validated
/// `[footprint]` (PUE >= 1, kg >= 0, years > 0, all finite) and dates no
/// later than the collector's clock allows.
fn host_footprint(input: &Input) -> HostFootprint {
    let finite = |v: f64, min: f64| if v.is_finite() && v >= min { v } else { min };
    let devices: Vec<Device> = input
        .devices
        .iter()
        .map(|d| {
            let years = finite(d.lifetime_years, 0.0);
            Device {
                kind: if d.monitor { "monitor" } else { "host" },
                class: d.class.clone(),
                name: String::new(),
                embodied_kg: finite(d.embodied_kg, 0.0),
                lifetime_years: if years > 0.0 { years } else { 1.0 },
                since_ms: d.since_ms.rem_euclid(MAX_CLOCK_MS),
                since_from: ["bios", "edid", "first_seen"][usize::from(d.since_from % 3)],
                past_lifetime: d.past_lifetime,
                amortised_kg: 0.0,
                life_extension_kg_per_year: 0.0,
                assumed: d.assumed,
            }
        })
        .collect();
    let embodied_kg = devices.iter().map(|d| d.embodied_kg).sum();
    HostFootprint {
        id: input.agent.clone(),
        hostname: input.host.clone(),
        group: input.group.clone().unwrap_or_default(),
        chassis: input.chassis.clone().unwrap_or_default(),
        pue: finite(input.pue, 1.0),
        totals: Totals {
            embodied_kg,
            ..Default::default()
        },
        devices,
    }
}

/// The tags `start` writes: `agent`, then the non-empty labels by name.
fn host_tags(t: &HostTags) -> Vec<(&'static str, String)> {
    let mut out = vec![("agent", clean(&t.agent))];
    for (k, v) in [
        ("chassis", &t.chassis),
        ("group", &t.group),
        ("host", &t.host),
        ("site", &t.site),
    ] {
        push_tag(&mut out, k, v.as_deref());
    }
    out
}

/// The tag value expected for what an agent sent: line protocol cannot
/// carry line breaks or tabs (spaces instead) nor a trailing backslash
/// (dropped).
fn clean(v: &str) -> String {
    v.replace(['\n', '\r', '\t'], " ")
        .trim_end_matches('\\')
        .to_owned()
}

/// Empty values are left out.
fn push_tag(out: &mut Vec<(&'static str, String)>, key: &'static str, v: Option<&str>) {
    if let Some(v) = v.map(clean).filter(|v| !v.is_empty()) {
        out.push((key, v));
    }
}

fn check(lines: &Lines, expected: &[(&str, Vec<(&str, String)>)]) {
    let text = std::str::from_utf8(&lines.buf).expect("line protocol is UTF-8");
    let parsed: Vec<ParsedLine<'_>> = parse_lines(text)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("invalid line protocol ({e}):\n{text}"));
    assert_eq!(
        parsed.len(),
        lines.len(),
        "one parsed line per line written:\n{text}"
    );
    assert_eq!(parsed.len(), expected.len());
    for (i, (p, (measurement, tags))) in parsed.iter().zip(expected).enumerate() {
        // Each recorded line is whole on its own (batches split there).
        let one = std::str::from_utf8(lines.slice(i, i + 1)).expect("UTF-8");
        assert_eq!(parse_lines(one).count(), 1, "line {i} alone: {one:?}");
        assert_eq!(p.series.measurement.as_str(), *measurement);
        let got: Vec<(String, String)> = p
            .series
            .tag_set
            .iter()
            .flatten()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let want: Vec<(String, String)> = tags
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        assert_eq!(got, want, "tags of line {i}: {one:?}");
        assert!(!p.field_set.is_empty());
    }
}
