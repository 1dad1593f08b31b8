//! Where every table and cluster of a qcow2 image goes, computed before the first byte is
//! written, and the tables themselves (L1, refcount table and blocks, L2).

use super::{
    CLUSTER_SIZE, COMPRESSED_OFFSET_BITS, HeaderFields, OFLAG_COMPRESSED, OFLAG_COPIED,
    encode_header,
};
use crate::bytes::{align_up, put_u16, put_u64};

/// Entries of an L1 or L2 table or of the refcount table in one cluster (8 bytes each).
pub(crate) const TABLE_ENTRIES: u64 = CLUSTER_SIZE / 8;
/// Refcounts in one refcount block (16 bits each).
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER_SIZE / 2;
/// qcow2 counts compressed data in 512-byte sectors.
const SECTOR: u64 = 512;

/// How one guest cluster is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// A whole cluster, as is.
    Plain,
    /// A deflate stream of this many bytes.
    Compressed(u32),
}

/// An allocated guest cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cluster {
    /// Guest cluster index (guest offset / cluster size).
    pub index: u64,
    /// How it is stored.
    pub stored: Stored,
}

/// The computed layout. Offsets are in bytes from the start of the file.
#[derive(Debug)]
pub(crate) struct Layout {
    size: u64,
    l1_entries: u32,
    l1_offset: u64,
    l1_clusters: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u64,
    refcount_blocks: u64,
    l2_offset: u64,
    /// L1 indexes that have an L2 table, ascending; table k is at `l2_offset + k * cluster`.
    l2_tables: Vec<u64>,
    data_offset: u64,
    /// Host offset of each allocated cluster, relative to `data_offset`, in the order given.
    placements: Vec<u64>,
    /// Refcount of each host cluster of the data region.
    data_refcounts: Vec<u16>,
}

