//! Rows of the store → line protocol, with the `influxdb-line-protocol`
//! builder (escaping and syntax are its job). SCHEMA.md documents every
//! measurement, tag and field written here; a test below keeps them equal.

use crate::footprint::compute::{HostFootprint, YEAR_MS};
use crate::footprint::{FootprintConfig, GridIntensity};
use crate::storage::FleetStorage;
use influxdb_line_protocol::LineProtocolBuilder;
use influxdb_line_protocol::builder::{AfterField, AfterMeasurement};
use sobre_proto::v1::StorageSummary;

const J_PER_KWH: f64 = 3.6e6;

/// The low-cardinality tags of one agent, from its row and inventory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostTags {
    pub agent: String,
    pub host: Option<String>,
    pub group: Option<String>,
    pub site: Option<String>,
    pub chassis: Option<String>,
}

/// One row of `samples`, as the sink reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleRow {
    pub rowid: i64,
    pub agent: i64,
    pub seq: i64,
    pub sent_ms: i64,
    pub interval_ms: Option<i64>,
    pub cpu_percent: Option<f64>,
    pub mem_total: Option<i64>,
    pub mem_available: Option<i64>,
    pub swap_total: Option<i64>,
    pub swap_used: Option<i64>,
    pub disk_read: Option<i64>,
    pub disk_written: Option<i64>,
    pub net_rx: Option<i64>,
    pub net_tx: Option<i64>,
    pub load1: Option<f64>,
    pub load5: Option<f64>,
    pub load15: Option<f64>,
    pub uptime_s: Option<i64>,
    pub user_sessions: Option<i64>,
    pub input_idle_s: Option<i64>,
    pub user_active: Option<bool>,
    pub agent_cpu_s: Option<f64>,
    pub agent_rss: Option<i64>,
    pub agent_sent: Option<i64>,
    pub power_w: Option<f64>,
    pub energy_j: Option<f64>,
    pub power_source: Option<String>,
}

/// A growing batch of lines and where each ends, so that a batch can be
/// split at line boundaries (HTTP 413) without parsing it again.
#[derive(Debug, Default)]
pub struct Lines {
    pub buf: Vec<u8>,
    pub ends: Vec<usize>,
}

impl Lines {
    pub fn with_capacity(lines: usize) -> Self {
        Lines {
            buf: Vec::with_capacity(lines * 512),
            ends: Vec::with_capacity(lines),
        }
    }
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    /// The bytes of lines `[a, b)`.
    pub fn slice(&self, a: usize, b: usize) -> &[u8] {
        let start = if a == 0 { 0 } else { self.ends[a - 1] };
        let end = if b == 0 { 0 } else { self.ends[b - 1] };
        &self.buf[start..end]
    }
    pub(super) fn closed(&mut self) {
        self.ends.push(self.buf.len());
    }
}

type Measured<'a> = LineProtocolBuilder<&'a mut Vec<u8>, AfterMeasurement>;
type Fielded<'a> = LineProtocolBuilder<&'a mut Vec<u8>, AfterField>;

pub(super) fn start<'a>(buf: &'a mut Vec<u8>, measurement: &str, tags: &HostTags) -> Measured<'a> {
    let mut b = LineProtocolBuilder::new_with(buf)
        .measurement(measurement)
        .tag("agent", &tag_value(&tags.agent));
    // Line protocol has no empty tag values: an unknown label is absent.
    for (k, v) in [
        ("chassis", &tags.chassis),
        ("group", &tags.group),
        ("host", &tags.host),
        ("site", &tags.site),
    ] {
        if let Some(v) = v.as_deref().map(tag_value).filter(|v| !v.is_empty()) {
            b = b.tag(k, &v);
        }
    }
    b
}

/// What line protocol can carry of a tag value an agent chose: the builder
/// escapes spaces, commas, `=` and backslashes, but a line break would end
/// the line (the rest read as another point, of any agent), a tab ends the
/// tag set, and a value may not end with a backslash even escaped. Line
/// breaks and tabs become (escaped) spaces and trailing backslashes are
/// dropped (found by fuzz/fuzz_targets/line_protocol.rs).
fn tag_value(v: &str) -> std::borrow::Cow<'_, str> {
    const BREAKS: [char; 3] = ['\n', '\r', '\t'];
    let v = v.trim_end_matches('\\');
    if v.contains(BREAKS) {
        v.replace(BREAKS, " ")
            .trim_end_matches('\\')
            .to_owned()
            .into()
    } else {
        v.into()
    }
}

