//! The GUID Partition Table, UEFI Specification 2.10 section 5.3, with 128 entries of 128 bytes
//! (16 KiB, 32 sectors), the size every tool writes and UEFI requires as a minimum:
//!
//! ```text
//! LBA 0            protective MBR
//! LBA 1            primary header (92 bytes, rest of the sector zero)
//! LBA 2..=33       primary entry array
//! LBA 34..         usable space (partitions)
//! LBA last-32..    backup entry array (same bytes as the primary)
//! LBA last         backup header (my/alternate LBAs swapped, its own entry LBA and CRC)
//! ```
//!
//! Header fields (little-endian): 0 signature `EFI PART`, 8 revision 1.0, 12 header size 92,
//! 16 header CRC32 (over the 92 bytes with this field zero), 20 reserved, 24 my LBA,
//! 32 alternate LBA, 40 first usable LBA, 48 last usable LBA, 56 disk GUID, 72 entry array LBA,
//! 80 number of entries, 84 entry size, 88 entry array CRC32.
//!
//! Entry fields: 0 type GUID (all zero: unused), 16 unique GUID, 32 first LBA, 40 last LBA
//! (inclusive), 48 attributes, 56 name (36 UTF-16LE code units, NUL-padded).

use crate::bytes::{get_le32, get_le64, get_u8, put, put_le32, put_le64};
use crate::{DiskSource, Error, Uuid};

use super::mbr::{Mbr, PROTECTIVE_TYPE};
use super::{SECTOR_BYTES, SECTOR_SIZE, TableError, guid_from_disk, guid_to_disk};

/// Header signature.
pub const SIGNATURE: [u8; 8] = *b"EFI PART";
/// Header revision 1.0.
pub const REVISION: u32 = 0x0001_0000;
/// Header size in bytes.
pub const HEADER_SIZE: u32 = 92;
/// Bytes per entry.
pub const ENTRY_SIZE: u32 = 128;
/// Entries in the array we write.
pub const ENTRY_COUNT: u32 = 128;
/// Sectors of the entry array we write.
pub const ENTRIES_SECTORS: u64 = (ENTRY_COUNT * ENTRY_SIZE) as u64 / SECTOR_SIZE;
/// First usable LBA of the disks we write: after the MBR, the header and the array.
pub const FIRST_USABLE_LBA: u64 = 2 + ENTRIES_SECTORS;
/// Maximum length of a partition name in UTF-16 code units.
pub const NAME_UNITS: usize = 36;

/// The CRC32 of GPT (and of Ethernet, zlib and gzip): reflected polynomial `0xEDB88320`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    crc.sum()
}

/// A GPT header (primary or backup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptHeader {
    /// LBA of this header.
    pub my_lba: u64,
    /// LBA of the other header.
    pub alternate_lba: u64,
    /// First LBA a partition may use.
    pub first_usable_lba: u64,
    /// Last LBA a partition may use.
    pub last_usable_lba: u64,
    /// The disk GUID.
    pub disk_guid: Uuid,
    /// LBA of the entry array this header describes.
    pub entries_lba: u64,
    /// Number of entries in the array.
    pub entry_count: u32,
    /// Size of each entry.
    pub entry_size: u32,
    /// CRC32 of the entry array (`entry_count * entry_size` bytes).
    pub entries_crc32: u32,
}

impl GptHeader {
    /// The 512-byte sector, with the header CRC filled in.
    pub fn encode(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        put(&mut b, 0, &SIGNATURE);
        put_le32(&mut b, 8, REVISION);
        put_le32(&mut b, 12, HEADER_SIZE);
        put_le64(&mut b, 24, self.my_lba);
        put_le64(&mut b, 32, self.alternate_lba);
        put_le64(&mut b, 40, self.first_usable_lba);
        put_le64(&mut b, 48, self.last_usable_lba);
        put(&mut b, 56, &guid_to_disk(&self.disk_guid));
        put_le64(&mut b, 72, self.entries_lba);
        put_le32(&mut b, 80, self.entry_count);
        put_le32(&mut b, 84, self.entry_size);
        put_le32(&mut b, 88, self.entries_crc32);
        let crc = crc32(&b[..HEADER_SIZE as usize]);
        put_le32(&mut b, 16, crc);
        b
    }

