//! The guest disk as outputs: the raw disk is written once (as an output, or as a scratch file
//! when raw was not asked for), then VHD, qcow2 and XVA are derived from it, read as a sparse
//! file, exactly as `xspack_image::build_into` does for a bare filesystem.

use std::fs::File;
use std::io::Write;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_disk::DiskSource;
use xspack_image::DiskFormat;
use xspack_io::{Progress, ProgressUnit, SparseFile};
use xspack_manifest::{Output, OutputDir, OutputFile, RelPath};

use crate::Error;

/// Bytes copied per read: the VHD block size, so holes are found at that grain.
const CHUNK: usize = 2 << 20;

/// Writes the whole of `disk` forward to `out`; ranges the source knows are zero are not read.
pub fn write_source<W: Write>(
    disk: &mut dyn DiskSource,
    mut out: W,
    progress: &dyn Progress,
) -> std::io::Result<W> {
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

/// Identities and VM settings of the derived formats.
pub struct Derived<'a> {
    /// Base name of the outputs.
    pub name: &'a str,
    /// The formats, raw included or not.
    pub formats: &'a [DiskFormat],
    /// VHD unique id.
    pub vhd_uuid: xspack_disk::Uuid,
    /// The VM of the XVA.
    pub vm: xspack_xva::VmSpec,
    /// Timestamp of every output.
    pub epoch: u64,
}

fn file_err(path: &Utf8Path, e: std::io::Error) -> Error {
    Error::io("writing", path, e)
}

/// Where a raw disk is being written: an output, or a scratch file the other formats are
/// derived from.
pub enum RawFile {
    /// The output `NAME.raw`.
    Output(OutputFile),
    /// A sparse scratch file.
    Scratch(SparseFile, Utf8PathBuf),
}

impl Write for RawFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            RawFile::Output(f) => f.write(buf),
            RawFile::Scratch(f, _) => f.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            RawFile::Output(f) => f.write_all(buf),
            RawFile::Scratch(f, _) => f.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
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

/// Writes the VHD or qcow2 `file_name` from the raw disk at `raw_path`.
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
            unreachable!("raw is written directly, XVA by write_xva")
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
        let raw = File::open(path).map_err(|e| Error::io("reading", *path, e))?;
        readers.push(std::io::BufReader::new(raw));
    }
    let opts = xspack_xva::XvaOptions::default().with_mtime(epoch).with_progress(progress);
    file = xspack_xva::write_xva(file, vm, &mut readers, &opts)?;
    file.flush().map_err(|e| file_err(Utf8Path::new(file_name), e))?;
    Ok(out.finish_file(file)?)
}

/// Writes `disk` as raw (an output or a scratch file) and every other format of `req`.
pub fn write_all(
    mut disk: impl DiskSource,
    out: &mut OutputDir,
    req: &Derived<'_>,
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
            derive_image(
                out,
                &raw_path,
                format,
                &file_name(format),
                req.vhd_uuid,
                req.epoch,
                progress,
            )?
        };
        outputs.push(output);
    }
    Ok(outputs)
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
