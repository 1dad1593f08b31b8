//! Every disk format of one build.
//!
//! [`build`] reads the layers itself and writes the raw image in a single pass where it can
//! (`zone` module): the first layer's files go into place as they are first read, and the
//! other formats are made from the finished raw image.
//!
//! [`build_into`] takes a tree merged beforehand, as guests do after adding their files:
//! Raw, VHD (blktap dynamic) and XVA are written together, straight from the ext4 writer's
//! stream: its bytes go to each requested output as they are produced, in one forward pass,
//! with nothing re-read. VHD puts its allocation table first, so which 2 MiB blocks hold data
//! is worked out beforehand from the ext4 plan and the zero runs recorded while the layers were
//! first read ([`crate::merge_layers`]); the VHD writer checks the bytes against that map, so a
//! wrong map fails the build instead of changing the output. qcow2 (whose compressed form needs
//! each cluster's compressed size up front) is still made from the raw image, written once as
//! an output or a sparse scratch file; so is everything when the tree carries no zero runs.
//! Identities (VHD and VDI UUIDs, the VM UUID) are derived from the image, so the same inputs
//! give the same bytes.

use std::fs::File;
use std::io::Write as _;

use camino::Utf8PathBuf;
use sha2::{Digest as _, Sha256};
use xspack_io::{Progress, Sha256Digest, SparseFile};
use xspack_manifest::{Output, OutputDir, OutputFile, RelPath};
use xspack_oci::{Image, MergedTree};

use crate::{Error, RootfsOptions, RootfsSummary, write_ext4, write_ext4_with};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiskFormat {
    /// The raw image, `NAME.raw`.
    Raw,
    /// A dynamic VHD as blktap writes it, `NAME.vhd`.
    Vhd,
    /// A sparse qcow2 (version 3), `NAME.qcow2`.
    Qcow2,
    /// A XenServer VM export holding the disk, `NAME.xva`.
    Xva,
}

impl DiskFormat {
    /// The file extension.
    pub fn extension(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Vhd => "vhd",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Xva => "xva",
        }
    }
}

/// What to build into an [`OutputDir`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildRequest {
    /// Base name of the outputs.
    pub name: String,
    /// Formats to write (duplicates ignored).
    pub formats: Vec<DiskFormat>,
    /// The filesystem.
    pub rootfs: RootfsOptions,
}

impl BuildRequest {
    /// The output file of `format`: `NAME.EXT`.
    fn output(&self, format: DiskFormat) -> Result<RelPath, xspack_manifest::RelPathError> {
        RelPath::new(format!("{}.{}", self.name, format.extension()))
    }

    /// A request for `formats` of a filesystem named `name`.
    pub fn new(name: impl Into<String>, formats: Vec<DiskFormat>, rootfs: RootfsOptions) -> Self {
        BuildRequest { name: name.into(), formats, rootfs }
    }
}

/// What a build wrote.
#[derive(Debug, Clone)]
pub struct BuildSummary {
    /// The filesystem.
    pub rootfs: RootfsSummary,
    /// The artifacts, in format order.
    pub outputs: Vec<Output>,
}

/// A per-purpose seed from the image identity.
fn seed(image: &Image, purpose: &str) -> Sha256Digest {
    let mut h = Sha256::new();
    h.update(b"xspack\0");
    h.update(purpose.as_bytes());
    h.update([0]);
    h.update(image.digest.0.0);
    Sha256Digest(h.finalize().into())
}

fn file_err(path: &Utf8PathBuf, e: std::io::Error) -> Error {
    Error::Io { op: "writing", path: path.to_string(), source: e }
}

