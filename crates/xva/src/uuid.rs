//! UUIDs of the objects in `ova.xml`.
//!
//! Section 1.8 of `shared/reference/vm-formats.md` asks for v4 UUIDs and never empty strings.
//! xspack outputs must be reproducible, so callers derive them from input digests
//! ([`Uuid::from_seed`]) instead of drawing random ones.

use std::fmt;
use std::str::FromStr;

use sha1::{Digest, Sha1};

/// A 128-bit UUID, written in the usual lowercase `8-4-4-4-12` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

/// The text is not a `8-4-4-4-12` hex UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a UUID (8-4-4-4-12 hex digits)")]
pub struct ParseUuidError(pub String);

impl Uuid {
    /// The all-zero UUID, which the writer refuses: it is what an unset field looks like.
    pub const NIL: Uuid = Uuid([0; 16]);

    /// A UUID derived from `seed` (for example an input's digest plus the object's role): the
    /// first 16 bytes of SHA-1(`seed`) with the version-4 and RFC 4122 variant bits set. It looks
    /// like the random v4 UUID xapi expects and is a pure function of the seed.
    pub fn from_seed(seed: &[u8]) -> Uuid {
        let digest = Sha1::digest(seed);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Uuid(bytes)
    }

    /// Whether this is [`Uuid::NIL`].
    pub fn is_nil(&self) -> bool {
        *self == Uuid::NIL
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Uuid {
    type Err = ParseUuidError;

    /// Parses the hyphenated form, in either case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseUuidError(s.to_owned());
        let bytes = s.as_bytes();
        if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
            return Err(err());
        }
        let digits: Vec<u8> = bytes
            .iter()
            .enumerate()
            .filter(|(i, _)| !matches!(i, 8 | 13 | 18 | 23))
            .map(|(_, &c)| hex_value(c).ok_or_else(err))
            .collect::<Result<_, _>>()?;
        let mut out = [0u8; 16];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = pair[0] << 4 | pair[1];
        }
        Ok(Uuid(out))
    }
}

fn hex_value(c: u8) -> Option<u8> {
    char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

impl serde::Serialize for Uuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let u = Uuid::from_seed(b"seed");
        let text = u.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4", "version nibble");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "variant nibble");
        assert_eq!(text.parse::<Uuid>().unwrap(), u);
        assert_eq!(text.to_uppercase().parse::<Uuid>().unwrap(), u);
    }

    #[test]
    fn from_seed_is_deterministic_and_distinct() {
        assert_eq!(Uuid::from_seed(b"a"), Uuid::from_seed(b"a"));
        assert_ne!(Uuid::from_seed(b"a"), Uuid::from_seed(b"b"));
    }

    #[test]
    fn rejects_malformed_text() {
        for bad in [
            "",
            "00000000-0000-0000-0000-00000000000",
            "00000000-0000-0000-0000-0000000000000",
            "00000000_0000-0000-0000-000000000000",
            "0000000g-0000-0000-0000-000000000000",
            "000000000000-0000-0000-0000-00000000",
        ] {
            assert!(bad.parse::<Uuid>().is_err(), "{bad:?}");
        }
        assert!("00000000-0000-0000-0000-000000000000".parse::<Uuid>().unwrap().is_nil());
    }
}
