//! Placing every block of a filesystem of one candidate size, stage by stage in the order of
//! the module note of [`super`]: the geometry (groups, inodes per group, superblock and
//! descriptor copies), the bitmaps and inode tables of all groups packed as one flex group, the
//! journal, every inode's record with the blocks of directories, slow symlinks and xattr
//! blocks, file data in data-key order, and last the free counts.
//!
//! Group layout: the kernel's `Documentation/filesystems/ext4/overview.rst` ("Block Groups" and
//! "Flexible Block Groups"); the sizes mke2fs chooses are e2fsprogs'
//! `misc/mke2fs.c` and `lib/ext2fs/initialize.c`.

use super::alloc::{Allocator, map_runs};
use super::prepare::{ADDED, Prepared};
use super::{
    BLOCKS_PER_ALIGN, Content, FilePlacement, INODE_RATIO, INODES_PER_BLOCK, LOST_FOUND_BLOCKS,
    Placement, Plan, journal_blocks, node_path,
};
use crate::dir::{self, file_type};
use crate::inode::{EXTENTS_FL, Extent, InodeFields, MAX_EXTENT_LEN, build_extent_tree};
use crate::limits;
use crate::superblock::{
    BLOCKS_PER_GROUP, FIRST_INO, GROUP_DESC_SIZE, GroupDesc, JOURNAL_INO, ROOT_INO, SuperFields,
    has_super,
};
use crate::tree::Node;
use crate::{BLOCK_SIZE, Error, Ext4Options, FsBuilder, InodeId, NodeKind, Timestamp};

/// Places everything in a filesystem of `blocks` blocks.
pub(super) fn place(
    b: &FsBuilder,
    prepared: &[Prepared],
    opts: &Ext4Options,
    blocks: u64,
    zone_end: u64,
) -> Result<Plan, Placement> {
    let mut placer = Placer::new(b, prepared, opts, blocks, zone_end)?;
    placer.group_metadata()?;
    placer.journal()?;
    placer.inodes()?;
    placer.file_data()?;
    Ok(placer.finish())
}

/// The sizes of a candidate filesystem.
struct Geometry {
    /// Blocks in the filesystem: those asked for, less a last group too small to keep.
    blocks: u64,
    groups: u64,
    /// Blocks of group descriptors after each superblock copy.
    gdt_blocks: u64,
    /// Inodes up to the last one used, the reserved ones included.
    used_inodes: u64,
    inodes_per_group: u64,
    /// Blocks of each group's inode table.
    itable_blocks: u64,
}

impl Geometry {
    /// The geometry of `blocks` blocks holding the `prepared` inodes, or how far it fell short.
    fn new(prepared: &[Prepared], mut blocks: u64) -> Result<Self, Placement> {
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
        let inodes_per_group =
            wanted.div_ceil(groups).div_ceil(INODES_PER_BLOCK) * INODES_PER_BLOCK;
        // One inode bitmap block per group: at most 8 × 4096 inodes (the kernel's
        // `ext4_fill_super()` refuses more per group). A larger filesystem has more groups.
        if inodes_per_group > BLOCKS_PER_GROUP {
            return Err(Placement::TooSmall(blocks + BLOCKS_PER_GROUP));
        }
        limits::check_inodes(inodes_per_group * groups)?;
        Ok(Geometry {
            blocks,
            groups,
            gdt_blocks,
            used_inodes,
            inodes_per_group,
            itable_blocks: inodes_per_group / INODES_PER_BLOCK,
        })
    }

    /// The superblock and descriptor copies `sparse_super` puts in groups 0, 1 and the powers
    /// of 3, 5 and 7: their regions, and the same ranges to keep the allocator off them.
    #[allow(clippy::type_complexity)]
    fn super_copies(&self) -> (Vec<(u64, u64, Content)>, Vec<(u64, u64)>) {
        let mut regions = Vec::new();
        let mut reserved = Vec::new();
        for g in 0..self.groups {
            if has_super(g) {
                let start = g * BLOCKS_PER_GROUP;
                reserved.push((start, 1 + self.gdt_blocks));
                #[allow(clippy::cast_possible_truncation)]
                {
                    regions.push((start, 1, Content::Superblock(g as u32)));
                    regions.push((start + 1, self.gdt_blocks, Content::Gdt));
                }
            }
        }
        (regions, reserved)
    }

