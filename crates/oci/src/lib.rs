//! Container images as verified, streaming layers, and the merge of those layers into one tree.
//!
//! - [`ImageSource`] parses skopeo-style source names (`docker-archive:`, `oci:`,
//!   `oci-archive:`, or a bare path detected by content).
//! - [`Image::open`] reads the index, manifest and config (OCI image spec v1.1, "Image Layout",
//!   "Image Index", "Image Manifest", "Image Configuration"; Docker's `docker save`
//!   `manifest.json`), checking every digest and size it can.
//! - [`Image::read_layer`] streams one layer: the blob's sha256 and the uncompressed `diff_id` are
//!   verified as the bytes pass, whatever the compression (none, gzip, zstd).
//!   The first read also notes a BLAKE3 proof of every 1 MiB of the stored bytes (`proof`),
//!   and of a gzip layer a seek index (`gzip`), so that [`Image::reread_layer`] proves just
//!   the blocks it uses, decodes gzip on several threads and skips what nobody reads.
//! - Every tar header is inspected before the `tar` crate reads it, so a pax or GNU long name
//!   header larger than [`limits`] allows is refused from its size field, unread; names, link
//!   targets and xattrs longer than Linux and ext4 allow are refused with the entry.
//! - [`MergedTree`] applies layers in order with the OCI "Applying Changesets" rules:
//!   the upper layer wins, `.wh.<name>` deletes and `.wh..wh..opq` empties a lower directory,
//!   and every path is normalised one component at a time.
//!
//! Nothing is extracted to the host: the tree holds metadata only, and file data is read
//! again from the layer when it is written.

mod archive;
mod digest;
pub mod docker_archive;
mod image;
mod layer;
pub mod limits;
mod merge;
mod path;
mod pax;
mod proof;
mod source;
mod spec;
mod tar_guard;

pub use digest::Digest;
pub use image::{Image, LayerInfo};
pub use layer::{EntryKind, EntryMeta, LayerEntry, LayerSummary};
pub use merge::{FileData, MergeSummary, MergedTree, NodeId, NodeKind, TreeNode, ZeroRuns};
pub use source::ImageSource;
pub use spec::ContainerConfig;

/// Errors from reading and merging images. Messages name the input and, for layers, the layer
/// and entry concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source string or path is not a usable image source.
    #[error("{source_name}: {reason}")]
    Source {
        /// The source as given.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A JSON document (index, manifest, config) is malformed or breaks the spec.
    #[error("{what}: {reason}")]
    Json {
        /// Which document, e.g. `index.json` or `manifest sha256:…`.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// A blob the image refers to is absent.
    #[error("{what}: blob {digest} is missing")]
    MissingBlob {
        /// Who refers to it.
        what: String,
        /// The digest.
        digest: String,
    },
    /// Bytes do not hash to the digest they are recorded under.
    #[error("{what}: {kind} mismatch: expected {expected}, found {actual}")]
    DigestMismatch {
        /// Which blob or layer.
        what: String,
        /// `digest`, `diff_id` or `size`.
        kind: &'static str,
        /// Recorded value.
        expected: String,
        /// Computed value.
        actual: String,
    },
    /// A layer's bytes are unreadable: bad compression or a broken tar stream.
    #[error("{layer}: {reason}")]
    Layer {
        /// The layer.
        layer: String,
        /// What went wrong.
        reason: String,
    },
    /// A layer entry breaks a merge rule: path traversal, a bad whiteout, a hardlink to nothing.
    #[error("{layer}: entry {entry:?}: {reason}")]
    Entry {
        /// The layer.
        layer: String,
        /// The entry's path as recorded (lossy UTF-8).
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// An operation on a file failed.
    #[error(transparent)]
    Io(#[from] xspack_io::IoError),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io(xspack_io::IoError::new(op, path.into(), source))
    }
}

impl xspack_io::Classify for Error {
    /// Whether the image itself is bad (as opposed to a failure to read it).
    fn fault(&self) -> xspack_io::Fault {
        xspack_io::Fault::input_if(!matches!(self, Error::Io(_)))
    }
}
