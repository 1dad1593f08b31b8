//! The superblock (`struct ext2_super_block`), group descriptors (32-byte
//! `struct ext2_group_desc`, no `64bit`) and the jbd2 journal superblock (big-endian
//! `journal_superblock_t`, version 2).

/// `s_magic`.
pub const EXT4_MAGIC: u16 = 0xEF53;
/// First inode not reserved for the filesystem.
pub const FIRST_INO: u32 = 11;
/// The root directory's inode.
pub const ROOT_INO: u32 = 2;
/// The journal's inode.
pub const JOURNAL_INO: u32 = 8;
/// Size of a group descriptor without `64bit`.
pub const GROUP_DESC_SIZE: usize = 32;
/// Blocks per group with 4 KiB blocks: one bitmap block's worth of bits.
pub const BLOCKS_PER_GROUP: u64 = 32_768;
/// Groups per flex group, as a power of two (mke2fs's default of 16).
pub const LOG_GROUPS_PER_FLEX: u8 = 4;

const COMPAT: u32 = 0x0004 /* has_journal */ | 0x0008 /* ext_attr */ | 0x0020 /* dir_index */;
const INCOMPAT: u32 = 0x0002 /* filetype */ | 0x0040 /* extents */ | 0x0200 /* flex_bg */;
const RO_COMPAT: u32 = 0x0001 /* sparse_super */
    | 0x0002 /* large_file */
    | 0x0008 /* huge_file */
    | 0x0020 /* dir_nlink */
    | 0x0040 /* extra_isize */;

/// Whether group `g` holds a backup superblock under `sparse_super`: 0, 1, and powers of 3,
/// 5 and 7.
pub fn has_super(g: u64) -> bool {
    if g <= 1 {
        return true;
    }
    [3u64, 5, 7].iter().any(|&base| {
        let mut p = base;
        while p < g {
            p *= base;
        }
        p == g
    })
}

/// Counts and identity written into every superblock copy.
#[derive(Debug, Clone)]
pub struct SuperFields {
    /// Total inodes.
    pub inodes: u32,
    /// Total blocks.
    pub blocks: u32,
    /// Free blocks.
    pub free_blocks: u32,
    /// Free inodes.
    pub free_inodes: u32,
    /// Inodes per group.
    pub inodes_per_group: u32,
    /// Creation and check time, seconds since the epoch (at most
    /// [`crate::limits::TIMESTAMP_MAX`]): the low 32 bits and the `_hi` byte.
    pub time: u64,
    /// Filesystem UUID.
    pub uuid: [u8; 16],
    /// Volume label (at most 16 bytes).
    pub label: Vec<u8>,
    /// htree hash seed.
    pub hash_seed: [u8; 16],
    /// The journal inode's `i_block` and size, backed up in `s_jnl_blocks`.
    pub journal_block: [u8; 60],
    /// Journal size in bytes.
    pub journal_size: u64,
}

/// The 1024-byte superblock as stored in group `group`.
///
/// `s_block_group_nr` is 16 bits: a backup past group 65,535 says 65,535, as e2fsprogs writes it
/// (`write_backup_super()`, `lib/ext2fs/closefs.c`); nothing reads it to find the group.
#[allow(clippy::cast_possible_truncation)]
pub fn encode_super(f: &SuperFields, group: u32) -> [u8; 1024] {
    let mut b = [0u8; 1024];
    let put16 =
        |b: &mut [u8; 1024], at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |b: &mut [u8; 1024], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put32(&mut b, 0x00, f.inodes);
    put32(&mut b, 0x04, f.blocks);
    put32(&mut b, 0x08, 0); // reserved blocks: none, the headroom is the user's
    put32(&mut b, 0x0C, f.free_blocks);
    put32(&mut b, 0x10, f.free_inodes);
    put32(&mut b, 0x14, 0); // first data block (4 KiB blocks)
    put32(&mut b, 0x18, 2); // log block size: 1024 << 2
    put32(&mut b, 0x1C, 2); // log cluster size
    put32(&mut b, 0x20, BLOCKS_PER_GROUP as u32);
    put32(&mut b, 0x24, BLOCKS_PER_GROUP as u32);
    put32(&mut b, 0x28, f.inodes_per_group);
    // Times: the low 32 bits here, bits 32..40 in the `_hi` bytes at 0x274.. (`s_wtime_hi`,
    // `s_mtime_hi`, `s_mkfs_time_hi`, `s_lastcheck_hi` in `lib/ext2fs/ext2_fs.h`).
    let (time, time_hi) = (f.time as u32, (f.time >> 32) as u8);
    put32(&mut b, 0x30, time); // write time
    put16(&mut b, 0x36, 0xFFFF); // max mount count: -1, no forced checks
    put16(&mut b, 0x38, EXT4_MAGIC);
    put16(&mut b, 0x3A, 1); // state: clean
    put16(&mut b, 0x3C, 1); // errors: continue
    put32(&mut b, 0x40, time); // last check
    put32(&mut b, 0x4C, 1); // revision: dynamic
    put32(&mut b, 0x54, FIRST_INO);
    put16(&mut b, 0x58, crate::inode::INODE_SIZE as u16);
    put16(&mut b, 0x5A, u16::try_from(group).unwrap_or(u16::MAX));
    put32(&mut b, 0x5C, COMPAT);
    put32(&mut b, 0x60, INCOMPAT);
    put32(&mut b, 0x64, RO_COMPAT);
    b[0x68..0x78].copy_from_slice(&f.uuid);
    b[0x78..0x78 + f.label.len()].copy_from_slice(&f.label);
    put32(&mut b, 0xE0, JOURNAL_INO);
    b[0xEC..0xFC].copy_from_slice(&f.hash_seed);
    b[0xFC] = 1; // default hash: half_md4
    b[0xFD] = 1; // s_jnl_backup_type: EXT3_JNL_BACKUP_BLOCKS
    put32(&mut b, 0x100, 0x0004 | 0x0008); // default mount options: user_xattr, acl
    put32(&mut b, 0x108, time); // mkfs time
    b[0x10C..0x148].copy_from_slice(&f.journal_block);
    put32(&mut b, 0x148, (f.journal_size >> 32) as u32);
    put32(&mut b, 0x14C, f.journal_size as u32);
    put16(&mut b, 0x15C, crate::inode::EXTRA_ISIZE);
    put16(&mut b, 0x15E, crate::inode::EXTRA_ISIZE);
    put32(&mut b, 0x160, 0x0002); // s_flags: unsigned directory hash
    b[0x174] = LOG_GROUPS_PER_FLEX;
    put32(&mut b, 0x268, crate::superblock::FIRST_INO); // s_lpf_ino: lost+found
    b[0x274] = time_hi; // s_wtime_hi
    b[0x276] = time_hi; // s_mkfs_time_hi
    b[0x277] = time_hi; // s_lastcheck_hi
    b
}

