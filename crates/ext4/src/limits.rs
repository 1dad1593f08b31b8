//! The limits of ext4 as this writer lays it out (4 KiB blocks, 256-byte inodes, no `64bit`,
//! no `large_dir`, linear directories), each checked before a byte is written.
//!
//! A value that does not fit its on-disk field is refused with a typed [`Error`]; none is
//! wrapped or clamped, with two exceptions that follow the kernel and e2fsprogs on purpose:
//! inode times outside 1901..2446 are clamped to the ends of that range, as the kernel does
//! when a program sets such a time on ext4, and the informational `s_block_group_nr` of a backup
//! superblock past group 65,535 is written as 65,535, as e2fsprogs does.
//!
//! Each limit names its upstream source: the Linux kernel's `fs/ext4/` and e2fsprogs'
//! `lib/ext2fs/` and `e2fsck/`. Why they matter: e2fsck's link counters saturate at 65,500
//! (`lib/ext2fs/icount.c`, `icount_16_xlate`), so a link count that wrapped or was clamped can
//! pass `e2fsck -fn` while the guest's kernel later frees an inode that still has names.

use crate::{BLOCK_SIZE, Error};

/// Most names (hard links) of one inode that is not a directory: 65,000.
///
/// The kernel's `EXT4_LINK_MAX` (`fs/ext4/ext4.h`): `ext4_link()` in `fs/ext4/namei.c` refuses
/// a further name with `EMLINK` once an inode has this many. e2fsprogs has the same number as
/// `EXT2_LINK_MAX` (`lib/ext2fs/ext2_fs.h`).
pub const LINK_MAX: u32 = 65_000;

/// Most subdirectories of one directory: 64,998, which give it 65,000 links (its own `.`, its
/// name in its parent, and the `..` of each subdirectory).
///
/// `dir_nlink` lets a directory pass 65,000 links (stored as 1) only when it is hash-indexed:
/// the kernel's `EXT4_DIR_LINK_MAX()` (`fs/ext4/ext4.h`) refuses `mkdir` in a directory at
/// `EXT4_LINK_MAX` links unless `dir_nlink` is on *and* the directory is indexed, and
/// `ext4_inc_count()` (`fs/ext4/namei.c`) stores 1 only for indexed directories. This writer
/// writes linear directories, so their counts stay exact and at most 65,000. (e2fsck's
/// `e2fsck_pass4()` in `e2fsck/pass4.c` wants the exact count up to `EXT2_LINK_MAX` and 1 above
/// it; a linear directory marked 1 would be bumped to 2 by the guest's next `mkdir` in it.)
pub const MAX_SUBDIRS: u32 = LINK_MAX - 2;

/// Most blocks of one directory: 2^19, that is 2 GiB of entries.
///
/// Without `large_dir`, e2fsck reports a directory whose blocks reach past
/// 2^(21 − `s_log_block_size`) as too big (`PR_1_TOOBIG_DIR` in `scan_extent_node()`,
/// `e2fsck/pass1.c`), and the kernel reads only the low 32 bits of a directory's size
/// (`ext4_isize()`, `fs/ext4/ext4.h`).
pub const MAX_DIR_BLOCKS: u64 = 1 << 19;

/// Largest regular file: 2^32 − 1 blocks of 4 KiB, 16 TiB less 4 KiB.
///
/// An extent's first logical block is 32 bits (`ee_block`), and `ext4_max_size()`
/// (`fs/ext4/super.c`) sets the kernel's `s_maxbytes` to (2^32 − 1) blocks for extent-mapped
/// files; e2fsck refuses a larger extent-mapped size (`bad_size = 6` in `check_blocks()`,
/// `e2fsck/pass1.c`).
pub const MAX_FILE_SIZE: u64 = ((1 << 32) - 1) * BLOCK_SIZE;

/// Most blocks in the filesystem: 2^32 − 1 (just under 16 TiB).
///
/// Without `64bit` the block count is the 32-bit `s_blocks_count_lo` (`lib/ext2fs/ext2_fs.h`),
/// and mke2fs refuses more (`MAX_32_NUM` in `misc/mke2fs.c`).
pub const MAX_BLOCKS: u64 = (1 << 32) - 1;

/// Most inodes in the filesystem: 2^32 − 1.
///
/// `s_inodes_count` is 32 bits, and the kernel's `ext4_fill_super()` (`fs/ext4/super.c`) wants
/// it to equal the group count times `s_inodes_per_group` exactly; mke2fs refuses more
/// (`MAX_32_NUM` in `misc/mke2fs.c`).
pub const MAX_INODES: u64 = (1 << 32) - 1;

