//! The tree an image is built from: directories, regular files (their size only; the bytes are
//! streamed at write time) and symlinks, each with POSIX metadata for Rock Ridge (RRIP `PX`,
//! `TF`).
//!
//! Paths are `/`-separated and relative to the image root. Missing parent directories are
//! created with mode `0755`, owner 0:0 and the default mtime; [`IsoBuilder::add_dir`] may later
//! give such a directory its own metadata, once.

use std::collections::BTreeMap;

use crate::options::IsoOptions;
use crate::{Error, MAX_FILE_SIZE, time};

/// ECMA-119 6.8.2.1: at most eight directory levels, the root being level 1.
pub(crate) const MAX_DEPTH: usize = 8;
/// Longest name component (POSIX `NAME_MAX`).
pub(crate) const MAX_NAME_LEN: usize = 255;
/// Longest symlink target: libisofs (xorriso, osirrox) refuses to load an image holding a
/// longer Rock Ridge symlink, so one long link would make the whole image unreadable there.
pub(crate) const MAX_TARGET_LEN: usize = 1024;
/// Mode of directories created implicitly as parents.
const IMPLICIT_DIR_MODE: u32 = 0o755;

/// Identifies a regular file added with [`IsoBuilder::add_file`]; the writer passes it to the
/// data source to open that file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub(crate) usize);

impl FileId {
    /// The file's position in the order files were added, starting at 0.
    pub fn index(self) -> usize {
        self.0
    }
}

/// POSIX metadata of an entry, recorded with Rock Ridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    /// Permission bits (at most `0o7777`); the writer adds the file type bits.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time in seconds since the Unix epoch; `None` means
    /// [`IsoOptions::source_date_epoch`].
    pub mtime: Option<i64>,
}

impl Metadata {
    /// Metadata with these permission bits, owner 0:0 and the default mtime.
    pub fn new(mode: u32) -> Self {
        Metadata { mode, uid: 0, gid: 0, mtime: None }
    }

    /// Sets the owner.
    #[must_use]
    pub fn with_owner(self, uid: u32, gid: u32) -> Self {
        Metadata { uid, gid, ..self }
    }

    /// Sets the modification time.
    #[must_use]
    pub fn with_mtime(self, mtime: i64) -> Self {
        Metadata { mtime: Some(mtime), ..self }
    }
}

#[derive(Debug)]
pub(crate) enum NodeKind {
    Dir { children: BTreeMap<String, usize>, explicit: bool },
    File { size: u64, id: FileId },
    Symlink { target: String },
}

#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub parent: usize,
    pub meta: Metadata,
    pub kind: NodeKind,
}

impl Node {
    pub(crate) fn children(&self) -> Option<&BTreeMap<String, usize>> {
        match &self.kind {
            NodeKind::Dir { children, .. } => Some(children),
            _ => None,
        }
    }

    pub(crate) fn is_dir(&self) -> bool {
        matches!(self.kind, NodeKind::Dir { .. })
    }
}

/// Index of the root directory in [`IsoBuilder::nodes`].
pub(crate) const ROOT: usize = 0;

/// Collects the entries of an image; write it with [`crate::write_iso`].
#[derive(Debug)]
pub struct IsoBuilder {
    pub(crate) options: IsoOptions,
    pub(crate) nodes: Vec<Node>,
    /// Node of each [`FileId`].
    pub(crate) files: Vec<usize>,
}

impl IsoBuilder {
    /// An empty image with these options, which are checked now.
    pub fn new(options: IsoOptions) -> Result<Self, Error> {
        options.validate()?;
        let root = Node {
            name: String::new(),
            parent: ROOT,
            meta: Metadata::new(IMPLICIT_DIR_MODE),
            kind: NodeKind::Dir { children: BTreeMap::new(), explicit: false },
        };
        Ok(IsoBuilder { options, nodes: vec![root], files: Vec::new() })
    }

    /// The options the image is written with.
    pub fn options(&self) -> &IsoOptions {
        &self.options
    }

    /// Sets the root directory's metadata (by default `0755`, 0:0, default mtime).
    pub fn set_root_metadata(&mut self, meta: Metadata) -> Result<(), Error> {
        check_meta("/", meta)?;
        self.nodes[ROOT].meta = meta;
        Ok(())
    }

    /// Adds a directory, creating missing parents.
    pub fn add_dir(&mut self, path: &str, meta: Metadata) -> Result<(), Error> {
        let (parent, name) = self.prepare(path, meta)?;
        if let Some(&existing) = self.child(parent, name) {
            return match &mut self.nodes[existing].kind {
                NodeKind::Dir { explicit, .. } if !*explicit => {
                    *explicit = true;
                    self.nodes[existing].meta = meta;
                    Ok(())
                }
                _ => Err(Error::Duplicate { path: path.into() }),
            };
        }
        self.check_depth(path, path.split('/').count())?;
        self.insert(
            parent,
            name,
            meta,
            NodeKind::Dir { children: BTreeMap::new(), explicit: true },
        );
        Ok(())
    }

