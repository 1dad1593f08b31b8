//! The ubuntu flavor: a Debian-family image as a bootable XenServer guest.
//!
//! [`build`] runs these steps, failing before any large write when the image or the build
//! host cannot make a bootable guest:
//!
//! 1. the distribution from os-release must be Debian-family ([`crate::osrelease`]), `/sbin/init`
//!    must be systemd, and a kernel with an initramfs must be in `/boot` or given
//!    ([`crate::kernel`]);
//! 2. guest fix-ups ([`crate::fixups`]) and the image's command as a service
//!    ([`crate::service`]) change the merged tree; `/boot/grub/grub.cfg` is added;
//! 3. GRUB's core image is linked ([`crate::grub`]);
//! 4. the tree is written as ext4 to a scratch file, then the disk is assembled around it with
//!    `xspack_disk::partition` and written as raw, VHD, qcow2 and XVA.
//!
//! # Disk layouts (sizes are multiples of 2 MiB)
//!
//! ```text
//! BIOS (MBR):  LBA 0 GRUB boot.img + table | LBA 1.. core image | 1 MiB: p1 ext4 root, active, 0x83
//! UEFI (GPT):  tables | 1 MiB: p1 ext4 root (Linux filesystem) | p2 ESP, FAT16, 32 MiB | backup GPT
//! ```
//!
//! The root partition comes first in both, so pygrub finds `/boot/grub/grub.cfg` on it
//! (`docs/formats/boot.md` section "How pygrub finds the partition"); UEFI firmware finds the
//! ESP by its type GUID.
//!
//! # Kernel command line
//!
//! `root=UUID=<uuid> ro console=tty0 console=ttyS0,115200n8 net.ifnames=0
//! systemd.firstboot=off`, then [`UbuntuOptions::kernel_args`]. `systemd.firstboot=off` keeps
//! `systemd-firstboot.service` (enabled in Debian 12) from prompting on the console on the
//! first boot that the empty machine-id causes.

use camino::Utf8PathBuf;
use xspack_disk::partition::{DiskBuilder, Partition, PartitionType};
use xspack_image::{DiskFormat, RootfsBuild, RootfsOptions, RootfsSummary, formats};
use xspack_io::Progress;
use xspack_manifest::{Output, OutputDir};
use xspack_oci::{EntryMeta, Image, MergedTree};

use crate::efi::{self, Chain, EspFiles, SecureBoot};
use crate::fixups::{FixupOptions, FixupSummary};
use crate::grub::{self, GrubTools, MenuEntry, Platform};
use crate::kernel::{self, BootFiles, PYGRUB_MAX_FILE};
use crate::osrelease::{self, Family, OsRelease};
use crate::{Error, fixups, service};

/// Size of the EFI system partition.
pub const ESP_SIZE: u64 = 32 << 20;
/// The unit of disk sizes (the VHD block and XenServer VDI unit).
pub const DISK_ALIGN: u64 = 2 << 20;
/// Where the root partition starts.
const FIRST_PARTITION: u64 = 1 << 20;
/// The fixed part of the kernel command line, after `root=` and `ro`.
pub const CONSOLE_ARGS: &str = "console=tty0 console=ttyS0,115200n8";

/// The firmware the guest boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BootMode {
    /// Legacy BIOS: GRUB in the MBR of an MBR disk. XenServer's default HVM firmware.
    #[default]
    Bios,
    /// UEFI: an EFI system partition on a GPT disk, holding the chain
    /// [`UbuntuOptions::secure_boot`] chooses ([`crate::efi`]).
    Uefi,
}

