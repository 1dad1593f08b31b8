//! ISO 9660 images with Rock Ridge and Joliet, written reproducibly and read defensively.
//!
//! The writer follows ECMA-119 (ISO 9660), the System Use Sharing Protocol (SUSP, IEEE P1281)
//! and the Rock Ridge Interchange Protocol 1.10 (RRIP, IEEE P1282 draft, `RRIP_1991A`) for POSIX
//! names, modes, owners, timestamps and symlinks, and Joliet (UCS-2 level 3) for a second,
//! Windows-readable hierarchy:
//!
//! - [`IsoBuilder`] collects directories, regular files (size only) and symlinks with their
//!   [`Metadata`]; [`IsoBuilder::add_host_tree`] adds a directory from disk.
//! - [`write_iso`] computes the whole layout first (volume descriptors, path tables, directory
//!   extents of both hierarchies, SUSP continuation areas, file extents), then writes forward only
//!   to any [`std::io::Write`], streaming each file from the reader its source opens and checking
//!   that it delivers exactly the declared size. [`write_iso_file`] does so atomically.
//! - Output is a function of the builder alone: every date comes from the entries' mtimes, which
//!   default to [`IsoOptions::source_date_epoch`], directories are sorted by the ECMA-119 rule
//!   (9.3), primary names are mangled deterministically, and layout order never depends on the
//!   order entries were added.
//!
//! [`IsoReader`] parses an image as hostile input (bounds checks, typed errors, loop detection,
//! limits on sizes and depth) to list and read back what was written.
//!
//! ```
//! use std::io::{Cursor, Read};
//! use xspack_iso::{IsoBuilder, IsoOptions, IsoReader, Metadata, write_iso};
//!
//! let mut builder = IsoBuilder::new(IsoOptions::new("DEMO_PACK", 1_700_000_000))?;
//! let script = builder.add_file("install.sh", 10, Metadata::new(0o755))?;
//! builder.add_symlink("latest", "install.sh", Metadata::new(0o777))?;
//! let (image, summary) = write_iso(&builder, Vec::new(), |id| {
//!     assert_eq!(id, script);
//!     Ok(Cursor::new(b"#!/bin/sh\n"))
//! })?;
//! assert_eq!(summary.bytes, image.len() as u64);
//!
//! let mut reader = IsoReader::new(Cursor::new(image))?;
//! assert_eq!(reader.volume().volume_id, "DEMO_PACK");
//! let entry = reader.lookup("install.sh")?;
//! assert_eq!(entry.mode, Some(0o100_755));
//! let mut text = String::new();
//! reader.open_file(&entry)?.read_to_string(&mut text)?;
//! assert_eq!(text, "#!/bin/sh\n");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bytes;
pub mod config_drive;
mod host;
mod layout;
mod names;
mod options;
mod read;
mod susp;
mod time;
mod tree;
mod write;

pub use host::HostFiles;
pub use options::{IsoLevel, IsoOptions, Joliet, sanitize_volume_id};
pub use read::{Entry, EntryKind, FileReader, IsoReader, ReadLimits, VolumeInfo};
pub use tree::{FileId, IsoBuilder, Metadata};
pub use write::{IsoSummary, write_iso, write_iso_file};

use camino::Utf8PathBuf;

/// Size of an ISO 9660 logical block (and sector), the only one this crate writes or reads.
pub const SECTOR_SIZE: u64 = 2048;

/// Largest single file: ISO 9660 records a file's size in 32 bits and this writer does not split
/// files into several extents.
pub const MAX_FILE_SIZE: u64 = u32::MAX as u64;