    /// Refuses a data zone ending at `zone_end` that this geometry cannot keep: more
    /// descriptor blocks than the zone left room for, or no blocks after it.
    fn check_zone(&self, zone_end: u64) -> Result<(), Placement> {
        if zone_end > 0 {
            if self.gdt_blocks > crate::zone::ZONE_GDT_BLOCKS {
                return Err(Error::TooLarge(format!(
                    "{} block groups: a data zone leaves room for at most {} (16 GiB)",
                    self.groups,
                    crate::zone::ZONE_GDT_BLOCKS * BLOCK_SIZE / GROUP_DESC_SIZE as u64
                ))
                .into());
            }
            if zone_end >= self.blocks {
                return Err(Placement::TooSmall(zone_end + BLOCKS_PER_ALIGN));
            }
        }
        Ok(())
    }
}

/// The placement of one candidate filesystem, built up stage by stage by [`place`].
struct Placer<'a> {
    b: &'a FsBuilder,
    prepared: &'a [Prepared],
    opts: &'a Ext4Options,
    /// The first block after the data zone, or 0 without one.
    zone_end: u64,
    geo: Geometry,
    /// The build time, for the inodes we add (the journal and a missing lost+found).
    time: Timestamp,
    alloc: Allocator,
    /// Metadata regions, in the order they were placed.
    regions: Vec<(u64, u64, Content)>,
    descs: Vec<GroupDesc>,
    /// Inode records by inode number − 1, from the journal stage on.
    fields: Vec<Option<InodeFields>>,
    dirs_per_group: Vec<u64>,
    dirs: dir::Listings,
    /// Files waiting for their data blocks: (data key, node, index in `prepared`).
    pending_files: Vec<(u64, u32, u32)>,
    /// Files with their data placed, in data-key order.
    files: Vec<FilePlacement>,
}

impl<'a> Placer<'a> {
    /// The geometry, and the superblock and descriptor copies reserved; placement starts
    /// after the data zone, whose files' blocks are in use and the rest of it free.
    fn new(
        b: &'a FsBuilder,
        prepared: &'a [Prepared],
        opts: &'a Ext4Options,
        blocks: u64,
        zone_end: u64,
    ) -> Result<Self, Placement> {
        let geo = Geometry::new(prepared, blocks)?;
        let (regions, reserved) = geo.super_copies();
        geo.check_zone(zone_end)?;
        let alloc = Allocator {
            next: zone_end,
            limit: geo.blocks,
            reserved: reserved.clone(),
            used: reserved,
        };
        let groups = usize::try_from(geo.groups).expect("groups fit");
        Ok(Placer {
            b,
            prepared,
            opts,
            zone_end,
            // At most `limits::TIMESTAMP_MAX` (checked by `plan_from`).
            time: Timestamp::from_secs(i64::try_from(opts.timestamp).expect("checked")),
            geo,
            alloc,
            regions,
            descs: vec![GroupDesc::default(); groups],
            fields: Vec::new(),
            dirs_per_group: vec![0u64; groups],
            dirs: dir::Listings::default(),
            pending_files: Vec::new(),
            files: Vec::new(),
        })
    }

