//! Dynamic VHD as blktap writes it: the Microsoft "Virtual Hard Disk Image Format
//! Specification" (2006) plus blktap's batmap extension (`xapi-project/blktap:include/vhd.h`),
//! laid out exactly as blktap's `vhd-util create` lays it out (`vhd/lib/libvhd.c`
//! `vhd_create`):
//!
//! ```text
//! 0              footer copy (512)
//! 512            dynamic header (1024)
//! 1536           BAT, one u32 per 2 MiB block, padded with zeros to a sector
//! 1536 + BAT     batmap header "tdbatmap" (512), then the batmap itself
//! metadata end   allocated blocks in ascending order: sector bitmap (512, all ones) + 2 MiB
//! EOF - 512      footer
//! ```
//!
//! - [`write_vhd`] and [`write_vhd_file`] write it from a raw disk read twice, and [`VhdStream`]
//!   from raw bytes written into it once, given which blocks hold data;
//! - [`VhdFile`] reads one back after checking every rule of blktap's `vhd-util check`
//!   ([`Violation`] lists them), summarises it ([`VhdInfo`]) and streams the virtual disk;
//! - [`Footer`], [`DynamicHeader`] and [`BatmapHeader`] are the on-disk structures.

mod check;
mod footer;
mod header;
mod read;
mod violation;
mod write;

pub use footer::Footer;
pub use header::{BatmapHeader, DynamicHeader};
pub use read::{RawReader, VhdFile, VhdInfo, open_vhd_file};
pub use violation::Violation;
pub use write::{VhdOptions, VhdStream, VhdWriteSummary, write_vhd, write_vhd_file};

use std::fmt;

/// Bytes per sector; every VHD offset and size counts in these.
pub const SECTOR_SIZE: u64 = 512;
/// Size of the footer (and of its copy at offset 0).
pub const FOOTER_SIZE: usize = 512;
/// Size of the dynamic disk header.
pub const HEADER_SIZE: usize = 1024;
/// Size of the blktap batmap header.
pub const BATMAP_HEADER_SIZE: usize = 512;
/// Block size we write, the only one SM and `vhd-util check` expect: 2 MiB.
pub const BLOCK_SIZE: u32 = 2 << 20;
/// Largest virtual size we write: 2040 GiB, SM's `MAX_VHD_SIZE` and qemu's `VHD_MAX_SECTORS`.
pub const MAX_VIRTUAL_SIZE: u64 = 2040 << 30;
/// Offset of the dynamic header (footer `data_offset`).
pub const HEADER_OFFSET: u64 = 512;
/// Offset of the BAT (header `table_offset`).
pub const TABLE_OFFSET: u64 = 1536;
/// BAT entry of a block that is not allocated.
pub const BAT_UNUSED: u32 = 0xFFFF_FFFF;
/// Seconds from the Unix epoch to the VHD epoch, 2000-01-01T00:00:00Z.
pub const VHD_EPOCH: u64 = 946_684_800;

/// Footer cookie.
pub const FOOTER_COOKIE: [u8; 8] = *b"conectix";
/// Dynamic header cookie.
pub const HEADER_COOKIE: [u8; 8] = *b"cxsparse";
/// Batmap header cookie.
pub const BATMAP_COOKIE: [u8; 8] = *b"tdbatmap";
/// Footer `features` bit that must always be set.
pub const FEATURE_RESERVED: u32 = 0x2;
/// Footer `features` bit for a temporary disk, the only other one allowed.
pub const FEATURE_TEMPORARY: u32 = 0x1;
/// Footer file format version 1.0.
pub const FORMAT_VERSION: u32 = 0x0001_0000;
/// Dynamic header version 1.0.
pub const HEADER_VERSION: u32 = 0x0001_0000;
/// Creator application of blktap.
pub const CREATOR_TAP: [u8; 4] = *b"tap\0";
/// Creator version 1.3, blktap's `VHD_CURRENT_VERSION`; a `tap` disk may not claim more.
pub const TAP_VERSION: u32 = 0x0001_0003;
/// From creator version 1.2 on, a `tap` disk must carry a batmap.
pub const TAP_BATMAP_SINCE: u32 = 0x0001_0002;
/// Batmap version 1.2, blktap's `VHD_BATMAP_CURRENT_VERSION`.
pub const BATMAP_VERSION: u32 = 0x0001_0002;
/// Batmap version 1.1, whose checksum blktap sums as signed bytes (`vhd_checksum_batmap`).
pub const BATMAP_VERSION_1_1: u32 = 0x0001_0001;
/// Creator `tap` version 0.1, which blktap's `vhd_open` refuses.
pub const TAP_VERSION_OBSOLETE: u32 = 0x0000_0001;
/// Creator `tap` version 1.1: a batmap may or may not follow the BAT (`vhd_has_batmap`).
pub const TAP_BATMAP_OPTIONAL: u32 = 0x0001_0001;
/// How far into the future `vhd-util check` lets a timestamp be, in seconds.
pub const TIMESTAMP_SLACK: u64 = 1800;

