//! Checking a qcow2 image as hostile input, by the rules of the real consumer: whatever
//! `qemu-img info` cannot open, and whatever `qemu-img check` reports as corruption or as leaked
//! clusters, is refused here too, with a [`Violation`] naming the field and the limit.
//!
//! # What QEMU refuses, and where
//!
//! Opening (`qemu-img info`; `qemu/qemu:block/qcow2.c`, `qcow2_do_open` unless said otherwise):
//!
//! - magic not `QFI\xfb`; version not 2 or 3; `cluster_bits` outside 9..=21;
//! - version 3: `header_length` below 104 or, any version, above the cluster size;
//! - `backing_file_offset` past the first cluster, a backing file name over 1023 bytes or
//!   running past the cluster;
//! - a compression type other than zlib without incompatible bit 3, or zlib with it
//!   (`validate_compression_type`);
//! - incompatible feature bits outside dirty, corrupt, data file, compression type and extended
//!   L2 ("Unsupported qcow2 feature(s)"); the corrupt bit when opening writable;
//! - `refcount_order` above 6; an encryption method other than none, AES and LUKS
//!   (`qcow2_update_options_prepare`);
//! - `refcount_table_clusters` zero (except in check mode), a refcount table over
//!   `QCOW_MAX_REFTABLE_SIZE` (8 MiB) or not cluster-aligned (`qcow2_validate_table`);
//! - over `QCOW_MAX_SNAPSHOTS` (65536) snapshots, or a snapshot table offset not cluster-aligned
//!   even with no snapshots (`qcow2_validate_table`; in check mode the same from
//!   `qcow2_check_read_snapshot_table`, counted as a check error);
//! - an L1 table over `QCOW_MAX_L1_SIZE` (32 MiB) or not cluster-aligned, even when empty; a
//!   virtual size needing more than `INT_MAX` L1 entries; an L1 table with fewer entries than
//!   the virtual size needs;
//! - the data-file-raw autoclear bit without an external data file;
//! - header extensions (`qcow2_read_extensions`, from `header_length` to the end of the first
//!   cluster, or to the backing file name): one whose data runs past that end; a backing
//!   format name of 16 bytes or more; a crypto header without LUKS, or of the wrong size; a
//!   bitmaps extension of the wrong size, with reserved bits, zero or over 65535 bitmaps, a
//!   misaligned or over-large directory;
//! - a snapshot with over `QCOW_MAX_SNAPSHOT_EXTRA_DATA` (1024) bytes of extra data, a snapshot
//!   table over `QCOW_MAX_SNAPSHOTS_SIZE` (64 MiB) (`qcow2_do_read_snapshots`).
//!
//! Checking (`qemu-img check`; `qemu/qemu:block/qcow2-refcount.c`): every reference is counted
//! in memory (`calculate_refcounts`) from the header cluster, the active L1 table and its L2
//! tables, every snapshot's L1 and L2 tables, the snapshot table, the refcount table and the
//! refcount blocks, then compared with the stored refcounts. Corruption is:
//!
//! - an L1 entry with reserved bits (`L1E_RESERVED_MASK`), an L2 table not cluster-aligned
//!   (`check_refcounts_l1`);
//! - a standard L2 entry with reserved bits (`L2E_STD_RESERVED_MASK`), a compressed one with
//!   the copied flag, a data cluster not cluster-aligned (`check_refcounts_l2`);
//! - a snapshot L1 table not cluster-aligned or over 32 MiB (`calculate_refcounts`); a version
//!   3 snapshot with less than 16 bytes of extra data (`qcow2_check_read_snapshot_table`,
//!   `block/qcow2-snapshot.c`);
//! - anything referenced a cluster or more past the end of the file, a refcount overflow
//!   (`qcow2_inc_refcounts_imrt`);
//! - a refcount table entry with reserved bits, a refcount block not cluster-aligned, outside
//!   the file, or referenced by anything else (`check_refblocks`);
//! - a stored refcount below the references counted; a stored refcount above them is a leak
//!   (`compare_refcounts`);
//! - an active L1 or L2 entry whose copied flag is not set exactly when the refcount is 1
//!   (`check_oflag_copied`).
//!
//! # What we refuse that QEMU accepts (deliberately)
//!
//! - leaked clusters (`qemu-img check` exits 3 for those; xspack never writes leaks);
//! - a backing file, encryption, an external data file, extended L2 entries, zstd compression,
//!   persistent bitmaps: self-contained images only, and formats this crate does not read;
//! - the dirty and corrupt bits;
//! - `header_length` not a multiple of 8 (the specification requires it);
//! - anything sticking out of the file, where QEMU tolerates less than a cluster;
//! - active guest data mapped past the virtual size (QEMU keeps VM state there);
//! - files of more than [`MAX_CHECKED_CLUSTERS`] clusters and tables adding up to more than
//!   [`MAX_WALK_BYTES`]: the bounds on memory and time of this check.
//!
//! Nothing is allocated in proportion to a size the file merely declares: every table is
//! bounded by QEMU's limit and by the file's real length before it is read, and the refcount
//! cross-check holds one byte per cluster of the file (counts of 255 and up go to a map).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use camino::Utf8Path;
use serde::Serialize;

