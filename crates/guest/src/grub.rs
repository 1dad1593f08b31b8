//! GRUB 2 for the guest, installed by our own code: no `grub-install`, no root, no device.
//!
//! # Which binaries come from where
//!
//! Everything GRUB executes comes from Debian packages **on the build host** (never from the
//! image, which usually has no GRUB):
//!
//! | file | package | used for |
//! |---|---|---|
//! | `/usr/bin/grub-mkimage` | `grub-common` | links the core image from the modules below (a plain file-to-file tool, run without root) |
//! | `/usr/lib/grub/i386-pc/boot.img`, `diskboot.img`, `lzma_decompress.img`, `kernel.img`, `*.mod` | `grub-pc-bin` | BIOS boot: the MBR code and the core image |
//! | `/usr/lib/grub/x86_64-efi/kernel.img`, `*.mod` | `grub-efi-amd64-bin` | UEFI boot: `BOOTX64.EFI` |
//!
//! `scripts/oracles` installs the three packages. [`GrubTools`] can point elsewhere.
//!
//! # What our code does
//!
//! - **BIOS** ([`bios_install`]): copies `boot.img`'s first 440 bytes into the MBR (the disk
//!   signature and partition table stay ours), sets its `kernel_sector` field (offset `0x5C`,
//!   u64) to the core image's LBA, and replaces the boot-drive check jump at `0x66` with two
//!   NOPs, as GRUB does for hard disks (buggy BIOSes pass drive 0 instead of `0x80`). The core
//!   image (`grub-mkimage -O i386-pc`: `diskboot.img`, then the LZMA decompressor and the
//!   compressed kernel and modules) goes into the gap between the MBR and the first partition
//!   at LBA 1; the blocklist at the end of its first sector (offset `0x1F4`: start LBA u64,
//!   sector count u16, load segment u16 `0x0820`) is set to the rest of it, which follows at
//!   LBA 2. Offsets are those of GRUB's `include/grub/i386/pc/boot.h` and `diskboot.S`. The
//!   core image is not protected with Reed-Solomon codes (its redundancy field stays 0, which
//!   the decompressor takes as "none").
//! - **UEFI** with Secure Boot off: `\EFI\BOOT\BOOTX64.EFI` (the removable media path of UEFI
//!   2.10 section 3.5.1.1) on the ESP, made by `grub-mkimage -O x86_64-efi` ([`crate::efi`]
//!   lays out the partition, and the signed chain for Secure Boot).
//!
//! Both images embed every module they need and an early configuration that sets up the serial
//! console, finds the root filesystem by UUID and sets `$prefix` to its `/boot/grub`; GRUB's
//! normal mode then reads `/boot/grub/grub.cfg`. No module is loaded from the disk.
//!
//! # grub.cfg
//!
//! [`grub_cfg`] writes the subset of GRUB 2 syntax that pygrub parses
//! (`docs/formats/boot.md` section "The GRUB 2 subset"): `set default`, `set timeout`, one
//! `menuentry 'Title' {` with `linux` and `initrd` lines giving absolute paths on the root
//! filesystem.

use std::fmt::Write as _;
use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_disk::DiskSource;

use crate::Error;
use crate::command::run;

/// Debian packages that provide GRUB's build-host files.
pub const GRUB_PACKAGES: &str = "grub-common grub-pc-bin grub-efi-amd64-bin";

/// The modules both core images embed. `normal` brings the menu and `linux` the loader;
/// `search` finds the root by UUID; `serial` and `terminal` put the menu on ttyS0.
const COMMON_MODULES: &[&str] = &[
    "part_msdos",
    "part_gpt",
    "ext2",
    "search",
    "search_fs_uuid",
    "normal",
    "linux",
    "boot",
    "configfile",
    "echo",
    "test",
    "gzio",
    "terminal",
    "serial",
];

/// Where GRUB's build-host files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrubTools {
    /// `grub-mkimage`, by path or by name in `PATH`.
    pub mkimage: Utf8PathBuf,
    /// The directory holding `i386-pc/` and `x86_64-efi/`.
    pub lib_dir: Utf8PathBuf,
}

