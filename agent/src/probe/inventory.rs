//! The inventory probe: what the machine is (OS, CPU, memory, disks,
//! chassis, batteries).

use std::collections::HashMap;
use std::time::Duration;

use sobre_proto::v1::{Disk, Inventory};

use super::{Optional, Probe, ProbeError, Roots, cpuinfo, hardware, procfs};

/// Samples the machine's [`Inventory`]. Every source is optional: what
/// cannot be read (no DMI in a container, say) is left empty.
#[derive(Debug)]
pub struct InventoryProbe {
    roots: Roots,
    optional: Optional,
}

impl InventoryProbe {
    pub fn new(roots: Roots) -> Self {
        Self {
            roots,
            optional: Optional::default(),
        }
    }

    fn disks(&mut self) -> Vec<Disk> {
        let mut disks = Vec::new();
        // Only whole physical disks have a `device` link (see usage.rs).
        for (name, dir) in self.optional.list_dir(&self.roots.sys.join("block")) {
            if !dir.join("device").exists() {
                continue;
            }
            let o = &mut self.optional;
            let sectors = o.read_u64(&dir.join("size")).unwrap_or(0);
            disks.push(Disk {
                // sysfs spells a `/` in a device name as `!` (cciss!c0d0).
                name: name.replace('!', "/"),
                // `size` counts 512-byte sectors whatever the device's own.
                size_bytes: sectors.saturating_mul(512),
                rotational: o.read_u64(&dir.join("queue/rotational")) == Some(1),
                removable: o.read_u64(&dir.join("removable")) == Some(1),
                model: o
                    .read_trimmed(&dir.join("device/model"))
                    .unwrap_or_default(),
            });
        }
        disks
    }
}

impl Probe for InventoryProbe {
    type Output = Inventory;

    /// Ignores `interval`: the inventory is a snapshot.
    fn sample(&mut self, _interval: Duration) -> Result<Inventory, ProbeError> {
        let (proc, etc, sys) = (&self.roots.proc, &self.roots.etc, &self.roots.sys);
        let o = &mut self.optional;
        let hostname = o.read_trimmed(&proc.join("sys/kernel/hostname"));
        let kernel = o.read_trimmed(&proc.join("sys/kernel/osrelease"));
        let os_release = o.read(&etc.join("os-release")).unwrap_or_default();
        let (os_name, os_version) = os_name_version(&parse_os_release(&os_release));
        let cpu = cpuinfo::parse_cpuinfo(&o.read(&proc.join("cpuinfo")).unwrap_or_default());
        let mem = procfs::parse_meminfo(&o.read(&proc.join("meminfo")).unwrap_or_default());
        let dmi = hardware::read_dmi(sys, o);
        let batteries = hardware::read_batteries(sys, o);

        let virtual_machine = cpu.hypervisor || hardware::is_vm_dmi(&dmi.vendor, &dmi.model);
        let chassis = if virtual_machine {
            "vm"
        } else {
            hardware::chassis_name(dmi.chassis_type)
        };
        Ok(Inventory {
            hostname: hostname.unwrap_or_default(),
            os_name,
            os_version,
            kernel: kernel.unwrap_or_default(),
            arch: std::env::consts::ARCH.to_owned(),
            cpu_model: cpu.model,
            cpu_cores: cpu.cores,
            cpu_threads: cpu.threads,
            mem_total_bytes: mem.total,
            disks: self.disks(),
            chassis: chassis.to_owned(),
            vendor: dmi.vendor,
            model: dmi.model,
            bios_date: dmi.bios_date,
            batteries,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            virtual_machine,
            // Filled by the runtime (labels) and the power and display
            // probes.
            ..Inventory::default()
        })
    }
}

/// The variables of an os-release file (`KEY=value`, values optionally
/// quoted, with shell-style backslash escapes inside quotes).
fn parse_os_release(text: &str) -> HashMap<&str, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), unquote(v.trim())))
        .collect()
}