/// Errors from building, writing and reading ISO images.
///
/// Paths inside the image are `/`-separated and relative to its root; host paths are UTF-8.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A volume descriptor identifier is too long or uses characters its field does not allow.
    #[error("{field} {value:?}: {reason}")]
    InvalidIdentifier {
        /// Which field, e.g. `volume id`.
        field: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `source_date_epoch` cannot be recorded in ISO 9660 dates (years 1900 to 2155).
    #[error("source_date_epoch {0} is outside the years 1900 to 2155 that ISO 9660 can record")]
    InvalidEpoch(i64),
    /// A path given to the builder is not a valid relative path.
    #[error("{path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The path was already added.
    #[error("{path}: added twice")]
    Duplicate {
        /// The path.
        path: String,
    },
    /// A parent of the path exists but is not a directory.
    #[error("{path}: parent {parent} is not a directory")]
    NotADirectory {
        /// The path being added.
        path: String,
        /// The parent that is a file or symlink.
        parent: String,
    },
    /// A mode has bits beyond the permission bits `0o7777`.
    #[error("{path}: mode {mode:#o} has bits beyond 0o7777 (give permission bits only)")]
    InvalidMode {
        /// The path.
        path: String,
        /// The mode given.
        mode: u32,
    },
    /// A timestamp cannot be recorded in ISO 9660 dates (years 1900 to 2155).
    #[error("{path}: time {time} is outside the years 1900 to 2155 that ISO 9660 can record")]
    TimeOutOfRange {
        /// The path.
        path: String,
        /// Seconds since the Unix epoch.
        time: i64,
    },
    /// A file is too large for one extent (4 GiB or more).
    #[error(
        "{path}: {size} bytes is too large; ISO 9660 files without multi-extent support must be under 4 GiB"
    )]
    FileTooLarge {
        /// The path.
        path: String,
        /// The declared size.
        size: u64,
    },
    /// A directory is nested deeper than ECMA-119 allows (see [`IsoOptions::allow_deep_paths`]).
    #[error("{path}: directory depth {depth} exceeds the ISO 9660 limit of {max} levels")]
    TooDeep {
        /// The directory.
        path: String,
        /// Its level, the root being level 1.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// The ISO 9660 path of an entry exceeds 255 characters (see [`IsoOptions::allow_deep_paths`]).
    #[error("{path}: ISO 9660 path of {len} characters exceeds the limit of {max}")]
    PathTooLong {
        /// The path.
        path: String,
        /// Length of its ISO 9660 (mangled) path.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A name cannot be recorded in the Joliet hierarchy (see [`Joliet`]).
    #[error("{path}: Joliet cannot record this name: {reason}")]
    JolietName {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A symlink target cannot be recorded.
    #[error("{path}: symlink target {target:?}: {reason}")]
    SymlinkTarget {
        /// The symlink.
        path: String,
        /// The target given.
        target: String,
        /// Why it cannot be recorded.
        reason: &'static str,
    },
    /// More directories than a path table can number (65535).
    #[error("{count} directories exceed the 65535 a path table can number")]
    TooManyDirectories {
        /// How many directories the tree has.
        count: usize,
    },
    /// The image would exceed 2^32 sectors.
    #[error("image of {sectors} sectors exceeds the 2^32 ISO 9660 can address")]
    ImageTooLarge {
        /// Sectors needed.
        sectors: u64,
    },
    /// A file's data source could not be opened or read.
    #[error("{path}: reading the file's data source")]
    Source {
        /// The file, as a path in the image.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file's data source ended before its declared size.
    #[error(
        "{path}: data source delivered {actual} bytes but the file was declared with {expected}"
    )]
    SourceTooShort {
        /// The file, as a path in the image.
        path: String,
        /// Declared size.
        expected: u64,
        /// Bytes delivered.
        actual: u64,
    },
    /// A file's data source delivered more than its declared size.
    #[error(
        "{path}: data source delivered more than the {expected} bytes the file was declared with"
    )]
    SourceTooLong {
        /// The file, as a path in the image.
        path: String,
        /// Declared size.
        expected: u64,
    },
    /// A host file has a type ISO images cannot hold (device, FIFO, socket), or a name or
    /// symlink target that is not UTF-8.
    #[error("{path}: {reason}")]
    Unsupported {
        /// The host path (lossy UTF-8).
        path: Utf8PathBuf,
        /// What is unsupported.
        reason: &'static str,
    },
    /// An operation on a file failed.
    #[error(transparent)]
    Io(#[from] xspack_io::IoError),
    /// Writing the image to its output failed.
    #[error("writing the ISO image")]
    Write(#[source] std::io::Error),
    /// Atomic output failed.
    #[error(transparent)]
    Output(#[from] xspack_io::Error),

    // ----- Reader errors: the image is malformed or hostile. -----
    /// The image ends before a structure it needs.
    #[error("image truncated: {what} at byte {offset} lies beyond its end ({image_len} bytes)")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Byte offset of the structure.
        offset: u64,
        /// Size of the image.
        image_len: u64,
    },
    /// A volume descriptor is malformed, or none is usable.
    #[error("volume descriptor in sector {sector}: {reason}")]
    BadDescriptor {
        /// The sector.
        sector: u64,
        /// What is wrong.
        reason: String,
    },
    /// A directory record is malformed.
    #[error("{path}: bad directory record at byte {offset}: {reason}")]
    BadRecord {
        /// The directory being read (or the entry, when known).
        path: String,
        /// Byte offset of the record in the image.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An extent lies (partly) beyond the end of the volume (the image, or the volume space its
    /// primary descriptor declares if that ends first).
    #[error(
        "{path}: extent at sector {extent} of {size} bytes lies beyond the end of the volume ({image_len} bytes)"
    )]
    ExtentOutOfBounds {
        /// The entry.
        path: String,
        /// First sector.
        extent: u32,
        /// Length in bytes.
        size: u64,
        /// Size of the volume in bytes.
        image_len: u64,
    },
    /// A directory appears twice in the hierarchy, so walking it would never end.
    #[error("{path}: directory loop (extent at sector {extent} was already visited)")]
    DirectoryLoop {
        /// The directory met again.
        path: String,
        /// Its extent.
        extent: u32,
    },
    /// A System Use (SUSP / Rock Ridge) entry is malformed.
    #[error("{path}: bad Rock Ridge / SUSP data: {reason}")]
    BadSusp {
        /// The entry.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A recorded name is unusable (empty, `.`/`..`, contains `/` or NUL, not UTF-8 or UCS-2).
    #[error("{path}: bad name: {reason}")]
    BadName {
        /// The entry (with the name as far as it could be decoded).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Two entries of one directory have the same name.
    #[error("{path}: name recorded twice in its directory")]
    DuplicateName {
        /// The path.
        path: String,
    },
    /// The image uses a feature this reader does not support.
    #[error("{path}: unsupported: {feature}")]
    UnsupportedFeature {
        /// The entry.
        path: String,
        /// The feature.
        feature: &'static str,
    },
    /// A reader limit was exceeded (see [`ReadLimits`]).
    #[error("{path}: {what} exceeds the limit of {limit}")]
    LimitExceeded {
        /// Where.
        path: String,
        /// What was counted.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// No entry has this path.
    #[error("{path}: not found in the image")]
    NotFound {
        /// The path looked up.
        path: String,
    },
    /// The entry is not a regular file.
    #[error("{path}: not a regular file")]
    NotAFile {
        /// The path.
        path: String,
    },
    /// Reading the image failed.
    #[error("reading the ISO image ({op} at byte {offset})")]
    Read {
        /// What was being read.
        op: &'static str,
        /// Byte offset.
        offset: u64,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<Utf8PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io(xspack_io::IoError::new(op, path.into(), source))
    }
}

impl xspack_io::Classify for Error {
    /// Whether the error means the image being read is malformed or hostile (exit code 3), as
    /// opposed to a failure to do the work or a problem with what was asked of the writer.
    fn fault(&self) -> xspack_io::Fault {
        xspack_io::Fault::input_if(matches!(
            self,
            Error::Truncated { .. }
                | Error::BadDescriptor { .. }
                | Error::BadRecord { .. }
                | Error::ExtentOutOfBounds { .. }
                | Error::DirectoryLoop { .. }
                | Error::BadSusp { .. }
                | Error::BadName { .. }
                | Error::DuplicateName { .. }
                | Error::UnsupportedFeature { .. }
                | Error::LimitExceeded { .. }
        ))
    }
}
