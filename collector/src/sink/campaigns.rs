//! Clean Up Day campaign progress as `campaign` points: one per campaign
//! and group per snapshot, from the campaign report (`campaign::report`),
//! so that Grafana and the report add up the same way. SCHEMA.md
//! documents the measurement.

use super::points::Lines;
use crate::campaign::report::{NO_GROUP, Report};
use influxdb_line_protocol::LineProtocolBuilder;

/// Counts are u64 in the report; line protocol integers are i64.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One `campaign` line per group of `r`, at `at_ms` (the snapshot's time).
pub fn campaign(out: &mut Lines, r: &Report, at_ms: i64) {
    let factor = &r.co2e.factor;
    for g in &r.by_group {
        // Line protocol has no empty tag values: a host without a group
        // is counted under the report's placeholder.
        let group = if g.group.is_empty() {
            NO_GROUP
        } else {
            &g.group
        };
        LineProtocolBuilder::new_with(&mut out.buf)
            .measurement("campaign")
            .tag("campaign", &r.campaign.id)
            .tag("group", group)
            .field("files_deleted", int(g.files_deleted))
            .field("bytes_deleted", int(g.bytes_deleted))
            .field("participants", g.participants as i64)
            .field("hosts", g.hosts as i64)
            .field("hosts_with_baseline", g.with_baseline as i64)
            .field("files_added", int(g.files_added))
            .field("bytes_added", int(g.bytes_added))
            .field("kg_co2e_per_year", g.kg_co2e_per_year)
            .field("kg_co2e_per_gb_year", factor.kg_per_gb_year)
            .field("factor", factor.key)
            .timestamp(at_ms)
            .close_line();
        out.closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::{NewCampaign, Scope, State, report};
    use crate::sink::source::Source;
    use crate::store::campaigns as db;
    use sobre_proto::v1::CampaignProgress;

    const GRID: f64 = 52.0;
    const PUE: f64 = 1.5;

    fn agent(conn: &dyn crate::db::Db, id: &str, group: &str) {
        conn.execute(
            "INSERT INTO agents (agent_id, hostname, first_seen_ms, last_seen_ms, inventory, grp)
             VALUES (?1, ?1, 0, 0, json_object('group', ?2), ?2)",
            crate::args![id, group],
        )
        .expect("agent");
    }

    fn count(id: &str, files: u64, bytes: u64, added: u64) -> CampaignProgress {
        CampaignProgress {
            campaign_id: id.into(),
            baseline_at_ms: 1_000,
            counted_at_ms: 2_000,
            files_deleted: files,
            bytes_deleted: bytes,
            files_added: added,
            bytes_added: added * 10,
            ..Default::default()
        }
    }

    fn new(id: &str, scope: Scope) -> NewCampaign {
        NewCampaign {
            id: id.into(),
            name: "Clean Up Day".into(),
            starts_at_ms: 0,
            ends_at_ms: 10_000,
            scope,
            factor: "vendor-2021".into(),
            rescan_interval_s: 3600,
        }
    }

    /// A line parsed back: (campaign, group) and its fields as printed.
    type Parsed = ((String, String), Vec<(String, String)>);

    fn parse(lines: &Lines) -> Vec<Parsed> {
        let text = String::from_utf8(lines.buf.clone()).expect("utf8");
        influxdb_line_protocol::parse_lines(&text)
            .map(|l| {
                let l = l.expect("valid line protocol");
                assert_eq!(l.series.measurement.as_str(), "campaign");
                let tag = |k: &str| {
                    l.series
                        .tag_set
                        .as_ref()
                        .and_then(|t| t.iter().find(|(n, _)| n.as_str() == k))
                        .map(|(_, v)| v.to_string())
                        .unwrap_or_default()
                };
                let fields = l
                    .field_set
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                ((tag("campaign"), tag("group")), fields)
            })
            .collect()
    }

    #[test]
    fn running_and_ended_campaigns_give_one_point_per_group_from_the_report() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn: crate::store::Conn =
            Box::new(crate::store::open(dir.path(), false).expect("store"));
        agent(&conn, "a", "dsi");
        agent(&conn, "b", "dsi");
        agent(&conn, "c", "");
        agent(&conn, "d", "rh");
        // Running over everyone; ended over dsi; planned and archived ones
        // are not written.
        db::create(&conn, &new("cud", Scope::default()), 0).expect("create");
        let dsi = Scope {
            groups: vec!["dsi".into()],
            ..Default::default()
        };
        for (id, to) in [
            ("old", &[State::Running, State::Ended][..]),
            ("gone", &[State::Running, State::Ended, State::Archived]),
            ("next", &[]),
        ] {
            db::create(&conn, &new(id, dsi.clone()), 0).expect("create");
            for s in to {
                db::transition(&conn, id, *s, 1).expect("transition");
            }
        }
        db::transition(&conn, "cud", State::Running, 1).expect("start");
        let tx: &dyn crate::db::Db = &conn;
        db::record_progress(tx, "a", &count("cud", 3, 2_000_000_000, 1)).expect("a");
        db::record_progress(tx, "b", &count("cud", 0, 0, 2)).expect("b");
        db::record_progress(tx, "c", &count("cud", 1, 500, 0)).expect("c");
        db::record_progress(tx, "a", &count("old", 7, 70, 0)).expect("old");
        db::record_progress(tx, "a", &count("gone", 9, 90, 0)).expect("gone");

        let reports = Source::open(&crate::store::Location::sqlite(dir.path()), None)
            .expect("source")
            .campaign_reports(GRID, PUE, 5_000)
            .expect("reports");
        let mut ids: Vec<_> = reports.iter().map(|r| r.campaign.id.as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["cud", "old"], "running and ended only");
        let mut lines = Lines::default();
        for r in &reports {
            campaign(&mut lines, r, 5_000);
        }
        let mut got = parse(&lines);
        got.sort();
        let keys: Vec<_> = got
            .iter()
            .map(|(k, _)| (k.0.as_str(), k.1.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("cud", "(none)"),
                ("cud", "dsi"),
                ("cud", "rh"),
                ("old", "dsi")
            ]
        );
        let field = |i: usize, k: &str| {
            got[i]
                .1
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("no {k} in {:?}", got[i]))
        };
        // dsi in "cud": a deleted 3 files, b deleted nothing but added 2.
        assert_eq!(field(1, "files_deleted"), "3i");
        assert_eq!(field(1, "bytes_deleted"), "2000000000i");
        assert_eq!(field(1, "participants"), "1i");
        assert_eq!(field(1, "hosts"), "2i");
        assert_eq!(field(1, "hosts_with_baseline"), "2i");
        assert_eq!(field(1, "files_added"), "3i");
        assert_eq!(field(1, "bytes_added"), "30i");
        assert_eq!(field(1, "factor"), "vendor-2021");
        // rh has a host in scope and no baseline.
        assert_eq!(field(2, "hosts"), "1i");
        assert_eq!(field(2, "hosts_with_baseline"), "0i");
        assert_eq!(field(2, "participants"), "0i");
        // The groups add up to the report's totals, the CO2e too, with the
        // chosen factor.
        let cud = reports
            .iter()
            .find(|r| r.campaign.id == "cud")
            .expect("cud");
        // Integers print with their `i` suffix.
        let num = |i: usize, k: &str| -> f64 {
            let v = field(i, k);
            v.trim_end_matches('i')
                .parse()
                .unwrap_or_else(|_| panic!("{k}={v}"))
        };
        let sum = |k: &str| -> f64 { (0..3).map(|i| num(i, k)).sum() };
        assert_eq!(sum("files_deleted"), cud.totals.files_deleted as f64);
        assert_eq!(sum("bytes_deleted"), cud.totals.bytes_deleted as f64);
        assert_eq!(sum("participants"), cud.participants as f64);
        assert_eq!(sum("hosts"), cud.hosts_in_scope as f64);
        assert_eq!(sum("files_added"), cud.totals.files_added as f64);
        assert!((sum("kg_co2e_per_year") - cud.co2e.kg_per_year).abs() < 1e-9);
        let factor = report::build(&conn, "cud", GRID, PUE, 5_000)
            .expect("report")
            .co2e
            .factor;
        assert_eq!(factor.key, "vendor-2021");
        let kg = num(1, "kg_co2e_per_year");
        assert!((kg - 2.0 * factor.kg_per_gb_year).abs() < 1e-9, "{kg}");
        assert_eq!(num(1, "kg_co2e_per_gb_year"), factor.kg_per_gb_year);
        assert_eq!(lines.len(), 4);
        // SCHEMA.md's list (kept by the sink's schema test) is what is written.
        let written: Vec<&str> = got[0].1.iter().map(|(k, _)| k.as_str()).collect();
        let listed = crate::sink::points::SCHEMA
            .iter()
            .find(|(m, _)| *m == "campaign")
            .map(|(_, f)| f.to_vec())
            .unwrap_or_default();
        assert_eq!(written, listed);
    }
}
