//! The fixture images and the trees their merge must produce.

use std::collections::BTreeMap;

use xspack_io::Sha256Digest;
use xspack_testkit::ext4check::Expected;
use xspack_testkit::{Compression, Entry, EntryKind, ImageSpec, layer_tar};

pub use xspack_testkit::noise;

fn file(data: &[u8], mode: u32, owner: (u32, u32), links: u32, xattrs: &[&str]) -> Expected {
    Expected {
        kind: 'f',
        mode,
        uid: owner.0,
        gid: owner.1,
        size: data.len() as u64,
        sha256: Some(Sha256Digest::of_bytes(data).to_string()),
        links,
        xattrs: xattrs.iter().map(|s| (*s).to_owned()).collect(),
        ..Expected::default()
    }
}

fn dir(mode: u32, owner: (u32, u32)) -> Expected {
    Expected { kind: 'd', mode, uid: owner.0, gid: owner.1, ..Expected::default() }
}

fn other(
    kind: char,
    mode: u32,
    owner: (u32, u32),
    dev: Option<(u32, u32)>,
    target: Option<&[u8]>,
) -> Expected {
    Expected {
        kind,
        mode,
        uid: owner.0,
        gid: owner.1,
        dev,
        target: target.map(<[u8]>::to_vec),
        links: 1,
        ..Expected::default()
    }
}