fn unquote(value: &str) -> String {
    let quoted = value.len() >= 2
        && (value.starts_with('"') && value.ends_with('"')
            || value.starts_with('\'') && value.ends_with('\''));
    if !quoted {
        return value.to_owned();
    }
    let inner = &value[1..value.len() - 1];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// NAME and VERSION_ID, falling back to PRETTY_NAME for the name and to
/// VERSION for the version (rolling releases have neither).
fn os_name_version(os: &HashMap<&str, String>) -> (String, String) {
    let pick = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| os.get(k).filter(|v| !v.is_empty()))
            .cloned()
            .unwrap_or_default()
    };
    (
        pick(&["NAME", "PRETTY_NAME"]),
        pick(&["VERSION_ID", "VERSION"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fixture::Tree;

    #[test]
    fn os_release_name_and_version() {
        let os = parse_os_release(
            "# comment\nNAME=\"Debian GNU/Linux\"\nVERSION_ID='12'\n\
             PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n",
        );
        assert_eq!(
            os_name_version(&os),
            ("Debian GNU/Linux".into(), "12".into())
        );
        let os = parse_os_release("PRETTY_NAME=\"Arch \\\"Linux\\\"\"\nBUILD_ID=rolling\n");
        assert_eq!(
            os_name_version(&os),
            ("Arch \"Linux\"".into(), String::new())
        );
        assert_eq!(os_name_version(&parse_os_release("")), Default::default());
        assert_eq!(unquote("\""), "\"");
    }

    fn laptop_tree() -> Tree {
        let t = Tree::new();
        t.write("proc/sys/kernel/hostname", "pc-042\n");
        t.write("proc/sys/kernel/osrelease", "6.1.0-18-amd64\n");
        t.write(
            "etc/os-release",
            "NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n",
        );
        t.write(
            "proc/cpuinfo",
            "processor : 0\nmodel name : AMD Ryzen 5 PRO 4650U\nphysical id : 0\n\
             core id : 0\nflags : fpu sse2\n\nprocessor : 1\nphysical id : 0\n\
             core id : 0\nflags : fpu sse2\n",
        );
        t.write("proc/meminfo", "MemTotal: 16000 kB\n");
        t.write("sys/class/dmi/id/sys_vendor", "LENOVO\n");
        t.write("sys/class/dmi/id/product_name", "20UD0013GE\n");
        t.write("sys/class/dmi/id/bios_date", "03/14/2023\n");
        t.write("sys/class/dmi/id/chassis_type", "10\n");
        t.write("sys/class/power_supply/BAT0/type", "Battery\n");
        t.write(
            "sys/class/power_supply/BAT0/energy_full_design",
            "50000000\n",
        );
        t.write("sys/class/power_supply/BAT0/energy_full", "40000000\n");
        t.write("sys/class/power_supply/BAT0/cycle_count", "7\n");
        t.mkdir("sys/block/nvme0n1/device");
        t.write("sys/block/nvme0n1/size", "1000215216\n");
        t.write("sys/block/nvme0n1/queue/rotational", "0\n");
        t.write("sys/block/nvme0n1/removable", "0\n");
        t.write(
            "sys/block/nvme0n1/device/model",
            "SAMSUNG MZVLB512HBJQ-000L7     \n",
        );
        t.mkdir("sys/block/sdb/device");
        t.write("sys/block/sdb/size", "60062500\n");
        t.write("sys/block/sdb/queue/rotational", "1\n");
        t.write("sys/block/sdb/removable", "1\n");
        t.mkdir("sys/block/loop0");
        t.write("sys/block/loop0/size", "100\n");
        t.mkdir("sys/block/dm-0");
        t
    }

    #[test]
    fn laptop_inventory() {
        let t = laptop_tree();
        let inv = InventoryProbe::new(t.roots.clone())
            .sample(Duration::from_secs(5))
            .expect("inventory");
        let expected = Inventory {
            hostname: "pc-042".into(),
            os_name: "Debian GNU/Linux".into(),
            os_version: "12".into(),
            kernel: "6.1.0-18-amd64".into(),
            arch: std::env::consts::ARCH.into(),
            cpu_model: "AMD Ryzen 5 PRO 4650U".into(),
            cpu_cores: 1,
            cpu_threads: 2,
            mem_total_bytes: 16000 * 1024,
            disks: vec![
                Disk {
                    name: "nvme0n1".into(),
                    size_bytes: 1_000_215_216 * 512,
                    rotational: false,
                    removable: false,
                    model: "SAMSUNG MZVLB512HBJQ-000L7".into(),
                },
                Disk {
                    name: "sdb".into(),
                    size_bytes: 60_062_500 * 512,
                    rotational: true,
                    removable: true,
                    model: String::new(),
                },
            ],
            chassis: "laptop".into(),
            vendor: "LENOVO".into(),
            model: "20UD0013GE".into(),
            bios_date: "03/14/2023".into(),
            batteries: vec![sobre_proto::v1::Battery {
                name: "BAT0".into(),
                design_capacity_wh_milli: 50_000,
                full_capacity_wh_milli: 40_000,
                cycle_count: 7,
            }],
            agent_version: env!("CARGO_PKG_VERSION").into(),
            virtual_machine: false,
            ..Inventory::default()
        };
        assert_eq!(inv, expected);
    }

    #[test]
    fn hypervisor_flag_makes_a_vm_whatever_the_chassis() {
        let t = laptop_tree();
        t.write("proc/cpuinfo", "processor : 0\nflags : fpu hypervisor\n");
        let inv = InventoryProbe::new(t.roots.clone())
            .sample(Duration::ZERO)
            .expect("inventory");
        assert_eq!(inv.chassis, "vm");
        assert!(inv.virtual_machine);
        assert_eq!((inv.cpu_cores, inv.cpu_threads), (1, 1));
    }

    #[test]
    fn dmi_vendor_makes_a_vm() {
        let t = laptop_tree();
        t.write("sys/class/dmi/id/sys_vendor", "QEMU\n");
        t.write("sys/class/dmi/id/chassis_type", "1\n");
        let inv = InventoryProbe::new(t.roots.clone())
            .sample(Duration::ZERO)
            .expect("inventory");
        assert_eq!((inv.chassis.as_str(), inv.virtual_machine), ("vm", true));
    }

    #[test]
    fn container_without_dmi_or_batteries() {
        let t = Tree::new();
        t.write("proc/sys/kernel/hostname", "ctr\n");
        t.write("proc/cpuinfo", "processor : 0\nmodel name : X\n");
        let mut probe = InventoryProbe::new(t.roots.clone());
        let inv = probe.sample(Duration::ZERO).expect("inventory");
        assert_eq!(inv.hostname, "ctr");
        assert_eq!(inv.chassis, "unknown");
        assert!(!inv.virtual_machine);
        assert_eq!((inv.vendor.as_str(), inv.model.as_str()), ("", ""));
        assert!(inv.batteries.is_empty() && inv.disks.is_empty());
        // A second sample does not fail either (missing files are only
        // logged once).
        assert_eq!(probe.sample(Duration::ZERO).expect("again"), inv);
    }
}
