//! `xspack image build`: container images to guest disk images.

mod coreos;

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use camino::{Utf8Path, Utf8PathBuf};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::HumanBytes;
use serde_json::json;
use xspack_image::{BuildRequest, DiskFormat, RootfsOptions};
use xspack_manifest::{Input, InputDigest, OutputDir};
use xspack_oci::{Image, ImageSource};

use crate::exit::{ClassifyResult as _, usage};
use crate::outputs;
use crate::ui::Ui;

/// Arguments of `xspack image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// The `image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build a disk image from container images
    ///
    /// The layers are read as streams (blob and uncompressed digests verified), merged with the
    /// OCI whiteout rules, and written straight into an ext4 filesystem: nothing is extracted,
    /// nothing needs root. The output directory gets the image, SHA256SUMS and manifest.json.
    Build(Box<BuildArgs>),
}

/// What kind of guest to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Flavor {
    /// The image's root filesystem as a plain ext4 filesystem image, nothing added
    None,
    /// A bootable Debian or Ubuntu guest: GRUB, fstab, serial console, DHCP, the image's
    /// Entrypoint as a service
    Ubuntu,
    /// A Flatcar or Fedora CoreOS container host (--base) running the images as containers,
    /// configured by Ignition from a config-2 drive
    Coreos,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::None => "none",
            Flavor::Ubuntu => "ubuntu",
            Flavor::Coreos => "coreos",
        }
    }
}

/// Container engine of a CoreOS guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Runtime {
    /// Docker (Flatcar's default)
    Docker,
    /// Podman (Fedora CoreOS's default)
    Podman,
}

/// Firmware of a bootable guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Boot {
    /// Legacy BIOS: GRUB in the MBR (XenServer's default HVM firmware)
    Bios,
    /// UEFI: GRUB on an EFI system partition of a GPT disk
    Uefi,
}

/// Whether a UEFI guest gets the Secure Boot-ready chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecureBoot {
    /// The image's signed shim, GRUB and kernel when it has them (shim-signed,
    /// grub-efi-amd64-signed), else GRUB linked by xspack with a note
    Auto,
    /// The signed chain, or fail naming what the image lacks
    Require,
    /// GRUB linked by xspack: boots with Secure Boot off only
    Off,
}

/// What becomes of the image's Entrypoint and Cmd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// A systemd service started at boot
    Entrypoint,
    /// Nothing
    None,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Format {
    /// Raw image (`NAME.raw`)
    Raw,
    /// Dynamic VHD as blktap writes it, for `xe vdi-import format=vhd` (`NAME.vhd`)
    Vhd,
    /// Sparse qcow2 version 3 (`NAME.qcow2`)
    Qcow2,
    /// XenServer VM export with the disk, for `xe vm-import` (`NAME.xva`)
    Xva,
}

impl From<Format> for DiskFormat {
    fn from(f: Format) -> Self {
        match f {
            Format::Raw => DiskFormat::Raw,
            Format::Vhd => DiskFormat::Vhd,
            Format::Qcow2 => DiskFormat::Qcow2,
            Format::Xva => DiskFormat::Xva,
        }
    }
}

