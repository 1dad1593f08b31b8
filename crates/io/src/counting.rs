//! Readers and writers that count the bytes passing through them, for sizes and progress.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// A writer that counts the bytes written through it.
#[derive(Debug)]
pub struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W> CountingWriter<W> {
    /// Wraps `inner`, starting the count at zero.
    pub fn new(inner: W) -> Self {
        CountingWriter { inner, count: 0 }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Returns the inner writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Seeking is passed through; the count still reports bytes written, not the position.
impl<W: Seek> Seek for CountingWriter<W> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// A reader that counts the bytes read through it.
#[derive(Debug)]
pub struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R> CountingReader<R> {
    /// Wraps `inner`, starting the count at zero.
    pub fn new(inner: R) -> Self {
        CountingReader { inner, count: 0 }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Returns the inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn counts_bytes_not_position() {
        let mut w = CountingWriter::new(Cursor::new(Vec::new()));
        w.write_all(b"hello").unwrap();
        w.seek(SeekFrom::Start(1)).unwrap();
        w.write_all(b"EL").unwrap();
        assert_eq!(w.count(), 7);
        assert_eq!(w.into_inner().into_inner(), b"hELlo");
    }

    #[test]
    fn reader_counts() {
        let mut r = CountingReader::new(&b"0123456789"[..]);
        let mut buf = [0u8; 4];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(r.count(), 4);
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(r.count(), 10);
    }
}
