//! The sequential block allocator of [`super::placer`], and the mapping of a file's or
//! directory's blocks as ext4 extents with the extent-tree blocks above them (kernel
//! `Documentation/filesystems/ext4/ifork.rst`, "Extent Tree";
//! e2fsprogs `lib/ext2fs/ext3_extents.h`).

use super::{Content, Placement};
use crate::inode::{Extent, MAX_EXTENT_LEN, build_extent_tree, tree_blocks_needed};
use crate::limits;

/// Sequential block allocator that steps around reserved ranges.
pub(super) struct Allocator {
    /// The first block not yet handed out.
    pub(super) next: u64,
    /// The number of blocks in the filesystem.
    pub(super) limit: u64,
    /// Ranges never handed out (superblock and descriptor copies), sorted.
    pub(super) reserved: Vec<(u64, u64)>,
    /// Ranges in use, in the order they were handed out.
    pub(super) used: Vec<(u64, u64)>,
}

impl Allocator {
    /// Records blocks `start..start + n` as used, extending the last range when they follow
    /// it (as nearly all do): one range for a run of small files, not one each.
    pub(super) fn mark(&mut self, start: u64, n: u64) {
        match self.used.last_mut() {
            Some((s, l)) if *s + *l == start => *l += n,
            _ => self.used.push((start, n)),
        }
    }

    /// `n` contiguous blocks, or `None` past the limit.
    pub(super) fn contiguous(&mut self, n: u64) -> Option<u64> {
        loop {
            let start = self.next;
            let end = start + n;
            if let Some(&(rs, rl)) =
                self.reserved.iter().find(|&&(rs, rl)| rs < end && start < rs + rl)
            {
                self.next = rs + rl;
                continue;
            }
            if end > self.limit {
                self.next = end;
                return None;
            }
            self.next = end;
            if n > 0 {
                self.mark(start, n);
            }
            return Some(start);
        }
    }

    /// [`Allocator::contiguous`], or how far placement got when `n` blocks do not fit.
    pub(super) fn take(&mut self, n: u64) -> Result<u64, Placement> {
        self.contiguous(n).ok_or(Placement::TooSmall(self.next))
    }

    /// [`Allocator::extents`], or how far placement got when `n` blocks do not fit.
    pub(super) fn take_extents(&mut self, n: u64) -> Result<Vec<(u64, u64)>, Placement> {
        self.extents(n).ok_or(Placement::TooSmall(self.next))
    }

    /// `n` blocks as extents of at most [`MAX_EXTENT_LEN`], split around reserved ranges.
    pub(super) fn extents(&mut self, n: u64) -> Option<Vec<(u64, u64)>> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut left = n;
        while left > 0 {
            let start = self.next;
            // Reserved ranges are sorted; find the first one that ends after `start`.
            let room = match self.reserved.iter().find(|&&(rs, rl)| rs + rl > start) {
                Some(&(rs, rl)) if rs <= start => {
                    self.next = rs + rl;
                    continue;
                }
                Some(&(rs, _)) => rs - start,
                None => u64::MAX,
            };
            let take = left.min(room).min(MAX_EXTENT_LEN);
            if start + take > self.limit {
                self.next = start + take;
                return None;
            }
            self.mark(start, take);
            match out.last_mut() {
                Some((s, l)) if *s + *l == start && *l + take <= MAX_EXTENT_LEN => *l += take,
                _ => out.push((start, take)),
            }
            self.next = start + take;
            left -= take;
        }
        Some(out)
    }
}

/// Maps `runs` (a file's or directory's blocks, in logical order) as extents, and places the
/// blocks of the extent tree above them next. Returns the extents, the inode's `i_block` and
/// the number of tree blocks. The caller keeps a file within [`limits::MAX_FILE_SIZE`] and a
/// directory within [`limits::MAX_DIR_BLOCKS`], so every logical block fits the 32-bit
/// `ee_block`; runs are at most [`MAX_EXTENT_LEN`] blocks.
pub(super) fn map_runs(
    alloc: &mut Allocator,
    regions: &mut Vec<(u64, u64, Content)>,
    runs: &[(u64, u64)],
    path: impl FnOnce() -> String,
) -> Result<(Vec<Extent>, [u8; 60], u64), Placement> {
    let mut logical = 0u64;
    let mut extents = Vec::with_capacity(runs.len());
    for &(start, len) in runs {
        extents.push(Extent {
            logical: u32::try_from(logical).expect("logical blocks below 2^32"),
            start,
            len: u32::try_from(len).expect("at most 32768 blocks an extent"),
        });
        logical += len;
    }
    limits::check_extents(extents.len() as u64, path)?;
    let tree_n = tree_blocks_needed(extents.len());
    let tree_runs = if tree_n > 0 {
        alloc.extents(tree_n).ok_or(Placement::TooSmall(alloc.next))?
    } else {
        Vec::new()
    };
    let tree_blocks: Vec<u64> = tree_runs.iter().flat_map(|&(s, l)| s..s + l).collect();
    let (root, tree) = build_extent_tree(&extents, &tree_blocks);
    for (at, data) in tree {
        regions.push((at, 1, Content::Bytes(data.into())));
    }
    Ok((extents, root, tree_n))
}