impl Layout {
    /// Lays out a disk of `size` bytes whose allocated clusters are `clusters`, in ascending
    /// guest order.
    pub fn new(size: u64, clusters: &[Cluster]) -> Self {
        debug_assert!(clusters.windows(2).all(|w| w[0].index < w[1].index));
        // The data region first: its size is all the metadata depends on.
        let mut placements = Vec::with_capacity(clusters.len());
        let mut data_refcounts: Vec<u16> = Vec::new();
        let mut cursor = 0u64;
        for c in clusters {
            let (start, len) = match c.stored {
                Stored::Plain => (align_up(cursor, CLUSTER_SIZE), CLUSTER_SIZE),
                Stored::Compressed(len) => (cursor, u64::from(len)),
            };
            placements.push(start);
            cursor = start + len;
            let last = usize::try_from((cursor - 1) / CLUSTER_SIZE).expect("fits memory");
            if data_refcounts.len() <= last {
                data_refcounts.resize(last + 1, 0);
            }
            // Each stored cluster references every host cluster it touches once.
            let first = usize::try_from(start / CLUSTER_SIZE).expect("fits memory");
            for r in &mut data_refcounts[first..=last] {
                *r = r.checked_add(1).expect("a host cluster holds fewer than 65536 streams");
            }
        }
        let data_clusters = data_refcounts.len() as u64;

        let guest_clusters = size.div_ceil(CLUSTER_SIZE);
        let l1_entries = guest_clusters.div_ceil(TABLE_ENTRIES);
        let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER_SIZE).max(1);
        let mut l2_tables: Vec<u64> = clusters.iter().map(|c| c.index / TABLE_ENTRIES).collect();
        l2_tables.dedup();
        // Refcount blocks cover every cluster, themselves included: iterate to a fixed point.
        let mut refcount_blocks = 1u64;
        let refcount_table_clusters = loop {
            let table_clusters = (refcount_blocks * 8).div_ceil(CLUSTER_SIZE);
            let total = 1
                + l1_clusters
                + table_clusters
                + refcount_blocks
                + l2_tables.len() as u64
                + data_clusters;
            let needed = total.div_ceil(REFCOUNTS_PER_BLOCK);
            if needed <= refcount_blocks {
                break table_clusters;
            }
            refcount_blocks = needed;
        };
        let l1_offset = CLUSTER_SIZE;
        let refcount_table_offset = l1_offset + l1_clusters * CLUSTER_SIZE;
        let l2_offset =
            refcount_table_offset + (refcount_table_clusters + refcount_blocks) * CLUSTER_SIZE;
        let data_offset = l2_offset + l2_tables.len() as u64 * CLUSTER_SIZE;
        Layout {
            size,
            l1_entries: u32::try_from(l1_entries).expect("size checked by the writer"),
            l1_offset,
            l1_clusters,
            refcount_table_offset,
            refcount_table_clusters,
            refcount_blocks,
            l2_offset,
            l2_tables,
            data_offset,
            placements,
            data_refcounts,
        }
    }

    /// Total file size: every cluster, the last one padded.
    pub fn file_size(&self) -> u64 {
        self.data_offset + self.data_refcounts.len() as u64 * CLUSTER_SIZE
    }

    /// Absolute offset of the `i`-th allocated cluster's data.
    pub fn host_offset(&self, i: usize) -> u64 {
        self.data_offset + self.placements[i]
    }

    /// Offset where the data region starts.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The header cluster.
    pub fn header(&self) -> Vec<u8> {
        encode_header(&HeaderFields {
            size: self.size,
            l1_entries: self.l1_entries,
            l1_offset: self.l1_offset,
            refcount_table_offset: self.refcount_table_offset,
            refcount_table_clusters: u32::try_from(self.refcount_table_clusters)
                .expect("size checked by the writer"),
        })
    }

    /// The L1 table clusters.
    pub fn l1_table(&self) -> Vec<u8> {
        let mut b = cluster_buf(self.l1_clusters);
        for (k, &l1_index) in self.l2_tables.iter().enumerate() {
            let l2 = self.l2_offset + k as u64 * CLUSTER_SIZE;
            put_u64(&mut b, to_usize(l1_index * 8), l2 | OFLAG_COPIED);
        }
        b
    }

    /// The refcount table clusters.
    pub fn refcount_table(&self) -> Vec<u8> {
        let mut b = cluster_buf(self.refcount_table_clusters);
        let first_block = self.refcount_table_offset + self.refcount_table_clusters * CLUSTER_SIZE;
        for k in 0..self.refcount_blocks {
            put_u64(&mut b, to_usize(k * 8), first_block + k * CLUSTER_SIZE);
        }
        b
    }

    /// Number of refcount blocks.
    pub fn refcount_blocks(&self) -> u64 {
        self.refcount_blocks
    }

    /// Refcount block `k`.
    pub fn refcount_block(&self, k: u64) -> Vec<u8> {
        let mut b = cluster_buf(1);
        let metadata_clusters = self.data_offset / CLUSTER_SIZE;
        let total = metadata_clusters + self.data_refcounts.len() as u64;
        let first = k * REFCOUNTS_PER_BLOCK;
        for c in first..(first + REFCOUNTS_PER_BLOCK).min(total) {
            let refcount = match c.checked_sub(metadata_clusters) {
                None => 1,
                Some(d) => self.data_refcounts[to_usize(d)],
            };
            put_u16(&mut b, to_usize((c - first) * 2), refcount);
        }
        b
    }

    /// L1 indexes that have an L2 table, ascending.
    pub fn l2_tables(&self) -> &[u64] {
        &self.l2_tables
    }

    /// The L2 table of `l1_index`, whose allocated clusters are `clusters[first..]` up to the
    /// end of its range.
    pub fn l2_table(&self, l1_index: u64, clusters: &[Cluster], first: usize) -> Vec<u8> {
        let mut b = cluster_buf(1);
        let range = l1_index * TABLE_ENTRIES..(l1_index + 1) * TABLE_ENTRIES;
        for (i, c) in clusters.iter().enumerate().skip(first) {
            if !range.contains(&c.index) {
                break;
            }
            let host = self.host_offset(i);
            let entry = match c.stored {
                Stored::Plain => host | OFLAG_COPIED,
                Stored::Compressed(len) => {
                    let extra_sectors = (host + u64::from(len) - 1) / SECTOR - host / SECTOR;
                    OFLAG_COMPRESSED | (extra_sectors << COMPRESSED_OFFSET_BITS) | host
                }
            };
            put_u64(&mut b, to_usize((c.index - range.start) * 8), entry);
        }
        b
    }
}