    /// Reads a header sector, checking its signature, revision, size and CRC.
    pub fn decode(sector: &[u8]) -> Result<Self, TableError> {
        let malformed = |why: String| TableError::Malformed { what: "GPT header", why };
        if sector.len() < SECTOR_BYTES {
            return Err(malformed(format!("{} bytes instead of 512", sector.len())));
        }
        if sector[..8] != SIGNATURE {
            return Err(malformed("no `EFI PART` signature".into()));
        }
        let revision = get_le32(sector, 8);
        if revision != REVISION {
            return Err(malformed(format!("revision {revision:#010x}")));
        }
        let size = get_le32(sector, 12);
        if !(HEADER_SIZE..=512).contains(&size) {
            return Err(malformed(format!("header size {size}")));
        }
        let mut copy = sector[..size as usize].to_vec();
        put_le32(&mut copy, 16, 0);
        let (stored, computed) = (get_le32(sector, 16), crc32(&copy));
        if stored != computed {
            return Err(TableError::BadCrc { what: "GPT header", stored, computed });
        }
        if get_le32(sector, 20) != 0 {
            return Err(malformed("reserved field at byte 20 is not zero".into()));
        }
        let entry_size = get_le32(sector, 84);
        if entry_size < ENTRY_SIZE || !entry_size.is_power_of_two() {
            return Err(malformed(format!("entry size {entry_size}")));
        }
        Ok(GptHeader {
            my_lba: get_le64(sector, 24),
            alternate_lba: get_le64(sector, 32),
            first_usable_lba: get_le64(sector, 40),
            last_usable_lba: get_le64(sector, 48),
            disk_guid: guid_from_disk(get_u8(sector, 56)),
            entries_lba: get_le64(sector, 72),
            entry_count: get_le32(sector, 80),
            entry_size,
            entries_crc32: get_le32(sector, 88),
        })
    }
}

/// A used GPT entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GptEntry {
    /// The partition type GUID.
    pub type_guid: Uuid,
    /// The partition's unique GUID (Linux's PARTUUID).
    pub unique_guid: Uuid,
    /// First LBA.
    pub first_lba: u64,
    /// Last LBA, inclusive.
    pub last_lba: u64,
    /// Attribute bits (see [`ATTR_REQUIRED`](super::ATTR_REQUIRED) and the others); bits 48–63
    /// belong to the partition type.
    pub attributes: u64,
    /// The name (Linux's PARTLABEL), at most 36 UTF-16 code units.
    pub name: String,
}

impl GptEntry {
    /// The 128-byte entry.
    pub fn encode(&self) -> Result<[u8; ENTRY_SIZE as usize], TableError> {
        if self.name.contains('\0') {
            return Err(TableError::NameHasNul { name: self.name.clone() });
        }
        let units: Vec<u16> = self.name.encode_utf16().collect();
        if units.len() > NAME_UNITS {
            return Err(TableError::NameTooLong { name: self.name.clone(), units: units.len() });
        }
        let mut b = [0u8; ENTRY_SIZE as usize];
        put(&mut b, 0, &guid_to_disk(&self.type_guid));
        put(&mut b, 16, &guid_to_disk(&self.unique_guid));
        put_le64(&mut b, 32, self.first_lba);
        put_le64(&mut b, 40, self.last_lba);
        put_le64(&mut b, 48, self.attributes);
        for (i, unit) in units.iter().enumerate() {
            put(&mut b, 56 + 2 * i, &unit.to_le_bytes());
        }
        Ok(b)
    }

