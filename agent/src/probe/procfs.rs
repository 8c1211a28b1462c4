//! Parsers for the `/proc` files the usage and inventory probes read: pure
//! functions over the file's text, so they are tested without a tree.

/// Cumulative CPU time of the aggregate `cpu` line of `/proc/stat`, in
/// USER_HZ ticks: user, nice, system, idle, iowait, irq, softirq, steal.
///
/// guest and guest_nice (the 9th and 10th values) are already counted in
/// user and nice, so they are left out of the total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuTimes([u64; 8]);

const IDLE: usize = 3;
const IOWAIT: usize = 4;

impl CpuTimes {
    /// Percentage (0..=100 of all CPUs) of the time between `prev` and
    /// `self` that was busy, i.e. neither idle nor waiting for I/O. A value
    /// that went backwards (iowait does, on some kernels) counts as 0.
    pub(crate) fn busy_percent_since(&self, prev: &CpuTimes) -> f32 {
        let mut total = 0u64;
        let mut idle = 0u64;
        for (i, (new, old)) in self.0.iter().zip(prev.0.iter()).enumerate() {
            let d = delta(*old, *new);
            total = total.saturating_add(d);
            if i == IDLE || i == IOWAIT {
                idle = idle.saturating_add(d);
            }
        }
        if total == 0 {
            return 0.0;
        }
        let busy = total - idle;
        ((busy as f64 / total as f64) * 100.0).clamp(0.0, 100.0) as f32
    }
}

/// The aggregate `cpu` line of `/proc/stat`, or `None` when there is none
/// or it has fewer than the four values every kernel has written since 2.4.
pub(crate) fn parse_stat_cpu(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let mut times = [0u64; 8];
    let mut n = 0;
    for (slot, token) in times.iter_mut().zip(line.split_whitespace().skip(1)) {
        *slot = token.parse().ok()?;
        n += 1;
    }
    (n >= 4).then_some(CpuTimes(times))
}

/// The counter increase from `old` to `new`; a reset or wrap (`new < old`)
/// counts as 0 rather than a huge number.
pub(crate) fn delta(old: u64, new: u64) -> u64 {
    new.saturating_sub(old)
}

/// Memory gauges from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Meminfo {
    pub total: u64,
    pub available: u64,
    pub swap_total: u64,
    pub swap_used: u64,
}

/// Parses `/proc/meminfo` (values in kB). Absent keys are 0; kernels before
/// 3.14 have no `MemAvailable`, estimated then as free + buffers + cached.
pub(crate) fn parse_meminfo(text: &str) -> Meminfo {
    let (mut total, mut available, mut swap_total, mut swap_free) = (0, None, 0, 0);
    let (mut free, mut buffers, mut cached) = (0, 0, 0);
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let Some(Ok(value)) = parts.next().map(str::parse::<u64>) else {
            continue;
        };
        let bytes = match parts.next() {
            Some("kB") => value.saturating_mul(1024),
            _ => value,
        };
        match key {
            "MemTotal" => total = bytes,
            "MemAvailable" => available = Some(bytes),
            "MemFree" => free = bytes,
            "Buffers" => buffers = bytes,
            "Cached" => cached = bytes,
            "SwapTotal" => swap_total = bytes,
            "SwapFree" => swap_free = bytes,
            _ => {}
        }
    }
    Meminfo {
        total,
        available: available.unwrap_or_else(|| {
            u64::min(total, free.saturating_add(buffers).saturating_add(cached))
        }),
        swap_total,
        swap_used: swap_total.saturating_sub(swap_free),
    }
}

/// Cumulative I/O of one block device from `/proc/diskstats`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DiskIo {
    pub read: u64,
    pub written: u64,
}

/// Every device of `/proc/diskstats` with its cumulative I/O. The sector
/// counts there are always in 512-byte units, whatever the device's own
/// sector size.
pub(crate) fn parse_diskstats(text: &str) -> Vec<(&str, DiskIo)> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // major minor name reads merged sectors_read ms writes merged
            // sectors_written ...
            let name = *f.get(2)?;
            let read: u64 = f.get(5)?.parse().ok()?;
            let written: u64 = f.get(9)?.parse().ok()?;
            Some((
                name,
                DiskIo {
                    read: read.saturating_mul(512),
                    written: written.saturating_mul(512),
                },
            ))
        })
        .collect()
}

/// Cumulative traffic of one network interface from `/proc/net/dev`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NetIo {
    pub rx: u64,
    pub tx: u64,
}

/// Every interface of `/proc/net/dev` with its cumulative byte counts.
pub(crate) fn parse_net_dev(text: &str) -> Vec<(&str, NetIo)> {
    text.lines()
        .filter_map(|line| {
            // "  eth0: rx_bytes packets errs drop fifo frame compressed
            // multicast tx_bytes ..."; old kernels glue the first number to
            // the colon, so split on it rather than on whitespace.
            let (name, rest) = line.split_once(':')?;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let rx = f.first()?.parse().ok()?;
            let tx = f.get(8)?.parse().ok()?;
            Some((name.trim(), NetIo { rx, tx }))
        })
        .collect()
}