/// The requested formats, sorted and without duplicates, checked against the size.
fn formats_of(req: &BuildRequest) -> Result<Vec<DiskFormat>, Error> {
    let mut formats = req.formats.clone();
    formats.sort();
    formats.dedup();
    if formats.iter().any(|f| *f != DiskFormat::Raw)
        && let Some(size) = req.rootfs.size
        && size % (2 << 20) != 0
    {
        return Err(Error::Request(format!(
            "size {size} must be a multiple of 2 MiB for VHD, qcow2 and XVA outputs"
        )));
    }
    Ok(formats)
}

/// Reads and merges `image`'s layers and writes the filesystem in every requested format
/// into `out`: the raw image in a single pass (`zone` module), the other formats from it.
pub fn build(
    image: &Image,
    out: &mut OutputDir,
    req: &BuildRequest,
    progress: &dyn Progress,
) -> Result<BuildSummary, Error> {
    let formats = formats_of(req)?;
    let raw = req.output(DiskFormat::Raw)?;
    let keep_raw = formats.contains(&DiskFormat::Raw);
    let (file, raw_path) = if keep_raw {
        (out.create_placed_file(&raw)?, out.path_of(&raw))
    } else {
        let path = out.scratch_path(&format!("{}.raw", req.name))?;
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| file_err(&path, e))?;
        (file, path)
    };
    let scratch = out.scratch_dir()?;
    let (tree, zone) = crate::merge_layers_into_zone(
        image,
        (file, req.rootfs.size),
        scratch.as_std_path(),
        keep_raw,
        progress,
    )?;
    // One read of the finished image gives the raw digest, VHD and XVA (VHD's block map
    // comes from the plan); qcow2 is made from the raw file after.
    let streamed: Vec<DiskFormat> = formats
        .iter()
        .copied()
        .filter(|f| matches!(f, DiskFormat::Vhd | DiskFormat::Xva))
        .collect();
    let dir = &*out;
    let (file, rootfs, sinks) =
        crate::zone::write_around_zone(image, tree, &req.rootfs, zone, progress, |plan, map| {
            let mut sinks = open_sinks(dir, image, req, &streamed, plan, map, progress)?;
            if keep_raw {
                sinks.raw_digest = Some(xspack_io::BackgroundHashingWriter::new(std::io::sink()));
            }
            Ok(Some(sinks))
        })?;
    // Nothing reads a scratch image after this but qcow2's conversion.
    let discard = !keep_raw && !formats.contains(&DiskFormat::Qcow2);
    let sinks = sinks.expect("sinks were made");
    let sinks = crate::zone::feed(&file, sinks, discard).map_err(|e| Error::Io {
        op: "making outputs from",
        path: raw_path.to_string(),
        source: e,
    })?;
    drop(file);
    let mut outputs = Vec::new();
    if let Some(hasher) = sinks.raw_digest {
        let (_, sha256, size) = hasher.finish().map_err(|e| file_err(&raw_path, e))?;
        outputs.push(out.finish_placed_file(&raw, sha256, size)?);
    }
    if let Some(vhd) = sinks.vhd {
        outputs.push(out.finish_file(vhd.finish()?.0)?);
    }
    if let Some(xva) = sinks.xva {
        outputs.push(out.finish_file(xva.finish()?)?);
    }
    let rest: Vec<DiskFormat> =
        formats.iter().copied().filter(|f| *f == DiskFormat::Qcow2).collect();
    derive_formats(image, out, req, &rest, &raw_path, &rootfs, &mut outputs, progress)?;
    Ok(BuildSummary { rootfs, outputs })
}

