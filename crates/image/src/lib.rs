//! From a container image to an ext4 filesystem image, streaming and rootless.
//!
//! Two passes over the layers, neither of which extracts anything:
//!
//! 1. [`merge_layers`] reads every layer's headers (verifying blob digests and `diff_id`s) and
//!    merges them into a [`MergedTree`] of metadata;
//! 2. [`write_ext4`] plans the filesystem from that tree, then streams the layers again and
//!    copies each surviving file's bytes from its tar entry straight into place. Layers that
//!    contribute no file data are not read a second time, and a layer is read only up to its
//!    last surviving file, each block proven unchanged since the first pass (BLAKE3 proofs
//!    the first pass noted of the bytes whose digest it checked).
//!
//! A single-pass build ([`merge_layers_into_zone`], then [`write_ext4_around_zone`]; what
//! [`build`] and the guests do) writes every file during pass 1 (the `zone` module): the first
//! layer's straight into the image, the others' into scratch files, copied into place after
//! the merge. No layer is read again, and the second step writes only the metadata.
//!
//! The filesystem UUID and directory hash seed are derived from the image digest and layer
//! `diff_id`s, so the same image and options always give the same bytes.

mod convert;
mod formats;
mod zone;

pub use formats::{BuildRequest, BuildSummary, DiskFormat, build, build_into};
pub use zone::{ZoneImage, write_ext4_around_zone};

use std::collections::HashMap;
use std::io::Write;

use sha2::{Digest as _, Sha256};
use xspack_ext4::{Ext4Options, InodeId};
use xspack_io::{Progress, ProgressUnit};
use xspack_oci::{EntryKind, Image, MergeSummary, MergedTree};

/// Options for [`write_ext4`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RootfsOptions {
    /// Filesystem size in bytes; `None` sizes it from the content.
    pub size: Option<u64>,
    /// Volume label (at most 16 bytes).
    pub label: String,
    /// Time stamped on the filesystem itself (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
    /// Filesystem UUID; derived from the image when `None`.
    pub uuid: Option<[u8; 16]>,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct RootfsSummary {
    /// Layers applied.
    pub layers: usize,
    /// Merge statistics.
    pub merge: MergeSummary,
    /// Regular files written.
    pub files: u64,
    /// Bytes of file data written.
    pub file_bytes: u64,
    /// Inodes used.
    pub inodes: u64,
    /// Filesystem size in bytes.
    pub size: u64,
    /// Filesystem UUID.
    pub uuid: [u8; 16],
}

