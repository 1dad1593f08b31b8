//! Pass 2: the merged tree as an ext4 filesystem. The tree becomes an ext4 description
//! (`convert`), which is planned (every inode and block placed, [`xspack_ext4::Plan`]) and
//! written in one forward stream.
//!
//! [`RootfsBuild`] is the one way a build writes a root filesystem: pass 1 writes the files
//! into the image file while the layers are read ([`crate::zone`]), the caller may change the
//! merged tree (a guest's fix-ups), then pass 2 plans the filesystem around the files already
//! in place and writes the metadata. Above 16 GiB, where the data zone has no room, pass 2
//! writes the whole filesystem again over the same file, reading again the layers that hold
//! surviving files ([`write_ext4`], also the writer-generic form for any [`Write`]).

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::Path;

use xspack_ext4::{Ext4Options, InodeId, ZoneFile};
use xspack_io::{Progress, ProgressUnit, SparseFile};
use xspack_oci::{Image, MergedTree};

use crate::merge::{ZERO_SCAN_CHUNK, zero_runs};
use crate::zone::{Stash, ZoneImage, Zoning, punch_out, unstash};
use crate::{Error, RootfsOptions, RootfsSummary, convert, identity};

/// A root filesystem being built, between its two steps: the layers merged and their files
/// written into the image file (pass 1), the merged tree still open to changes (a guest's
/// fix-ups, [`RootfsBuild::tree_mut`]) until [`RootfsBuild::write`] writes the rest.
pub struct RootfsBuild<'a> {
    image: &'a Image,
    tree: MergedTree,
    zone: ZoneImage,
}

impl std::fmt::Debug for RootfsBuild<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootfsBuild").field("image", &self.image.digest).finish_non_exhaustive()
    }
}

/// An error writing the image file.
fn io_err(op: &'static str, e: io::Error) -> Error {
    Error::Io(xspack_io::IoError::new(op, "the image", e))
}

impl<'a> RootfsBuild<'a> {
    /// Pass 1: reads and merges the layers ([`crate::merge_layers`]), and writes every file
    /// out as it streams by: the first layer's into `image_file` (new and empty), in the ext4
    /// data zone, and each other layer's into a scratch file of its own in `scratch_dir`
    /// (unnamed, gone when dropped). `writeback` starts writing the image's bytes to the
    /// device as they come (for an output rather than a scratch file). `size_limit` (the size
    /// asked for) bounds the file data written, image and scratch files together: the build
    /// stops with [`Error::OverSize`] before it writes past it, so a small layer that
    /// inflates to gigabytes cannot fill the disk.
    pub fn merge(
        image: &'a Image,
        (image_file, size_limit): (File, Option<u64>),
        scratch_dir: &Path,
        writeback: bool,
        progress: &dyn Progress,
    ) -> Result<Self, Error> {
        let zoning = Zoning::new(image_file, scratch_dir, writeback, size_limit);
        let tree = crate::merge::merge_layers_with(image, progress, Some(&zoning))?;
        let zone = zoning.finish().map_err(|e| io_err("writing", e))?;
        Ok(RootfsBuild { image, tree, zone })
    }

    /// The merged tree.
    pub fn tree(&self) -> &MergedTree {
        &self.tree
    }

    /// The size of the regular file at `path` in the merged tree (symlinks followed); `None`
    /// when there is no regular file there.
    pub fn file_size(&mut self, path: &[u8]) -> Option<u64> {
        let id = self.tree.resolve(path)?;
        match &self.tree.node(id).kind {
            xspack_oci::NodeKind::File { size, .. } => Some(*size),
            _ => None,
        }
    }

