//! What the Windows probes compute from what Windows returns, as pure
//! functions over recorded values: run and tested on any system (Wine
//! cannot stand in for SMBIOS, WTS sessions or a real machine's counters).

use super::super::hardware::Dmi;
use super::super::sessions::Sessions;

/// Busy CPU, 0..100 % of all processors, between two `GetSystemTimes`
/// readings of (idle, kernel with idle, user) in 100 ns.
pub(crate) fn cpu_percent(prev: (u64, u64, u64), cur: (u64, u64, u64)) -> f32 {
    let idle = cur.0.saturating_sub(prev.0);
    let total = cur
        .1
        .saturating_sub(prev.1)
        .saturating_add(cur.2.saturating_sub(prev.2));
    if total == 0 {
        return 0.0;
    }
    let busy = total.saturating_sub(idle);
    (busy as f64 * 100.0 / total as f64).clamp(0.0, 100.0) as f32
}

/// One session as WTS tells it (see `sys::win::Session`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WtsSession {
    pub user: String,
    pub active: bool,
    /// FILETIMEs; 0 when Windows does not say.
    pub last_input: i64,
    pub now: i64,
}

/// The sessions with a person in them (a user name: session 0 and the
/// services' have none), and the least idle time Windows reports. The
/// console's last input is often 0 for a service to read: then the idle
/// time comes from the session helper, not from here.
pub(crate) fn sessions(list: &[WtsSession]) -> Sessions {
    let people: Vec<&WtsSession> = list.iter().filter(|s| !s.user.is_empty()).collect();
    let idle_s = people
        .iter()
        .filter(|s| s.active && s.last_input > 0 && s.now >= s.last_input)
        .map(|s| u32::try_from((s.now - s.last_input) / 10_000_000).unwrap_or(u32::MAX))
        .min();
    Sessions {
        count: u32::try_from(people.len()).unwrap_or(u32::MAX),
        idle_s,
    }
}

/// The BIOS, system and chassis structures of the raw SMBIOS tables that
/// `GetSystemFirmwareTable('RSMB')` returns (an 8-byte header, then the
/// structures: type, length, handle, the formatted part, then its strings,
/// each NUL-terminated, ending with an empty one).
pub(crate) fn smbios(raw: &[u8]) -> Dmi {
    let mut dmi = Dmi::default();
    let len = raw
        .get(4..8)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let Some(mut t) = raw.get(8..8usize.saturating_add(len).min(raw.len())) else {
        return dmi;
    };
    while t.len() >= 4 {
        let (kind, flen) = (t[0], usize::from(t[1]));
        if flen < 4 || flen > t.len() {
            break;
        }
        let formatted = &t[..flen];
        // The strings end at the first double NUL after the formatted part.
        let rest = &t[flen..];
        let end = rest
            .windows(2)
            .position(|w| w == [0, 0])
            .map_or(rest.len(), |p| p + 2);
        let strings: Vec<&[u8]> = rest[..end]
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .collect();
        let s = |at: usize| -> String {
            let i = usize::from(*formatted.get(at).unwrap_or(&0));
            i.checked_sub(1)
                .and_then(|i| strings.get(i))
                .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                .unwrap_or_default()
        };
        match kind {
            0 => dmi.bios_date = s(8),
            1 => (dmi.vendor, dmi.model) = (s(4), s(5)),
            3 => dmi.chassis_type = formatted.get(5).map(|c| u32::from(c & 0x7f)),
            127 => break,
            _ => {}
        }
        t = &t[(flen + end).min(t.len())..];
    }
    dmi
}

/// The OS name and version from the registry's `ProductName`,
/// `DisplayVersion` (e.g. 23H2), `CurrentBuildNumber` and `UBR`. Windows 11
/// still says "Windows 10" in ProductName: a build from 22000 on is 11.
pub(crate) fn os_name_version(
    product: Option<&str>,
    display: Option<&str>,
    build: Option<&str>,
    ubr: Option<u32>,
) -> (String, String) {
    let build_n: u32 = build.and_then(|b| b.parse().ok()).unwrap_or(0);
    let mut name = product.unwrap_or("Windows").to_owned();
    if build_n >= 22_000 && name.starts_with("Windows 10") {
        name = name.replacen("Windows 10", "Windows 11", 1);
    }
    let mut version = display.unwrap_or_default().to_owned();
    if let Some(b) = build {
        let full = match ubr {
            Some(u) => format!("{b}.{u}"),
            None => b.to_owned(),
        };
        version = if version.is_empty() {
            full
        } else {
            format!("{version} ({full})")
        };
    }
    (name, version)
}

/// One physical drive's byte counters (see `sys::win::DriveBytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DriveBytes {
    pub drive: u32,
    pub read: u64,
    pub written: u64,
}

