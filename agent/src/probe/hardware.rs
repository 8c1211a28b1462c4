//! Firmware-reported hardware: DMI identity and chassis (with hypervisor
//! detection) and the batteries' capacities, from sysfs.

use std::path::Path;

use sobre_proto::v1::Battery;

use super::Optional;

/// The machine's DMI identity from `/sys/class/dmi/id`; all empty where
/// there is no DMI (containers, most ARM boards).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Dmi {
    pub vendor: String,
    pub model: String,
    pub bios_date: String,
    /// SMBIOS chassis type code.
    pub chassis_type: Option<u32>,
}

pub(crate) fn read_dmi(sys: &Path, optional: &mut Optional) -> Dmi {
    let id = sys.join("class/dmi/id");
    let mut attr = |name: &str| optional.read_trimmed(&id.join(name)).unwrap_or_default();
    Dmi {
        vendor: attr("sys_vendor"),
        model: attr("product_name"),
        bios_date: attr("bios_date"),
        chassis_type: attr("chassis_type").parse().ok(),
    }
}

/// The inventory's chassis name for an SMBIOS (DSP0134, 7.4.1) chassis
/// type code.
pub(crate) fn chassis_name(code: Option<u32>) -> &'static str {
    match code {
        // Desktop, low-profile desktop, pizza box, mini tower, tower,
        // all-in-one, space-saving, lunch box, sealed-case PC, mini PC,
        // stick PC.
        Some(3..=7 | 13 | 15 | 16 | 24 | 35 | 36) => "desktop",
        // Portable, laptop, notebook, sub-notebook, convertible, detachable.
        Some(8..=10 | 14 | 31 | 32) => "laptop",
        // Main server chassis, rack mount, multi-system, blade, blade
        // enclosure.
        Some(17 | 23 | 25 | 28 | 29) => "server",
        Some(30) => "tablet",
        Some(1) => "other",
        // 2 is "unknown"; anything else is a code we do not map.
        _ => "unknown",
    }
}

/// DMI vendor/product strings hypervisors and clouds present to guests.
const VM_MARKERS: &[&str] = &[
    "QEMU",
    "KVM",
    "VMware",
    "VirtualBox",
    "innotek",
    "Xen",
    // EC2 reports this on its metal instances too; they are counted as VMs.
    "Amazon EC2",
    "Google Compute Engine",
    "OpenStack",
];

/// Whether the DMI identity is a hypervisor's. Hyper-V guests are
/// "Microsoft Corporation" / "Virtual Machine" (a Surface is Microsoft too).
pub(crate) fn is_vm_dmi(vendor: &str, product: &str) -> bool {
    VM_MARKERS
        .iter()
        .any(|m| vendor.contains(m) || product.contains(m))
        || (vendor.contains("Microsoft Corporation") && product.contains("Virtual Machine"))
}

/// The system batteries of `/sys/class/power_supply`: entries whose `type`
/// is `Battery`, except those with `scope` `Device` (a wireless mouse's or
/// headset's battery is not the machine's).
pub(crate) fn read_batteries(sys: &Path, optional: &mut Optional) -> Vec<Battery> {
    let mut batteries = Vec::new();
    for (name, dir) in optional.list_dir(&sys.join("class/power_supply")) {
        let mut attr = |n: &str| optional.read_trimmed(&dir.join(n));
        if attr("type").as_deref() != Some("Battery") || attr("scope").as_deref() == Some("Device")
        {
            continue;
        }
        let mut num = |n: &str| optional.read_u64(&dir.join(n));
        let voltage_uv = num("voltage_min_design");
        let design = mwh(
            num("energy_full_design"),
            num("charge_full_design"),
            voltage_uv,
        );
        let full = mwh(num("energy_full"), num("charge_full"), voltage_uv);
        let cycles = num("cycle_count").unwrap_or(0);
        batteries.push(Battery {
            name,
            design_capacity_wh_milli: design,
            full_capacity_wh_milli: full,
            cycle_count: u32::try_from(cycles).unwrap_or(u32::MAX),
        });
    }
    batteries
}

