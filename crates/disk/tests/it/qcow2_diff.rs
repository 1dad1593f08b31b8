//! Differential test of the qcow2 checker against `qemu-img`, the real consumer.
//!
//! Seeds are clean images from our writer and from `qemu-img convert`/`create`, `qemu-io` and
//! `qemu-img snapshot` (several versions, cluster sizes, refcount widths, compressed and zero
//! clusters, internal snapshots); each must pass both `qemu-img check` and [`check_qcow2`].
//! Then a seeded RNG applies structured mutations to them (header fields, header extensions,
//! L1 and L2 entries, refcount table and block entries, snapshot table entries, the file's
//! length, and a few raw bit flips) and the test asserts, for every mutant:
//!
//! - if `qemu-img info` cannot open it, or `qemu-img check --output=json` exits non-zero
//!   (1: the check failed, 2: corruption, 3: leaked clusters), our checker refuses it;
//! - if our checker refuses an image `qemu-img` accepts, the reason is one we refuse
//!   deliberately ([`deliberate`]): a backing file, encryption, external data files, extended
//!   L2 entries, zstd, bitmaps, the dirty and corrupt bits, a `header_length` that is not a
//!   multiple of 8, anything sticking out of the file (QEMU lets the last cluster stick out by
//!   less than a cluster), guest data mapped past the virtual size, and the checker's own
//!   memory and time bounds.
//!
//! `XSPACK_QCOW2_DIFF_CASES` (default 300) and `XSPACK_QCOW2_DIFF_SEED` change the run. A
//! missing `qemu-img` fails the test.

use std::fmt::Write as _;
use std::fs;
use std::io::Cursor;
use std::process::Command;
use xspack_testkit::Rng;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::Value;
use xspack_disk::qcow2::{Qcow2Options, Violation, check_qcow2, write_qcow2};
use xspack_disk::{Error, FileSource};
use xspack_io::NoProgress;

use crate::oracle::write_raw;
use crate::{MIB, Pattern, tempdir, tool, tool_ok};

fn be(b: &[u8], at: u64, width: usize) -> u64 {
    let at = at as usize;
    match b.get(at..at + width) {
        Some(s) => s.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x)),
        None => 0,
    }
}

fn set_be(b: &mut Vec<u8>, at: u64, width: usize, value: u64) {
    let at = at as usize;
    if b.len() < at + width {
        b.resize(at + width, 0);
    }
    for i in 0..width {
        b[at + i] = (value >> (8 * (width - 1 - i))) as u8;
    }
}

/// Where a seed keeps its tables.
#[derive(Debug, Default)]
struct Layout {
    cluster: u64,
    header_length: u64,
    refcount_order: u32,
    l1: u64,
    l1_entries: u64,
    reftable: u64,
    reftable_entries: u64,
    /// Offsets of the L2 tables the active L1 table points to.
    l2s: Vec<u64>,
    /// Offsets of data clusters the active L2 tables point to.
    data: Vec<u64>,
    /// Offsets of the refcount blocks.
    refblocks: Vec<u64>,
    /// Offsets of the snapshot table entries.
    snapshots: Vec<u64>,
    /// Offsets of the header extensions' 8-byte headers.
    extensions: Vec<u64>,
}

