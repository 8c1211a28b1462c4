//! The power model used when nothing is measured: CPU (TDP × load curve, or
//! CCF's per-vCPU figures on a VM), memory, storage and a per-chassis
//! platform baseline, each a part of the estimate.

use std::time::Duration;

use sobre_proto::v1::{Inventory, PowerSource};

use super::{PowerSample, tdp};

/// The Teads/Boavizta CPU load curve: (load %, fraction of TDP). Teads,
/// "Building an AWS EC2 Carbon Emissions Dataset" (B. Davy, 2021,
/// <https://medium.com/teads-engineering/building-an-aws-ec2-carbon-emissions-dataset-3f0fd76c98ac>),
/// used as the default CPU consumption profile by Boavizta
/// (<https://doc.api.boavizta.org/Explanations/consumption_profile/>).
pub const TEADS_CURVE: [(f32, f32); 4] = [(0.0, 0.12), (10.0, 0.32), (50.0, 0.75), (100.0, 1.02)];

/// Watts per chassis type (`Inventory.chassis`); "other", "unknown" and any
/// name not listed use `other`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChassisWatts {
    pub laptop: f32,
    pub desktop: f32,
    pub server: f32,
    pub tablet: f32,
    pub vm: f32,
    pub other: f32,
}

impl ChassisWatts {
    /// The value for `chassis`.
    pub fn get(&self, chassis: &str) -> f32 {
        match chassis {
            "laptop" => self.laptop,
            "desktop" => self.desktop,
            "server" => self.server,
            "tablet" => self.tablet,
            "vm" => self.vm,
            _ => self.other,
        }
    }
}

/// Every coefficient of the power model, so a configuration can override
/// them. `Default` is the documented set (sources on each field; all listed
/// in METHODOLOGY.md).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelCoefficients {
    /// CPU power as a fraction of TDP by load %, interpolated linearly:
    /// [`TEADS_CURVE`].
    pub cpu_curve: Vec<(f32, f32)>,
    /// Per-chassis TDP per socket for CPUs not in the table: laptop 15 W,
    /// desktop 65 W, server 120 W, tablet 7 W, other/unknown 65 W. Typical
    /// values of each market segment (U-series laptops, mainstream
    /// desktops, mid-range server sockets, fanless tablets): an assumption
    /// of ours, flagged as "chassis-default". `vm` is unused (VMs use the
    /// per-vCPU figures).
    pub default_tdp_w: ChassisWatts,
    /// CCF's average minimum watts per vCPU for AWS (0 % load): 0.74 W.
    /// Cloud Carbon Footprint methodology,
    /// <https://www.cloudcarbonfootprint.org/docs/methodology/> ("Compute").
    pub vcpu_min_w: f32,
    /// CCF's average maximum watts per vCPU for AWS (100 % load): 3.5 W.
    pub vcpu_max_w: f32,
    /// Memory: 0.392 W per GB (CCF, "Memory": the mean of Crucial's
    /// ~0.375 W/GB and Micron's ~0.408 W/GB for DDR4). DESIGN.md gives the
    /// range 0.284–0.392 W/GB (Boavizta–CCF); we take CCF's upper value.
    pub memory_w_per_gb: f32,
    /// SSD: 1.2 W per TB (CCF, "Storage": 1.2 Wh per TB·hour).
    pub ssd_w_per_tb: f32,
    /// HDD: 0.65 W per TB (CCF, "Storage": 0.65 Wh per TB·hour).
    pub hdd_w_per_tb: f32,
    /// Platform baseline (motherboard, fans, PSU losses, a laptop's screen):
    /// laptop 5 W, desktop 20 W, server 50 W, tablet 2 W, vm 0 W,
    /// other/unknown 20 W. ASSUMPTIONS of ours pending measurement, to be
    /// listed as such in METHODOLOGY.md.
    pub platform_w: ChassisWatts,
}

impl Default for ModelCoefficients {
    fn default() -> Self {
        Self {
            cpu_curve: TEADS_CURVE.to_vec(),
            default_tdp_w: ChassisWatts {
                laptop: 15.0,
                desktop: 65.0,
                server: 120.0,
                tablet: 7.0,
                vm: 0.0,
                other: 65.0,
            },
            vcpu_min_w: 0.74,
            vcpu_max_w: 3.5,
            memory_w_per_gb: 0.392,
            ssd_w_per_tb: 1.2,
            hdd_w_per_tb: 0.65,
            platform_w: ChassisWatts {
                laptop: 5.0,
                desktop: 20.0,
                server: 50.0,
                tablet: 2.0,
                vm: 0.0,
                other: 20.0,
            },
        }
    }
}

