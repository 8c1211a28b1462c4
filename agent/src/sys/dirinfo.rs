//! Reads the entries Windows writes for a directory listing
//! (`FILE_ID_BOTH_DIR_INFO`, chained by `NextEntryOffset`) from plain
//! bytes, without pointer casts: the layout is checked against the
//! bindings' struct in a Windows test, and this parser runs, and is
//! tested over recorded listings, on any system.

/// Offsets in one entry (x86_64 and aarch64 alike).
pub(crate) const NEXT: usize = 0;
pub(crate) const MTIME: usize = 24;
pub(crate) const SIZE: usize = 40;
pub(crate) const ATTRS: usize = 56;
pub(crate) const NAME_LEN: usize = 60;
pub(crate) const EA: usize = 64;
pub(crate) const FILE_ID: usize = 96;
pub(crate) const NAME: usize = 104;

pub(crate) const ATTR_DIRECTORY: u32 = 0x10;
pub(crate) const ATTR_DEVICE: u32 = 0x40;
pub(crate) const ATTR_REPARSE_POINT: u32 = 0x400;
pub(crate) const ATTR_OFFLINE: u32 = 0x1000;
/// Cloud files (OneDrive) whose data is not on the disk: reading them
/// would download them.
pub(crate) const ATTR_RECALL_ON_OPEN: u32 = 0x40000;
pub(crate) const ATTR_RECALL_ON_DATA_ACCESS: u32 = 0x0040_0000;

pub(crate) const TAG_SYMLINK: u32 = 0xA000_000C;
pub(crate) const TAG_MOUNT_POINT: u32 = 0xA000_0003;

/// One entry of a listing, borrowed from the listing buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirEntry<'b> {
    /// The name in UTF-16, as little-endian bytes.
    pub name: &'b [u8],
    pub attributes: u32,
    /// The reparse tag (valid when `attributes` has a reparse point).
    pub reparse_tag: u32,
    pub file_id: u64,
    pub size: u64,
    /// LastWriteTime, a FILETIME.
    pub mtime: u64,
}

/// What an entry is, for the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryKind {
    File,
    Dir,
    /// A symbolic link or a junction: never followed.
    Link,
    /// Devices, cloud placeholders, other reparse points: counted, never
    /// read.
    Other,
}

impl DirEntry<'_> {
    pub(crate) fn kind(&self) -> EntryKind {
        let a = self.attributes;
        if a & ATTR_REPARSE_POINT != 0 {
            return match self.reparse_tag {
                TAG_SYMLINK | TAG_MOUNT_POINT => EntryKind::Link,
                _ => EntryKind::Other,
            };
        }
        if a & (ATTR_DEVICE | ATTR_OFFLINE | ATTR_RECALL_ON_OPEN | ATTR_RECALL_ON_DATA_ACCESS) != 0
        {
            EntryKind::Other
        } else if a & ATTR_DIRECTORY != 0 {
            EntryKind::Dir
        } else {
            EntryKind::File
        }
    }

    /// `.` or `..`.
    pub(crate) fn is_dot(&self) -> bool {
        matches!(self.name, [b'.', 0] | [b'.', 0, b'.', 0])
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// The entries in `buf`, as one listing call wrote them; stops at the
/// first entry that does not fit (a short or damaged buffer never reads
/// out of bounds).
pub(crate) fn entries(buf: &[u8]) -> impl Iterator<Item = DirEntry<'_>> {
    let mut at = Some(0usize);
    std::iter::from_fn(move || {
        let start = at?;
        let b = buf.get(start..)?;
        let name_len = u32_at(b, NAME_LEN)? as usize;
        let e = DirEntry {
            name: b.get(NAME..NAME.checked_add(name_len)?)?,
            attributes: u32_at(b, ATTRS)?,
            reparse_tag: u32_at(b, EA)?,
            file_id: u64_at(b, FILE_ID)?,
            size: u64_at(b, SIZE)?,
            mtime: u64_at(b, MTIME)?,
        };
        let next = u32_at(b, NEXT)? as usize;
        at = (next != 0).then(|| start.checked_add(next)).flatten();
        Some(e)
    })
}

/// A listing entry as Windows would write it (tests, recorded inputs).
#[cfg(test)]
pub(crate) fn record(
    name: &str,
    attributes: u32,
    tag: u32,
    id: u64,
    size: u64,
    mtime: u64,
    last: bool,
) -> Vec<u8> {
    let name: Vec<u8> = name.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let len = (NAME + name.len()).next_multiple_of(8);
    let mut r = vec![0u8; len];
    let next = if last { 0 } else { len as u32 };
    r[NEXT..NEXT + 4].copy_from_slice(&next.to_le_bytes());
    r[MTIME..MTIME + 8].copy_from_slice(&mtime.to_le_bytes());
    r[SIZE..SIZE + 8].copy_from_slice(&size.to_le_bytes());
    r[ATTRS..ATTRS + 4].copy_from_slice(&attributes.to_le_bytes());
    r[NAME_LEN..NAME_LEN + 4].copy_from_slice(&(name.len() as u32).to_le_bytes());
    r[EA..EA + 4].copy_from_slice(&tag.to_le_bytes());
    r[FILE_ID..FILE_ID + 8].copy_from_slice(&id.to_le_bytes());
    r[NAME..NAME + name.len()].copy_from_slice(&name);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_listing_reads_back_with_kinds() {
        let mut buf = record(".", ATTR_DIRECTORY, 0, 1, 0, 0, false);
        buf.extend(record("rapport.pdf", 0x20, 0, 77, 1234, 5, false));
        buf.extend(record("Docs", ATTR_DIRECTORY, 0, 78, 0, 6, false));
        buf.extend(record(
            "lien",
            ATTR_REPARSE_POINT,
            TAG_SYMLINK,
            79,
            0,
            7,
            false,
        ));
        buf.extend(record(
            "OneDrive.docx",
            0x20 | ATTR_RECALL_ON_DATA_ACCESS,
            0,
            80,
            9,
            8,
            false,
        ));
        buf.extend(record(
            "cloud",
            ATTR_REPARSE_POINT,
            0x9000_001A,
            81,
            9,
            8,
            true,
        ));
        let e: Vec<_> = entries(&buf).collect();
        assert_eq!(e.len(), 6);
        assert!(e[0].is_dot());
        assert_eq!((e[1].file_id, e[1].size, e[1].mtime), (77, 1234, 5));
        assert_eq!(
            String::from_utf16_lossy(
                &e[1]
                    .name
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect::<Vec<_>>()
            ),
            "rapport.pdf"
        );
        let kinds: Vec<_> = e.iter().map(DirEntry::kind).collect();
        use EntryKind::*;
        assert_eq!(kinds, [Dir, File, Dir, Link, Other, Other]);
    }

    #[test]
    fn a_damaged_listing_stops_without_reading_past_the_buffer() {
        let mut buf = record("a", 0x20, 0, 1, 1, 1, false);
        buf.extend(record("b", 0x20, 0, 2, 2, 2, false));
        for cut in 0..buf.len() {
            let n = entries(&buf[..cut]).count();
            assert!(n <= 2);
        }
        // A name length pointing far past the end.
        let mut bad = record("a", 0x20, 0, 1, 1, 1, true);
        bad[NAME_LEN..NAME_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(entries(&bad).count(), 0);
        // A next offset that loops back on itself stops (0 ends the chain).
        let mut looped = record("a", 0x20, 0, 1, 1, 1, false);
        looped[NEXT..NEXT + 4].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(entries(&looped).count(), 1);
    }
}
