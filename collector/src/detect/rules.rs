//! One function per rule. Each says exactly when it fires; boundaries are
//! tested in `tests.rs`.

use super::{DAY_MS, DetectConfig, Finding, HOUR_MS, HostHistory, HourStats, Kind};
use serde_json::json;
use std::collections::BTreeMap;

const J_PER_KWH: f64 = 3.6e6;

/// Local day number (days since 1970-01-01, local time) of a UTC instant.
pub fn local_day(cfg: &DetectConfig, ms: i64) -> i64 {
    (ms + cfg.utc_offset_hours * HOUR_MS).div_euclid(DAY_MS)
}

/// Local hour of day, 0..23.
pub fn local_hour(cfg: &DetectConfig, ms: i64) -> i64 {
    (ms + cfg.utc_offset_hours * HOUR_MS)
        .div_euclid(HOUR_MS)
        .rem_euclid(24)
}

/// 0 = Monday ... 6 = Sunday (1970-01-01 was a Thursday).
pub fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

/// UTC instant at which a local day starts.
pub fn day_start_ms(cfg: &DetectConfig, day: i64) -> i64 {
    day * DAY_MS - cfg.utc_offset_hours * HOUR_MS
}

/// `YYYY-MM-DD` of a day number.
pub fn date(day: i64) -> String {
    let (y, m, d) = sobre_base::civil::from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

fn applies(chassis: &[String], h: &HostHistory) -> bool {
    chassis.contains(&h.inventory.chassis)
}

fn savings(f: &mut Finding, kwh_year: f64, h: &HostHistory) {
    f.saving_kwh_year = Some(kwh_year * h.pue);
    f.saving_kg_year = Some(kwh_year * h.pue * h.grid_g_per_kwh / 1000.0);
}

/// Idle server (AWS Trusted Advisor): over the last `window_days`
/// complete days, at least `min_idle_days` days with mean CPU ≤
/// `cpu_percent` and network ≤ `net_bytes`. Needs the whole window of
/// history. Saving: decommissioning, i.e. all its energy.
pub fn idle_server(cfg: &DetectConfig, h: &HostHistory, now_ms: i64) -> Option<Finding> {
    let c = &cfg.idle;
    if !applies(&c.chassis, h) {
        return None;
    }
    let today = local_day(cfg, now_ms);
    let first_day = today - c.window_days;
    // History starts at the first hour we hold (replayed spools and
    // imports can predate the collector's first sight of the host).
    let known_since = h
        .hours
        .first()
        .map_or(h.first_seen_ms, |s| s.hour_ms.min(h.first_seen_ms));
    if known_since > day_start_ms(cfg, first_day) {
        return None; // not enough history to judge
    }
    let mut days: BTreeMap<i64, HourStats> = BTreeMap::new();
    for s in &h.hours {
        let d = local_day(cfg, s.hour_ms);
        if d >= first_day && d < today {
            let e = days.entry(d).or_default();
            e.usage_ms += s.usage_ms;
            e.cpu_weighted += s.cpu_weighted;
            e.net_bytes += s.net_bytes;
            e.energy_j += s.energy_j;
        }
    }
    let idle: Vec<i64> = days
        .iter()
        .filter(|(_, s)| {
            s.usage_ms > 0 && s.cpu_mean() <= c.cpu_percent && s.net_bytes <= c.net_bytes
        })
        .map(|(d, _)| *d)
        .collect();
    if idle.len() < c.min_idle_days {
        return None;
    }
    let energy: f64 = days.values().map(|s| s.energy_j).sum();
    let mut f = Finding::new(
        Kind::IdleServer,
        Some(&h.id),
        &h.id,
        json!({
            "idle_days": idle.len(),
            "window_days": c.window_days,
            "rule": format!("mean CPU ≤ {} % and network ≤ {} bytes on at least {} of {} days", c.cpu_percent, c.net_bytes, c.min_idle_days, c.window_days),
            "days": days.iter().map(|(d, s)| json!({
                "date": date(*d),
                "cpu_percent": s.cpu_mean(),
                "net_bytes": s.net_bytes,
                "idle": idle.contains(d),
            })).collect::<Vec<_>>(),
        }),
    );
    if !days.is_empty() {
        savings(&mut f, energy / J_PER_KWH / days.len() as f64 * 365.0, h);
    }
    Some(f)
}

/// Whether an instant falls in off-hours (evenings, nights, weekends).
pub fn off_hours(cfg: &DetectConfig, hour_ms: i64) -> bool {
    let l = &cfg.left_on;
    let hod = local_hour(cfg, hour_ms);
    let night = if l.start_hour > l.end_hour {
        hod >= l.start_hour || hod < l.end_hour
    } else {
        hod >= l.start_hour && hod < l.end_hour
    };
    night || (l.weekends && weekday(local_day(cfg, hour_ms)) >= 5)
}

/// Left on: a workstation on during off-hours with nobody active, for at
/// least `min_hours` hours of the last 7 days. Saving: that energy, every
/// week of the year.
pub fn left_on(cfg: &DetectConfig, h: &HostHistory, now_ms: i64) -> Option<Finding> {
    let c = &cfg.left_on;
    if !applies(&c.chassis, h) {
        return None;
    }
    let this_hour = now_ms.div_euclid(HOUR_MS) * HOUR_MS;
    let wasted: Vec<&HourStats> = h
        .hours
        .iter()
        .filter(|s| s.hour_ms >= this_hour - 7 * DAY_MS && s.hour_ms < this_hour)
        .filter(|s| off_hours(cfg, s.hour_ms))
        .filter(|s| s.usage_ms as f64 >= c.min_coverage * HOUR_MS as f64 && s.active_ms == 0)
        .collect();
    if wasted.len() < c.min_hours {
        return None;
    }
    let kwh_week: f64 = wasted.iter().map(|s| s.energy_j).sum::<f64>() / J_PER_KWH;
    let mut f = Finding::new(
        Kind::LeftOn,
        Some(&h.id),
        &h.id,
        json!({
            "wasted_hours": wasted.len(),
            "wasted_kwh_week": kwh_week,
            "rule": format!("on with nobody active for at least {} off-hours hours ({}:00–{}:00{}) in the last 7 days", c.min_hours, c.start_hour, c.end_hour, if c.weekends { " and weekends" } else { "" }),
            "first_ms": wasted.first().map(|s| s.hour_ms),
            "last_ms": wasted.last().map(|s| s.hour_ms),
        }),
    );
    savings(&mut f, kwh_week * 52.0, h);
    Some(f)
}

/// Bloat: reclaimable storage on a host (every category but "large").
pub fn bloat(cfg: &DetectConfig, h: &HostHistory) -> Option<Finding> {
    let s = h.storage.as_ref()?;
    let mut by_cat: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for c in s.categories.iter().filter(|c| c.category != "large") {
        let e = by_cat.entry(c.category.as_str()).or_default();
        e.0 += c.files;
        e.1 += c.bytes;
    }
    let total: u64 = by_cat.values().map(|v| v.1).sum();
    if total < cfg.bloat_min_bytes {
        return None;
    }
    let mut cats: Vec<_> = by_cat.into_iter().collect();
    cats.sort_by_key(|c| std::cmp::Reverse(c.1.1));
    let mut f = Finding::new(
        Kind::Bloat,
        Some(&h.id),
        &h.id,
        json!({
            "reclaimable_bytes": total,
            "categories": cats.iter().map(|(c, (n, b))| json!({"category": c, "files": n, "bytes": b})).collect::<Vec<_>>(),
            "scan_finished_ms": s.finished_at_ms,
        }),
    );
    f.saving_bytes = Some(total);
    Some(f)
}

/// A device past its planned lifetime that still works: keep it (the
/// finding says what each more year saves).
pub fn past_lifetime(cfg: &DetectConfig, h: &HostHistory, now_ms: i64) -> Option<Finding> {
    if !h.past_lifetime || h.last_seen_ms < now_ms - cfg.alive_days * DAY_MS {
        return None;
    }
    let mut f = Finding::new(
        Kind::PastLifetime,
        Some(&h.id),
        &h.id,
        json!({"chassis": h.inventory.chassis, "bios_date": h.inventory.bios_date}),
    );
    f.saving_kg_year = Some(h.life_extension_kg_per_year);
    Some(f)
}

/// A worn battery (full capacity below a share of design): replacing it
/// keeps the machine going.
pub fn battery_worn(cfg: &DetectConfig, h: &HostHistory, now_ms: i64) -> Vec<Finding> {
    if h.last_seen_ms < now_ms - cfg.alive_days * DAY_MS {
        return Vec::new();
    }
    h.inventory
        .batteries
        .iter()
        .filter(|b| b.design_capacity_wh_milli > 0)
        .filter_map(|b| {
            let health = b.full_capacity_wh_milli as f64 / b.design_capacity_wh_milli as f64;
            (health < cfg.battery_health_below).then(|| {
                let mut f = Finding::new(
                    Kind::BatteryWorn,
                    Some(&h.id),
                    &format!("{}/{}", h.id, b.name),
                    json!({"battery": b.name, "health": health, "cycles": b.cycle_count}),
                );
                f.saving_kg_year = Some(h.life_extension_kg_per_year);
                f
            })
        })
        .collect()
}

/// 95th percentile (nearest rank); 0 for no values.
pub fn p95(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((v.len() as f64) * 0.95).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Consolidation: servers of a group whose summed p95 CPU (in cores) and
/// memory fit on fewer machines of the group's largest size, planned at
/// `target_utilisation`. Saving: the energy of the machines freed (the
/// least loaded ones).
pub fn consolidation(cfg: &DetectConfig, hosts: &[HostHistory], now_ms: i64) -> Vec<Finding> {
    let c = &cfg.consolidation;
    let since = now_ms - c.window_days * DAY_MS;
    let mut groups: BTreeMap<&str, Vec<&HostHistory>> = BTreeMap::new();
    for h in hosts.iter().filter(|h| applies(&c.chassis, h)) {
        if h.hours.iter().any(|s| s.hour_ms >= since && s.usage_ms > 0) {
            groups
                .entry(h.inventory.group.as_str())
                .or_default()
                .push(h);
        }
    }
    let mut out = Vec::new();
    for (group, members) in groups {
        if members.len() < 2 {
            continue;
        }
        let mut load = Vec::new(); // (cores p95, mem p95, mean power W, id)
        for h in &members {
            let recent: Vec<&HourStats> = h
                .hours
                .iter()
                .filter(|s| s.hour_ms >= since && s.usage_ms > 0)
                .collect();
            let cores = p95(recent.iter().map(|s| s.cpu_mean()).collect()) / 100.0
                * f64::from(h.inventory.cpu_threads.max(1));
            let mem = p95(recent.iter().map(|s| s.mem_used_max as f64).collect());
            let covered: i64 = recent.iter().map(|s| s.usage_ms).sum();
            let watts = if covered > 0 {
                recent.iter().map(|s| s.energy_j).sum::<f64>() / (covered as f64 / 1000.0)
            } else {
                0.0
            };
            load.push((cores, mem, watts, h));
        }
        let cap_cores = members
            .iter()
            .map(|h| h.inventory.cpu_threads.max(1))
            .max()
            .unwrap_or(1) as f64
            * c.target_utilisation;
        let cap_mem = members
            .iter()
            .map(|h| h.inventory.mem_total_bytes)
            .max()
            .unwrap_or(0) as f64
            * c.target_utilisation;
        let sum_cores: f64 = load.iter().map(|l| l.0).sum();
        let sum_mem: f64 = load.iter().map(|l| l.1).sum();
        let by_cpu = (sum_cores / cap_cores).ceil() as usize;
        let by_mem = if cap_mem > 0.0 {
            (sum_mem / cap_mem).ceil() as usize
        } else {
            members.len()
        };
        let needed = by_cpu.max(by_mem).max(1);
        if needed >= members.len() {
            continue;
        }
        load.sort_by(|a, b| a.0.total_cmp(&b.0));
        let freed = &load[..members.len() - needed];
        let mut f = Finding::new(
            Kind::Consolidation,
            None,
            group,
            json!({
                "group": group,
                "servers": members.len(),
                "needed": needed,
                "cpu_cores_p95": sum_cores,
                "mem_bytes_p95": sum_mem,
                "capacity_per_server": {"cores": cap_cores, "mem_bytes": cap_mem, "target_utilisation": c.target_utilisation},
                "candidates": freed.iter().map(|l| l.3.id.clone()).collect::<Vec<_>>(),
            }),
        );
        let kwh: f64 = freed.iter().map(|l| l.2 * l.3.pue * 8760.0 / 1000.0).sum();
        let kg: f64 = freed
            .iter()
            .map(|l| l.2 * l.3.pue * 8760.0 / 1000.0 * l.3.grid_g_per_kwh / 1000.0)
            .sum();
        f.saving_kwh_year = Some(kwh);
        f.saving_kg_year = Some(kg);
        out.push(f);
    }
    out
}

/// The same large content on several hosts.
pub fn redundant(cfg: &DetectConfig, redundant: &[crate::storage::Redundant]) -> Vec<Finding> {
    redundant
        .iter()
        .filter(|r| r.size >= cfg.redundant_min_bytes && r.hosts > 1)
        .map(|r| {
            let mut f = Finding::new(
                Kind::Redundant,
                None,
                &r.id,
                json!({"size": r.size, "hosts": r.hosts, "copies": r.copies}),
            );
            f.saving_bytes = Some(r.reclaimable_bytes);
            f
        })
        .collect()
}
