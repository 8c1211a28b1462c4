//! The physical drives' byte counters: `IOCTL_DISK_PERFORMANCE` on each
//! `\\.\PhysicalDriveN`, opened with no access right (the call needs none,
//! nor elevation).

use super::{last_error, wide};
use std::ffi::OsStr;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use windows_sys::Win32::Foundation::{
    ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::DeviceIoControl;
use windows_sys::Win32::System::Ioctl::{DISK_PERFORMANCE, IOCTL_DISK_PERFORMANCE};

/// The drive numbers looked at: `PhysicalDrive0` to `31` (a removed
/// disk leaves a gap in the numbers, so the first missing one is no end).
const MAX_DRIVES: u32 = 32;

/// One physical drive's bytes read and written since its counters started
/// (at boot, or when the disk appeared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DriveBytes {
    pub drive: u32,
    pub read: u64,
    pub written: u64,
}

/// Every physical drive that answers. An error only if a drive exists and
/// none answers (the first refusal; Wine has no such counters).
pub(crate) fn drive_bytes() -> io::Result<Vec<DriveBytes>> {
    let mut out = Vec::new();
    let mut refused = None;
    for drive in 0..MAX_DRIVES {
        match performance(drive) {
            Ok(Some(p)) => out.push(DriveBytes {
                drive,
                read: u64::try_from(p.BytesRead).unwrap_or(0),
                written: u64::try_from(p.BytesWritten).unwrap_or(0),
            }),
            Ok(None) => {}
            Err(e) => {
                refused.get_or_insert(e);
            }
        }
    }
    match refused {
        Some(e) if out.is_empty() => Err(e),
        _ => Ok(out),
    }
}

/// `PhysicalDrive<n>`'s counters; None if there is no such drive.
fn performance(n: u32) -> io::Result<Option<DISK_PERFORMANCE>> {
    let name = wide(OsStr::new(&format!(r"\\.\PhysicalDrive{n}")));
    // SAFETY: `name` is NUL-terminated and outlives the call; no security
    // attributes, no template.
    let h = unsafe {
        CreateFileW(
            name.as_ptr(),
            0,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            std::ptr::null(),
            OPEN_EXISTING,
            0,
            std::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        let e = last_error();
        let missing = [ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND]
            .iter()
            .any(|&c| e.raw_os_error() == i32::try_from(c).ok());
        return if missing { Ok(None) } else { Err(e) };
    }
    // SAFETY: a valid handle just returned by CreateFileW, owned by no one
    // else.
    let h = unsafe { OwnedHandle::from_raw_handle(h) };
    let mut p = DISK_PERFORMANCE::default();
    let mut got = 0u32;
    // SAFETY: an open handle; no input; the output buffer is `p` with its
    // size; synchronous (no OVERLAPPED).
    let ok = unsafe {
        DeviceIoControl(
            h.as_raw_handle(),
            IOCTL_DISK_PERFORMANCE,
            std::ptr::null(),
            0,
            (&mut p as *mut DISK_PERFORMANCE).cast(),
            std::mem::size_of::<DISK_PERFORMANCE>() as u32,
            &mut got,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(last_error());
    }
    Ok(Some(p))
}
