//! What an XVA describes: one HVM VM or template, its disks and an optional empty CD drive.
//!
//! The fields are the record fields xapi's import requires (`xapi-project/xen-api:ocaml/idl/`
//! `datamodel_vm.ml`, `datamodel.ml`, decoded by the generated `API.*_t_of_rpc`) and the boot
//! fields `xenopsd` reads for HVM guests. Everything else in `ova.xml` is fixed by
//! [`crate::VmSpec::to_ova_xml`].

use std::collections::BTreeMap;

use serde::Serialize;

use crate::xmlrpc::invalid_xml_char;
use crate::{DISK_ALIGNMENT, Error, MAX_DISK_SIZE, Uuid};

/// The four memory limits of a VM, in bytes. xapi requires
/// `static_min ≤ dynamic_min ≤ dynamic_max ≤ static_max` (`gen_api.ml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// `memory_static_min`.
    pub static_min: u64,
    /// `memory_dynamic_min`.
    pub dynamic_min: u64,
    /// `memory_dynamic_max`.
    pub dynamic_max: u64,
    /// `memory_static_max`.
    pub static_max: u64,
}

impl Memory {
    /// All four limits set to `bytes`: a VM with a fixed amount of memory.
    pub fn fixed(bytes: u64) -> Memory {
        Memory { static_min: bytes, dynamic_min: bytes, dynamic_max: bytes, static_max: bytes }
    }
}

impl Default for Memory {
    /// 1 GiB, fixed.
    fn default() -> Self {
        Memory::fixed(1 << 30)
    }
}

/// Firmware of the HVM guest (`HVM_boot_params:firmware`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    /// Legacy BIOS: `HVM_boot_params:firmware=bios`. Works on every host.
    #[default]
    Bios,
    /// UEFI without Secure Boot: `firmware=uefi`, `platform:secureboot=false`. Needs CH 8.x+.
    Uefi,
    /// UEFI with Secure Boot: `firmware=uefi`, `platform:secureboot=true`. The pool must have
    /// Secure Boot certificates installed.
    UefiSecureBoot,
    /// UEFI with Secure Boot where the pool allows it: `firmware=uefi`,
    /// `platform:secureboot=auto`, as XenServer 8's own UEFI Linux templates
    /// (`guest-templates-json:json/base-linux-uefi.json`). On the VM's first start xapi replaces
    /// `auto` with `true` when the pool has Secure Boot certificates and `false` when it has
    /// none (`ocaml/xapi/xapi_vm.ml`, `update_platform_secureboot`). For guests whose whole
    /// boot chain is signed.
    UefiSecureBootAuto,
}

impl BootMode {
    /// The `platform:secureboot` value of a UEFI mode; `None` for BIOS.
    pub fn secureboot(self) -> Option<&'static str> {
        match self {
            BootMode::Bios => None,
            BootMode::Uefi => Some("false"),
            BootMode::UefiSecureBoot => Some("true"),
            BootMode::UefiSecureBootAuto => Some("auto"),
        }
    }
}

/// The `type` of a VDI (`gen_api.ml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VdiType {
    /// `system`: an operating-system disk.
    #[default]
    System,
    /// `user`: a data disk.
    User,
}

impl VdiType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            VdiType::System => "system",
            VdiType::User => "user",
        }
    }
}

/// One disk: a VBD attaching a VDI to the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskSpec {
    /// The VDI's `name_label`.
    pub name: String,
    /// The VDI's `name_description`.
    pub description: String,
    /// Size of the disk in bytes, `VDI.virtual_size`. The writer requires a positive multiple
    /// of [`DISK_ALIGNMENT`] (2 MiB) of at most [`MAX_DISK_SIZE`]; the reader takes any
    /// positive size.
    pub virtual_size: u64,
    /// Whether the VBD is bootable.
    pub bootable: bool,
    /// Whether the disk is read-only: VBD `mode=RO` and VDI `read_only=true`.
    pub read_only: bool,
    /// The VDI's `type`.
    pub vdi_type: VdiType,
    /// The VDI's UUID.
    pub vdi_uuid: Uuid,
    /// The VBD's UUID.
    pub vbd_uuid: Uuid,
    /// `other_config` of both the VDI and the VBD, e.g. `config-drive=True` for the config
    /// drive that xscontainer attaches. Empty by default.
    pub other_config: BTreeMap<String, String>,
}

impl DiskSpec {
    /// A writable, bootable `system` disk of `virtual_size` bytes with no name.
    pub fn new(virtual_size: u64, vdi_uuid: Uuid, vbd_uuid: Uuid) -> DiskSpec {
        DiskSpec {
            name: String::new(),
            description: String::new(),
            virtual_size,
            bootable: true,
            read_only: false,
            vdi_type: VdiType::System,
            vdi_uuid,
            vbd_uuid,
            other_config: BTreeMap::new(),
        }
    }
}

