//! The 512-byte VHD footer (the "Hard Disk Footer Format" of Microsoft's Virtual Hard Disk
//! Image Format Specification, and blktap's `vhd_footer_t` in `vhd/include/libvhd.h`). It ends
//! the file and, for dynamic disks, is copied at offset 0.
//!
//! Decoding is lossless and checks nothing: every field, reserved bytes included, comes back as
//! stored, so [`Footer::encode`] gives back the exact input. The rules live in `check.rs`.

use super::{
    CREATOR_TAP, DiskType, FEATURE_RESERVED, FOOTER_COOKIE, FOOTER_SIZE, FORMAT_VERSION, Geometry,
    HEADER_OFFSET, TAP_VERSION, ones_complement_sum,
};
use crate::Uuid;
use crate::bytes::{get_u8, get_u32, get_u64, put, put_u32, put_u64};

/// Bytes 86 to 511, which blktap requires to be zero.
pub(crate) const FOOTER_RESERVED: usize = FOOTER_SIZE - 86;
/// Offset of the checksum field.
pub(crate) const CHECKSUM_OFFSET: usize = 64;

/// A VHD footer, field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Footer {
    /// `conectix`.
    pub cookie: [u8; 8],
    /// Feature bits; bit 1 ("reserved") must be set.
    pub features: u32,
    /// File format version, `0x00010000`.
    pub format_version: u32,
    /// Offset of the dynamic header, or all ones for a fixed disk.
    pub data_offset: u64,
    /// Creation time in seconds since 2000-01-01T00:00:00Z.
    pub timestamp: u32,
    /// Creator application, e.g. `tap\0`.
    pub creator_app: [u8; 4],
    /// Creator version, major in the high 16 bits.
    pub creator_version: u32,
    /// Creator host OS.
    pub creator_host_os: u32,
    /// Size at creation.
    pub original_size: u64,
    /// Virtual size in bytes.
    pub current_size: u64,
    /// CHS geometry.
    pub geometry: Geometry,
    /// Disk type code (see [`DiskType`]).
    pub disk_type: u32,
    /// One's complement of the byte sum of the footer with this field zero.
    pub checksum: u32,
    /// Unique id of the disk.
    pub uuid: Uuid,
    /// Saved state flag.
    pub saved_state: u8,
    /// blktap's "hidden" flag.
    pub hidden: u8,
    /// Bytes 86 to 511.
    pub reserved: [u8; FOOTER_RESERVED],
}

impl Footer {
    /// The footer of a dynamic disk of `size` bytes as blktap writes it, checksum included.
    pub fn dynamic(size: u64, uuid: Uuid, timestamp: u32) -> Self {
        let mut footer = Footer {
            cookie: FOOTER_COOKIE,
            features: FEATURE_RESERVED,
            format_version: FORMAT_VERSION,
            data_offset: HEADER_OFFSET,
            timestamp,
            creator_app: CREATOR_TAP,
            creator_version: TAP_VERSION,
            creator_host_os: 0,
            original_size: size,
            current_size: size,
            geometry: Geometry::for_size(size),
            disk_type: DiskType::Dynamic.code(),
            checksum: 0,
            uuid,
            saved_state: 0,
            hidden: 0,
            reserved: [0; FOOTER_RESERVED],
        };
        footer.checksum = footer.computed_checksum();
        footer
    }

    /// The 512 bytes on disk, with the checksum field as stored in `self`.
    pub fn encode(&self) -> [u8; FOOTER_SIZE] {
        let mut b = [0u8; FOOTER_SIZE];
        put(&mut b, 0, &self.cookie);
        put_u32(&mut b, 8, self.features);
        put_u32(&mut b, 12, self.format_version);
        put_u64(&mut b, 16, self.data_offset);
        put_u32(&mut b, 24, self.timestamp);
        put(&mut b, 28, &self.creator_app);
        put_u32(&mut b, 32, self.creator_version);
        put_u32(&mut b, 36, self.creator_host_os);
        put_u64(&mut b, 40, self.original_size);
        put_u64(&mut b, 48, self.current_size);
        put_u32(&mut b, 56, self.geometry.packed());
        put_u32(&mut b, 60, self.disk_type);
        put_u32(&mut b, CHECKSUM_OFFSET, self.checksum);
        put(&mut b, 68, self.uuid.as_bytes());
        b[84] = self.saved_state;
        b[85] = self.hidden;
        put(&mut b, 86, &self.reserved);
        b
    }