impl Layout {
    fn of(b: &[u8]) -> Layout {
        let cluster = 1u64 << be(b, 20, 4);
        let version = be(b, 4, 4);
        let header_length = if version == 2 { 72 } else { be(b, 100, 4) };
        let refcount_order = if version == 2 { 4 } else { be(b, 96, 4) as u32 };
        let (l1, l1_entries) = (be(b, 40, 8), be(b, 36, 4));
        let (reftable, reftable_entries) = (be(b, 48, 8), be(b, 56, 4) * cluster / 8);
        let mut l = Layout {
            cluster,
            header_length,
            refcount_order,
            l1,
            l1_entries,
            reftable,
            reftable_entries,
            ..Layout::default()
        };
        for i in 0..l1_entries {
            let l2 = be(b, l1 + 8 * i, 8) & 0x00ff_ffff_ffff_fe00;
            if l2 != 0 {
                l.l2s.push(l2);
                for j in 0..cluster / 8 {
                    let e = be(b, l2 + 8 * j, 8);
                    if e & (1 << 62) == 0 && e & 0x00ff_ffff_ffff_fe00 != 0 {
                        l.data.push(e & 0x00ff_ffff_ffff_fe00);
                    }
                }
            }
        }
        for i in 0..reftable_entries {
            let rb = be(b, reftable + 8 * i, 8) & !0x1ff;
            if rb != 0 {
                l.refblocks.push(rb);
            }
        }
        let mut at = be(b, 64, 8);
        for _ in 0..be(b, 60, 4) {
            at = at.next_multiple_of(8);
            l.snapshots.push(at);
            at += 40 + be(b, at + 36, 4) + be(b, at + 12, 2) + be(b, at + 14, 2);
        }
        let mut at = header_length;
        while at + 8 <= cluster && be(b, at, 4) != 0 {
            l.extensions.push(at);
            at += 8 + be(b, at + 4, 4).next_multiple_of(8);
        }
        l
    }

    /// Some cluster-aligned offset: a table, a data cluster, or past the end of the file.
    fn some_offset(&self, rng: &mut Rng, len: u64) -> u64 {
        let c = self.cluster;
        let mut from = |xs: &[u64]| if xs.is_empty() { c } else { rng.pick(xs) };
        match from(&[0, 1, 2, 3, 4, 5, 6, 7]) {
            0 => 0,
            1 => self.l1,
            2 => self.reftable,
            3 => from(&self.l2s),
            4 => from(&self.data),
            5 => from(&self.refblocks),
            6 => len.next_multiple_of(c) + c * rng.below(3),
            _ => rng.below(len.div_ceil(c) + 1) * c,
        }
    }
}

/// Header fields: name, offset, width in bytes.
const HEADER_FIELDS: [(&str, u64, usize); 18] = [
    ("version", 4, 4),
    ("backing_file_offset", 8, 8),
    ("backing_file_size", 16, 4),
    ("cluster_bits", 20, 4),
    ("size", 24, 8),
    ("crypt_method", 32, 4),
    ("l1_size", 36, 4),
    ("l1_table_offset", 40, 8),
    ("refcount_table_offset", 48, 8),
    ("refcount_table_clusters", 56, 4),
    ("nb_snapshots", 60, 4),
    ("snapshots_offset", 64, 8),
    ("incompatible_features", 72, 8),
    ("compatible_features", 80, 8),
    ("autoclear_features", 88, 8),
    ("refcount_order", 96, 4),
    ("header_length", 100, 4),
    ("compression_type", 104, 1),
];

/// Snapshot table entry fields: name, offset in the entry, width in bytes.
const SNAPSHOT_FIELDS: [(&str, u64, usize); 5] = [
    ("l1_table_offset", 0, 8),
    ("l1_size", 8, 4),
    ("id_str_size", 12, 2),
    ("name_size", 14, 2),
    ("extra_data_size", 36, 4),
];

/// Header extension types: end, backing format, feature names, crypto header, bitmaps,
/// external data file, unknown.
const EXTENSION_MAGICS: [u32; 7] =
    [0, 0xe279_2aca, 0x6803_f857, 0x0537_be77, 0x2385_2875, 0x4441_5441, 0x1234_5678];

/// Applies one mutation to `img`, a copy of the seed laid out as `layout`, and describes it
/// in `log` for the failure report.
fn mutate(img: &mut Vec<u8>, layout: &Layout, rng: &mut Rng, log: &mut String) {
    // Seeds with snapshots get their snapshot table mutated more often.
    let roll = if !layout.snapshots.is_empty() && rng.chance(20) { 82 } else { rng.below(100) };
    let f = match roll {
        0..=24 => mutate_header,
        25..=34 => mutate_extension,
        35..=44 => mutate_l1,
        45..=64 => mutate_l2,
        65..=69 => mutate_reftable,
        70..=81 => mutate_refblock,
        82..=87 => mutate_snapshot,
        88..=93 => mutate_length,
        _ => flip_bits,
    };
    f(img, layout, rng, log);
}

