//! The coreos flavor: a container host that runs the given images, like XenServer's old CoreOS
//! VMs (`docs/formats/templates.md` section "The CoreOS template", `docs/formats/config-drive.md`).
//!
//! The guest operating system is not built from the images: it is a stock Flatcar Container
//! Linux or Fedora CoreOS `OpenStack` image ([`base`]), whose kernel and initramfs belong to it and
//! are never swapped. xspack adds two disks beside it:
//!
//! - the data disk ([`data`]): the container images as `docker save` archives with their
//!   digests, in an ext4 filesystem labelled `xspack-data`;
//! - the `config-2` config drive ([`xspack_iso::config_drive`]) holding
//!   `openstack/latest/user_data`, an Ignition config ([`ignition`]) that mounts the data disk,
//!   loads the archives and runs each container as a systemd service, and
//!   `openstack/latest/meta_data.json` (UUID, host name and SSH keys, for Afterburn).
//!
//! The XVA holds the three disks (base bootable as device 0, data as 1, the read-only config
//! drive as 2, marked `config-drive=True` as xscontainer marked it), HVM BIOS boot as the old
//! CoreOS template had, and 2 GiB of memory by default. Raw, VHD and qcow2 outputs are written
//! for the base and data disks, with the config drive beside them as `NAME-config-2.iso`.

pub mod base;
pub mod data;
pub mod ignition;
pub mod spec;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_image::DiskFormat;
use xspack_io::{Progress, ProgressUnit};
use xspack_manifest::{Output, OutputDir};
use xspack_oci::Image;
use xspack_oci::docker_archive::DockerArchive;

use crate::Error;
pub use base::{BaseDisk, Distribution};
use data::{DataEntry, DataOptions, StoredArchive};
use ignition::{IgnitionOptions, Workload};
pub use spec::{ContainerSpec, GuestSpec, Restart, Runtime};
use xspack_image::formats::{create_raw, derive_image, finish_raw, write_xva};

/// Default memory of the VM: 2 GiB, what Fedora CoreOS asks for.
pub const DEFAULT_MEMORY: u64 = 2 << 30;
/// Default virtual CPUs.
pub const DEFAULT_VCPUS: u32 = 2;

/// How to build a CoreOS guest.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CoreosOptions {
    /// Base name of the outputs and VM name.
    pub name: String,
    /// Output formats.
    pub formats: Vec<DiskFormat>,
    /// Timestamp of everything written.
    pub source_date_epoch: u64,
    /// The base image file.
    pub base: Utf8PathBuf,
    /// Grow the base disk to this size (the root partition grows into it on first boot).
    pub base_size: Option<u64>,
    /// Host name [default: the name, if it is a valid host name].
    pub hostname: Option<String>,
    /// SSH public keys of the `core` user.
    pub ssh_keys: Vec<String>,
    /// Memory of the VM.
    pub memory: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Container engine [default: the distribution's].
    pub runtime: Option<Runtime>,
}

impl CoreosOptions {
    /// Options for `name` from `base`.
    pub fn new(
        name: impl Into<String>,
        formats: Vec<DiskFormat>,
        base: impl Into<Utf8PathBuf>,
        source_date_epoch: u64,
    ) -> Self {
        CoreosOptions {
            name: name.into(),
            formats,
            source_date_epoch,
            base: base.into(),
            base_size: None,
            hostname: None,
            ssh_keys: Vec::new(),
            memory: DEFAULT_MEMORY,
            vcpus: DEFAULT_VCPUS,
            runtime: None,
        }
    }
}

/// A container to run and its opened image.
#[derive(Debug)]
pub struct Container<'a> {
    /// The container.
    pub spec: ContainerSpec,
    /// Its image.
    pub image: &'a Image,
}

/// What a CoreOS build made.
#[derive(Debug)]
pub struct CoreosSummary {
    /// The base distribution.
    pub distribution: Distribution,
    /// SHA-256 and size of the base file.
    pub base_file: (xspack_io::Sha256Digest, u64),
    /// Base disk size in the file, and as written.
    pub base_size: (u64, u64),
    /// Data disk size.
    pub data_size: u64,
    /// The archives on the data disk.
    pub archives: Vec<StoredArchive>,
    /// The container engine.
    pub runtime: Runtime,
    /// The Ignition config.
    pub ignition: String,
    /// The outputs.
    pub outputs: Vec<Output>,
}

/// Checks an SSH public key line: `TYPE BASE64 [COMMENT]`.
pub fn check_ssh_key(key: &str) -> Result<(), Error> {
    let mut fields = key.split_whitespace();
    let kind = fields.next().unwrap_or_default();
    let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-");
    let blob = fields.next().unwrap_or_default();
    let base64 =
        blob.len() >= 16 && blob.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    if known && base64 && !key.contains(['\n', '\r']) {
        Ok(())
    } else {
        let shown: String = key.chars().take(24).collect();
        Err(Error::Options(format!(
            "SSH key {shown:?}...: not a public key line (TYPE BASE64 [COMMENT], e.g. from ~/.ssh/id_ed25519.pub)"
        )))
    }
}