/// Options of [`build`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UbuntuOptions {
    /// Base name of the outputs (`NAME.raw`, `NAME.vhd`, ...), also the VM name in the XVA.
    pub name: String,
    /// Formats to write.
    pub formats: Vec<DiskFormat>,
    /// Firmware.
    pub boot: BootMode,
    /// For UEFI: the Secure Boot-ready chain or GRUB linked by xspack ([`crate::efi`]).
    pub secure_boot: SecureBoot,
    /// Disk size in bytes, a multiple of 2 MiB; `None`: the content plus a fifth (at least
    /// 16 MiB) of free space, plus the partition table and, for UEFI, the ESP.
    pub disk_size: Option<u64>,
    /// Host name; `None` uses [`name`](Self::name) when it is a valid host name, else `guest`.
    pub hostname: Option<String>,
    /// A kernel on the build host to use instead of the image's (needs [`initrd`](Self::initrd)).
    pub kernel: Option<Utf8PathBuf>,
    /// The initramfs for [`kernel`](Self::kernel).
    pub initrd: Option<Utf8PathBuf>,
    /// Extra kernel arguments, appended (letters, digits and `=,._:/+@-` only).
    pub kernel_args: Vec<String>,
    /// Whether the image's Entrypoint/Cmd becomes a service.
    pub service: bool,
    /// The service's unit name, without `.service`.
    pub service_name: String,
    /// Whether to configure DHCP on the first NIC.
    pub network: bool,
    /// GRUB's build-host files.
    pub grub: GrubTools,
    /// Seconds GRUB shows its menu.
    pub grub_timeout: u32,
    /// Memory of the XVA's VM in bytes.
    pub memory: u64,
    /// vCPUs of the XVA's VM.
    pub vcpus: u32,
    /// Timestamp of every file written (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
}

impl UbuntuOptions {
    /// Defaults: BIOS, automatic size, the service and DHCP on, 1 GiB and 1 vCPU.
    pub fn new(name: impl Into<String>, formats: Vec<DiskFormat>, source_date_epoch: u64) -> Self {
        UbuntuOptions {
            name: name.into(),
            formats,
            boot: BootMode::Bios,
            secure_boot: SecureBoot::Auto,
            disk_size: None,
            hostname: None,
            kernel: None,
            initrd: None,
            kernel_args: Vec::new(),
            service: true,
            service_name: "xspack-app".into(),
            network: true,
            grub: GrubTools::default(),
            grub_timeout: 1,
            memory: 1 << 30,
            vcpus: 1,
            source_date_epoch,
        }
    }
}

/// What [`build`] made.
#[derive(Debug, Clone)]
pub struct GuestSummary {
    /// The image's os-release.
    pub os: OsRelease,
    /// Its family.
    pub family: Family,
    /// Kernel and initramfs.
    pub boot_files: BootFiles,
    /// The kernel command line.
    pub cmdline: String,
    /// The firmware.
    pub boot: BootMode,
    /// The boot chain: for UEFI, [`Chain::Shim`] when the guest is Secure Boot-ready.
    pub chain: Chain,
    /// The root filesystem's UUID.
    pub root_uuid: String,
    /// What the fix-ups did.
    pub fixups: FixupSummary,
    /// The service unit name, if one was made.
    pub service: Option<String>,
    /// The root filesystem.
    pub rootfs: RootfsSummary,
    /// Where the partitions went.
    pub layout: xspack_disk::partition::DiskLayout,
    /// The artifacts, in format order.
    pub outputs: Vec<Output>,
    /// Things the guest may lack, one sentence each.
    pub notes: Vec<String>,
}

/// The domain of a guest's ids: unlike the bare image's, so a guest and a bare filesystem of
/// one image never share an id.
const GUEST_IDS: &[u8] = b"xspack\0guest\0";

/// Identities derived from the image, so the same image gives the same disk.
fn derive(image: &Image, purpose: &str) -> [u8; 32] {
    xspack_image::identity::image_digest(GUEST_IDS, purpose, image).0
}

fn uuid(image: &Image, purpose: &str) -> [u8; 16] {
    xspack_io::Uuid::from_digest(&xspack_io::Sha256Digest(derive(image, purpose))).0
}

fn check_options(opts: &UbuntuOptions) -> Result<(), Error> {
    if let Some(size) = opts.disk_size
        && (size % DISK_ALIGN != 0 || size < 64 << 20)
    {
        return Err(Error::Options(format!(
            "disk size {size}: must be a multiple of 2 MiB and at least 64 MiB"
        )));
    }
    if opts.boot == BootMode::Bios && opts.secure_boot == SecureBoot::Require {
        return Err(Error::Options(
            "Secure Boot needs UEFI: use --boot uefi with --secure-boot require".into(),
        ));
    }
    if opts.kernel.is_some() != opts.initrd.is_some() {
        return Err(Error::Options("a kernel and an initrd must be given together".into()));
    }
    if let Some(arg) = opts.kernel_args.iter().find(|a| !grub::is_plain_kernel_arg(a)) {
        return Err(Error::Options(format!(
            "kernel argument {arg:?}: use letters, digits and =,._:/+@- only"
        )));
    }
    let unit_ok = !opts.service_name.is_empty()
        && opts.service_name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if !unit_ok {
        return Err(Error::Options(format!(
            "service name {:?} is not a unit name",
            opts.service_name
        )));
    }
    Ok(())
}

