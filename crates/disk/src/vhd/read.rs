//! Reading a dynamic VHD back: [`VhdFile::open`] parses the footers, header, BAT and batmap and
//! enforces every rule of `check.rs` in `vhd-util check` order; [`RawReader`] streams the
//! virtual disk; [`VhdInfo`] is the summary `xspack inspect` shows.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::time::{SystemTime, UNIX_EPOCH};

use camino::Utf8Path;

use super::check::{
    BatBounds, check_bat, check_batmap, check_batmap_header, check_footer, check_footers_match,
    check_header, check_no_parent,
};
use super::header::bat_bytes;
use super::{
    BAT_UNUSED, BATMAP_COOKIE, BATMAP_HEADER_SIZE, BATMAP_VERSION, BatmapHeader, DiskType,
    DynamicHeader, FOOTER_SIZE, Footer, Geometry, HEADER_OFFSET, HEADER_SIZE, SECTOR_SIZE,
    TABLE_OFFSET, TAP_BATMAP_OPTIONAL, TAP_VERSION_OBSOLETE, VHD_EPOCH, Violation, version_text,
};
use crate::{Error, Uuid, read_exact_at};

/// Summary of a VHD, for `inspect`-style reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct VhdInfo {
    /// Disk type (always dynamic for a file [`VhdFile`] opened).
    pub disk_type: DiskType,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// File size in bytes.
    pub file_size: u64,
    /// Block size in bytes.
    pub block_size: u32,
    /// Blocks of the virtual size.
    pub total_blocks: u32,
    /// Blocks present in the file.
    pub allocated_blocks: u32,
    /// Creator application, NULs removed (`tap` for ours).
    pub creator_app: String,
    /// Creator version as `major.minor`.
    pub creator_version: String,
    /// Unique id.
    pub uuid: Uuid,
    /// Creation time in seconds since 1970.
    pub timestamp: u64,
    /// CHS geometry.
    pub geometry: Geometry,
    /// Whether the file carries a blktap batmap.
    pub batmap: bool,
}

/// A dynamic VHD whose structure passed every check.
#[derive(Debug)]
pub struct VhdFile<R> {
    inner: R,
    file_size: u64,
    footer: Footer,
    header: DynamicHeader,
    /// One entry per block of the virtual size.
    bat: Vec<u32>,
    batmap: Option<(BatmapHeader, Vec<u8>)>,
}

