//! The dynamic VHD writer: one forward pass to any `Write`, after a scan of the source that
//! finds the 2 MiB blocks holding data, in the layout of [`crate::vhd`] (the file order of
//! blktap's `vhd-util create`, `vhd/lib/libvhd.c` `vhd_create`).

use std::io::Write;

use camino::Utf8Path;
use xspack_io::{Progress, ProgressUnit};

use super::header::{bat_bytes, batmap_sectors};
use super::{
    BAT_UNUSED, BATMAP_HEADER_SIZE, BLOCK_SIZE, BatmapHeader, DynamicHeader, Footer,
    MAX_VIRTUAL_SIZE, SECTOR_SIZE, TABLE_OFFSET, VHD_EPOCH,
};
use crate::bytes::is_zero;
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
    out: W,
    opts: &VhdOptions,
    progress: &dyn Progress,
) -> Result<(W, VhdWriteSummary), Error> {
    let size = source.size();
    let layout = Layout::new(size)?;
    if opts.uuid.is_nil() {
        return Err(Error::NilUuid);
    }
    // Pass 1: which blocks hold data.
    let mut allocated = vec![false; layout.blocks as usize];
    let block = u64::from(BLOCK_SIZE);
    scan(&mut source, progress, |offset, data| {
        debug_assert_eq!(offset % block, 0, "scan chunks are blocks");
        allocated[usize::try_from(offset / block).expect("block index")] = data.is_some();
        Ok(())
    })?;
    // Pass 2: everything, in file order.
    let mut stream = VhdStream::new(out, size, allocated, opts, progress)?;
    let mut data = vec![0u8; BLOCK_SIZE as usize];
    for i in 0..stream.allocated.len() {
        if stream.allocated[i] {
            read_at(&mut source, i as u64 * block, &mut data)?;
            stream.write_block(&data)?;
        }
    }
    stream.pos = size;
    stream.finish()
}

/// A dynamic VHD written in one forward pass from the raw disk's bytes, given up front which
/// 2 MiB blocks hold data: the allocation table comes before the data, so the writer of the
/// raw bytes must know that before writing them (an ext4 plan does, see
/// `xspack_ext4::Plan::nonzero_map`). The raw disk is then written into it as a [`Write`],
/// front to back; blocks marked empty are checked to be zeros and dropped, and blocks marked
/// as holding data are checked to hold some, so the output is the same as [`write_vhd`]'s for
/// the same bytes. Memory is one 2 MiB block at most (held only by [`write_vhd`]).
pub struct VhdStream<W: Write> {
    out: W,
    footer: [u8; 512],
    size: u64,
    allocated: Vec<bool>,
    allocated_blocks: u32,
    file_size: u64,
    /// Raw bytes received so far.
    pos: u64,
    /// Whether the current block (when allocated) has shown a non-zero byte yet.
    seen_data: bool,
    task: Box<dyn xspack_io::ProgressTask>,
}

impl<W: Write> VhdStream<W> {
    /// Writes the VHD's metadata for a disk of `size` bytes whose 2 MiB blocks holding data
    /// are flagged in `allocated` (one flag per block), and returns the stream that takes the
    /// raw bytes.
    pub fn new(
        mut out: W,
        size: u64,
        allocated: Vec<bool>,
        opts: &VhdOptions,
        progress: &dyn Progress,
    ) -> Result<Self, Error> {
        let layout = Layout::new(size)?;
        if opts.uuid.is_nil() {
            return Err(Error::NilUuid);
        }
        if allocated.len() != layout.blocks as usize {
            return Err(Error::Write(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} block flags for {} blocks", allocated.len(), layout.blocks),
            )));
        }
        let footer =
            Footer::dynamic(size, opts.uuid, vhd_timestamp(opts.source_date_epoch)?).encode();
        let allocated_blocks = allocated.iter().filter(|&&a| a).count();
        let allocated_blocks = u32::try_from(allocated_blocks).expect("at most `blocks`");

        // BAT and batmap.
        let block = u64::from(BLOCK_SIZE);
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
        let batmap_header = BatmapHeader::new(batmap_offset, layout.batmap_sectors, &batmap, size);

        let file_size = layout.data_offset
            + u64::from(allocated_blocks) * block_sectors * SECTOR_SIZE
            + footer.len() as u64;
        let task = progress.task("writing VHD", Some(file_size), ProgressUnit::Bytes);
        for bytes in [
            &footer[..],
            &DynamicHeader::dynamic(layout.blocks).encode(),
            &bat,
            &batmap_header.encode(),
            &batmap,
        ] {
            out.write_all(bytes).map_err(Error::Write)?;
            task.advance(bytes.len() as u64);
        }
        Ok(VhdStream {
            out,
            footer,
            size,
            allocated,
            allocated_blocks,
            file_size,
            pos: 0,
            seen_data: false,
            task,
        })
    }

    /// Writes allocated block `i` whole (the two-pass writer's path).
    fn write_block(&mut self, data: &[u8]) -> Result<(), Error> {
        self.out.write_all(&[0xFF; BITMAP_SIZE]).map_err(Error::Write)?;
        self.out.write_all(data).map_err(Error::Write)?;
        self.task.advance((BITMAP_SIZE + data.len()) as u64);
        Ok(())
    }

    /// Checks that the whole disk was written, writes the footer and returns the output.
    pub fn finish(mut self) -> Result<(W, VhdWriteSummary), Error> {
        if self.pos != self.size {
            return Err(Error::Write(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} of the disk's {} bytes were written", self.pos, self.size),
            )));
        }
        self.out.write_all(&self.footer).map_err(Error::Write)?;
        self.out.flush().map_err(Error::Write)?;
        self.task.advance(self.footer.len() as u64);
        self.task.finish();
        let summary = VhdWriteSummary {
            virtual_size: self.size,
            file_size: self.file_size,
            total_blocks: u32::try_from(self.allocated.len()).expect("at most 1044480"),
            allocated_blocks: self.allocated_blocks,
        };
        Ok((self.out, summary))
    }

    /// The output, for callers that need to look at it (e.g. its length) while writing.
    pub fn get_ref(&self) -> &W {
        &self.out
    }
}

