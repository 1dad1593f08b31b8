//! The description of the tree to write: inodes, their attributes, and directory entries.

use std::collections::HashMap;

use crate::{Error, limits};

/// Handle of an inode added to an [`FsBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InodeId(pub(crate) u32);

/// What an inode is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// A directory; entries are added with [`FsBuilder::link`].
    Dir,
    /// A regular file of `size` bytes, supplied later to the writer. Files are laid out in
    /// increasing `data_key` order, ties broken by creation order; the writer expects their
    /// data in that order ([`crate::Plan::file_order`]).
    File {
        /// Length in bytes.
        size: u64,
        /// Placement order of the data.
        data_key: u64,
    },
    /// A symbolic link with this target, kept verbatim.
    Symlink(Vec<u8>),
    /// A character device.
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
}

/// A time with nanoseconds, as stored in 256-byte ext4 inodes (years 1901 to 2446).
///
/// A time outside [`limits::TIMESTAMP_MIN`]..=[`limits::TIMESTAMP_MAX`] is stored as the nearer
/// end of that range, as the kernel stores such a time set on ext4; nanoseconds past 999,999,999
/// are stored as 999,999,999.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since the epoch; may be negative.
    pub sec: i64,
    /// Nanoseconds, below 10^9.
    pub nsec: u32,
}

impl Timestamp {
    /// A whole-second time.
    pub fn from_secs(sec: i64) -> Self {
        Timestamp { sec, nsec: 0 }
    }

    /// The 32-bit seconds field and the `extra` field (`nsec << 2 | epoch bits`).
    /// Truncating to the 32-bit on-disk field is the format: the epoch bits carry the rest.
    #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
    pub(crate) fn encode(self) -> (u32, u32) {
        let sec = self.sec.clamp(limits::TIMESTAMP_MIN, limits::TIMESTAMP_MAX);
        let epoch = ((sec - i64::from(sec as i32)) >> 32) & 3;
        let low = sec as i32 as u32;
        let extra = (self.nsec.min(999_999_999) << 2) | epoch as u32;
        (low, extra)
    }
}

/// One extended attribute, full name (`user.x`, `security.capability`, ...) and raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    /// Full name including the namespace prefix.
    pub name: Vec<u8>,
    /// Value bytes; POSIX ACLs in the VFS (`posix_acl_xattr`, version 2) form.
    pub value: Vec<u8>,
}

/// Owner, permissions, times and xattrs of an inode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Permission bits including setuid, setgid and sticky (`0o7777`); the type comes from
    /// [`NodeKind`].
    pub perm: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Last access.
    pub atime: Timestamp,
    /// Last modification.
    pub mtime: Timestamp,
    /// Last status change.
    pub ctime: Timestamp,
    /// Extended attributes.
    pub xattrs: Vec<Xattr>,
}

pub(crate) struct Node {
    pub kind: NodeKind,
    pub attrs: Attrs,
    /// Directory entries in insertion order (directories only).
    pub entries: Vec<(Vec<u8>, InodeId)>,
    /// Names pointing at this inode (at most [`limits::LINK_MAX`]).
    pub links: u32,
    /// Subdirectories (directories only; at most [`limits::MAX_SUBDIRS`]).
    pub subdirs: u32,
    /// The directory holding the first name of this inode (itself for the root), for messages.
    pub parent: InodeId,
}

/// Builds the description of a filesystem tree.
pub struct FsBuilder {
    pub(crate) nodes: Vec<Node>,
    /// (directory, name) → child, for lookups and duplicate detection.
    pub(crate) names: HashMap<(InodeId, Vec<u8>), InodeId>,
    /// Files whose data already lies in the data zone, by node index.
    pub(crate) zone_data: HashMap<u32, crate::ZoneFile>,
}

impl FsBuilder {
    /// A tree holding only the root directory, with `root` attributes.
    pub fn new(root: Attrs) -> Self {
        Self::with_capacity(root, 1)
    }

    /// Like [`FsBuilder::new`], with room for `inodes` inodes (the root's included), for a
    /// caller that knows how many are coming.
    pub fn with_capacity(root: Attrs, inodes: usize) -> Self {
        let node = Node {
            kind: NodeKind::Dir,
            attrs: root,
            entries: Vec::new(),
            links: 1,
            subdirs: 0,
            parent: InodeId(0),
        };
        let mut nodes = Vec::with_capacity(inodes.max(1));
        nodes.push(node);
        FsBuilder { nodes, names: HashMap::new(), zone_data: HashMap::new() }
    }

    /// The root directory.
    pub fn root(&self) -> InodeId {
        InodeId(0)
    }

