//! The volume geometry (FAT specification section 3.5: type, cluster size, FAT size) and the
//! reserved sectors that describe it: the boot sector with its BPB (section 3) and, on FAT32,
//! the `FSInfo` sector (section 5) and the backup copies of both.

use crate::bytes::{put, put_le16, put_le32};

use super::{FatError, FatType, SECTOR_SIZE};

/// Entries of a FAT12/16 root directory at least: 512, what the specification recommends.
const MIN_ROOT_ENTRIES: u32 = 512;
/// Bytes per sector, for sector arithmetic in `u32` and `usize`.
const SECTOR_U32: u32 = 512;
const SECTOR_BYTES: usize = 512;
/// Bytes per directory entry.
pub(crate) const DIR_ENTRY_SIZE: u32 = 32;
/// Largest cluster: 32 KiB (section 3.1: larger ones break many implementations).
const MAX_SECTORS_PER_CLUSTER: u32 = 64;
/// The FAT32 reserved region: 32 sectors, with `FSInfo` at 1 and the backups at 6 and 7.
const FAT32_RESERVED: u32 = 32;
const FSINFO_SECTOR: u16 = 1;
const BACKUP_BOOT_SECTOR: u16 = 6;
/// Media descriptor of a fixed disk.
pub(crate) const MEDIA: u8 = 0xF8;
/// Sectors and heads reported in the BPB (the usual LBA translation; nothing reads them).
const SECTORS_PER_TRACK: u16 = 63;
const HEADS: u16 = 255;
/// Boot code of a volume that is not bootable: `int 18h` asks the BIOS to try the next boot
/// device; if it returns, halt forever (`hlt; jmp $-1`).
const NOT_BOOTABLE: [u8; 5] = [0xCD, 0x18, 0xF4, 0xEB, 0xFD];

/// Where everything goes on the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub fat_type: FatType,
    pub total_sectors: u32,
    pub sectors_per_cluster: u32,
    pub reserved_sectors: u32,
    pub fat_sectors: u32,
    /// FAT12/16 root directory entries; 0 on FAT32.
    pub root_entries: u32,
    /// Data clusters, numbered from 2.
    pub clusters: u32,
}

impl Geometry {
    /// The type for a volume of `sectors` when none is forced.
    pub fn auto_type(sectors: u64) -> FatType {
        match sectors {
            0..=8400 => FatType::Fat12,
            8401..=1_048_576 => FatType::Fat16,
            _ => FatType::Fat32,
        }
    }

    /// The cluster size the specification's tables give (`DskTableFAT16`, `DskTableFAT32`).
    fn table_cluster(fat_type: FatType, sectors: u64) -> u32 {
        match fat_type {
            FatType::Fat12 => 1,
            FatType::Fat16 => match sectors {
                0..=32_680 => 2,
                32_681..=262_144 => 4,
                262_145..=524_288 => 8,
                524_289..=1_048_576 => 16,
                1_048_577..=2_097_152 => 32,
                _ => 64,
            },
            FatType::Fat32 => match sectors {
                0..=532_480 => 1,
                532_481..=16_777_216 => 8,
                16_777_217..=33_554_432 => 16,
                33_554_433..=67_108_864 => 32,
                _ => 64,
            },
        }
    }

    /// The geometry of a `size`-byte volume whose FAT12/16 root directory needs `root_needed`
    /// entries: the table's cluster size if its cluster count is valid for the type, otherwise
    /// the smallest cluster size that is.
    pub fn choose(
        size: u64,
        fat_type: Option<FatType>,
        root_needed: u32,
    ) -> Result<Geometry, FatError> {
        let sectors = size / SECTOR_SIZE;
        if !size.is_multiple_of(SECTOR_SIZE) || sectors > u64::from(u32::MAX) {
            return Err(FatError::BadSize { size });
        }
        let fat_type = fat_type.unwrap_or_else(|| Self::auto_type(sectors));
        let total = u32::try_from(sectors).expect("checked");
        let table = Self::table_cluster(fat_type, sectors);
        let sizes = (0..=MAX_SECTORS_PER_CLUSTER.trailing_zeros()).map(|s| 1 << s);
        std::iter::once(table)
            .chain(sizes)
            .filter_map(|spc| Self::with_cluster(fat_type, total, spc, root_needed))
            .find(|g| fat_type.cluster_range().contains(&g.clusters))
            .ok_or(FatError::NoLayout { size, fat_type })
    }

