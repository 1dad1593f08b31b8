//! What a layer holds, as the merge sees it: each entry's kind, metadata and data size, and
//! what reading a whole layer measured.

/// What a layer entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file; its data follows.
    File,
    /// A directory.
    Dir,
    /// A symlink with this target, verbatim.
    Symlink(Vec<u8>),
    /// A hard link to this path (relative to the image root).
    Hardlink(Vec<u8>),
    /// A character device.
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A FIFO.
    Fifo,
}

/// Ownership, mode, times and xattrs of an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time: seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// Access time from pax, if recorded.
    pub atime: Option<(i64, u32)>,
    /// Change time from pax, if recorded.
    pub ctime: Option<(i64, u32)>,
    /// Extended attributes from `SCHILY.xattr.*` pax records, in archive order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One entry of a layer.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    /// Position in the layer's tar stream, from 0.
    pub index: u64,
    /// The path as recorded (not yet normalised).
    pub path: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// Ownership, mode, times, xattrs.
    pub meta: EntryMeta,
    /// Data size (regular files).
    pub size: u64,
}

/// Totals of one layer read.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerSummary {
    /// Entries seen.
    pub entries: u64,
    /// Bytes of the stored blob.
    pub stored_bytes: u64,
    /// Bytes of the uncompressed tar.
    pub tar_bytes: u64,
    /// `none`, `gzip` or `zstd`.
    pub compression: &'static str,
}
