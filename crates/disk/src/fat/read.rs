//! Reading files back from a FAT12/16/32 volume of unknown origin (FAT specification 1.03:
//! section 3 for the BPB and the type determination, 4 for the FAT, 6 for directory entries
//! and 7 for long names), to find a boot loader on an EFI system partition.
//!
//! The volume is untrusted: every field is checked against the volume's size before it is
//! used, and every cluster chain is followed only as far as what it holds may reach (a file's
//! size, which is read only up to the caller's limit; a directory's 65536 entries), so a loop
//! or an endless chain ends in an error, not in memory or time that grows with the volume.

use crate::{DiskSource, Error};

use super::FatType;

/// A FAT volume inside a [`DiskSource`], opened for reading.
pub struct FatReader<'a> {
    disk: &'a mut dyn DiskSource,
    /// Where the volume starts in the disk.
    base: u64,
    geo: ReadGeometry,
}

/// The layout the BPB describes, in bytes from the start of the volume.
#[derive(Debug, Clone, Copy)]
struct ReadGeometry {
    fat_type: FatType,
    fat_offset: u64,
    fat_bytes: u64,
    /// FAT12/16: the fixed root directory region.
    root_region: (u64, u64),
    /// FAT32: the root directory's first cluster.
    root_cluster: u32,
    data_offset: u64,
    cluster_bytes: u64,
    clusters: u32,
}

/// One directory entry, as the reader needs it.
#[derive(Debug, Clone)]
struct DirEntry {
    /// The long name if it has a valid one, else the 8.3 name as `NAME.EXT`.
    name: String,
    short: String,
    is_dir: bool,
    cluster: u32,
    size: u32,
}

