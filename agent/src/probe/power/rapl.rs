//! RAPL energy counters from `/sys/class/powercap` (Intel, and AMD through
//! the same `intel-rapl` interface): package, DRAM and platform (psys)
//! zones, with counter wraps at `max_energy_range_uj` corrected.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::super::Optional;

/// Whether the "counters unreadable" warning was logged by this process.
pub(crate) static ACCESS_WARNED: AtomicBool = AtomicBool::new(false);

/// One zone whose counter the total uses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Zone {
    /// The part's name: "package-0", "dram-0", "psys".
    part: String,
    /// Its `energy_uj` file.
    energy: PathBuf,
    /// Its `max_energy_range_uj`, where the counter wraps to 0.
    max_range_uj: Option<u64>,
}

/// What one read of the counters gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reading {
    /// No zone, or a counter could not be read: RAPL is not a source now.
    Unavailable,
    /// Counters read but nothing to subtract them from (the first reading,
    /// after a gap, or after a backward jump that is not a wrap).
    First,
    /// Energy per zone since the previous reading, in µJ, in zone order.
    Delta(Vec<(String, u64)>),
}

/// The RAPL zones of one machine and their previous reading.
#[derive(Debug)]
pub(crate) struct Rapl {
    /// `{sys}/class/powercap`.
    base: PathBuf,
    zones: Vec<Zone>,
    prev: Option<Vec<u64>>,
    /// Set once the unreadable-counter warning is logged: a process-wide
    /// flag ([`ACCESS_WARNED`]) outside tests.
    warned: &'static AtomicBool,
}

impl Rapl {
    pub(crate) fn new(sys: &Path) -> Self {
        Self::with_warned_flag(sys, &ACCESS_WARNED)
    }

    pub(crate) fn with_warned_flag(sys: &Path, warned: &'static AtomicBool) -> Self {
        Self {
            base: sys.join("class/powercap"),
            zones: Vec::new(),
            prev: None,
            warned,
        }
    }

    /// Whether a previous reading exists (the next read can give a delta).
    pub(crate) fn primed(&self) -> bool {
        self.prev.is_some()
    }

    /// Reads the counters and returns the energy since the previous read.
    /// Zones are looked up until some are found (a host without RAPL costs
    /// one failed directory listing per call).
    pub(crate) fn read(&mut self, optional: &mut Optional) -> Reading {
        if self.zones.is_empty() {
            self.zones = discover(&self.base, optional);
            if self.zones.is_empty() {
                return Reading::Unavailable;
            }
        }
        let mut now = Vec::with_capacity(self.zones.len());
        for zone in &self.zones {
            match read_counter(&zone.energy) {
                Ok(uj) => now.push(uj),
                Err(error) => {
                    self.warn_once(&zone.energy, &error);
                    // A gap: the next successful read starts afresh, so no
                    // energy is counted twice (here by the fallback, there
                    // by a delta spanning the gap).
                    self.prev = None;
                    return Reading::Unavailable;
                }
            }
        }
        let Some(prev) = self.prev.replace(now.clone()) else {
            return Reading::First;
        };
        let mut deltas = Vec::with_capacity(now.len());
        for ((zone, &before), &after) in self.zones.iter().zip(&prev).zip(&now) {
            match delta_uj(before, after, zone.max_range_uj) {
                Some(d) => deltas.push((zone.part.clone(), d)),
                None => {
                    tracing::debug!(
                        path = %zone.energy.display(),
                        before,
                        after,
                        "RAPL counter went backwards without a known range; restarting"
                    );
                    return Reading::First;
                }
            }
        }
        Reading::Delta(deltas)
    }

    fn warn_once(&self, path: &Path, error: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = %path.display(),
                error,
                "cannot read the RAPL energy counter, power falls back to the battery or \
                 the model; RAPL counters are root-only since CVE-2020-8694: to measure, \
                 grant read access at boot (e.g. systemd-tmpfiles line \
                 `z /sys/class/powercap/intel-rapl:*/energy_uj 0444 root root -`, or a udev \
                 rule running `chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj`) or run \
                 the agent with CAP_DAC_READ_SEARCH"
            );
        }
    }
}

fn read_counter(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    text.trim()
        .parse()
        .map_err(|_| format!("not a counter: {:?}", text.trim()))
}

/// The counter's increase from `before` to `after`, in µJ: a counter below
/// its previous value wrapped at `max_range_uj`, giving
/// (max − before) + after. `None` when that cannot be: no known range, or
/// a previous value above it.
pub(crate) fn delta_uj(before: u64, after: u64, max_range_uj: Option<u64>) -> Option<u64> {
    if after >= before {
        return Some(after - before);
    }
    let max = max_range_uj.filter(|&m| m >= before)?;
    Some((max - before).saturating_add(after))
}

