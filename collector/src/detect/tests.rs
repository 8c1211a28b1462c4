//! Detectors on synthetic histories: each fires exactly when its rule
//! says, not one sample before.

use super::rules::*;
use super::*;
use sobre_proto::v1::{Battery, CategoryTotal};

/// Monday 2026-11-30 00:00 local (UTC+1) = 2026-11-29 23:00 UTC.
const MONDAY: i64 = 20_787 * DAY_MS - HOUR_MS;

fn cfg() -> DetectConfig {
    DetectConfig::default()
}

fn hour(hour_ms: i64, cpu: f64, net: i64, active: bool) -> HourStats {
    HourStats {
        hour_ms,
        energy_j: 36_000.0, // 10 W for an hour
        usage_ms: HOUR_MS,
        cpu_weighted: cpu * HOUR_MS as f64,
        net_bytes: net,
        active_ms: if active { HOUR_MS } else { 0 },
        mem_used_max: 1 << 30,
    }
}

fn host(chassis: &str, hours: Vec<HourStats>) -> HostHistory {
    HostHistory {
        id: "h1".into(),
        inventory: Inventory {
            chassis: chassis.into(),
            cpu_threads: 4,
            mem_total_bytes: 16 << 30,
            ..Default::default()
        },
        pue: 1.0,
        grid_g_per_kwh: 56.0,
        first_seen_ms: hours.first().map(|h| h.hour_ms).unwrap_or(0),
        last_seen_ms: hours.last().map(|h| h.hour_ms).unwrap_or(0),
        hours,
        ..Default::default()
    }
}

/// `days` full days before `MONDAY`, each with the given per-day CPU.
fn server_days(cpus: &[f64], net_per_hour: i64) -> Vec<HourStats> {
    let start = MONDAY - cpus.len() as i64 * DAY_MS;
    let mut v = Vec::new();
    for (d, cpu) in cpus.iter().enumerate() {
        for h in 0..24 {
            v.push(hour(
                start + d as i64 * DAY_MS + h * HOUR_MS,
                *cpu,
                net_per_hour,
                false,
            ));
        }
    }
    v
}

#[test]
fn calendar_helpers() {
    assert_eq!(date(20_785), "2026-11-28");
    assert_eq!(weekday(local_day(&cfg(), MONDAY)), 0, "MONDAY is a Monday");
    assert_eq!(local_hour(&cfg(), MONDAY), 0);
}

#[test]
fn idle_server_fires_at_four_idle_days_of_fourteen() {
    let mut cpus = vec![50.0; 14];
    for c in cpus.iter_mut().take(3) {
        *c = 5.0;
    }
    assert!(
        idle_server(&cfg(), &host("server", server_days(&cpus, 1000)), MONDAY).is_none(),
        "3 idle days"
    );
    cpus[3] = 10.0; // exactly the threshold: idle
    let f = idle_server(&cfg(), &host("server", server_days(&cpus, 1000)), MONDAY)
        .expect("4 idle days");
    assert_eq!(f.evidence["idle_days"], 4);
    // 10 W all day = 0.24 kWh/day → 87.6 kWh a year.
    assert!((f.saving_kwh_year.expect("kwh") - 87.6).abs() < 1e-9);
    cpus[3] = 10.1;
    assert!(
        idle_server(&cfg(), &host("server", server_days(&cpus, 1000)), MONDAY).is_none(),
        "10.1 % is busy"
    );
}

#[test]
fn idle_server_needs_fourteen_days_of_history() {
    let cpus = vec![1.0; 13];
    assert!(
        idle_server(&cfg(), &host("server", server_days(&cpus, 0)), MONDAY).is_none(),
        "13 days"
    );
    let cpus = vec![1.0; 14];
    assert!(
        idle_server(&cfg(), &host("server", server_days(&cpus, 0)), MONDAY).is_some(),
        "14 days"
    );
}

#[test]
fn idle_server_counts_network() {
    // 5 MB a day is the limit: 208,333 B/h × 24 = 4,999,992 B idle; 208,334 × 24 > 5 MB busy.
    let cpus = vec![1.0; 14];
    assert!(idle_server(&cfg(), &host("server", server_days(&cpus, 208_333)), MONDAY).is_some());
    assert!(idle_server(&cfg(), &host("server", server_days(&cpus, 208_334)), MONDAY).is_none());
    assert!(
        idle_server(&cfg(), &host("desktop", server_days(&cpus, 0)), MONDAY).is_none(),
        "servers only"
    );
}

/// Hours of the week before `MONDAY`, on, nobody active, where `pick` says.
fn week(pick: impl Fn(i64, i64) -> bool) -> Vec<HourStats> {
    let start = MONDAY - 7 * DAY_MS;
    (0..7 * 24)
        .map(|i| start + i * HOUR_MS)
        .filter(|t| pick(weekday(local_day(&cfg(), *t)), local_hour(&cfg(), *t)))
        .map(|t| hour(t, 3.0, 0, false))
        .collect()
}

#[test]
fn left_on_fires_at_eight_off_hours() {
    // Tuesday 19:00–02:59 (8 hours) on, nobody there.
    let h = host(
        "desktop",
        week(|wd, hod| (wd == 1 && hod >= 19) || (wd == 2 && hod < 3)),
    );
    let f = left_on(&cfg(), &h, MONDAY).expect("8 hours");
    assert_eq!(f.evidence["wasted_hours"], 8);
    // 8 × 10 Wh = 0.08 kWh a week → 4.16 kWh a year.
    assert!((f.saving_kwh_year.expect("kwh") - 4.16).abs() < 1e-9);
    let h = host(
        "desktop",
        week(|wd, hod| (wd == 1 && hod >= 19) || (wd == 2 && hod < 2)),
    );
    assert!(left_on(&cfg(), &h, MONDAY).is_none(), "7 hours");
}

