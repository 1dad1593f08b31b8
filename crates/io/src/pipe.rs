//! A bounded in-process pipe between two threads, to overlap decompression and hashing with
//! the work that consumes the bytes.
//!
//! The writer gathers bytes into chunks of [`CHUNK`] and hands them over a bounded channel of
//! `depth` chunks, so memory stays at `depth × CHUNK` whatever the stream's size. When the
//! reader is dropped, writes fail with `BrokenPipe`; when the writer is dropped, the reader
//! sees end of file once the queued chunks are read.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Bytes per chunk handed between the threads.
pub const CHUNK: usize = 256 * 1024;

/// The sending end.
pub struct PipeWriter {
    tx: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

/// The receiving end.
pub struct PipeReader {
    rx: Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

/// A pipe holding at most `depth` full chunks in flight.
pub fn pipe(depth: usize) -> (PipeWriter, PipeReader) {
    let (tx, rx) = sync_channel(depth);
    (
        PipeWriter { tx, buf: Vec::with_capacity(CHUNK) },
        PipeReader { rx, current: Vec::new(), at: 0 },
    )
}

impl PipeWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.send(chunk).map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))
    }

    /// Sends what is buffered and closes the pipe.
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

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.at);
        out[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
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
    fn dropped_reader_breaks_the_writer() {
        let (mut w, r) = pipe(1);
        drop(r);
        let err = w.write_all(&vec![0u8; CHUNK * 3]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}
