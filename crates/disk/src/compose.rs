//! A disk made of pieces placed at fixed offsets, with zeros everywhere else: the raw view of a
//! partitioned disk (tables and partition contents) and of a FAT image (boot sectors, FATs,
//! directories and files). It is read at offsets as a [`DiskSource`], or written forward once.
//!
//! Gaps between pieces are known zeros, and a piece answers [`DiskSource::known_zero`] for its
//! own range, so the sparse writers never read them.

use std::io::{self, Write};

use xspack_io::{Progress, ProgressUnit};

use crate::{DiskSource, Error};

/// Bytes copied per read when writing forward: large enough to amortise the calls, small
/// enough to keep memory flat.
const COPY_CHUNK: usize = 1 << 20;
/// A block of zeros written for gaps.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// A closure that writes a partition's content forward, at most the partition's size; the rest
/// of the partition is zeros.
pub type StreamFn<'a> = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + 'a>;

enum Data<'a> {
    Source(Box<dyn DiskSource + 'a>),
    /// Taken when written; `None` afterwards.
    Stream(Option<StreamFn<'a>>),
}

struct Piece<'a> {
    start: u64,
    len: u64,
    data: Data<'a>,
}

impl Piece<'_> {
    fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// Pieces in ascending, non-overlapping order inside a disk of `size` bytes.
pub(crate) struct Composite<'a> {
    size: u64,
    pieces: Vec<Piece<'a>>,
}

fn stream_unreadable() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "a partition's content is a forward-only stream, which can only be written once, forward",
    )
}

impl<'a> Composite<'a> {
    /// An all-zero disk of `size` bytes.
    pub(crate) fn new(size: u64) -> Self {
        Composite { size, pieces: Vec::new() }
    }

    fn push(&mut self, start: u64, len: u64, data: Data<'a>) {
        let prev_end = self.pieces.last().map_or(0, Piece::end);
        assert!(start >= prev_end, "pieces in order: {start} < {prev_end}");
        assert!(start + len <= self.size, "piece {start}+{len} past {}", self.size);
        if len > 0 {
            self.pieces.push(Piece { start, len, data });
        }
    }

    /// Places `source` at `start`; it must follow the previous piece.
    pub(crate) fn push_source(&mut self, start: u64, source: impl DiskSource + 'a) {
        self.push(start, source.size(), Data::Source(Box::new(source)));
    }

    /// Places the stream `write` at `start`, `len` bytes at most.
    pub(crate) fn push_stream(&mut self, start: u64, len: u64, write: StreamFn<'a>) {
        self.push(start, len, Data::Stream(Some(write)));
    }

    /// Writes the whole disk forward to `out`.
    pub(crate) fn write_to(
        &mut self,
        out: &mut dyn Write,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<(), Error> {
        let task = progress.task(what, Some(self.size), ProgressUnit::Bytes);
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut pos = 0;
        for piece in &mut self.pieces {
            write_zeros(out, piece.start - pos)?;
            task.advance(piece.start - pos);
            match &mut piece.data {
                Data::Source(source) => {
                    let mut done = 0;
                    while done < piece.len {
                        let n = usize::try_from((piece.len - done).min(COPY_CHUNK as u64))
                            .expect("<= 1 MiB");
                        let offset = piece.start + done;
                        let err = |source| Error::Source { offset, source };
                        if source.known_zero(done, n as u64).map_err(err)? {
                            write_zeros(out, n as u64)?;
                        } else {
                            source.read_exact_at(done, &mut buf[..n]).map_err(err)?;
                            out.write_all(&buf[..n]).map_err(Error::Write)?;
                        }
                        task.advance(n as u64);
                        done += n as u64;
                    }
                }
                Data::Stream(write) => {
                    let offset = piece.start;
                    let write = write.take().ok_or(Error::Source {
                        offset,
                        source: io::Error::other("a stream can be written only once"),
                    })?;
                    let mut limited = Limited { out, left: piece.len, out_failed: false };
                    if let Err(e) = write(&mut limited) {
                        return Err(if limited.out_failed {
                            Error::Write(e)
                        } else {
                            Error::Source { offset, source: e }
                        });
                    }
                    let left = limited.left;
                    write_zeros(out, left)?;
                    task.advance(piece.len);
                }
            }
            pos = piece.end();
        }
        write_zeros(out, self.size - pos)?;
        task.advance(self.size - pos);
        out.flush().map_err(Error::Write)?;
        task.finish();
        Ok(())
    }
}

fn write_zeros(out: &mut dyn Write, mut len: u64) -> Result<(), Error> {
    while len > 0 {
        let n = usize::try_from(len.min(ZEROS.len() as u64)).expect("<= 64 KiB");
        out.write_all(&ZEROS[..n]).map_err(Error::Write)?;
        len -= n as u64;
    }
    Ok(())
}

/// Passes at most `left` bytes on to `out`, and records whether `out` itself failed.
struct Limited<'w> {
    out: &'w mut dyn Write,
    left: u64,
    out_failed: bool,
}

