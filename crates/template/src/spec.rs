//! `templates/<name>.toml`: one VM template, in the terms of `docs/formats/templates.md`.
//!
//! ```toml
//! [template]
//! name = "acme-coreos"            # reference_label, JSON file and RPM name: [a-z0-9][a-z0-9._-]*
//! label = "Acme CoreOS host"      # name_label shown by xe template-list and XenCenter
//! description = "..."             # name_description
//! version = "1.0.0"               # version of the template RPM (release "1" by default)
//! uuid = "..."                    # optional: derived from the name when absent
//! flavor = "coreos"               # coreos | ubuntu | debian | linux
//! boot = "bios"                   # bios | uefi (templates.md "Boot modes")
//! secure-boot = "auto"            # uefi: auto | require | off (templates.md "Secure Boot")
//! boot-order = "cdn"              # HVM_boot_params:order
//! memory = "2G"                   # the VM's memory; the static minimum is half of it
//! vcpus = 2
//!
//! [recommendations]               # templates.md "Recommendations"
//! max-memory = "512G"
//! vcpus-max = 32
//!
//! [[disk]]                        # provisioned on `xe vm-install`, or embedded in the XVA
//! size = "8G"                     # a multiple of 2M, at most 2040G
//! bootable = true                 # default: the first disk only
//! type = "system"                 # system | user
//! image = "acme-coreos.raw"       # raw content, XVA with embed-disks only
//!
//! [platform]                      # merged over the base template's platform map
//! viridian = "false"
//!
//! [other-config]
//! install-methods = "cdrom"
//!
//! [config-drive]                  # config-drive.md; XVA only
//! user-data = "acme-coreos.cloud-config"
//!
//! [xva]
//! embed-disks = true              # disks inside the XVA instead of other_config:disks
//! cd-drive = true                 # an empty CD drive (the default)
//! ```
//!
//! Unknown keys are errors. Errors in one value name the file, line and column; rules across
//! keys name the file and the key.

use std::collections::BTreeMap;
use std::fmt;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;
use xspack_io::InputRoots;
use xspack_xva::{DISK_ALIGNMENT, MAX_DISK_SIZE, Uuid};

use crate::Error;

mod fields;

pub use fields::{Amount, BootOrder, Name, RpmField, UuidText};

/// The guest family. It decides what `other_config` and checks the template gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// A CoreOS-style container host. XenCenter shows its Cloud-Config page for a default
    /// template whose `name_label` contains "coreos"
    /// (`docs/formats/templates.md` section "The CoreOS template"), so the label must.
    Coreos,
    /// Ubuntu: `other_config:install-distro=debianlike` (`docs/formats/templates.md` section
    /// "Reference bases").
    Ubuntu,
    /// Debian: `other_config:install-distro=debianlike` (`docs/formats/templates.md` section
    /// "Reference bases").
    Debian,
    /// Any other Linux guest.
    Linux,
}

impl Flavor {
    /// The name as written in TOML.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Coreos => "coreos",
            Flavor::Ubuntu => "ubuntu",
            Flavor::Debian => "debian",
            Flavor::Linux => "linux",
        }
    }
}

/// Whether a UEFI template asks for Secure Boot (`docs/formats/templates.md` section "Secure
/// Boot").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SecureBoot {
    /// `platform:secureboot=auto` (on where the pool has the certificates), unless the XVA
    /// embeds a boot disk whose loader is unsigned: then `false`, and a note.
    #[default]
    Auto,
    /// `platform:secureboot=auto`, and an embedded boot disk whose loader is unsigned is an
    /// error.
    Require,
    /// `platform:secureboot=false`.
    Off,
}

/// HVM firmware (`docs/formats/templates.md` section "Boot modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootFirmware {
    /// Legacy BIOS; JSON derives from `base-hvmlinux.json`.
    Bios,
    /// UEFI (CH 8.x and later); JSON derives from `base-linux-uefi.json`.
    Uefi,
}

impl BootFirmware {
    /// `HVM_boot_params:firmware`.
    pub fn as_str(self) -> &'static str {
        match self {
            BootFirmware::Bios => "bios",
            BootFirmware::Uefi => "uefi",
        }
    }
}

fn one() -> RpmField {
    RpmField("1".into())
}

fn proprietary() -> String {
    "Proprietary".into()
}

fn cdn() -> BootOrder {
    BootOrder("cdn".into())
}