/// Writes the raw filesystem and every other requested format into `out`, for a tree merged
/// beforehand (consumed).
pub fn build_into(
    image: &Image,
    tree: MergedTree,
    out: &mut OutputDir,
    req: &BuildRequest,
    progress: &dyn Progress,
) -> Result<BuildSummary, Error> {
    let formats = formats_of(req)?;
    if !formats.contains(&DiskFormat::Qcow2) && tree.zero_runs_known() {
        return build_one_pass(image, tree, out, req, &formats, progress);
    }
    let mut outputs = Vec::new();
    // The raw image: an output, or a scratch file the other formats are made from.
    let (raw_path, rootfs) = if formats.contains(&DiskFormat::Raw) {
        let raw = req.output(DiskFormat::Raw)?;
        let file = out.create_file(&raw)?;
        let (file, summary) = write_ext4(image, tree, &req.rootfs, file, progress)?;
        outputs.push(out.finish_file(file)?);
        (out.path_of(&raw), summary)
    } else {
        let path = out.scratch_path(&format!("{}.raw", req.name))?;
        let file = File::create_new(&path).map_err(|e| file_err(&path, e))?;
        let (sparse, summary) =
            write_ext4(image, tree, &req.rootfs, SparseFile::scratch(file), progress)?;
        sparse.finish().map_err(|e| file_err(&path, e))?;
        (path, summary)
    };
    derive_formats(image, out, req, &formats, &raw_path, &rootfs, &mut outputs, progress)?;
    Ok(BuildSummary { rootfs, outputs })
}

/// Makes every requested format but raw from the raw image at `raw_path`.
#[allow(clippy::too_many_arguments)]
fn derive_formats(
    image: &Image,
    out: &mut OutputDir,
    req: &BuildRequest,
    formats: &[DiskFormat],
    raw_path: &Utf8PathBuf,
    rootfs: &RootfsSummary,
    outputs: &mut Vec<Output>,
    progress: &dyn Progress,
) -> Result<(), Error> {
    for &format in formats.iter().filter(|f| **f != DiskFormat::Raw) {
        let target = req.output(format)?;
        let mut file = out.create_file(&target)?;
        let source = xspack_disk::FileSource::open(raw_path)?;
        let epoch = req.rootfs.source_date_epoch;
        match format {
            DiskFormat::Raw => unreachable!("filtered"),
            DiskFormat::Vhd => {
                let uuid = xspack_disk::Uuid::from_digest(&seed(image, "vhd uuid"));
                let opts = xspack_disk::vhd::VhdOptions::new(uuid, epoch);
                file = xspack_disk::vhd::write_vhd(source, file, &opts, progress)?.0;
            }
            DiskFormat::Qcow2 => {
                let opts = xspack_disk::qcow2::Qcow2Options::new(false);
                file = xspack_disk::qcow2::write_qcow2(source, file, &opts, progress)?.0;
            }
            DiskFormat::Xva => {
                let spec = xva_spec(image, &req.name, rootfs.size);
                let raw = File::open(raw_path).map_err(|e| file_err(raw_path, e))?;
                let opts =
                    xspack_xva::XvaOptions::default().with_mtime(epoch).with_progress(progress);
                file =
                    xspack_xva::write_xva(file, &spec, &mut [std::io::BufReader::new(raw)], &opts)?;
            }
        }
        file.flush().map_err(|e| file_err(raw_path, e))?;
        outputs.push(out.finish_file(file)?);
    }
    Ok(())
}

/// The VM an XVA of this image describes: one disk of `size` bytes.
fn xva_spec(image: &Image, name: &str, size: u64) -> xspack_xva::VmSpec {
    let vm_uuid = xspack_xva::Uuid::from_seed(&seed(image, "vm uuid").0);
    let mut spec = xspack_xva::VmSpec::new(name.to_owned(), vm_uuid);
    spec.description = format!("{name} built by xspack from {}", image.source.portable_name());
    spec.sr_uuid = xspack_xva::Uuid::from_seed(&seed(image, "sr uuid").0);
    spec.disks.push(xspack_xva::DiskSpec::new(
        size,
        xspack_xva::Uuid::from_seed(&seed(image, "vdi uuid").0),
        xspack_xva::Uuid::from_seed(&seed(image, "vbd uuid").0),
    ));
    spec
}

