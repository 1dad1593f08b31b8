//! Writing RPM v4 files in bounded memory, the way rpm 4.11.3 lays them out (`build/pack.c`:
//! `writeRPM`): the [`lead`], the [`signature`] header padded to 8 bytes, the main
//! [`header`], and the compressed cpio [`payload`]; each a module, citing rpm's source as its
//! spec. The rpm crate is not on this path: its builder holds the whole compressed payload in
//! memory and its signature header lacks the payload size, MD5 and header+payload signature
//! rpm 4.11 needs. It still reads packages ([`crate::read_rpm`]) and checks them in tests.
//!
//! The header precedes the payload and the signature header covers both, so the file is
//! written in one forward pass and two patches ([`write_package`], on a `Read + Write + Seek`
//! output):
//!
//! 1. the package is checked against what its target's rpm can install
//!    ([`crate::target`]), and the inputs are read once for their sizes and digests
//!    ([`payload::scan`]);
//! 2. the lead, a signature header of fixed size ([`signature::reserved_size`]) and the main
//!    header (payload digests zeroed) are written, then the payload is compressed straight
//!    into the output while its digests are taken;
//! 3. the payload digests are patched into the header, and header and payload are read back
//!    once for the MD5 and the header+payload signature;
//! 4. the signature header is written into its room, and the file read once more for its
//!    SHA-256 and MD5 ([`BuiltRpm`]).
//!
//! A plain `Write` output gets the same through an unnamed temporary file
//! ([`write_spooled`]). Memory stays bounded by the header (the file list) and the
//! compressor's window, whatever the payload size.

mod blob;
mod header;
mod lead;
mod payload;
mod pgzip;
mod pxz;
mod signature;
#[cfg(test)]
mod testdata;

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::mpsc;

use md5::{Digest as _, Md5};
use sha1::Digest as _;
use sha1::Sha1;
use sha2::Sha256;
use xspack_io::{BUFFER_SIZE, HashingWriter};

use crate::Error;
use crate::build::{BuiltRpm, RpmBuilder};
use crate::digest::{Md5Digest, hex};
use crate::keys::SigningKey;

/// A reader that passes bytes on and counts them, and hashes them with MD5 on a thread of its
/// own, so that the SHA-256 the caller takes of the same bytes (the header+payload signature,
/// the whole file's digest) runs beside it rather than after it.
struct Md5Reader<R> {
    inner: R,
    len: u64,
    /// What was read since the last chunk went (reads may be small: batch them).
    pending: Vec<u8>,
    /// Copies of what was read, to the hashing thread; `None` once finished.
    chunks: Option<mpsc::SyncSender<Vec<u8>>>,
    hasher: Option<std::thread::JoinHandle<Md5>>,
}

impl<R: Read> Md5Reader<R> {
    fn new(inner: R) -> Self {
        // A few chunks in flight bound the copies to about a megabyte.
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
        let hasher = std::thread::spawn(move || {
            let mut md5 = Md5::new();
            for chunk in rx {
                md5.update(&chunk);
            }
            md5
        });
        Md5Reader {
            inner,
            len: 0,
            pending: Vec::with_capacity(BUFFER_SIZE),
            chunks: Some(tx),
            hasher: Some(hasher),
        }
    }

    /// Hands what is pending to the hashing thread.
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(BUFFER_SIZE));
        match self.chunks.as_ref().map(|tx| tx.send(chunk)) {
            Some(Ok(())) => Ok(()),
            _ => Err(io::Error::other("the MD5 thread stopped")),
        }
    }

    /// The MD5 of everything read.
    fn finish(mut self) -> io::Result<Md5Digest> {
        if !self.pending.is_empty() {
            self.send()?;
        }
        drop(self.chunks.take());
        let md5 = self.hasher.take().map(std::thread::JoinHandle::join);
        match md5 {
            Some(Ok(md5)) => Ok(Md5Digest(md5.finalize().into())),
            _ => Err(io::Error::other("the MD5 thread failed")),
        }
    }
}

impl<R: Read> Read for Md5Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() >= BUFFER_SIZE {
            self.send()?;
        }
        self.len += n as u64;
        Ok(n)
    }
}

impl<R> Drop for Md5Reader<R> {
    fn drop(&mut self) {
        drop(self.chunks.take());
        if let Some(h) = self.hasher.take() {
            let _ = h.join();
        }
    }
}

