//! The partitioned-disk assembler: places partitions at 1 MiB boundaries, writes the table, and
//! exposes the whole raw disk as a [`DiskSource`] (for the VHD and qcow2 writers) or writes it
//! forward to any `Write`. Partition contents are read from their own sources as the disk is
//! read; nothing is assembled in memory or on disk.

use std::fmt;
use std::io::{self, Write};

use camino::Utf8Path;
use xspack_io::Progress;

use crate::bytes::align_up;
use crate::compose::{Composite, StreamFn};
use crate::{DiskSource, Error, Uuid};

use super::gpt::{ENTRIES_SECTORS, ENTRY_COUNT, Gpt, GptEntry};
use super::mbr::{Mbr, MbrEntry};
use super::{ALIGNMENT, DISK_SIZE_ALIGN, PartitionType, SECTOR_SIZE, TableError};

/// The partition table type and its disk-wide id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// A GUID partition table with a protective MBR.
    Gpt {
        /// The disk GUID; must not be nil.
        disk_guid: Uuid,
    },
    /// An MBR with up to four primary partitions.
    Mbr {
        /// The 32-bit disk signature.
        disk_signature: u32,
    },
}

/// What a partition holds.
pub enum PartitionContent<'a> {
    /// Nothing: the partition reads as zeros.
    Zeros,
    /// A source read at offsets, e.g. a [`FatImage`](crate::fat::FatImage) or an ext4 image
    /// file opened as a [`FileSource`](crate::FileSource). It may be shorter than the
    /// partition; the rest reads as zeros.
    Source(Box<dyn DiskSource + 'a>),
    /// A closure that writes the content forward, at most the partition's size (the rest is
    /// zeros), e.g. a streaming ext4 writer. A disk with a stream can only be written once with
    /// [`PartitionedDisk::write_raw`]; reading the stream's range as a [`DiskSource`] fails.
    Stream(StreamFn<'a>),
}

impl fmt::Debug for PartitionContent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartitionContent::Zeros => f.write_str("Zeros"),
            PartitionContent::Source(s) => write!(f, "Source({} bytes)", s.size()),
            PartitionContent::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// One partition to place: its type, size, content, and the table fields.
#[derive(Debug)]
pub struct Partition<'a> {
    kind: PartitionType,
    size: Option<u64>,
    name: String,
    guid: Uuid,
    attributes: u64,
    bootable: bool,
    content: PartitionContent<'a>,
}

impl<'a> Partition<'a> {
    /// A partition of `size` bytes (a non-zero multiple of 512), all zeros until a content is
    /// given.
    pub fn new(kind: PartitionType, size: u64) -> Self {
        Partition {
            kind,
            size: Some(size),
            name: String::new(),
            guid: Uuid::NIL,
            attributes: 0,
            bootable: false,
            content: PartitionContent::Zeros,
        }
    }

    /// A last partition that takes the rest of the disk; the disk size must then be given
    /// ([`DiskBuilder::size`]).
    pub fn fill(kind: PartitionType) -> Self {
        Partition { size: None, ..Partition::new(kind, 0) }
    }

    /// GPT: the partition name (at most 36 UTF-16 code units).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// GPT: the unique partition GUID (required on GPT; derive it from input digests).
    #[must_use]
    pub fn guid(mut self, guid: Uuid) -> Self {
        self.guid = guid;
        self
    }

    /// GPT: the attribute bits, e.g. [`ATTR_LEGACY_BIOS_BOOTABLE`](super::ATTR_LEGACY_BIOS_BOOTABLE).
    #[must_use]
    pub fn attributes(mut self, attributes: u64) -> Self {
        self.attributes = attributes;
        self
    }

    /// MBR: the active flag.
    #[must_use]
    pub fn bootable(mut self, bootable: bool) -> Self {
        self.bootable = bootable;
        self
    }

    /// The content, read from `source` at offsets.
    #[must_use]
    pub fn source(mut self, source: impl DiskSource + 'a) -> Self {
        self.content = PartitionContent::Source(Box::new(source));
        self
    }

    /// The content, written forward by `write` (see [`PartitionContent::Stream`]).
    #[must_use]
    pub fn stream(mut self, write: impl FnOnce(&mut dyn Write) -> io::Result<()> + 'a) -> Self {
        self.content = PartitionContent::Stream(Box::new(write));
        self
    }

