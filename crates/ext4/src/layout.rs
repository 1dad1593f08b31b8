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

use std::collections::VecDeque;

use crate::dir::{self, file_type};
use crate::inode::{
    EXTENTS_FL, Extent, InodeFields, MAX_EXTENT_LEN, build_extent_tree, tree_blocks_needed,
};
use crate::limits;
use crate::superblock::{
    BLOCKS_PER_GROUP, FIRST_INO, GROUP_DESC_SIZE, GroupDesc, JOURNAL_INO, ROOT_INO, SuperFields,
    has_super,
};
use crate::tree::Node;
use crate::{BLOCK_SIZE, Error, Ext4Options, FsBuilder, InodeId, NodeKind, SIZE_ALIGN, Timestamp};

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

/// Sequential block allocator that steps around reserved ranges.
struct Allocator {
    next: u64,
    limit: u64,
    reserved: Vec<(u64, u64)>,
    used: Vec<(u64, u64)>,
}

impl Allocator {
    /// Records blocks `start..start + n` as used, extending the last range when they follow
    /// it (as nearly all do): one range for a run of small files, not one each.
    fn mark(&mut self, start: u64, n: u64) {
        match self.used.last_mut() {
            Some((s, l)) if *s + *l == start => *l += n,
            _ => self.used.push((start, n)),
        }
    }

