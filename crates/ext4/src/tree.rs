//! The description of the tree to write: inodes, their attributes, and directory entries.

use std::collections::HashMap;

use crate::Error;

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
        let sec = self.sec.clamp(-(1 << 31), (1 << 34) - (1 << 31) - 1);
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
    /// Names pointing at this inode.
    pub links: u32,
    /// Subdirectories (directories only).
    pub subdirs: u32,
}

/// Builds the description of a filesystem tree.
pub struct FsBuilder {
    pub(crate) nodes: Vec<Node>,
    /// (directory, name) → child, for lookups and duplicate detection.
    names: HashMap<(InodeId, Vec<u8>), InodeId>,
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
        let node =
            Node { kind: NodeKind::Dir, attrs: root, entries: Vec::new(), links: 1, subdirs: 0 };
        let mut nodes = Vec::with_capacity(inodes.max(1));
        nodes.push(node);
        FsBuilder { nodes, names: HashMap::new(), zone_data: HashMap::new() }
    }

    /// The root directory.
    pub fn root(&self) -> InodeId {
        InodeId(0)
    }

    /// Adds an inode that no directory names yet.
    pub fn add(&mut self, kind: NodeKind, attrs: Attrs) -> InodeId {
        let id = InodeId(u32::try_from(self.nodes.len()).expect("fewer than 2^32 inodes"));
        self.nodes.push(Node { kind, attrs, entries: Vec::new(), links: 0, subdirs: 0 });
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
    pub fn link(&mut self, dir: InodeId, name: &[u8], child: InodeId) -> Result<(), Error> {
        check_name(name)?;
        if self.nodes[dir.0 as usize].kind != NodeKind::Dir {
            return Err(Error::BadLink("linking into something that is not a directory"));
        }
        let child_is_dir = self.nodes[child.0 as usize].kind == NodeKind::Dir;
        if child_is_dir && (self.nodes[child.0 as usize].links > 0 || child == self.root()) {
            return Err(Error::BadLink("a directory can have only one name"));
        }
        if self.names.insert((dir, name.to_vec()), child).is_some() {
            return Err(Error::DuplicateName { name: String::from_utf8_lossy(name).into_owned() });
        }
        self.nodes[dir.0 as usize].entries.push((name.to_vec(), child));
        self.nodes[child.0 as usize].links += 1;
        if child_is_dir {
            self.nodes[dir.0 as usize].subdirs += 1;
        }
        Ok(())
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
    }
}