    /// Adds a regular file of `size` bytes, creating missing parents. Its bytes are read from the
    /// data source at write time, where the source must deliver exactly `size` bytes.
    pub fn add_file(&mut self, path: &str, size: u64, meta: Metadata) -> Result<FileId, Error> {
        if size > MAX_FILE_SIZE {
            return Err(Error::FileTooLarge { path: path.into(), size });
        }
        let (parent, name) = self.prepare(path, meta)?;
        if self.child(parent, name).is_some() {
            return Err(Error::Duplicate { path: path.into() });
        }
        let id = FileId(self.files.len());
        let node = self.insert(parent, name, meta, NodeKind::File { size, id });
        self.files.push(node);
        Ok(id)
    }

    /// Adds a symlink to `target`, creating missing parents. The target (1 to 1024 bytes, no
    /// NUL) is recorded exactly as given (Rock Ridge `SL`) and need not exist.
    pub fn add_symlink(&mut self, path: &str, target: &str, meta: Metadata) -> Result<(), Error> {
        let bad =
            |reason| Error::SymlinkTarget { path: path.into(), target: target.into(), reason };
        if target.is_empty() {
            return Err(bad("is empty"));
        }
        if target.contains('\0') {
            return Err(bad("contains a NUL byte"));
        }
        if target.len() > MAX_TARGET_LEN {
            return Err(bad("is longer than 1024 bytes, which xorriso cannot read"));
        }
        let (parent, name) = self.prepare(path, meta)?;
        if self.child(parent, name).is_some() {
            return Err(Error::Duplicate { path: path.into() });
        }
        self.insert(parent, name, meta, NodeKind::Symlink { target: target.into() });
        Ok(())
    }

    /// Number of regular files added so far.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// The path and declared size of a file, or `None` for an id from another builder.
    pub fn file(&self, id: FileId) -> Option<(String, u64)> {
        let node = *self.files.get(id.0)?;
        match self.nodes[node].kind {
            NodeKind::File { size, .. } => Some((self.path_of(node), size)),
            _ => None,
        }
    }

    /// The `/`-separated path of a node, empty for the root.
    pub(crate) fn path_of(&self, mut node: usize) -> String {
        let mut parts = Vec::new();
        while node != ROOT {
            parts.push(self.nodes[node].name.as_str());
            node = self.nodes[node].parent;
        }
        parts.reverse();
        parts.join("/")
    }

    /// The mtime of a node, with the default applied.
    pub(crate) fn mtime(&self, node: usize) -> i64 {
        self.nodes[node].meta.mtime.unwrap_or(self.options.source_date_epoch)
    }

    fn child(&self, parent: usize, name: &str) -> Option<&usize> {
        self.nodes[parent].children().and_then(|c| c.get(name))
    }

    /// Validates `path` and `meta` and returns the parent directory (created as needed) and the
    /// last component.
    fn prepare<'p>(&mut self, path: &'p str, meta: Metadata) -> Result<(usize, &'p str), Error> {
        validate_path(path)?;
        check_meta(path, meta)?;
        let (dirs, name) = match path.rsplit_once('/') {
            Some((dirs, name)) => (Some(dirs), name),
            None => (None, path),
        };
        let mut parent = ROOT;
        for (depth, component) in dirs.into_iter().flat_map(|d| d.split('/')).enumerate() {
            parent = match self.child(parent, component) {
                Some(&existing) if self.nodes[existing].is_dir() => existing,
                Some(_) => {
                    return Err(Error::NotADirectory {
                        path: path.into(),
                        parent: path.split('/').take(depth + 1).collect::<Vec<_>>().join("/"),
                    });
                }
                None => {
                    let dir_path = path.split('/').take(depth + 1).collect::<Vec<_>>().join("/");
                    self.check_depth(&dir_path, depth + 1)?;
                    let kind = NodeKind::Dir { children: BTreeMap::new(), explicit: false };
                    self.insert(parent, component, Metadata::new(IMPLICIT_DIR_MODE), kind)
                }
            };
        }
        Ok((parent, name))
    }

    /// Fails when a directory with `components` path components is too deep.
    fn check_depth(&self, path: &str, components: usize) -> Result<(), Error> {
        let depth = components + 1;
        if depth > MAX_DEPTH && !self.options.allow_deep_paths {
            return Err(Error::TooDeep { path: path.into(), depth, max: MAX_DEPTH });
        }
        Ok(())
    }

    fn insert(&mut self, parent: usize, name: &str, meta: Metadata, kind: NodeKind) -> usize {
        let index = self.nodes.len();
        self.nodes.push(Node { name: name.into(), parent, meta, kind });
        if let NodeKind::Dir { children, .. } = &mut self.nodes[parent].kind {
            children.insert(name.into(), index);
        }
        index
    }
}