use super::violation::{Place, Violation};
use super::{MAGIC, OFLAG_COMPRESSED, OFLAG_COPIED};
use crate::Error;
use crate::bytes::{get_u16, get_u32, get_u64};
use crate::read_exact_at;

/// Header length of version 2, fixed (qcow2.txt).
const V2_HEADER_LENGTH: u32 = 72;
/// Smallest header length of version 3 (qcow2.txt; `qcow2_do_open`).
const V3_HEADER_LENGTH: u32 = 104;
/// Bytes of the header QEMU reads: `QCowHeader`, with the compression type and padding.
const HEADER_READ: usize = 112;
/// Smallest and largest `cluster_bits` (`MIN_CLUSTER_BITS`, `MAX_CLUSTER_BITS` in qcow2.h).
const MIN_CLUSTER_BITS: u32 = 9;
const MAX_CLUSTER_BITS: u32 = 21;
/// Largest `refcount_order`: 64-bit refcounts (`qcow2_do_open`).
const MAX_REFCOUNT_ORDER: u32 = 6;
/// `QCOW_MAX_L1_SIZE`: 32 MiB of L1 table.
const MAX_L1_BYTES: u64 = 32 << 20;
/// `QCOW_MAX_REFTABLE_SIZE`: 8 MiB of refcount table.
const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// `QCOW_MAX_SNAPSHOTS`.
const MAX_SNAPSHOTS: u32 = 65_536;
/// `QCOW_MAX_SNAPSHOTS_SIZE`: an average of 1 KiB per snapshot.
const MAX_SNAPSHOTS_BYTES: u64 = 1024 * 65_536;
/// `QCOW_MAX_SNAPSHOT_EXTRA_DATA`.
const MAX_SNAPSHOT_EXTRA: u32 = 1024;
/// Extra data every version 3 snapshot has: the large VM state size and the disk size
/// (`QCowSnapshotExtraData`; `qcow2_check_read_snapshot_table`).
const MIN_SNAPSHOT_EXTRA_V3: u32 = 16;
/// The fixed part of a snapshot table entry (`QCowSnapshotHeader`).
const SNAPSHOT_HEADER: u64 = 40;
const SNAPSHOT_HEADER_BYTES: usize = 40;
/// `sizeof(bs->backing_format)`: a backing format name must be shorter.
const BACKING_FORMAT_MAX: u32 = 16;

/// L1 entry: bits 9..55 are the L2 table offset, bit 63 the copied flag, the rest reserved
/// (`L1E_OFFSET_MASK`, `L1E_RESERVED_MASK`).
const L1E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L1E_RESERVED_MASK: u64 = 0x7f00_0000_0000_01ff;
/// Standard L2 entry: bits 9..55 the offset, bit 0 the zero flag, 62 compressed, 63 copied,
/// the rest reserved (`L2E_OFFSET_MASK`, `L2E_STD_RESERVED_MASK`).
const L2E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2E_STD_RESERVED_MASK: u64 = 0x3f00_0000_0000_01fe;
/// Refcount table entry: the block offset above bit 9, reserved below (`REFT_OFFSET_MASK`,
/// `REFT_RESERVED_MASK`).
const REFT_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;
const REFT_RESERVED_MASK: u64 = 0x1ff;
/// L2 entry flag: the cluster reads as zeros (`QCOW_OFLAG_ZERO`).
const OFLAG_ZERO: u64 = 1;

/// Incompatible feature bits (qcow2.txt; `QCOW2_INCOMPAT_*` in qcow2.h).
const INCOMPAT_DIRTY: u64 = 1;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_KNOWN: [(u32, &str); 3] =
    [(2, "external data file"), (3, "compression type"), (4, "extended L2 entries")];
const INCOMPAT_MASK: u64 = 0x1f;
/// Autoclear bit 1: the external data file is raw (`QCOW2_AUTOCLEAR_DATA_FILE_RAW`).
const AUTOCLEAR_DATA_FILE_RAW: u64 = 1 << 1;

/// Header extension types (`QCOW2_EXT_MAGIC_*` in qcow2.c).
const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_CRYPTO_HEADER: u32 = 0x0537_be77;
const EXT_BITMAPS: u32 = 0x2385_2875;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// The refcount cross-check holds one byte per cluster of the file; it refuses files with more
/// clusters than this (64 Mi: 64 MiB of counts, a 4 TiB file of 64 KiB clusters).
pub const MAX_CHECKED_CLUSTERS: u64 = 1 << 26;
/// The check reads at most this many bytes of L1 and L2 tables, counting a table shared by
/// several snapshots once per reference (4 GiB: the L2 tables of 32 TiB of guest data at 64
/// KiB clusters).
pub const MAX_WALK_BYTES: u64 = 1 << 32;
/// L1 tables are read in pieces of this size.
const L1_CHUNK: u64 = 64 << 10;

