//! Integration tests: images checked by e2fsprogs (`e2fsck -fn`, `debugfs`) as the oracle.

use std::io::{Cursor, Write};
use std::process::Command;

use xspack_ext4::{Attrs, Error, Ext4Options, FsBuilder, NodeKind, Timestamp, Xattr};

mod limits;

fn attrs(perm: u16, uid: u32, gid: u32) -> Attrs {
    let t = Timestamp { sec: 1_700_000_000, nsec: 123_456_789 };
    Attrs { perm, uid, gid, atime: t, mtime: t, ctime: t, xattrs: Vec::new() }
}

fn opts() -> Ext4Options {
    let mut o = Ext4Options::new([7; 16], [9; 16], 1_700_000_000);
    o.label = "xspack-test".into();
    o
}

/// Content of file number `i` of length `len`: deterministic and not all zero.
fn content(i: u64, len: u64) -> Vec<u8> {
    (0..len).map(|k| u8::try_from((k * 31 + i * 7) % 251).unwrap()).collect()
}

struct Built {
    _dir: tempfile::TempDir,
    image: std::path::PathBuf,
}

/// Writes `b` with `files` (inode handle → content) to a temporary image file.
fn write_image(b: &FsBuilder, files: &[(xspack_ext4::InodeId, Vec<u8>)], o: &Ext4Options) -> Built {
    let plan = b.plan(o).unwrap();
    let mut w = plan.writer(Vec::new());
    for (id, size) in plan.file_order() {
        let data = &files.iter().find(|(f, _)| *f == id).unwrap().1;
        assert_eq!(data.len() as u64, size);
        w.write_file(id, &mut Cursor::new(data)).unwrap();
    }
    let bytes = w.finish().unwrap();
    assert_eq!(bytes.len() as u64, plan.size_bytes());
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fs.img");
    std::fs::File::create(&image).unwrap().write_all(&bytes).unwrap();
    Built { _dir: dir, image }
}

