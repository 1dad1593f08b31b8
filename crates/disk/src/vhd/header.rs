//! The 1024-byte dynamic disk header of the VHD specification and blktap's 512-byte batmap
//! header (`xapi-project/blktap:include/vhd.h`, `struct dd_hdr` and `struct dd_batmap_hdr`;
//! filled in by `vhd/lib/libvhd.c` `vhd_initialize_header` and `vhd_create_batmap`).
//!
//! As for the footer, decoding is lossless and checks nothing.

use super::{
    BATMAP_COOKIE, BATMAP_HEADER_SIZE, BATMAP_VERSION, BLOCK_SIZE, HEADER_COOKIE, HEADER_SIZE,
    HEADER_VERSION, ones_complement_sum,
};
use crate::bytes::{get_u8, get_u32, get_u64, put, put_u32, put_u64};

/// Size of the parent's UTF-16 name field.
pub(crate) const PARENT_NAME_SIZE: usize = 512;
/// Size of the eight parent locator entries, 24 bytes each.
pub(crate) const PARENT_LOCATORS_SIZE: usize = 8 * 24;
/// Size of the trailing reserved bytes.
pub(crate) const HEADER_RESERVED2: usize = 256;
const HEADER_CHECKSUM_OFFSET: usize = 36;
/// Size of blktap's keyhash field (cookie, nonce, hash) in the batmap header.
pub(crate) const KEYHASH_SIZE: usize = 65;
/// Size of the batmap header's reserved tail.
pub(crate) const BATMAP_RESERVED: usize = BATMAP_HEADER_SIZE - 94;

/// A dynamic disk header, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicHeader {
    /// `cxsparse`.
    pub cookie: [u8; 8],
    /// Unused, all ones.
    pub data_offset: u64,
    /// Offset of the BAT.
    pub table_offset: u64,
    /// Header version, `0x00010000`.
    pub header_version: u32,
    /// Number of BAT entries.
    pub max_table_entries: u32,
    /// Block size in bytes.
    pub block_size: u32,
    /// One's complement of the byte sum of the header with this field zero.
    pub checksum: u32,
    /// Parent's unique id (differencing disks).
    pub parent_uuid: [u8; 16],
    /// Parent's timestamp.
    pub parent_timestamp: u32,
    /// Reserved, zero.
    pub reserved1: u32,
    /// Parent's name, UTF-16 big-endian.
    pub parent_name: [u8; PARENT_NAME_SIZE],
    /// Eight parent locator entries.
    pub parent_locators: [u8; PARENT_LOCATORS_SIZE],
    /// Reserved, zero.
    pub reserved2: [u8; HEADER_RESERVED2],
}

impl DynamicHeader {
    /// The header of a dynamic disk with `blocks` 2 MiB blocks, checksum included.
    pub fn dynamic(blocks: u32) -> Self {
        let mut header = DynamicHeader {
            cookie: HEADER_COOKIE,
            data_offset: u64::MAX,
            table_offset: super::TABLE_OFFSET,
            header_version: HEADER_VERSION,
            max_table_entries: blocks,
            block_size: BLOCK_SIZE,
            checksum: 0,
            parent_uuid: [0; 16],
            parent_timestamp: 0,
            reserved1: 0,
            parent_name: [0; PARENT_NAME_SIZE],
            parent_locators: [0; PARENT_LOCATORS_SIZE],
            reserved2: [0; HEADER_RESERVED2],
        };
        header.checksum = header.computed_checksum();
        header
    }

