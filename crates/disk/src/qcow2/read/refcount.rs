//! Counting every reference to every cluster, from the header, the active and snapshot L1
//! and L2 tables, the snapshot table and the refcount structures, and comparing the counts with
//! the stored refcounts, as `qemu-img check` does (`qemu/qemu:block/qcow2-refcount.c`,
//! `calculate_refcounts` and what it calls; table formats: `qemu/qemu:docs/interop/qcow2.txt`).

use std::collections::HashMap;
use std::io::{Read, Seek};

use super::super::violation::{Place, Violation};
use super::super::{OFLAG_COMPRESSED, OFLAG_COPIED};
use super::MAX_L1_BYTES;
use super::header::{Header, aligned, in_file};
use crate::Error;
use crate::bytes::{get_u16, get_u32, get_u64};
use crate::read_exact_at;

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

/// L1 entry: bits 9..55 are the L2 table offset, bit 63 the copied flag, the rest reserved
/// (`L1E_OFFSET_MASK`, `L1E_RESERVED_MASK`).
pub(super) const L1E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L1E_RESERVED_MASK: u64 = 0x7f00_0000_0000_01ff;
/// Standard L2 entry: bits 9..55 the offset, bit 0 the zero flag, 62 compressed, 63 copied,
/// the rest reserved (`L2E_OFFSET_MASK`, `L2E_STD_RESERVED_MASK`).
pub(super) const L2E_OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const L2E_STD_RESERVED_MASK: u64 = 0x3f00_0000_0000_01fe;
/// Refcount table entry: the block offset above bit 9, reserved below (`REFT_OFFSET_MASK`,
/// `REFT_RESERVED_MASK`).
pub(super) const REFT_OFFSET_MASK: u64 = 0xffff_ffff_ffff_fe00;
const REFT_RESERVED_MASK: u64 = 0x1ff;
/// L2 entry flag: the cluster reads as zeros (`QCOW_OFLAG_ZERO`).
const OFLAG_ZERO: u64 = 1;

/// L1 tables are read in pieces of this size.
const L1_CHUNK: u64 = 64 << 10;

/// References counted per host cluster: one byte each, and the full count in a map once it
/// reaches 255.
pub(super) struct Counts {
    cluster_bits: u32,
    small: Vec<u8>,
    large: HashMap<u64, u64>,
    /// Largest refcount the image's refcount width holds.
    max: u64,
    /// That width in bits.
    bits: u32,
}

impl Counts {
    pub(super) fn new(clusters: u64, cluster_bits: u32, refcount_order: u32) -> Self {
        let bits = 1u32 << refcount_order;
        let max = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        let small = vec![0u8; usize::try_from(clusters).expect("at most the cluster limit")];
        Counts { cluster_bits, small, large: HashMap::new(), max, bits }
    }

    /// Counts a reference to every cluster that `len` bytes at `offset` touch; the range lies
    /// inside the file (the caller checked), so inside the counts.
    pub(super) fn add(&mut self, offset: u64, len: u64) -> Result<(), Violation> {
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

    pub(super) fn get(&self, cluster: u64) -> u64 {
        match self.small[usize::try_from(cluster).expect("inside the counts")] {
            255 => self.large[&cluster],
            n => n.into(),
        }
    }
}

/// Entry `index` of a refcount block of `2^order`-bit refcounts. Narrow ones are packed from
/// the low bits of each byte up (`get_refcount_ro0` to `ro2`), wide ones big-endian.
pub(super) fn stored_refcount(block: &[u8], index: usize, order: u32) -> u64 {
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
pub(super) struct Snapshot {
    pub(super) l1_offset: u64,
    pub(super) l1_entries: u32,
}

/// The state of one check.
pub(super) struct Checker<R> {
    pub(super) inner: R,
    pub(super) file_size: u64,
    pub(super) h: Header,
    pub(super) counts: Counts,
    /// L1 and L2 bytes read so far, and the most allowed.
    pub(super) walked: u64,
    pub(super) max_walk: u64,
    /// One L2 table.
    pub(super) l2: Vec<u8>,
    pub(super) allocated: u64,
    pub(super) compressed: u64,
}

impl<R: Read + Seek> Checker<R> {
    pub(super) fn cluster(&self) -> u64 {
        self.h.cluster()
    }

    pub(super) fn spend(&mut self, bytes: u64) -> Result<(), Violation> {
        self.walked += bytes;
        if self.walked > self.max_walk {
            return Err(Violation::WalkTooLarge { max: self.max_walk });
        }
        Ok(())
    }

    /// Reads the refcount table and checks each entry (`check_refblocks`).
    pub(super) fn refcount_table(&mut self) -> Result<Vec<u64>, Error> {
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
    pub(super) fn snapshots(&mut self) -> Result<(Vec<Snapshot>, u64), Error> {
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
    pub(super) fn walk_l1(
        &mut self,
        snapshot: Option<u32>,
        offset: u64,
        entries: u32,
    ) -> Result<(), Error> {
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
    pub(super) fn read_l2(&mut self, offset: u64) -> Result<(), Error> {
        self.spend(self.cluster())?;
        read_exact_at(&mut self.inner, "L2 table", offset, &mut self.l2)
    }

    /// Counts the references of one L2 table (`check_refcounts_l2`).
    pub(super) fn walk_l2(
        &mut self,
        snapshot: Option<u32>,
        l1_index: u64,
        offset: u64,
    ) -> Result<(), Error> {
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
    pub(super) fn compare(&mut self, table: &[u64]) -> Result<(), Error> {
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
    pub(super) fn check_copied(&mut self) -> Result<(), Error> {
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