fn e2fsck_clean(image: &std::path::Path) {
    let out = Command::new("e2fsck").args(["-fn"]).arg(image).output().expect("e2fsck runs");
    assert!(
        out.status.success(),
        "e2fsck -fn failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn debugfs(image: &std::path::Path, request: &str) -> String {
    let out =
        Command::new("debugfs").arg("-R").arg(request).arg(image).output().expect("debugfs runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dump(image: &std::path::Path, path: &str) -> Vec<u8> {
    let out =
        Command::new("debugfs").arg("-R").arg(format!("cat {path}")).arg(image).output().unwrap();
    out.stdout
}

#[test]
fn varied_tree_is_clean_and_reads_back() {
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b.root();
    let mut files = Vec::new();
    let etc = b.add(NodeKind::Dir, attrs(0o755, 0, 0));
    b.link(root, b"etc", etc).unwrap();
    let sizes = [0u64, 1, 4095, 4096, 4097, 1 << 20, (3 << 20) + 5];
    for (i, size) in sizes.iter().enumerate() {
        let f = b.add(
            NodeKind::File { size: *size, data_key: i as u64 },
            attrs(0o644, 1000 + u32::try_from(i).unwrap(), 100),
        );
        b.link(etc, format!("file{i}").as_bytes(), f).unwrap();
        files.push((f, content(i as u64, *size)));
    }
    // setuid binary with a file capability, hard link, symlinks, devices, fifo, socket.
    let mut suid_attrs = attrs(0o4755, 0, 0);
    suid_attrs.xattrs.push(Xattr {
        name: b"security.capability".to_vec(),
        value: vec![1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    });
    let ping = b.add(NodeKind::File { size: 100, data_key: 100 }, suid_attrs);
    b.link(root, b"ping", ping).unwrap();
    b.link(etc, b"ping-hardlink", ping).unwrap();
    files.push((ping, content(100, 100)));
    let fast = b.add(NodeKind::Symlink(b"etc/file1".to_vec()), attrs(0o777, 0, 0));
    b.link(root, b"fast-link", fast).unwrap();
    let long_target = "x/".repeat(100).into_bytes();
    let slow = b.add(NodeKind::Symlink(long_target.clone()), attrs(0o777, 0, 0));
    b.link(root, b"slow-link", slow).unwrap();
    let dev = b.add(NodeKind::Dir, attrs(0o755, 0, 0));
    b.link(root, b"dev", dev).unwrap();
    let null = b.add(NodeKind::CharDev { major: 1, minor: 3 }, attrs(0o666, 0, 0));
    b.link(dev, b"null", null).unwrap();
    let big = b.add(NodeKind::BlockDev { major: 259, minor: 300 }, attrs(0o660, 0, 6));
    b.link(dev, b"nvme", big).unwrap();
    let fifo = b.add(NodeKind::Fifo, attrs(0o600, 0, 0));
    b.link(dev, b"fifo", fifo).unwrap();
    let sock = b.add(NodeKind::Socket, attrs(0o755, 0, 0));
    b.link(dev, b"sock", sock).unwrap();
    // Many xattrs force an xattr block; a sticky world-writable tmp.
    let mut many = attrs(0o1777, 0, 0);
    for i in 0..20 {
        many.xattrs
            .push(Xattr { name: format!("user.attr{i:02}").into_bytes(), value: vec![b'v'; 40] });
    }
    let tmp = b.add(NodeKind::Dir, many);
    b.link(root, b"tmp", tmp).unwrap();
    // Long and non-UTF-8 names.
    let long_name = vec![b'L'; 255];
    let f = b.add(NodeKind::File { size: 3, data_key: 200 }, attrs(0o600, 0, 0));
    b.link(tmp, &long_name, f).unwrap();
    files.push((f, b"abc".to_vec()));
    let f = b.add(NodeKind::File { size: 2, data_key: 201 }, attrs(0o600, 0, 0));
    b.link(tmp, b"caf\xe9", f).unwrap();
    files.push((f, b"hi".to_vec()));

    let built = write_image(&b, &files, &opts());
    e2fsck_clean(&built.image);

    for (i, size) in sizes.iter().enumerate() {
        assert_eq!(
            dump(&built.image, &format!("/etc/file{i}")),
            content(i as u64, *size),
            "file{i}"
        );
    }
    let stat = debugfs(&built.image, "stat /ping");
    assert!(stat.contains("Mode:  04755"), "{stat}");
    assert!(stat.contains("Links: 2"), "{stat}");
    assert!(stat.contains("security.capability"), "{stat}");
    assert!(stat.contains("crtime") || stat.contains("ctime: 0x6553f100:1d6f3454"), "{stat}");
    let stat = debugfs(&built.image, "stat /dev/nvme");
    assert!(stat.contains("Device major/minor number: 259:300"), "{stat}");
    assert_eq!(dump(&built.image, "/slow-link"), long_target);
    let stat = debugfs(&built.image, "stat /fast-link");
    assert!(stat.contains("Fast link dest: \"etc/file1\""), "{stat}");
    let tmp = debugfs(&built.image, "stat /tmp");
    assert!(tmp.contains("Mode:  01777"), "{tmp}");
    assert!(tmp.contains("user.attr19"), "{tmp}");
    let ls = debugfs(&built.image, "ls -l /");
    assert!(ls.contains("lost+found"), "{ls}");
    let ls = debugfs(&built.image, "ls -l /etc");
    assert!(ls.contains(" 1005 ") && ls.contains("file5"), "{ls}");
}

#[test]
fn twenty_thousand_entries_in_one_directory() {
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b.root();
    let big = b.add(NodeKind::Dir, attrs(0o755, 0, 0));
    b.link(root, b"big", big).unwrap();
    let mut files = Vec::new();
    for i in 0..20_000u64 {
        let size = i % 3;
        let f = b.add(NodeKind::File { size, data_key: i }, attrs(0o644, 0, 0));
        b.link(big, format!("entry-{i:05}").as_bytes(), f).unwrap();
        files.push((f, content(i, size)));
    }
    let built = write_image(&b, &files, &opts());
    e2fsck_clean(&built.image);
    assert_eq!(dump(&built.image, "/big/entry-19999"), content(19_999, 1));
}

#[test]
fn large_fragmented_file_needs_an_extent_tree() {
    // 300 MiB crosses the backup superblocks of groups 1 and 3 and needs more than 4 extents.
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let size = 300u64 << 20;
    let f = b.add(NodeKind::File { size, data_key: 0 }, attrs(0o644, 0, 0));
    b.link(b.root(), b"big.bin", f).unwrap();
    let plan = b.plan(&opts()).unwrap();
    assert!(plan.groups() >= 3);
    let mut w = plan.writer(Vec::new());
    let pattern: Vec<u8> = (0..size).map(|k| u8::try_from(k % 253).unwrap()).collect();
    w.write_file(f, &mut Cursor::new(&pattern)).unwrap();
    let bytes = w.finish().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fs.img");
    std::fs::write(&image, &bytes).unwrap();
    e2fsck_clean(&image);
    let stat = debugfs(&image, "stat /big.bin");
    assert!(stat.contains("Level Entries") || stat.contains("EXTENTS"), "{stat}");
    assert!(dump(&image, "/big.bin") == pattern);
}

#[test]
fn same_input_same_bytes_and_size_errors() {
    let build = || {
        let mut b = FsBuilder::new(attrs(0o755, 0, 0));
        let f = b.add(NodeKind::File { size: 10, data_key: 0 }, attrs(0o644, 0, 0));
        b.link(b.root(), b"a", f).unwrap();
        (b, f)
    };
    let image = |o: &Ext4Options| {
        let (b, f) = build();
        let plan = b.plan(o).unwrap();
        let mut w = plan.writer(Vec::new());
        w.write_file(f, &mut Cursor::new(b"0123456789")).unwrap();
        w.finish().unwrap()
    };
    let one = image(&opts());
    assert_eq!(one, image(&opts()));
    assert_eq!(one.len() % (2 << 20), 0, "auto size is 2 MiB aligned");
    let mut other = opts();
    other.uuid = [8; 16];
    assert_ne!(one, image(&other));

    let mut tiny = opts();
    tiny.size = Some(1 << 20);
    let (b, _) = build();
    match b.plan(&tiny) {
        Err(Error::TooSmall { given, needed }) => {
            assert_eq!(given, 1 << 20);
            assert!(needed > given && needed % (2 << 20) == 0, "{needed}");
        }
        other => panic!("expected TooSmall, got {:?}", other.map(|p| p.size_bytes())),
    }
}

#[test]
fn wrong_data_is_refused() {
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let f = b.add(NodeKind::File { size: 10, data_key: 0 }, attrs(0o644, 0, 0));
    b.link(b.root(), b"a", f).unwrap();
    let plan = b.plan(&opts()).unwrap();
    let mut w = plan.writer(Vec::new());
    let err = w.write_file(f, &mut Cursor::new(b"short")).unwrap_err();
    assert!(err.to_string().contains("data ended after 5 of 10 bytes"), "{err}");
    let mut w = plan.writer(Vec::new());
    let err = w.write_file(f, &mut Cursor::new(b"much too long")).unwrap_err();
    assert!(err.to_string().contains("longer than the declared 10 bytes"), "{err}");
    let w = plan.writer(Vec::new());
    assert!(w.finish().unwrap_err().to_string().contains("0 of 1 files"));
}

/// Writes `data` at the places `placed` gives it in `out`.
fn write_placed(out: &mut std::fs::File, placed: &xspack_ext4::ZoneFile, data: &[u8]) {
    use std::io::{Seek, SeekFrom};
    let mut at = 0usize;
    for &(start, blocks) in placed.runs() {
        let len = usize::try_from(blocks * 4096).unwrap().min(data.len() - at);
        out.seek(SeekFrom::Start(start * 4096)).unwrap();
        out.write_all(&data[at..at + len]).unwrap();
        at += len;
    }
    assert_eq!(at, data.len());
}

/// A single pass: files are written into the data zone as they arrive (one of them is dropped
/// later and its blocks zeroed), then the tree is planned around them and the rest written
/// over the same file. e2fsck finds it clean and every file reads back.
#[test]
fn files_written_before_planning_keep_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fs.img");
    let mut out = std::fs::File::create_new(&path).unwrap();
    let mut zone = xspack_ext4::DataZone::new();
    // The third crosses group 1's backup superblock and needs an extent-tree block.
    let sizes = [5000u64, 70_000, 140 << 20, 0, 123];
    let mut placed = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let z = zone.allocate(size).unwrap();
        write_placed(&mut out, &z, &content(i as u64, size));
        placed.push(z);
    }
    // File 1 is dropped (a later layer replaced it): its blocks become free, read as zeros.
    write_placed(&mut out, &placed[1], &vec![0; 70_000]);

    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b.root();
    let sub = b.add(NodeKind::Dir, attrs(0o750, 1, 1));
    b.link(root, b"sub", sub).unwrap();
    let mut kept = Vec::new();
    for i in [0usize, 2, 3, 4] {
        let f = b.add(NodeKind::File { size: sizes[i], data_key: 0 }, attrs(0o644, 0, 0));
        b.link(sub, format!("zone{i}").as_bytes(), f).unwrap();
        b.set_zone_data(f, placed[i].clone()).unwrap();
        kept.push((format!("/sub/zone{i}"), content(i as u64, sizes[i])));
    }
    let hard = b.lookup(sub, b"zone0").unwrap();
    b.link(root, b"hardlink", hard).unwrap();
    kept.push(("/hardlink".into(), content(0, sizes[0])));
    let mut later = Vec::new();
    for i in 10..13u64 {
        let data = content(i, 9000 * i);
        let f = b.add(NodeKind::File { size: data.len() as u64, data_key: i }, attrs(0o600, 2, 2));
        b.link(root, format!("later{i}").as_bytes(), f).unwrap();
        kept.push((format!("/later{i}"), data.clone()));
        later.push((f, data));
    }
    let link = b.add(NodeKind::Symlink(b"sub/zone0".to_vec()), attrs(0o777, 0, 0));
    b.link(root, b"link", link).unwrap();
    let wrong = b.add(NodeKind::File { size: 1, data_key: 0 }, attrs(0o644, 0, 0));
    assert!(b.set_zone_data(wrong, placed[0].clone()).is_err(), "a size that does not match");
    b.link(root, b"one", wrong).unwrap();
    later.push((wrong, vec![1]));
    kept.push(("/one".into(), vec![1]));

    let plan = b.plan_with_zone(&opts(), &zone).unwrap();
    assert_eq!(plan.zone_end(), zone.end());
    assert_eq!(plan.file_order().count(), later.len(), "zone files are not asked for");
    // Writing every byte in order would overwrite the zone.
    let mut in_order = plan.writer(Vec::new());
    for (id, _) in plan.file_order() {
        let data = &later.iter().find(|(f, _)| *f == id).unwrap().1;
        let refused = in_order.write_file(id, &mut Cursor::new(data));
        if refused.is_err() {
            break;
        }
    }
    assert!(in_order.finish().is_err());

    std::io::Seek::rewind(&mut out).unwrap();
    let mut w = plan.writer_around_zone(&mut out);
    for (id, _) in plan.file_order() {
        let data = &later.iter().find(|(f, _)| *f == id).unwrap().1;
        w.write_file(id, &mut Cursor::new(data)).unwrap();
    }
    w.finish().unwrap();
    drop(out);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), plan.size_bytes());
    e2fsck_clean(&path);
    for (name, data) in &kept {
        assert!(dump(&path, name) == *data, "{name}");
    }
    let stat = debugfs(&path, "stat /sub/zone2");
    assert!(stat.contains("EXTENTS"), "{stat}");
}

/// The zone leaves room for one descriptor block: 128 groups (16 GiB) at most.
#[test]
fn a_zone_is_refused_for_more_than_128_groups() {
    let mut zone = xspack_ext4::DataZone::new();
    let placed = zone.allocate(10).unwrap();
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let f = b.add(NodeKind::File { size: 10, data_key: 0 }, attrs(0o644, 0, 0));
    b.link(b.root(), b"f", f).unwrap();
    b.set_zone_data(f, placed).unwrap();
    let mut o = opts();
    o.size = Some(17 << 30);
    let Err(err) = b.plan_with_zone(&o, &zone) else { panic!("planned a zone of 136 groups") };
    assert!(matches!(err, Error::TooLarge(_)), "{err}");
}
