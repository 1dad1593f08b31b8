//! The first stage of planning, done once whatever the size: inode numbers (root 2, lost+found
//! 11, the rest from 12 in breadth-first order; the reserved numbers are those of the kernel's
//! `Documentation/filesystems/ext4/special_inodes.rst`), directory sizes and encoded extended
//! attributes, with everything ext4 cannot hold refused before a block is placed.

use std::collections::VecDeque;

use super::LOST_FOUND_BLOCKS;
use crate::dir;
use crate::limits;
use crate::superblock::{FIRST_INO, ROOT_INO};
use crate::{Error, FsBuilder, InodeId, NodeKind};

/// Per-inode facts gathered before placement: 24 bytes an inode, as there may be millions.
pub(super) struct Prepared {
    /// Builder node, or [`ADDED`] for the lost+found we add.
    pub(super) node: u32,
    pub(super) ino: u32,
    pub(super) parent_ino: u32,
    /// Blocks of a directory's entries (at most [`limits::MAX_DIR_BLOCKS`]); 0 for the rest.
    pub(super) dir_blocks: u32,
    /// Encoded extended attributes, when there are any.
    xattrs: Option<Box<crate::xattr::EncodedXattrs>>,
}

/// [`Prepared::node`] of the lost+found we add.
pub(super) const ADDED: u32 = u32::MAX;

impl Prepared {
    /// The builder node, or `None` for the lost+found we add.
    pub(super) fn node(&self) -> Option<usize> {
        (self.node != ADDED).then_some(self.node as usize)
    }

    pub(super) fn xattr_inline(&self) -> &[u8] {
        self.xattrs.as_ref().map_or(&[], |x| &x.in_inode)
    }

    pub(super) fn xattr_block(&self) -> Option<&Vec<u8>> {
        self.xattrs.as_ref().and_then(|x| x.block.as_ref())
    }
}

/// Numbers inodes breadth-first from the root (2), with lost+found as 11 and the rest from
/// 12, sizes directories and encodes xattrs, refusing what does not fit.
pub(super) fn prepare(b: &FsBuilder) -> Result<Vec<Prepared>, Error> {
    let root = b.root();
    let lost_found = b
        .entries(root.0 as usize)
        .find(|&(name, id)| name == b"lost+found" && *b.kind(id) == NodeKind::Dir)
        .map(|(_, id)| id);
    let mut numbers = vec![0u32; b.nodes.len()];
    let mut parents = vec![0u32; b.nodes.len()];
    numbers[0] = ROOT_INO;
    parents[0] = ROOT_INO;
    let mut next = FIRST_INO + 1;
    let mut queue = VecDeque::from([0usize]);
    let mut order = vec![0usize];
    while let Some(dir) = queue.pop_front() {
        for (_, child) in b.entries(dir) {
            let c = child.0 as usize;
            if numbers[c] != 0 {
                continue; // a further name of an inode already numbered
            }
            numbers[c] = if Some(child) == lost_found {
                FIRST_INO
            } else {
                let n = next;
                next = next
                    .checked_add(1)
                    .ok_or(Error::TooManyInodes { count: 1 << 32, max: limits::MAX_INODES })?;
                n
            };
            order.push(c);
            if b.nodes[c].kind == NodeKind::Dir {
                parents[c] = numbers[dir];
                queue.push_back(c);
            }
        }
    }
    if numbers.contains(&0) {
        return Err(Error::BadLink("an inode was added but never linked into the tree"));
    }
    let synthetic_lost_found = lost_found.is_none();
    let mut prepared = Vec::with_capacity(order.len() + 1);
    if synthetic_lost_found {
        prepared.push(Prepared {
            node: ADDED,
            ino: FIRST_INO,
            parent_ino: ROOT_INO,
            dir_blocks: u32::try_from(LOST_FOUND_BLOCKS).expect("four blocks"),
            xattrs: None,
        });
    }
    for idx in order {
        let node = &b.nodes[idx];
        let path = || b.path_of(InodeId(u32::try_from(idx).expect("fewer than 2^32 inodes")));
        let mut dir_blocks = 0;
        if node.kind == NodeKind::Dir {
            // The root also names the lost+found we add (first, as `place` renders it).
            let added = idx == 0 && synthetic_lost_found;
            let lost_found_name = added.then_some(b"lost+found".len());
            let names = lost_found_name.into_iter().chain(b.entries(idx).map(|(n, _)| n.len()));
            let min_blocks = if numbers[idx] == FIRST_INO { LOST_FOUND_BLOCKS } else { 1 };
            dir_blocks = dir::blocks_needed(names).max(min_blocks);
            limits::check_dir_blocks(dir_blocks, path)?;
            if added {
                limits::check_subdirs(u64::from(node.subdirs) + 1, path)?;
            }
        }
        let enc =
            crate::xattr::encode(&node.attrs.xattrs, crate::BLOCK_BYTES).map_err(|e| match e {
                crate::xattr::XattrError::TooLarge(size) => {
                    Error::XattrTooLarge { path: path(), size, max: crate::BLOCK_BYTES }
                }
                crate::xattr::XattrError::Invalid(name, reason) => {
                    Error::InvalidXattr { path: path(), name, reason }
                }
            })?;
        let xattrs = (!enc.in_inode.is_empty() || enc.block.is_some()).then(|| Box::new(enc));
        prepared.push(Prepared {
            node: u32::try_from(idx).expect("fewer than 2^32 inodes"),
            ino: numbers[idx],
            parent_ino: parents[idx],
            // At most `limits::MAX_DIR_BLOCKS` (checked above).
            dir_blocks: u32::try_from(dir_blocks).expect("checked"),
            xattrs,
        });
    }
    prepared.sort_by_key(|p| p.ino);
    Ok(prepared)
}