/// Errors from building a filesystem image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or merging the image failed.
    #[error(transparent)]
    Image(#[from] xspack_oci::Error),
    /// The filesystem could not be planned or written.
    #[error("ext4: {0}")]
    Ext4(#[from] xspack_ext4::Error),
    /// Writing a VHD or qcow2 failed.
    #[error(transparent)]
    Disk(#[from] xspack_disk::Error),
    /// Writing an XVA failed.
    #[error(transparent)]
    Xva(#[from] xspack_xva::Error),
    /// Creating an output failed.
    #[error(transparent)]
    Output(#[from] xspack_manifest::Error),
    /// An output name is not a valid path.
    #[error(transparent)]
    Name(#[from] xspack_manifest::RelPathError),
    /// The request is inconsistent.
    #[error("{0}")]
    Request(String),
    /// The layers' file data outgrew the size asked for (`--size`): the build stopped as soon
    /// as it did, before writing more.
    #[error(
        "the layers hold more file data than the {limit} bytes asked for (--size): stopped at \
         {reached} bytes, before writing more"
    )]
    OverSize {
        /// The size asked for.
        limit: u64,
        /// The bytes of file data (whole 4 KiB blocks) read when the build stopped.
        reached: u64,
    },
    /// A file operation failed.
    #[error("{path}: {op}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the input image is at fault (exit code 3) rather than the build.
    pub fn is_bad_input(&self) -> bool {
        match self {
            Error::Image(e) => e.is_bad_input(),
            Error::OverSize { .. } => true,
            Error::Ext4(e) => {
                // Not the image's fault: the disk, the size asked for, SOURCE_DATE_EPOCH.
                !matches!(
                    e,
                    xspack_ext4::Error::Io(_)
                        | xspack_ext4::Error::TooSmall { .. }
                        | xspack_ext4::Error::TimestampOutOfRange { .. }
                )
            }
            _ => false,
        }
    }
}

/// Pass 1: reads every layer's entries and merges them.
///
/// With several layers and cores, layers are read in parallel (each into a list of its entries
/// and their zero runs: metadata only) and merged in layer order; with one of either, each
/// entry is merged as it is read.
pub fn merge_layers(image: &Image, progress: &dyn Progress) -> Result<MergedTree, Error> {
    merge_layers_with(image, progress, None)
}

/// Pass 1 of a single-pass build (`zone` module): like [`merge_layers`], and every file is
/// written out as it streams by: the first layer's into `image_file` (new and empty), in the
/// ext4 data zone, and each other layer's into a scratch file of its own in `scratch_dir`
/// (unnamed, gone when dropped). `writeback` starts writing the image's bytes to the device
/// as they come (for an output rather than a scratch file). `size_limit` (the size asked
/// for) bounds the file data written, image and scratch files together: the build stops with
/// [`Error::OverSize`] before it writes past it, so a small layer that inflates to gigabytes
/// cannot fill the disk. Finish with [`write_ext4_around_zone`].
pub fn merge_layers_into_zone(
    image: &Image,
    (image_file, size_limit): (std::fs::File, Option<u64>),
    scratch_dir: &std::path::Path,
    writeback: bool,
    progress: &dyn Progress,
) -> Result<(MergedTree, ZoneImage), Error> {
    let zoning = zone::Zoning::new(image_file, scratch_dir, writeback, size_limit);
    let tree = merge_layers_with(image, progress, Some(&zoning))?;
    let zone = zoning.finish().map_err(|e| Error::Io {
        op: "writing",
        path: "the image".into(),
        source: e,
    })?;
    Ok((tree, zone))
}

fn merge_layers_with(
    image: &Image,
    progress: &dyn Progress,
    zoning: Option<&zone::Zoning>,
) -> Result<MergedTree, Error> {
    let total: u64 = image.layers.iter().map(|l| l.size).sum();
    let task = progress.task("reading layers", Some(total), ProgressUnit::Bytes);
    let mut tree = MergedTree::new();
    let workers =
        std::thread::available_parallelism().map_or(1, usize::from).min(image.layers.len());
    if workers <= 1 {
        let mut buf = vec![0u8; ZERO_SCAN_CHUNK];
        for layer in &image.layers {
            let label = layer.label();
            read_entries(image, layer, &mut buf, zoning, |entry, runs| {
                tree.apply(layer.index, &label, entry)?;
                tree.set_zero_runs(layer.index, entry.index, runs);
                Ok(())
            })?;
            task.advance(layer.size);
        }
    } else {
        tree = merge_in_parallel(image, tree, workers, zoning, task.as_ref())?;
    }
    tree.set_zero_runs_known(true);
    tree.shrink_to_fit();
    task.finish();
    Ok(tree)
}

/// The most bytes of entries (paths, link targets, xattrs and bookkeeping) that a layer read
/// ahead of its turn holds before its reader waits for the layers below it to be merged.
const READ_AHEAD_BUDGET: usize = 16 << 20;

/// What a reader says when it stops because another layer failed (never reported).
const STOPPED: &str = "stopped: another layer failed";

/// The tree being merged by several readers, and which layer's turn it is.
struct InOrder {
    tree: MergedTree,
    /// Layers merged so far: the next to merge is this one.
    merged: usize,
    /// A reader failed: the others stop.
    failed: bool,
}

/// Pass 1 with several readers: each reads a layer (file data written out as it streams, see
/// [`read_entries`]), and its entries are merged in layer order. The reader of the lowest
/// layer not yet merged applies its entries to the tree as it reads them; a reader ahead of
/// its turn keeps its entries until the layers below are merged, and once they take more than
/// [`READ_AHEAD_BUDGET`] it waits for its turn, so memory stays bounded whatever the layers
/// hold. Layers are taken in order, so the lowest unmerged one is always being read and never
/// waits: there is no deadlock.
fn merge_in_parallel(
    image: &Image,
    tree: MergedTree,
    workers: usize,
    zoning: Option<&zone::Zoning>,
    task: &dyn xspack_io::ProgressTask,
) -> Result<MergedTree, Error> {
    use std::sync::{Condvar, Mutex, PoisonError};
    let next = std::sync::atomic::AtomicUsize::new(0);
    let state = Mutex::new(InOrder { tree, merged: 0, failed: false });
    let turn = Condvar::new();
    let errors: Vec<Mutex<Option<Error>>> = image.layers.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let mut buf = vec![0u8; ZERO_SCAN_CHUNK];
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(layer) = image.layers.get(i) else { break };
                    let label = layer.label();
                    let mut ahead: Vec<(xspack_oci::LayerEntry, Vec<(u64, u64)>)> = Vec::new();
                    let mut ahead_bytes = 0usize;
                    let mut direct = false;
                    // Waits for layer i's turn (or a failure), then applies what was kept.
                    let take_turn = |ahead: &mut Vec<(xspack_oci::LayerEntry, Vec<(u64, u64)>)>,
                                     wait: bool|
                     -> Result<bool, Error> {
                        let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
                        while wait && st.merged != i && !st.failed {
                            st = turn.wait(st).unwrap_or_else(PoisonError::into_inner);
                        }
                        if st.failed {
                            return Err(Error::Request(STOPPED.into()));
                        }
                        if st.merged != i {
                            return Ok(false);
                        }
                        for (entry, runs) in ahead.drain(..) {
                            st.tree.apply(layer.index, &label, &entry)?;
                            st.tree.set_zero_runs(layer.index, entry.index, runs);
                        }
                        Ok(true)
                    };
                    let result = read_entries(image, layer, &mut buf, zoning, |entry, runs| {
                        if !direct {
                            direct = take_turn(&mut ahead, ahead_bytes > READ_AHEAD_BUDGET)?;
                            ahead_bytes = 0;
                        }
                        if direct {
                            let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
                            st.tree.apply(layer.index, &label, entry)?;
                            st.tree.set_zero_runs(layer.index, entry.index, runs);
                        } else {
                            ahead_bytes += entry_bytes(entry);
                            ahead.push((entry.clone(), runs));
                        }
                        Ok(())
                    })
                    .and_then(|()| if direct { Ok(true) } else { take_turn(&mut ahead, true) });
                    task.advance(layer.size);
                    let mut st = state.lock().unwrap_or_else(PoisonError::into_inner);
                    match result {
                        Ok(_) => st.merged = i + 1,
                        Err(e) => {
                            st.failed = true;
                            *errors[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                        }
                    }
                    turn.notify_all();
                }
            });
        }
    });
    let st = state.into_inner().unwrap_or_else(PoisonError::into_inner);
    if st.failed {
        // The lowest layer's error: a later layer may only have stopped because of it.
        let real = errors
            .into_iter()
            .filter_map(|e| e.into_inner().ok().flatten())
            .find(|e| !matches!(e, Error::Request(r) if r == STOPPED));
        return Err(real.unwrap_or_else(|| Error::Request("a layer failed".into())));
    }
    Ok(st.tree)
}

