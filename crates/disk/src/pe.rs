//! PE/COFF images (Microsoft "PE Format" specification): just enough to tell whether an EFI
//! binary or a kernel with an EFI stub carries an Authenticode signature.
//!
//! - The MS-DOS stub starts with `MZ`; the 32-bit field at `0x3C` (`e_lfanew`) points at the
//!   `PE\0\0` signature, which the 20-byte COFF file header follows (section "MS-DOS Stub",
//!   "Signature", "COFF File Header"). `Machine` `0x8664` is x64.
//! - The optional header's magic is `0x10B` (PE32) or `0x20B` (PE32+). Its data directories
//!   start at offset 96 (PE32) or 112 (PE32+), after `NumberOfRvaAndSizes` (section "Optional
//!   Header Data Directories").
//! - Directory 4 is the Certificate Table. Unlike the others its first field is a file
//!   offset, not an RVA. It holds `WIN_CERTIFICATE` entries: `dwLength` (u32), `wRevision`
//!   (u16, `0x0200`), `wCertificateType` (u16, `0x0002` for PKCS#7 signed data, the
//!   Authenticode signature) (section "The Attribute Certificate Table (Image Only)").
//!
//! Nothing here verifies a signature: the firmware, shim and GRUB do that at boot with keys
//! xspack never holds. This only finds binaries that cannot pass, before they are installed.

/// What [`signature`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// An x64 PE image with an Authenticode (PKCS#7) certificate.
    Signed,
    /// An x64 PE image without one.
    Unsigned,
    /// Not an x64 PE image; the reason.
    NotPe(String),
}

/// `Machine` of x64 images.
const MACHINE_X64: u16 = 0x8664;
/// The Certificate Table's index among the data directories.
const CERTIFICATE_TABLE: u32 = 4;
/// `WIN_CERT_REVISION_2_0` and `WIN_CERT_TYPE_PKCS_SIGNED_DATA`.
const CERT_REVISION: u16 = 0x0200;
const CERT_PKCS7: u16 = 0x0002;

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(data.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Whether `data`, a whole image, is an x64 PE image with an Authenticode signature.
pub fn signature(data: &[u8]) -> Signature {
    match parse(data) {
        Ok(true) => Signature::Signed,
        Ok(false) => Signature::Unsigned,
        Err(reason) => Signature::NotPe(reason),
    }
}

fn parse(data: &[u8]) -> Result<bool, String> {
    if data.get(..2) != Some(b"MZ") {
        return Err("no MZ header".into());
    }
    let pe = u32_at(data, 0x3C).ok_or("truncated MS-DOS header")? as usize;
    if data.get(pe..pe.saturating_add(4)) != Some(b"PE\0\0") {
        return Err("no PE signature".into());
    }
    let coff = pe + 4;
    let machine = u16_at(data, coff).ok_or("truncated COFF header")?;
    if machine != MACHINE_X64 {
        return Err(format!("machine {machine:#06x}, not x64"));
    }
    let optional_size = u16_at(data, coff + 16).ok_or("truncated COFF header")? as usize;
    let optional = coff + 20;
    let (count_at, dirs_at) = match u16_at(data, optional).ok_or("truncated optional header")? {
        0x10B => (92, 96),
        0x20B => (108, 112),
        magic => return Err(format!("optional header magic {magic:#06x}")),
    };
    let count = u32_at(data, optional + count_at).ok_or("truncated optional header")?;
    let entry = dirs_at + CERTIFICATE_TABLE as usize * 8;
    if count <= CERTIFICATE_TABLE || entry + 8 > optional_size {
        return Ok(false);
    }
    let offset = u32_at(data, optional + entry).ok_or("truncated data directories")? as usize;
    let size = u32_at(data, optional + entry + 4).ok_or("truncated data directories")? as usize;
    if size == 0 {
        return Ok(false);
    }
    let end = offset.checked_add(size).filter(|end| *end <= data.len());
    if end.is_none() || size < 8 {
        return Err("the certificate table lies outside the file".into());
    }
    let length = u32_at(data, offset).unwrap_or(0) as usize;
    let revision = u16_at(data, offset + 4).unwrap_or(0);
    let kind = u16_at(data, offset + 6).unwrap_or(0);
    Ok((8..=size).contains(&length) && revision == CERT_REVISION && kind == CERT_PKCS7)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xspack_testkit::pe_image as image;

    #[test]
    fn signed_and_unsigned_images() {
        assert_eq!(signature(&image(4096, Some((2048, 1024)))), Signature::Signed);
        assert_eq!(signature(&image(4096, None)), Signature::Unsigned);
        assert_eq!(signature(&image(4096, Some((0, 0)))), Signature::Unsigned);
    }

    #[test]
    fn damaged_images_are_not_pe_and_never_panic() {
        assert!(matches!(signature(b""), Signature::NotPe(_)));
        assert!(matches!(signature(b"MZ"), Signature::NotPe(_)));
        let outside = signature(&image(4096, Some((4000, 1024))));
        assert!(matches!(outside, Signature::NotPe(r) if r.contains("outside")));
        let overflow = signature(&image(4096, Some((u32::MAX, 16))));
        assert!(matches!(overflow, Signature::NotPe(_)));
        let mut arm = image(4096, None);
        arm[0x84..0x86].copy_from_slice(&0xAA64u16.to_le_bytes());
        assert!(matches!(signature(&arm), Signature::NotPe(r) if r.contains("not x64")));
        let mut wrong_kind = image(4096, Some((2048, 1024)));
        wrong_kind[2048 + 6] = 1;
        assert_eq!(signature(&wrong_kind), Signature::Unsigned);
        // Every cut before the certificate's end is refused or read as unsigned, never a panic.
        let full = image(4096, Some((2048, 1024)));
        for len in 0..3072 {
            assert_ne!(signature(&full[..len]), Signature::Signed, "cut at {len}");
        }
        let mut huge = image(4096, None);
        huge[0x3C..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(signature(&huge), Signature::NotPe(_)));
    }
}