/// The batmap header after the BAT at `offset`, if the disk has one (`vhd_has_batmap`): `tap`
/// disks from version 1.2 on must; `tap` 1.1 disks have one when a header with the right
/// cookie and a known version is there. `footer_at` is where the footer starts if it is
/// complete, `len` the file length.
fn read_batmap_header<R: Read + Seek>(
    inner: &mut R,
    footer: &Footer,
    offset: u64,
    footer_at: u64,
    len: u64,
) -> Result<Option<BatmapHeader>, Error> {
    let mut bytes = [0u8; BATMAP_HEADER_SIZE];
    if footer.has_batmap() {
        if offset + BATMAP_HEADER_SIZE as u64 > footer_at {
            return Err(Violation::BatmapMissing { offset }.into());
        }
        read_exact_at(inner, "batmap header", offset, &mut bytes)?;
        return Ok(Some(BatmapHeader::decode(&bytes)));
    }
    let maybe = footer.creator_app[..3] == *b"tap"
        && footer.creator_version == TAP_BATMAP_OPTIONAL
        && offset + BATMAP_HEADER_SIZE as u64 <= len;
    if !maybe {
        return Ok(None);
    }
    read_exact_at(inner, "batmap header", offset, &mut bytes)?;
    let h = BatmapHeader::decode(&bytes);
    Ok((h.cookie == BATMAP_COOKIE && h.version <= BATMAP_VERSION).then_some(h))
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Smallest dynamic VHD: footer copy, header, one BAT sector, footer.
const MIN_FILE_SIZE: u64 = (2 * FOOTER_SIZE + HEADER_SIZE) as u64 + SECTOR_SIZE;

impl<R: Read + Seek> VhdFile<R> {
    /// Reads and checks the VHD in `inner`, judging timestamps against the current time.
    pub fn open(inner: R) -> Result<Self, Error> {
        Self::open_at(inner, now_unix())
    }

    /// Reads and checks the VHD in `inner`, judging timestamps against `now` (seconds since
    /// 1970). Fails with the first rule broken, as `vhd-util check` does, or with
    /// [`Error::UnsupportedVhdType`] for a valid fixed or differencing disk.
    pub fn open_at(mut inner: R, now: u64) -> Result<Self, Error> {
        let now = now.saturating_sub(VHD_EPOCH);
        let len = inner.seek(SeekFrom::End(0)).map_err(|source| Error::Read {
            what: "file size",
            offset: 0,
            source,
        })?;
        // A footer one byte short (511 bytes) is allowed, as in blktap.
        let footer_len = match len % SECTOR_SIZE {
            0 => FOOTER_SIZE,
            511 => FOOTER_SIZE - 1,
            _ => return Err(Violation::FileSize { len }.into()),
        };
        if len < MIN_FILE_SIZE {
            return Err(Violation::FileTooShort { len }.into());
        }
        let primary_offset = len - footer_len as u64;
        // Where the footer would start were it complete: the end of everything else.
        let footer_at = len.next_multiple_of(SECTOR_SIZE) - SECTOR_SIZE;
        let mut buf = [0u8; FOOTER_SIZE];
        read_exact_at(&mut inner, "footer", primary_offset, &mut buf[..footer_len])?;
        let footer = Footer::decode(&buf);
        check_footer(&footer, primary_offset, now)?;
        let disk_type = footer.disk_type().expect("checked");
        if disk_type != DiskType::Dynamic {
            return Err(Error::UnsupportedVhdType { disk_type });
        }
        read_exact_at(&mut inner, "footer copy", 0, &mut buf)?;
        let backup = Footer::decode(&buf);
        check_footer(&backup, 0, now)?;
        check_footers_match(&footer, &backup, primary_offset)?;

        let limit = footer_at.saturating_sub(HEADER_SIZE as u64);
        let header_offset = footer.data_offset;
        if header_offset < FOOTER_SIZE as u64 || header_offset > limit {
            let data_offset = header_offset;
            return Err(
                Violation::HeaderOffset { offset: primary_offset, data_offset, limit }.into()
            );
        }
        let mut header_bytes = [0u8; HEADER_SIZE];
        read_exact_at(&mut inner, "dynamic header", header_offset, &mut header_bytes)?;
        let header = DynamicHeader::decode(&header_bytes);
        // `vhd-util check` bounds the BAT and the batmap by the file length minus a full
        // footer, one byte before `footer_at` when the footer is short.
        let eof_footer = len - FOOTER_SIZE as u64;
        check_header(&header, header_offset, eof_footer)?;
        // blktap's `vhd_open`, which `vhd-util check` calls next, refuses tap 0.1 disks.
        if footer.creator_app[..3] == *b"tap" && footer.creator_version == TAP_VERSION_OBSOLETE {
            return Err(Violation::TapVersionObsolete { offset: primary_offset }.into());
        }
        check_no_parent(&header, header_offset)?;

        let block_size = u64::from(header.block_size);
        let blocks = footer.current_size.div_ceil(block_size);
        let entries = header.max_table_entries;
        if blocks > u64::from(entries) {
            let offset = header_offset;
            return Err(Violation::BatTooSmall { offset, blocks, entries }.into());
        }
        let blocks = usize::try_from(blocks).expect("at most `entries`, a u32");
        let mut raw_bat = vec![0u8; 4 * blocks];
        read_exact_at(&mut inner, "BAT", header.table_offset, &mut raw_bat)?;
        let bat: Vec<u32> = raw_bat
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")))
            .collect();

        let mut metadata_end =
            (header_offset + HEADER_SIZE as u64).max(header.table_offset + bat_bytes(entries));
        let offset = header.table_offset + bat_bytes(entries);
        let batmap_header = read_batmap_header(&mut inner, &footer, offset, footer_at, len)?;
        let batmap = if let Some(bh) = batmap_header {
            check_batmap_header(&bh, offset, entries, eof_footer)?;
            let map_len = u64::from(bh.batmap_size) * SECTOR_SIZE;
            let mut map = vec![0u8; usize::try_from(map_len).expect("within the file")];
            read_exact_at(&mut inner, "batmap", bh.batmap_offset, &mut map)?;
            check_batmap(&bh, offset, &map, &bat, footer.current_size)?;
            metadata_end = metadata_end
                .max(offset + BATMAP_HEADER_SIZE as u64)
                .max(bh.batmap_offset + map_len);
            Some((bh, map))
        } else {
            None
        };
        let bounds = BatBounds {
            table_offset: header.table_offset,
            metadata_end,
            footer: footer_at,
            block_sectors: block_size / SECTOR_SIZE + bitmap_sectors(header.block_size),
        };
        check_bat(&bat, &bounds)?;
        Ok(VhdFile { inner, file_size: len, footer, header, bat, batmap })
    }

    /// A reader of the virtual disk, from byte 0. Sectors whose bitmap bit is clear and
    /// unallocated blocks read as zeros.
    pub fn raw_reader(&mut self) -> RawReader<'_, R> {
        RawReader { vhd: self, pos: 0, bitmap: None }
    }

    /// Checks the stricter layout of a forward-only reader (xapi's `vhd-tool`, which reads a
    /// VHD as a stream: `ocaml/libs/vhd/vhd_format/f.ml` `From_input.openstream`, behind
    /// `xe vdi-import format=vhd`): header at 512, BAT at 1536, blocks in
    /// ascending file order, every sector bitmap all ones. Our writer always passes.
    pub fn check_stream_layout(&mut self) -> Result<(), Error> {
        if self.footer.data_offset != HEADER_OFFSET {
            return Err(
                Violation::StreamHeaderOffset { data_offset: self.footer.data_offset }.into()
            );
        }
        if self.header.table_offset != TABLE_OFFSET {
            let table_offset = self.header.table_offset;
            return Err(Violation::StreamTableOffset { table_offset }.into());
        }
        let mut previous: Option<u32> = None;
        for block in 0..self.bat.len() {
            let sector = self.bat[block];
            if sector == BAT_UNUSED {
                continue;
            }
            let block = u32::try_from(block).expect("BAT index fits u32");
            if let Some(previous) = previous.filter(|&p| p >= sector) {
                let offset = self.header.table_offset + 4 * u64::from(block);
                return Err(Violation::StreamBlockOrder { offset, block, sector, previous }.into());
            }
            previous = Some(sector);
            let bitmap = self.read_bitmap(block)?;
            if bitmap.iter().any(|&b| b != 0xFF) {
                let offset = u64::from(sector) * SECTOR_SIZE;
                return Err(Violation::StreamBitmap { offset, block }.into());
            }
        }
        Ok(())
    }

    fn read_bitmap(&mut self, block: u32) -> Result<Vec<u8>, Error> {
        let sector = self.bat[block as usize];
        let len = bitmap_sectors(self.header.block_size) * SECTOR_SIZE;
        let mut bitmap = vec![0u8; usize::try_from(len).expect("at most 4 KiB for 16 MiB blocks")];
        let offset = u64::from(sector) * SECTOR_SIZE;
        read_exact_at(&mut self.inner, "sector bitmap", offset, &mut bitmap)?;
        Ok(bitmap)
    }
}