    /// Reads an entry; `None` for an unused one (nil type GUID).
    pub fn decode(b: &[u8]) -> Result<Option<Self>, TableError> {
        let type_guid = guid_from_disk(get_u8(b, 0));
        if type_guid.is_nil() {
            return Ok(None);
        }
        let units: Vec<u16> = (0..NAME_UNITS)
            .map(|i| u16::from_le_bytes(get_u8(b, 56 + 2 * i)))
            .take_while(|&u| u != 0)
            .collect();
        let name = String::from_utf16(&units).map_err(|_| TableError::Malformed {
            what: "GPT entry",
            why: "the name is not valid UTF-16".into(),
        })?;
        Ok(Some(GptEntry {
            type_guid,
            unique_guid: guid_from_disk(get_u8(b, 16)),
            first_lba: get_le64(b, 32),
            last_lba: get_le64(b, 40),
            attributes: get_le64(b, 48),
            name,
        }))
    }
}

/// A GUID partition table: the disk GUID and the used entries, which fill the first slots of
/// the array in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// The disk GUID.
    pub disk_guid: Uuid,
    /// The used entries, in slot order.
    pub entries: Vec<GptEntry>,
}

/// The largest entry array [`Gpt::read`] accepts: 8192 entries of 128 bytes.
pub(crate) const MAX_ENTRY_ARRAY: u64 = 1 << 20;

impl Gpt {
    /// The primary and backup headers for a disk of `total_sectors`, given the CRC of the
    /// entry array.
    pub fn headers(&self, total_sectors: u64, entries_crc32: u32) -> (GptHeader, GptHeader) {
        let last = total_sectors - 1;
        let primary = GptHeader {
            my_lba: 1,
            alternate_lba: last,
            first_usable_lba: FIRST_USABLE_LBA,
            last_usable_lba: last - ENTRIES_SECTORS - 1,
            disk_guid: self.disk_guid,
            entries_lba: 2,
            entry_count: ENTRY_COUNT,
            entry_size: ENTRY_SIZE,
            entries_crc32,
        };
        let backup = GptHeader {
            my_lba: last,
            alternate_lba: 1,
            entries_lba: last - ENTRIES_SECTORS,
            ..primary.clone()
        };
        (primary, backup)
    }

    /// The entry array: 128 entries of 128 bytes, unused ones zero.
    pub fn encode_entries(&self) -> Result<Vec<u8>, TableError> {
        if self.entries.len() > ENTRY_COUNT as usize {
            return Err(TableError::TooManyPartitions {
                count: self.entries.len(),
                max: ENTRY_COUNT as usize,
            });
        }
        let mut array = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
        for (i, e) in self.entries.iter().enumerate() {
            put(&mut array, i * ENTRY_SIZE as usize, &e.encode()?);
        }
        Ok(array)
    }

    /// The bytes of both copies for a disk of `total_sectors`: the primary (header and array,
    /// for LBA 1 to 33) and the backup (array and header, for the last 33 sectors).
    ///
    /// Checks that the GUIDs are not nil and that every entry lies in the usable range without
    /// overlapping another.
    pub fn encode(&self, total_sectors: u64) -> Result<(Vec<u8>, Vec<u8>), TableError> {
        if total_sectors < FIRST_USABLE_LBA + ENTRIES_SECTORS + 2 {
            return Err(TableError::BadDiskSize {
                size: total_sectors * SECTOR_SIZE,
                why: "too small for the two GPT copies",
            });
        }
        if self.disk_guid.is_nil() {
            return Err(TableError::NilGuid { what: "disk GUID" });
        }
        let last_usable = total_sectors - ENTRIES_SECTORS - 2;
        let mut ranges = Vec::new();
        for (i, e) in self.entries.iter().enumerate() {
            let number = i + 1;
            if e.type_guid.is_nil() {
                return Err(TableError::NilGuid { what: "partition type GUID" });
            }
            if e.unique_guid.is_nil() {
                return Err(TableError::NilGuid { what: "partition GUID" });
            }
            if e.first_lba < FIRST_USABLE_LBA || e.last_lba < e.first_lba {
                return Err(TableError::Malformed {
                    what: "GPT entry",
                    why: format!("partition {number}: LBAs {}..={}", e.first_lba, e.last_lba),
                });
            }
            if e.last_lba > last_usable {
                return Err(TableError::DoesNotFit {
                    number,
                    end: (e.last_lba + 1) * SECTOR_SIZE,
                    limit: (last_usable + 1) * SECTOR_SIZE,
                    what: "the last usable LBA of the GPT",
                });
            }
            ranges.push((e.first_lba, e.last_lba, number));
        }
        ranges.sort_unstable();
        if let Some(w) = ranges.windows(2).find(|w| w[1].0 <= w[0].1) {
            return Err(TableError::Malformed {
                what: "GPT entry",
                why: format!("partitions {} and {} overlap", w[0].2, w[1].2),
            });
        }
        let array = self.encode_entries()?;
        let (primary, backup) = self.headers(total_sectors, crc32(&array));
        let mut first = primary.encode().to_vec();
        first.extend_from_slice(&array);
        let mut second = array;
        second.extend_from_slice(&backup.encode());
        Ok((first, second))
    }

