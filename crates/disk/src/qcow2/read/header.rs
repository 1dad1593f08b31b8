//! The qcow2 header on its own, as `qcow2_do_open` and `qcow2_read_extensions` check it when
//! opening (`qemu/qemu:block/qcow2.c`; fields and extensions: `qemu/qemu:docs/interop/qcow2.txt`),
//! and the placement of the tables it points to.

use super::super::MAGIC;
use super::super::violation::{Place, Violation};
use crate::bytes::{get_u32, get_u64};

/// Header length of version 2, fixed (qcow2.txt).
const V2_HEADER_LENGTH: u32 = 72;
/// Smallest header length of version 3 (qcow2.txt; `qcow2_do_open`).
const V3_HEADER_LENGTH: u32 = 104;
/// Bytes of the header QEMU reads: `QCowHeader`, with the compression type and padding.
pub(super) const HEADER_READ: usize = 112;
/// Smallest and largest `cluster_bits` (`MIN_CLUSTER_BITS`, `MAX_CLUSTER_BITS` in qcow2.h).
const MIN_CLUSTER_BITS: u32 = 9;
const MAX_CLUSTER_BITS: u32 = 21;
/// Largest `refcount_order`: 64-bit refcounts (`qcow2_do_open`).
const MAX_REFCOUNT_ORDER: u32 = 6;
/// `sizeof(bs->backing_format)`: a backing format name must be shorter.
const BACKING_FORMAT_MAX: u32 = 16;

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
pub(super) const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_CRYPTO_HEADER: u32 = 0x0537_be77;
pub(super) const EXT_BITMAPS: u32 = 0x2385_2875;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// The header fields the checks use.
#[derive(Debug)]
pub(super) struct Header {
    pub(super) version: u32,
    pub(super) cluster_bits: u32,
    pub(super) virtual_size: u64,
    pub(super) l1_entries: u32,
    pub(super) l1_offset: u64,
    pub(super) refcount_table_offset: u64,
    pub(super) refcount_table_clusters: u32,
    pub(super) nb_snapshots: u32,
    pub(super) snapshots_offset: u64,
    pub(super) refcount_order: u32,
    /// `header_length`: where the header extensions start.
    pub(super) length: u32,
}

impl Header {
    pub(super) fn cluster(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// L1 entries the virtual size needs: each maps a cluster of 8-byte L2 entries.
    pub(super) fn l1_needed(&self) -> u64 {
        self.virtual_size.div_ceil((self.cluster() / 8) * self.cluster())
    }
}

/// Checks the header's fields on their own. `h` holds the first bytes of the file (at least
/// [`HEADER_READ`]), zero-padded past its end as QEMU reads them.
pub(super) fn parse_header(h: &[u8], file_size: u64) -> Result<Header, Violation> {
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
pub(super) fn check_extensions(area: &[u8], start: u64) -> Result<(), Violation> {
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
pub(super) fn in_file(
    place: Place,
    offset: u64,
    len: u64,
    file_size: u64,
) -> Result<(), Violation> {
    match offset.checked_add(len) {
        Some(end) if end <= file_size => Ok(()),
        _ => Err(Violation::OutsideFile { place, offset, len, file_size }),
    }
}

/// Checks that `offset` is a multiple of `cluster`.
pub(super) fn aligned(place: Place, offset: u64, cluster: u64) -> Result<(), Violation> {
    if offset.is_multiple_of(cluster) {
        Ok(())
    } else {
        Err(Violation::Unaligned { place, offset })
    }
}

/// A table QEMU reads whole: within its limit, cluster-aligned (even when empty, as
/// `qcow2_validate_table` checks), and inside the file.
pub(super) fn table(
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