fn mutate_header(img: &mut Vec<u8>, layout: &Layout, rng: &mut Rng, log: &mut String) {
    let (name, at, width) = rng.pick(&HEADER_FIELDS);
    let old = be(img, at, width);
    let bits = 8 * width as u32;
    let max = if bits == 64 { u64::MAX } else { (1 << bits) - 1 };
    let value = match rng.below(12) {
        0 => 0,
        1 => rng.below(8),
        2 => old.wrapping_add(1) & max,
        3 => old.wrapping_sub(1) & max,
        4 => old.wrapping_add(8) & max,
        5 => old ^ (1 << rng.below(u64::from(bits))),
        6 => old ^ (1 << rng.below(8)),
        7 => layout.some_offset(rng, img.len() as u64) & max,
        8 => (old + layout.cluster / 2) & max,
        9 => max,
        10 => (old * 2) & max,
        _ => rng.next_u64() & max,
    };
    set_be(img, at, width, value);
    let _ = write!(log, "{name} {old:#x} -> {value:#x}; ");
}

fn mutate_extension(img: &mut Vec<u8>, layout: &Layout, rng: &mut Rng, log: &mut String) {
    let at = match (layout.extensions.is_empty(), rng.chance(50)) {
        (false, true) => rng.pick(&layout.extensions),
        _ => layout.header_length,
    };
    if at + 8 > layout.cluster {
        return;
    }
    let room = layout.cluster - at - 8;
    let ext_len = match rng.below(7) {
        0 => 0,
        1 => rng.pick(&[1, 8, 15, 16, 17, 24]),
        2 => room,
        3 => room + 1,
        4 => room.saturating_sub(7),
        5 => u64::from(u32::MAX),
        _ => rng.below(room + 64),
    };
    if rng.chance(60) {
        let magic = rng.pick(&EXTENSION_MAGICS);
        set_be(img, at, 4, magic.into());
        let _ = write!(log, "extension at {at}: magic {magic:#x}; ");
    }
    set_be(img, at + 4, 4, ext_len & 0xffff_ffff);
    let _ = write!(log, "extension at {at}: len {ext_len}; ");
}

fn mutate_l1(img: &mut Vec<u8>, layout: &Layout, rng: &mut Rng, log: &mut String) {
    if layout.l1_entries == 0 {
        return;
    }
    let index = rng.below(layout.l1_entries);
    let at = layout.l1 + 8 * index;
    let old = be(img, at, 8);
    let value = match rng.below(6) {
        0 => 0,
        1 => old ^ (1 << 63),
        2 => old | (1 << rng.pick(&[0, 1, 8, 56, 61, 62])),
        3 => {
            let offset = layout.some_offset(rng, img.len() as u64);
            (offset | (old & (1 << 63))) + rng.pick(&[0, 0, 512, 8])
        }
        4 => be(img, layout.l1 + 8 * rng.below(layout.l1_entries), 8),
        _ => old ^ (1 << rng.below(64)),
    };
    set_be(img, at, 8, value);
    let _ = write!(log, "L1[{index}] {old:#x} -> {value:#x}; ");
}

fn mutate_l2(img: &mut Vec<u8>, layout: &Layout, rng: &mut Rng, log: &mut String) {
    if layout.l2s.is_empty() {
        return;
    }
    let cluster = layout.cluster;
    let table = rng.pick(&layout.l2s);
    let entries = cluster / 8;
    // Mostly entries that map something.
    let mut index = rng.below(entries);
    for _ in 0..8 {
        if be(img, table + 8 * index, 8) != 0 || rng.chance(10) {
            break;
        }
        index = rng.below(entries);
    }
    let at = table + 8 * index;
    let old = be(img, at, 8);
    let value = match rng.below(10) {
        0 => 0,
        1 => old ^ (1 << 63),
        2 => old | 1,
        3 => old ^ (1 << 62),
        4 => old | (1 << rng.pick(&[1, 8, 56, 60, 61])),
        5 => {
            let offset = layout.some_offset(rng, img.len() as u64);
            (offset | (1 << 63)) + rng.pick(&[0, 0, 512, 8])
        }
        6 => be(img, table + 8 * rng.below(entries), 8),
        7 => {
            // A compressed descriptor somewhere in or near the file.
            let shift = 62 - (u64::from(cluster.trailing_zeros()) - 8);
            let sectors = rng.below(1 << (cluster.trailing_zeros() - 8));
            (1 << 62) | (sectors << shift) | rng.below(img.len() as u64 + cluster)
        }
        8 => rng.next_u64(),
        _ => old ^ (1 << rng.below(64)),
    };
    set_be(img, at, 8, value);
    let _ = write!(log, "L2 at {table} [{index}] {old:#x} -> {value:#x}; ");
}

