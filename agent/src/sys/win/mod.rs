//! The agent's Windows calls, through Microsoft's `windows-sys` bindings:
//! the one place of the agent with `unsafe`. Each call states what it
//! relies on; everything it returns is plain Rust values (no handle or
//! pointer leaves these modules but as `OwnedHandle`).
#![allow(unsafe_code)]

mod disk;
mod fs;
mod power;
mod system;
mod token;

pub(crate) use disk::drive_bytes;
pub(crate) use fs::{ident, list_dir, open_dir, rename_durable, stat_handle};
pub(crate) use power::{battery_informations, system_battery_state};
pub(crate) use system::*;
pub(crate) use token::{elevated, user_sid};

use std::ffi::OsStr;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;

/// `s` as a NUL-terminated UTF-16 string.
pub(crate) fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain([0]).collect()
}

/// A path as Windows' wide calls take it: absolute drive paths get the
/// `\\?\` prefix (no 260-character limit, no name rewriting), as `std`'s
/// own file calls do.
pub(crate) fn wide_path(p: &Path) -> Vec<u16> {
    use std::path::{Component, Prefix};
    let verbatim = matches!(
        p.components().next(),
        Some(Component::Prefix(pre)) if matches!(pre.kind(), Prefix::Disk(_))
    ) && p.is_absolute();
    if verbatim {
        // A verbatim path is taken as it is: `/` must be `\` there.
        let mut w: Vec<u16> = r"\\?\".encode_utf16().collect();
        let slash = u16::from(b'/');
        let back = u16::from(b'\\');
        w.extend(
            p.as_os_str()
                .encode_wide()
                .map(|c| if c == slash { back } else { c }),
        );
        w.push(0);
        w
    } else {
        wide(p.as_os_str())
    }
}

/// The calling thread's last error as an `io::Error`.
pub(crate) fn last_error() -> io::Error {
    io::Error::last_os_error()
}

/// A FILETIME as one 64-bit count of 100 ns.
pub(crate) fn ft(t: windows_sys::Win32::Foundation::FILETIME) -> u64 {
    (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime)
}

/// Reads a NUL-terminated UTF-16 string at `p` (None if null).
///
/// # Safety
/// `p` is null or points to a NUL-terminated UTF-16 string that stays
/// valid for the call.
pub(crate) unsafe fn from_wide_ptr(p: *const u16) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let mut n = 0;
    // SAFETY: the caller guarantees a terminating NUL within the string.
    while unsafe { *p.add(n) } != 0 {
        n += 1;
    }
    // SAFETY: the n units before the NUL are the string's.
    let s = unsafe { std::slice::from_raw_parts(p, n) };
    Some(String::from_utf16_lossy(s))
}