/// Arguments of `xspack image build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Container image sources (see the help text).
    #[arg(
        required_unless_present = "spec",
        value_name = "SOURCE",
        help = "Container image: docker-archive:PATH[:REPO:TAG], oci:DIR[:REF], oci-archive:PATH[:REF], or a path whose kind is detected",
        long_help = "Container image: docker-archive:PATH[:REPO:TAG], oci:DIR[:REF], oci-archive:PATH[:REF],\nor a path whose kind is detected"
    )]
    pub sources: Vec<String>,
    /// Guest flavor
    #[arg(long, value_enum)]
    pub flavor: Flavor,
    /// Output format; repeat for several
    #[arg(long = "format", value_enum, default_value = "raw")]
    pub formats: Vec<Format>,
    /// Output directory [default: dist/NAME]
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<Utf8PathBuf>,
    /// Filesystem (flavor none), disk (ubuntu) or base disk (coreos) size, e.g. 512M or 8G
    /// [default: the content plus a fifth, at least 16 MiB; coreos: the base image's]
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// Firmware of a bootable guest
    #[arg(long, value_enum, default_value = "bios")]
    pub boot: Boot,
    /// UEFI guests: boot through the distribution's signed shim and GRUB, ready for Secure Boot
    #[arg(long, value_enum, default_value = "auto")]
    pub secure_boot: SecureBoot,
    /// A kernel on this host to boot instead of the image's (with --initrd)
    #[arg(long, value_name = "FILE", requires = "initrd")]
    pub kernel: Option<Utf8PathBuf>,
    /// The initramfs for --kernel
    #[arg(long, value_name = "FILE", requires = "kernel")]
    pub initrd: Option<Utf8PathBuf>,
    /// Run the image's Entrypoint/Cmd as a systemd service
    #[arg(long, value_enum, default_value = "entrypoint")]
    pub service: Service,
    /// cloud-init user-data to write to a NoCloud `cidata` drive (NAME-seed.img)
    #[arg(long, value_name = "FILE")]
    pub seed: Option<Utf8PathBuf>,
    /// coreos: the Flatcar or Fedora CoreOS OpenStack raw image (.img, .gz, .bz2, .xz or .zst)
    #[arg(long, value_name = "FILE")]
    pub base: Option<Utf8PathBuf>,
    /// coreos: a guest.toml naming the containers (image, ports, env, volumes, restart) and the
    /// guest's settings
    #[arg(long, value_name = "FILE")]
    pub spec: Option<Utf8PathBuf>,
    /// coreos: an SSH public key file for the `core` user; repeat for several
    #[arg(long = "ssh-key", value_name = "FILE")]
    pub ssh_keys: Vec<Utf8PathBuf>,
    /// coreos: host name [default: the name]
    #[arg(long)]
    pub hostname: Option<String>,
    /// coreos: memory of the VM, e.g. 4G [default: 2G]
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// coreos: virtual CPUs [default: 2]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub vcpus: Option<u32>,
    /// coreos: container engine [default: docker on Flatcar, podman on Fedora CoreOS]
    #[arg(long, value_enum)]
    pub runtime: Option<Runtime>,
    /// Base name of the outputs [default: from the image]
    #[arg(long)]
    pub name: Option<String>,
    /// Replace the output directory if it exists (only an empty one or a previous build)
    #[arg(long)]
    pub force: bool,
}

/// The options only `--flavor ubuntu` takes.
const UBUNTU_ONLY: &str =
    "--boot, --secure-boot, --kernel, --initrd, --service and --seed apply to --flavor ubuntu";

/// Whether any option of [`UBUNTU_ONLY`] is set.
fn ubuntu_options_set(args: &BuildArgs) -> bool {
    args.boot != Boot::Bios
        || args.secure_boot != SecureBoot::Auto
        || args.kernel.is_some()
        || args.seed.is_some()
        || args.service != Service::Entrypoint
}

/// Parses `123`, `512K`, `512M`, `8G` or `1T` (binary multiples) into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let upper = text.trim().to_ascii_uppercase();
    let trimmed = upper.strip_suffix("IB").or_else(|| upper.strip_suffix('B')).unwrap_or(&upper);
    let (digits, shift) = match trimmed.chars().last() {
        Some('K') => (&trimmed[..trimmed.len() - 1], 10),
        Some('M') => (&trimmed[..trimmed.len() - 1], 20),
        Some('G') => (&trimmed[..trimmed.len() - 1], 30),
        Some('T') => (&trimmed[..trimmed.len() - 1], 40),
        _ => (trimmed, 0),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size like 512M or 8G"))?;
    let bytes = n
        .checked_shl(shift)
        .filter(|b| b >> shift == n)
        .ok_or_else(|| format!("{text:?} is too large"))?;
    if bytes == 0 || bytes % 4096 != 0 {
        return Err(format!("{text:?} is not a positive multiple of 4 KiB"));
    }
    Ok(bytes)
}

/// A file-name-safe default name for an image source.
pub fn default_name(source: &ImageSource) -> String {
    let stem = source.path().file_stem().unwrap_or("image");
    let cleaned: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
        .collect();
    if cleaned.is_empty() { "image".into() } else { cleaned }
}

pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        return Err(
            usage(format!("--name {name:?}: use letters, digits, '.', '_' and '-' only")).into()
        );
    }
    Ok(())
}

/// Runs `xspack image`.
pub fn run(args: ImageArgs, ui: &Ui, source_date_epoch: u64) -> Result<ExitCode> {
    match args.command {
        ImageCommand::Build(build) => run_build(&build, ui, source_date_epoch),
    }
}

fn run_build(args: &BuildArgs, ui: &Ui, source_date_epoch: u64) -> Result<ExitCode> {
    let coreos_only = args.base.is_some()
        || args.spec.is_some()
        || !args.ssh_keys.is_empty()
        || args.hostname.is_some()
        || args.memory.is_some()
        || args.vcpus.is_some()
        || args.runtime.is_some();
    if args.flavor == Flavor::Coreos {
        return coreos::run(args, ui, source_date_epoch);
    }
    if coreos_only {
        return Err(usage(
            "--base, --spec, --ssh-key, --hostname, --memory, --vcpus and --runtime apply to \
             --flavor coreos",
        )
        .into());
    }
    if args.sources.len() != 1 {
        return Err(usage(format!(
            "--flavor {} takes exactly one SOURCE, got {}",
            args.flavor.name(),
            args.sources.len()
        ))
        .into());
    }
    if args.flavor == Flavor::None && ubuntu_options_set(args) {
        return Err(usage(UBUNTU_ONLY).into());
    }
    if args.flavor == Flavor::Ubuntu
        && args.boot == Boot::Bios
        && args.secure_boot == SecureBoot::Require
    {
        return Err(usage(
            "--secure-boot require needs --boot uefi: Secure Boot is a UEFI feature",
        )
        .into());
    }
    if let Some(name) = &args.name {
        check_name(name)?;
    }
    let source_text = &args.sources[0];
    let source = ImageSource::parse(source_text).classified()?;
    let name = args.name.clone().unwrap_or_else(|| default_name(&source));
    let dest = args.output.clone().unwrap_or_else(|| Utf8PathBuf::from("dist").join(&name));
    let image = Image::open(&source).classified().with_context(|| source_text.clone())?;
    let mut out = outputs::open(&dest, source_date_epoch, args.force, &file_inputs(args))?;
    add_image_inputs(&mut out, &image, "");
    let artifacts = match args.flavor {
        Flavor::None => build_plain(args, &image, &mut out, &name, source_date_epoch, ui)
            .with_context(|| source_text.clone())?,
        Flavor::Ubuntu => build_ubuntu(args, &image, &mut out, &name, source_date_epoch, ui)
            .with_context(|| source_text.clone())?,
        Flavor::Coreos => unreachable!("handled above"),
    };
    outputs::commit(ui, out, &artifacts, json!({ "name": name, "flavor": args.flavor.name() }))?;
    Ok(ExitCode::SUCCESS)
}

/// The files and directories an image build reads, which its output may not replace: the
/// sources' paths (those that parse) and every file option.
pub fn file_inputs(args: &BuildArgs) -> Vec<Utf8PathBuf> {
    let sources = args.sources.iter().filter_map(|s| ImageSource::parse(s).ok());
    let options = [&args.kernel, &args.initrd, &args.seed, &args.base, &args.spec];
    sources
        .map(|s| s.path().to_owned())
        .chain(options.into_iter().flatten().cloned())
        .chain(args.ssh_keys.iter().cloned())
        .collect()
}

/// Records `image` and its layers as inputs; `prefix` names the container they belong to.
pub fn add_image_inputs(out: &mut OutputDir, image: &Image, prefix: &str) {
    out.add_input(Input {
        name: format!("{prefix}{}", image.source.portable_name()),
        kind: kind_of(&image.source).into(),
        digest: InputDigest(image.digest.0),
        size: image.digest_size,
    });
    for layer in &image.layers {
        out.add_input(Input {
            name: format!("{prefix}layer {}", layer.index + 1),
            kind: "layer".into(),
            digest: InputDigest(layer.digest.unwrap_or(layer.diff_id).0),
            size: layer.size,
        });
    }
}

