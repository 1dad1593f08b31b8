//! The dynamic VHD writer: one forward pass to any `Write`, after a scan of the source that
//! finds the 2 MiB blocks holding data (`shared/reference/vm-formats.md` sections 3.1 to 3.6).

use std::io::Write;

use camino::Utf8Path;
use xspack_io::{Progress, ProgressUnit};

use super::header::{bat_bytes, batmap_sectors};
use super::{
    BAT_UNUSED, BATMAP_HEADER_SIZE, BLOCK_SIZE, BatmapHeader, DynamicHeader, Footer,
    MAX_VIRTUAL_SIZE, SECTOR_SIZE, TABLE_OFFSET, VHD_EPOCH,
};
use crate::source::{read_at, scan};
use crate::{DiskSource, Error, Uuid};

/// Size of a block's sector bitmap: 4096 sectors, one bit each, in one sector.
const BITMAP_SIZE: usize = 512;

/// What the VHD writer needs besides the data.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VhdOptions {
    /// The footer's unique id; must not be nil. Derive it from the input digests
    /// ([`Uuid::from_digest`]) so that builds are reproducible.
    pub uuid: Uuid,
    /// Creation time written to the footer, in seconds since 1970 (`SOURCE_DATE_EPOCH`).
    /// Times before 2000, the VHD epoch, are written as 2000-01-01.
    pub source_date_epoch: u64,
}

impl VhdOptions {
    /// Options with the given id and creation time.
    pub fn new(uuid: Uuid, source_date_epoch: u64) -> Self {
        VhdOptions { uuid, source_date_epoch }
    }
}

/// What a write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VhdWriteSummary {
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Bytes written.
    pub file_size: u64,
    /// Number of 2 MiB blocks of the disk.
    pub total_blocks: u32,
    /// Number of blocks written (the others were all zeros).
    pub allocated_blocks: u32,
}

/// Where everything goes, given the size.
struct Layout {
    blocks: u32,
    bat_bytes: u64,
    batmap_header_offset: u64,
    batmap_sectors: u32,
    data_offset: u64,
}

impl Layout {
    fn new(size: u64) -> Result<Self, Error> {
        if size == 0 {
            return Err(Error::SizeZero);
        }
        if !size.is_multiple_of(u64::from(BLOCK_SIZE)) {
            return Err(Error::SizeNotMultiple { size, multiple: u64::from(BLOCK_SIZE) });
        }
        if size > MAX_VIRTUAL_SIZE {
            return Err(Error::SizeTooLarge {
                size,
                max: MAX_VIRTUAL_SIZE,
                what: "2040 GiB, the VHD limit of XenServer's SM and of qemu",
            });
        }
        let blocks = u32::try_from(size / u64::from(BLOCK_SIZE)).expect("at most 1044480");
        let bat_bytes = bat_bytes(blocks);
        let batmap_header_offset = TABLE_OFFSET + bat_bytes;
        let batmap_sectors = batmap_sectors(blocks);
        let data_offset = batmap_header_offset
            + BATMAP_HEADER_SIZE as u64
            + u64::from(batmap_sectors) * SECTOR_SIZE;
        Ok(Layout { blocks, bat_bytes, batmap_header_offset, batmap_sectors, data_offset })
    }
}

/// The footer timestamp for `epoch` seconds since 1970.
fn vhd_timestamp(epoch: u64) -> Result<u32, Error> {
    u32::try_from(epoch.saturating_sub(VHD_EPOCH)).map_err(|_| Error::TimestampOutOfRange { epoch })
}

