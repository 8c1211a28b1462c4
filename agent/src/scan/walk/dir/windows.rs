//! Windows: reading one directory through a handle. One call
//! (`FileIdBothDirectoryInfo`) lists up to a buffer's worth of entries
//! with each one's size, last write time, attributes and NTFS file id:
//! no stat per file at all. Reparse points (symbolic links, junctions,
//! OneDrive placeholders) are never followed and never read; a folder's
//! volume serial number, checked when it is opened, keeps the walk on one
//! volume. Hard links are not told apart in a listing: each name counts
//! (ARCHITECTURE.md, "Windows").

use super::super::queue::Job;
use super::super::{Kind, Meta, Shared, add_file, issue};
use super::{DirFd, Reading};
use crate::scan::pace::Pacer;
use crate::sys::dirinfo::{self, EntryKind};
use crate::sys::name::{os_str, push_wtf8};
use crate::sys::{filetime_ns, win};
use std::io;
use std::os::windows::io::AsHandle;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// Opens `job`'s directory; None: it is on another volume
/// (`one_file_system`), counted by the caller.
pub(in super::super) fn open<'a>(
    shared: &Shared<'a>,
    job: &mut Job<'a>,
) -> io::Result<Option<Arc<DirFd<'a>>>> {
    let h = win::open_dir(&job.path)?;
    let id = win::stat_handle(h.as_handle())?;
    if shared.opts.one_file_system && job.stat && id.dev != job.dev {
        return Ok(None);
    }
    (job.dev, job.ino, job.mtime_ns, job.stat) = (id.dev, id.ino, id.mtime_ns, true);
    shared.open_dirs.fetch_add(1, Relaxed);
    Ok(Some(Arc::new(DirFd {
        fd: h,
        open: shared.open_dirs,
    })))
}

/// Stats an open directory.
pub(in super::super) fn stat_dir(d: &DirFd<'_>) -> io::Result<Meta> {
    let id = win::stat_handle(d.fd.as_handle())?;
    Ok(Meta {
        kind: Kind::Dir,
        dev: id.dev,
        ino: id.ino,
        size: 0,
        mtime_ns: id.mtime_ns,
        nlink: id.nlink,
    })
}

/// One directory's entries, listed before any is handled. One per
/// worker, reused.
#[derive(Default)]
pub(in super::super) struct Listing {
    ents: Vec<Ent>,
    /// The names, WTF-8 (see `sys::name`), one after the other.
    names: Vec<u8>,
}

#[derive(Clone, Copy)]
struct Ent {
    at: u32,
    len: u16,
    kind: EntryKind,
    file_id: u64,
    size: u64,
    mtime_ns: i64,
}

impl Listing {
    fn name(&self, e: &Ent) -> &[u8] {
        self.names
            .get(e.at as usize..e.at as usize + usize::from(e.len))
            .unwrap_or_default()
    }

    /// Lists `dir` (but `.` and `..`), sorted by name bytes.
    fn list(&mut self, dir: &DirFd<'_>, buf: &mut Vec<u8>) -> io::Result<()> {
        self.ents.clear();
        self.names.clear();
        buf.resize(buf.capacity().max(super::BUF_BYTES), 0);
        // The entries hold 64-bit fields: the call needs 8-byte alignment.
        let skip = buf.as_ptr().align_offset(8).min(8);
        let Some(area) = buf.get_mut(skip..) else {
            return Err(io::Error::other("listing buffer too small"));
        };
        let mut first = true;
        loop {
            let n = win::list_dir(dir.fd.as_handle(), area, first)?;
            first = false;
            if n == 0 {
                break;
            }
            for e in dirinfo::entries(&area[..n]) {
                if e.is_dot() {
                    continue;
                }
                let at = self.names.len();
                push_wtf8(e.name, &mut self.names);
                let (Ok(at32), Ok(len)) = (u32::try_from(at), u16::try_from(self.names.len() - at))
                else {
                    return Err(io::Error::other("directory listing too large"));
                };
                self.ents.push(Ent {
                    at: at32,
                    len,
                    kind: e.kind(),
                    file_id: e.file_id,
                    size: e.size,
                    mtime_ns: filetime_ns(e.mtime),
                });
            }
        }
        let names = &self.names;
        let key = |e: &Ent| &names[e.at as usize..][..usize::from(e.len)];
        self.ents.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        Ok(())
    }
}

impl<'a> Reading<'_, 'a> {
    /// Lists the directory and handles each entry; returns how many there
    /// were (excluded ones included).
    pub(super) fn entries(
        &mut self,
        pacer: &mut Pacer,
        buf: &mut Vec<u8>,
        lst: &mut Listing,
    ) -> u64 {
        let (opts, job) = (self.shared.opts, self.job);
        if let Err(e) = lst.list(self.fd, buf) {
            issue(&mut self.local.out, &job.path, &e);
        }
        let here = super::excluded_here(opts, job);
        for i in 0..lst.ents.len() {
            let e = lst.ents[i];
            pacer.tick(self.shared.cancel);
            let name = lst.name(&e);
            let os = os_str(name);
            let excluded = opts.rules.excluded_name(&os) || here.contains(&&*os);
            if excluded {
                self.local.out.stats.excluded += 1;
                continue;
            }
            let md = Meta {
                kind: Kind::File,
                dev: job.dev,
                ino: e.file_id,
                size: e.size,
                mtime_ns: e.mtime_ns,
                nlink: 1,
            };
            match e.kind {
                EntryKind::File => {
                    add_file(&mut self.local.out, opts, job.id, name, &md, job.flags)
                }
                EntryKind::Dir => {
                    let path = job.path.join(&*os);
                    if opts.rules.excluded_path(&path) {
                        self.local.out.stats.excluded += 1;
                        continue;
                    }
                    let md = Meta {
                        kind: Kind::Dir,
                        size: 0,
                        ..md
                    };
                    self.push_dir(path, &md, true, false);
                }
                EntryKind::Link => self.local.out.stats.symlinks += 1,
                EntryKind::Other => self.local.out.stats.special += 1,
            }
        }
        lst.ents.len() as u64
    }
}
