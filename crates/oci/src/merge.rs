//! Applying layers in order: the OCI image spec's "Applying Changesets", with umoci's
//! handling of parent directories.
//!
//! - An entry replaces whatever its name pointed at (the upper layer wins); a directory entry
//!   over a directory only updates its metadata.
//! - `.wh.<name>` removes `<name>` if a lower layer created it; `.wh..wh..opq` removes every
//!   child of its directory that a lower layer created. Entries of the same layer are never
//!   hidden by its own whiteouts, whatever their order in the tar. Other `.wh..wh.*` names
//!   (aufs metadata) are ignored.
//! - Missing parent directories are created (mode 0755, root-owned). A parent that is a symlink
//!   is resolved inside the tree (absolute targets from the root, `..` clamped at the root), as
//!   umoci's rootless unpack does; the entry itself is never written through a symlink.
//! - A hard link names the node its target names at that moment; a missing target, or a
//!   directory, is an error.
//! - Two entries of one layer with the same name are an error (bad input), unless both are
//!   directories, when the later one only updates the metadata.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::layer::{EntryKind, EntryMeta, LayerEntry};
use crate::limits::shown;
use crate::{Error, path};

/// Symlinks followed while resolving one parent path, as Linux's `MAXSYMLINKS`.
const MAX_FOLLOW: usize = 40;

/// A node of the merged tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u32);

impl NodeId {
    /// The node's position among [`MergedTree::node_count`] nodes.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// What a merged node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory and its entries, sorted by name.
    Dir(BTreeMap<Vec<u8>, NodeId>),
    /// A regular file: its size and where its data is.
    File {
        /// Size in bytes.
        size: u64,
        /// Where the bytes come from.
        source: FileData,
    },
    /// A symlink and its verbatim target.
    Symlink(Vec<u8>),
    /// A character device.
    CharDev(u32, u32),
    /// A block device.
    BlockDev(u32, u32),
    /// A FIFO.
    Fifo,
}

/// Where a file's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileData {
    /// In a layer's tar stream: layer index and entry index.
    Layer(usize, u64),
    /// Held in memory: a file added after the layers (a guest fix-up).
    Inline(Arc<[u8]>),
}

/// The layer number recorded on nodes added after every layer, so no whiteout hides them.
const FIXUP_LAYER: usize = usize::MAX;

/// One node: kind, metadata and the layer that created it.
#[derive(Debug, Clone)]
pub struct TreeNode {
    /// What it is.
    pub kind: NodeKind,
    /// Ownership, mode, times, xattrs.
    pub meta: EntryMeta,
    /// The layer that created or last re-declared it.
    pub layer: usize,
}

/// Counts of what merging did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeSummary {
    /// Entries applied.
    pub entries: u64,
    /// Whiteouts that removed something.
    pub whiteouts: u64,
    /// Opaque markers applied.
    pub opaque: u64,
    /// Hard links made.
    pub hardlinks: u64,
}

/// All-zero 4 KiB blocks of a file's data, as `(first block, count)` runs.
pub type ZeroRuns = Box<[(u64, u64)]>;

/// The filesystem tree all layers so far describe.
#[derive(Debug, Clone)]
pub struct MergedTree {
    nodes: Vec<TreeNode>,
    /// What merging did.
    pub summary: MergeSummary,
    /// All-zero 4 KiB blocks of file entries' data, by (layer, entry); see
    /// [`MergedTree::set_zero_runs`].
    zero_runs: HashMap<(usize, u64), ZeroRuns>,
    /// Whether every file entry's zero runs were recorded.
    zero_runs_known: bool,
}

impl Default for MergedTree {
    fn default() -> Self {
        Self::new()
    }
}

fn implicit_dir(layer: usize) -> TreeNode {
    TreeNode {
        kind: NodeKind::Dir(BTreeMap::new()),
        meta: EntryMeta { mode: 0o755, ..EntryMeta::default() },
        layer,
    }
}

