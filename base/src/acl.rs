//! Windows: owner-only folders through their ACL, the counterpart of mode
//! 0700. A folder Sobre creates gets a protected DACL (nothing inherited
//! from `%ProgramData%`, which lets every user read) granting full control
//! to SYSTEM, the Administrators and the folder's owner only, inherited
//! by every file and folder made in it afterwards (keys, spool, index).
//! This module is the one place of `sobre-base` with `unsafe`.
#![allow(unsafe_code)]

use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;
use windows_sys::Win32::Foundation::LocalFree;
use windows_sys::Win32::Security::Authorization::{
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    DACL_SECURITY_INFORMATION, PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR,
    SetFileSecurityW,
};

/// Protected, inherited by files and folders: SYSTEM, Administrators,
/// Owner Rights.
pub const OWNER_ONLY_SDDL: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;FA;;;OW)";

/// Gives `dir` the owner-only ACL.
pub fn protect(dir: &Path) -> io::Result<()> {
    let sddl: Vec<u16> = OWNER_ONLY_SDDL.encode_utf16().chain([0]).collect();
    let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: a NUL-terminated SDDL string; `sd` receives a LocalAlloc'ed
    // descriptor, freed below.
    let ok = unsafe {
        ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut sd,
            std::ptr::null_mut(),
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    let path: Vec<u16> = dir.as_os_str().encode_wide().chain([0]).collect();
    // SAFETY: a NUL-terminated path and the descriptor made above.
    let set = unsafe {
        SetFileSecurityW(
            path.as_ptr(),
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            sd,
        )
    };
    let err = io::Error::last_os_error();
    // SAFETY: the descriptor came from LocalAlloc and is freed once.
    unsafe { LocalFree(sd.cast()) };
    if set == 0 { Err(err) } else { Ok(()) }
}
