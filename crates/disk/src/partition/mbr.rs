//! The classic PC master boot record, sector 0 of the disk:
//!
//! ```text
//! 0    boot code (440)            executed by the BIOS; syslinux's mbr.bin or GRUB's boot.img
//! 440  disk signature (u32 LE)    Linux shows it as the disk identifier
//! 444  0 (2)
//! 446  four partition entries of 16 bytes:
//!        0 status (0x80 active, 0 inactive)   1 CHS of the first sector (3)
//!        4 type                               5 CHS of the last sector (3)
//!        8 first LBA (u32 LE)                12 number of sectors (u32 LE)
//! 510  55 AA
//! ```
//!
//! A GPT disk starts with a *protective* MBR (UEFI spec 2.10 section 5.2.3): one entry of type
//! `0xEE` from LBA 1 over the rest of the disk (capped at `0xFFFFFFFF` sectors), CHS start
//! `00 02 00`, disk signature zero.

use crate::bytes::{get_le32, put, put_le32};

use super::{SECTOR_BYTES, TableError};

/// Bytes of boot code before the disk signature.
pub const BOOT_CODE_SIZE: usize = 440;
/// The boot signature at byte 510.
pub const BOOT_SIGNATURE: [u8; 2] = [0x55, 0xAA];
/// Type byte of the protective MBR entry of a GPT disk.
pub const PROTECTIVE_TYPE: u8 = 0xEE;
/// Status byte of an active (bootable) entry.
const ACTIVE: u8 = 0x80;
/// Offset of the first partition entry.
const ENTRIES_OFFSET: usize = 446;
/// Heads and sectors per track of the CHS translation every tool uses for LBA disks.
const HEADS: u64 = 255;
const SECTORS: u64 = 63;

/// One primary partition entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MbrEntry {
    /// The active flag, which BIOS boot code uses to pick the partition to boot.
    pub bootable: bool,
    /// The type byte (never 0, which marks an unused entry).
    pub partition_type: u8,
    /// First sector.
    pub first_lba: u32,
    /// Length in sectors.
    pub sectors: u32,
}

/// A master boot record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbr {
    /// Boot code, run by the BIOS; zeros when the disk is not BIOS-bootable from the MBR.
    pub boot_code: [u8; BOOT_CODE_SIZE],
    /// The 32-bit disk signature (Linux's "Disk identifier").
    pub disk_signature: u32,
    /// The four primary entries; `None` for an unused one.
    pub entries: [Option<MbrEntry>; 4],
}

/// The CHS address of `lba` in the 255-head, 63-sector translation, as the three bytes an entry
/// stores (head; sector and the cylinder's top two bits; the cylinder's low byte). Addresses
/// past cylinder 1023 are stored as 1023/254/63, as the BIOS convention has it.
pub fn chs(lba: u64) -> [u8; 3] {
    let cylinder = lba / (HEADS * SECTORS);
    if cylinder > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let head = (lba / SECTORS) % HEADS;
    let sector = lba % SECTORS + 1;
    let [cyl_lo, cyl_hi, ..] = cylinder.to_le_bytes();
    let [head, ..] = head.to_le_bytes();
    let [sector, ..] = sector.to_le_bytes();
    [head, sector | (cyl_hi << 6), cyl_lo]
}

impl Mbr {
    /// An MBR with no boot code and no partitions.
    pub fn new(disk_signature: u32) -> Self {
        Mbr { boot_code: [0; BOOT_CODE_SIZE], disk_signature, entries: [None; 4] }
    }

    /// The protective MBR of a GPT disk of `total_sectors` sectors.
    pub fn protective(total_sectors: u64) -> Self {
        let mut mbr = Mbr::new(0);
        let sectors = u32::try_from(total_sectors - 1).unwrap_or(u32::MAX);
        mbr.entries[0] = Some(MbrEntry {
            bootable: false,
            partition_type: PROTECTIVE_TYPE,
            first_lba: 1,
            sectors,
        });
        mbr
    }

    /// Copies `code` into the boot code area (the rest stays zero).
    pub fn set_boot_code(&mut self, code: &[u8]) -> Result<(), TableError> {
        if code.len() > BOOT_CODE_SIZE {
            return Err(TableError::BootCodeTooLong { len: code.len() });
        }
        self.boot_code = [0; BOOT_CODE_SIZE];
        self.boot_code[..code.len()].copy_from_slice(code);
        Ok(())
    }