impl Default for GrubTools {
    /// Debian's locations.
    fn default() -> Self {
        GrubTools { mkimage: "grub-mkimage".into(), lib_dir: "/usr/lib/grub".into() }
    }
}

/// The GRUB platform of a core image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// Legacy BIOS (`grub-pc-bin`).
    I386Pc,
    /// 64-bit UEFI (`grub-efi-amd64-bin`).
    X86_64Efi,
}

impl Platform {
    fn dir(self) -> &'static str {
        match self {
            Platform::I386Pc => "i386-pc",
            Platform::X86_64Efi => "x86_64-efi",
        }
    }

    fn package(self) -> &'static str {
        match self {
            Platform::I386Pc => "grub-pc-bin",
            Platform::X86_64Efi => "grub-efi-amd64-bin",
        }
    }

    fn extra_modules(self) -> &'static [&'static str] {
        match self {
            Platform::I386Pc => &["biosdisk"],
            Platform::X86_64Efi => &["efi_gop"],
        }
    }
}

/// One boot entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuEntry {
    /// The title; single quotes are dropped.
    pub title: String,
    /// Absolute path of the kernel on the root filesystem.
    pub kernel: String,
    /// Absolute path of the initramfs.
    pub initrd: String,
    /// The kernel command line.
    pub cmdline: String,
}

/// Whether `arg` can go on a GRUB `linux` line unquoted: no GRUB script metacharacters.
pub fn is_plain_kernel_arg(arg: &str) -> bool {
    !arg.is_empty() && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"=,._:/+@-".contains(&b))
}

/// `/boot/grub/grub.cfg` in the GRUB 2 subset pygrub reads.
pub fn grub_cfg(entry: &MenuEntry, timeout_secs: u32) -> String {
    let title: String = entry.title.chars().filter(|c| *c != '\'' && !c.is_control()).collect();
    let mut out = String::new();
    out.push_str("# Written by xspack. GRUB reads it after its embedded configuration set up\n");
    out.push_str("# the serial console and $root; pygrub reads it for PV boot.\n");
    let _ = writeln!(out, "set default=0\nset timeout={timeout_secs}\n");
    let _ = writeln!(out, "menuentry '{title}' {{");
    let _ = writeln!(out, "\tlinux {} {}", entry.kernel, entry.cmdline);
    let _ = writeln!(out, "\tinitrd {}\n}}", entry.initrd);
    out
}

/// The configuration embedded in the core image: serial console, root by UUID, `$prefix`.
pub fn early_config(root_uuid: &str) -> String {
    format!(
        "serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1\n\
         terminal_input console serial\nterminal_output console serial\n\
         search --no-floppy --fs-uuid --set=root {root_uuid}\nset prefix=($root)/boot/grub\n"
    )
}

/// Runs `grub-mkimage` for `platform` with `early` embedded; returns the image.
pub fn mkimage(tools: &GrubTools, platform: Platform, early: &str) -> Result<Vec<u8>, Error> {
    let dir = tools.lib_dir.join(platform.dir());
    for file in ["kernel.img", "moddep.lst"] {
        if !dir.join(file).is_file() {
            return Err(Error::ToolMissing {
                tool: dir.join(file).into_string(),
                packages: platform.package(),
            });
        }
    }
    let scratch =
        tempfile::tempdir().map_err(|e| Error::io("creating", "a temporary directory", e))?;
    let scratch =
        Utf8Path::from_path(scratch.path()).expect("temporary paths are UTF-8").to_owned();
    let (cfg, out) = (scratch.join("early.cfg"), scratch.join("core"));
    std::fs::write(&cfg, early).map_err(|e| Error::io("writing", &cfg, e))?;
    let format = match platform {
        Platform::I386Pc => "i386-pc",
        Platform::X86_64Efi => "x86_64-efi",
    };
    let mut cmd = Command::new(tools.mkimage.as_str());
    cmd.args(["-O", format, "-d", dir.as_str(), "-c", cfg.as_str(), "-p", "/boot/grub"]);
    cmd.args(["-o", out.as_str()]).args(COMMON_MODULES).args(platform.extra_modules());
    run(&mut cmd, "grub-common")?;
    let image = std::fs::read(&out).map_err(|e| Error::io("reading", &out, e))?;
    Ok(image)
}

