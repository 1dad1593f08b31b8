//! The description of the tree to write: inodes, their attributes, and directory entries.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

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

/// [`Attrs`] as a node keeps them: times in their on-disk form, attributes boxed (56 bytes,
/// not 88: there may be millions of nodes).
pub(crate) struct NodeAttrs {
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: crate::inode::InodeTime,
    pub mtime: crate::inode::InodeTime,
    pub ctime: crate::inode::InodeTime,
    pub xattrs: Box<[Xattr]>,
}

impl From<Attrs> for NodeAttrs {
    fn from(a: Attrs) -> Self {
        NodeAttrs {
            perm: a.perm,
            uid: a.uid,
            gid: a.gid,
            atime: a.atime.into(),
            mtime: a.mtime.into(),
            ctime: a.ctime.into(),
            xattrs: a.xattrs.into_boxed_slice(),
        }
    }
}

pub(crate) struct Node {
    pub kind: NodeKind,
    pub attrs: NodeAttrs,
    /// The first and last of the directory's entries in [`Entries`], in insertion order
    /// ([`NO_ENTRY`] for none; directories only).
    first: u32,
    last: u32,
    /// Names pointing at this inode (at most [`limits::LINK_MAX`]).
    pub links: u32,
    /// Subdirectories (directories only; at most [`limits::MAX_SUBDIRS`]).
    pub subdirs: u32,
    /// The directory holding the first name of this inode (itself for the root), for messages.
    pub parent: InodeId,
}

/// No entry: the end of a directory's list.
const NO_ENTRY: u32 = u32::MAX;

/// Every directory entry of the tree in one arena: the names back to back, and for each
/// entry its name, its inode and the next entry of its directory. A quarter of a million
/// entries take 16 bytes each plus their names, not a vector per directory and an
/// allocation per name.
#[derive(Default)]
struct Entries {
    names: Vec<u8>,
    list: Vec<Entry>,
}

#[derive(Clone, Copy)]
struct Entry {
    /// Start of the name in `names`, shifted left by 8, with its length (1 to 255) below.
    name: u64,
    child: InodeId,
    /// The next entry of the same directory, or [`NO_ENTRY`].
    next: u32,
}

/// The entries of one directory, in insertion order.
pub(crate) struct DirEntries<'a> {
    entries: &'a Entries,
    at: u32,
}