/// A per-purpose identity from the build's inputs (the base file's name and size do not
/// enter: the same images and settings give the same bytes).
fn derive(images: &[Container<'_>], opts: &CoreosOptions, purpose: &str) -> [u8; 16] {
    let mut id = xspack_io::Derivation::new(b"xspack coreos\0")
        .field(purpose.as_bytes())
        .field(opts.name.as_bytes());
    for c in images {
        id = id.field(c.spec.name.as_bytes()).bytes(&c.image.digest.0.0);
    }
    id.uuid().0
}

/// What goes on the data disk and the config drive, worked out before any disk is written.
struct Prepared<'a> {
    entries: Vec<DataEntry<'a>>,
    runtime: Runtime,
    ignition: String,
    drive: Vec<u8>,
    vm_uuid: xspack_xva::Uuid,
}

/// Checks the containers and options, and makes the archives' plans, the Ignition config and
/// the config drive.
fn prepare<'a>(
    containers: &[Container<'a>],
    opts: &CoreosOptions,
    distribution: Distribution,
) -> Result<Prepared<'a>, Error> {
    let hostname = match &opts.hostname {
        Some(h) => h.clone(),
        None if crate::fixups::check_hostname(&opts.name).is_ok() => opts.name.clone(),
        None => "coreos".into(),
    };
    crate::fixups::check_hostname(&hostname)?;
    let runtime = opts.runtime.unwrap_or(match distribution {
        Distribution::Flatcar => Runtime::Docker,
        Distribution::FedoraCoreos => Runtime::Podman,
    });
    let mut entries = Vec::new();
    for c in containers {
        let tag = format!("xspack/{}:{}", c.spec.name, &c.image.digest.hex()[..12]);
        let archive = DockerArchive::new(c.image, &tag, opts.source_date_epoch)?;
        let file = format!("{}.tar", c.spec.name);
        entries.push(DataEntry { name: c.spec.name.clone(), file, tag, archive });
    }
    let workloads: Vec<Workload<'_>> = containers
        .iter()
        .zip(&entries)
        .map(|(c, e)| Workload { spec: &c.spec, tag: e.tag.clone(), archive: e.file.clone() })
        .collect();
    let ign_opts = IgnitionOptions { hostname: &hostname, ssh_keys: &opts.ssh_keys, runtime };
    let ignition = ignition::render(&ignition::config(&workloads, &ign_opts));
    let vm_uuid = xspack_xva::Uuid::from_bytes(derive(containers, opts, "vm uuid"));
    let public_keys: serde_json::Map<String, serde_json::Value> = opts
        .ssh_keys
        .iter()
        .enumerate()
        .map(|(i, k)| (format!("key-{i}"), serde_json::Value::from(k.as_str())))
        .collect();
    let meta = serde_json::json!({
        "uuid": vm_uuid.to_string(),
        "name": opts.name,
        "hostname": hostname,
        "launch_index": 0,
        "public_keys": public_keys,
    });
    let meta = format!("{meta:#}\n");
    let drive = xspack_iso::config_drive::image(
        &[("user_data", ignition.as_bytes()), ("meta_data.json", meta.as_bytes())],
        opts.source_date_epoch,
    )
    .map_err(|e| Error::ConfigDrive(Box::new(e)))?;
    Ok(Prepared { entries, runtime, ignition, drive, vm_uuid })
}

