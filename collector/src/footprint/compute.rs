//! The footprint itself, as a pure function of stored energy, inventories
//! and coefficients: use (energy × PUE × grid intensity) and manufacture
//! (embodied emissions amortised over each device's lifetime).

use super::config::{Embodied, FootprintConfig};
use super::grid::{GridIntensity, days_from_civil};
use serde::Serialize;
use sobre_proto::v1::Inventory;
use std::collections::{BTreeMap, HashMap};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// A year for amortisation: 365.25 days.
pub const YEAR_MS: f64 = 365.25 * DAY_MS as f64;
const J_PER_KWH: f64 = 3.6e6;

/// What the store knows of one host.
#[derive(Debug, Clone)]
pub struct HostInput {
    pub id: String,
    pub hostname: Option<String>,
    pub first_seen_ms: i64,
    pub inventory: Option<Inventory>,
}

/// Energy of one host in one hour (from `energy_hourly`).
#[derive(Debug, Clone, PartialEq)]
pub struct HourRow {
    pub agent_id: String,
    pub hour_ms: i64,
    pub energy_j: f64,
    pub measured_j: f64,
    pub covered_ms: i64,
}

/// The period asked for, and the time series' step.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub from_ms: i64,
    pub to_ms: i64,
    pub step_ms: Option<i64>,
    pub now_ms: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Totals {
    /// Energy drawn by the IT equipment.
    pub energy_kwh: f64,
    /// The same × PUE: what the building drew for it.
    pub facility_kwh: f64,
    /// kgCO2e of the facility energy at the grid intensity of each hour.
    pub use_kg: f64,
    /// kgCO2e of manufacture amortised over the period.
    pub embodied_kg: f64,
    pub total_kg: f64,
    /// Share of the energy that was measured (RAPL, battery) rather than
    /// modelled; `null` when there is no energy.
    pub measured_share: Option<f64>,
    /// Share of the period (host × time) covered by samples.
    pub coverage: f64,
    /// kgCO2e per year saved if every device lived one year longer than
    /// its planned lifetime.
    pub life_extension_kg_per_year: f64,
    pub hosts: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Device {
    /// "host" or "monitor".
    pub kind: &'static str,
    /// The embodied class used (laptop, desktop, server, vm, monitor...).
    pub class: String,
    pub name: String,
    /// Manufacture, in kgCO2e, and the lifetime it is spread over.
    pub embodied_kg: f64,
    pub lifetime_years: f64,
    /// When its life started, and how we know: "bios", "edid", "first_seen".
    pub since_ms: i64,
    pub since_from: &'static str,
    pub past_lifetime: bool,
    /// What of its manufacture falls in the period.
    pub amortised_kg: f64,
    pub life_extension_kg_per_year: f64,
    /// True when no figure exists for its class and another was used.
    pub assumed: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostFootprint {
    pub id: String,
    pub hostname: Option<String>,
    pub group: String,
    pub chassis: String,
    pub pue: f64,
    #[serde(flatten)]
    pub totals: Totals,
    pub devices: Vec<Device>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupFootprint {
    pub group: String,
    #[serde(flatten)]
    pub totals: Totals,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bucket {
    pub start_ms: i64,
    pub energy_kwh: f64,
    pub use_kg: f64,
    pub embodied_kg: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub from_ms: i64,
    pub to_ms: i64,
    pub fleet: Totals,
    pub groups: Vec<GroupFootprint>,
    pub hosts: Vec<HostFootprint>,
    pub series: Vec<Bucket>,
}

/// Computes the footprint of `hosts` over `w` from hourly energy rows
/// already in memory (tests, small periods). The API streams its rows
/// through a [`Footprint`] instead.
pub fn compute(
    cfg: &FootprintConfig,
    grid: &GridIntensity,
    hosts: &[HostInput],
    hours: &[HourRow],
    w: Window,
) -> Report {
    let mut f = Footprint::new(cfg, grid, hosts, w);
    for h in hours {
        f.add(h);
    }
    f.finish()
}

/// A footprint being computed: hourly rows are added one at a time, in any
/// order, so that its memory is one entry per host and one per time step,
/// whatever the number of rows (a year of 5,000 hosts is 44 million).
pub struct Footprint<'a> {
    cfg: &'a FootprintConfig,
    grid: &'a GridIntensity,
    hosts: &'a [HostInput],
    w: Window,
    index: HashMap<&'a str, usize>,
    acc: Vec<HostAcc>,
    series: BTreeMap<i64, Bucket>,
}

/// What the rows of one host added up to so far.
struct HostAcc {
    chassis: String,
    group: String,
    pue: f64,
    energy_j: f64,
    measured_j: f64,
    covered_ms: i64,
    use_kg: f64,
}

impl<'a> Footprint<'a> {
    pub fn new(
        cfg: &'a FootprintConfig,
        grid: &'a GridIntensity,
        hosts: &'a [HostInput],
        w: Window,
    ) -> Self {
        let acc = hosts
            .iter()
            .map(|host| {
                let inv = host.inventory.as_ref();
                let chassis = match inv.map(|i| i.chassis.as_str()) {
                    None | Some("") => "unknown".to_owned(),
                    Some(c) => c.to_owned(),
                };
                let group = inv.map(|i| i.group.clone()).unwrap_or_default();
                HostAcc {
                    pue: pue_for(cfg, &group, &chassis),
                    chassis,
                    group,
                    energy_j: 0.0,
                    measured_j: 0.0,
                    covered_ms: 0,
                    use_kg: 0.0,
                }
            })
            .collect();
        let index = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.id.as_str(), i))
            .collect();
        Footprint {
            cfg,
            grid,
            hosts,
            w,
            index,
            acc,
            series: BTreeMap::new(),
        }
    }

    /// Adds one host-hour; rows of other hosts or outside the window are
    /// ignored, and hours partly outside it count pro rata.
    pub fn add(&mut self, h: &HourRow) {
        let w = self.w;
        let Some(&i) = self.index.get(h.agent_id.as_str()) else {
            return;
        };
        let share = overlap(
            h.hour_ms,
            h.hour_ms.saturating_add(HOUR_MS),
            w.from_ms,
            w.to_ms,
        ) as f64
            / HOUR_MS as f64;
        if share <= 0.0 {
            return;
        }
        let a = &mut self.acc[i];
        let e = h.energy_j * share;
        a.energy_j += e;
        a.measured_j += h.measured_j * share;
        a.covered_ms += (h.covered_ms as f64 * share) as i64;
        let kwh = e / J_PER_KWH;
        let kg = kwh * a.pue * self.grid.at(h.hour_ms) / 1000.0;
        a.use_kg += kg;
        if let Some(step) = w.step_ms {
            let b = bucket(&mut self.series, h.hour_ms.max(w.from_ms), w.from_ms, step);
            b.energy_kwh += kwh;
            b.use_kg += kg;
        }
    }

    /// The report: totals per host, group and fleet, and the time series.
    pub fn finish(mut self) -> Report {
        let w = self.w;
        let span_ms = (w.to_ms - w.from_ms).max(0);
        let mut out_hosts = Vec::with_capacity(self.hosts.len());
        for (host, a) in self.hosts.iter().zip(std::mem::take(&mut self.acc)) {
            let mut t = Totals {
                hosts: 1,
                use_kg: a.use_kg,
                ..Default::default()
            };
            t.energy_kwh = a.energy_j / J_PER_KWH;
            t.facility_kwh = t.energy_kwh * a.pue;
            t.measured_share = (a.energy_j > 0.0).then(|| a.measured_j / a.energy_j);
            t.coverage = if span_ms > 0 {
                (a.covered_ms as f64 / span_ms as f64).min(1.0)
            } else {
                0.0
            };
            let empty = Inventory::default();
            let inv = host.inventory.as_ref().unwrap_or(&empty);
            let devices = devices(self.cfg, host, inv, &a.chassis, w);
            for d in &devices {
                t.embodied_kg += d.amortised_kg;
                t.life_extension_kg_per_year += d.life_extension_kg_per_year;
                if let Some(step) = w.step_ms {
                    self.embodied_series(d, step);
                }
            }
            t.total_kg = t.use_kg + t.embodied_kg;
            out_hosts.push(HostFootprint {
                id: host.id.clone(),
                hostname: host.hostname.clone(),
                group: a.group,
                chassis: a.chassis,
                pue: a.pue,
                totals: t,
                devices,
            });
        }
        let mut groups: BTreeMap<String, Totals> = BTreeMap::new();
        let mut fleet = Totals::default();
        for h in &out_hosts {
            add(groups.entry(h.group.clone()).or_default(), &h.totals);
            add(&mut fleet, &h.totals);
        }
        Report {
            from_ms: w.from_ms,
            to_ms: w.to_ms,
            fleet,
            groups: groups
                .into_iter()
                .map(|(group, totals)| GroupFootprint { group, totals })
                .collect(),
            hosts: out_hosts,
            series: self.series.into_values().collect(),
        }
    }

    /// Spreads a device's manufacture over the window's steps.
    fn embodied_series(&mut self, d: &Device, step: i64) {
        let w = self.w;
        let life_ms = (d.lifetime_years * YEAR_MS) as i64;
        let life = (d.since_ms, d.since_ms.saturating_add(life_ms));
        let mut s = w.from_ms;
        while s < w.to_ms {
            let e = s.saturating_add(step).min(w.to_ms);
            let kg = amortised(d.embodied_kg, d.lifetime_years, life, (s, e));
            bucket(&mut self.series, s, w.from_ms, step).embodied_kg += kg;
            s = e;
        }
    }
}

/// The PUE of a host: its group's, else the server or office default.
pub fn pue_for(cfg: &FootprintConfig, group: &str, chassis: &str) -> f64 {
    if let Some(p) = cfg.pue.get(group) {
        return *p;
    }
    if chassis == "server" {
        cfg.pue_server
    } else {
        cfg.pue_default
    }
}

fn devices(
    cfg: &FootprintConfig,
    host: &HostInput,
    inv: &Inventory,
    chassis: &str,
    w: Window,
) -> Vec<Device> {
    let (since_ms, since_from) = match parse_bios_date(&inv.bios_date) {
        Some(ms) if ms <= w.now_ms => (ms, "bios"),
        _ => (host.first_seen_ms, "first_seen"),
    };
    let mut out = vec![device(
        cfg,
        "host",
        chassis,
        host.id.clone(),
        since_ms,
        since_from,
        w,
    )];
    for m in &inv.monitors {
        let (since, from) = if m.year >= 1990 {
            (days_from_civil(i64::from(m.year), 1, 1) * DAY_MS, "edid")
        } else {
            (since_ms, since_from)
        };
        let name = format!("{} {}", m.manufacturer, m.model).trim().to_owned();
        out.push(device(cfg, "monitor", "monitor", name, since, from, w));
    }
    out
}

fn device(
    cfg: &FootprintConfig,
    kind: &'static str,
    class: &str,
    name: String,
    since_ms: i64,
    since_from: &'static str,
    w: Window,
) -> Device {
    let (e, class, assumed) = match cfg.embodied.get(class) {
        Some(e) => (*e, class.to_owned(), false),
        None => (
            cfg.embodied.get("desktop").copied().unwrap_or(Embodied {
                kg: 0.0,
                years: 1.0,
            }),
            "desktop".to_owned(),
            true,
        ),
    };
    let end = since_ms.saturating_add((e.years * YEAR_MS) as i64);
    Device {
        kind,
        class,
        name,
        embodied_kg: e.kg,
        lifetime_years: e.years,
        since_ms,
        since_from,
        past_lifetime: w.now_ms > end,
        amortised_kg: amortised(e.kg, e.years, (since_ms, end), (w.from_ms, w.to_ms)),
        life_extension_kg_per_year: life_extension(e.kg, e.years),
        assumed,
    }
}

/// Manufacture emissions falling in `period`, spread evenly over `life`.
pub fn amortised(kg: f64, years: f64, life: (i64, i64), period: (i64, i64)) -> f64 {
    let ms = overlap(life.0, life.1, period.0, period.1) as f64;
    kg / years * ms / YEAR_MS
}

/// kgCO2e per year saved by using a device one year longer than planned:
/// the yearly share of its manufacture goes from kg/L to kg/(L+1).
pub fn life_extension(kg: f64, years: f64) -> f64 {
    kg / years - kg / (years + 1.0)
}

fn overlap(a0: i64, a1: i64, b0: i64, b1: i64) -> i64 {
    a1.min(b1).saturating_sub(a0.max(b0)).max(0)
}

fn bucket(series: &mut BTreeMap<i64, Bucket>, t: i64, origin: i64, step: i64) -> &mut Bucket {
    let start = origin + (t - origin).div_euclid(step) * step;
    series.entry(start).or_insert(Bucket {
        start_ms: start,
        energy_kwh: 0.0,
        use_kg: 0.0,
        embodied_kg: 0.0,
    })
}

fn add(into: &mut Totals, t: &Totals) {
    let energy_before = into.energy_kwh;
    into.energy_kwh += t.energy_kwh;
    into.facility_kwh += t.facility_kwh;
    into.use_kg += t.use_kg;
    into.embodied_kg += t.embodied_kg;
    into.total_kg += t.total_kg;
    into.life_extension_kg_per_year += t.life_extension_kg_per_year;
    // Weighted means, by energy and by host.
    let measured = into.measured_share.unwrap_or(0.0) * energy_before
        + t.measured_share.unwrap_or(0.0) * t.energy_kwh;
    into.measured_share = (into.energy_kwh > 0.0).then(|| measured / into.energy_kwh);
    into.coverage = (into.coverage * into.hosts as f64 + t.coverage * t.hosts as f64)
        / (into.hosts + t.hosts).max(1) as f64;
    into.hosts += t.hosts;
}

/// BIOS dates as firmware writes them: `MM/DD/YYYY`.
fn parse_bios_date(s: &str) -> Option<i64> {
    let mut it = s.trim().split('/');
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    let y: i64 = it.next()?.parse().ok()?;
    ((1..=12).contains(&m) && (1..=31).contains(&d) && y >= 1990)
        .then(|| days_from_civil(y, m, d) * DAY_MS)
}
