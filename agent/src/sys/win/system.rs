//! The machine and the agent's own process as Windows counts them: CPU
//! times, memory and commit, uptime, network bytes, SMBIOS, the registry's
//! OS description, CPU topology, sessions.

use super::{ft, last_error, wide};
use std::ffi::OsStr;
use std::io;
use windows_sys::Win32::Foundation::FILETIME;
use windows_sys::Win32::NetworkManagement::IpHelper::{
    FreeMibTable, GetIfTable2, IF_TYPE_SOFTWARE_LOOPBACK, MIB_IF_TABLE2,
};
use windows_sys::Win32::System::ProcessStatus::{K32GetProcessMemoryInfo, PROCESS_MEMORY_COUNTERS};
use windows_sys::Win32::System::Registry::{
    HKEY_LOCAL_MACHINE, RRF_RT_REG_DWORD, RRF_RT_REG_SZ, RegGetValueW,
};
use windows_sys::Win32::System::RemoteDesktop::{
    WTS_CURRENT_SERVER_HANDLE, WTS_SESSION_INFOW, WTSActive, WTSEnumerateSessionsW, WTSFreeMemory,
    WTSINFOW, WTSQuerySessionInformationW, WTSSessionInfo,
};
use windows_sys::Win32::System::SystemInformation::{
    ComputerNameDnsHostname, GetComputerNameExW, GetLogicalProcessorInformation,
    GetSystemFirmwareTable, GetTickCount64, GlobalMemoryStatusEx, MEMORYSTATUSEX, RSMB,
    RelationProcessorCore, SYSTEM_LOGICAL_PROCESSOR_INFORMATION,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetProcessTimes, GetSystemTimes, IDLE_PRIORITY_CLASS,
    PROCESS_MODE_BACKGROUND_BEGIN, SetPriorityClass,
};

const ZERO_FT: FILETIME = FILETIME {
    dwLowDateTime: 0,
    dwHighDateTime: 0,
};

/// The CPU times of all processors since boot, in 100 ns: (idle, kernel
/// with idle, user).
pub(crate) fn cpu_times() -> io::Result<(u64, u64, u64)> {
    let (mut i, mut k, mut u) = (ZERO_FT, ZERO_FT, ZERO_FT);
    // SAFETY: three writable FILETIMEs.
    if unsafe { GetSystemTimes(&mut i, &mut k, &mut u) } == 0 {
        return Err(last_error());
    }
    Ok((ft(i), ft(k), ft(u)))
}

/// Physical memory and commit charge, in bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Memory {
    pub total: u64,
    pub available: u64,
    /// The commit limit (RAM and page files) and what of it is free.
    pub commit_limit: u64,
    pub commit_free: u64,
}

pub(crate) fn memory() -> io::Result<Memory> {
    // SAFETY: plain data; dwLength set as the call requires.
    let mut m: MEMORYSTATUSEX = unsafe { std::mem::zeroed() };
    m.dwLength = std::mem::size_of::<MEMORYSTATUSEX>() as u32;
    // SAFETY: `m` is a MEMORYSTATUSEX with its length set.
    if unsafe { GlobalMemoryStatusEx(&mut m) } == 0 {
        return Err(last_error());
    }
    Ok(Memory {
        total: m.ullTotalPhys,
        available: m.ullAvailPhys,
        commit_limit: m.ullTotalPageFile,
        commit_free: m.ullAvailPageFile,
    })
}

/// Seconds since boot.
pub(crate) fn uptime_s() -> u64 {
    // SAFETY: no arguments.
    (unsafe { GetTickCount64() }) / 1000
}

/// Bytes received and sent since boot by the hardware interfaces (not the
/// loopback, not the filter drivers Windows lists beside each adapter,
/// which would count the same bytes again).
pub(crate) fn net_bytes() -> io::Result<(u64, u64)> {
    let mut t: *mut MIB_IF_TABLE2 = std::ptr::null_mut();
    // SAFETY: `t` receives a table allocated by the call, freed below.
    let rc = unsafe { GetIfTable2(&mut t) };
    if rc != 0 || t.is_null() {
        return Err(io::Error::from_raw_os_error(rc as i32));
    }
    // SAFETY: the table holds NumEntries rows, contiguous after NumEntries.
    let rows = unsafe {
        std::slice::from_raw_parts(
            (&raw const (*t).Table)
                .cast::<windows_sys::Win32::NetworkManagement::IpHelper::MIB_IF_ROW2>(),
            (*t).NumEntries as usize,
        )
    };
    let (mut rx, mut tx) = (0u64, 0u64);
    for r in rows {
        let hardware = r.InterfaceAndOperStatusFlags._bitfield & 1 != 0;
        if hardware && r.Type != IF_TYPE_SOFTWARE_LOOPBACK {
            rx = rx.saturating_add(r.InOctets);
            tx = tx.saturating_add(r.OutOctets);
        }
    }
    // SAFETY: the table GetIfTable2 returned, freed once.
    unsafe { FreeMibTable(t.cast()) };
    Ok((rx, tx))
}