/// Roughly what a kept entry costs in memory.
fn entry_bytes(entry: &xspack_oci::LayerEntry) -> usize {
    let link = match &entry.kind {
        EntryKind::Symlink(t) | EntryKind::Hardlink(t) => t.len(),
        _ => 0,
    };
    let xattrs: usize = entry.meta.xattrs.iter().map(|(k, v)| k.len() + v.len() + 48).sum();
    entry.path.len() + link + xattrs + std::mem::size_of::<xspack_oci::LayerEntry>() + 64
}

/// Reads `layer`, calling `visit` with each entry and the zero runs of its data; with
/// `zoning`, every file's data is written out too (the first layer's into the image, another's
/// into its stash).
fn read_entries(
    image: &Image,
    layer: &xspack_oci::LayerInfo,
    buf: &mut [u8],
    zoning: Option<&zone::Zoning>,
    mut visit: impl FnMut(&xspack_oci::LayerEntry, Vec<(u64, u64)>) -> Result<(), Error>,
) -> Result<(), Error> {
    let label = layer.label();
    let mut first = zoning.filter(|_| layer.index == 0).map(zone::Zoning::first);
    let mut stash = match zoning {
        Some(z) if layer.index > 0 => Some(z.stash()?),
        _ => None,
    };
    let mut sink: Option<&mut dyn zone::FileSink> = match (&mut first, &mut stash) {
        (Some(first), _) => Some(&mut **first),
        (None, Some(stash)) => Some(stash),
        (None, None) => None,
    };
    image.read_layer(layer, |entry, data| -> Result<(), Error> {
        let is_file = matches!(entry.kind, EntryKind::File);
        if let Some(z) = zoning.filter(|_| is_file) {
            z.charge(entry.size)?;
        }
        let runs = match &mut sink {
            Some(sink) if is_file => sink.add(entry.index, entry.size, data, buf).map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof
                    || e.kind() == std::io::ErrorKind::InvalidData
                {
                    corrupt(&label, &e)
                } else {
                    Error::Io { op: "writing", path: "the image".into(), source: e }
                }
            })?,
            _ if is_file && entry.size > 0 => {
                zero_runs(data, buf).map_err(|e| corrupt(&label, &e))?
            }
            _ => Vec::new(),
        };
        visit(entry, runs)
    })?;
    if let (Some(z), Some(stash)) = (zoning, stash) {
        z.keep(layer.index, stash)?;
    }
    Ok(())
}

