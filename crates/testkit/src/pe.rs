//! Stand-in EFI binaries: the smallest x64 PE32+ images the signature check reads (Microsoft
//! "PE Format": MS-DOS stub, COFF header, optional header, data directory 4 the Certificate
//! Table holding one `WIN_CERTIFICATE`). They boot nothing.

/// A PE32+ x64 image of `len` bytes (at least 1024); with `cert = Some((offset, size))` its
/// Certificate Table points at a PKCS#7 `WIN_CERTIFICATE` of `size` bytes at `offset`.
pub fn pe_image(len: usize, cert: Option<(u32, u32)>) -> Vec<u8> {
    let mut d = vec![0u8; len.max(1024)];
    d[..2].copy_from_slice(b"MZ");
    d[0x3C..0x40].copy_from_slice(&0x80u32.to_le_bytes());
    d[0x80..0x84].copy_from_slice(b"PE\0\0");
    d[0x84..0x86].copy_from_slice(&0x8664u16.to_le_bytes());
    d[0x84 + 16..0x84 + 18].copy_from_slice(&240u16.to_le_bytes());
    let opt = 0x84 + 20;
    d[opt..opt + 2].copy_from_slice(&0x20Bu16.to_le_bytes());
    d[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
    if let Some((offset, size)) = cert {
        let e = opt + 112 + 32;
        d[e..e + 4].copy_from_slice(&offset.to_le_bytes());
        d[e + 4..e + 8].copy_from_slice(&size.to_le_bytes());
        let o = offset as usize;
        if size >= 8 && o + 8 <= d.len() {
            d[o..o + 4].copy_from_slice(&size.to_le_bytes());
            d[o + 4..o + 6].copy_from_slice(&0x0200u16.to_le_bytes());
            d[o + 6..o + 8].copy_from_slice(&0x0002u16.to_le_bytes());
        }
    }
    d
}

/// A signed stand-in of `len` bytes (at least 1024): the certificate fills the last quarter.
pub fn signed_pe(len: usize) -> Vec<u8> {
    let len = len.max(1024);
    let quarter = u32::try_from(len / 4).expect("a small image");
    pe_image(len, Some((u32::try_from(len).expect("a small image") - quarter, quarter)))
}
