//! The usage probe: CPU, memory, disk and network activity, load, uptime and
//! user sessions over one sampling interval.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use sobre_proto::v1::UsageReport;

use super::procfs::{self, CpuTimes, DiskIo, NetIo};
use super::sessions;
use super::{Optional, Probe, ProbeError, Roots, read_required};

/// Samples [`UsageReport`]s; counters are deltas since the previous sample.
#[derive(Debug)]
pub struct UsageProbe {
    roots: Roots,
    optional: Optional,
    prev: Option<Counters>,
}

/// The cumulative counters of one sample, kept to compute the next deltas.
#[derive(Debug, Default)]
struct Counters {
    cpu: CpuTimes,
    /// Physical whole disks only, by name.
    disks: HashMap<String, DiskIo>,
    /// Every interface but `lo`, by name.
    nets: HashMap<String, NetIo>,
}

impl UsageProbe {
    pub fn new(roots: Roots) -> Self {
        Self {
            roots,
            optional: Optional::default(),
            prev: None,
        }
    }

    fn read_counters(&mut self) -> Result<Counters, ProbeError> {
        let stat_path = self.roots.proc.join("stat");
        let stat = read_required(&stat_path)?;
        let cpu = procfs::parse_stat_cpu(&stat).ok_or_else(|| ProbeError::Parse {
            path: stat_path,
            what: "no aggregate `cpu` line with at least 4 values".into(),
        })?;

        let mut disks = HashMap::new();
        if let Some(text) = self.optional.read(&self.roots.proc.join("diskstats")) {
            for (name, io) in procfs::parse_diskstats(&text) {
                if is_physical_disk(&self.roots.sys, name) {
                    disks.insert(name.to_owned(), io);
                }
            }
        }

        let mut nets = HashMap::new();
        if let Some(text) = self.optional.read(&self.roots.proc.join("net/dev")) {
            for (name, io) in procfs::parse_net_dev(&text) {
                if name != "lo" {
                    nets.insert(name.to_owned(), io);
                }
            }
        }
        Ok(Counters { cpu, disks, nets })
    }
}

/// Whether `name` (from `/proc/diskstats`) is a whole physical disk: only
/// those have a `device` link in `/sys/block/NAME`. Partitions, loop, ram,
/// zram, dm-* and md devices have none, so no I/O is counted twice.
fn is_physical_disk(sys: &Path, name: &str) -> bool {
    // Names with a slash (cciss/c0d0) appear with a `!` in sysfs.
    let sys_name = name.replace('/', "!");
    !name.is_empty()
        && !sys_name.starts_with('.')
        && sys.join("block").join(sys_name).join("device").exists()
}

/// Sum over keys present in both snapshots of the per-key counter deltas.
/// A key that appeared since the previous sample (hotplug) has no baseline
/// and contributes 0, like a counter reset.
fn sum_deltas<T: Copy>(
    prev: &HashMap<String, T>,
    cur: &HashMap<String, T>,
    field: impl Fn(T) -> u64,
) -> u64 {
    cur.iter()
        .filter_map(|(name, new)| {
            let old = prev.get(name)?;
            Some(procfs::delta(field(*old), field(*new)))
        })
        .fold(0u64, u64::saturating_add)
}

impl Probe for UsageProbe {
    type Output = UsageReport;