fn mispredicted(offset: u64, what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("VHD block at disk offset {offset}: {what}"),
    )
}

impl<W: Write> Write for VhdStream<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let block = u64::from(BLOCK_SIZE);
        if self.pos >= self.size {
            return if buf.is_empty() {
                Ok(0)
            } else {
                Err(mispredicted(self.pos, "data past the end of the disk"))
            };
        }
        let index = usize::try_from(self.pos / block).expect("block index");
        let within = self.pos % block;
        let n = usize::try_from((block - within).min(buf.len() as u64)).expect("<= 2 MiB");
        let piece = &buf[..n];
        if self.allocated[index] {
            if within == 0 {
                self.out.write_all(&[0xFF; BITMAP_SIZE])?;
                self.task.advance(BITMAP_SIZE as u64);
                self.seen_data = false;
            }
            self.out.write_all(piece)?;
            self.task.advance(n as u64);
            if !self.seen_data {
                self.seen_data = !is_zero(piece);
            }
            if within + n as u64 == block && !self.seen_data {
                return Err(mispredicted(index as u64 * block, "marked as data but all zeros"));
            }
        } else if !is_zero(piece) {
            return Err(mispredicted(index as u64 * block, "marked empty but holds data"));
        }
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
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
        // `docs/formats/vhd.md` section "Layout": BAT 512 bytes, batmap header at 2048, map at
        // 2560, footer at 3072.
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
    fn stream_writes_the_same_bytes_as_the_two_pass_writer() {
        let mut raw = vec![0u8; 10 << 20];
        raw[(2 << 20) + 7] = 1;
        raw[(10 << 20) - 1] = 2;
        raw[(4 << 20)..(5 << 20)].fill(3);
        let (want, want_summary) =
            write_vhd(raw.as_slice(), Vec::new(), &opts(), &NoProgress).unwrap();
        let allocated: Vec<bool> = raw.chunks(2 << 20).map(|c| !is_zero(c)).collect();
        let mut stream =
            VhdStream::new(Vec::new(), raw.len() as u64, allocated.clone(), &opts(), &NoProgress)
                .unwrap();
        for piece in raw.chunks(777_777) {
            stream.write_all(piece).unwrap();
        }
        let (got, summary) = stream.finish().unwrap();
        assert!(got == want);
        assert_eq!(summary, want_summary);

        // A wrong map is an error, never a different image.
        let mut wrong = allocated.clone();
        wrong[1] = false;
        let mut s =
            VhdStream::new(Vec::new(), raw.len() as u64, wrong, &opts(), &NoProgress).unwrap();
        assert!(s.write_all(&raw).is_err(), "data in a block marked empty");
        let mut wrong = allocated.clone();
        wrong[0] = true;
        let mut s =
            VhdStream::new(Vec::new(), raw.len() as u64, wrong, &opts(), &NoProgress).unwrap();
        assert!(s.write_all(&raw).is_err(), "zeros in a block marked as data");
        let mut s =
            VhdStream::new(Vec::new(), raw.len() as u64, allocated, &opts(), &NoProgress).unwrap();
        s.write_all(&raw[..4096]).unwrap();
        assert!(s.finish().is_err(), "short disk");
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
