//! The three probes over `sys::win`.

use super::{battery, parse};
use crate::probe::{Probe, ProbeError, Roots, hardware};
use crate::sys::win;
use sobre_proto::v1::{AgentFootprint, Battery, Inventory, UsageReport};
use std::path::PathBuf;
use std::time::Duration;

fn failed(what: &str, e: std::io::Error) -> ProbeError {
    ProbeError::Read {
        path: PathBuf::from(what),
        source: e,
    }
}

/// Samples [`UsageReport`]s; counters are deltas since the previous one.
#[derive(Debug)]
pub struct UsageProbe {
    prev: Option<Counters>,
    /// Whether the disk counters' absence was logged (once).
    said_no_disk: bool,
}

/// The counters a sample's deltas are taken from.
#[derive(Debug)]
struct Counters {
    cpu: (u64, u64, u64),
    net: (u64, u64),
    disks: Vec<parse::DriveBytes>,
}

impl UsageProbe {
    /// `roots` are Linux's (fixture trees); Windows has none.
    pub fn new(_roots: Roots) -> Self {
        Self {
            prev: None,
            said_no_disk: false,
        }
    }

    /// The physical drives' counters; none (disk bytes 0) where Windows
    /// keeps none or refuses them (Wine), said once at debug level.
    fn disks(&mut self) -> Vec<parse::DriveBytes> {
        match win::drive_bytes() {
            Ok(d) => d
                .into_iter()
                .map(|d| parse::DriveBytes {
                    drive: d.drive,
                    read: d.read,
                    written: d.written,
                })
                .collect(),
            Err(e) => {
                if !std::mem::replace(&mut self.said_no_disk, true) {
                    tracing::debug!(error = %e, "no disk counters (IOCTL_DISK_PERFORMANCE): disk bytes 0");
                }
                Vec::new()
            }
        }
    }
}

impl Probe for UsageProbe {
    type Output = UsageReport;

    fn sample(&mut self, interval: Duration) -> Result<UsageReport, ProbeError> {
        let now = Counters {
            cpu: win::cpu_times().map_err(|e| failed("GetSystemTimes", e))?,
            net: win::net_bytes().unwrap_or((0, 0)),
            disks: self.disks(),
        };
        let mut r = UsageReport {
            interval_ms: u32::try_from(interval.as_millis()).unwrap_or(u32::MAX),
            uptime_s: win::uptime_s(),
            ..UsageReport::default()
        };
        if let Some(prev) = &self.prev {
            r.cpu_percent = parse::cpu_percent(prev.cpu, now.cpu);
            r.net_rx_bytes = now.net.0.saturating_sub(prev.net.0);
            r.net_tx_bytes = now.net.1.saturating_sub(prev.net.1);
            (r.disk_read_bytes, r.disk_written_bytes) = parse::disk_bytes(&prev.disks, &now.disks);
        }
        self.prev = Some(now);
        let m = win::memory().map_err(|e| failed("GlobalMemoryStatusEx", e))?;
        r.mem_total_bytes = m.total;
        r.mem_available_bytes = m.available;
        // The commit beyond physical memory is what the page files hold.
        r.swap_total_bytes = m.commit_limit.saturating_sub(m.total);
        r.swap_used_bytes = m
            .commit_limit
            .saturating_sub(m.commit_free)
            .saturating_sub(m.total.saturating_sub(m.available))
            .min(r.swap_total_bytes);
        let list: Vec<parse::WtsSession> = win::sessions()
            .unwrap_or_default()
            .into_iter()
            .map(|s| parse::WtsSession {
                user: s.user,
                active: s.active,
                last_input: s.last_input,
                now: s.now,
            })
            .collect();
        let s = parse::sessions(&list);
        r.user_sessions = s.count;
        r.input_idle_s = s.idle_s;
        r.user_active = s.user_active();
        Ok(r)
    }
}

/// The system batteries' capacities: none on a desktop, under Wine, or
/// where Windows refuses (said at debug level).
fn batteries() -> Vec<Battery> {
    match win::battery_informations() {
        Ok(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, raw)| battery::battery_information(&format!("BAT{i}"), raw))
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "no battery information");
            Vec::new()
        }
    }
}

/// The batteries' discharge power, in W, while the machine runs on them
/// (`PowerProbe`'s measured source, as Linux's `power_now`).
pub(crate) fn discharge_w() -> Option<f64> {
    let raw = win::system_battery_state()
        .inspect_err(|e| tracing::debug!(error = %e, "no battery state"))
        .ok()?;
    battery::discharge_w(&raw)
}

/// Samples the machine's [`Inventory`]; what Windows does not tell stays
/// empty.
#[derive(Debug)]
pub struct InventoryProbe;

impl InventoryProbe {
    pub fn new(_roots: Roots) -> Self {
        Self
    }
}

const CURRENT_VERSION: &str = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion";
const CPU0: &str = r"HARDWARE\DESCRIPTION\System\CentralProcessor\0";

impl Probe for InventoryProbe {
    type Output = Inventory;

    fn sample(&mut self, _interval: Duration) -> Result<Inventory, ProbeError> {
        let reg = |v| win::registry_string(CURRENT_VERSION, v);
        let (os_name, os_version) = parse::os_name_version(
            reg("ProductName").as_deref(),
            reg("DisplayVersion").as_deref(),
            reg("CurrentBuildNumber").as_deref(),
            win::registry_u32(CURRENT_VERSION, "UBR"),
        );
        let dmi = win::smbios()
            .map(|raw| parse::smbios(&raw))
            .unwrap_or_default();
        let (cores, threads) = win::cpu_topology().unwrap_or((1, 1));
        let virtual_machine = hardware::is_vm_dmi(&dmi.vendor, &dmi.model);
        let chassis = if virtual_machine {
            "vm"
        } else {
            hardware::chassis_name(dmi.chassis_type)
        };
        Ok(Inventory {
            hostname: win::hostname().unwrap_or_default(),
            os_name,
            os_version,
            kernel: reg("CurrentBuildNumber").unwrap_or_default(),
            arch: std::env::consts::ARCH.to_owned(),
            cpu_model: win::registry_string(CPU0, "ProcessorNameString").unwrap_or_default(),
            cpu_cores: cores,
            cpu_threads: threads,
            mem_total_bytes: win::memory().map(|m| m.total).unwrap_or(0),
            chassis: chassis.to_owned(),
            vendor: dmi.vendor,
            model: dmi.model,
            bios_date: dmi.bios_date,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            virtual_machine,
            batteries: batteries(),
            ..Inventory::default()
        })
    }
}

/// Samples the agent's own [`AgentFootprint`] (CPU, working set and its
/// peak); the runtime fills the transport and spool counters.
#[derive(Debug)]
pub struct FootprintProbe;

impl FootprintProbe {
    pub fn new(_roots: Roots) -> Self {
        Self
    }
}

impl Probe for FootprintProbe {
    type Output = AgentFootprint;

    fn sample(&mut self, _interval: Duration) -> Result<AgentFootprint, ProbeError> {
        let u = win::process_use().map_err(|e| failed("GetProcessTimes", e))?;
        Ok(AgentFootprint {
            cpu_seconds: u.cpu_100ns as f64 / 1e7,
            peak_rss_bytes: u.peak_rss,
            rss_bytes: u.rss,
            ..AgentFootprint::default()
        })
    }
}