/// Bytes in the model's GB of memory: 2^30, as RAM is sized in binary units
/// (a "16 GB" module holds 16 GiB).
pub const MEMORY_GB: f64 = 1_073_741_824.0;
/// Bytes in the model's TB of storage: 10^12, as disks are sized.
pub const STORAGE_TB: f64 = 1e12;

/// The default CPU load curve at `load_percent` (clamped to 0..100): the
/// fraction of TDP the CPU draws, between 0.12 (idle) and 1.02 (full load).
pub fn curve(load_percent: f32) -> f32 {
    interpolate(&TEADS_CURVE, load_percent)
}

/// Linear interpolation on `points` (sorted by load), clamped to the first
/// and last points; a NaN load counts as the lowest. An empty curve is 1.0
/// (the TDP, flat).
pub fn interpolate(points: &[(f32, f32)], load_percent: f32) -> f32 {
    let (Some(&first), Some(&last)) = (points.first(), points.last()) else {
        return 1.0;
    };
    if load_percent.is_nan() || load_percent <= first.0 {
        return first.1;
    }
    if load_percent >= last.0 {
        return last.1;
    }
    for pair in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        if load_percent <= x1 && x1 > x0 {
            return y0 + (load_percent - x0) / (x1 - x0) * (y1 - y0);
        }
    }
    last.1
}

/// How the CPU term is computed.
#[derive(Debug, Clone, PartialEq)]
enum Cpu {
    /// TDP (all sockets) × the load curve.
    Tdp(f32),
    /// vCPUs × (Wmin + load × (Wmax − Wmin)).
    Vcpu(u32),
}

/// The model for one machine: its fixed terms precomputed from the
/// inventory.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    coefficients: ModelCoefficients,
    cpu: Cpu,
    tdp: (f32, &'static str),
    memory_w: f64,
    storage_w: f64,
    platform_w: f64,
}

impl Model {
    pub(crate) fn new(hw: &Inventory, sockets: u32, coefficients: ModelCoefficients) -> Self {
        let tdp = tdp::tdp_with(hw, sockets, &coefficients);
        let vm = tdp::is_vm(hw);
        let cpu = if vm {
            Cpu::Vcpu(tdp::vcpus(hw))
        } else {
            Cpu::Tdp(tdp.0)
        };
        let memory_w =
            hw.mem_total_bytes as f64 / MEMORY_GB * f64::from(coefficients.memory_w_per_gb);
        // A VM's disks are the host's or a SAN's: their power is not the
        // guest's (and VM disks often claim to be rotational). Removable
        // disks (USB sticks, SD cards, which often claim to be rotational
        // too) come and go and draw little: not counted either.
        let storage_w = if vm {
            0.0
        } else {
            hw.disks
                .iter()
                .filter(|d| !d.removable)
                .map(|d| {
                    let per_tb = if d.rotational {
                        coefficients.hdd_w_per_tb
                    } else {
                        coefficients.ssd_w_per_tb
                    };
                    d.size_bytes as f64 / STORAGE_TB * f64::from(per_tb)
                })
                .sum()
        };
        let chassis = if vm { "vm" } else { hw.chassis.as_str() };
        let platform_w = f64::from(coefficients.platform_w.get(chassis));
        Self {
            coefficients,
            cpu,
            tdp,
            memory_w,
            storage_w,
            platform_w,
        }
    }

    /// The CPU power at full load and its source (see [`tdp::tdp`]).
    pub(crate) fn tdp(&self) -> (f32, &'static str) {
        self.tdp
    }

    /// The CPU term at `load_percent` (0..100 % of all logical CPUs), in W.
    pub(crate) fn cpu_w(&self, load_percent: f32) -> f64 {
        match self.cpu {
            Cpu::Tdp(tdp) => {
                f64::from(tdp) * f64::from(interpolate(&self.coefficients.cpu_curve, load_percent))
            }
            Cpu::Vcpu(vcpus) => {
                let load = if load_percent.is_nan() {
                    0.0
                } else {
                    f64::from(load_percent.clamp(0.0, 100.0)) / 100.0
                };
                let (min, max) = (
                    f64::from(self.coefficients.vcpu_min_w),
                    f64::from(self.coefficients.vcpu_max_w),
                );
                f64::from(vcpus) * (min + load * (max - min))
            }
        }
    }

