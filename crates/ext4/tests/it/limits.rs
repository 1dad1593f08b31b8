//! Every ext4 limit the builder enforces ([`xspack_ext4::limits`]), at the limit (the image is
//! clean for `e2fsck -fn` and the value reads back with `debugfs`) and one past it (the typed
//! error). Limits that would need a huge image (2^32 blocks, a 2 GiB directory) are tested on
//! their check alone, in the crate's unit tests, or by planning without writing.

use xspack_ext4::{
    Attrs, DataZone, Error, Ext4Options, FsBuilder, InodeId, NodeKind, Timestamp, Xattr, limits,
};

use super::{Built, attrs, debugfs, dump, e2fsck_clean, opts};

/// Plans `b` and writes it to a temporary file, seeking over free space: each file's data is
/// `data(id)`, or zeros.
fn write_sparse(b: &FsBuilder, o: &Ext4Options, data: &dyn Fn(InodeId) -> Vec<u8>) -> Built {
    let plan = b.plan(o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fs.img");
    let mut out = std::fs::File::create_new(&image).unwrap();
    let mut w = plan.writer_around_zone(&mut out);
    for (id, size) in plan.file_order() {
        let mut bytes = data(id);
        bytes.resize(usize::try_from(size).unwrap(), 0);
        w.write_file(id, &mut bytes.as_slice()).unwrap();
    }
    w.finish().unwrap();
    drop(out);
    assert_eq!(std::fs::metadata(&image).unwrap().len(), plan.size_bytes());
    Built { _dir: dir, image }
}

fn zeros(_: InodeId) -> Vec<u8> {
    Vec::new()
}

fn file(size: u64) -> NodeKind {
    NodeKind::File { size, data_key: 0 }
}

/// The value after `key` on the line of `stat` output that has it.
fn field<'a>(stat: &'a str, key: &str) -> &'a str {
    stat.lines()
        .find_map(|l| l.split_once(key).map(|(_, rest)| rest.trim()))
        .unwrap_or_else(|| panic!("no {key:?} in:\n{stat}"))
}

/// `debugfs stat`'s link count.
fn links(stat: &str) -> u32 {
    field(stat, "Links:").split_whitespace().next().unwrap().parse().unwrap()
}

