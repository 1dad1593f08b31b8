//! Ids derived from inputs. Builds are reproducible, so no id in an output (filesystem,
//! partition, VHD, VDI, VBD, SR, VM and update UUIDs, seeds and signatures) is drawn at
//! random: each is the SHA-256 of a *domain* naming its scheme, then the purpose and the
//! identities of the inputs, and from that digest [`Uuid::from_digest`] (or the caller) takes
//! what it needs. The same inputs give the same ids; different purposes or inputs give
//! unrelated ones.
//!
//! A domain and the order of the fields are part of every id its scheme has made: changing
//! either changes the bytes of every output that holds one.

use sha2::{Digest as _, Sha256};

use crate::{Sha256Digest, Uuid};

/// An id being derived: a domain, then fields.
///
/// ```
/// use xspack_io::Derivation;
///
/// let a = Derivation::new(b"example\0").field(b"vm uuid").uuid();
/// let b = Derivation::new(b"example\0").field(b"vm uuid").uuid();
/// assert_eq!(a, b);
/// assert_ne!(a, Derivation::new(b"example\0").field(b"sr uuid").uuid());
/// ```
#[derive(Debug, Clone)]
pub struct Derivation {
    hasher: Sha256,
}

impl Derivation {
    /// Starts an id of the scheme `domain`, taken as it is (schemes end theirs with a NUL).
    pub fn new(domain: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(domain);
        Derivation { hasher }
    }

    /// Adds a variable-length field (a purpose, a name), ended by a NUL so that no two lists
    /// of fields run together the same way.
    #[must_use]
    pub fn field(mut self, field: &[u8]) -> Self {
        self.hasher.update(field);
        self.hasher.update([0]);
        self
    }

    /// Adds fixed-length bytes (a digest) as they are.
    #[must_use]
    pub fn bytes(mut self, bytes: &[u8]) -> Self {
        self.hasher.update(bytes);
        self
    }

    /// The digest of everything added.
    pub fn digest(self) -> Sha256Digest {
        Sha256Digest(self.hasher.finalize().into())
    }

    /// A version 4 layout UUID from the digest ([`Uuid::from_digest`]).
    pub fn uuid(self) -> Uuid {
        Uuid::from_digest(&self.digest())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_separated_and_bytes_are_not() {
        let ab = Derivation::new(b"d\0").field(b"a").field(b"b").digest();
        let a_b = Derivation::new(b"d\0").field(b"ab").digest();
        assert_ne!(ab, a_b);
        let raw = Derivation::new(b"d\0").bytes(b"ab").digest();
        assert_eq!(raw, Sha256Digest::of_bytes(b"d\0ab"));
        assert_eq!(
            Derivation::new(b"d\0").field(b"a").bytes(b"xy").digest(),
            Sha256Digest::of_bytes(b"d\0a\0xy")
        );
    }
}