/// A layer whose bytes do not decode or parse.
fn corrupt(label: &str, e: &std::io::Error) -> Error {
    Error::Image(xspack_oci::Error::Layer {
        layer: label.to_owned(),
        reason: format!("corrupt layer: {e}"),
    })
}

/// Bytes read at a time while looking for zero blocks in file data.
const ZERO_SCAN_CHUNK: usize = 256 * 1024;
/// The granularity of zero runs: the ext4 block.
const ZERO_BLOCK: usize = 4096;

/// The all-zero 4 KiB blocks of `data` (read to its end) as `(first, count)` runs. The file
/// bytes pass through here anyway (the tar stream is read to its end), so recording them in
/// the first pass costs a scan that stops at the first non-zero byte of almost every block;
/// it lets sparse disk formats be written in the same pass as the filesystem.
fn zero_runs(data: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<Vec<(u64, u64)>> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut block = 0u64;
    loop {
        let n = xspack_io::read_full(data, buf)?;
        note_zero_blocks(&buf[..n], &mut block, &mut runs);
        if n < buf.len() {
            return Ok(runs);
        }
    }
}

/// Adds the all-zero 4 KiB blocks of `bytes`, the data from block `*block` on (whole blocks
/// but perhaps the last), to `runs`, and moves `*block` past them.
pub(crate) fn note_zero_blocks(bytes: &[u8], block: &mut u64, runs: &mut Vec<(u64, u64)>) {
    for piece in bytes.chunks(ZERO_BLOCK) {
        if is_zero(piece) {
            match runs.last_mut() {
                Some((first, count)) if *first + *count == *block => *count += 1,
                _ => runs.push((*block, 1)),
            }
        }
        *block += 1;
    }
}

