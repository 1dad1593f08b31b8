//! Unit tests of the qcow2 check: written images pass, and each QEMU rule has its violation.

use std::io::Cursor;

use super::header::{EXT_BACKING_FORMAT, EXT_BITMAPS};
use super::refcount::{L1E_OFFSET_MASK, L2E_OFFSET_MASK, stored_refcount};
use super::*;
use crate::bytes::{get_u64, put_u32, put_u64};
use crate::qcow2::{OFLAG_COMPRESSED, OFLAG_COPIED};
use crate::{SeekSource, qcow2::Qcow2Options, qcow2::write_qcow2};

fn image(compress: bool) -> Vec<u8> {
    let mut raw = vec![0u8; 4 << 20];
    raw[70_000..80_000].fill(0x5a);
    raw[3 << 20] = 1;
    let size = raw.len() as u64;
    let (out, _) = write_qcow2(
        SeekSource::new(Cursor::new(raw), size),
        Vec::new(),
        &Qcow2Options::new(compress),
        &xspack_io::NoProgress,
    )
    .unwrap();
    out
}

fn check(b: Vec<u8>) -> Result<Qcow2Info, Error> {
    check_qcow2(Cursor::new(b))
}

fn violation(b: Vec<u8>) -> Violation {
    match check(b) {
        Err(Error::Qcow2(v)) => v,
        other => panic!("not a violation: {other:?}"),
    }
}

#[test]
fn written_images_check() {
    for compress in [false, true] {
        let info = check(image(compress)).unwrap();
        assert_eq!(info.virtual_size, 4 << 20);
        // Data in cluster 1 (bytes 70 000..80 000) and cluster 48 (byte 3 MiB).
        assert_eq!(info.allocated_clusters, 2, "{info:?}");
        assert_eq!(info.compressed_clusters > 0, compress);
    }
}

/// Damage done to a good image.
type Damage = fn(&mut Vec<u8>);

#[test]
fn broken_headers_and_tables_are_refused() {
    let good = image(false);
    let cases: [(&str, Damage); 10] = [
        ("shorter than a qcow2 header", |b| b.truncate(40)),
        ("bad magic", |b| b[0] = b'X'),
        ("version 7", |b| b[7] = 7),
        ("backing file", |b| b[15] = 1),
        ("cluster_bits 40", |b| b[23] = 40),
        ("cannot map the virtual size", |b| b[24] = 0x10),
        ("L1 table at offset", |b| b[41] = 0x7f),
        ("refcount table at offset", |b| b[49] = 0x7f),
        ("marked dirty", |b| b[79] = 1),
        ("lies beyond the end", |b| {
            let n = b.len();
            b.truncate(n - 65_536);
        }),
    ];
    for (want, damage) in cases {
        let mut b = good.clone();
        damage(&mut b);
        let err = check(b).unwrap_err().to_string();
        assert!(err.contains(want), "want {want:?}: {err}");
    }
}

/// Offsets in the image of [`image`] (64 KiB clusters): header, L1, refcount table,
/// refcount block, one L2 table, data.
const L1: usize = 0x1_0000;
const REFTABLE: usize = 0x2_0000;
const REFBLOCK: usize = 0x3_0000;
const L2: usize = 0x4_0000;

#[test]
fn the_layout_is_what_the_tests_assume() {
    let b = image(false);
    assert_eq!(get_u64(&b, 40), L1 as u64);
    assert_eq!(get_u64(&b, 48), REFTABLE as u64);
    assert_eq!(get_u64(&b, REFTABLE), REFBLOCK as u64);
    assert_eq!(get_u64(&b, L1) & L1E_OFFSET_MASK, L2 as u64);
}

/// An edit of the good image.
type Edit = Box<dyn Fn(&mut Vec<u8>)>;