/// What a checked qcow2 image holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Qcow2Info {
    /// Format version (2 or 3).
    pub version: u32,
    /// Virtual disk size in bytes.
    pub virtual_size: u64,
    /// Cluster size in bytes.
    pub cluster_size: u64,
    /// Entries of the L1 table.
    pub l1_entries: u32,
    /// Data clusters mapped by the active L2 tables (zero clusters not counted).
    pub allocated_clusters: u64,
    /// Of these, clusters stored compressed.
    pub compressed_clusters: u64,
    /// Internal snapshots.
    pub snapshots: u32,
    /// Length of the file.
    pub file_size: u64,
}

/// The header fields the checks use.
#[derive(Debug)]
struct Header {
    version: u32,
    cluster_bits: u32,
    virtual_size: u64,
    l1_entries: u32,
    l1_offset: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u32,
    nb_snapshots: u32,
    snapshots_offset: u64,
    refcount_order: u32,
    /// `header_length`: where the header extensions start.
    length: u32,
}

impl Header {
    fn cluster(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// L1 entries the virtual size needs: each maps a cluster of 8-byte L2 entries.
    fn l1_needed(&self) -> u64 {
        self.virtual_size.div_ceil((self.cluster() / 8) * self.cluster())
    }
}

/// Checks the header's fields on their own. `h` holds the first bytes of the file (at least
/// [`HEADER_READ`]), zero-padded past its end as QEMU reads them.
fn parse_header(h: &[u8], file_size: u64) -> Result<Header, Violation> {
    if file_size < u64::from(V2_HEADER_LENGTH) {
        return Err(Violation::TooShort { len: file_size, need: V2_HEADER_LENGTH.into() });
    }
    if h[..4] != MAGIC {
        return Err(Violation::Magic);
    }
    let version = get_u32(h, 4);
    if version != 2 && version != 3 {
        return Err(Violation::Version { version });
    }
    let cluster_bits = get_u32(h, 20);
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
        return Err(Violation::ClusterBits {
            bits: cluster_bits,
            min: MIN_CLUSTER_BITS,
            max: MAX_CLUSTER_BITS,
        });
    }
    let cluster = 1u64 << cluster_bits;
    // Version 2 has none of the fields from byte 72 on: QEMU takes them as zero features,
    // 16-bit refcounts and a 72-byte header, and header extensions may start at byte 72.
    let (mut incompatible, mut autoclear, mut refcount_order, mut header_length) =
        (0, 0, 4, V2_HEADER_LENGTH);
    if version == 3 {
        if file_size < u64::from(V3_HEADER_LENGTH) {
            return Err(Violation::TooShort { len: file_size, need: V3_HEADER_LENGTH.into() });
        }
        incompatible = get_u64(h, 72);
        autoclear = get_u64(h, 88);
        refcount_order = get_u32(h, 96);
        header_length = get_u32(h, 100);
        if header_length < V3_HEADER_LENGTH || u64::from(header_length) > cluster {
            return Err(Violation::HeaderLength {
                length: header_length,
                min: V3_HEADER_LENGTH,
                max: cluster,
            });
        }
        if !header_length.is_multiple_of(8) {
            return Err(Violation::HeaderLengthUnaligned { length: header_length });
        }
    }
    let backing_file_offset = get_u64(h, 8);
    if backing_file_offset != 0 {
        return Err(Violation::BackingFile { offset: backing_file_offset });
    }
    // Byte 104, present when the header is longer than 104 bytes: 0 is zlib, and any other
    // type needs incompatible bit 3, which is refused below.
    if header_length > V3_HEADER_LENGTH && incompatible & (1 << 3) == 0 && h[104] != 0 {
        return Err(Violation::CompressionType { value: h[104] });
    }
    let unknown = incompatible & !INCOMPAT_MASK;
    if unknown != 0 {
        return Err(Violation::UnknownFeatures { bits: unknown });
    }
    if incompatible & INCOMPAT_DIRTY != 0 {
        return Err(Violation::Dirty);
    }
    if incompatible & INCOMPAT_CORRUPT != 0 {
        return Err(Violation::MarkedCorrupt);
    }
    if let Some(&(bit, name)) =
        INCOMPAT_KNOWN.iter().find(|(bit, _)| incompatible & (1 << bit) != 0)
    {
        return Err(Violation::UnsupportedFeature { name, bit });
    }
    if refcount_order > MAX_REFCOUNT_ORDER {
        return Err(Violation::RefcountOrder { order: refcount_order, max: MAX_REFCOUNT_ORDER });
    }
    let method = get_u32(h, 32);
    if method != 0 {
        return Err(Violation::Encrypted { method });
    }
    if autoclear & AUTOCLEAR_DATA_FILE_RAW != 0 {
        return Err(Violation::DataFileRaw);
    }
    Ok(Header {
        version,
        cluster_bits,
        virtual_size: get_u64(h, 24),
        l1_entries: get_u32(h, 36),
        l1_offset: get_u64(h, 40),
        refcount_table_offset: get_u64(h, 48),
        refcount_table_clusters: get_u32(h, 56),
        nb_snapshots: get_u32(h, 60),
        snapshots_offset: get_u64(h, 64),
        refcount_order,
        length: header_length,
    })
}