/// Refuses an image whose `/sbin/init` is not systemd.
fn check_init(tree: &mut MergedTree) -> Result<(), Error> {
    let systemd = ["lib/systemd/systemd", "usr/lib/systemd/systemd"];
    let problem = if tree.resolve(b"sbin/init").is_none() {
        "the image has no /sbin/init"
    } else if !systemd.iter().any(|p| tree.resolve(p.as_bytes()).is_some()) {
        "the image's /sbin/init is not systemd"
    } else {
        return Ok(());
    };
    Err(Error::NoInit {
        problem: problem.into(),
        dockerfile: Family::dockerfile_line("systemd-sysv"),
    })
}

/// The tree after the fix-ups, and what they decided.
struct Prepared {
    os: OsRelease,
    family: Family,
    boot_files: BootFiles,
    cmdline: String,
    root_uuid: [u8; 16],
    fixups: FixupSummary,
    service: Option<String>,
    notes: Vec<String>,
}

/// Steps 1 and 2: checks the image and changes the tree into the guest's.
fn prepare(
    image: &Image,
    tree: &mut MergedTree,
    opts: &UbuntuOptions,
    mtime: i64,
) -> Result<Prepared, Error> {
    let (os, family) = osrelease::detect(image, tree)?;
    check_init(tree)?;
    let boot_files = match (&opts.kernel, &opts.initrd) {
        (Some(k), Some(i)) => kernel::put_host_files(tree, k, i, mtime)?,
        _ => kernel::find(tree, family)?,
    };
    let mut notes = Vec::new();
    if boot_files.sizes.0.max(boot_files.sizes.1) > PYGRUB_MAX_FILE {
        notes.push("the kernel or initrd exceeds 128 MiB: XenServer's pygrub refuses it".into());
    }
    let root_uuid = uuid(image, "root filesystem uuid");
    let root_text = xspack_disk::Uuid::from_bytes(root_uuid).to_string();
    let hostname = opts.hostname.clone().unwrap_or_else(|| {
        if fixups::check_hostname(&opts.name).is_ok() { opts.name.clone() } else { "guest".into() }
    });
    let fix_opts = FixupOptions {
        root_uuid: &root_text,
        hostname: &hostname,
        network: opts.network,
        family,
        mtime,
    };
    let fixups = fixups::apply(tree, &fix_opts)?;
    notes.extend(fixups.notes.iter().cloned());
    let mut service = None;
    if opts.service {
        // The digest, not the source path: the same image gives the same bytes from anywhere.
        let description = format!("Command of image {} (xspack)", image.digest);
        if let Some(unit) =
            service::render(tree, &image.config, &opts.service_name, &description, mtime)?
        {
            service::install(tree, &unit, mtime)?;
            service = Some(unit.name);
        } else {
            notes.push("the image runs no command (or only a shell): no service".into());
        }
    }
    let mut cmdline =
        format!("root=UUID={root_text} ro {CONSOLE_ARGS} net.ifnames=0 systemd.firstboot=off");
    for arg in &opts.kernel_args {
        cmdline.push(' ');
        cmdline.push_str(arg);
    }
    let entry = MenuEntry {
        title: os.pretty_name.clone(),
        kernel: boot_files.kernel.clone(),
        initrd: boot_files.initrd.clone(),
        cmdline: cmdline.clone(),
    };
    let cfg = grub::grub_cfg(&entry, opts.grub_timeout).into_bytes();
    let meta = EntryMeta { mode: 0o644, mtime: (mtime, 0), ..EntryMeta::default() };
    tree.put_file(b"boot/grub/grub.cfg", cfg, meta)?;
    Ok(Prepared { os, family, boot_files, cmdline, root_uuid, fixups, service, notes })
}