fn one_vcpu() -> u32 {
    1
}

/// A whole `templates/<name>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TemplateSpec {
    /// Identity, memory, vCPUs and boot.
    pub template: TemplateInfo,
    /// Restrictions shown to clients (`docs/formats/templates.md` section "Recommendations").
    #[serde(default)]
    pub recommendations: Recommendations,
    /// Disks, in `userdevice` order.
    #[serde(default, rename = "disk")]
    pub disks: Vec<DiskDef>,
    /// `platform` entries merged over the base template's.
    #[serde(default)]
    pub platform: BTreeMap<String, String>,
    /// `other_config` entries.
    #[serde(default)]
    pub other_config: BTreeMap<String, String>,
    /// A config drive (`docs/formats/config-drive.md`), in the XVA only.
    pub config_drive: Option<ConfigDrive>,
    /// XVA settings.
    #[serde(default)]
    pub xva: XvaInfo,
    /// The file the spec was read from; relative paths inside it are relative to its
    /// directory.
    #[serde(skip)]
    pub path: Utf8PathBuf,
}

/// `[template]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TemplateInfo {
    /// `reference_label`, the JSON file name and the base of the RPM name.
    pub name: Name,
    /// `name_label`.
    pub label: String,
    /// `name_description`.
    #[serde(default)]
    pub description: String,
    /// RPM version.
    pub version: RpmField,
    /// RPM release.
    #[serde(default = "one")]
    pub release: RpmField,
    /// RPM license tag.
    #[serde(default = "proprietary")]
    pub license: String,
    /// The template's UUID; derived from the name when absent ([`TemplateSpec::uuid`]).
    pub uuid: Option<UuidText>,
    /// The guest family.
    pub flavor: Flavor,
    /// The firmware.
    pub boot: BootFirmware,
    /// For UEFI: whether the VM asks for Secure Boot.
    #[serde(default)]
    pub secure_boot: SecureBoot,
    /// `HVM_boot_params:order`.
    #[serde(default = "cdn")]
    pub boot_order: BootOrder,
    /// The VM's memory: static max and dynamic min and max. The static minimum is half of it,
    /// which is what the JSON's `min_memory` means to the loader
    /// (`docs/formats/templates.md` section "Memory").
    pub memory: Amount,
    /// `VCPUs_max` and `VCPUs_at_startup`.
    #[serde(default = "one_vcpu")]
    pub vcpus: u32,
}

/// `[recommendations]`: the keys of 4.1 that become the `recommendations` XML.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Recommendations {
    /// `max_memory`: the largest memory-static-max clients should offer.
    pub max_memory: Option<Amount>,
    /// `vcpus_max`.
    pub vcpus_max: Option<u32>,
    /// `vcpus_min`.
    pub vcpus_min: Option<u32>,
    /// `number_of_vbds`.
    pub number_of_vbds: Option<u32>,
    /// `number_of_vifs`.
    pub number_of_vifs: Option<u32>,
    /// `has_vendor_device`.
    pub has_vendor_device: Option<bool>,
    /// `allow_gpu_passthrough`.
    pub allow_gpu_passthrough: Option<bool>,
    /// `allow_vgpu`.
    pub allow_vgpu: Option<bool>,
    /// `allow_network_sriov`.
    pub allow_network_sriov: Option<bool>,
    /// `supports_bios`.
    pub supports_bios: Option<bool>,
    /// `supports_uefi`.
    pub supports_uefi: Option<bool>,
    /// `supports_secure_boot`.
    pub supports_secure_boot: Option<bool>,
}

/// The `type` of a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskType {
    /// An operating-system disk.
    #[default]
    System,
    /// A data disk.
    User,
}

impl DiskType {
    /// The text written to JSON and provision XML.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskType::System => "system",
            DiskType::User => "user",
        }
    }
}

/// `[[disk]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DiskDef {
    /// Virtual size: a positive multiple of 2 MiB, at most 2040 GiB
    /// (`docs/formats/vhd.md` section "Checksums, geometry, sizes").
    pub size: Amount,
    /// Whether the VBD is bootable: by default the first disk only.
    pub bootable: Option<bool>,
    /// The disk type.
    #[serde(default, rename = "type")]
    pub disk_type: DiskType,
    /// A raw image (relative to the TOML file) to put on the disk when the XVA embeds disks;
    /// it may be shorter than the disk, which is then padded with zeros.
    pub image: Option<Utf8PathBuf>,
}

