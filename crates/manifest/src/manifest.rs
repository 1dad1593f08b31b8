//! `manifest.json`: the versioned record of one build.
//!
//! Schema version 1 (this crate's own format; `docs` are the rustdoc of these types):
//!
//! ```json
//! {
//!   "manifest_version": 1,
//!   "tool": { "name": "xspack", "version": "0.1.0" },
//!   "source_date_epoch": 1700000000,
//!   "inputs": [
//!     { "name": "packs/demo/pack.toml", "kind": "pack", "digest": "sha256:<hex>", "size": 312 }
//!   ],
//!   "outputs": [
//!     { "path": "demo.iso", "size": 1048576, "sha256": "<hex>" }
//!   ]
//! }
//! ```
//!
//! **Version 2** adds `"boot": { "firmware": "uefi", "chain": "shim", "secure_boot": true }`
//! after `outputs` ([`Boot`]), for bootable guests. A manifest is written as version 2 only when
//! it has `boot`, so every other build's manifest stays version 1, byte for byte, and readers
//! that know only version 1 refuse a guest's by its number rather than by an unknown field.
//!
//! Unknown fields are rejected, so a typo never passes silently; a manifest from a newer schema
//! version is refused by number before anything else is read. Outputs are kept sorted by path
//! and inputs in the order the build consumed them, so the same build always writes the same
//! bytes. Output paths obey the [`RelPath`] rules.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use camino::Utf8Path;
use serde::{Deserialize, Serialize};
use xspack_io::Sha256Digest;

use crate::{Error, RelPath, Sha256Sums};

/// The newest schema version this crate writes and reads (it reads every one from 1).
pub const SCHEMA_VERSION: u32 = 2;
/// The version of a manifest without `boot`.
const FIRST_VERSION: u32 = 1;

/// The whole `manifest.json` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// 1, or 2 when [`Manifest::boot`] is set ([`Manifest::to_json`] writes the one the
    /// content needs).
    pub manifest_version: u32,
    /// The program that made the build.
    pub tool: Tool,
    /// The timestamp used for every time field in the outputs.
    pub source_date_epoch: u64,
    /// What the build read, in the order it read them.
    pub inputs: Vec<Input>,
    /// What the build wrote, sorted by path.
    pub outputs: Vec<Output>,
    /// How a bootable guest boots; absent for other builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<Boot>,
}

/// How a bootable guest boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Boot {
    /// The firmware the VM is made for.
    pub firmware: Firmware,
    /// The boot chain on the disk.
    pub chain: BootChain,
    /// Whether the chain boots with Secure Boot enforced (only `uefi` with `shim`).
    pub secure_boot: bool,
}

/// `boot.firmware`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// Legacy BIOS.
    Bios,
    /// UEFI.
    Uefi,
}

/// `boot.chain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootChain {
    /// GRUB linked by xspack (unsigned).
    Grub,
    /// The distribution's signed shim, signed GRUB and signed kernel.
    Shim,
}

/// Name and version of the program that wrote a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// Program name, e.g. `xspack`.
    pub name: String,
    /// Program version.
    pub version: String,
}

/// One input of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// How the user named the input: a path or an image reference.
    pub name: String,
    /// What sort of input it is, a lowercase word such as `rpm`, `pack` or `oci`.
    pub kind: String,
    /// Digest of the input's bytes (for images, of the manifest that names the layers).
    pub digest: InputDigest,
    /// Size in bytes of what `digest` covers.
    pub size: u64,
}

/// One artifact of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Path relative to the output directory.
    pub path: RelPath,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the file's bytes.
    pub sha256: Sha256Digest,
}

/// An input digest in OCI form, `sha256:<hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputDigest(pub Sha256Digest);

impl fmt::Display for InputDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

impl fmt::Debug for InputDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InputDigest({self})")
    }
}

impl FromStr for InputDigest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let hex = s
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("digest {s:?} does not start with \"sha256:\""))?;
        hex.parse().map(InputDigest).map_err(|e| format!("digest {s:?}: {e}"))
    }
}

impl Serialize for InputDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InputDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Reads only the version, so a newer schema is refused by number, not by its new fields.
#[derive(Deserialize)]
struct VersionProbe {
    manifest_version: Option<serde_json::Value>,
}

impl Manifest {
    /// An empty manifest for a build by `tool` at `source_date_epoch`.
    pub fn new(tool: Tool, source_date_epoch: u64) -> Self {
        Manifest {
            manifest_version: FIRST_VERSION,
            tool,
            source_date_epoch,
            inputs: Vec::new(),
            outputs: Vec::new(),
            boot: None,
        }
    }

    /// The checksum list equivalent to the outputs.
    pub fn sha256sums(&self) -> Result<Sha256Sums, Error> {
        let mut sums = Sha256Sums::new();
        for out in &self.outputs {
            sums.insert(out.path.clone(), out.sha256)?;
        }
        Ok(sums)
    }

