//! The complete layout of an image, computed before a byte is written, so the writer can go
//! forward only.
//!
//! Sector map (ECMA-119 6.2, 6.7, 6.8, 9.4):
//!
//! | sectors | content |
//! |---|---|
//! | 0–15 | System Area (zeros) |
//! | 16 | Primary Volume Descriptor |
//! | 17 | Joliet Supplementary Volume Descriptor (when Joliet is on) |
//! | next | Volume Descriptor Set Terminator |
//! | next | path tables: primary L, primary M, Joliet L, Joliet M |
//! | next | primary directory extents, in path table order |
//! | next | Joliet directory extents, in path table order |
//! | next | SUSP Continuation Areas |
//! | next | file data, in primary directory order; empty files and symlinks have no extent |
//!
//! Directories are numbered breadth first, parents in number order and siblings in record
//! order, which is the path table order ECMA-119 9.4 requires. Every position is a function of
//! the tree, never of the order entries were added.

use std::collections::VecDeque;

use crate::bytes::sectors;
use crate::names::{PrimaryName, joliet_cmp, joliet_name, primary_names};
use crate::susp::{self, Split};
use crate::tree::{FileId, IsoBuilder, NodeKind, ROOT};
use crate::{Error, SECTOR_SIZE};

/// First sector after the System Area.
pub(crate) const FIRST_DESCRIPTOR: u64 = 16;
/// Fixed part of a directory record (ECMA-119 9.1), before the identifier.
pub(crate) const RECORD_BASE: usize = 33;
/// Largest directory record: its length is one byte and must be even.
const MAX_RECORD: usize = 254;
/// ECMA-119 6.8.2.1: longest path of an entry in the primary hierarchy.
const MAX_PATH_LEN: usize = 255;
/// Most directories a path table can number (parent numbers are 16 bits).
const MAX_DIRS: usize = u16::MAX as usize;
const SECTOR: usize = 2048;

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// One directory record as it will be written.
#[derive(Debug)]
pub(crate) struct Record {
    /// The node described: the directory itself for `.`, its parent for `..`.
    pub target: usize,
    pub ident: Vec<u8>,
    /// Final System Use field, `CE` and padding included (primary hierarchy only).
    pub susp: Vec<u8>,
    split: Split,
    pub len: usize,
    pub extent: u32,
    pub data_len: u32,
    pub is_dir: bool,
}

/// One directory of a hierarchy.
#[derive(Debug)]
pub(crate) struct DirPlan {
    pub node: usize,
    /// Index in [`Hierarchy::dirs`] of the parent (the root is its own parent).
    pub parent: usize,
    /// Path table identifier: `[0]` for the root.
    pub ident: Vec<u8>,
    pub records: Vec<Record>,
    pub extent: u32,
    pub sectors: u32,
}

/// The primary or the Joliet hierarchy.
#[derive(Debug, Default)]
pub(crate) struct Hierarchy {
    pub dirs: Vec<DirPlan>,
    pub path_table_size: u32,
    pub l_table: u32,
    pub m_table: u32,
}

/// A Continuation Area and where it goes.
#[derive(Debug)]
pub(crate) struct Area {
    pub block: u32,
    pub offset: u32,
    pub bytes: Vec<u8>,
}

/// A regular file's place in the image.
#[derive(Debug)]
pub(crate) struct FilePlan {
    pub id: FileId,
    pub node: usize,
    pub extent: u32,
    pub size: u64,
}

/// Everything the writer needs.
#[derive(Debug)]
pub(crate) struct Layout {
    pub primary: Hierarchy,
    pub joliet: Option<Hierarchy>,
    pub areas: Vec<Area>,
    pub ce_start: u32,
    pub ce_sectors: u32,
    pub files: Vec<FilePlan>,
    pub total_sectors: u32,
    pub symlinks: usize,
}

