//! Who the agent runs as: elevated or not, and the user's SID (their
//! Recycle Bin).

use super::{from_wide_ptr, last_error};
use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use windows_sys::Win32::Foundation::{HANDLE, LocalFree};
use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
use windows_sys::Win32::Security::{
    GetTokenInformation, TOKEN_ELEVATION, TOKEN_QUERY, TOKEN_USER, TokenElevation, TokenUser,
};
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

fn process_token() -> io::Result<OwnedHandle> {
    let mut h: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of this process; `h` receives a new handle.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut h) } == 0 {
        return Err(last_error());
    }
    // SAFETY: a valid token handle, ours to close.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

/// Whether the process runs elevated (an administrator's elevated prompt,
/// or a service as LocalSystem).
pub(crate) fn elevated() -> bool {
    let Ok(t) = process_token() else {
        return false;
    };
    let mut e = TOKEN_ELEVATION { TokenIsElevated: 0 };
    let mut len = 0u32;
    let size = std::mem::size_of::<TOKEN_ELEVATION>() as u32;
    // SAFETY: `e` is a TOKEN_ELEVATION of `size` bytes.
    let ok = unsafe {
        GetTokenInformation(
            t.as_raw_handle(),
            TokenElevation,
            (&raw mut e).cast(),
            size,
            &mut len,
        )
    };
    ok != 0 && e.TokenIsElevated != 0
}

/// The SID of the user the process runs as, e.g. `S-1-5-21-…-1001`.
pub(crate) fn user_sid() -> io::Result<String> {
    let t = process_token()?;
    // TOKEN_USER and the SID after it; 8-byte aligned.
    let mut buf = vec![0u64; 32];
    let mut len = 0u32;
    let size = (buf.len() * 8) as u32;
    // SAFETY: `buf` is writable for `size` bytes, aligned for TOKEN_USER.
    let ok = unsafe {
        GetTokenInformation(
            t.as_raw_handle(),
            TokenUser,
            buf.as_mut_ptr().cast(),
            size,
            &mut len,
        )
    };
    if ok == 0 {
        return Err(last_error());
    }
    // SAFETY: the call wrote a TOKEN_USER at the start of `buf`.
    let user = unsafe { &*buf.as_ptr().cast::<TOKEN_USER>() };
    let mut s: *mut u16 = std::ptr::null_mut();
    // SAFETY: the SID points into `buf`, alive for the call; `s` receives
    // a LocalAlloc'ed string, freed below.
    if unsafe { ConvertSidToStringSidW(user.User.Sid, &mut s) } == 0 {
        return Err(last_error());
    }
    // SAFETY: a NUL-terminated string from ConvertSidToStringSidW.
    let out = unsafe { from_wide_ptr(s) }.unwrap_or_default();
    // SAFETY: `s` came from LocalAlloc and is freed once.
    unsafe { LocalFree(s.cast()) };
    Ok(out)
}
