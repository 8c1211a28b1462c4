//! The detectors' findings as `finding` points: one per (kind, host) the
//! store has a finding for, with how many hold now and what they would
//! save. SCHEMA.md documents the measurement.

use super::points::{HostTags, Lines, start};
use influxdb_line_protocol::LineProtocolBuilder;

const HOURS_PER_YEAR: f64 = 8760.0;
const DAY_MS: f64 = 86_400_000.0;

/// The findings of one kind on one host (`agent_id`), or fleet-wide
/// (`None`: consolidation, redundant content), summed by the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FindingRow {
    pub kind: String,
    pub agent_id: Option<String>,
    /// Not resolved: open, acknowledged or snoozed.
    pub active: i64,
    /// Active and neither acknowledged nor snoozed.
    pub open: i64,
    /// Sums over the active findings (0 when none carries the estimate).
    pub saving_kwh_year: f64,
    pub saving_kg_year: f64,
    pub saving_bytes: i64,
    /// When the oldest active finding was first seen.
    pub oldest_active_ms: Option<i64>,
}

/// One `finding` line; `tags` are the host's (`None` for a fleet-wide row).
pub fn finding(out: &mut Lines, tags: Option<&HostTags>, f: &FindingRow, at_ms: i64) {
    let m = match tags {
        Some(t) => start(&mut out.buf, "finding", t),
        None => LineProtocolBuilder::new_with(&mut out.buf).measurement("finding"),
    };
    let days = f
        .oldest_active_ms
        .map_or(0.0, |t| (at_ms.saturating_sub(t)).max(0) as f64 / DAY_MS);
    m.tag("kind", &f.kind)
        .field("active", f.active)
        .field("open", f.open)
        // Mean power at stake: the yearly energy spread over the year.
        .field("saving_w", f.saving_kwh_year * 1000.0 / HOURS_PER_YEAR)
        .field("saving_kwh_year", f.saving_kwh_year)
        .field("saving_kg_year", f.saving_kg_year)
        .field("saving_bytes", f.saving_bytes)
        .field("active_days", (days * 1000.0).round() / 1000.0)
        .timestamp(at_ms)
        .close_line();
    out.closed();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_finding_carries_its_tags_kind_and_savings() {
        let tags = HostTags {
            agent: "srv-1".into(),
            host: Some("srv-1.mairie".into()),
            group: Some("dsi".into()),
            ..Default::default()
        };
        let row = FindingRow {
            kind: "idle_server".into(),
            agent_id: Some("srv-1".into()),
            active: 1,
            open: 1,
            saving_kwh_year: 87.6,
            saving_kg_year: 4.9,
            saving_bytes: 0,
            oldest_active_ms: Some(0),
        };
        let mut lines = Lines::default();
        finding(&mut lines, Some(&tags), &row, 2 * 86_400_000);
        finding(
            &mut lines,
            None,
            &FindingRow {
                kind: "redundant".into(),
                ..row.clone()
            },
            0,
        );
        let text = String::from_utf8(lines.buf.clone()).expect("utf8");
        let parsed: Vec<_> = influxdb_line_protocol::parse_lines(&text)
            .collect::<Result<_, _>>()
            .expect("valid line protocol");
        assert_eq!(parsed.len(), 2);
        let tag = |i: usize, k: &str| {
            parsed[i]
                .series
                .tag_set
                .as_ref()
                .and_then(|t| t.iter().find(|(n, _)| n.as_str() == k))
                .map(|(_, v)| v.to_string())
        };
        let field = |i: usize, k: &str| {
            parsed[i]
                .field_set
                .iter()
                .find(|(n, _)| n.as_str() == k)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(tag(0, "kind").as_deref(), Some("idle_server"));
        assert_eq!(tag(0, "host").as_deref(), Some("srv-1.mairie"));
        assert_eq!(tag(0, "group").as_deref(), Some("dsi"));
        // 87.6 kWh a year is a mean of 10 W.
        assert_eq!(field(0, "saving_w").as_deref(), Some("10"));
        assert_eq!(field(0, "active_days").as_deref(), Some("2"));
        assert_eq!(tag(1, "agent"), None, "fleet-wide: no host tags");
        assert_eq!(tag(1, "kind").as_deref(), Some("redundant"));
        assert_eq!(lines.len(), 2);
    }
}
