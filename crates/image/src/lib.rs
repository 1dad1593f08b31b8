//! From a container image to disk images, streaming and rootless.
//!
//! One layer's way from `image build` to a VHD, stage by stage (one module each; the data
//! flows one way):
//!
//! 1. **layers → merged tree** (`merge`): every layer's tar entries are read once (blob
//!    digest and `diff_id` verified as they stream) and merged into a
//!    [`MergedTree`](xspack_oci::MergedTree) of metadata, following the OCI image layer rules;
//! 2. **file data → image file** (`zone`): during that same read, every file's bytes are
//!    written out: the first layer's straight into their blocks of the image's data zone, the
//!    others' into scratch stashes copied into place after the merge;
//! 3. **merged tree → ext4 plan → one disk stream** (`convert`, `rootfs`): the tree
//!    becomes an ext4 description, every inode and block is placed around the files already
//!    written, and the metadata is written into the same file. [`RootfsBuild`] runs stages 1
//!    to 3, choosing the strategy itself (the single pass; above 16 GiB, a second read of the
//!    layers);
//! 4. **disk → formats → output directory** ([`formats`]): a bare filesystem's image
//!    ([`build()`]) is read once, forward, to feed the VHD and XVA writers (VHD's block map
//!    comes from the ext4 plan), and qcow2 is made from the raw file; a guest's disks (the
//!    ubuntu guest's partitioned disk, the coreos guest's base and data disks) are written raw
//!    and every other format is made from the raw file by the same functions.
//!
//! Ids (filesystem UUID, hash seed, VHD and VM UUIDs) are derived from the image digest and
//! layer `diff_id`s ([`identity`]), so the same image and options always give the same bytes.
//! `docs/design.md` follows one layer through these functions.

mod build;
mod convert;
pub mod files;
pub mod formats;
pub mod identity;
mod merge;
mod rootfs;
mod zone;

pub use build::{BuildRequest, BuildSummary, bare_vm_spec, build};
pub use files::{MAX_READ_FILE, read_files};
pub use formats::DiskFormat;
pub use merge::merge_layers;
pub use rootfs::{RootfsBuild, write_ext4};

use xspack_oci::MergeSummary;

/// Options of the filesystem ([`RootfsBuild::write`], [`write_ext4`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RootfsOptions {
    /// Filesystem size in bytes; `None` sizes it from the content.
    pub size: Option<u64>,
    /// Volume label (at most 16 bytes).
    pub label: String,
    /// Time stamped on the filesystem itself (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
    /// Filesystem UUID; derived from the image when `None`.
    pub uuid: Option<[u8; 16]>,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct RootfsSummary {
    /// Layers applied.
    pub layers: usize,
    /// Merge statistics.
    pub merge: MergeSummary,
    /// Regular files written.
    pub files: u64,
    /// Bytes of file data written.
    pub file_bytes: u64,
    /// Inodes used.
    pub inodes: u64,
    /// Filesystem size in bytes.
    pub size: u64,
    /// Filesystem UUID.
    pub uuid: [u8; 16],
}

/// Errors from building a filesystem image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or merging the image failed.
    #[error(transparent)]
    Image(#[from] xspack_oci::Error),
    /// The filesystem could not be planned or written.
    #[error("ext4")]
    Ext4(#[from] xspack_ext4::Error),
    /// Writing a VHD or qcow2 failed.
    #[error(transparent)]
    Disk(#[from] xspack_disk::Error),
    /// Writing an XVA failed.
    #[error(transparent)]
    Xva(#[from] xspack_xva::Error),
    /// Creating an output failed.
    #[error(transparent)]
    Output(#[from] xspack_manifest::Error),
    /// An output name is not a valid path.
    #[error(transparent)]
    Name(#[from] xspack_manifest::RelPathError),
    /// The request is inconsistent.
    #[error("{0}")]
    Request(String),
    /// The layers' file data outgrew the size asked for (`--size`): the build stopped as soon
    /// as it did, before writing more.
    #[error(
        "the layers hold more file data than the {limit} bytes asked for (--size): stopped at \
         {reached} bytes, before writing more"
    )]
    OverSize {
        /// The size asked for.
        limit: u64,
        /// The bytes of file data (whole 4 KiB blocks) read when the build stopped.
        reached: u64,
    },
    /// An operation on a file failed.
    #[error(transparent)]
    Io(#[from] xspack_io::IoError),
}

impl xspack_io::Classify for Error {
    /// Whether the input image is at fault (exit code 3) rather than the build.
    fn fault(&self) -> xspack_io::Fault {
        xspack_io::Fault::input_if(match self {
            Error::Image(e) => e.is_bad_input(),
            Error::OverSize { .. } => true,
            Error::Ext4(e) => {
                // Not the image's fault: the disk, the size asked for, SOURCE_DATE_EPOCH.
                !matches!(
                    e,
                    xspack_ext4::Error::Io(_)
                        | xspack_ext4::Error::TooSmall { .. }
                        | xspack_ext4::Error::TimestampOutOfRange { .. }
                )
            }
            _ => false,
        })
    }
}
