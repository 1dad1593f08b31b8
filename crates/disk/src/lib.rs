//! Sparse disk image formats for XenServer: dynamic VHD (blktap style) and qcow2 v3, and the
//! partitioned raw disks and FAT filesystems that go into them.
//!
//! - [`vhd`]: a dynamic VHD writer laid out byte for byte as blktap's `vhd-util create` does
//!   (`xapi-project/blktap:vhd/lib/libvhd.c`, `vhd_create`), a reader that enforces the rules
//!   of blktap's `vhd-util check` (`vhd/lib/vhd-util-check.c`), and a raw read-back stream.
//! - [`qcow2`]: a sparse qcow2 v3 writer with optional deflate compression of clusters (the
//!   qcow2 specification, `qemu/qemu:docs/interop/qcow2.txt`), and a checker that refuses every
//!   image `qemu-img info` cannot open or `qemu-img check` finds corrupt or leaking, in bounded
//!   memory.
//! - [`partition`]: GPT and MBR partition tables, and an assembler that places filesystem
//!   images into 1 MiB-aligned partitions and exposes the whole disk as a [`DiskSource`].
//! - [`fat`]: a deterministic FAT12/16/32 writer for EFI system partitions and config drives,
//!   and a reader for finding files on volumes of any origin.
//! - [`pe`]: whether an EFI binary carries an Authenticode signature.
//! - [`uefi_boot`]: which loader a GPT disk's EFI system partition boots, and whether it is
//!   signed (the Secure Boot check of embedded template disks).
//!
//! # Input: a [`DiskSource`], read twice
//!
//! Both formats put their allocation tables *before* the data, and both writers write in one
//! forward pass to any `W: Write` (no `Seek`), so they must know which blocks hold data before
//! they write the first byte. The input is therefore a [`DiskSource`]: a raw disk of known size
//! that can be read at increasing offsets, **twice**. The first pass finds the all-zero blocks
//! (which stay unallocated) and, for compressed qcow2, the compressed size of every cluster; the
//! second pass copies the data. A source may also report ranges it knows are zero without
//! reading them ([`DiskSource::known_zero`]); [`FileSource`] does so with `SEEK_DATA`, so holes
//! of a sparse raw file are never read. Sources:
//!
//! - `&[u8]`: a disk held in memory;
//! - [`FileSource`]: a raw file, read with `pread`, holes skipped;
//! - [`SeekSource`]: any `Read + Seek`;
//! - [`ReopenSource`]: a plain `Read` that can be opened again (a closure returning a fresh
//!   reader), e.g. a decompressor over a file. It is read twice in full.
//!
//! The source must not change between the passes. Hashing the output as it is written is the
//! caller's job: wrap `W` in [`xspack_io::HashingWriter`].
//!
//! ```
//! use xspack_disk::{Uuid, vhd};
//!
//! // An 8 MiB disk with data in its third 2 MiB block only.
//! let mut raw = vec![0u8; 8 << 20];
//! raw[5 << 20..(5 << 20) + 5].copy_from_slice(b"hello");
//! let opts = vhd::VhdOptions::new(Uuid::from_bytes([7; 16]), 1_700_000_000);
//! let (image, summary) = vhd::write_vhd(raw.as_slice(), Vec::new(), &opts, &xspack_io::NoProgress)?;
//! assert_eq!((summary.total_blocks, summary.allocated_blocks), (4, 1));
//!
//! let mut disk = vhd::VhdFile::open(std::io::Cursor::new(image))?;
//! assert_eq!(disk.info().virtual_size, 8 << 20);
//! let mut back = Vec::new();
//! std::io::copy(&mut disk.raw_reader(), &mut back)?;
//! assert!(back == raw);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A GPT disk with an ESP, written as VHD without ever existing as a raw disk:
//!
//! ```
//! use xspack_disk::fat::{FatBuilder, FatOptions};
//! use xspack_disk::partition::{DiskBuilder, Partition, PartitionType};
//! use xspack_disk::{Uuid, vhd};
//!
//! let mut esp = FatBuilder::new(FatOptions::new(0x1234_5678, 1_700_000_000).with_label("ESP"));
//! esp.add_file_bytes("EFI/BOOT/BOOTX64.EFI", b"MZ...".to_vec())?;
//! let esp = esp.build()?;
//! let disk = DiskBuilder::gpt(Uuid::from_bytes([1; 16]))
//!     .partition(
//!         Partition::new(PartitionType::EFI_SYSTEM, 8 << 20)
//!             .guid(Uuid::from_bytes([2; 16]))
//!             .name("EFI system")
//!             .source(esp),
//!     )
//!     .build()?;
//! assert_eq!(disk.layout().partitions[0].offset, 1 << 20);
//! let opts = vhd::VhdOptions::new(Uuid::from_bytes([3; 16]), 1_700_000_000);
//! let (_image, summary) = vhd::write_vhd(disk, Vec::new(), &opts, &xspack_io::NoProgress)?;
//! assert_eq!(summary.virtual_size, 10 << 20);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Writers take any `W: Write + Seek` with a thin path wrapper, and errors are typed.

mod bytes;
mod compose;
pub mod fat;
pub mod partition;
pub mod pe;
pub mod qcow2;
mod source;
pub mod uefi_boot;

pub mod vhd;

pub use source::{DiskSource, FileSource, ReopenSource, SeekSource};
pub use xspack_io::{ParseUuidError, Uuid};

use camino::Utf8PathBuf;

