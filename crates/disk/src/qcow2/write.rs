//! The qcow2 writer: a scan that finds (and, when compressing, sizes) the clusters holding data,
//! then one forward pass that writes the layout of `layout.rs`.

use std::io::Write;

use camino::Utf8Path;
use flate2::{Compress, Compression, FlushCompress, Status};
use xspack_io::{Progress, ProgressUnit};

use super::CLUSTER_SIZE;
use super::layout::{Cluster, Layout, Stored, TABLE_ENTRIES};
use crate::bytes::is_zero;
use crate::source::{read_at, scan};
use crate::{DiskSource, Error};

/// Cluster size as a buffer length.
const CLUSTER: usize = 1 << super::CLUSTER_BITS;
/// Largest virtual size: an L1 table of 4 Mi entries (32 MiB, qemu's `QCOW_MAX_L1_SIZE`), each
/// mapping 512 MiB.
pub const MAX_VIRTUAL_SIZE: u64 = 1 << 51;
/// Deflate window qemu uses for compressed clusters, and the largest it inflates: 4 KiB.
const WINDOW_BITS: u8 = 12;

/// How to write a qcow2 image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Qcow2Options {
    /// Deflate every data cluster that gets smaller by it (`qemu-img convert -c`).
    pub compress: bool,
}

impl Qcow2Options {
    /// Options with compression on or off.
    pub fn new(compress: bool) -> Self {
        Qcow2Options { compress }
    }
}

/// What a write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Qcow2WriteSummary {
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Bytes written.
    pub file_size: u64,
    /// Clusters written (the others were all zeros).
    pub allocated_clusters: u64,
    /// Of these, clusters stored compressed.
    pub compressed_clusters: u64,
}

/// Deflates one cluster into `out` (of capacity one cluster); the length if it got smaller.
fn deflate(compress: &mut Compress, cluster: &[u8], out: &mut Vec<u8>) -> Option<u32> {
    compress.reset();
    out.clear();
    match compress.compress_vec(cluster, out, FlushCompress::Finish) {
        Ok(Status::StreamEnd) if out.len() < CLUSTER => {
            Some(u32::try_from(out.len()).expect("under 64 KiB"))
        }
        _ => None,
    }
}

/// Reads guest cluster `index` into `buf`, zero-padding a partial last cluster.
fn read_cluster(source: &mut dyn DiskSource, index: u64, buf: &mut [u8]) -> Result<(), Error> {
    let offset = index * CLUSTER_SIZE;
    let len = usize::try_from((source.size() - offset).min(CLUSTER_SIZE)).expect("<= 64 KiB");
    buf[len..].fill(0);
    read_at(source, offset, &mut buf[..len])
}

/// Writes `source` as a qcow2 v3 image to `out` and returns `out` with a summary.
///
/// The size must be a non-zero multiple of 512. The source is read twice (see the crate
/// documentation); all-zero clusters stay unallocated. Output is written strictly forward.
pub fn write_qcow2<S: DiskSource, W: Write>(
    mut source: S,
    mut out: W,
    opts: &Qcow2Options,
    progress: &dyn Progress,
) -> Result<(W, Qcow2WriteSummary), Error> {
    let size = source.size();
    if size == 0 {
        return Err(Error::SizeZero);
    }
    if !size.is_multiple_of(512) {
        return Err(Error::SizeNotMultiple { size, multiple: 512 });
    }
    if size > MAX_VIRTUAL_SIZE {
        let what = "2 PiB, the reach of qemu's largest qcow2 L1 table";
        return Err(Error::SizeTooLarge { size, max: MAX_VIRTUAL_SIZE, what });
    }
    let mut compressor = opts
        .compress
        .then(|| Compress::new_with_window_bits(Compression::default(), false, WINDOW_BITS));
    let mut packed = Vec::with_capacity(CLUSTER);
    let mut padded = vec![0u8; CLUSTER];

    // Pass 1: the allocated clusters and how each is stored.
    let mut clusters: Vec<Cluster> = Vec::new();
    scan(&mut source, progress, |offset, chunk| {
        for (k, piece) in chunk.unwrap_or_default().chunks(CLUSTER).enumerate() {
            if is_zero(piece) {
                continue;
            }
            let stored = match compressor.as_mut() {
                None => Stored::Plain,
                Some(c) => {
                    padded[..piece.len()].copy_from_slice(piece);
                    padded[piece.len()..].fill(0);
                    deflate(c, &padded, &mut packed).map_or(Stored::Plain, Stored::Compressed)
                }
            };
            clusters.push(Cluster { index: offset / CLUSTER_SIZE + k as u64, stored });
        }
        Ok(())
    })?;
    let layout = Layout::new(size, &clusters);

    // Pass 2: everything, in file order.
    let file_size = layout.file_size();
    let task = progress.task("writing qcow2", Some(file_size), ProgressUnit::Bytes);
    let mut written = 0u64;
    let mut put = |out: &mut W, bytes: &[u8]| {
        out.write_all(bytes).map_err(Error::Write)?;
        written += bytes.len() as u64;
        task.advance(bytes.len() as u64);
        Ok::<_, Error>(())
    };
    put(&mut out, &layout.header())?;
    put(&mut out, &layout.l1_table())?;
    put(&mut out, &layout.refcount_table())?;
    for k in 0..layout.refcount_blocks() {
        put(&mut out, &layout.refcount_block(k))?;
    }
    for &l1_index in layout.l2_tables() {
        let first = clusters.partition_point(|c| c.index < l1_index * TABLE_ENTRIES);
        put(&mut out, &layout.l2_table(l1_index, &clusters, first))?;
    }
    let zeros = vec![0u8; CLUSTER];
    let mut pos = layout.data_offset();
    for (i, c) in clusters.iter().enumerate() {
        let host = layout.host_offset(i);
        let gap = usize::try_from(host - pos).expect("less than a cluster");
        put(&mut out, &zeros[..gap])?;
        read_cluster(&mut source, c.index, &mut padded)?;
        let stored: &[u8] = match (c.stored, compressor.as_mut()) {
            (Stored::Compressed(len), Some(comp)) => {
                if deflate(comp, &padded, &mut packed) != Some(len) {
                    return Err(Error::SourceChanged { offset: c.index * CLUSTER_SIZE });
                }
                &packed
            }
            _ => &padded,
        };
        put(&mut out, stored)?;
        pos = host + stored.len() as u64;
    }
    let tail = usize::try_from(file_size - pos).expect("less than a cluster");
    put(&mut out, &zeros[..tail])?;
    out.flush().map_err(Error::Write)?;
    task.finish();
    debug_assert_eq!(written, file_size);
    let compressed = clusters.iter().filter(|c| matches!(c.stored, Stored::Compressed(_)));
    let summary = Qcow2WriteSummary {
        virtual_size: size,
        file_size,
        allocated_clusters: clusters.len() as u64,
        compressed_clusters: compressed.count() as u64,
    };
    Ok((out, summary))
}

