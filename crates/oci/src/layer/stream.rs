//! Reading a layer's blob once: one thread reads the stored bytes and hashes them as they pass
//! (the blob digest, the BLAKE3 proof of every 1 MiB), another decompresses them by their
//! magic number and pipes the tar on, noting a gzip seek index on the way.

use std::io::{self, BufRead, Read};

use xspack_gzseek::{IndexingDecoder, SeekIndex};

use crate::proof::{BlobProof, ProofChecker, ProofRecorder};
use crate::{Digest, Error, LayerInfo};

/// Which digests one pass over a layer computes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checks {
    /// The blob digest, over the stored bytes (checked when the manifest records one).
    pub(crate) blob: bool,
    /// The `diff_id`, over the uncompressed tar.
    pub(crate) diff_id: bool,
    /// The last entry wanted, when the rest need not be decompressed (the blob digest covers
    /// it).
    pub(crate) last: Option<u64>,
    /// Note a seek index for later reads (the first read), rather than use one.
    pub(crate) index: bool,
}

/// Chunks in flight between two threads (256 KiB each).
pub(crate) const PIPE_DEPTH: usize = 8;

/// What the first read of a layer leaves for the next.
#[derive(Debug)]
pub(crate) struct FirstRead {
    /// BLAKE3 of every block of the stored bytes the first read verified.
    pub(crate) proof: BlobProof,
    /// Where a gzip layer can be decoded from, besides its start.
    pub(crate) index: Option<SeekIndex>,
}

/// What the blob reader measured.
pub(crate) struct BlobRead {
    pub(crate) bytes: u64,
    /// The blob digest, when asked for.
    pub(crate) digest: Option<Digest>,
    /// The proof of the stored bytes, when asked to note one.
    pub(crate) proof: Option<ProofRecorder>,
}

/// What is computed over the stored bytes as they are read: the blob digest, a proof for
/// the next read, or the check against the first read's proof.
pub(crate) struct StoredTap<'a> {
    pub(crate) digest: Option<xspack_io::HashingWriter<io::Sink>>,
    pub(crate) record: Option<ProofRecorder>,
    pub(crate) check: Option<ProofChecker<'a>>,
}