impl MergedTree {
    /// An empty tree: a root directory, mode 0755, owned by root.
    pub fn new() -> Self {
        MergedTree {
            nodes: vec![implicit_dir(0)],
            summary: MergeSummary::default(),
            zero_runs: HashMap::new(),
            zero_runs_known: false,
        }
    }

    /// Records the all-zero 4 KiB blocks of the data of entry `entry` of layer `layer`, as
    /// sorted, disjoint `(first block, count)` runs counted from the file's first byte (a
    /// partial last block counts when its bytes are zero). Entries with none need no call.
    /// Disk writers use these to know which parts of an image hold data before writing it.
    pub fn set_zero_runs(&mut self, layer: usize, entry: u64, runs: Vec<(u64, u64)>) {
        if !runs.is_empty() {
            self.zero_runs.insert((layer, entry), runs.into_boxed_slice());
        }
    }

    /// Declares that the zero runs of every file entry read so far were recorded (or that it
    /// had none), so that [`MergedTree::zero_runs`] answers.
    pub fn set_zero_runs_known(&mut self, known: bool) {
        self.zero_runs_known = known;
    }

    /// Nodes in the tree (unreachable ones included), the root among them.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Gives back the room reserved for nodes yet to come, once every layer is applied.
    pub fn shrink_to_fit(&mut self) {
        self.nodes.shrink_to_fit();
        self.zero_runs.shrink_to_fit();
    }

    /// Whether the zero runs of every file entry were recorded.
    pub fn zero_runs_known(&self) -> bool {
        self.zero_runs_known
    }

    /// The all-zero 4 KiB blocks of the data of entry `entry` of layer `layer`, or `None`
    /// when they were not recorded for every entry.
    pub fn zero_runs(&self, layer: usize, entry: u64) -> Option<&[(u64, u64)]> {
        if !self.zero_runs_known {
            return None;
        }
        Some(self.zero_runs.get(&(layer, entry)).map_or(&[], |r| &r[..]))
    }

    /// The zero runs of every file entry recorded, by (layer, entry), taken out of the tree;
    /// `None` when they were not recorded for every entry.
    pub fn take_zero_runs(&mut self) -> Option<HashMap<(usize, u64), ZeroRuns>> {
        let runs = std::mem::take(&mut self.zero_runs);
        self.zero_runs_known.then_some(runs)
    }

    /// Takes node `id` out of the tree, leaving an empty directory of default metadata in its
    /// place: for a consumer that walks the tree once and frees each node's names, targets and
    /// attributes as it goes.
    pub fn take_node(&mut self, id: NodeId) -> TreeNode {
        let empty =
            TreeNode { kind: NodeKind::Dir(BTreeMap::new()), meta: EntryMeta::default(), layer: 0 };
        std::mem::replace(&mut self.nodes[id.0 as usize], empty)
    }

    /// The root directory.
    pub fn root(&self) -> NodeId {
        NodeId(0)
    }

    /// The node `id`.
    pub fn node(&self, id: NodeId) -> &TreeNode {
        &self.nodes[id.0 as usize]
    }

    /// The entries of directory `id` (empty for other nodes).
    pub fn children(&self, id: NodeId) -> impl Iterator<Item = (&[u8], NodeId)> {
        let map = match &self.node(id).kind {
            NodeKind::Dir(map) => Some(map),
            _ => None,
        };
        map.into_iter().flat_map(|m| m.iter().map(|(k, v)| (k.as_slice(), *v)))
    }

    /// The node at `path` (slash-separated, relative to the root), without following symlinks.
    pub fn lookup(&self, path: &[u8]) -> Option<NodeId> {
        let mut cur = self.root();
        for comp in path::components(path).ok()? {
            match &self.node(cur).kind {
                NodeKind::Dir(map) => cur = *map.get(comp)?,
                _ => return None,
            }
        }
        Some(cur)
    }