#[test]
#[allow(clippy::too_many_lines)]
fn each_qemu_rule_has_its_violation() {
    let good = image(false);
    let edit = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        violation(b)
    };
    let data_entry = L2 + 8; // guest cluster 1
    let d = get_u64(&good, data_entry);
    let cases: Vec<(Violation, Edit)> = vec![
        (
            Violation::HeaderLength { length: 96, min: 104, max: 65_536 },
            Box::new(|b| put_u32(b, 100, 96)),
        ),
        (Violation::HeaderLengthUnaligned { length: 108 }, Box::new(|b| put_u32(b, 100, 108))),
        (Violation::MarkedCorrupt, Box::new(|b| put_u64(b, 72, 2))),
        (
            Violation::UnsupportedFeature { name: "extended L2 entries", bit: 4 },
            Box::new(|b| put_u64(b, 72, 16)),
        ),
        (Violation::UnknownFeatures { bits: 1 << 40 }, Box::new(|b| put_u64(b, 72, 1 << 40))),
        (
            Violation::CompressionType { value: 1 },
            Box::new(|b| {
                put_u32(b, 100, 112);
                b[104] = 1;
            }),
        ),
        (Violation::DataFileRaw, Box::new(|b| put_u64(b, 88, 2))),
        (Violation::RefcountOrder { order: 7, max: 6 }, Box::new(|b| put_u32(b, 96, 7))),
        (Violation::Encrypted { method: 3 }, Box::new(|b| put_u32(b, 32, 3))),
        (Violation::NoRefcountTable, Box::new(|b| put_u32(b, 56, 0))),
        (
            Violation::TableTooLarge { place: Place::RefcountTable, size: 129 << 16, max: 8 << 20 },
            Box::new(|b| put_u32(b, 56, 129)),
        ),
        (
            Violation::TooManySnapshots { count: 65_537, max: 65_536 },
            Box::new(|b| put_u32(b, 60, 65_537)),
        ),
        (
            Violation::Unaligned { place: Place::SnapshotTable, offset: 8 },
            Box::new(|b| put_u64(b, 64, 8)),
        ),
        (
            Violation::TableTooLarge {
                place: Place::L1Table,
                size: (4 << 20) * 8 + 8,
                max: 32 << 20,
            },
            Box::new(|b| put_u32(b, 36, (4 << 20) + 1)),
        ),
        (
            Violation::Unaligned { place: Place::L1Table, offset: L1 as u64 + 512 },
            Box::new(|b| put_u64(b, 40, L1 as u64 + 512)),
        ),
        (
            Violation::ExtensionTooLarge { magic: 0x1234, offset: 104, len: 65_425, end: 65_536 },
            Box::new(|b| {
                put_u32(b, 104, 0x1234);
                put_u32(b, 108, 65_425);
            }),
        ),
        (
            Violation::BackingFormatTooLong { len: 16, max: 16 },
            Box::new(|b| {
                put_u32(b, 104, EXT_BACKING_FORMAT);
                put_u32(b, 108, 16);
            }),
        ),
        (
            Violation::UnsupportedExtension { name: "bitmaps", magic: EXT_BITMAPS },
            Box::new(|b| {
                // After a skipped unknown extension of 3 bytes (padded to 8).
                put_u32(b, 104, 0x1234);
                put_u32(b, 108, 3);
                put_u32(b, 120, EXT_BITMAPS);
                put_u32(b, 124, 24);
            }),
        ),
        (
            Violation::ReservedBits {
                place: Place::L2Table { snapshot: None, l1_index: 0 },
                entry: OFLAG_COPIED | L2 as u64 | 1,
            },
            Box::new(|b| put_u64(b, L1, OFLAG_COPIED | L2 as u64 | 1)),
        ),
        (
            Violation::ReservedBits {
                place: Place::Data { snapshot: None, guest_offset: 65_536 },
                entry: get_u64(&good, data_entry) | 1 << 56,
            },
            Box::new(move |b| put_u64(b, data_entry, d | 1 << 56)),
        ),
        (
            Violation::CompressedCopied {
                place: Place::Compressed { snapshot: None, guest_offset: 65_536 },
                entry: OFLAG_COPIED | OFLAG_COMPRESSED | 0x50_0000,
            },
            Box::new(move |b| put_u64(b, data_entry, OFLAG_COPIED | OFLAG_COMPRESSED | 0x50_0000)),
        ),
        (
            Violation::Unaligned {
                place: Place::Data { snapshot: None, guest_offset: 65_536 },
                offset: get_u64(&good, data_entry) & L2E_OFFSET_MASK | 0x200,
            },
            Box::new(move |b| put_u64(b, data_entry, d | 0x200)),
        ),
        (
            Violation::ReservedBits {
                place: Place::RefcountBlock { index: 0 },
                entry: REFBLOCK as u64 | 1,
            },
            Box::new(|b| put_u64(b, REFTABLE, REFBLOCK as u64 | 1)),
        ),
        (
            // Cluster 5 (the first data cluster) counted twice: once by guest cluster 1,
            // once by guest cluster 2 now mapping it too.
            Violation::RefcountTooLow {
                cluster: 5,
                offset: 5 << 16,
                stored: 1,
                referenced: 2,
                count: 1,
            },
            Box::new(move |b| put_u64(b, data_entry + 8, d)),
        ),
        (
            Violation::Leaked { cluster: 5, offset: 5 << 16, stored: 1, referenced: 0, count: 1 },
            Box::new(move |b| put_u64(b, data_entry, 0)),
        ),
        (
            Violation::CopiedFlag {
                place: Place::Data { snapshot: None, guest_offset: 65_536 },
                copied: false,
                refcount: 1,
            },
            Box::new(move |b| put_u64(b, data_entry, d & !OFLAG_COPIED)),
        ),
        (
            Violation::RefblockShared {
                place: Place::RefcountBlock { index: 0 },
                offset: L2 as u64,
                references: 2,
            },
            Box::new(|b| put_u64(b, REFTABLE, L2 as u64)),
        ),
    ];
    for (want, damage) in cases {
        assert_eq!(edit(&*damage), want);
    }
}

