//! The 16-byte unique id stored in a VHD footer, printed in the hyphenated lowercase form of
//! RFC 9562 section 4.
//!
//! Builds are reproducible, so callers do not draw ids at random: they derive them from the
//! digests of their inputs with [`Uuid::from_digest`], which gives a version 4 layout (what
//! XenServer itself writes) filled with digest bytes instead of random ones.

use std::fmt;
use std::str::FromStr;

use xspack_io::Sha256Digest;

/// A 16-byte unique id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Uuid([u8; 16]);

/// Why a string is not a hyphenated UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a UUID of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")]
pub struct ParseUuidError(pub String);

impl Uuid {
    /// The nil UUID (all zeros), which blktap refuses in a VHD footer.
    pub const NIL: Uuid = Uuid([0; 16]);

    /// The id with these bytes, in the order they are stored.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Uuid(bytes)
    }

    /// The stored bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Whether this is the nil UUID.
    pub fn is_nil(&self) -> bool {
        self.0 == [0; 16]
    }

    /// A version 4 layout id made of the first 16 bytes of `digest`, with the version and
    /// variant bits set as RFC 9562 section 5.4 requires.
    pub fn from_digest(digest: &Sha256Digest) -> Self {
        let mut bytes: [u8; 16] = digest.0[..16].try_into().expect("16 of 32 bytes");
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Uuid(bytes)
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

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseUuidError(s.to_owned());
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] {
            return Err(err());
        }
        let hex: String = groups.concat();
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = hex.get(2 * i..2 * i + 2).ok_or_else(err)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| err())?;
        }
        Ok(Uuid(bytes))
    }
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
    fn text_round_trip() {
        let u = Uuid::from_bytes([
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ]);
        assert_eq!(u.to_string(), "12345678-9abc-def0-0123-456789abcdef");
        assert_eq!("12345678-9ABC-def0-0123-456789abcdef".parse::<Uuid>().unwrap(), u);
        for bad in
            ["", "12345678-9abc-def0-0123-456789abcde", "1234567-89abc-def0-0123-456789abcdef"]
        {
            assert!(bad.parse::<Uuid>().is_err(), "{bad}");
        }
        assert!("+2345678-9abc-def0-0123-456789abcdef".parse::<Uuid>().is_err());
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"12345678-9abc-def0-0123-456789abcdef\"");
    }

    #[test]
    fn from_digest_sets_version_and_variant() {
        let u = Uuid::from_digest(&Sha256Digest::of_bytes(b"disk"));
        let text = u.to_string();
        assert_eq!(&text[14..15], "4");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"), "{text}");
        assert!(!u.is_nil());
        assert!(Uuid::NIL.is_nil());
    }
}