/// The outputs one ext4 pass writes into.
struct Sinks {
    raw: Option<OutputFile>,
    /// The digest of a raw image written in place (hashed on its own thread).
    raw_digest: Option<xspack_io::BackgroundHashingWriter<std::io::Sink>>,
    vhd: Option<xspack_disk::vhd::VhdStream<OutputFile>>,
    xva: Option<xspack_xva::XvaStream<OutputFile>>,
}

impl std::io::Write for Sinks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(raw) = &mut self.raw {
            raw.write_all(buf)?;
        }
        if let Some(raw) = &mut self.raw_digest {
            raw.write_all(buf)?;
        }
        if let Some(vhd) = &mut self.vhd {
            vhd.write_all(buf)?;
        }
        if let Some(xva) = &mut self.xva {
            xva.write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(raw) = &mut self.raw {
            raw.flush()?;
        }
        if let Some(raw) = &mut self.raw_digest {
            raw.flush()?;
        }
        if let Some(vhd) = &mut self.vhd {
            vhd.flush()?;
        }
        if let Some(xva) = &mut self.xva {
            xva.flush()?;
        }
        Ok(())
    }
}

/// The outputs of `formats` (raw, VHD, XVA) that take the image's bytes in order.
fn open_sinks(
    dir: &OutputDir,
    image: &Image,
    req: &BuildRequest,
    formats: &[DiskFormat],
    plan: &xspack_ext4::Plan,
    map: &crate::DataMap<'_>,
    progress: &dyn Progress,
) -> Result<Sinks, Error> {
    let epoch = req.rootfs.source_date_epoch;
    let size = plan.size_bytes();
    let mut sinks = Sinks { raw: None, raw_digest: None, vhd: None, xva: None };
    for &format in formats {
        match format {
            DiskFormat::Raw => sinks.raw = Some(dir.create_file(&req.output(format)?)?),
            DiskFormat::Vhd => {
                let file = dir.create_file(&req.output(format)?)?;
                let allocated = map
                    .nonzero(plan, u64::from(xspack_disk::vhd::BLOCK_SIZE))
                    .ok_or_else(|| Error::Request("no zero runs for the VHD map".into()))?;
                let uuid = xspack_disk::Uuid::from_digest(&seed(image, "vhd uuid"));
                let opts = xspack_disk::vhd::VhdOptions::new(uuid, epoch);
                sinks.vhd =
                    Some(xspack_disk::vhd::VhdStream::new(file, size, allocated, &opts, progress)?);
            }
            DiskFormat::Xva => {
                let file = dir.create_file(&req.output(format)?)?;
                let spec = xva_spec(image, &req.name, size);
                let opts =
                    xspack_xva::XvaOptions::default().with_mtime(epoch).with_progress(progress);
                sinks.xva = Some(xspack_xva::XvaStream::new(file, &spec, &opts)?);
            }
            DiskFormat::Qcow2 => unreachable!("qcow2 is made from the raw image"),
        }
    }
    Ok(sinks)
}

/// Raw, VHD and XVA in one pass of the ext4 writer (see the module documentation).
fn build_one_pass(
    image: &Image,
    tree: MergedTree,
    out: &mut OutputDir,
    req: &BuildRequest,
    formats: &[DiskFormat],
    progress: &dyn Progress,
) -> Result<BuildSummary, Error> {
    let dir = &*out;
    let (sinks, rootfs) = write_ext4_with(image, tree, &req.rootfs, progress, |plan, map| {
        open_sinks(dir, image, req, formats, plan, map, progress)
    })?;
    let mut outputs = Vec::new();
    if let Some(raw) = sinks.raw {
        outputs.push(out.finish_file(raw)?);
    }
    if let Some(vhd) = sinks.vhd {
        outputs.push(out.finish_file(vhd.finish()?.0)?);
    }
    if let Some(xva) = sinks.xva {
        outputs.push(out.finish_file(xva.finish()?)?);
    }
    Ok(BuildSummary { rootfs, outputs })
}