/// Walks the header extensions from `start` to the end of the header cluster `area` (zero
/// past the end of the file, which reads as the end marker), as `qcow2_read_extensions` does.
/// `start` and every extension offset are multiples of 8, so each 8-byte extension header lies
/// inside `area`.
fn check_extensions(area: &[u8], start: u64) -> Result<(), Violation> {
    let end = area.len() as u64;
    let mut offset = start;
    while offset < end {
        let at = usize::try_from(offset).expect("inside the header cluster");
        let (magic, len) = (get_u32(area, at), get_u32(area, at + 4));
        let data = offset + 8;
        if data > end || u64::from(len) > end - data {
            return Err(Violation::ExtensionTooLarge { magic, offset, len, end });
        }
        match magic {
            EXT_END => return Ok(()),
            EXT_BACKING_FORMAT if len >= BACKING_FORMAT_MAX => {
                return Err(Violation::BackingFormatTooLong { len, max: BACKING_FORMAT_MAX });
            }
            EXT_CRYPTO_HEADER => {
                return Err(Violation::UnsupportedExtension { name: "crypto header", magic });
            }
            EXT_BITMAPS => {
                return Err(Violation::UnsupportedExtension { name: "bitmaps", magic });
            }
            EXT_DATA_FILE => {
                return Err(Violation::UnsupportedExtension {
                    name: "external data file name",
                    magic,
                });
            }
            // The backing format (without a backing file), the feature name table and unknown
            // extensions are skipped, as QEMU skips them.
            _ => {}
        }
        offset = data + u64::from(len).next_multiple_of(8);
    }
    Ok(())
}

/// Checks that `len` bytes at `offset` lie inside a file of `file_size` bytes.
fn in_file(place: Place, offset: u64, len: u64, file_size: u64) -> Result<(), Violation> {
    match offset.checked_add(len) {
        Some(end) if end <= file_size => Ok(()),
        _ => Err(Violation::OutsideFile { place, offset, len, file_size }),
    }
}

/// Checks that `offset` is a multiple of `cluster`.
fn aligned(place: Place, offset: u64, cluster: u64) -> Result<(), Violation> {
    if offset.is_multiple_of(cluster) {
        Ok(())
    } else {
        Err(Violation::Unaligned { place, offset })
    }
}

/// A table QEMU reads whole: within its limit, cluster-aligned (even when empty, as
/// `qcow2_validate_table` checks), and inside the file.
fn table(
    place: Place,
    offset: u64,
    len: u64,
    max: u64,
    h: &Header,
    file_size: u64,
) -> Result<(), Violation> {
    if len > max {
        return Err(Violation::TableTooLarge { place, size: len, max });
    }
    aligned(place, offset, h.cluster())?;
    if len > 0 {
        in_file(place, offset, len, file_size)?;
    }
    Ok(())
}

/// References counted per host cluster: one byte each, and the full count in a map once it
/// reaches 255.
struct Counts {
    cluster_bits: u32,
    small: Vec<u8>,
    large: HashMap<u64, u64>,
    /// Largest refcount the image's refcount width holds.
    max: u64,
    /// That width in bits.
    bits: u32,
}

impl Counts {
    fn new(clusters: u64, cluster_bits: u32, refcount_order: u32) -> Self {
        let bits = 1u32 << refcount_order;
        let max = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        let small = vec![0u8; usize::try_from(clusters).expect("at most the cluster limit")];
        Counts { cluster_bits, small, large: HashMap::new(), max, bits }
    }

    /// Counts a reference to every cluster that `len` bytes at `offset` touch; the range lies
    /// inside the file (the caller checked), so inside the counts.
    fn add(&mut self, offset: u64, len: u64) -> Result<(), Violation> {
        if len == 0 {
            return Ok(());
        }
        let first = offset >> self.cluster_bits;
        let last = (offset + len - 1) >> self.cluster_bits;
        for cluster in first..=last {
            let i = usize::try_from(cluster).expect("inside the counts");
            let count = match self.small[i] {
                255 => {
                    let c = self.large.entry(cluster).or_insert(255);
                    *c += 1;
                    *c
                }
                n => {
                    self.small[i] = n + 1;
                    u64::from(n) + 1
                }
            };
            if count > self.max {
                return Err(Violation::RefcountOverflow {
                    cluster,
                    max: self.max,
                    bits: self.bits,
                });
            }
        }
        Ok(())
    }

    fn get(&self, cluster: u64) -> u64 {
        match self.small[usize::try_from(cluster).expect("inside the counts")] {
            255 => self.large[&cluster],
            n => n.into(),
        }
    }
}