/// Whether `bytes` are all zero, 16 at a time.
pub(crate) fn is_zero(bytes: &[u8]) -> bool {
    let (chunks, rest) = bytes.as_chunks::<16>();
    chunks.iter().all(|c| u128::from_ne_bytes(*c) == 0) && rest.iter().all(|&b| b == 0)
}

/// Largest file [`read_files`] returns: configuration files, not payloads.
pub const MAX_READ_FILE: u64 = 1 << 20;

/// Reads the files at `paths` (symlinks followed inside the image) from the merged image, one
/// pass per layer holding any of them. Missing paths and non-files are left out; a file larger
/// than [`MAX_READ_FILE`] is an error.
pub fn read_files(
    image: &Image,
    tree: &mut MergedTree,
    paths: &[&[u8]],
) -> Result<std::collections::BTreeMap<Vec<u8>, Vec<u8>>, Error> {
    use xspack_oci::{FileData, NodeKind};
    let mut out = std::collections::BTreeMap::new();
    let mut wanted: HashMap<(usize, u64), Vec<Vec<u8>>> = HashMap::new();
    for path in paths {
        let Some(id) = tree.resolve(path) else { continue };
        if let NodeKind::File { size, source } = &tree.node(id).kind {
            if *size > MAX_READ_FILE {
                return Err(Error::Request(format!(
                    "{}: larger than {MAX_READ_FILE} bytes",
                    String::from_utf8_lossy(path)
                )));
            }
            match source {
                FileData::Inline(data) => {
                    out.insert(path.to_vec(), data.to_vec());
                }
                FileData::Layer(layer, entry) => {
                    wanted.entry((*layer, *entry)).or_default().push(path.to_vec())
                }
            }
        }
    }
    let mut layers: std::collections::BTreeMap<usize, u64> = std::collections::BTreeMap::new();
    for &(layer, entry) in wanted.keys() {
        let last = layers.entry(layer).or_insert(entry);
        *last = (*last).max(entry);
    }
    for (index, last) in layers {
        let layer = &image.layers[index];
        image.reread_layer(layer, last, |entry, data| -> Result<(), Error> {
            if let Some(names) = wanted.get(&(index, entry.index)) {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(data, &mut bytes).map_err(|e| Error::Io {
                    op: "reading",
                    path: layer.label(),
                    source: e,
                })?;
                for name in names {
                    out.insert(name.clone(), bytes.clone());
                }
            }
            Ok(())
        })?;
    }
    Ok(out)
}

/// A name-based UUID (RFC 9562 version 4 bit layout) from the image's identity.
fn derive(purpose: &str, image: &Image) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"xspack\0");
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(image.digest.0.0);
    for layer in &image.layers {
        h.update(layer.diff_id.0.0);
    }
    xspack_io::Uuid::from_digest(&xspack_io::Sha256Digest(h.finalize().into())).0
}

/// Pass 2: plans the filesystem for `tree` and writes it to `out`, streaming file data from
/// the layers. The tree is consumed: its memory goes as the filesystem is planned.
pub fn write_ext4<W: Write>(
    image: &Image,
    tree: MergedTree,
    opts: &RootfsOptions,
    out: W,
    progress: &dyn Progress,
) -> Result<(W, RootfsSummary), Error> {
    write_ext4_with(image, tree, opts, progress, |_, _| Ok(out))
}

/// Which parts of the planned image hold data, before it is written: from the zero runs
/// [`merge_layers`] recorded for layer files, and from the bytes of files added after them.
pub(crate) struct DataMap<'a> {
    converted: &'a convert::Converted,
}

impl DataMap<'_> {
    /// One flag per `unit` bytes of the image, or `None` when the tree has no zero runs (it
    /// was not made by [`merge_layers`]).
    pub(crate) fn nonzero(&self, plan: &xspack_ext4::Plan, unit: u64) -> Option<Vec<bool>> {
        let layer_runs = self.converted.zero_runs.as_ref()?;
        let mut buf = vec![0u8; ZERO_SCAN_CHUNK];
        let inline: HashMap<InodeId, Vec<(u64, u64)>> = self
            .converted
            .inline
            .iter()
            .map(|(id, data)| Ok((*id, zero_runs(&mut &data[..], &mut buf)?)))
            .collect::<std::io::Result<_>>()
            .expect("reading memory does not fail");
        Some(plan.nonzero_map(unit, |id| {
            layer_runs
                .get(&id)
                .map(|r| &r[..])
                .or_else(|| inline.get(&id).map(|r| &r[..]))
                .unwrap_or(&[])
        }))
    }
}

