//! Finding `OpenPGP` secret key material in bytes about to be shipped as a payload.
//!
//! A pack carries files from the repository into every host that installs it, so a signing
//! key committed by mistake (or named by a hostile `pack.toml`) would be published with the
//! pack. [`SecretKeyScan`] is fed the bytes of each payload file as they are hashed, and finds:
//!
//! - an ASCII-armored secret key anywhere in the file: the armor header line
//!   `-----BEGIN PGP PRIVATE KEY BLOCK-----` (RFC 9580 section 6.2, "Forming ASCII Armor");
//! - a binary (unarmored) secret key at the start of the file, as `gpg --export-secret-keys`
//!   writes it: a Secret-Key or Secret-Subkey packet (tags 5 and 7, RFC 9580 section 5.5.1)
//!   in either packet header format (section 4.2), whose body starts with a key version
//!   (3 to 6), and for v4 and later a creation time and a public-key algorithm that RFC 9580
//!   section 9.1 assigns. Those three constraints keep ordinary binaries from matching.

use memchr::memmem::Finder;

const ARMOR_HEADER: &[u8] = b"-----BEGIN PGP PRIVATE KEY BLOCK-----";

/// Streams bytes through the two checks. Feed with [`SecretKeyScan::update`], then ask
/// [`SecretKeyScan::found`].
pub struct SecretKeyScan {
    finder: Finder<'static>,
    /// The last bytes of the previous chunk, so a header split between two chunks is found.
    carry: Vec<u8>,
    /// The first bytes of the stream, for the binary check.
    head: Vec<u8>,
    found: Option<&'static str>,
}

/// How many leading bytes the binary check reads.
const HEAD: usize = 16;

impl Default for SecretKeyScan {
    fn default() -> Self {
        SecretKeyScan {
            finder: Finder::new(ARMOR_HEADER),
            carry: Vec::with_capacity(ARMOR_HEADER.len()),
            head: Vec::with_capacity(HEAD),
            found: None,
        }
    }
}

impl SecretKeyScan {
    /// A scan of an empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes of the stream.
    pub fn update(&mut self, chunk: &[u8]) {
        if self.found.is_some() {
            return;
        }
        if self.head.len() < HEAD {
            let take = (HEAD - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        // The carried tail plus the start of this chunk covers a header split between them.
        let bridge_len = chunk.len().min(ARMOR_HEADER.len());
        let mut bridge = std::mem::take(&mut self.carry);
        bridge.extend_from_slice(&chunk[..bridge_len]);
        if self.finder.find(&bridge).is_some() || self.finder.find(chunk).is_some() {
            self.found = Some("an ASCII-armored OpenPGP secret key block");
            return;
        }
        let keep = ARMOR_HEADER.len() - 1;
        let tail = if chunk.len() >= keep { &chunk[chunk.len() - keep..] } else { &bridge[..] };
        let start = tail.len().saturating_sub(keep);
        self.carry = tail[start..].to_vec();
    }

    /// What was found, if anything: a phrase such as "an ASCII-armored `OpenPGP` secret key
    /// block".
    pub fn found(&self) -> Option<&'static str> {
        self.found
            .or_else(|| is_binary_secret_key(&self.head).then_some("a binary OpenPGP secret key"))
    }
}

/// Whether `head`, the first bytes of a file, starts a Secret-Key or Secret-Subkey packet.
fn is_binary_secret_key(head: &[u8]) -> bool {
    let Some(&first) = head.first() else { return false };
    if first & 0x80 == 0 {
        return false;
    }
    // (tag, offset of the packet body)
    let (tag, body) = if first & 0x40 == 0 {
        // Legacy format: tag in bits 5-2, length type in bits 1-0 (1, 2 or 4 length bytes).
        let body = match first & 0x03 {
            0 => 2,
            1 => 3,
            2 => 5,
            _ => return false, // indeterminate length: never used for keys
        };
        ((first >> 2) & 0x0F, body)
    } else {
        // OpenPGP format: tag in bits 5-0, then a 1, 2 or 5 byte length.
        let body = match head.get(1) {
            Some(&l) if l < 192 => 2,
            Some(&l) if l < 224 => 3,
            Some(&255) => 6,
            _ => return false, // partial lengths are not allowed for key packets
        };
        (first & 0x3F, body)
    };
    if tag != 5 && tag != 7 {
        return false;
    }
    match head.get(body) {
        Some(3) => true,
        // v4, v5, v6: version, four bytes of creation time, then the algorithm.
        Some(4..=6) => {
            head.get(body + 5).is_some_and(|alg| matches!(alg, 1..=3 | 16..=22 | 25..=28))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Option<&'static str> {
        let mut s = SecretKeyScan::new();
        for c in chunks {
            s.update(c);
        }
        s.found()
    }

    #[test]
    fn armored_blocks_are_found_anywhere() {
        let block = b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF...\n";
        assert!(scan(&[block]).is_some());
        let mut text = vec![b'x'; 100_000];
        text.extend_from_slice(block);
        assert!(scan(&[&text]).is_some());
        // Split across chunks at every point of the header.
        for cut in 1..ARMOR_HEADER.len() {
            let mut joined = b"config = 1\n".to_vec();
            joined.extend_from_slice(block);
            let at = 11 + cut;
            assert!(scan(&[&joined[..at], &joined[at..]]).is_some(), "cut {cut}");
            // And across three chunks, the middle one tiny.
            assert!(
                scan(&[&joined[..at], &joined[at..=at], &joined[at + 1..]]).is_some(),
                "cut {cut} in three"
            );
        }
        assert!(scan(&[b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n"]).is_none());
        assert!(scan(&[b"-----BEGIN PGP PRIVATE KEY BLOC"]).is_none());
    }

    #[test]
    fn binary_secret_keys_are_found_at_the_start() {
        // Legacy header, tag 5, two length bytes; v4, time, RSA (1).
        assert!(scan(&[&[0x95, 0x03, 0x98, 4, 0x65, 0, 0, 0, 1, 0x08]]).is_some());
        // OpenPGP header, tag 5 (0xC5), one length byte; v4, time, EdDSA legacy (22).
        assert!(scan(&[&[0xC5, 0x58, 4, 0x65, 0, 0, 0, 22]]).is_some());
        // Secret subkey, tag 7, legacy one-byte length.
        assert!(scan(&[&[0x9C, 0x58, 4, 0, 0, 0, 0, 18]]).is_some());
        // Public keys (tag 6) and binaries that only start like a packet are not.
        assert!(scan(&[&[0x99, 0x01, 0x0D, 4, 0x65, 0, 0, 0, 1]]).is_none());
        assert!(scan(&[&[0x95, 0x03, 0x98, 9, 9, 9, 9, 9, 9]]).is_none());
        assert!(scan(&[&[0x95, 0x03, 0x98, 4, 0x65, 0, 0, 0, 99]]).is_none());
        assert!(scan(&[b"\x7fELF\x02\x01\x01"]).is_none());
        assert!(scan(&[b""]).is_none());
    }
}
