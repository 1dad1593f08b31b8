//! Numeric field encodings of ECMA-119 section 7: 7.2.3 (16-bit both-byte orders), 7.3.1 to
//! 7.3.3 (32-bit little-endian, big-endian and both-byte orders).
//!
//! Writers append to a `Vec<u8>`; readers take a slice and an offset and return `None` instead
//! of panicking when the field does not fit.

/// Appends a 32-bit number in both byte orders (ECMA-119 7.3.3).
pub(crate) fn put_u32_both(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
    out.extend_from_slice(&v.to_be_bytes());
}

/// Appends a 16-bit number in both byte orders (ECMA-119 7.2.3).
pub(crate) fn put_u16_both(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes a 32-bit both-byte-order number into `buf` at `at`.
pub(crate) fn set_u32_both(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
    buf[at + 4..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// Writes a 16-bit both-byte-order number into `buf` at `at`.
pub(crate) fn set_u16_both(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
    buf[at + 2..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Reads a little-endian 32-bit number (the first half of a both-byte-order field).
pub(crate) fn get_u32_le(buf: &[u8], at: usize) -> Option<u32> {
    let b = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a little-endian 16-bit number.
pub(crate) fn get_u16_le(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([b[0], b[1]]))
}

/// Rounds a byte count up to whole sectors.
pub(crate) fn sectors(bytes: u64) -> u64 {
    bytes.div_ceil(crate::SECTOR_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_byte_orders() {
        let mut v = Vec::new();
        put_u32_both(&mut v, 0x0102_0304);
        put_u16_both(&mut v, 0x0a0b);
        assert_eq!(v, [4, 3, 2, 1, 1, 2, 3, 4, 0x0b, 0x0a, 0x0a, 0x0b]);
        assert_eq!(get_u32_le(&v, 0), Some(0x0102_0304));
        assert_eq!(get_u16_le(&v, 8), Some(0x0a0b));
        assert_eq!(get_u32_le(&v, 9), None);
        assert_eq!(get_u32_le(&v, usize::MAX), None);
        let mut buf = [0u8; 12];
        set_u32_both(&mut buf, 0, 0x0102_0304);
        set_u16_both(&mut buf, 8, 0x0a0b);
        assert_eq!(buf.as_slice(), v.as_slice());
    }

    #[test]
    fn sector_rounding() {
        assert_eq!(sectors(0), 0);
        assert_eq!(sectors(1), 1);
        assert_eq!(sectors(2048), 1);
        assert_eq!(sectors(2049), 2);
    }
}