    /// The block bitmaps, then the inode bitmaps, then the inode tables of all groups, packed
    /// one after the other as mke2fs does for a flex group.
    fn group_metadata(&mut self) -> Result<(), Placement> {
        // Block numbers stay below 2^32 (checked by `Geometry::new`), so the 32-bit descriptor
        // fields hold them.
        let low32 = |v: u64| u32::try_from(v).expect("below 2^32");
        for (g, desc) in self.descs.iter_mut().enumerate() {
            let at = self.alloc.take(1)?;
            desc.block_bitmap = low32(at);
            self.regions.push((at, 1, Content::BlockBitmap(low32(g as u64))));
        }
        for (g, desc) in self.descs.iter_mut().enumerate() {
            let at = self.alloc.take(1)?;
            desc.inode_bitmap = low32(at);
            self.regions.push((at, 1, Content::InodeBitmap(low32(g as u64))));
        }
        let itable_blocks = self.geo.itable_blocks;
        for (g, desc) in self.descs.iter_mut().enumerate() {
            let at = self.alloc.take(itable_blocks)?;
            desc.inode_table = low32(at);
            self.regions.push((at, itable_blocks, Content::InodeTable(low32(g as u64))));
        }
        Ok(())
    }

    /// The journal's blocks and superblock, and its inode, the first of the inode records.
    fn journal(&mut self) -> Result<(), Placement> {
        let jblocks = journal_blocks(self.geo.blocks);
        let jstart = self.alloc.take(jblocks)?;
        #[allow(clippy::cast_possible_truncation)]
        let jsb = crate::superblock::encode_journal_super(jblocks as u32, &self.opts.uuid);
        self.regions.push((jstart, 1, Content::Bytes(jsb.into())));

        self.fields = vec![None; usize::try_from(self.geo.used_inodes).expect("fits")];
        let (journal_root, _) = build_extent_tree(
            &[Extent { logical: 0, start: jstart, len: u32::try_from(jblocks).expect("fits") }],
            &[],
        );
        let time = self.time;
        self.fields[(JOURNAL_INO - 1) as usize] = Some(InodeFields {
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
        Ok(())
    }

    /// Every inode's record, in inode order, with the blocks of directories, slow symlinks and
    /// xattr blocks; regular files wait for [`Placer::file_data`].
    fn inodes(&mut self) -> Result<(), Placement> {
        let prepared = self.prepared;
        let mut ino_by_node = vec![0u32; self.b.nodes.len()];
        for p in prepared {
            if let Some(idx) = p.node() {
                ino_by_node[idx] = p.ino;
            }
        }
        // lost+found is ours to add when the tree has none.
        let synthetic_lost_found = prepared.iter().any(|q| q.node == ADDED);
        for (pi, p) in prepared.iter().enumerate() {
            let f = self.inode(pi, p, &ino_by_node, synthetic_lost_found)?;
            self.fields[(p.ino - 1) as usize] = Some(f);
        }
        Ok(())
    }

    /// The record of `prepared[pi]`, placing its xattr block and what it holds besides file
    /// data.
    fn inode(
        &mut self,
        pi: usize,
        p: &Prepared,
        ino_by_node: &[u32],
        synthetic_lost_found: bool,
    ) -> Result<InodeFields, Placement> {
        let b = self.b;
        let node: Option<&Node> = p.node().map(|idx| &b.nodes[idx]);
        let time = self.time;
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
        if let Some(xblock) = p.xattr_block() {
            let at = self.alloc.take(1)?;
            self.regions.push((at, 1, Content::Bytes(xblock.as_slice().into())));
            f.file_acl = at;
            f.sectors += BLOCK_SIZE / 512;
        }
        match kind {
            NodeKind::Dir => {
                self.directory(p, node, &mut f, ino_by_node, synthetic_lost_found)?;
            }
            NodeKind::File { size, data_key } => {
                f.size = *size;
                f.flags = EXTENTS_FL;
                let idx = u32::try_from(pi).expect("fewer than 2^32 inodes");
                self.pending_files.push((*data_key, p.node, idx));
            }
            NodeKind::Symlink(target) => self.symlink(target, &mut f)?,
            NodeKind::CharDev { major, minor } | NodeKind::BlockDev { major, minor } => {
                f.block = encode_dev(*major, *minor);
            }
            NodeKind::Fifo | NodeKind::Socket => {}
        }
        Ok(f)
    }

    /// A directory's entries (rendered into its blocks only when written), its blocks and
    /// extent tree, and its link count.
    fn directory(
        &mut self,
        p: &Prepared,
        node: Option<&Node>,
        f: &mut InodeFields,
        ino_by_node: &[u32],
        synthetic_lost_found: bool,
    ) -> Result<(), Placement> {
        let b = self.b;
        // The lost+found we add comes first in the root, as `prepare` sized it.
        let added = (p.ino == ROOT_INO && synthetic_lost_found).then_some((
            &b"lost+found"[..],
            FIRST_INO,
            file_type::DIR,
        ));
        let named = p.node().into_iter().flat_map(|idx| b.entries(idx)).map(|(name, child)| {
            let (_, ft) = mode_and_type(&b.nodes[child.0 as usize].kind);
            (name, ino_by_node[child.0 as usize], ft)
        });
        let min_blocks = if p.ino == FIRST_INO { LOST_FOUND_BLOCKS } else { 1 };
        let listing =
            self.dirs.push((p.ino, p.parent_ino), added.into_iter().chain(named), min_blocks);
        let n = u64::from(p.dir_blocks);
        // Like a file's data: extents of at most 32,768 blocks around the reserved ranges, with
        // an extent tree when there are more than four.
        let runs = self.alloc.take_extents(n)?;
        let path = || p.node().map_or_else(|| "/lost+found".into(), |i| node_path(b, i));
        let (_, root, tree_n) = map_runs(&mut self.alloc, &mut self.regions, &runs, path)?;
        let mut from = 0;
        for &(start, len) in &runs {
            self.regions.push((start, len, Content::Dir { dir: listing, from }));
            from += len;
        }
        // `.`, the name in the parent, and each subdirectory's `..`: exact, at most 65,000
        // (checked by `FsBuilder::link`, and for the root by `prepare`).
        let subdirs =
            node.map_or(0, |n| n.subdirs) + u32::from(p.ino == ROOT_INO && synthetic_lost_found);
        let links = 2 + u64::from(subdirs);
        debug_assert!(links <= u64::from(limits::LINK_MAX), "{links} directory links");
        f.links = u16::try_from(links).expect("at most 65,000 links");
        f.size = n * BLOCK_SIZE;
        f.flags = EXTENTS_FL;
        f.block = root;
        f.sectors += (n + tree_n) * (BLOCK_SIZE / 512);
        let per_group = usize::try_from(self.geo.inodes_per_group).expect("fits");
        self.dirs_per_group[(p.ino - 1) as usize / per_group] += 1;
        Ok(())
    }

    /// A symlink's target: fast (in `i_block`) below 60 bytes, else in one block.
    fn symlink(&mut self, target: &[u8], f: &mut InodeFields) -> Result<(), Placement> {
        f.size = target.len() as u64;
        // 1..=4095 bytes without NUL, checked by `FsBuilder::link`.
        debug_assert!((1..=limits::MAX_SYMLINK_LEN).contains(&target.len()));
        if target.len() < 60 {
            f.block[..target.len()].copy_from_slice(target);
        } else {
            let at = self.alloc.take(1)?;
            let mut data = target.to_vec();
            data.resize(crate::BLOCK_BYTES, 0);
            self.regions.push((at, 1, Content::Bytes(data.into())));
            f.flags = EXTENTS_FL;
            let (root, _) = build_extent_tree(&[Extent { logical: 0, start: at, len: 1 }], &[]);
            f.block = root;
            f.sectors += BLOCK_SIZE / 512;
        }
        Ok(())
    }

    /// File data in data-key order, each file's extent-tree blocks right behind it.
    fn file_data(&mut self) -> Result<(), Placement> {
        let mut pending = std::mem::take(&mut self.pending_files);
        pending.sort_by_key(|&(key, node, _)| (key, node));
        self.files = Vec::with_capacity(pending.len());
        for (_, node, pi) in pending {
            self.file(node as usize, pi as usize)?;
        }
        Ok(())
    }

    /// The data of builder node `node` (`prepared[pi]`): its blocks in the data zone when it
    /// was written there, else the next free ones; then its extent tree.
    fn file(&mut self, node: usize, pi: usize) -> Result<(), Placement> {
        let b = self.b;
        let NodeKind::File { size, .. } = b.nodes[node].kind else {
            unreachable!("only files are pending")
        };
        let n = size.div_ceil(BLOCK_SIZE);
        let zoned = b.zone_file(node);
        let runs = match zoned {
            Some(placed) => {
                check_zone_runs(placed, n, self.zone_end)?;
                for &(start, n) in placed.runs() {
                    self.alloc.mark(start, n);
                }
                placed.runs().to_vec()
            }
            None => self.alloc.take_extents(n)?,
        };
        let (extents, root, tree_n) =
            map_runs(&mut self.alloc, &mut self.regions, &runs, || node_path(b, node))?;
        let ino = self.prepared[pi].ino;
        let f = self.fields[(ino - 1) as usize].as_mut().expect("file inode prepared");
        f.block = root;
        f.sectors += (n + tree_n) * (BLOCK_SIZE / 512);
        self.files.push(FilePlacement {
            id: InodeId(u32::try_from(node).expect("fits")),
            in_zone: zoned.is_some(),
            size,
            extents: extents.into(),
        });
        Ok(())
    }

    /// The used ranges for the bitmaps, the free counts of every group and of the superblock,
    /// and the plan with its regions sorted by start block.
    fn finish(mut self) -> Plan {
        let used = merge_ranges(std::mem::take(&mut self.alloc.used));
        let free_blocks_total = self.count_free(&used);
        let Geometry { blocks, groups, used_inodes, inodes_per_group, .. } = self.geo;
        let inodes_total = inodes_per_group * groups;
        let journal_fields = self.fields[(JOURNAL_INO - 1) as usize].as_ref().expect("journal set");
        let opts = self.opts;
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
        self.regions.sort_by_key(|r| r.0);
        Plan {
            blocks,
            inodes_per_group: u32::try_from(inodes_per_group).expect("fits"),
            groups: u32::try_from(groups).expect("fits"),
            descs: self.descs,
            sb,
            regions: self.regions,
            files: self.files,
            inodes: self.fields,
            used,
            dirs: self.dirs,
            zone_end: self.zone_end,
        }
    }

    /// Sets every group descriptor's free block, free inode and directory counts from the
    /// `used` block ranges (sorted and merged); returns the free blocks of the filesystem.
    fn count_free(&mut self, used: &[(u64, u64)]) -> u64 {
        let Geometry { blocks, used_inodes, inodes_per_group, .. } = self.geo;
        let mut free_blocks_total = 0u64;
        for (g, desc) in self.descs.iter_mut().enumerate() {
            let gs = g as u64 * BLOCKS_PER_GROUP;
            let ge = (gs + BLOCKS_PER_GROUP).min(blocks);
            let used_here: u64 =
                used.iter().map(|&(s, l)| (s + l).min(ge).saturating_sub(s.max(gs))).sum();
            let free = ge - gs - used_here;
            // The 16-bit descriptor counts hold a group's worth: at most 32,768 blocks and
            // `inodes_per_group` (at most 32,768) inodes and directories.
            desc.free_blocks = u16::try_from(free).expect("at most 32768 blocks a group");
            free_blocks_total += free;
            let first_ino = g as u64 * inodes_per_group + 1;
            let used_ino = used_inodes.saturating_sub(first_ino - 1).min(inodes_per_group);
            desc.free_inodes =
                u16::try_from(inodes_per_group - used_ino).expect("at most 32768 inodes a group");
            desc.used_dirs =
                u16::try_from(self.dirs_per_group[g]).expect("at most 32768 inodes a group");
        }
        free_blocks_total
    }
}

/// `used` block ranges sorted, with overlapping and adjacent ones merged.
fn merge_ranges(mut used: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    used.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(used.len());
    for (s, l) in used {
        match merged.last_mut() {
            Some((ms, ml)) if *ms + *ml >= s => *ml = (*ml).max(s + l - *ms),
            _ => merged.push((s, l)),
        }
    }
    merged
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
