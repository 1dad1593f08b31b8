//! The guest-templates JSON validator: every key of `docs/formats/templates.md` section "Keys" with
//! its type.
//!
//! `create-guest-templates` copies any key it does not know into the VM record verbatim, so a typo
//! such as `vcpus` or `min-memory` is not an error on the host: it silently makes a broken
//! template. This validator refuses every key that is neither a loader key nor one of the VM record
//! fields xspack writes on purpose (`VCPUs_max`, `VCPUs_at_startup`; `docs/formats/xva.md` section
//! "Required fields"), and every value of the wrong type, naming the key.
//!
//! Booleans may be JSON booleans or the strings the loader reads as booleans (`"yes"`,
//! `"true"`, `"1"`, ...), as the product's own files use both. Map values may be `null`, which
//! the loader drops (`base-linux-uefi.json` clears `device-model` that way).

use std::fmt;

use camino::Utf8Path;
use serde_json::{Map, Value};

use crate::Error;
use crate::size::parse_amount;

/// One bad key in a guest-templates JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestJsonError {
    /// The key's path, e.g. `min_memory` or `disks[0].size`; empty for the document itself.
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for GuestJsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "key {:?}: {}", self.key, self.reason)
        }
    }
}

impl std::error::Error for GuestJsonError {}

/// What a key holds.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Any string.
    Text,
    /// A hyphenated UUID.
    Uuid,
    /// The file name of another template JSON.
    JsonFile,
    /// `\d+[KMGT]?` as a string.
    Amount,
    /// A non-negative integer.
    Count,
    /// An integer of at least 1.
    Positive,
    /// A boolean, or a string the loader reads as one.
    Bool,
    /// A map of strings (or null).
    StrMap,
    /// `HVM_boot_params`: a map with known keys.
    BootParams,
    /// The provisioned disks.
    Disks,
    /// A positive number.
    Multiplier,
    /// One of the listed strings.
    OneOf(&'static [&'static str]),
}

/// Every top-level key xspack accepts, with its kind (the loader's keys; the last two are VM
/// record fields that the loader copies verbatim).
const KEYS: &[(&str, Kind)] = &[
    ("uuid", Kind::Uuid),
    ("reference_label", Kind::Text),
    ("name_label", Kind::Text),
    ("name_description", Kind::Text),
    ("derived_from", Kind::JsonFile),
    ("min_memory", Kind::Amount),
    ("max_memory", Kind::Amount),
    ("vcpus_max", Kind::Count),
    ("vcpus_min", Kind::Count),
    ("number_of_vbds", Kind::Count),
    ("number_of_vifs", Kind::Count),
    ("has_vendor_device", Kind::Bool),
    ("allow_gpu_passthrough", Kind::Bool),
    ("allow_vgpu", Kind::Bool),
    ("allow_network_sriov", Kind::Bool),
    ("supports_bios", Kind::Bool),
    ("supports_uefi", Kind::Bool),
    ("supports_secure_boot", Kind::Bool),
    ("disks", Kind::Disks),
    ("other_config", Kind::StrMap),
    ("platform", Kind::StrMap),
    ("nx", Kind::Bool),
    ("acpi", Kind::Bool),
    ("apic", Kind::Bool),
    ("pae", Kind::Bool),
    ("hpet", Kind::Bool),
    ("secureboot", Kind::Bool),
    ("HVM_boot_policy", Kind::OneOf(&["", "BIOS order"])),
    ("HVM_boot_params", Kind::BootParams),
    ("PV_bootloader", Kind::OneOf(&["", "pygrub", "eliloader"])),
    ("PV_kernel", Kind::Text),
    ("PV_ramdisk", Kind::Text),
    ("PV_args", Kind::Text),
    ("PV_bootloader_args", Kind::Text),
    ("PV_legacy_args", Kind::Text),
    ("HVM_shadow_multiplier", Kind::Multiplier),
    ("domain_type", Kind::OneOf(&["hvm", "pv", "pv_in_pvh", "pvh"])),
    ("mac_seed", Kind::Uuid),
    ("VCPUs_max", Kind::Positive),
    ("VCPUs_at_startup", Kind::Positive),
];

/// Keys of one `disks` entry.
const DISK_KEYS: &[(&str, Kind)] = &[
    ("size", Kind::Amount),
    ("sr", Kind::Text),
    ("bootable", Kind::Bool),
    ("type", Kind::OneOf(&["system", "user", "ephemeral"])),
];