    /// The bytes of the regular file at `path` in the merged tree (symlinks followed), read
    /// back from where pass 1 wrote it (a layer is read again only for a file pass 1 did not
    /// write out); `None` when there is no regular file there. A file larger than `max` bytes
    /// is an error ([`Error::Request`]): this is for boot loaders and configuration, not
    /// payloads; check [`RootfsBuild::file_size`] first.
    pub fn read_file(&mut self, path: &[u8], max: u64) -> Result<Option<Vec<u8>>, Error> {
        use xspack_oci::{FileData, NodeKind};
        let Some(id) = self.tree.resolve(path) else { return Ok(None) };
        let NodeKind::File { size, source } = &self.tree.node(id).kind else { return Ok(None) };
        if *size > max {
            return Err(Error::Request(format!(
                "/{}: {size} bytes, more than the {max} this step reads",
                String::from_utf8_lossy(path)
            )));
        }
        match source {
            FileData::Inline(data) => Ok(Some(data.to_vec())),
            &FileData::Layer(layer, entry) => {
                let size = *size;
                if let Some(data) =
                    self.zone.read(layer, entry, size).map_err(|e| io_err("reading", e))?
                {
                    return Ok(Some(data));
                }
                let mut files =
                    crate::files::read_files_up_to(self.image, &mut self.tree, &[path], max)?;
                Ok(files.remove(path))
            }
        }
    }

    /// The merged tree, to change before the filesystem is written.
    pub fn tree_mut(&mut self) -> &mut MergedTree {
        &mut self.tree
    }

    /// Pass 2: copies the surviving stashed files into place, zeroes the first layer's files
    /// nothing uses, plans the filesystem around the zone and writes the rest (the metadata,
    /// and any file pass 1 did not place) into the same file. Returns the finished image file.
    /// The tree is consumed: its memory goes as the filesystem is planned.
    pub fn write(
        self,
        opts: &RootfsOptions,
        progress: &dyn Progress,
    ) -> Result<(File, RootfsSummary), Error> {
        let none = |_: &xspack_ext4::Plan, _: &DataMap<'_>| Ok(io::sink());
        let (file, summary, _) = self.write_with(opts, progress, none)?;
        Ok((file, summary))
    }

    /// [`RootfsBuild::write`], also returning the sinks `make_sinks` makes once the
    /// filesystem is planned (the outputs made from the raw image, which may need the plan:
    /// VHD's block map), for [`crate::formats::feed`] to fill from the finished image.
    pub(crate) fn write_with<S: Write>(
        self,
        opts: &RootfsOptions,
        progress: &dyn Progress,
        make_sinks: impl FnOnce(&xspack_ext4::Plan, &DataMap<'_>) -> Result<S, Error>,
    ) -> Result<(File, RootfsSummary, S), Error> {
        let RootfsBuild { image, tree, zone } = self;
        let ZoneImage { mut file, mut zone, placed: first, stashes } = zone;
        let (mut builder, mut converted) = convert::to_builder(tree)?;
        settle_zone(&file, &mut zone, first, stashes, &mut builder, &mut converted)?;
        let ext4 = ext4_options(image, opts);
        let plan = match builder.plan_with_zone(&ext4, &zone) {
            Ok(plan) => plan,
            Err(xspack_ext4::Error::TooLarge(_)) if ext4.size.is_none_or(|s| s > 16 << 30) => {
                // Too large for the zone: the two-pass way, over the same file, every layer
                // holding a surviving file read again.
                file.set_len(0)
                    .and_then(|()| file.rewind())
                    .map_err(|e| io_err("truncating", e))?;
                builder.clear_zone_data();
                converted.layers_with_data = converted.layers_of_sources();
                let mut sinks = None;
                let sparse = SparseFile::new(file);
                let make_out = |plan: &xspack_ext4::Plan, map: &DataMap<'_>| {
                    sinks = Some(make_sinks(plan, map)?);
                    Ok(sparse)
                };
                let (sparse, summary) =
                    write_builder(image, builder, &converted, opts, progress, make_out)?;
                let file = sparse.finish().map_err(|e| io_err("writing", e))?;
                let sinks = sinks.expect("write_builder plans the filesystem before writing it");
                return Ok((file, summary, sinks));
            }
            Err(e) => return Err(e.into()),
        };
        drop(builder);
        let sinks = make_sinks(&plan, &DataMap { converted: &converted })?;
        // What is left to write: the metadata, and the bytes of files pass 1 did not place (a
        // guest's fix-ups).
        let left: u64 = plan.file_order().map(|(_, size)| size).sum();
        let what =
            if left == 0 { "writing ext4 metadata" } else { "writing ext4 metadata and files" };
        let task = progress.task(what, Some(left), ProgressUnit::Bytes);
        file.rewind().map_err(|e| io_err("writing", e))?;
        let out = BufWriter::with_capacity(256 * 1024, &mut file);
        let mut writer = plan.writer_around_zone(out);
        write_files(image, &converted, &mut writer, &*task)?;
        let mut out = writer.finish()?;
        out.flush().map_err(|e| io_err("writing", e))?;
        drop(out);
        task.finish();
        let summary = summary(image, &converted, &plan, &ext4);
        Ok((file, summary, sinks))
    }
}

