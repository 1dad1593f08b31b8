//! The template XVA (`docs/formats/templates.md` section "Template XVA"): an XVA whose VM has
//! `is_a_template=true`, written by xspack-xva (`docs/formats/xva.md`).
//!
//! An XVA has no `derived_from`, so the VM carries what the JSON inherits from the product's base
//! template (`docs/formats/templates.md` section "Reference bases"): `platform` `vga=std videoram=8
//! device_id=0001` over xspack-xva's defaults (`acpi apic pae nx hpet`, `viridian=false`), and
//! `other_config` `linux_template=true install-methods=cdrom,nfs,http,ftp`. `device-model` is left
//! for the host to choose (`docs/formats/templates.md` section "Boot modes"), and UEFI templates
//! get `secureboot=auto`, or `false` ([`crate::secure_boot()`]).
//!
//! Disks come one of two ways:
//!
//! - **provisioned** (default): no disk in the archive; `other_config:disks` holds the provision
//!   XML (`docs/formats/templates.md` section "Disks (provision XML)") and `xe vm-install` creates
//!   blank disks in the chosen SR;
//! - **embedded** (`[xva] embed-disks = true`): each disk is a VBD and VDI in the archive, blank
//!   (only its first and last chunks are written, `docs/formats/xva.md` section "Chunks and
//!   sparseness") or holding a raw `image`.
//!
//! A config drive (`docs/formats/config-drive.md` section "How it is attached") follows the disks:
//! read-only, not bootable, `other_config:config-drive=True` on VDI and VBD. Every UUID is derived
//! from the template's name and the object's role, so the same definition gives the same archive.

use std::fs::File;
use std::io::{self, Cursor, Read, Write};

use serde::Serialize;
use xspack_io::Progress;
use xspack_xva::{BootMode, DiskSpec, Memory, VdiType, VmSpec, XvaOptions};

use crate::config_drive::config_drive_image;
use crate::json::recommendation_members;
use crate::render::render;
use crate::spec::{BootFirmware, DiskType};
use crate::{Error, SecureBootDecision, TemplateSpec};

/// Platform flags of `base-hvmlinux.json` that xspack-xva does not set by default.
const BASE_PLATFORM: &[(&str, &str)] = &[("vga", "std"), ("videoram", "8"), ("device_id", "0001")];
/// `other_config` of `base-hvmlinux.json`.
const BASE_OTHER_CONFIG: &[(&str, &str)] =
    &[("linux_template", "true"), ("install-methods", "cdrom,nfs,http,ftp")];
/// `number-of-vbds` and `number-of-vifs` restrictions when the definition sets none
/// (`docs/formats/templates.md` section "Recommendations").
const DEFAULT_VBDS: u32 = 255;
const DEFAULT_VIFS: u32 = 7;
/// The field restrictions in the order clients list them; the two properties come last.
const FIELD_ORDER: &[&str] = &[
    "memory-static-max",
    "vcpus-min",
    "vcpus-max",
    "has-vendor-device",
    "allow-gpu-passthrough",
    "allow-vgpu",
    "allow-network-sriov",
    "supports-bios",
    "supports-uefi",
    "supports-secure-boot",
];

#[derive(Serialize)]
struct Restriction {
    kind: &'static str,
    name: &'static str,
    attr: &'static str,
    value: String,
}

