//! Geometry and block placement: turns an [`FsBuilder`] into a [`Plan`].
//!
//! Placement is sequential from block 0, skipping the superblock and descriptor copies that
//! `sparse_super` puts in groups 0, 1 and the powers of 3, 5 and 7. With `flex_bg` the bitmaps
//! and inode tables of all groups may sit anywhere, so they are packed after group 0's
//! descriptors, like mke2fs does for a flex group. Then come the journal, each directory's
//! blocks, slow symlink and xattr blocks, lost+found, and finally file data in data-key order,
//! each file's extent-tree blocks right after its data. Everything is planned before a byte is
//! written, so the image can be produced front to back.
//!
//! With a data zone ([`crate::zone`]) the files already written there keep their blocks, and
//! placement starts after the zone instead: bitmaps, inode tables and the rest follow the data.
//!
//! The work is split by stage: [`prepare`](mod@prepare) numbers the inodes and sizes what must be refused
//! early, [`placer`] places the blocks of one candidate size stage by stage, and [`alloc`] is
//! the sequential block allocator both lean on.

mod alloc;
mod placer;
mod prepare;
#[cfg(test)]
mod tests;

use crate::dir;
use crate::inode::{Extent, InodeFields};
use crate::limits;
use crate::superblock::{GroupDesc, SuperFields};
use crate::{BLOCK_SIZE, Error, Ext4Options, FsBuilder, InodeId, NodeKind, SIZE_ALIGN};

use placer::place;
use prepare::{Prepared, prepare};

const INODES_PER_BLOCK: u64 = BLOCK_SIZE / crate::inode::INODE_SIZE as u64;
/// One inode per 16 KiB of space at least, mke2fs's default `inode_ratio` for ext4.
const INODE_RATIO: u64 = 16_384;
/// Blocks of a fresh lost+found (16 KiB), so e2fsck can reconnect files without allocating.
const LOST_FOUND_BLOCKS: u64 = 4;
const BLOCKS_PER_ALIGN: u64 = SIZE_ALIGN / BLOCK_SIZE;

/// A metadata region: blocks whose content the writer renders.
#[derive(Debug)]
pub(crate) enum Content {
    Superblock(u32),
    Gdt,
    BlockBitmap(u32),
    InodeBitmap(u32),
    InodeTable(u32),
    /// Pre-rendered blocks (symlink targets, xattr and extent-tree blocks, the journal
    /// superblock).
    Bytes(Box<[u8]>),
    /// Blocks `from..` of directory `dir` of [`Plan::dirs`], rendered when written.
    Dir {
        dir: u32,
        from: u64,
    },
}

/// A file's data placement.
#[derive(Debug)]
pub(crate) struct FilePlacement {
    pub id: InodeId,
    /// Written into the data zone by the caller before planning: the writer skips it.
    pub in_zone: bool,
    pub size: u64,
    pub extents: Extents,
}

/// A file's extents, held inline when there is one, as for nearly every file.
#[derive(Debug)]
pub(crate) enum Extents {
    One([Extent; 1]),
    Many(Box<[Extent]>),
}

impl From<Vec<Extent>> for Extents {
    fn from(extents: Vec<Extent>) -> Self {
        match extents[..] {
            [one] => Extents::One([one]),
            _ => Extents::Many(extents.into_boxed_slice()),
        }
    }
}

impl std::ops::Deref for Extents {
    type Target = [Extent];

    fn deref(&self) -> &[Extent] {
        match self {
            Extents::One(one) => one,
            Extents::Many(many) => many,
        }
    }
}

/// A fully planned filesystem: every block placed, every metadata block renderable.
pub struct Plan {
    pub(crate) blocks: u64,
    pub(crate) inodes_per_group: u32,
    pub(crate) groups: u32,
    pub(crate) descs: Vec<GroupDesc>,
    pub(crate) sb: SuperFields,
    /// Metadata regions sorted by start block: (start, length in blocks, content).
    pub(crate) regions: Vec<(u64, u64, Content)>,
    /// Files in the order their data must be supplied.
    pub(crate) files: Vec<FilePlacement>,
    /// Inode records by inode number − 1, up to the last used inode (`None`: unused); encoded
    /// when their inode table block is rendered, so the plan does not hold both forms.
    pub(crate) inodes: Vec<Option<InodeFields>>,
    /// Used block ranges, sorted and merged, for the block bitmaps.
    pub(crate) used: Vec<(u64, u64)>,
    /// Every directory's entries, rendered into blocks only as they are written.
    pub(crate) dirs: dir::Listings,
    /// The first block after the data zone, or 0 without one.
    pub(crate) zone_end: u64,
}

impl Plan {
    /// Size of the image in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.blocks * BLOCK_SIZE
    }

    /// The files whose data the writer needs, in the order it needs them, with their sizes
    /// (not those in the data zone, which are in place already).
    pub fn file_order(&self) -> impl Iterator<Item = (InodeId, u64)> + '_ {
        self.files.iter().filter(|f| !f.in_zone).map(|f| (f.id, f.size))
    }

    /// The sizes of all regular files, those in the data zone included.
    pub fn file_sizes(&self) -> impl Iterator<Item = u64> + '_ {
        self.files.iter().map(|f| f.size)
    }

    /// The first block after the data zone, or 0 when planned without one.
    pub fn zone_end(&self) -> u64 {
        self.zone_end
    }

    /// Number of block groups.
    pub fn groups(&self) -> u32 {
        self.groups
    }

    /// Inodes in use, including the reserved ones.
    pub fn inodes_used(&self) -> u64 {
        self.inodes.len() as u64
    }

    /// Blocks in use.
    pub fn blocks_used(&self) -> u64 {
        self.used.iter().map(|(_, len)| len).sum()
    }
}

