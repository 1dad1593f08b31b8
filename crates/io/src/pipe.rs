//! A bounded in-process pipe between two threads, to overlap decompression and hashing with
//! the work that consumes the bytes.
//!
//! The writer gathers bytes into chunks of [`CHUNK`] and hands them over a bounded channel of
//! `depth` chunks, so memory stays at `depth × CHUNK` whatever the stream's size. When the
//! reader is dropped, writes fail with `BrokenPipe`; when the writer is dropped, the reader
//! sees end of file once the queued chunks are read.

use std::io::{self, BufRead, Read, Write};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError, channel, sync_channel};

/// Bytes per chunk handed between the threads.
pub const CHUNK: usize = 256 * 1024;

/// The sending end.
pub struct PipeWriter {
    tx: SyncSender<Vec<u8>>,
    /// Emptied chunks the reader hands back, so a long stream allocates `depth + 2` chunks,
    /// not one per chunk.
    spare: Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

/// The receiving end.
pub struct PipeReader {
    rx: Receiver<Vec<u8>>,
    spare: Sender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

/// A pipe holding at most `depth` full chunks in flight.
pub fn pipe(depth: usize) -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(depth);
    let (spare_tx, spare_rx) = channel();
    (
        PipeWriter { tx, spare: spare_rx, buf: Vec::with_capacity(CHUNK) },
        PipeReader { rx, spare: spare_tx, current: Vec::new(), at: 0 },
    )
}

impl PipeWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut next = self.spare_chunk();
        next.clear();
        let chunk = std::mem::replace(&mut self.buf, next);
        self.tx.send(chunk).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }

    /// A chunk to fill and [`Self::send_chunk`]: one the reader handed back, with the bytes it
    /// held (so resizing it to [`CHUNK`] to read into costs no zeroing), or a new, empty one.
    pub fn spare_chunk(&mut self) -> Vec<u8> {
        match self.spare.try_recv() {
            Ok(chunk) => chunk,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Vec::with_capacity(CHUNK),
        }
    }

    /// Reads from `src` into a spare chunk until it holds [`CHUNK`] bytes or `src` ends, for the
    /// caller to look at and hand on with [`Self::send_chunk`]. It is shorter than [`CHUNK`]
    /// only at the end of `src`.
    pub fn read_chunk(&mut self, src: &mut dyn Read) -> io::Result<Vec<u8>> {
        let mut chunk = self.spare_chunk();
        chunk.resize(CHUNK, 0);
        let filled = crate::read_full(src, &mut chunk)?;
        chunk.truncate(filled);
        Ok(chunk)
    }

    /// Hands over `chunk` as it is (after any bytes written before it), without copying.
    pub fn send_chunk(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        self.send()?;
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx.send(chunk).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }

    /// Sends what is buffered; the reader sees end of file after it once this is dropped.
    pub fn finish(mut self) -> io::Result<()> {
        self.send()
    }
}

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl PipeReader {
    /// The chunk channel itself, for a consumer that takes chunks whole (and hands them on):
    /// chunks arrive on the receiver; sending emptied ones back on the sender lets the writer
    /// reuse them.
    pub(crate) fn into_parts(self) -> (Receiver<Vec<u8>>, Sender<Vec<u8>>) {
        (self.rx, self.spare)
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        crate::read_via_fill_buf(self, out)
    }
}

/// Reading through [`BufRead`] hands out the received chunks in place: no copy.
impl BufRead for PipeReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.at == self.current.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    let done = std::mem::replace(&mut self.current, chunk);
                    self.at = 0;
                    if done.capacity() > 0 {
                        // The writer may be gone; then the chunk is simply freed.
                        let _ = self.spare.send(done);
                    }
                }
                Err(_) => return Ok(&[]),
            }
        }
        Ok(&self.current[self.at..])
    }

    fn consume(&mut self, amount: usize) {
        self.at = (self.at + amount).min(self.current.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_cross_in_order() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let (mut w, mut r) = pipe(2);
        let expected = data.clone();
        let producer = std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.finish().unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        producer.join().unwrap();
        assert_eq!(got, expected);
    }

    #[test]
    fn sent_chunks_and_buffered_reads_keep_order() {
        let (mut w, mut r) = pipe(1);
        let producer = std::thread::spawn(move || {
            for round in 0..20u8 {
                w.write_all(&[round; 1000]).unwrap();
                let mut chunk = w.spare_chunk();
                chunk.clear();
                chunk.resize(CHUNK + 7, round.wrapping_add(100));
                w.send_chunk(chunk).unwrap();
            }
            w.finish().unwrap();
        });
        let mut got = Vec::new();
        loop {
            let piece = r.fill_buf().unwrap();
            if piece.is_empty() {
                break;
            }
            let n = piece.len().min(4096);
            got.extend_from_slice(&piece[..n]);
            r.consume(n);
        }
        producer.join().unwrap();
        let mut expected = Vec::new();
        for round in 0..20u8 {
            expected.extend_from_slice(&[round; 1000]);
            expected.extend(std::iter::repeat_n(round.wrapping_add(100), CHUNK + 7));
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn dropped_reader_breaks_the_writer() {
        let (mut w, r) = pipe(1);
        drop(r);
        let err = w.write_all(&vec![0u8; CHUNK * 3]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