impl<R> VhdFile<R> {
    /// The footer (the one at the end; the copy at 0 is identical).
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The dynamic header.
    pub fn header(&self) -> &DynamicHeader {
        &self.header
    }

    /// The BAT entries of the blocks of the virtual size: a sector number or [`BAT_UNUSED`].
    pub fn bat(&self) -> &[u32] {
        &self.bat
    }

    /// The batmap header and map: always there when the creator is `tap` 1.2 or later, and
    /// there when a valid batmap header follows the BAT of a `tap` 1.1 disk.
    pub fn batmap(&self) -> Option<(&BatmapHeader, &[u8])> {
        self.batmap.as_ref().map(|(h, m)| (h, m.as_slice()))
    }

    /// The summary.
    pub fn info(&self) -> VhdInfo {
        let f = &self.footer;
        let allocated = self.bat.iter().filter(|&&s| s != BAT_UNUSED).count();
        VhdInfo {
            disk_type: f.disk_type().expect("checked"),
            virtual_size: f.current_size,
            file_size: self.file_size,
            block_size: self.header.block_size,
            total_blocks: u32::try_from(self.bat.len()).expect("at most a u32 of entries"),
            allocated_blocks: u32::try_from(allocated).expect("at most the entries"),
            creator_app: String::from_utf8_lossy(&f.creator_app).trim_end_matches('\0').to_owned(),
            creator_version: version_text(f.creator_version),
            uuid: f.uuid,
            timestamp: u64::from(f.timestamp) + VHD_EPOCH,
            geometry: f.geometry,
            batmap: self.batmap.is_some(),
        }
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Sectors of a block's sector bitmap: one bit per sector, rounded up to whole sectors.
fn bitmap_sectors(block_size: u32) -> u64 {
    (u64::from(block_size) / SECTOR_SIZE).div_ceil(8).div_ceil(SECTOR_SIZE)
}

/// Opens and checks the VHD file at `path` (see [`VhdFile::open`]).
pub fn open_vhd_file(path: impl AsRef<Utf8Path>) -> Result<VhdFile<File>, Error> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| Error::io("opening VHD", path, e))?;
    VhdFile::open(file).map_err(|e| e.in_file(path))
}

/// The virtual disk of a [`VhdFile`] as a `Read + Seek` stream.
pub struct RawReader<'a, R> {
    vhd: &'a mut VhdFile<R>,
    pos: u64,
    /// Sector bitmap of the block last read from.
    bitmap: Option<(u32, Vec<u8>)>,
}

impl<R: Read + Seek> RawReader<'_, R> {
    fn bitmap(&mut self, block: u32) -> io::Result<&[u8]> {
        if self.bitmap.as_ref().is_none_or(|(b, _)| *b != block) {
            let bitmap = self.vhd.read_bitmap(block).map_err(io::Error::other)?;
            self.bitmap = Some((block, bitmap));
        }
        Ok(&self.bitmap.as_ref().expect("set above").1)
    }
}