    /// `n` contiguous blocks, or `None` past the limit.
    fn contiguous(&mut self, n: u64) -> Option<u64> {
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

    /// `n` blocks as extents of at most [`MAX_EXTENT_LEN`], split around reserved ranges.
    fn extents(&mut self, n: u64) -> Option<Vec<(u64, u64)>> {
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

/// Journal size for a filesystem of `blocks` blocks, following mke2fs's defaults.
fn journal_blocks(blocks: u64) -> u64 {
    match blocks {
        0..32_768 => 1024,
        32_768..262_144 => 4096,
        262_144..524_288 => 8192,
        _ => 16_384,
    }
}

fn mode_and_type(kind: &NodeKind) -> (u16, u8) {
    match kind {
        NodeKind::Dir => (0o040_000, file_type::DIR),
        NodeKind::File { .. } => (0o100_000, file_type::REG),
        NodeKind::Symlink(_) => (0o120_000, file_type::SYMLINK),
        NodeKind::CharDev { .. } => (0o020_000, file_type::CHR),
        NodeKind::BlockDev { .. } => (0o060_000, file_type::BLK),
        NodeKind::Fifo => (0o010_000, file_type::FIFO),
        NodeKind::Socket => (0o140_000, file_type::SOCK),
    }
}

/// The kernel's device number encoding in `i_block` (`ext4_inode` via `old_encode_dev` /
/// `new_encode_dev`).
fn encode_dev(major: u32, minor: u32) -> [u8; 60] {
    let mut block = [0u8; 60];
    if major < 256 && minor < 256 {
        block[0..4].copy_from_slice(&((major << 8) | minor).to_le_bytes());
    } else {
        let dev = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
        block[4..8].copy_from_slice(&dev.to_le_bytes());
    }
    block
}

/// Per-inode facts gathered before placement: 24 bytes an inode, as there may be millions.
struct Prepared {
    /// Builder node, or [`ADDED`] for the lost+found we add.
    node: u32,
    ino: u32,
    parent_ino: u32,
    /// Blocks of a directory's entries (at most [`limits::MAX_DIR_BLOCKS`]); 0 for the rest.
    dir_blocks: u32,
    /// Encoded extended attributes, when there are any.
    xattrs: Option<Box<crate::xattr::EncodedXattrs>>,
}

/// [`Prepared::node`] of the lost+found we add.
const ADDED: u32 = u32::MAX;

impl Prepared {
    /// The builder node, or `None` for the lost+found we add.
    fn node(&self) -> Option<usize> {
        (self.node != ADDED).then_some(self.node as usize)
    }

    fn xattr_inline(&self) -> &[u8] {
        self.xattrs.as_ref().map_or(&[], |x| &x.in_inode)
    }

    fn xattr_block(&self) -> Option<&Vec<u8>> {
        self.xattrs.as_ref().and_then(|x| x.block.as_ref())
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

/// Numbers inodes breadth-first from the root (2), with lost+found as 11 and the rest from
/// 12, sizes directories and encodes xattrs, refusing what does not fit.
fn prepare(b: &FsBuilder) -> Result<Vec<Prepared>, Error> {
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

/// Places everything in a filesystem of `blocks` blocks.
#[allow(clippy::too_many_lines)]
fn place(
    b: &FsBuilder,
    prepared: &[Prepared],
    opts: &Ext4Options,
    mut blocks: u64,
    zone_end: u64,
) -> Result<Plan, Placement> {
    let mut groups = blocks.div_ceil(BLOCKS_PER_GROUP);
    let gdt_blocks = (groups * GROUP_DESC_SIZE as u64).div_ceil(BLOCK_SIZE);
    // A last group too small for its own backup superblock and descriptors is dropped.
    let last = blocks - (groups - 1) * BLOCKS_PER_GROUP;
    if groups > 1 && has_super(groups - 1) && last <= 1 + gdt_blocks + 16 {
        groups -= 1;
        blocks = groups * BLOCKS_PER_GROUP;
    }
    limits::check_blocks(blocks)?;
    let used_inodes = u64::from(prepared.last().map_or(FIRST_INO, |p| p.ino));
    let wanted = (used_inodes + used_inodes / 10 + 16).max(blocks * BLOCK_SIZE / INODE_RATIO);
    let inodes_per_group = wanted.div_ceil(groups).div_ceil(INODES_PER_BLOCK) * INODES_PER_BLOCK;
    // One inode bitmap block per group: at most 8 × 4096 inodes (the kernel's
    // `ext4_fill_super()` refuses more per group). A larger filesystem has more groups.
    if inodes_per_group > BLOCKS_PER_GROUP {
        return Err(Placement::TooSmall(blocks + BLOCKS_PER_GROUP));
    }
    limits::check_inodes(inodes_per_group * groups)?;
    let itable_blocks = inodes_per_group / INODES_PER_BLOCK;

    let mut regions: Vec<(u64, u64, Content)> = Vec::new();
    let mut reserved = Vec::new();
    for g in 0..groups {
        if has_super(g) {
            let start = g * BLOCKS_PER_GROUP;
            reserved.push((start, 1 + gdt_blocks));
            #[allow(clippy::cast_possible_truncation)]
            {
                regions.push((start, 1, Content::Superblock(g as u32)));
                regions.push((start + 1, gdt_blocks, Content::Gdt));
            }
        }
    }
    if zone_end > 0 {
        if gdt_blocks > crate::zone::ZONE_GDT_BLOCKS {
            return Err(Error::TooLarge(format!(
                "{groups} block groups: a data zone leaves room for at most {} (16 GiB)",
                crate::zone::ZONE_GDT_BLOCKS * BLOCK_SIZE / GROUP_DESC_SIZE as u64
            ))
            .into());
        }
        if zone_end >= blocks {
            return Err(Placement::TooSmall(zone_end + BLOCKS_PER_ALIGN));
        }
    }
    // Placement starts after the zone; its files' blocks are in use, the rest of it free.
    let mut alloc =
        Allocator { next: zone_end, limit: blocks, reserved: reserved.clone(), used: reserved };
    let too_small = |a: &Allocator| Placement::TooSmall(a.next);
    let mut descs = vec![GroupDesc::default(); usize::try_from(groups).expect("groups fit")];
    // Block numbers stay below 2^32 (checked above), so the 32-bit descriptor fields hold them.
    let low32 = |v: u64| u32::try_from(v).expect("below 2^32");
    for (g, desc) in descs.iter_mut().enumerate() {
        let at = alloc.contiguous(1).ok_or_else(|| too_small(&alloc))?;
        desc.block_bitmap = low32(at);
        regions.push((at, 1, Content::BlockBitmap(low32(g as u64))));
    }
    for (g, desc) in descs.iter_mut().enumerate() {
        let at = alloc.contiguous(1).ok_or_else(|| too_small(&alloc))?;
        desc.inode_bitmap = low32(at);
        regions.push((at, 1, Content::InodeBitmap(low32(g as u64))));
    }
    for (g, desc) in descs.iter_mut().enumerate() {
        let at = alloc.contiguous(itable_blocks).ok_or_else(|| too_small(&alloc))?;
        desc.inode_table = low32(at);
        regions.push((at, itable_blocks, Content::InodeTable(low32(g as u64))));
    }
    let jblocks = journal_blocks(blocks);
    let jstart = alloc.contiguous(jblocks).ok_or_else(|| too_small(&alloc))?;
    #[allow(clippy::cast_possible_truncation)]
    regions.push((
        jstart,
        1,
        Content::Bytes(crate::superblock::encode_journal_super(jblocks as u32, &opts.uuid).into()),
    ));

    // At most `limits::TIMESTAMP_MAX` (checked by `plan_from`).
    let time = Timestamp::from_secs(i64::try_from(opts.timestamp).expect("checked"));
    let mut fields: Vec<Option<InodeFields>> =
        vec![None; usize::try_from(used_inodes).expect("fits")];
    let mut dirs_per_group = vec![0u64; descs.len()];
    let (journal_root, _) = build_extent_tree(
        &[Extent { logical: 0, start: jstart, len: u32::try_from(jblocks).expect("fits") }],
        &[],
    );
    fields[(JOURNAL_INO - 1) as usize] = Some(InodeFields {
        mode: 0o100_600,
        size: jblocks * BLOCK_SIZE,
        atime: time.into(),
        ctime: time.into(),
        mtime: time.into(),
        links: 1,
        sectors: jblocks * (BLOCK_SIZE / 512),
        flags: EXTENTS_FL,
        block: journal_root,
        ..InodeFields::default()
    });

    // Directories, symlinks and xattr blocks, in inode order.
    let ino_by_node: Vec<u32> = {
        let mut v = vec![0u32; b.nodes.len()];
        for p in prepared {
            if let Some(idx) = p.node() {
                v[idx] = p.ino;
            }
        }
        v
    };
    // lost+found is ours to add when the tree has none.
    let synthetic_lost_found = prepared.iter().any(|q| q.node == ADDED);
    // (data key, node, index in `prepared`)
    let mut pending_files: Vec<(u64, u32, u32)> = Vec::new();
    let mut dirs = dir::Listings::default();
    for (pi, p) in prepared.iter().enumerate() {
        let node: Option<&Node> = p.node().map(|idx| &b.nodes[idx]);
        let (perm, uid, gid, atime, mtime, ctime) = match node {
            Some(n) => {
                let a = &n.attrs;
                (a.perm, a.uid, a.gid, a.atime, a.mtime, a.ctime)
            }
            None => (0o700, 0, 0, time.into(), time.into(), time.into()),
        };
        let kind = node.map_or(&NodeKind::Dir, |n| &n.kind);
        let (type_bits, _) = mode_and_type(kind);
        let mut f = InodeFields {
            mode: type_bits | (perm & 0o7777),
            uid,
            gid,
            atime,
            ctime,
            mtime,
            // At most 65,000 names: `FsBuilder::link` refuses the next one.
            links: u16::try_from(node.map_or(1, |n| n.links)).expect("at most 65,000 links"),
            xattrs: p.xattr_inline().into(),
            ..InodeFields::default()
        };
        let mut sectors = 0u64;
        if let Some(xblock) = p.xattr_block() {
            let at = alloc.contiguous(1).ok_or_else(|| too_small(&alloc))?;
            regions.push((at, 1, Content::Bytes(xblock.as_slice().into())));
            f.file_acl = at;
            sectors += BLOCK_SIZE / 512;
        }
        match kind {
            NodeKind::Dir => {
                // The lost+found we add comes first in the root, as `prepare` sized it.
                let added = (p.ino == ROOT_INO && synthetic_lost_found).then_some((
                    &b"lost+found"[..],
                    FIRST_INO,
                    file_type::DIR,
                ));
                let named =
                    p.node().into_iter().flat_map(|idx| b.entries(idx)).map(|(name, child)| {
                        let (_, ft) = mode_and_type(&b.nodes[child.0 as usize].kind);
                        (name, ino_by_node[child.0 as usize], ft)
                    });
                let min_blocks = if p.ino == FIRST_INO { LOST_FOUND_BLOCKS } else { 1 };
                let listing =
                    dirs.push((p.ino, p.parent_ino), added.into_iter().chain(named), min_blocks);
                let n = u64::from(p.dir_blocks);
                // Like a file's data: extents of at most 32,768 blocks around the reserved
                // ranges, with an extent tree when there are more than four.
                let runs = alloc.extents(n).ok_or_else(|| too_small(&alloc))?;
                let path = || p.node().map_or_else(|| "/lost+found".into(), |i| node_path(b, i));
                let (_, root, tree_n) = map_runs(&mut alloc, &mut regions, &runs, path)?;
                let mut from = 0;
                for &(start, len) in &runs {
                    regions.push((start, len, Content::Dir { dir: listing, from }));
                    from += len;
                }
                // `.`, the name in the parent, and each subdirectory's `..`: exact, at most
                // 65,000 (checked by `FsBuilder::link`, and for the root by `prepare`).
                let subdirs = node.map_or(0, |n| n.subdirs)
                    + u32::from(p.ino == ROOT_INO && synthetic_lost_found);
                let links = 2 + u64::from(subdirs);
                debug_assert!(links <= u64::from(limits::LINK_MAX), "{links} directory links");
                f.links = u16::try_from(links).expect("at most 65,000 links");
                f.size = n * BLOCK_SIZE;
                f.flags = EXTENTS_FL;
                f.block = root;
                sectors += (n + tree_n) * (BLOCK_SIZE / 512);
                let group = (p.ino - 1) as usize / usize::try_from(inodes_per_group).expect("fits");
                dirs_per_group[group] += 1;
            }
            NodeKind::File { size, data_key } => {
                f.size = *size;
                f.flags = EXTENTS_FL;
                let idx = u32::try_from(pi).expect("fewer than 2^32 inodes");
                pending_files.push((*data_key, p.node, idx));
            }
            NodeKind::Symlink(target) => {
                f.size = target.len() as u64;
                // 1..=4095 bytes without NUL, checked by `FsBuilder::link`: fast (in `i_block`)
                // below 60 bytes, else in one block.
                debug_assert!((1..=limits::MAX_SYMLINK_LEN).contains(&target.len()));
                if target.len() < 60 {
                    f.block[..target.len()].copy_from_slice(target);
                } else {
                    let at = alloc.contiguous(1).ok_or_else(|| too_small(&alloc))?;
                    let mut data = target.clone();
                    data.resize(crate::BLOCK_BYTES, 0);
                    regions.push((at, 1, Content::Bytes(data.into())));
                    f.flags = EXTENTS_FL;
                    let (root, _) =
                        build_extent_tree(&[Extent { logical: 0, start: at, len: 1 }], &[]);
                    f.block = root;
                    sectors += BLOCK_SIZE / 512;
                }
            }
            NodeKind::CharDev { major, minor } | NodeKind::BlockDev { major, minor } => {
                f.block = encode_dev(*major, *minor);
            }
            NodeKind::Fifo | NodeKind::Socket => {}
        }
        f.sectors = sectors;
        fields[(p.ino - 1) as usize] = Some(f);
    }

    // File data in data-key order, each file's extent-tree blocks right behind it.
    pending_files.sort_by_key(|&(key, node, _)| (key, node));
    let mut files = Vec::with_capacity(pending_files.len());
    for (_, node, pi) in pending_files {
        let (node, pi) = (node as usize, pi as usize);
        let NodeKind::File { size, .. } = b.nodes[node].kind else {
            unreachable!("only files are pending")
        };
        let n = size.div_ceil(BLOCK_SIZE);
        let zoned = b.zone_file(node);
        let runs = match zoned {
            Some(placed) => {
                check_zone_runs(placed, n, zone_end)?;
                for &(start, n) in placed.runs() {
                    alloc.mark(start, n);
                }
                placed.runs().to_vec()
            }
            None => alloc.extents(n).ok_or_else(|| too_small(&alloc))?,
        };
        let (extents, root, tree_n) =
            map_runs(&mut alloc, &mut regions, &runs, || node_path(b, node))?;
        let ino = prepared[pi].ino;
        let f = fields[(ino - 1) as usize].as_mut().expect("file inode prepared");
        f.block = root;
        f.sectors += (n + tree_n) * (BLOCK_SIZE / 512);
        files.push(FilePlacement {
            id: InodeId(u32::try_from(node).expect("fits")),
            in_zone: zoned.is_some(),
            size,
            extents: extents.into(),
        });
    }

    // Bitmaps and counts.
    let mut used = alloc.used;
    used.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(used.len());
    for (s, l) in used {
        match merged.last_mut() {
            Some((ms, ml)) if *ms + *ml >= s => *ml = (*ml).max(s + l - *ms),
            _ => merged.push((s, l)),
        }
    }
    let mut free_blocks_total = 0u64;
    for (g, desc) in descs.iter_mut().enumerate() {
        let gs = g as u64 * BLOCKS_PER_GROUP;
        let ge = (gs + BLOCKS_PER_GROUP).min(blocks);
        let used_here: u64 =
            merged.iter().map(|&(s, l)| (s + l).min(ge).saturating_sub(s.max(gs))).sum();
        let free = ge - gs - used_here;
        // The 16-bit descriptor counts hold a group's worth: at most 32,768 blocks and
        // `inodes_per_group` (at most 32,768) inodes and directories.
        desc.free_blocks = u16::try_from(free).expect("at most 32768 blocks a group");
        free_blocks_total += free;
        let first_ino = g as u64 * inodes_per_group + 1;
        let used_ino = used_inodes.saturating_sub(first_ino - 1).min(inodes_per_group);
        desc.free_inodes =
            u16::try_from(inodes_per_group - used_ino).expect("at most 32768 inodes a group");
        desc.used_dirs = u16::try_from(dirs_per_group[g]).expect("at most 32768 inodes a group");
    }
    let inodes_total = inodes_per_group * groups;
    let journal_fields = fields[(JOURNAL_INO - 1) as usize].as_ref().expect("journal set");
    let sb = SuperFields {
        inodes: u32::try_from(inodes_total).expect("checked"),
        blocks: u32::try_from(blocks).expect("checked"),
        free_blocks: u32::try_from(free_blocks_total).expect("fits"),
        free_inodes: u32::try_from(inodes_total - used_inodes).expect("fits"),
        inodes_per_group: u32::try_from(inodes_per_group).expect("fits"),
        time: opts.timestamp,
        uuid: opts.uuid,
        label: opts.label.as_bytes().to_vec(),
        hash_seed: opts.hash_seed,
        journal_block: journal_fields.block,
        journal_size: journal_fields.size,
    };
    regions.sort_by_key(|r| r.0);
    Ok(Plan {
        blocks,
        inodes_per_group: u32::try_from(inodes_per_group).expect("fits"),
        groups: u32::try_from(groups).expect("fits"),
        descs,
        sb,
        regions,
        files,
        inodes: fields,
        used: merged,
        dirs,
        zone_end,
    })
}

/// The path of builder node `idx`, for messages.
fn node_path(b: &FsBuilder, idx: usize) -> String {
    b.path_of(InodeId(u32::try_from(idx).expect("fewer than 2^32 inodes")))
}

/// Maps `runs` (a file's or directory's blocks, in logical order) as extents, and places the
/// blocks of the extent tree above them next. Returns the extents, the inode's `i_block` and
/// the number of tree blocks. The caller keeps a file within [`limits::MAX_FILE_SIZE`] and a
/// directory within [`limits::MAX_DIR_BLOCKS`], so every logical block fits the 32-bit
/// `ee_block`; runs are at most [`MAX_EXTENT_LEN`] blocks.
fn map_runs(
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

/// Checks that a zone file's runs hold its `blocks` and lie inside the zone, clear of the
/// superblock copies.
fn check_zone_runs(placed: &crate::ZoneFile, blocks: u64, zone_end: u64) -> Result<(), Error> {
    let total: u64 = placed.runs().iter().map(|r| r.1).sum();
    let inside = placed.runs().iter().all(|&(start, len)| {
        start >= crate::zone::ZONE_START
            && start + len <= zone_end
            && (1..=MAX_EXTENT_LEN).contains(&len)
            && (start / BLOCKS_PER_GROUP..=(start + len - 1) / BLOCKS_PER_GROUP).all(|g| {
                let first = g * BLOCKS_PER_GROUP;
                let reserved = first..first + 1 + crate::zone::ZONE_GDT_BLOCKS;
                !has_super(g) || start >= reserved.end || start + len <= reserved.start
            })
    });
    if total != blocks || !inside {
        return Err(Error::Data(format!(
            "zone placement of {} bytes does not match the zone it came from",
            placed.size
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allocator(reserved: Vec<(u64, u64)>) -> Allocator {
        Allocator { next: 0, limit: 1 << 20, used: reserved.clone(), reserved }
    }

    /// A directory of 32,769 blocks (128 MiB of entries, more than a test should render) is
    /// mapped as a file of that size is: two extents, neither longer than 32,768 blocks.
    #[test]
    fn runs_longer_than_an_extent_are_split() {
        let mut alloc = allocator(Vec::new());
        let runs = alloc.extents(32_769).unwrap();
        assert_eq!(runs, [(0, 32_768), (32_768, 1)]);
        let mut regions = Vec::new();
        let (extents, root, tree_n) =
            map_runs(&mut alloc, &mut regions, &runs, || unreachable!()).unwrap();
        assert_eq!(tree_n, 0);
        assert!(regions.is_empty());
        assert_eq!(
            extents.iter().map(|e| (e.logical, e.len)).collect::<Vec<_>>(),
            [(0, 32_768), (32_768, 1)]
        );
        // Two entries in the inode's extent header, depth 0.
        assert_eq!(u16::from_le_bytes([root[2], root[3]]), 2);
        assert_eq!(u16::from_le_bytes([root[6], root[7]]), 0);
    }

    /// Five runs need a tree block, placed after them and counted.
    #[test]
    fn five_runs_get_an_extent_tree_block() {
        let reserved: Vec<(u64, u64)> = (1..5).map(|i| (i * 10, 1)).collect();
        let mut alloc = allocator(reserved);
        let runs = alloc.extents(45).unwrap();
        assert_eq!(runs.len(), 5);
        let mut regions = Vec::new();
        let (_, root, tree_n) =
            map_runs(&mut alloc, &mut regions, &runs, || unreachable!()).unwrap();
        assert_eq!(tree_n, 1);
        assert_eq!(regions.len(), 1);
        assert_eq!(regions[0].0, 49, "right after the data");
        assert_eq!(u16::from_le_bytes([root[6], root[7]]), 1, "depth 1");
    }
}
