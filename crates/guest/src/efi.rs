//! UEFI boot: the chain on the EFI system partition, and whether it can boot with Secure Boot
//! enforced.
//!
//! Two chains (`docs/formats/boot.md` section "UEFI and Secure Boot"):
//!
//! - **shim** (Secure Boot-ready), when the image holds the distribution's signed boot
//!   packages: `shim-signed` (`/usr/lib/shim/shimx64.efi.signed`, signed by Microsoft's UEFI
//!   CA), `shim-helpers-amd64-signed` (`fbx64.efi.signed`, the fallback, and
//!   `mmx64.efi.signed`, `MokManager`), `grub-efi-amd64-signed`
//!   (`/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed`, signed by the distribution's key
//!   that shim holds), and a kernel with an Authenticode signature (Debian's and Ubuntu's
//!   kernels are signed). Laid out as Debian's `grub-install --uefi-secure-boot
//!   --force-extra-removable` does (`util/grub-install.c` in Debian's GRUB): shim as the
//!   removable-media path `\EFI\BOOT\BOOTX64.EFI` (UEFI 2.10 section 3.5.1.1) with
//!   `grubx64.efi`, `mmx64.efi` and `fbx64.efi` beside it, and the distribution's own
//!   directory `\EFI\<debian|ubuntu>\` with `shimx64.efi`, `grubx64.efi`, `mmx64.efi` and
//!   `BOOTX64.CSV`. On a first boot without boot entries shim starts the fallback, which
//!   reads `BOOTX64.CSV` (UCS-2: file, label, options, description; shim's `fallback.c`), adds
//!   the distribution's boot entry and starts it. The signed GRUB has its prefix built in
//!   (`/EFI/debian` or `/EFI/ubuntu`) and sources `$prefix/x86_64-efi/grub.cfg`, else
//!   `$prefix/grub.cfg`, else `grub.cfg` beside itself; xspack writes the last two: they set
//!   up the serial console, find the root filesystem by UUID and hand over to
//!   `/boot/grub/grub.cfg`. GRUB has shim check the kernel's signature; the kernel then
//!   enforces its own lockdown. xspack signs nothing and holds no keys.
//! - **grub**: GRUB linked by `grub-mkimage` on the build host ([`crate::grub`]), as
//!   `\EFI\BOOT\BOOTX64.EFI`. It boots only with Secure Boot off.
//!
//! [`SecureBoot`] chooses between them. A Secure Boot-ready guest's VM record says
//! `platform:secureboot=auto` ([`xspack_xva::BootMode::UefiSecureBootAuto`]), so XenServer
//! turns Secure Boot on at the first start when the pool has the certificates; the grub chain
//! keeps `secureboot=false`, so no import makes a VM that cannot boot.

use std::fmt::Write as _;

use xspack_disk::fat::{FatBuilder, FatImage, FatOptions};
use xspack_disk::pe::{Signature, signature};
// The paths the template check reads back, so what is written and what is checked agree.
use xspack_disk::uefi_boot::{LOADER, SECOND_STAGE};
use xspack_image::RootfsBuild;

use crate::Error;
use crate::osrelease::Family;

/// Whether a UEFI guest gets the Secure Boot-ready chain (`--secure-boot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecureBoot {
    /// The shim chain when the image has the signed packages, else the grub chain and a note.
    #[default]
    Auto,
    /// The shim chain, or an error naming what is missing.
    Require,
    /// The grub chain.
    Off,
}

impl SecureBoot {
    /// The option's value as written on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SecureBoot::Auto => "auto",
            SecureBoot::Require => "require",
            SecureBoot::Off => "off",
        }
    }
}

/// The chain a guest boots through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chain {
    /// GRUB linked by xspack: in the MBR (BIOS) or as `BOOTX64.EFI` (UEFI, Secure Boot off).
    Grub,
    /// The distribution's signed shim, signed GRUB and signed kernel: Secure Boot-ready.
    Shim,
}

impl Chain {
    /// The name the manifest records.
    pub fn as_str(self) -> &'static str {
        match self {
            Chain::Grub => "grub",
            Chain::Shim => "shim",
        }
    }
}

/// The debian packages of the shim chain.
pub const SIGNED_PACKAGES: &str = "shim-signed grub-efi-amd64-signed";