/// The `recommendations` XML of 4.1 for the definition's recommendations.
fn recommendations_xml(spec: &TemplateSpec) -> Result<String, Error> {
    let mut restrictions = Vec::new();
    let mut vbds = DEFAULT_VBDS.to_string();
    let mut vifs = DEFAULT_VIFS.to_string();
    for (key, value) in recommendation_members(&spec.recommendations) {
        let flag = |yes: &str, no: &str| if value == true { yes.to_owned() } else { no.to_owned() };
        let (name, attr, text) = match key {
            "max_memory" => {
                let bytes = spec.recommendations.max_memory.map_or(0, |m| m.0);
                ("memory-static-max", "max", bytes.to_string())
            }
            "vcpus_min" => ("vcpus-min", "min", value.to_string()),
            "vcpus_max" => ("vcpus-max", "max", value.to_string()),
            "has_vendor_device" => ("has-vendor-device", "value", flag("true", "false")),
            "allow_gpu_passthrough" => ("allow-gpu-passthrough", "value", flag("1", "0")),
            "allow_vgpu" => ("allow-vgpu", "value", flag("1", "0")),
            "allow_network_sriov" => ("allow-network-sriov", "value", flag("1", "0")),
            "supports_bios" => ("supports-bios", "value", flag("yes", "no")),
            "supports_uefi" => ("supports-uefi", "value", flag("yes", "no")),
            "supports_secure_boot" => ("supports-secure-boot", "value", flag("yes", "no")),
            "number_of_vbds" => {
                vbds = value.to_string();
                continue;
            }
            "number_of_vifs" => {
                vifs = value.to_string();
                continue;
            }
            other => unreachable!("recommendation {other} has no restriction"),
        };
        restrictions.push(Restriction { kind: "field", name, attr, value: text });
    }
    restrictions.sort_by_key(|r| FIELD_ORDER.iter().position(|n| *n == r.name));
    for (name, value) in [("number-of-vbds", vbds), ("number-of-vifs", vifs)] {
        restrictions.push(Restriction { kind: "property", name, attr: "max", value });
    }
    let mut ctx = tera::Context::new();
    ctx.insert("restrictions", &restrictions);
    Ok(render("vm/recommendations.xml.tera", &ctx)?.trim_end().to_owned())
}

#[derive(Serialize)]
struct ProvisionDisk {
    size: u64,
    bootable: bool,
    #[serde(rename = "type")]
    disk_type: &'static str,
}

/// `other_config:disks`: the provision XML of 4.1.
fn provision_xml(spec: &TemplateSpec) -> Result<String, Error> {
    let disks: Vec<ProvisionDisk> = spec
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| ProvisionDisk {
            size: d.size.0,
            bootable: spec.bootable(i),
            disk_type: d.disk_type.as_str(),
        })
        .collect();
    let mut ctx = tera::Context::new();
    ctx.insert("disks", &disks);
    Ok(render("vm/provision.xml.tera", &ctx)?.trim_end().to_owned())
}

/// The VM of the XVA and the config drive's bytes, if any.
struct XvaParts {
    vm: VmSpec,
    drive: Option<Vec<u8>>,
}

fn parts(
    spec: &TemplateSpec,
    source_date_epoch: u64,
    secure_boot: &SecureBootDecision,
) -> Result<XvaParts, Error> {
    let t = &spec.template;
    let mut vm = VmSpec::new(t.label.clone(), spec.derived_uuid("xva/vm"));
    vm.description.clone_from(&t.description);
    let memory = t.memory.0;
    vm.memory = Memory { static_min: spec.min_memory(), ..Memory::fixed(memory) };
    vm.vcpus_max = t.vcpus;
    vm.vcpus_at_startup = t.vcpus;
    vm.boot = match (t.boot, secure_boot.enabled) {
        (BootFirmware::Bios, _) => BootMode::Bios,
        (BootFirmware::Uefi, false) => BootMode::Uefi,
        (BootFirmware::Uefi, true) => BootMode::UefiSecureBootAuto,
    };
    vm.boot_order.clone_from(&t.boot_order.0);
    vm.is_template = true;
    for (k, v) in BASE_PLATFORM {
        vm.platform.insert((*k).to_owned(), (*v).to_owned());
    }
    vm.platform.extend(spec.platform.clone());
    for (k, v) in BASE_OTHER_CONFIG {
        vm.other_config.insert((*k).to_owned(), (*v).to_owned());
    }
    vm.other_config.extend(spec.other_config());
    vm.recommendations = recommendations_xml(spec)?;
    vm.sr_uuid = spec.derived_uuid("xva/sr");
    if spec.xva.embed_disks {
        for (i, d) in spec.disks.iter().enumerate() {
            let mut disk = DiskSpec::new(
                d.size.0,
                spec.derived_uuid(&format!("xva/vdi/{i}")),
                spec.derived_uuid(&format!("xva/vbd/{i}")),
            );
            disk.name = format!("{} disk {i}", spec.name());
            disk.bootable = spec.bootable(i);
            disk.vdi_type = match d.disk_type {
                DiskType::System => VdiType::System,
                DiskType::User => VdiType::User,
            };
            vm.disks.push(disk);
        }
    } else if !spec.disks.is_empty() {
        vm.other_config.insert("disks".to_owned(), provision_xml(spec)?);
    }
    let mut drive = None;
    if let Some(cd) = &spec.config_drive {
        let path = spec.resolve(&cd.user_data);
        let user_data =
            std::fs::read(&path).map_err(|e| Error::io("reading user data", &path, e))?;
        let image = config_drive_image(spec, &user_data, source_date_epoch)?;
        let mut disk = DiskSpec::new(
            image.len() as u64,
            spec.derived_uuid("xva/vdi/config-drive"),
            spec.derived_uuid("xva/vbd/config-drive"),
        );
        "config-2".clone_into(&mut disk.name);
        disk.description = format!("Config drive of {}", spec.name());
        disk.bootable = false;
        disk.read_only = true;
        disk.vdi_type = VdiType::User;
        disk.other_config.insert("config-drive".to_owned(), "True".to_owned());
        vm.disks.push(disk);
        drive = Some(image);
    }
    if spec.xva.cd_drive {
        vm.cd_drive = Some(spec.derived_uuid("xva/vbd/cd"));
    }
    vm.validate()?;
    Ok(XvaParts { vm, drive })
}

