//! qcow2 version 3 images, written sparse and optionally compressed, in one forward pass.
//!
//! Format: the qcow2 specification, `qemu/qemu:docs/interop/qcow2.txt`. We write 64 KiB clusters,
//! 16-bit refcounts, no snapshots, no backing file, no extensions; every table sits before the
//! data, so the file is:
//!
//! ```text
//! cluster 0          header (104 bytes, then an end-of-extensions marker of zeros)
//! L1 table           one 8-byte entry per 512 MiB of virtual disk
//! refcount table     one 8-byte entry per refcount block
//! refcount blocks    one 16-bit refcount per host cluster, covering the whole file
//! L2 tables          one per 512 MiB region that holds data, in guest order
//! data               allocated clusters in guest order; compressed ones packed back to back
//! ```
//!
//! All-zero clusters stay unallocated (L2 entry 0, which reads as zeros). With compression, a
//! cluster is stored as a raw deflate stream with a 4 KiB window (what qemu writes and inflates)
//! when that is smaller than the cluster, and as is otherwise. Compressed sizes decide where
//! everything after them goes, so the first pass compresses each cluster to learn its size and
//! the second compresses it again to write it (deflate is deterministic).
//!
//! There are no timestamps in qcow2, so the same input always gives the same bytes.
//!
//! [`check_qcow2`] reads any qcow2 image (version 2 or 3, any cluster size and refcount width,
//! internal snapshots) as hostile input and refuses, with a [`Violation`], whatever QEMU refuses
//! to open or `qemu-img check` reports, recounting every reference; `read/mod.rs` lists the rules
//! with their QEMU sources and the few it adds.

mod layout;
mod read;
mod violation;
mod write;

pub use read::{MAX_CHECKED_CLUSTERS, MAX_WALK_BYTES, Qcow2Info, check_qcow2, check_qcow2_file};
pub use violation::{Place, Violation};
pub use write::{Qcow2Options, Qcow2WriteSummary, write_qcow2, write_qcow2_file};

use crate::bytes::{put, put_u32, put_u64};

/// `QFI\xfb`.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
/// The version we write.
pub const VERSION: u32 = 3;
/// log2 of the cluster size.
pub const CLUSTER_BITS: u32 = 16;
/// Cluster size: 64 KiB, qemu's default.
pub const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
/// log2 of the refcount width in bits: 16-bit refcounts, qemu's default.
pub const REFCOUNT_ORDER: u32 = 4;
/// Length of the version 3 header without the optional compression type field.
pub const HEADER_LENGTH: u32 = 104;

/// L1 and L2 entry flag: the cluster's refcount is exactly one.
pub(crate) const OFLAG_COPIED: u64 = 1 << 63;
/// L2 entry flag: the cluster is compressed.
pub(crate) const OFLAG_COMPRESSED: u64 = 1 << 62;
/// Bits of a compressed cluster descriptor below the sector count: `62 - (cluster_bits - 8)`.
pub(crate) const COMPRESSED_OFFSET_BITS: u32 = 62 - (CLUSTER_BITS - 8);

/// The header fields that vary, for [`encode_header`].
pub(crate) struct HeaderFields {
    pub size: u64,
    pub l1_entries: u32,
    pub l1_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
}

/// The first cluster of the image: the version 3 header, then zeros, which also serve as the
/// end-of-extensions marker at byte 104.
pub(crate) fn encode_header(h: &HeaderFields) -> Vec<u8> {
    let mut b = vec![0u8; usize::try_from(CLUSTER_SIZE).expect("64 KiB")];
    put(&mut b, 0, &MAGIC);
    put_u32(&mut b, 4, VERSION);
    // 8: backing file offset, 16: its size (none).
    put_u32(&mut b, 20, CLUSTER_BITS);
    put_u64(&mut b, 24, h.size);
    // 32: encryption method (none).
    put_u32(&mut b, 36, h.l1_entries);
    put_u64(&mut b, 40, h.l1_offset);
    put_u64(&mut b, 48, h.refcount_table_offset);
    put_u32(&mut b, 56, h.refcount_table_clusters);
    // 60: snapshots (none); 72, 80, 88: incompatible, compatible, autoclear features (none).
    put_u32(&mut b, 96, REFCOUNT_ORDER);
    put_u32(&mut b, 100, HEADER_LENGTH);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::{get_u32, get_u64};

    #[test]
    fn header_fields() {
        let b = encode_header(&HeaderFields {
            size: 1 << 30,
            l1_entries: 2,
            l1_offset: 0x10000,
            refcount_table_offset: 0x20000,
            refcount_table_clusters: 1,
        });
        assert_eq!(&b[..8], b"QFI\xfb\0\0\0\x03");
        assert_eq!(get_u32(&b, 20), 16);
        assert_eq!(get_u64(&b, 24), 1 << 30);
        assert_eq!(get_u32(&b, 36), 2);
        assert_eq!(get_u64(&b, 40), 0x10000);
        assert_eq!(get_u64(&b, 48), 0x20000);
        assert_eq!(get_u32(&b, 56), 1);
        assert_eq!(get_u32(&b, 96), 4);
        assert_eq!(get_u32(&b, 100), 104);
        assert!(b[104..].iter().all(|&x| x == 0));
        assert_eq!(COMPRESSED_OFFSET_BITS, 54);
    }
}
