//! Single-pass builds: the first layer's file data goes straight into the filesystem image
//! while the layers are first read, into the ext4 data zone ([`xspack_ext4::DataZone`]).
//!
//! A layer's bytes can only be decompressed from the start, and ext4 normally needs every
//! block placed before any is written, so a plain build reads each layer holding surviving
//! file data twice. Here the first layer, usually the base image and most of the bytes, is
//! read once: each of its files is given blocks in arrival order and its bytes written there
//! as they stream by (all-zero blocks left as holes). After the merge, blocks of files that a
//! later layer replaced or deleted are zeroed, the filesystem is planned around the zone
//! (metadata and the other layers' files after it), and only the other layers are read again.
//! Filesystems above 16 GiB, which the zone has no room for, are written the two-pass way
//! into the same file.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};

use xspack_ext4::{DataZone, ZoneFile};
use xspack_io::{Progress, ProgressUnit, SparseFile};
use xspack_oci::{Image, MergedTree};

use crate::{Error, RootfsOptions, RootfsSummary};

/// Zeros written over the gaps between zone files (turned into holes by [`SparseFile`]).
static ZEROS: [u8; 64 * 1024] = [0u8; 64 * 1024];

/// Writes the first layer's files into the zone as pass 1 reads them.
pub(crate) struct ZoneWriter {
    out: SparseFile,
    zone: DataZone,
    /// Entry index in the first layer → where its data is.
    placed: HashMap<u64, ZoneFile>,
}

/// The image file after pass 1: the first layer's files in place.
pub struct ZoneImage {
    file: File,
    zone: DataZone,
    placed: HashMap<u64, ZoneFile>,
}

impl ZoneWriter {
    /// Writes into `file`, new and empty; `writeback` starts pushing the bytes to the device
    /// as they come (for an output, not a scratch file).
    pub(crate) fn new(file: File, writeback: bool) -> Self {
        let out = if writeback { SparseFile::new(file) } else { SparseFile::scratch(file) };
        ZoneWriter { out, zone: DataZone::new(), placed: HashMap::new() }
    }

    /// Copies the `size` bytes of entry `entry` from `data` into the zone and returns its
    /// all-zero 4 KiB blocks as runs (as [`crate::zero_runs`] does).
    pub(crate) fn add(
        &mut self,
        entry: u64,
        size: u64,
        data: &mut dyn Read,
        buf: &mut [u8],
    ) -> io::Result<Vec<(u64, u64)>> {
        let placed = self.zone.allocate(size).map_err(io::Error::other)?;
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let mut block = 0u64;
        let mut left = size;
        for &(start, blocks) in placed.runs() {
            self.fill_to(start * xspack_ext4::BLOCK_SIZE)?;
            let mut room = (blocks * xspack_ext4::BLOCK_SIZE).min(left);
            while room > 0 {
                let want = usize::try_from(room.min(buf.len() as u64)).expect("fits a buffer");
                let n = xspack_io::read_full(data, &mut buf[..want])?;
                if n < want {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "entry data ended"));
                }
                crate::note_zero_blocks(&buf[..n], &mut block, &mut runs);
                self.out.write_all(&buf[..n])?;
                room -= n as u64;
                left -= n as u64;
            }
        }
        self.placed.insert(entry, placed);
        Ok(runs)
    }

    /// Writes zeros up to byte `to` of the image.
    fn fill_to(&mut self, to: u64) -> io::Result<()> {
        while self.out.len() < to {
            let n = usize::try_from((to - self.out.len()).min(ZEROS.len() as u64))
                .expect("fits a buffer");
            self.out.write_all(&ZEROS[..n])?;
        }
        Ok(())
    }

    pub(crate) fn finish(mut self) -> io::Result<ZoneImage> {
        self.fill_to(self.zone.end() * xspack_ext4::BLOCK_SIZE)?;
        let file = self.out.finish()?;
        Ok(ZoneImage { file, zone: self.zone, placed: self.placed })
    }
}

/// Pass 2 of a single-pass build: zeroes the zone files nothing uses, plans the filesystem
/// around the zone, and writes the rest of it into the same file, reading the other layers
/// again. Returns the finished image file.
pub fn write_ext4_around_zone(
    image: &Image,
    tree: &MergedTree,
    opts: &RootfsOptions,
    zone: ZoneImage,
    progress: &dyn Progress,
) -> Result<(File, RootfsSummary), Error> {
    let none = |_: &xspack_ext4::Plan, _: &crate::DataMap<'_>| Ok(None::<io::Sink>);
    let (file, summary, _) = write_around_zone(image, tree, opts, zone, progress, none)?;
    Ok((file, summary))
}