fn validate_path(path: &str) -> Result<(), Error> {
    let bad = |reason| Err(Error::InvalidPath { path: path.into(), reason });
    if path.is_empty() {
        return bad("empty path");
    }
    if path.starts_with('/') {
        return bad("must be relative to the image root");
    }
    for component in path.split('/') {
        match component {
            "" => return bad("empty path component"),
            "." | ".." => return bad("`.` and `..` are not allowed"),
            c if c.contains('\0') => return bad("contains a NUL byte"),
            c if c.len() > MAX_NAME_LEN => return bad("a name is longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

fn check_meta(path: &str, meta: Metadata) -> Result<(), Error> {
    if meta.mode > 0o7777 {
        return Err(Error::InvalidMode { path: path.into(), mode: meta.mode });
    }
    match meta.mtime {
        Some(time) if !time::in_range(time) => {
            Err(Error::TimeOutOfRange { path: path.into(), time })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builder() -> IsoBuilder {
        IsoBuilder::new(IsoOptions::new("T", 0)).unwrap()
    }

    #[test]
    fn implicit_parents_and_explicit_metadata() {
        let mut b = builder();
        let id = b.add_file("a/b/c.txt", 3, Metadata::new(0o644)).unwrap();
        assert_eq!(b.file(id), Some(("a/b/c.txt".into(), 3)));
        b.add_dir("a", Metadata::new(0o700).with_mtime(5)).unwrap();
        let a = b.nodes[ROOT].children().unwrap()["a"];
        assert_eq!(b.nodes[a].meta.mode, 0o700);
        assert_eq!(b.mtime(a), 5);
        assert!(matches!(b.add_dir("a", Metadata::new(0o700)), Err(Error::Duplicate { .. })));
        assert!(matches!(b.add_file("a/b", 1, Metadata::new(0)), Err(Error::Duplicate { .. })));
        let err = b.add_file("a/b/c.txt/d", 1, Metadata::new(0)).unwrap_err();
        assert_eq!(err.to_string(), "a/b/c.txt/d: parent a/b/c.txt is not a directory");
    }

    #[test]
    fn rejects_bad_paths_and_metadata() {
        let mut b = builder();
        for path in ["", "/abs", "a//b", "a/./b", "../x", "a/", "nul\0"] {
            assert!(
                matches!(b.add_file(path, 0, Metadata::new(0)), Err(Error::InvalidPath { .. })),
                "{path:?}"
            );
        }
        assert!(b.add_file(&"n".repeat(255), 0, Metadata::new(0)).is_ok());
        assert!(b.add_file(&"n".repeat(256), 0, Metadata::new(0)).is_err());
        let err = b.add_file("m", 0, Metadata::new(0o100_644)).unwrap_err();
        assert!(matches!(err, Error::InvalidMode { mode: 0o100_644, .. }));
        let err = b.add_file("t", 0, Metadata::new(0).with_mtime(i64::MAX)).unwrap_err();
        assert!(matches!(err, Error::TimeOutOfRange { .. }));
        let err = b.add_file("big", MAX_FILE_SIZE + 1, Metadata::new(0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "big: 4294967296 bytes is too large; ISO 9660 files without multi-extent support must be under 4 GiB"
        );
        assert!(b.add_symlink("l", "", Metadata::new(0o777)).is_err());
        assert!(b.add_symlink("l", &"t".repeat(1025), Metadata::new(0o777)).is_err());
        b.add_symlink("l1024", &"t".repeat(1024), Metadata::new(0o777)).unwrap();
        b.add_symlink("l", "../../anything", Metadata::new(0o777)).unwrap();
    }

    #[test]
    fn depth_limit() {
        let mut b = builder();
        b.add_file("1/2/3/4/5/6/7/file", 0, Metadata::new(0)).unwrap();
        let err = b.add_file("1/2/3/4/5/6/7/8/file", 0, Metadata::new(0)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "1/2/3/4/5/6/7/8: directory depth 9 exceeds the ISO 9660 limit of 8 levels"
        );
        assert!(matches!(
            b.add_dir("1/2/3/4/5/6/7/8", Metadata::new(0)),
            Err(Error::TooDeep { .. })
        ));
        let mut opts = IsoOptions::new("T", 0);
        opts.allow_deep_paths = true;
        let mut b = IsoBuilder::new(opts).unwrap();
        b.add_file(&["d"; 20].join("/"), 0, Metadata::new(0)).unwrap();
    }
}