fn mutate_reftable(img: &mut Vec<u8>, layout: &Layout, rng: &mut Rng, log: &mut String) {
    let index = if layout.refblocks.len() > 1 && rng.chance(50) {
        rng.below(layout.refblocks.len() as u64)
    } else {
        rng.below(layout.reftable_entries.clamp(1, 4))
    };
    let at = layout.reftable + 8 * index;
    let old = be(img, at, 8);
    let value = match rng.below(5) {
        0 => 0,
        1 => old | rng.pick(&[1, 0x100, 0x1ff]),
        2 => layout.some_offset(rng, img.len() as u64),
        3 => old + rng.pick(&[512, layout.cluster]),
        _ => old ^ (1 << rng.below(64)),
    };
    set_be(img, at, 8, value);
    let _ = write!(log, "reftable[{index}] {old:#x} -> {value:#x}; ");
}

fn mutate_refblock(img: &mut Vec<u8>, layout: &Layout, rng: &mut Rng, log: &mut String) {
    if layout.refblocks.is_empty() {
        return;
    }
    let bits = 1u64 << layout.refcount_order;
    let per_block = layout.cluster * 8 / bits;
    let block = rng.below(layout.refblocks.len() as u64);
    // In the first block, mostly the refcounts of clusters that exist.
    let in_file = img.len() as u64 / layout.cluster + 2;
    let index = rng.below(if block == 0 { in_file.min(per_block) } else { per_block });
    let max = if bits == 64 { u64::MAX } else { (1 << bits) - 1 };
    let at = layout.refblocks[usize::try_from(block).unwrap()];
    let old = get_refcount(img, at, index, layout.refcount_order);
    let value = match rng.below(5) {
        0 => 0,
        1 => old.wrapping_add(1) & max,
        2 => old.wrapping_sub(1) & max,
        3 => max,
        _ => rng.below(3) & max,
    };
    set_refcount(img, at, index, layout.refcount_order, value);
    let _ = write!(log, "refblock {block} [{index}] {old} -> {value}; ");
}

fn mutate_snapshot(img: &mut Vec<u8>, layout: &Layout, rng: &mut Rng, log: &mut String) {
    if layout.snapshots.is_empty() {
        return;
    }
    let entry = rng.pick(&layout.snapshots);
    let (name, field, width) = rng.pick(&SNAPSHOT_FIELDS);
    let old = be(img, entry + field, width);
    let value = match rng.below(6) {
        0 => 0,
        1 => old + 1,
        2 => rng.pick(&[16, 24, 1024, 1025, 0x1_0000, 0x40_0001]),
        3 => layout.some_offset(rng, img.len() as u64) + rng.pick(&[0, 512]),
        4 => old.wrapping_sub(1),
        _ => rng.next_u64(),
    };
    let bits = 8 * width as u32;
    let value = if bits == 64 { value } else { value & ((1 << bits) - 1) };
    set_be(img, entry + field, width, value);
    let _ = write!(log, "snapshot at {entry}: {name} {old:#x} -> {value:#x}; ");
}

fn mutate_length(img: &mut Vec<u8>, layout: &Layout, rng: &mut Rng, log: &mut String) {
    let (len, cluster) = (img.len() as u64, layout.cluster);
    let new = match rng.below(4) {
        0 => rng.below(len),
        1 => len - rng.below(cluster.min(len)),
        2 => len + cluster,
        _ => len.next_multiple_of(cluster) + rng.below(3) * cluster,
    };
    img.resize(usize::try_from(new).unwrap(), 0);
    let _ = write!(log, "length {len} -> {new}; ");
}

