//! Single-pass builds: file data goes into the filesystem image while the layers are first
//! read, into the ext4 data zone ([`xspack_ext4::DataZone`]).
//!
//! A layer's bytes can only be decompressed from the start, and ext4 normally needs every
//! block placed before any is written, so a plain build reads each layer holding surviving
//! file data twice. Here every layer is read once:
//! - the first layer, usually the base image and most of the bytes, is written straight into
//!   the image: each file is given zone blocks in arrival order and its bytes are written
//!   there as they stream by (all-zero blocks left as holes);
//! - the other layers are read at the same time, on other cores, before the first layer's
//!   end (and so where theirs begin) is known. Each writes its files, one after another, into
//!   a scratch file of its own (a stash). After the merge their files take the zone blocks
//!   that follow the first layer's, layer by layer in arrival order (the blocks one pass over
//!   the layers in order would have given them), and the stashed bytes of the files that
//!   survive are copied into place (`copy_file_range`, data extents only).
//!
//! Blocks of first-layer files that a later layer replaced or deleted are zeroed (stashed
//! files that did not survive are never copied), and the filesystem is planned around the
//! zone, metadata after it. Filesystems above 16 GiB, which the zone has no room for, are
//! written the two-pass way into the same file.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use xspack_ext4::{BLOCK_SIZE, DataZone, ZoneFile};
use xspack_io::SparseFile;

use crate::Error;

/// Zeros written over the gaps between zone files (turned into holes by [`SparseFile`]).
pub(crate) static ZEROS: [u8; 1 << 20] = [0u8; 1 << 20];

/// Where pass 1 writes file data: the image for the first layer, stashes for the others.
pub(crate) struct Zoning {
    first: std::sync::Mutex<ZoneWriter>,
    /// Where stashes are made.
    dir: PathBuf,
    stashes: std::sync::Mutex<Vec<Stash>>,
    /// The most file data (whole blocks) the image and the stashes may take together.
    limit: Option<u64>,
    /// File data taken so far, by every layer's reader.
    charged: std::sync::atomic::AtomicU64,
}

/// Takes a layer's file data as pass 1 reads it.
pub(crate) trait FileSink {
    /// Copies the `size` bytes of entry `entry` from `data` and returns its all-zero 4 KiB
    /// blocks as runs (as [`crate::merge::zero_runs`] does).
    fn add(
        &mut self,
        entry: u64,
        size: u64,
        data: &mut dyn Read,
        buf: &mut [u8],
    ) -> io::Result<Vec<(u64, u64)>>;
}

/// Writes the first layer's files into the zone as pass 1 reads them.
pub(crate) struct ZoneWriter {
    out: SparseFile,
    zone: DataZone,
    /// Where the data of each file entry of the first layer is, in entry order.
    placed: Vec<(u64, ZoneFile)>,
}

/// Writes a later layer's files into a scratch file, each from a block boundary, one after
/// another.
pub(crate) struct StashWriter {
    out: SparseFile,
    /// The next free block of the stash.
    next: u64,
    files: Vec<Stashed>,
}

/// One file of a stash.
pub(crate) struct Stashed {
    pub(crate) entry: u64,
    pub(crate) size: u64,
    /// Its first block in the stash.
    pub(crate) block: u64,
}

/// A later layer's file data, stashed.
pub(crate) struct Stash {
    pub(crate) layer: usize,
    pub(crate) file: File,
    pub(crate) files: Vec<Stashed>,
}

/// The image file after pass 1: the first layer's files in place, the other layers' stashed.
pub(crate) struct ZoneImage {
    pub(crate) file: File,
    pub(crate) zone: DataZone,
    /// The first layer's files, in entry order.
    pub(crate) placed: Vec<(u64, ZoneFile)>,
    /// In layer order.
    pub(crate) stashes: Vec<Stash>,
}

impl ZoneImage {
    /// The `size` bytes of entry `entry` of layer `layer`, read back from where pass 1 put
    /// them (the zone for the first layer, the layer's stash for the others); `None` when
    /// pass 1 did not write that entry.
    pub(crate) fn read(&self, layer: usize, entry: u64, size: u64) -> io::Result<Option<Vec<u8>>> {
        use std::os::unix::fs::FileExt;
        let len = usize::try_from(size).map_err(|_| io::Error::other("file too large"))?;
        let mut out = vec![0u8; len];
        if layer == 0 {
            let Ok(i) = self.placed.binary_search_by_key(&entry, |(e, _)| *e) else {
                return Ok(None);
            };
            let mut done = 0usize;
            for &(block, blocks) in self.placed[i].1.runs() {
                let take =
                    usize::try_from(blocks * BLOCK_SIZE).unwrap_or(usize::MAX).min(len - done);
                self.file.read_exact_at(&mut out[done..done + take], block * BLOCK_SIZE)?;
                done += take;
            }
            return Ok((done == len).then_some(out));
        }
        let Some(stash) = self.stashes.iter().find(|s| s.layer == layer) else { return Ok(None) };
        let Ok(i) = stash.files.binary_search_by_key(&entry, |f| f.entry) else { return Ok(None) };
        let file = &stash.files[i];
        if file.size != size {
            return Ok(None);
        }
        stash.file.read_exact_at(&mut out, file.block * BLOCK_SIZE)?;
        Ok(Some(out))
    }
}