    /// The content.
    #[must_use]
    pub fn content(mut self, content: PartitionContent<'a>) -> Self {
        self.content = content;
        self
    }
}

/// Where a partition was placed, and its table fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// 1-based partition number (`/dev/sda1` is 1).
    pub number: usize,
    /// Byte offset on the disk, a multiple of [`ALIGNMENT`].
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// The type.
    pub kind: PartitionType,
    /// GPT unique GUID (nil on MBR).
    pub guid: Uuid,
    /// GPT name.
    pub name: String,
    /// GPT attribute bits.
    pub attributes: u64,
    /// MBR active flag.
    pub bootable: bool,
}

impl Placed {
    /// First sector.
    pub fn first_lba(&self) -> u64 {
        self.offset / SECTOR_SIZE
    }

    /// Last sector, inclusive.
    pub fn last_lba(&self) -> u64 {
        (self.offset + self.size) / SECTOR_SIZE - 1
    }
}

/// The disk's table and where everything went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskLayout {
    /// Disk size in bytes.
    pub size: u64,
    /// The table type.
    pub table: TableKind,
    /// The partitions, in table order.
    pub partitions: Vec<Placed>,
}

/// Describes a partitioned disk; [`build`](Self::build) lays it out.
#[derive(Debug)]
pub struct DiskBuilder<'a> {
    table: TableKind,
    size: Option<u64>,
    boot_code: Vec<u8>,
    partitions: Vec<Partition<'a>>,
}

impl<'a> DiskBuilder<'a> {
    /// A GPT disk.
    pub fn gpt(disk_guid: Uuid) -> Self {
        DiskBuilder::new(TableKind::Gpt { disk_guid })
    }

    /// An MBR disk.
    pub fn mbr(disk_signature: u32) -> Self {
        DiskBuilder::new(TableKind::Mbr { disk_signature })
    }

    fn new(table: TableKind) -> Self {
        DiskBuilder { table, size: None, boot_code: Vec::new(), partitions: Vec::new() }
    }

    /// The disk size in bytes (a multiple of 512). Without it the disk ends after the last
    /// partition (and the backup GPT), rounded up to [`DISK_SIZE_ALIGN`].
    #[must_use]
    pub fn size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    /// Boot code for the first 440 bytes of sector 0 (of the protective MBR on GPT), e.g.
    /// syslinux's `mbr.bin` or `gptmbr.bin`.
    #[must_use]
    pub fn boot_code(mut self, code: &[u8]) -> Self {
        self.boot_code = code.to_vec();
        self
    }

    /// Appends a partition; each starts at the next 1 MiB boundary after the previous one.
    #[must_use]
    pub fn partition(mut self, partition: Partition<'a>) -> Self {
        self.partitions.push(partition);
        self
    }

    /// Lays the disk out and checks it against the table's rules.
    pub fn build(self) -> Result<PartitionedDisk<'a>, Error> {
        let gpt = matches!(self.table, TableKind::Gpt { .. });
        let max = if gpt { ENTRY_COUNT as usize } else { 4 };
        let count = self.partitions.len();
        if count > max {
            return Err(TableError::TooManyPartitions { count, max }.into());
        }
        // Bytes after the last usable sector: the backup GPT.
        let trailer = if gpt { (ENTRIES_SECTORS + 1) * SECTOR_SIZE } else { 0 };
        if let Some(size) = self.size
            && (!size.is_multiple_of(SECTOR_SIZE) || size < ALIGNMENT + trailer)
        {
            let why = "not a multiple of 512 or smaller than 1 MiB and the tables";
            return Err(TableError::BadDiskSize { size, why }.into());
        }

