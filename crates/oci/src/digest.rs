//! Content digests in OCI form, `<algorithm>:<hex>` (OCI image spec, "Digests"). Only sha256,
//! the one algorithm registries and `docker save` use, is accepted.

use std::fmt;
use std::str::FromStr;

use xspack_io::Sha256Digest;

/// A `sha256:<hex>` digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub Sha256Digest);

impl Digest {
    /// The hex part, as used in blob paths.
    pub fn hex(&self) -> String {
        self.0.to_string()
    }

    /// A short form for messages: `sha256:` and the first 12 hex digits.
    pub fn short(&self) -> String {
        format!("sha256:{}", &self.hex()[..12])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (alg, hex) =
            s.split_once(':').ok_or_else(|| format!("digest {s:?} has no algorithm"))?;
        if alg != "sha256" {
            return Err(format!("digest {s:?}: algorithm {alg:?} is not supported (only sha256)"));
        }
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("digest {s:?}: hex must be lower case"));
        }
        hex.parse().map(Digest).map_err(|e| format!("digest {s:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_reject() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d: Digest = format!("sha256:{hex}").parse().unwrap();
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
        assert_eq!(d.short(), "sha256:e3b0c44298fc");
        assert!("sha512:00".parse::<Digest>().unwrap_err().contains("not supported"));
        assert!(hex.parse::<Digest>().unwrap_err().contains("no algorithm"));
        assert!(format!("sha256:{}", hex.to_uppercase()).parse::<Digest>().is_err());
        assert!("sha256:abc".parse::<Digest>().is_err());
    }
}
