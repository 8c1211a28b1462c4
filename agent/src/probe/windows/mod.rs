//! The probes on Windows, with the same outputs as on Linux: usage from
//! `GetSystemTimes`, `GlobalMemoryStatusEx`, `GetIfTable2`,
//! `IOCTL_DISK_PERFORMANCE` on the physical drives and the WTS sessions;
//! the inventory from SMBIOS (`GetSystemFirmwareTable`), the registry and
//! the CPU topology; the agent's own footprint from its process counters.
//! The calls are in `sys::win`; what is computed from them is in `parse`,
//! tested over recorded values on any system.
//!
//! The batteries (`battery`): capacities from `IOCTL_BATTERY_QUERY_INFORMATION`,
//! the discharge rate from `CallNtPowerInformation`.
//!
//! Not measured yet on Windows (left at 0 or empty, said in
//! ARCHITECTURE.md): load averages (Windows has none) and the disk list.

pub(crate) mod battery;
pub(crate) mod parse;

#[cfg(windows)]
mod probes;
#[cfg(windows)]
pub(crate) use probes::discharge_w;
#[cfg(windows)]
pub use probes::{FootprintProbe, InventoryProbe, UsageProbe};
