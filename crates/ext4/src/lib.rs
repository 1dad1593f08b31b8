//! A streaming, reproducible ext4 image writer.
//!
//! The on-disk format follows the Linux kernel's `Documentation/filesystems/ext4/` and the
//! structure definitions of e2fsprogs (`lib/ext2fs/ext2_fs.h`, `ext3_extents.h`,
//! `ext2_ext_attr.h`) and of jbd2 (`include/linux/jbd2.h`).
//!
//! Use it in three steps:
//!
//! 1. describe the tree with [`FsBuilder`]: directories, regular files (by size only),
//!    symlinks, device nodes, FIFOs and sockets, with owners, modes, nanosecond times and
//!    xattrs, and hard links by linking one inode under several names;
//! 2. [`FsBuilder::plan`] chooses the geometry and places every block: superblock and group
//!    descriptors with their sparse backups, bitmaps, inode tables, the journal, directory
//!    blocks, extent-tree blocks, xattr blocks and file data, in that order, each file's data in
//!    the order given by its data key;
//! 3. [`Plan::writer`] writes the image front to back to any `Write`: the caller hands it each
//!    file's bytes in [`Plan::file_order`], and the writer fills everything in between. File
//!    data goes straight from the reader to the output; memory holds metadata only.
//!
//! Or in a single pass over some of the data: a [`DataZone`] hands out blocks to files as they
//! arrive, before the tree is complete; the caller writes their bytes there, says so with
//! [`FsBuilder::set_zone_data`], plans with [`FsBuilder::plan_with_zone`] (everything else goes
//! after the zone) and writes the rest with [`Plan::writer_around_zone`].
//!
//! The feature set is the one pygrub's ext2 reader and every Debian/Ubuntu kernel accept:
//! `has_journal ext_attr dir_index filetype extent flex_bg sparse_super large_file huge_file
//! dir_nlink extra_isize`, 4 KiB blocks, 256-byte inodes, no `64bit`, no `metadata_csum`.
//! The same tree, options and data give the same bytes.

mod dir;
mod inode;
mod layout;
mod map;
mod superblock;
mod tree;
mod write;
mod xattr;
mod zone;

pub use layout::Plan;
pub use tree::{Attrs, FsBuilder, InodeId, NodeKind, Timestamp, Xattr};
pub use write::Ext4Writer;
pub use zone::{DataZone, ZoneFile};

/// Filesystem block size in bytes. Fixed: 4 KiB is what every kernel and pygrub read.
pub const BLOCK_SIZE: u64 = 4096;
/// [`BLOCK_SIZE`] as a `usize`, for buffers.
pub(crate) const BLOCK_BYTES: usize = 4096;
/// Granularity of automatically chosen sizes (2 MiB, the VHD block and XenServer VDI unit).
pub const SIZE_ALIGN: u64 = 2 << 20;

/// Options for [`FsBuilder::plan`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Ext4Options {
    /// Filesystem size in bytes. `None` chooses the content size plus headroom, rounded up to
    /// [`SIZE_ALIGN`]. A given size must be a multiple of [`BLOCK_SIZE`].
    pub size: Option<u64>,
    /// Filesystem UUID. Callers derive it from the input digests for reproducibility.
    pub uuid: [u8; 16],
    /// Directory hash seed, derived like the UUID.
    pub hash_seed: [u8; 16],
    /// Volume label, at most 16 bytes.
    pub label: String,
    /// Seconds since the epoch stamped on the superblock, the journal and created inodes
    /// (`SOURCE_DATE_EPOCH`).
    pub timestamp: u64,
}

impl Ext4Options {
    /// Options with the given identity and time, and an automatic size.
    pub fn new(uuid: [u8; 16], hash_seed: [u8; 16], timestamp: u64) -> Self {
        Ext4Options { size: None, uuid, hash_seed, label: String::new(), timestamp }
    }
}

/// Errors from building and writing an ext4 image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A directory entry name is empty, too long, `.`/`..`, or holds `/` or NUL.
    #[error("invalid file name {name:?}: {reason}")]
    InvalidName {
        /// The name, lossily decoded.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A name is added twice to the same directory.
    #[error("duplicate name {name:?} in one directory")]
    DuplicateName {
        /// The name, lossily decoded.
        name: String,
    },
    /// Linking under something that is not a directory, or hard-linking a directory.
    #[error("{0}")]
    BadLink(&'static str),
    /// The chosen size cannot hold the content.
    #[error(
        "filesystem size {given} bytes is too small: the content needs at least {needed} bytes"
    )]
    TooSmall {
        /// The size asked for.
        given: u64,
        /// The smallest size that fits, rounded up to 2 MiB.
        needed: u64,
    },
    /// The content exceeds what this writer supports (e.g. 2^32 blocks or inodes).
    #[error("content too large for ext4 without 64bit: {0}")]
    TooLarge(String),
    /// The options are inconsistent.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// An inode's extended attributes do not fit in the inode and one block.
    #[error("extended attributes of inode {inode} take {size} bytes, more than one 4 KiB block")]
    XattrTooLarge {
        /// The inode number.
        inode: u32,
        /// Bytes needed.
        size: usize,
    },
    /// File data was supplied out of order, twice, or with the wrong length.
    #[error("file data: {0}")]
    Data(String),
    /// Writing the image failed.
    #[error("writing the ext4 image")]
    Io(#[from] std::io::Error),
}