/// Entry `index` of a refcount block of `2^order`-bit refcounts. Narrow ones are packed from
/// the low bits of each byte up (`get_refcount_ro0` to `ro2`), wide ones big-endian.
fn stored_refcount(block: &[u8], index: usize, order: u32) -> u64 {
    let bits = 1usize << order;
    if bits < 8 {
        let per_byte = 8 / bits;
        let byte = block[index / per_byte];
        u64::from(byte >> (bits * (index % per_byte))) & ((1 << bits) - 1)
    } else {
        let width = bits / 8;
        block[index * width..(index + 1) * width]
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
    }
}

/// A snapshot's L1 table.
struct Snapshot {
    l1_offset: u64,
    l1_entries: u32,
}

/// The state of one check.
struct Checker<R> {
    inner: R,
    file_size: u64,
    h: Header,
    counts: Counts,
    /// L1 and L2 bytes read so far, and the most allowed.
    walked: u64,
    max_walk: u64,
    /// One L2 table.
    l2: Vec<u8>,
    allocated: u64,
    compressed: u64,
}

impl<R: Read + Seek> Checker<R> {
    fn cluster(&self) -> u64 {
        self.h.cluster()
    }

    fn spend(&mut self, bytes: u64) -> Result<(), Violation> {
        self.walked += bytes;
        if self.walked > self.max_walk {
            return Err(Violation::WalkTooLarge { max: self.max_walk });
        }
        Ok(())
    }

    /// Reads the refcount table and checks each entry (`check_refblocks`).
    fn refcount_table(&mut self) -> Result<Vec<u64>, Error> {
        let (offset, bytes) = (
            self.h.refcount_table_offset,
            u64::from(self.h.refcount_table_clusters) * self.cluster(),
        );
        let mut raw = vec![0u8; usize::try_from(bytes).expect("at most 8 MiB")];
        read_exact_at(&mut self.inner, "refcount table", offset, &mut raw)?;
        let entries: Vec<u64> = raw.chunks_exact(8).map(|e| get_u64(e, 0)).collect();
        for (index, &entry) in (0u64..).zip(&entries) {
            let place = Place::RefcountBlock { index };
            if entry & REFT_RESERVED_MASK != 0 {
                return Err(Violation::ReservedBits { place, entry }.into());
            }
            let block = entry & REFT_OFFSET_MASK;
            if block != 0 {
                aligned(place, block, self.cluster())?;
                in_file(place, block, self.cluster(), self.file_size)?;
            }
        }
        Ok(entries)
    }

    /// Reads the snapshot table (`qcow2_do_read_snapshots`) and checks each snapshot's L1
    /// table (`calculate_refcounts`). Returns the snapshots and the table's length.
    fn snapshots(&mut self) -> Result<(Vec<Snapshot>, u64), Error> {
        let start = self.h.snapshots_offset;
        let mut snapshots = Vec::with_capacity(self.h.nb_snapshots.min(1024) as usize);
        let mut len = 0u64;
        let mut fixed = [0u8; SNAPSHOT_HEADER_BYTES];
        for index in 0..self.h.nb_snapshots {
            len = len.next_multiple_of(8);
            let at = start + len;
            in_file(Place::SnapshotTable, start, len + SNAPSHOT_HEADER, self.file_size)?;
            read_exact_at(&mut self.inner, "snapshot table", at, &mut fixed)?;
            let extra = get_u32(&fixed, 36);
            if extra > MAX_SNAPSHOT_EXTRA {
                return Err(Violation::SnapshotExtraData {
                    index,
                    size: extra,
                    max: MAX_SNAPSHOT_EXTRA,
                }
                .into());
            }
            if self.h.version == 3 && extra < MIN_SNAPSHOT_EXTRA_V3 {
                return Err(Violation::SnapshotIncomplete {
                    index,
                    size: extra,
                    min: MIN_SNAPSHOT_EXTRA_V3,
                }
                .into());
            }
            let (id, name) = (get_u16(&fixed, 12), get_u16(&fixed, 14));
            len += SNAPSHOT_HEADER + u64::from(extra) + u64::from(id) + u64::from(name);
            if len > MAX_SNAPSHOTS_BYTES {
                let (size, max) = (len, MAX_SNAPSHOTS_BYTES);
                return Err(
                    Violation::TableTooLarge { place: Place::SnapshotTable, size, max }.into()
                );
            }
            snapshots
                .push(Snapshot { l1_offset: get_u64(&fixed, 0), l1_entries: get_u32(&fixed, 8) });
        }
        in_file(Place::SnapshotTable, start, len, self.file_size)?;
        for (snapshot, s) in (0u32..).zip(&snapshots) {
            let place = Place::SnapshotL1 { snapshot };
            let bytes = u64::from(s.l1_entries) * 8;
            aligned(place, s.l1_offset, self.cluster())?;
            if bytes > MAX_L1_BYTES {
                return Err(
                    Violation::TableTooLarge { place, size: bytes, max: MAX_L1_BYTES }.into()
                );
            }
            if bytes > 0 {
                in_file(place, s.l1_offset, bytes, self.file_size)?;
            }
        }
        Ok((snapshots, len))
    }