/// `--flavor none`: the filesystem image in every requested format.
fn build_plain(
    args: &BuildArgs,
    image: &Image,
    out: &mut OutputDir,
    name: &str,
    source_date_epoch: u64,
    ui: &Ui,
) -> Result<Vec<xspack_manifest::Output>> {
    let formats: Vec<DiskFormat> = args.formats.iter().copied().map(DiskFormat::from).collect();
    let mut opts = RootfsOptions::default();
    opts.size = args.size;
    opts.label = name.chars().take(16).collect();
    opts.source_date_epoch = source_date_epoch;
    let request = BuildRequest::new(name.to_owned(), formats, opts);
    let built = xspack_image::build(image, out, &request, ui.progress()).classified()?;
    let rootfs = &built.rootfs;
    ui.detail(&format!(
        "ext4: {} files ({}), {} inodes, {} layers, {}",
        rootfs.files,
        HumanBytes(rootfs.file_bytes),
        rootfs.inodes,
        rootfs.layers,
        HumanBytes(rootfs.size)
    ));
    Ok(built.outputs)
}

/// `--flavor ubuntu`: a bootable guest disk, and the seed drive when asked for.
fn build_ubuntu(
    args: &BuildArgs,
    image: &Image,
    out: &mut OutputDir,
    name: &str,
    source_date_epoch: u64,
    ui: &Ui,
) -> Result<Vec<xspack_manifest::Output>> {
    let formats: Vec<DiskFormat> = args.formats.iter().copied().map(DiskFormat::from).collect();
    let mut opts =
        xspack_guest::ubuntu::UbuntuOptions::new(name.to_owned(), formats, source_date_epoch);
    opts.boot = match args.boot {
        Boot::Bios => xspack_guest::ubuntu::BootMode::Bios,
        Boot::Uefi => xspack_guest::ubuntu::BootMode::Uefi,
    };
    opts.secure_boot = match args.secure_boot {
        SecureBoot::Auto => xspack_guest::efi::SecureBoot::Auto,
        SecureBoot::Require => xspack_guest::efi::SecureBoot::Require,
        SecureBoot::Off => xspack_guest::efi::SecureBoot::Off,
    };
    opts.disk_size = args.size;
    opts.kernel.clone_from(&args.kernel);
    opts.initrd.clone_from(&args.initrd);
    opts.service = args.service == Service::Entrypoint;
    let built = xspack_guest::ubuntu::build(image, out, &opts, ui.progress()).classified()?;
    ui.detail(&format!("kernel command line: {}", built.cmdline));
    if built.boot == xspack_guest::ubuntu::BootMode::Uefi {
        ui.detail(&match built.chain {
            xspack_guest::efi::Chain::Shim => {
                "boot chain: the image's signed shim, GRUB and kernel (Secure Boot-ready)"
                    .to_owned()
            }
            xspack_guest::efi::Chain::Grub => {
                "boot chain: GRUB linked by xspack (boots with Secure Boot off)".to_owned()
            }
        });
    }
    for note in &built.notes {
        ui.warn(note);
    }
    let mut outputs = built.outputs;
    if let Some(seed) = &args.seed {
        outputs.push(write_seed(out, seed, name, source_date_epoch)?);
    }
    Ok(outputs)
}

/// Writes the cloud-init NoCloud drive `NAME-seed.img` holding `user_data`.
fn write_seed(
    out: &mut OutputDir,
    user_data: &Utf8Path,
    name: &str,
    epoch: u64,
) -> Result<xspack_manifest::Output> {
    let data = std::fs::read(user_data).with_context(|| format!("{user_data}: reading"))?;
    let opts = xspack_guest::seed::SeedOptions::new(format!("{name}-{epoch}"), data, epoch);
    let rel = xspack_manifest::RelPath::new(format!("{name}-seed.img"))?;
    let file = out.create_file(&rel).classified()?;
    let file = xspack_guest::seed::write_seed(&opts, file).classified()?;
    Ok(out.finish_file(file)?)
}

fn kind_of(source: &ImageSource) -> &'static str {
    match source {
        ImageSource::DockerArchive { .. } => "docker-archive",
        ImageSource::OciDir { .. } => "oci",
        ImageSource::OciArchive { .. } => "oci-archive",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("10").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
