//! Detached `OpenPGP` signatures (RFC 4880 section 11.4, signature type 0x00 "binary document",
//! SHA-256, v4 packets, ASCII armor per section 6) like `gpg --armor --detach-sign`, and
//! checking them and RPM header signatures against a public key.
//!
//! xapi verifies `update.xml.asc` and `repodata/repomd.xml.asc` with gpg
//! (`xapi-project/xen-api:ocaml/xapi/gpg.ml`; `docs/formats/packs.md` section "Signing and keys").
//! The signatures written here carry the creation time and issuer fingerprint in the hashed area
//! and the issuer key id unhashed, as gpg 2.2 does; their creation time is a caller-given timestamp
//! (normally `SOURCE_DATE_EPOCH`) so that signing is reproducible (RSA PKCS#1 v1.5 signatures are
//! deterministic).

use std::fs::File;
use std::io::{BufReader, Read, Write};

use camino::{Utf8Path, Utf8PathBuf};
use pgp::composed::{ArmorOptions, Deserializable, DetachedSignature};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{
    Packet, PacketParser, Signature, SignatureConfig, SignatureType, Subpacket, SubpacketData,
};
use pgp::types::{KeyDetails, Timestamp};
use xspack_io::{AtomicFile, BUFFER_SIZE};

use crate::Error;
use crate::digest::hex;
use crate::keys::{PublicKey, SigningKey};

/// Facts about a verified detached signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInfo {
    /// Long key id of the signing key (16 uppercase hex digits).
    pub key_id: String,
    /// Creation time recorded in the signature.
    pub created: u32,
    /// Digest algorithm, e.g. `SHA256`.
    pub hash: String,
}

/// Facts about a verified RPM header signature.
pub type RpmSignature = SignatureInfo;

fn sign_error(what: &str, e: &dyn std::fmt::Display) -> Error {
    Error::Sign { what: what.to_owned(), reason: e.to_string() }
}

/// Signs `data` (read to its end) and returns the armored detached signature. `time` is the
/// signature creation time; it is raised to the key's creation time if earlier.
pub fn sign_detached(key: &SigningKey, data: impl Read, time: u32) -> Result<String, Error> {
    sign_named(key, data, time, "data")
}

/// An `OpenPGP` v4 binary-document signature (RSA, SHA-256) over `data`, with the creation
/// time and issuer fingerprint hashed and the issuer key id unhashed, as gpg writes them (for
/// detached signatures and for `rpmsign`'s header signatures alike). `what` names what is
/// signed in errors.
pub(crate) fn signature(
    key: &SigningKey,
    data: impl Read,
    time: u32,
    what: &str,
) -> Result<Signature, Error> {
    let primary = &key.key.primary_key;
    let mut config =
        SignatureConfig::v4(SignatureType::Binary, primary.algorithm(), HashAlgorithm::Sha256);
    let created = Timestamp::from_secs(key.signature_time(time));
    config.hashed_subpackets = vec![
        Subpacket::regular(SubpacketData::SignatureCreationTime(created))
            .map_err(|e| sign_error(what, &e))?,
        Subpacket::regular(SubpacketData::IssuerFingerprint(primary.fingerprint()))
            .map_err(|e| sign_error(what, &e))?,
    ];
    config.unhashed_subpackets = vec![
        Subpacket::regular(SubpacketData::IssuerKeyId(primary.legacy_key_id()))
            .map_err(|e| sign_error(what, &e))?,
    ];
    config.sign(primary, &key.password(), data).map_err(|e| sign_error(what, &e))
}

/// [`sign_detached`], naming what is signed in errors.
fn sign_named(key: &SigningKey, data: impl Read, time: u32, what: &str) -> Result<String, Error> {
    DetachedSignature::new(signature(key, data, time, what)?)
        .to_armored_string(ArmorOptions::default())
        .map_err(|e| sign_error(what, &e))
}

/// Signs the file at `path` and writes `<path>.asc` atomically (replacing an old signature).
/// Returns the signature's path.
pub fn sign_detached_file(
    key: &SigningKey,
    path: &Utf8Path,
    time: u32,
) -> Result<Utf8PathBuf, Error> {
    let file = File::open(path).map_err(|e| Error::io("opening file to sign", path, e))?;
    let armored =
        sign_named(key, BufReader::with_capacity(BUFFER_SIZE, file), time, path.as_str())?;
    let dest = Utf8PathBuf::from(format!("{path}.asc"));
    let mut out = AtomicFile::create_or_replace(&dest)?;
    out.write_all(armored.as_bytes())
        .map_err(|e| Error::io("writing signature", dest.as_path(), e))?;
    out.commit()?;
    Ok(dest)
}