/// Errors from writing and reading disk images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The virtual size is zero.
    #[error("virtual disk size is zero")]
    SizeZero,
    /// The virtual size is not a multiple of what the format needs.
    #[error("virtual disk size {size} bytes is not a multiple of {multiple} bytes")]
    SizeNotMultiple {
        /// The size asked for.
        size: u64,
        /// The unit it must be a multiple of.
        multiple: u64,
    },
    /// The virtual size exceeds the format's maximum.
    #[error("virtual disk size {size} bytes exceeds the maximum of {max} bytes ({what})")]
    SizeTooLarge {
        /// The size asked for.
        size: u64,
        /// The maximum.
        max: u64,
        /// Where the maximum comes from.
        what: &'static str,
    },
    /// The image's unique id would be the nil UUID, which blktap rejects.
    #[error("the disk's unique id must not be the nil UUID")]
    NilUuid,
    /// The timestamp cannot be stored (VHD timestamps end in 2136).
    #[error("timestamp {epoch} (seconds since 1970) does not fit a VHD timestamp")]
    TimestampOutOfRange {
        /// Seconds since the Unix epoch.
        epoch: u64,
    },
    /// Reading the raw source disk failed.
    #[error("reading the source disk at offset {offset}")]
    Source {
        /// Offset in the source.
        offset: u64,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The source gave different data in the second pass than in the first.
    #[error("the source disk changed between the two passes (at offset {offset})")]
    SourceChanged {
        /// Offset of the block or cluster that differs.
        offset: u64,
    },
    /// Writing the output failed.
    #[error("writing the image")]
    Write(#[source] std::io::Error),
    /// Reading an image failed.
    #[error("reading {what} at offset {offset}")]
    Read {
        /// What was being read.
        what: &'static str,
        /// Offset in the image file.
        offset: u64,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The VHD breaks a rule of blktap's `vhd-util check` or of a forward-only reader.
    #[error(transparent)]
    Vhd(#[from] vhd::Violation),
    /// The qcow2 image breaks a rule of `qemu-img info`, `qemu-img check` or the format, or
    /// one of the checker's own bounds.
    #[error(transparent)]
    Qcow2(#[from] qcow2::Violation),
    /// The VHD is valid but of a type this crate does not read.
    #[error("{disk_type} VHDs are not supported (only dynamic ones)")]
    UnsupportedVhdType {
        /// The disk type found.
        disk_type: vhd::DiskType,
    },
    /// An error concerning the file at `path`.
    #[error("{path}")]
    File {
        /// The file.
        path: Utf8PathBuf,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// An operation on a file failed.
    #[error(transparent)]
    Io(#[from] xspack_io::IoError),
    /// Atomic output failed.
    #[error(transparent)]
    Output(#[from] xspack_io::Error),
    /// A partition table cannot be written, or one read back is invalid.
    #[error(transparent)]
    Partition(#[from] partition::TableError),
    /// A FAT image cannot be built.
    #[error(transparent)]
    Fat(#[from] fat::FatError),
}

impl Error {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<Utf8PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io(xspack_io::IoError::new(op, path.into(), source))
    }

    pub(crate) fn in_file(self, path: impl Into<Utf8PathBuf>) -> Self {
        match self {
            e @ (Error::Io(_) | Error::File { .. } | Error::Output(_)) => e,
            e => Error::File { path: path.into(), source: Box::new(e) },
        }
    }

    /// The VHD rule this error reports, looking through [`Error::File`].
    pub fn violation(&self) -> Option<&vhd::Violation> {
        match self {
            Error::Vhd(v) => Some(v),
            Error::File { source, .. } => source.violation(),
            _ => None,
        }
    }

    /// The qcow2 rule this error reports, looking through [`Error::File`].
    pub fn qcow2_violation(&self) -> Option<&qcow2::Violation> {
        match self {
            Error::Qcow2(v) => Some(v),
            Error::File { source, .. } => source.qcow2_violation(),
            _ => None,
        }
    }
}

impl xspack_io::Classify for Error {
    /// Whether the error says the image itself is bad (a broken rule, or cut short), rather
    /// than that reading or writing it failed; looks through [`Error::File`].
    fn fault(&self) -> xspack_io::Fault {
        xspack_io::Fault::input_if(match self {
            Error::Vhd(_)
            | Error::Qcow2(_)
            | Error::Fat(fat::FatError::Corrupt(_) | fat::FatError::TooLarge { .. }) => true,
            Error::Read { source, .. } => source.kind() == std::io::ErrorKind::UnexpectedEof,
            Error::File { source, .. } => source.is_bad_input(),
            _ => false,
        })
    }
}

/// Writes `out` to an [`xspack_io::AtomicFile`] at `path`, through `write`.
/// Reads exactly `buf.len()` bytes at `offset`; a failure names `what` and the offset.
pub(crate) fn read_exact_at<R: std::io::Read + std::io::Seek>(
    inner: &mut R,
    what: &'static str,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), Error> {
    inner
        .seek(std::io::SeekFrom::Start(offset))
        .and_then(|_| inner.read_exact(buf))
        .map_err(|source| Error::Read { what, offset, source })
}

pub(crate) fn write_atomic<T>(
    path: &camino::Utf8Path,
    write: impl FnOnce(&mut std::io::BufWriter<xspack_io::AtomicFile>) -> Result<T, Error>,
) -> Result<T, Error> {
    use std::io::Write as _;
    let file = xspack_io::AtomicFile::create(path)?;
    let mut out = std::io::BufWriter::with_capacity(xspack_io::BUFFER_SIZE, file);
    let result = write(&mut out).map_err(|e| e.in_file(path))?;
    out.flush().map_err(|e| Error::io("writing", path, e))?;
    let file = out.into_inner().map_err(|e| Error::io("writing", path, e.into_error()))?;
    file.commit()?;
    Ok(result)
}
