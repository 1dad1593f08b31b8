//! The last stage of every build: a finished raw disk made into each output format, in the
//! output directory. The bare filesystem image ([`crate::build()`]), the ubuntu guest's
//! partitioned disk and the coreos guest's disks all take this path.
//!
//! - **Raw** is the disk as it is: the image file itself when it was written in place, or
//!   written from a [`DiskSource`] ([`write_source`]), ranges the source knows are zero not
//!   read.
//! - **VHD** (a blktap dynamic disk, `vhd/lib/libvhd.c`; docs/formats/vhd.md) and **XVA**
//!   (xapi's `stream_vdi.ml` export; docs/formats/xva.md) take the disk's bytes in order: one
//!   forward read of the raw file (`feed`) feeds both where the VHD block map is known
//!   beforehand (a bare filesystem: from the ext4 plan), and holes are handed on as zeros
//!   without being read. Otherwise they are made from the raw file ([`derive_image`],
//!   [`write_xva`]).
//! - **qcow2** (version 3, QEMU's `docs/interop/qcow2.txt`) needs each cluster's place up front,
//!   so it is always made from the raw file.
//!
//! Every id in these formats is derived from the inputs (`identity`), so the same inputs
//! give the same bytes.

use std::fs::File;
use std::io::{self, Write};

use camino::{Utf8Path, Utf8PathBuf};
use xspack_disk::DiskSource;
use xspack_io::{Progress, ProgressUnit, SparseFile};
use xspack_manifest::{Output, OutputDir, OutputFile, RelPath};

use crate::Error;
use crate::zone::{ZEROS, punch_hole};

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

/// Bytes copied per read: the VHD block size, so holes are found at that grain.
const CHUNK: usize = 2 << 20;

fn file_err(path: &Utf8Path, e: io::Error) -> Error {
    Error::Io(xspack_io::IoError::new("writing", path, e))
}

/// Writes the whole of `disk` forward to `out`; ranges the source knows are zero are not read.
pub fn write_source<W: Write>(
    disk: &mut dyn DiskSource,
    mut out: W,
    progress: &dyn Progress,
) -> io::Result<W> {
    let size = disk.size();
    let task = progress.task("writing raw disk", Some(size), ProgressUnit::Bytes);
    let mut buf = vec![0u8; CHUNK];
    let zeros = vec![0u8; CHUNK];
    let mut offset = 0;
    while offset < size {
        let len = usize::try_from((size - offset).min(CHUNK as u64)).expect("at most CHUNK");
        if disk.known_zero(offset, len as u64)? {
            out.write_all(&zeros[..len])?;
        } else {
            disk.read_exact_at(offset, &mut buf[..len])?;
            out.write_all(&buf[..len])?;
        }
        offset += len as u64;
        task.advance(len as u64);
    }
    task.finish();
    Ok(out)
}

/// Where a raw disk is being written: an output, or a scratch file the other formats are
/// derived from.
pub enum RawFile {
    /// The output `NAME.raw`.
    Output(OutputFile),
    /// A sparse scratch file.
    Scratch(SparseFile, Utf8PathBuf),
}

impl std::fmt::Debug for RawFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawFile::Output(_) => f.write_str("RawFile::Output"),
            RawFile::Scratch(_, path) => write!(f, "RawFile::Scratch({path})"),
        }
    }
}

impl Write for RawFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            RawFile::Output(f) => f.write(buf),
            RawFile::Scratch(f, _) => f.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            RawFile::Output(f) => f.write_all(buf),
            RawFile::Scratch(f, _) => f.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            RawFile::Output(f) => f.flush(),
            RawFile::Scratch(f, _) => f.flush(),
        }
    }
}

/// Starts the raw disk `file_name`: an output when `keep`, else a scratch file. Returns the
/// file and the path it can be read back from once finished.
pub fn create_raw(
    out: &OutputDir,
    file_name: &str,
    keep: bool,
) -> Result<(RawFile, Utf8PathBuf), Error> {
    if keep {
        let rel = RelPath::new(file_name.to_owned())?;
        let path = out.path_of(&rel);
        Ok((RawFile::Output(out.create_file(&rel)?), path))
    } else {
        let path = out.scratch_path(file_name)?;
        let file = File::create_new(&path).map_err(|e| file_err(&path, e))?;
        Ok((RawFile::Scratch(SparseFile::scratch(file), path.clone()), path))
    }
}

