//! The batteries: each battery device (SetupDi over the battery interface
//! class) asked for its `BATTERY_INFORMATION`, and the system's battery
//! state (`CallNtPowerInformation`). Returned as the structs' bytes, which
//! `probe::windows::battery` decodes.

use super::{from_wide_ptr, last_error, wide};
use std::ffi::OsStr;
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use windows_sys::Win32::Devices::DeviceAndDriverInstallation::{
    DIGCF_DEVICEINTERFACE, DIGCF_PRESENT, GUID_DEVCLASS_BATTERY, HDEVINFO,
    SP_DEVICE_INTERFACE_DATA, SP_DEVICE_INTERFACE_DETAIL_DATA_W, SetupDiDestroyDeviceInfoList,
    SetupDiEnumDeviceInterfaces, SetupDiGetClassDevsW, SetupDiGetDeviceInterfaceDetailW,
};
use windows_sys::Win32::Foundation::{
    ERROR_NO_MORE_ITEMS, GENERIC_READ, GENERIC_WRITE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Storage::FileSystem::{
    CreateFileW, FILE_ATTRIBUTE_NORMAL, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
};
use windows_sys::Win32::System::IO::DeviceIoControl;
use windows_sys::Win32::System::Power::{
    BATTERY_QUERY_INFORMATION, BatteryInformation, CallNtPowerInformation,
    IOCTL_BATTERY_QUERY_INFORMATION, IOCTL_BATTERY_QUERY_TAG, SystemBatteryState,
};

/// Battery devices looked at, at most (laptops have one or two).
const MAX_BATTERIES: u32 = 8;

/// The bytes of each present battery's `BATTERY_INFORMATION`, in the
/// device list's order. None at all on a desktop (or under Wine).
pub(crate) fn battery_informations() -> io::Result<Vec<Vec<u8>>> {
    // SAFETY: a GUID that outlives the call; no enumerator, no window.
    let set: HDEVINFO = unsafe {
        SetupDiGetClassDevsW(
            &GUID_DEVCLASS_BATTERY,
            std::ptr::null(),
            std::ptr::null_mut(),
            DIGCF_PRESENT | DIGCF_DEVICEINTERFACE,
        )
    };
    if set == -1 {
        return Err(last_error());
    }
    let mut out = Vec::new();
    let mut result = Ok(());
    for i in 0..MAX_BATTERIES {
        match interface_path(set, i) {
            Ok(Some(path)) => match information(&path) {
                Ok(Some(raw)) => out.push(raw),
                Ok(None) => {}
                Err(e) => result = Err(e),
            },
            Ok(None) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    // SAFETY: the set made above, not used after this.
    unsafe { SetupDiDestroyDeviceInfoList(set) };
    // One battery that answers is enough; an error only if none did.
    match result {
        Err(e) if out.is_empty() => Err(e),
        _ => Ok(out),
    }
}

/// The device path of the set's `i`th battery interface; None past the
/// last.
fn interface_path(set: HDEVINFO, i: u32) -> io::Result<Option<String>> {
    // SAFETY: plain data; cbSize set as the call requires.
    let mut did: SP_DEVICE_INTERFACE_DATA = unsafe { std::mem::zeroed() };
    did.cbSize = std::mem::size_of::<SP_DEVICE_INTERFACE_DATA>() as u32;
    // SAFETY: a live set, the class GUID, a writable interface data.
    if unsafe {
        SetupDiEnumDeviceInterfaces(set, std::ptr::null(), &GUID_DEVCLASS_BATTERY, i, &mut did)
    } == 0
    {
        let e = last_error();
        return if e.raw_os_error() == i32::try_from(ERROR_NO_MORE_ITEMS).ok() {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let mut need = 0u32;
    // SAFETY: asks the size only (no buffer); fails with
    // ERROR_INSUFFICIENT_BUFFER and sets `need`.
    unsafe {
        SetupDiGetDeviceInterfaceDetailW(
            set,
            &did,
            std::ptr::null_mut(),
            0,
            &mut need,
            std::ptr::null_mut(),
        )
    };
    let header = std::mem::size_of::<SP_DEVICE_INTERFACE_DETAIL_DATA_W>();
    if (need as usize) < header {
        return Err(last_error());
    }
    // u64s: aligned for the struct; zeroed, so the path ends with a NUL.
    let mut buf = vec![0u64; (need as usize).div_ceil(8) + 1];
    let detail = buf.as_mut_ptr().cast::<SP_DEVICE_INTERFACE_DETAIL_DATA_W>();
    // SAFETY: `buf` holds at least `need` bytes, aligned for the struct.
    unsafe { (*detail).cbSize = header as u32 };
    // SAFETY: `detail` points to `need` writable bytes with cbSize set.
    let ok = unsafe {
        SetupDiGetDeviceInterfaceDetailW(set, &did, detail, need, &mut need, std::ptr::null_mut())
    };
    if ok == 0 {
        return Err(last_error());
    }
    // SAFETY: DevicePath is a NUL-terminated string inside `buf`, which
    // lives to the end of this function.
    let path = unsafe { from_wide_ptr(std::ptr::addr_of!((*detail).DevicePath).cast::<u16>()) };
    Ok(path)
}

/// The battery at `path`'s `BATTERY_INFORMATION` bytes; None if its slot
/// holds no battery (a tag of 0).
fn information(path: &str) -> io::Result<Option<Vec<u8>>> {
    let name = wide(OsStr::new(path));
    // SAFETY: `name` is NUL-terminated and outlives the call; no security
    // attributes, no template.
    let h = unsafe {
        CreateFileW(
            name.as_ptr(),
            GENERIC_READ | GENERIC_WRITE,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_ATTRIBUTE_NORMAL,
            std::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        return Err(last_error());
    }
    // SAFETY: a valid handle just returned by CreateFileW, owned here.
    let h = unsafe { OwnedHandle::from_raw_handle(h) };
    let wait = 0u32;
    let mut tag = 0u32;
    ioctl(&h, IOCTL_BATTERY_QUERY_TAG, &wait, &mut tag)?;
    if tag == 0 {
        return Ok(None);
    }
    let query = BATTERY_QUERY_INFORMATION {
        BatteryTag: tag,
        InformationLevel: BatteryInformation,
        AtRate: 0,
    };
    let mut info = [0u32; 9];
    ioctl(&h, IOCTL_BATTERY_QUERY_INFORMATION, &query, &mut info)?;
    Ok(Some(info.iter().flat_map(|v| v.to_le_bytes()).collect()))
}

/// A synchronous `DeviceIoControl` from `input` into `output`.
fn ioctl<I, O>(h: &OwnedHandle, code: u32, input: &I, output: &mut O) -> io::Result<()> {
    let mut got = 0u32;
    // SAFETY: an open handle; `input` and `output` are live values of their
    // own sizes; no OVERLAPPED (synchronous).
    let ok = unsafe {
        DeviceIoControl(
            h.as_raw_handle(),
            code,
            (input as *const I).cast(),
            std::mem::size_of::<I>() as u32,
            (output as *mut O).cast(),
            std::mem::size_of::<O>() as u32,
            &mut got,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(last_error());
    }
    Ok(())
}

/// The bytes of the system's `SYSTEM_BATTERY_STATE` (all batteries).
pub(crate) fn system_battery_state() -> io::Result<Vec<u8>> {
    let mut state = [0u32; 8];
    // SAFETY: no input; the output is `state`, 32 writable bytes, the
    // struct's size.
    let status = unsafe {
        CallNtPowerInformation(
            SystemBatteryState,
            std::ptr::null(),
            0,
            state.as_mut_ptr().cast(),
            std::mem::size_of_val(&state) as u32,
        )
    };
    if status != 0 {
        return Err(io::Error::other(format!(
            "CallNtPowerInformation(SystemBatteryState): NTSTATUS {status:#x}"
        )));
    }
    Ok(state.iter().flat_map(|v| v.to_le_bytes()).collect())
}
