//! `ova.xml`: encoding a [`VmSpec`] and decoding one back, in the XML-RPC form xapi's
//! `export.ml` writes and `import.ml` reads (`xapi-project/xen-api`).
//!
//! Object ids are fixed: the VM is `Ref:0`, the SR `Ref:1`, disk `i` has its VBD at
//! `Ref:{2+2i}` and its VDI at `Ref:{3+2i}`, and the CD drive's VBD comes last. xapi streams
//! disks sorted by VDI id *as strings* (`stream_vdi.ml` `vdi_ordering`), so [`stream_order`] decides the order of the disk
//! data in the archive. The decoder checks that every followed object has all the fields xapi requires (`ocaml/idl/ocaml_backend/gen_api.ml`).

mod decode;

use std::collections::BTreeMap;

pub(crate) use decode::{OvaDoc, decode};

use crate::spec::SECUREBOOT_KEY;
use crate::xmlrpc::{Value, encode_document};
use crate::{BootMode, DiskSpec, Error, Uuid, VmSpec};

/// Mandatory fields of a VM record (`gen_api.ml`).
pub(crate) const VM_FIELDS: &[&str] = &[
    "uuid",
    "user_version",
    "is_a_template",
    "resident_on",
    "affinity",
    "memory_static_max",
    "memory_dynamic_max",
    "memory_dynamic_min",
    "memory_static_min",
    "VCPUs_params",
    "VCPUs_max",
    "VCPUs_at_startup",
    "actions_after_shutdown",
    "actions_after_reboot",
    "actions_after_crash",
    "PV_bootloader",
    "PV_kernel",
    "PV_ramdisk",
    "PV_args",
    "PV_bootloader_args",
    "PV_legacy_args",
    "HVM_boot_policy",
    "HVM_boot_params",
    "platform",
    "PCI_bus",
    "other_config",
    "domid",
    "domarch",
    "is_control_domain",
    "metrics",
    "guest_metrics",
    "recommendations",
];
/// Mandatory fields of a VBD record (`gen_api.ml`).
pub(crate) const VBD_FIELDS: &[&str] = &[
    "uuid",
    "VM",
    "VDI",
    "userdevice",
    "bootable",
    "mode",
    "type",
    "storage_lock",
    "empty",
    "other_config",
    "status_code",
    "status_detail",
    "runtime_properties",
    "qos_algorithm_type",
    "qos_algorithm_params",
    "qos_supported_algorithms",
];
/// Mandatory fields of a VDI record (`gen_api.ml`).
pub(crate) const VDI_FIELDS: &[&str] = &[
    "uuid",
    "SR",
    "virtual_size",
    "physical_utilisation",
    "type",
    "sharable",
    "read_only",
    "other_config",
    "storage_lock",
    "managed",
    "missing",
    "parent",
];
/// Mandatory fields of an SR record (`gen_api.ml`).
pub(crate) const SR_FIELDS: &[&str] = &[
    "uuid",
    "virtual_allocation",
    "physical_utilisation",
    "physical_size",
    "type",
    "content_type",
    "shared",
    "other_config",
];
/// Mandatory string keys of the `version` record (`importexport.ml` `version_of_rpc`).
pub(crate) const VERSION_FIELDS: &[&str] = &[
    "hostname",
    "date",
    "product_version",
    "product_brand",
    "build_number",
    "xapi_major",
    "xapi_minor",
];

const NULL_REF: &str = "OpaqueRef:NULL";
const VM_REF: &str = "Ref:0";
const SR_REF: &str = "Ref:1";

/// The id of disk `i`'s VBD.
fn vbd_ref(i: usize) -> String {
    format!("Ref:{}", 2 + 2 * i)
}

/// The id of disk `i`'s VDI; also the directory of its chunks in the archive.
pub(crate) fn vdi_ref(i: usize) -> String {
    format!("Ref:{}", 3 + 2 * i)
}

/// Indices into `ids` in the order xapi streams them: sorted by id as strings (`stream_vdi.ml` `recv_all_vdi`).
pub(crate) fn stream_order(ids: &[String]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by(|&a, &b| ids[a].cmp(&ids[b]));
    order
}

fn s(text: impl Into<String>) -> Value {
    Value::Str(text.into())
}

fn map(entries: &BTreeMap<String, String>) -> Value {
    Value::Struct(entries.iter().map(|(k, v)| (k.clone(), s(v.as_str()))).collect())
}