const CAPABILITY: [u8; 20] = [1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Three layers (gzip, zstd, plain) exercising every merge rule and entry kind.
#[allow(clippy::too_many_lines)]
pub fn kitchen_sink() -> (ImageSpec, BTreeMap<Vec<u8>, Expected>) {
    let tool_v1 = noise(1, 10_000);
    let tool_v2 = noise(2, 7_000);
    let big = noise(3, 5 << 20);
    let long_dir = format!("deep/{}", "d".repeat(120));
    let long_file = format!("{long_dir}/{}", "n".repeat(200));
    let slow_target = "../".repeat(10) + &"t".repeat(120);
    let root = (0, 0);

    let layer1 = vec![
        Entry::dir("./"),
        Entry::dir("etc"),
        Entry::file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
        Entry::file("etc/shadow", "root:*:19000::::::\n").mode(0o640).owner(0, 42),
        Entry::dir("usr"),
        Entry::dir("usr/bin"),
        Entry::file("usr/bin/tool", tool_v1.clone())
            .mode(0o4755)
            .xattr("security.capability", CAPABILITY),
        Entry::new("usr/bin/tool2", EntryKind::Hardlink(b"usr/bin/tool".to_vec())),
        Entry::new("bin", EntryKind::Symlink(b"usr/bin".to_vec())),
        Entry::dir("deep"),
        Entry::dir(&long_dir),
        Entry::file(&long_file, "long"),
        Entry::file(b"caf\xe9.txt", "latin-1 name"),
        Entry::dir("dev"),
        Entry::new("dev/null", EntryKind::Char(1, 3)).mode(0o666),
        Entry::new("dev/sda", EntryKind::Block(8, 0)).mode(0o660).owner(0, 6),
        Entry::new("dev/nvme0n1", EntryKind::Block(259, 0)).mode(0o660).owner(0, 6),
        Entry::new("dev/initctl", EntryKind::Fifo).mode(0o600),
        Entry::dir("opaque"),
        Entry::file("opaque/a", "a"),
        Entry::file("opaque/b", "b"),
        Entry::dir("gone"),
        Entry::file("gone/file", "gone"),
        Entry::file("replaced", "a file, for now"),
        Entry::file("empty", ""),
        Entry::file("big.bin", big.clone()),
        Entry::dir("tmp").mode(0o1777),
        Entry::dir("sgid").mode(0o2775).owner(1000, 1000),
    ];
    let layer2 = vec![
        Entry::file(".wh.gone", ""),
        Entry::file("opaque/c", "c"),
        Entry::file("opaque/.wh..wh..opq", ""),
        Entry::dir("replaced").mode(0o700),
        Entry::file("replaced/inside", "inside"),
        Entry::new("usr/bin/tool3", EntryKind::Hardlink(b"usr/bin/tool".to_vec())),
        Entry::file("etc/xattrs", "attrs")
            .owner(100_000, 100_000)
            .mtime(1_700_000_000, 123_456_789)
            .xattr("user.note", "hello")
            .xattr("trusted.level", vec![0, 1, 2, 255]),
        Entry::file("etc/hosts", "127.0.0.1 localhost\n"),
        Entry::file("etc/.wh.hosts", ""),
    ];
    let layer3 = vec![
        Entry::file("etc/passwd", "root:x:0:0::/root:/bin/bash\n"),
        Entry::file("etc/.wh.shadow", ""),
        Entry::file("usr/bin/tool", tool_v2.clone()).mode(0o755),
        Entry::new("etc/slow", EntryKind::Symlink(slow_target.clone().into_bytes())),
    ];
    let spec = ImageSpec::new(vec![
        (layer_tar(&layer1), Compression::Gzip),
        (layer_tar(&layer2), Compression::Zstd),
        (layer_tar(&layer3), Compression::None),
    ]);

    let mut e: BTreeMap<Vec<u8>, Expected> = BTreeMap::new();
    let mut put = |p: &[u8], x: Expected| {
        e.insert(p.to_vec(), x);
    };
    put(b"etc", dir(0o755, root));
    put(b"etc/passwd", file(b"root:x:0:0::/root:/bin/bash\n", 0o644, root, 1, &[]));
    put(
        b"etc/xattrs",
        file(b"attrs", 0o644, (100_000, 100_000), 1, &["trusted.level", "user.note"]),
    );
    put(b"etc/hosts", file(b"127.0.0.1 localhost\n", 0o644, root, 1, &[]));
    put(b"etc/slow", other('l', 0o777, root, None, Some(slow_target.as_bytes())));
    put(b"usr", dir(0o755, root));
    put(b"usr/bin", dir(0o755, root));
    put(b"usr/bin/tool", file(&tool_v2, 0o755, root, 1, &[]));
    put(b"usr/bin/tool2", file(&tool_v1, 0o4755, root, 2, &["security.capability"]));
    put(b"usr/bin/tool3", file(&tool_v1, 0o4755, root, 2, &["security.capability"]));
    put(b"bin", other('l', 0o777, root, None, Some(b"usr/bin")));
    put(b"deep", dir(0o755, root));
    put(long_dir.as_bytes(), dir(0o755, root));
    put(long_file.as_bytes(), file(b"long", 0o644, root, 1, &[]));
    put(b"caf\xe9.txt", file(b"latin-1 name", 0o644, root, 1, &[]));
    put(b"dev", dir(0o755, root));
    put(b"dev/null", other('c', 0o666, root, Some((1, 3)), None));
    put(b"dev/sda", other('b', 0o660, (0, 6), Some((8, 0)), None));
    put(b"dev/nvme0n1", other('b', 0o660, (0, 6), Some((259, 0)), None));
    put(b"dev/initctl", other('p', 0o600, root, None, None));
    put(b"opaque", dir(0o755, root));
    put(b"opaque/c", file(b"c", 0o644, root, 1, &[]));
    put(b"replaced", dir(0o700, root));
    put(b"replaced/inside", file(b"inside", 0o644, root, 1, &[]));
    put(b"empty", file(b"", 0o644, root, 1, &[]));
    put(b"big.bin", file(&big, 0o644, root, 1, &[]));
    put(b"tmp", dir(0o1777, root));
    put(b"sgid", dir(0o2775, (1000, 1000)));
    (spec, e)
}

/// One layer with a directory of 20,000 entries and two large files (one all zeros).
pub fn big_directory() -> (ImageSpec, BTreeMap<Vec<u8>, Expected>) {
    let mut entries = vec![Entry::dir("many"), Entry::dir("big")];
    let mut e = BTreeMap::new();
    e.insert(b"many".to_vec(), dir(0o755, (0, 0)));
    e.insert(b"big".to_vec(), dir(0o755, (0, 0)));
    for i in 0..20_000u64 {
        let data = noise(i, usize::try_from(i % 3).unwrap());
        let path = format!("many/f{i:05}");
        e.insert(path.clone().into_bytes(), file(&data, 0o644, (0, 0), 1, &[]));
        entries.push(Entry::file(path, data));
    }
    let random = noise(99, 16 << 20);
    let zeros = vec![0u8; 8 << 20];
    e.insert(b"big/random.bin".to_vec(), file(&random, 0o644, (0, 0), 1, &[]));
    e.insert(b"big/zeros.bin".to_vec(), file(&zeros, 0o644, (0, 0), 1, &[]));
    entries.push(Entry::file("big/random.bin", random));
    entries.push(Entry::file("big/zeros.bin", zeros));
    (ImageSpec::new(vec![(layer_tar(&entries), Compression::Gzip)]), e)
}
