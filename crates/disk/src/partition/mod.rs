//! Partition tables and partitioned disks: GPT (UEFI Specification 2.10, chapter 5, "GUID
//! Partition Table (GPT) Disk Layout") and the classic PC MBR (four primary entries of 16 bytes
//! at byte 446, the `55 AA` signature at 510).
//!
//! - [`Gpt`], [`GptHeader`] and [`GptEntry`]: the protective MBR, the primary header and entry
//!   array at LBA 1–33, the backup array and header in the last 33 sectors, with their CRC32s;
//!   [`Gpt::read`] reads a disk back and checks all of it.
//! - [`Mbr`] and [`MbrEntry`]: up to four primary partitions, the active flag, and the first
//!   440 bytes of boot code (a syslinux or GRUB MBR, installed by the caller).
//! - [`DiskBuilder`] places partitions at 1 MiB boundaries and gives a [`PartitionedDisk`]: the
//!   whole raw disk as a [`DiskSource`](crate::DiskSource) for the VHD and qcow2 writers, or
//!   written forward to any `Write`, with each partition's content read from its own source or
//!   stream. Nothing of the disk is assembled in memory or on disk; gaps and the holes of the
//!   contents are reported by `known_zero`.
//!
//! Every GUID is given by the caller (derived from input digests, see
//! [`Uuid::from_digest`](crate::Uuid::from_digest)), so the same inputs give the same bytes.
//! GUIDs are written in the text order of [`Uuid`] and stored in GPT's mixed-endian form (the
//! first three fields little-endian), so `sfdisk` prints exactly the text we were given.
//!
//! Why our own code rather than the `gptman` and `mbrman` crates: both read and write a table in
//! place on a seekable `Read + Write` device, while we need the table's bytes before the disk
//! exists, to stream it; the formats are small (two 512-byte structures, 128-byte entries and a
//! CRC32), and owning them keeps every byte, including the protective MBR's boot code,
//! deterministic and under test.

mod assemble;
mod gpt;
mod mbr;

pub use crate::compose::StreamFn;
pub use assemble::{
    DiskBuilder, DiskLayout, Partition, PartitionContent, PartitionedDisk, Placed, TableKind,
};
pub use gpt::{ENTRY_COUNT, FIRST_USABLE_LBA, Gpt, GptEntry, GptHeader, NAME_UNITS, crc32};
pub use mbr::{BOOT_CODE_SIZE, Mbr, MbrEntry, PROTECTIVE_TYPE, chs};

use crate::Uuid;

/// Bytes per logical block; every LBA counts in these.
pub const SECTOR_SIZE: u64 = 512;
/// [`SECTOR_SIZE`] as a `usize`, for buffers.
pub(crate) const SECTOR_BYTES: usize = 512;
/// Partition alignment: 1 MiB (LBA 2048), what `sfdisk`, `parted` and Windows use.
pub const ALIGNMENT: u64 = 1 << 20;
/// A disk size chosen by [`DiskBuilder`] is a multiple of this: 2 MiB, the VHD block and the
/// XenServer VDI unit (xapi rounds VDI sizes up to it, and a dynamic VHD's default block).
pub const DISK_SIZE_ALIGN: u64 = 2 << 20;

/// GPT attribute bit 0: the platform needs the partition to function.
pub const ATTR_REQUIRED: u64 = 1 << 0;
/// GPT attribute bit 1: firmware must not produce a block I/O protocol for the partition.
pub const ATTR_NO_BLOCK_IO: u64 = 1 << 1;
/// GPT attribute bit 2: legacy BIOS bootable (read by syslinux's `gptmbr.bin`).
pub const ATTR_LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// A partition's type in both table formats: a GPT type GUID and an MBR type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartitionType {
    /// The GPT partition type GUID, in text order.
    pub gpt: Uuid,
    /// The MBR type byte; 0 when the type has no MBR equivalent.
    pub mbr: u8,
}

/// A GUID from its text form, at compile time.
const fn guid(text: &str) -> Uuid {
    let t = text.as_bytes();
    assert!(t.len() == 36, "a 36-character GUID");
    let mut bytes = [0u8; 16];
    let (mut i, mut j) = (0, 0);
    while i < 36 {
        if t[i] == b'-' {
            i += 1;
            continue;
        }
        bytes[j] = (hex(t[i]) << 4) | hex(t[i + 1]);
        i += 2;
        j += 1;
    }
    assert!(j == 16, "32 hex digits");
    Uuid::from_bytes(bytes)
}

const fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => panic!("not a hex digit"),
    }
}

impl PartitionType {
    /// EFI System Partition (UEFI spec table 5-9); MBR type `0xEF`.
    pub const EFI_SYSTEM: Self =
        PartitionType { gpt: guid("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"), mbr: 0xEF };
    /// BIOS boot partition, where GRUB puts its core image on a GPT disk; GPT only.
    pub const BIOS_BOOT: Self =
        PartitionType { gpt: guid("21686148-6449-6E6F-744E-656564454649"), mbr: 0 };
    /// Linux filesystem data; MBR type `0x83`.
    pub const LINUX_FILESYSTEM: Self =
        PartitionType { gpt: guid("0FC63DAF-8483-4772-8E79-3D69D8477DE4"), mbr: 0x83 };
    /// Linux root for x86-64 (Discoverable Partitions Specification); MBR type `0x83`.
    pub const LINUX_ROOT_X86_64: Self =
        PartitionType { gpt: guid("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"), mbr: 0x83 };
    /// Linux extended boot (`XBOOTLDR`); MBR type `0xEA`.
    pub const LINUX_EXTENDED_BOOT: Self =
        PartitionType { gpt: guid("BC13C2FF-59E6-4262-A352-B275FD6F7172"), mbr: 0xEA };
    /// Linux swap; MBR type `0x82`.
    pub const LINUX_SWAP: Self =
        PartitionType { gpt: guid("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"), mbr: 0x82 };
    /// Microsoft basic data, e.g. a FAT data partition; MBR type `0x0C` (FAT32 with LBA).
    pub const BASIC_DATA: Self =
        PartitionType { gpt: guid("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"), mbr: 0x0C };