/// Longest symlink target: 4,095 bytes, one block less its terminating NUL.
///
/// The kernel's `ext4_symlink()` (`fs/ext4/namei.c`) refuses a target that with its NUL is longer
/// than a block (`ENAMETOOLONG`); e2fsck's `e2fsck_pass1_check_symlink()` (`e2fsck/pass1.c`)
/// wants `i_size` to be the target's `strnlen` and below the block size, so a target is also
/// never empty and never holds a NUL byte.
pub const MAX_SYMLINK_LEN: usize = crate::BLOCK_BYTES - 1;

/// Longest extended attribute name, namespace prefix included: 255 bytes.
///
/// `XATTR_NAME_MAX` (`include/uapi/linux/limits.h`): the VFS refuses longer names with `ERANGE`,
/// so a guest could neither read nor remove such an attribute; ext4 keeps the rest of the name
/// after the prefix in a one-byte `e_name_len` (`fs/ext4/xattr.h`).
pub const XATTR_NAME_MAX: usize = 255;

/// Largest device major number: 4,095 (12 bits).
///
/// The kernel's `dev_t` has 12 bits of major and 20 of minor (`MINORBITS`,
/// `include/linux/kdev_t.h`); ext4 stores it with `new_encode_dev()` in `i_block[1]`.
pub const MAX_DEV_MAJOR: u32 = (1 << 12) - 1;

/// Largest device minor number: 2^20 − 1 (see [`MAX_DEV_MAJOR`]).
pub const MAX_DEV_MINOR: u32 = (1 << 20) - 1;

/// Longest initialized extent: 32,768 blocks.
///
/// `EXT_INIT_MAX_LEN` (`fs/ext4/ext4_extents.h`, `lib/ext2fs/ext3_extents.h`): a longer
/// `ee_len` marks the extent as unwritten.
pub const MAX_EXTENT_LEN: u64 = 32_768;

/// Deepest extent tree the kernel reads: 5.
///
/// `EXT4_MAX_EXTENT_DEPTH` (`fs/ext4/ext4_extents.h`); `ext4_find_extent()` refuses a deeper
/// tree. Files of at most [`MAX_FILE_SIZE`] never need more than depth 4 (4 × 340^4 extents),
/// so this one is checked only to be safe.
pub const MAX_EXTENT_DEPTH: u16 = 5;

/// Earliest inode time: −2^31 seconds, 1901-12-13T20:45:52Z (`EXT4_TIMESTAMP_MIN`,
/// `fs/ext4/ext4.h`).
pub const TIMESTAMP_MIN: i64 = -(1 << 31);

/// Latest inode time with 256-byte inodes: 2^34 − 1 − 2^31 seconds, 2446-05-10T22:38:55Z
/// (`EXT4_EXTRA_TIMESTAMP_MAX`, `fs/ext4/ext4.h`).
///
/// File times outside [`TIMESTAMP_MIN`]..=`TIMESTAMP_MAX` are clamped to this range, as the
/// kernel clamps a time set on ext4 (`sb->s_time_min`/`s_time_max`, set in
/// `ext4_fill_super()`); the build time ([`crate::Ext4Options::timestamp`]) must lie inside.
pub const TIMESTAMP_MAX: i64 = (1 << 34) - 1 - (1 << 31);

/// Entries of an extent tree's root (in `i_block`, 60 bytes) and of one tree block.
const ROOT_ENTRIES: u64 = 4;
/// (4096 − 12-byte header) / 12-byte entries: the kernel's `ext4_ext_space_block()`.
const BLOCK_ENTRIES: u64 = (BLOCK_SIZE - 12) / 12;

/// The depth of an extent tree over `extents` leaf extents, four in the inode and 340 in a
/// block.
pub(crate) fn extent_tree_depth(extents: u64) -> u16 {
    let mut depth = 0;
    let mut level = extents;
    while level > ROOT_ENTRIES {
        level = level.div_ceil(BLOCK_ENTRIES);
        depth += 1;
    }
    depth
}

/// Refuses the name that would give an inode (not a directory) `count` names.
pub(crate) fn check_links(count: u64, path: impl FnOnce() -> String) -> Result<(), Error> {
    if count > u64::from(LINK_MAX) {
        return Err(Error::TooManyLinks { path: path(), count, max: LINK_MAX });
    }
    Ok(())
}

/// Refuses the subdirectory that would give a directory `count` of them.
pub(crate) fn check_subdirs(count: u64, path: impl FnOnce() -> String) -> Result<(), Error> {
    if count > u64::from(MAX_SUBDIRS) {
        return Err(Error::TooManySubdirectories { path: path(), count, max: MAX_SUBDIRS });
    }
    Ok(())
}