impl<'a> Iterator for DirEntries<'a> {
    type Item = (&'a [u8], InodeId);

    fn next(&mut self) -> Option<Self::Item> {
        let e = self.entries.list.get(self.at as usize)?;
        self.at = e.next;
        let start = usize::try_from(e.name >> 8).expect("names fit in memory");
        let len = (e.name & 0xff) as usize;
        Some((&self.entries.names[start..start + len], e.child))
    }
}

/// Builds the description of a filesystem tree.
pub struct FsBuilder {
    pub(crate) nodes: Vec<Node>,
    entries: Entries,
    /// A hash of each (directory, name) pair taken: names are found, and duplicates refused,
    /// by looking in the directory only when its hash is here. Hashes rather than names, so
    /// the index costs 8 bytes a name, not a copy of each. `None` once released
    /// ([`FsBuilder::release_name_index`]).
    names: Option<HashSet<u64>>,
    hasher: RandomState,
    /// Where the data of files already in the data zone lies, by node index (empty until the
    /// first [`FsBuilder::set_zone_data`]).
    pub(crate) zone_data: Vec<Option<crate::ZoneFile>>,
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
            attrs: root.into(),
            first: NO_ENTRY,
            last: NO_ENTRY,
            links: 1,
            subdirs: 0,
            parent: InodeId(0),
        };
        let mut nodes = Vec::with_capacity(inodes.max(1));
        nodes.push(node);
        FsBuilder {
            nodes,
            entries: Entries::default(),
            names: Some(HashSet::new()),
            hasher: RandomState::new(),
            zone_data: Vec::new(),
        }
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
            attrs: attrs.into(),
            first: NO_ENTRY,
            last: NO_ENTRY,
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
        self.nodes[id.0 as usize].attrs = attrs.into();
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
        let key = self.name_hash(dir, name);
        let maybe_taken = self.name_index().contains(&key);
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
        if maybe_taken && self.find(dir, name).is_some() {
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
        let at = u32::try_from(self.entries.list.len())
            .ok()
            .filter(|&at| at != NO_ENTRY)
            .ok_or(Error::BadLink("more than 2^32 - 1 directory entries"))?;
        let start = self.entries.names.len() as u64;
        self.entries.names.extend_from_slice(name);
        // `check_name` kept the length within 1..=255.
        self.entries.list.push(Entry {
            name: start << 8 | name.len() as u64,
            child,
            next: NO_ENTRY,
        });
        let parent = &mut self.nodes[dir.0 as usize];
        match parent.last {
            NO_ENTRY => parent.first = at,
            last => self.entries.list[last as usize].next = at,
        }
        parent.last = at;
        self.name_index().insert(key);
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
            let name = self.entries(node.parent.0 as usize).find(|(_, c)| *c == at).map(|(n, _)| n);
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
                self.zone_data.resize(self.nodes.len(), None);
                self.zone_data[id.0 as usize] = Some(placed);
                Ok(())
            }
            _ => Err(Error::Data(format!(
                "inode handle {}: zone data of {} bytes for something that is not a file of that \
                 size",
                id.0, placed.size
            ))),
        }
    }

    /// Forgets every [`FsBuilder::set_zone_data`]: the next plan places every file itself.
    pub fn clear_zone_data(&mut self) {
        self.zone_data = Vec::new();
    }

    /// Where the data of file node `idx` lies in the data zone, if it does.
    pub(crate) fn zone_file(&self, idx: usize) -> Option<&crate::ZoneFile> {
        self.zone_data.get(idx).and_then(Option::as_ref)
    }

    /// Looks up `name` in directory `dir`.
    pub fn lookup(&self, dir: InodeId, name: &[u8]) -> Option<InodeId> {
        if let Some(names) = &self.names
            && !names.contains(&self.name_hash(dir, name))
        {
            return None;
        }
        self.find(dir, name)
    }

    /// Frees the index by which [`FsBuilder::link`] refuses a name taken and
    /// [`FsBuilder::lookup`] finds one (8 bytes a name), for a caller that has named
    /// everything and goes on to plan. A later `link` builds it again.
    pub fn release_name_index(&mut self) {
        self.names = None;
    }

    /// The name index, built again if it was released.
    fn name_index(&mut self) -> &mut HashSet<u64> {
        if self.names.is_none() {
            let mut names = HashSet::new();
            for dir in 0..self.nodes.len() {
                for (name, _) in self.entries(dir) {
                    names.insert(self.name_hash(
                        InodeId(u32::try_from(dir).expect("fewer than 2^32 inodes")),
                        name,
                    ));
                }
            }
            self.names = Some(names);
        }
        self.names.as_mut().expect("built above")
    }

    fn name_hash(&self, dir: InodeId, name: &[u8]) -> u64 {
        self.hasher.hash_one((dir.0, name))
    }

    /// `name` in `dir`, looked for entry by entry.
    fn find(&self, dir: InodeId, name: &[u8]) -> Option<InodeId> {
        self.entries(dir.0 as usize).find(|&(n, _)| n == name).map(|(_, id)| id)
    }

    /// The entries of directory node `dir`, in the order they were linked.
    pub(crate) fn entries(&self, dir: usize) -> DirEntries<'_> {
        let at = self.nodes.get(dir).map_or(NO_ENTRY, |n| n.first);
        DirEntries { entries: &self.entries, at }
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
        assert_eq!(b.entries(root.0 as usize).count(), 2);
    }

    /// Without its index the builder still finds names, and a later link rebuilds it and
    /// still refuses a name taken.
    #[test]
    fn a_released_name_index_is_rebuilt() {
        let mut b = FsBuilder::new(Attrs::default());
        let root = b.root();
        let d = b.add(NodeKind::Dir, Attrs::default());
        let f = b.add(NodeKind::Fifo, Attrs::default());
        b.link(root, b"d", d).unwrap();
        b.link(d, b"f", f).unwrap();
        b.release_name_index();
        assert_eq!(b.lookup(d, b"f"), Some(f));
        assert_eq!(b.lookup(d, b"g"), None);
        assert!(matches!(b.link(d, b"f", f), Err(Error::DuplicateName { .. })));
        b.release_name_index();
        b.link(d, b"g", f).unwrap();
        assert_eq!(b.lookup(d, b"g"), Some(f));
        assert!(matches!(b.link(root, b"d", f), Err(Error::DuplicateName { .. })));
        assert_eq!(
            b.entries(d.0 as usize).map(|(n, _)| n.to_vec()).collect::<Vec<_>>(),
            [b"f".to_vec(), b"g".to_vec()]
        );
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