/// Strings the loader reads as booleans (`get_bool_key`); anything else would silently be false.
const BOOL_STRINGS: &[&str] = &["t", "true", "y", "yes", "1", "f", "false", "n", "no", "0"];

fn err(key: &str, reason: impl Into<String>) -> GuestJsonError {
    GuestJsonError { key: key.to_owned(), reason: reason.into() }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => matches!(s.to_lowercase().as_str(), "t" | "true" | "y" | "yes" | "1"),
        _ => false,
    }
}

fn check_value(key: &str, kind: Kind, v: &Value) -> Result<(), GuestJsonError> {
    let expected = |what: &str| err(key, format!("expected {what}, found {}", describe(v)));
    match kind {
        Kind::Text => v.as_str().map(|_| ()).ok_or_else(|| expected("a string")),
        Kind::Uuid => match v.as_str().map(str::parse::<xspack_xva::Uuid>) {
            Some(Ok(_)) => Ok(()),
            _ => Err(expected("a UUID such as \"094706dd-5d22-4830-99b7-c710769c9dcc\"")),
        },
        Kind::JsonFile => match v.as_str() {
            // The loader opens exactly this name in the template directories: case matters.
            Some(s)
                if s.strip_suffix(".json").is_some_and(|stem| !stem.is_empty())
                    && !s.contains('/') =>
            {
                Ok(())
            }
            _ => Err(expected("the file name of another template, such as \"base-hvmlinux.json\"")),
        },
        Kind::Amount => match v.as_str().map(parse_amount) {
            Some(Ok(_)) => Ok(()),
            _ => Err(expected("an amount such as \"2G\" (digits, then K, M, G or T)")),
        },
        Kind::Count => v.as_u64().map(|_| ()).ok_or_else(|| expected("a non-negative integer")),
        Kind::Positive => match v.as_u64() {
            Some(n) if n >= 1 => Ok(()),
            _ => Err(expected("an integer of at least 1")),
        },
        Kind::Bool => match v {
            Value::Bool(_) => Ok(()),
            Value::String(s) if BOOL_STRINGS.contains(&s.to_lowercase().as_str()) => Ok(()),
            _ => Err(expected("a boolean (true/false, or \"yes\"/\"no\")")),
        },
        Kind::StrMap => check_map(key, v, |_, _| Ok(())),
        Kind::BootParams => check_map(key, v, |k, value| match (k, value) {
            ("firmware", Some(f)) if !matches!(f, "bios" | "uefi") => {
                Err(format!("{f:?} is not a firmware (bios or uefi)"))
            }
            ("order", Some(o)) if o.is_empty() || !o.chars().all(|c| "cdn".contains(c)) => {
                Err(format!("{o:?} is not a boot order of letters from c, d and n"))
            }
            _ => Ok(()),
        }),
        Kind::Disks => check_disks(key, v),
        Kind::Multiplier => match v.as_f64() {
            Some(x) if x > 0.0 => Ok(()),
            _ => Err(expected("a positive number")),
        },
        Kind::OneOf(values) => match v.as_str() {
            Some(s) if values.contains(&s) => Ok(()),
            _ => Err(expected(&format!("one of {values:?}"))),
        },
    }
}

/// A map whose values are strings or null; `extra` checks each entry further.
fn check_map(
    key: &str,
    v: &Value,
    extra: impl Fn(&str, Option<&str>) -> Result<(), String>,
) -> Result<(), GuestJsonError> {
    let Value::Object(map) = v else {
        return Err(err(key, format!("expected an object of strings, found {}", describe(v))));
    };
    for (k, value) in map {
        let sub = format!("{key}.{k}");
        let text = match value {
            Value::String(s) => Some(s.as_str()),
            Value::Null => None,
            other => {
                return Err(err(
                    &sub,
                    format!("expected a string (or null), found {}", describe(other)),
                ));
            }
        };
        extra(k, text).map_err(|reason| err(&sub, reason))?;
    }
    Ok(())
}