    /// The layout with `spc` sectors per cluster, if the volume is large enough for it.
    fn with_cluster(fat_type: FatType, total: u32, spc: u32, root_needed: u32) -> Option<Self> {
        let (reserved, root_entries) = match fat_type {
            FatType::Fat32 => (FAT32_RESERVED, 0),
            _ => (1, root_needed.max(MIN_ROOT_ENTRIES).next_multiple_of(16)),
        };
        if root_entries > u32::from(u16::MAX) {
            return None;
        }
        let root_sectors = root_entries * DIR_ENTRY_SIZE / SECTOR_U32;
        let avail = u64::from(total.checked_sub(reserved + root_sectors)?);
        let bits = u64::from(fat_type.bits());
        let spc = u64::from(spc);
        // Entries a FAT of `f` sectors holds, and whether that covers the clusters left.
        let fits =
            |f: u64| avail >= 2 * f && f * SECTOR_SIZE * 8 / bits >= (avail - 2 * f) / spc + 2;
        // An upper bound (as if the FATs took no space), then shrink while it still fits.
        let mut fat = ((avail / spc + 2) * bits).div_ceil(8 * SECTOR_SIZE);
        while fat > 1 && fits(fat - 1) {
            fat -= 1;
        }
        if !fits(fat) {
            return None;
        }
        let clusters = u32::try_from((avail - 2 * fat) / spc).ok()?;
        Some(Geometry {
            fat_type,
            total_sectors: total,
            sectors_per_cluster: u32::try_from(spc).ok()?,
            reserved_sectors: reserved,
            fat_sectors: u32::try_from(fat).ok()?,
            root_entries,
            clusters,
        })
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> u64 {
        u64::from(self.sectors_per_cluster) * SECTOR_SIZE
    }

    /// Byte offset of FAT `copy` (0 or 1).
    pub fn fat_offset(&self, copy: u32) -> u64 {
        u64::from(self.reserved_sectors + copy * self.fat_sectors) * SECTOR_SIZE
    }

    /// Byte offset and length of the FAT12/16 root directory region.
    pub fn root_region(&self) -> (u64, u64) {
        (self.fat_offset(2), u64::from(self.root_entries * DIR_ENTRY_SIZE))
    }

    /// Byte offset of data cluster `n` (numbered from 2).
    pub fn cluster_offset(&self, n: u32) -> u64 {
        let (root, root_len) = self.root_region();
        root + root_len + u64::from(n - 2) * self.cluster_bytes()
    }

    /// The reserved region: boot sector, and on FAT32 `FSInfo` and the backups.
    pub fn reserved_region(&self, volume: &VolumeFields, free: u32, next_free: u32) -> Vec<u8> {
        let mut region = vec![0u8; (self.reserved_sectors as usize) * SECTOR_BYTES];
        let boot = self.boot_sector(volume);
        put(&mut region, 0, &boot);
        if self.fat_type == FatType::Fat32 {
            let info = fs_info(free, next_free);
            let sector = |n: u16| usize::from(n) * SECTOR_BYTES;
            put(&mut region, sector(FSINFO_SECTOR), &info);
            put(&mut region, sector(BACKUP_BOOT_SECTOR), &boot);
            put(&mut region, sector(BACKUP_BOOT_SECTOR + FSINFO_SECTOR), &info);
        }
        region
    }

    /// The boot sector (section 3.1 to 3.3).
    fn boot_sector(&self, v: &VolumeFields) -> [u8; 512] {
        let fat32 = self.fat_type == FatType::Fat32;
        let mut b = [0u8; 512];
        // Jump over the BPB to the boot code, which starts at 62 (FAT12/16) or 90 (FAT32).
        let code_at: u8 = if fat32 { 90 } else { 62 };
        put(&mut b, 0, &[0xEB, code_at - 2, 0x90]);
        // The OEM name the specification recommends for the widest compatibility.
        put(&mut b, 3, b"MSWIN4.1");
        put_le16(&mut b, 11, 512);
        b[13] = u8::try_from(self.sectors_per_cluster).expect("<= 64");
        put_le16(&mut b, 14, u16::try_from(self.reserved_sectors).expect("<= 32"));
        b[16] = 2;
        put_le16(&mut b, 17, u16::try_from(self.root_entries).expect("checked"));
        let small = u16::try_from(self.total_sectors).ok().filter(|_| !fat32);
        put_le16(&mut b, 19, small.unwrap_or(0));
        b[21] = MEDIA;
        let fat16_size = u16::try_from(self.fat_sectors).ok().filter(|_| !fat32);
        put_le16(&mut b, 22, fat16_size.unwrap_or(0));
        put_le16(&mut b, 24, SECTORS_PER_TRACK);
        put_le16(&mut b, 26, HEADS);
        put_le32(&mut b, 28, v.hidden_sectors);
        put_le32(&mut b, 32, if small.is_some() { 0 } else { self.total_sectors });
        let ext = if fat32 {
            put_le32(&mut b, 36, self.fat_sectors);
            // 40: flags 0 (both FATs mirrored), 42: version 0.0.
            put_le32(&mut b, 44, 2);
            put_le16(&mut b, 48, FSINFO_SECTOR);
            put_le16(&mut b, 50, BACKUP_BOOT_SECTOR);
            64
        } else {
            36
        };
        b[ext] = 0x80; // BIOS drive number: first hard disk
        b[ext + 2] = 0x29; // extended boot signature: the next three fields exist
        put_le32(&mut b, ext + 3, v.volume_id);
        put(&mut b, ext + 7, &v.label);
        let fs_type: &[u8; 8] = match self.fat_type {
            FatType::Fat12 => b"FAT12   ",
            FatType::Fat16 => b"FAT16   ",
            FatType::Fat32 => b"FAT32   ",
        };
        put(&mut b, ext + 18, fs_type);
        put(&mut b, usize::from(code_at), &NOT_BOOTABLE);
        put(&mut b, 510, &[0x55, 0xAA]);
        b
    }
}

/// Boot sector fields that are not geometry.
pub(crate) struct VolumeFields {
    pub volume_id: u32,
    /// The label as stored: 11 bytes, space-padded, or `NO NAME`.
    pub label: [u8; 11],
    pub hidden_sectors: u32,
}

/// The FAT32 `FSInfo` sector (section 5) with the free cluster count and the next free hint.
fn fs_info(free: u32, next_free: u32) -> [u8; 512] {
    let mut b = [0u8; 512];
    put_le32(&mut b, 0, 0x4161_5252);
    put_le32(&mut b, 484, 0x6141_7272);
    put_le32(&mut b, 488, free);
    put_le32(&mut b, 492, next_free);
    put_le32(&mut b, 508, 0xAA55_0000);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(mib: u64, t: Option<FatType>) -> Result<Geometry, FatError> {
        Geometry::choose(mib << 20, t, 0)
    }

    #[test]
    fn type_and_cluster_size_by_size() {
        let g = choose(1, None).unwrap();
        assert_eq!((g.fat_type, g.sectors_per_cluster, g.root_entries), (FatType::Fat12, 1, 512));
        let g = choose(64, None).unwrap();
        assert_eq!((g.fat_type, g.sectors_per_cluster), (FatType::Fat16, 4));
        let g = choose(600, None).unwrap();
        assert_eq!(
            (g.fat_type, g.sectors_per_cluster, g.reserved_sectors),
            (FatType::Fat32, 8, 32)
        );
        // Forced FAT32 on 64 MiB: the table's 512-byte clusters give enough of them.
        let g = choose(64, Some(FatType::Fat32)).unwrap();
        assert_eq!(g.sectors_per_cluster, 1);
        assert!(g.clusters >= 65525);
        assert!(matches!(choose(16, Some(FatType::Fat32)), Err(FatError::NoLayout { .. })));
        // 4 MiB is FAT12 by size; the smallest cluster with fewer than 4085 clusters is 1 KiB.
        let g = choose(4, None).unwrap();
        assert_eq!((g.fat_type, g.sectors_per_cluster, g.clusters), (FatType::Fat12, 2, 4067));
        assert!(Geometry::choose(1000, None, 0).is_err(), "not a multiple of 512");
    }

    #[test]
    fn fats_cover_every_cluster_with_little_slack() {
        for sectors in [100u64, 2_000, 8_400, 8_401, 70_000, 1_048_576, 1_048_577, 5_000_000] {
            let g = Geometry::choose(sectors * 512, None, 600).unwrap();
            let entries = u64::from(g.fat_sectors) * 512 * 8 / u64::from(g.fat_type.bits());
            assert!(entries >= u64::from(g.clusters) + 2, "{g:?}");
            let per_sector = 512 * 8 / u64::from(g.fat_type.bits());
            assert!(entries - (u64::from(g.clusters) + 2) < 3 * per_sector, "{g:?}");
            let data = u64::from(g.total_sectors)
                - u64::from(g.reserved_sectors + 2 * g.fat_sectors)
                - u64::from(g.root_entries) / 16;
            assert_eq!(u64::from(g.clusters), data / u64::from(g.sectors_per_cluster));
            assert!(g.fat_type.cluster_range().contains(&g.clusters));
            if g.fat_type != FatType::Fat32 {
                assert_eq!(g.root_entries, 608, "rounded up to a sector of entries");
            }
        }
    }

    #[test]
    fn boot_sector_fields() {
        let v =
            VolumeFields { volume_id: 0x1234_5678, label: *b"ESP        ", hidden_sectors: 2048 };
        let g = choose(64, None).unwrap();
        let r = g.reserved_region(&v, 0, 0);
        assert_eq!(r.len(), 512);
        assert_eq!(r[..3], [0xEB, 0x3C, 0x90]);
        assert_eq!(&r[54..62], b"FAT16   ");
        assert_eq!(r[39..43], [0x78, 0x56, 0x34, 0x12]);
        assert_eq!(r[19..21], [0, 0], "131072 sectors need the 32-bit field");
        assert_eq!(r[32..36], 131_072u32.to_le_bytes());
        let g = choose(600, None).unwrap();
        let r = g.reserved_region(&v, 7, 9);
        assert_eq!(r.len(), 32 * 512);
        assert_eq!(&r[82..90], b"FAT32   ");
        assert_eq!(r[..512], r[6 * 512..7 * 512], "backup boot sector");
        assert_eq!(r[512..1024], r[7 * 512..8 * 512], "backup FSInfo");
        assert_eq!(r[512 + 488..512 + 496], [7, 0, 0, 0, 9, 0, 0, 0]);
        assert_eq!(r[1022..1024], [0x55, 0xAA]);
    }
}
