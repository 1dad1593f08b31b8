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
//!
//! Every count and size ext4 cannot hold is refused with a typed [`Error`] naming the entry,
//! as early as it is known: a 65,001st name of a file or a 64,999th subdirectory by
//! [`FsBuilder::link`], directory sizes and filesystem counts by [`FsBuilder::plan`]. The
//! limits, and the kernel and e2fsprogs sources they come from, are in [`limits`].

mod dir;
mod inode;
mod layout;
pub mod limits;
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
    /// The filesystem would need a data zone of more than 128 groups (16 GiB); the caller writes
    /// it the two-pass way instead.
    #[error("content too large for a data zone: {0}")]
    TooLarge(String),
    /// The options are inconsistent.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// An inode that is not a directory would get more names (hard links) than ext4 allows.
    #[error("{path}: {count} names for one inode; ext4 allows at most {max} hard links")]
    TooManyLinks {
        /// The name that would be one too many.
        path: String,
        /// The number of names it would give the inode.
        count: u64,
        /// [`limits::LINK_MAX`].
        max: u32,
    },
    /// A directory would get more subdirectories than a linear ext4 directory holds.
    #[error(
        "{path}: {count} subdirectories in one directory; ext4 allows at most {max} (65000 \
         links) in a directory without a hash index"
    )]
    TooManySubdirectories {
        /// The directory.
        path: String,
        /// The number of subdirectories it would have.
        count: u64,
        /// [`limits::MAX_SUBDIRS`].
        max: u32,
    },
    /// A directory's entries take more space than ext4 allows without `large_dir`.
    #[error("{path}: the directory's entries take {size} bytes; ext4 allows at most {max}")]
    DirectoryTooLarge {
        /// The directory.
        path: String,
        /// Bytes its entries need, in whole blocks.
        size: u64,
        /// [`limits::MAX_DIR_BLOCKS`] in bytes (2 GiB).
        max: u64,
    },
    /// A regular file is larger than an ext4 file with 4 KiB blocks can be.
    #[error("{path}: {size} bytes; an ext4 file holds at most {max} bytes (16 TiB - 4 KiB)")]
    FileTooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
        /// [`limits::MAX_FILE_SIZE`].
        max: u64,
    },
    /// A symbolic link's target is longer than ext4 stores.
    #[error("{path}: symlink target of {len} bytes; ext4 allows at most {max}")]
    SymlinkTooLong {
        /// The symlink.
        path: String,
        /// The target's length.
        len: usize,
        /// [`limits::MAX_SYMLINK_LEN`].
        max: usize,
    },
    /// A symbolic link's target is empty or holds a NUL byte.
    #[error("{path}: symlink target {reason}")]
    InvalidSymlink {
        /// The symlink.
        path: String,
        /// What is wrong with the target.
        reason: &'static str,
    },
    /// A device number does not fit the kernel's `dev_t`.
    #[error(
        "{path}: device number {major}:{minor} does not fit Linux's dev_t (major at most 4095, \
         minor at most 1048575)"
    )]
    InvalidDevice {
        /// The device node.
        path: String,
        /// Its major number.
        major: u32,
        /// Its minor number.
        minor: u32,
    },
    /// An extended attribute ext4 cannot store: a namespace it does not know, a name that is
    /// empty or too long, a name given twice, or a malformed POSIX ACL.
    #[error("{path}: extended attribute {name:?}: {reason}")]
    InvalidXattr {
        /// The inode's path.
        path: String,
        /// The attribute's full name, lossily decoded.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An inode's extended attributes do not fit in the inode and one block.
    #[error("{path}: extended attributes take {size} bytes; ext4 stores at most {max}")]
    XattrTooLarge {
        /// The inode's path.
        path: String,
        /// Bytes needed in an attribute block.
        size: usize,
        /// One 4 KiB block.
        max: usize,
    },
    /// The filesystem would need more blocks than ext4 without `64bit` addresses.
    #[error(
        "the filesystem needs {blocks} blocks of 4 KiB; ext4 without 64bit holds at most {max} \
         (16 TiB)"
    )]
    TooManyBlocks {
        /// Blocks needed (or asked for).
        blocks: u64,
        /// [`limits::MAX_BLOCKS`].
        max: u64,
    },
    /// The filesystem would need more inodes than its 32-bit inode count holds.
    #[error("the filesystem needs {count} inodes; ext4 holds at most {max}")]
    TooManyInodes {
        /// Inodes needed.
        count: u64,
        /// [`limits::MAX_INODES`].
        max: u64,
    },
    /// A file's extent tree would be deeper than the kernel reads.
    #[error(
        "{path}: {extents} extents need an extent tree of depth {depth}; the kernel reads {max}"
    )]
    TooManyExtents {
        /// The file.
        path: String,
        /// Its extents.
        extents: u64,
        /// The depth they need.
        depth: u16,
        /// [`limits::MAX_EXTENT_DEPTH`].
        max: u16,
    },
    /// The build time is past the last time ext4 stores (2446-05-10).
    #[error("timestamp {epoch} (seconds since 1970) is past ext4's last time, {max} (2446-05-10)")]
    TimestampOutOfRange {
        /// The build time asked for.
        epoch: u64,
        /// [`limits::TIMESTAMP_MAX`].
        max: i64,
    },
    /// File data was supplied out of order, twice, or with the wrong length.
    #[error("file data: {0}")]
    Data(String),
    /// Writing the image failed.
    #[error("writing the ext4 image")]
    Io(#[from] std::io::Error),
}