    /// Reads the GPT of `disk` and checks all of it (entry arrays of at most
    /// 1 MiB): the protective MBR, both headers and their
    /// CRCs, that they point at each other and at the disk's last LBA, and that both entry
    /// arrays are identical and match their CRCs.
    pub fn read(disk: &mut dyn DiskSource) -> Result<Gpt, Error> {
        let size = disk.size();
        let malformed = |why: String| TableError::Malformed { what: "GPT", why };
        if !size.is_multiple_of(SECTOR_SIZE)
            || size < (FIRST_USABLE_LBA + ENTRIES_SECTORS + 2) * 512
        {
            return Err(malformed(format!("disk size {size}")).into());
        }
        let last = size / SECTOR_SIZE - 1;
        let mut sector = [0u8; SECTOR_BYTES];
        let mut read = |what: &'static str, lba: u64, buf: &mut [u8]| {
            let offset = lba * SECTOR_SIZE;
            disk.read_exact_at(offset, buf).map_err(|source| Error::Read { what, offset, source })
        };

        read("protective MBR", 0, &mut sector)?;
        let mbr = Mbr::decode(&sector)?;
        match mbr.entries[0] {
            Some(e) if e.partition_type == PROTECTIVE_TYPE && e.first_lba == 1 => {}
            _ => return Err(malformed("MBR entry 1 is not a protective 0xEE entry".into()).into()),
        }

        read("GPT header", 1, &mut sector)?;
        let primary = GptHeader::decode(&sector)?;
        read("backup GPT header", last, &mut sector)?;
        let backup = GptHeader::decode(&sector)?;
        let expect = |field: &str, found: u64, want: u64| {
            if found == want {
                Ok(())
            } else {
                Err(malformed(format!("{field} is {found}, expected {want}")))
            }
        };
        expect("primary my LBA", primary.my_lba, 1)?;
        expect("primary alternate LBA", primary.alternate_lba, last)?;
        expect("backup my LBA", backup.my_lba, last)?;
        expect("backup alternate LBA", backup.alternate_lba, 1)?;
        expect("primary entry LBA", primary.entries_lba, 2)?;
        let array_len = u64::from(primary.entry_count) * u64::from(primary.entry_size);
        // Far above the 16 KiB every tool writes: a larger array is a damaged or hostile
        // header, and would be read twice into memory.
        if array_len > MAX_ENTRY_ARRAY {
            return Err(malformed(format!("an entry array of {array_len} bytes")).into());
        }
        let array_sectors = array_len.div_ceil(SECTOR_SIZE);
        let backup_entries = last
            .checked_sub(array_sectors)
            .ok_or_else(|| malformed(format!("an entry array of {array_len} bytes")))?;
        expect("backup entry LBA", backup.entries_lba, backup_entries)?;
        let same = GptHeader {
            my_lba: primary.my_lba,
            alternate_lba: primary.alternate_lba,
            entries_lba: primary.entries_lba,
            ..backup.clone()
        };
        if same != primary {
            return Err(malformed("primary and backup headers differ".into()).into());
        }
        if primary.first_usable_lba < 2 + array_sectors
            || primary.last_usable_lba >= backup.entries_lba
            || primary.first_usable_lba > primary.last_usable_lba
        {
            return Err(malformed("usable range overlaps the tables".into()).into());
        }