/// Finishes a raw disk; an output is recorded and returned.
pub fn finish_raw(out: &mut OutputDir, raw: RawFile) -> Result<Option<Output>, Error> {
    match raw {
        RawFile::Output(f) => Ok(Some(out.finish_file(f)?)),
        RawFile::Scratch(f, path) => {
            f.finish().map_err(|e| file_err(&path, e))?;
            Ok(None)
        }
    }
}

/// Writes the VHD or qcow2 `file_name` from the raw disk at `raw_path`; a VHD takes
/// `vhd_uuid` as its unique id.
pub fn derive_image(
    out: &mut OutputDir,
    raw_path: &Utf8Path,
    format: DiskFormat,
    file_name: &str,
    vhd_uuid: xspack_disk::Uuid,
    epoch: u64,
    progress: &dyn Progress,
) -> Result<Output, Error> {
    let mut file = out.create_file(&RelPath::new(file_name.to_owned())?)?;
    let source = xspack_disk::FileSource::open(raw_path)?;
    match format {
        DiskFormat::Vhd => {
            let opts = xspack_disk::vhd::VhdOptions::new(vhd_uuid, epoch);
            file = xspack_disk::vhd::write_vhd(source, file, &opts, progress)?.0;
        }
        DiskFormat::Qcow2 => {
            let opts = xspack_disk::qcow2::Qcow2Options::new(false);
            file = xspack_disk::qcow2::write_qcow2(source, file, &opts, progress)?.0;
        }
        DiskFormat::Raw | DiskFormat::Xva => {
            return Err(Error::Request(format!("{format:?} is not made by derive_image")));
        }
    }
    file.flush().map_err(|e| file_err(raw_path, e))?;
    Ok(out.finish_file(file)?)
}

/// Writes the XVA `file_name` of `vm`, whose disks are the raw disks at `raw_paths` in order.
pub fn write_xva(
    out: &mut OutputDir,
    file_name: &str,
    vm: &xspack_xva::VmSpec,
    raw_paths: &[&Utf8Path],
    epoch: u64,
    progress: &dyn Progress,
) -> Result<Output, Error> {
    let mut file = out.create_file(&RelPath::new(file_name.to_owned())?)?;
    let mut readers = Vec::new();
    for path in raw_paths {
        let raw =
            File::open(path).map_err(|e| Error::Io(xspack_io::IoError::new("reading", path, e)))?;
        readers.push(io::BufReader::new(raw));
    }
    let opts = xspack_xva::XvaOptions::default().with_mtime(epoch).with_progress(progress);
    file = xspack_xva::write_xva(file, vm, &mut readers, &opts)?;
    file.flush().map_err(|e| file_err(Utf8Path::new(file_name), e))?;
    Ok(out.finish_file(file)?)
}

/// The outputs of one disk: its name, formats, and the ids and VM settings they carry.
#[derive(Debug)]
pub struct DiskOutputs<'a> {
    /// Base name of the outputs.
    pub name: &'a str,
    /// The formats, raw included or not.
    pub formats: &'a [DiskFormat],
    /// VHD unique id.
    pub vhd_uuid: xspack_disk::Uuid,
    /// The VM of the XVA (its disk's size is set from the disk).
    pub vm: xspack_xva::VmSpec,
    /// Timestamp of every output.
    pub epoch: u64,
}

