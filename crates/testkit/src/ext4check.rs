//! Oracles for filesystem images: `e2fsck -fn`, the tree read back with e2fsprogs' `debugfs`
//! (batched into a few processes), the same view of a host directory, and an independent
//! unpack of an OCI layout with `umoci unpack --rootless`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use camino::Utf8Path;
use xspack_io::Sha256Digest;

/// What one path of a tree holds, as the oracles report it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// `f` file, `d` directory, `l` symlink, `c`/`b` devices, `p` FIFO, `s` socket.
    pub kind: char,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// File size.
    pub size: u64,
    /// File content digest.
    pub sha256: Option<String>,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Device numbers.
    pub dev: Option<(u32, u32)>,
    /// Extended attribute names, sorted.
    pub xattrs: Vec<String>,
    /// Hard link count (0 for directories, whose counts e2fsck checks).
    pub links: u32,
}

/// `f`, `d`, `l`, `c`, `b`, `p` or `s` for a `st_mode`.
fn kind_of(mode: u32) -> char {
    match mode & 0o170_000 {
        0o040_000 => 'd',
        0o100_000 => 'f',
        0o120_000 => 'l',
        0o020_000 => 'c',
        0o060_000 => 'b',
        0o010_000 => 'p',
        0o140_000 => 's',
        _ => '?',
    }
}

/// `e2fsck -fn` must report a clean filesystem.
#[allow(clippy::missing_panics_doc)]
pub fn e2fsck(image: &Utf8Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .expect("e2fsck runs (install e2fsprogs)");
    assert!(
        out.status.success(),
        "e2fsck -fn {image}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `commands` in one debugfs process; returns the output of each command.
fn debugfs(image: &Utf8Path, commands: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cmds");
    let mut f = std::fs::File::create(&script).unwrap();
    for c in commands {
        f.write_all(c).unwrap();
        f.write_all(b"\n").unwrap();
    }
    drop(f);
    let out = Command::new("debugfs")
        .arg("-f")
        .arg(&script)
        .arg(image)
        .output()
        .expect("debugfs runs (install e2fsprogs)");
    assert!(out.status.success(), "debugfs: {}", String::from_utf8_lossy(&out.stderr));
    // Each command's output follows its "debugfs: <command>" echo line.
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for line in out.stdout.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"debugfs: ") {
            parts.push(Vec::new());
        } else if let Some(last) = parts.last_mut() {
            last.extend_from_slice(line);
        }
    }
    assert_eq!(parts.len(), commands.len(), "one output per command");
    parts
}

fn quoted(path: &[u8]) -> Vec<u8> {
    let mut q = b"\"/".to_vec();
    q.extend_from_slice(path);
    q.push(b'"');
    q
}

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.split_once(key).map(|(_, rest)| rest.trim()))
}

/// What debugfs's `stat` says of `path` (without leading `/`): fields, extents.
pub fn debugfs_stat(image: &Utf8Path, path: &[u8]) -> String {
    let out = debugfs(image, &[[b"stat ".to_vec(), quoted(path)].concat()]);
    String::from_utf8_lossy(&out[0]).into_owned()
}