/// `[config-drive]`: an OpenStack-style config drive (`docs/formats/config-drive.md` section "The
/// config-2 drive").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigDrive {
    /// The cloud-config (or Ignition) file stored as `openstack/latest/user_data`, relative to
    /// the TOML file.
    pub user_data: Utf8PathBuf,
}

/// `[xva]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct XvaInfo {
    /// Put the disks in the archive (blank, or from `image`) instead of describing them in
    /// `other_config:disks` for `xe vm-install` to create. Required with a config drive, which must
    /// come after them (userdevice 1, `docs/formats/config-drive.md` section "How it is attached").
    #[serde(default)]
    pub embed_disks: bool,
    /// Give the template an empty CD drive, so `xe vm-cd-insert` works on its VMs.
    #[serde(default = "yes")]
    pub cd_drive: bool,
}

fn yes() -> bool {
    true
}

impl Default for XvaInfo {
    fn default() -> Self {
        XvaInfo { embed_disks: false, cd_drive: true }
    }
}

/// `platform` keys the template may not set: `secure-boot` decides `secureboot`, and the host
/// picks `device-model` (`docs/formats/templates.md` section "Boot modes").
const RESERVED_PLATFORM: &[&str] = &["secureboot", "device-model", "device_model"];
/// `other_config` keys the template may not set: `default_template` breaks XVA imports
/// (`docs/formats/templates.md` section "Template XVA")
/// and `disks` is generated from `[[disk]]`.
const RESERVED_OTHER_CONFIG: &[&str] = &["default_template", "disks"];

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

impl TemplateSpec {
    /// Parses `text`, the contents of `file`, and checks every rule.
    pub fn parse(text: &str, file: &Utf8Path) -> Result<Self, Error> {
        let mut spec: TemplateSpec = toml::from_str(text).map_err(|e| {
            let at = xspack_io::location::locate(file, text, e.span().map(|s| s.start));
            Error::Spec { at, reason: e.message().trim().to_owned() }
        })?;
        spec.path = file.to_owned();
        spec.check()?;
        Ok(spec)
    }

    /// Reads and parses the template definition at `path`.
    pub fn load(path: &Utf8Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
        Self::parse(&text, path)
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.template.name.0
    }

    /// The template's UUID: the one given, or one derived from the name.
    pub fn uuid(&self) -> Uuid {
        self.template.uuid.map_or_else(|| self.derived_uuid("template"), |u| u.0)
    }

    /// A UUID derived from the name and `role`, for the objects of the XVA.
    pub(crate) fn derived_uuid(&self, role: &str) -> Uuid {
        Uuid::from_seed(format!("xspack-template/{}/{role}", self.name()).as_bytes())
    }

    /// `path` relative to the directory of the TOML file.
    pub fn resolve(&self, path: &Utf8Path) -> Utf8PathBuf {
        match self.path.parent().filter(|p| !p.as_str().is_empty()) {
            Some(dir) => dir.join(path),
            None => path.to_owned(),
        }
    }

    /// The JSON file's name: `<name>.json`.
    pub fn json_file_name(&self) -> String {
        format!("{}.json", self.name())
    }

    /// The static minimum memory: half of `memory` (the loader's `min_memory`).
    pub fn min_memory(&self) -> u64 {
        self.template.memory.0 / 2
    }