/// Reads `boot.img` of the i386-pc platform.
pub fn boot_img(tools: &GrubTools) -> Result<(Utf8PathBuf, Vec<u8>), Error> {
    let path = tools.lib_dir.join("i386-pc/boot.img");
    match std::fs::read(&path) {
        Ok(data) => Ok((path, data)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::ToolMissing { tool: path.into_string(), packages: "grub-pc-bin" })
        }
        Err(e) => Err(Error::io("reading", path, e)),
    }
}

/// `kernel_sector` in `boot.img`: the LBA of the core image's first sector (u64 LE).
const KERNEL_SECTOR: usize = 0x5C;
/// The boot-drive check: a 2-byte `jmp` that GRUB replaces with NOPs for hard disks.
const DRIVE_CHECK: usize = 0x66;
/// The blocklist at the end of `diskboot.img`: start (u64), length (u16), segment (u16).
const BLOCKLIST: usize = 0x1F4;
/// The segment `diskboot.img` loads the rest of the core image at.
const CORE_SEGMENT: u16 = 0x0820;
/// x86 `jmp rel8` and `nop`.
const JMP_SHORT: u8 = 0xEB;
const NOP: u8 = 0x90;
/// Bytes of boot code in the MBR.
pub const BOOT_CODE_SIZE: usize = 440;

/// GRUB installed for BIOS: the MBR boot code, and the core image to put at `core_lba`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BiosBoot {
    /// The first 440 bytes of the MBR.
    pub boot_code: Vec<u8>,
    /// The patched core image, padded to whole sectors.
    pub core: Vec<u8>,
    /// Its first sector.
    pub core_lba: u64,
}