    /// Counts the references of an L1 table and of everything it maps (`check_refcounts_l1`).
    /// `snapshot` is `None` for the active table, whose entries also count what the image
    /// holds and may not map past the virtual size.
    fn walk_l1(&mut self, snapshot: Option<u32>, offset: u64, entries: u32) -> Result<(), Error> {
        if entries == 0 {
            return Ok(());
        }
        let bytes = u64::from(entries) * 8;
        self.spend(bytes)?;
        self.counts.add(offset, bytes)?;
        let cluster = self.cluster();
        let needed = if snapshot.is_none() { self.h.l1_needed() } else { u64::MAX };
        let mut chunk = vec![0u8; usize::try_from(bytes.min(L1_CHUNK)).expect("at most 64 KiB")];
        for start in (0..bytes).step_by(chunk.len()) {
            let n = usize::try_from((bytes - start).min(chunk.len() as u64)).expect("small");
            read_exact_at(&mut self.inner, "L1 table", offset + start, &mut chunk[..n])?;
            for (l1_index, e) in (start / 8..).zip(chunk[..n].chunks_exact(8)) {
                let entry = get_u64(e, 0);
                if entry == 0 {
                    continue;
                }
                let place = Place::L2Table { snapshot, l1_index };
                if entry & L1E_RESERVED_MASK != 0 {
                    return Err(Violation::ReservedBits { place, entry }.into());
                }
                let l2 = entry & L1E_OFFSET_MASK;
                if l2 == 0 {
                    return Err(Violation::NoOffset { place, entry }.into());
                }
                if l1_index >= needed {
                    let virtual_size = self.h.virtual_size;
                    return Err(Violation::BeyondVirtualSize { place, virtual_size }.into());
                }
                aligned(place, l2, cluster)?;
                in_file(place, l2, cluster, self.file_size)?;
                self.counts.add(l2, cluster)?;
                self.walk_l2(snapshot, l1_index, l2)?;
            }
        }
        Ok(())
    }

    /// Reads the L2 table at `offset` into `self.l2`, within the walk budget.
    fn read_l2(&mut self, offset: u64) -> Result<(), Error> {
        self.spend(self.cluster())?;
        read_exact_at(&mut self.inner, "L2 table", offset, &mut self.l2)
    }

    /// Counts the references of one L2 table (`check_refcounts_l2`).
    fn walk_l2(&mut self, snapshot: Option<u32>, l1_index: u64, offset: u64) -> Result<(), Error> {
        self.read_l2(offset)?;
        let (cluster, cluster_bits) = (self.cluster(), self.h.cluster_bits);
        let l2_entries = cluster / 8;
        let virtual_size = self.h.virtual_size;
        // A compressed descriptor: the sector count above bit 62 - (cluster_bits - 8), the
        // offset below (qcow2.txt, "Compressed Clusters Descriptor";
        // `qcow2_parse_compressed_l2_entry`).
        let shift = 62 - (cluster_bits - 8);
        let l2 = std::mem::take(&mut self.l2);
        let result = (|| {
            for (j, e) in (0u64..).zip(l2.chunks_exact(8)) {
                let entry = get_u64(e, 0);
                // l1_index < 4 Mi, so this stays below 2^61.
                let guest_offset = (l1_index * l2_entries + j) * cluster;
                let past_end = snapshot.is_none() && guest_offset >= virtual_size;
                if entry & OFLAG_COMPRESSED != 0 {
                    let place = Place::Compressed { snapshot, guest_offset };
                    if entry & OFLAG_COPIED != 0 {
                        return Err(Violation::CompressedCopied { place, entry });
                    }
                    if past_end {
                        return Err(Violation::BeyondVirtualSize { place, virtual_size });
                    }
                    let host = entry & ((1u64 << shift) - 1);
                    let sectors = ((entry >> shift) & ((1 << (cluster_bits - 8)) - 1)) + 1;
                    let len = sectors * 512 - (host % 512);
                    // The stream may end inside the file's last, partial sector.
                    in_file(place, host, len, self.file_size.next_multiple_of(512))?;
                    self.counts.add(host, len)?;
                    if snapshot.is_none() {
                        self.allocated += 1;
                        self.compressed += 1;
                    }
                    continue;
                }
                let data = entry & L2E_OFFSET_MASK;
                let place = Place::Data { snapshot, guest_offset };
                if entry & L2E_STD_RESERVED_MASK != 0 {
                    return Err(Violation::ReservedBits { place, entry });
                }
                if data == 0 {
                    continue;
                }
                if past_end {
                    return Err(Violation::BeyondVirtualSize { place, virtual_size });
                }
                aligned(place, data, cluster)?;
                in_file(place, data, cluster, self.file_size)?;
                self.counts.add(data, cluster)?;
                if snapshot.is_none() && entry & OFLAG_ZERO == 0 {
                    self.allocated += 1;
                }
            }
            Ok(())
        })();
        self.l2 = l2;
        result.map_err(Error::from)
    }

