//! The data zone: blocks for file data handed out before the tree is complete, so that a
//! single pass over a layer can write each file's bytes straight into the image.
//!
//! The zone starts right after group 0's superblock and descriptor block and grows in the
//! order files arrive, stepping over the backup superblock and descriptors that
//! `sparse_super` puts in groups 1 and the powers of 3, 5 and 7 (Linux
//! `Documentation/filesystems/ext4/overview.rst`, "Block Groups" and "Flexible Block Groups").
//! With `flex_bg` the bitmaps and inode tables may sit anywhere, so
//! [`crate::FsBuilder::plan_with_zone`] places them, and everything else, after the zone.
//!
//! The zone assumes one descriptor block, as every filesystem of at most 128 groups (16 GiB)
//! has; planning a larger one with a zone fails, and the caller writes it the two-pass way.

use crate::inode::MAX_EXTENT_LEN;
use crate::superblock::{BLOCKS_PER_GROUP, has_super};
use crate::{BLOCK_SIZE, Error};

/// Descriptor blocks the zone leaves room for after each superblock copy.
pub(crate) const ZONE_GDT_BLOCKS: u64 = 1;
/// The first block of the zone: after group 0's superblock and descriptor block.
pub(crate) const ZONE_START: u64 = 1 + ZONE_GDT_BLOCKS;

/// Allocates file data blocks in arrival order, before the tree is planned.
#[derive(Debug, Clone)]
pub struct DataZone {
    next: u64,
}

impl Default for DataZone {
    fn default() -> Self {
        DataZone { next: ZONE_START }
    }
}

/// Where one file's data lies in the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneFile {
    pub(crate) size: u64,
    /// `(first block, blocks)`, in file order.
    runs: Runs,
}

/// A file's runs, held inline when there is one, as for nearly every file: a quarter of a
/// million small files would otherwise keep a quarter of a million allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Runs {
    One([(u64, u64); 1]),
    Many(Box<[(u64, u64)]>),
}

impl ZoneFile {
    /// The file's length in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The runs of blocks holding the data, in file order: `(first block, blocks)`. The last
    /// block's bytes past [`ZoneFile::size`] must read as zeros.
    pub fn runs(&self) -> &[(u64, u64)] {
        match &self.runs {
            Runs::One(one) => one,
            Runs::Many(many) => many,
        }
    }

    /// Where byte `offset` of the file lies in the image, in bytes.
    pub fn position(&self, offset: u64) -> Option<u64> {
        let mut block = offset / BLOCK_SIZE;
        for &(start, len) in self.runs() {
            if block < len {
                return Some((start + block) * BLOCK_SIZE + offset % BLOCK_SIZE);
            }
            block -= len;
        }
        None
    }
}

impl DataZone {
    /// An empty zone.
    pub fn new() -> Self {
        DataZone::default()
    }

    /// Blocks for a file of `size` bytes, after those of every file allocated before. Fails with
    /// [`Error::TooManyBlocks`] past 2^32 − 1 blocks.
    pub fn allocate(&mut self, size: u64) -> Result<ZoneFile, Error> {
        let mut left = size.div_ceil(BLOCK_SIZE);
        let mut runs: Vec<(u64, u64)> = Vec::new();
        while left > 0 {
            let group = self.next / BLOCKS_PER_GROUP;
            let group_start = group * BLOCKS_PER_GROUP;
            let reserved_end = group_start + 1 + ZONE_GDT_BLOCKS;
            if group > 0 && has_super(group) && self.next < reserved_end {
                self.next = reserved_end;
                continue;
            }
            // Up to the next group's first block, where a backup may sit.
            let room = group_start + BLOCKS_PER_GROUP - self.next;
            let take = left.min(room).min(MAX_EXTENT_LEN);
            crate::limits::check_blocks(self.next + take)?;
            match runs.last_mut() {
                Some((s, l)) if *s + *l == self.next && *l + take <= MAX_EXTENT_LEN => *l += take,
                _ => runs.push((self.next, take)),
            }
            self.next += take;
            left -= take;
        }
        let runs = match runs[..] {
            [one] => Runs::One([one]),
            _ => Runs::Many(runs.into_boxed_slice()),
        };
        Ok(ZoneFile { size, runs })
    }

    /// The first block after the zone.
    pub fn end(&self) -> u64 {
        self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_follow_each_other_and_step_over_backups() {
        let mut zone = DataZone::new();
        let a = zone.allocate(10).unwrap();
        assert_eq!(a.runs(), &[(ZONE_START, 1)]);
        let empty = zone.allocate(0).unwrap();
        assert!(empty.runs().is_empty());
        // From block 3 to past group 1's backup superblock and descriptor block.
        let b = zone.allocate((BLOCKS_PER_GROUP + 100) * BLOCK_SIZE).unwrap();
        let first = BLOCKS_PER_GROUP - 3;
        assert_eq!(b.runs(), &[(3, first), (BLOCKS_PER_GROUP + 2, BLOCKS_PER_GROUP + 100 - first)]);
        assert_eq!(b.position(0), Some(3 * BLOCK_SIZE));
        assert_eq!(
            b.position(first * BLOCK_SIZE + 5),
            Some((BLOCKS_PER_GROUP + 2) * BLOCK_SIZE + 5)
        );
        assert_eq!(b.position(b.size()), None);
        // Group 2 has no backup: runs merge across the boundary, up to the extent limit.
        let c = zone.allocate(3 * BLOCKS_PER_GROUP * BLOCK_SIZE).unwrap();
        assert!(c.runs().iter().all(|&(_, l)| l <= MAX_EXTENT_LEN));
        assert!(c.runs().iter().all(|&(s, l)| {
            (s..s + l).all(|blk| {
                let g = blk / BLOCKS_PER_GROUP;
                !(g > 0 && has_super(g) && blk - g * BLOCKS_PER_GROUP < 2)
            })
        }));
        assert_eq!(c.runs().iter().map(|r| r.1).sum::<u64>(), 3 * BLOCKS_PER_GROUP);
        assert_eq!(zone.end(), c.runs().last().map(|&(s, l)| s + l).unwrap());
    }
}