/// A capacity in mWh from an energy in µWh, or else from a charge in µAh at
/// a voltage in µV (µAh × µV = 1e-9 mWh); 0 when neither is known.
fn mwh(energy_uwh: Option<u64>, charge_uah: Option<u64>, voltage_uv: Option<u64>) -> u64 {
    match (energy_uwh, charge_uah, voltage_uv) {
        (Some(e), _, _) => e / 1000,
        (None, Some(c), Some(v)) => {
            let mwh = u128::from(c) * u128::from(v) / 1_000_000_000;
            u64::try_from(mwh).unwrap_or(u64::MAX)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fixture::Tree;

    #[test]
    fn smbios_codes_map_to_chassis() {
        let cases: &[(Option<u32>, &str)] = &[
            (Some(3), "desktop"),
            (Some(7), "desktop"),
            (Some(13), "desktop"),
            (Some(35), "desktop"),
            (Some(36), "desktop"),
            (Some(8), "laptop"),
            (Some(10), "laptop"),
            (Some(14), "laptop"),
            (Some(31), "laptop"),
            (Some(32), "laptop"),
            (Some(17), "server"),
            (Some(23), "server"),
            (Some(29), "server"),
            (Some(30), "tablet"),
            (Some(1), "other"),
            (Some(2), "unknown"),
            (Some(11), "unknown"),
            (Some(99), "unknown"),
            (None, "unknown"),
        ];
        for (code, name) in cases {
            assert_eq!(chassis_name(*code), *name, "code {code:?}");
        }
    }

    #[test]
    fn hypervisor_dmi_identities() {
        assert!(is_vm_dmi("QEMU", "Standard PC (Q35 + ICH9, 2009)"));
        assert!(is_vm_dmi("innotek GmbH", "VirtualBox"));
        assert!(is_vm_dmi("VMware, Inc.", "VMware Virtual Platform"));
        assert!(is_vm_dmi("Xen", "HVM domU"));
        assert!(is_vm_dmi("Amazon EC2", "m5.large"));
        assert!(is_vm_dmi("Google", "Google Compute Engine"));
        assert!(is_vm_dmi("OpenStack Foundation", "OpenStack Nova"));
        assert!(is_vm_dmi("Microsoft Corporation", "Virtual Machine"));
        assert!(!is_vm_dmi("Microsoft Corporation", "Surface Laptop 4"));
        assert!(!is_vm_dmi("LENOVO", "20XW0055GE"));
        assert!(!is_vm_dmi("", ""));
    }

    #[test]
    fn dmi_read_and_missing() {
        let t = Tree::new();
        let mut optional = Optional::default();
        assert_eq!(read_dmi(&t.roots.sys, &mut optional), Dmi::default());
        t.write("sys/class/dmi/id/sys_vendor", "Dell Inc.\n");
        t.write("sys/class/dmi/id/product_name", "OptiPlex 7050 \n");
        t.write("sys/class/dmi/id/bios_date", "05/14/2019\n");
        t.write("sys/class/dmi/id/chassis_type", "3\n");
        assert_eq!(
            read_dmi(&t.roots.sys, &mut optional),
            Dmi {
                vendor: "Dell Inc.".into(),
                model: "OptiPlex 7050".into(),
                bios_date: "05/14/2019".into(),
                chassis_type: Some(3),
            }
        );
    }

    #[test]
    fn batteries_in_energy_and_charge_units() {
        let t = Tree::new();
        // Energy units (µWh).
        t.write("sys/class/power_supply/BAT0/type", "Battery\n");
        t.write(
            "sys/class/power_supply/BAT0/energy_full_design",
            "57000000\n",
        );
        t.write("sys/class/power_supply/BAT0/energy_full", "45600000\n");
        t.write("sys/class/power_supply/BAT0/cycle_count", "312\n");
        // Charge units (µAh at µV), no cycle count.
        t.write("sys/class/power_supply/BAT1/type", "Battery\n");
        t.write(
            "sys/class/power_supply/BAT1/charge_full_design",
            "5000000\n",
        );
        t.write("sys/class/power_supply/BAT1/charge_full", "4000000\n");
        t.write(
            "sys/class/power_supply/BAT1/voltage_min_design",
            "11400000\n",
        );
        // Not system batteries.
        t.write("sys/class/power_supply/AC/type", "Mains\n");
        t.write("sys/class/power_supply/hidpp_battery_0/type", "Battery\n");
        t.write("sys/class/power_supply/hidpp_battery_0/scope", "Device\n");

        let batteries = read_batteries(&t.roots.sys, &mut Optional::default());
        assert_eq!(
            batteries,
            vec![
                Battery {
                    name: "BAT0".into(),
                    design_capacity_wh_milli: 57_000,
                    full_capacity_wh_milli: 45_600,
                    cycle_count: 312,
                },
                Battery {
                    name: "BAT1".into(),
                    // 5 Ah × 11.4 V = 57 Wh; 4 Ah × 11.4 V = 45.6 Wh.
                    design_capacity_wh_milli: 57_000,
                    full_capacity_wh_milli: 45_600,
                    cycle_count: 0,
                },
            ]
        );
    }

    #[test]
    fn charge_without_voltage_is_unknown() {
        assert_eq!(mwh(None, Some(5_000_000), None), 0);
        assert_eq!(mwh(None, None, Some(1)), 0);
        assert_eq!(mwh(Some(999), Some(1), Some(1)), 0);
        assert_eq!(mwh(None, Some(u64::MAX), Some(u64::MAX)), u64::MAX);
    }
}