fn check_disks(key: &str, v: &Value) -> Result<(), GuestJsonError> {
    let Value::Array(disks) = v else {
        return Err(err(key, format!("expected an array of disks, found {}", describe(v))));
    };
    for (i, disk) in disks.iter().enumerate() {
        let at = format!("{key}[{i}]");
        let Value::Object(fields) = disk else {
            return Err(err(&at, format!("expected an object, found {}", describe(disk))));
        };
        check_object(&at, fields, DISK_KEYS, "a disk key (size, sr, bootable, type)")?;
        if !fields.contains_key("size") {
            return Err(err(&format!("{at}.size"), "missing: every disk needs a size"));
        }
    }
    Ok(())
}

/// Checks every member of `fields` against `table`.
fn check_object(
    prefix: &str,
    fields: &Map<String, Value>,
    table: &[(&str, Kind)],
    known: &str,
) -> Result<(), GuestJsonError> {
    for (k, v) in fields {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        let Some((_, kind)) = table.iter().find(|(name, _)| name == k) else {
            let hint = table
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(&k.replace('-', "_")))
                .map(|(name, _)| format!("; did you mean {name:?}?"))
                .unwrap_or_default();
            return Err(err(&key, format!("unknown key: not {known}{hint}")));
        };
        check_value(&key, *kind, v)?;
    }
    Ok(())
}

/// Checks a parsed guest-templates JSON document against `docs/formats/templates.md` section
/// "Keys".
pub fn validate_guest_template(doc: &Value) -> Result<(), GuestJsonError> {
    let Value::Object(fields) = doc else {
        return Err(err("", format!("expected a JSON object, found {}", describe(doc))));
    };
    check_object(
        "",
        fields,
        KEYS,
        "a guest-templates key (\"Keys\" in docs/formats/templates.md; the loader would copy \
         it into the VM record verbatim)",
    )?;
    if !fields.contains_key("uuid") {
        return Err(err(
            "uuid",
            "missing: the loader only creates templates from files with a uuid",
        ));
    }
    let count = |k: &str| fields.get(k).and_then(Value::as_u64);
    if let (Some(start), Some(max)) = (count("VCPUs_at_startup"), count("VCPUs_max"))
        && start > max
    {
        return Err(err("VCPUs_at_startup", format!("{start} exceeds VCPUs_max {max}")));
    }
    if let (Some(min), Some(max)) = (count("vcpus_min"), count("vcpus_max"))
        && min > max
    {
        return Err(err("vcpus_min", format!("{min} exceeds vcpus_max {max}")));
    }
    let device_model = fields
        .get("platform")
        .and_then(|p| p.get("device_model"))
        .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()));
    if device_model && fields.get("supports_uefi").is_some_and(truthy) {
        return Err(err(
            "supports_uefi",
            "cannot be combined with platform.device_model (the loader refuses the template)",
        ));
    }
    Ok(())
}

/// Parses `text` as JSON and validates it; `origin` names it in errors.
pub fn validate_guest_template_str(text: &str, origin: &str) -> Result<Value, Error> {
    let doc: Value = serde_json::from_str(text).map_err(|e| Error::GuestJson {
        origin: origin.to_owned(),
        error: err("", format!("not valid JSON: {e}")),
    })?;
    validate_guest_template(&doc)
        .map_err(|error| Error::GuestJson { origin: origin.to_owned(), error })?;
    Ok(doc)
}

