//! A file writer that leaves holes where whole 4 KiB blocks of zeros are written.
//!
//! Filesystem and disk images are mostly zeros. Seeking over zero blocks instead of writing
//! them keeps outputs sparse on disk (see lseek(2), holes) while the byte stream, and so its
//! hash, is unchanged. The file's final length is set explicitly, so a trailing hole counts.
//! [`data_start`] and [`next_data`] find the holes again (`SEEK_DATA`, `SEEK_HOLE`), so readers
//! can skip them instead of having the kernel fill page cache with zeros.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

/// Granularity of hole detection: the page and filesystem block size.
const HOLE_BLOCK: usize = 4096;
/// Data is gathered into writes of up to this size.
const WRITE_BATCH: usize = 256 * 1024;
/// Bytes written between two requests to the kernel to start writing them back.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Writes to a file, turning aligned all-zero blocks into holes.
#[derive(Debug)]
pub struct SparseFile {
    file: File,
    /// Bytes not yet written: always starts at a block boundary of the output.
    pending: Vec<u8>,
    /// Zero bytes not yet skipped over.
    hole: u64,
    /// Logical length written so far.
    len: u64,
    /// Bytes up to which writeback was started.
    kicked: u64,
    /// Whether to start writeback as the bytes come (not for scratch files).
    writeback: bool,
}

fn is_zero(block: &[u8]) -> bool {
    let (chunks, rest) = block.as_chunks::<16>();
    chunks.iter().all(|c| u128::from_ne_bytes(*c) == 0) && rest.iter().all(|&b| b == 0)
}

impl SparseFile {
    /// Wraps `file`, which must be empty and positioned at 0.
    pub fn new(file: File) -> Self {
        SparseFile {
            file,
            pending: Vec::with_capacity(WRITE_BATCH),
            hole: 0,
            len: 0,
            kicked: 0,
            writeback: true,
        }
    }

    /// Like [`SparseFile::new`], for a file that will be read back and deleted: its bytes are
    /// not pushed to the device early, which would only spend the disk's bandwidth.
    pub fn scratch(file: File) -> Self {
        SparseFile { writeback: false, ..SparseFile::new(file) }
    }

    /// Bytes written so far, holes included.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn skip_hole(&mut self) -> io::Result<()> {
        if self.hole > 0 {
            let n = i64::try_from(self.hole).map_err(io::Error::other)?;
            self.file.seek(SeekFrom::Current(n))?;
            self.hole = 0;
        }
        Ok(())
    }

    /// Writes out the full blocks of `pending`, keeping a partial tail.
    fn drain(&mut self, all: bool) -> io::Result<()> {
        let full =
            if all { self.pending.len() } else { self.pending.len() / HOLE_BLOCK * HOLE_BLOCK };
        let mut start = 0;
        let mut data_from: Option<usize> = None;
        while start < full {
            let end = (start + HOLE_BLOCK).min(full);
            let block = &self.pending[start..end];
            if block.len() == HOLE_BLOCK && is_zero(block) {
                if let Some(from) = data_from.take() {
                    self.skip_hole()?;
                    self.file.write_all(&self.pending[from..start])?;
                }
                self.hole += HOLE_BLOCK as u64;
            } else if data_from.is_none() {
                data_from = Some(start);
            }
            start = end;
        }
        if let Some(from) = data_from {
            self.skip_hole()?;
            self.file.write_all(&self.pending[from..full])?;
        }
        self.pending.drain(..full);
        self.start_writeback();
        Ok(())
    }

    /// Every [`WRITEBACK_STEP`] bytes, asks the kernel to start writing the bytes just written
    /// to the device, so writing overlaps the work producing the bytes and the final fsync
    /// waits for little. `POSIX_FADV_DONTNEED` starts asynchronous writeback of a range's
    /// dirty pages and drops only clean ones, so the pages just written stay cached. It is
    /// advice: an error only loses the head start.
    fn start_writeback(&mut self) {
        let flushed = self.len - self.pending.len() as u64 - self.hole;
        if self.writeback && flushed >= self.kicked + WRITEBACK_STEP {
            let _ = rustix::fs::fadvise(
                &self.file,
                self.kicked,
                std::num::NonZeroU64::new(flushed - self.kicked),
                rustix::fs::Advice::DontNeed,
            );
            self.kicked = flushed;
        }
    }

    /// Writes what remains, sets the final length, and returns the file.
    pub fn finish(mut self) -> io::Result<File> {
        self.drain(true)?;
        if self.hole > 0 {
            self.file.set_len(self.len)?;
        }
        Ok(self.file)
    }
}