    /// A type with the given GPT GUID and MBR byte.
    pub const fn new(gpt: Uuid, mbr: u8) -> Self {
        PartitionType { gpt, mbr }
    }

    /// This type with another MBR byte, e.g. `0x0E` (FAT16 with LBA) for a FAT partition.
    #[must_use]
    pub const fn with_mbr(self, mbr: u8) -> Self {
        PartitionType { gpt: self.gpt, mbr }
    }
}

/// Why a partition table cannot be written or read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// More partitions than the table holds.
    #[error("{count} partitions do not fit a table of {max}")]
    TooManyPartitions {
        /// Partitions asked for.
        count: usize,
        /// Entries of the table.
        max: usize,
    },
    /// A GPT name longer than 36 UTF-16 code units.
    #[error("partition name {name:?} is {units} UTF-16 code units long; GPT holds 36")]
    NameTooLong {
        /// The name.
        name: String,
        /// Its length in UTF-16 code units.
        units: usize,
    },
    /// A GPT name with a NUL character, which would end it early.
    #[error("partition name {name:?} contains a NUL character")]
    NameHasNul {
        /// The name.
        name: String,
    },
    /// A GUID that must not be nil is nil.
    #[error("the {what} must not be the nil GUID")]
    NilGuid {
        /// Which GUID.
        what: &'static str,
    },
    /// A partition size of zero or not a multiple of the sector size.
    #[error("partition {number}: size {size} is not a non-zero multiple of 512 bytes")]
    BadSize {
        /// 1-based partition number.
        number: usize,
        /// The size asked for.
        size: u64,
    },
    /// A partition that does not fit the disk or the table's addressable range.
    #[error("partition {number} ends at byte {end}, past the limit of {limit} ({what})")]
    DoesNotFit {
        /// 1-based partition number.
        number: usize,
        /// Its end offset in bytes.
        end: u64,
        /// The limit in bytes.
        limit: u64,
        /// Where the limit comes from.
        what: &'static str,
    },
    /// A disk size that is not a multiple of the sector size or too small for the table.
    #[error("disk size {size} bytes: {why}")]
    BadDiskSize {
        /// The size asked for.
        size: u64,
        /// What is wrong.
        why: &'static str,
    },
    /// A partition option that the disk's table type cannot store.
    #[error("partition {number}: {why}")]
    Unsupported {
        /// 1-based partition number.
        number: usize,
        /// What cannot be stored.
        why: &'static str,
    },
    /// A partition content larger than the partition.
    #[error("partition {number}: content of {content} bytes exceeds the partition's {size}")]
    ContentTooLarge {
        /// 1-based partition number.
        number: usize,
        /// Content size.
        content: u64,
        /// Partition size.
        size: u64,
    },
    /// Boot code longer than the 440 bytes before the disk signature.
    #[error("boot code of {len} bytes exceeds the 440 bytes of the MBR")]
    BootCodeTooLong {
        /// Its length.
        len: usize,
    },
    /// A structure read back is malformed.
    #[error("{what}: {why}")]
    Malformed {
        /// Which structure.
        what: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A CRC32 read back does not match the data.
    #[error("{what}: stored CRC32 {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// Which structure.
        what: &'static str,
        /// The stored value.
        stored: u32,
        /// The value of the data.
        computed: u32,
    },
}

/// The GPT on-disk form of `guid`: the first three fields little-endian.
pub(crate) fn guid_to_disk(guid: &Uuid) -> [u8; 16] {
    let mut b = *guid.as_bytes();
    b[0..4].reverse();
    b[4..6].reverse();
    b[6..8].reverse();
    b
}

/// The text-order GUID of the GPT on-disk bytes `b`.
pub(crate) fn guid_from_disk(b: [u8; 16]) -> Uuid {
    // The swap is its own inverse.
    Uuid::from_bytes(guid_to_disk(&Uuid::from_bytes(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_guids_parse_at_compile_time() {
        assert_eq!(
            PartitionType::EFI_SYSTEM.gpt.to_string(),
            "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
        );
        assert_eq!(PartitionType::BASIC_DATA.with_mbr(0x0E).mbr, 0x0E);
    }

    #[test]
    fn guids_are_stored_mixed_endian() {
        // UEFI spec appendix A: the ESP GUID is stored as 28 73 2A C1 1F F8 D2 11 BA 4B ...
        let disk = guid_to_disk(&PartitionType::EFI_SYSTEM.gpt);
        assert_eq!(disk[..8], [0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11]);
        assert_eq!(disk[8..], [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B]);
        assert_eq!(guid_from_disk(disk), PartitionType::EFI_SYSTEM.gpt);
    }
}