fn corrupt(why: impl Into<String>) -> Error {
    Error::Fat(super::FatError::Corrupt(why.into()))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<'a> FatReader<'a> {
    /// Opens the volume of `size` bytes at `offset` in `disk`, checking its BPB.
    pub fn open(disk: &'a mut dyn DiskSource, offset: u64, size: u64) -> Result<Self, Error> {
        let end = offset.checked_add(size).filter(|end| *end <= disk.size());
        if end.is_none() || size < 512 {
            return Err(corrupt(format!(
                "the volume ({size} bytes at {offset}) does not fit the disk"
            )));
        }
        let mut boot = [0u8; 512];
        disk.read_exact_at(offset, &mut boot).map_err(|source| Error::Read {
            what: "FAT boot sector",
            offset,
            source,
        })?;
        let geo = ReadGeometry::parse(&boot, size)?;
        Ok(FatReader { disk, base: offset, geo })
    }

    /// The volume's FAT type.
    pub fn fat_type(&self) -> FatType {
        self.geo.fat_type
    }

    fn read_at(&mut self, what: &'static str, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let at = self.base + offset;
        self.disk.read_exact_at(at, buf).map_err(|source| Error::Read { what, offset: at, source })
    }

    /// The FAT entry of `cluster` (the first FAT).
    fn next(&mut self, cluster: u32) -> Result<u32, Error> {
        let (at, len): (u64, usize) = match self.geo.fat_type {
            FatType::Fat12 => (u64::from(cluster) * 3 / 2, 2),
            FatType::Fat16 => (u64::from(cluster) * 2, 2),
            FatType::Fat32 => (u64::from(cluster) * 4, 4),
        };
        if at + len as u64 > self.geo.fat_bytes {
            return Err(corrupt(format!("cluster {cluster} lies past the FAT")));
        }
        let mut b = [0u8; 4];
        self.read_at("FAT", self.geo.fat_offset + at, &mut b[..len])?;
        Ok(match self.geo.fat_type {
            FatType::Fat12 if cluster % 2 == 1 => u32::from(u16_at(&b, 0) >> 4),
            FatType::Fat12 => u32::from(u16_at(&b, 0) & 0x0FFF),
            FatType::Fat16 => u32::from(u16_at(&b, 0)),
            FatType::Fat32 => u32_at(&b, 0) & 0x0FFF_FFFF,
        })
    }

    /// Whether `value` ends a chain.
    fn is_end(&self, value: u32) -> bool {
        value
            >= match self.geo.fat_type {
                FatType::Fat12 => 0xFF8,
                FatType::Fat16 => 0xFFF8,
                FatType::Fat32 => 0x0FFF_FFF8,
            }
    }

    /// The clusters of the chain starting at `first`: to its end, or only the first `want`.
    /// A chain longer than the volume has clusters loops.
    fn chain(&mut self, first: u32, want: Option<u64>) -> Result<Vec<u32>, Error> {
        let mut out = Vec::new();
        let mut cluster = first;
        loop {
            if cluster < 2 || cluster - 2 >= self.geo.clusters {
                return Err(corrupt(format!("cluster {cluster} is outside the data region")));
            }
            if out.len() as u64 >= u64::from(self.geo.clusters) {
                return Err(corrupt(format!("the chain from cluster {first} loops")));
            }
            out.push(cluster);
            if want == Some(out.len() as u64) {
                return Ok(out);
            }
            let next = self.next(cluster)?;
            if self.is_end(next) {
                return Ok(out);
            }
            cluster = next;
        }
    }

    /// Bytes per cluster, as a buffer length (64 KiB at most, checked when opened).
    fn cluster_len(&self) -> usize {
        usize::try_from(self.geo.cluster_bytes).expect("64 KiB at most")
    }

    fn cluster_offset(&self, cluster: u32) -> u64 {
        self.geo.data_offset + u64::from(cluster - 2) * self.geo.cluster_bytes
    }

    /// The first `total` bytes of the chain from `first`.
    fn read_chain(&mut self, first: u32, total: u64) -> Result<Vec<u8>, Error> {
        let cb = self.geo.cluster_bytes;
        let chain = self.chain(first, Some(total.div_ceil(cb)))?;
        if chain.len() as u64 * cb < total {
            return Err(corrupt(format!(
                "the chain from cluster {first} holds {} bytes, not {total}",
                chain.len() as u64 * cb
            )));
        }
        let mut out = vec![0u8; usize::try_from(total).map_err(|_| corrupt("file too large"))?];
        for (piece, cluster) in out.chunks_mut(self.cluster_len()).zip(chain) {
            let at = self.cluster_offset(cluster);
            self.read_at("FAT file data", at, piece)?;
        }
        Ok(out)
    }

    /// The entries of the directory at `cluster` (0: the root).
    fn dir(&mut self, cluster: u32) -> Result<Vec<DirEntry>, Error> {
        let bytes = if cluster == 0 && self.geo.fat_type != FatType::Fat32 {
            let (at, len) = self.geo.root_region;
            let len = usize::try_from(len).map_err(|_| corrupt("root directory too large"))?;
            let mut buf = vec![0u8; len];
            self.read_at("FAT root directory", at, &mut buf)?;
            buf
        } else {
            let first = if cluster == 0 { self.geo.root_cluster } else { cluster };
            // 65536 entries at most (section 6): a longer chain is damage or a loop.
            let limit = (65536 * 32u64).div_ceil(self.geo.cluster_bytes) + 1;
            let chain = self.chain(first, Some(limit))?;
            if chain.len() as u64 == limit {
                return Err(corrupt(format!("the directory at cluster {first} is too large")));
            }
            let mut buf = Vec::new();
            for c in chain {
                let at = self.cluster_offset(c);
                let mut one = vec![0u8; self.cluster_len()];
                self.read_at("FAT directory", at, &mut one)?;
                buf.extend_from_slice(&one);
            }
            buf
        };
        Ok(parse_dir(&bytes, self.geo.fat_type == FatType::Fat32))
    }

    /// The bytes of the file at `path` (`/`-separated, compared without regard to case as
    /// FAT and UEFI do); `None` when there is no such file. A file of more than `max` bytes is
    /// an error.
    pub fn read_file(&mut self, path: &str, max: u64) -> Result<Option<Vec<u8>>, Error> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let Some((name, dirs)) = parts.split_last() else { return Ok(None) };
        let mut cluster = 0u32;
        for dir in dirs {
            let entries = self.dir(cluster)?;
            match entries.into_iter().find(|e| e.is_dir && e.matches(dir)) {
                Some(e) if e.cluster != 0 => cluster = e.cluster,
                _ => return Ok(None),
            }
        }
        let Some(file) = self.dir(cluster)?.into_iter().find(|e| !e.is_dir && e.matches(name))
        else {
            return Ok(None);
        };
        if u64::from(file.size) > max {
            return Err(Error::Fat(super::FatError::TooLarge {
                path: path.to_owned(),
                size: u64::from(file.size),
                max,
            }));
        }
        if file.size == 0 {
            return Ok(Some(Vec::new()));
        }
        self.read_chain(file.cluster, u64::from(file.size)).map(Some)
    }
}