    /// Adds an inode that no directory names yet. What ext4 cannot store about it (a symlink
    /// target or device number out of range, a file over 16 TiB) is refused when it is first
    /// named ([`FsBuilder::link`]).
    ///
    /// # Panics
    ///
    /// At the 2^32nd inode (ext4 holds fewer: [`limits::MAX_INODES`]).
    pub fn add(&mut self, kind: NodeKind, attrs: Attrs) -> InodeId {
        let id = InodeId(u32::try_from(self.nodes.len()).expect("fewer than 2^32 inodes"));
        self.nodes.push(Node {
            kind,
            attrs,
            entries: Vec::new(),
            links: 0,
            subdirs: 0,
            parent: id,
        });
        id
    }

    /// The kind of `id`.
    pub fn kind(&self, id: InodeId) -> &NodeKind {
        &self.nodes[id.0 as usize].kind
    }

    /// Replaces the attributes of `id` (e.g. the root's, once the image says what they are).
    pub fn set_attrs(&mut self, id: InodeId, attrs: Attrs) {
        self.nodes[id.0 as usize].attrs = attrs;
    }

    /// Names `child` as `name` in directory `dir`. A directory may be named only once; any
    /// other inode may be named several times (hard links).
    ///
    /// Refused, leaving the tree as it was: a name that is invalid, taken in `dir`, or
    /// `lost+found` in the root for something that is not a directory; a 65,001st name of one
    /// inode ([`Error::TooManyLinks`]); a 64,999th subdirectory of one directory
    /// ([`Error::TooManySubdirectories`]); and, at its first name, an inode ext4 cannot store
    /// ([`Error::FileTooLarge`], [`Error::SymlinkTooLong`], [`Error::InvalidSymlink`],
    /// [`Error::InvalidDevice`]). See [`limits`].
    pub fn link(&mut self, dir: InodeId, name: &[u8], child: InodeId) -> Result<(), Error> {
        check_name(name)?;
        let parent = &self.nodes[dir.0 as usize];
        if parent.kind != NodeKind::Dir {
            return Err(Error::BadLink("linking into something that is not a directory"));
        }
        let node = &self.nodes[child.0 as usize];
        let child_is_dir = node.kind == NodeKind::Dir;
        if child_is_dir && (node.links > 0 || child == self.root()) {
            return Err(Error::BadLink("a directory can have only one name"));
        }
        if dir == self.root() && name == b"lost+found" && !child_is_dir {
            return Err(Error::InvalidName {
                name: "lost+found".into(),
                reason: "reserved in the root for the lost+found directory",
            });
        }
        let key = (dir, name.to_vec());
        if self.names.contains_key(&key) {
            return Err(Error::DuplicateName { name: String::from_utf8_lossy(name).into_owned() });
        }
        let entry_path = || join(&self.path_of(dir), name);
        if child_is_dir {
            limits::check_subdirs(u64::from(parent.subdirs) + 1, || self.path_of(dir))?;
        } else {
            limits::check_links(u64::from(node.links) + 1, entry_path)?;
        }
        if node.links == 0 {
            check_kind(&node.kind, entry_path)?;
        }
        self.names.insert(key, child);
        self.nodes[dir.0 as usize].entries.push((name.to_vec(), child));
        let node = &mut self.nodes[child.0 as usize];
        if node.links == 0 {
            node.parent = dir;
        }
        node.links += 1;
        if child_is_dir {
            self.nodes[dir.0 as usize].subdirs += 1;
        }
        Ok(())
    }

    /// The path of `id` through the first name of each inode on the way (`/` for the root),
    /// lossily decoded, for messages.
    pub(crate) fn path_of(&self, id: InodeId) -> String {
        let mut names: Vec<&[u8]> = Vec::new();
        let mut at = id;
        while at != self.root() {
            let node = &self.nodes[at.0 as usize];
            // Never named, or named only inside directories that are not in the tree (which
            // may name each other in a cycle).
            if node.parent == at || names.len() > self.nodes.len() {
                return format!("(inode handle {}, not linked into the tree)", id.0);
            }
            let parent = &self.nodes[node.parent.0 as usize];
            let name = parent.entries.iter().find(|(_, c)| *c == at).map(|(n, _)| n.as_slice());
            names.push(name.expect("a parent names its child"));
            at = node.parent;
        }
        let mut path = String::new();
        for name in names.iter().rev() {
            path = join(&path, name);
        }
        if path.is_empty() { "/".into() } else { path }
    }

    /// Says that the data of file `id` was written at `placed`, a [`crate::DataZone`]
    /// allocation of its size: the plan keeps it there ([`FsBuilder::plan_with_zone`]) and
    /// the writer neither asks for it nor writes over it.
    pub fn set_zone_data(&mut self, id: InodeId, placed: crate::ZoneFile) -> Result<(), Error> {
        match self.nodes[id.0 as usize].kind {
            NodeKind::File { size, .. } if size == placed.size => {
                self.zone_data.insert(id.0, placed);
                Ok(())
            }
            _ => Err(Error::Data(format!(
                "inode handle {}: zone data of {} bytes for something that is not a file of that \
                 size",
                id.0, placed.size
            ))),
        }
    }

    /// Looks up `name` in directory `dir`.
    pub fn lookup(&self, dir: InodeId, name: &[u8]) -> Option<InodeId> {
        self.names.get(&(dir, name.to_vec())).copied()
    }
}

