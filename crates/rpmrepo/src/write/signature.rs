//! The signature header, with what rpm 4.11.3's `rpmbuild` and `rpmsign --addsign` write
//! (`build/pack.c`: `writeRPM`; `lib/signature.c`: `rpmGenDigest`, `rpmWriteSignature`;
//! `sign/rpmgensig.c`: `rpmSign`, `makeGPGSignature`), plus the SHA-256 header digest newer
//! rpm reads (`RPMSIGTAG_SHA256`, rpm 4.14+):
//!
//! | tag | what |
//! | --- | --- |
//! | 268 `RSA` | `OpenPGP` signature of the header (signed packages) |
//! | 269 `SHA1` | hex SHA-1 of the header |
//! | 273 `SHA256` | hex SHA-256 of the header |
//! | 1000 `SIZE` (270 `LONGSIZE` from 4 GiB) | size of header and compressed payload |
//! | 1002 `PGP` | `OpenPGP` signature of header and payload (signed packages) |
//! | 1004 `MD5` | MD5 of header and payload |
//! | 1007 `PAYLOADSIZE` (271 `LONGARCHIVESIZE` from 4 GiB - 1) | size of the cpio archive |
//! | 1008 `RESERVEDSPACE` | zero bytes that give the header a fixed size |
//!
//! rpm 4.11 takes the archive size from 1007 or 271 (`headerMergeLegacySigs` in
//! `lib/package.c` copies the signature tags 256–999 and renames 1007 to `ARCHIVESIZE`);
//! `rpm2cpio` fails without one. Its `rpm -K` checks the payload only through 1004 and 1002
//! (`rpmpkgVerifySigs` in `lib/rpmchecksig.c`).
//!
//! The payload is written before the signatures are known, so the signature header has a size
//! fixed in advance: an RSA signature's MPI drops leading zero bytes, so it is sometimes a byte
//! or two shorter than the modulus, and the 64-bit size tags are longer than the 32-bit ones.
//! `RESERVEDSPACE` (the tag rpm 4.14+ `rpmsign` uses for signing in place, last by tag number,
//! binary, so free of alignment) takes up the difference. rpm 4.11 knows nothing of tag 1008
//! and ignores it: `rpmReadSignature` only checks each entry's type, offset and count
//! (`headerVerifyInfo`), `rpmpkgVerifySigs` skips unknown tags and `headerMergeLegacySigs`
//! drops tags outside 256–999. The size is a multiple of 8, so no padding follows it.

use std::io::Read;

use pgp::packet::PacketTrait;
use pgp::types::SignatureBytes;

use super::blob::{Header, Value};
use crate::Error;
use crate::keys::SigningKey;

const HEADERSIGNATURES: u32 = 62;
const SIGTAG_RSA: u32 = 268;
const SIGTAG_SHA1: u32 = 269;
const SIGTAG_LONGSIZE: u32 = 270;
const SIGTAG_LONGARCHIVESIZE: u32 = 271;
const SIGTAG_SHA256: u32 = 273;
const SIGTAG_SIZE: u32 = 1000;
const SIGTAG_PGP: u32 = 1002;
const SIGTAG_MD5: u32 = 1004;
const SIGTAG_PAYLOADSIZE: u32 = 1007;
const SIGTAG_RESERVEDSPACE: u32 = 1008;

/// What the signature header records.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    /// Size of the header and the compressed payload.
    pub(crate) size: u64,
    /// Size of the uncompressed cpio archive.
    pub(crate) archive_size: u64,
    pub(crate) md5: [u8; 16],
    pub(crate) sha1_hex: String,
    pub(crate) sha256_hex: String,
    /// Header-only and header+payload `OpenPGP` signature packets.
    pub(crate) signatures: Option<(Vec<u8>, Vec<u8>)>,
}

fn header_of(f: &Facts, reserved: usize) -> Header {
    let mut h = Header::default();
    match u32::try_from(f.size) {
        Ok(size) => h.put(SIGTAG_SIZE, Value::Int32(vec![size])),
        Err(_) => h.put(SIGTAG_LONGSIZE, Value::Int64(vec![f.size])),
    }
    // rpmbuild: 32 bits while `cpioArchiveSize < UINT32_MAX`.
    match u32::try_from(f.archive_size) {
        Ok(size) if size < u32::MAX => h.put(SIGTAG_PAYLOADSIZE, Value::Int32(vec![size])),
        _ => h.put(SIGTAG_LONGARCHIVESIZE, Value::Int64(vec![f.archive_size])),
    }
    h.put(SIGTAG_MD5, Value::Bin(f.md5.to_vec()));
    h.put(SIGTAG_SHA1, Value::Str(f.sha1_hex.clone()));
    h.put(SIGTAG_SHA256, Value::Str(f.sha256_hex.clone()));
    if let Some((rsa, pgp)) = &f.signatures {
        h.put(SIGTAG_RSA, Value::Bin(rsa.clone()));
        h.put(SIGTAG_PGP, Value::Bin(pgp.clone()));
    }
    h.put(SIGTAG_RESERVEDSPACE, Value::Bin(vec![0; reserved]));
    h
}