fn obj(class: &str, id: &str, fields: Vec<(&str, Value)>) -> Value {
    let snapshot = Value::Struct(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
    Value::Struct(vec![
        ("class".into(), s(class)),
        ("id".into(), s(id)),
        ("snapshot".into(), snapshot),
    ])
}

fn empty() -> Value {
    Value::Struct(Vec::new())
}

impl VmSpec {
    /// Renders `ova.xml` after [`VmSpec::validate`]. The output depends only on the spec (and
    /// this crate's version, recorded as `product_version`).
    pub fn to_ova_xml(&self) -> Result<String, Error> {
        self.validate()?;
        let version = Value::Struct(vec![
            ("hostname".into(), s("xspack")),
            ("date".into(), s("1970-01-01")),
            ("product_version".into(), s(env!("CARGO_PKG_VERSION"))),
            ("product_brand".into(), s("xspack")),
            ("build_number".into(), s("0")),
            ("xapi_major".into(), s("1")),
            ("xapi_minor".into(), s("1")),
            ("export_vsn".into(), s("2")),
        ]);
        let mut objects = vec![self.vm_object()];
        if !self.disks.is_empty() {
            objects.push(self.sr_object());
        }
        for (i, disk) in self.disks.iter().enumerate() {
            objects.push(vbd_object(&vbd_ref(i), disk.vbd_uuid, &vdi_ref(i), i, Some(disk)));
            objects.push(Self::vdi_object(i, disk));
        }
        if let Some(uuid) = self.cd_drive {
            objects.push(vbd_object(
                &vbd_ref(self.disks.len()),
                uuid,
                NULL_REF,
                self.cd_userdevice(),
                None,
            ));
        }
        let doc = Value::Struct(vec![
            ("version".into(), version),
            ("objects".into(), Value::Array(objects)),
        ]);
        Ok(encode_document(&doc))
    }

    fn vm_object(&self) -> Value {
        let m = self.memory;
        let firmware = if self.boot == BootMode::Bios { "bios" } else { "uefi" };
        let mut platform = self.platform.clone();
        if let Some(secure) = self.boot.secureboot() {
            platform.insert(SECUREBOOT_KEY.into(), secure.into());
        }
        let mut vbds: Vec<Value> = (0..self.disks.len()).map(|i| s(vbd_ref(i))).collect();
        if self.cd_drive.is_some() {
            vbds.push(s(vbd_ref(self.disks.len())));
        }
        let boot_params = Value::Struct(vec![
            ("order".into(), s(self.boot_order.as_str())),
            ("firmware".into(), s(firmware)),
        ]);
        obj(
            "VM",
            VM_REF,
            vec![
                ("uuid", s(self.uuid.to_string())),
                ("name_label", s(self.name.as_str())),
                ("name_description", s(self.description.as_str())),
                ("power_state", s("Halted")),
                ("user_version", s("1")),
                ("is_a_template", Value::Bool(self.is_template)),
                ("is_control_domain", Value::Bool(false)),
                ("resident_on", s(NULL_REF)),
                ("affinity", s(NULL_REF)),
                ("metrics", s(NULL_REF)),
                ("guest_metrics", s(NULL_REF)),
                ("parent", s(NULL_REF)),
                ("memory_static_max", s(m.static_max.to_string())),
                ("memory_dynamic_max", s(m.dynamic_max.to_string())),
                ("memory_dynamic_min", s(m.dynamic_min.to_string())),
                ("memory_static_min", s(m.static_min.to_string())),
                ("VCPUs_params", empty()),
                ("VCPUs_max", s(self.vcpus_max.to_string())),
                ("VCPUs_at_startup", s(self.vcpus_at_startup.to_string())),
                ("actions_after_shutdown", s("destroy")),
                ("actions_after_reboot", s("restart")),
                ("actions_after_crash", s("restart")),
                ("PV_bootloader", s("")),
                ("PV_kernel", s("")),
                ("PV_ramdisk", s("")),
                ("PV_args", s("")),
                ("PV_bootloader_args", s("")),
                ("PV_legacy_args", s("")),
                ("HVM_boot_policy", s("BIOS order")),
                ("HVM_boot_params", boot_params),
                ("HVM_shadow_multiplier", Value::Double(1.0)),
                ("domain_type", s("hvm")),
                ("has_vendor_device", Value::Bool(false)),
                ("platform", map(&platform)),
                ("PCI_bus", s("")),
                ("other_config", map(&self.other_config)),
                ("domid", s("-1")),
                ("domarch", s("")),
                ("recommendations", s(self.recommendations.as_str())),
                ("VBDs", Value::Array(vbds)),
            ],
        )
    }

    fn vdi_object(i: usize, disk: &DiskSpec) -> Value {
        let size = s(disk.virtual_size.to_string());
        obj(
            "VDI",
            &vdi_ref(i),
            vec![
                ("uuid", s(disk.vdi_uuid.to_string())),
                ("name_label", s(disk.name.as_str())),
                ("name_description", s(disk.description.as_str())),
                ("SR", s(SR_REF)),
                ("VBDs", Value::Array(vec![s(vbd_ref(i))])),
                ("virtual_size", size.clone()),
                ("physical_utilisation", size),
                ("type", s(disk.vdi_type.as_str())),
                ("sharable", Value::Bool(false)),
                ("read_only", Value::Bool(disk.read_only)),
                ("other_config", map(&disk.other_config)),
                ("storage_lock", Value::Bool(false)),
                ("managed", Value::Bool(true)),
                ("missing", Value::Bool(false)),
                ("parent", s(NULL_REF)),
            ],
        )
    }

    fn sr_object(&self) -> Value {
        let total: u64 = self.disks.iter().map(|d| d.virtual_size).sum();
        let vdis = (0..self.disks.len()).map(|i| s(vdi_ref(i))).collect();
        obj(
            "SR",
            SR_REF,
            vec![
                ("uuid", s(self.sr_uuid.to_string())),
                ("name_label", s("xspack placeholder SR")),
                ("name_description", s("")),
                ("VDIs", Value::Array(vdis)),
                ("virtual_allocation", s(total.to_string())),
                ("physical_utilisation", s(total.to_string())),
                ("physical_size", s(total.to_string())),
                ("type", s("lvm")),
                ("content_type", s("user")),
                ("shared", Value::Bool(false)),
                ("other_config", empty()),
            ],
        )
    }
}

/// A VBD: a disk's when `disk` is given, otherwise the empty CD drive.
fn vbd_object(
    id: &str,
    uuid: Uuid,
    vdi: &str,
    userdevice: usize,
    disk: Option<&DiskSpec>,
) -> Value {
    let read_only = disk.is_none_or(|d| d.read_only);
    obj(
        "VBD",
        id,
        vec![
            ("uuid", s(uuid.to_string())),
            ("VM", s(VM_REF)),
            ("VDI", s(vdi)),
            ("device", s("")),
            ("userdevice", s(userdevice.to_string())),
            ("bootable", Value::Bool(disk.is_some_and(|d| d.bootable))),
            ("mode", s(if read_only { "RO" } else { "RW" })),
            ("type", s(if disk.is_some() { "Disk" } else { "CD" })),
            ("unpluggable", Value::Bool(disk.is_none())),
            ("storage_lock", Value::Bool(false)),
            ("empty", Value::Bool(disk.is_none())),
            ("currently_attached", Value::Bool(false)),
            ("other_config", disk.map_or_else(empty, |d| map(&d.other_config))),
            ("status_code", s("0")),
            ("status_detail", s("")),
            ("runtime_properties", empty()),
            ("qos_algorithm_type", s("")),
            ("qos_algorithm_params", empty()),
            ("qos_supported_algorithms", Value::Array(Vec::new())),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmlrpc::decode_document;

    fn spec() -> VmSpec {
        let mut spec = VmSpec::new("t", Uuid::from_seed(b"vm"));
        spec.sr_uuid = Uuid::from_seed(b"sr");
        spec.cd_drive = Some(Uuid::from_seed(b"cd"));
        for i in 0..5u8 {
            let d = DiskSpec::new(
                crate::DISK_ALIGNMENT,
                Uuid::from_seed(&[b'd', i]),
                Uuid::from_seed(&[b'b', i]),
            );
            spec.disks.push(d);
        }
        spec
    }

    #[test]
    fn every_required_field_is_written() {
        let xml = spec().to_ova_xml().unwrap();
        let root = decode_document(&xml).unwrap();
        let Some(Value::Array(objects)) = root.member("objects") else { panic!("no objects") };
        for object in objects {
            let class = object.member("class").unwrap();
            let required = match class {
                Value::Str(c) if c == "VM" => VM_FIELDS,
                Value::Str(c) if c == "VBD" => VBD_FIELDS,
                Value::Str(c) if c == "VDI" => VDI_FIELDS,
                Value::Str(c) if c == "SR" => SR_FIELDS,
                other => panic!("unexpected class {other:?}"),
            };
            let snap = object.member("snapshot").unwrap();
            for field in required {
                assert!(snap.member(field).is_some(), "{class:?} lacks {field}");
            }
        }
        assert_eq!(objects.len(), 1 + 1 + 2 * 5 + 1);
    }

    #[test]
    fn disk_other_config_round_trips() {
        let mut s = spec();
        s.disks[1].other_config.insert("config-drive".into(), "True".into());
        let xml = s.to_ova_xml().unwrap();
        // On both the VDI and the VBD (as xscontainer writes the config drive).
        assert_eq!(xml.matches("<name>config-drive</name><value>True</value>").count(), 2);
        assert_eq!(VmSpec::from_ova_xml(&xml).unwrap(), s);
    }

    #[test]
    fn ids_and_stream_order() {
        let doc = decode(&spec().to_ova_xml().unwrap()).unwrap();
        assert_eq!(doc.vdi_ids, ["Ref:3", "Ref:5", "Ref:7", "Ref:9", "Ref:11"]);
        assert_eq!(stream_order(&doc.vdi_ids), [4, 0, 1, 2, 3]);
        // Five disks: the CD drive moves from userdevice 3 to 5.
        assert!(spec().to_ova_xml().unwrap().contains("<name>userdevice</name><value>5</value>"));
    }

    #[test]
    fn decoder_rejects_default_templates_and_pv() {
        let xml = spec().to_ova_xml().unwrap();
        let default = xml.replace(
            "<member><name>other_config</name><value><struct/></value></member>\n        <member><name>domid",
            "<member><name>other_config</name><value><struct><member><name>default_template</name>\
             <value>true</value></member></struct></value></member><member><name>domid",
        );
        assert_ne!(default, xml);
        assert!(
            matches!(decode(&default), Err(Error::OvaField { field, .. }) if field == "other_config")
        );
        let pv = xml.replace("<value>BIOS order</value>", "<value/>");
        assert!(matches!(decode(&pv), Err(Error::OvaStructure { .. })));
    }
}