    /// The 1024 bytes on disk, with the checksum field as stored in `self`.
    pub fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        put(&mut b, 0, &self.cookie);
        put_u64(&mut b, 8, self.data_offset);
        put_u64(&mut b, 16, self.table_offset);
        put_u32(&mut b, 24, self.header_version);
        put_u32(&mut b, 28, self.max_table_entries);
        put_u32(&mut b, 32, self.block_size);
        put_u32(&mut b, HEADER_CHECKSUM_OFFSET, self.checksum);
        put(&mut b, 40, &self.parent_uuid);
        put_u32(&mut b, 56, self.parent_timestamp);
        put_u32(&mut b, 60, self.reserved1);
        put(&mut b, 64, &self.parent_name);
        put(&mut b, 576, &self.parent_locators);
        put(&mut b, 768, &self.reserved2);
        b
    }

    /// Parses 1024 bytes, checking nothing.
    pub fn decode(b: &[u8; HEADER_SIZE]) -> Self {
        DynamicHeader {
            cookie: get_u8(b, 0),
            data_offset: get_u64(b, 8),
            table_offset: get_u64(b, 16),
            header_version: get_u32(b, 24),
            max_table_entries: get_u32(b, 28),
            block_size: get_u32(b, 32),
            checksum: get_u32(b, HEADER_CHECKSUM_OFFSET),
            parent_uuid: get_u8(b, 40),
            parent_timestamp: get_u32(b, 56),
            reserved1: get_u32(b, 60),
            parent_name: get_u8(b, 64),
            parent_locators: get_u8(b, 576),
            reserved2: get_u8(b, 768),
        }
    }

    /// The checksum the header should carry, whatever [`DynamicHeader::checksum`] holds.
    pub fn computed_checksum(&self) -> u32 {
        let mut b = self.encode();
        put_u32(&mut b, HEADER_CHECKSUM_OFFSET, 0);
        ones_complement_sum(&b)
    }

    /// Bytes the BAT occupies, rounded up to whole sectors (at least one), as blktap lays it
    /// out; the batmap header follows.
    pub fn bat_bytes(&self) -> u64 {
        bat_bytes(self.max_table_entries)
    }
}

/// Bytes of a BAT of `entries` entries, rounded up to whole sectors, at least one sector.
pub(crate) fn bat_bytes(entries: u32) -> u64 {
    (u64::from(entries) * 4).div_ceil(super::SECTOR_SIZE).max(1) * super::SECTOR_SIZE
}

/// Sectors of a batmap for `entries` blocks: one bit per block, at least one sector.
pub(crate) fn batmap_sectors(entries: u32) -> u32 {
    let bytes = u64::from(entries).div_ceil(8);
    u32::try_from(bytes.div_ceil(super::SECTOR_SIZE).max(1)).expect("fits: entries is a u32")
}

/// blktap's batmap header, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatmapHeader {
    /// `tdbatmap`.
    pub cookie: [u8; 8],
    /// Offset of the batmap.
    pub batmap_offset: u64,
    /// Size of the batmap in sectors.
    pub batmap_size: u32,
    /// Batmap version, `0x00010002`.
    pub version: u32,
    /// One's complement of the byte sum of the batmap (not of this header).
    pub checksum: u32,
    /// blktap's marker byte.
    pub marker: u8,
    /// blktap's keyhash (cookie, nonce and hash).
    pub keyhash: [u8; KEYHASH_SIZE],
    /// Reserved, zero.
    pub reserved: [u8; BATMAP_RESERVED],
}

impl BatmapHeader {
    /// The header of a batmap of `sectors` sectors at `batmap_offset`, whose bytes are `map`,
    /// for a disk of `current_size` bytes: the checksum covers the part of the map blktap sums,
    /// `current_size >> 24` bytes rounded up to whole sectors, at least one
    /// (`vhd_checksum_batmap`).
    pub fn new(batmap_offset: u64, sectors: u32, map: &[u8], current_size: u64) -> Self {
        BatmapHeader {
            cookie: BATMAP_COOKIE,
            batmap_offset,
            batmap_size: sectors,
            version: BATMAP_VERSION,
            checksum: super::batmap_checksum(map, current_size, BATMAP_VERSION),
            marker: 0,
            keyhash: [0; KEYHASH_SIZE],
            reserved: [0; BATMAP_RESERVED],
        }
    }

