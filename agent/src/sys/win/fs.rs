//! Files and directories: a file's identity (volume serial number and
//! NTFS file id, like a device and an inode), directories opened as
//! handles and listed with `FileIdBothDirectoryInfo`, which gives each
//! entry's size, times, attributes and file id in the listing itself.

use super::{ft, last_error, wide_path};
use crate::sys::Ident;
use std::io;
use std::os::windows::io::{AsRawHandle, BorrowedHandle, FromRawHandle, OwnedHandle};
use std::path::Path;
use windows_sys::Win32::Foundation::{ERROR_NO_MORE_FILES, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Storage::FileSystem::{
    BY_HANDLE_FILE_INFORMATION, CreateFileW, FILE_FLAG_BACKUP_SEMANTICS,
    FILE_FLAG_OPEN_REPARSE_POINT, FILE_LIST_DIRECTORY, FILE_READ_ATTRIBUTES, FILE_SHARE_DELETE,
    FILE_SHARE_READ, FILE_SHARE_WRITE, FileIdBothDirectoryInfo, FileIdBothDirectoryRestartInfo,
    GetFileInformationByHandle, GetFileInformationByHandleEx, OPEN_EXISTING,
};

/// Opens `path` for its attributes only (a folder too; a link or
/// junction itself, not what it points to), sharing everything.
fn open(path: &Path, access: u32) -> io::Result<OwnedHandle> {
    let w = wide_path(path);
    // SAFETY: `w` is NUL-terminated and outlives the call; no security
    // attributes, no template.
    let h = unsafe {
        CreateFileW(
            w.as_ptr(),
            access,
            FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
            std::ptr::null(),
            OPEN_EXISTING,
            FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT,
            std::ptr::null_mut(),
        )
    };
    if h == INVALID_HANDLE_VALUE {
        return Err(last_error());
    }
    // SAFETY: a valid handle just returned by CreateFileW, owned by no one
    // else.
    Ok(unsafe { OwnedHandle::from_raw_handle(h) })
}

/// The identity of an open file or folder.
pub(crate) fn stat_handle(h: BorrowedHandle<'_>) -> io::Result<Ident> {
    // SAFETY: a zeroed BY_HANDLE_FILE_INFORMATION is valid (plain data).
    let mut i: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `h` is an open handle; `i` is writable and of the right type.
    if unsafe { GetFileInformationByHandle(h.as_raw_handle(), &mut i) } == 0 {
        return Err(last_error());
    }
    Ok(Ident {
        dev: u64::from(i.dwVolumeSerialNumber),
        ino: (u64::from(i.nFileIndexHigh) << 32) | u64::from(i.nFileIndexLow),
        nlink: u64::from(i.nNumberOfLinks),
        mtime_ns: crate::sys::filetime_ns(ft(i.ftLastWriteTime)),
    })
}

/// `path`'s identity, a last link or junction not followed.
pub(crate) fn ident(path: &Path) -> io::Result<Ident> {
    let h = open(path, FILE_READ_ATTRIBUTES)?;
    use std::os::windows::io::AsHandle;
    stat_handle(h.as_handle())
}

/// Replaces `dst` with `src` and returns once the move is on the disk
/// (`MOVEFILE_WRITE_THROUGH`): the spool's durable rename.
pub(crate) fn rename_durable(src: &Path, dst: &Path) -> io::Result<()> {
    use windows_sys::Win32::Storage::FileSystem::{
        MOVEFILE_REPLACE_EXISTING, MOVEFILE_WRITE_THROUGH, MoveFileExW,
    };
    let (s, d) = (wide_path(src), wide_path(dst));
    // SAFETY: two NUL-terminated paths that outlive the call.
    let ok = unsafe {
        MoveFileExW(
            s.as_ptr(),
            d.as_ptr(),
            MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH,
        )
    };
    if ok == 0 { Err(last_error()) } else { Ok(()) }
}

/// Opens a folder to list it.
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedHandle> {
    open(path, FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES)
}

/// Fills `buf` with the next entries of the folder open as `h` (from the
/// first if `restart`); returns how many bytes hold entries, 0 at the end.
/// `buf` must be 8-byte aligned; the entries are read by
/// [`crate::sys::dirinfo::entries`].
pub(crate) fn list_dir(h: BorrowedHandle<'_>, buf: &mut [u8], restart: bool) -> io::Result<usize> {
    let class = if restart {
        FileIdBothDirectoryRestartInfo
    } else {
        FileIdBothDirectoryInfo
    };
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
    // SAFETY: `buf` is writable for `len` bytes and 8-byte aligned, as
    // FILE_ID_BOTH_DIR_INFO needs; the call writes at most `len` bytes.
    let ok = unsafe {
        GetFileInformationByHandleEx(h.as_raw_handle(), class, buf.as_mut_ptr().cast(), len)
    };
    if ok != 0 {
        return Ok(buf.len());
    }
    let e = last_error();
    if e.raw_os_error() == Some(ERROR_NO_MORE_FILES as i32) {
        Ok(0)
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_listing_layout_is_the_one_the_parser_reads() {
        use crate::sys::dirinfo as d;
        use std::mem::offset_of;
        use windows_sys::Win32::Storage::FileSystem::FILE_ID_BOTH_DIR_INFO as I;
        assert_eq!(offset_of!(I, NextEntryOffset), d::NEXT);
        assert_eq!(offset_of!(I, LastWriteTime), d::MTIME);
        assert_eq!(offset_of!(I, EndOfFile), d::SIZE);
        assert_eq!(offset_of!(I, FileAttributes), d::ATTRS);
        assert_eq!(offset_of!(I, FileNameLength), d::NAME_LEN);
        assert_eq!(offset_of!(I, EaSize), d::EA);
        assert_eq!(offset_of!(I, FileId), d::FILE_ID);
        assert_eq!(offset_of!(I, FileName), d::NAME);
    }
}