impl<R: Read + Seek> Read for RawReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.vhd.footer.current_size;
        if self.pos >= size || buf.is_empty() {
            return Ok(0);
        }
        let block_size = u64::from(self.vhd.header.block_size);
        let block = u32::try_from(self.pos / block_size).expect("checked against the BAT");
        let within = self.pos % block_size;
        let want = (buf.len() as u64).min(block_size - within).min(size - self.pos);
        let sector = self.vhd.bat[block as usize];
        let n = if sector == BAT_UNUSED {
            let n = usize::try_from(want).expect("at most buf.len()");
            buf[..n].fill(0);
            n
        } else {
            // Read the run of sectors that share the first one's bitmap bit.
            let bitmap = self.bitmap(block)?;
            let bit = |s: u64| bitmap[(s / 8) as usize] & (0x80 >> (s % 8)) != 0;
            let first = within / SECTOR_SIZE;
            let last = (within + want - 1) / SECTOR_SIZE;
            let present = bit(first);
            let run_end = (first..=last).find(|&s| bit(s) != present).unwrap_or(last + 1);
            let run = (run_end * SECTOR_SIZE - within).min(want);
            let n = usize::try_from(run).expect("at most buf.len()");
            if present {
                let data = u64::from(sector) * SECTOR_SIZE
                    + bitmap_sectors(self.vhd.header.block_size) * SECTOR_SIZE
                    + within;
                self.vhd.inner.seek(SeekFrom::Start(data))?;
                self.vhd.inner.read_exact(&mut buf[..n])?;
            } else {
                buf[..n].fill(0);
            }
            n
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for RawReader<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let size = self.vhd.footer.current_size;
        let target = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the start of the disk")
        })?;
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vhd::{VhdOptions, write_vhd};
    use std::io::Cursor;
    use xspack_io::NoProgress;

    const NOW: u64 = 1_700_000_000;

    fn image(raw: &[u8]) -> Vec<u8> {
        let opts = VhdOptions::new(Uuid::from_bytes([5; 16]), NOW);
        write_vhd(raw, Vec::new(), &opts, &NoProgress).unwrap().0
    }

    #[test]
    fn partial_sector_bitmaps_read_as_zeros() {
        let raw = vec![0xABu8; 2 << 20];
        let mut img = image(&raw);
        // Clear the bits of sectors 1 and 2 (bits 6 and 5 of bitmap byte 0) of block 0.
        img[3072] = 0b1001_1111;
        let mut vhd = VhdFile::open_at(Cursor::new(img), NOW).unwrap();
        let mut back = Vec::new();
        vhd.raw_reader().read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 2 << 20);
        assert!(back[..512].iter().all(|&b| b == 0xAB));
        assert!(back[512..1536].iter().all(|&b| b == 0));
        assert!(back[1536..].iter().all(|&b| b == 0xAB));
        let err = vhd.check_stream_layout().unwrap_err();
        assert!(matches!(err.violation(), Some(Violation::StreamBitmap { block: 0, .. })), "{err}");
    }

    #[test]
    fn seek_then_read() {
        let mut raw = vec![0u8; 6 << 20];
        raw[(4 << 20) + 10..(4 << 20) + 14].copy_from_slice(b"abcd");
        let mut vhd = VhdFile::open_at(Cursor::new(image(&raw)), NOW).unwrap();
        let mut r = vhd.raw_reader();
        r.seek(SeekFrom::Start((4 << 20) + 8)).unwrap();
        let mut b = [0u8; 8];
        r.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"\0\0abcd\0\0");
        r.seek(SeekFrom::End(-2)).unwrap();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, [0, 0]);
        assert!(r.seek(SeekFrom::Current(-100 << 20)).is_err());
    }

    #[test]
    fn info_summarises() {
        let mut raw = vec![0u8; 64 << 20];
        raw[40 << 20] = 1;
        let vhd = VhdFile::open_at(Cursor::new(image(&raw)), NOW).unwrap();
        let info = vhd.info();
        assert_eq!(info.disk_type, DiskType::Dynamic);
        assert_eq!((info.virtual_size, info.block_size), (64 << 20, 2 << 20));
        assert_eq!((info.total_blocks, info.allocated_blocks), (32, 1));
        assert_eq!((info.creator_app.as_str(), info.creator_version.as_str()), ("tap", "1.3"));
        assert_eq!(info.timestamp, NOW);
        assert_eq!(info.geometry.to_string(), "963/8/17");
        assert!(info.batmap);
        assert_eq!(info.file_size, 3072 + 512 + (2 << 20) + 512);
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["disk_type"], "dynamic");
        assert_eq!(json["uuid"], "05050505-0505-0505-0505-050505050505");
    }
}
