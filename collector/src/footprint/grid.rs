//! Grid carbon intensity: one default figure, optionally refined by an
//! hourly table (by hour of day, or by date and hour), all in UTC.

use std::collections::HashMap;
use std::path::Path;

const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone, PartialEq)]
pub struct GridIntensity {
    /// gCO2e per kWh when nothing more specific is known.
    pub default: f64,
    by_hour_of_day: [Option<f64>; 24],
    by_hour: HashMap<i64, f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum GridError {
    #[error("cannot read the hourly grid intensity file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path} line {line}: {what}; expected `H,g_per_kwh` (H = 0..23, UTC) or `YYYY-MM-DDTHH,g_per_kwh` (UTC)"
    )]
    Parse {
        path: String,
        line: usize,
        what: String,
    },
}

impl GridIntensity {
    pub fn flat(g_per_kwh: f64) -> Self {
        GridIntensity {
            default: g_per_kwh,
            by_hour_of_day: [None; 24],
            by_hour: HashMap::new(),
        }
    }

    /// Loads a CSV of `hour,g` lines; `#` comments and a header line whose
    /// second field is not a number are skipped.
    pub fn load(default: f64, path: &Path) -> Result<Self, GridError> {
        let text = std::fs::read_to_string(path).map_err(|source| GridError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(default, &text).map_err(|(line, what)| GridError::Parse {
            path: path.display().to_string(),
            line,
            what,
        })
    }

    pub fn parse(default: f64, text: &str) -> Result<Self, (usize, String)> {
        let mut g = Self::flat(default);
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((when, value)) = line.split_once(',') else {
                return Err((i + 1, format!("no comma in {line:?}")));
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                if i == 0 {
                    continue; // a header
                }
                return Err((i + 1, format!("{:?} is not a number", value.trim())));
            };
            if !value.is_finite() || value < 0.0 {
                return Err((i + 1, format!("intensity {value} must be >= 0")));
            }
            let when = when.trim();
            if let Ok(h) = when.parse::<usize>() {
                if h > 23 {
                    return Err((i + 1, format!("hour {h} is not in 0..23")));
                }
                g.by_hour_of_day[h] = Some(value);
            } else {
                let hour = parse_date_hour(when).ok_or_else(|| {
                    (
                        i + 1,
                        format!("{when:?} is neither an hour nor YYYY-MM-DDTHH"),
                    )
                })?;
                g.by_hour.insert(hour, value);
            }
        }
        Ok(g)
    }

    /// Intensity for the hour starting at `hour_ms` (UTC).
    pub fn at(&self, hour_ms: i64) -> f64 {
        // Saturating: `hour_ms` comes from an agent's clock, and the hour
        // before i64::MIN does not fit (found by fuzz/fuzz_targets/line_protocol.rs).
        let hours = hour_ms.div_euclid(HOUR_MS);
        if let Some(v) = self.by_hour.get(&hours.saturating_mul(HOUR_MS)) {
            return *v;
        }
        let hod = hours.rem_euclid(24) as usize;
        self.by_hour_of_day[hod].unwrap_or(self.default)
    }

    /// Whether anything more than the flat default is known.
    pub fn is_hourly(&self) -> bool {
        !self.by_hour.is_empty() || self.by_hour_of_day.iter().any(Option::is_some)
    }
}

/// `YYYY-MM-DDTHH` (UTC) → milliseconds since the epoch.
fn parse_date_hour(s: &str) -> Option<i64> {
    let (date, hour) = s.split_once(['T', ' '])?;
    let mut it = date.split('-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    let h: i64 = hour.get(..2).unwrap_or(hour).parse().ok()?;
    if it.next().is_some()
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
        || !(0..24).contains(&h)
    {
        return None;
    }
    Some((days_from_civil(y, m, d) * 24 + h) * HOUR_MS)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub use sobre_base::civil::to_days as days_from_civil;

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzz/fuzz_targets/line_protocol.rs: a sample sent "at"
    /// i64::MIN ms (an agent's clock is not trusted) overflowed the start
    /// of its hour: a panic in debug builds.
    #[test]
    fn hour_of_i64_min_overflowed() {
        let g = GridIntensity::parse(56.0, "16,10\n7,80\n").expect("table");
        // i64::MIN is in hour 16 of its day (UTC), i64::MAX in hour 7.
        assert_eq!(g.at(i64::MIN), 10.0);
        assert_eq!(g.at(i64::MAX), 80.0);
        assert_eq!(g.at(0), 56.0);
    }

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 28), 20_785);
    }

    #[test]
    fn hourly_table_overrides_the_default() {
        let text = "hour,g_per_kwh\n# night is nuclear\n3,20\n2026-11-28T18,90\n";
        let g = GridIntensity::parse(56.0, text).expect("parse");
        let day = days_from_civil(2026, 11, 28) * 24 * HOUR_MS;
        assert_eq!(g.at(day + 3 * HOUR_MS), 20.0);
        assert_eq!(
            g.at(day + 3 * HOUR_MS + 59 * 60_000),
            20.0,
            "within the hour"
        );
        assert_eq!(g.at(day + 18 * HOUR_MS), 90.0);
        assert_eq!(g.at(day + 12 * HOUR_MS), 56.0);
        assert!(g.is_hourly());
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            GridIntensity::parse(56.0, "3,20\n25,1\n").map(|_| ()),
            Err((2, "hour 25 is not in 0..23".into()))
        );
        assert!(GridIntensity::parse(56.0, "3;20\n").is_err());
        assert!(GridIntensity::parse(56.0, "3,20\n4,lots\n").is_err());
        assert!(GridIntensity::parse(56.0, "2026-13-01T00,5\n").is_err());
    }
}