impl Write for SparseFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = WRITE_BATCH - self.pending.len();
        let n = buf.len().min(room);
        self.pending.extend_from_slice(&buf[..n]);
        self.len += n as u64;
        if self.pending.len() >= WRITE_BATCH {
            self.drain(false)?;
        }
        Ok(n)
    }

    /// Flushes the full blocks gathered so far (a partial block waits for more data).
    fn flush(&mut self) -> io::Result<()> {
        self.drain(false)?;
        self.file.flush()
    }
}

/// The first byte of data at or after `at` in `file` (`SEEK_DATA`); `None` if only a hole
/// follows. Where the filesystem cannot tell, `at` itself: everything counts as data.
pub fn data_start(file: &File, at: u64) -> io::Result<Option<u64>> {
    match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(at)) {
        Ok(data) => Ok(Some(data)),
        Err(rustix::io::Errno::NXIO) => Ok(None),
        Err(_) => Ok(Some(at)),
    }
}

/// The first stretch of data in bytes `at..end` of `file`, as `(start, end)`; `None` if the
/// rest of that range is a hole. Where the filesystem cannot tell, all of it is data.
pub fn next_data(file: &File, at: u64, end: u64) -> io::Result<Option<(u64, u64)>> {
    match data_start(file, at)? {
        Some(data) if data < end => {
            let hole = match rustix::fs::seek(file, rustix::fs::SeekFrom::Hole(data)) {
                Ok(hole) => hole,
                Err(_) => end,
            };
            Ok(Some((data, hole.clamp(data + 1, end))))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    fn roundtrip(pieces: &[Vec<u8>]) -> (Vec<u8>, u64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = SparseFile::new(File::create(&path).unwrap());
        for p in pieces {
            w.write_all(p).unwrap();
        }
        w.finish().unwrap().sync_all().unwrap();
        let mut data = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut data).unwrap();
        (data, std::fs::metadata(&path).unwrap().blocks() * 512)
    }

    #[test]
    fn data_stretches_skip_the_holes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut w = SparseFile::new(File::create(&path).unwrap());
        for piece in [vec![0u8; 1 << 20], vec![5u8; 8192], vec![0u8; 1 << 20], vec![6u8; 100]] {
            w.write_all(&piece).unwrap();
        }
        let file = w.finish().unwrap();
        let len = file.metadata().unwrap().len();
        let mut found = Vec::new();
        let mut at = 0;
        while let Some((data, hole)) = next_data(&file, at, len).unwrap() {
            assert!(data >= at && hole > data && hole <= len);
            found.push((data, hole));
            at = hole;
        }
        // tmpfs and ext4 report holes at this granularity; a filesystem that cannot would
        // report one stretch of data, which is also right.
        let expected = vec![(1 << 20, (1 << 20) + 8192), ((2 << 20) + 8192, len)];
        assert!(found == expected || found == vec![(0, len)], "{found:?}");
        assert_eq!(next_data(&file, len - 50, len - 10).unwrap(), Some((len - 50, len - 10)));
        assert_eq!(data_start(&file, len).unwrap(), None);
    }

    #[test]
    fn zeros_become_holes_and_bytes_survive() {
        let mut pieces =
            vec![vec![7u8; 10], vec![0u8; 8 << 20], vec![9u8; 5000], vec![0u8; 3 << 20]];
        let (data, allocated) = roundtrip(&pieces);
        let want: Vec<u8> = pieces.concat();
        assert_eq!(data, want);
        assert!(allocated < 1 << 20, "allocated {allocated} bytes for 11 MiB of mostly zeros");
        pieces.push(vec![1, 2, 3]);
        assert_eq!(roundtrip(&pieces).0, pieces.concat());
        assert_eq!(roundtrip(&[vec![0u8; 4096 * 3 + 1]]).0.len(), 4096 * 3 + 1);
        assert!(roundtrip(&[]).0.is_empty());
    }
}
