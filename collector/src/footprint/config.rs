//! Footprint coefficients: every one configurable, every default cited in
//! METHODOLOGY.md.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FootprintConfig {
    /// Grid carbon intensity in gCO2e per kWh. Default 56: France's
    /// average (RTE éCO2mix, as used by CodeCarbon). Boavizta uses 98 for
    /// France (a life-cycle figure that includes the plants' construction);
    /// set 98 to match it.
    pub grid_g_per_kwh: f64,
    /// Optional hourly intensities: a CSV of `hour,g_per_kwh` (hour 0-23,
    /// local time of the collector) or `YYYY-MM-DDTHH,g_per_kwh` (UTC).
    /// Hours it does not list use `grid_g_per_kwh`.
    pub grid_hourly_file: Option<PathBuf>,
    /// Power usage effectiveness by group (the agent's `group` label).
    /// Hosts of unlisted groups use `pue_server` for servers and
    /// `pue_default` for everything else.
    pub pue: BTreeMap<String, f64>,
    /// Default PUE of servers: 1.58, the on-premise default of Cloud
    /// Carbon Footprint (from the Uptime Institute's 2021 survey).
    pub pue_server: f64,
    /// Default PUE of workstations in offices: 1.0 (no facility overhead
    /// is attributed to an office PC).
    pub pue_default: f64,
    /// Manufacturing emissions and lifetime per device class.
    pub embodied: BTreeMap<String, Embodied>,
}

/// What making one device emitted, and over how long it is amortised.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Embodied {
    /// kgCO2e for manufacture, transport and end of life.
    pub kg: f64,
    /// Years of use over which it is amortised.
    pub years: f64,
}

impl Default for FootprintConfig {
    fn default() -> Self {
        FootprintConfig {
            grid_g_per_kwh: 56.0,
            grid_hourly_file: None,
            pue: BTreeMap::new(),
            pue_server: 1.58,
            pue_default: 1.0,
            embodied: default_embodied(),
        }
    }
}

/// ADEME Base Impacts figures as published by Boavizta (see
/// METHODOLOGY.md). Classes match the agent's chassis names, plus
/// `monitor`. `vm` is 0: a VM's hardware is counted on its physical host.
/// The server lifetime (5 years) is an assumption of ours, flagged as such.
/// A class without an entry (tablet, other, unknown) uses `desktop`'s
/// figures and the API flags the result as assumed.
pub fn default_embodied() -> BTreeMap<String, Embodied> {
    [
        ("laptop", 181.0, 4.0),
        ("desktop", 277.0, 6.0),
        ("server", 3660.0, 5.0),
        ("monitor", 64.7, 6.6),
        ("vm", 0.0, 1.0),
    ]
    .into_iter()
    .map(|(k, kg, years)| (k.to_owned(), Embodied { kg, years }))
    .collect()
}

impl FootprintConfig {
    pub fn validate(&self) -> Result<(), String> {
        let bad = |v: f64| !v.is_finite() || v < 0.0;
        if bad(self.grid_g_per_kwh) {
            return Err("footprint.grid_g_per_kwh must be a number >= 0".into());
        }
        for (g, p) in self.pue.iter().map(|(g, p)| (g.as_str(), *p)).chain([
            ("pue_server", self.pue_server),
            ("pue_default", self.pue_default),
        ]) {
            if !p.is_finite() || p < 1.0 {
                return Err(format!("footprint PUE of {g} is {p}; a PUE is >= 1.0"));
            }
        }
        for (class, e) in &self.embodied {
            if bad(e.kg) || !e.years.is_finite() || e.years <= 0.0 {
                return Err(format!(
                    "footprint.embodied.{class}: kg must be >= 0 and years > 0"
                ));
            }
        }
        Ok(())
    }
}