        let mut placed = Vec::with_capacity(count);
        let mut contents = Vec::with_capacity(count);
        let mut end = ALIGNMENT;
        for (i, p) in self.partitions.into_iter().enumerate() {
            let number = i + 1;
            let offset = align_up(end, ALIGNMENT);
            let size = match (p.size, self.size) {
                (Some(size), _) => size,
                (None, _) if number != count => {
                    let why = "only the last partition can fill the disk";
                    return Err(TableError::Unsupported { number, why }.into());
                }
                (None, None) => {
                    let why = "a partition that fills the disk needs a disk size";
                    return Err(TableError::Unsupported { number, why }.into());
                }
                (None, Some(disk)) => (disk - trailer).saturating_sub(offset),
            };
            if size == 0 || !size.is_multiple_of(SECTOR_SIZE) {
                return Err(TableError::BadSize { number, size }.into());
            }
            check_fields(&p, number, gpt)?;
            let content_size = match &p.content {
                PartitionContent::Source(s) => s.size(),
                PartitionContent::Zeros | PartitionContent::Stream(_) => 0,
            };
            if content_size > size {
                return Err(
                    TableError::ContentTooLarge { number, content: content_size, size }.into()
                );
            }
            end = offset + size;
            placed.push(Placed {
                number,
                offset,
                size,
                kind: p.kind,
                guid: p.guid,
                name: p.name,
                attributes: p.attributes,
                bootable: p.bootable,
            });
            contents.push(p.content);
        }

        let size = self.size.unwrap_or_else(|| align_up(end + trailer, DISK_SIZE_ALIGN));
        let total_sectors = size / SECTOR_SIZE;
        let (limit, what) = if gpt {
            (size - trailer, "the last usable LBA of the GPT")
        } else {
            (size.min(u64::from(u32::MAX) * SECTOR_SIZE), "the disk end or the MBR's 2 TiB")
        };
        if let Some(p) = placed.iter().find(|p| p.offset + p.size > limit) {
            let end = p.offset + p.size;
            return Err(TableError::DoesNotFit { number: p.number, end, limit, what }.into());
        }

        let (head, backup) = encode_tables(self.table, &self.boot_code, &placed, total_sectors)?;
        let mut disk = Composite::new(size);
        disk.push_source(0, head);
        for (p, content) in placed.iter().zip(contents) {
            match content {
                PartitionContent::Zeros => {}
                PartitionContent::Source(source) => disk.push_source(p.offset, source),
                PartitionContent::Stream(write) => disk.push_stream(p.offset, p.size, write),
            }
        }
        if let Some(backup) = backup {
            disk.push_source(size - trailer, backup);
        }
        let layout = DiskLayout { size, table: self.table, partitions: placed };
        Ok(PartitionedDisk { layout, disk })
    }
}

/// The bytes at the start of the disk (MBR, and for GPT the primary header and entries) and,
/// for GPT, the backup entries and header for the end.
fn encode_tables(
    table: TableKind,
    boot_code: &[u8],
    placed: &[Placed],
    total_sectors: u64,
) -> Result<(Vec<u8>, Option<Vec<u8>>), TableError> {
    match table {
        TableKind::Gpt { disk_guid } => {
            let entries = placed.iter().map(gpt_entry).collect();
            let (primary, backup) = Gpt { disk_guid, entries }.encode(total_sectors)?;
            let mut pmbr = Mbr::protective(total_sectors);
            pmbr.set_boot_code(boot_code)?;
            let mut head = pmbr.encode().to_vec();
            head.extend_from_slice(&primary);
            Ok((head, Some(backup)))
        }
        TableKind::Mbr { disk_signature } => {
            let mut mbr = Mbr::new(disk_signature);
            mbr.set_boot_code(boot_code)?;
            for (slot, p) in mbr.entries.iter_mut().zip(placed) {
                *slot = Some(MbrEntry {
                    bootable: p.bootable,
                    partition_type: p.kind.mbr,
                    first_lba: u32::try_from(p.first_lba()).expect("checked against 2 TiB"),
                    sectors: u32::try_from(p.size / SECTOR_SIZE).expect("checked"),
                });
            }
            Ok((mbr.encode().to_vec(), None))
        }
    }
}

/// Refuses fields the table type cannot store, and nil GPT GUIDs.
fn check_fields(p: &Partition<'_>, number: usize, gpt: bool) -> Result<(), TableError> {
    let unsupported = |why| Err(TableError::Unsupported { number, why });
    if gpt {
        if p.bootable {
            return unsupported(
                "GPT has no active flag; set the legacy BIOS bootable attribute instead",
            );
        }
        if p.guid.is_nil() {
            return Err(TableError::NilGuid { what: "partition GUID" });
        }
    } else {
        if !p.name.is_empty() || p.attributes != 0 || !p.guid.is_nil() {
            return unsupported("names, GUIDs and attributes exist only in GPT");
        }
        if p.kind.mbr == 0 {
            return unsupported("the partition type has no MBR type byte");
        }
    }
    Ok(())
}

