//! Chunk checksums, as xapi checks them (`xapi-project/xen-api:ocaml/xapi/stream_vdi.ml`,
//! `recv_all_vdi` and `verify_inline_checksum`).
//!
//! `.checksum` holds the SHA-1 of the chunk as 40 lowercase hex characters; `.xxhash` holds its
//! XXH64 (seed 0) as 16 uppercase hex characters, as xapi prints it with `%016LX`. Neither has a
//! newline, and xapi compares them as strings, so the case matters.

use std::fmt::Write as _;

use serde::Serialize;
use sha1::{Digest, Sha1};

/// Which checksum member follows each chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumKind {
    /// `.checksum`: SHA-1, 40 lowercase hex characters. Read by every xapi and by xva-img 1.4.2;
    /// the default.
    #[default]
    Sha1,
    /// `.xxhash`: XXH64 with seed 0, 16 uppercase hex characters. Imported only by xapi
    /// v1.170 (about CH 8.1) and later, and not read by xva-img 1.4.2.
    Xxh64,
}

impl ChecksumKind {
    /// Suffix of the checksum member's name, without the dot.
    pub fn suffix(self) -> &'static str {
        match self {
            ChecksumKind::Sha1 => "checksum",
            ChecksumKind::Xxh64 => "xxhash",
        }
    }

    /// The kind whose member suffix is `suffix`.
    pub fn from_suffix(suffix: &str) -> Option<Self> {
        match suffix {
            "checksum" => Some(ChecksumKind::Sha1),
            "xxhash" => Some(ChecksumKind::Xxh64),
            _ => None,
        }
    }

    /// Length of the checksum member's payload.
    pub fn text_len(self) -> usize {
        match self {
            ChecksumKind::Sha1 => 40,
            ChecksumKind::Xxh64 => 16,
        }
    }

    /// The checksum of `data`, as written in the member.
    pub fn compute(self, data: &[u8]) -> String {
        match self {
            ChecksumKind::Sha1 => {
                Sha1::digest(data).iter().fold(String::with_capacity(40), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                })
            }
            ChecksumKind::Xxh64 => format!("{:016X}", xxhash_rust::xxh64::xxh64(data, 0)),
        }
    }

    /// Whether `text` is a well-formed checksum of this kind: the right length, hex digits only,
    /// in the right case.
    pub fn is_well_formed(self, text: &[u8]) -> bool {
        let digit_ok = |c: &u8| match self {
            ChecksumKind::Sha1 => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
            ChecksumKind::Xxh64 => c.is_ascii_digit() || (b'A'..=b'F').contains(c),
        };
        text.len() == self.text_len() && text.iter().all(digit_ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // FIPS 180 test vector "abc"; XXH64("", 0) from the xxHash reference.
        assert_eq!(ChecksumKind::Sha1.compute(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(ChecksumKind::Xxh64.compute(b""), "EF46DB3751D8E999");
    }

    #[test]
    fn case_is_part_of_the_format() {
        let sha = ChecksumKind::Sha1.compute(b"x");
        assert!(ChecksumKind::Sha1.is_well_formed(sha.as_bytes()));
        assert!(!ChecksumKind::Sha1.is_well_formed(sha.to_uppercase().as_bytes()));
        assert!(!ChecksumKind::Sha1.is_well_formed(format!("{sha}\n").as_bytes()));
        let xx = ChecksumKind::Xxh64.compute(b"x");
        assert!(ChecksumKind::Xxh64.is_well_formed(xx.as_bytes()));
        assert!(!ChecksumKind::Xxh64.is_well_formed(xx.to_lowercase().as_bytes()));
    }

    #[test]
    fn suffixes_round_trip() {
        for kind in [ChecksumKind::Sha1, ChecksumKind::Xxh64] {
            assert_eq!(ChecksumKind::from_suffix(kind.suffix()), Some(kind));
        }
        assert_eq!(ChecksumKind::from_suffix("md5"), None);
    }
}
