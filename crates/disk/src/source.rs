//! Raw disk sources for the two-pass writers (see the crate documentation for why two passes).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt as _;

use camino::Utf8Path;
use xspack_io::{Progress, ProgressUnit};

use crate::Error;
use crate::bytes::is_zero;

/// A raw disk image of known size that writers read twice.
///
/// Within one pass, writers call [`read_exact_at`](DiskSource::read_exact_at) with increasing
/// offsets; between passes they start again from a lower offset. The data must not change in
/// between.
pub trait DiskSource {
    /// The virtual size of the disk in bytes.
    fn size(&self) -> u64;

    /// Fills `buf` with the bytes at `offset`. Reading past [`size`](DiskSource::size) fails.
    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    /// Whether the source knows, without reading them, that all `len` bytes at `offset` are
    /// zero. `false` means "unknown": the writer then reads and tests the bytes itself.
    fn known_zero(&mut self, offset: u64, len: u64) -> io::Result<bool> {
        let _ = (offset, len);
        Ok(false)
    }
}

impl<S: DiskSource + ?Sized> DiskSource for &mut S {
    fn size(&self) -> u64 {
        (**self).size()
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }

    fn known_zero(&mut self, offset: u64, len: u64) -> io::Result<bool> {
        (**self).known_zero(offset, len)
    }
}

impl<S: DiskSource + ?Sized> DiskSource for Box<S> {
    fn size(&self) -> u64 {
        (**self).size()
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }

    fn known_zero(&mut self, offset: u64, len: u64) -> io::Result<bool> {
        (**self).known_zero(offset, len)
    }
}

/// A disk held in memory and owned; its size is the vector length.
impl DiskSource for Vec<u8> {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_exact_at(offset, buf)
    }
}

/// A disk held in memory; its size is the slice length.
impl DiskSource for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).ok().filter(|&s| s <= self.len());
        let range = start.and_then(|s| Some(s..s.checked_add(buf.len())?));
        match range.and_then(|r| self.get(r)) {
            Some(data) => {
                buf.copy_from_slice(data);
                Ok(())
            }
            None => Err(io::ErrorKind::UnexpectedEof.into()),
        }
    }
}

/// A raw disk file, read with `pread`. Holes of a sparse file are found with `SEEK_DATA` and
/// never read.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    size: u64,
}

impl FileSource {
    /// Opens the raw disk at `path`; its size is the file's length.
    pub fn open(path: impl AsRef<Utf8Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| Error::io("opening raw disk", path, e))?;
        Self::from_file(file).map_err(|e| Error::io("reading the size of raw disk", path, e))
    }

    /// Uses an open file; its size is the file's current length.
    pub fn from_file(file: File) -> io::Result<Self> {
        let size = file.metadata()?.len();
        Ok(FileSource { file, size })
    }
}

impl DiskSource for FileSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn known_zero(&mut self, offset: u64, len: u64) -> io::Result<bool> {
        // File systems without hole support report everything as data, which is safe.
        Ok(xspack_io::data_start(&self.file, offset)?
            .is_none_or(|data| data >= offset.saturating_add(len)))
    }
}

/// Any `Read + Seek` of the given size, e.g. an `io::Cursor`.
#[derive(Debug)]
pub struct SeekSource<R> {
    inner: R,
    size: u64,
}

impl<R: Read + Seek> SeekSource<R> {
    /// Reads the disk of `size` bytes from `inner`, seeking from its start.
    pub fn new(inner: R, size: u64) -> Self {
        SeekSource { inner, size }
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read + Seek> DiskSource for SeekSource<R> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_bounds(offset, buf.len(), self.size)?;
        self.inner.seek(SeekFrom::Start(offset))?;
        self.inner.read_exact(buf)
    }
}

/// A forward-only `Read` that can be opened again: `open` returns a fresh reader positioned at
/// byte 0 of the disk. Each writer pass opens it once and reads it from start to end, discarding
/// the bytes it does not need.
pub struct ReopenSource<F, R> {
    open: F,
    size: u64,
    reader: Option<R>,
    pos: u64,
}

impl<F, R> ReopenSource<F, R>
where
    F: FnMut() -> io::Result<R>,
    R: Read,
{
    /// A disk of `size` bytes read from the readers that `open` returns.
    pub fn new(size: u64, open: F) -> Self {
        ReopenSource { open, size, reader: None, pos: 0 }
    }
}

impl<F, R> DiskSource for ReopenSource<F, R>
where
    F: FnMut() -> io::Result<R>,
    R: Read,
{
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check_bounds(offset, buf.len(), self.size)?;
        if self.reader.is_none() || offset < self.pos {
            self.reader = Some((self.open)()?);
            self.pos = 0;
        }
        let reader = self.reader.as_mut().expect("opened above");
        let gap = offset - self.pos;
        if gap > 0 {
            let skipped = io::copy(&mut reader.take(gap), &mut io::sink())?;
            if skipped != gap {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        reader.read_exact(buf)?;
        self.pos = offset + buf.len() as u64;
        Ok(())
    }
}

fn check_bounds(offset: u64, len: usize, size: u64) -> io::Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the disk")),
    }
}