/// Optional fields on a line that already has one; NaN and infinities
/// are not representable in line protocol and are left out.
trait Opt: Sized {
    fn f(self, key: &str, v: Option<f64>) -> Self;
    fn i(self, key: &str, v: Option<i64>) -> Self;
}

impl Opt for Fielded<'_> {
    fn f(self, key: &str, v: Option<f64>) -> Self {
        match v {
            Some(v) if v.is_finite() => self.field(key, v),
            _ => self,
        }
    }
    fn i(self, key: &str, v: Option<i64>) -> Self {
        match v {
            Some(v) => self.field(key, v),
            None => self,
        }
    }
}

/// What turns a sample's energy into grams of CO2e.
#[derive(Debug, Clone)]
pub struct Carbon<'a> {
    pub footprint: &'a FootprintConfig,
    pub grid: &'a GridIntensity,
}

impl Carbon<'_> {
    /// Use emissions of `energy_j` drawn around `at_ms`: energy × PUE of
    /// the host × the grid intensity of that hour, in grams.
    pub fn grams(&self, energy_j: f64, at_ms: i64, tags: &HostTags) -> f64 {
        let pue = crate::footprint::compute::pue_for(
            self.footprint,
            tags.group.as_deref().unwrap_or(""),
            tags.chassis.as_deref().unwrap_or("unknown"),
        );
        energy_j / J_PER_KWH * pue * self.grid.at(at_ms)
    }
}

/// A field value of a `usage` line; `None` leaves the field out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val {
    F(Option<f64>),
    I(Option<i64>),
}

/// Rounds to `scale` (1000: three decimals). Values from the agent are f32
/// or computed from them: printing all of an f64's 17 digits would only
/// make lines longer (more to send, compress and store), not more exact.
fn round(v: Option<f64>, scale: f64) -> Option<f64> {
    v.map(|v| round_half_away(v * scale) / scale)
}