impl Zoning {
    /// Writes the first layer into `file`, new and empty, and stashes the others in `dir`;
    /// `writeback` starts pushing the image's bytes to the device as they come (for an
    /// output, not a scratch file).
    pub(crate) fn new(file: File, dir: &Path, writeback: bool, limit: Option<u64>) -> Self {
        let out = if writeback { SparseFile::new(file) } else { SparseFile::scratch(file) };
        Zoning {
            first: std::sync::Mutex::new(ZoneWriter {
                out,
                zone: DataZone::new(),
                placed: Vec::new(),
            }),
            dir: dir.to_owned(),
            stashes: std::sync::Mutex::new(Vec::new()),
            limit,
            charged: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts a file of `size` bytes against the limit before it is written: an error once
    /// the file data of all layers so far would pass it.
    pub(crate) fn charge(&self, size: u64) -> Result<(), Error> {
        let blocks = size.div_ceil(BLOCK_SIZE).saturating_mul(BLOCK_SIZE);
        let before = self.charged.fetch_add(blocks, std::sync::atomic::Ordering::Relaxed);
        let reached = before.saturating_add(blocks);
        match self.limit {
            Some(limit) if reached > limit => Err(Error::OverSize { limit, reached }),
            _ => Ok(()),
        }
    }

    /// The first layer's writer; the layer's reader holds it until the layer ends.
    pub(crate) fn first(&self) -> std::sync::MutexGuard<'_, ZoneWriter> {
        self.first.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new stash for a later layer.
    pub(crate) fn stash(&self) -> Result<StashWriter, Error> {
        let file = tempfile::tempfile_in(&self.dir).map_err(|e| {
            Error::Io(xspack_io::IoError::new(
                "creating a scratch file in",
                self.dir.display().to_string(),
                e,
            ))
        })?;
        Ok(StashWriter { out: SparseFile::scratch(file), next: 0, files: Vec::new() })
    }

    /// Keeps the stash of layer `layer`, read to its end.
    pub(crate) fn keep(&self, layer: usize, stash: StashWriter) -> Result<(), Error> {
        let file = stash.out.finish().map_err(|e| {
            Error::Io(xspack_io::IoError::new(
                "writing a scratch file in",
                self.dir.display().to_string(),
                e,
            ))
        })?;
        let mut stashes = self.stashes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        stashes.push(Stash { layer, file, files: stash.files });
        Ok(())
    }

    /// Ends pass 1.
    pub(crate) fn finish(self) -> io::Result<ZoneImage> {
        let mut first = self.first.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut stashes =
            self.stashes.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        stashes.sort_by_key(|s| s.layer);
        fill_to(&mut first.out, first.zone.end() * BLOCK_SIZE)?;
        let file = first.out.finish()?;
        Ok(ZoneImage { file, zone: first.zone, placed: first.placed, stashes })
    }
}

impl FileSink for ZoneWriter {
    fn add(
        &mut self,
        entry: u64,
        size: u64,
        data: &mut dyn Read,
        buf: &mut [u8],
    ) -> io::Result<Vec<(u64, u64)>> {
        let placed = self.zone.allocate(size).map_err(io::Error::other)?;
        let runs = write_runs(&mut self.out, placed.runs(), size, data, buf)?;
        self.placed.push((entry, placed));
        Ok(runs)
    }
}

impl FileSink for StashWriter {
    fn add(
        &mut self,
        entry: u64,
        size: u64,
        data: &mut dyn Read,
        buf: &mut [u8],
    ) -> io::Result<Vec<(u64, u64)>> {
        let blocks = size.div_ceil(BLOCK_SIZE);
        let runs = write_runs(&mut self.out, &[(self.next, blocks)], size, data, buf)?;
        self.files.push(Stashed { entry, size, block: self.next });
        self.next += blocks;
        Ok(runs)
    }
}

/// Copies `size` bytes from `data` into `out` at the blocks of `runs` (which lie after
/// everything written so far), zeros over the gaps; returns the all-zero blocks of the data
/// as runs of file blocks.
fn write_runs(
    out: &mut SparseFile,
    runs: &[(u64, u64)],
    size: u64,
    data: &mut dyn Read,
    buf: &mut [u8],
) -> io::Result<Vec<(u64, u64)>> {
    let mut zero: Vec<(u64, u64)> = Vec::new();
    let mut block = 0u64;
    let mut left = size;
    for &(start, blocks) in runs {
        fill_to(out, start * BLOCK_SIZE)?;
        let mut room = (blocks * BLOCK_SIZE).min(left);
        while room > 0 {
            let want = usize::try_from(room.min(buf.len() as u64)).expect("fits a buffer");
            let n = xspack_io::read_full(data, &mut buf[..want])?;
            if n < want {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "entry data ended"));
            }
            crate::merge::note_zero_blocks(&buf[..n], &mut block, &mut zero);
            out.write_all(&buf[..n])?;
            room -= n as u64;
            left -= n as u64;
        }
    }
    Ok(zero)
}