/// The 65,000th name of a file is stored and counted exactly; the 65,001st is refused by
/// `link`, leaving the tree as it was.
#[test]
fn a_file_has_at_most_65000_names() {
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b.root();
    let dir = b.add(NodeKind::Dir, attrs(0o755, 0, 0));
    b.link(root, b"names", dir).unwrap();
    let f = b.add(file(5), attrs(0o644, 0, 0));
    b.link(root, b"f", f).unwrap();
    for i in 1..limits::LINK_MAX {
        b.link(dir, format!("{i:05}").as_bytes(), f).unwrap();
    }
    let err = b.link(dir, b"one-too-many", f).unwrap_err();
    assert!(
        matches!(&err, Error::TooManyLinks { path, count: 65_001, max: 65_000 }
            if path == "/names/one-too-many"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "/names/one-too-many: 65001 names for one inode; ext4 allows at most 65000 hard links"
    );
    assert_eq!(b.lookup(dir, b"one-too-many"), None, "the refused name was not added");
    // A symlink, a device and a FIFO count their names the same way.
    let link = b.add(NodeKind::Symlink(b"f".to_vec()), attrs(0o777, 0, 0));
    b.link(root, b"l1", link).unwrap();
    b.link(dir, b"l2", link).unwrap();

    let built = write_sparse(&b, &opts(), &|_| b"hello".to_vec());
    e2fsck_clean(&built.image);
    assert_eq!(links(&debugfs(&built.image, "stat /f")), 65_000);
    assert_eq!(links(&debugfs(&built.image, "stat /names/64999")), 65_000);
    assert_eq!(dump(&built.image, "/names/00001"), b"hello");
    assert_eq!(links(&debugfs(&built.image, "stat /l1")), 2);
}

/// A directory with 64,998 subdirectories has 65,000 links, stored exactly (e2fsck's
/// pass 4 wants the exact count up to 65,000); the 64,999th subdirectory is refused. The root
/// counts the lost+found the writer adds: 64,997 subdirectories of the caller's are its limit.
#[test]
fn a_directory_has_at_most_64998_subdirectories() {
    // One past, anywhere but the root: refused by `link`.
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b.root();
    let d = b.add(NodeKind::Dir, attrs(0o755, 0, 0));
    b.link(root, b"d", d).unwrap();
    for i in 0..limits::MAX_SUBDIRS {
        let sub = b.add(NodeKind::Dir, attrs(0o755, 0, 0));
        b.link(d, format!("{i:05}").as_bytes(), sub).unwrap();
    }
    let extra = b.add(NodeKind::Dir, attrs(0o755, 0, 0));
    let err = b.link(d, b"extra", extra).unwrap_err();
    assert!(
        matches!(&err, Error::TooManySubdirectories { path, count: 64_999, max: 64_998 }
            if path == "/d"),
        "{err:?}"
    );
    // Files do not count: the directory takes more names.
    let f = b.add(file(0), attrs(0o644, 0, 0));
    b.link(d, b"a-file", f).unwrap();
    drop(b);

    // The root, with the lost+found the writer adds: 64,998 of the caller's are one too many.
    let root_with = |subdirs: u32| {
        let mut b = FsBuilder::new(attrs(0o755, 0, 0));
        let root = b.root();
        for i in 0..subdirs {
            let sub = b.add(NodeKind::Dir, attrs(0o700, 0, 0));
            b.link(root, format!("{i:05}").as_bytes(), sub).unwrap();
        }
        b
    };
    let Err(err) = root_with(limits::MAX_SUBDIRS).plan(&opts()) else {
        panic!("planned a root of 65,001 links")
    };
    assert!(
        matches!(&err, Error::TooManySubdirectories { path, count: 64_999, .. } if path == "/"),
        "{err:?}"
    );

    // At the limit: written, clean, and counted exactly.
    let built = write_sparse(&root_with(limits::MAX_SUBDIRS - 1), &opts(), &zeros);
    e2fsck_clean(&built.image);
    assert_eq!(links(&debugfs(&built.image, "stat /")), 65_000);
    assert_eq!(links(&debugfs(&built.image, "stat /64996")), 2);
}

/// Files up to 2^32 − 1 blocks are accepted by `link`; one byte more is refused. (No test
/// writes 16 TiB: planning shows the filesystem limit is what such a file meets next.)
#[test]
fn a_file_holds_at_most_16_tib_less_a_block() {
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b.root();
    let big = b.add(file(limits::MAX_FILE_SIZE), attrs(0o644, 0, 0));
    b.link(root, b"big", big).unwrap();
    let over = b.add(file(limits::MAX_FILE_SIZE + 1), attrs(0o644, 0, 0));
    let err = b.link(root, b"over", over).unwrap_err();
    assert!(
        matches!(&err, Error::FileTooLarge { path, size, max }
            if path == "/over" && *size == (16 << 40) - 4095 && *max == (16 << 40) - 4096),
        "{err:?}"
    );
    let b2 = {
        let mut b2 = FsBuilder::new(attrs(0o755, 0, 0));
        let big = b2.add(file(limits::MAX_FILE_SIZE), attrs(0o644, 0, 0));
        b2.link(b2.root(), b"big", big).unwrap();
        b2
    };
    assert!(matches!(b2.plan(&opts()), Err(Error::TooManyBlocks { .. })));
}

/// An extent holds at most 32,768 blocks: a file of 32,768 contiguous blocks is one extent, a
/// file of 32,769 contiguous blocks two. The data zone puts them where no backup superblock
/// interrupts them, and their data are holes.
#[test]
fn an_extent_holds_at_most_32768_blocks() {
    let mut zone = DataZone::new();
    let blocks = |n: u64| n * 4096;
    // Free space up to group 2, which has no backup superblock.
    let pad = zone.allocate(blocks(65_536 - 2 - 2)).unwrap();
    assert_eq!(pad.runs(), &[(2, 32_766), (32_770, 32_766)]);
    let at = zone.allocate(blocks(32_768)).unwrap();
    assert_eq!(at.runs(), &[(65_536, 32_768)]);
    // Free space up to group 10: groups 10 and 11 have no backup.
    let pad = zone.allocate(blocks(327_680 - 98_304 - 4 * 2)).unwrap();
    assert_eq!(pad.runs().last().map(|r| r.0 + r.1), Some(327_680));
    let past = zone.allocate(blocks(32_769)).unwrap();
    assert_eq!(past.runs(), &[(327_680, 32_768), (360_448, 1)]);

    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b.root();
    for (name, placed) in [(&b"past"[..], past), (b"at", at)] {
        let f = b.add(file(placed.size()), attrs(0o644, 0, 0));
        b.link(root, name, f).unwrap();
        b.set_zone_data(f, placed).unwrap();
    }
    let plan = b.plan_with_zone(&opts(), &zone).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fs.img");
    let mut out = std::fs::File::create_new(&image).unwrap();
    plan.writer_around_zone(&mut out).finish().unwrap();
    drop(out);
    e2fsck_clean(&image);
    let extents = |path: &str| {
        let stat = debugfs(&image, &format!("stat {path}"));
        stat.split("EXTENTS:").nth(1).unwrap_or_else(|| panic!("{stat}")).trim().to_owned()
    };
    assert_eq!(extents("/at"), "(0-32767):65536-98303");
    assert_eq!(extents("/past"), "(0-32767):327680-360447, (32768):360448");
}

/// A directory's blocks are mapped like a file's: split around a backup superblock, it is
/// two extents and e2fsck finds it clean. (The 2 GiB directory limit is a unit test.)
#[test]
fn a_directory_may_span_several_extents() {
    // In a 1 GiB filesystem, the zone ends where the bitmaps, inode tables (4,096 blocks) and
    // journal (8,192 blocks) that follow it, then the root and lost+found, leave the directory
    // 50 blocks before group 3's backup superblock at block 98,304.
    let mut zone = DataZone::new();
    let pad = zone.allocate(85_941 * 4096).unwrap();
    assert_eq!(zone.end(), 85_945);
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b.root();
    let padding = b.add(file(pad.size()), attrs(0o644, 0, 0));
    b.link(root, b"padding", padding).unwrap();
    b.set_zone_data(padding, pad).unwrap();
    let big = b.add(NodeKind::Dir, attrs(0o755, 0, 0));
    b.link(root, b"big", big).unwrap();
    let target = b.add(file(0), attrs(0o644, 0, 0));
    // 250-byte names: 15 to a block (`.` and `..` fit beside them), 100 blocks.
    for i in 0..100 * 15 {
        b.link(big, format!("{i:06}{}", "n".repeat(244)).as_bytes(), target).unwrap();
    }
    let mut o = opts();
    o.size = Some(1 << 30);
    let plan = b.plan_with_zone(&o, &zone).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("fs.img");
    let mut out = std::fs::File::create_new(&image).unwrap();
    let mut w = plan.writer_around_zone(&mut out);
    w.write_file(target, &mut std::io::empty()).unwrap();
    w.finish().unwrap();
    drop(out);
    e2fsck_clean(&image);
    let stat = debugfs(&image, "stat /big");
    let extents = stat.split("EXTENTS:").nth(1).unwrap().trim();
    assert_eq!(extents, "(0-49):98254-98303, (50-99):98306-98355", "{stat}");
    assert_eq!(field(&stat, "Size:").split_whitespace().next(), Some("409600"), "{stat}");
    let ls = debugfs(&image, "ls /big");
    assert!(ls.contains(&format!("001499{}", "n".repeat(244))), "the last entry reads back");
}

/// Targets of 1 to 4,095 bytes without NUL are stored (fast below 60 bytes); 4,096 bytes, an
/// empty target and a NUL byte are refused when the symlink is first named.
#[test]
fn symlink_targets_are_1_to_4095_bytes() {
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b.root();
    let targets: Vec<Vec<u8>> =
        [1, 59, 60, 4095].iter().map(|&n| (0..n).map(|i| b"abc/"[i % 4]).collect()).collect();
    for t in &targets {
        let l = b.add(NodeKind::Symlink(t.clone()), attrs(0o777, 0, 0));
        b.link(root, format!("l{}", t.len()).as_bytes(), l).unwrap();
    }
    let refused = |b: &mut FsBuilder, target: Vec<u8>| {
        let l = b.add(NodeKind::Symlink(target), attrs(0o777, 0, 0));
        b.link(b.root(), b"bad", l).unwrap_err()
    };
    let err = refused(&mut b, vec![b'x'; 4096]);
    assert!(
        matches!(&err, Error::SymlinkTooLong { path, len: 4096, max: 4095 } if path == "/bad"),
        "{err:?}"
    );
    assert!(matches!(
        refused(&mut b, Vec::new()),
        Error::InvalidSymlink { reason: "is empty", .. }
    ));
    let err = refused(&mut b, b"a\0b".to_vec());
    assert_eq!(err.to_string(), "/bad: symlink target holds a NUL byte");
    // The refused symlinks were never named: planning says so.
    assert!(matches!(b.plan(&opts()), Err(Error::BadLink(_))));

    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b.root();
    for t in &targets {
        let l = b.add(NodeKind::Symlink(t.clone()), attrs(0o777, 0, 0));
        b.link(root, format!("l{}", t.len()).as_bytes(), l).unwrap();
    }
    let built = write_sparse(&b, &opts(), &zeros);
    e2fsck_clean(&built.image);
    for t in &targets {
        let path = format!("/l{}", t.len());
        let stat = debugfs(&built.image, &format!("stat {path}"));
        assert_eq!(field(&stat, "Size:").split_whitespace().next(), Some(&*t.len().to_string()));
        if t.len() < 60 {
            assert_eq!(field(&stat, "Fast link dest:").trim_matches('"').as_bytes(), t.as_slice());
        } else {
            assert_eq!(dump(&built.image, &path), *t, "{path}");
        }
    }
}

/// Device numbers up to 4095:1048575 are stored (the old 8:8 encoding up to 255:255); a major
/// of 4096 or a minor of 2^20 is refused.
#[test]
fn device_numbers_fit_the_kernels_dev_t() {
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b.root();
    let numbers = [(255, 255), (256, 0), (0, 256), (4095, 1_048_575)];
    for (major, minor) in numbers {
        let c = b.add(NodeKind::CharDev { major, minor }, attrs(0o600, 0, 0));
        b.link(root, format!("c{major}-{minor}").as_bytes(), c).unwrap();
    }
    let blk = b.add(NodeKind::BlockDev { major: 4095, minor: 1_048_575 }, attrs(0o600, 0, 0));
    b.link(root, b"b", blk).unwrap();
    for (major, minor) in [(4096, 0), (0, 1 << 20)] {
        let c = b.add(NodeKind::BlockDev { major, minor }, attrs(0o600, 0, 0));
        let err = b.link(root, b"bad", c).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidDevice { path, major: m, minor: n }
                if path == "/bad" && (*m, *n) == (major, minor)),
            "{err:?}"
        );
    }
    let mut b2 = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b2.root();
    for (major, minor) in numbers {
        let c = b2.add(NodeKind::CharDev { major, minor }, attrs(0o600, 0, 0));
        b2.link(root, format!("c{major}-{minor}").as_bytes(), c).unwrap();
    }
    let built = write_sparse(&b2, &opts(), &zeros);
    e2fsck_clean(&built.image);
    for (major, minor) in numbers {
        let stat = debugfs(&built.image, &format!("stat /c{major}-{minor}"));
        // "256:00 (hex 100:00)"
        let read = field(&stat, "Device major/minor number:").split_whitespace().next().unwrap();
        let (ma, mi) = read.split_once(':').unwrap();
        assert_eq!((ma.parse(), mi.parse()), (Ok(major), Ok(minor)), "{stat}");
    }
}