    /// The base JSON file the template derives from (`docs/formats/templates.md` section "Reference
    /// bases").
    pub fn derived_from(&self) -> &'static str {
        match self.template.boot {
            BootFirmware::Bios => "base-hvmlinux.json",
            BootFirmware::Uefi => "base-linux-uefi.json",
        }
    }

    /// `other_config` as the template sets it: the flavor's entries, then `[other-config]`.
    pub fn other_config(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        if matches!(self.template.flavor, Flavor::Ubuntu | Flavor::Debian) {
            map.insert("install-distro".to_owned(), "debianlike".to_owned());
        }
        map.extend(self.other_config.clone());
        map
    }

    /// Whether disk `i` is bootable.
    pub fn bootable(&self, i: usize) -> bool {
        self.disks[i].bootable.unwrap_or(i == 0)
    }

    /// Files the XVA reads besides the TOML file: disk images and the config drive's user data.
    pub fn xva_inputs(&self) -> Vec<(Utf8PathBuf, &'static str)> {
        self.named_inputs().into_iter().map(|(_, path, kind)| (path, kind)).collect()
    }

    /// Every file the definition names, with its field: `(field, path, kind)`.
    fn named_inputs(&self) -> Vec<(String, Utf8PathBuf, &'static str)> {
        let mut inputs = Vec::new();
        if self.xva.embed_disks {
            for (i, d) in self.disks.iter().enumerate() {
                if let Some(image) = &d.image {
                    inputs.push((format!("disk[{i}].image"), self.resolve(image), "disk-image"));
                }
            }
        }
        if let Some(drive) = &self.config_drive {
            let field = "config-drive.user-data".to_owned();
            inputs.push((field, self.resolve(&drive.user_data), "user-data"));
        }
        inputs
    }

    /// Checks that every file the definition names is a regular file inside the definition's
    /// directory or one of `allowed` (`--allow-outside`), after symbolic links: see
    /// `xspack_io::confine`. A refusal names the field.
    pub fn check_inputs(&self, allowed: &[Utf8PathBuf]) -> Result<(), Error> {
        let dir = self.path.parent().unwrap_or(Utf8Path::new(""));
        let spec_error = |reason: String| Error::Spec { at: self.path.to_string(), reason };
        let roots = InputRoots::new(dir, allowed).map_err(|e| spec_error(e.to_string()))?;
        for (field, path, _) in self.named_inputs() {
            roots.check_file(&path).map_err(|e| spec_error(format!("{field}: {e}")))?;
        }
        Ok(())
    }

    /// The rules serde cannot express.
    fn check(&self) -> Result<(), Error> {
        let bad = |key: &str, reason: &dyn fmt::Display| Error::Spec {
            at: self.path.to_string(),
            reason: format!("{key}: {reason}"),
        };
        let t = &self.template;
        if t.label.trim().is_empty() || !printable(&t.label) {
            return Err(bad(
                "template.label",
                &"must be non-empty text without control characters",
            ));
        }
        if !printable(&t.description.replace('\n', " ")) {
            return Err(bad("template.description", &"must not hold control characters"));
        }
        if t.flavor == Flavor::Coreos && !t.label.to_lowercase().contains("coreos") {
            return Err(bad(
                "template.label",
                &format!(
                    "{:?}: a coreos template's label must contain \"CoreOS\", which is how \
                     XenCenter offers its cloud-config page (\"The CoreOS template\" in \
                     docs/formats/templates.md)",
                    t.label
                ),
            ));
        }
        let memory = t.memory.0;
        if memory == 0 || !memory.is_multiple_of(DISK_ALIGNMENT) {
            return Err(bad("template.memory", &"must be a positive multiple of 2M"));
        }
        if t.vcpus == 0 {
            return Err(bad("template.vcpus", &"must be at least 1"));
        }
        if t.boot == BootFirmware::Bios && t.secure_boot == SecureBoot::Require {
            return Err(bad(
                "template.secure-boot",
                &"\"require\" needs boot = \"uefi\": Secure Boot is a UEFI feature",
            ));
        }
        let r = &self.recommendations;
        if r.max_memory.is_some_and(|m| m.0 < memory) {
            return Err(bad("recommendations.max-memory", &"is below template.memory"));
        }
        if r.vcpus_max.is_some_and(|m| m < t.vcpus) || r.vcpus_min.is_some_and(|m| m > t.vcpus) {
            return Err(bad(
                "template.vcpus",
                &"lies outside recommendations.vcpus-min..vcpus-max",
            ));
        }
        for (i, d) in self.disks.iter().enumerate() {
            let size = d.size.0;
            if size == 0 || !size.is_multiple_of(DISK_ALIGNMENT) || size > MAX_DISK_SIZE {
                return Err(bad(
                    &format!("disk[{i}].size"),
                    &"must be a positive multiple of 2M of at most 2040G (SM rounds VDIs to 2 MiB)",
                ));
            }
            if d.image.is_some() && !self.xva.embed_disks {
                return Err(bad(
                    &format!("disk[{i}].image"),
                    &"is only used when the XVA embeds its disks: set [xva] embed-disks = true",
                ));
            }
        }
        for (map, entries, reserved) in [
            ("platform", &self.platform, RESERVED_PLATFORM),
            ("other-config", &self.other_config, RESERVED_OTHER_CONFIG),
        ] {
            for (k, v) in entries {
                if reserved.contains(&k.as_str()) {
                    return Err(bad(
                        &format!("{map}.{k}"),
                        &"is set by xspack and may not be given",
                    ));
                }
                if k.is_empty() || !printable(k) || !printable(v) {
                    return Err(bad(
                        &format!("{map}.{k}"),
                        &"must be text without control characters",
                    ));
                }
            }
        }
        if self.config_drive.is_some() && !self.disks.is_empty() && !self.xva.embed_disks {
            return Err(bad(
                "config-drive",
                &"needs [xva] embed-disks = true: the drive follows the template's disks \
                  (userdevice 1, docs/formats/config-drive.md), which must then be in the XVA",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"
[template]
name = "coreos-host"
label = "Test CoreOS host"
version = "1.0.0"
flavor = "coreos"
boot = "bios"
memory = "2G"
vcpus = 2

[recommendations]
max-memory = "512G"

[[disk]]
size = "8G"
"#;

    fn parse(text: &str) -> Result<TemplateSpec, Error> {
        TemplateSpec::parse(text, Utf8Path::new("templates/t.toml"))
    }

    #[test]
    fn good_spec_parses_with_defaults() {
        let spec = parse(GOOD).unwrap();
        assert_eq!(spec.name(), "coreos-host");
        assert_eq!(spec.template.release.0, "1");
        assert_eq!(spec.template.boot_order.0, "cdn");
        assert_eq!(spec.min_memory(), 1 << 30);
        assert_eq!(spec.derived_from(), "base-hvmlinux.json");
        assert!(spec.bootable(0));
        assert!(spec.xva.cd_drive && !spec.xva.embed_disks);
        assert_eq!(spec.uuid(), parse(GOOD).unwrap().uuid(), "derived UUIDs are stable");
        assert_eq!(spec.resolve(Utf8Path::new("a.yaml")), "templates/a.yaml");
    }

    #[test]
    fn value_errors_name_file_line_and_column() {
        let cases = [
            (GOOD.replace("vcpus = 2", "vcpu = 2"), "templates/t.toml:9:1: unknown field `vcpu`"),
            (
                GOOD.replace("\"2G\"", "\"2 GiB\""),
                "templates/t.toml:8:10: \"2 GiB\" is not an amount",
            ),
            (GOOD.replace("\"bios\"", "\"efi\""), "templates/t.toml:7:8: unknown variant `efi`"),
            (
                GOOD.replace("vcpus = 2", "vcpus = 2\nsecure-boot = \"on\""),
                "templates/t.toml:10:15: unknown variant `on`",
            ),
            (
                GOOD.replace("\"coreos-host\"", "\"CoreOS\""),
                "templates/t.toml:3:8: \"CoreOS\" must be",
            ),
            (
                GOOD.replace("vcpus = 2", "vcpus = 2\nuuid = \"ABC\""),
                "templates/t.toml:10:8: \"ABC\" is not a lower-case",
            ),
            (
                GOOD.replace("vcpus = 2", "vcpus = 2\nboot-order = \"cc\""),
                "templates/t.toml:10:14: \"cc\" must be distinct",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.starts_with(want), "want {want:?}, got {err}");
        }
    }

    #[test]
    fn rules_across_keys_name_the_key() {
        let cases = [
            (GOOD.replace("Test CoreOS host", "Test host"), "template.label"),
            (GOOD.replace("memory = \"2G\"", "memory = \"3M\""), "template.memory"),
            (GOOD.replace("vcpus = 2", "vcpus = 0"), "template.vcpus"),
            (GOOD.replace("\"512G\"", "\"1G\""), "recommendations.max-memory"),
            (GOOD.replace("size = \"8G\"", "size = \"5M\""), "disk[0].size"),
            (GOOD.replace("size = \"8G\"", "size = \"8G\"\nimage = \"x.raw\""), "disk[0].image"),
            (GOOD.to_owned() + "[platform]\nsecureboot = \"true\"\n", "platform.secureboot"),
            (
                GOOD.replace("vcpus = 2", "vcpus = 2\nsecure-boot = \"require\""),
                "template.secure-boot",
            ),
            (
                GOOD.to_owned() + "[other-config]\ndefault_template = \"true\"\n",
                "other-config.default_template",
            ),
            (GOOD.to_owned() + "[config-drive]\nuser-data = \"u\"\n", "config-drive"),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("templates/t.toml: {want}")),
                "want {want:?}, got {err}"
            );
        }
    }
}
