//! The power probe: the machine's power and energy over each interval, with
//! the source on every sample. Measured first (RAPL counters, then the
//! battery's discharge), else modelled from utilisation and the hardware.
//! It never fails: each source falls back to the next.

use std::time::Duration;

use sobre_proto::v1::{Inventory, PowerPart, PowerSource, UsageReport};

use super::{Optional, Roots};

mod battery;
mod model;
mod rapl;
mod tdp;

pub use model::{
    ChassisWatts, MEMORY_GB, ModelCoefficients, STORAGE_TB, TEADS_CURVE, curve, interpolate,
};
pub use tdp::{
    SOURCE_CCF_VCPU, SOURCE_CHASSIS_DEFAULT, SOURCE_TABLE, normalise, table_tdp, tdp, tdp_with,
};

/// Power over one interval, as `UsageReport` carries it (see
/// [`PowerSample::fill`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PowerSample {
    /// Where the figures come from.
    pub source: PowerSource,
    /// Mean power over the interval, W. Measured: energy / interval; model:
    /// the sum of the terms' powers (defined even over a zero interval).
    pub power_w: f32,
    /// Energy over the interval, J: always the sum of `parts`' energies, in
    /// order, so the parts add up to it exactly.
    pub energy_j: f64,
    /// RAPL zones ("package-0", "dram-0", "psys"), "battery", or model
    /// terms ("cpu", "memory", "storage", "platform").
    pub parts: Vec<PowerPart>,
}

impl PowerSample {
    /// A sample whose energy is the sum of `parts` (name, J).
    pub(crate) fn from_parts(
        source: PowerSource,
        power_w: f32,
        parts: impl IntoIterator<Item = (String, f64)>,
    ) -> Self {
        let parts: Vec<PowerPart> = parts
            .into_iter()
            .map(|(name, energy_j)| PowerPart { name, energy_j })
            .collect();
        Self {
            source,
            power_w,
            energy_j: parts.iter().map(|p| p.energy_j).sum(),
            parts,
        }
    }

    /// Sets the report's `power_w`, `energy_j`, `power_source` and
    /// `power_parts`.
    pub fn fill(self, report: &mut UsageReport) {
        report.power_w = self.power_w;
        report.energy_j = self.energy_j;
        report.power_source = i32::from(self.source);
        report.power_parts = self.parts;
    }
}

/// Samples the machine's power: RAPL, then the battery while discharging,
/// then the model.
///
/// RAPL needs two readings: the first sample after start (or after the
/// counters could not be read) only records the counters and falls back to
/// the next source for its own interval, so the energy of RAPL-sourced
/// samples adds up exactly to the counters' difference between the first
/// reading and the last (wraps included). A zero interval measures nothing:
/// RAPL is not read then (its counters keep running for the next sample).
/// A RAPL delta of zero over a positive interval is not a measurement
/// (stuck or fake counters) and falls back as well.
#[derive(Debug)]
pub struct PowerProbe {
    roots: Roots,
    optional: Optional,
    rapl: rapl::Rapl,
    model: model::Model,
}

impl PowerProbe {
    /// A probe for the machine `hw` describes (chassis, CPU model and
    /// threads, memory, disks, VM flag), with the default coefficients.
    /// Sockets are counted from `{proc}/cpuinfo` (one when unknown).
    pub fn new(roots: Roots, hw: &Inventory) -> Self {
        Self::with_coefficients(roots, hw, ModelCoefficients::default())
    }

    /// [`PowerProbe::new`] with the model's coefficients given.
    pub fn with_coefficients(
        roots: Roots,
        hw: &Inventory,
        coefficients: ModelCoefficients,
    ) -> Self {
        let mut optional = Optional::default();
        let cpuinfo = optional
            .read(&roots.proc.join("cpuinfo"))
            .unwrap_or_default();
        let sockets = tdp::sockets_in_cpuinfo(&cpuinfo);
        Self {
            rapl: rapl::Rapl::new(&roots.sys),
            model: model::Model::new(hw, sockets, coefficients),
            roots,
            optional,
        }
    }

