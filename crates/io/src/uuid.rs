//! The 16-byte ids of VHD footers, GPT partitions and `ova.xml` objects, printed in the
//! hyphenated lowercase form of RFC 9562 section 4.
//!
//! Builds are reproducible, so ids are never drawn at random: callers derive them from the
//! digests of their inputs ([`Uuid::from_digest`], [`Uuid::from_seed`]), which fill the version
//! 4 layout XenServer itself writes with digest bytes instead of random ones.

use std::fmt;
use std::str::FromStr;

use sha1::{Digest as _, Sha1};

use crate::Sha256Digest;

/// A UUID.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Uuid(pub [u8; 16]);

/// Why a string is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a UUID of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")]
pub struct ParseUuidError(pub String);

/// Sets the RFC 9562 version 4 and variant bits.
fn version4(mut bytes: [u8; 16]) -> Uuid {
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    Uuid(bytes)
}

impl Uuid {
    /// The all-zero UUID, which XenServer treats as "none".
    pub const NIL: Uuid = Uuid([0; 16]);

    /// The UUID with these bytes, unchanged.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Uuid(bytes)
    }

    /// The bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Whether this is [`Uuid::NIL`].
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// A version 4 layout UUID from the first 16 bytes of a SHA-256 digest.
    pub fn from_digest(digest: &Sha256Digest) -> Self {
        version4(digest.0[..16].try_into().expect("16 of 32 bytes"))
    }

    /// A version 4 layout UUID from the first 16 bytes of SHA-1(`seed`).
    pub fn from_seed(seed: &[u8]) -> Self {
        let digest = Sha1::digest(seed);
        version4(digest[..16].try_into().expect("16 of 20 bytes"))
    }
}

impl From<[u8; 16]> for Uuid {
    fn from(bytes: [u8; 16]) -> Self {
        Uuid(bytes)
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

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uuid({self})")
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
            .map(|(_, &c)| {
                char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok()).ok_or_else(err)
            })
            .collect::<Result<_, _>>()?;
        let mut out = [0u8; 16];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = (pair[0] << 4) | pair[1];
        }
        Ok(Uuid(out))
    }
}

impl serde::Serialize for Uuid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Uuid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_in_either_case() {
        let u = Uuid::from_seed(b"seed");
        let text = u.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4", "version nibble");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "variant nibble");
        assert_eq!(text.parse::<Uuid>().unwrap(), u);
        assert_eq!(text.to_uppercase().parse::<Uuid>().unwrap(), u);
        for bad in [
            "",
            "12345678-9abc-def0-0123-456789abcde",
            "+2345678-9abc-def0-0123-456789abcdef",
            "123456789abc-def0-0123-456789abcdef0",
        ] {
            assert!(bad.parse::<Uuid>().is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&Uuid::from_bytes([0x12; 16])).unwrap(),
            "\"12121212-1212-1212-1212-121212121212\""
        );
    }

    #[test]
    fn derived_ids_are_stable_version4_and_distinct() {
        let d = Uuid::from_digest(&Sha256Digest::of_bytes(b"disk"));
        assert_eq!(&d.to_string()[14..15], "4");
        assert_eq!(Uuid::from_seed(b"a"), Uuid::from_seed(b"a"));
        assert_ne!(Uuid::from_seed(b"a"), Uuid::from_seed(b"b"));
        assert!(Uuid::NIL.is_nil() && !d.is_nil());
    }
}
