//! Building an output directory atomically, with its `SHA256SUMS` and `manifest.json`.
//!
//! A build creates an [`OutputDir`], writes each artifact through an [`OutputFile`] (which
//! hashes the bytes as they go to disk and leaves holes for blocks of zeros), records its
//! inputs, and commits. The directory
//! appears under its final name only then, complete with both checksum lists; on error or
//! interruption nothing appears (see `xspack_io::AtomicDir`).

use std::fs::{self, File};
use std::io::{self, Write};

use camino::{Utf8Path, Utf8PathBuf};
use xspack_io::{AtomicDir, BackgroundHashingWriter, SparseFile};

use crate::{
    Error, Guarded, Input, MANIFEST_NAME, Manifest, Output, RelPath, SHA256SUMS_NAME, Tool,
    check_replaceable,
};

/// Subdirectory of the temporary output directory holding intermediate files.
const SCRATCH_DIR: &str = ".xspack-scratch";

/// An output directory under construction.
pub struct OutputDir {
    dir: AtomicDir,
    manifest: Manifest,
    /// With `replace`: the paths an existing directory at the destination must not hold,
    /// checked again just before it is replaced.
    guarded: Option<Vec<Guarded>>,
}

/// One artifact being written into an [`OutputDir`].
pub struct OutputFile {
    path: RelPath,
    full_path: Utf8PathBuf,
    writer: BackgroundHashingWriter<SparseFile>,
}

impl OutputDir {
    /// Starts building `dest`, making its missing parent directories (removed again if the
    /// build fails). With `replace`, an existing directory there is swapped out atomically on
    /// commit, if [`check_replaceable`] allows it (with [`Guarded::defaults`]); without it, an
    /// existing `dest` is an error.
    pub fn create(
        dest: &Utf8Path,
        tool: Tool,
        source_date_epoch: u64,
        replace: bool,
    ) -> Result<Self, Error> {
        Self::create_guarded(dest, tool, source_date_epoch, replace, Vec::new())
    }

    /// Like [`OutputDir::create`], with more paths that a replaced directory must not hold:
    /// the build's inputs.
    pub fn create_guarded(
        dest: &Utf8Path,
        tool: Tool,
        source_date_epoch: u64,
        replace: bool,
        guarded: Vec<Guarded>,
    ) -> Result<Self, Error> {
        let guarded = if replace {
            let mut all = Guarded::defaults();
            all.extend(guarded);
            check_replaceable(dest, &tool.name, &all)?;
            Some(all)
        } else {
            None
        };
        let dir = AtomicDir::create_with_parents(dest, replace)?;
        Ok(OutputDir { dir, manifest: Manifest::new(tool, source_date_epoch), guarded })
    }

    /// The final path of the directory.
    pub fn dest(&self) -> &Utf8Path {
        self.dir.dest()
    }

    /// Where artifact `rel` is being written, readable until commit (to derive other outputs).
    pub fn path_of(&self, rel: &RelPath) -> Utf8PathBuf {
        self.dir.path().join(rel.as_str())
    }

    /// A path for an intermediate file that is not an output: it lives in the temporary
    /// directory and is deleted before the directory is published (or with it, on failure).
    pub fn scratch_path(&self, name: &str) -> Result<Utf8PathBuf, Error> {
        Ok(self.scratch_dir()?.join(name))
    }

    /// The scratch directory itself (made if missing), for unnamed scratch files.
    pub fn scratch_dir(&self) -> Result<Utf8PathBuf, Error> {
        let dir = self.dir.path().join(SCRATCH_DIR);
        create_dirs_below(self.dir.path(), &dir)
            .map_err(|e| Error::io("creating scratch directory", &dir, e))?;
        Ok(dir)
    }

    /// Records an input of the build.
    pub fn add_input(&mut self, input: Input) {
        self.manifest.inputs.push(input);
    }

