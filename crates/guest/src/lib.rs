//! Bootable XenServer guests from container images, built without root, chroot, loop devices
//! or mounts.
//!
//! The **ubuntu flavor** ([`ubuntu`]) treats a Debian-family image (Debian, Ubuntu and their
//! derivatives) as the guest operating system: the image brings its own kernel, initramfs and
//! systemd; xspack adds the guest fix-ups ([`fixups`]), a systemd unit for the image's command
//! ([`service`]), and GRUB 2 installed by our own code ([`grub`]) on a partitioned disk
//! (`xspack_disk::partition`) that streams into the raw, VHD, qcow2 and XVA writers. [`seed`]
//! writes the cloud-init `NoCloud` (`cidata`) drive.
//!
//! The disk follows `docs/formats/boot.md`:
//!
//! - "Boot modes": HVM BIOS by default (GRUB's `boot.img` in the MBR, its core image in the gap
//!   before the first partition), HVM UEFI as an option (an EFI system partition holding the
//!   distribution's signed shim and GRUB when the image has them, for Secure Boot, else GRUB as
//!   `\EFI\BOOT\BOOTX64.EFI`; [`efi`]);
//! - "How pygrub finds the partition" and "The GRUB 2 subset": the first partition (the active MBR
//!   partition, or GPT entry 1) is the ext4 root (no `64bit`, no `metadata_csum`, 4 KiB blocks),
//!   holding `/boot/grub/grub.cfg` in the GRUB 2 subset pygrub parses, with absolute kernel and
//!   initrd paths, so the same disk also boots PV through pygrub;
//! - disk sizes are multiples of 2 MiB (`docs/formats/vhd.md` section "Checksums, geometry,
//!   sizes").
//!
//! The crate keeps to the workspace's conventions: typed errors, injected progress, derived
//! identities (the same image and options give the same bytes).

pub mod coreos;
pub mod efi;
pub mod fixups;
pub mod grub;
pub mod kernel;
pub mod osrelease;
pub mod seed;
pub mod service;
pub mod ubuntu;

mod command;

use camino::Utf8PathBuf;

/// Errors from building a guest. Every message is one line and says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The image has no `/etc/os-release` nor `/usr/lib/os-release`.
    #[error(
        "the image has no /etc/os-release: the ubuntu flavor needs a Debian or Ubuntu based image \
         (FROM debian:bookworm or FROM ubuntu:24.04)"
    )]
    NoOsRelease,
    /// The image is not of the Debian family.
    #[error(
        "the image is {pretty} (ID={id}), not Debian or Ubuntu based: the ubuntu flavor needs an \
         image whose /etc/os-release has ID or ID_LIKE debian or ubuntu"
    )]
    NotDebian {
        /// `ID` of os-release.
        id: String,
        /// `PRETTY_NAME` (or `NAME`) of os-release.
        pretty: String,
    },
    /// The image has no kernel, or a kernel without an initramfs.
    #[error("{problem}")]
    NoKernel {
        /// What is missing.
        problem: String,
        /// The Dockerfile line that adds it.
        dockerfile: String,
    },
    /// The image has no systemd as `/sbin/init`.
    #[error("{problem}")]
    NoInit {
        /// What is missing.
        problem: String,
        /// The Dockerfile line that adds it.
        dockerfile: String,
    },
    /// The image's Entrypoint/Cmd cannot become a systemd service.
    #[error("image command {argv:?}: {reason} (or build with the service disabled)")]
    Service {
        /// The command line.
        argv: Vec<String>,
        /// What is wrong.
        reason: String,
    },
    /// `--secure-boot require`, and the image lacks part of the signed chain.
    #[error("Secure Boot is required, but the image lacks {missing}")]
    SecureBoot {
        /// What is missing or unsigned, `; `-separated.
        missing: String,
    },
    /// An option is invalid or options contradict each other.
    #[error("{0}")]
    Options(String),
    /// A build-host tool is missing.
    #[error("{tool} not found: install the Debian packages {packages} on the build host")]
    ToolMissing {
        /// The tool or file.
        tool: String,
        /// The packages that provide it.
        packages: &'static str,
    },
    /// A build-host tool failed.
    #[error("{argv} failed ({status}): {stderr}")]
    Tool {
        /// The command line.
        argv: String,
        /// Its exit status.
        status: String,
        /// The tail of its standard error, on one line.
        stderr: String,
    },
    /// A bootloader binary is not what this installer knows how to patch.
    #[error("{file}: {reason}")]
    BootImage {
        /// The file.
        file: Utf8PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The CoreOS base image is not usable.
    #[error("base image {path}: {reason}")]
    BaseImage {
        /// The file given.
        path: Utf8PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `guest.toml` is invalid.
    #[error("{at}: {reason}")]
    Spec {
        /// `file:line:column`, or the file.
        at: String,
        /// What is wrong.
        reason: String,
    },
    /// Building the config drive failed.
    #[error("building the config drive: {0}")]
    ConfigDrive(Box<xspack_iso::Error>),
    /// Writing the data disk's filesystem failed.
    #[error("writing the data disk")]
    Ext4(#[from] xspack_ext4::Error),
    /// Reading the image or writing the filesystem failed.
    #[error(transparent)]
    Image(#[from] xspack_image::Error),
    /// A guest fix-up could not be applied to the tree.
    #[error(transparent)]
    Tree(#[from] xspack_oci::Error),
    /// Writing the disk, its partitions or a FAT image failed.
    #[error(transparent)]
    Disk(#[from] xspack_disk::Error),
    /// Writing the XVA failed.
    #[error(transparent)]
    Xva(#[from] xspack_xva::Error),
    /// Creating an output failed.
    #[error(transparent)]
    Output(#[from] xspack_manifest::Error),
    /// An output name is not a valid path.
    #[error(transparent)]
    Name(#[from] xspack_manifest::RelPathError),
    /// An operation on a file failed.
    #[error(transparent)]
    Io(#[from] xspack_io::IoError),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<Utf8PathBuf>, e: std::io::Error) -> Self {
        Error::Io(xspack_io::IoError::new(op, path.into(), e))
    }

    /// The obvious fix, when there is one: the Dockerfile line that adds what is missing.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::NoKernel { dockerfile, .. } => Some(format!(
                "add `{dockerfile}` to the Dockerfile, or pass --kernel FILE --initrd FILE"
            )),
            Error::NoInit { dockerfile, .. } => {
                Some(format!("add `{dockerfile}` to the Dockerfile"))
            }
            Error::SecureBoot { .. } => Some(format!(
                "add `{}` to the Dockerfile, or build with --secure-boot auto or off",
                osrelease::Family::dockerfile_line(efi::SIGNED_PACKAGES)
            )),
            _ => None,
        }
    }
}

impl xspack_io::Classify for Error {
    /// Whether the input image (or an option) is at fault rather than the build host.
    fn fault(&self) -> xspack_io::Fault {
        xspack_io::Fault::input_if(match self {
            Error::NoOsRelease
            | Error::NotDebian { .. }
            | Error::NoKernel { .. }
            | Error::NoInit { .. }
            | Error::Service { .. }
            | Error::Options(_)
            | Error::SecureBoot { .. }
            | Error::BaseImage { .. }
            | Error::Spec { .. } => true,
            Error::Image(e) => e.is_bad_input(),
            Error::Tree(e) => e.is_bad_input(),
            _ => false,
        })
    }
}