#[test]
fn working_hours_and_presence_do_not_count() {
    // Every weekday 07:00–18:59: on during working hours only.
    let h = host("desktop", week(|wd, hod| wd < 5 && (7..19).contains(&hod)));
    assert!(left_on(&cfg(), &h, MONDAY).is_none());
    // Every night, but somebody is working.
    let mut hours = week(|_, hod| !(7..19).contains(&hod));
    for s in &mut hours {
        s.active_ms = 60_000;
    }
    assert!(left_on(&cfg(), &host("desktop", hours), MONDAY).is_none());
}

#[test]
fn a_holiday_free_weekend_is_off_hours_all_day() {
    // Saturday 10:00–17:59: daytime, but a weekend.
    let h = host("laptop", week(|wd, hod| wd == 5 && (10..18).contains(&hod)));
    assert_eq!(
        left_on(&cfg(), &h, MONDAY).expect("weekend").evidence["wasted_hours"],
        8
    );
    let mut c = cfg();
    c.left_on.weekends = false;
    assert!(left_on(&c, &h, MONDAY).is_none());
}

#[test]
fn consolidation_says_how_many_machines_are_enough() {
    let mk = |id: &str, cpu: f64, mem: i64| {
        let mut h = host("server", server_days(&[cpu; 14], 0));
        h.id = id.into();
        h.inventory.group = "salle-1".into();
        for s in &mut h.hours {
            s.mem_used_max = mem;
        }
        h
    };
    // Three 4-thread servers at 10 %: 1.2 cores of 2.8 per server.
    let hosts = [
        mk("a", 10.0, 1 << 30),
        mk("b", 10.0, 1 << 30),
        mk("c", 10.0, 1 << 30),
    ];
    let f = consolidation(&cfg(), &hosts, MONDAY);
    assert_eq!(f.len(), 1);
    assert_eq!(
        (
            f[0].evidence["servers"].as_u64(),
            f[0].evidence["needed"].as_u64()
        ),
        (Some(3), Some(1))
    );
    // Two freed servers at 10 W all year: 175.2 kWh.
    assert!((f[0].saving_kwh_year.expect("kwh") - 175.2).abs() < 1e-6);
    // Memory-bound: 8 GiB each of 16 GiB at 70 % → all three needed.
    let hosts = [
        mk("a", 10.0, 8 << 30),
        mk("b", 10.0, 8 << 30),
        mk("c", 10.0, 8 << 30),
    ];
    assert!(consolidation(&cfg(), &hosts, MONDAY).is_empty());
}

#[test]
fn p95_is_nearest_rank() {
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(p95(v), 95.0);
    assert_eq!(p95(vec![3.0]), 3.0);
    assert_eq!(p95(Vec::new()), 0.0);
}

#[test]
fn bloat_battery_lifetime_and_redundancy() {
    let mut h = host("laptop", vec![hour(MONDAY - HOUR_MS, 1.0, 0, true)]);
    let cat = |c: &str, b: u64| CategoryTotal {
        category: c.into(),
        age: "<1y".into(),
        files: 1,
        bytes: b,
    };
    h.storage = Some(StorageSummary {
        categories: vec![
            cat("duplicates", 600 << 20),
            cat("large", 5 << 30),
            cat("temp", 424 << 20),
        ],
        ..Default::default()
    });
    let f = bloat(&cfg(), &h).expect("1 GiB of bloat");
    assert_eq!(
        f.saving_bytes,
        Some(1024 << 20),
        "large files are not bloat"
    );
    if let Some(s) = &mut h.storage {
        s.categories[2].bytes -= 1;
    }
    assert!(bloat(&cfg(), &h).is_none(), "one byte short");

    h.inventory.batteries = vec![Battery {
        name: "BAT0".into(),
        design_capacity_wh_milli: 50_000,
        full_capacity_wh_milli: 29_000,
        cycle_count: 900,
    }];
    assert_eq!(battery_worn(&cfg(), &h, MONDAY).len(), 1);
    h.inventory.batteries[0].full_capacity_wh_milli = 30_000;
    assert!(
        battery_worn(&cfg(), &h, MONDAY).is_empty(),
        "60 % exactly is not worn"
    );

    h.past_lifetime = true;
    h.life_extension_kg_per_year = 9.05;
    assert_eq!(
        past_lifetime(&cfg(), &h, MONDAY).and_then(|f| f.saving_kg_year),
        Some(9.05)
    );
    assert!(
        past_lifetime(&cfg(), &h, MONDAY + 8 * DAY_MS).is_none(),
        "not seen for 8 days"
    );

    let r = crate::storage::Redundant {
        id: "ab".into(),
        size: 200 << 20,
        hosts: 3,
        copies: 3,
        reclaimable_bytes: 400 << 20,
    };
    assert_eq!(redundant(&cfg(), &[r])[0].saving_bytes, Some(400 << 20));
}

#[test]
fn finding_ids_are_stable_and_distinct() {
    let a = finding_id(Kind::LeftOn, Some("pc-1"), "pc-1");
    assert_eq!(a, finding_id(Kind::LeftOn, Some("pc-1"), "pc-1"));
    assert_ne!(a, finding_id(Kind::Bloat, Some("pc-1"), "pc-1"));
    assert_ne!(a, finding_id(Kind::LeftOn, Some("pc-2"), "pc-2"));
    assert!(a.starts_with("left_on-"));
}