/// Refuses a directory of `blocks` blocks.
pub(crate) fn check_dir_blocks(blocks: u64, path: impl FnOnce() -> String) -> Result<(), Error> {
    if blocks > MAX_DIR_BLOCKS {
        return Err(Error::DirectoryTooLarge {
            path: path(),
            size: blocks * BLOCK_SIZE,
            max: MAX_DIR_BLOCKS * BLOCK_SIZE,
        });
    }
    Ok(())
}

/// Refuses a filesystem of `blocks` blocks.
pub(crate) fn check_blocks(blocks: u64) -> Result<(), Error> {
    if blocks > MAX_BLOCKS {
        return Err(Error::TooManyBlocks { blocks, max: MAX_BLOCKS });
    }
    Ok(())
}

/// Refuses a filesystem of `count` inodes.
pub(crate) fn check_inodes(count: u64) -> Result<(), Error> {
    if count > MAX_INODES {
        return Err(Error::TooManyInodes { count, max: MAX_INODES });
    }
    Ok(())
}

/// Refuses an extent tree over `extents` extents deeper than the kernel reads.
pub(crate) fn check_extents(extents: u64, path: impl FnOnce() -> String) -> Result<(), Error> {
    let depth = extent_tree_depth(extents);
    if depth > MAX_EXTENT_DEPTH {
        return Err(Error::TooManyExtents { path: path(), extents, depth, max: MAX_EXTENT_DEPTH });
    }
    Ok(())
}

/// Refuses a build time (`SOURCE_DATE_EPOCH`) past the last time ext4 stores.
pub(crate) fn check_build_time(epoch: u64) -> Result<(), Error> {
    if i64::try_from(epoch).map_or(true, |t| t > TIMESTAMP_MAX) {
        return Err(Error::TimestampOutOfRange { epoch, max: TIMESTAMP_MAX });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> String {
        "/x".into()
    }

    #[test]
    fn link_counts_stop_at_65000() {
        assert!(check_links(65_000, path).is_ok());
        assert!(matches!(
            check_links(65_001, path),
            Err(Error::TooManyLinks { count: 65_001, max: 65_000, .. })
        ));
        assert!(check_subdirs(64_998, path).is_ok());
        assert!(matches!(
            check_subdirs(64_999, path),
            Err(Error::TooManySubdirectories { count: 64_999, max: 64_998, .. })
        ));
    }

    /// A 2 GiB directory is more than a test should write: the check alone, at its boundary.
    #[test]
    fn directories_stop_at_2_gib() {
        assert!(check_dir_blocks(1 << 19, path).is_ok());
        let err = check_dir_blocks((1 << 19) + 1, path).unwrap_err();
        assert!(
            matches!(err, Error::DirectoryTooLarge { size, max, .. }
                if size == (2 << 30) + 4096 && max == 2 << 30),
            "{err}"
        );
    }

    /// 16 TiB filesystems and 2^32 inodes are more than a test can build: the checks alone.
    #[test]
    fn block_and_inode_counts_stop_below_2_to_the_32() {
        assert!(check_blocks((1 << 32) - 1).is_ok());
        assert!(
            matches!(check_blocks(1 << 32), Err(Error::TooManyBlocks { blocks, .. }) if blocks == 1 << 32)
        );
        assert!(check_inodes((1 << 32) - 1).is_ok());
        assert!(matches!(check_inodes(1 << 32), Err(Error::TooManyInodes { .. })));
        assert_eq!(MAX_FILE_SIZE, (16 << 40) - 4096);
    }

    #[test]
    fn extent_trees_stop_at_depth_5() {
        assert_eq!(extent_tree_depth(0), 0);
        assert_eq!(extent_tree_depth(4), 0);
        assert_eq!(extent_tree_depth(5), 1);
        assert_eq!(extent_tree_depth(4 * 340), 1);
        assert_eq!(extent_tree_depth(4 * 340 + 1), 2);
        // The most extents a file of at most 2^32 − 1 blocks can have needs depth 4.
        assert_eq!(extent_tree_depth((1 << 32) - 1), 4);
        let at_limit = 4 * 340u64.pow(5);
        assert_eq!(extent_tree_depth(at_limit), 5);
        assert!(check_extents(at_limit, path).is_ok());
        assert!(matches!(
            check_extents(at_limit + 1, path),
            Err(Error::TooManyExtents { depth: 6, max: 5, .. })
        ));
    }

    #[test]
    fn build_time_stops_in_2446() {
        assert_eq!(TIMESTAMP_MAX, 15_032_385_535, "2446-05-10T22:38:55Z");
        assert!(check_build_time(15_032_385_535).is_ok());
        assert!(matches!(
            check_build_time(15_032_385_536),
            Err(Error::TimestampOutOfRange { epoch: 15_032_385_536, .. })
        ));
        assert!(check_build_time(u64::MAX).is_err());
    }
}
