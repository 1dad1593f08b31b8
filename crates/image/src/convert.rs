//! The merged layer tree as an ext4 tree description.

use std::collections::{BTreeMap, HashMap};

use std::sync::Arc;
use xspack_ext4::{Attrs, FsBuilder, InodeId, NodeKind as FsKind, Timestamp, Xattr};

use xspack_oci::{EntryMeta, FileData, MergedTree, NodeId, NodeKind};

use crate::Error;

/// Where each file's data comes from (the ext4 description is returned beside it).
pub struct Converted {
    /// (layer, entry index) → the file inode taking that entry's data.
    pub sources: HashMap<(usize, u64), InodeId>,
    /// Layers holding data of at least one surviving file, with the last entry that does.
    pub layers_with_data: BTreeMap<usize, u64>,
    /// Files added after the layers, in the order their data is written (after all layers).
    pub inline: Vec<(InodeId, Arc<[u8]>)>,
}

fn attrs(meta: &EntryMeta) -> Attrs {
    let time = |(sec, nsec): (i64, u32)| Timestamp { sec, nsec };
    let mtime = time(meta.mtime);
    Attrs {
        perm: u16::try_from(meta.mode & 0o7777).expect("masked"),
        uid: meta.uid,
        gid: meta.gid,
        atime: meta.atime.map_or(mtime, time),
        mtime,
        ctime: meta.ctime.map_or(mtime, time),
        xattrs: meta
            .xattrs
            .iter()
            .map(|(name, value)| Xattr { name: name.clone(), value: value.clone() })
            .collect(),
    }
}

/// Data keys order file data as the layers stream it: layer first, then entry.
fn data_key(layer: usize, entry: u64) -> u64 {
    ((layer as u64) << 40) | entry
}

/// Files added after the layers come after every layer's data.
const INLINE_KEYS: u64 = 1 << 63;

/// Walks the reachable tree depth first, adding each node once (hard links share it).
pub fn to_builder(tree: &MergedTree) -> Result<(FsBuilder, Converted), Error> {
    let root = tree.root();
    // At most one inode per tree node (hard links share one).
    let mut builder = FsBuilder::with_capacity(attrs(&tree.node(root).meta), tree.node_count());
    let mut ids: HashMap<NodeId, InodeId> = HashMap::new();
    ids.insert(root, builder.root());
    let mut sources = HashMap::new();
    let mut layers_with_data = BTreeMap::new();
    let mut inline = Vec::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let dir_id = ids[&dir];
        for (name, child) in tree.children(dir) {
            let id = if let Some(id) = ids.get(&child) {
                *id
            } else {
                let node = tree.node(child);
                let kind = match &node.kind {
                    NodeKind::Dir(_) => {
                        stack.push(child);
                        FsKind::Dir
                    }
                    NodeKind::File { size, source: FileData::Layer(layer, entry) } => {
                        FsKind::File { size: *size, data_key: data_key(*layer, *entry) }
                    }
                    NodeKind::File { size, source: FileData::Inline(_) } => {
                        FsKind::File { size: *size, data_key: INLINE_KEYS + inline.len() as u64 }
                    }
                    NodeKind::Symlink(target) => FsKind::Symlink(target.clone()),
                    NodeKind::CharDev(major, minor) => {
                        FsKind::CharDev { major: *major, minor: *minor }
                    }
                    NodeKind::BlockDev(major, minor) => {
                        FsKind::BlockDev { major: *major, minor: *minor }
                    }
                    NodeKind::Fifo => FsKind::Fifo,
                };
                let id = builder.add(kind, attrs(&node.meta));
                match &node.kind {
                    NodeKind::File { source: FileData::Layer(layer, entry), .. } => {
                        sources.insert((*layer, *entry), id);
                        let last = layers_with_data.entry(*layer).or_insert(*entry);
                        *last = (*last).max(*entry);
                    }
                    NodeKind::File { source: FileData::Inline(data), .. } => {
                        inline.push((id, data.clone()))
                    }
                    _ => {}
                }
                ids.insert(child, id);
                id
            };
            builder.link(dir_id, name, id)?;
        }
    }
    Ok((builder, Converted { sources, layers_with_data, inline }))
}