/// Writes `source` as a qcow2 v3 image to a new file at `path`, atomically: the file appears
/// complete or not at all, and an existing file is never replaced.
pub fn write_qcow2_file<S: DiskSource>(
    source: S,
    path: &Utf8Path,
    opts: &Qcow2Options,
    progress: &dyn Progress,
) -> Result<Qcow2WriteSummary, Error> {
    crate::write_atomic(path, |out| {
        write_qcow2(source, out, opts, progress).map(|(_, summary)| summary)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};
    use xspack_io::NoProgress;

    #[test]
    fn sizes_are_validated() {
        let write = |size: usize| {
            let raw = vec![0u8; size];
            write_qcow2(raw.as_slice(), Vec::new(), &Qcow2Options::default(), &NoProgress)
        };
        assert!(matches!(write(0), Err(Error::SizeZero)));
        assert!(matches!(write(1000), Err(Error::SizeNotMultiple { multiple: 512, .. })));
        let (out, summary) = write(1536).unwrap();
        assert_eq!(out.len() as u64, summary.file_size);
        assert_eq!(summary.allocated_clusters, 0);
    }

    #[test]
    fn compressed_clusters_inflate_with_qemus_window() {
        let mut raw = vec![0u8; 4 * CLUSTER];
        for (i, b) in raw[CLUSTER..2 * CLUSTER].iter_mut().enumerate() {
            *b = u8::try_from(i % 251).unwrap();
        }
        let opts = Qcow2Options::new(true);
        let (out, summary) = write_qcow2(raw.as_slice(), Vec::new(), &opts, &NoProgress).unwrap();
        assert_eq!((summary.allocated_clusters, summary.compressed_clusters), (1, 1));
        assert_eq!(out.len() as u64, summary.file_size);
        // The L2 table is the fifth cluster; entry 1 describes guest cluster 1.
        let entry = u64::from_be_bytes(out[4 * CLUSTER + 8..4 * CLUSTER + 16].try_into().unwrap());
        let host = usize::try_from(entry & ((1 << 54) - 1)).unwrap();
        let sectors = usize::try_from((entry >> 54) & 0xff).unwrap() + 1;
        let len = sectors * 512 - (host % 512);
        let mut inflate = Decompress::new_with_window_bits(false, WINDOW_BITS);
        let mut back = Vec::with_capacity(CLUSTER);
        let end = (host + len).min(out.len());
        inflate.decompress_vec(&out[host..end], &mut back, FlushDecompress::Finish).unwrap();
        assert_eq!(back, raw[CLUSTER..2 * CLUSTER]);
    }

    #[test]
    fn incompressible_clusters_are_stored_plain() {
        // A xorshift sequence does not deflate.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let raw: Vec<u8> = (0..CLUSTER)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x.to_le_bytes()[0]
            })
            .collect();
        let opts = Qcow2Options::new(true);
        let (_, summary) = write_qcow2(raw.as_slice(), Vec::new(), &opts, &NoProgress).unwrap();
        assert_eq!((summary.allocated_clusters, summary.compressed_clusters), (1, 0));
    }
}