/// [`write_ext4_around_zone`], then one read of the finished image, front to back, into the
/// sinks `make_sinks` makes once the filesystem is planned (the outputs made from the raw
/// image, which may need the plan: VHD's block map). Returns the sinks too.
pub(crate) fn write_around_zone<S: Write>(
    image: &Image,
    tree: &MergedTree,
    opts: &RootfsOptions,
    zone: ZoneImage,
    progress: &dyn Progress,
    make_sinks: impl FnOnce(&xspack_ext4::Plan, &crate::DataMap<'_>) -> Result<Option<S>, Error>,
) -> Result<(File, RootfsSummary, Option<S>), Error> {
    let ZoneImage { mut file, zone, placed } = zone;
    let io_err = |op, e| Error::Io { op, path: "the image".into(), source: e };
    let (mut builder, mut converted) = crate::convert::to_builder(tree)?;
    let mut used: HashSet<u64> = HashSet::new();
    let mut all_zoned = true;
    for (&(layer, entry), &id) in &converted.sources {
        if layer != 0 {
            continue;
        }
        match placed.get(&entry) {
            Some(at) => {
                builder.set_zone_data(id, at.clone())?;
                used.insert(entry);
            }
            None => all_zoned = false,
        }
    }
    if all_zoned {
        converted.layers_with_data.remove(&0);
    }
    // Files a later layer replaced or deleted: their blocks are free space, and read as zeros.
    let mut dropped: Vec<&ZoneFile> =
        placed.iter().filter(|(entry, _)| !used.contains(entry)).map(|(_, at)| at).collect();
    dropped.sort_by_key(|z| z.runs().first().map(|r| r.0));
    for z in dropped {
        punch_out(&file, z.runs()).map_err(|e| io_err("zeroing replaced files in", e))?;
    }

    let ext4 = crate::ext4_options(image, opts);
    let plan = match builder.plan_with_zone(&ext4, &zone) {
        Ok(plan) => plan,
        Err(xspack_ext4::Error::TooLarge(_)) if ext4.size.is_none_or(|s| s > 16 << 30) => {
            // Too large for the zone: the two-pass way, over the same file.
            file.set_len(0).and_then(|()| file.rewind()).map_err(|e| io_err("truncating", e))?;
            let mut sinks = None;
            let sparse = SparseFile::new(file);
            let make_out = |plan: &xspack_ext4::Plan, map: &crate::DataMap<'_>| {
                sinks = make_sinks(plan, map)?;
                Ok(sparse)
            };
            let (sparse, summary) = crate::write_ext4_with(image, tree, opts, progress, make_out)?;
            let file = sparse.finish().map_err(|e| io_err("writing", e))?;
            let sinks = sinks.map(|s| feed(&file, s)).transpose();
            let sinks = sinks.map_err(|e| io_err("making outputs from", e))?;
            return Ok((file, summary, sinks));
        }
        Err(e) => return Err(e.into()),
    };
    let sinks = make_sinks(&plan, &crate::DataMap { tree, converted: &converted })?;
    let task = progress.task("writing ext4", Some(plan.size_bytes()), ProgressUnit::Bytes);
    file.rewind().map_err(|e| io_err("writing", e))?;
    let out = BufWriter::with_capacity(256 * 1024, &mut file);
    let mut writer = plan.writer_around_zone(out);
    crate::write_files(image, &converted, &mut writer, &*task)?;
    let mut out = writer.finish()?;
    out.flush().map_err(|e| io_err("writing", e))?;
    drop(out);
    task.finish();
    let sinks = sinks.map(|s| feed(&file, s)).transpose();
    let sinks = sinks.map_err(|e| io_err("making outputs from", e))?;
    let summary = crate::summary(image, tree, &plan, &ext4);
    Ok((file, summary, sinks))
}

/// Reads the finished image from its start into `sinks`.
fn feed<S: Write>(file: &File, mut sinks: S) -> io::Result<S> {
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    reader.rewind()?;
    io::copy(&mut reader, &mut sinks)?;
    sinks.flush()?;
    Ok(sinks)
}

/// Makes the blocks of `runs` read as zeros: punches holes, or writes zeros where the
/// filesystem cannot.
fn punch_out(file: &File, runs: &[(u64, u64)]) -> io::Result<()> {
    use rustix::fs::{FallocateFlags, fallocate};
    for &(start, blocks) in runs {
        let (offset, len) = (start * xspack_ext4::BLOCK_SIZE, blocks * xspack_ext4::BLOCK_SIZE);
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        if fallocate(file, flags, offset, len).is_err() {
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