impl Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the stream wrote more bytes than its partition holds",
            ));
        }
        let n = self.out.write(buf).inspect_err(|_| self.out_failed = true)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush().inspect_err(|_| self.out_failed = true)
    }
}

impl DiskSource for Composite<'_> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.size)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end"))?;
        let mut pos = offset;
        let mut i = self.pieces.partition_point(|p| p.end() <= pos);
        while pos < end {
            let at = usize::try_from(pos - offset).expect("inside buf");
            match self.pieces.get_mut(i).filter(|p| p.start < end) {
                Some(p) if p.start <= pos => {
                    let n = usize::try_from(p.end().min(end) - pos).expect("inside buf");
                    match &mut p.data {
                        Data::Source(s) => s.read_exact_at(pos - p.start, &mut buf[at..at + n])?,
                        Data::Stream(_) => return Err(stream_unreadable()),
                    }
                    pos += n as u64;
                    i += 1;
                }
                next => {
                    let stop = next.map_or(end, |p| p.start);
                    let n = usize::try_from(stop - pos).expect("inside buf");
                    buf[at..at + n].fill(0);
                    pos = stop;
                }
            }
        }
        Ok(())
    }

    fn known_zero(&mut self, offset: u64, len: u64) -> io::Result<bool> {
        let end = offset.saturating_add(len);
        let first = self.pieces.partition_point(|p| p.end() <= offset);
        for p in self.pieces[first..].iter_mut().take_while(|p| p.start < end) {
            let from = offset.max(p.start);
            let to = end.min(p.end());
            let zero = match &mut p.data {
                Data::Source(s) => s.known_zero(from - p.start, to - from)?,
                Data::Stream(_) => false,
            };
            if !zero {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xspack_io::NoProgress;

    fn sample() -> Composite<'static> {
        let mut c = Composite::new(100);
        c.push_source(10, vec![1u8; 5]);
        c.push_source(15, vec![2u8; 5]);
        c.push_source(40, Vec::new());
        c.push_source(50, vec![3u8; 10]);
        c
    }

    fn expected() -> Vec<u8> {
        let mut want = vec![0u8; 100];
        want[10..15].fill(1);
        want[15..20].fill(2);
        want[50..60].fill(3);
        want
    }

    #[test]
    fn reads_across_pieces_and_gaps() {
        let mut c = sample();
        let want = expected();
        for (off, len) in [(0, 100), (12, 6), (18, 40), (55, 45), (0, 0), (99, 1)] {
            let mut got = vec![9u8; len];
            c.read_exact_at(off as u64, &mut got).unwrap();
            assert_eq!(got, want[off..off + len], "{off}+{len}");
        }
        assert!(c.read_exact_at(99, &mut [0; 2]).is_err());
    }

    #[test]
    fn gaps_are_known_zero() {
        let mut c = sample();
        assert!(c.known_zero(0, 10).unwrap());
        assert!(c.known_zero(20, 30).unwrap());
        assert!(!c.known_zero(5, 10).unwrap(), "Vec pieces do not know");
        assert!(c.known_zero(60, 40).unwrap());
    }

    #[test]
    fn forward_write_matches_reads() {
        let mut c = sample();
        let mut out = Vec::new();
        c.write_to(&mut out, "test", &NoProgress).unwrap();
        assert_eq!(out, expected());
    }

    #[test]
    fn streams_are_padded_limited_and_unreadable() {
        let mut c = Composite::new(16);
        c.push_stream(4, 8, Box::new(|w| w.write_all(b"abc")));
        assert!(c.read_exact_at(0, &mut [0; 8]).is_err());
        let mut out = Vec::new();
        c.write_to(&mut out, "test", &NoProgress).unwrap();
        assert_eq!(out, b"\0\0\0\0abc\0\0\0\0\0\0\0\0\0");
        assert!(c.write_to(&mut Vec::new(), "test", &NoProgress).is_err(), "written once");

        let mut over = Composite::new(8);
        over.push_stream(0, 4, Box::new(|w| w.write_all(b"abcde")));
        let err = over.write_to(&mut Vec::new(), "test", &NoProgress).unwrap_err();
        assert!(matches!(err, Error::Source { offset: 0, .. }), "{err}");
    }
}