/// The 1, 5 and 15 minute load averages of `/proc/loadavg`.
pub(crate) fn parse_loadavg(text: &str) -> Option<(f32, f32, f32)> {
    let mut f = text.split_whitespace().map(str::parse::<f32>);
    Some((f.next()?.ok()?, f.next()?.ok()?, f.next()?.ok()?))
}

/// Whole seconds since boot from `/proc/uptime`.
pub(crate) fn parse_uptime(text: &str) -> Option<u64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cpu_percent_from_two_snapshots() {
        let a = parse_stat_cpu(
            "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 50 0 50 350 50 0 0 0 0 0\nintr 1\n",
        )
        .expect("first");
        // +150 user +10 nice +40 system +300 idle +100 iowait +0 irq
        // +0 softirq +0 steal: busy 200 of 600 ticks. guest (+50) is
        // already inside user and must not be added again.
        let b = parse_stat_cpu("cpu  250 10 140 1000 200 0 0 0 50 0\n").expect("second");
        let pct = b.busy_percent_since(&a);
        assert!((pct - 100.0 / 3.0).abs() < 1e-4, "{pct}");
        assert_eq!(a.busy_percent_since(&a), 0.0);
    }

    #[test]
    fn cpu_counter_going_backwards_counts_as_zero() {
        let a = parse_stat_cpu("cpu 100 0 0 100 500 0 0 0\n").expect("a");
        // iowait went backwards by 100: ignored, so 100 busy of 200.
        let b = parse_stat_cpu("cpu 200 0 0 200 400 0 0 0\n").expect("b");
        assert_eq!(b.busy_percent_since(&a), 50.0);
    }

    #[test]
    fn stat_without_aggregate_line_is_rejected() {
        assert_eq!(parse_stat_cpu("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_stat_cpu("cpu 1 2\n"), None);
        assert_eq!(parse_stat_cpu("cpu 1 x 3 4\n"), None);
        // 2.4-era kernels: four values only.
        assert!(parse_stat_cpu("cpu 1 2 3 4\n").is_some());
    }

    #[test]
    fn meminfo_in_bytes() {
        let m = parse_meminfo(
            "MemTotal:       16000 kB\nMemFree:         1000 kB\n\
             MemAvailable:    8000 kB\nSwapTotal:       4000 kB\n\
             SwapFree:        3000 kB\nHugePages_Total:    7\n",
        );
        assert_eq!(
            m,
            Meminfo {
                total: 16000 * 1024,
                available: 8000 * 1024,
                swap_total: 4000 * 1024,
                swap_used: 1000 * 1024,
            }
        );
    }

    #[test]
    fn meminfo_without_memavailable_estimates_it() {
        let m =
            parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 300 kB\n");
        assert_eq!(m.available, 420 * 1024);
        assert_eq!(m.swap_used, 0);
    }

    #[test]
    fn diskstats_sectors_to_bytes() {
        let rows = parse_diskstats(
            "   8       0 sda 100 0 2048 10 50 0 4096 20 0 30 30\n\
             bogus line\n",
        );
        assert_eq!(
            rows,
            vec![(
                "sda",
                DiskIo {
                    read: 2048 * 512,
                    written: 4096 * 512
                }
            )]
        );
    }

    #[test]
    fn net_dev_rx_tx() {
        let rows = parse_net_dev(
            "Inter-|   Receive                            |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes\n    \
             lo:     500       5    0    0    0     0          0         0      500\n  \
             eth0:1234567 10 0 0 0 0 0 0 7654321 9 0 0 0 0 0 0\n",
        );
        assert_eq!(
            rows,
            vec![
                ("lo", NetIo { rx: 500, tx: 500 }),
                (
                    "eth0",
                    NetIo {
                        rx: 1_234_567,
                        tx: 7_654_321
                    }
                )
            ]
        );
    }

    #[test]
    fn loadavg_and_uptime() {
        assert_eq!(
            parse_loadavg("0.52 1.25 2.00 2/345 6789\n"),
            Some((0.52, 1.25, 2.0))
        );
        assert_eq!(parse_loadavg("garbage"), None);
        assert_eq!(parse_uptime("12345.67 23456.78\n"), Some(12345));
        assert_eq!(parse_uptime(""), None);
    }

    proptest! {
        #[test]
        fn delta_never_exceeds_new_value(old: u64, new: u64) {
            let d = delta(old, new);
            prop_assert!(d <= new);
            if new >= old {
                prop_assert_eq!(d, new - old);
            } else {
                prop_assert_eq!(d, 0);
            }
        }

        #[test]
        fn cpu_percent_is_a_percentage(
            a in proptest::array::uniform8(0u64..1 << 40),
            b in proptest::array::uniform8(0u64..1 << 40),
        ) {
            let pct = CpuTimes(b).busy_percent_since(&CpuTimes(a));
            prop_assert!((0.0..=100.0).contains(&pct));
        }
    }
}
