//! The public results of reading an image: volume identification, entries, limits, and the
//! reader of one file's bytes.

use std::io::{self, Read};

/// Bounds on what the reader accepts; the defaults suit any real supplemental pack or
/// installer image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadLimits {
    /// Most entries in one hierarchy (100,000 by default). A directory holding more is refused
    /// as its records are parsed, before they are all in memory.
    pub max_entries: usize,
    /// Most path components of an entry.
    pub max_depth: usize,
    /// Longest path of an entry, in bytes.
    pub max_path_len: usize,
    /// Largest directory extent, in bytes.
    pub max_dir_size: u64,
    /// Most SUSP Continuation Areas chained from one record.
    pub max_continuations: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_entries: 100_000,
            max_depth: 256,
            max_path_len: 4096,
            max_dir_size: 64 * 1024 * 1024,
            max_continuations: 32,
        }
    }
}

/// Identification of the volume, from the Primary Volume Descriptor unless noted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VolumeInfo {
    /// System identifier, trailing spaces removed.
    pub system_id: String,
    /// Volume identifier (the label).
    pub volume_id: String,
    /// Volume set identifier.
    pub volume_set_id: String,
    /// Publisher identifier.
    pub publisher_id: String,
    /// Data preparer identifier.
    pub data_preparer_id: String,
    /// Application identifier.
    pub application_id: String,
    /// Volume space size in 2048-byte sectors.
    pub volume_space_size: u32,
    /// Volume creation date, Unix seconds.
    pub created: Option<i64>,
    /// Volume modification date, Unix seconds.
    pub modified: Option<i64>,
    /// Joliet UCS-2 level (1 to 3) when a Joliet descriptor is present.
    pub joliet_level: Option<u8>,
    /// Volume identifier of the Joliet descriptor.
    pub joliet_volume_id: Option<String>,
    /// `Some` when Rock Ridge is in use: the `ER` extension identifier (`RRIP_1991A`,
    /// `IEEE_P1282`, ...), or an empty string when only `SP` is present.
    pub rock_ridge: Option<String>,
}

/// Type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symlink (Rock Ridge only).
    Symlink,
    /// A device, FIFO or socket (Rock Ridge only).
    Special,
}

/// One entry of a hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `/`-separated path relative to the root.
    pub path: String,
    /// Type.
    pub kind: EntryKind,
    /// `st_mode`, type bits included (Rock Ridge `PX`).
    pub mode: Option<u32>,
    /// Link count (Rock Ridge `PX`).
    pub nlink: Option<u32>,
    /// Owner (Rock Ridge `PX`).
    pub uid: Option<u32>,
    /// Group (Rock Ridge `PX`).
    pub gid: Option<u32>,
    /// Data length in bytes (a directory's extent size; 0 for symlinks).
    pub size: u64,
    /// Modification time: Rock Ridge `TF`, else the record's date; `None` when unset or invalid.
    pub mtime: Option<i64>,
    /// Symlink target (Rock Ridge `SL`).
    pub symlink_target: Option<String>,
    /// First sector of the data.
    pub extent: u32,
}

impl VolumeInfo {
    /// A volume with every field empty, filled in as descriptors are read.
    pub(crate) fn empty() -> Self {
        VolumeInfo {
            system_id: String::new(),
            volume_id: String::new(),
            volume_set_id: String::new(),
            publisher_id: String::new(),
            data_preparer_id: String::new(),
            application_id: String::new(),
            volume_space_size: 0,
            created: None,
            modified: None,
            joliet_level: None,
            joliet_volume_id: None,
            rock_ridge: None,
        }
    }
}

/// Reads one file's bytes; see [`IsoReader::open_file`](crate::IsoReader::open_file). It yields exactly the file's size,
/// and an early end of the image is an `UnexpectedEof` error.
#[derive(Debug)]
pub struct FileReader<'a, R> {
    pub(super) inner: &'a mut R,
    pub(super) remaining: u64,
}

impl<R: Read> Read for FileReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining).map_or(buf.len(), |r| r.min(buf.len()));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "image ended inside a file"));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}