    /// Compares the stored refcounts with the references counted (`compare_refcounts`).
    fn compare(&mut self, table: &[u64]) -> Result<(), Error> {
        let cluster = self.cluster();
        let order = self.h.refcount_order;
        let block_bits = self.h.cluster_bits + 3 - order;
        let mut block = vec![0u8; usize::try_from(cluster).expect("at most 2 MiB")];
        let mut loaded = None;
        let (mut low, mut leaks) = ((0u64, None), (0u64, None));
        for c in 0..self.counts.small.len() as u64 {
            let index = usize::try_from(c >> block_bits).expect("small");
            let at = table.get(index).map_or(0, |e| e & REFT_OFFSET_MASK);
            let stored = if at == 0 {
                0
            } else {
                if loaded != Some(index) {
                    read_exact_at(&mut self.inner, "refcount block", at, &mut block)?;
                    loaded = Some(index);
                }
                let i = usize::try_from(c & ((1 << block_bits) - 1)).expect("small");
                stored_refcount(&block, i, order)
            };
            let referenced = self.counts.get(c);
            let tally = match stored.cmp(&referenced) {
                std::cmp::Ordering::Less => &mut low,
                std::cmp::Ordering::Greater => &mut leaks,
                std::cmp::Ordering::Equal => continue,
            };
            tally.0 += 1;
            tally.1.get_or_insert((c, stored, referenced));
        }
        if let (count, Some((cluster_index, stored, referenced))) = low {
            let offset = cluster_index * cluster;
            let cluster = cluster_index;
            return Err(
                Violation::RefcountTooLow { cluster, offset, stored, referenced, count }.into()
            );
        }
        if let (count, Some((cluster_index, stored, referenced))) = leaks {
            let offset = cluster_index * cluster;
            let cluster = cluster_index;
            return Err(Violation::Leaked { cluster, offset, stored, referenced, count }.into());
        }
        Ok(())
    }

    /// Checks the copied flag of the active L1 and L2 entries against the refcounts, which
    /// [`Self::compare`] found equal to the references (`check_oflag_copied`).
    fn check_copied(&mut self) -> Result<(), Error> {
        let (offset, bytes) = (self.h.l1_offset, u64::from(self.h.l1_entries) * 8);
        if bytes == 0 {
            return Ok(());
        }
        let cluster = self.cluster();
        let l2_entries = cluster / 8;
        self.spend(bytes)?;
        let flag = |place: Place, entry: u64, refcount: u64| {
            let copied = entry & OFLAG_COPIED != 0;
            if copied == (refcount == 1) {
                Ok(())
            } else {
                Err(Violation::CopiedFlag { place, copied, refcount })
            }
        };
        let mut chunk = vec![0u8; usize::try_from(bytes.min(L1_CHUNK)).expect("at most 64 KiB")];
        for start in (0..bytes).step_by(chunk.len()) {
            let n = usize::try_from((bytes - start).min(chunk.len() as u64)).expect("small");
            read_exact_at(&mut self.inner, "L1 table", offset + start, &mut chunk[..n])?;
            for (l1_index, e) in (start / 8..).zip(chunk[..n].chunks_exact(8)) {
                let entry = get_u64(e, 0);
                let l2 = entry & L1E_OFFSET_MASK;
                if l2 == 0 {
                    continue;
                }
                let place = Place::L2Table { snapshot: None, l1_index };
                flag(place, entry, self.counts.get(l2 / cluster))?;
                self.read_l2(l2)?;
                for (j, e) in (0u64..).zip(self.l2.chunks_exact(8)) {
                    let entry = get_u64(e, 0);
                    let data = entry & L2E_OFFSET_MASK;
                    if entry & OFLAG_COMPRESSED != 0 || data == 0 {
                        continue;
                    }
                    let guest_offset = (l1_index * l2_entries + j) * cluster;
                    let place = Place::Data { snapshot: None, guest_offset };
                    flag(place, entry, self.counts.get(data / cluster))?;
                }
            }
        }
        Ok(())
    }
}

/// Checks the qcow2 image in `inner` and returns what it holds.
///
/// Refuses, with [`Error::Qcow2`], every image `qemu-img info` cannot open and every image
/// `qemu-img check` finds corrupt or leaking, and the few more listed in the module
/// documentation of `read.rs`.
pub fn check_qcow2<R: Read + Seek>(inner: R) -> Result<Qcow2Info, Error> {
    check_with_limits(inner, MAX_CHECKED_CLUSTERS, MAX_WALK_BYTES)
}