#[test]
fn snapshot_rules() {
    // A snapshot table in a new cluster at the end, pointing at the active L1 table.
    let mut b = image(false);
    let table = b.len();
    b.resize(table + 65_536, 0);
    put_u32(&mut b, 60, 1);
    put_u64(&mut b, 64, table as u64);
    put_u64(&mut b, table, L1 as u64);
    put_u32(&mut b, table + 8, 1);
    put_u32(&mut b, table + 36, 1025);
    assert_eq!(
        violation(b.clone()),
        Violation::SnapshotExtraData { index: 0, size: 1025, max: 1024 }
    );
    put_u32(&mut b, table + 36, 8);
    assert_eq!(violation(b.clone()), Violation::SnapshotIncomplete { index: 0, size: 8, min: 16 });
    put_u32(&mut b, table + 36, 16);
    put_u64(&mut b, table, L1 as u64 + 512);
    let place = Place::SnapshotL1 { snapshot: 0 };
    assert_eq!(violation(b.clone()), Violation::Unaligned { place, offset: L1 as u64 + 512 });
    put_u64(&mut b, table, L1 as u64);
    // Now the L1 table, L2 table and data are shared and the snapshot table is new, but
    // their refcounts were not raised.
    assert!(matches!(violation(b), Violation::RefcountTooLow { cluster: 1, .. }));
}

/// A file of `len` bytes holding `data` and then zeros, never in memory.
struct Sparse {
    data: Vec<u8>,
    len: u64,
    pos: u64,
}

impl Read for Sparse {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = usize::try_from((buf.len() as u64).min(self.len.saturating_sub(self.pos))).unwrap();
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let at = usize::try_from(self.pos).unwrap() + i;
            *b = self.data.get(at).copied().unwrap_or(0);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Sparse {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.pos = match pos {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => self.len.checked_add_signed(d).unwrap(),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).unwrap(),
        };
        Ok(self.pos)
    }
}

#[test]
fn memory_is_bounded_by_the_file_length_and_refused_past_it() {
    // A good image followed by 4 TiB (2^26 clusters of 64 KiB) of nothing.
    let data = image(false);
    let clusters = (1 << 26) + data.len() as u64 / 65_536;
    let len = clusters * 65_536;
    let err = check_qcow2(Sparse { data, len, pos: 0 }).unwrap_err();
    let want = Violation::TooManyClusters { clusters, max: MAX_CHECKED_CLUSTERS };
    assert_eq!(err.qcow2_violation(), Some(&want));
    assert!(err.to_string().contains("stops at 67108864 clusters"), "{err}");
}

#[test]
fn time_is_bounded_by_the_tables_walked() {
    // Eight snapshots share the active L1 table, so its L2 table is walked nine times:
    // more than four tables' worth.
    let mut b = image(false);
    let table = b.len();
    b.resize(table + 65_536, 0);
    put_u32(&mut b, 60, 8);
    put_u64(&mut b, 64, table as u64);
    for i in 0..8 {
        // 40 bytes, then 16 of extra data.
        let entry = table + 56 * i;
        put_u64(&mut b, entry, L1 as u64);
        put_u32(&mut b, entry + 8, 1);
        put_u32(&mut b, entry + 36, 16);
    }
    let err = check_with_limits(Cursor::new(b), MAX_CHECKED_CLUSTERS, 4 << 16).unwrap_err();
    assert_eq!(err.qcow2_violation(), Some(&Violation::WalkTooLarge { max: 4 << 16 }));
}

#[test]
fn narrow_refcounts_decode_low_bits_first() {
    let block = [0b1110_0100u8, 0xab, 0xcd];
    assert_eq!((0..4).map(|i| stored_refcount(&block, i, 1)).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(stored_refcount(&block, 1, 0), 0);
    assert_eq!(stored_refcount(&block, 2, 0), 1);
    assert_eq!(stored_refcount(&block, 3, 2), 0xa);
    assert_eq!(stored_refcount(&block, 1, 3), 0xab);
    assert_eq!(stored_refcount(&block, 0, 4), 0xe4ab);
}