        let len = usize::try_from(array_len).map_err(|_| malformed("huge entry array".into()))?;
        let mut array = vec![0u8; len];
        let mut backup_array = vec![0u8; len];
        read("GPT entries", 2, &mut array)?;
        read("backup GPT entries", backup.entries_lba, &mut backup_array)?;
        for (what, bytes) in [("GPT entries", &array), ("backup GPT entries", &backup_array)] {
            let computed = crc32(bytes);
            if computed != primary.entries_crc32 {
                let stored = primary.entries_crc32;
                return Err(TableError::BadCrc { what, stored, computed }.into());
            }
        }
        if array != backup_array {
            return Err(malformed("primary and backup entries differ".into()).into());
        }
        let mut entries = Vec::new();
        for chunk in array.chunks_exact(primary.entry_size as usize) {
            entries.extend(GptEntry::decode(chunk)?);
        }
        Ok(Gpt { disk_guid: primary.disk_guid, entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    fn sample() -> Gpt {
        Gpt {
            disk_guid: Uuid::from_bytes([1; 16]),
            entries: vec![GptEntry {
                type_guid: super::super::PartitionType::EFI_SYSTEM.gpt,
                unique_guid: Uuid::from_bytes([2; 16]),
                first_lba: 2048,
                last_lba: 4095,
                attributes: 1 << 2,
                name: "EFI system".into(),
            }],
        }
    }

    #[test]
    fn layout_of_both_copies() {
        let total = 8192;
        let (primary, backup) = sample().encode(total).unwrap();
        assert_eq!(primary.len(), 33 * 512);
        assert_eq!(backup.len(), 33 * 512);
        let p = GptHeader::decode(&primary[..512]).unwrap();
        let b = GptHeader::decode(&backup[32 * 512..]).unwrap();
        assert_eq!((p.my_lba, p.alternate_lba, p.entries_lba), (1, 8191, 2));
        assert_eq!((b.my_lba, b.alternate_lba, b.entries_lba), (8191, 1, 8191 - 32));
        assert_eq!((p.first_usable_lba, p.last_usable_lba), (34, 8191 - 33));
        assert_eq!(primary[512..], backup[..32 * 512]);
        let entry = GptEntry::decode(&primary[512..640]).unwrap().unwrap();
        assert_eq!(entry, sample().entries[0]);
        assert_eq!(&primary[512 + 56..512 + 60], b"E\0F\0");
    }

    #[test]
    fn invalid_tables_are_refused() {
        let mut g = sample();
        g.entries[0].last_lba = 8191 - 33;
        assert!(g.encode(8192).is_ok(), "up to the last usable LBA");
        g.entries[0].last_lba += 1;
        assert!(matches!(g.encode(8192), Err(TableError::DoesNotFit { .. })));
        let mut g = sample();
        g.entries.push(GptEntry { first_lba: 4095, ..g.entries[0].clone() });
        assert!(g.encode(8192).unwrap_err().to_string().contains("overlap"));
        let mut g = sample();
        g.entries[0].name = "x".repeat(37);
        assert!(matches!(g.encode(8192), Err(TableError::NameTooLong { units: 37, .. })));
        g.entries[0].name = "a\0b".into();
        assert!(matches!(g.encode(8192), Err(TableError::NameHasNul { .. })));
        let g = Gpt { disk_guid: Uuid::NIL, entries: vec![] };
        assert!(matches!(g.encode(8192), Err(TableError::NilGuid { .. })));
    }
}