// The signature of every mutation, though this one never resizes.
#[allow(clippy::ptr_arg)]
fn flip_bits(img: &mut Vec<u8>, layout: &Layout, rng: &mut Rng, log: &mut String) {
    let len = img.len() as u64;
    for _ in 0..=rng.below(3) {
        // Half of them in the header cluster.
        let at = if rng.chance(50) { rng.below(layout.cluster.min(len)) } else { rng.below(len) };
        let bit = rng.below(8);
        img[usize::try_from(at).unwrap()] ^= 1 << bit;
        let _ = write!(log, "flip byte {at} bit {bit}; ");
    }
}

fn get_refcount(b: &[u8], block: u64, i: u64, order: u32) -> u64 {
    let bits = 1u64 << order;
    if bits < 8 {
        let per_byte = 8 / bits;
        let byte = be(b, block + i / per_byte, 1);
        (byte >> (bits * (i % per_byte))) & ((1 << bits) - 1)
    } else {
        be(b, block + i * bits / 8, (bits / 8) as usize)
    }
}

fn set_refcount(b: &mut Vec<u8>, block: u64, i: u64, order: u32, value: u64) {
    let bits = 1u64 << order;
    if bits < 8 {
        let per_byte = 8 / bits;
        let at = block + i / per_byte;
        let shift = bits * (i % per_byte);
        let mask = ((1u64 << bits) - 1) << shift;
        let byte = (be(b, at, 1) & !mask) | ((value << shift) & mask);
        set_be(b, at, 1, byte);
    } else {
        set_be(b, block + i * bits / 8, (bits / 8) as usize, value);
    }
}

/// What `qemu-img` says of the image at `path`: `None` if it accepts it, else why not.
fn qemu_verdict(path: &Utf8Path) -> Option<String> {
    let run = |args: &[&str]| {
        Command::new("timeout")
            .args(["60", "qemu-img"])
            .args(args)
            .output()
            .expect("running qemu-img under timeout")
    };
    let info = run(&["info", "-f", "qcow2", "--output=json", path.as_str()]);
    if !info.status.success() {
        return Some(format!("info: {}", String::from_utf8_lossy(&info.stderr).trim()));
    }
    let check = run(&["check", "-f", "qcow2", "--output=json", path.as_str()]);
    match check.status.code() {
        Some(0) => {
            let report: Value = serde_json::from_slice(&check.stdout).unwrap();
            for key in ["check-errors", "corruptions", "leaks"] {
                assert!(report.get(key).is_none_or(|v| v == 0), "exit 0 with {key}: {report}");
            }
            None
        }
        code => {
            let report: Value = serde_json::from_slice(&check.stdout).unwrap_or(Value::Null);
            let counts: Vec<String> = ["check-errors", "corruptions", "leaks"]
                .iter()
                .filter_map(|k| report.get(*k).map(|v| format!("{k} {v}")))
                .collect();
            Some(format!(
                "check exit {code:?} ({}): {}",
                counts.join(", "),
                String::from_utf8_lossy(&check.stderr).lines().next().unwrap_or("")
            ))
        }
    }
}

/// Whether our checker refuses the image for a reason we refuse deliberately although QEMU
/// accepts it (see the module documentation).
fn deliberate(e: &Error) -> bool {
    let Some(v) = e.qcow2_violation() else {
        // Reading past the end of the file where QEMU reads zeros.
        return matches!(e, Error::Read { source, .. }
            if source.kind() == std::io::ErrorKind::UnexpectedEof);
    };
    matches!(
        v,
        Violation::HeaderLengthUnaligned { .. }
            | Violation::Dirty
            | Violation::MarkedCorrupt
            | Violation::UnsupportedFeature { .. }
            | Violation::BackingFile { .. }
            | Violation::Encrypted { method: 1 | 2 }
            | Violation::UnsupportedExtension { name: "bitmaps" | "external data file name", .. }
            | Violation::OutsideFile { .. }
            | Violation::BeyondVirtualSize { .. }
            | Violation::TooManyClusters { .. }
            | Violation::WalkTooLarge { .. }
    )
}

