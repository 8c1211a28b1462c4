//! Durations as people write them in a command or a request: a whole
//! number and a unit, `30s`, `15m`, `12h`, `7d`, `2w`.

use std::time::Duration;

/// Parses `30s`, `15m`, `12h`, `7d` or `2w` (one number, one unit; the
/// error says what is accepted).
pub fn parse(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?}: give a whole number and a unit, e.g. 7d, 12h, 30m"))?;
    let secs_per = match unit.trim() {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?}; use s, m, h, d or w (e.g. 7d)"
            ));
        }
    };
    n.checked_mul(secs_per)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bad_input() {
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse(" 2w "), Ok(Duration::from_secs(14 * 86_400)));
        for bad in ["", "d", "7", "7y", "-1d", "1.5h", "18446744073709551615w"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
