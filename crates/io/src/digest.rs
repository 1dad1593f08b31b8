//! The SHA-256 digest type used in `SHA256SUMS`, `manifest.json` and every report.
//!
//! Text form: 64 lowercase hex digits, as printed by `sha256sum` (FIPS 180-4 digest,
//! encoded per RFC 4648 section 8 in lower case). Parsing accepts either case.

use std::fmt;
use std::str::FromStr;

/// Length of a SHA-256 digest in bytes.
pub const SHA256_LEN: usize = 32;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Digest(pub [u8; SHA256_LEN]);

/// Why a string is not a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDigestError {
    /// The string does not have 64 characters.
    #[error("expected 64 hex digits, found {0} characters")]
    Length(usize),
    /// A character is not a hex digit.
    #[error("invalid hex digit {0:?}")]
    Digit(char),
}

impl Sha256Digest {
    /// Digest of a byte slice held in memory.
    pub fn of_bytes(data: &[u8]) -> Self {
        use sha2::Digest as _;
        Sha256Digest(sha2::Sha256::digest(data).into())
    }

    /// Lowercase hex text, as `sha256sum` prints it.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({self})")
    }
}

impl FromStr for Sha256Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let chars = s.chars().count();
        if chars != 2 * SHA256_LEN {
            return Err(ParseDigestError::Length(chars));
        }
        let mut out = [0u8; SHA256_LEN];
        let bytes = s.as_bytes();
        for (i, byte) in out.iter_mut().enumerate() {
            let hi = hex_value(bytes[2 * i])?;
            let lo = hex_value(bytes[2 * i + 1])?;
            *byte = (hi << 4) | lo;
        }
        Ok(Sha256Digest(out))
    }
}

fn hex_value(c: u8) -> Result<u8, ParseDigestError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ParseDigestError::Digit(char::from(c))),
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn empty_input_matches_sha256sum() {
        assert_eq!(Sha256Digest::of_bytes(b"").to_string(), EMPTY);
    }

    #[test]
    fn parse_rejects_bad_text() {
        assert_eq!("abc".parse::<Sha256Digest>(), Err(ParseDigestError::Length(3)));
        let bad = EMPTY.replacen('e', "g", 1);
        assert_eq!(bad.parse::<Sha256Digest>(), Err(ParseDigestError::Digit('g')));
        // Multi-byte characters must not be split or cause a panic.
        let wide = "é".repeat(64);
        assert!(wide.parse::<Sha256Digest>().is_err());
        let mixed = format!("{}é", &EMPTY[..62]);
        assert!(mixed.parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn parse_accepts_upper_case() {
        let d: Sha256Digest = EMPTY.to_uppercase().parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
    }

    #[test]
    fn serde_uses_hex_text() {
        let d = Sha256Digest::of_bytes(b"");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY}\""));
        assert_eq!(serde_json::from_str::<Sha256Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Sha256Digest>("\"00\"").is_err());
    }

    proptest! {
        #[test]
        fn hex_round_trip(bytes in any::<[u8; 32]>()) {
            let d = Sha256Digest(bytes);
            prop_assert_eq!(d.to_string().parse::<Sha256Digest>().unwrap(), d);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = s.parse::<Sha256Digest>();
        }
    }
}
