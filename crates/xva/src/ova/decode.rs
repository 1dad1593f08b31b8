//! Decoding `ova.xml` into a [`VmSpec`], checking on every object it follows (the VM, its VBDs,
//! their VDIs and SRs) the fields xapi's generated record decoders require
//! (`xapi-project/xen-api:ocaml/idl/ocaml_backend/gen_api.ml`), and the version record as
//! `ocaml/xapi/importexport.ml` `version_of_rpc` reads it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{SR_FIELDS, VBD_FIELDS, VDI_FIELDS, VERSION_FIELDS, VM_FIELDS};
use crate::spec::{DEFAULT_TEMPLATE_KEY, SECUREBOOT_KEY};
use crate::xmlrpc::{Value, decode_document};
use crate::{BootMode, DiskSpec, Error, Memory, Uuid, VdiType, VmSpec};

/// A decoded `ova.xml`: the spec, and each disk's VDI id (the directory of its chunks).
#[derive(Debug, Clone)]
pub(crate) struct OvaDoc {
    pub spec: VmSpec,
    pub vdi_ids: Vec<String>,
}

/// One object's snapshot, with what is needed to name it in errors.
struct Record<'a> {
    class: &'a str,
    id: &'a str,
    snap: &'a Value,
}

impl<'a> Record<'a> {
    fn err(&self, field: &str, reason: impl Into<String>) -> Error {
        Error::field(self.class, self.id, field, reason)
    }

    fn require(&self, fields: &[&str]) -> Result<(), Error> {
        match fields.iter().find(|f| self.snap.member(f).is_none()) {
            Some(f) => Err(self.err(f, "missing")),
            None => Ok(()),
        }
    }

    fn get(&self, field: &str) -> Result<&'a Value, Error> {
        self.snap.member(field).ok_or_else(|| self.err(field, "missing"))
    }

    fn string(&self, field: &str) -> Result<&'a str, Error> {
        match self.get(field)? {
            Value::Str(text) => Ok(text),
            other => Err(self.err(field, format!("expected a string, found {other:?}"))),
        }
    }

    fn string_or_empty(&self, field: &str) -> Result<&'a str, Error> {
        if self.snap.member(field).is_none() { Ok("") } else { self.string(field) }
    }

    fn int<T: std::str::FromStr>(&self, field: &str) -> Result<T, Error> {
        let text = self.string(field)?;
        text.parse().map_err(|_| self.err(field, format!("{text:?} is not a valid integer here")))
    }

    fn boolean(&self, field: &str) -> Result<bool, Error> {
        match self.get(field)? {
            Value::Bool(b) => Ok(*b),
            other => Err(self.err(field, format!("expected a boolean, found {other:?}"))),
        }
    }

    fn uuid(&self) -> Result<Uuid, Error> {
        let text = self.string("uuid")?;
        text.parse().map_err(|e: crate::ParseUuidError| self.err("uuid", e.to_string()))
    }

    fn map(&self, field: &str) -> Result<BTreeMap<String, String>, Error> {
        let Value::Struct(members) = self.get(field)? else {
            return Err(self.err(field, "expected a struct"));
        };
        members
            .iter()
            .map(|(k, v)| match v {
                Value::Str(text) => Ok((k.clone(), text.clone())),
                _ => Err(self.err(field, format!("value of {k:?} is not a string"))),
            })
            .collect()
    }

    /// A `Set(Ref _)` field, which defaults to empty (`gen_api.ml`).
    fn refs(&self, field: &str) -> Result<Vec<&'a str>, Error> {
        match self.snap.member(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Str(text) => Ok(text.as_str()),
                    _ => Err(self.err(field, "expected references")),
                })
                .collect(),
            Some(_) => Err(self.err(field, "expected an array")),
        }
    }
}

/// All objects by id.
struct Objects<'a>(HashMap<&'a str, Record<'a>>);

impl<'a> Objects<'a> {
    fn get(
        &self,
        id: &str,
        class: &str,
        from: &Record<'_>,
        field: &str,
    ) -> Result<&Record<'a>, Error> {
        match self.0.get(id) {
            Some(r) if r.class == class => Ok(r),
            Some(r) => Err(from.err(field, format!("{id} is a {}, not a {class}", r.class))),
            None => Err(from.err(field, format!("{id} is not an object in this file"))),
        }
    }
}

impl VmSpec {
    /// Parses `ova.xml`. It must hold exactly one HVM VM; disks are its VBDs of type `Disk`
    /// whose SR is not an ISO library, in the order of the VM's `VBDs`.
    pub fn from_ova_xml(xml: &str) -> Result<VmSpec, Error> {
        decode(xml).map(|doc| doc.spec)
    }
}

