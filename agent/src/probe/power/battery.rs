//! The system batteries' discharge power from `/sys/class/power_supply`:
//! the whole machine's draw while it runs on battery.

use std::path::Path;

use super::super::Optional;

/// The power drawn from the system batteries that are discharging, in W,
/// summed (some laptops drain two at once); `None` when none is
/// discharging (on AC, charging, full, no battery) or when they report no
/// power, since a zero is not a measurement.
///
/// A battery is an entry whose `type` is `Battery` and whose `scope` is not
/// `Device` (a mouse's battery is not the machine's). Its power is
/// `power_now` (µW), else `current_now` (µA) × `voltage_now` (µV) / 1e12.
/// Some drivers report a discharge as a negative value: the magnitude is
/// used.
pub(crate) fn discharge_w(sys: &Path, optional: &mut Optional) -> Option<f64> {
    let mut total = 0.0;
    for (_, dir) in optional.list_dir(&sys.join("class/power_supply")) {
        let mut attr = |n: &str| optional.read_trimmed(&dir.join(n));
        if attr("type").as_deref() != Some("Battery")
            || attr("scope").as_deref() == Some("Device")
            || attr("status").as_deref() != Some("Discharging")
        {
            continue;
        }
        let mut num = |n: &str| {
            optional
                .read_trimmed(&dir.join(n))
                .and_then(|s| s.parse::<i64>().ok())
                .map(i64::unsigned_abs)
                .filter(|&v| v > 0)
        };
        let watts = match num("power_now") {
            Some(uw) => uw as f64 / 1e6,
            None => match (num("current_now"), num("voltage_now")) {
                (Some(ua), Some(uv)) => ua as f64 * uv as f64 / 1e12,
                _ => continue,
            },
        };
        total += watts;
    }
    (total > 0.0).then_some(total)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::fixture::Tree;

    /// A system battery `name` with `status` and the given attributes.
    pub(crate) fn battery(t: &Tree, name: &str, status: &str, attrs: &[(&str, &str)]) {
        let dir = format!("sys/class/power_supply/{name}");
        t.write(&format!("{dir}/type"), "Battery\n");
        t.write(&format!("{dir}/status"), format!("{status}\n"));
        for (attr, value) in attrs {
            t.write(&format!("{dir}/{attr}"), format!("{value}\n"));
        }
    }

    #[test]
    fn discharging_with_power_now() {
        let t = Tree::new();
        battery(&t, "BAT0", "Discharging", &[("power_now", "8250000")]);
        t.write("sys/class/power_supply/AC/type", "Mains\n");
        t.write("sys/class/power_supply/AC/online", "0\n");
        assert_eq!(
            discharge_w(&t.roots.sys, &mut Optional::default()),
            Some(8.25)
        );
    }

    #[test]
    fn discharging_with_current_and_voltage() {
        let t = Tree::new();
        // 0.75 A × 11.4 V = 8.55 W; a negative current is a discharge too.
        battery(
            &t,
            "BAT1",
            "Discharging",
            &[("current_now", "-750000"), ("voltage_now", "11400000")],
        );
        let w = discharge_w(&t.roots.sys, &mut Optional::default()).expect("a discharge");
        assert!((w - 8.55).abs() < 1e-9, "{w}");
    }

    #[test]
    fn two_batteries_add_up() {
        let t = Tree::new();
        battery(&t, "BAT0", "Discharging", &[("power_now", "5000000")]);
        battery(&t, "BAT1", "Discharging", &[("power_now", "2500000")]);
        assert_eq!(
            discharge_w(&t.roots.sys, &mut Optional::default()),
            Some(7.5)
        );
    }

    #[test]
    fn charging_full_device_or_zero_is_not_a_source() {
        let t = Tree::new();
        battery(&t, "BAT0", "Charging", &[("power_now", "20000000")]);
        battery(&t, "BAT1", "Full", &[("power_now", "0")]);
        battery(&t, "BAT2", "Discharging", &[("power_now", "0")]);
        battery(
            &t,
            "hidpp_battery_0",
            "Discharging",
            &[("power_now", "1000")],
        );
        t.write("sys/class/power_supply/hidpp_battery_0/scope", "Device\n");
        assert_eq!(discharge_w(&t.roots.sys, &mut Optional::default()), None);
        assert_eq!(
            discharge_w(&Tree::new().roots.sys, &mut Optional::default()),
            None
        );
    }
}