/// The VM (or template) an XVA carries. Build it with [`VmSpec::new`] and set fields; the
/// writer validates it ([`VmSpec::validate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VmSpec {
    /// The VM's UUID. xapi replaces it on import unless `preserve=true` (`import.ml`).
    pub uuid: Uuid,
    /// `name_label`. A template with the name of an existing default template is still
    /// imported, because `default_template` is never set (`import.ml`).
    pub name: String,
    /// `name_description`.
    pub description: String,
    /// The memory limits.
    pub memory: Memory,
    /// `VCPUs_max`.
    pub vcpus_max: u32,
    /// `VCPUs_at_startup`, between 1 and `vcpus_max`.
    pub vcpus_at_startup: u32,
    /// Firmware, written to `HVM_boot_params:firmware` and, for UEFI, `platform:secureboot`.
    pub boot: BootMode,
    /// `HVM_boot_params:order`: `c` is the first disk, `d` the CD drive, `n` the network.
    /// The default `cd` boots the (preinstalled) disk first and falls back to the CD.
    pub boot_order: String,
    /// `platform` flags. The default is the set of xapi's own HVM templates (`acpi=1 apic=true pae=true nx=true
    /// viridian=false hpet=true`). Must not hold `secureboot` for UEFI boot modes (it comes
    /// from [`VmSpec::boot`]); leave `device-model` out so the host picks it (`import.ml`).
    pub platform: BTreeMap<String, String>,
    /// Whether the XVA is a template (`is_a_template`).
    pub is_template: bool,
    /// `other_config`. Must not hold `default_template`: with it an import of a template whose
    /// name exists imports nothing (`import.ml`).
    pub other_config: BTreeMap<String, String>,
    /// `recommendations`: the template restrictions XML of 4.1, or empty.
    pub recommendations: String,
    /// UUID of the placeholder SR record the VDIs point to. The import creates the disks in the
    /// SR given by `sr-uuid=` or the pool default (`import.ml`). Unused (and may be nil) with no disks.
    pub sr_uuid: Uuid,
    /// The disks, in `userdevice` order (`0`, `1`, ...).
    pub disks: Vec<DiskSpec>,
    /// When set, an empty CD drive with this VBD UUID, at `userdevice` 3 (or after the last
    /// disk when there are more than three).
    pub cd_drive: Option<Uuid>,
}

impl Default for VmSpec {
    fn default() -> Self {
        let platform = [
            ("acpi", "1"),
            ("apic", "true"),
            ("pae", "true"),
            ("nx", "true"),
            ("viridian", "false"),
            ("hpet", "true"),
        ];
        VmSpec {
            uuid: Uuid::NIL,
            name: String::new(),
            description: String::new(),
            memory: Memory::default(),
            vcpus_max: 1,
            vcpus_at_startup: 1,
            boot: BootMode::Bios,
            boot_order: "cd".into(),
            platform: platform.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            is_template: false,
            other_config: BTreeMap::new(),
            recommendations: String::new(),
            sr_uuid: Uuid::NIL,
            disks: Vec::new(),
            cd_drive: None,
        }
    }
}

/// Platform key set from [`VmSpec::boot`] for UEFI.
pub(crate) const SECUREBOOT_KEY: &str = "secureboot";
/// `other_config` key that must never be set (`import.ml`).
pub(crate) const DEFAULT_TEMPLATE_KEY: &str = "default_template";

impl VmSpec {
    /// A 1-vCPU, 1 GiB, BIOS VM named `name` with no disks.
    pub fn new(name: impl Into<String>, uuid: Uuid) -> VmSpec {
        VmSpec { name: name.into(), uuid, ..VmSpec::default() }
    }

    /// The `userdevice` of the CD drive.
    pub(crate) fn cd_userdevice(&self) -> usize {
        self.disks.len().max(3)
    }

    /// Checks every rule the writer and xapi's `VM.create_from_record` enforce: non-nil UUIDs,
    /// memory order, vCPU counts, disk sizes, forbidden keys, and text XML can carry.
    pub fn validate(&self) -> Result<(), Error> {
        if self.uuid.is_nil() {
            return Err(Error::spec("uuid", "must not be nil"));
        }
        let m = self.memory;
        if m.static_max == 0
            || !(m.static_min <= m.dynamic_min
                && m.dynamic_min <= m.dynamic_max
                && m.dynamic_max <= m.static_max)
        {
            return Err(Error::spec(
                "memory",
                "need 0 < static_max and static_min <= dynamic_min <= dynamic_max <= static_max",
            ));
        }
        if self.vcpus_at_startup == 0 || self.vcpus_at_startup > self.vcpus_max {
            return Err(Error::spec("vcpus_at_startup", "must be between 1 and vcpus_max"));
        }
        if self.boot_order.is_empty()
            || !self.boot_order.chars().all(|c| matches!(c, 'c' | 'd' | 'n'))
        {
            return Err(Error::spec("boot_order", "must be letters from c, d and n"));
        }
        if self.boot != BootMode::Bios && self.platform.contains_key(SECUREBOOT_KEY) {
            return Err(Error::spec("platform", "secureboot is set from the boot mode"));
        }
        if self.other_config.contains_key(DEFAULT_TEMPLATE_KEY) {
            return Err(Error::spec("other_config", "default_template must not be set"));
        }
        self.validate_text()?;
        let mut uuids = vec![self.uuid];
        if !self.disks.is_empty() {
            uuids.push(self.sr_uuid);
        }
        for (i, d) in self.disks.iter().enumerate() {
            let size = d.virtual_size;
            if size == 0 || size % DISK_ALIGNMENT != 0 || size > MAX_DISK_SIZE {
                return Err(Error::spec(
                    format!("disks[{i}].virtual_size"),
                    format!("{size} is not a positive multiple of 2 MiB up to 2040 GiB"),
                ));
            }
            uuids.extend([d.vdi_uuid, d.vbd_uuid]);
        }
        uuids.extend(self.cd_drive);
        if uuids.iter().any(Uuid::is_nil) {
            return Err(Error::spec("uuids", "every object needs a non-nil UUID"));
        }
        let mut sorted = uuids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != uuids.len() {
            return Err(Error::spec("uuids", "two objects share a UUID"));
        }
        Ok(())
    }