/// [`write_ext4`], with the output made by `make_out` once the filesystem is planned (so it
/// can depend on the image's size and on which parts hold data).
pub(crate) fn write_ext4_with<W: Write>(
    image: &Image,
    tree: MergedTree,
    opts: &RootfsOptions,
    progress: &dyn Progress,
    make_out: impl FnOnce(&xspack_ext4::Plan, &DataMap<'_>) -> Result<W, Error>,
) -> Result<(W, RootfsSummary), Error> {
    let (builder, converted) = convert::to_builder(tree)?;
    write_builder(image, builder, &converted, opts, progress, make_out)
}

/// [`write_ext4_with`] for a tree already converted; the builder is dropped once planned.
pub(crate) fn write_builder<W: Write>(
    image: &Image,
    builder: xspack_ext4::FsBuilder,
    converted: &convert::Converted,
    opts: &RootfsOptions,
    progress: &dyn Progress,
    make_out: impl FnOnce(&xspack_ext4::Plan, &DataMap<'_>) -> Result<W, Error>,
) -> Result<(W, RootfsSummary), Error> {
    let ext4 = ext4_options(image, opts);
    let plan = builder.plan(&ext4)?;
    drop(builder);
    let out = make_out(&plan, &DataMap { converted })?;
    let task = progress.task("writing ext4", Some(plan.size_bytes()), ProgressUnit::Bytes);
    let mut writer = plan.writer(out);
    write_files(image, converted, &mut writer, &*task)?;
    let out = writer.finish()?;
    task.finish();
    Ok((out, summary(image, converted, &plan, &ext4)))
}

/// The ext4 options of a build of `image`.
pub(crate) fn ext4_options(image: &Image, opts: &RootfsOptions) -> Ext4Options {
    let mut ext4 = Ext4Options::new(
        opts.uuid.unwrap_or_else(|| derive("ext4 uuid", image)),
        derive("ext4 hash seed", image),
        opts.source_date_epoch,
    );
    ext4.size = opts.size;
    ext4.label.clone_from(&opts.label);
    ext4
}

/// Hands `writer` the data of every file it wants, re-reading the layers that hold some.
pub(crate) fn write_files<W: Write>(
    image: &Image,
    converted: &convert::Converted,
    writer: &mut xspack_ext4::Ext4Writer<'_, W>,
    task: &dyn xspack_io::ProgressTask,
) -> Result<(), Error> {
    for (&index, &last) in &converted.layers_with_data {
        let layer = &image.layers[index];
        image.reread_layer(layer, last, |entry, data| -> Result<(), Error> {
            if let Some(id) = converted.source(layer.index, entry.index) {
                writer.write_file(id, data)?;
                task.advance(entry.size);
            }
            Ok(())
        })?;
    }
    for (id, data) in &converted.inline {
        writer.write_file(*id, &mut &data[..])?;
        task.advance(data.len() as u64);
    }
    Ok(())
}

/// What a build of `plan` wrote.
pub(crate) fn summary(
    image: &Image,
    converted: &convert::Converted,
    plan: &xspack_ext4::Plan,
    ext4: &Ext4Options,
) -> RootfsSummary {
    RootfsSummary {
        layers: image.layers.len(),
        merge: converted.merge,
        files: plan.file_sizes().count() as u64,
        file_bytes: plan.file_sizes().sum(),
        inodes: plan.inodes_used(),
        size: plan.size_bytes(),
        uuid: ext4.uuid,
    }
}