/// The fixed size of the signature header: room for the longest signatures `max_sig` (`None`
/// when unsigned) and the 64-bit size tags, plus at least 8 bytes of reserved space, rounded
/// up to 8.
pub(crate) fn reserved_size(max_sig: Option<usize>) -> usize {
    let mut longest = 0;
    for (size, archive_size) in [(0, 0), (u64::MAX, 0), (0, u64::MAX), (u64::MAX, u64::MAX)] {
        let facts = Facts {
            size,
            archive_size,
            md5: [0; 16],
            sha1_hex: "0".repeat(40),
            sha256_hex: "0".repeat(64),
            signatures: max_sig.map(|n| (vec![0; n], vec![0; n])),
        };
        longest = longest.max(encoded_len(&facts, 1));
    }
    (longest + 8).div_ceil(8) * 8
}

/// The size of the signature header with `reserved` bytes of reserved space. (The signature
/// header is a few hundred bytes: far below what [`Header::encode`] refuses.)
fn encoded_len(facts: &Facts, reserved: usize) -> usize {
    header_of(facts, reserved).encode(HEADERSIGNATURES).map_or(usize::MAX, |e| e.bytes.len())
}

/// The signature header of exactly `size` bytes ([`reserved_size`]).
pub(crate) fn encode(facts: &Facts, size: usize) -> Result<Vec<u8>, Error> {
    let base = encoded_len(facts, 1);
    let filler = (size + 1).checked_sub(base).filter(|f| *f >= 1).ok_or_else(|| Error::Sign {
        what: "RPM signature header".into(),
        reason: format!("{base} bytes do not fit the {size} reserved"),
    })?;
    let bytes = header_of(facts, filler)
        .encode(HEADERSIGNATURES)
        .map_err(|reason| Error::Sign { what: "RPM signature header".into(), reason })?
        .bytes;
    debug_assert_eq!(bytes.len(), size);
    Ok(bytes)
}

fn sign_error(e: &dyn std::fmt::Display) -> Error {
    Error::Sign { what: "RPM".into(), reason: e.to_string() }
}

/// The `OpenPGP` signature packet over `data` that `rpmsign` writes ([`crate::sign::signature`]).
pub(crate) fn sign(key: &SigningKey, time: u32, data: impl Read) -> Result<Vec<u8>, Error> {
    Ok(sign_packet(key, time, data)?.0)
}

/// [`sign`], and the length of the signature MPI in it.
fn sign_packet(key: &SigningKey, time: u32, data: impl Read) -> Result<(Vec<u8>, usize), Error> {
    let signature = crate::sign::signature(key, data, time, "RPM")?;
    let mpi = match signature.signature() {
        Some(SignatureBytes::Mpis(m)) => m.iter().map(|m| m.as_ref().len()).sum(),
        _ => return Err(sign_error(&"not an RSA signature")),
    };
    let mut bytes = Vec::with_capacity(600);
    signature.to_writer_with_header(&mut bytes).map_err(|e| sign_error(&e))?;
    Ok((bytes, mpi))
}

/// The longest signature packet `key` can make: a probe signature with its MPI at the full
/// modulus size.
pub(crate) fn max_signature_len(key: &SigningKey, time: u32) -> Result<usize, Error> {
    let (probe, mpi) = sign_packet(key, time, &b""[..])?;
    let modulus = key.info().bits.div_ceil(8) as usize;
    Ok(probe.len() - mpi + modulus.max(mpi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(size: u64, sig: Option<usize>) -> Facts {
        Facts {
            size,
            archive_size: size,
            md5: [1; 16],
            sha1_hex: "a".repeat(40),
            sha256_hex: "b".repeat(64),
            signatures: sig.map(|n| (vec![2; n], vec![3; n])),
        }
    }

    #[test]
    fn shorter_signatures_and_small_sizes_fill_the_same_room() {
        let room = reserved_size(Some(287));
        assert_eq!(room % 8, 0);
        for (size, sig) in [(10, 287), (10, 286), (u64::from(u32::MAX) + 1, 285), (7, 280)] {
            assert_eq!(encode(&facts(size, Some(sig)), room).unwrap().len(), room);
        }
        let unsigned = reserved_size(None);
        assert_eq!(encode(&facts(5, None), unsigned).unwrap().len(), unsigned);
        assert!(matches!(encode(&facts(5, Some(400)), room), Err(Error::Sign { .. })));
    }
}
