//! Checking a qcow2 image as hostile input: the header, the L1 and L2 tables and the refcount
//! table are checked against the specification (`qemu/qemu:docs/interop/qcow2.txt`) and against
//! the file's bounds, before anything is trusted. Nothing is allocated in proportion to a size
//! the file merely declares: every table is bounded by the file's real length first.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use camino::Utf8Path;
use serde::Serialize;

use super::{MAGIC, OFLAG_COMPRESSED};
use crate::Error;
use crate::bytes::{get_u32, get_u64};
use crate::read_exact_at;

/// Length of a version 2 header, the shortest there is.
const V2_HEADER_LENGTH: usize = 72;
/// Smallest and largest cluster sizes qemu accepts (512 B to 2 MiB).
const MIN_CLUSTER_BITS: u32 = 9;
const MAX_CLUSTER_BITS: u32 = 21;
/// qemu's cap on the L1 table: 32 MiB (`QCOW_MAX_L1_SIZE`).
const MAX_L1_BYTES: u64 = 32 << 20;
/// Bits 9..55 of an L1 or standard L2 entry: the host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// Incompatible feature bits: dirty, corrupt, external data file, compression type, extended L2.
const INCOMPATIBLE_DIRTY: u64 = 1;
const INCOMPATIBLE_CORRUPT: u64 = 1 << 1;

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
    /// Data clusters mapped by the L2 tables.
    pub allocated_clusters: u64,
    /// Of these, clusters stored compressed.
    pub compressed_clusters: u64,
    /// Length of the file.
    pub file_size: u64,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Qcow2 { reason: reason.into() }
}

/// Checks that `len` bytes at `offset` are cluster-aligned and inside a file of `file_size`.
fn in_file(what: &str, offset: u64, len: u64, cluster: u64, file_size: u64) -> Result<(), Error> {
    if !offset.is_multiple_of(cluster) {
        return Err(bad(format!("{what} at offset {offset} is not cluster-aligned")));
    }
    match offset.checked_add(len) {
        Some(end) if end <= file_size => Ok(()),
        _ => Err(bad(format!(
            "{what} at offset {offset} ({len} bytes) lies beyond the end of the file ({file_size} bytes)"
        ))),
    }
}

/// The header fields the checks use.
struct Header {
    version: u32,
    cluster_bits: u32,
    virtual_size: u64,
    l1_entries: u32,
    l1_offset: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u32,
}

impl Header {
    fn cluster(&self) -> u64 {
        1 << self.cluster_bits
    }
}

/// Checks the header's fields on their own (`h` holds the first `file_size.min(104)` bytes).
fn parse_header(h: &[u8; 104], file_size: u64) -> Result<Header, Error> {
    if h[..4] != MAGIC {
        return Err(bad("bad magic (not a qcow2 image)"));
    }
    let version = get_u32(h, 4);
    if version != 2 && version != 3 {
        return Err(bad(format!("version {version} is not 2 or 3")));
    }
    if get_u64(h, 8) != 0 {
        return Err(bad("has a backing file (only self-contained images are supported)"));
    }
    let cluster_bits = get_u32(h, 20);
    if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
        return Err(bad(format!(
            "cluster_bits {cluster_bits} is outside {MIN_CLUSTER_BITS}..={MAX_CLUSTER_BITS}"
        )));
    }
    if get_u32(h, 32) != 0 {
        return Err(bad("is encrypted (not supported)"));
    }
    if version == 3 {
        if file_size < 104 {
            return Err(bad(format!("the file ({file_size} bytes) is shorter than a v3 header")));
        }
        let incompatible = get_u64(h, 72);
        if incompatible & INCOMPATIBLE_DIRTY != 0 {
            return Err(bad("is marked dirty (refcounts may be wrong)"));
        }
        if incompatible & INCOMPATIBLE_CORRUPT != 0 {
            return Err(bad("is marked corrupt"));
        }
        if incompatible != 0 {
            return Err(bad(format!("unsupported incompatible features {incompatible:#x}")));
        }
        let refcount_order = get_u32(h, 96);
        if refcount_order > 6 {
            return Err(bad(format!("refcount_order {refcount_order} is above 6")));
        }
        let header_length = get_u32(h, 100);
        let cluster = 1u64 << cluster_bits;
        if header_length < 104 || u64::from(header_length) > cluster {
            return Err(bad(format!("header_length {header_length} is not in 104..={cluster}")));
        }
    }
    Ok(Header {
        version,
        cluster_bits,
        virtual_size: get_u64(h, 24),
        l1_entries: get_u32(h, 36),
        l1_offset: get_u64(h, 40),
        refcount_table_offset: get_u64(h, 48),
        refcount_table_clusters: get_u32(h, 56),
    })
}

/// Checks that the refcount table and every refcount block it names lie inside the file.
fn check_refcounts<R: Read + Seek>(inner: &mut R, h: &Header, file_size: u64) -> Result<(), Error> {
    let cluster = h.cluster();
    if h.refcount_table_clusters == 0 {
        return Err(bad("refcount table has no clusters"));
    }
    let bytes = u64::from(h.refcount_table_clusters) * cluster;
    in_file("refcount table", h.refcount_table_offset, bytes, cluster, file_size)?;
    let mut table = vec![0u8; usize::try_from(bytes).expect("within the file")];
    read_exact_at(inner, "refcount table", h.refcount_table_offset, &mut table)?;
    for (i, entry) in table.chunks_exact(8).enumerate() {
        let offset = u64::from_be_bytes(entry.try_into().expect("8 bytes")) & !0x1ff;
        if offset != 0 {
            in_file(&format!("refcount block {i}"), offset, cluster, cluster, file_size)?;
        }
    }
    Ok(())
}

