//! The merged layer tree as an ext4 tree description.
//!
//! The conversion takes the tree by value and moves each node's names, link target and
//! attributes into the ext4 builder as it walks, so the two descriptions are not held in full
//! side by side; the tree is gone once the builder is made.

use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;
use xspack_ext4::{Attrs, FsBuilder, InodeId, NodeKind as FsKind, Timestamp, Xattr};

use xspack_oci::{EntryMeta, FileData, MergeSummary, MergedTree, NodeKind, ZeroRuns};

use crate::Error;

/// Where each file's data comes from (the ext4 description is returned beside it).
pub struct Converted {
    /// The file inode taking each layer entry's data, by [`data_key`] (layer, then entry
    /// index: the order in which the layers are read again), sorted.
    pub sources: Vec<(u64, InodeId)>,
    /// Layers holding data of at least one surviving file, with the last entry that does.
    pub layers_with_data: BTreeMap<usize, u64>,
    /// Files added after the layers, in the order their data is written (after all layers).
    pub inline: Vec<(InodeId, Arc<[u8]>)>,
    /// The all-zero 4 KiB blocks of each layer file's data, by inode (files with none are
    /// absent), or `None` when the merge did not record them.
    pub zero_runs: Option<HashMap<InodeId, ZeroRuns>>,
    /// What merging did.
    pub merge: MergeSummary,
}

impl Converted {
    /// The inode taking the data of entry `entry` of layer `layer`, if one survived.
    pub fn source(&self, layer: usize, entry: u64) -> Option<InodeId> {
        let key = data_key(layer, entry);
        let at = self.sources.binary_search_by_key(&key, |&(k, _)| k).ok()?;
        Some(self.sources[at].1)
    }

    /// The layers holding each surviving file's data, with the last entry that does, from
    /// [`Converted::sources`].
    pub fn layers_of_sources(&self) -> BTreeMap<usize, u64> {
        let mut layers = BTreeMap::new();
        for &(key, _) in &self.sources {
            let (layer, entry) = layer_entry(key);
            let last = layers.entry(layer).or_insert(entry);
            *last = (*last).max(entry);
        }
        layers
    }
}

fn attrs(meta: EntryMeta) -> Attrs {
    let time = |(sec, nsec): (i64, u32)| Timestamp { sec, nsec };
    let mtime = time(meta.mtime);
    Attrs {
        perm: u16::try_from(meta.mode & 0o7777).expect("masked"),
        uid: meta.uid,
        gid: meta.gid,
        atime: meta.atime.map_or(mtime, time),
        mtime,
        ctime: meta.ctime.map_or(mtime, time),
        xattrs: meta.xattrs.into_iter().map(|(name, value)| Xattr { name, value }).collect(),
    }
}

/// Data keys order file data as the layers stream it: layer first, then entry.
pub fn data_key(layer: usize, entry: u64) -> u64 {
    ((layer as u64) << 40) | entry
}

/// The layer and entry of a [`data_key`].
pub fn layer_entry(key: u64) -> (usize, u64) {
    (usize::try_from(key >> 40).expect("a layer index"), key & ((1 << 40) - 1))
}

/// Nodes converted between two hand-backs of freed memory to the kernel.
const RELEASE_EVERY: usize = 1 << 16;

/// Files added after the layers come after every layer's data.
const INLINE_KEYS: u64 = 1 << 63;

/// Walks the reachable tree depth first, adding each node once (hard links share it), and
/// consumes the tree as it goes.
pub fn to_builder(mut tree: MergedTree) -> Result<(FsBuilder, Converted), Error> {
    let root = tree.root();
    let merge = tree.summary;
    let mut runs_by_entry = tree.take_zero_runs();
    let root_node = tree.take_node(root);
    // At most one inode per tree node (hard links share one).
    let mut builder = FsBuilder::with_capacity(attrs(root_node.meta), tree.node_count());
    // Tree node → its inode, once added.
    let mut ids: Vec<Option<InodeId>> = vec![None; tree.node_count()];
    ids[root.index()] = Some(builder.root());
    let mut sources = Vec::new();
    let mut inline = Vec::new();
    let mut zero_runs = runs_by_entry.as_ref().map(|_| HashMap::new());
    let mut stack = vec![(builder.root(), root_node.kind)];
    let mut taken = 0usize;
    while let Some((dir_id, kind)) = stack.pop() {
        let NodeKind::Dir(children) = kind else { continue };
        for (name, child) in children {
            if let Some(id) = ids[child.index()] {
                builder.link(dir_id, &name, id)?;
                continue;
            }
            let node = tree.take_node(child);
            taken += 1;
            if taken.is_multiple_of(RELEASE_EVERY) {
                // The directory maps freed so far leave the resident set as the builder grows.
                xspack_io::release_free_memory();
            }
            let mut data = None;
            let mut entries = None;
            let kind = match node.kind {
                NodeKind::Dir(children) => {
                    entries = Some(NodeKind::Dir(children));
                    FsKind::Dir
                }
                NodeKind::File { size, source } => {
                    let data_key = match &source {
                        FileData::Layer(layer, entry) => data_key(*layer, *entry),
                        FileData::Inline(_) => INLINE_KEYS + inline.len() as u64,
                    };
                    data = Some(source);
                    FsKind::File { size, data_key }
                }
                NodeKind::Symlink(target) => FsKind::Symlink(target),
                NodeKind::CharDev(major, minor) => FsKind::CharDev { major, minor },
                NodeKind::BlockDev(major, minor) => FsKind::BlockDev { major, minor },
                NodeKind::Fifo => FsKind::Fifo,
            };
            let id = builder.add(kind, attrs(node.meta));
            match data {
                Some(FileData::Layer(layer, entry)) => {
                    sources.push((data_key(layer, entry), id));
                    if let (Some(by_entry), Some(by_inode)) = (&mut runs_by_entry, &mut zero_runs)
                        && let Some(runs) = by_entry.remove(&(layer, entry))
                    {
                        by_inode.insert(id, runs);
                    }
                }
                Some(FileData::Inline(bytes)) => inline.push((id, bytes)),
                None => {}
            }
            if let Some(entries) = entries {
                stack.push((id, entries));
            }
            ids[child.index()] = Some(id);
            builder.link(dir_id, &name, id)?;
        }
    }
    // Nothing is named from here on: the builder's name index goes before planning. The
    // tree's pieces, freed one by one, go back to the kernel rather than stay resident
    // through planning.
    builder.release_name_index();
    drop(tree);
    xspack_io::release_free_memory();
    sources.sort_unstable_by_key(|&(key, _)| key);
    sources.shrink_to_fit();
    let mut converted =
        Converted { sources, layers_with_data: BTreeMap::new(), inline, zero_runs, merge };
    converted.layers_with_data = converted.layers_of_sources();
    Ok((builder, converted))
}
