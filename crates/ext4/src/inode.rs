//! Inode records (256 bytes, `struct ext2_inode_large`) and extent trees
//! (`ext3_extents.h`: 12-byte header, 12-byte leaf extents and index entries).

use crate::Timestamp;

/// Size of every inode record.
pub const INODE_SIZE: usize = 256;
/// Bytes of fields after the 128-byte base inode (`i_extra_isize`).
pub const EXTRA_ISIZE: u16 = 32;
/// `i_flags`: the inode maps its data with extents.
pub const EXTENTS_FL: u32 = 0x0008_0000;
pub use crate::limits::MAX_EXTENT_LEN;
const EXTENT_MAGIC: u16 = 0xF30A;
/// Entries that fit in the inode's `i_block` (60 bytes) after the header.
const ROOT_ENTRIES: usize = 4;
/// Entries that fit in one tree block after the header: (4096 − 12) / 12.
#[allow(clippy::cast_possible_truncation)]
const BLOCK_ENTRIES: usize = (crate::BLOCK_BYTES - 12) / 12;

/// A run of physically contiguous blocks holding logical blocks `logical..logical + len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First logical block.
    pub logical: u32,
    /// First physical block.
    pub start: u64,
    /// Length in blocks, at most [`MAX_EXTENT_LEN`].
    pub len: u32,
}

/// Extra blocks an extent tree over `extents` entries needs.
pub fn tree_blocks_needed(extents: usize) -> u64 {
    let mut total = 0u64;
    let mut level = extents;
    while level > ROOT_ENTRIES {
        level = level.div_ceil(BLOCK_ENTRIES);
        total += level as u64;
    }
    total
}

fn header(entries: usize, max: usize, depth: u16) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0..2].copy_from_slice(&EXTENT_MAGIC.to_le_bytes());
    h[2..4].copy_from_slice(&u16::try_from(entries).expect("entries fit").to_le_bytes());
    h[4..6].copy_from_slice(&u16::try_from(max).expect("max fits").to_le_bytes());
    h[6..8].copy_from_slice(&depth.to_le_bytes());
    h
}

/// A 12-byte leaf extent or index entry, keyed by its first logical block.
///
/// # Panics
///
/// If a leaf's length is 0 or past [`MAX_EXTENT_LEN`] (a longer `ee_len` would mark the extent
/// unwritten): placement never makes one.
#[allow(clippy::cast_possible_truncation)]
fn entry(logical: u32, physical: u64, len: Option<u32>) -> (u32, [u8; 12]) {
    let mut e = [0u8; 12];
    e[0..4].copy_from_slice(&logical.to_le_bytes());
    if let Some(len) = len {
        assert!(
            len > 0 && u64::from(len) <= MAX_EXTENT_LEN,
            "extent of {len} blocks: placement keeps extents to 1..=32768 blocks"
        );
        e[4..6].copy_from_slice(&(len as u16).to_le_bytes());
        e[6..8].copy_from_slice(&((physical >> 32) as u16).to_le_bytes());
        e[8..12].copy_from_slice(&(physical as u32).to_le_bytes());
    } else {
        e[4..8].copy_from_slice(&(physical as u32).to_le_bytes());
        e[8..10].copy_from_slice(&((physical >> 32) as u16).to_le_bytes());
    }
    (logical, e)
}

/// Builds the extent tree for `extents` using `tree_blocks` (exactly
/// [`tree_blocks_needed`] of them) for its non-root nodes. Returns the inode's 60-byte
/// `i_block` and the tree blocks' contents.
pub fn build_extent_tree(
    extents: &[Extent],
    tree_blocks: &[u64],
) -> ([u8; 60], Vec<(u64, Vec<u8>)>) {
    let mut level: Vec<(u32, [u8; 12])> =
        extents.iter().map(|e| entry(e.logical, e.start, Some(e.len))).collect();
    let mut depth = 0u16;
    let mut blocks = Vec::new();
    let mut next_block = tree_blocks.iter().copied();
    while level.len() > ROOT_ENTRIES {
        let mut parents = Vec::new();
        for chunk in level.chunks(BLOCK_ENTRIES) {
            let physical = next_block.next().expect("enough tree blocks");
            let mut block = Vec::with_capacity(crate::BLOCK_BYTES);
            block.extend_from_slice(&header(chunk.len(), BLOCK_ENTRIES, depth));
            for (_, e) in chunk {
                block.extend_from_slice(e);
            }
            block.resize(crate::BLOCK_BYTES, 0);
            blocks.push((physical, block));
            parents.push(entry(chunk[0].0, physical, None));
        }
        level = parents;
        depth += 1;
    }
    let mut root = [0u8; 60];
    root[..12].copy_from_slice(&header(level.len(), ROOT_ENTRIES, depth));
    for (i, (_, e)) in level.iter().enumerate() {
        root[12 + 12 * i..24 + 12 * i].copy_from_slice(e);
    }
    (root, blocks)
}

/// A time as an inode stores it: the low 32 bits of the seconds, and the `extra` field
/// (nanoseconds and epoch bits; [`Timestamp::encode`]). Eight bytes, not sixteen: a plan holds
/// three for every inode until it is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InodeTime(u32, u32);

impl From<Timestamp> for InodeTime {
    fn from(t: Timestamp) -> Self {
        let (low, extra) = t.encode();
        InodeTime(low, extra)
    }
}