/// Builds `b` into `out` from its current position, signed with `key` if given. Leaves `out`
/// positioned at the end of the package.
pub(crate) fn write_package<W: Read + Write + Seek>(
    b: &RpmBuilder,
    key: Option<&SigningKey>,
    mut out: W,
) -> Result<(W, BuiltRpm), Error> {
    let werr = |e: io::Error| b.write_fail(&e);
    let source_date = b.source_date.unwrap_or_else(now);
    for (feature, _, why) in header::rpmlib_features(b) {
        b.target.check_feature(&b.name, feature, &why)?;
    }
    let scan = payload::scan(b)?;

    // Lead, room for the signature header, header with placeholder payload digests.
    let start = out.stream_position().map_err(werr)?;
    let nevr = match b.epoch {
        Some(e) => format!("{}-{e}:{}-{}", b.name, b.version, b.release),
        None => format!("{}-{}-{}", b.name, b.version, b.release),
    };
    let max_sig = key.map(|k| signature::max_signature_len(k, source_date)).transpose()?;
    let sig_size = signature::reserved_size(max_sig);
    let mut hdr = header::main_header(b, &scan, source_date)
        .encode(header::HEADERIMMUTABLE)
        .map_err(|reason| b.fail(&reason))?;
    out.write_all(&lead::lead(&nevr, &b.arch)).map_err(werr)?;
    out.write_all(&vec![0; sig_size]).map_err(werr)?;
    out.write_all(&hdr.bytes).map_err(werr)?;
    let payload_start = start + (crate::layout::LEAD_SIZE + sig_size + hdr.bytes.len()) as u64;

    // The payload, compressed as a stream; SHA-256 of the compressed and the cpio bytes.
    let compressed = HashingWriter::new(io::BufWriter::with_capacity(BUFFER_SIZE, out));
    let mut archive =
        HashingWriter::new(payload::Compressor::new(b.compression, compressed).map_err(werr)?);
    payload::write_archive(b, &scan, source_date, &mut archive)?;
    let (compressor, archive_digest, archive_len) = archive.finish();
    if archive_len != scan.archive_size {
        return Err(b.fail(&format!(
            "internal error: archive of {archive_len} bytes, {} expected",
            scan.archive_size
        )));
    }
    let (buffered, payload_digest, payload_len) = compressor.finish().map_err(werr)?.finish();
    let mut out = buffered.into_inner().map_err(|e| werr(e.into_error()))?;
    let (archive_digest, payload_digest) = (archive_digest.to_hex(), payload_digest.to_hex());

    // Patch the payload digests into the header.
    for (tag, digest) in
        [(header::PAYLOAD_DIGEST, &payload_digest), (header::PAYLOAD_DIGEST_ALT, &archive_digest)]
    {
        let slot = hdr.value_offset(tag).and_then(|at| hdr.bytes.get_mut(at..at + digest.len()));
        let Some(slot) = slot else {
            return Err(b.fail(&format!("internal error: no room for tag {tag} in the header")));
        };
        slot.copy_from_slice(digest.as_bytes());
    }
    let header_start = payload_start - hdr.bytes.len() as u64;
    out.seek(SeekFrom::Start(header_start)).map_err(werr)?;
    out.write_all(&hdr.bytes).map_err(werr)?;

    // Header+payload: MD5 and the PGP signature, read back in one pass.
    let payload = io::BufReader::with_capacity(BUFFER_SIZE, (&mut out).take(payload_len));
    let mut both = Md5Reader::new((&hdr.bytes[..]).chain(payload));
    let signatures = if let Some(key) = key {
        let pgp = signature::sign(key, source_date, &mut both)?;
        let rsa = signature::sign(key, source_date, &hdr.bytes[..])?;
        Some((rsa, pgp))
    } else {
        io::copy(&mut both, &mut io::sink()).map_err(werr)?;
        None
    };
    // The output must give back all it was given (not a file cut short meanwhile).
    if both.len != hdr.bytes.len() as u64 + payload_len {
        return Err(werr(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("read back {} of {} bytes", both.len, hdr.bytes.len() as u64 + payload_len),
        )));
    }
    let facts = signature::Facts {
        size: hdr.bytes.len() as u64 + payload_len,
        archive_size: scan.archive_size,
        md5: both.finish().map_err(werr)?.0,
        sha1_hex: hex(&Sha1::digest(&hdr.bytes)),
        sha256_hex: hex(&Sha256::digest(&hdr.bytes)),
        signatures,
    };
    let sig = signature::encode(&facts, sig_size)?;
    out.seek(SeekFrom::Start(start + crate::layout::LEAD_SIZE as u64)).map_err(werr)?;
    out.write_all(&sig).map_err(werr)?;

    // The SHA-256 (repodata) and MD5 (legacy pack metadata) of the whole file, in one read.
    let total = payload_start - start + payload_len;
    out.seek(SeekFrom::Start(start)).map_err(werr)?;
    let mut hashing = HashingWriter::new(io::sink());
    let whole = io::BufReader::with_capacity(BUFFER_SIZE, (&mut out).take(total));
    let mut whole = Md5Reader::new(whole);
    let copied = io::copy(&mut whole, &mut hashing).map_err(werr)?;
    if copied != total {
        return Err(werr(io::ErrorKind::UnexpectedEof.into()));
    }
    let md5 = whole.finish().map_err(werr)?;
    out.flush().map_err(werr)?;
    let (_, sha256, size) = hashing.finish();
    Ok((out, BuiltRpm { file_name: b.file_name(), sha256, md5, size, signed: key.is_some() }))
}

/// [`write_package`] for an output that cannot seek or be read: the package is built in an
/// unnamed temporary file, then copied.
pub(crate) fn write_spooled<W: Write>(
    b: &RpmBuilder,
    key: Option<&SigningKey>,
    mut out: W,
) -> Result<(W, BuiltRpm), Error> {
    let werr = |e: io::Error| b.write_fail(&e);
    let spool = tempfile::tempfile().map_err(werr)?;
    let (mut spool, built) = write_package(b, key, spool)?;
    spool.seek(SeekFrom::Start(0)).map_err(werr)?;
    io::copy(&mut io::BufReader::with_capacity(BUFFER_SIZE, spool), &mut out).map_err(werr)?;
    out.flush().map_err(werr)?;
    Ok((out, built))
}

fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}