    fn add(&mut self, node: TreeNode) -> NodeId {
        let id = NodeId(u32::try_from(self.nodes.len()).expect("fewer than 2^32 nodes"));
        self.nodes.push(node);
        id
    }

    fn dir_mut(&mut self, id: NodeId) -> &mut BTreeMap<Vec<u8>, NodeId> {
        match &mut self.nodes[id.0 as usize].kind {
            NodeKind::Dir(map) => map,
            _ => unreachable!("resolved parents are directories"),
        }
    }

    /// Applies entry `entry` of layer number `layer` (0-based), named `label` in errors.
    pub fn apply(&mut self, layer: usize, label: &str, entry: &LayerEntry) -> Result<(), Error> {
        let bad = |reason: String| Error::Entry {
            layer: label.to_owned(),
            entry: shown(&entry.path),
            reason,
        };
        let comps = path::components(&entry.path).map_err(bad)?;
        self.summary.entries += 1;
        let Some((name, parents)) = comps.split_last() else {
            return match entry.kind {
                EntryKind::Dir => {
                    self.nodes[0].meta = entry.meta.clone();
                    Ok(())
                }
                _ => Err(bad("the image root must be a directory".into())),
            };
        };
        if let Some(target) = name.strip_prefix(b".wh.") {
            return self.whiteout(layer, parents, target).map_err(bad);
        }
        let parent =
            self.resolve_dir(parents, Some(layer)).map_err(bad)?.expect("created when missing");
        let existing = self.dir_mut(parent).get(*name).copied();
        if let Some(id) = existing
            && self.node(id).layer == layer
            && !(matches!(entry.kind, EntryKind::Dir)
                && matches!(self.node(id).kind, NodeKind::Dir(_)))
        {
            // Which of two entries a tool extracts last differs between tools: refuse to guess.
            return Err(bad(
                "duplicate entry: an earlier entry of this layer has the same name".into()
            ));
        }
        let kind = match &entry.kind {
            EntryKind::Dir => {
                if let Some(id) = existing
                    && matches!(self.node(id).kind, NodeKind::Dir(_))
                {
                    let node = &mut self.nodes[id.0 as usize];
                    node.meta = entry.meta.clone();
                    node.layer = layer;
                    return Ok(());
                }
                NodeKind::Dir(BTreeMap::new())
            }
            EntryKind::File => {
                NodeKind::File { size: entry.size, source: FileData::Layer(layer, entry.index) }
            }
            EntryKind::Symlink(target) => NodeKind::Symlink(target.clone()),
            EntryKind::CharDev { major, minor } => NodeKind::CharDev(*major, *minor),
            EntryKind::BlockDev { major, minor } => NodeKind::BlockDev(*major, *minor),
            EntryKind::Fifo => NodeKind::Fifo,
            EntryKind::Hardlink(target) => {
                let id = self.hardlink_target(target).map_err(bad)?;
                self.dir_mut(parent).insert(name.to_vec(), id);
                self.summary.hardlinks += 1;
                return Ok(());
            }
        };
        let id = self.add(TreeNode { kind, meta: entry.meta.clone(), layer });
        self.dir_mut(parent).insert(name.to_vec(), id);
        Ok(())
    }

    /// Resolves `path` like the kernel would inside the image: every symlink followed, absolute
    /// targets from the root and `..` clamped at it. `None` if it does not exist.
    pub fn resolve(&mut self, path: &[u8]) -> Option<NodeId> {
        let comps = path::components(path).ok()?;
        let Some((name, parents)) = comps.split_last() else { return Some(self.root()) };
        let mut dir = self.resolve_dir(parents, None).ok()??;
        let mut name = name.to_vec();
        for _ in 0..MAX_FOLLOW {
            let id = self.dir_mut(dir).get(&name).copied()?;
            let NodeKind::Symlink(target) = &self.node(id).kind else { return Some(id) };
            let target = target.clone();
            let (parent, last) = match target.iter().rposition(|&b| b == b'/') {
                Some(i) => (target[..=i].to_vec(), target[i + 1..].to_vec()),
                None => (Vec::new(), target.clone()),
            };
            // Resolve the target's directory relative to the symlink's own directory.
            let mut full =
                if parent.first() == Some(&b'/') { Vec::new() } else { self.path_of_dir(dir)? };
            full.extend_from_slice(&parent);
            let parts: Vec<&[u8]> = full.split(|&b| b == b'/').collect();
            dir = self.resolve_dir(&parts, None).ok()??;
            if last.is_empty() || last == b"." {
                return Some(dir);
            }
            name = last;
        }
        None
    }