/// Builds the CoreOS guest running `containers` into `out`.
pub fn build(
    containers: &[Container<'_>],
    out: &mut OutputDir,
    opts: &CoreosOptions,
    progress: &dyn Progress,
) -> Result<CoreosSummary, Error> {
    // Everything cheap is checked before gigabytes are written.
    if containers.is_empty() {
        return Err(Error::Options("a CoreOS guest runs at least one container".into()));
    }
    let specs: Vec<ContainerSpec> = containers.iter().map(|c| c.spec.clone()).collect();
    for c in &specs {
        spec::check_container(c)
            .map_err(|r| Error::Options(format!("container {:?}: {r}", c.name)))?;
    }
    spec::check_unique(&specs).map_err(Error::Options)?;
    for key in &opts.ssh_keys {
        check_ssh_key(key)?;
    }
    let base = BaseDisk::open(&opts.base, opts.base_size)?;
    let distribution = base.distribution;
    let base_sizes = (base.original_size, base.size);
    let base_digest = base.file_digest.clone();
    let prepared = prepare(containers, opts, distribution)?;
    let epoch = opts.source_date_epoch;
    let mut formats = opts.formats.clone();
    formats.sort();
    formats.dedup();
    let keep_raw = formats.contains(&DiskFormat::Raw);
    let raw_name = |disk: &str| {
        let kind = if keep_raw { "raw" } else { "disk.raw" };
        format!("{}{disk}.{kind}", opts.name)
    };
    let mut outputs = Vec::new();

    // The base disk, streamed from the (compressed) file.
    let (mut raw, base_path) = create_raw(out, &raw_name(""), keep_raw)?;
    let task = progress.task("writing base disk", Some(base.size), ProgressUnit::Bytes);
    copy_base(&mut base.into_reader(), &opts.base, &mut raw, &base_path, &*task)?;
    task.finish();
    outputs.extend(finish_raw(out, raw)?);

    // The data disk.
    let data_opts = DataOptions {
        uuid: derive(containers, opts, "data uuid"),
        hash_seed: derive(containers, opts, "data hash seed"),
        source_date_epoch: epoch,
    };
    let (raw, data_path) = create_raw(out, &raw_name("-data"), keep_raw)?;
    let (raw, data_size, archives) =
        data::write_data_disk(&prepared.entries, &data_opts, raw, progress)?;
    outputs.extend(finish_raw(out, raw)?);

    // The config drive: an output unless only the XVA (which holds it) is asked for.
    let drive_name = format!("{}-config-2.iso", opts.name);
    let drive_path = if formats.iter().any(|f| *f != DiskFormat::Xva) {
        let rel = xspack_manifest::RelPath::new(drive_name.clone())?;
        outputs.push(out.write_file(&rel, &prepared.drive)?);
        out.path_of(&rel)
    } else {
        let path = out.scratch_path(&drive_name)?;
        std::fs::write(&path, &prepared.drive).map_err(|e| Error::io("writing", &path, e))?;
        path
    };

    for format in formats.iter().copied().filter(|f| *f != DiskFormat::Raw) {
        if format == DiskFormat::Xva {
            let sizes = [base_sizes.1, data_size, prepared.drive.len() as u64];
            let vm = vm_spec(containers, opts, prepared.vm_uuid, sizes);
            let paths: [&Utf8Path; 3] = [&base_path, &data_path, &drive_path];
            let name = format!("{}.xva", opts.name);
            outputs.push(write_xva(out, &name, &vm, &paths, epoch, progress)?);
            continue;
        }
        for (disk, path) in [("", &base_path), ("-data", &data_path)] {
            let uuid = derive(containers, opts, &format!("vhd uuid{disk}"));
            let uuid = xspack_disk::Uuid::from_bytes(uuid);
            let name = format!("{}{disk}.{}", opts.name, format.extension());
            outputs.push(derive_image(out, path, format, &name, uuid, epoch, progress)?);
        }
    }
    Ok(CoreosSummary {
        distribution,
        base_file: base_digest.get(),
        base_size: base_sizes,
        data_size,
        archives,
        runtime: prepared.runtime,
        ignition: prepared.ignition,
        outputs,
    })
}

/// Copies the base disk into `to`: a failed read is the base image's fault (truncated, corrupt
/// compression), a failed write is the output's (a full disk).
fn copy_base(
    from: &mut dyn std::io::Read,
    base: &Utf8Path,
    to: &mut dyn std::io::Write,
    to_path: &Utf8Path,
    task: &dyn xspack_io::ProgressTask,
) -> Result<(), Error> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::BaseImage { path: base.to_owned(), reason: e.to_string() });
            }
        };
        to.write_all(&buf[..n]).map_err(|e| Error::io("writing", to_path, e))?;
        task.advance(n as u64);
    }
}

/// The VM of the XVA: base, data and config drive, HVM BIOS.
fn vm_spec(
    containers: &[Container<'_>],
    opts: &CoreosOptions,
    uuid: xspack_xva::Uuid,
    sizes: [u64; 3],
) -> xspack_xva::VmSpec {
    let id = |p: &str| xspack_xva::Uuid::from_bytes(derive(containers, opts, p));
    let mut vm = xspack_xva::VmSpec::new(opts.name.clone(), uuid);
    let names: Vec<&str> = containers.iter().map(|c| c.spec.name.as_str()).collect();
    vm.description =
        format!("{} built by xspack (coreos flavor), running {}", opts.name, names.join(", "));
    vm.sr_uuid = id("sr uuid");
    vm.memory = xspack_xva::Memory::fixed(opts.memory);
    vm.vcpus_max = opts.vcpus;
    vm.vcpus_at_startup = opts.vcpus;
    vm.boot = xspack_xva::BootMode::Bios;
    let mut base = xspack_xva::DiskSpec::new(sizes[0], id("vdi base"), id("vbd base"));
    base.name = format!("{} base", opts.name);
    base.description = "CoreOS base disk".into();
    let mut data = xspack_xva::DiskSpec::new(sizes[1], id("vdi data"), id("vbd data"));
    data.name = format!("{} data", opts.name);
    data.description = "Container images (xspack-data)".into();
    data.bootable = false;
    data.vdi_type = xspack_xva::VdiType::User;
    let mut drive = xspack_xva::DiskSpec::new(sizes[2], id("vdi config-2"), id("vbd config-2"));
    "config-2".clone_into(&mut drive.name);
    drive.description = format!("Config drive of {}", opts.name);
    drive.bootable = false;
    drive.read_only = true;
    drive.vdi_type = xspack_xva::VdiType::User;
    drive.other_config.insert("config-drive".into(), "True".into());
    vm.disks = vec![base, data, drive];
    vm
}