/// What this process has used: CPU (kernel + user, 100 ns), working set
/// and its peak (bytes).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProcessUse {
    pub cpu_100ns: u64,
    pub rss: u64,
    pub peak_rss: u64,
}

pub(crate) fn process_use() -> io::Result<ProcessUse> {
    let (mut c, mut e, mut k, mut u) = (ZERO_FT, ZERO_FT, ZERO_FT, ZERO_FT);
    // SAFETY: the pseudo-handle of this process; writable FILETIMEs.
    if unsafe { GetProcessTimes(GetCurrentProcess(), &mut c, &mut e, &mut k, &mut u) } == 0 {
        return Err(last_error());
    }
    // SAFETY: plain data, cb set.
    let mut m: PROCESS_MEMORY_COUNTERS = unsafe { std::mem::zeroed() };
    m.cb = std::mem::size_of::<PROCESS_MEMORY_COUNTERS>() as u32;
    // SAFETY: `m` is a PROCESS_MEMORY_COUNTERS of `cb` bytes.
    if unsafe { K32GetProcessMemoryInfo(GetCurrentProcess(), &mut m, m.cb) } == 0 {
        return Err(last_error());
    }
    Ok(ProcessUse {
        cpu_100ns: ft(k).saturating_add(ft(u)),
        rss: m.WorkingSetSize as u64,
        peak_rss: m.PeakWorkingSetSize as u64,
    })
}

/// The machine's DNS host name.
pub(crate) fn hostname() -> Option<String> {
    let mut buf = [0u16; 256];
    let mut n = buf.len() as u32;
    // SAFETY: `buf` holds `n` units.
    if unsafe { GetComputerNameExW(ComputerNameDnsHostname, buf.as_mut_ptr(), &mut n) } == 0 {
        return None;
    }
    Some(String::from_utf16_lossy(buf.get(..n as usize)?))
}

/// A string value under `HKEY_LOCAL_MACHINE\<key>`.
pub(crate) fn registry_string(key: &str, value: &str) -> Option<String> {
    let (k, v) = (wide(OsStr::new(key)), wide(OsStr::new(value)));
    let mut buf = [0u16; 512];
    let mut len = (buf.len() * 2) as u32;
    // SAFETY: NUL-terminated key and value names; `buf` holds `len` bytes.
    let rc = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            k.as_ptr(),
            v.as_ptr(),
            RRF_RT_REG_SZ,
            std::ptr::null_mut(),
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    let units = (len as usize / 2).min(buf.len());
    let s = &buf[..units];
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    Some(String::from_utf16_lossy(&s[..end]).trim().to_owned()).filter(|s| !s.is_empty())
}