/// Gives the stashed files their zone blocks and copies the surviving ones into place, moves
/// every surviving file's placement to `builder`, and zeroes the first layer's files that a
/// later layer replaced or deleted.
fn settle_zone(
    file: &File,
    zone: &mut xspack_ext4::DataZone,
    first: Vec<(u64, ZoneFile)>,
    stashes: Vec<Stash>,
    builder: &mut xspack_ext4::FsBuilder,
    converted: &mut convert::Converted,
) -> Result<(), Error> {
    // The stashed files take the zone blocks after the first layer's, in layer order and
    // each layer's arrival order, whether or not they survived: the layout depends on the
    // layers only. Sorted by (layer, entry), as every layer's files arrive in entry order.
    let mut placed: Vec<(usize, u64, ZoneFile)> =
        first.into_iter().map(|(entry, at)| (0, entry, at)).collect();
    for stash in &stashes {
        for f in &stash.files {
            placed.push((stash.layer, f.entry, zone.allocate(f.size)?));
        }
    }
    // The surviving stashed files go into place now (wasted only if the filesystem turns out
    // too large for the zone, and is written the two-pass way).
    for stash in &stashes {
        let mine = |&(layer, _, _): &(usize, u64, ZoneFile)| layer.cmp(&stash.layer);
        let from = placed.partition_point(|p| mine(p).is_lt());
        let to = placed.partition_point(|p| mine(p).is_le());
        let survives = |entry: u64| converted.source(stash.layer, entry).is_some();
        unstash(stash, &placed[from..to], survives, file)
            .map_err(|e| io_err("copying stashed files into", e))?;
    }
    drop(stashes);
    // Layers with a surviving file pass 1 did not place are read again.
    let unzoned: BTreeSet<usize> = converted
        .sources
        .iter()
        .map(|&(key, _)| convert::layer_entry(key))
        .filter(|&(layer, entry)| {
            placed.binary_search_by_key(&(layer, entry), |&(l, e, _)| (l, e)).is_err()
        })
        .map(|(layer, _)| layer)
        .collect();
    converted.layers_with_data.retain(|layer, _| unzoned.contains(layer));
    // Every surviving file's placement moves to the builder. First-layer files a later layer
    // replaced or deleted: their blocks are free space, and read as zeros. (Stashed ones were
    // never copied.)
    let mut dropped: Vec<ZoneFile> = Vec::new();
    for (layer, entry, at) in placed {
        match converted.source(layer, entry) {
            Some(id) => builder.set_zone_data(id, at)?,
            None if layer == 0 => dropped.push(at),
            None => {}
        }
    }
    dropped.sort_by_key(|z| z.runs().first().map(|r| r.0));
    for z in &dropped {
        punch_out(file, z.runs()).map_err(|e| io_err("zeroing replaced files in", e))?;
    }
    Ok(())
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
/// [`crate::merge_layers`] recorded for layer files, and from the bytes of files added after them.
pub(crate) struct DataMap<'a> {
    converted: &'a convert::Converted,
}

impl DataMap<'_> {
    /// One flag per `unit` bytes of the image, or `None` when the tree has no zero runs (it
    /// was not made by [`crate::merge_layers`]).
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
        opts.uuid.unwrap_or_else(|| identity::image_uuid("ext4 uuid", image)),
        identity::image_uuid("ext4 hash seed", image),
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