fn seeds(dir: &Utf8Path) -> Vec<(String, Vec<u8>)> {
    let pattern = Pattern::new(
        16 * MIB,
        vec![0..3 * MIB / 2, 2 * MIB + 100..2 * MIB + 101, 9 * MIB..9 * MIB + 200_000],
    );
    let raw = write_raw(dir, &pattern);
    let mut seeds = Vec::new();
    for compress in [false, true] {
        let (out, _) = write_qcow2(
            FileSource::open(&raw).unwrap(),
            Vec::new(),
            &Qcow2Options::new(compress),
            &NoProgress,
        )
        .unwrap();
        seeds.push((format!("xspack compress={compress}"), out));
    }
    let qemu = |name: &str, setup: &dyn Fn(&Utf8Path)| {
        let path = dir.join(format!("{}.qcow2", seeds_name(name)));
        setup(&path);
        (name.to_owned(), fs::read(&path).unwrap())
    };
    let convert = |opts: &'static [&'static str]| {
        let raw = raw.clone();
        move |out: &Utf8Path| {
            let mut args = vec!["convert", "-f", "raw", "-O", "qcow2"];
            args.extend_from_slice(opts);
            args.extend([raw.as_str(), out.as_str()]);
            tool_ok("qemu-img", &args);
        }
    };
    seeds.push(qemu("qemu-img convert", &convert(&[])));
    seeds.push(qemu("qemu-img convert -c", &convert(&["-c"])));
    seeds.push(qemu("qemu-img convert compat=0.10", &convert(&["-o", "compat=0.10"])));
    seeds.push(qemu(
        "qemu-img convert 4 KiB clusters, 8-bit refcounts",
        &convert(&["-o", "cluster_size=4096,refcount_bits=8"]),
    ));
    seeds.push(qemu(
        "qemu-img convert 512 B clusters, 1-bit refcounts",
        &convert(&["-o", "cluster_size=512,refcount_bits=1"]),
    ));
    seeds.push(qemu("qemu-img convert 64-bit refcounts", &convert(&["-o", "refcount_bits=64"])));
    seeds.push(qemu("qemu-io zero and discarded clusters", &|out| {
        tool_ok(
            "qemu-img",
            &["create", "-f", "qcow2", "-o", "preallocation=metadata", out.as_str(), "8M"],
        );
        for cmd in [
            "write -P 0x5a 0 192k",
            "write -z 64k 64k",
            "write -z -u 1M 128k",
            "discard 2M 64k",
            "write -P 0x11 4M 4k",
            "write -z 5M 64k",
        ] {
            tool_ok("qemu-io", &["-f", "qcow2", "-c", cmd, out.as_str()]);
        }
    }));
    seeds.push(qemu("qemu-img snapshot twice", &|out| {
        convert(&[])(out);
        tool_ok("qemu-img", &["snapshot", "-c", "first", out.as_str()]);
        tool_ok("qemu-io", &["-f", "qcow2", "-c", "write -P 0x77 64k 8k", out.as_str()]);
        tool_ok("qemu-img", &["snapshot", "-c", "second", out.as_str()]);
        tool_ok("qemu-io", &["-f", "qcow2", "-c", "write -P 0x78 9M 64k", out.as_str()]);
    }));
    seeds
}