    /// Canonical JSON text: outputs sorted by path, two-space indent, final newline.
    pub fn to_json(&self) -> Result<String, Error> {
        let mut canonical = self.clone();
        canonical.outputs.sort_by(|a, b| a.path.cmp(&b.path));
        canonical.manifest_version = if self.boot.is_some() { 2 } else { FIRST_VERSION };
        canonical.check(Utf8Path::new(crate::MANIFEST_NAME))?;
        let mut text = serde_json::to_string_pretty(&canonical).expect("manifest serialises");
        text.push('\n');
        Ok(text)
    }

    /// Parses `data`, the contents of `file` (used in error messages).
    pub fn parse(data: &[u8], file: &Utf8Path) -> Result<Self, Error> {
        let bad = |reason: String| Error::Manifest { file: file.to_owned(), reason };
        let probe: VersionProbe = serde_json::from_slice(data).map_err(|e| bad(json_reason(&e)))?;
        match probe.manifest_version {
            None => return Err(bad("missing field `manifest_version`".into())),
            Some(v)
                if v.as_u64().is_some_and(|n| {
                    (u64::from(FIRST_VERSION)..=u64::from(SCHEMA_VERSION)).contains(&n)
                }) => {}
            Some(v) => {
                return Err(bad(format!(
                    "manifest_version {v} is not supported (this xspack reads versions {FIRST_VERSION} to {SCHEMA_VERSION})"
                )));
            }
        }
        let manifest: Manifest = serde_json::from_slice(data).map_err(|e| bad(json_reason(&e)))?;
        manifest.check(file)?;
        Ok(manifest)
    }

    /// Reads and parses the file at `path`.
    pub fn read_file(path: &Utf8Path) -> Result<Self, Error> {
        let data = crate::read_list_file(path)?;
        Self::parse(&data, path)
    }

    /// Rules the types alone cannot express.
    fn check(&self, file: &Utf8Path) -> Result<(), Error> {
        let bad = |reason: String| Error::Manifest { file: file.to_owned(), reason };
        if self.tool.name.trim().is_empty() {
            return Err(bad("tool.name is empty".into()));
        }
        if self.boot.is_some() && self.manifest_version < 2 {
            return Err(bad(format!(
                "boot needs manifest_version 2, not {}",
                self.manifest_version
            )));
        }
        if let Some(boot) = self.boot {
            let shim = boot.firmware == Firmware::Uefi && boot.chain == BootChain::Shim;
            if boot.chain == BootChain::Shim && boot.firmware != Firmware::Uefi {
                return Err(bad("boot.chain shim needs boot.firmware uefi".into()));
            }
            if boot.secure_boot != shim {
                return Err(bad(format!(
                    "boot.secure_boot is {}, but the chain is {:?} on {:?}",
                    boot.secure_boot, boot.chain, boot.firmware
                )));
            }
        }
        for (i, input) in self.inputs.iter().enumerate() {
            if input.name.is_empty() || input.name.chars().any(char::is_control) {
                return Err(bad(format!(
                    "inputs[{i}].name {:?} is empty or has control characters",
                    input.name
                )));
            }
            let kind_ok = !input.kind.is_empty()
                && input
                    .kind
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !kind_ok {
                return Err(bad(format!(
                    "inputs[{i}].kind {:?} is not a lowercase word",
                    input.kind
                )));
            }
        }
        let mut seen = BTreeSet::new();
        for out in &self.outputs {
            if out.path.is_manifest_file() {
                return Err(bad(format!(
                    "outputs lists {}, which cannot checksum itself",
                    out.path
                )));
            }
            if !seen.insert(&out.path) {
                return Err(bad(format!("outputs lists {} twice", out.path)));
            }
        }
        Ok(())
    }
}