    /// Parses 512 bytes, checking nothing.
    pub fn decode(b: &[u8; FOOTER_SIZE]) -> Self {
        Footer {
            cookie: get_u8(b, 0),
            features: get_u32(b, 8),
            format_version: get_u32(b, 12),
            data_offset: get_u64(b, 16),
            timestamp: get_u32(b, 24),
            creator_app: get_u8(b, 28),
            creator_version: get_u32(b, 32),
            creator_host_os: get_u32(b, 36),
            original_size: get_u64(b, 40),
            current_size: get_u64(b, 48),
            geometry: Geometry::from_packed(get_u32(b, 56)),
            disk_type: get_u32(b, 60),
            checksum: get_u32(b, CHECKSUM_OFFSET),
            uuid: Uuid::from_bytes(get_u8(b, 68)),
            saved_state: b[84],
            hidden: b[85],
            reserved: get_u8(b, 86),
        }
    }

    /// The checksum the footer should carry, whatever [`Footer::checksum`] holds.
    pub fn computed_checksum(&self) -> u32 {
        let mut b = self.encode();
        put_u32(&mut b, CHECKSUM_OFFSET, 0);
        ones_complement_sum(&b)
    }

    /// The disk type, if the code is a valid one.
    pub fn disk_type(&self) -> Option<DiskType> {
        DiskType::from_code(self.disk_type)
    }

    /// Whether blktap expects a batmap: creator `tap` at version 1.2 or later, not fixed.
    pub fn has_batmap(&self) -> bool {
        self.creator_app[..3] == CREATOR_TAP[..3]
            && self.creator_version >= super::TAP_BATMAP_SINCE
            && self.disk_type != DiskType::Fixed.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_footer() -> impl Strategy<Value = Footer> {
        (
            (any::<[u8; 8]>(), any::<u32>(), any::<u32>(), any::<u64>(), any::<u32>()),
            (any::<[u8; 4]>(), any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>()),
            (any::<u32>(), any::<u32>(), any::<u32>(), any::<[u8; 16]>(), any::<[u8; 2]>()),
            proptest::collection::vec(any::<u8>(), FOOTER_RESERVED),
        )
            .prop_map(|(a, b, c, reserved)| Footer {
                cookie: a.0,
                features: a.1,
                format_version: a.2,
                data_offset: a.3,
                timestamp: a.4,
                creator_app: b.0,
                creator_version: b.1,
                creator_host_os: b.2,
                original_size: b.3,
                current_size: b.4,
                geometry: Geometry::from_packed(c.0),
                disk_type: c.1,
                checksum: c.2,
                uuid: Uuid::from_bytes(c.3),
                saved_state: c.4[0],
                hidden: c.4[1],
                reserved: reserved.try_into().unwrap(),
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(footer in arb_footer()) {
            let bytes = footer.encode();
            prop_assert_eq!(Footer::decode(&bytes), footer);
        }

        #[test]
        fn decode_encode_round_trip(bytes in proptest::collection::vec(any::<u8>(), FOOTER_SIZE)) {
            let bytes: [u8; FOOTER_SIZE] = bytes.try_into().unwrap();
            prop_assert_eq!(Footer::decode(&bytes).encode(), bytes);
        }

        #[test]
        fn checksum_ignores_the_checksum_field(footer in arb_footer(), other in any::<u32>()) {
            let mut changed = footer.clone();
            changed.checksum = other;
            prop_assert_eq!(changed.computed_checksum(), footer.computed_checksum());
        }
    }

    #[test]
    fn dynamic_footer_fields() {
        let f = Footer::dynamic(64 << 20, Uuid::from_bytes([1; 16]), 5);
        let b = f.encode();
        assert_eq!(&b[..8], b"conectix");
        assert_eq!(b[8..16], [0, 0, 0, 2, 0, 1, 0, 0]);
        assert_eq!(get_u64(&b, 16), 512);
        assert_eq!(&b[28..32], b"tap\0");
        assert_eq!(get_u32(&b, 32), 0x0001_0003);
        assert_eq!(get_u32(&b, 60), 3);
        assert_eq!(f.checksum, f.computed_checksum());
        assert!(b[86..].iter().all(|&x| x == 0));
        assert!(f.has_batmap());
    }
}