    /// The 512 bytes on disk.
    pub fn encode(&self) -> [u8; BATMAP_HEADER_SIZE] {
        let mut b = [0u8; BATMAP_HEADER_SIZE];
        put(&mut b, 0, &self.cookie);
        put_u64(&mut b, 8, self.batmap_offset);
        put_u32(&mut b, 16, self.batmap_size);
        put_u32(&mut b, 20, self.version);
        put_u32(&mut b, 24, self.checksum);
        b[28] = self.marker;
        put(&mut b, 29, &self.keyhash);
        put(&mut b, 94, &self.reserved);
        b
    }

    /// Parses 512 bytes, checking nothing.
    pub fn decode(b: &[u8; BATMAP_HEADER_SIZE]) -> Self {
        BatmapHeader {
            cookie: get_u8(b, 0),
            batmap_offset: get_u64(b, 8),
            batmap_size: get_u32(b, 16),
            version: get_u32(b, 20),
            checksum: get_u32(b, 24),
            marker: b[28],
            keyhash: get_u8(b, 29),
            reserved: get_u8(b, 94),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn arb_header() -> impl Strategy<Value = DynamicHeader> {
        (
            (any::<[u8; 8]>(), any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>()),
            (any::<u32>(), any::<u32>(), any::<[u8; 16]>(), any::<u32>(), any::<u32>()),
            (vec(any::<u8>(), PARENT_NAME_SIZE), vec(any::<u8>(), PARENT_LOCATORS_SIZE)),
            vec(any::<u8>(), HEADER_RESERVED2),
        )
            .prop_map(|(a, b, (name, locators), reserved2)| DynamicHeader {
                cookie: a.0,
                data_offset: a.1,
                table_offset: a.2,
                header_version: a.3,
                max_table_entries: a.4,
                block_size: b.0,
                checksum: b.1,
                parent_uuid: b.2,
                parent_timestamp: b.3,
                reserved1: b.4,
                parent_name: name.try_into().unwrap(),
                parent_locators: locators.try_into().unwrap(),
                reserved2: reserved2.try_into().unwrap(),
            })
    }

    proptest! {
        #[test]
        fn header_encode_decode_round_trip(header in arb_header()) {
            prop_assert_eq!(DynamicHeader::decode(&header.encode()), header);
        }

        #[test]
        fn header_decode_encode_round_trip(bytes in vec(any::<u8>(), HEADER_SIZE)) {
            let bytes: [u8; HEADER_SIZE] = bytes.try_into().unwrap();
            prop_assert_eq!(DynamicHeader::decode(&bytes).encode(), bytes);
        }

        #[test]
        fn batmap_header_decode_encode_round_trip(bytes in vec(any::<u8>(), BATMAP_HEADER_SIZE)) {
            let bytes: [u8; BATMAP_HEADER_SIZE] = bytes.try_into().unwrap();
            let header = BatmapHeader::decode(&bytes);
            prop_assert_eq!(header.encode(), bytes);
            prop_assert_eq!(BatmapHeader::decode(&header.encode()), header);
        }
    }

    #[test]
    fn sizes_match_vhd_util_create() {
        // 64 MiB: 32 entries, BAT one sector, batmap one sector (`docs/formats/vhd.md` section
        // "Layout").
        assert_eq!(bat_bytes(32), 512);
        assert_eq!(batmap_sectors(32), 1);
        assert_eq!(bat_bytes(0), 512);
        assert_eq!(bat_bytes(129), 1024);
        assert_eq!(batmap_sectors(4096), 1);
        assert_eq!(batmap_sectors(4097), 2);
        let h = DynamicHeader::dynamic(32);
        assert_eq!(h.checksum, h.computed_checksum());
        let b = h.encode();
        assert_eq!(&b[..8], b"cxsparse");
        assert_eq!(get_u64(&b, 8), u64::MAX);
        assert_eq!(get_u64(&b, 16), 1536);
        assert_eq!(get_u32(&b, 32), 2 << 20);
    }
}
