//! Rendering a [`TemplateSpec`] as guest-templates JSON (`docs/formats/templates.md` section
//! "Keys"), with `templates/vm/guest-template.json.tera`.
//!
//! The file derives from the product's base template for the boot mode (`base-hvmlinux.json`
//! or `base-linux-uefi.json`), so it inherits the product's platform flags, install methods
//! and restrictions, and sets only what the definition says:
//!
//! - `min_memory` is half the VM's memory: the loader makes static min = x and static max =
//!   dynamic min = dynamic max = 2x, which gives back `memory`;
//! - `VCPUs_max` and `VCPUs_at_startup` are VM record fields the loader copies verbatim;
//! - `HVM_boot_params` is written whole (the loader replaces the base's map, not merges it);
//! - a UEFI template's `platform:secureboot` is written out, `auto` or `false`
//!   ([`crate::secure_boot()`]).
//!
//! A config drive has no JSON form: default templates whose label contains "CoreOS" get
//! XenCenter's cloud-config page instead, which makes the drive per VM
//! (`docs/formats/templates.md` section "The CoreOS template").

use serde::Serialize;

use crate::render::render;
use crate::size::format_amount;
use crate::spec::Recommendations;
use crate::{Error, TemplateSpec};

/// One `"key": value` member.
#[derive(Serialize)]
struct Member {
    key: String,
    value: serde_json::Value,
}

#[derive(Serialize)]
struct Disk {
    size: String,
    bootable: bool,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The recommendation keys of 4.1 that the definition sets, in the order of 4.1.
pub(crate) fn recommendation_members(
    r: &Recommendations,
) -> Vec<(&'static str, serde_json::Value)> {
    use serde_json::Value;
    let mut out = Vec::new();
    if let Some(m) = r.max_memory {
        out.push(("max_memory", Value::from(format_amount(m.0))));
    }
    let counts = [
        ("vcpus_max", r.vcpus_max),
        ("vcpus_min", r.vcpus_min),
        ("number_of_vbds", r.number_of_vbds),
        ("number_of_vifs", r.number_of_vifs),
    ];
    out.extend(counts.into_iter().filter_map(|(k, v)| v.map(|v| (k, Value::from(v)))));
    let flags = [
        ("has_vendor_device", r.has_vendor_device),
        ("allow_gpu_passthrough", r.allow_gpu_passthrough),
        ("allow_vgpu", r.allow_vgpu),
        ("allow_network_sriov", r.allow_network_sriov),
        ("supports_bios", r.supports_bios),
        ("supports_uefi", r.supports_uefi),
        ("supports_secure_boot", r.supports_secure_boot),
    ];
    out.extend(flags.into_iter().filter_map(|(k, v)| v.map(|v| (k, Value::from(v)))));
    out
}

fn members(map: &std::collections::BTreeMap<String, String>) -> Vec<Member> {
    map.iter().map(|(k, v)| Member { key: k.clone(), value: v.clone().into() }).collect()
}

/// Renders the guest-templates JSON of `spec` and checks it with
/// [`crate::validate_guest_template`].
pub fn render_guest_json(spec: &TemplateSpec) -> Result<String, Error> {
    let t = &spec.template;
    let mut ctx = tera::Context::new();
    ctx.insert("uuid", &spec.uuid().to_string());
    ctx.insert("name", spec.name());
    ctx.insert("label", &t.label);
    ctx.insert("description", &t.description);
    ctx.insert("derived_from", spec.derived_from());
    ctx.insert("min_memory", &format_amount(spec.min_memory()));
    ctx.insert("vcpus", &t.vcpus);
    let recommendations: Vec<Member> = recommendation_members(&spec.recommendations)
        .into_iter()
        .map(|(k, v)| Member { key: k.to_owned(), value: v })
        .collect();
    ctx.insert("recommendations", &recommendations);
    // A UEFI template says its Secure Boot setting itself rather than through the base file
    // (`base-linux-uefi.json` says `auto` today): `auto`, or `false` for `secure-boot = "off"`.
    let mut platform = spec.platform.clone();
    if spec.template.boot == crate::BootFirmware::Uefi {
        let enabled = crate::secure_boot(spec, false)?.enabled;
        platform.insert("secureboot".into(), if enabled { "auto" } else { "false" }.into());
    }
    ctx.insert("platform", &members(&platform));
    ctx.insert("other_config", &members(&spec.other_config()));
    let disks: Vec<Disk> = spec
        .disks
        .iter()
        .enumerate()
        .map(|(i, d)| Disk {
            size: format_amount(d.size.0),
            bootable: spec.bootable(i),
            kind: d.disk_type.as_str(),
        })
        .collect();
    ctx.insert("disks", &disks);
    ctx.insert("firmware", t.boot.as_str());
    ctx.insert("boot_order", &t.boot_order.0);
    let json = render("vm/guest-template.json.tera", &ctx)?;
    crate::validate_guest_template_str(&json, &spec.json_file_name())?;
    Ok(json)
}

#[cfg(test)]
mod tests {
    use camino::Utf8Path;

    use super::*;

    #[test]
    fn strings_are_escaped_and_the_document_parses() {
        let spec = TemplateSpec::parse(
            r#"
[template]
name = "q"
label = "Quote \" and back\\slash"
description = "two\nlines & <tags>"
version = "1"
flavor = "ubuntu"
boot = "uefi"
memory = "3G"
vcpus = 4

[recommendations]
vcpus-max = 8
supports-secure-boot = true

[platform]
vga = "std"

[[disk]]
size = "10G"

[[disk]]
size = "2M"
type = "user"
"#,
            Utf8Path::new("q.toml"),
        )
        .unwrap();
        let json = render_guest_json(&spec).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["name_label"], "Quote \" and back\\slash");
        assert_eq!(v["name_description"], "two\nlines & <tags>");
        assert_eq!(v["min_memory"], "1536M");
        assert_eq!(v["VCPUs_at_startup"], 4);
        assert_eq!(v["vcpus_max"], 8);
        assert_eq!(v["supports_secure_boot"], true);
        assert_eq!(v["other_config"]["install-distro"], "debianlike");
        assert_eq!(
            v["disks"][1],
            serde_json::json!({"size": "2M", "bootable": false, "type": "user"})
        );
        assert_eq!(v["HVM_boot_params"]["firmware"], "uefi");
        assert!(json.ends_with("}\n"), "{json}");
    }
}