    fn validate_text(&self) -> Result<(), Error> {
        let mut texts: Vec<(String, &str)> = vec![
            ("name".into(), &self.name),
            ("description".into(), &self.description),
            ("recommendations".into(), &self.recommendations),
        ];
        for (map, entries) in [("platform", &self.platform), ("other_config", &self.other_config)] {
            for (k, v) in entries {
                texts.push((format!("{map} key"), k));
                texts.push((format!("{map}.{k}"), v));
            }
        }
        for (i, d) in self.disks.iter().enumerate() {
            texts.push((format!("disks[{i}].name"), &d.name));
            texts.push((format!("disks[{i}].description"), &d.description));
            for (k, v) in &d.other_config {
                texts.push((format!("disks[{i}].other_config key"), k));
                texts.push((format!("disks[{i}].other_config.{k}"), v));
            }
        }
        for (field, text) in texts {
            if let Some(c) = invalid_xml_char(text) {
                return Err(Error::spec(
                    field,
                    format!("character {c:?} cannot be written in XML"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Edit = Box<dyn Fn(&mut VmSpec)>;

    fn valid() -> VmSpec {
        let mut spec = VmSpec::new("ok", Uuid::from_seed(b"vm"));
        spec.sr_uuid = Uuid::from_seed(b"sr");
        spec.disks.push(DiskSpec::new(
            DISK_ALIGNMENT,
            Uuid::from_seed(b"vdi"),
            Uuid::from_seed(b"vbd"),
        ));
        spec
    }

    fn field_of(spec: &VmSpec) -> String {
        match spec.validate() {
            Err(Error::InvalidSpec { field, .. }) => field,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn validation_rules() {
        assert!(valid().validate().is_ok());
        let cases: Vec<(&str, Edit)> = vec![
            ("uuid", Box::new(|s| s.uuid = Uuid::NIL)),
            ("memory", Box::new(|s| s.memory.dynamic_min = s.memory.dynamic_max + 1)),
            ("memory", Box::new(|s| s.memory = Memory::fixed(0))),
            ("vcpus_at_startup", Box::new(|s| s.vcpus_at_startup = 0)),
            ("vcpus_at_startup", Box::new(|s| s.vcpus_at_startup = s.vcpus_max + 1)),
            ("boot_order", Box::new(|s| s.boot_order = "cx".into())),
            (
                "platform",
                Box::new(|s| {
                    s.boot = BootMode::Uefi;
                    s.platform.insert(SECUREBOOT_KEY.into(), "true".into());
                }),
            ),
            (
                "other_config",
                Box::new(|s| {
                    s.other_config.insert(DEFAULT_TEMPLATE_KEY.into(), "false".into());
                }),
            ),
            ("name", Box::new(|s| s.name = "bell\u{7}".into())),
            (
                "platform.vga",
                Box::new(|s| {
                    s.platform.insert("vga".into(), "\u{1b}".into());
                }),
            ),
            ("disks[0].virtual_size", Box::new(|s| s.disks[0].virtual_size = DISK_ALIGNMENT + 512)),
            (
                "disks[0].virtual_size",
                Box::new(|s| s.disks[0].virtual_size = MAX_DISK_SIZE + DISK_ALIGNMENT),
            ),
            ("uuids", Box::new(|s| s.sr_uuid = Uuid::NIL)),
            ("uuids", Box::new(|s| s.cd_drive = Some(s.uuid))),
        ];
        for (field, edit) in cases {
            let mut spec = valid();
            edit(&mut spec);
            assert_eq!(field_of(&spec), field);
        }
        // With no disks the SR is not written, so its UUID may be nil.
        let mut spec = valid();
        spec.disks.clear();
        spec.sr_uuid = Uuid::NIL;
        assert!(spec.validate().is_ok());
    }
}