/// The whole tree: path (without leading `/`) → what debugfs reports.
pub fn read_tree(image: &Utf8Path) -> BTreeMap<Vec<u8>, Expected> {
    let mut tree = BTreeMap::new();
    let mut dirs: Vec<Vec<u8>> = vec![Vec::new()];
    let mut others: Vec<(Vec<u8>, u32)> = Vec::new();
    while !dirs.is_empty() {
        let cmds: Vec<Vec<u8>> =
            dirs.iter().map(|d| [b"ls -p ".to_vec(), quoted(d)].concat()).collect();
        let outputs = debugfs(image, &cmds);
        let mut next = Vec::new();
        for (dir, out) in dirs.iter().zip(outputs) {
            for line in out.split(|&b| b == b'\n').filter(|l| l.starts_with(b"/")) {
                let fields: Vec<&[u8]> = line.split(|&b| b == b'/').collect();
                let name = fields[5];
                // Unused records (inode 0) pad lost+found and emptied blocks.
                if name == b"." || name == b".." || fields[1] == b"0" {
                    continue;
                }
                let mode = u32::from_str_radix(std::str::from_utf8(fields[2]).unwrap(), 8).unwrap();
                let uid: u32 = std::str::from_utf8(fields[3]).unwrap().parse().unwrap();
                let gid: u32 = std::str::from_utf8(fields[4]).unwrap().parse().unwrap();
                let path = if dir.is_empty() {
                    name.to_vec()
                } else {
                    [dir.as_slice(), b"/", name].concat()
                };
                let kind = kind_of(mode);
                let item = Expected { kind, mode: mode & 0o7777, uid, gid, ..Expected::default() };
                if kind == 'd' {
                    next.push(path.clone());
                }
                others.push((path.clone(), 0));
                tree.insert(path, item);
            }
        }
        dirs = next;
    }
    // One stat per entry, and a dump of every file and symlink into a scratch directory.
    let scratch = tempfile::tempdir().unwrap();
    let mut cmds = Vec::new();
    for (i, (path, _)) in others.iter().enumerate() {
        cmds.push([b"stat ".to_vec(), quoted(path)].concat());
        let kind = tree[path].kind;
        if kind == 'f' || kind == 'l' {
            let dest = scratch.path().join(i.to_string());
            cmds.push(
                [
                    b"dump ".to_vec(),
                    quoted(path),
                    b" ".to_vec(),
                    dest.to_str().unwrap().as_bytes().to_vec(),
                ]
                .concat(),
            );
        }
    }
    let outputs = debugfs(image, &cmds);
    let mut outputs = outputs.into_iter();
    for (i, (path, _)) in others.iter().enumerate() {
        let stat = String::from_utf8_lossy(&outputs.next().unwrap()).into_owned();
        let item = tree.get_mut(path).unwrap();
        item.links = field(&stat, "Links:")
            .and_then(|v| v.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        if let Some(dev) = field(&stat, "Device major/minor number:") {
            let nums = dev.split_whitespace().next().unwrap();
            let (major, minor) = nums.split_once(':').unwrap();
            item.dev = Some((major.parse().unwrap(), minor.parse().unwrap()));
        }
        let mut names: Vec<String> = Vec::new();
        let mut in_xattrs = false;
        for line in stat.lines() {
            if line.starts_with("Extended attributes:") {
                in_xattrs = true;
            } else if in_xattrs && line.starts_with("  ") {
                let name =
                    line.trim().split(" (").next().unwrap().split(" = ").next().unwrap().to_owned();
                names.push(name);
            } else {
                in_xattrs = false;
            }
        }
        names.sort();
        item.xattrs = names;
        if item.kind == 'f' || item.kind == 'l' {
            outputs.next().unwrap();
            let data = std::fs::read(scratch.path().join(i.to_string())).unwrap();
            if item.kind == 'f' {
                item.size = data.len() as u64;
                item.sha256 = Some(Sha256Digest::of_bytes(&data).to_string());
            } else if let Some(fast) = field(&stat, "Fast link dest:") {
                item.target = Some(fast.trim_matches('"').as_bytes().to_vec());
            } else {
                item.target = Some(data);
            }
        }
        if item.kind == 'd' {
            item.links = 0; // directory link counts depend on lost+found; e2fsck checks them
        }
    }
    tree
}

/// The same view of a host directory tree (xattrs are not read: `attr` may be absent).
pub fn scan_dir(root: &Utf8Path) -> BTreeMap<Vec<u8>, Expected> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut tree = BTreeMap::new();
    for path in walk(root.as_std_path()) {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let rel = path.strip_prefix(root.as_std_path()).unwrap().as_os_str().as_bytes().to_vec();
        let kind = kind_of(meta.mode());
        let mut item = Expected {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            ..Expected::default()
        };
        match kind {
            'f' => {
                let data = std::fs::read(&path).unwrap();
                item.size = data.len() as u64;
                item.sha256 = Some(Sha256Digest::of_bytes(&data).to_string());
            }
            'l' => {
                let target = std::fs::read_link(&path).unwrap();
                item.target = Some(target.as_os_str().as_bytes().to_vec());
            }
            'c' | 'b' => {
                let rdev = meta.rdev();
                let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
                let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
                item.dev = Some((u32::try_from(major).unwrap(), u32::try_from(minor).unwrap()));
            }
            _ => {}
        }
        if kind != 'd' {
            item.links = u32::try_from(meta.nlink()).unwrap();
        }
        tree.insert(rel, item);
    }
    tree
}

/// Unpacks `layout:reference` with umoci as an unprivileged user would, and hashes every
/// regular file of the resulting rootfs.
pub fn umoci_contents(
    layout: &Utf8Path,
    reference: &str,
    bundle: &Utf8Path,
) -> BTreeMap<Vec<u8>, String> {
    let out = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{layout}:{reference}"))
        .arg(bundle)
        .output()
        .expect("umoci runs (install umoci)");
    assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
    let rootfs = bundle.join("rootfs");
    let mut files = BTreeMap::new();
    for entry in walk(rootfs.as_std_path()) {
        let rel = entry.strip_prefix(rootfs.as_std_path()).unwrap();
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        if meta.is_file() {
            use std::os::unix::ffi::OsStrExt;
            let data = std::fs::read(&entry).unwrap();
            files.insert(
                rel.as_os_str().as_bytes().to_vec(),
                Sha256Digest::of_bytes(&data).to_string(),
            );
        }
    }
    files
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}