/// Length of a record with an identifier of `ident_len` bytes and no System Use field.
fn base_len(ident_len: usize) -> usize {
    RECORD_BASE + ident_len + usize::from(ident_len.is_multiple_of(2))
}

/// Sectors of a directory extent holding records of these lengths; a record never crosses a
/// sector boundary (ECMA-119 6.8.1.1).
fn dir_sectors(lens: impl IntoIterator<Item = usize>) -> u64 {
    let (mut count, mut used) = (1u64, 0usize);
    for len in lens {
        if used + len > SECTOR {
            count += 1;
            used = 0;
        }
        used += len;
    }
    count
}

/// A sector number, or the error for an image beyond 2^32 sectors.
fn sector(v: u64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::ImageTooLarge { sectors: v })
}

impl Layout {
    pub(crate) fn compute(b: &IsoBuilder) -> Result<Layout, Error> {
        let dir_count = b.nodes.iter().filter(|n| n.is_dir()).count();
        if dir_count > MAX_DIRS {
            return Err(Error::TooManyDirectories { count: dir_count });
        }
        let mut primary = primary_hierarchy(b)?;
        let mut joliet = match b.options.joliet.max_name_len() {
            Some(_) => Some(joliet_hierarchy(b)?),
            None => None,
        };

        // Sector assignment, in u64 until the total is known to fit.
        let mut cur = FIRST_DESCRIPTOR + 2 + u64::from(joliet.is_some());
        for h in std::iter::once(&mut primary).chain(joliet.as_mut()) {
            let table = sectors(u64::from(h.path_table_size));
            h.l_table = sector(cur)?;
            h.m_table = sector(cur + table)?;
            cur += 2 * table;
        }
        for h in std::iter::once(&mut primary).chain(joliet.as_mut()) {
            for dir in &mut h.dirs {
                dir.extent = sector(cur)?;
                cur += u64::from(dir.sectors);
            }
        }
        let ce_start = cur;
        let areas = place_areas(&mut primary, ce_start)?;
        let ce_sectors = areas.last().map_or(0, |a| u64::from(a.block) + 1 - ce_start);
        cur += ce_sectors;

        let mut node_extent = vec![(0u32, 0u32); b.nodes.len()];
        let mut files = Vec::new();
        for dir in &primary.dirs {
            for rec in &dir.records[2..] {
                if let NodeKind::File { size, id } = b.nodes[rec.target].kind {
                    let extent = if size == 0 { 0 } else { sector(cur)? };
                    cur += sectors(size);
                    // The builder refuses sizes above MAX_FILE_SIZE, so this always fits.
                    node_extent[rec.target] = (extent, u32::try_from(size).unwrap_or(u32::MAX));
                    files.push(FilePlan { id, node: rec.target, extent, size });
                }
            }
        }
        let total_sectors = sector(cur)?;

        for h in std::iter::once(&mut primary).chain(joliet.as_mut()) {
            fill_extents(h, &node_extent);
        }
        let symlinks =
            b.nodes.iter().filter(|n| matches!(n.kind, NodeKind::Symlink { .. })).count();
        Ok(Layout {
            primary,
            joliet,
            areas,
            ce_start: sector(ce_start)?,
            ce_sectors: sector(ce_sectors)?,
            files,
            total_sectors,
            symlinks,
        })
    }
}

/// Records `(extent, length)` of every record's target: directories from this hierarchy,
/// files from `node_extent`.
fn fill_extents(h: &mut Hierarchy, node_extent: &[(u32, u32)]) {
    let mut dir_loc = vec![None; node_extent.len()];
    for dir in &h.dirs {
        let len = u32::try_from(u64::from(dir.sectors) * SECTOR_SIZE).unwrap_or(u32::MAX);
        dir_loc[dir.node] = Some((dir.extent, len));
    }
    for dir in &mut h.dirs {
        for rec in &mut dir.records {
            (rec.extent, rec.data_len) = dir_loc[rec.target].unwrap_or(node_extent[rec.target]);
        }
    }
}