fn cluster_buf(clusters: u64) -> Vec<u8> {
    vec![0u8; to_usize(clusters * CLUSTER_SIZE)]
}

fn to_usize(v: u64) -> usize {
    usize::try_from(v).expect("fits memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::{get_u16, get_u64};

    #[test]
    fn empty_disk_has_only_metadata() {
        let l = Layout::new(1 << 30, &[]);
        // Header, L1, refcount table, one refcount block.
        assert_eq!(l.file_size(), 4 * CLUSTER_SIZE);
        assert_eq!(l.l1_entries, 2);
        let rb = l.refcount_block(0);
        assert_eq!((0..5).map(|c| get_u16(&rb, c * 2)).collect::<Vec<_>>(), [1, 1, 1, 1, 0]);
        assert_eq!(get_u64(&l.refcount_table(), 0), 3 * CLUSTER_SIZE);
    }

    #[test]
    fn compressed_clusters_pack_and_share_host_clusters() {
        let clusters = [
            Cluster { index: 0, stored: Stored::Compressed(1000) },
            Cluster { index: 1, stored: Stored::Compressed(65000) },
            Cluster { index: 2, stored: Stored::Plain },
            Cluster { index: 9000, stored: Stored::Compressed(10) },
        ];
        let l = Layout::new(1 << 30, &clusters);
        assert_eq!(l.placements, [0, 1000, CLUSTER_SIZE * 2, CLUSTER_SIZE * 3]);
        // Host cluster 0 holds streams 0 and 1, cluster 1 the tail of stream 1.
        assert_eq!(l.data_refcounts, [2, 1, 1, 1]);
        assert_eq!(l.l2_tables(), [0, 1]);
        let l2 = l.l2_table(0, &clusters, 0);
        let host1 = l.host_offset(1);
        let e1 = get_u64(&l2, 8);
        assert_eq!(e1 & ((1 << 54) - 1), host1);
        assert_eq!(e1 >> 62, 1, "compressed, not copied");
        assert_eq!((e1 >> 54) & 0xff, (host1 + 64_999) / 512 - host1 / 512);
        assert_eq!(get_u64(&l2, 16), l.host_offset(2) | OFLAG_COPIED);
        let l2b = l.l2_table(1, &clusters, 3);
        assert_ne!(get_u64(&l2b, (9000 - 8192) * 8), 0);
        assert_eq!(l.file_size(), l.data_offset() + 4 * CLUSTER_SIZE);
    }

    #[test]
    fn refcount_blocks_cover_themselves() {
        // 40000 plain clusters need two refcount blocks.
        let clusters: Vec<Cluster> =
            (0..40_000).map(|index| Cluster { index, stored: Stored::Plain }).collect();
        let l = Layout::new(40_000 * CLUSTER_SIZE, &clusters);
        assert_eq!(l.refcount_blocks(), 2);
        let total = l.file_size() / CLUSTER_SIZE;
        let counted: u64 = (0..l.refcount_blocks())
            .map(|k| {
                let b = l.refcount_block(k);
                (0..to_usize(REFCOUNTS_PER_BLOCK)).filter(|&i| get_u16(&b, i * 2) != 0).count()
                    as u64
            })
            .sum();
        assert_eq!(counted, total);
    }
}