/// Bytes read and written between two readings of the physical drives,
/// as on Linux: summed over the drives in both readings; a drive that is
/// new (plugged in) or whose counter went back (reset) adds 0.
pub(crate) fn disk_bytes(prev: &[DriveBytes], cur: &[DriveBytes]) -> (u64, u64) {
    cur.iter()
        .filter_map(|c| {
            let p = prev.iter().find(|p| p.drive == c.drive)?;
            Some((
                c.read.saturating_sub(p.read),
                c.written.saturating_sub(p.written),
            ))
        })
        .fold((0, 0), |(r, w), (dr, dw)| {
            (r.saturating_add(dr), w.saturating_add(dw))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_from_system_times() {
        // 1 s of 4 CPUs: 4e7 units, 3e7 idle -> 25 % busy.
        let p = cpu_percent((0, 0, 0), (30_000_000, 35_000_000, 5_000_000));
        assert!((p - 25.0).abs() < 0.01, "{p}");
        assert_eq!(cpu_percent((5, 5, 5), (5, 5, 5)), 0.0);
        // A counter going back (never seen, but) is no panic.
        assert_eq!(cpu_percent((9, 9, 9), (1, 1, 1)), 0.0);
    }

    #[test]
    fn sessions_count_people_and_take_the_least_idle() {
        let s = |user: &str, active, li, now| WtsSession {
            user: user.into(),
            active,
            last_input: li,
            now,
        };
        let list = [
            s("", false, 0, 0),
            s(
                "marie",
                true,
                1_000_000_000,
                1_000_000_000 + 120 * 10_000_000,
            ),
            s("paul", false, 0, 0),
        ];
        let got = sessions(&list);
        assert_eq!(got.count, 2);
        assert_eq!(got.idle_s, Some(120));
        assert!(got.user_active());
        let none = sessions(&[s("", false, 0, 0)]);
        assert_eq!((none.count, none.idle_s), (0, None));
        assert!(!none.user_active());
        // A session whose input time Windows leaves at 0: idle unknown.
        assert_eq!(sessions(&[s("marie", true, 0, 5)]).idle_s, None);
    }

    /// The SMBIOS of a Dell laptop as `GetSystemFirmwareTable` returns it
    /// (recorded structures, trimmed to types 0, 1, 3 and the end).
    fn dell_laptop() -> Vec<u8> {
        let mut t = Vec::new();
        // Type 0 (BIOS): vendor=1, version=2, date=3 at offset 8.
        t.extend([0u8, 0x18, 0, 0, 1, 2, 0, 0xf0, 3, 0x3f]);
        t.extend([0u8; 0x18 - 10]);
        t.extend(b"Dell Inc.\x001.21.0\x0003/14/2023\x00\x00");
        // Type 1 (system): manufacturer=1, product=2.
        t.extend([1u8, 0x1b, 1, 0, 1, 2, 0, 0]);
        t.extend([0u8; 0x1b - 8]);
        t.extend(b"Dell Inc.\x00Latitude 5420\x00\x00");
        // Type 3 (chassis): type 10 (notebook), lock bit set.
        t.extend([3u8, 0x0d, 2, 0, 1, 0x80 | 10]);
        t.extend([0u8; 0x0d - 6]);
        t.extend(b"Dell Inc.\x00\x00");
        // Type 127 (end).
        t.extend([127u8, 4, 3, 0, 0, 0]);
        let mut raw = vec![0u8, 3, 4, 0];
        raw.extend((t.len() as u32).to_le_bytes());
        raw.extend(t);
        raw
    }

    #[test]
    fn smbios_gives_vendor_model_bios_date_and_chassis() {
        let d = smbios(&dell_laptop());
        assert_eq!(d.vendor, "Dell Inc.");
        assert_eq!(d.model, "Latitude 5420");
        assert_eq!(d.bios_date, "03/14/2023");
        assert_eq!(d.chassis_type, Some(10));
    }

    #[test]
    fn smbios_that_is_cut_anywhere_never_panics() {
        let raw = dell_laptop();
        for n in 0..raw.len() {
            let _ = smbios(&raw[..n]);
        }
        let mut bad = raw.clone();
        bad[9] = 0xff; // a structure longer than the table
        let _ = smbios(&bad);
    }

    #[test]
    fn windows_11_is_named_from_its_build() {
        let (n, v) = os_name_version(
            Some("Windows 10 Pro"),
            Some("23H2"),
            Some("22631"),
            Some(2861),
        );
        assert_eq!(
            (n.as_str(), v.as_str()),
            ("Windows 11 Pro", "23H2 (22631.2861)")
        );
        let (n, v) = os_name_version(
            Some("Windows Server 2022 Standard"),
            None,
            Some("20348"),
            None,
        );
        assert_eq!(
            (n.as_str(), v.as_str()),
            ("Windows Server 2022 Standard", "20348")
        );
        assert_eq!(os_name_version(None, None, None, None).0, "Windows");
    }

    #[test]
    fn disk_bytes_summed_over_the_drives_in_both_readings() {
        let d = |drive, read, written| DriveBytes {
            drive,
            read,
            written,
        };
        let prev = [d(0, 1000, 5000), d(1, 10, 20), d(3, 7, 7)];
        // Drive 0 read 500 and wrote 100; drive 1 reset (counts 0); drive
        // 3 went away; drive 4 is new (no baseline, counts 0).
        let cur = [d(0, 1500, 5100), d(1, 2, 30), d(4, 9_999, 9_999)];
        assert_eq!(disk_bytes(&prev, &cur), (500, 110));
        // No drive answering (Wine), before or now: nothing, no failure.
        assert_eq!(disk_bytes(&[], &cur), (0, 0));
        assert_eq!(disk_bytes(&prev, &[]), (0, 0));
        assert_eq!(disk_bytes(&prev, &prev), (0, 0));
        // Huge counters add up without overflowing.
        let big = [d(0, u64::MAX, u64::MAX), d(1, u64::MAX, u64::MAX)];
        let zero = [d(0, 0, 0), d(1, 0, 0)];
        assert_eq!(disk_bytes(&zero, &big), (u64::MAX, u64::MAX));
    }
}