    /// Creates the artifact `path`, with any parent directories.
    pub fn create_file(&self, path: &RelPath) -> Result<OutputFile, Error> {
        let full_path = self.writable_path(path)?;
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&full_path)
            .map_err(|e| Error::io("creating", self.dest().join(path.as_str()), e))?;
        Ok(OutputFile {
            path: path.clone(),
            full_path,
            writer: BackgroundHashingWriter::new(SparseFile::new(file)),
        })
    }

    /// Where artifact `path` goes in the temporary directory, with its parent directories made.
    fn writable_path(&self, path: &RelPath) -> Result<Utf8PathBuf, Error> {
        if path.is_manifest_file() {
            return Err(Error::Manifest {
                file: self.dest().join(path.as_str()),
                reason: "reserved for the checksum lists".into(),
            });
        }
        let full_path = self.dir.path().join(path.as_str());
        if let Some(parent) = full_path.parent() {
            create_dirs_below(self.dir.path(), parent)
                .map_err(|e| Error::io("creating directory", parent, e))?;
        }
        Ok(full_path)
    }

    /// Flushes `file` and records it as an output.
    pub fn finish_file(&mut self, file: OutputFile) -> Result<Output, Error> {
        if self.manifest.outputs.iter().any(|o| o.path == file.path) {
            return Err(Error::Duplicate { path: file.path });
        }
        let (sparse, sha256, size) =
            file.writer.finish().map_err(|e| Error::io("writing", &file.full_path, e))?;
        sparse.finish().map_err(|e| Error::io("writing", &file.full_path, e))?;
        let output = Output { path: file.path, size, sha256 };
        self.manifest.outputs.push(output.clone());
        Ok(output)
    }

    /// Creates the artifact `path` to be written in any order (a disk image whose parts are
    /// placed as they come), readable and seekable. Record it with
    /// [`OutputDir::finish_placed_file`] once its digest is known.
    pub fn create_placed_file(&self, path: &RelPath) -> Result<File, Error> {
        let full_path = self.writable_path(path)?;
        File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&full_path)
            .map_err(|e| Error::io("creating", self.dest().join(path.as_str()), e))
    }

    /// Records the artifact `path`, made by [`OutputDir::create_placed_file`] and fully
    /// written, as an output of `size` bytes with digest `sha256`, which the caller computed by
    /// reading it in order (it is synced to disk with the whole directory on commit). The size
    /// on disk must agree.
    pub fn finish_placed_file(
        &mut self,
        path: &RelPath,
        sha256: xspack_io::Sha256Digest,
        size: u64,
    ) -> Result<Output, Error> {
        if self.manifest.outputs.iter().any(|o| &o.path == path) {
            return Err(Error::Duplicate { path: path.clone() });
        }
        let full_path = self.dir.path().join(path.as_str());
        let on_disk =
            fs::metadata(&full_path).map_err(|e| Error::io("checking", &full_path, e))?.len();
        if on_disk != size {
            let e = io::Error::other(format!("{on_disk} bytes on disk, {size} hashed"));
            return Err(Error::io("checking", &full_path, e));
        }
        let output = Output { path: path.clone(), size, sha256 };
        self.manifest.outputs.push(output.clone());
        Ok(output)
    }

    /// Writes `data` as the artifact `path` in one call.
    pub fn write_file(&mut self, path: &RelPath, data: &[u8]) -> Result<Output, Error> {
        let mut file = self.create_file(path)?;
        file.write_all(data).map_err(|e| Error::io("writing", &file.full_path, e))?;
        self.finish_file(file)
    }

    /// Records how the guest built here boots (`manifest.json`'s `boot`).
    pub fn set_boot(&mut self, boot: crate::Boot) {
        self.manifest.boot = Some(boot);
    }

    /// Writes `SHA256SUMS` and `manifest.json`, then publishes the directory.
    pub fn commit(self) -> Result<(Utf8PathBuf, Manifest), Error> {
        let OutputDir { dir, mut manifest, guarded } = self;
        if let Some(guarded) = &guarded {
            check_replaceable(dir.dest(), &manifest.tool.name, guarded)?;
        }
        let scratch = dir.path().join(SCRATCH_DIR);
        if scratch.exists() {
            fs::remove_dir_all(&scratch)
                .map_err(|e| Error::io("removing scratch files", &scratch, e))?;
        }
        manifest.outputs.sort_by(|a, b| a.path.cmp(&b.path));
        let json = manifest.to_json()?;
        let sums = manifest.sha256sums()?.to_text();
        for (name, text) in [(SHA256SUMS_NAME, sums), (MANIFEST_NAME, json)] {
            let path = dir.path().join(name);
            fs::write(&path, text).map_err(|e| Error::io("writing", dir.dest().join(name), e))?;
        }
        let dest = dir.commit()?;
        Ok((dest, manifest))
    }
}

impl OutputFile {
    /// The artifact's path inside the directory.
    pub fn path(&self) -> &RelPath {
        &self.path
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.writer.len()
    }

    /// Whether nothing has been written yet.
    pub fn is_empty(&self) -> bool {
        self.writer.is_empty()
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// Makes `dir` and its missing parents below the temporary directory `root`, but never `root`
/// itself: once a signal's cleanup has removed it, no thread of the build may bring it back.
fn create_dirs_below(root: &Utf8Path, dir: &Utf8Path) -> io::Result<()> {
    let rel = dir
        .strip_prefix(root)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "outside the output directory"))?;
    let mut at = root.to_owned();
    for part in rel.components() {
        at.push(part);
        match fs::create_dir(&at) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