/// Size of the chunks the scan reads: one VHD block, 32 qcow2 clusters.
pub(crate) const SCAN_CHUNK: usize = 2 << 20;

/// First pass over `source`: calls `visit(offset, chunk)` for every [`SCAN_CHUNK`]-sized chunk
/// in order (the last one may be shorter), with `None` when the chunk is known or found to be
/// all zeros.
pub(crate) fn scan(
    source: &mut dyn DiskSource,
    progress: &dyn Progress,
    mut visit: impl FnMut(u64, Option<&[u8]>) -> Result<(), Error>,
) -> Result<(), Error> {
    let size = source.size();
    let task = progress.task("scanning disk", Some(size), ProgressUnit::Bytes);
    let mut buf = vec![0u8; SCAN_CHUNK];
    let mut offset = 0;
    while offset < size {
        let len = usize::try_from((size - offset).min(SCAN_CHUNK as u64)).expect("<= 2 MiB");
        let known_zero = source
            .known_zero(offset, len as u64)
            .map_err(|source| Error::Source { offset, source })?;
        if known_zero {
            visit(offset, None)?;
        } else {
            let chunk = &mut buf[..len];
            source
                .read_exact_at(offset, chunk)
                .map_err(|source| Error::Source { offset, source })?;
            visit(offset, (!is_zero(chunk)).then_some(&*chunk))?;
        }
        task.advance(len as u64);
        offset += len as u64;
    }
    task.finish();
    Ok(())
}

/// Reads `buf.len()` bytes at `offset` in the second pass.
pub(crate) fn read_at(
    source: &mut dyn DiskSource,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), Error> {
    source.read_exact_at(offset, buf).map_err(|source| Error::Source { offset, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Write as _};

    fn read_all(source: &mut dyn DiskSource, offsets: &[u64]) -> Vec<u8> {
        let mut out = Vec::new();
        for &o in offsets {
            let mut b = [0u8; 3];
            source.read_exact_at(o, &mut b).unwrap();
            out.extend_from_slice(&b);
        }
        out
    }

    #[test]
    fn every_source_reads_the_same_bytes() {
        let data: Vec<u8> = (0..=255).collect();
        let offsets = [0, 10, 200, 3, 253];
        let want = read_all(&mut data.as_slice(), &offsets);
        assert_eq!(&want[..3], &[0, 1, 2]);
        assert_eq!(&want[12..], &[253, 254, 255]);

        let mut seek = SeekSource::new(Cursor::new(data.clone()), 256);
        assert_eq!(read_all(&mut seek, &offsets), want);

        let mut opened = 0;
        let mut reopen = ReopenSource::new(256, || {
            opened += 1;
            Ok(Cursor::new(data.clone()))
        });
        assert_eq!(read_all(&mut reopen, &offsets), want);
        drop(reopen);
        assert_eq!(opened, 2, "reopened once, for the backwards read at offset 3");

        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&data).unwrap();
        let mut fs = FileSource::from_file(file).unwrap();
        assert_eq!(fs.size(), 256);
        assert_eq!(read_all(&mut fs, &offsets), want);
    }

    #[test]
    fn reads_past_the_end_fail() {
        let data = [1u8; 16];
        let mut b = [0u8; 4];
        assert!((&data[..]).read_exact_at(13, &mut b).is_err());
        assert!((&data[..]).read_exact_at(u64::MAX, &mut b).is_err());
        assert!(SeekSource::new(Cursor::new(data), 16).read_exact_at(13, &mut b).is_err());
        let mut short = ReopenSource::new(32, || Ok(Cursor::new(data)));
        assert!(short.read_exact_at(20, &mut b).is_err(), "source shorter than its size");
    }

    #[test]
    fn file_holes_are_known_zero() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(8 << 20).unwrap();
        file.write_all_at(b"data", 5 << 20).unwrap();
        let mut fs = FileSource::from_file(file).unwrap();
        // A file system may report more data than written, never less.
        assert!(!fs.known_zero(4 << 20, 2 << 20).unwrap());
        assert!(!fs.known_zero(5 << 20, 4).unwrap());
        let mut hole_seen = false;
        for start in [0, 2 << 20, 6 << 20] {
            hole_seen |= fs.known_zero(start, 1 << 20).unwrap();
        }
        let mut b = [0u8; 4];
        fs.read_exact_at(5 << 20, &mut b).unwrap();
        assert_eq!(&b, b"data");
        // tmpfs and ext4 both report holes; if this fails the test machine's /tmp does not.
        assert!(hole_seen, "no hole reported by SEEK_DATA");
    }

    #[test]
    fn scan_reports_zero_and_data_chunks() {
        let mut data = vec![0u8; 3 * SCAN_CHUNK + 100];
        data[SCAN_CHUNK + 5] = 1;
        data[3 * SCAN_CHUNK + 99] = 1;
        let mut seen = Vec::new();
        scan(&mut data.as_slice(), &xspack_io::NoProgress, |off, chunk| {
            seen.push((off, chunk.map(<[u8]>::len)));
            Ok(())
        })
        .unwrap();
        let c = SCAN_CHUNK as u64;
        assert_eq!(seen, [(0, None), (c, Some(SCAN_CHUNK)), (2 * c, None), (3 * c, Some(100))]);
    }
}