fn key_id_of(signature: &Signature) -> String {
    if let Some(id) = signature.issuer_key_id().first() {
        return hex(id.as_ref()).to_uppercase();
    }
    signature
        .issuer_fingerprint()
        .first()
        .map(|fp| {
            let bytes = fp.as_bytes();
            hex(&bytes[bytes.len().saturating_sub(8)..]).to_uppercase()
        })
        .unwrap_or_default()
}

fn info_of(signature: &Signature) -> SignatureInfo {
    SignatureInfo {
        key_id: key_id_of(signature),
        created: signature.created().map_or(0, Timestamp::as_secs),
        hash: signature.hash_alg().map(|h| format!("{h:?}").to_uppercase()).unwrap_or_default(),
    }
}

/// Verifies an armored detached `signature` over `data` (read to its end) with `key`.
/// `path` names the signed file in errors. A signature by another key, or over other bytes,
/// is [`Error::BadSignature`].
pub fn verify_detached(
    key: &PublicKey,
    data: impl Read,
    signature: &str,
    path: &Utf8Path,
) -> Result<SignatureInfo, Error> {
    let (detached, _) =
        DetachedSignature::from_string(signature).map_err(|e| Error::InvalidSignature {
            path: Utf8PathBuf::from(format!("{path}.asc")),
            reason: e.to_string(),
        })?;
    let sig = detached.signature;
    let info = info_of(&sig);
    let bad = |reason: String| Error::BadSignature { path: path.to_owned(), reason };
    if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
        return Err(bad(format!("signature type {:?} is not a document signature", sig.typ())));
    }
    if info.key_id != key.info().key_id {
        return Err(bad(format!("made by key {}, not by {}", info.key_id, key.info().key_id)));
    }
    sig.verify(&key.key.primary_key, data).map_err(|e| bad(format!("key {}: {e}", info.key_id)))?;
    Ok(info)
}

/// Verifies the detached signature file `signature` (e.g. `repomd.xml.asc`) over `path`.
pub fn verify_detached_file(
    key: &PublicKey,
    path: &Utf8Path,
    signature: &Utf8Path,
) -> Result<SignatureInfo, Error> {
    let text = std::fs::read_to_string(signature)
        .map_err(|e| Error::io("reading signature", signature, e))?;
    let file = File::open(path).map_err(|e| Error::io("opening signed file", path, e))?;
    verify_detached(key, BufReader::with_capacity(BUFFER_SIZE, file), &text, path)
}

/// Verifies the `OpenPGP` header signature of the RPM at `path` with `key`, as
/// `rpm -K` does with that key imported (the header-only RSA signature, tag 268, that xspack
/// and rpmsign write). Reads only the lead and headers: the header+payload signature (tag 1002)
/// and MD5 are left to `rpm -K`.
pub fn verify_rpm_signature(path: &Utf8Path, key: &PublicKey) -> Result<RpmSignature, Error> {
    let (meta, header) = crate::header::read_metadata(path)?;
    let raw = meta
        .raw_signatures()
        .map_err(|e| Error::CorruptHeader { path: path.to_owned(), reason: e.to_string() })?;
    let mut signatures = Vec::new();
    for bytes in &raw {
        for packet in PacketParser::new(bytes.as_ref()) {
            match packet {
                Ok(Packet::Signature(sig)) => signatures.push(sig),
                Ok(_) => {}
                Err(e) => {
                    return Err(Error::CorruptHeader {
                        path: path.to_owned(),
                        reason: format!("signature packet: {e}"),
                    });
                }
            }
        }
    }
    if signatures.is_empty() {
        return Err(Error::UnsignedRpm { path: path.to_owned() });
    }
    let wanted = &key.info().key_id;
    let Some(sig) = signatures.iter().find(|s| &key_id_of(s) == wanted) else {
        let ids: Vec<String> = signatures.iter().map(key_id_of).collect();
        return Err(Error::BadSignature {
            path: path.to_owned(),
            reason: format!("signed by key {} (NOKEY for {wanted})", ids.join(", ")),
        });
    };
    sig.verify(&key.key.primary_key, header.as_slice()).map_err(|e| Error::BadSignature {
        path: path.to_owned(),
        reason: format!("header signature: {e}"),
    })?;
    Ok(info_of(sig))
}
