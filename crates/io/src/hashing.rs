//! Readers and writers that compute SHA-256 (FIPS 180-4) of the bytes passing through them.
//!
//! Wrap an output sink in a [`HashingWriter`] and the manifest digest comes from the very bytes
//! written, in the same pass, so an artifact is never read back to be hashed.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::{BUFFER_SIZE, Sha256Digest};

/// A writer that hashes and counts everything written through it.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer, mutably. Bytes written to it directly are not hashed.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// Returns the inner writer, the digest and the byte count.
    pub fn finish(self) -> (W, Sha256Digest, u64) {
        (self.inner, Sha256Digest(self.hasher.finalize().into()), self.len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A [`HashingWriter`] off the caller's thread: writes copy the bytes into chunks that one
/// thread hashes and hands to a second, which writes them to the inner writer. Hashing and
/// the write system calls run beside the code producing the bytes and beside each other (on
/// two cores the scheduler shares the three threads out), instead of on the producer's thread.
/// Chunks move between the threads without copying; memory is bounded by twice
/// [`BACKGROUND_DEPTH`] chunks of [`crate::pipe::CHUNK`].
///
/// An error of the inner writer is returned by the next write, flush or [`Self::finish`].
pub struct BackgroundHashingWriter<W: Write + Send + 'static> {
    pipe: Option<crate::pipe::PipeWriter>,
    thread: Option<std::thread::JoinHandle<io::Result<(W, Sha256Digest, u64)>>>,
    len: u64,
}

/// Chunks queued for each of a [`BackgroundHashingWriter`]'s threads.
pub const BACKGROUND_DEPTH: usize = 4;

impl<W: Write + Send + 'static> BackgroundHashingWriter<W> {
    /// Starts the threads writing to `inner`.
    pub fn new(inner: W) -> Self {
        let (pipe, reader) = crate::pipe::pipe(BACKGROUND_DEPTH);
        let (chunks, spare) = reader.into_parts();
        let (to_writer, written) = std::sync::mpsc::sync_channel::<Vec<u8>>(BACKGROUND_DEPTH);
        let writer = std::thread::spawn(move || -> io::Result<W> {
            let mut inner = inner;
            for chunk in written {
                inner.write_all(&chunk)?;
                // The producer may be gone; then the chunk is simply freed.
                let _ = spare.send(chunk);
            }
            inner.flush()?;
            Ok(inner)
        });
        let thread = std::thread::spawn(move || -> io::Result<(W, Sha256Digest, u64)> {
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            for chunk in chunks {
                hasher.update(&chunk);
                len += chunk.len() as u64;
                if to_writer.send(chunk).is_err() {
                    // The writer failed: its error is the one to report.
                    break;
                }
            }
            drop(to_writer);
            let inner = writer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the output writer thread panicked")))?;
            Ok((inner, Sha256Digest(hasher.finalize().into()), len))
        });
        BackgroundHashingWriter { pipe: Some(pipe), thread: Some(thread), len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Waits for the thread; returns the inner writer, the digest and the byte count.
    pub fn finish(mut self) -> io::Result<(W, Sha256Digest, u64)> {
        if let Some(pipe) = self.pipe.take() {
            // A closed pipe means the thread failed; joining it tells why.
            let _ = pipe.finish();
        }
        self.join()
    }

    fn join(&mut self) -> io::Result<(W, Sha256Digest, u64)> {
        self.pipe = None;
        match self.thread.take() {
            Some(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the output writer thread panicked"))),
            None => Err(io::Error::other("the output writer already failed")),
        }
    }

    /// The error that stopped the thread, after a write found the pipe closed.
    fn failure(&mut self) -> io::Error {
        match self.join() {
            Err(e) => e,
            Ok(_) => io::Error::from(io::ErrorKind::BrokenPipe),
        }
    }
}

impl<W: Write + Send + 'static> Write for BackgroundHashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = match &mut self.pipe {
            Some(pipe) => pipe.write(buf),
            None => return Err(io::Error::other("the output writer already failed")),
        };
        match result {
            Ok(n) => {
                self.len += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(self.failure()),
            Err(e) => Err(e),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = match &mut self.pipe {
            Some(pipe) => pipe.flush(),
            None => return Err(io::Error::other("the output writer already failed")),
        };
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(self.failure()),
            other => other,
        }
    }
}

impl<W: Write + Send + 'static> std::fmt::Debug for BackgroundHashingWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackgroundHashingWriter").field("len", &self.len).finish_non_exhaustive()
    }
}