    /// The 512-byte sector.
    pub fn encode(&self) -> [u8; 512] {
        let mut b = [0u8; 512];
        put(&mut b, 0, &self.boot_code);
        put_le32(&mut b, BOOT_CODE_SIZE, self.disk_signature);
        for (i, entry) in self.entries.iter().enumerate() {
            let Some(e) = entry else { continue };
            let at = ENTRIES_OFFSET + 16 * i;
            b[at] = if e.bootable { ACTIVE } else { 0 };
            let last = u64::from(e.first_lba) + u64::from(e.sectors).max(1) - 1;
            // The protective entry's start CHS is fixed by the UEFI spec; it equals chs(1).
            put(&mut b, at + 1, &chs(u64::from(e.first_lba)));
            b[at + 4] = e.partition_type;
            put(&mut b, at + 5, &chs(last));
            put_le32(&mut b, at + 8, e.first_lba);
            put_le32(&mut b, at + 12, e.sectors);
        }
        put(&mut b, 510, &BOOT_SIGNATURE);
        b
    }

    /// Reads a sector written by [`encode`](Self::encode) or by another tool.
    pub fn decode(sector: &[u8]) -> Result<Self, TableError> {
        let malformed = |why: String| TableError::Malformed { what: "MBR", why };
        if sector.len() != SECTOR_BYTES {
            return Err(malformed(format!("{} bytes instead of 512", sector.len())));
        }
        if sector[510..] != BOOT_SIGNATURE {
            return Err(malformed("no 55 AA boot signature".into()));
        }
        let mut mbr = Mbr::new(get_le32(sector, BOOT_CODE_SIZE));
        mbr.boot_code.copy_from_slice(&sector[..BOOT_CODE_SIZE]);
        for (i, slot) in mbr.entries.iter_mut().enumerate() {
            let e = &sector[ENTRIES_OFFSET + 16 * i..][..16];
            if e[4] == 0 {
                continue;
            }
            let bootable = match e[0] {
                0 => false,
                ACTIVE => true,
                other => {
                    return Err(malformed(format!("entry {}: status byte {other:#04x}", i + 1)));
                }
            };
            *slot = Some(MbrEntry {
                bootable,
                partition_type: e[4],
                first_lba: get_le32(e, 8),
                sectors: get_le32(e, 12),
            });
        }
        Ok(mbr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_translation() {
        assert_eq!(chs(0), [0, 1, 0]);
        // The UEFI spec's protective start CHS 0x000200: head 0, sector 2, cylinder 0.
        assert_eq!(chs(1), [0, 2, 0]);
        assert_eq!(chs(2048), [32, 33, 0], "sfdisk's first partition");
        // Cylinder 256 puts bit 8 into the top bits of the sector byte.
        assert_eq!(chs(256 * 255 * 63), [0, 0x41, 0]);
        assert_eq!(chs(1024 * 255 * 63 - 1), [254, 0xFF, 0xFF]);
        assert_eq!(chs(1024 * 255 * 63), [0xFE, 0xFF, 0xFF]);
    }

    #[test]
    fn encode_decode() {
        let mut mbr = Mbr::new(0xdead_beef);
        mbr.set_boot_code(&[0xfa; 440]).unwrap();
        assert!(mbr.set_boot_code(&[0; 441]).is_err());
        mbr.entries[1] =
            Some(MbrEntry { bootable: true, partition_type: 0x83, first_lba: 2048, sectors: 4096 });
        let b = mbr.encode();
        assert_eq!(b[440..444], [0xef, 0xbe, 0xad, 0xde]);
        assert_eq!(b[462], 0x80);
        assert_eq!(b[466], 0x83);
        assert_eq!(b[510..], [0x55, 0xAA]);
        assert!(b[446..462].iter().all(|&x| x == 0), "unused entry stays zero");
        assert_eq!(Mbr::decode(&b).unwrap(), mbr);

        let mut bad = b;
        bad[462] = 0x7f;
        assert!(Mbr::decode(&bad).unwrap_err().to_string().contains("status byte 0x7f"));
        bad[511] = 0;
        assert!(Mbr::decode(&bad).is_err());
    }

    #[test]
    fn protective_mbr_caps_the_size() {
        let p = Mbr::protective(1 << 20).encode();
        // Last LBA 1048575 is cylinder 65, head 69, sector 4.
        assert_eq!(p[446..462], [0, 0, 2, 0, 0xEE, 69, 4, 65, 1, 0, 0, 0, 0xFF, 0xFF, 0x0F, 0]);
        let huge = Mbr::decode(&Mbr::protective(1 << 40).encode()).unwrap();
        assert_eq!(huge.entries[0].unwrap().sectors, u32::MAX);
    }
}