impl<'a> StoredTap<'a> {
    pub(crate) fn new(digest: bool, record: bool, check: Option<&'a BlobProof>) -> Self {
        StoredTap {
            digest: digest.then(|| xspack_io::HashingWriter::new(io::sink())),
            record: record.then(ProofRecorder::default),
            check: check.map(ProofChecker::new),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(h) = &mut self.digest {
            io::Write::write_all(h, bytes)?;
        }
        if let Some(r) = &mut self.record {
            r.update(bytes);
        }
        match &mut self.check {
            Some(c) => c.update(bytes),
            None => Ok(()),
        }
    }

    /// Whether reading may stop once nobody wants more bytes: only when checking a proof
    /// (a digest needs every byte), and only once every byte passed on is proven.
    pub(crate) fn may_stop(&self) -> bool {
        self.check.as_ref().is_some_and(ProofChecker::at_boundary)
    }

    /// Every byte before this is proven (all of them when there is no proof to check).
    pub(crate) fn proven(&self) -> u64 {
        self.check.as_ref().map_or(u64::MAX, ProofChecker::verified)
    }

    /// At the end of the blob: checks the proof's last block and size.
    pub(crate) fn end(&mut self) -> io::Result<()> {
        match &mut self.check {
            Some(c) => c.finish(),
            None => Ok(()),
        }
    }

    pub(crate) fn finish(self, bytes: u64) -> BlobRead {
        BlobRead { bytes, digest: self.digest.map(|h| Digest(h.finish().1)), proof: self.record }
    }
}

/// Reads the blob in chunks through `tap` and sends them on. When the decompressor stops
/// early the rest is still read, counted and hashed (a wrong size or digest is the better
/// diagnosis of a damaged blob than the decoding error it caused), unless a proof is being
/// checked: then reading stops at the end of the block being proven.
pub(crate) fn read_blob(
    mut blob: Box<dyn Read + Send>,
    mut out: xspack_io::pipe::PipeWriter,
    mut tap: StoredTap<'_>,
) -> io::Result<BlobRead> {
    let mut bytes = 0u64;
    let mut open = true;
    loop {
        let chunk = out.read_chunk(&mut blob)?;
        let filled = chunk.len();
        bytes += filled as u64;
        tap.update(&chunk)?;
        let end = filled < xspack_io::pipe::CHUNK;
        // Once the decompressor has stopped, the rest is only counted (and hashed).
        open = open && out.send_chunk(chunk).is_ok();
        if end {
            tap.end()?;
            break;
        }
        if !open && tap.may_stop() {
            break;
        }
    }
    let _ = out.finish();
    Ok(tap.finish(bytes))
}

/// What the producer thread measured.
pub(crate) struct Produced {
    pub(crate) compression: &'static str,
    /// Why decompressing failed, if it did (reported after the blob's size and digest).
    pub(crate) error: Option<Error>,
    /// The seek index noted on the way, if asked for and worth having.
    pub(crate) index: Option<SeekIndex>,
}

/// Decompresses the stored bytes by magic number and sends the tar on.
pub(crate) fn produce(
    mut stored: xspack_io::pipe::PipeReader,
    mut out: xspack_io::pipe::PipeWriter,
    label: &str,
    index: bool,
) -> Result<Produced, Error> {
    let mut seek_index = None;
    let (compression, error) = 'read: {
        let head = stored.fill_buf().map_err(|e| corrupt(label, &e))?;
        if head.is_empty() {
            // Not even the end-of-archive blocks of an empty tar: nothing a layer tool writes.
            let reason = "empty blob (0 bytes): not a tar archive, compressed or not".to_owned();
            break 'read ("none", Some(Error::Layer { layer: label.to_owned(), reason }));
        }
        if head.starts_with(&[0x1f, 0x8b]) {
            let spacing = index.then_some(xspack_gzseek::SPACING);
            let mut decoder = IndexingDecoder::new(&mut stored, spacing);
            let copied = copy_out(&mut decoder, &mut out);
            // Read to its end (the parser took every byte): the index is complete.
            if copied.is_ok() {
                seek_index = decoder.into_index();
            }
            break 'read ("gzip", finish_copy(copied, &mut stored, label));
        }
        let (mut decoder, compression): (Box<dyn Read + '_>, &'static str) =
            if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                let zstd = zstd::stream::read::Decoder::with_buffer(&mut stored)
                    .map_err(|e| corrupt(label, &e))?;
                (Box::new(zstd), "zstd")
            } else {
                (Box::new(&mut stored), "none")
            };
        let copied = copy_out(&mut decoder, &mut out);
        drop(decoder);
        (compression, finish_copy(copied, &mut stored, label))
    };
    // A closed reader here means the parser failed; its error is the one to report.
    let _ = out.finish();
    Ok(Produced { compression, error, index: seek_index })
}

/// A layer whose bytes do not decode or parse.
pub(crate) fn corrupt(label: &str, e: &dyn std::fmt::Display) -> Error {
    // The tar crate's messages can quote a header's path (up to 256 bytes): cut them.
    let reason = format!("corrupt layer: {}", xspack_io::quote::truncated(&e.to_string()));
    Error::Layer { layer: label.to_owned(), reason }
}

/// The outcome of decompressing: a parser that stopped early will report why itself; after a
/// whole stream, the bytes after it still belong to the blob, and the reader hashes them.
pub(crate) fn finish_copy(
    copied: io::Result<()>,
    stored: &mut xspack_io::pipe::PipeReader,
    label: &str,
) -> Option<Error> {
    match copied {
        Ok(()) => io::copy(stored, &mut io::sink()).err().map(|e| corrupt(label, &e)),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => None,
        Err(e) => Some(corrupt(label, &e)),
    }
}

/// Decompresses into whole pipe chunks (no intermediate buffer).
pub(crate) fn copy_out(
    decoder: &mut dyn Read,
    out: &mut xspack_io::pipe::PipeWriter,
) -> io::Result<()> {
    loop {
        let chunk = out.read_chunk(decoder)?;
        let end = chunk.len() < xspack_io::pipe::CHUNK;
        out.send_chunk(chunk)?;
        if end {
            return Ok(());
        }
    }
}

/// Compares the blob as read with the size and digest the manifest records.
pub(crate) fn check_blob(
    layer: &LayerInfo,
    label: &str,
    stored_bytes: u64,
    stored: Option<Digest>,
) -> Result<(), Error> {
    let mismatch = |kind, expected: String, actual: String| Error::DigestMismatch {
        what: label.to_owned(),
        kind,
        expected,
        actual,
    };
    if stored_bytes != layer.size {
        return Err(mismatch("size", layer.size.to_string(), stored_bytes.to_string()));
    }
    if let (Some(want), Some(stored)) = (layer.digest, stored)
        && want != stored
    {
        return Err(mismatch("digest", want.to_string(), stored.to_string()));
    }
    Ok(())
}
