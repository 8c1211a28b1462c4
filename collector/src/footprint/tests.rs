//! The footprint against hand-computed figures.

use super::compute::*;
use super::config::{Embodied, FootprintConfig};
use super::grid::GridIntensity;
use sobre_proto::v1::{Inventory, Monitor};

const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % HOUR_MS;

fn host(id: &str, chassis: &str, group: &str) -> HostInput {
    HostInput {
        id: id.into(),
        hostname: Some(id.into()),
        first_seen_ms: T0,
        inventory: Some(Inventory {
            chassis: chassis.into(),
            group: group.into(),
            ..Default::default()
        }),
    }
}

fn hour(id: &str, n: i64, kwh: f64, measured: bool) -> HourRow {
    HourRow {
        agent_id: id.into(),
        hour_ms: T0 + n * HOUR_MS,
        energy_j: kwh * 3.6e6,
        measured_j: if measured { kwh * 3.6e6 } else { 0.0 },
        covered_ms: HOUR_MS,
    }
}

fn window(hours: i64) -> Window {
    Window {
        from_ms: T0,
        to_ms: T0 + hours * HOUR_MS,
        step_ms: Some(HOUR_MS),
        now_ms: T0 + hours * HOUR_MS,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn use_emissions_are_energy_times_pue_times_intensity() {
    let cfg = FootprintConfig::default();
    let grid = GridIntensity::flat(56.0);
    let hosts = [host("srv", "server", "")];
    let hours = [hour("srv", 0, 0.2, true), hour("srv", 1, 0.3, false)];
    let r = compute(&cfg, &grid, &hosts, &hours, window(2));
    let h = &r.hosts[0];
    assert!(close(h.totals.energy_kwh, 0.5));
    assert_eq!(h.pue, 1.58, "servers get CCF's on-premise PUE");
    assert!(close(h.totals.facility_kwh, 0.5 * 1.58));
    assert!(close(h.totals.use_kg, 0.5 * 1.58 * 56.0 / 1000.0));
    assert_eq!(h.totals.measured_share, Some(0.4));
    assert!(close(h.totals.coverage, 1.0));
    assert_eq!(r.series.len(), 2);
    assert!(close(r.series[1].use_kg, 0.3 * 1.58 * 0.056));
}

#[test]
fn group_pue_and_hourly_intensity_apply() {
    let mut cfg = FootprintConfig::default();
    cfg.pue.insert("salle-serveurs".into(), 1.3);
    let day0_hour = (T0 / HOUR_MS) % 24;
    let grid =
        GridIntensity::parse(56.0, &format!("{},100\n", (day0_hour + 1) % 24)).expect("grid");
    let hosts = [host("a", "desktop", "salle-serveurs")];
    let hours = [hour("a", 0, 1.0, false), hour("a", 1, 1.0, false)];
    let r = compute(&cfg, &grid, &hosts, &hours, window(2));
    assert!(close(
        r.hosts[0].totals.use_kg,
        1.3 * (56.0 + 100.0) / 1000.0
    ));
}

#[test]
fn embodied_is_amortised_over_the_lifetime() {
    let cfg = FootprintConfig::default();
    let grid = GridIntensity::flat(56.0);
    let hosts = [host("pc", "laptop", "mairie")];
    // Thirty days of a laptop: 181 kg over 4 years.
    let w = Window {
        from_ms: T0,
        to_ms: T0 + 30 * DAY_MS,
        step_ms: None,
        now_ms: T0 + 30 * DAY_MS,
    };
    let r = compute(&cfg, &grid, &hosts, &[], w);
    let d = &r.hosts[0].devices[0];
    let expected = 181.0 / 4.0 * (30.0 * DAY_MS as f64) / YEAR_MS;
    assert!(
        close(d.amortised_kg, expected),
        "{} vs {expected}",
        d.amortised_kg
    );
    assert!(close(r.fleet.embodied_kg, expected));
    assert!(close(
        d.life_extension_kg_per_year,
        181.0 / 4.0 - 181.0 / 5.0
    ));
    assert!(!d.past_lifetime && !d.assumed);
    assert_eq!(d.since_from, "first_seen");
}

#[test]
fn a_device_past_its_lifetime_costs_no_more_manufacture() {
    let cfg = FootprintConfig::default();
    let mut h = host("old", "desktop", "");
    if let Some(inv) = &mut h.inventory {
        inv.bios_date = "03/15/2015".into(); // 11 years before T0's 2027
    }
    let r = compute(&cfg, &GridIntensity::flat(56.0), &[h], &[], window(24));
    let d = &r.hosts[0].devices[0];
    assert_eq!(d.since_from, "bios");
    assert!(d.past_lifetime);
    assert_eq!(d.amortised_kg, 0.0);
}

#[test]
fn monitors_count_and_unknown_classes_are_flagged() {
    let cfg = FootprintConfig::default();
    let mut h = host("t", "tablet", "");
    if let Some(inv) = &mut h.inventory {
        inv.monitors.push(Monitor {
            manufacturer: "DEL".into(),
            model: "P2419H".into(),
            year: 2026,
            ..Default::default()
        });
    }
    let w = Window {
        from_ms: T0,
        to_ms: T0 + 365 * DAY_MS,
        step_ms: Some(DAY_MS * 365),
        now_ms: T0,
    };
    let r = compute(&cfg, &GridIntensity::flat(56.0), &[h], &[], w);
    let devs = &r.hosts[0].devices;
    assert_eq!(devs.len(), 2);
    assert!(
        devs[0].assumed && devs[0].class == "desktop",
        "a tablet has no figure of its own"
    );
    assert_eq!((devs[1].kind, devs[1].since_from), ("monitor", "edid"));
    let total: f64 = devs.iter().map(|d| d.amortised_kg).sum();
    assert!(close(r.fleet.embodied_kg, total));
    // The series adds up to the totals.
    let series: f64 = r.series.iter().map(|b| b.embodied_kg).sum();
    assert!(close(series, total), "{series} vs {total}");
}

#[test]
fn fleet_and_groups_add_up() {
    let mut cfg = FootprintConfig::default();
    cfg.embodied.insert(
        "vm".into(),
        Embodied {
            kg: 100.0,
            years: 2.0,
        },
    );
    let hosts = [
        host("a", "vm", "g1"),
        host("b", "server", "g2"),
        host("c", "desktop", "g1"),
    ];
    let hours = [
        hour("a", 0, 1.0, false),
        hour("b", 0, 2.0, true),
        hour("c", 0, 0.5, false),
    ];
    let r = compute(&cfg, &GridIntensity::flat(56.0), &hosts, &hours, window(1));
    assert_eq!(r.fleet.hosts, 3);
    assert!(close(r.fleet.energy_kwh, 3.5));
    let g1 = r.groups.iter().find(|g| g.group == "g1").expect("g1");
    assert!(close(g1.totals.energy_kwh, 1.5));
    assert_eq!(g1.totals.hosts, 2);
    let sum: f64 = r.hosts.iter().map(|h| h.totals.total_kg).sum();
    assert!(close(r.fleet.total_kg, sum));
    assert!(close(r.fleet.measured_share.unwrap_or(0.0), 2.0 / 3.5));
}

#[test]
fn hours_outside_the_window_are_not_counted() {
    let r = compute(
        &FootprintConfig::default(),
        &GridIntensity::flat(56.0),
        &[host("a", "desktop", "")],
        &[
            hour("a", -2, 9.0, false),
            hour("a", 0, 1.0, false),
            hour("a", 5, 9.0, false),
        ],
        window(2),
    );
    assert!(close(r.fleet.energy_kwh, 1.0));
}