/// The footer's disk type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskType {
    /// 2: raw data followed by a footer.
    Fixed,
    /// 3: sparse, with a BAT.
    Dynamic,
    /// 4: sparse, with a parent.
    Differencing,
}

impl DiskType {
    /// The value stored in the footer.
    pub const fn code(self) -> u32 {
        match self {
            DiskType::Fixed => 2,
            DiskType::Dynamic => 3,
            DiskType::Differencing => 4,
        }
    }

    /// The type stored as `code`, if it is one of the three valid ones.
    pub const fn from_code(code: u32) -> Option<Self> {
        match code {
            2 => Some(DiskType::Fixed),
            3 => Some(DiskType::Dynamic),
            4 => Some(DiskType::Differencing),
            _ => None,
        }
    }
}

impl fmt::Display for DiskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DiskType::Fixed => "fixed",
            DiskType::Dynamic => "dynamic",
            DiskType::Differencing => "differencing",
        })
    }
}

/// Cylinder, head, sector geometry of the footer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
pub struct Geometry {
    /// Cylinders.
    pub cylinders: u16,
    /// Heads.
    pub heads: u8,
    /// Sectors per track.
    pub sectors: u8,
}

impl Geometry {
    /// The geometry of a disk of `size` bytes, computed as the VHD specification's appendix
    /// and blktap's `vhd_chs` do.
    pub fn for_size(size: u64) -> Self {
        const MAX_SECTORS: u64 = 65535 * 16 * 255;
        let secs = (size / SECTOR_SIZE).min(MAX_SECTORS);
        let (spt, heads, cth) = if secs >= 65535 * 16 * 63 {
            (255, 16, secs / 255)
        } else {
            let mut spt = 17;
            let mut cth = secs / spt;
            let mut heads = cth.div_ceil(1024).max(4);
            if cth >= heads * 1024 || heads > 16 {
                spt = 31;
                heads = 16;
                cth = secs / spt;
            }
            if cth >= heads * 1024 {
                spt = 63;
                heads = 16;
                cth = secs / spt;
            }
            (spt, heads, cth)
        };
        Geometry {
            cylinders: u16::try_from(cth / heads).expect("at most 65535 cylinders"),
            heads: u8::try_from(heads).expect("at most 16 heads"),
            sectors: u8::try_from(spt).expect("at most 255 sectors"),
        }
    }

    /// The geometry as the footer's big-endian u32; blktap compares geometries in this form.
    pub const fn packed(self) -> u32 {
        ((self.cylinders as u32) << 16) | ((self.heads as u32) << 8) | self.sectors as u32
    }

    /// The geometry stored as the u32 `packed`.
    pub const fn from_packed(packed: u32) -> Self {
        let [c1, c0, heads, sectors] = packed.to_be_bytes();
        Geometry { cylinders: u16::from_be_bytes([c1, c0]), heads, sectors }
    }
}

impl fmt::Display for Geometry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.cylinders, self.heads, self.sectors)
    }
}

/// The one's complement of the byte sum, the checksum of the footer, the header and the batmap.
/// Callers zero the checksum field first.
pub(crate) fn ones_complement_sum(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(0u32, |sum, &b| sum.wrapping_add(u32::from(b)))
}