    /// The terms at `load_percent`, in W: ("cpu" | "memory" | "storage" |
    /// "platform", watts). Terms that do not apply (a VM's storage and
    /// platform, a machine without disks) are left out.
    pub(crate) fn terms(&self, load_percent: f32) -> Vec<(&'static str, f64)> {
        [
            ("cpu", self.cpu_w(load_percent)),
            ("memory", self.memory_w),
            ("storage", self.storage_w),
            ("platform", self.platform_w),
        ]
        .into_iter()
        .filter(|(_, watts)| *watts > 0.0)
        .collect()
    }

    /// The estimate over `interval` at `load_percent`: each term's energy
    /// is its power × the interval, the total energy is the sum of the
    /// parts' energies (so they add up exactly, summed in order), and
    /// `power_w` the sum of the terms' powers.
    pub(crate) fn estimate(&self, interval: Duration, load_percent: f32) -> PowerSample {
        let secs = interval.as_secs_f64();
        let terms = self.terms(load_percent);
        let power_w: f64 = terms.iter().map(|(_, w)| w).sum();
        PowerSample::from_parts(
            PowerSource::Model,
            power_w as f32,
            terms
                .into_iter()
                .map(|(name, w)| (name.to_owned(), w * secs)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sobre_proto::v1::Disk;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4 * b.abs().max(1.0)
    }

    fn desktop(model: &str) -> Inventory {
        Inventory {
            cpu_model: model.into(),
            chassis: "desktop".into(),
            cpu_threads: 12,
            ..Inventory::default()
        }
    }

    fn disk(size_bytes: u64, rotational: bool, removable: bool) -> Disk {
        Disk {
            name: "sda".into(),
            size_bytes,
            rotational,
            removable,
            model: String::new(),
        }
    }

    #[test]
    fn curve_at_its_points_and_between() {
        assert_eq!(curve(0.0), 0.12);
        assert_eq!(curve(10.0), 0.32);
        assert_eq!(curve(50.0), 0.75);
        assert_eq!(curve(100.0), 1.02);
        // 30 %: 0.32 + (30 − 10) / (50 − 10) × (0.75 − 0.32) = 0.535.
        assert!(close(f64::from(curve(30.0)), 0.535));
        // 5 %: 0.12 + 0.5 × 0.20 = 0.22; 75 %: 0.75 + 0.5 × 0.27 = 0.885.
        assert!(close(f64::from(curve(5.0)), 0.22));
        assert!(close(f64::from(curve(75.0)), 0.885));
        // Clamped, and NaN is idle.
        assert_eq!(curve(-5.0), 0.12);
        assert_eq!(curve(250.0), 1.02);
        assert_eq!(curve(f32::NAN), 0.12);
        assert_eq!(interpolate(&[], 50.0), 1.0);
    }

    #[test]
    fn cpu_term_is_tdp_times_curve() {
        // Ryzen 5 3600: 65 W in the table.
        let model = Model::new(
            &desktop("AMD Ryzen 5 3600 6-Core Processor"),
            1,
            ModelCoefficients::default(),
        );
        assert_eq!(model.tdp(), (65.0, "table"));
        for (load, watts) in [(0.0, 7.8), (10.0, 20.8), (50.0, 48.75), (100.0, 66.3)] {
            assert!(close(model.cpu_w(load), watts), "{load} %");
        }
        // 30 %: 0.535 × 65 = 34.775 W.
        assert!(close(model.cpu_w(30.0), 34.775));
    }

    #[test]
    fn unknown_cpu_uses_the_chassis_tdp() {
        let mut hw = desktop("Mystery CPU 9000");
        hw.chassis = "laptop".into();
        let model = Model::new(&hw, 1, ModelCoefficients::default());
        assert_eq!(model.tdp(), (15.0, "chassis-default"));
        // 15 W × 0.75.
        assert!(close(model.cpu_w(50.0), 11.25));
    }

    #[test]
    fn vm_uses_ccf_per_vcpu_and_no_storage_or_platform() {
        let hw = Inventory {
            cpu_model: "Intel(R) Xeon(R) Processor".into(),
            chassis: "vm".into(),
            virtual_machine: true,
            cpu_threads: 4,
            mem_total_bytes: 8 * 1_073_741_824,
            disks: vec![disk(100_000_000_000, true, false)],
            ..Inventory::default()
        };
        let model = Model::new(&hw, 1, ModelCoefficients::default());
        assert_eq!(model.tdp(), (14.0, "ccf-vcpu"));
        // 4 × (0.74 + 0.25 × (3.5 − 0.74)) = 4 × 1.43 = 5.72 W.
        assert!(close(model.cpu_w(25.0), 5.72));
        assert!(close(model.cpu_w(0.0), 2.96));
        assert!(close(model.cpu_w(100.0), 14.0));
        // Memory 8 GB × 0.392 = 3.136 W; no storage, no platform.
        let terms = model.terms(25.0);
        let names: Vec<&str> = terms.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["cpu", "memory"]);
        assert!(close(terms[1].1, 3.136));
    }

    #[test]
    fn memory_storage_platform_terms_and_parts_add_up() {
        let hw = Inventory {
            cpu_model: "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz".into(),
            chassis: "laptop".into(),
            cpu_threads: 8,
            mem_total_bytes: 16 * 1_073_741_824,
            disks: vec![
                // 0.5 TB SSD: 0.6 W; 2 TB HDD: 1.3 W; a USB stick: 0.
                disk(500_000_000_000, false, false),
                disk(2_000_000_000_000, true, false),
                disk(32_000_000_000, true, true),
            ],
            ..Inventory::default()
        };
        let model = Model::new(&hw, 1, ModelCoefficients::default());
        let sample = model.estimate(Duration::from_secs(10), 50.0);
        assert_eq!(sample.source, PowerSource::Model);
        let expected = [
            ("cpu", 15.0 * 0.75),     // 11.25 W
            ("memory", 16.0 * 0.392), // 6.272 W
            ("storage", 0.6 + 1.3),   // 1.9 W
            ("platform", 5.0),
        ];
        assert_eq!(sample.parts.len(), expected.len());
        for (part, (name, watts)) in sample.parts.iter().zip(expected) {
            assert_eq!(part.name, name);
            assert!(close(part.energy_j, watts * 10.0), "{name}");
        }
        // 24.422 W, 244.22 J over 10 s.
        assert!(close(f64::from(sample.power_w), 24.422));
        assert!(close(sample.energy_j, 244.22));
        let sum: f64 = sample.parts.iter().map(|p| p.energy_j).sum();
        assert_eq!(sum, sample.energy_j);
    }

    #[test]
    fn coefficients_can_be_overridden() {
        let coefficients = ModelCoefficients {
            cpu_curve: vec![(0.0, 0.5), (100.0, 1.0)],
            ..ModelCoefficients::default()
        };
        let model = Model::new(&desktop("Mystery"), 2, coefficients);
        // 2 sockets × 65 W = 130 W; 50 % → 0.75 × 130.
        assert_eq!(model.tdp(), (130.0, "chassis-default"));
        assert!(close(model.cpu_w(50.0), 97.5));
    }

    proptest! {
        #[test]
        fn curve_is_monotonic_and_bounded(a in -50.0f32..150.0, b in -50.0f32..150.0) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(curve(lo) <= curve(hi));
            for load in [lo, hi] {
                prop_assert!((0.12..=1.02).contains(&curve(load)));
            }
        }

        #[test]
        fn parts_always_add_up(
            load in 0.0f32..100.0,
            millis in 0u64..3_600_000,
            mem_gb in 0u64..1024,
        ) {
            let hw = Inventory {
                chassis: "server".into(),
                mem_total_bytes: mem_gb * 1_073_741_824,
                disks: vec![disk(4_000_000_000_000, true, false)],
                ..Inventory::default()
            };
            let model = Model::new(&hw, 1, ModelCoefficients::default());
            let sample = model.estimate(Duration::from_millis(millis), load);
            let sum: f64 = sample.parts.iter().map(|p| p.energy_j).sum();
            prop_assert_eq!(sum, sample.energy_j);
            prop_assert!(sample.power_w > 0.0);
        }
    }
}