/// Journal size for a filesystem of `blocks` blocks, following mke2fs's defaults.
fn journal_blocks(blocks: u64) -> u64 {
    match blocks {
        0..32_768 => 1024,
        32_768..262_144 => 4096,
        262_144..524_288 => 8192,
        _ => 16_384,
    }
}

impl FsBuilder {
    /// Chooses the geometry and places every block. With `opts.size` unset, the size is the
    /// content plus a fifth (at least 16 MiB) of headroom, rounded up to 2 MiB.
    ///
    /// Refuses, before placing anything, what ext4 cannot hold ([`crate::limits`]): a directory
    /// over 2 GiB ([`Error::DirectoryTooLarge`]), a root with more than 64,998 subdirectories
    /// once lost+found is counted ([`Error::TooManySubdirectories`]), attributes that do not
    /// fit ([`Error::XattrTooLarge`], [`Error::InvalidXattr`]), more than 2^32 − 1 blocks or
    /// inodes ([`Error::TooManyBlocks`], [`Error::TooManyInodes`]) and a build time past 2446
    /// ([`Error::TimestampOutOfRange`]).
    pub fn plan(&self, opts: &Ext4Options) -> Result<Plan, Error> {
        self.plan_from(opts, 0)
    }

    /// Like [`FsBuilder::plan`], for a tree some of whose files were written into `zone`
    /// already ([`FsBuilder::set_zone_data`]): they keep their blocks, the rest is placed
    /// after the zone, and blocks of the zone no file holds are free space (the caller makes
    /// them read as zeros). The whole zone counts as content when sizing. Fails with
    /// [`Error::TooLarge`] if the filesystem needs more than 128 groups (16 GiB), which the
    /// zone leaves no room for.
    pub fn plan_with_zone(
        &self,
        opts: &Ext4Options,
        zone: &crate::DataZone,
    ) -> Result<Plan, Error> {
        self.plan_from(opts, zone.end())
    }

    fn plan_from(&self, opts: &Ext4Options, zone_end: u64) -> Result<Plan, Error> {
        if opts.label.len() > 16 {
            return Err(Error::InvalidOption(format!(
                "label {:?} is longer than 16 bytes",
                opts.label
            )));
        }
        limits::check_build_time(opts.timestamp)?;
        let prepared = prepare(self)?;
        match opts.size {
            Some(size) => {
                if size % BLOCK_SIZE != 0 || size == 0 {
                    return Err(Error::InvalidOption(format!(
                        "size {size} is not a positive multiple of 4096"
                    )));
                }
                limits::check_blocks(size / BLOCK_SIZE)?;
                match place(self, &prepared, opts, size / BLOCK_SIZE, zone_end) {
                    Ok(plan) => Ok(plan),
                    Err(Placement::TooSmall(_)) => {
                        let needed = smallest(self, &prepared, opts, 0, zone_end)?.size_bytes();
                        Err(Error::TooSmall { given: size, needed })
                    }
                    Err(Placement::Fatal(e)) => Err(e),
                }
            }
            None => smallest(self, &prepared, opts, 1, zone_end),
        }
    }
}

#[derive(Debug)]
enum Placement {
    /// Ran out of room after placing this many blocks.
    TooSmall(u64),
    Fatal(Error),
}

impl From<Error> for Placement {
    fn from(e: Error) -> Self {
        Placement::Fatal(e)
    }
}

/// The smallest 2 MiB-aligned plan that fits, with `headroom` (0 or 1) adding a fifth.
fn smallest(
    b: &FsBuilder,
    prepared: &[Prepared],
    opts: &Ext4Options,
    headroom: u64,
    zone_end: u64,
) -> Result<Plan, Error> {
    let content: u64 = content_blocks(b, prepared) + zone_end;
    let extra = if headroom > 0 { (content / 5).max(16 << 20 >> 12) } else { 0 };
    let mut blocks = (content + extra + journal_blocks(content) + 64).div_ceil(BLOCKS_PER_ALIGN)
        * BLOCKS_PER_ALIGN;
    loop {
        match place(b, prepared, opts, blocks, zone_end) {
            Ok(plan) => return Ok(plan),
            Err(Placement::TooSmall(reached)) => {
                let next = (reached + extra).div_ceil(BLOCKS_PER_ALIGN) * BLOCKS_PER_ALIGN;
                blocks = next.max(blocks + BLOCKS_PER_ALIGN);
            }
            Err(Placement::Fatal(e)) => return Err(e),
        }
        limits::check_blocks(blocks)?;
    }
}

/// Data, directory, symlink and xattr blocks outside the data zone: a lower bound on what
/// placement needs after it.
fn content_blocks(b: &FsBuilder, prepared: &[Prepared]) -> u64 {
    let mut total = LOST_FOUND_BLOCKS;
    for p in prepared {
        let Some(idx) = p.node() else { continue };
        let node = &b.nodes[idx];
        let in_zone = b.zone_file(idx).is_some();
        total += match &node.kind {
            NodeKind::File { .. } if in_zone => 0,
            NodeKind::File { size, .. } => size.div_ceil(BLOCK_SIZE),
            NodeKind::Dir => u64::from(p.dir_blocks),
            NodeKind::Symlink(t) if t.len() >= 60 => 1,
            _ => 0,
        } + u64::from(p.xattr_block().is_some());
    }
    total
}

/// The path of builder node `idx`, for messages.
fn node_path(b: &FsBuilder, idx: usize) -> String {
    b.path_of(InodeId(u32::try_from(idx).expect("fewer than 2^32 inodes")))
}
