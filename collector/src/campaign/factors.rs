//! CO2e per gigabyte stored for a year: the published factors a campaign
//! report may show. They differ by more than 1000×, so the report always
//! shows the chosen one, its source and the whole range (METHODOLOGY.md,
//! "Clean Up Day").

use serde::Serialize;

/// The factor a new campaign shows unless told otherwise.
pub const DEFAULT: &str = "ccf-ssd";
pub const KEYS: [&str; 4] = ["ccf-hdd", "ccf-ssd", "vendor-2021", "cloud-2017"];

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Factor {
    pub key: &'static str,
    pub label: &'static str,
    /// kgCO2e per GB (10^9 bytes) kept for one year.
    pub kg_per_gb_year: f64,
    pub source: &'static str,
    /// How it is derived and what it leaves out.
    pub note: String,
}

/// Wh per TB per hour kept on a disk, Cloud Carbon Footprint's
/// coefficients (also in DESIGN.md and METHODOLOGY.md).
const CCF_HDD_WH_PER_TB_H: f64 = 0.65;
const CCF_SSD_WH_PER_TB_H: f64 = 1.2;

fn ccf(
    key: &'static str,
    label: &'static str,
    wh_tb_h: f64,
    grid_g_per_kwh: f64,
    pue: f64,
) -> Factor {
    // Wh/TB·h × 8,760 h / 1,000 GB/TB = Wh per GB-year.
    let kwh = wh_tb_h * 8760.0 / 1000.0 / 1000.0 * pue;
    Factor {
        key,
        label,
        kg_per_gb_year: kwh * grid_g_per_kwh / 1000.0,
        source: "Cloud Carbon Footprint, storage coefficients (methodology, 2021)",
        note: format!(
            "{wh_tb_h} Wh per TB per hour × 8,760 h × PUE {pue} × {grid_g_per_kwh} gCO2e/kWh \
             (this collector's grid intensity); electricity only: no manufacturing, no \
             replication, no network"
        ),
    }
}

/// Every factor, the CCF ones computed with this collector's grid
/// intensity and server-room PUE.
pub fn all(grid_g_per_kwh: f64, pue: f64) -> Vec<Factor> {
    vec![
        ccf(
            "ccf-hdd",
            "Hard disk, on premises (CCF)",
            CCF_HDD_WH_PER_TB_H,
            grid_g_per_kwh,
            pue,
        ),
        ccf(
            "ccf-ssd",
            "SSD, on premises (CCF)",
            CCF_SSD_WH_PER_TB_H,
            grid_g_per_kwh,
            pue,
        ),
        Factor {
            key: "vendor-2021",
            label: "Figure quoted by a printer vendor's blog",
            kg_per_gb_year: 0.28,
            source: "Konica Minolta, \"Five ways to clean up your data junk and save energy\" \
                     (blog): 0.015 kWh and 0.28 kg CO2 per GB",
            note: "the period is not stated (read here as a year) and 0.28 kg for 0.015 kWh \
                   implies 18 kg/kWh, far above any grid: shown to make the spread visible"
                .into(),
        },
        Factor {
            key: "cloud-2017",
            label: "Cloud storage, US grid (widely quoted)",
            kg_per_gb_year: 2.0,
            source: "Stanford Magazine, \"Carbon and the Cloud\" (2017): 100 GB in the cloud \
                     for a year ≈ 0.2 t CO2 with the US electricity mix",
            note: "includes data-centre overheads and replication on a carbon-heavy grid; the \
                   most-quoted and the highest"
                .into(),
        },
    ]
}

pub fn find(key: &str) -> Option<&'static str> {
    KEYS.iter().copied().find(|k| *k == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ccf_factors_follow_the_grid_and_pue() {
        let f = all(56.0, 1.58);
        let ssd = f.iter().find(|f| f.key == "ccf-ssd").expect("ssd");
        // 1.2 Wh/TB·h × 8760 h = 10.512 Wh/GB·y × 1.58 = 16.6 Wh → 0.93 g.
        assert!(
            (ssd.kg_per_gb_year - 0.000_930).abs() < 0.000_002,
            "{}",
            ssd.kg_per_gb_year
        );
        let doubled = all(112.0, 1.58);
        let ssd2 = doubled.iter().find(|f| f.key == "ccf-ssd").expect("ssd");
        assert!((ssd2.kg_per_gb_year / ssd.kg_per_gb_year - 2.0).abs() < 1e-9);
    }

    #[test]
    fn the_published_range_spans_three_orders_of_magnitude() {
        let f = all(56.0, 1.58);
        let min = f.iter().map(|f| f.kg_per_gb_year).fold(f64::MAX, f64::min);
        let max = f.iter().map(|f| f.kg_per_gb_year).fold(0.0, f64::max);
        assert!(max / min > 1000.0, "{min} .. {max}");
        assert_eq!(f.len(), KEYS.len());
        for (f, k) in f.iter().zip(KEYS) {
            assert_eq!(f.key, k);
        }
    }
}