    fn sample(&mut self, interval: Duration) -> Result<UsageReport, ProbeError> {
        let counters = self.read_counters()?;
        let mut report = UsageReport {
            interval_ms: u32::try_from(interval.as_millis()).unwrap_or(u32::MAX),
            ..UsageReport::default()
        };

        if let Some(prev) = &self.prev {
            report.cpu_percent = counters.cpu.busy_percent_since(&prev.cpu);
            report.disk_read_bytes = sum_deltas(&prev.disks, &counters.disks, |d| d.read);
            report.disk_written_bytes = sum_deltas(&prev.disks, &counters.disks, |d| d.written);
            report.net_rx_bytes = sum_deltas(&prev.nets, &counters.nets, |n| n.rx);
            report.net_tx_bytes = sum_deltas(&prev.nets, &counters.nets, |n| n.tx);
        }
        self.prev = Some(counters);

        if let Some(text) = self.optional.read(&self.roots.proc.join("meminfo")) {
            let mem = procfs::parse_meminfo(&text);
            report.mem_total_bytes = mem.total;
            report.mem_available_bytes = mem.available;
            report.swap_total_bytes = mem.swap_total;
            report.swap_used_bytes = mem.swap_used;
        }
        if let Some(text) = self.optional.read(&self.roots.proc.join("loadavg"))
            && let Some((l1, l5, l15)) = procfs::parse_loadavg(&text)
        {
            (report.load1, report.load5, report.load15) = (l1, l5, l15);
        }
        if let Some(text) = self.optional.read(&self.roots.proc.join("uptime")) {
            report.uptime_s = procfs::parse_uptime(&text).unwrap_or(0);
        }

        // No utmp (containers, systems without utmp support): no sessions.
        let utmp = self
            .optional
            .read_bytes(&self.roots.run.join("utmp"))
            .unwrap_or_default();
        let s = sessions::sessions(&utmp, &self.roots.dev, SystemTime::now());
        report.user_sessions = s.count;
        report.input_idle_s = s.idle_s;
        report.user_active = s.user_active();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::fixture::Tree;
    use crate::probe::sessions::tests::{record, set_atime};
    use crate::probe::sessions::{DEAD_PROCESS, USER_PROCESS};

    fn diskstats(rows: &[(&str, u64, u64)]) -> String {
        rows.iter()
            .map(|(name, r, w)| format!("   8 0 {name} 1 0 {r} 0 1 0 {w} 0 0 0 0 0 0 0 0 0 0\n"))
            .collect()
    }

    fn net_dev(rows: &[(&str, u64, u64)]) -> String {
        let mut text = String::from(
            "Inter-|   Receive                |  Transmit\n \
             face |bytes packets errs drop fifo frame compressed multicast|bytes\n",
        );
        for (name, rx, tx) in rows {
            text.push_str(&format!(
                "{name:>6}: {rx} 1 0 0 0 0 0 0 {tx} 1 0 0 0 0 0 0\n"
            ));
        }
        text
    }

    /// A tree with one physical disk `sda`, whose partition `sda1`, a loop
    /// device and a device-mapper volume also appear in diskstats.
    fn tree() -> Tree {
        let t = Tree::new();
        t.mkdir("sys/block/sda/device");
        t.mkdir("sys/block/sda/sda1");
        t.mkdir("sys/block/loop0");
        t.mkdir("sys/block/dm-0");
        t.write("proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\n");
        t.write(
            "proc/meminfo",
            "MemTotal: 2048 kB\nMemAvailable: 1024 kB\nSwapTotal: 512 kB\nSwapFree: 128 kB\n",
        );
        t.write("proc/loadavg", "0.50 0.25 0.125 1/100 42\n");
        t.write("proc/uptime", "3600.99 7000.00\n");
        t
    }

    #[test]
    fn first_sample_has_gauges_and_zero_deltas() {
        let t = tree();
        t.write("proc/diskstats", diskstats(&[("sda", 100, 100)]));
        t.write("proc/net/dev", net_dev(&[("eth0", 1000, 2000)]));
        let mut probe = UsageProbe::new(t.roots.clone());
        let r = probe.sample(Duration::from_secs(60)).expect("sample");
        assert_eq!(
            r,
            UsageReport {
                interval_ms: 60_000,
                mem_total_bytes: 2048 * 1024,
                mem_available_bytes: 1024 * 1024,
                swap_total_bytes: 512 * 1024,
                swap_used_bytes: 384 * 1024,
                load1: 0.5,
                load5: 0.25,
                load15: 0.125,
                uptime_s: 3600,
                ..UsageReport::default()
            }
        );
    }

    #[test]
    fn deltas_count_physical_disks_and_non_loopback_interfaces_only() {
        let t = tree();
        let disks = |base: u64| {
            diskstats(&[
                ("sda", base, 2 * base),
                ("sda1", base, 2 * base),
                ("loop0", 7 * base, 7 * base),
                ("dm-0", 5 * base, 5 * base),
            ])
        };
        t.write("proc/diskstats", disks(1000));
        t.write(
            "proc/net/dev",
            net_dev(&[("lo", 10, 10), ("eth0", 1000, 5000), ("wlan0", 0, 0)]),
        );
        let mut probe = UsageProbe::new(t.roots.clone());
        probe.sample(Duration::ZERO).expect("first");

        t.write("proc/stat", "cpu  250 0 150 900 0 0 0 0 0 0\n");
        t.write("proc/diskstats", disks(3000));
        t.write(
            "proc/net/dev",
            net_dev(&[
                ("lo", 99_999, 99_999),
                ("eth0", 1500, 5100),
                ("wlan0", 30, 40),
            ]),
        );
        let r = probe.sample(Duration::from_millis(1500)).expect("second");
        // +150 user +50 system +100 idle: 200 of 300 ticks busy.
        assert!(
            (r.cpu_percent - 200.0 / 3.0).abs() < 1e-4,
            "{}",
            r.cpu_percent
        );
        assert_eq!(r.disk_read_bytes, 2000 * 512);
        assert_eq!(r.disk_written_bytes, 4000 * 512);
        assert_eq!(r.net_rx_bytes, 500 + 30);
        assert_eq!(r.net_tx_bytes, 100 + 40);
        assert_eq!(r.interval_ms, 1500);
    }

    #[test]
    fn counters_going_backwards_count_as_zero() {
        let t = tree();
        t.write("proc/diskstats", diskstats(&[("sda", 5000, 5000)]));
        t.write("proc/net/dev", net_dev(&[("eth0", 1 << 40, 1000)]));
        let mut probe = UsageProbe::new(t.roots.clone());
        probe.sample(Duration::ZERO).expect("first");

        // Disk read and rx counters reset (driver reload, 32-bit wrap).
        t.write("proc/diskstats", diskstats(&[("sda", 10, 6000)]));
        t.write(
            "proc/net/dev",
            net_dev(&[("eth0", 5, 1200), ("usb0", 1 << 30, 9)]),
        );
        let r = probe.sample(Duration::from_secs(1)).expect("second");
        assert_eq!(r.disk_read_bytes, 0);
        assert_eq!(r.disk_written_bytes, 1000 * 512);
        assert_eq!(r.net_rx_bytes, 0);
        // usb0 is new: no baseline yet, so nothing is counted for it.
        assert_eq!(r.net_tx_bytes, 200);

        t.write(
            "proc/net/dev",
            net_dev(&[("eth0", 105, 1300), ("usb0", (1 << 30) + 1, 10)]),
        );
        let r = probe.sample(Duration::from_secs(1)).expect("third");
        assert_eq!(r.net_rx_bytes, 101);
        assert_eq!(r.net_tx_bytes, 101);
    }

    #[test]
    fn sessions_from_utmp_and_tty_atime() {
        let t = tree();
        let mut utmp = record(USER_PROCESS, "pts/0", "alice");
        utmp.extend(record(DEAD_PROCESS, "pts/1", ""));
        utmp.extend(record(USER_PROCESS, "pts/2", "bob"));
        t.write("run/utmp", &utmp);
        t.write("dev/pts/0", "");
        // Far in the past: idle for over a day, so nobody is active.
        set_atime(
            &t.roots.dev.join("pts/0"),
            SystemTime::now() - Duration::from_secs(86_400),
        );
        let r = UsageProbe::new(t.roots.clone())
            .sample(Duration::ZERO)
            .expect("sample");
        assert_eq!(r.user_sessions, 2);
        let idle = r.input_idle_s.expect("pts/0 can be stat'ed");
        assert!((86_400..86_400 + 60).contains(&idle), "{idle}");
        assert!(!r.user_active);
    }

    #[test]
    fn missing_optional_files_leave_fields_zero() {
        let t = Tree::new();
        t.write("proc/stat", "cpu 1 2 3 4 5 6 7 8\n");
        let r = UsageProbe::new(t.roots.clone())
            .sample(Duration::from_secs(1))
            .expect("only /proc/stat is required");
        assert_eq!(
            r,
            UsageReport {
                interval_ms: 1000,
                ..UsageReport::default()
            }
        );
    }

    #[test]
    fn missing_proc_stat_is_an_error_naming_it() {
        let t = Tree::new();
        let err = UsageProbe::new(t.roots.clone())
            .sample(Duration::ZERO)
            .expect_err("no /proc/stat");
        let path = t.roots.proc.join("stat");
        assert!(matches!(&err, ProbeError::Read { path: p, .. } if *p == path));
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn malformed_proc_stat_is_a_parse_error() {
        let t = Tree::new();
        t.write("proc/stat", "intr 0\n");
        let err = UsageProbe::new(t.roots.clone())
            .sample(Duration::ZERO)
            .expect_err("no cpu line");
        assert!(matches!(err, ProbeError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("stat"));
    }

    #[test]
    fn interval_saturates_at_u32_max_ms() {
        let t = tree();
        let r = UsageProbe::new(t.roots.clone())
            .sample(Duration::from_secs(u64::from(u32::MAX)))
            .expect("sample");
        assert_eq!(r.interval_ms, u32::MAX);
    }
}