pub(crate) fn decode(xml: &str) -> Result<OvaDoc, Error> {
    let root = decode_document(xml)?;
    let top = Record { class: "document", id: "", snap: &root };
    let version = Record { class: "version", id: "", snap: top.get("version")? };
    version.require(VERSION_FIELDS)?;
    // `Importexport.version_of_rpc`: five strings (`Rpc.string_of_rpc`) and two ints
    // (`Rpc.int_of_rpc`, which parses a string with `int_of_string`).
    for field in &VERSION_FIELDS[..5] {
        version.string(field)?;
    }
    version.int::<i64>("xapi_major")?;
    version.int::<i64>("xapi_minor")?;
    let vsn = version.string_or_empty("export_vsn")?;
    if vsn != "2" {
        return Err(version
            .err("export_vsn", format!("{vsn:?}: only 2 (a checksum after every chunk) is read")));
    }
    let Value::Array(items) = top.get("objects")? else {
        return Err(top.err("objects", "expected an array"));
    };
    let mut objects = Objects(HashMap::new());
    for item in items {
        let outer = Record { class: "object", id: "", snap: item };
        let record = Record {
            class: outer.string("class")?,
            id: outer.string("id")?,
            snap: outer.get("snapshot")?,
        };
        if !matches!(record.snap, Value::Struct(_)) {
            return Err(record.err("snapshot", "expected a struct"));
        }
        if objects.0.insert(record.id, record).is_some() {
            return Err(Error::structure(format!("two objects with id {}", outer.string("id")?)));
        }
    }
    let vms: Vec<&Record<'_>> = objects.0.values().filter(|r| r.class == "VM").collect();
    let [vm] = vms[..] else {
        return Err(Error::structure(format!("{} VM objects; exactly one is read", vms.len())));
    };
    decode_vm(vm, &objects)
}

fn decode_vm(vm: &Record<'_>, objects: &Objects<'_>) -> Result<OvaDoc, Error> {
    vm.require(VM_FIELDS)?;
    if vm.string("HVM_boot_policy")?.is_empty() {
        return Err(Error::structure("HVM_boot_policy is empty: PV guests are not read"));
    }
    let boot_params = vm.map("HVM_boot_params")?;
    let mut platform = vm.map("platform")?;
    let boot = match boot_params.get("firmware").map(String::as_str) {
        None | Some("bios") => BootMode::Bios,
        // As xapi reads it: `true`/`1` on, `auto` decided at the first start, anything else
        // off (`ocaml/xapi/vm_platform.ml`, `is_true`; `xapi_vm.ml`, `update_platform_secureboot`).
        Some("uefi") => {
            match platform.remove(SECUREBOOT_KEY).map(|v| v.to_ascii_lowercase()).as_deref() {
                Some("true" | "1") => BootMode::UefiSecureBoot,
                Some("auto") => BootMode::UefiSecureBootAuto,
                _ => BootMode::Uefi,
            }
        }
        Some(other) => return Err(vm.err("HVM_boot_params", format!("unknown firmware {other:?}"))),
    };
    let other_config = vm.map("other_config")?;
    if other_config.get(DEFAULT_TEMPLATE_KEY).is_some_and(|v| v == "true") {
        return Err(vm.err("other_config", "default_template=true: the import would be skipped"));
    }
    let mut spec = VmSpec {
        uuid: vm.uuid()?,
        name: vm.string_or_empty("name_label")?.to_owned(),
        description: vm.string_or_empty("name_description")?.to_owned(),
        memory: Memory {
            static_min: vm.int("memory_static_min")?,
            dynamic_min: vm.int("memory_dynamic_min")?,
            dynamic_max: vm.int("memory_dynamic_max")?,
            static_max: vm.int("memory_static_max")?,
        },
        vcpus_max: vm.int("VCPUs_max")?,
        vcpus_at_startup: vm.int("VCPUs_at_startup")?,
        boot,
        boot_order: boot_params.get("order").cloned().unwrap_or_default(),
        platform,
        is_template: vm.boolean("is_a_template")?,
        other_config,
        recommendations: vm.string("recommendations")?.to_owned(),
        sr_uuid: Uuid::NIL,
        disks: Vec::new(),
        cd_drive: None,
    };
    let mut vdi_ids = Vec::new();
    for vbd_id in vm.refs("VBDs")? {
        let vbd = objects.get(vbd_id, "VBD", vm, "VBDs")?;
        vbd.require(VBD_FIELDS)?;
        match vbd.string("type")? {
            "CD" => {
                if spec.cd_drive.is_none() {
                    spec.cd_drive = Some(vbd.uuid()?);
                }
                continue;
            }
            "Disk" => {}
            _ => continue,
        }
        let vdi = objects.get(vbd.string("VDI")?, "VDI", vbd, "VDI")?;
        vdi.require(VDI_FIELDS)?;
        let sr = objects.get(vdi.string("SR")?, "SR", vdi, "SR")?;
        sr.require(SR_FIELDS)?;
        if sr.string("content_type")? == "iso" {
            continue; // Not streamed (`stream_vdi.ml` `recv_all_vdi`).
        }
        let virtual_size: u64 = vdi.int("virtual_size")?;
        if virtual_size == 0 {
            return Err(vdi.err("virtual_size", "must be positive"));
        }
        let vdi_type = match vdi.string("type")? {
            "system" => VdiType::System,
            "user" => VdiType::User,
            other => return Err(vdi.err("type", format!("{other:?} disks are not read"))),
        };
        if spec.sr_uuid.is_nil() {
            spec.sr_uuid = sr.uuid()?;
        }
        spec.disks.push(DiskSpec {
            name: vdi.string_or_empty("name_label")?.to_owned(),
            description: vdi.string_or_empty("name_description")?.to_owned(),
            virtual_size,
            bootable: vbd.boolean("bootable")?,
            read_only: vbd.string("mode")? == "RO" || vdi.boolean("read_only")?,
            vdi_type,
            vdi_uuid: vdi.uuid()?,
            vbd_uuid: vbd.uuid()?,
            other_config: vdi.map("other_config")?,
        });
        vdi_ids.push(vdi.id.to_owned());
    }
    if vdi_ids.len() != vdi_ids.iter().collect::<BTreeSet<_>>().len() {
        return Err(Error::structure("a VDI is attached twice"));
    }
    Ok(OvaDoc { spec, vdi_ids })
}