/// The JSON parser's message with its position moved to the front: `line 3, column 5: ...`.
fn json_reason(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = msg.split(" at line ").next().unwrap_or(&msg);
    format!("line {}, column {}: {msg}", e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Manifest {
        let mut m =
            Manifest::new(Tool { name: "xspack".into(), version: "0.1.0".into() }, 1_700_000_000);
        m.inputs.push(Input {
            name: "packs/demo/pack.toml".into(),
            kind: "pack".into(),
            digest: InputDigest(Sha256Digest::of_bytes(b"pack")),
            size: 4,
        });
        for (path, body) in [("z.iso", &b"z"[..]), ("a.iso", b"a")] {
            m.outputs.push(Output {
                path: RelPath::new(path).unwrap(),
                size: body.len() as u64,
                sha256: Sha256Digest::of_bytes(body),
            });
        }
        m
    }

    #[test]
    fn a_boot_record_makes_version_2_and_must_be_consistent() {
        let mut m = sample();
        assert!(m.to_json().unwrap().starts_with("{\n  \"manifest_version\": 1,"));
        m.boot = Some(Boot { firmware: Firmware::Uefi, chain: BootChain::Shim, secure_boot: true });
        let text = m.to_json().unwrap();
        assert!(text.starts_with("{\n  \"manifest_version\": 2,"), "{text}");
        assert!(text.ends_with(
            "  \"boot\": {\n    \"firmware\": \"uefi\",\n    \"chain\": \"shim\",\n    \"secure_boot\": true\n  }\n}\n"
        ));
        let back = Manifest::parse(text.as_bytes(), "m.json".into()).unwrap();
        assert_eq!(back.boot, m.boot);
        let cases = [
            (
                text.replace("\"manifest_version\": 2", "\"manifest_version\": 1"),
                "boot needs manifest_version 2",
            ),
            (
                text.replace("\"secure_boot\": true", "\"secure_boot\": false"),
                "boot.secure_boot is false",
            ),
            (text.replace("\"uefi\"", "\"bios\""), "boot.chain shim needs boot.firmware uefi"),
            (text.replace("\"shim\"", "\"lilo\""), "unknown variant `lilo`"),
        ];
        for (bad, want) in cases {
            let err = parse_err(&bad);
            assert!(err.contains(want), "want {want:?}, got {err}");
        }
    }

    #[test]
    fn canonical_text_sorts_outputs() {
        let text = sample().to_json().unwrap();
        assert!(text.find("a.iso").unwrap() < text.find("z.iso").unwrap());
        assert!(text.ends_with("}\n"));
        let back = Manifest::parse(text.as_bytes(), "m".into()).unwrap();
        assert_eq!(back.to_json().unwrap(), text);
    }

    fn parse_err(text: &str) -> String {
        Manifest::parse(text.as_bytes(), "dist/manifest.json".into()).unwrap_err().to_string()
    }

    #[test]
    fn rejects_schema_violations() {
        let good = sample().to_json().unwrap();
        let cases = [
            (
                good.replace("\"manifest_version\": 1", "\"manifest_version\": 3"),
                "manifest_version 3 is not supported (this xspack reads versions 1 to 2)",
            ),
            (good.replace("\"manifest_version\": 1,", ""), "missing field `manifest_version`"),
            (
                good.replace("\"source_date_epoch\"", "\"extra\": 1, \"source_date_epoch\""),
                "unknown field `extra`",
            ),
            (
                good.replace("\"size\": 4", "\"size\": -4"),
                "line 13, column 16: invalid value: integer `-4`, expected u64",
            ),
            (good.replace("sha256:", "md5:"), "does not start with \"sha256:\""),
            (good.replace("\"a.iso\"", "\"../a.iso\""), "path \"../a.iso\": component"),
            (good.replace("\"a.iso\"", "\"z.iso\""), "outputs lists z.iso twice"),
            (good.replace("\"a.iso\"", "\"SHA256SUMS\""), "cannot checksum itself"),
            (good.replace("\"pack\"", "\"Pack Def\""), "inputs[0].kind"),
            (good.replace("\"xspack\"", "\" \""), "tool.name is empty"),
            (good[..good.len() / 2].to_owned(), "EOF while parsing"),
            ("[]".to_owned(), "line 1, column"),
        ];
        for (text, want) in cases {
            let msg = parse_err(&text);
            assert!(msg.starts_with("dist/manifest.json: "), "{msg}");
            assert!(msg.contains(want), "want {want:?} in {msg}");
        }
    }

    fn manifest_strategy() -> impl Strategy<Value = Manifest> {
        let input =
            ("[a-zA-Z0-9/:._ -]{1,30}", "[a-z][a-z0-9-]{0,10}", any::<[u8; 32]>(), any::<u64>())
                .prop_map(|(name, kind, d, size)| Input {
                    name,
                    kind,
                    digest: InputDigest(Sha256Digest(d)),
                    size,
                });
        let output = (
            "[a-zA-Z0-9_-]{1,8}(/[a-zA-Z0-9 ._\\\\\n-]{1,8}){0,2}",
            any::<u64>(),
            any::<[u8; 32]>(),
        )
            .prop_filter_map("valid path", |(p, size, d)| {
                let path = RelPath::new(p).ok()?;
                (!path.is_manifest_file()).then_some(Output { path, size, sha256: Sha256Digest(d) })
            });
        (
            "[a-z]{1,10}",
            "[0-9a-z.+-]{1,10}",
            any::<u64>(),
            proptest::collection::vec(input, 0..5),
            proptest::collection::btree_map("[a-z]{1,6}", output, 0..8),
        )
            .prop_map(|(name, version, sde, inputs, outputs)| {
                let mut m = Manifest::new(Tool { name, version }, sde);
                m.inputs = inputs;
                // Keyed by a prefix so paths are unique; sorted as the canonical form requires.
                let mut outs: Vec<Output> = outputs
                    .into_iter()
                    .map(|(k, mut o)| {
                        o.path = RelPath::new(format!("{k}-{}", o.path.as_str())).unwrap();
                        o
                    })
                    .collect();
                outs.sort_by(|a, b| a.path.cmp(&b.path));
                m.outputs = outs;
                m
            })
    }

    proptest! {
        #[test]
        fn round_trip(m in manifest_strategy()) {
            let text = m.to_json().unwrap();
            let back = Manifest::parse(text.as_bytes(), "m".into()).unwrap();
            prop_assert_eq!(&back, &m);
            let sums = m.sha256sums().unwrap();
            let sums_back = Sha256Sums::parse(sums.to_text().as_bytes(), "S".into()).unwrap();
            prop_assert_eq!(sums_back, sums);
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Manifest::parse(&data, "m".into());
        }
    }
}
