//! Whether a GPT disk boots through a signed loader: the first boot option UEFI firmware finds
//! on a disk without boot entries is the removable-media path `\EFI\BOOT\BOOTX64.EFI` of its
//! EFI system partition (UEFI 2.10 section 3.5.1.1). With Secure Boot enforced, that file must
//! carry a signature the firmware trusts, and so must the GRUB a shim starts beside it
//! (`grubx64.efi`).
//!
//! This reads the GPT ([`crate::partition::Gpt::read`]), the ESP's FAT
//! ([`crate::fat::FatReader`]) and the binaries' certificate tables ([`crate::pe`]). It does
//! not verify signatures: the firmware does that, with keys xspack never holds.

use crate::fat::FatReader;
use crate::partition::{Gpt, PartitionType};
use crate::pe::{Signature, signature};
use crate::{DiskSource, Error};

/// The removable-media loader on the ESP, which [`secure_boot_ready`] checks.
pub const LOADER: &str = "EFI/BOOT/BOOTX64.EFI";
/// The GRUB a shim started as [`LOADER`] starts beside it, checked when present.
pub const SECOND_STAGE: &str = "EFI/BOOT/grubx64.efi";
/// The largest boot binary read (shim and GRUB are a few MiB).
const MAX_BINARY: u64 = 64 << 20;

/// `Ok(())` when `disk` boots through a signed `\EFI\BOOT\BOOTX64.EFI` (and a signed
/// `grubx64.efi` beside it, when there is one); else why not, in a phrase. Errors are failures
/// to read the disk.
pub fn secure_boot_ready(disk: &mut dyn DiskSource) -> Result<Result<(), String>, Error> {
    let gpt = match Gpt::read(disk) {
        Ok(gpt) => gpt,
        Err(Error::Partition(e)) => return Ok(Err(format!("it has no valid GPT ({e})"))),
        Err(e) => return Err(e),
    };
    let Some(esp) = gpt.entries.iter().find(|e| e.type_guid == PartitionType::EFI_SYSTEM.gpt)
    else {
        return Ok(Err("it has no EFI system partition".into()));
    };
    let extent = esp.last_lba.checked_sub(esp.first_lba).and_then(|n| {
        let offset = esp.first_lba.checked_mul(512)?;
        let size = (n + 1).checked_mul(512)?;
        offset.checked_add(size).filter(|end| *end <= disk.size()).map(|_| (offset, size))
    });
    let Some((offset, size)) = extent else {
        return Ok(Err(format!(
            "its EFI system partition (LBA {} to {}) lies outside the disk",
            esp.first_lba, esp.last_lba
        )));
    };
    let mut fat = match FatReader::open(disk, offset, size) {
        Ok(fat) => fat,
        Err(Error::Fat(e)) => return Ok(Err(format!("its EFI system partition: {e}"))),
        Err(e) => return Err(e),
    };
    for (path, required) in [(LOADER, true), (SECOND_STAGE, false)] {
        let data = match fat.read_file(path, MAX_BINARY) {
            Ok(data) => data,
            Err(Error::Fat(e)) => return Ok(Err(format!("its EFI system partition: {e}"))),
            Err(e) => return Err(e),
        };
        let shown = format!("\\{}", path.replace('/', "\\"));
        match (data.map(|d| signature(&d)), required) {
            (Some(Signature::Signed), _) | (None, false) => {}
            (None, true) => return Ok(Err(format!("its EFI system partition has no {shown}"))),
            (Some(Signature::Unsigned), _) => {
                return Ok(Err(format!("{shown} on its EFI system partition is unsigned")));
            }
            (Some(Signature::NotPe(why)), _) => {
                return Ok(Err(format!(
                    "{shown} on its EFI system partition is not an EFI binary ({why})"
                )));
            }
        }
    }
    Ok(Ok(()))
}