/// Walks the L1 and L2 tables: every table and data cluster inside the file and the virtual
/// size. Returns the allocated and the compressed cluster counts.
fn check_mapping<R: Read + Seek>(
    inner: &mut R,
    h: &Header,
    l1: &[u8],
    file_size: u64,
) -> Result<(u64, u64), Error> {
    let cluster = h.cluster();
    let l2_entries = cluster / 8;
    let needed = h.virtual_size.div_ceil(l2_entries * cluster);
    let mut l2 = vec![0u8; usize::try_from(cluster).expect("at most 2 MiB")];
    let (mut allocated, mut compressed) = (0u64, 0u64);
    // Bits of a compressed descriptor below the sector count (qcow2.txt, "Compressed Clusters").
    let x = 62 - (h.cluster_bits - 8);
    for (i, entry) in (0u64..).zip(l1.chunks_exact(8)) {
        let l2_offset = u64::from_be_bytes(entry.try_into().expect("8 bytes")) & OFFSET_MASK;
        if l2_offset == 0 {
            continue;
        }
        if i >= needed {
            return Err(bad(format!("L1 entry {i} maps an L2 table beyond the virtual size")));
        }
        in_file(&format!("L2 table {i}"), l2_offset, cluster, cluster, file_size)?;
        read_exact_at(inner, "L2 table", l2_offset, &mut l2)?;
        for (j, e) in (0u64..).zip(l2.chunks_exact(8)) {
            let e = u64::from_be_bytes(e.try_into().expect("8 bytes"));
            // i < needed <= 4 Mi entries, so this stays below 2^61.
            let guest = (i * l2_entries + j) * cluster;
            if e & OFLAG_COMPRESSED != 0 {
                let host = e & ((1u64 << x) - 1);
                let sectors = ((e & !OFLAG_COMPRESSED & !(1 << 63)) >> x) + 1;
                let end = host.checked_add(sectors * 512);
                if end.is_none_or(|end| end > file_size.next_multiple_of(512)) {
                    return Err(bad(format!(
                        "compressed cluster for guest offset {guest} lies beyond the end of the file"
                    )));
                }
                compressed += 1;
                allocated += 1;
                continue;
            }
            let data = e & OFFSET_MASK;
            if data != 0 {
                if guest >= h.virtual_size {
                    return Err(bad(format!(
                        "L2 entry maps guest offset {guest}, beyond the virtual size"
                    )));
                }
                let what = format!("data cluster for guest offset {guest}");
                in_file(&what, data, cluster, cluster, file_size)?;
                allocated += 1;
            }
        }
    }
    Ok((allocated, compressed))
}

/// Checks the qcow2 image in `inner` and returns what it holds.
pub fn check_qcow2<R: Read + Seek>(mut inner: R) -> Result<Qcow2Info, Error> {
    let file_size = inner.seek(SeekFrom::End(0)).map_err(|source| Error::Read {
        what: "file size",
        offset: 0,
        source,
    })?;
    if file_size < V2_HEADER_LENGTH as u64 {
        return Err(bad(format!("the file ({file_size} bytes) is shorter than a qcow2 header")));
    }
    let mut raw = [0u8; 104];
    let header_len = usize::try_from(file_size.min(104)).expect("at most 104");
    read_exact_at(&mut inner, "header", 0, &mut raw[..header_len])?;
    let h = parse_header(&raw, file_size)?;
    let cluster = h.cluster();
    // Each L2 table maps a cluster's worth of 8-byte entries, each a cluster of guest data.
    let needed = h.virtual_size.div_ceil((cluster / 8) * cluster);
    if u64::from(h.l1_entries) < needed {
        return Err(bad(format!(
            "L1 table of {} entries cannot map the virtual size of {} bytes",
            h.l1_entries, h.virtual_size
        )));
    }
    let l1_bytes = u64::from(h.l1_entries) * 8;
    if l1_bytes > MAX_L1_BYTES {
        return Err(bad(format!("L1 table of {} entries exceeds 32 MiB", h.l1_entries)));
    }
    in_file("L1 table", h.l1_offset, l1_bytes, cluster, file_size)?;
    check_refcounts(&mut inner, &h, file_size)?;
    let mut l1 = vec![0u8; usize::try_from(l1_bytes).expect("at most 32 MiB")];
    read_exact_at(&mut inner, "L1 table", h.l1_offset, &mut l1)?;
    let (allocated_clusters, compressed_clusters) = check_mapping(&mut inner, &h, &l1, file_size)?;
    Ok(Qcow2Info {
        version: h.version,
        virtual_size: h.virtual_size,
        cluster_size: cluster,
        l1_entries: h.l1_entries,
        allocated_clusters,
        compressed_clusters,
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

    #[test]
    fn written_images_check() {
        for compress in [false, true] {
            let info = check_qcow2(Cursor::new(image(compress))).unwrap();
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
            let err = check_qcow2(Cursor::new(b)).unwrap_err().to_string();
            assert!(err.contains(want), "want {want:?}: {err}");
        }
    }
}
