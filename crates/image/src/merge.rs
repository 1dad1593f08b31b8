//! Pass 1: every layer's entries, read once in layer order (or on several cores, merged in
//! layer order), applied to one [`MergedTree`] of metadata, with the all-zero blocks of each
//! file noted as it streams by. The OCI image layer rules this follows (whiteouts, opaque
//! directories, hard links) are in `xspack_oci`'s `merge` module; with a [`Zoning`], every file's
//! bytes are also written out as they pass (the `zone` module).

use xspack_io::{Progress, ProgressUnit};
use xspack_oci::{EntryKind, Image, MergedTree};

use crate::Error;
use crate::zone::{self, Zoning};

/// Pass 1: reads every layer's entries and merges them.
///
/// With several layers and cores, layers are read in parallel (each into a list of its entries
/// and their zero runs: metadata only) and merged in layer order; with one of either, each
/// entry is merged as it is read.
pub fn merge_layers(image: &Image, progress: &dyn Progress) -> Result<MergedTree, Error> {
    merge_layers_with(image, progress, None)
}

pub(crate) fn merge_layers_with(
    image: &Image,
    progress: &dyn Progress,
    zoning: Option<&Zoning>,
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
    zoning: Option<&Zoning>,
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
    zoning: Option<&Zoning>,
    mut visit: impl FnMut(&xspack_oci::LayerEntry, Vec<(u64, u64)>) -> Result<(), Error>,
) -> Result<(), Error> {
    let label = layer.label();
    let mut first = zoning.filter(|_| layer.index == 0).map(Zoning::first);
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
                    Error::Io(xspack_io::IoError::new("writing", "the image", e))
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
pub(crate) const ZERO_SCAN_CHUNK: usize = 256 * 1024;

/// The granularity of zero runs: the ext4 block.
const ZERO_BLOCK: usize = 4096;

/// The all-zero 4 KiB blocks of `data` (read to its end) as `(first, count)` runs. The file
/// bytes pass through here anyway (the tar stream is read to its end), so recording them in
/// the first pass costs a scan that stops at the first non-zero byte of almost every block;
/// it lets sparse disk formats be written in the same pass as the filesystem.
pub(crate) fn zero_runs(
    data: &mut dyn std::io::Read,
    buf: &mut [u8],
) -> std::io::Result<Vec<(u64, u64)>> {
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
