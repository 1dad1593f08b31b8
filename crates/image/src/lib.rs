//! From a container image to an ext4 filesystem image, streaming and rootless.
//!
//! Two passes over the layers, neither of which extracts anything:
//!
//! 1. [`merge_layers`] reads every layer's headers (verifying blob digests and `diff_id`s) and
//!    merges them into a [`MergedTree`] of metadata;
//! 2. [`write_ext4`] plans the filesystem from that tree, then streams the layers again and
//!    copies each surviving file's bytes from its tar entry straight into place. Layers that
//!    contribute no file data are not read a second time.
//!
//! The filesystem UUID and directory hash seed are derived from the image digest and layer
//! `diff_id`s, so the same image and options always give the same bytes.

mod convert;
mod formats;

pub use formats::{BuildRequest, BuildSummary, DiskFormat, build_into};

use std::collections::HashMap;
use std::io::Write;

use sha2::{Digest as _, Sha256};
use xspack_ext4::{Ext4Options, InodeId};
use xspack_io::{Progress, ProgressUnit};
use xspack_oci::{Image, MergeSummary, MergedTree};

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
            Error::Ext4(e) => {
                !matches!(e, xspack_ext4::Error::Io(_) | xspack_ext4::Error::TooSmall { .. })
            }
            _ => false,
        }
    }
}

/// Pass 1: reads every layer's entries and merges them.
pub fn merge_layers(image: &Image, progress: &dyn Progress) -> Result<MergedTree, Error> {
    let total: u64 = image.layers.iter().map(|l| l.size).sum();
    let task = progress.task("reading layers", Some(total), ProgressUnit::Bytes);
    let mut tree = MergedTree::new();
    for layer in &image.layers {
        let label = layer.label();
        image.read_layer(layer, |entry, _| tree.apply(layer.index, &label, entry))?;
        task.advance(layer.size);
    }
    task.finish();
    Ok(tree)
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
    let layers: std::collections::BTreeSet<usize> = wanted.keys().map(|(l, _)| *l).collect();
    for index in layers {
        let layer = &image.layers[index];
        image.reread_layer(layer, |entry, data| -> Result<(), Error> {
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
/// the layers.
pub fn write_ext4<W: Write>(
    image: &Image,
    tree: &MergedTree,
    opts: &RootfsOptions,
    out: W,
    progress: &dyn Progress,
) -> Result<(W, RootfsSummary), Error> {
    let converted = convert::to_builder(tree)?;
    let mut ext4 = Ext4Options::new(
        opts.uuid.unwrap_or_else(|| derive("ext4 uuid", image)),
        derive("ext4 hash seed", image),
        opts.source_date_epoch,
    );
    ext4.size = opts.size;
    ext4.label.clone_from(&opts.label);
    let plan = converted.builder.plan(&ext4)?;
    let file_bytes: u64 = plan.file_order().map(|(_, size)| size).sum();
    let files = plan.file_order().count() as u64;
    let task = progress.task("writing ext4", Some(plan.size_bytes()), ProgressUnit::Bytes);
    let mut writer = plan.writer(out);
    let sources: &HashMap<(usize, u64), InodeId> = &converted.sources;
    for layer in &image.layers {
        if !converted.layers_with_data.contains(&layer.index) {
            continue;
        }
        image.reread_layer(layer, |entry, data| -> Result<(), Error> {
            if let Some(id) = sources.get(&(layer.index, entry.index)) {
                writer.write_file(*id, data)?;
                task.advance(entry.size);
            }
            Ok(())
        })?;
    }
    for (id, data) in &converted.inline {
        writer.write_file(*id, &mut &data[..])?;
        task.advance(data.len() as u64);
    }
    let out = writer.finish()?;
    task.finish();
    let summary = RootfsSummary {
        layers: image.layers.len(),
        merge: tree.summary,
        files,
        file_bytes,
        inodes: plan.inodes_used(),
        size: plan.size_bytes(),
        uuid: ext4.uuid,
    };
    Ok((out, summary))
}