/// Patches `boot_img` and `core_img` for a core image at `core_lba` whose space ends before
/// `limit_lba` (the first partition).
pub fn bios_install(
    boot_img: &[u8],
    core_img: &[u8],
    core_lba: u64,
    limit_lba: u64,
) -> Result<BiosBoot, String> {
    if boot_img.len() != 512 || boot_img[510..] != [0x55, 0xAA] {
        return Err("boot.img is not a 512-byte boot sector".into());
    }
    if boot_img[DRIVE_CHECK] != JMP_SHORT {
        return Err(format!("boot.img has no drive-check jump at {DRIVE_CHECK:#x}"));
    }
    if core_img.len() < 1024 {
        return Err("the core image is shorter than two sectors".into());
    }
    let segment = u16::from_le_bytes([core_img[BLOCKLIST + 10], core_img[BLOCKLIST + 11]]);
    if segment != CORE_SEGMENT {
        return Err(format!(
            "the core image's blocklist segment is {segment:#06x}, not {CORE_SEGMENT:#06x}: not \
             an i386-pc core image"
        ));
    }
    let sectors = core_img.len().div_ceil(512) as u64;
    if core_lba + sectors > limit_lba {
        return Err(format!(
            "the core image takes {sectors} sectors; only {} fit before the first partition",
            limit_lba.saturating_sub(core_lba)
        ));
    }
    let mut boot_code = boot_img[..BOOT_CODE_SIZE].to_vec();
    boot_code[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    boot_code[DRIVE_CHECK..DRIVE_CHECK + 2].copy_from_slice(&[NOP, NOP]);
    let mut core = core_img.to_vec();
    core.resize(usize::try_from(sectors * 512).expect("checked against the gap"), 0);
    let rest = u16::try_from(sectors - 1).map_err(|_| "the core image is too large")?;
    core[BLOCKLIST..BLOCKLIST + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    core[BLOCKLIST + 8..BLOCKLIST + 10].copy_from_slice(&rest.to_le_bytes());
    Ok(BiosBoot { boot_code, core, core_lba })
}

/// A disk with `bytes` laid over `inner` at `offset`: how the core image lands in the gap the
/// partition table leaves before the first partition.
#[derive(Debug)]
pub(crate) struct Overlay<S> {
    pub inner: S,
    pub offset: u64,
    pub bytes: Vec<u8>,
}

impl<S: DiskSource> DiskSource for Overlay<S> {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_exact_at(offset, buf)?;
        let end = offset + buf.len() as u64;
        let over_end = self.offset + self.bytes.len() as u64;
        let (from, to) = (offset.max(self.offset), end.min(over_end));
        if from < to {
            let src = usize::try_from(from - self.offset).expect("in memory");
            let dst = usize::try_from(from - offset).expect("in the buffer");
            let len = usize::try_from(to - from).expect("in the buffer");
            buf[dst..dst + len].copy_from_slice(&self.bytes[src..src + len]);
        }
        Ok(())
    }

    fn known_zero(&mut self, offset: u64, len: u64) -> std::io::Result<bool> {
        let over_end = self.offset + self.bytes.len() as u64;
        if offset < over_end && self.offset < offset + len {
            return Ok(false);
        }
        self.inner.known_zero(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_images() -> (Vec<u8>, Vec<u8>) {
        let mut boot = vec![0u8; 512];
        boot[DRIVE_CHECK] = JMP_SHORT;
        boot[DRIVE_CHECK + 1] = 5;
        boot[510..].copy_from_slice(&[0x55, 0xAA]);
        let mut core = vec![7u8; 1500];
        core[BLOCKLIST..BLOCKLIST + 12].copy_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 8]);
        (boot, core)
    }

    #[test]
    fn patches_boot_sector_and_blocklist() {
        let (boot, core) = fake_images();
        let b = bios_install(&boot, &core, 1, 2048).unwrap();
        assert_eq!(b.boot_code.len(), 440);
        assert_eq!(&b.boot_code[KERNEL_SECTOR..KERNEL_SECTOR + 8], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b.boot_code[DRIVE_CHECK..DRIVE_CHECK + 2], &[NOP, NOP]);
        assert_eq!(b.core.len(), 1536);
        assert_eq!(&b.core[BLOCKLIST..BLOCKLIST + 12], &[2, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x20, 8]);
        assert!(bios_install(&boot, &core, 1, 3).unwrap_err().contains("only 2 fit"));
        let mut other = core.clone();
        other[BLOCKLIST + 10] = 0;
        assert!(bios_install(&boot, &other, 1, 2048).unwrap_err().contains("segment"));
        assert!(bios_install(&boot[..511], &core, 1, 2048).is_err());
    }

    #[test]
    fn grub_cfg_is_the_pygrub_subset() {
        let entry = MenuEntry {
            title: "Debian GNU/Linux 12 (bookworm) it's".into(),
            kernel: "/boot/vmlinuz-6.1".into(),
            initrd: "/boot/initrd.img-6.1".into(),
            cmdline: "root=UUID=x ro console=ttyS0,115200n8".into(),
        };
        let cfg = grub_cfg(&entry, 1);
        assert!(cfg.contains("set default=0\nset timeout=1\n"));
        assert!(cfg.contains("menuentry 'Debian GNU/Linux 12 (bookworm) its' {\n"));
        assert!(cfg.contains("\tlinux /boot/vmlinuz-6.1 root=UUID=x ro console=ttyS0,115200n8\n"));
        assert!(cfg.ends_with("\tinitrd /boot/initrd.img-6.1\n}\n"));
        assert!(is_plain_kernel_arg("console=ttyS0,115200n8"));
        assert!(
            !is_plain_kernel_arg("a;b") && !is_plain_kernel_arg("$x") && !is_plain_kernel_arg("")
        );
    }

    #[test]
    fn overlay_replaces_bytes_and_zero_knowledge() {
        let mut disk = Overlay { inner: vec![0u8; 4096], offset: 512, bytes: vec![9; 600] };
        let mut buf = vec![1u8; 1024];
        disk.read_exact_at(0, &mut buf).unwrap();
        assert!(buf[..512].iter().all(|b| *b == 0) && buf[512..].iter().all(|b| *b == 9));
        disk.read_exact_at(1024, &mut buf[..200]).unwrap();
        assert_eq!(&buf[..88], &[9; 88][..]);
        assert_eq!(buf[88], 0);
        assert!(!disk.known_zero(0, 513).unwrap());
        assert!(!disk.known_zero(2048, 512).unwrap(), "Vec sources know nothing");
    }
}