/// Walks directories breadth first. `children` returns a directory's child records in order as
/// `(node, identifier)`; returns the directories in path table order with their records.
fn walk(
    b: &IsoBuilder,
    mut children: impl FnMut(usize) -> Result<Vec<(usize, Vec<u8>)>, Error>,
) -> Result<Vec<DirPlan>, Error> {
    let mut dirs: Vec<DirPlan> = Vec::new();
    let mut queue = VecDeque::from([(ROOT, 0usize, vec![0u8])]);
    while let Some((node, parent, ident)) = queue.pop_front() {
        let index = dirs.len();
        let parent_node = if node == ROOT { ROOT } else { dirs[parent].node };
        let mut records = vec![record(node, vec![0], true), record(parent_node, vec![1], true)];
        for (child, ident) in children(node)? {
            let is_dir = b.nodes[child].is_dir();
            if is_dir {
                queue.push_back((child, index, ident.clone()));
            }
            records.push(record(child, ident, is_dir));
        }
        dirs.push(DirPlan { node, parent, ident, records, extent: 0, sectors: 0 });
    }
    Ok(dirs)
}

fn record(target: usize, ident: Vec<u8>, is_dir: bool) -> Record {
    let len = base_len(ident.len());
    Record {
        target,
        ident,
        susp: Vec::new(),
        split: Split::default(),
        len,
        extent: 0,
        data_len: 0,
        is_dir,
    }
}

fn finish(dirs: Vec<DirPlan>) -> Hierarchy {
    let mut h = Hierarchy { dirs, ..Hierarchy::default() };
    let mut table = 0usize;
    for dir in &mut h.dirs {
        dir.sectors =
            u32::try_from(dir_sectors(dir.records.iter().map(|r| r.len))).unwrap_or(u32::MAX);
        table += 8 + dir.ident.len() + dir.ident.len() % 2;
    }
    h.path_table_size = u32::try_from(table).unwrap_or(u32::MAX);
    h
}

fn primary_hierarchy(b: &IsoBuilder) -> Result<Hierarchy, Error> {
    let opts = &b.options;
    // Length of each directory's ISO path, for the ECMA-119 path length limit.
    let mut path_len = vec![0usize; b.nodes.len()];
    let dirs = walk(b, |node| {
        let children = b.nodes[node].children().expect("walk visits directories");
        let mangled = primary_names(
            children.iter().map(|(name, &child)| (name.as_str(), b.nodes[child].is_dir())),
            opts.level,
        );
        let mut named: Vec<(usize, PrimaryName)> =
            children.values().copied().zip(mangled).collect();
        named.sort_by(|a, b| a.1.ecma_cmp(&b.1));
        let mut out = Vec::with_capacity(named.len());
        for (child, name) in named {
            let ident = name.identifier();
            let len = path_len[node] + usize::from(node != ROOT) + ident.len();
            if len > MAX_PATH_LEN && !opts.allow_deep_paths {
                return Err(Error::PathTooLong { path: b.path_of(child), len, max: MAX_PATH_LEN });
            }
            path_len[child] = len;
            out.push((child, ident));
        }
        Ok(out)
    })?;
    let mut h = finish(dirs);
    // System Use fields change record lengths, so directory sizes are recomputed after them.
    for dir in &mut h.dirs {
        for (i, rec) in dir.records.iter_mut().enumerate() {
            let node = &b.nodes[rec.target];
            let (type_bits, nlink) = match &node.kind {
                NodeKind::Dir { children, .. } => {
                    let subdirs = children.values().filter(|&&c| b.nodes[c].is_dir()).count();
                    (S_IFDIR, u32::try_from(subdirs + 2).unwrap_or(u32::MAX))
                }
                NodeKind::File { .. } => (S_IFREG, 1),
                NodeKind::Symlink { .. } => (S_IFLNK, 1),
            };
            let is_root_dot = dir.node == ROOT && i == 0;
            let mut entries = Vec::new();
            if is_root_dot {
                entries.push(susp::sp());
            }
            let m = node.meta;
            entries.push(susp::px(type_bits | m.mode, nlink, m.uid, m.gid));
            entries.push(susp::tf(b.mtime(rec.target)));
            if is_root_dot {
                entries.push(susp::er());
            }
            if i >= 2 {
                entries.extend(susp::nm(&node.name));
                if let NodeKind::Symlink { target } = &node.kind {
                    entries.extend(susp::sl(target));
                }
            }
            rec.split = susp::split(entries, MAX_RECORD - rec.len);
            let inline = rec.split.inline_len();
            rec.len += inline + inline % 2;
        }
        dir.sectors =
            u32::try_from(dir_sectors(dir.records.iter().map(|r| r.len))).unwrap_or(u32::MAX);
    }
    Ok(h)
}