/// The zones the total uses, in directory order: the psys zone alone when
/// there is one (it covers the whole platform), else every package and DRAM
/// zone. Core and uncore subzones are inside their package and never
/// counted; `intel-rapl-mmio` duplicates the package zones and is skipped.
fn discover(base: &Path, optional: &mut Optional) -> Vec<Zone> {
    // (index path such as [0] or [0, 1], zone name, directory)
    let mut found: Vec<(Vec<u32>, String, PathBuf)> = Vec::new();
    for (dir_name, dir) in optional.list_dir(base) {
        let Some(rest) = dir_name.strip_prefix("intel-rapl:") else {
            continue;
        };
        let Ok(index) = rest
            .split(':')
            .map(str::parse::<u32>)
            .collect::<Result<Vec<_>, _>>()
        else {
            continue;
        };
        if let Some(name) = optional.read_trimmed(&dir.join("name")) {
            found.push((index, name, dir));
        }
    }
    let top_name = |i: u32| {
        found
            .iter()
            .find(|(index, _, _)| index.as_slice() == [i])
            .map(|(_, name, _)| name.as_str())
    };
    let mut used = Vec::new();
    for (index, name, dir) in &found {
        let part = match (index.as_slice(), name.as_str()) {
            ([_], "psys") => "psys".to_owned(),
            ([_], n) if n.starts_with("package") => n.to_owned(),
            ([i, ..], "dram") => {
                // dram-N after its package-N (a dram subzone's parent, or
                // the top-level zone's own index).
                let n = top_name(*i)
                    .and_then(|p| p.strip_prefix("package-"))
                    .map_or_else(|| i.to_string(), str::to_owned);
                format!("dram-{n}")
            }
            _ => continue,
        };
        used.push(Zone {
            part,
            energy: dir.join("energy_uj"),
            max_range_uj: optional.read_u64(&dir.join("max_energy_range_uj")),
        });
    }
    if let Some(psys) = used.iter().position(|z| z.part == "psys") {
        return vec![used.swap_remove(psys)];
    }
    // Two zones of the same name (firmware that names every socket
    // "package-0") would merge in the report: suffix the later ones.
    for i in 1..used.len() {
        if used[..i].iter().any(|z| z.part == used[i].part) {
            used[i].part = format!("{}#{i}", used[i].part);
        }
    }
    used
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::probe::fixture::Tree;
    use proptest::prelude::*;

    /// A zone `intel-rapl:{index}` named `name` with its counter at `uj`.
    pub(crate) fn zone(t: &Tree, index: &str, name: &str, uj: u64, max: u64) {
        let dir = format!("sys/class/powercap/intel-rapl:{index}");
        t.write(&format!("{dir}/name"), format!("{name}\n"));
        t.write(&format!("{dir}/energy_uj"), format!("{uj}\n"));
        t.write(&format!("{dir}/max_energy_range_uj"), format!("{max}\n"));
    }

    pub(crate) fn set(t: &Tree, index: &str, uj: u64) {
        t.write(
            &format!("sys/class/powercap/intel-rapl:{index}/energy_uj"),
            format!("{uj}\n"),
        );
    }

    pub(crate) fn fresh_flag() -> &'static AtomicBool {
        Box::leak(Box::new(AtomicBool::new(false)))
    }

    fn rapl(t: &Tree) -> Rapl {
        Rapl::with_warned_flag(&t.roots.sys, fresh_flag())
    }

    const MAX: u64 = 262_143_328_850;

    #[test]
    fn wrap_arithmetic() {
        assert_eq!(delta_uj(10, 25, Some(100)), Some(15));
        assert_eq!(delta_uj(90, 5, Some(100)), Some(15));
        assert_eq!(delta_uj(90, 5, None), None);
        assert_eq!(delta_uj(190, 5, Some(100)), None);
        assert_eq!(delta_uj(7, 7, None), Some(0));
    }

    #[test]
    fn one_socket_package_and_dram_core_uncore_not_added() {
        let t = Tree::new();
        zone(&t, "0", "package-0", 1_000_000, MAX);
        zone(&t, "0:0", "core", 500_000, MAX);
        zone(&t, "0:1", "uncore", 100_000, MAX);
        zone(&t, "0:2", "dram", 2_000_000, MAX);
        // The control-type directory and the MMIO duplicate are skipped.
        t.mkdir("sys/class/powercap/intel-rapl");
        t.write("sys/class/powercap/intel-rapl-mmio:0/name", "package-0\n");
        let mut r = rapl(&t);
        let mut o = Optional::default();
        assert_eq!(r.read(&mut o), Reading::First);
        set(&t, "0", 3_500_000);
        set(&t, "0:0", 2_000_000);
        set(&t, "0:1", 900_000);
        set(&t, "0:2", 2_750_000);
        assert_eq!(
            r.read(&mut o),
            Reading::Delta(vec![
                ("package-0".into(), 2_500_000),
                ("dram-0".into(), 750_000)
            ])
        );
    }

    #[test]
    fn two_sockets() {
        let t = Tree::new();
        zone(&t, "0", "package-0", 0, MAX);
        zone(&t, "0:0", "dram", 0, MAX);
        zone(&t, "1", "package-1", 0, MAX);
        zone(&t, "1:0", "dram", 0, MAX);
        let mut r = rapl(&t);
        let mut o = Optional::default();
        assert_eq!(r.read(&mut o), Reading::First);
        set(&t, "0", 40_000_000);
        set(&t, "0:0", 5_000_000);
        set(&t, "1", 30_000_000);
        set(&t, "1:0", 4_000_000);
        assert_eq!(
            r.read(&mut o),
            Reading::Delta(vec![
                ("package-0".into(), 40_000_000),
                ("dram-0".into(), 5_000_000),
                ("package-1".into(), 30_000_000),
                ("dram-1".into(), 4_000_000),
            ])
        );
    }

    #[test]
    fn psys_is_used_instead_of_the_sum() {
        let t = Tree::new();
        zone(&t, "0", "package-0", 100, MAX);
        zone(&t, "0:0", "dram", 100, MAX);
        zone(&t, "1", "psys", 1_000, MAX);
        let mut r = rapl(&t);
        let mut o = Optional::default();
        assert_eq!(r.read(&mut o), Reading::First);
        set(&t, "0", 5_100);
        set(&t, "0:0", 1_100);
        set(&t, "1", 12_000);
        assert_eq!(
            r.read(&mut o),
            Reading::Delta(vec![("psys".into(), 11_000)])
        );
    }

    #[test]
    fn duplicate_package_names_stay_apart() {
        let t = Tree::new();
        zone(&t, "0", "package-0", 0, MAX);
        zone(&t, "1", "package-0", 0, MAX);
        let mut r = rapl(&t);
        let mut o = Optional::default();
        assert_eq!(r.read(&mut o), Reading::First);
        set(&t, "1", 7);
        assert_eq!(
            r.read(&mut o),
            Reading::Delta(vec![("package-0".into(), 0), ("package-0#1".into(), 7)])
        );
    }

    #[test]
    fn backwards_without_range_restarts() {
        let t = Tree::new();
        zone(&t, "0", "package-0", 500, MAX);
        std::fs::remove_file(
            t.dir
                .path()
                .join("sys/class/powercap/intel-rapl:0/max_energy_range_uj"),
        )
        .expect("remove");
        let mut r = rapl(&t);
        let mut o = Optional::default();
        assert_eq!(r.read(&mut o), Reading::First);
        set(&t, "0", 100);
        assert_eq!(r.read(&mut o), Reading::First);
        set(&t, "0", 160);
        assert_eq!(
            r.read(&mut o),
            Reading::Delta(vec![("package-0".into(), 60)])
        );
    }

    #[test]
    fn no_powercap_is_unavailable() {
        let t = Tree::new();
        let mut r = rapl(&t);
        assert_eq!(r.read(&mut Optional::default()), Reading::Unavailable);
        assert!(!r.primed());
    }

    proptest! {
        /// Random increments, some wrapping: the deltas add up to the true
        /// energy exactly (integer µJ).
        #[test]
        fn deltas_add_up_across_wraps(
            max in 1_000u64..1_000_000_000_000,
            start_frac in 0.0f64..1.0,
            steps in proptest::collection::vec(0.0f64..1.0, 1..20),
        ) {
            let t = Tree::new();
            let mut counter = (start_frac * max as f64) as u64;
            zone(&t, "0", "package-0", counter, max);
            let mut r = rapl(&t);
            let mut o = Optional::default();
            prop_assert_eq!(r.read(&mut o), Reading::First);
            let (mut truth, mut measured) = (0u64, 0u64);
            for step in steps {
                // Less than one full range per interval, so one wrap at most.
                let inc = (step * (max - 1) as f64) as u64;
                truth += inc;
                counter += inc;
                if counter > max {
                    counter -= max;
                }
                set(&t, "0", counter);
                match r.read(&mut o) {
                    Reading::Delta(d) => measured += d.iter().map(|(_, uj)| uj).sum::<u64>(),
                    other => prop_assert!(false, "unexpected {:?}", other),
                }
            }
            prop_assert_eq!(measured, truth);
        }
    }
}
