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
//!
//! The work is split by job: [`header`] checks the header, its extensions and where the tables
//! sit, as opening does; [`refcount`] walks every table and counts every reference, as
//! `qemu-img check` does.

mod header;
mod refcount;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use camino::Utf8Path;
use serde::Serialize;

use super::violation::{Place, Violation};
use crate::Error;
use crate::read_exact_at;
use header::{HEADER_READ, aligned, check_extensions, parse_header, table};
use refcount::{Checker, Counts, REFT_OFFSET_MASK};

/// `QCOW_MAX_L1_SIZE`: 32 MiB of L1 table.
const MAX_L1_BYTES: u64 = 32 << 20;
/// `QCOW_MAX_REFTABLE_SIZE`: 8 MiB of refcount table.
const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// `QCOW_MAX_SNAPSHOTS`.
const MAX_SNAPSHOTS: u32 = 65_536;

/// The refcount cross-check holds one byte per cluster of the file; it refuses files with more
/// clusters than this (64 Mi: 64 MiB of counts, a 4 TiB file of 64 KiB clusters).
pub const MAX_CHECKED_CLUSTERS: u64 = 1 << 26;
/// The check reads at most this many bytes of L1 and L2 tables, counting a table shared by
/// several snapshots once per reference (4 GiB: the L2 tables of 32 TiB of guest data at 64
/// KiB clusters).
pub const MAX_WALK_BYTES: u64 = 1 << 32;

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

/// Checks the qcow2 image in `inner` and returns what it holds.
///
/// Refuses, with [`Error::Qcow2`], every image `qemu-img info` cannot open and every image
/// `qemu-img check` finds corrupt or leaking, and the few more listed in the module
/// documentation of `read/mod.rs`.
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