/// One group's descriptor fields, each the width of its on-disk field: a 32-byte descriptor
/// (no `64bit`) has no `_hi` halves (`struct ext2_group_desc`, `lib/ext2fs/ext2_fs.h`). Block
/// numbers stay below 2^32 ([`crate::limits::MAX_BLOCKS`]) and a group holds at most 32,768
/// blocks and 32,768 inodes, so every count fits 16 bits.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupDesc {
    /// Block bitmap location.
    pub block_bitmap: u32,
    /// Inode bitmap location.
    pub inode_bitmap: u32,
    /// First inode table block.
    pub inode_table: u32,
    /// Free blocks in the group (`bg_free_blocks_count_lo`).
    pub free_blocks: u16,
    /// Free inodes in the group (`bg_free_inodes_count_lo`).
    pub free_inodes: u16,
    /// Directories in the group (`bg_used_dirs_count_lo`).
    pub used_dirs: u16,
}

/// Encodes one 32-byte group descriptor.
pub fn encode_group_desc(d: &GroupDesc) -> [u8; GROUP_DESC_SIZE] {
    let mut b = [0u8; GROUP_DESC_SIZE];
    b[0..4].copy_from_slice(&d.block_bitmap.to_le_bytes());
    b[4..8].copy_from_slice(&d.inode_bitmap.to_le_bytes());
    b[8..12].copy_from_slice(&d.inode_table.to_le_bytes());
    b[12..14].copy_from_slice(&d.free_blocks.to_le_bytes());
    b[14..16].copy_from_slice(&d.free_inodes.to_le_bytes());
    b[16..18].copy_from_slice(&d.used_dirs.to_le_bytes());
    b
}

/// The jbd2 superblock (version 2) of an empty, clean internal journal of `blocks` blocks.
#[allow(clippy::cast_possible_truncation)]
pub fn encode_journal_super(blocks: u32, uuid: &[u8; 16]) -> Vec<u8> {
    let mut b = vec![0u8; crate::BLOCK_SIZE as usize];
    let put = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    put(&mut b, 0x00, 0xC03B_3998); // h_magic
    put(&mut b, 0x04, 4); // h_blocktype: superblock v2
    put(&mut b, 0x08, 1); // h_sequence
    put(&mut b, 0x0C, crate::BLOCK_SIZE as u32);
    put(&mut b, 0x10, blocks); // s_maxlen
    put(&mut b, 0x14, 1); // s_first
    put(&mut b, 0x18, 1); // s_sequence
    put(&mut b, 0x1C, 0); // s_start: 0 means clean, nothing to replay
    b[0x30..0x40].copy_from_slice(uuid);
    put(&mut b, 0x40, 1); // s_nr_users
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(time: u64) -> SuperFields {
        SuperFields {
            inodes: 0,
            blocks: 0,
            free_blocks: 0,
            free_inodes: 0,
            inodes_per_group: 0,
            time,
            uuid: [0; 16],
            label: Vec::new(),
            hash_seed: [0; 16],
            journal_block: [0; 60],
            journal_size: 0,
        }
    }

    /// A 16 TiB filesystem with backups past group 65,535 is more than a test writes: the
    /// encoding alone, at the boundary.
    #[test]
    fn backup_group_numbers_stop_at_65535() {
        let nr = |g: u32| {
            let b = encode_super(&fields(0), g);
            u16::from_le_bytes([b[0x5A], b[0x5B]])
        };
        assert_eq!(nr(65_535), 65_535);
        // 5^7 = 78,125: the first sparse_super backup past the field (a 9.5 TiB filesystem).
        assert!(has_super(78_125));
        assert_eq!(nr(78_125), 65_535);
    }

    #[test]
    fn times_past_2106_use_the_hi_bytes() {
        let b = encode_super(&fields(crate::limits::TIMESTAMP_MAX.unsigned_abs()), 0);
        // 15,032,385,535 = 3 << 32 | 0x7FFF_FFFF.
        assert_eq!(u32::from_le_bytes(b[0x30..0x34].try_into().unwrap()), 0x7FFF_FFFF);
        assert_eq!((b[0x274], b[0x275], b[0x276], b[0x277]), (3, 0, 3, 3));
        assert_eq!(u32::from_le_bytes(b[0x108..0x10C].try_into().unwrap()), 0x7FFF_FFFF);
    }

    #[test]
    fn sparse_super_groups() {
        let with: Vec<u64> = (0..100).filter(|&g| has_super(g)).collect();
        assert_eq!(with, [0, 1, 3, 5, 7, 9, 25, 27, 49, 81]);
    }
}