/// Bytes of the batmap that blktap's checksum covers for a disk of `current_size` bytes: one
/// bit per 2 MiB block counted by `current_size >> 24` (rounded down), in whole sectors, at
/// least one (`vhd_checksum_batmap`, `secs_round_up_no_zero`). It can be a sector shorter
/// than the map, whose last bits are then outside the checksum.
pub(crate) fn batmap_checksum_len(current_size: u64) -> usize {
    let sectors = (current_size >> 24).div_ceil(SECTOR_SIZE).max(1);
    usize::try_from(sectors * SECTOR_SIZE).expect("a batmap fits memory")
}

/// blktap's batmap checksum: the one's complement of the sum of the first
/// [`batmap_checksum_len`] bytes of `map`, taken as signed bytes for version 1.1 (a C `char`
/// on x86) and unsigned otherwise (`vhd_checksum_batmap`).
pub(crate) fn batmap_checksum(map: &[u8], current_size: u64, version: u32) -> u32 {
    let covered = &map[..batmap_checksum_len(current_size).min(map.len())];
    if version == BATMAP_VERSION_1_1 {
        // Sign-extended, as `(uint32_t)(char)b`.
        !covered
            .iter()
            .fold(0u32, |sum, &b| sum.wrapping_add(i32::from(b.cast_signed()).cast_unsigned()))
    } else {
        ones_complement_sum(covered)
    }
}

/// A creator version as `major.minor`.
pub(crate) fn version_text(version: u32) -> String {
    format!("{}.{}", version >> 16, version & 0xffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_matches_vhd_util_create() {
        // Values `vhd-util create` writes (blktap `vhd/lib/libvhd.c` `vhd_chs`).
        assert_eq!(Geometry::for_size(64 << 20).to_string(), "963/8/17");
        assert_eq!(Geometry::for_size(1 << 30).to_string(), "2080/16/63");
        // Past 65535*16*63 sectors the maximum sectors per track is used.
        let big = Geometry::for_size(MAX_VIRTUAL_SIZE);
        assert_eq!((big.heads, big.sectors), (16, 255));
        // And capped at the largest representable geometry.
        assert_eq!(Geometry::for_size(u64::MAX).to_string(), "65535/16/255");
    }

    #[test]
    fn geometry_packs_big_endian() {
        let g = Geometry { cylinders: 0x1234, heads: 0x56, sectors: 0x78 };
        assert_eq!(g.packed(), 0x1234_5678);
        assert_eq!(Geometry::from_packed(0x1234_5678), g);
    }

    #[test]
    fn checksum_of_nothing_is_all_ones() {
        assert_eq!(ones_complement_sum(&[0; 512]), 0xFFFF_FFFF);
        assert_eq!(ones_complement_sum(&[1, 2, 255]), !258);
        // 16 MiB: one byte of bits, one sector. 8 GiB + 2 MiB: 4097 blocks, a two-sector map,
        // but `current_size >> 24` is 512 bytes, so one sector is summed.
        assert_eq!(batmap_checksum_len(16 << 20), 512);
        assert_eq!(batmap_checksum_len((8 << 30) + (2 << 20)), 512);
        assert_eq!(batmap_checksum_len((8 << 30) + (16 << 20)), 1024);
        let mut map = vec![0u8; 1024];
        map[512] = 0x80;
        assert_eq!(batmap_checksum(&map, (8 << 30) + (2 << 20), BATMAP_VERSION), !0);
        map[0] = 0xff;
        assert_eq!(batmap_checksum(&map, 16 << 20, BATMAP_VERSION), !255);
        assert_eq!(batmap_checksum(&map, 16 << 20, BATMAP_VERSION_1_1), !0xffff_ffff);
    }

    #[test]
    fn disk_type_codes() {
        for t in [DiskType::Fixed, DiskType::Dynamic, DiskType::Differencing] {
            assert_eq!(DiskType::from_code(t.code()), Some(t));
        }
        assert_eq!(DiskType::from_code(5), None);
        assert_eq!(version_text(TAP_VERSION), "1.3");
    }
}
