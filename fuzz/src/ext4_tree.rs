//! `ext4_tree`: the fuzzer's bytes as a small program that describes a tree to
//! [`xspack_ext4::FsBuilder`]: directories (deep chains, and many subdirectories of one),
//! files of small sizes, hard links (many names for one inode included), symlinks, devices,
//! FIFOs, sockets, extended attributes and extreme times. Whatever the builder or the plan
//! refuses must be one of the typed limit errors, at the exact limit; whatever it accepts is
//! written (sparse, into a temporary file) and must be clean for `e2fsck -fn`, and every
//! inode's `i_links_count` must equal the number of directory entries naming it, read from the
//! image itself (no mount).

use std::collections::HashMap;
use std::os::unix::fs::FileExt;

use xspack_ext4::{
    Attrs, Error, Ext4Options, FsBuilder, InodeId, NodeKind, Timestamp, Xattr, limits,
};

/// Operations per program, and nodes per tree: a bound on each execution's time.
const MAX_OPS: usize = 256;
const MAX_NODES: usize = 150_000;

/// The program's bytes; arguments past the end read as 0.
struct Program<'a>(&'a [u8]);

impl Program<'_> {
    fn op(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn byte(&mut self) -> u8 {
        self.op().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    /// A value from `table` or, past its end, a small one from the next byte.
    fn pick<T: Copy + From<u8>>(&mut self, table: &[T]) -> T {
        let i = usize::from(self.byte());
        table.get(i).copied().unwrap_or_else(|| T::from(self.byte()))
    }
}

/// The tree being built, and what the harness knows about it.
struct Tree {
    b: FsBuilder,
    dirs: Vec<InodeId>,
    /// Inodes that may take further names (not directories).
    others: Vec<InodeId>,
    /// Each inode's attributes, to change them with `set_attrs`.
    attrs: HashMap<InodeId, Attrs>,
    /// Names each non-directory inode was given, counted by the harness.
    links: HashMap<InodeId, u32>,
    /// Subdirectories each directory was given.
    subdirs: HashMap<InodeId, u32>,
    /// A counter for names no other entry has.
    fresh: u32,
}

fn attrs() -> Attrs {
    let t = Timestamp { sec: 1_700_000_000, nsec: 5 };
    Attrs { perm: 0o755, uid: 0, gid: 0, atime: t, mtime: t, ctime: t, xattrs: Vec::new() }
}

/// A name from one byte: mostly one of 32 (so names collide), sometimes a long, reserved,
/// empty or malformed one.
fn name(p: &mut Program<'_>) -> Vec<u8> {
    match p.byte() {
        0..=199 => format!("n{}", p.byte() % 32).into_bytes(),
        200..=239 => vec![b'L'; 200 + usize::from(p.byte() % 56)],
        240 => b".".to_vec(),
        241 => b"..".to_vec(),
        242 => Vec::new(),
        243 => b"lost+found".to_vec(),
        244 => b"a/b".to_vec(),
        245 => vec![b'x'; 256],
        246 => b"caf\xe9".to_vec(),
        _ => vec![b'M'; 255],
    }
}

/// A count from one byte: the byte itself, or 65,025 for 255, past the 65,000 links of
/// ext4 (a rare and slow case: each execution writes and checks the image).
fn many(b: u8) -> u32 {
    if b == 255 { 65_025 } else { u32::from(b) }
}

/// Whether `e` is what `link` may refuse with.
fn link_refusal(e: &Error) -> bool {
    matches!(
        e,
        Error::InvalidName { .. }
            | Error::DuplicateName { .. }
            | Error::TooManyLinks { .. }
            | Error::TooManySubdirectories { .. }
            | Error::FileTooLarge { .. }
            | Error::SymlinkTooLong { .. }
            | Error::InvalidSymlink { .. }
            | Error::InvalidDevice { .. }
    )
}

impl Tree {
    fn unique(&mut self) -> Vec<u8> {
        self.fresh += 1;
        format!("u{}", self.fresh).into_bytes()
    }

    /// Names `child` in `dir`, checking the builder's refusals against the harness's counts.
    fn link(&mut self, dir: InodeId, name: &[u8], child: InodeId) -> bool {
        let is_dir = *self.b.kind(child) == NodeKind::Dir;
        match self.b.link(dir, name, child) {
            Ok(()) => {
                if is_dir {
                    *self.subdirs.entry(dir).or_default() += 1;
                } else {
                    *self.links.entry(child).or_default() += 1;
                }
                true
            }
            Err(e) => {
                assert!(link_refusal(&e), "link refused with {e:?}");
                // The limits are exact: refused at one past, never before.
                if let Error::TooManyLinks { count, .. } = e {
                    assert_eq!(self.links.get(&child).copied(), Some(limits::LINK_MAX));
                    assert_eq!(count, u64::from(limits::LINK_MAX) + 1);
                }
                if let Error::TooManySubdirectories { count, .. } = e {
                    assert_eq!(self.subdirs.get(&dir).copied(), Some(limits::MAX_SUBDIRS));
                    assert_eq!(count, u64::from(limits::MAX_SUBDIRS) + 1);
                }
                false
            }
        }
    }

    /// Adds an inode and names it, or under a fresh name in a fresh directory if that name is
    /// refused. An inode ext4 cannot store (its first name is refused whatever it is) is tried
    /// on a scratch builder and kept out of the tree, which could not be planned with it.
    fn add(&mut self, kind: NodeKind, dir: InodeId, name: &[u8]) -> Option<InodeId> {
        let mut scratch = FsBuilder::new(attrs());
        let probe = scratch.add(kind.clone(), attrs());
        if let Err(e) = scratch.link(scratch.root(), b"probe", probe) {
            assert!(
                matches!(
                    e,
                    Error::FileTooLarge { .. }
                        | Error::SymlinkTooLong { .. }
                        | Error::InvalidSymlink { .. }
                        | Error::InvalidDevice { .. }
                ),
                "{kind:?} refused with {e:?}"
            );
            return None;
        }
        let is_dir = kind == NodeKind::Dir;
        let id = self.b.add(kind, attrs());
        self.attrs.insert(id, attrs());
        let named = self.link(dir, name, id) || {
            let root = self.b.root();
            let (holder, fresh) = (self.unique(), self.unique());
            let holder_id = self.b.add(NodeKind::Dir, attrs());
            self.attrs.insert(holder_id, attrs());
            assert!(self.link(root, &holder, holder_id), "a fresh directory in the root");
            self.dirs.push(holder_id);
            self.link(holder_id, &fresh, id)
        };
        assert!(named, "a storable inode under a fresh name in a fresh directory");
        if is_dir {
            self.dirs.push(id)
        } else {
            self.others.push(id)
        }
        Some(id)
    }

    fn any_dir(&self, p: &mut Program<'_>) -> InodeId {
        self.dirs[usize::from(p.u16()) % self.dirs.len()]
    }

    fn any(&self, p: &mut Program<'_>) -> InodeId {
        let all = self.dirs.len() + self.others.len();
        let i = usize::from(p.u16()) % all;
        if i < self.dirs.len() { self.dirs[i] } else { self.others[i - self.dirs.len()] }
    }

    fn nodes(&self) -> usize {
        self.attrs.len()
    }
}

/// Runs the program in `data`.
pub fn ext4_tree(data: &[u8]) {
    let mut p = Program(data);
    let mut t = Tree {
        b: FsBuilder::new(attrs()),
        dirs: Vec::new(),
        others: Vec::new(),
        attrs: HashMap::new(),
        links: HashMap::new(),
        subdirs: HashMap::new(),
        fresh: 0,
    };
    let root = t.b.root();
    t.dirs.push(root);
    t.attrs.insert(root, attrs());
    let mut ops = 0;
    while let Some(op) = p.op() {
        ops += 1;
        if ops > MAX_OPS || t.nodes() > MAX_NODES {
            break;
        }
        match op % 12 {
            // A directory.
            0 => {
                let (dir, name) = (t.any_dir(&mut p), name(&mut p));
                t.add(NodeKind::Dir, dir, &name);
            }
            // A regular file, sometimes past the largest ext4 holds.
            1 => {
                let (dir, name) = (t.any_dir(&mut p), name(&mut p));
                let size = match p.byte() {
                    255 => limits::MAX_FILE_SIZE + 1,
                    254 => 3 * 4096,
                    _ => u64::from(p.u16()) % 20_000,
                };
                let data_key = u64::from(p.byte());
                t.add(NodeKind::File { size, data_key }, dir, &name);
            }
            // A further name for an inode.
            2 => {
                if !t.others.is_empty() {
                    let target = t.others[usize::from(p.u16()) % t.others.len()];
                    let (dir, name) = (t.any_dir(&mut p), name(&mut p));
                    t.link(dir, &name, target);
                }
            }
            // Many names for one inode, in a directory of their own: up to 254, or 65,025
            // (past the limit of 65,000).
            3 => {
                if !t.others.is_empty() {
                    let target = t.others[usize::from(p.u16()) % t.others.len()];
                    let n = many(p.byte());
                    let holder = t.unique();
                    if let Some(dir) = t.add(NodeKind::Dir, root, &holder) {
                        for i in 0..n {
                            if !t.link(dir, format!("{i}").as_bytes(), target) {
                                break;
                            }
                        }
                    }
                }
            }
            // A symbolic link, its length at a boundary or small.
            4 => {
                let (dir, name) = (t.any_dir(&mut p), name(&mut p));
                let len: u16 = p.pick(&[0, 1, 59, 60, 4095, 4096]);
                let seed = p.byte();
                let mut target: Vec<u8> = (0..len).map(|i| b"abc/.-"[usize::from(i % 6)]).collect();
                if seed == 0 && !target.is_empty() {
                    target[0] = 0;
                }
                t.add(NodeKind::Symlink(target), dir, &name);
            }
            // A device node, its numbers at a boundary or small.
            5 => {
                let (dir, name) = (t.any_dir(&mut p), name(&mut p));
                let table = [0, 1, 255, 256, 4095, 4096, 1_048_575, 1_048_576, u32::MAX];
                let (major, minor) = (p.pick(&table), p.pick(&table));
                let kind = if p.byte() % 2 == 0 {
                    NodeKind::CharDev { major, minor }
                } else {
                    NodeKind::BlockDev { major, minor }
                };
                t.add(kind, dir, &name);
            }
            // A FIFO or a socket.
            6 => {
                let (dir, name) = (t.any_dir(&mut p), name(&mut p));
                let kind = if p.byte() % 2 == 0 { NodeKind::Fifo } else { NodeKind::Socket };
                t.add(kind, dir, &name);
            }
            // An extended attribute, its name and value lengths around their limits.
            7 => {
                let id = t.any(&mut p);
                let prefixes: [&[u8]; 7] = [
                    b"user.",
                    b"trusted.",
                    b"security.",
                    b"system.",
                    b"system.posix_acl_access",
                    b"system.posix_acl_default",
                    b"os2.",
                ];
                let prefix = prefixes[usize::from(p.byte()) % prefixes.len()];
                let suffix_len = usize::from(p.byte());
                let value_len = usize::from(p.u16()) % 4200;
                let mut name = prefix.to_vec();
                name.extend((0..suffix_len).map(|i| b"abcdefgh"[i % 8]));
                let value: Vec<u8> = if prefix.starts_with(b"system.posix_acl") {
                    // A valid ACL: the owner, group and other entries.
                    let mut v = 2u32.to_le_bytes().to_vec();
                    for tag in [1u16, 4, 0x20].iter().take(1 + value_len % 3) {
                        v.extend(tag.to_le_bytes());
                        v.extend(6u16.to_le_bytes());
                        v.extend(u32::MAX.to_le_bytes());
                    }
                    v
                } else {
                    vec![b'v'; value_len]
                };
                let mut a = t.attrs[&id].clone();
                a.xattrs.push(Xattr { name, value });
                // Attributes ext4 cannot store are refused when planning: tried on a scratch
                // tree, and kept out of this one.
                let mut scratch = FsBuilder::new(a.clone());
                let f = scratch.add(NodeKind::Fifo, a.clone());
                scratch.link(scratch.root(), b"f", f).expect("a FIFO in an empty root");
                match scratch.plan(&Ext4Options::new([1; 16], [2; 16], 0)) {
                    Ok(_) => {
                        t.b.set_attrs(id, a.clone());
                        t.attrs.insert(id, a);
                    }
                    Err(Error::InvalidXattr { .. } | Error::XattrTooLarge { .. }) => {}
                    Err(e) => panic!("attributes refused with {e:?}"),
                }
            }
            // A chain of nested directories.
            8 => {
                let mut dir = t.any_dir(&mut p);
                for _ in 0..p.byte() {
                    match t.add(NodeKind::Dir, dir, b"d") {
                        Some(d) => dir = d,
                        None => break,
                    }
                }
            }
            // Many subdirectories of one directory: up to 254, or 65,025 (past the limit of
            // 64,998).
            9 => {
                let n = many(p.byte());
                let holder = t.unique();
                if let Some(dir) = t.add(NodeKind::Dir, root, &holder) {
                    for i in 0..n {
                        let sub = t.b.add(NodeKind::Dir, attrs());
                        t.attrs.insert(sub, attrs());
                        if !t.link(dir, format!("{i}").as_bytes(), sub) {
                            // Name it elsewhere, as `add` would.
                            let fresh = t.unique();
                            assert!(t.link(root, &fresh, sub), "a fresh name in the root");
                            break;
                        }
                    }
                }
            }
            // Times at and past the ends of what ext4 stores.
            10 => {
                let id = t.any(&mut p);
                let secs = [
                    limits::TIMESTAMP_MIN - 1,
                    limits::TIMESTAMP_MIN,
                    -1,
                    (1 << 31) - 1,
                    1 << 31,
                    (1 << 32) + 7,
                    limits::TIMESTAMP_MAX,
                    limits::TIMESTAMP_MAX + 1,
                    i64::MAX,
                ];
                let sec = secs[usize::from(p.byte()) % secs.len()];
                let nsec = u32::from(p.u16()) * 20_000;
                let a = t.attrs.get_mut(&id).expect("every node has attributes");
                (a.atime, a.mtime, a.ctime) = (
                    Timestamp { sec, nsec },
                    Timestamp { sec: -sec.saturating_abs(), nsec },
                    Timestamp { sec, nsec: 0 },
                );
                let a = a.clone();
                t.b.set_attrs(id, a);
            }
            // Owners and permissions.
            _ => {
                let id = t.any(&mut p);
                let ids = [0, 1, 65_535, 65_536, u32::MAX - 1, u32::MAX];
                let a = t.attrs.get_mut(&id).expect("every node has attributes");
                a.uid = ids[usize::from(p.byte()) % ids.len()];
                a.gid = ids[usize::from(p.byte()) % ids.len()];
                a.perm = p.u16() & 0o7777;
                let a = a.clone();
                t.b.set_attrs(id, a);
            }
        }
    }
    plan_and_check(t);
}

/// Plans the tree, which holds only what ext4 can store: the plan may refuse it only for the
/// root's subdirectories (counted with lost+found), and the image must be clean.
fn plan_and_check(t: Tree) {
    let root_subdirs = t.subdirs.get(&t.b.root()).copied().unwrap_or(0);
    let opts = Ext4Options::new([3; 16], [4; 16], 1_700_000_000);
    let plan = match t.b.plan(&opts) {
        Ok(plan) => plan,
        Err(Error::TooManySubdirectories { count, .. })
            if root_subdirs == limits::MAX_SUBDIRS && count == u64::from(root_subdirs) + 1 =>
        {
            return;
        }
        Err(e) => panic!("planning failed with {e:?}"),
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("fs.img");
    let mut out = std::fs::File::create_new(&path).expect("image file");
    let mut w = plan.writer_around_zone(&mut out);
    let order: Vec<(InodeId, u64)> = plan.file_order().collect();
    for (k, (id, size)) in order.into_iter().enumerate() {
        let data: Vec<u8> = (0..size)
            .map(|i| u8::try_from((i * 31 + k as u64) % 251 + 1).expect("below 252"))
            .collect();
        w.write_file(id, &mut data.as_slice()).expect("file data");
    }
    w.finish().expect("the image is written");
    let out = std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(&path)
        .output()
        .expect("e2fsck runs (install e2fsprogs)");
    assert!(
        out.status.success(),
        "e2fsck -fn: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let file = std::fs::File::open(&path).expect("image");
    check_link_counts(&file);
}

fn le16(b: &[u8], at: usize) -> u64 {
    u64::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

fn read(image: &std::fs::File, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    image.read_exact_at(&mut buf, offset).expect("read the image");
    buf
}

/// The physical blocks of an extent tree's leaves, in logical order.
fn extent_blocks(image: &std::fs::File, node: &[u8], out: &mut Vec<u64>) {
    assert_eq!(le16(node, 0), 0xF30A, "extent header magic");
    let (entries, depth) = (le16(node, 2) as usize, le16(node, 6));
    for e in node[12..].chunks_exact(12).take(entries) {
        if depth == 0 {
            let len = le16(e, 4);
            assert!((1..=32_768).contains(&len), "an initialized extent of {len} blocks");
            let start = le16(e, 6) << 32 | le32(e, 8);
            out.extend(start..start + len);
        } else {
            let child = le16(e, 8) << 32 | le32(e, 4);
            extent_blocks(image, &read(image, child * 4096, 4096), out);
        }
    }
}

/// Reads every inode and directory entry of the image and checks that each inode's
/// `i_links_count` is the number of entries naming it (for a directory: its `.`, its name and
/// each subdirectory's `..`; above 65,000, dir_nlink's 1).
fn check_link_counts(image: &std::fs::File) {
    let sb = read(image, 1024, 1024);
    let (inodes, ipg, inode_size) = (le32(&sb, 0), le32(&sb, 0x28), le16(&sb, 0x58));
    let groups = inodes / ipg;
    let gdt = read(image, 4096, (groups * 32) as usize);
    let inode = |ino: u64| {
        let table = le32(&gdt, ((ino - 1) / ipg * 32 + 8) as usize);
        read(image, table * 4096 + (ino - 1) % ipg * inode_size, inode_size as usize)
    };
    let mut names: HashMap<u64, u64> = HashMap::new();
    let mut stored: Vec<(u64, bool, u64)> = Vec::new();
    for ino in 1..=inodes {
        let raw = inode(ino);
        let (mode, links) = (le16(&raw, 0), le16(&raw, 0x1A));
        if mode == 0 {
            continue;
        }
        let is_dir = mode & 0o170_000 == 0o040_000;
        // Inodes 1 and 3..=10 are the filesystem's own (the journal is 8), named by nothing.
        if ino == 2 || ino >= 11 {
            stored.push((ino, is_dir, links));
        }
        if !is_dir {
            continue;
        }
        let mut blocks = Vec::new();
        extent_blocks(image, &raw[0x28..0x64], &mut blocks);
        assert_eq!(blocks.len() as u64 * 4096, le32(&raw, 4), "directory {ino}: size");
        for block in blocks {
            let data = read(image, block * 4096, 4096);
            let mut at = 0;
            while at < data.len() {
                let (child, rec_len) = (le32(&data, at), le16(&data, at + 4) as usize);
                assert!(rec_len >= 8 && at + rec_len <= 4096, "directory {ino}: record length");
                if child != 0 {
                    *names.entry(child).or_default() += 1;
                }
                at += rec_len;
            }
        }
    }
    for (ino, is_dir, links) in stored {
        let counted = names.get(&ino).copied().unwrap_or(0);
        let want = if is_dir && counted > u64::from(limits::LINK_MAX) { 1 } else { counted };
        assert_eq!(links, want, "inode {ino}: i_links_count {links}, {counted} entries name it");
    }
}