fn gpt_entry(p: &Placed) -> GptEntry {
    GptEntry {
        type_guid: p.kind.gpt,
        unique_guid: p.guid,
        first_lba: p.first_lba(),
        last_lba: p.last_lba(),
        attributes: p.attributes,
        name: p.name.clone(),
    }
}

/// A laid-out partitioned disk: a [`DiskSource`] of the whole raw disk, or written forward with
/// [`write_raw`](Self::write_raw).
pub struct PartitionedDisk<'a> {
    layout: DiskLayout,
    disk: Composite<'a>,
}

impl fmt::Debug for PartitionedDisk<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionedDisk").field("layout", &self.layout).finish_non_exhaustive()
    }
}

impl PartitionedDisk<'_> {
    /// Where everything went.
    pub fn layout(&self) -> &DiskLayout {
        &self.layout
    }

    /// Writes the raw disk forward to `out` (gaps as zeros) and returns `out`.
    pub fn write_raw<W: Write>(mut self, mut out: W, progress: &dyn Progress) -> Result<W, Error> {
        self.disk.write_to(&mut out, "writing raw disk", progress)?;
        Ok(out)
    }

    /// Writes the raw disk to a new file at `path`, atomically (see
    /// [`write_vhd_file`](crate::vhd::write_vhd_file)).
    pub fn write_raw_file(self, path: &Utf8Path, progress: &dyn Progress) -> Result<(), Error> {
        crate::write_atomic(path, |out| self.write_raw(out, progress).map(|_| ()))
    }
}