fn seeds_name(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

#[test]
fn qcow2_checker_refuses_whatever_qemu_img_refuses() {
    tool("qemu-img", &["--version"]);
    tool("timeout", &["--version"]);
    let cases: u64 =
        std::env::var("XSPACK_QCOW2_DIFF_CASES").map_or(300, |v| v.parse().expect("a number"));
    let seed: u64 = std::env::var("XSPACK_QCOW2_DIFF_SEED")
        .map_or(0x5eed_0f9c_02d1, |v| v.parse().expect("a number"));
    let (_tmp, dir) = tempdir();
    let seeds = seeds(&dir);
    for (name, bytes) in &seeds {
        let path = dir.join("seed.qcow2");
        fs::write(&path, bytes).unwrap();
        assert_eq!(qemu_verdict(&path), None, "seed {name} is not clean for qemu-img");
        check_qcow2(Cursor::new(bytes)).unwrap_or_else(|e| panic!("seed {name}: {e}"));
    }
    let layouts: Vec<Layout> = seeds.iter().map(|(_, b)| Layout::of(b)).collect();

    let mut rng = Rng(seed | 1);
    let path: Utf8PathBuf = dir.join("mutant.qcow2");
    let (mut both_accept, mut both_refuse, mut ours_only) = (0, 0, 0);
    let mut failures = Vec::new();
    for case in 0..cases {
        let k = (case % seeds.len() as u64) as usize;
        let (name, seed_bytes) = &seeds[k];
        let mut b = seed_bytes.clone();
        let mut log = String::new();
        let n = if rng.chance(25) { 2 + rng.below(2) } else { 1 };
        for _ in 0..n {
            mutate(&mut b, &layouts[k], &mut rng, &mut log);
        }
        if b == *seed_bytes {
            continue;
        }
        fs::write(&path, &b).unwrap();
        let qemu = qemu_verdict(&path);
        let ours = check_qcow2(Cursor::new(&b));
        match (&qemu, &ours) {
            (None, Ok(_)) => both_accept += 1,
            (Some(_), Err(_)) => both_refuse += 1,
            (Some(why), Ok(_)) => failures.push(format!(
                "case {case} ({name}; {log}): qemu-img refuses ({why}) but ours accepts"
            )),
            (None, Err(e)) if deliberate(e) => ours_only += 1,
            (None, Err(e)) => failures.push(format!(
                "case {case} ({name}; {log}): ours refuses ({e}) what qemu-img accepts"
            )),
        }
    }
    eprintln!(
        "qcow2 differential: {cases} cases, {both_accept} accepted by both, {both_refuse} \
         refused by both, {ours_only} refused by ours only (deliberately), {} disagreements",
        failures.len()
    );
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
    assert!(both_accept > 0 && both_refuse > 0, "the mutations found nothing to tell apart");
}

/// What the refusal of an image must be.
type Expect = fn(&Violation) -> bool;

#[test]
fn images_refused_deliberately_are_ones_qemu_img_accepts() {
    let (_tmp, dir) = tempdir();
    let create = |name: &str, opts: &str| {
        let path = dir.join(name);
        let mut args = vec!["create", "-f", "qcow2"];
        if !opts.is_empty() {
            args.extend(["-o", opts]);
        }
        args.extend([path.as_str(), "16M"]);
        tool_ok("qemu-img", &args);
        path
    };
    let base = create("base.qcow2", "");
    let data_file = dir.join("data.raw");
    let cases: Vec<(Utf8PathBuf, Expect)> = vec![
        (create("backing.qcow2", &format!("backing_file={base},backing_fmt=qcow2")), |v| {
            matches!(v, Violation::BackingFile { .. })
        }),
        (create("extl2.qcow2", "extended_l2=on"), |v| {
            matches!(v, Violation::UnsupportedFeature { bit: 4, .. })
        }),
        (create("zstd.qcow2", "compression_type=zstd"), |v| {
            matches!(v, Violation::UnsupportedFeature { bit: 3, .. })
        }),
        (create("datafile.qcow2", &format!("data_file={data_file}")), |v| {
            matches!(v, Violation::UnsupportedFeature { bit: 2, .. })
        }),
        (
            {
                let path = create("bitmaps.qcow2", "");
                tool_ok("qemu-img", &["bitmap", "--add", path.as_str(), "b0"]);
                path
            },
            |v| matches!(v, Violation::UnsupportedExtension { name: "bitmaps", .. }),
        ),
    ];
    for (path, want) in cases {
        assert_eq!(qemu_verdict(&path), None, "{path} is not clean for qemu-img");
        let err = check_qcow2(Cursor::new(fs::read(&path).unwrap())).unwrap_err();
        assert!(err.qcow2_violation().is_some_and(want), "{path}: {err}");
        assert!(deliberate(&err), "{path}: {err}");
    }
}