    /// The CPU power at full load the model uses and its source ("table",
    /// "chassis-default" or "ccf-vcpu"), for `Inventory.cpu_tdp_w` and
    /// `cpu_tdp_source`.
    pub fn cpu_tdp(&self) -> (f32, &'static str) {
        self.model.tdp()
    }

    /// Power over the `interval` since the previous sample, with the CPU
    /// `cpu_busy` (0..100 % of all logical CPUs) over it for the model.
    pub fn sample(&mut self, interval: Duration, cpu_busy: f32) -> PowerSample {
        let secs = interval.as_secs_f64();
        if let Some(sample) = self.rapl_sample(secs) {
            return sample;
        }
        let battery = battery::discharge_w(&self.roots.sys, &mut self.optional)
            .or_else(|| self.os_battery_w());
        if let Some(watts) = battery {
            return PowerSample::from_parts(
                PowerSource::Battery,
                watts as f32,
                [("battery".to_owned(), watts * secs)],
            );
        }
        self.model.estimate(interval, cpu_busy)
    }

    /// The batteries' discharge where the OS has no sysfs: Windows'
    /// `SYSTEM_BATTERY_STATE`, on the host's own roots only (a fixture
    /// tree's probe never asks the machine it runs on).
    fn os_battery_w(&self) -> Option<f64> {
        #[cfg(windows)]
        if self.roots == Roots::host() {
            return super::windows::discharge_w();
        }
        None
    }