/// A reader that hashes and counts everything read through it.
#[derive(Debug)]
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader { inner, hasher: Sha256::new(), len: 0 }
    }

    /// Bytes read so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been read yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The inner reader. Bytes read from it directly are not hashed.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Returns the inner reader, the digest of the bytes read and their count.
    pub fn finish(self) -> (R, Sha256Digest, u64) {
        (self.inner, Sha256Digest(self.hasher.finalize().into()), self.len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Reads `reader` to its end and returns its SHA-256 and length, using a fixed buffer.
pub fn hash_reader(reader: impl Read) -> io::Result<(Sha256Digest, u64)> {
    let mut hashing = HashingReader::new(reader);
    let mut buf = vec![0u8; BUFFER_SIZE];
    loop {
        match hashing.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let (_, digest, len) = hashing.finish();
    Ok((digest, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_digest() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        let (inner, digest, len) = w.finish();
        assert_eq!(inner, b"abc");
        assert_eq!(len, 3);
        assert_eq!(
            digest.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// The background writer hands on every byte in order and hashes the same bytes as the
    /// in-thread one, whatever the sizes of the writes.
    #[test]
    fn background_writer_matches_the_plain_one() {
        let data: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut background = BackgroundHashingWriter::new(Vec::new());
        let mut plain = HashingWriter::new(Vec::new());
        for piece in data.chunks(77_777) {
            background.write_all(piece).unwrap();
            plain.write_all(piece).unwrap();
            background.flush().unwrap();
        }
        assert_eq!(background.len(), data.len() as u64);
        let (inner, digest, len) = background.finish().unwrap();
        let (_, expected, _) = plain.finish();
        assert_eq!((inner, digest, len), (data, expected, 1_500_000));
    }

    /// A writer that fails once it holds `limit` bytes, as a full disk does.
    #[derive(Debug)]
    struct Full(usize, usize);
    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0 + buf.len() > self.1 {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The inner writer's error reaches the caller with its kind, from a later write or from
    /// finish, and the writer stays failed.
    #[test]
    fn background_writer_reports_the_inner_error() {
        let mut w = BackgroundHashingWriter::new(Full(0, 1 << 20));
        let chunk = vec![1u8; 100_000];
        let mut error = None;
        for _ in 0..200 {
            if let Err(e) = w.write_all(&chunk) {
                error = Some(e);
                break;
            }
        }
        let error = match error {
            Some(e) => e,
            None => w.finish().unwrap_err(),
        };
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
    }

    /// A writer that accepts at most a few bytes per call, as pipes and sockets may.
    struct Trickle(Vec<u8>);
    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    proptest! {
        #[test]
        fn short_writes_hash_only_what_was_written(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut w = HashingWriter::new(Trickle(Vec::new()));
            w.write_all(&data).unwrap();
            let (inner, digest, len) = w.finish();
            prop_assert_eq!(&inner.0, &data);
            prop_assert_eq!(len, data.len() as u64);
            prop_assert_eq!(digest, Sha256Digest::of_bytes(&data));
        }

        #[test]
        fn reader_and_writer_agree(data in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let (digest, len) = hash_reader(&data[..]).unwrap();
            prop_assert_eq!(len, data.len() as u64);
            prop_assert_eq!(digest, Sha256Digest::of_bytes(&data));
        }
    }
}