/// [`check_qcow2`] with other bounds on memory (`max_clusters`) and time (`max_walk`).
fn check_with_limits<R: Read + Seek>(
    mut inner: R,
    max_clusters: u64,
    max_walk: u64,
) -> Result<Qcow2Info, Error> {
    let file_size = inner.seek(SeekFrom::End(0)).map_err(|source| Error::Read {
        what: "file size",
        offset: 0,
        source,
    })?;
    let mut first = [0u8; HEADER_READ];
    let n = usize::try_from(file_size.min(HEADER_READ as u64)).expect("at most 112");
    read_exact_at(&mut inner, "header", 0, &mut first[..n])?;
    let h = parse_header(&first, file_size)?;
    let cluster = h.cluster();

    // The header cluster, for its extensions (no backing file, so they run to its end).
    let mut area = vec![0u8; usize::try_from(cluster).expect("at most 2 MiB")];
    let n = usize::try_from(file_size.min(cluster)).expect("at most 2 MiB");
    read_exact_at(&mut inner, "header extensions", 0, &mut area[..n])?;
    check_extensions(&area, h.length.into())?;
    drop(area);

    // Where the tables are, in the order `qcow2_do_open` checks them.
    if h.refcount_table_clusters == 0 {
        return Err(Violation::NoRefcountTable.into());
    }
    let reftable_bytes = u64::from(h.refcount_table_clusters) * cluster;
    let (offset, max) = (h.refcount_table_offset, MAX_REFTABLE_BYTES);
    table(Place::RefcountTable, offset, reftable_bytes, max, &h, file_size)?;
    if h.nb_snapshots > MAX_SNAPSHOTS {
        return Err(
            Violation::TooManySnapshots { count: h.nb_snapshots, max: MAX_SNAPSHOTS }.into()
        );
    }
    aligned(Place::SnapshotTable, h.snapshots_offset, cluster)?;
    let l1_bytes = u64::from(h.l1_entries) * 8;
    table(Place::L1Table, h.l1_offset, l1_bytes, MAX_L1_BYTES, &h, file_size)?;
    let needed = h.l1_needed();
    if u64::from(h.l1_entries) < needed {
        let (entries, virtual_size) = (h.l1_entries, h.virtual_size);
        return Err(Violation::L1TooSmall { entries, needed, virtual_size }.into());
    }

    let clusters = file_size.div_ceil(cluster);
    if clusters > max_clusters {
        return Err(Violation::TooManyClusters { clusters, max: max_clusters }.into());
    }
    let counts = Counts::new(clusters, h.cluster_bits, h.refcount_order);
    let l2 = vec![0u8; usize::try_from(cluster).expect("at most 2 MiB")];
    let mut c = Checker {
        inner,
        file_size,
        h,
        counts,
        walked: 0,
        max_walk,
        l2,
        allocated: 0,
        compressed: 0,
    };

    let reftable = c.refcount_table()?;
    let (snapshots, snapshots_len) = c.snapshots()?;

    // Every reference, in the order of `calculate_refcounts`.
    c.counts.add(0, cluster)?;
    c.walk_l1(None, c.h.l1_offset, c.h.l1_entries)?;
    for (index, s) in (0u32..).zip(&snapshots) {
        c.walk_l1(Some(index), s.l1_offset, s.l1_entries)?;
    }
    c.counts.add(c.h.snapshots_offset, snapshots_len)?;
    c.counts.add(c.h.refcount_table_offset, reftable_bytes)?;
    for (index, &entry) in (0u64..).zip(&reftable) {
        let offset = entry & REFT_OFFSET_MASK;
        if offset == 0 {
            continue;
        }
        c.counts.add(offset, cluster)?;
        let references = c.counts.get(offset / cluster);
        if references != 1 {
            let place = Place::RefcountBlock { index };
            return Err(Violation::RefblockShared { place, offset, references }.into());
        }
    }
    c.compare(&reftable)?;
    c.check_copied()?;

    Ok(Qcow2Info {
        version: c.h.version,
        virtual_size: c.h.virtual_size,
        cluster_size: cluster,
        l1_entries: c.h.l1_entries,
        allocated_clusters: c.allocated,
        compressed_clusters: c.compressed,
        snapshots: c.h.nb_snapshots,
        file_size,
    })
}

/// [`check_qcow2`] on the file at `path`; errors name the file.
pub fn check_qcow2_file(path: impl AsRef<Utf8Path>) -> Result<Qcow2Info, Error> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    check_qcow2(file).map_err(|e| e.in_file(path))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::bytes::{put_u32, put_u64};
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
                Violation::TableTooLarge {
                    place: Place::RefcountTable,
                    size: 129 << 16,
                    max: 8 << 20,
                },
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
                Violation::ExtensionTooLarge {
                    magic: 0x1234,
                    offset: 104,
                    len: 65_425,
                    end: 65_536,
                },
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
                Box::new(move |b| {
                    put_u64(b, data_entry, OFLAG_COPIED | OFLAG_COMPRESSED | 0x50_0000)
                }),
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
                Violation::Leaked {
                    cluster: 5,
                    offset: 5 << 16,
                    stored: 1,
                    referenced: 0,
                    count: 1,
                },
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
        assert_eq!(
            violation(b.clone()),
            Violation::SnapshotIncomplete { index: 0, size: 8, min: 16 }
        );
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
            let n =
                usize::try_from((buf.len() as u64).min(self.len.saturating_sub(self.pos))).unwrap();
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
}