impl DirEntry {
    fn matches(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name) || self.short.eq_ignore_ascii_case(name)
    }
}

impl ReadGeometry {
    /// Checks the BPB of a volume of `size` bytes (section 3.1) and derives the layout.
    fn parse(b: &[u8; 512], size: u64) -> Result<Self, Error> {
        if b[510..] != [0x55, 0xAA] {
            return Err(corrupt("no boot sector signature 55 AA"));
        }
        let bps = u64::from(u16_at(b, 11));
        let spc = u64::from(b[13]);
        let reserved = u64::from(u16_at(b, 14));
        let fats = u64::from(b[16]);
        let root_entries = u64::from(u16_at(b, 17));
        let total = match u16_at(b, 19) {
            0 => u64::from(u32_at(b, 32)),
            n => u64::from(n),
        };
        let fat_sectors = match u16_at(b, 22) {
            0 => u64::from(u32_at(b, 36)),
            n => u64::from(n),
        };
        if ![512, 1024, 2048, 4096].contains(&bps) {
            return Err(corrupt(format!("{bps} bytes per sector")));
        }
        if !spc.is_power_of_two() || spc * bps > 1 << 16 {
            return Err(corrupt(format!("{spc} sectors per cluster")));
        }
        if reserved == 0 || fats == 0 || fat_sectors == 0 {
            return Err(corrupt("no reserved sectors, FATs or FAT sectors"));
        }
        if total * bps > size {
            return Err(corrupt(format!("{total} sectors of {bps} bytes overrun the volume")));
        }
        let root_sectors = (root_entries * 32).div_ceil(bps);
        let first_data = reserved + fats * fat_sectors + root_sectors;
        if first_data >= total {
            return Err(corrupt("the FATs and root directory fill the volume"));
        }
        let clusters = (total - first_data) / spc;
        let fat_type = match clusters {
            0..4085 => FatType::Fat12,
            4085..65525 => FatType::Fat16,
            _ => FatType::Fat32,
        };
        let clusters = u32::try_from(clusters).map_err(|_| corrupt("too many clusters"))?;
        if clusters == 0 {
            return Err(corrupt("no data clusters"));
        }
        let fat_bytes = fat_sectors * bps;
        let needed = ((u64::from(clusters) + 2) * u64::from(fat_type.bits())).div_ceil(8);
        if fat_bytes < needed {
            return Err(corrupt(format!("a FAT of {fat_bytes} bytes for {clusters} clusters")));
        }
        if u16_at(b, 22) == 0 && fat_type != FatType::Fat32 {
            // A FAT32 BPB (`BPB_FATSz16` 0) on a volume whose cluster count makes it FAT12/16:
            // section 3.5 decides by the count, and such a volume reads differently elsewhere.
            return Err(corrupt(format!("a FAT32 boot sector on a {fat_type} volume")));
        }
        let root_cluster = if fat_type == FatType::Fat32 { u32_at(b, 44) } else { 0 };
        if fat_type == FatType::Fat32 && root_entries != 0 {
            return Err(corrupt("a FAT32 volume with a fixed root directory"));
        }
        Ok(ReadGeometry {
            fat_type,
            fat_offset: reserved * bps,
            fat_bytes,
            root_region: ((reserved + fats * fat_sectors) * bps, root_sectors * bps),
            root_cluster,
            data_offset: first_data * bps,
            cluster_bytes: spc * bps,
            clusters,
        })
    }
}