/// `x.round()` (halves away from zero), without a call: at the baseline
/// x86-64 target (no SSE4.1 `roundsd`) `f64::round` calls libm, which
/// was 1.4 % of the sink's CPU (perf, bench/sink.sh).
///
/// Exact: below 2^52 the truncation `t` is an integer of `x`'s sign and
/// `x - t`, the fraction, is exactly representable; from 2^52 up every
/// double is already an integer (and NaN and the infinities come back as
/// they are).
#[inline]
pub(super) fn round_half_away(x: f64) -> f64 {
    const INTEGERS_FROM: f64 = 4_503_599_627_370_496.0; // 2^52
    if x.is_nan() || x.abs() >= INTEGERS_FROM {
        return x;
    }
    // copysign: -0.3 rounds to -0.0, as f64::round does.
    let t = (x as i64 as f64).copysign(x);
    let fraction = x - t;
    if fraction >= 0.5 {
        t + 1.0
    } else if fraction <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// The field keys of a sample's `usage` line, in order (SCHEMA.md).
pub const USAGE_FIELDS: [&str; 25] = [
    "seq",
    "interval_s",
    "cpu_percent",
    "mem_total_bytes",
    "mem_available_bytes",
    "mem_used_bytes",
    "swap_total_bytes",
    "swap_used_bytes",
    "disk_read_bytes",
    "disk_written_bytes",
    "net_rx_bytes",
    "net_tx_bytes",
    "load1",
    "load5",
    "load15",
    "uptime_s",
    "user_sessions",
    "input_idle_s",
    "user_active",
    "power_w",
    "energy_j",
    "co2e_g",
    "agent_cpu_s",
    "agent_rss_bytes",
    "agent_sent_bytes",
];

/// The fields of a sample's `usage` line, in order (SCHEMA.md).
pub fn usage_fields(r: &SampleRow, tags: &HostTags, carbon: &Carbon) -> [(&'static str, Val); 25] {
    let values = usage_values(r, tags, carbon);
    std::array::from_fn(|i| (USAGE_FIELDS[i], values[i]))
}

/// The values of [`USAGE_FIELDS`], in the same order.
pub fn usage_values(r: &SampleRow, tags: &HostTags, carbon: &Carbon) -> [Val; 25] {
    // The middle of the sample's interval decides its hour's intensity.
    // Saturating: both come from the agent (found by fuzz/fuzz_targets/line_protocol.rs).
    let mid_ms = r.sent_ms.saturating_sub(r.interval_ms.unwrap_or(0) / 2);
    let co2e_g = r.energy_j.map(|e| carbon.grams(e, mid_ms, tags));
    let mem_used = match (r.mem_total, r.mem_available) {
        (Some(t), Some(a)) => Some(t.saturating_sub(a)),
        _ => None,
    };
    use Val::{F, I};
    [
        I(Some(r.seq)),
        F(r.interval_ms.map(|ms| ms as f64 / 1000.0)),
        F(round(r.cpu_percent, 1000.0)),
        I(r.mem_total),
        I(r.mem_available),
        I(mem_used),
        I(r.swap_total),
        I(r.swap_used),
        I(r.disk_read),
        I(r.disk_written),
        I(r.net_rx),
        I(r.net_tx),
        F(round(r.load1, 1000.0)),
        F(round(r.load5, 1000.0)),
        F(round(r.load15, 1000.0)),
        I(r.uptime_s),
        I(r.user_sessions),
        I(r.input_idle_s),
        I(r.user_active.map(i64::from)),
        F(round(r.power_w, 1000.0)),
        F(round(r.energy_j, 1000.0)),
        F(round(co2e_g, 1e6)),
        F(round(r.agent_cpu_s, 1000.0)),
        I(r.agent_rss),
        I(r.agent_sent),
    ]
}

/// One `usage` line per stored sample, at the time the agent sent it,
/// entirely through the `influxdb-line-protocol` builder. The reference
/// for [`super::series::SeriesKeys::sample`], which writes the same bytes
/// faster.
pub fn sample(out: &mut Lines, tags: &HostTags, r: &SampleRow, carbon: &Carbon) {
    let mut m = start(&mut out.buf, "usage", tags);
    if let Some(src) = r.power_source.as_deref().filter(|s| !s.is_empty()) {
        m = m.tag("source", src);
    }
    let fields = usage_fields(r, tags, carbon);
    let (k, v) = fields[0];
    let mut b = match v {
        Val::I(Some(i)) => m.field(k, i),
        _ => m.field(k, r.seq),
    };
    for (k, v) in &fields[1..] {
        b = match *v {
            Val::F(x) => b.f(k, x),
            Val::I(x) => b.i(k, x),
        };
    }
    b.timestamp(r.sent_ms).close_line();
    out.closed();
}

/// One `host` line per known agent: its devices' age, lifetime and
/// manufacture emissions, amortised over the snapshot period that ends
/// at `at_ms` (`h` was computed over `[at_ms - period_ms, at_ms)`).
pub fn host(out: &mut Lines, tags: &HostTags, h: &HostFootprint, online: bool, at_ms: i64) {
    let main = h.devices.iter().find(|d| d.kind == "host");
    // Saturating: `[footprint.embodied]` accepts any finite lifetime
    // (found by fuzz/fuzz_targets/line_protocol.rs).
    let alive = |d: &crate::footprint::compute::Device| {
        at_ms
            < d.since_ms
                .saturating_add((d.lifetime_years * YEAR_MS) as i64)
    };
    let rate: f64 = h
        .devices
        .iter()
        .filter(|d| alive(d))
        .map(|d| d.embodied_kg / d.lifetime_years)
        .sum();
    let embodied_kg: f64 = h.devices.iter().map(|d| d.embodied_kg).sum();
    let past = h.devices.iter().filter(|d| d.past_lifetime).count();
    let monitors = h.devices.iter().filter(|d| d.kind == "monitor").count();
    // Floats through `f`: a lifetime near 0 years, which
    // `[footprint.embodied]` accepts, makes `inf`, and one `inf` made the
    // whole batch unparseable (found by fuzz/fuzz_targets/line_protocol.rs).
    let b = start(&mut out.buf, "host", tags)
        .field("online", i64::from(online))
        .f("pue", Some(h.pue))
        .field("devices", h.devices.len() as i64)
        .field("monitors", monitors as i64)
        .field("devices_past_lifetime", past as i64)
        .f("embodied_kg", Some(embodied_kg))
        .f("embodied_kg_per_year", Some(rate))
        .f("embodied_g", Some(h.totals.embodied_kg * 1000.0))
        .f(
            "life_extension_kg_per_year",
            Some(h.totals.life_extension_kg_per_year),
        );
    let b = match main {
        Some(d) => b
            .f(
                "age_years",
                Some((at_ms.saturating_sub(d.since_ms) as f64 / YEAR_MS).max(0.0)),
            )
            .f("lifetime_years", Some(d.lifetime_years))
            .field("past_lifetime", i64::from(d.past_lifetime))
            .field("age_source", d.since_from)
            .field("embodied_class", d.class.as_str())
            .field("embodied_assumed", i64::from(d.assumed)),
        None => b,
    };
    b.timestamp(at_ms).close_line();
    out.closed();
}

/// The latest storage summary of one host: one `storage` line per
/// (category, age) and one `storage_host` line with the scan's totals.
pub fn storage(out: &mut Lines, tags: &HostTags, s: &StorageSummary, at_ms: i64) {
    let mut reclaimable = 0u64;
    for c in &s.categories {
        if c.category.is_empty() {
            continue;
        }
        if c.category != "large" {
            reclaimable = reclaimable.saturating_add(c.bytes);
        }
        let category = tag_value(&c.category);
        if category.is_empty() {
            continue;
        }
        let mut m = start(&mut out.buf, "storage", tags).tag("category", &category);
        let age = tag_value(&c.age);
        if !age.is_empty() {
            m = m.tag("age", &age);
        }
        m.field("files", clamp(c.files))
            .field("bytes", clamp(c.bytes))
            .timestamp(at_ms)
            .close_line();
        out.closed();
    }
    start(&mut out.buf, "storage_host", tags)
        .field("files", clamp(s.files))
        .field("bytes", clamp(s.bytes))
        .field("dirs", clamp(s.dirs))
        .field("unreadable", clamp(s.unreadable))
        .field("reclaimable_bytes", clamp(reclaimable))
        .field("large_files_fingerprinted", s.large_files.len() as i64)
        .field("complete", i64::from(s.complete))
        .field("scan_finished_ms", s.finished_at_ms)
        .field(
            "scan_age_s",
            (at_ms.saturating_sub(s.finished_at_ms) / 1000).max(0),
        )
        .timestamp(at_ms)
        .close_line();
    out.closed();
}

/// The fleet's storage (every host's latest scan), one `storage_fleet`
/// line: what the collector alone can see, such as the same large content
/// on several hosts.
pub fn storage_fleet(out: &mut Lines, f: &FleetStorage, at_ms: i64) {
    LineProtocolBuilder::new_with(&mut out.buf)
        .measurement("storage_fleet")
        .field("hosts", f.hosts as i64)
        .field("partial_hosts", f.partial_hosts as i64)
        .field("files", clamp(f.files))
        .field("bytes", clamp(f.bytes))
        .field("reclaimable_bytes", clamp(f.reclaimable_bytes))
        .field("redundant_bytes", clamp(f.redundant_bytes))
        .field("redundant_contents", f.redundant.len() as i64)
        .timestamp(at_ms)
        .close_line();
    out.closed();
}

/// Line protocol integers are signed 64-bit (unsigned needs InfluxDB 2).
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Every field name written, by measurement, for SCHEMA.md's test.
#[cfg(test)]
pub const SCHEMA: &[(&str, &[&str])] = &[
    ("usage", &USAGE_FIELDS),
    (
        "host",
        &[
            "online",
            "pue",
            "devices",
            "monitors",
            "devices_past_lifetime",
            "embodied_kg",
            "embodied_kg_per_year",
            "embodied_g",
            "life_extension_kg_per_year",
            "age_years",
            "lifetime_years",
            "past_lifetime",
            "age_source",
            "embodied_class",
            "embodied_assumed",
        ],
    ),
    ("storage", &["files", "bytes"]),
    (
        "storage_host",
        &[
            "files",
            "bytes",
            "dirs",
            "unreadable",
            "reclaimable_bytes",
            "large_files_fingerprinted",
            "complete",
            "scan_finished_ms",
            "scan_age_s",
        ],
    ),
    (
        "storage_fleet",
        &[
            "hosts",
            "partial_hosts",
            "files",
            "bytes",
            "reclaimable_bytes",
            "redundant_bytes",
            "redundant_contents",
        ],
    ),
    (
        "finding",
        &[
            "active",
            "open",
            "saving_w",
            "saving_kwh_year",
            "saving_kg_year",
            "saving_bytes",
            "active_days",
        ],
    ),
    (
        "campaign",
        &[
            "files_deleted",
            "bytes_deleted",
            "participants",
            "hosts",
            "hosts_with_baseline",
            "files_added",
            "bytes_added",
            "kg_co2e_per_year",
            "kg_co2e_per_gb_year",
            "factor",
        ],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The same bits as `f64::round`, over every kind of double
        /// (both zeros, huge, tiny, NaN, the infinities) and around
        /// halves.
        #[test]
        fn round_half_away_is_f64_round(
            x in proptest::num::f64::ANY,
            k in -10_000_000i64..10_000_000,
        ) {
            let k = k as f64;
            for x in [x, k / 1000.0, k + 0.5, k - 0.5, (k + 0.5).next_up(), (k + 0.5).next_down()] {
                let (got, want) = (round_half_away(x), x.round());
                proptest::prop_assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{x:e}: {got:e} against {want:e}"
                );
            }
        }
    }
}
