//! Field access for fixed-layout headers: big-endian for VHD and qcow2 (both formats store
//! every integer big-endian), little-endian for MBR, GPT and FAT, and the zero test used to keep
//! blocks unallocated.

pub(crate) fn get_u8<const N: usize>(buf: &[u8], off: usize) -> [u8; N] {
    buf[off..off + N].try_into().expect("slice of length N")
}

pub(crate) fn get_u16(buf: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(get_u8(buf, off))
}

pub(crate) fn get_u32(buf: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(get_u8(buf, off))
}

pub(crate) fn get_u64(buf: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(get_u8(buf, off))
}

pub(crate) fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

pub(crate) fn put_u16(buf: &mut [u8], off: usize, v: u16) {
    put(buf, off, &v.to_be_bytes());
}

pub(crate) fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    put(buf, off, &v.to_be_bytes());
}

pub(crate) fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    put(buf, off, &v.to_be_bytes());
}

#[cfg(test)]
pub(crate) fn get_le16(buf: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(get_u8(buf, off))
}

pub(crate) fn get_le32(buf: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(get_u8(buf, off))
}

pub(crate) fn get_le64(buf: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(get_u8(buf, off))
}

pub(crate) fn put_le16(buf: &mut [u8], off: usize, v: u16) {
    put(buf, off, &v.to_le_bytes());
}

pub(crate) fn put_le32(buf: &mut [u8], off: usize, v: u32) {
    put(buf, off, &v.to_le_bytes());
}

pub(crate) fn put_le64(buf: &mut [u8], off: usize, v: u64) {
    put(buf, off, &v.to_le_bytes());
}

/// Whether every byte is zero.
///
/// Comparing the slice with itself shifted by one byte is a single `memcmp`, which is fast even
/// in unoptimised test builds, where a byte loop over gigabytes of zeros would dominate.
pub(crate) fn is_zero(buf: &[u8]) -> bool {
    match buf.first() {
        None => true,
        Some(&first) => first == 0 && buf[1..] == buf[..buf.len() - 1],
    }
}

/// `value` rounded up to a multiple of `align` (a power of two).
pub(crate) fn align_up(value: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    (value + align - 1) & !(align - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_test() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 100]));
        let mut buf = [0u8; 100];
        for i in [0, 1, 50, 99] {
            buf[i] = 1;
            assert!(!is_zero(&buf), "byte {i}");
            buf[i] = 0;
        }
        // Constant non-zero runs must not look zero.
        assert!(!is_zero(&[7; 10]));
    }

    #[test]
    fn fields_round_trip() {
        let mut buf = [0u8; 16];
        put_u16(&mut buf, 0, 0x1234);
        put_u32(&mut buf, 2, 0xdead_beef);
        put_u64(&mut buf, 6, 0x0102_0304_0506_0708);
        assert_eq!(buf[..4], [0x12, 0x34, 0xde, 0xad]);
        assert_eq!(get_u16(&buf, 0), 0x1234);
        assert_eq!(get_u32(&buf, 2), 0xdead_beef);
        assert_eq!(get_u64(&buf, 6), 0x0102_0304_0506_0708);
        put_le16(&mut buf, 0, 0x1234);
        put_le32(&mut buf, 2, 0xdead_beef);
        put_le64(&mut buf, 6, 0x0102_0304_0506_0708);
        assert_eq!(buf[..4], [0x34, 0x12, 0xef, 0xbe]);
        assert_eq!(get_le16(&buf, 0), 0x1234);
        assert_eq!(get_le32(&buf, 2), 0xdead_beef);
        assert_eq!(get_le64(&buf, 6), 0x0102_0304_0506_0708);
        assert_eq!(align_up(1, 512), 512);
        assert_eq!(align_up(512, 512), 512);
        assert_eq!(align_up(0, 512), 0);
    }
}