/// The entries of a directory's bytes, long names joined to their short entries (section 7:
/// long-name entries precede the short one in reverse order, each carrying the short name's
/// checksum). `fat32`: the high half of the first cluster is used (FAT12/16 leave it alone).
fn parse_dir(bytes: &[u8], fat32: bool) -> Vec<DirEntry> {
    let mut out = Vec::new();
    let mut long: Vec<(u8, u8, [u16; 13])> = Vec::new();
    for e in bytes.chunks_exact(32) {
        match e[0] {
            0x00 => break,
            0xE5 => {
                long.clear();
                continue;
            }
            _ => {}
        }
        let attr = e[11];
        if attr & 0x3F == 0x0F {
            let mut chars = [0u16; 13];
            for (i, at) in
                (1..11).step_by(2).chain((14..26).step_by(2)).chain((28..32).step_by(2)).enumerate()
            {
                chars[i] = u16_at(e, at);
            }
            if e[0] & 0x40 != 0 {
                // The last part comes first: a new name starts, strays before it are dropped.
                long.clear();
            }
            long.push((e[0], e[13], chars));
            continue;
        }
        if attr & 0x08 != 0 {
            long.clear();
            continue;
        }
        let short_name: &[u8; 11] = e[..11].try_into().expect("11 bytes");
        let short = short_text(short_name);
        let name = long_name(&long, short_name).unwrap_or_else(|| short.clone());
        long.clear();
        if short == "." || short == ".." {
            continue;
        }
        let hi = if fat32 { u32::from(u16_at(e, 20)) << 16 } else { 0 };
        out.push(DirEntry {
            name,
            short,
            is_dir: attr & 0x10 != 0,
            cluster: hi | u32::from(u16_at(e, 26)),
            size: u32_at(e, 28),
        });
    }
    out
}

/// `NAME.EXT` of an 8.3 entry (a first byte 0x05 stands for 0xE5).
fn short_text(raw: &[u8; 11]) -> String {
    let mut name = *raw;
    if name[0] == 0x05 {
        name[0] = 0xE5;
    }
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end_matches(' ').to_owned();
    let (base, ext) = (text(&name[..8]), text(&name[8..]));
    if ext.is_empty() { base } else { format!("{base}.{ext}") }
}

/// The long name gathered for `short`, if its entries are complete and match its checksum.
fn long_name(parts: &[(u8, u8, [u16; 13])], short: &[u8; 11]) -> Option<String> {
    if parts.is_empty() {
        return None;
    }
    let sum = short.iter().fold(0u8, |s, b| s.rotate_right(1).wrapping_add(*b));
    let count = parts.len();
    let mut units = Vec::new();
    // Stored last part first; part n has sequence number n (0x40 marks the last).
    for (i, (seq, check, chars)) in parts.iter().rev().enumerate() {
        let expect = u8::try_from(i + 1).ok()? | if i + 1 == count { 0x40 } else { 0 };
        if *seq != expect || *check != sum {
            return None;
        }
        units.extend_from_slice(chars);
    }
    let end = units.iter().position(|u| *u == 0 || *u == 0xFFFF).unwrap_or(units.len());
    String::from_utf16(&units[..end]).ok()
}