impl DiskSource for PartitionedDisk<'_> {
    fn size(&self) -> u64 {
        self.layout.size
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.disk.read_exact_at(offset, buf)
    }

    fn known_zero(&mut self, offset: u64, len: u64) -> io::Result<bool> {
        self.disk.known_zero(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::ATTR_LEGACY_BIOS_BOOTABLE;

    fn guid(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    #[test]
    fn gpt_layout_is_aligned_and_sized() {
        let disk = DiskBuilder::gpt(guid(1))
            .partition(Partition::new(PartitionType::EFI_SYSTEM, 3 << 20).guid(guid(2)))
            .partition(Partition::new(PartitionType::LINUX_FILESYSTEM, 512).guid(guid(3)))
            .partition(Partition::new(PartitionType::BIOS_BOOT, 1 << 20).guid(guid(4)))
            .build()
            .unwrap();
        let l = disk.layout();
        let offsets: Vec<_> = l.partitions.iter().map(|p| (p.offset, p.size)).collect();
        assert_eq!(offsets, [(1 << 20, 3 << 20), (4 << 20, 512), (5 << 20, 1 << 20)]);
        // 6 MiB of partitions plus the backup GPT, rounded up to 2 MiB.
        assert_eq!(l.size, 8 << 20);
        assert_eq!(l.partitions[1].last_lba(), 8192);
    }

    #[test]
    fn fill_takes_the_rest() {
        let disk = DiskBuilder::gpt(guid(1))
            .size(10 << 20)
            .partition(Partition::fill(PartitionType::LINUX_FILESYSTEM).guid(guid(2)))
            .build()
            .unwrap();
        let p = &disk.layout().partitions[0];
        assert_eq!((p.first_lba(), p.last_lba()), (2048, 20480 - 34));
        let mbr = DiskBuilder::mbr(7)
            .size(10 << 20)
            .partition(Partition::fill(PartitionType::LINUX_FILESYSTEM))
            .build()
            .unwrap();
        assert_eq!(mbr.layout().partitions[0].size, 9 << 20);
    }

    #[test]
    fn table_rules_are_enforced() {
        let err = |b: DiskBuilder<'_>| b.build().unwrap_err().to_string();
        let esp = || Partition::new(PartitionType::EFI_SYSTEM, 1 << 20);
        assert!(err(DiskBuilder::gpt(guid(1)).partition(esp())).contains("nil GUID"));
        assert!(
            err(DiskBuilder::gpt(guid(1)).partition(esp().guid(guid(2)).bootable(true)))
                .contains("active flag")
        );
        assert!(err(DiskBuilder::mbr(1).partition(esp().name("x"))).contains("only in GPT"));
        assert!(
            err(DiskBuilder::mbr(1).partition(Partition::new(PartitionType::BIOS_BOOT, 1 << 20)))
                .contains("no MBR type byte")
        );
        let five = (0..5).fold(DiskBuilder::mbr(1), |b, _| b.partition(esp()));
        assert!(err(five).contains("5 partitions do not fit a table of 4"));
        assert!(
            err(DiskBuilder::mbr(1).partition(Partition::new(PartitionType::EFI_SYSTEM, 100)))
                .contains("multiple of 512")
        );
        assert!(
            err(DiskBuilder::mbr(1).size(2 << 20).partition(esp()).partition(esp()))
                .contains("past the limit")
        );
        let big = esp().source(vec![1u8; (1 << 20) + 1]);
        assert!(err(DiskBuilder::mbr(1).partition(big)).contains("exceeds the partition"));
        assert!(err(DiskBuilder::mbr(1).boot_code(&[0; 441])).contains("440 bytes"));
        assert!(
            err(DiskBuilder::mbr(1)
                .partition(Partition::fill(PartitionType::LINUX_SWAP))
                .partition(esp()))
            .contains("only the last")
        );
        let ok = DiskBuilder::gpt(guid(1))
            .partition(esp().guid(guid(2)).attributes(ATTR_LEGACY_BIOS_BOOTABLE))
            .build();
        assert!(ok.is_ok());
    }

    #[test]
    fn holes_of_the_content_are_known_zero() {
        use std::os::unix::fs::FileExt as _;
        let file = tempfile::tempfile().unwrap();
        file.set_len(4 << 20).unwrap();
        file.write_all_at(b"data", 3 << 20).unwrap();
        let content = crate::FileSource::from_file(file).unwrap();
        let mut disk = DiskBuilder::gpt(guid(1))
            .partition(Partition::new(PartitionType::LINUX_FILESYSTEM, 8 << 20).guid(guid(2)))
            .partition(
                Partition::new(PartitionType::LINUX_FILESYSTEM, 4 << 20)
                    .guid(guid(3))
                    .source(content),
            )
            .build()
            .unwrap();
        let at = disk.layout().partitions[1].offset;
        assert!(disk.known_zero(0, 512).is_ok_and(|z| !z), "the tables");
        assert!(disk.known_zero(1 << 20, 8 << 20).unwrap(), "an empty partition");
        // The file's hole (tmpfs and ext4 report it; see source.rs) and the data after it.
        assert!(disk.known_zero(at, 2 << 20).unwrap(), "a hole of the content");
        assert!(!disk.known_zero(at + (3 << 20), 4096).unwrap());
        let mut buf = [0u8; 4];
        disk.read_exact_at(at + (3 << 20), &mut buf).unwrap();
        assert_eq!(&buf, b"data");
    }

    #[test]
    fn contents_land_at_their_offsets() {
        let mut disk = DiskBuilder::mbr(0x1234_5678)
            .boot_code(b"BOOT")
            .partition(
                Partition::new(PartitionType::EFI_SYSTEM, 1 << 20)
                    .bootable(true)
                    .source(b"fat".to_vec()),
            )
            .partition(Partition::new(PartitionType::LINUX_FILESYSTEM, 1 << 20))
            .build()
            .unwrap();
        let mut head = [0u8; 512];
        disk.read_exact_at(0, &mut head).unwrap();
        assert_eq!(&head[..4], b"BOOT");
        let mbr = Mbr::decode(&head).unwrap();
        assert_eq!(mbr.disk_signature, 0x1234_5678);
        assert!(mbr.entries[0].unwrap().bootable);
        let mut buf = [0u8; 4];
        disk.read_exact_at(1 << 20, &mut buf).unwrap();
        assert_eq!(&buf, b"fat\0");
        assert!(disk.known_zero(512, (1 << 20) - 512).unwrap());
        assert!(disk.known_zero(2 << 20, 2 << 20).unwrap(), "empty partition and tail");
        let raw = disk.write_raw(Vec::new(), &xspack_io::NoProgress).unwrap();
        assert_eq!(raw.len(), 4 << 20);
        assert_eq!(&raw[1 << 20..(1 << 20) + 3], b"fat");
    }
}