/// The VM (template) record of `spec`'s XVA. Reads the config drive's user data, if any, to
/// size the drive; `source_date_epoch` stamps the drive's files.
pub fn template_vm_spec(spec: &TemplateSpec, source_date_epoch: u64) -> Result<VmSpec, Error> {
    parts(spec, source_date_epoch, &crate::secure_boot(spec, true)?).map(|p| p.vm)
}

/// The reader of an embedded disk: its image padded with zeros, or zeros.
fn disk_reader(spec: &TemplateSpec, i: usize) -> Result<Box<dyn Read>, Error> {
    let size = spec.disks[i].size.0;
    let Some(image) = &spec.disks[i].image else {
        return Ok(Box::new(io::repeat(0).take(size)));
    };
    let path = spec.resolve(image);
    let file = File::open(&path).map_err(|e| Error::io("opening disk image", &path, e))?;
    let len = file.metadata().map_err(|e| Error::io("reading disk image", &path, e))?.len();
    if len > size {
        return Err(Error::Spec {
            at: spec.path.to_string(),
            reason: format!(
                "disk[{i}].image: {path} holds {len} bytes, more than the disk's {size}"
            ),
        });
    }
    Ok(Box::new(file.take(len).chain(io::repeat(0).take(size - len))))
}

/// Writes the template XVA of `spec` to `out`, every tar member stamped with
/// `source_date_epoch`, and returns `out`.
pub fn write_template_xva<W: Write>(
    spec: &TemplateSpec,
    out: W,
    source_date_epoch: u64,
    progress: &dyn Progress,
) -> Result<W, Error> {
    let secure_boot = crate::secure_boot(spec, true)?;
    write_decided(spec, out, (source_date_epoch, progress), &secure_boot)
}

/// [`write_template_xva`] with Secure Boot decided already (the build reports its note).
pub(crate) fn write_decided<W: Write>(
    spec: &TemplateSpec,
    out: W,
    (source_date_epoch, progress): (u64, &dyn Progress),
    secure_boot: &SecureBootDecision,
) -> Result<W, Error> {
    let XvaParts { vm, drive } = parts(spec, source_date_epoch, secure_boot)?;
    let mut readers: Vec<Box<dyn Read>> = Vec::with_capacity(vm.disks.len());
    if spec.xva.embed_disks {
        for i in 0..spec.disks.len() {
            readers.push(disk_reader(spec, i)?);
        }
    }
    if let Some(image) = drive {
        readers.push(Box::new(Cursor::new(image)));
    }
    let opts = XvaOptions::default().with_mtime(source_date_epoch).with_progress(progress);
    Ok(xspack_xva::write_xva(out, &vm, &mut readers, &opts)?)
}