/// Writes `disk` as raw (an output, or a scratch file when raw was not asked for), then every
/// other format of `req` from it.
pub fn write_disk(
    mut disk: impl DiskSource,
    out: &mut OutputDir,
    req: &DiskOutputs<'_>,
    progress: &dyn Progress,
) -> Result<Vec<Output>, Error> {
    let mut formats = req.formats.to_vec();
    formats.sort();
    formats.dedup();
    let file_name = |f: DiskFormat| format!("{}.{}", req.name, f.extension());
    let size = disk.size();
    let keep = formats.contains(&DiskFormat::Raw);
    let raw_name = if keep { file_name(DiskFormat::Raw) } else { format!("{}.disk.raw", req.name) };
    let (raw, raw_path) = create_raw(out, &raw_name, keep)?;
    let raw = write_source(&mut disk, raw, progress).map_err(|e| file_err(&raw_path, e))?;
    let mut outputs: Vec<Output> = finish_raw(out, raw)?.into_iter().collect();
    drop(disk);
    for format in formats.into_iter().filter(|f| *f != DiskFormat::Raw) {
        let output = if format == DiskFormat::Xva {
            let mut vm = req.vm.clone();
            for disk in &mut vm.disks {
                disk.virtual_size = size;
            }
            write_xva(out, &file_name(format), &vm, &[&raw_path], req.epoch, progress)?
        } else {
            let name = file_name(format);
            derive_image(out, &raw_path, format, &name, req.vhd_uuid, req.epoch, progress)?
        };
        outputs.push(output);
    }
    Ok(outputs)
}

/// The outputs that take a disk's bytes in order, from one forward read ([`feed`]).
#[derive(Default)]
pub(crate) struct Sinks {
    /// The digest of a raw image written in place (hashed on its own thread).
    pub(crate) raw_digest: Option<xspack_io::BackgroundHashingWriter<io::Sink>>,
    pub(crate) vhd: Option<xspack_disk::vhd::VhdStream<OutputFile>>,
    pub(crate) xva: Option<xspack_xva::XvaStream<OutputFile>>,
}

impl Sinks {
    /// Finishes every sink: the raw image placed at `raw` (at `raw_path`) is recorded with its
    /// digest, then the VHD and the XVA; returns their outputs in that order.
    pub(crate) fn finish(
        self,
        out: &mut OutputDir,
        (raw, raw_path): (&RelPath, &Utf8Path),
    ) -> Result<Vec<Output>, Error> {
        let mut outputs = Vec::new();
        if let Some(hasher) = self.raw_digest {
            let (_, sha256, size) = hasher.finish().map_err(|e| file_err(raw_path, e))?;
            outputs.push(out.finish_placed_file(raw, sha256, size)?);
        }
        if let Some(vhd) = self.vhd {
            outputs.push(out.finish_file(vhd.finish()?.0)?);
        }
        if let Some(xva) = self.xva {
            outputs.push(out.finish_file(xva.finish()?)?);
        }
        Ok(outputs)
    }
}

impl Write for Sinks {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
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

    fn flush(&mut self) -> io::Result<()> {
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

/// Reads the finished image from its start into `sinks`. Holes are not read (the kernel
/// would fill page cache with zeros for them) but handed on as zeros. With `discard` (a
/// scratch image nothing reads afterwards), each stretch is punched out once read: its dirty
/// pages are dropped instead of being written to the disk, beside the outputs, or holding
/// back their writes when dirty memory runs high.
pub(crate) fn feed<S: Write>(file: &File, mut sinks: S, discard: bool) -> io::Result<S> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let (data, hole) = xspack_io::next_data(file, at, len)?.unwrap_or((len, len));
        while at < data {
            let n = (data - at).min(ZEROS.len() as u64);
            sinks.write_all(&ZEROS[..usize::try_from(n).expect("fits a buffer")])?;
            at += n;
        }
        while at < hole {
            let n = usize::try_from((hole - at).min(buf.len() as u64)).expect("fits a buffer");
            file.read_exact_at(&mut buf[..n], at)?;
            sinks.write_all(&buf[..n])?;
            if discard {
                // Only an optimisation: where holes cannot be punched, the pages stay.
                let _ = punch_hole(file, at, n as u64);
            }
            at += n as u64;
        }
    }
    sinks.flush()?;
    Ok(sinks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_byte() {
        let mut data = vec![0u8; (5 << 20) + 512];
        data[3 << 20] = 1;
        *data.last_mut().unwrap() = 2;
        let out = write_source(&mut data.clone(), Vec::new(), &xspack_io::NoProgress).unwrap();
        assert!(out == data);
    }
}
