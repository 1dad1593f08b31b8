//! Checksummed manifests for xspack output directories.
//!
//! Every build writes two files beside its artifacts:
//!
//! - `SHA256SUMS`, in the exact format GNU coreutils `sha256sum` writes and `sha256sum -c`
//!   checks ([`sha256sums`]);
//! - `manifest.json`, a versioned record of the tool, `SOURCE_DATE_EPOCH`, the inputs with their
//!   digests and the outputs with their sizes and digests ([`manifest`]).
//!
//! [`verify_dir`] re-checks a directory against them, and [`OutputDir`] is how builds produce
//! such a directory atomically, hashing each artifact as it is written.
//!
//! ```
//! use camino::Utf8PathBuf;
//! use xspack_manifest::{OutputDir, RelPath, Tool, verify_dir};
//!
//! # let tmp = tempfile::tempdir().unwrap();
//! # let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
//! let dest = root.join("dist");
//! let tool = Tool { name: "xspack".into(), version: "0.1.0".into() };
//! let mut out = OutputDir::create(&dest, tool, 1_700_000_000, false)?;
//! out.write_file(&RelPath::new("hello.txt")?, b"hello\n")?;
//! out.commit()?;
//!
//! let sums = std::fs::read_to_string(dest.join("SHA256SUMS"))?;
//! assert_eq!(sums, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  hello.txt\n");
//! assert!(verify_dir(&dest, &xspack_io::NoProgress)?.is_ok());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod manifest;
mod output_dir;
mod relpath;
pub mod replace;
pub mod sha256sums;
mod verify;

pub use manifest::{
    Boot, BootChain, Firmware, Input, InputDigest, Manifest, Output, SCHEMA_VERSION, Tool,
};
pub use output_dir::{OutputDir, OutputFile};
pub use relpath::{RelPath, RelPathError};
pub use replace::{Guarded, check_replaceable};
pub use sha256sums::Sha256Sums;
pub use verify::{Mismatch, Problem, VerifyReport, verify_dir, verify_file};

use camino::Utf8PathBuf;

/// File name of the checksum list.
pub const SHA256SUMS_NAME: &str = "SHA256SUMS";
/// File name of the JSON manifest.
pub const MANIFEST_NAME: &str = "manifest.json";

/// The largest `SHA256SUMS` or `manifest.json` read. A build lists a few files; 16 MiB holds
/// about 150,000 lines of `SHA256SUMS`, so a larger list is refused before it is read, and a
/// hostile one cannot make `verify` or `inspect` allocate without bound.
pub const MAX_LIST_BYTES: u64 = 16 << 20;

/// Reads the checksum list `path`, refusing one larger than [`MAX_LIST_BYTES`].
pub(crate) fn read_list_file(path: &camino::Utf8Path) -> Result<Vec<u8>, Error> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let len = file.metadata().map_err(|e| Error::io("reading", path, e))?.len();
    let too_large = |size: u64| Error::Manifest {
        file: path.to_owned(),
        reason: format!(
            "{size} bytes, more than the {} MiB a checksum list may hold",
            MAX_LIST_BYTES >> 20
        ),
    };
    if len > MAX_LIST_BYTES {
        return Err(too_large(len));
    }
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_LIST_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| Error::io("reading", path, e))?;
    if data.len() as u64 > MAX_LIST_BYTES {
        return Err(too_large(data.len() as u64));
    }
    Ok(data)
}

/// Errors from reading, writing and verifying manifests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `SHA256SUMS` line is malformed.
    #[error("{file}: line {line}: {reason}")]
    Sha256Sums {
        /// The file being parsed.
        file: Utf8PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// `manifest.json` is malformed or breaks a schema rule.
    #[error("{file}: {reason}")]
    Manifest {
        /// The file being parsed.
        file: Utf8PathBuf,
        /// What is wrong, with line and column when the JSON itself is at fault.
        reason: String,
    },
    /// The directory holds neither `SHA256SUMS` nor `manifest.json`.
    #[error("{dir}: no {SHA256SUMS_NAME} or {MANIFEST_NAME} to verify against")]
    NoManifest {
        /// The directory.
        dir: Utf8PathBuf,
    },
    /// The file asked about is named in no checksum list of its directory.
    #[error("{dir}/{path}: not listed in {lists} of {dir}")]
    NotListed {
        /// The file.
        path: RelPath,
        /// Its directory.
        dir: Utf8PathBuf,
        /// The lists that were searched, e.g. `SHA256SUMS or manifest.json`.
        lists: String,
    },
    /// A path is not a valid manifest path.
    #[error("{path:?}")]
    Path {
        /// The path as given.
        path: String,
        /// Why it is invalid.
        #[source]
        source: RelPathError,
    },
    /// The same output path was recorded twice.
    #[error("{path}: recorded twice")]
    Duplicate {
        /// The path.
        path: RelPath,
    },
    /// An operation on a file failed.
    #[error(transparent)]
    Io(#[from] xspack_io::IoError),
    /// `--force` was asked to replace a directory that is not a previous build, or that holds
    /// a guarded path (see [`replace`]).
    #[error("{dir}: refusing to replace it: it {reason}")]
    NotReplaceable {
        /// The output directory.
        dir: Utf8PathBuf,
        /// Why not, starting with a verb: "holds the current directory".
        reason: String,
    },
    /// Atomic output failed.
    #[error(transparent)]
    Output(#[from] xspack_io::Error),
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
    /// The caller's when an output may not be replaced; the input's when what is verified is
    /// bad; the host's otherwise.
    fn fault(&self) -> xspack_io::Fault {
        if matches!(self, Error::NotReplaceable { .. }) {
            xspack_io::Fault::Caller
        } else {
            xspack_io::Fault::input_if(matches!(
                self,
                Error::Sha256Sums { .. }
                    | Error::Manifest { .. }
                    | Error::NoManifest { .. }
                    | Error::NotListed { .. }
                    | Error::Path { .. }
                    | Error::Duplicate { .. }
            ))
        }
    }
}
