//! The guest disk as outputs: the raw disk is written once (as an output, or as a scratch file
//! when raw was not asked for), then VHD, qcow2 and XVA are derived from it, read as a sparse
//! file, exactly as `xspack_image::build_into` does for a bare filesystem.

use std::fs::File;
use std::io::Write;

use camino::Utf8Path;
use xspack_disk::DiskSource;
use xspack_image::DiskFormat;
use xspack_io::{Progress, ProgressUnit, SparseFile};
use xspack_manifest::{Output, OutputDir, RelPath};

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
    let rel = |f: DiskFormat| RelPath::new(format!("{}.{}", req.name, f.extension()));
    let mut outputs = Vec::new();
    let size = disk.size();
    let raw_path = if formats.contains(&DiskFormat::Raw) {
        let raw = rel(DiskFormat::Raw)?;
        let file = out.create_file(&raw)?;
        let path = out.path_of(&raw);
        let file = write_source(&mut disk, file, progress).map_err(|e| file_err(&path, e))?;
        outputs.push(out.finish_file(file)?);
        path
    } else {
        let path = out.scratch_path(&format!("{}.disk.raw", req.name))?;
        let file = File::create_new(&path).map_err(|e| file_err(&path, e))?;
        let sparse = write_source(&mut disk, SparseFile::new(file), progress)
            .map_err(|e| file_err(&path, e))?;
        sparse.finish().map_err(|e| file_err(&path, e))?;
        path
    };
    drop(disk);
    for format in formats.into_iter().filter(|f| *f != DiskFormat::Raw) {
        let target = rel(format)?;
        let mut file = out.create_file(&target)?;
        let source = xspack_disk::FileSource::open(&raw_path)?;
        match format {
            DiskFormat::Raw => unreachable!("filtered"),
            DiskFormat::Vhd => {
                let opts = xspack_disk::vhd::VhdOptions::new(req.vhd_uuid, req.epoch);
                file = xspack_disk::vhd::write_vhd(source, file, &opts, progress)?.0;
            }
            DiskFormat::Qcow2 => {
                let opts = xspack_disk::qcow2::Qcow2Options::new(false);
                file = xspack_disk::qcow2::write_qcow2(source, file, &opts, progress)?.0;
            }
            DiskFormat::Xva => {
                let mut vm = req.vm.clone();
                for disk in &mut vm.disks {
                    disk.virtual_size = size;
                }
                let raw = File::open(&raw_path).map_err(|e| Error::io("reading", &raw_path, e))?;
                let opts =
                    xspack_xva::XvaOptions::default().with_mtime(req.epoch).with_progress(progress);
                let mut readers = [std::io::BufReader::new(raw)];
                file = xspack_xva::write_xva(file, &vm, &mut readers, &opts)?;
            }
        }
        file.flush().map_err(|e| file_err(&raw_path, e))?;
        outputs.push(out.finish_file(file)?);
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