/// A DWORD value under `HKEY_LOCAL_MACHINE\<key>`.
pub(crate) fn registry_u32(key: &str, value: &str) -> Option<u32> {
    let (k, v) = (wide(OsStr::new(key)), wide(OsStr::new(value)));
    let mut d = 0u32;
    let mut len = 4u32;
    // SAFETY: NUL-terminated names; `d` holds 4 bytes.
    let rc = unsafe {
        RegGetValueW(
            HKEY_LOCAL_MACHINE,
            k.as_ptr(),
            v.as_ptr(),
            RRF_RT_REG_DWORD,
            std::ptr::null_mut(),
            (&raw mut d).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(d)
}

/// The raw SMBIOS tables (`RSMB`: an 8-byte header, then the structures).
pub(crate) fn smbios() -> Option<Vec<u8>> {
    // SAFETY: a null buffer of size 0 asks for the size.
    let n = unsafe { GetSystemFirmwareTable(RSMB, 0, std::ptr::null_mut(), 0) };
    if n == 0 || n > 1 << 20 {
        return None;
    }
    let mut buf = vec![0u8; n as usize];
    // SAFETY: `buf` holds `n` bytes.
    let got = unsafe { GetSystemFirmwareTable(RSMB, 0, buf.as_mut_ptr(), n) };
    (got != 0 && got <= n).then(|| {
        buf.truncate(got as usize);
        buf
    })
}

/// Physical cores and logical processors.
pub(crate) fn cpu_topology() -> Option<(u32, u32)> {
    let mut len = 0u32;
    // SAFETY: a null buffer asks for the length.
    unsafe { GetLogicalProcessorInformation(std::ptr::null_mut(), &mut len) };
    let each = std::mem::size_of::<SYSTEM_LOGICAL_PROCESSOR_INFORMATION>();
    let n = len as usize / each;
    if n == 0 || n > 4096 {
        return None;
    }
    // SAFETY: plain data.
    let mut v: Vec<SYSTEM_LOGICAL_PROCESSOR_INFORMATION> =
        (0..n).map(|_| unsafe { std::mem::zeroed() }).collect();
    // SAFETY: `v` holds `len` bytes of entries.
    if unsafe { GetLogicalProcessorInformation(v.as_mut_ptr(), &mut len) } == 0 {
        return None;
    }
    v.truncate(len as usize / each);
    let cores: Vec<_> = v
        .iter()
        .filter(|i| i.Relationship == RelationProcessorCore)
        .collect();
    let threads = cores.iter().map(|i| i.ProcessorMask.count_ones()).sum();
    Some((cores.len() as u32, threads))
}

/// One Windows session, as WTS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    pub id: u32,
    pub active: bool,
    pub user: String,
    /// Last input and now, FILETIMEs (0 when Windows does not say).
    pub last_input: i64,
    pub now: i64,
}

/// The sessions of this machine with a user (not services' session 0).
pub(crate) fn sessions() -> io::Result<Vec<Session>> {
    let mut list: *mut WTS_SESSION_INFOW = std::ptr::null_mut();
    let mut count = 0u32;
    // SAFETY: `list` receives an array of `count` entries, freed below.
    if unsafe { WTSEnumerateSessionsW(WTS_CURRENT_SERVER_HANDLE, 0, 1, &mut list, &mut count) } == 0
    {
        return Err(last_error());
    }
    if list.is_null() {
        // Wine's stub says yes and returns nothing.
        return Ok(Vec::new());
    }
    // SAFETY: `count` entries at `list`, non-null.
    let ids: Vec<(u32, bool)> = unsafe { std::slice::from_raw_parts(list, count as usize) }
        .iter()
        .map(|s| (s.SessionId, s.State == WTSActive))
        .collect();
    // SAFETY: the array WTSEnumerateSessionsW returned, freed once.
    unsafe { WTSFreeMemory(list.cast()) };
    let mut out = Vec::new();
    for (id, active) in ids {
        let mut p: *mut u16 = std::ptr::null_mut();
        let mut n = 0u32;
        // SAFETY: `p` receives a WTSINFOW buffer of `n` bytes, freed below.
        if unsafe {
            WTSQuerySessionInformationW(
                WTS_CURRENT_SERVER_HANDLE,
                id,
                WTSSessionInfo,
                &mut p,
                &mut n,
            )
        } == 0
            || p.is_null()
        {
            continue;
        }
        if n as usize >= std::mem::size_of::<WTSINFOW>() {
            // SAFETY: the buffer holds a WTSINFOW (size checked).
            let i = unsafe { &*p.cast::<WTSINFOW>() };
            let end = i
                .UserName
                .iter()
                .position(|&c| c == 0)
                .unwrap_or(i.UserName.len());
            out.push(Session {
                id,
                active,
                user: String::from_utf16_lossy(&i.UserName[..end]),
                last_input: i.LastInputTime,
                now: i.CurrentTime,
            });
        }
        // SAFETY: the buffer WTSQuerySessionInformationW returned.
        unsafe { WTSFreeMemory(p.cast()) };
    }
    Ok(out)
}

/// The service's priority: the idle CPU class, then background mode (the
/// lowest I/O and memory priority), so the person's work always comes
/// first. The scan process it starts inherits the idle class. (Wine has
/// no background mode: the idle class alone is then set, and the error
/// said.)
pub(crate) fn background_priority() -> io::Result<()> {
    // SAFETY: the pseudo-handle of this process, always valid.
    if unsafe { SetPriorityClass(GetCurrentProcess(), IDLE_PRIORITY_CLASS) } == 0 {
        return Err(last_error());
    }
    // SAFETY: as above.
    if unsafe { SetPriorityClass(GetCurrentProcess(), PROCESS_MODE_BACKGROUND_BEGIN) } == 0 {
        let e = last_error();
        return Err(io::Error::new(
            e.kind(),
            format!("idle CPU class set; no background I/O mode: {e}"),
        ));
    }
    Ok(())
}