/// Step 3: links GRUB for the firmware, or finds the signed chain in the image (before the
/// filesystem is written: a missing GRUB fails in a second, not after gigabytes).
fn make_loader(
    opts: &UbuntuOptions,
    root_uuid: &str,
    rootfs: &mut RootfsBuild<'_>,
    prepared: &mut Prepared,
) -> Result<Loader, Error> {
    let early = grub::early_config(root_uuid);
    if opts.boot == BootMode::Uefi && opts.secure_boot != SecureBoot::Off {
        let kernel = &prepared.boot_files.kernel;
        match efi::find_signed_chain(rootfs, prepared.family, kernel)? {
            Ok(chain) => {
                let cfg = efi::signed_grub_cfg(root_uuid);
                return Ok(Loader::Uefi(EspFiles::Shim(chain, cfg)));
            }
            Err(missing) if opts.secure_boot == SecureBoot::Require => {
                return Err(Error::SecureBoot { missing: missing.join("; ") });
            }
            Err(missing) => prepared.notes.push(format!(
                "not Secure Boot-ready, so the guest boots with Secure Boot off: the image lacks {}",
                missing.join("; ")
            )),
        }
    }
    Ok(match opts.boot {
        BootMode::Bios => {
            let (path, boot_img) = grub::boot_img(&opts.grub)?;
            let core = grub::mkimage(&opts.grub, Platform::I386Pc, &early)?;
            let bios = grub::bios_install(&boot_img, &core, 1, FIRST_PARTITION / 512)
                .map_err(|reason| Error::BootImage { file: path, reason })?;
            Loader::Bios(bios)
        }
        BootMode::Uefi => {
            Loader::Uefi(EspFiles::Grub(grub::mkimage(&opts.grub, Platform::X86_64Efi, &early)?))
        }
    })
}

/// The VM of the XVA.
fn vm_spec(image: &Image, opts: &UbuntuOptions, chain: Chain) -> xspack_xva::VmSpec {
    let xva_uuid = |p: &str| xspack_xva::Uuid::from_seed(&derive(image, p));
    let mut vm = xspack_xva::VmSpec::new(opts.name.clone(), xva_uuid("vm uuid"));
    vm.description = format!(
        "{} built by xspack (ubuntu flavor) from {}",
        opts.name,
        image.source.portable_name()
    );
    vm.sr_uuid = xva_uuid("sr uuid");
    vm.memory = xspack_xva::Memory::fixed(opts.memory);
    vm.vcpus_max = opts.vcpus;
    vm.vcpus_at_startup = opts.vcpus;
    vm.boot = match (opts.boot, chain) {
        (BootMode::Bios, _) => xspack_xva::BootMode::Bios,
        (BootMode::Uefi, Chain::Grub) => xspack_xva::BootMode::Uefi,
        (BootMode::Uefi, Chain::Shim) => xspack_xva::BootMode::UefiSecureBootAuto,
    };
    // The size is set from the disk when it is written.
    vm.disks.push(xspack_xva::DiskSpec::new(0, xva_uuid("vdi uuid"), xva_uuid("vbd uuid")));
    vm
}

/// Reads and merges `image`'s layers and builds the guest disk into `out`. The root
/// filesystem is written in a single pass ([`RootfsBuild`]): every file is written out while
/// its layer is first read, the fix-ups change the merged tree, then the filesystem's
/// metadata is written around the files.
pub fn build(
    image: &Image,
    out: &mut OutputDir,
    opts: &UbuntuOptions,
    progress: &dyn Progress,
) -> Result<GuestSummary, Error> {
    check_options(opts)?;
    let ext4_path = out.scratch_path(&format!("{}.root.ext4", opts.name))?;
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&ext4_path)
        .map_err(|e| Error::io("creating", &ext4_path, e))?;
    let scratch = out.scratch_dir()?;
    let rootfs =
        RootfsBuild::merge(image, (file, opts.disk_size), scratch.as_std_path(), false, progress)?;
    build_from(image, rootfs, &ext4_path, out, opts, progress)
}

