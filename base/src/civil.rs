//! Calendar dates (proleptic Gregorian, UTC) from day numbers and back,
//! for the few places that print or parse one (H. Hinnant's algorithms),
//! shared by the agent and the collector.

/// The latest instant Sobre takes from outside (a request, a campaign):
/// 9999-12-31T23:59:59.999Z, in milliseconds since 1970. Sums and
/// differences of a few times up to it cannot overflow an i64.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// (year, month 1-12, day 1-31) of the day `days` after 1970-01-01.
pub fn from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of (year, month, day).
pub fn to_days(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_dates_round_trip() {
        assert_eq!(from_days(0), (1970, 1, 1));
        assert_eq!(from_days(20_089), (2025, 1, 1));
        assert_eq!(from_days(19_782), (2024, 2, 29));
        assert_eq!(from_days(-1), (1969, 12, 31));
        for d in [-800_000, -1, 0, 59, 11_016, 19_782, 2_932_896] {
            let (y, m, dd) = from_days(d);
            assert_eq!(to_days(y, m, dd), d);
        }
    }
}
