//! The 96-byte lead, as rpm 4.11.3 writes it (`lib/rpmlead.c`: `rpmLeadFromHeader`,
//! `rpmLeadWrite`): magic `ed ab ee db`, format 3.0, type 0 (binary), the architecture and OS
//! numbers of `rpmrc`'s `arch_canon`/`os_canon` tables, the `NEVR` truncated to 65 bytes and
//! NUL-terminated, signature type 5 (`RPMSIGTYPE_HEADERSIG`) and 16 reserved zero bytes.
//! rpm reads only the magic, the major version and the signature type back
//! (`rpmLeadCheck`); everything else comes from the headers.

use crate::layout::{LEAD_MAGIC, LEAD_SIZE};

/// `RPMSIGTYPE_HEADERSIG`: a signature header follows the lead.
const SIGTYPE_HEADERSIG: u16 = 5;
/// Room for the name in the lead, with its NUL.
const NAME_SIZE: usize = 66;

/// The lead for package `nevr` of architecture `arch`.
pub(crate) fn lead(nevr: &str, arch: &str) -> [u8; LEAD_SIZE] {
    // rpmbuild writes the build host's number; noarch packages are built on x86 here.
    let archnum: u16 = match arch {
        "x86_64" | "noarch" | "i386" | "i486" | "i586" | "i686" | "athlon" => 1,
        "aarch64" => 19,
        _ => 0,
    };
    let mut out = [0u8; LEAD_SIZE];
    out[..4].copy_from_slice(&LEAD_MAGIC);
    out[4] = 3; // major
    out[5] = 0; // minor
    out[6..8].copy_from_slice(&0u16.to_be_bytes()); // binary package
    out[8..10].copy_from_slice(&archnum.to_be_bytes());
    let name = nevr.as_bytes();
    let n = name.len().min(NAME_SIZE - 1);
    out[10..10 + n].copy_from_slice(&name[..n]);
    out[76..78].copy_from_slice(&1u16.to_be_bytes()); // Linux
    out[78..80].copy_from_slice(&SIGTYPE_HEADERSIG.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_fields() {
        let l = lead("demo-1.0-1", "noarch");
        assert_eq!(&l[..6], &[0xed, 0xab, 0xee, 0xdb, 3, 0]);
        assert_eq!(&l[10..21], b"demo-1.0-1\0");
        assert_eq!(&l[76..80], &[0, 1, 0, 5]);
        let long = "x".repeat(200);
        assert_eq!(lead(&long, "x86_64")[75], 0, "the name stays NUL-terminated");
    }
}