/// shim, by the names Debian (`shimx64.efi.signed`) and Ubuntu (`.latest`, `.dualsigned`)
/// install it under.
const SHIM: &[&str] = &[
    "usr/lib/shim/shimx64.efi.signed",
    "usr/lib/shim/shimx64.efi.signed.latest",
    "usr/lib/shim/shimx64.efi.dualsigned",
];
const FALLBACK: &str = "usr/lib/shim/fbx64.efi.signed";
const MOK_MANAGER: &str = "usr/lib/shim/mmx64.efi.signed";
const SIGNED_GRUB: &str = "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed";
/// The largest boot binary read from the image (shim and GRUB are a few MiB, kernels tens).
const MAX_BINARY: u64 = 256 << 20;

/// The signed binaries found in an image.
#[derive(Debug, Clone)]
pub struct SignedChain {
    shim: Vec<u8>,
    grub: Vec<u8>,
    fallback: Option<Vec<u8>>,
    mok_manager: Option<Vec<u8>>,
    /// The distribution's directory on the ESP: the prefix built into its signed GRUB.
    vendor: &'static str,
}

/// Finds the shim chain in `rootfs` (after the fix-ups), for a kernel at `kernel` (absolute
/// path in the image). `Ok(Err(missing))` lists what the image lacks, one phrase each.
pub fn find_signed_chain(
    rootfs: &mut RootfsBuild<'_>,
    family: Family,
    kernel: &str,
) -> Result<Result<SignedChain, Vec<String>>, Error> {
    let mut missing = Vec::new();
    let mut shim = None;
    if let Some(path) = SHIM.iter().find(|p| rootfs.file_size(p.as_bytes()).is_some()) {
        shim = read_signed(rootfs, path, &mut missing)?;
    } else {
        missing.push(format!("shim-signed (/{})", SHIM[0]));
    }
    let grub = if rootfs.file_size(SIGNED_GRUB.as_bytes()).is_some() {
        read_signed(rootfs, SIGNED_GRUB, &mut missing)?
    } else {
        missing.push(format!("grub-efi-amd64-signed (/{SIGNED_GRUB})"));
        None
    };
    let kernel_path = kernel.trim_start_matches('/');
    if rootfs.file_size(kernel_path.as_bytes()).is_some() {
        read_signed(rootfs, kernel_path, &mut missing)?;
    } else {
        missing.push(format!("the kernel {kernel}"));
    }
    // Optional helpers: absent is fine, present and unsigned is not.
    let fallback = read_signed(rootfs, FALLBACK, &mut missing)?;
    let mok_manager = read_signed(rootfs, MOK_MANAGER, &mut missing)?;
    match (shim, grub) {
        (Some(shim), Some(grub)) if missing.is_empty() => {
            let vendor = match family {
                Family::Debian => "debian",
                Family::Ubuntu => "ubuntu",
            };
            Ok(Ok(SignedChain { shim, grub, fallback, mok_manager, vendor }))
        }
        _ => Ok(Err(missing)),
    }
}

/// The file at `path` when it is there and signed; a phrase in `missing` when it is there and
/// unsigned, not an EFI binary, or too large to be one.
fn read_signed(
    rootfs: &mut RootfsBuild<'_>,
    path: &str,
    missing: &mut Vec<String>,
) -> Result<Option<Vec<u8>>, Error> {
    match rootfs.file_size(path.as_bytes()) {
        None => return Ok(None),
        Some(size) if size > MAX_BINARY => {
            missing.push(format!("a boot binary at /{path} ({size} bytes is too large for one)"));
            return Ok(None);
        }
        Some(_) => {}
    }
    Ok(rootfs.read_file(path.as_bytes(), MAX_BINARY)?.and_then(|data| signed(data, path, missing)))
}

/// `data` when it is signed; else a phrase in `missing`.
fn signed(data: Vec<u8>, path: &str, missing: &mut Vec<String>) -> Option<Vec<u8>> {
    match signature(&data) {
        Signature::Signed => Some(data),
        Signature::Unsigned => {
            missing.push(format!("a signature on /{path} (it is unsigned)"));
            None
        }
        Signature::NotPe(reason) => {
            missing.push(format!("a signed EFI binary at /{path} ({reason})"));
            None
        }
    }
}

