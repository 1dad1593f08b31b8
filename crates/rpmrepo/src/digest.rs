//! The MD5 digest type (RFC 1321) the legacy `XS-PACKAGES` file needs, and the reader that
//! hashes an RPM with SHA-256 and MD5 in one pass while keeping the header bytes for checking.

use std::fmt;
use std::io::{self, Read};

use md5::{Digest as _, Md5};
use sha2::Digest as _;
use sha2::Sha256;
use xspack_io::Sha256Digest;

/// An MD5 digest, shown as 32 lowercase hex digits as `md5sum` prints it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Md5Digest(pub [u8; 16]);

impl Md5Digest {
    /// Digest of a byte slice held in memory.
    pub fn of_bytes(data: &[u8]) -> Self {
        Md5Digest(Md5::digest(data).into())
    }

    /// Lowercase hex text.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Md5Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Md5Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Md5Digest({self})")
    }
}

/// Lowercase hex of any byte string.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A reader that hashes everything it passes on: SHA-256 and, when asked, MD5 of the whole
/// file.
pub(crate) struct TeeHasher<R> {
    inner: R,
    sha256: Sha256,
    md5: Option<Md5>,
    len: u64,
}

impl<R: Read> TeeHasher<R> {
    pub(crate) fn new(inner: R, md5: bool) -> Self {
        TeeHasher { inner, sha256: Sha256::new(), md5: md5.then(Md5::new), len: 0 }
    }

    /// The digests of every byte read, and the byte count.
    pub(crate) fn finish(self) -> (Sha256Digest, Option<Md5Digest>, u64) {
        (
            Sha256Digest(self.sha256.finalize().into()),
            self.md5.map(|m| Md5Digest(m.finalize().into())),
            self.len,
        )
    }
}

impl<R: Read> Read for TeeHasher<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let data = &buf[..n];
        self.sha256.update(data);
        if let Some(md5) = &mut self.md5 {
            md5.update(data);
        }
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_known_answer() {
        // RFC 1321 appendix A.5 test suite.
        assert_eq!(Md5Digest::of_bytes(b"abc").to_hex(), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(Md5Digest::of_bytes(b"").to_string(), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn tee_hashes() {
        let mut tee = TeeHasher::new(&b"abcdef"[..], true);
        io::copy(&mut tee, &mut io::sink()).unwrap();
        let (sha, md5, len) = tee.finish();
        assert_eq!(len, 6);
        assert_eq!(sha, Sha256Digest::of_bytes(b"abcdef"));
        assert_eq!(md5, Some(Md5Digest::of_bytes(b"abcdef")));
        let mut tee = TeeHasher::new(&b"abcdef"[..], false);
        io::copy(&mut tee, &mut io::sink()).unwrap();
        assert_eq!(tee.finish(), (sha, None, 6));
    }
}