/// Fixes up the merged tree, writes the root filesystem into `ext4_path` and the disk around
/// it into `out`.
fn build_from(
    image: &Image,
    mut rootfs: RootfsBuild<'_>,
    ext4_path: &camino::Utf8Path,
    out: &mut OutputDir,
    opts: &UbuntuOptions,
    progress: &dyn Progress,
) -> Result<GuestSummary, Error> {
    let mtime = i64::try_from(opts.source_date_epoch).unwrap_or(i64::MAX);
    let mut prepared = prepare(image, rootfs.tree_mut(), opts, mtime)?;
    let root_uuid = xspack_disk::Uuid::from_bytes(prepared.root_uuid).to_string();
    let loader = make_loader(opts, &root_uuid, &mut rootfs, &mut prepared)?;
    let chain = match &loader {
        Loader::Bios(_) => Chain::Grub,
        Loader::Uefi(esp) => esp.chain(),
    };

    // Step 4: the filesystem, then the disk around it.
    let mut rootfs_opts = RootfsOptions::default();
    rootfs_opts.size = opts.disk_size.map(|d| match opts.boot {
        BootMode::Bios => d - FIRST_PARTITION,
        BootMode::Uefi => d - 2 * FIRST_PARTITION - ESP_SIZE,
    });
    rootfs_opts.label = "root".into();
    rootfs_opts.source_date_epoch = opts.source_date_epoch;
    rootfs_opts.uuid = Some(prepared.root_uuid);
    let (file, rootfs) = rootfs.write(&rootfs_opts, progress)?;
    drop(file);
    let root = xspack_disk::FileSource::open(ext4_path)?;
    let derived = formats::DiskOutputs {
        name: &opts.name,
        formats: &opts.formats,
        vhd_uuid: xspack_disk::Uuid::from_bytes(uuid(image, "vhd uuid")),
        vm: vm_spec(image, opts, chain),
        epoch: opts.source_date_epoch,
    };
    let four = |purpose: &str| {
        let d = derive(image, purpose);
        u32::from_le_bytes([d[0], d[1], d[2], d[3]])
    };
    let (layout, outputs) = match loader {
        Loader::Bios(bios) => {
            let root_part = match opts.disk_size {
                Some(_) => Partition::fill(PartitionType::LINUX_FILESYSTEM),
                None => Partition::new(PartitionType::LINUX_FILESYSTEM, rootfs.size),
            };
            // A zero signature reads as "none" to some tools.
            let mut builder = DiskBuilder::mbr(four("mbr signature") | 1)
                .boot_code(&bios.boot_code)
                .partition(root_part.bootable(true).source(root));
            if let Some(size) = opts.disk_size {
                builder = builder.size(size);
            }
            let disk = builder.build()?;
            let layout = disk.layout().clone();
            let overlay =
                grub::Overlay { inner: disk, offset: bios.core_lba * 512, bytes: bios.core };
            (layout, formats::write_disk(overlay, out, &derived, progress)?)
        }
        Loader::Uefi(esp) => {
            let esp = esp.partition(ESP_SIZE, four("esp volume id"), opts.source_date_epoch)?;
            let guid = |p| xspack_disk::Uuid::from_bytes(uuid(image, p));
            let mut builder = DiskBuilder::gpt(guid("gpt disk guid"))
                .partition(
                    Partition::new(PartitionType::LINUX_FILESYSTEM, rootfs.size)
                        .guid(guid("gpt root guid"))
                        .name("root")
                        .source(root),
                )
                .partition(
                    Partition::new(PartitionType::EFI_SYSTEM, ESP_SIZE)
                        .guid(guid("gpt esp guid"))
                        .name("EFI system partition")
                        .source(esp),
                );
            if let Some(size) = opts.disk_size {
                builder = builder.size(size);
            }
            let disk = builder.build()?;
            let layout = disk.layout().clone();
            (layout, formats::write_disk(disk, out, &derived, progress)?)
        }
    };
    std::fs::remove_file(ext4_path).map_err(|e| Error::io("removing", ext4_path, e))?;
    out.set_boot(xspack_manifest::Boot {
        firmware: match opts.boot {
            BootMode::Bios => xspack_manifest::Firmware::Bios,
            BootMode::Uefi => xspack_manifest::Firmware::Uefi,
        },
        chain: match chain {
            Chain::Grub => xspack_manifest::BootChain::Grub,
            Chain::Shim => xspack_manifest::BootChain::Shim,
        },
        secure_boot: chain == Chain::Shim,
    });
    let Prepared { os, family, boot_files, cmdline, fixups, service, notes, .. } = prepared;
    Ok(GuestSummary {
        os,
        family,
        boot_files,
        cmdline,
        boot: opts.boot,
        chain,
        root_uuid,
        fixups,
        service,
        rootfs,
        layout,
        outputs,
        notes,
    })
}

/// The boot loader, ready to place.
enum Loader {
    Bios(grub::BiosBoot),
    Uefi(EspFiles),
}