/// `dir`'s path joined with `name`.
fn join(dir: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if dir.ends_with('/') { format!("{dir}{name}") } else { format!("{dir}/{name}") }
}

/// Refuses what ext4 cannot store about an inode of this kind (see [`limits`]).
fn check_kind(kind: &NodeKind, path: impl FnOnce() -> String) -> Result<(), Error> {
    match kind {
        NodeKind::File { size, .. } if *size > limits::MAX_FILE_SIZE => {
            Err(Error::FileTooLarge { path: path(), size: *size, max: limits::MAX_FILE_SIZE })
        }
        NodeKind::Symlink(target) if target.is_empty() => {
            Err(Error::InvalidSymlink { path: path(), reason: "is empty" })
        }
        NodeKind::Symlink(target) if target.contains(&0) => {
            Err(Error::InvalidSymlink { path: path(), reason: "holds a NUL byte" })
        }
        NodeKind::Symlink(target) if target.len() > limits::MAX_SYMLINK_LEN => {
            Err(Error::SymlinkTooLong {
                path: path(),
                len: target.len(),
                max: limits::MAX_SYMLINK_LEN,
            })
        }
        NodeKind::CharDev { major, minor } | NodeKind::BlockDev { major, minor }
            if *major > limits::MAX_DEV_MAJOR || *minor > limits::MAX_DEV_MINOR =>
        {
            Err(Error::InvalidDevice { path: path(), major: *major, minor: *minor })
        }
        _ => Ok(()),
    }
}

fn check_name(name: &[u8]) -> Result<(), Error> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else if name == b"." || name == b".." {
        "reserved"
    } else if name.contains(&b'/') || name.contains(&0) {
        "contains '/' or NUL"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName { name: String::from_utf8_lossy(name).into_owned(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_encode_epoch_bits() {
        assert_eq!(Timestamp { sec: 0, nsec: 5 }.encode(), (0, 20));
        assert_eq!(Timestamp::from_secs(-1).encode(), (u32::MAX, 0));
        // 2038-01-19T03:14:08Z, one past i32::MAX, needs epoch bit 1.
        assert_eq!(Timestamp::from_secs(1 << 31).encode(), (1 << 31, 1));
        assert_eq!(Timestamp::from_secs((1 << 32) + 5).encode(), (5, 1));
    }

    #[test]
    fn links_are_checked() {
        let mut b = FsBuilder::new(Attrs::default());
        let root = b.root();
        let d = b.add(NodeKind::Dir, Attrs::default());
        let f = b.add(NodeKind::File { size: 0, data_key: 0 }, Attrs::default());
        b.link(root, b"d", d).unwrap();
        b.link(d, b"f", f).unwrap();
        b.link(root, b"hard", f).unwrap();
        assert!(matches!(b.link(root, b"d2", d), Err(Error::BadLink(_))));
        assert!(matches!(b.link(f, b"x", f), Err(Error::BadLink(_))));
        assert!(matches!(b.link(root, b"d", f), Err(Error::DuplicateName { .. })));
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0", &[b'x'; 256]] {
            assert!(matches!(b.link(root, bad, f), Err(Error::InvalidName { .. })), "{bad:?}");
        }
        assert_eq!(b.lookup(root, b"hard"), Some(f));
        assert_eq!(b.lookup(root, b"nope"), None);
        assert_eq!(b.nodes[f.0 as usize].links, 2);
        // A refused name changes nothing: "d" still names the directory.
        assert_eq!(b.lookup(root, b"d"), Some(d));
        assert_eq!(b.nodes[root.0 as usize].entries.len(), 2);
    }

    #[test]
    fn paths_follow_first_names() {
        let mut b = FsBuilder::new(Attrs::default());
        let root = b.root();
        let dir = b.add(NodeKind::Dir, Attrs::default());
        let sub = b.add(NodeKind::Dir, Attrs::default());
        let file = b.add(NodeKind::File { size: 0, data_key: 0 }, Attrs::default());
        let lone = b.add(NodeKind::Fifo, Attrs::default());
        b.link(root, b"d", dir).unwrap();
        b.link(dir, b"caf\xe9", sub).unwrap();
        b.link(sub, b"f", file).unwrap();
        b.link(root, b"second-name", file).unwrap();
        assert_eq!(b.path_of(root), "/");
        assert_eq!(b.path_of(dir), "/d");
        assert_eq!(b.path_of(file), "/d/caf\u{fffd}/f");
        assert_eq!(b.path_of(lone), "(inode handle 4, not linked into the tree)");
        // Two directories outside the tree, each holding the other.
        let one = b.add(NodeKind::Dir, Attrs::default());
        let other = b.add(NodeKind::Dir, Attrs::default());
        b.link(one, b"other", other).unwrap();
        b.link(other, b"one", one).unwrap();
        assert_eq!(b.path_of(one), "(inode handle 5, not linked into the tree)");
    }
}
