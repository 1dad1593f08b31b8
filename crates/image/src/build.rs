//! `image build` of a bare filesystem: the layers merged and written as ext4 in a single
//! pass ([`crate::RootfsBuild`]), then every requested format made from the finished image
//! ([`crate::formats`]).

use std::fs::File;

use xspack_io::Progress;
use xspack_manifest::{Output, OutputDir, RelPath};
use xspack_oci::Image;

use crate::formats::{self, DiskFormat, Sinks};
use crate::rootfs::DataMap;
use crate::{Error, RootfsBuild, RootfsOptions, RootfsSummary, identity};

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
/// into `out`: the raw image in a single pass ([`RootfsBuild`]), then the other formats from
/// it ([`formats`]): one read of the finished image feeds the raw digest, VHD and XVA (VHD's
/// block map comes from the ext4 plan), and qcow2 is made from the raw file after.
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
            .map_err(|e| Error::Io(xspack_io::IoError::new("writing", &path, e)))?;
        (file, path)
    };
    let scratch = out.scratch_dir()?;
    let rootfs = RootfsBuild::merge(
        image,
        (file, req.rootfs.size),
        scratch.as_std_path(),
        keep_raw,
        progress,
    )?;
    let dir = &*out;
    let (file, rootfs, sinks) = rootfs.write_with(&req.rootfs, progress, |plan, map| {
        let mut sinks = open_sinks(dir, image, req, &formats, plan, map, progress)?;
        if keep_raw {
            sinks.raw_digest = Some(xspack_io::BackgroundHashingWriter::new(std::io::sink()));
        }
        Ok(sinks)
    })?;
    // Nothing reads a scratch image after this but qcow2's conversion.
    let discard = !keep_raw && !formats.contains(&DiskFormat::Qcow2);
    let sinks = formats::feed(&file, sinks, discard)
        .map_err(|e| Error::Io(xspack_io::IoError::new("making outputs from", &raw_path, e)))?;
    drop(file);
    let mut outputs = sinks.finish(out, (&raw, &raw_path))?;
    if formats.contains(&DiskFormat::Qcow2) {
        let name = req.output(DiskFormat::Qcow2)?;
        let epoch = req.rootfs.source_date_epoch;
        // qcow2 holds no id.
        let (qcow2, nil) = (DiskFormat::Qcow2, xspack_disk::Uuid::NIL);
        outputs.push(formats::derive_image(
            out,
            &raw_path,
            qcow2,
            name.as_str(),
            nil,
            epoch,
            progress,
        )?);
    }
    Ok(BuildSummary { rootfs, outputs })
}

/// The VM an XVA of a bare filesystem of `image` describes: one disk of `size` bytes.
pub fn bare_vm_spec(image: &Image, name: &str, size: u64) -> xspack_xva::VmSpec {
    let id = |purpose| xspack_xva::Uuid::from_seed(&identity::image_seed(purpose, image).0);
    let mut spec = xspack_xva::VmSpec::new(name.to_owned(), id("vm uuid"));
    spec.description = format!("{name} built by xspack from {}", image.source.portable_name());
    spec.sr_uuid = id("sr uuid");
    spec.disks.push(xspack_xva::DiskSpec::new(size, id("vdi uuid"), id("vbd uuid")));
    spec
}

/// The outputs among `formats` that take the image's bytes in order: VHD and XVA.
fn open_sinks(
    dir: &OutputDir,
    image: &Image,
    req: &BuildRequest,
    formats: &[DiskFormat],
    plan: &xspack_ext4::Plan,
    map: &DataMap<'_>,
    progress: &dyn Progress,
) -> Result<Sinks, Error> {
    let epoch = req.rootfs.source_date_epoch;
    let size = plan.size_bytes();
    let mut sinks = Sinks::default();
    if formats.contains(&DiskFormat::Vhd) {
        let file = dir.create_file(&req.output(DiskFormat::Vhd)?)?;
        let allocated = map
            .nonzero(plan, u64::from(xspack_disk::vhd::BLOCK_SIZE))
            .ok_or_else(|| Error::Request("no zero runs for the VHD map".into()))?;
        let uuid = xspack_disk::Uuid::from_digest(&identity::image_seed("vhd uuid", image));
        let opts = xspack_disk::vhd::VhdOptions::new(uuid, epoch);
        sinks.vhd = Some(xspack_disk::vhd::VhdStream::new(file, size, allocated, &opts, progress)?);
    }
    if formats.contains(&DiskFormat::Xva) {
        let file = dir.create_file(&req.output(DiskFormat::Xva)?)?;
        let spec = bare_vm_spec(image, &req.name, size);
        let opts = xspack_xva::XvaOptions::default().with_mtime(epoch).with_progress(progress);
        sinks.xva = Some(xspack_xva::XvaStream::new(file, &spec, &opts)?);
    }
    Ok(sinks)
}