    /// The path of directory `dir` from the root, with a trailing `/` (empty for the root).
    fn path_of_dir(&self, dir: NodeId) -> Option<Vec<u8>> {
        if dir == self.root() {
            return Some(Vec::new());
        }
        let mut path: Vec<Vec<u8>> = Vec::new();
        let mut target = dir;
        'up: while target != self.root() {
            for (i, node) in self.nodes.iter().enumerate() {
                if let NodeKind::Dir(map) = &node.kind
                    && let Some((name, _)) = map.iter().find(|(_, id)| **id == target)
                {
                    path.push(name.clone());
                    target = NodeId(u32::try_from(i).expect("fits"));
                    continue 'up;
                }
            }
            return None;
        }
        path.reverse();
        let mut out = path.join(&b'/');
        out.push(b'/');
        Some(out)
    }

    /// Puts `kind` at `path` after every layer, replacing what is there and creating parents
    /// (mode 0755, root-owned). Symlinked parents are followed inside the tree.
    fn put(&mut self, path: &[u8], kind: NodeKind, meta: EntryMeta) -> Result<NodeId, Error> {
        let bad = |reason: String| Error::Entry {
            layer: "guest fix-up".into(),
            entry: shown(path),
            reason,
        };
        let comps = path::components(path).map_err(bad)?;
        let (name, parents) =
            comps.split_last().ok_or_else(|| bad("cannot replace the root".into()))?;
        let parent = self
            .resolve_dir(parents, Some(FIXUP_LAYER))
            .map_err(bad)?
            .expect("created when missing");
        if let NodeKind::Dir(_) = kind
            && let Some(id) = self.dir_mut(parent).get(*name).copied()
            && matches!(self.node(id).kind, NodeKind::Dir(_))
        {
            self.nodes[id.0 as usize].meta = meta;
            return Ok(id);
        }
        let id = self.add(TreeNode { kind, meta, layer: FIXUP_LAYER });
        self.dir_mut(parent).insert(name.to_vec(), id);
        Ok(id)
    }

    /// Adds or replaces the regular file `path` with `data`.
    pub fn put_file(&mut self, path: &[u8], data: Vec<u8>, meta: EntryMeta) -> Result<(), Error> {
        let size = data.len() as u64;
        self.put(path, NodeKind::File { size, source: FileData::Inline(data.into()) }, meta)
            .map(drop)
    }

    /// Adds or replaces the symlink `path` pointing at `target`.
    pub fn put_symlink(
        &mut self,
        path: &[u8],
        target: &[u8],
        meta: EntryMeta,
    ) -> Result<(), Error> {
        self.put(path, NodeKind::Symlink(target.to_vec()), meta).map(drop)
    }

    /// Creates the directory `path` (and its parents), or updates its metadata if it exists.
    pub fn put_dir(&mut self, path: &[u8], meta: EntryMeta) -> Result<(), Error> {
        self.put(path, NodeKind::Dir(BTreeMap::new()), meta).map(drop)
    }

    /// Removes the name `path` (not following a final symlink); whether something was there.
    pub fn remove(&mut self, path: &[u8]) -> bool {
        let Ok(comps) = path::components(path) else { return false };
        let Some((name, parents)) = comps.split_last() else { return false };
        match self.resolve_dir(parents, None) {
            Ok(Some(dir)) => self.dir_mut(dir).remove(*name).is_some(),
            _ => false,
        }
    }

    fn whiteout(&mut self, layer: usize, parents: &[&[u8]], target: &[u8]) -> Result<(), String> {
        let Some(dir) = self.resolve_dir(parents, None)? else { return Ok(()) };
        if target == b".wh..opq" {
            let lower: Vec<Vec<u8>> = self
                .children(dir)
                .filter(|(_, id)| self.node(*id).layer < layer)
                .map(|(name, _)| name.to_vec())
                .collect();
            let map = self.dir_mut(dir);
            for name in lower {
                map.remove(&name);
            }
            self.summary.opaque += 1;
            return Ok(());
        }
        if target.starts_with(b".wh.") {
            return Ok(()); // aufs metadata such as .wh..wh.plnk
        }
        if target.is_empty() || target == b"." || target == b".." {
            return Err("whiteout does not name an entry of its directory".into());
        }
        let lower =
            self.dir_mut(dir).get(target).copied().filter(|id| self.node(*id).layer < layer);
        if lower.is_some() {
            self.dir_mut(dir).remove(target);
            self.summary.whiteouts += 1;
        }
        Ok(())
    }

    fn hardlink_target(&mut self, target: &[u8]) -> Result<NodeId, String> {
        let comps = path::components(target).map_err(|why| format!("hard link target: {why}"))?;
        let shown = shown(target);
        let Some((name, parents)) = comps.split_last() else {
            return Err("hard link to the image root".into());
        };
        let missing =
            || format!("hard link target {shown:?} does not exist in this or a lower layer");
        let dir = self.resolve_dir(parents, None)?.ok_or_else(missing)?;
        let id = self.dir_mut(dir).get(*name).copied().ok_or_else(missing)?;
        if matches!(self.node(id).kind, NodeKind::Dir(_)) {
            return Err(format!("hard link target {shown:?} is a directory"));
        }
        Ok(id)
    }

    /// Walks `comps` from the root, following symlinked directories inside the tree. Missing
    /// directories are created for `create = Some(layer)`; otherwise `Ok(None)`.
    fn resolve_dir(
        &mut self,
        comps: &[&[u8]],
        create: Option<usize>,
    ) -> Result<Option<NodeId>, String> {
        let mut stack = vec![self.root()];
        // Borrowed: a deep path is thousands of components, and only a symlink's target needs
        // copying.
        let mut pending: VecDeque<Cow<'_, [u8]>> =
            comps.iter().map(|&c| Cow::Borrowed(c)).collect();
        let mut follows = 0;
        while let Some(comp) = pending.pop_front() {
            match &*comp {
                b"" | b"." => continue,
                b".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let cur = *stack.last().expect("root stays");
            let child = self.dir_mut(cur).get(&*comp).copied();
            match child.map(|id| (id, &self.node(id).kind)) {
                None => match create {
                    Some(layer) => {
                        let id = self.add(implicit_dir(layer));
                        self.dir_mut(cur).insert(comp.into_owned(), id);
                        stack.push(id);
                    }
                    None => return Ok(None),
                },
                Some((id, NodeKind::Dir(_))) => stack.push(id),
                Some((_, NodeKind::Symlink(target))) => {
                    follows += 1;
                    if follows > MAX_FOLLOW {
                        return Err(
                            "too many levels of symbolic links in a parent directory".into()
                        );
                    }
                    if target.first() == Some(&b'/') {
                        stack.truncate(1);
                    }
                    let target = target.clone();
                    for part in target.split(|&b| b == b'/').rev() {
                        pending.push_front(Cow::Owned(part.to_vec()));
                    }
                }
                Some(_) => {
                    return Err(format!("parent {:?} is not a directory", shown(&comp)));
                }
            }
        }
        Ok(Some(*stack.last().expect("root stays")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> LayerEntry {
        LayerEntry {
            index: 0,
            path: path.as_bytes().to_vec(),
            kind,
            meta: EntryMeta { mode: 0o644, ..EntryMeta::default() },
            size: 1,
        }
    }

    fn names(t: &MergedTree, dir: &str) -> Vec<String> {
        let id = t.lookup(dir.as_bytes()).unwrap();
        t.children(id).map(|(n, _)| String::from_utf8_lossy(n).into_owned()).collect()
    }

    fn apply(t: &mut MergedTree, layer: usize, path: &str, kind: EntryKind) -> Result<(), Error> {
        t.apply(layer, &format!("layer {}", layer + 1), &entry(path, kind))
    }

    #[test]
    fn upper_wins_and_whiteouts_only_hide_lower_layers() {
        let mut t = MergedTree::new();
        for p in ["a/x", "a/y", "a/z", "b"] {
            apply(&mut t, 0, p, EntryKind::File).unwrap();
        }
        apply(&mut t, 1, "a/.wh.x", EntryKind::File).unwrap();
        apply(&mut t, 1, "a/new", EntryKind::File).unwrap();
        apply(&mut t, 1, "a/.wh.new", EntryKind::File).unwrap(); // same layer: no effect
        apply(&mut t, 1, "b", EntryKind::Dir).unwrap(); // file replaced by a directory
        apply(&mut t, 1, ".wh.nothing", EntryKind::File).unwrap();
        assert_eq!(names(&t, "a"), ["new", "y", "z"]);
        assert!(matches!(t.node(t.lookup(b"b").unwrap()).kind, NodeKind::Dir(_)));
        assert_eq!(t.summary.whiteouts, 1);
    }

    #[test]
    fn opaque_directories_keep_their_own_layer() {
        let mut t = MergedTree::new();
        apply(&mut t, 0, "d/old1", EntryKind::File).unwrap();
        apply(&mut t, 0, "d/old2", EntryKind::File).unwrap();
        apply(&mut t, 1, "d/mine", EntryKind::File).unwrap();
        apply(&mut t, 1, "d/.wh..wh..opq", EntryKind::File).unwrap();
        apply(&mut t, 1, "d/later", EntryKind::File).unwrap();
        apply(&mut t, 1, "d/.wh..wh.plnk", EntryKind::File).unwrap();
        assert_eq!(names(&t, "d"), ["later", "mine"]);
    }

    #[test]
    fn escapes_are_refused_with_layer_and_entry() {
        let mut t = MergedTree::new();
        apply(&mut t, 0, "a/f", EntryKind::File).unwrap();
        for (path, want) in [
            ("../etc/passwd", "contains '..'"),
            ("/../etc/passwd", "contains '..'"),
            ("a/.wh...", "does not name an entry"),
            ("a/.wh.", "does not name an entry"),
        ] {
            let err = apply(&mut t, 2, path, EntryKind::File).unwrap_err().to_string();
            assert!(err.starts_with(&format!("layer 3: entry {path:?}: ")), "{err}");
            assert!(err.contains(want), "{path}: {err}");
        }
    }

    #[test]
    fn hardlinks_share_nodes_and_need_targets() {
        let mut t = MergedTree::new();
        apply(&mut t, 0, "usr/bin/perl", EntryKind::File).unwrap();
        apply(&mut t, 0, "usr/bin/perl5", EntryKind::Hardlink(b"usr/bin/perl".to_vec())).unwrap();
        assert_eq!(t.lookup(b"usr/bin/perl"), t.lookup(b"usr/bin/perl5"));
        // Replacing the target later keeps the link on the old node.
        apply(&mut t, 1, "usr/bin/perl", EntryKind::File).unwrap();
        assert_ne!(t.lookup(b"usr/bin/perl"), t.lookup(b"usr/bin/perl5"));
        let err = apply(&mut t, 1, "x", EntryKind::Hardlink(b"missing".to_vec()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hard link target \"missing\" does not exist"), "{err}");
        let err =
            apply(&mut t, 1, "y", EntryKind::Hardlink(b"usr".to_vec())).unwrap_err().to_string();
        assert!(err.contains("is a directory"), "{err}");
        let err = apply(&mut t, 1, "z", EntryKind::Hardlink(b"../etc/shadow".to_vec()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hard link target: path contains '..'"), "{err}");
    }

    #[test]
    fn fixups_add_replace_and_resolve() {
        let mut t = MergedTree::new();
        apply(&mut t, 0, "usr/lib/os-release", EntryKind::File).unwrap();
        apply(&mut t, 0, "etc/os-release", EntryKind::Symlink(b"../usr/lib/os-release".to_vec()))
            .unwrap();
        apply(&mut t, 0, "etc/hostname", EntryKind::File).unwrap();
        let real = t.lookup(b"usr/lib/os-release").unwrap();
        assert_eq!(t.resolve(b"etc/os-release"), Some(real));
        assert_eq!(t.resolve(b"/etc/os-release"), Some(real));
        let meta = EntryMeta { mode: 0o644, ..EntryMeta::default() };
        t.put_file(b"etc/hostname", b"guest\n".to_vec(), meta.clone()).unwrap();
        t.put_file(b"etc/systemd/system/app.service", b"[Unit]\n".to_vec(), meta.clone()).unwrap();
        let NodeKind::File { size, source: FileData::Inline(data) } =
            &t.node(t.lookup(b"etc/hostname").unwrap()).kind
        else {
            panic!()
        };
        assert_eq!((*size, &data[..]), (6, &b"guest\n"[..]));
        assert!(t.lookup(b"etc/systemd/system/app.service").is_some());
        assert!(t.remove(b"etc/os-release"));
        assert!(!t.remove(b"etc/os-release"));
        assert_eq!(t.resolve(b"etc/os-release"), None);
        assert!(t.put_file(b"../x", Vec::new(), meta).is_err());
    }

    #[test]
    fn symlinked_parents_resolve_inside_the_tree() {
        let mut t = MergedTree::new();
        apply(&mut t, 0, "run", EntryKind::Dir).unwrap();
        apply(&mut t, 0, "var/run", EntryKind::Symlink(b"/run".to_vec())).unwrap();
        apply(&mut t, 0, "up", EntryKind::Symlink(b"../../../../run".to_vec())).unwrap();
        apply(&mut t, 1, "var/run/pid", EntryKind::File).unwrap();
        apply(&mut t, 1, "up/other", EntryKind::File).unwrap();
        assert_eq!(names(&t, "run"), ["other", "pid"]);
        // The symlink itself is kept, not replaced by a directory.
        assert!(matches!(t.node(t.lookup(b"var/run").unwrap()).kind, NodeKind::Symlink(_)));
        apply(&mut t, 1, "loop", EntryKind::Symlink(b"loop".to_vec())).unwrap();
        let err = apply(&mut t, 1, "loop/x", EntryKind::File).unwrap_err().to_string();
        assert!(err.contains("too many levels"), "{err}");
        apply(&mut t, 1, "file", EntryKind::File).unwrap();
        let err = apply(&mut t, 1, "file/x", EntryKind::File).unwrap_err().to_string();
        assert!(err.contains("is not a directory"), "{err}");
    }

    #[test]
    fn duplicate_entries_of_one_layer_are_refused() {
        let mut t = MergedTree::new();
        apply(&mut t, 0, "d", EntryKind::Dir).unwrap();
        apply(&mut t, 0, "d/x", EntryKind::File).unwrap();
        apply(&mut t, 0, "d", EntryKind::Dir).unwrap(); // metadata update only
        for (path, kind) in
            [("d", EntryKind::File), ("d/x", EntryKind::File), ("d/x", EntryKind::Dir)]
        {
            let err = apply(&mut t, 0, path, kind).unwrap_err().to_string();
            assert!(err.contains("duplicate entry"), "{err}");
        }
        // A later layer replaces freely.
        apply(&mut t, 1, "d/x", EntryKind::Dir).unwrap();
        apply(&mut t, 1, "d", EntryKind::File).unwrap();
    }
}