/// Writes zeros into `out` up to byte `to`.
fn fill_to(out: &mut SparseFile, to: u64) -> io::Result<()> {
    while out.len() < to {
        let n = usize::try_from((to - out.len()).min(ZEROS.len() as u64)).expect("fits a buffer");
        out.write_all(&ZEROS[..n])?;
    }
    Ok(())
}

/// Copies the surviving files of `stash` into their zone blocks in `image`, in as few
/// pieces as their blocks allow.
/// `placed` holds the stash's layer's zone files, in entry order.
pub(crate) fn unstash(
    stash: &Stash,
    placed: &[(usize, u64, ZoneFile)],
    survives: impl Fn(u64) -> bool,
    image: &File,
) -> io::Result<()> {
    // (stash block, image block, blocks) of the piece being gathered.
    let mut piece: Option<(u64, u64, u64)> = None;
    let copy = |(s, d, n): (u64, u64, u64)| {
        copy_data(&stash.file, image, s * BLOCK_SIZE, d * BLOCK_SIZE, n * BLOCK_SIZE)
    };
    for f in &stash.files {
        let Ok(at) = placed.binary_search_by_key(&f.entry, |&(_, entry, _)| entry) else {
            continue;
        };
        if !survives(f.entry) {
            continue;
        }
        let at = &placed[at].2;
        let mut from = f.block;
        for &(start, blocks) in at.runs() {
            match &mut piece {
                Some((s, d, n)) if *s + *n == from && *d + *n == start => *n += blocks,
                _ => {
                    if let Some(done) = piece.take() {
                        copy(done)?;
                    }
                    piece = Some((from, start, blocks));
                }
            }
            from += blocks;
        }
    }
    if let Some(done) = piece {
        copy(done)?;
    }
    Ok(())
}

/// Copies the data extents of bytes `from..from + len` of `src` to `to` on in `dst`, leaving
/// holes alone; the end of `src` ends the copy.
fn copy_data(src: &File, dst: &File, from: u64, to: u64, len: u64) -> io::Result<()> {
    let end = from + len;
    let mut at = from;
    while let Some((data, hole)) = xspack_io::next_data(src, at, end)? {
        copy_range(src, dst, data, to + (data - from), hole - data)?;
        at = hole;
    }
    Ok(())
}

/// Copies bytes `from..from + len` of `src` to `to` on in `dst`, in the kernel where it can;
/// the end of `src` ends the copy.
fn copy_range(src: &File, dst: &File, mut from: u64, mut to: u64, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let end = from + len;
    while from < end {
        let want = usize::try_from((end - from).min(1 << 30)).expect("fits usize");
        let (mut off_in, mut off_out) = (from, to);
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                from += n as u64;
                to += n as u64;
            }
            Err(
                rustix::io::Errno::XDEV
                | rustix::io::Errno::NOSYS
                | rustix::io::Errno::OPNOTSUPP
                | rustix::io::Errno::INVAL,
            ) => {
                // Not between these files: through a buffer.
                let mut buf = vec![0u8; 1 << 20];
                while from < end {
                    let want =
                        usize::try_from((end - from).min(buf.len() as u64)).expect("fits a buffer");
                    let n = src.read_at(&mut buf[..want], from)?;
                    if n == 0 {
                        return Ok(());
                    }
                    dst.write_all_at(&buf[..n], to)?;
                    from += n as u64;
                    to += n as u64;
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Makes the blocks of `runs` read as zeros: punches holes, or writes zeros where the
/// filesystem cannot.
pub(crate) fn punch_out(file: &File, runs: &[(u64, u64)]) -> io::Result<()> {
    for &(start, blocks) in runs {
        let (offset, len) = (start * BLOCK_SIZE, blocks * BLOCK_SIZE);
        if punch_hole(file, offset, len).is_err() {
            let mut at = 0;
            while at < len {
                let n = (len - at).min(ZEROS.len() as u64);
                let n_usize = usize::try_from(n).expect("fits a buffer");
                std::os::unix::fs::FileExt::write_all_at(file, &ZEROS[..n_usize], offset + at)?;
                at += n;
            }
        }
    }
    Ok(())
}

/// Deallocates bytes `offset..offset + len` of `file`, keeping its size: they read as zeros.
pub(crate) fn punch_hole(file: &File, offset: u64, len: u64) -> rustix::io::Result<()> {
    use rustix::fs::FallocateFlags;
    rustix::fs::fallocate(file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len)
}