    /// The RAPL measurement over `secs`, if there is one: counters read, a
    /// previous reading to subtract, a positive interval and energy.
    fn rapl_sample(&mut self, secs: f64) -> Option<PowerSample> {
        if secs <= 0.0 && self.rapl.primed() {
            return None;
        }
        let rapl::Reading::Delta(deltas) = self.rapl.read(&mut self.optional) else {
            return None;
        };
        let total: u64 = deltas.iter().map(|(_, uj)| uj).sum();
        if total == 0 || secs <= 0.0 {
            return None;
        }
        let parts = deltas.into_iter().map(|(name, uj)| (name, uj as f64 / 1e6));
        let mut sample = PowerSample::from_parts(PowerSource::Rapl, 0.0, parts);
        sample.power_w = (sample.energy_j / secs) as f32;
        Some(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fixture::Tree;
    use battery::tests::battery;
    use rapl::tests::{fresh_flag, set, zone};
    #[cfg(unix)]
    use std::io;
    #[cfg(unix)]
    use std::sync::{Arc, Mutex};

    const MAX: u64 = 262_143_328_850;

    fn laptop() -> Inventory {
        Inventory {
            cpu_model: "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz".into(),
            chassis: "laptop".into(),
            cpu_threads: 8,
            mem_total_bytes: 8 * 1_073_741_824,
            ..Inventory::default()
        }
    }

    /// A probe over `t` whose RAPL warning flag is its own (not the
    /// process's, which other tests share).
    fn probe(t: &Tree, hw: &Inventory) -> PowerProbe {
        let mut p = PowerProbe::new(t.roots.clone(), hw);
        p.rapl = rapl::Rapl::with_warned_flag(&t.roots.sys, fresh_flag());
        p
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The laptop model at 50 %: 15 × 0.75 + 8 × 0.392 + 5 = 19.386 W.
    const LAPTOP_50_W: f64 = 19.386;

    fn assert_model(sample: &PowerSample, interval_s: f64) {
        assert_eq!(sample.source, PowerSource::Model);
        assert!((f64::from(sample.power_w) - LAPTOP_50_W).abs() < 1e-4);
        assert!((sample.energy_j - LAPTOP_50_W * interval_s).abs() < 1e-6);
    }

    #[test]
    fn rapl_first_reading_falls_back_then_measures() {
        let t = Tree::new();
        zone(&t, "0", "package-0", 1_000_000, MAX);
        zone(&t, "0:0", "dram", 0, MAX);
        let mut p = probe(&t, &laptop());
        assert_model(&p.sample(secs(10), 50.0), 10.0);
        set(&t, "0", 51_000_000);
        set(&t, "0:0", 5_000_000);
        let s = p.sample(secs(10), 50.0);
        // 50 J + 5 J over 10 s = 5.5 W.
        assert_eq!(s.source, PowerSource::Rapl);
        assert_eq!(s.energy_j, 55.0);
        assert_eq!(s.power_w, 5.5);
        let parts: Vec<(&str, f64)> = s
            .parts
            .iter()
            .map(|p| (p.name.as_str(), p.energy_j))
            .collect();
        assert_eq!(parts, [("package-0", 50.0), ("dram-0", 5.0)]);
    }

    #[test]
    fn rapl_wrap_gives_the_exact_joules_and_watts() {
        let t = Tree::new();
        // 1 J before the end of the range, then 2 J past 0: 3 J in 2 s.
        zone(&t, "0", "package-0", MAX - 1_000_000, MAX);
        let mut p = probe(&t, &laptop());
        p.sample(Duration::ZERO, 0.0);
        set(&t, "0", 2_000_000);
        let s = p.sample(secs(2), 0.0);
        assert_eq!(
            (s.source, s.energy_j, s.power_w),
            (PowerSource::Rapl, 3.0, 1.5)
        );
    }

    #[test]
    fn rapl_energy_adds_up_over_a_run_with_a_wrap() {
        let t = Tree::new();
        // Counters in multiples of 15,625 µJ (1e6 / 2^6), so every value in
        // joules is exact in binary and the float sum is exact too.
        let max = 1_000_000_000; // 1 kJ range
        let readings = [
            900_000_000u64,
            937_500_000,
            984_375_000,
            15_625_000, // wrapped: 15.625 J + 31.25 J
            234_375_000,
            500_000_000,
        ];
        zone(&t, "0", "package-0", readings[0], max);
        let mut p = probe(&t, &laptop());
        assert_eq!(p.sample(secs(1), 20.0).source, PowerSource::Model);
        let mut sum = 0.0;
        for &uj in &readings[1..] {
            set(&t, "0", uj);
            let s = p.sample(secs(1), 20.0);
            assert_eq!(s.source, PowerSource::Rapl);
            sum += s.energy_j;
        }
        // (max − first) + last = 100 J + 500 J.
        assert_eq!(sum, 600.0);
    }

    #[test]
    fn rapl_zero_delta_or_zero_interval_is_not_measured() {
        let t = Tree::new();
        zone(&t, "0", "package-0", 1_000, MAX);
        let mut p = probe(&t, &laptop());
        p.sample(secs(1), 50.0);
        // Stuck counters: the model, never a measured zero.
        assert_model(&p.sample(secs(1), 50.0), 1.0);
        // A zero interval leaves the counters for the next sample.
        set(&t, "0", 3_001_000);
        let s = p.sample(Duration::ZERO, 50.0);
        assert_eq!((s.source, s.energy_j), (PowerSource::Model, 0.0));
        let s = p.sample(secs(3), 50.0);
        assert_eq!(
            (s.source, s.energy_j, s.power_w),
            (PowerSource::Rapl, 3.0, 1.0)
        );
    }

    #[cfg(unix)]
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    #[cfg(unix)]
    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// RAPL is Linux's sysfs (its paths are in the message checked).
    #[cfg(unix)]
    #[test]
    fn unreadable_counters_fall_back_and_warn_once() {
        let t = Tree::new();
        zone(&t, "0", "package-0", 0, MAX);
        // A directory where the counter should be: unreadable even as root.
        let counter = "sys/class/powercap/intel-rapl:0/energy_uj";
        std::fs::remove_file(t.dir.path().join(counter)).expect("remove");
        t.mkdir(counter);
        let log = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let log = log.clone();
                move || log.clone()
            })
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let flag = fresh_flag();
            let mut p = probe(&t, &laptop());
            p.rapl = rapl::Rapl::with_warned_flag(&t.roots.sys, flag);
            for _ in 0..3 {
                assert_model(&p.sample(secs(1), 50.0), 1.0);
            }
            // Once per process: a second probe sharing the flag stays quiet.
            let mut again = probe(&t, &laptop());
            again.rapl = rapl::Rapl::with_warned_flag(&t.roots.sys, flag);
            assert_model(&again.sample(secs(1), 50.0), 1.0);
        });
        let text = String::from_utf8(log.0.lock().expect("log buffer").clone()).expect("utf-8");
        assert_eq!(text.matches("WARN").count(), 1, "{text}");
        assert!(text.contains("intel-rapl:0/energy_uj"), "{text}");
        assert!(text.contains("CAP_DAC_READ_SEARCH"), "{text}");
        assert!(text.contains("chmod o+r"), "{text}");
    }

    #[test]
    fn unreadable_rapl_falls_back_to_a_discharging_battery() {
        let t = Tree::new();
        zone(&t, "0", "package-0", 0, MAX);
        let counter = "sys/class/powercap/intel-rapl:0/energy_uj";
        std::fs::remove_file(t.dir.path().join(counter)).expect("remove");
        t.mkdir(counter);
        battery(&t, "BAT0", "Discharging", &[("power_now", "9000000")]);
        let mut p = probe(&t, &laptop());
        let s = p.sample(secs(10), 50.0);
        assert_eq!(
            (s.source, s.power_w, s.energy_j),
            (PowerSource::Battery, 9.0, 90.0)
        );
        assert_eq!(
            s.parts,
            [PowerPart {
                name: "battery".into(),
                energy_j: 90.0
            }]
        );
    }

    #[test]
    fn battery_current_times_voltage_and_charging_goes_to_the_model() {
        let t = Tree::new();
        // 0.5 A × 12 V = 6 W, over 5 s = 30 J.
        battery(
            &t,
            "BAT0",
            "Discharging",
            &[("current_now", "500000"), ("voltage_now", "12000000")],
        );
        let mut p = probe(&t, &laptop());
        let s = p.sample(secs(5), 50.0);
        assert_eq!(s.source, PowerSource::Battery);
        assert!((s.energy_j - 30.0).abs() < 1e-9 && (s.power_w - 6.0).abs() < 1e-6);
        battery(&t, "BAT0", "Charging", &[]);
        assert_model(&p.sample(secs(5), 50.0), 5.0);
    }

    #[test]
    fn sockets_from_cpuinfo_scale_the_tdp() {
        let t = Tree::new();
        t.write(
            "proc/cpuinfo",
            "processor : 0\nphysical id : 0\n\nprocessor : 1\nphysical id : 1\n",
        );
        let hw = Inventory {
            cpu_model: "Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz".into(),
            chassis: "server".into(),
            ..Inventory::default()
        };
        assert_eq!(probe(&t, &hw).cpu_tdp(), (300.0, "table"));
    }

    #[test]
    fn fill_sets_the_report_fields() {
        let sample =
            PowerSample::from_parts(PowerSource::Battery, 2.0, [("battery".to_owned(), 4.0)]);
        let mut report = UsageReport::default();
        sample.fill(&mut report);
        assert_eq!(report.power_w, 2.0);
        assert_eq!(report.energy_j, 4.0);
        assert_eq!(report.power_source, PowerSource::Battery as i32);
        assert_eq!(report.power_parts.len(), 1);
    }

    #[test]
    fn host_without_rapl_is_modelled() {
        use crate::probe::{InventoryProbe, Probe};
        let roots = Roots::host();
        let hw = InventoryProbe::new(roots.clone())
            .sample(Duration::ZERO)
            .expect("host inventory");
        let mut p = PowerProbe::new(roots.clone(), &hw);
        p.sample(Duration::ZERO, 0.0);
        let s = p.sample(Duration::from_millis(100), 10.0);
        assert!(s.power_w > 0.0 && s.energy_j > 0.0, "{s:?}");
        // The reference machines are VMs without RAPL; elsewhere RAPL or a
        // battery may measure.
        if !roots.sys.join("class/powercap").exists() && hw.batteries.is_empty() {
            assert_eq!(s.source, PowerSource::Model, "{s:?}");
        }
    }
}