/// The ESP's `grub.cfg` for the signed GRUB: serial console, root by UUID, then the root
/// filesystem's `/boot/grub/grub.cfg` (modules cannot be loaded from disk under Secure Boot,
/// so it only uses what the signed image has built in).
pub fn signed_grub_cfg(root_uuid: &str) -> String {
    let mut out = String::new();
    out.push_str(
        "# Written by xspack. The signed GRUB reads this from its prefix or beside itself;\n",
    );
    out.push_str("# the menu is the root filesystem's /boot/grub/grub.cfg.\n");
    out.push_str(&crate::grub::early_config(root_uuid));
    let _ = writeln!(out, "configfile $prefix/grub.cfg");
    out
}

/// `BOOTX64.CSV` for shim's fallback: one line, UCS-2 little-endian without a byte-order mark,
/// as Debian's `shim-unsigned` ships it.
fn boot_csv(vendor: &str) -> Vec<u8> {
    let line = format!("shimx64.efi,{vendor},,This is the boot entry for {vendor}\n");
    line.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// The files of the ESP, `(path, bytes)`, for either chain.
pub enum EspFiles {
    /// `BOOTX64.EFI` linked by `grub-mkimage`.
    Grub(Vec<u8>),
    /// The signed chain and the ESP's `grub.cfg`.
    Shim(SignedChain, String),
}

impl EspFiles {
    /// Which chain.
    pub fn chain(&self) -> Chain {
        match self {
            EspFiles::Grub(_) => Chain::Grub,
            EspFiles::Shim(..) => Chain::Shim,
        }
    }

    /// The files, in the order they go on the partition.
    fn files(self) -> Vec<(String, Vec<u8>)> {
        match self {
            EspFiles::Grub(bootx64) => vec![(LOADER.into(), bootx64)],
            EspFiles::Shim(chain, cfg) => {
                let SignedChain { shim, grub, fallback, mok_manager, vendor } = chain;
                let own = format!("EFI/{vendor}");
                let mut files = vec![
                    (LOADER.to_owned(), shim.clone()),
                    (SECOND_STAGE.to_owned(), grub.clone()),
                    ("EFI/BOOT/grub.cfg".to_owned(), cfg.clone().into_bytes()),
                ];
                if let Some(fb) = fallback {
                    files.push(("EFI/BOOT/fbx64.efi".into(), fb));
                }
                if let Some(mm) = &mok_manager {
                    files.push(("EFI/BOOT/mmx64.efi".into(), mm.clone()));
                }
                files.push((format!("{own}/shimx64.efi"), shim));
                files.push((format!("{own}/grubx64.efi"), grub));
                if let Some(mm) = mok_manager {
                    files.push((format!("{own}/mmx64.efi"), mm));
                }
                files.push((format!("{own}/BOOTX64.CSV"), boot_csv(vendor)));
                files.push((format!("{own}/grub.cfg"), cfg.into_bytes()));
                files
            }
        }
    }

    /// The EFI system partition holding the files: FAT, `size` bytes, labelled `ESP`.
    pub fn partition(
        self,
        size: u64,
        volume_id: u32,
        source_date_epoch: u64,
    ) -> Result<FatImage<'static>, Error> {
        let opts = FatOptions::new(volume_id, source_date_epoch).with_size(size).with_label("ESP");
        let mut fat = FatBuilder::new(opts);
        for (path, data) in self.files() {
            fat.add_file_bytes(&path, data).map_err(xspack_disk::Error::from)?;
        }
        Ok(fat.build()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_csv_is_what_debian_ships() {
        let csv = boot_csv("debian");
        let text: Vec<u16> = csv.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        assert_eq!(
            String::from_utf16(&text).unwrap(),
            "shimx64.efi,debian,,This is the boot entry for debian\n"
        );
        assert_eq!(&csv[..4], b"s\0h\0", "no byte-order mark");
    }

    #[test]
    fn the_esp_config_hands_over_to_the_root_filesystem() {
        let cfg = signed_grub_cfg("0123");
        assert!(cfg.contains("search --no-floppy --fs-uuid --set=root 0123\n"));
        assert!(cfg.contains("set prefix=($root)/boot/grub\n"));
        assert!(cfg.ends_with("configfile $prefix/grub.cfg\n"));
    }
}
