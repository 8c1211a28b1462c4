//! The batteries as Windows describes them, decoded from the bytes of its
//! structs (laid out as in `windows-sys`, little-endian): pure, tested on
//! any system (Wine has no batteries).
//! - `BATTERY_INFORMATION` (`IOCTL_BATTERY_QUERY_INFORMATION`, level
//!   `BatteryInformation`, one per battery device): the inventory's design
//!   and full-charge capacities, like Linux's `energy_full_design` and
//!   `energy_full`;
//! - `SYSTEM_BATTERY_STATE` (`CallNtPowerInformation(SystemBatteryState)`,
//!   all batteries together): the discharge rate, the machine's measured
//!   draw while it runs on battery, like Linux's `power_now`.

use sobre_proto::v1::Battery;

/// `BATTERY_INFORMATION`'s size: Capabilities, Technology, 3 reserved,
/// Chemistry[4], then six u32.
pub(crate) const BATTERY_INFORMATION_LEN: usize = 36;
/// `SYSTEM_BATTERY_STATE`'s size: 4 flags, 3 spare, Tag, then six u32.
pub(crate) const SYSTEM_BATTERY_STATE_LEN: usize = 32;

/// Capabilities: the battery powers the system (not a UPS's or a mouse's).
const SYSTEM_BATTERY: u32 = 0x8000_0000;
/// Capabilities: capacities in relative units, not mWh.
const CAPACITY_RELATIVE: u32 = 0x4000_0000;
/// Capabilities: a short-term battery (a UPS).
const SHORT_TERM: u32 = 0x2000_0000;
/// A capacity or rate the battery does not know.
const UNKNOWN: u32 = 0xFFFF_FFFF;
const UNKNOWN_RATE: u32 = 0x8000_0000;

fn u32_at(raw: &[u8], at: usize) -> Option<u32> {
    let b = raw.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The inventory's entry for the battery `name` from its
/// `BATTERY_INFORMATION`; None if it is not a system battery (a UPS) or
/// the bytes are short. Capacities Windows gives in relative units, or
/// does not know, are 0, as Linux's unknown ones.
pub(crate) fn battery_information(name: &str, raw: &[u8]) -> Option<Battery> {
    if raw.len() < BATTERY_INFORMATION_LEN {
        return None;
    }
    let caps = u32_at(raw, 0)?;
    if caps & SYSTEM_BATTERY == 0 || caps & SHORT_TERM != 0 {
        return None;
    }
    let mwh = |at| {
        u32_at(raw, at)
            .filter(|&v| v != UNKNOWN && caps & CAPACITY_RELATIVE == 0)
            .map_or(0, u64::from)
    };
    Some(Battery {
        name: name.to_owned(),
        design_capacity_wh_milli: mwh(12),
        full_capacity_wh_milli: mwh(16),
        cycle_count: u32_at(raw, 32).filter(|&c| c != UNKNOWN).unwrap_or(0),
    })
}

/// The power the batteries deliver, in W, from `SYSTEM_BATTERY_STATE`:
/// only while off AC and discharging with a known, non-zero rate (mW,
/// negative while discharging; its magnitude, as on Linux), since a zero
/// or a guess is not a measurement.
pub(crate) fn discharge_w(raw: &[u8]) -> Option<f64> {
    if raw.len() < SYSTEM_BATTERY_STATE_LEN {
        return None;
    }
    let (ac, present, discharging) = (raw[0] != 0, raw[1] != 0, raw[3] != 0);
    let rate = u32_at(raw, 16)?;
    if ac || !present || !discharging || rate == 0 || rate == UNKNOWN_RATE {
        return None;
    }
    // The field is a LONG: two's complement.
    let mw = i32::from_le_bytes(rate.to_le_bytes()).unsigned_abs();
    Some(f64::from(mw) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `BATTERY_INFORMATION` as Windows fills it, field by field.
    fn info(caps: u32, design: u32, full: u32, cycles: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(caps.to_le_bytes());
        b.extend([0, 0, 0, 0]); // Technology (0: primary), reserved
        b.extend(*b"LION");
        for v in [design, full, 3000, 1500, 0, cycles] {
            b.extend(v.to_le_bytes());
        }
        assert_eq!(b.len(), BATTERY_INFORMATION_LEN);
        b
    }

    /// A `SYSTEM_BATTERY_STATE`: AC, present, charging, discharging, rate.
    fn state(flags: [u8; 4], rate: i32) -> Vec<u8> {
        let mut b = flags.to_vec();
        b.extend([0, 0, 0, 1]); // spare, tag
        for v in [
            50_000u32,
            41_000,
            u32::from_le_bytes(rate.to_le_bytes()),
            7200,
            0,
            0,
        ] {
            b.extend(v.to_le_bytes());
        }
        assert_eq!(b.len(), SYSTEM_BATTERY_STATE_LEN);
        b
    }

    #[test]
    fn a_laptop_battery_gives_its_capacities_in_mwh() {
        // A worn 57 Wh battery holding 48.3 Wh after 412 cycles.
        let b = battery_information("BAT0", &info(0x8000_0000, 57_000, 48_300, 412))
            .expect("a system battery");
        assert_eq!(b.name, "BAT0");
        assert_eq!(
            (b.design_capacity_wh_milli, b.full_capacity_wh_milli),
            (57_000, 48_300)
        );
        assert_eq!(b.cycle_count, 412);
    }

    #[test]
    fn relative_or_unknown_capacities_are_zero_and_a_ups_is_no_battery() {
        let rel = battery_information("BAT0", &info(0xC000_0000, 100, 90, 0)).expect("system");
        assert_eq!(
            (rel.design_capacity_wh_milli, rel.full_capacity_wh_milli),
            (0, 0)
        );
        let unknown = battery_information("BAT0", &info(0x8000_0000, u32::MAX, 40_000, u32::MAX))
            .expect("system");
        assert_eq!(unknown.design_capacity_wh_milli, 0);
        assert_eq!(unknown.full_capacity_wh_milli, 40_000);
        assert_eq!(unknown.cycle_count, 0);
        assert!(battery_information("UPS", &info(0xA000_0000, 9_000, 9_000, 0)).is_none());
        assert!(battery_information("HID", &info(0, 1_000, 1_000, 0)).is_none());
        assert!(battery_information("BAT0", &info(0x8000_0000, 1, 1, 1)[..35]).is_none());
    }

    #[test]
    fn discharge_only_while_on_battery_with_a_known_rate() {
        // Off AC, discharging at 8.25 W (a negative rate).
        assert_eq!(discharge_w(&state([0, 1, 0, 1], -8250)), Some(8.25));
        // Some firmware says a discharge with a positive rate.
        assert_eq!(discharge_w(&state([0, 1, 0, 1], 6100)), Some(6.1));
        for (flags, rate) in [
            ([1, 1, 1, 0], 12_000),   // on AC, charging
            ([1, 1, 0, 0], 0),        // on AC, full
            ([0, 0, 0, 0], 0),        // no battery (a desktop, Wine)
            ([0, 1, 0, 1], 0),        // discharging, no rate
            ([0, 1, 0, 1], i32::MIN), // BATTERY_UNKNOWN_RATE
        ] {
            assert_eq!(discharge_w(&state(flags, rate)), None, "{flags:?} {rate}");
        }
        assert_eq!(discharge_w(&state([0, 1, 0, 1], -8250)[..31]), None);
    }
}