/// Writes `source` as a dynamic VHD to `out` and returns `out` with a summary.
///
/// The source size must be a non-zero multiple of 2 MiB and at most 2040 GiB. The source is
/// read twice: once to find the all-zero blocks, which stay unallocated, and once to copy the
/// others (see the crate documentation). Output is written strictly forward.
pub fn write_vhd<S: DiskSource, W: Write>(
    mut source: S,
    mut out: W,
    opts: &VhdOptions,
    progress: &dyn Progress,
) -> Result<(W, VhdWriteSummary), Error> {
    let size = source.size();
    let layout = Layout::new(size)?;
    if opts.uuid.is_nil() {
        return Err(Error::NilUuid);
    }
    let footer = Footer::dynamic(size, opts.uuid, vhd_timestamp(opts.source_date_epoch)?).encode();

    // Pass 1: which blocks hold data.
    let mut allocated = vec![false; layout.blocks as usize];
    let block = u64::from(BLOCK_SIZE);
    scan(&mut source, progress, |offset, data| {
        debug_assert_eq!(offset % block, 0, "scan chunks are blocks");
        allocated[usize::try_from(offset / block).expect("block index")] = data.is_some();
        Ok(())
    })?;
    let allocated_blocks = allocated.iter().filter(|&&a| a).count();
    let allocated_blocks = u32::try_from(allocated_blocks).expect("at most `blocks`");

    // BAT and batmap.
    let block_sectors = (BITMAP_SIZE as u64 + block) / SECTOR_SIZE;
    let mut bat = vec![0u8; usize::try_from(layout.bat_bytes).expect("BAT fits memory")];
    let batmap_len = u64::from(layout.batmap_sectors) * SECTOR_SIZE;
    let mut batmap = vec![0u8; usize::try_from(batmap_len).expect("at most 256 KiB")];
    let mut next_sector = layout.data_offset / SECTOR_SIZE;
    for (i, &is_allocated) in allocated.iter().enumerate() {
        let entry = if is_allocated {
            batmap[i / 8] |= 0x80 >> (i % 8);
            let sector = next_sector;
            next_sector += block_sectors;
            u32::try_from(sector).expect("2040 GiB of blocks fit 32-bit sector numbers")
        } else {
            BAT_UNUSED
        };
        bat[4 * i..4 * i + 4].copy_from_slice(&entry.to_be_bytes());
    }
    let batmap_offset = layout.batmap_header_offset + BATMAP_HEADER_SIZE as u64;
    let batmap_header = BatmapHeader::new(batmap_offset, layout.batmap_sectors, &batmap);

    // Pass 2: everything, in file order.
    let file_size = layout.data_offset
        + u64::from(allocated_blocks) * block_sectors * SECTOR_SIZE
        + footer.len() as u64;
    let task = progress.task("writing VHD", Some(file_size), ProgressUnit::Bytes);
    let put = |out: &mut W, bytes: &[u8]| {
        out.write_all(bytes).map_err(Error::Write)?;
        task.advance(bytes.len() as u64);
        Ok::<_, Error>(())
    };
    put(&mut out, &footer)?;
    put(&mut out, &DynamicHeader::dynamic(layout.blocks).encode())?;
    put(&mut out, &bat)?;
    put(&mut out, &batmap_header.encode())?;
    put(&mut out, &batmap)?;
    let mut data = vec![0u8; BLOCK_SIZE as usize];
    for (i, _) in allocated.iter().enumerate().filter(|(_, a)| **a) {
        read_at(&mut source, i as u64 * block, &mut data)?;
        put(&mut out, &[0xFF; BITMAP_SIZE])?;
        put(&mut out, &data)?;
    }
    put(&mut out, &footer)?;
    out.flush().map_err(Error::Write)?;
    task.finish();
    let summary = VhdWriteSummary {
        virtual_size: size,
        file_size,
        total_blocks: layout.blocks,
        allocated_blocks,
    };
    Ok((out, summary))
}