fn joliet_hierarchy(b: &IsoBuilder) -> Result<Hierarchy, Error> {
    let dirs = walk(b, |node| {
        let children = b.nodes[node].children().expect("walk visits directories");
        let mut named = Vec::with_capacity(children.len());
        for (name, &child) in children {
            if matches!(b.nodes[child].kind, NodeKind::Symlink { .. }) {
                continue;
            }
            named.push((child, joliet_name(&b.path_of(child), name, b.options.joliet)?));
        }
        named.sort_by(|a, b| joliet_cmp(&a.1, &b.1));
        Ok(named
            .into_iter()
            .map(|(child, units)| (child, units.iter().flat_map(|u| u.to_be_bytes()).collect()))
            .collect())
    })?;
    Ok(finish(dirs))
}

/// Gives every Continuation Area of the primary hierarchy a place from sector `start` on,
/// never across a block boundary, and writes the final System Use fields.
fn place_areas(h: &mut Hierarchy, start: u64) -> Result<Vec<Area>, Error> {
    let mut areas = Vec::new();
    let (mut block, mut offset) = (start, 0usize);
    for rec in h.dirs.iter_mut().flat_map(|d| d.records.iter_mut()) {
        let split = &rec.split;
        let first = areas.len();
        for i in 0..split.areas.len() {
            let len = split.area_len(i);
            if offset + len > susp::AREA_MAX {
                block += 1;
                offset = 0;
            }
            let offset_u32 = u32::try_from(offset).unwrap_or(u32::MAX);
            areas.push(Area {
                block: sector(block)?,
                offset: offset_u32,
                bytes: split.areas[i].clone(),
            });
            offset += len;
        }
        // Chain the areas: the record points at the first, each area at the next.
        let mut susp_field = split.inline.clone();
        for i in 0..split.areas.len() {
            let next = &areas[first + i];
            let len = u32::try_from(split.area_len(i)).unwrap_or(u32::MAX);
            let ce = susp::ce(next.block, next.offset, len);
            if i == 0 {
                susp_field.extend_from_slice(&ce);
            } else {
                areas[first + i - 1].bytes.extend_from_slice(&ce);
            }
        }
        if susp_field.len() % 2 == 1 {
            susp_field.push(0);
        }
        rec.susp = susp_field;
    }
    Ok(areas)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IsoOptions, Metadata};

    fn layout(build: impl FnOnce(&mut IsoBuilder)) -> Layout {
        let mut b = IsoBuilder::new(IsoOptions::new("T", 0)).unwrap();
        build(&mut b);
        Layout::compute(&b).unwrap()
    }

    #[test]
    fn empty_image() {
        let l = layout(|_| {});
        // 16 system + PVD + SVD + terminator + 4 path table sectors + 2 root dirs + 1 CE block.
        assert_eq!(l.primary.l_table, 19);
        assert_eq!(l.joliet.as_ref().unwrap().m_table, 22);
        assert_eq!(l.primary.dirs[0].extent, 23);
        assert_eq!(l.joliet.as_ref().unwrap().dirs[0].extent, 24);
        assert_eq!((l.ce_start, l.ce_sectors), (25, 1));
        assert_eq!(l.total_sectors, 26);
        assert_eq!(l.primary.path_table_size, 10);
        // The root's "." holds SP, PX, TF and a CE to the ER.
        let dot = &l.primary.dirs[0].records[0];
        assert_eq!(&dot.susp[..2], b"SP");
        assert_eq!(dot.len, 34 + 7 + 36 + 26 + 28 + 1);
        assert_eq!(l.areas.len(), 1);
        assert_eq!(&l.areas[0].bytes[..2], b"ER");
    }

    #[test]
    fn path_table_order_is_breadth_first() {
        let l = layout(|b| {
            for p in ["b/y", "a/z", "a/x", "c"] {
                b.add_dir(p, Metadata::new(0o755)).unwrap();
            }
        });
        let order: Vec<(String, usize)> = l
            .primary
            .dirs
            .iter()
            .map(|d| (String::from_utf8(d.ident.clone()).unwrap(), d.parent))
            .collect();
        let want = [("\0", 0), ("A", 0), ("B", 0), ("C", 0), ("X", 1), ("Z", 1), ("Y", 2)];
        let want: Vec<(String, usize)> = want.iter().map(|(s, p)| ((*s).into(), *p)).collect();
        assert_eq!(order, want);
    }

    #[test]
    fn files_follow_directory_order_not_insertion_order() {
        let sizes = |l: &Layout| l.files.iter().map(|f| (f.extent, f.size)).collect::<Vec<_>>();
        let one = layout(|b| {
            b.add_file("z", 5000, Metadata::new(0o644)).unwrap();
            b.add_file("a", 1, Metadata::new(0o644)).unwrap();
            b.add_file("e", 0, Metadata::new(0o644)).unwrap();
        });
        let two = layout(|b| {
            b.add_file("e", 0, Metadata::new(0o644)).unwrap();
            b.add_file("a", 1, Metadata::new(0o644)).unwrap();
            b.add_file("z", 5000, Metadata::new(0o644)).unwrap();
        });
        assert_eq!(sizes(&one), sizes(&two));
        let first = one.ce_start + one.ce_sectors;
        assert_eq!(sizes(&one), [(first, 1), (0, 0), (first + 1, 5000)]);
        assert_eq!(one.total_sectors, first + 1 + 3);
    }

    #[test]
    fn many_records_fill_several_sectors() {
        assert_eq!(dir_sectors([254; 8]), 1);
        assert_eq!(dir_sectors([254; 9]), 2);
        assert_eq!(dir_sectors([100; 21]), 2);
        let l = layout(|b| {
            for i in 0..100 {
                b.add_file(&format!("file-with-a-long-name-{i:03}.rpm"), 0, Metadata::new(0o644))
                    .unwrap();
            }
        });
        assert!(l.primary.dirs[0].sectors > 1);
        assert!(l.joliet.as_ref().unwrap().dirs[0].sectors > 1);
    }

    #[test]
    fn path_length_limit() {
        let mut opts = IsoOptions::new("T", 0);
        opts.level = crate::IsoLevel::Two;
        let mut b = IsoBuilder::new(opts).unwrap();
        let long = "d".repeat(40);
        // 7 directories of 31 characters, 6 slashes, a slash and a 33-character file identifier.
        let path = [long.as_str(); 7].join("/") + "/file-name-that-is-very-long-indeed.txt";
        b.add_file(&path, 1, Metadata::new(0o644)).unwrap();
        let err = Layout::compute(&b).unwrap_err();
        assert!(matches!(err, Error::PathTooLong { len: 257, max: 255, .. }), "{err}");
    }
}