/// Reads the file at `path` and validates it.
pub fn validate_guest_template_file(path: &Utf8Path) -> Result<Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("reading", path, e))?;
    validate_guest_template_str(&text, path.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "uuid": "094706dd-5d22-4830-99b7-c710769c9dcc",
            "reference_label": "coreos",
            "name_label": "CoreOS",
            "derived_from": "base-hvmlinux.json",
            "min_memory": "2G",
            "max_memory": "512G",
            "VCPUs_max": 2,
            "VCPUs_at_startup": 2,
            "supports_uefi": "yes",
            "platform": { "device-model": null, "vga": "std" },
            "HVM_boot_params": { "order": "cdn", "firmware": "bios" },
            "disks": [ { "size": "8G", "bootable": true, "type": "system", "sr": "" } ]
        })
    }

    #[test]
    fn good_documents_pass() {
        validate_guest_template(&good()).unwrap();
        validate_guest_template(&json!({ "uuid": "094706dd-5d22-4830-99b7-c710769c9dcc" }))
            .unwrap();
    }

    /// Each case edits the good document; the error must name `key` and contain `reason`.
    #[test]
    fn unknown_and_mistyped_keys_are_named() {
        type Edit = fn(&mut Value);
        let cases: &[(Edit, &str, &str)] = &[
            (|d| d["vcpus"] = json!(2), "vcpus", "unknown key"),
            (|d| d["min-memory"] = json!("2G"), "min-memory", "did you mean \"min_memory\""),
            (|d| d["Name_Label"] = json!("x"), "Name_Label", "did you mean \"name_label\""),
            (|d| d["min_memory"] = json!(2), "min_memory", "found the number 2"),
            (|d| d["min_memory"] = json!("2GB"), "min_memory", "an amount such as"),
            (|d| d["max_memory"] = json!(true), "max_memory", "found the boolean true"),
            (|d| d["uuid"] = json!("not-a-uuid"), "uuid", "a UUID"),
            (|d| d["derived_from"] = json!("base-hvmlinux"), "derived_from", "file name"),
            (|d| d["vcpus_max"] = json!("32"), "vcpus_max", "non-negative integer"),
            (|d| d["vcpus_max"] = json!(-1), "vcpus_max", "non-negative integer"),
            (|d| d["VCPUs_max"] = json!(0), "VCPUs_max", "at least 1"),
            (|d| d["VCPUs_at_startup"] = json!(4), "VCPUs_at_startup", "exceeds VCPUs_max"),
            (|d| d["supports_uefi"] = json!("maybe"), "supports_uefi", "a boolean"),
            (|d| d["nx"] = json!(1), "nx", "a boolean"),
            (|d| d["platform"] = json!(["vga"]), "platform", "an object of strings"),
            (|d| d["platform"]["videoram"] = json!(8), "platform.videoram", "found the number 8"),
            (|d| d["other_config"] = json!("x"), "other_config", "an object"),
            (
                |d| d["HVM_boot_params"]["firmware"] = json!("efi"),
                "HVM_boot_params.firmware",
                "not a firmware",
            ),
            (
                |d| d["HVM_boot_params"]["order"] = json!("cx"),
                "HVM_boot_params.order",
                "boot order",
            ),
            (|d| d["HVM_boot_policy"] = json!("BIOS"), "HVM_boot_policy", "one of"),
            (|d| d["PV_bootloader"] = json!("grub"), "PV_bootloader", "one of"),
            (|d| d["domain_type"] = json!("HVM"), "domain_type", "one of"),
            (
                |d| d["HVM_shadow_multiplier"] = json!("1.0"),
                "HVM_shadow_multiplier",
                "positive number",
            ),
            (|d| d["disks"] = json!({ "size": "8G" }), "disks", "an array of disks"),
            (|d| d["disks"][0]["size"] = json!(8), "disks[0].size", "an amount"),
            (|d| d["disks"][0]["bootable"] = json!("sure"), "disks[0].bootable", "a boolean"),
            (|d| d["disks"][0]["type"] = json!("data"), "disks[0].type", "one of"),
            (|d| d["disks"][0]["device"] = json!("0"), "disks[0].device", "not a disk key"),
            (|d| d["disks"] = json!([{ "sr": "" }]), "disks[0].size", "missing"),
            (
                |d| {
                    d.as_object_mut().unwrap().remove("uuid");
                },
                "uuid",
                "missing",
            ),
            (
                |d| d["platform"]["device_model"] = json!("qemu-trad"),
                "supports_uefi",
                "device_model",
            ),
        ];
        for (edit, key, reason) in cases {
            let mut doc = good();
            edit(&mut doc);
            let e = validate_guest_template(&doc).unwrap_err();
            assert_eq!(e.key, *key, "{e}");
            assert!(e.reason.contains(reason), "want {reason:?} in {e}");
            assert!(e.to_string().starts_with(&format!("key {key:?}: ")), "{e}");
        }
    }

    #[test]
    fn documents_that_are_not_objects_or_json() {
        assert!(validate_guest_template(&json!([])).unwrap_err().reason.contains("a JSON object"));
        let e = validate_guest_template_str("{\"uuid\": ", "x.json").unwrap_err().to_string();
        assert!(e.starts_with("x.json: not valid JSON"), "{e}");
        let e = validate_guest_template_str(
            "{\"uuid\": \"094706dd-5d22-4830-99b7-c710769c9dcc\", \"vcpus\": 2}",
            "x.json",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("x.json: key \"vcpus\": unknown key"), "{e}");
    }
}