/// Owners are 32 bits, split over two 16-bit fields; the largest read back whole.
#[test]
fn owners_keep_all_32_bits() {
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let f = b.add(file(0), attrs(0o644, 0xFFFF_FFFE, 0x1_0000));
    b.link(b.root(), b"f", f).unwrap();
    let built = write_sparse(&b, &opts(), &zeros);
    e2fsck_clean(&built.image);
    let stat = debugfs(&built.image, "stat /f");
    // debugfs prints the owner as a signed int.
    let uid: i32 = field(&stat, "User:").split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(uid.cast_unsigned(), 0xFFFF_FFFE);
    assert_eq!(field(&stat, "Group:").split_whitespace().next(), Some("65536"));
}

/// Inode times from 1901-12-13 to 2446-05-10 are stored exactly; times outside are stored as
/// the nearer end, as the kernel does. The build time must lie inside.
#[test]
fn times_run_from_1901_to_2446() {
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b.root();
    let at = |sec: i64| Timestamp { sec, nsec: 0 };
    let cases = [
        ("min", limits::TIMESTAMP_MIN, "0x80000000:00000000"),
        ("before", limits::TIMESTAMP_MIN - 1, "0x80000000:00000000"),
        ("max", limits::TIMESTAMP_MAX, "0x7fffffff:00000003"),
        ("after", limits::TIMESTAMP_MAX + 1, "0x7fffffff:00000003"),
        ("y2038", 1 << 31, "0x80000000:00000001"),
    ];
    for (name, sec, _) in cases {
        let mut a = attrs(0o644, 0, 0);
        (a.atime, a.mtime, a.ctime) = (at(sec), at(sec), at(sec));
        let f = b.add(file(0), a);
        b.link(root, name.as_bytes(), f).unwrap();
    }
    let mut o = opts();
    o.timestamp = 15_032_385_536;
    let err = {
        let mut b = FsBuilder::new(attrs(0o755, 0, 0));
        let f = b.add(file(0), Attrs::default());
        b.link(b.root(), b"f", f).unwrap();
        let Err(err) = b.plan(&o) else { panic!("planned a build time past 2446") };
        err
    };
    assert!(
        matches!(err, Error::TimestampOutOfRange { epoch: 15_032_385_536, max: 15_032_385_535 }),
        "{err:?}"
    );
    // The last build time e2fsck is told to accept as the present (it is in the future).
    o.timestamp = 15_032_385_535;
    let built = write_sparse(&b, &o, &zeros);
    let conf = built.image.with_extension("conf");
    std::fs::write(&conf, "[options]\n\tbroken_system_clock = true\n").unwrap();
    let out = std::process::Command::new("e2fsck")
        .arg("-fn")
        .arg(&built.image)
        .env("E2FSCK_CONFIG", &conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    for (name, _, raw) in cases {
        let stat = debugfs(&built.image, &format!("stat /{name}"));
        assert_eq!(field(&stat, "mtime:").split_whitespace().next(), Some(raw), "{name}: {stat}");
    }
    // The superblock's times: the low 32 bits, and bits 32.. in the `_hi` bytes (read by
    // e2fsprogs from 1.47.1 on: 1.47.0's debugfs shows only the low half).
    let sb = std::fs::read(&built.image).unwrap()[1024..2048].to_vec();
    let low = |at: usize| u32::from_le_bytes(sb[at..at + 4].try_into().unwrap());
    for (at, hi) in [(0x30, 0x274), (0x40, 0x277), (0x108, 0x276)] {
        assert_eq!(u64::from(sb[hi]) << 32 | u64::from(low(at)), 15_032_385_535, "{at:#x}");
    }
}

/// Attribute names up to 255 bytes with their prefix, and attributes up to one block, are
/// stored; one byte more is refused when planning, naming the inode.
#[test]
fn extended_attributes_fit_255_byte_names_and_one_block() {
    let xattr =
        |name: String, len: usize| Xattr { name: name.into_bytes(), value: vec![b'v'; len] };
    let tree = |xattrs: Vec<Xattr>| {
        let mut b = FsBuilder::new(attrs(0o755, 0, 0));
        let mut a = attrs(0o644, 0, 0);
        a.xattrs = xattrs;
        let f = b.add(file(0), a);
        b.link(b.root(), b"f", f).unwrap();
        b
    };
    // 32-byte header, a 20-byte entry for "user.v", the 4-byte end: 4,040 bytes of value
    // fill the block. In the inode: 96 bytes hold a value of 68.
    for (len, in_block) in [(68, false), (69, true), (4040, true)] {
        let built = write_sparse(&tree(vec![xattr("user.v".into(), len)]), &opts(), &zeros);
        e2fsck_clean(&built.image);
        let stat = debugfs(&built.image, "stat /f");
        assert_eq!(field(&stat, "File ACL:").split_whitespace().next() != Some("0"), in_block);
        assert!(stat.contains(&format!("user.v ({len})")), "{stat}");
    }
    let Err(err) = tree(vec![xattr("user.v".into(), 4041)]).plan(&opts()) else {
        panic!("planned 4,100 bytes of attributes")
    };
    assert!(
        matches!(&err, Error::XattrTooLarge { path, size: 4100, max: 4096 } if path == "/f"),
        "{err:?}"
    );
    let longest = format!("user.{}", "n".repeat(250));
    let built = write_sparse(&tree(vec![xattr(longest.clone(), 1)]), &opts(), &zeros);
    e2fsck_clean(&built.image);
    assert!(debugfs(&built.image, "stat /f").contains(&longest));
    let Err(err) = tree(vec![xattr(format!("{longest}n"), 1)]).plan(&opts()) else {
        panic!("planned a 256-byte attribute name")
    };
    assert!(matches!(&err, Error::InvalidXattr { path, .. } if path == "/f"), "{err:?}");
}

/// The largest filesystem without `64bit`: 2^32 − 1 blocks plan; 2^32 are refused. (The plan
/// is not written: its inode tables alone are 256 GiB.)
#[test]
fn a_filesystem_holds_at_most_2_to_the_32_less_1_blocks() {
    let tree = || {
        let mut b = FsBuilder::new(attrs(0o755, 0, 0));
        let f = b.add(file(1), attrs(0o644, 0, 0));
        b.link(b.root(), b"f", f).unwrap();
        b
    };
    let mut o = opts();
    o.size = Some(limits::MAX_BLOCKS * 4096);
    let plan = tree().plan(&o).unwrap();
    assert_eq!(plan.size_bytes(), ((1 << 32) - 1) * 4096);
    assert_eq!(plan.groups(), 131_072);
    o.size = Some((1 << 32) * 4096);
    let Err(err) = tree().plan(&o) else { panic!("planned 2^32 blocks") };
    assert!(
        matches!(err, Error::TooManyBlocks { blocks, max } if blocks == 1 << 32 && max == (1 << 32) - 1)
    );
}

/// `lost+found` in the root is reserved for the directory e2fsck reconnects files into.
#[test]
fn lost_found_in_the_root_is_a_directory() {
    let mut b = FsBuilder::new(attrs(0o755, 0, 0));
    let root = b.root();
    let f = b.add(file(0), attrs(0o644, 0, 0));
    assert!(matches!(b.link(root, b"lost+found", f), Err(Error::InvalidName { .. })));
    let sub = b.add(NodeKind::Dir, attrs(0o755, 0, 0));
    b.link(root, b"sub", sub).unwrap();
    b.link(sub, b"lost+found", f).unwrap();
    let lf = b.add(NodeKind::Dir, attrs(0o700, 0, 0));
    b.link(root, b"lost+found", lf).unwrap();
    let built = write_sparse(&b, &opts(), &zeros);
    e2fsck_clean(&built.image);
    let stat = debugfs(&built.image, "stat /lost+found");
    assert!(stat.starts_with("Inode: 11 "), "{stat}");
}
