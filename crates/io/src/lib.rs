//! Stream plumbing shared by every xspack format crate.
//!
//! - [`Sha256Digest`]: the one digest type used in manifests and reports.
//! - [`HashingWriter`], [`HashingReader`], [`CountingWriter`], [`CountingReader`]: adapters
//!   that hash or count bytes in the same pass that moves them, so outputs are never re-read.
//! - [`SparseFile`]: a file sink that turns blocks of zeros into holes.
//! - [`Uuid`]: the ids of disks, partitions and VM objects, derived from input digests.
//! - [`Progress`]: how libraries report long steps without depending on a UI crate.
//! - [`AtomicFile`] and [`AtomicDir`]: outputs that appear under their final name complete or
//!   not at all, even when the process fails or is interrupted by SIGINT or SIGTERM.
//! - [`InputRoots`]: input paths from definition files, kept inside the directories allowed.
//!
//! ```
//! use std::io::Write;
//! use xspack_io::HashingWriter;
//!
//! let mut out = HashingWriter::new(Vec::new());
//! out.write_all(b"abc")?;
//! let (bytes, digest, len) = out.finish();
//! assert_eq!((bytes.len(), len), (3, 3));
//! assert_eq!(digest.to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
//! # Ok::<(), std::io::Error>(())
//! ```

mod atomic;
pub mod civil;
pub mod confine;
mod counting;
mod digest;
mod fault;
mod hashing;
mod identity;
pub mod location;
mod memory;
pub mod pipe;
mod progress;
pub mod quote;
mod sparse;
mod uuid;

pub use atomic::{AtomicDir, AtomicFile, install_signal_cleanup, live_temp_paths};
pub use confine::{InputError, InputRoots};
pub use counting::{CountingReader, CountingWriter};
pub use digest::{ParseDigestError, SHA256_LEN, Sha256Digest};
pub use fault::{Classify, Fault, IoError};
pub use hashing::{
    BACKGROUND_DEPTH, BackgroundHashingWriter, HashingReader, HashingWriter, hash_reader,
};
pub use identity::Derivation;
pub use memory::release_free_memory;
pub use progress::{NoProgress, Progress, ProgressReader, ProgressTask, ProgressUnit};
pub use quote::MAX_QUOTED;
pub use sparse::{SparseFile, data_start, next_data};
pub use uuid::{ParseUuidError, Uuid};

use camino::Utf8PathBuf;

/// Size of the buffers used when copying streams.
///
/// 256 KiB keeps the syscall count low for multi-gigabyte disks while staying far below any
/// memory budget; 8 KiB (std's default) costs measurable time in hashing loops.
pub const BUFFER_SIZE: usize = 256 * 1024;

/// `Read::read` for a type whose reading is its `BufRead`: copies what `fill_buf` offers (up to
/// `out.len()`) and consumes it.
pub fn read_via_fill_buf(
    src: &mut impl std::io::BufRead,
    out: &mut [u8],
) -> std::io::Result<usize> {
    let available = src.fill_buf()?;
    let n = out.len().min(available.len());
    out[..n].copy_from_slice(&available[..n]);
    src.consume(n);
    Ok(n)
}

/// Reads from `src` until `buf` is full or `src` ends (retrying interrupted reads); returns the
/// bytes read, fewer than `buf.len()` only at the end of `src`.
pub fn read_full(
    src: &mut (impl std::io::Read + ?Sized),
    buf: &mut [u8],
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Errors from atomic output handling. I/O errors carry the path they concern.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The final output path already exists and clobbering was not requested.
    #[error("{path}: already exists")]
    Exists {
        /// The path that exists.
        path: Utf8PathBuf,
    },
    /// The output path has no file name or no usable parent directory.
    #[error("{path}: not a valid output path")]
    InvalidPath {
        /// The offending path.
        path: Utf8PathBuf,
    },
    /// An I/O operation on a file failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl AsRef<str>, source: std::io::Error) -> Self {
        Error::Io(IoError::new(op, path, source))
    }
}

impl Classify for Error {
    /// The host's: the command checks its output paths before it gets here.
    fn fault(&self) -> Fault {
        Fault::Host
    }
}