/// Everything that goes into one inode record. Every field fits its on-disk field: layout
/// checks the values against [`crate::limits`] first. The creation time is the change time.
#[derive(Debug, Clone)]
pub struct InodeFields {
    /// Type and permission bits.
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Access time.
    pub atime: InodeTime,
    /// Change time, and creation time.
    pub ctime: InodeTime,
    /// Modification time.
    pub mtime: InodeTime,
    /// Hard link count (at most [`crate::limits::LINK_MAX`]).
    pub links: u16,
    /// Blocks used, in 512-byte units.
    pub sectors: u64,
    /// `i_flags`.
    pub flags: u32,
    /// `i_block`: extent root, fast symlink target, or device number.
    pub block: [u8; 60],
    /// Extended attribute block, or 0.
    pub file_acl: u64,
    /// In-inode extended attributes (at most 96 bytes), or empty.
    pub xattrs: Box<[u8]>,
}

impl Default for InodeFields {
    fn default() -> Self {
        InodeFields {
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            atime: InodeTime::default(),
            ctime: InodeTime::default(),
            mtime: InodeTime::default(),
            links: 0,
            sectors: 0,
            flags: 0,
            block: [0; 60],
            file_acl: 0,
            xattrs: Box::default(),
        }
    }
}

/// Encodes a 256-byte inode record.
#[allow(clippy::cast_possible_truncation)]
pub fn encode_inode(f: &InodeFields) -> [u8; INODE_SIZE] {
    let mut b = [0u8; INODE_SIZE];
    let put16 = |b: &mut [u8; INODE_SIZE], at: usize, v: u16| {
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    };
    let put32 = |b: &mut [u8; INODE_SIZE], at: usize, v: u32| {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    };
    let InodeTime(atime, atime_x) = f.atime;
    let InodeTime(ctime, ctime_x) = f.ctime;
    let InodeTime(mtime, mtime_x) = f.mtime;
    let (born, born_x) = (ctime, ctime_x);
    put16(&mut b, 0x00, f.mode);
    put16(&mut b, 0x02, f.uid as u16);
    put32(&mut b, 0x04, f.size as u32);
    put32(&mut b, 0x08, atime);
    put32(&mut b, 0x0C, ctime);
    put32(&mut b, 0x10, mtime);
    put16(&mut b, 0x18, f.gid as u16);
    put16(&mut b, 0x1A, f.links);
    put32(&mut b, 0x1C, f.sectors as u32);
    put32(&mut b, 0x20, f.flags);
    b[0x28..0x64].copy_from_slice(&f.block);
    put32(&mut b, 0x68, f.file_acl as u32);
    put32(&mut b, 0x6C, (f.size >> 32) as u32);
    put16(&mut b, 0x74, (f.sectors >> 32) as u16);
    put16(&mut b, 0x76, (f.file_acl >> 32) as u16);
    put16(&mut b, 0x78, (f.uid >> 16) as u16);
    put16(&mut b, 0x7A, (f.gid >> 16) as u16);
    put16(&mut b, 0x80, EXTRA_ISIZE);
    put32(&mut b, 0x84, ctime_x);
    put32(&mut b, 0x88, mtime_x);
    put32(&mut b, 0x8C, atime_x);
    put32(&mut b, 0x90, born);
    put32(&mut b, 0x94, born_x);
    b[0xA0..0xA0 + f.xattrs.len()].copy_from_slice(&f.xattrs);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extents(n: u32) -> Vec<Extent> {
        (0..n)
            .map(|i| Extent { logical: i * 10, start: u64::from(i) * 20 + 1000, len: 10 })
            .collect()
    }

    #[test]
    fn small_files_keep_extents_in_the_inode() {
        assert_eq!(tree_blocks_needed(4), 0);
        let (root, blocks) = build_extent_tree(&extents(3), &[]);
        assert!(blocks.is_empty());
        assert_eq!(u16::from_le_bytes([root[2], root[3]]), 3);
        assert_eq!(u16::from_le_bytes([root[6], root[7]]), 0);
        assert_eq!(u32::from_le_bytes(root[12 + 24 + 8..12 + 24 + 12].try_into().unwrap()), 1040);
    }

    #[test]
    fn many_extents_build_deeper_trees() {
        assert_eq!(tree_blocks_needed(5), 1);
        assert_eq!(tree_blocks_needed(340 * 4), 4);
        assert_eq!(tree_blocks_needed(340 * 4 + 1), 5 + 1);
        let n = 340 * 4 + 1;
        let tree: Vec<u64> = (0..tree_blocks_needed(n as usize)).map(|i| 50 + i).collect();
        let (root, blocks) = build_extent_tree(&extents(n), &tree);
        assert_eq!(blocks.len(), 6);
        assert_eq!(u16::from_le_bytes([root[6], root[7]]), 2, "depth 2");
        assert_eq!(u16::from_le_bytes([root[2], root[3]]), 1);
        // The last leaf holds the one extent past 4 × 340.
        let last_leaf = &blocks[4].1;
        assert_eq!(u16::from_le_bytes([last_leaf[2], last_leaf[3]]), 1);
    }

    #[test]
    fn inode_fields_land_at_their_offsets() {
        let f = InodeFields {
            mode: 0o100_644,
            uid: 0x1_0002,
            size: 0x1_0000_0003,
            links: 2,
            flags: EXTENTS_FL,
            ..InodeFields::default()
        };
        let b = encode_inode(&f);
        assert_eq!(u16::from_le_bytes([b[0], b[1]]), 0o100_644);
        assert_eq!(u16::from_le_bytes([b[2], b[3]]), 2);
        assert_eq!(u16::from_le_bytes([b[0x78], b[0x79]]), 1);
        assert_eq!(u32::from_le_bytes(b[0x6C..0x70].try_into().unwrap()), 1);
        assert_eq!(u16::from_le_bytes([b[0x80], b[0x81]]), 32);
    }
}