/// Writes `source` as a dynamic VHD to a new file at `path`, atomically: the file appears
/// complete or not at all, and an existing file is never replaced.
pub fn write_vhd_file<S: DiskSource>(
    source: S,
    path: &Utf8Path,
    opts: &VhdOptions,
    progress: &dyn Progress,
) -> Result<VhdWriteSummary, Error> {
    crate::write_atomic(path, |out| {
        write_vhd(source, out, opts, progress).map(|(_, summary)| summary)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::{get_u32, get_u64};
    use xspack_io::NoProgress;

    fn opts() -> VhdOptions {
        VhdOptions::new(Uuid::from_bytes([0x42; 16]), 1_700_000_000)
    }

    #[test]
    fn empty_64_mib_matches_vhd_util_create_layout() {
        // vm-formats.md 3.1: BAT 512 bytes, batmap header at 2048, map at 2560, footer at 3072.
        let raw = vec![0u8; 64 << 20];
        let (out, summary) = write_vhd(raw.as_slice(), Vec::new(), &opts(), &NoProgress).unwrap();
        assert_eq!(out.len(), 3072 + 512);
        assert_eq!(summary.file_size, 3584);
        assert_eq!((summary.total_blocks, summary.allocated_blocks), (32, 0));
        assert_eq!(out[..512], out[3072..]);
        assert_eq!(&out[512..520], b"cxsparse");
        assert!(out[1536..1536 + 128].iter().all(|&b| b == 0xFF), "32 unused BAT entries");
        assert!(out[1536 + 128..2048].iter().all(|&b| b == 0), "BAT padded with zeros");
        assert_eq!(&out[2048..2056], b"tdbatmap");
        assert_eq!(get_u64(&out, 2056), 2560);
        assert_eq!(get_u32(&out, 2064), 1);
        assert_eq!(get_u32(&out, 2068), 0x0001_0002);
        assert_eq!(get_u32(&out, 2072), 0xFFFF_FFFF, "checksum of an all-zero map");
    }

    #[test]
    fn data_blocks_follow_the_metadata_in_order() {
        let mut raw = vec![0u8; 8 << 20];
        raw[(6 << 20) + 1] = 9;
        raw[3] = 7;
        let (out, summary) = write_vhd(raw.as_slice(), Vec::new(), &opts(), &NoProgress).unwrap();
        assert_eq!(summary.allocated_blocks, 2);
        assert_eq!(out.len() as u64, summary.file_size);
        let first = 3072 / 512;
        let stride = (512 + (2 << 20)) / 512;
        let bat: Vec<u32> = (0..4).map(|i| get_u32(&out, 1536 + 4 * i)).collect();
        assert_eq!(bat, [first, BAT_UNUSED, BAT_UNUSED, first + stride]);
        assert_eq!(out[2560], 0b1001_0000, "batmap bits, MSB first");
        let block0 = 3072;
        assert!(out[block0..block0 + 512].iter().all(|&b| b == 0xFF));
        assert_eq!(out[block0 + 512 + 3], 7);
        assert_eq!(out[block0 + 512 + (2 << 20) + 512 + 1], 9);
    }

    #[test]
    fn sizes_are_validated() {
        let check = |size: u64| Layout::new(size).err().map(|e| e.to_string());
        assert!(check(0).unwrap().contains("zero"));
        assert!(check((2 << 20) + 512).unwrap().contains("multiple of 2097152"));
        assert!(check(MAX_VIRTUAL_SIZE + (2 << 20)).unwrap().contains("2040 GiB"));
        assert!(check(MAX_VIRTUAL_SIZE).is_none());
        let nil = VhdOptions::new(Uuid::NIL, 0);
        let raw = vec![0u8; 2 << 20];
        let err = write_vhd(raw.as_slice(), Vec::new(), &nil, &NoProgress).unwrap_err();
        assert!(matches!(err, Error::NilUuid), "{err}");
    }

    #[test]
    fn timestamps() {
        assert_eq!(vhd_timestamp(0).unwrap(), 0);
        assert_eq!(vhd_timestamp(VHD_EPOCH + 5).unwrap(), 5);
        assert!(vhd_timestamp(VHD_EPOCH + (1 << 32)).is_err());
    }
}
