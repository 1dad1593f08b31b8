//! `pack.toml`: what a pack is and what it holds.
//!
//! ```toml
//! [pack]
//! name = "xscontainer"            # label: letters, digits, '_' and '-'
//! version = "6.5.0"               # dotted integers (legacy hosts compare them numerically)
//! build = "100205c"
//! originator = "xs"
//! description = "XSContainer Management"
//! formats = ["legacy", "update"]
//! target = "xenserver-8"          # the hosts it installs on (the default; see docs/guide.md)
//!
//! [legacy]                        # docs/formats/packs.md "Legacy pack"
//! product = "XCP"
//! requires = [{ originator = "xcp", name = "main", test = "ge", version = "1.9.0" }]
//!
//! [update]                        # docs/formats/packs.md "Update pack"
//! base-requires = ["platform-version >= 2.3"]
//! after-apply-guidance = ["restartXAPI"]
//! key-name = "RPM-GPG-KEY-xs"
//!
//! [signing]
//! key = "keys/signing.asc"        # or --sign-key; never commit a secret key
//! passphrase-env = "XSPACK_SIGN_PASSPHRASE"
//!
//! [[rpm]]                         # prebuilt RPMs, globs relative to the pack directory
//! path = "rpms/*.rpm"
//!
//! [[package]]                     # RPMs built by xspack from files in the repository
//! name = "xscontainer-templates"
//! version = "1.0"
//! summary = "VM templates"
//! description = "Container host templates."
//! posttrans = "scripts/reload-templates.sh"
//! files = [{ src = "files/coreos.json", dest = "/etc/xapi.d/vm-templates/xspack-coreos.json" }]
//! compression = "xz"              # payload: "gzip" (level 9, the default) or "xz" (preset 6)
//!
//! [[template]]                    # a VM template RPM built by xspack-template
//! path = "../../templates/coreos-container-host.toml"
//! ```
//!
//! A `[[template]]` names a `templates/<name>.toml` definition (relative to the pack directory).
//! `pack build` renders its guest-templates JSON and packages it as the template RPM of `xspack
//! template build` (`<name>-template`: the JSON under `/etc/xapi.d/vm-templates/` and the reload in
//! `%posttrans`, `docs/formats/templates.md` section "The template RPM"), signed with the pack key.
//! JSON files that a `[[package]]` installs into a template directory are checked with the same
//! guest-templates validator.
//!
//! Every table rejects unknown keys; errors name the file, line and column.

use std::fmt;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Deserialize;

use xspack_rpmrepo::Target;

use crate::Error;

/// The two pack formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PackFormat {
    /// `XS-REPOSITORY` + `XS-PACKAGES` + install scripts, for XenServer 6.x and 7.0.
    Legacy,
    /// Signed yum repository with `update.xml`, for 7.1 and later, XCP-ng and XenServer 8.
    Update,
}

impl fmt::Display for PackFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PackFormat::Legacy => "legacy",
            PackFormat::Update => "update",
        })
    }
}

/// A whole `pack.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackSpec {
    /// Identity and description.
    pub pack: PackInfo,
    /// Legacy-format settings.
    #[serde(default)]
    pub legacy: LegacyInfo,
    /// Update-format settings.
    #[serde(default)]
    pub update: UpdateInfo,
    /// Signing key settings.
    #[serde(default)]
    pub signing: SigningInfo,
    /// Prebuilt RPMs.
    #[serde(default, rename = "rpm")]
    pub rpms: Vec<PrebuiltRpm>,
    /// RPMs xspack builds.
    #[serde(default, rename = "package")]
    pub packages: Vec<PackageSpec>,
    /// VM template RPMs xspack builds from template definitions.
    #[serde(default, rename = "template")]
    pub templates: Vec<TemplateRef>,
}

/// `[pack]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PackInfo {
    /// The label: `name-label` of update.xml, `name` of XS-REPOSITORY, the ISO's volume id.
    pub name: String,
    /// Dotted integers.
    pub version: String,
    /// Build string.
    pub build: String,
    /// Vendor code.
    pub originator: String,
    /// One line shown by `xe update-list` and XenCenter.
    pub description: String,
    /// Formats to build; both by default.
    #[serde(default = "both_formats")]
    pub formats: Vec<PackFormat>,
    /// The hosts the pack is for, a [`Target`] id; [`Target::DEFAULT`] when absent.
    #[serde(default)]
    pub target: Option<String>,
}

fn both_formats() -> Vec<PackFormat> {
    vec![PackFormat::Legacy, PackFormat::Update]
}

/// `[legacy]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LegacyInfo {
    /// `product` of XS-REPOSITORY: `XCP` works on every host.
    #[serde(default = "xcp")]
    pub product: String,
    /// Packs that must be installed first.
    #[serde(default)]
    pub requires: Vec<Requirement>,
    /// Marks the pack homogeneous across a pool.
    #[serde(default)]
    pub enforce_homogeneity: bool,
    /// dom0 memory the pack needs, in MiB.
    #[serde(default)]
    pub memory_requirement_mb: Option<u32>,
}

fn xcp() -> String {
    "XCP".into()
}

impl Default for LegacyInfo {
    fn default() -> Self {
        LegacyInfo {
            product: xcp(),
            requires: Vec::new(),
            enforce_homogeneity: false,
            memory_requirement_mb: None,
        }
    }
}

/// One `<requires>` of XS-REPOSITORY.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// Vendor code of the required pack (`xcp` for the platform).
    pub originator: String,
    /// Its name (`main` for the platform).
    pub name: String,
    /// The comparison.
    pub test: VersionTest,
    /// Dotted integers.
    pub version: String,
}

/// Version comparisons of legacy requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VersionTest {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Less than.
    Lt,
    /// Greater than.
    Gt,
    /// Less or equal.
    Le,
    /// Greater or equal.
    Ge,
}

impl VersionTest {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionTest::Eq => "eq",
            VersionTest::Ne => "ne",
            VersionTest::Lt => "lt",
            VersionTest::Gt => "gt",
            VersionTest::Le => "le",
            VersionTest::Ge => "ge",
        }
    }
}

/// `[update]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UpdateInfo {
    /// The update's uuid; derived from name and version when absent.
    pub uuid: Option<String>,
    /// Requirements of the control RPM, e.g. `platform-version >= 2.3`.
    #[serde(default)]
    pub base_requires: Vec<String>,
    /// What to restart after applying.
    #[serde(default)]
    pub after_apply_guidance: Vec<Guidance>,
    /// Basename of the public key file on the ISO and in `/etc/pki/rpm-gpg`.
    pub key_name: Option<String>,
    /// Marks the update homogeneous across a pool.
    #[serde(default)]
    pub enforce_homogeneity: bool,
}

/// Values of `after-apply-guidance` (xapi accepts these and no others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Guidance {
    /// Restart HVM guests.
    #[serde(rename = "restartHVM")]
    RestartHvm,
    /// Restart PV guests.
    #[serde(rename = "restartPV")]
    RestartPv,
    /// Reboot the host.
    #[serde(rename = "restartHost")]
    RestartHost,
    /// Restart the toolstack.
    #[serde(rename = "restartXAPI")]
    RestartXapi,
}

impl Guidance {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Guidance::RestartHvm => "restartHVM",
            Guidance::RestartPv => "restartPV",
            Guidance::RestartHost => "restartHost",
            Guidance::RestartXapi => "restartXAPI",
        }
    }
}

/// `[signing]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SigningInfo {
    /// Armored secret key file, relative to the pack directory.
    pub key: Option<Utf8PathBuf>,
    /// Environment variable holding the key's passphrase.
    pub passphrase_env: Option<String>,
}

/// `[[rpm]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrebuiltRpm {
    /// A path or glob relative to the pack directory.
    pub path: String,
}

/// `[[template]]`: a VM template definition packaged as a template RPM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateRef {
    /// The `templates/<name>.toml` file, relative to the pack directory.
    pub path: Utf8PathBuf,
}

/// `[[package]]`: an RPM built from files in the repository.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PackageSpec {
    /// RPM name.
    pub name: String,
    /// RPM version (no '-').
    pub version: String,
    /// RPM release.
    #[serde(default = "one")]
    pub release: String,
    /// RPM architecture.
    #[serde(default = "noarch")]
    pub arch: String,
    /// One-line summary.
    pub summary: String,
    /// Longer description.
    pub description: String,
    /// License tag.
    #[serde(default = "license")]
    pub license: String,
    /// Dependencies, e.g. `guest-templates-json >= 1.9`.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Capabilities provided.
    #[serde(default)]
    pub provides: Vec<String>,
    /// `%post` script file.
    pub post: Option<Utf8PathBuf>,
    /// `%postun` script file.
    pub postun: Option<Utf8PathBuf>,
    /// `%posttrans` script file.
    pub posttrans: Option<Utf8PathBuf>,
    /// The payload.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Payload compression: `gzip` (level 9, the default) or `xz` (preset 6: smaller, slower).
    #[serde(default)]
    pub compression: PayloadCompression,
}

/// `compression` of a `[[package]]`: both are read by every target's rpm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadCompression {
    /// gzip, level 9, as rpmbuild's `w9.gzdio`.
    #[default]
    Gzip,
    /// xz, preset 6, as rpmbuild's `w6.xzdio`.
    Xz,
}

impl From<PayloadCompression> for xspack_rpmrepo::Compression {
    fn from(c: PayloadCompression) -> Self {
        match c {
            PayloadCompression::Gzip => xspack_rpmrepo::Compression::Gzip,
            PayloadCompression::Xz => xspack_rpmrepo::Compression::Xz,
        }
    }
}

fn one() -> String {
    "1".into()
}

fn noarch() -> String {
    "noarch".into()
}

fn license() -> String {
    "Proprietary".into()
}

/// One payload file of a built RPM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Source file, relative to the pack directory.
    pub src: Utf8PathBuf,
    /// Absolute path where the RPM installs it.
    pub dest: String,
    /// Octal permission bits, `"0644"` by default (`"0755"` for scripts).
    #[serde(default = "file_mode")]
    pub mode: String,
    /// Owner.
    #[serde(default = "root")]
    pub owner: String,
    /// Group.
    #[serde(default = "root")]
    pub group: String,
    /// A `%config(noreplace)` file.
    #[serde(default)]
    pub config: bool,
}

fn file_mode() -> String {
    "0644".into()
}

fn root() -> String {
    "root".into()
}

/// Names at the root of an update ISO that the pack's own metadata takes: `update.xml` and
/// its signature (read from the ISO root by xapi's `ocaml/xapi/xapi_pool_update.ml`), and the
/// yum repository's `repodata/` and `Packages/`. A key file of one of these names would
/// replace it.
const RESERVED_ROOT_NAMES: [&str; 4] = ["update.xml", "update.xml.asc", "repodata", "Packages"];

/// Longest file name on a pack ISO: Joliet with the `-joliet-long` extension (103 UCS-2
/// characters), as xspack-iso writes it.
const MAX_ISO_NAME: usize = 103;

/// Longest `pack.version`, `pack.build` and `pack.originator`: each goes into the ISO file
/// names and `update.xml`.
const MAX_FIELD: usize = 32;

use xspack_io::quote::truncated;

/// Dotted non-negative integers, as legacy hosts' `Version.from_string` compares them.
pub fn is_dotted_integers(v: &str) -> bool {
    !v.is_empty()
        && v.split('.')
            .all(|arc| !arc.is_empty() && arc.len() <= 9 && arc.bytes().all(|b| b.is_ascii_digit()))
}

fn charset(s: &str, extra: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
}

impl PackSpec {
    /// Parses `text`, the contents of `file`, and checks every rule.
    pub fn parse(text: &str, file: &Utf8Path) -> Result<Self, Error> {
        let spec: PackSpec = toml::from_str(text).map_err(|e| {
            let at = xspack_io::location::locate(file, text, e.span().map(|s| s.start));
            Error::Spec { at, reason: e.message().trim().to_owned() }
        })?;
        spec.check(file)?;
        Ok(spec)
    }

    /// Reads and parses `pack.toml` at `path`.
    pub fn load(path: &Utf8Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Io(xspack_io::IoError::new("reading", path, e)))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let at = xspack_io::location::locate(path, prefix, Some(prefix.len()));
            Error::Spec { at, reason: "not valid UTF-8".into() }
        })?;
        Self::parse(&text, path)
    }

    /// The public key file name: `update.key-name`, or `RPM-GPG-KEY-<originator>`.
    pub fn key_name(&self) -> String {
        self.update
            .key_name
            .clone()
            .unwrap_or_else(|| format!("RPM-GPG-KEY-{}", self.pack.originator))
    }

    /// The hosts the pack is for: `pack.target`, or [`Target::DEFAULT`].
    pub fn target(&self) -> &'static Target {
        self.pack.target.as_deref().and_then(Target::by_id).unwrap_or(Target::DEFAULT)
    }

    /// Whether `format` is to be built.
    pub fn builds(&self, format: PackFormat) -> bool {
        self.pack.formats.contains(&format)
    }

    /// The rules serde cannot express.
    fn check(&self, file: &Utf8Path) -> Result<(), Error> {
        let bad = |key: &str, reason: String| Error::Spec {
            at: file.to_string(),
            reason: format!("{key}: {reason}"),
        };
        let p = &self.pack;
        if !charset(&p.name, "_-") {
            return Err(bad(
                "pack.name",
                format!(
                    "{:?} must be letters, digits, '_' and '-' (xapi's name-label rule)",
                    p.name
                ),
            ));
        }
        if p.name.len() > 32 {
            return Err(bad(
                "pack.name",
                format!("{:?} is longer than 32 characters (it is the ISO volume id)", p.name),
            ));
        }
        if !charset(&p.originator, "._-") {
            return Err(bad(
                "pack.originator",
                format!("{:?} must be letters, digits, '.', '_' and '-'", p.originator),
            ));
        }
        if !is_dotted_integers(&p.version) {
            return Err(bad(
                "pack.version",
                format!("{:?} must be dotted integers such as 1.2.3", truncated(&p.version)),
            ));
        }
        if !charset(&p.build, "._") {
            return Err(bad(
                "pack.build",
                format!("{:?} must be letters, digits, '.' and '_'", truncated(&p.build)),
            ));
        }
        if p.description.trim().is_empty()
            || !p.description.chars().all(|c| c.is_ascii() && !c.is_ascii_control())
        {
            return Err(bad("pack.description", "must be non-empty printable ASCII".into()));
        }
        if p.formats.is_empty() {
            return Err(bad("pack.formats", "lists no format".into()));
        }
        if let Some(id) = &p.target
            && Target::by_id(id).is_none()
        {
            return Err(bad(
                "pack.target",
                format!("{:?} is not a target; use one of {}", truncated(id), Target::ids()),
            ));
        }
        if !charset(&self.legacy.product, "._-") {
            return Err(bad(
                "legacy.product",
                format!("{:?} is not a product name", self.legacy.product),
            ));
        }
        for (i, r) in self.legacy.requires.iter().enumerate() {
            if !charset(&r.originator, "._-") || !charset(&r.name, "._-") {
                return Err(bad(
                    &format!("legacy.requires[{i}]"),
                    "originator and name must be letters, digits, '.', '_' and '-'".into(),
                ));
            }
            if !is_dotted_integers(&r.version) {
                return Err(bad(
                    &format!("legacy.requires[{i}].version"),
                    format!("{:?} must be dotted integers", r.version),
                ));
            }
        }
        if let Some(uuid) = &self.update.uuid
            && !crate::update::is_valid_uuid(uuid)
        {
            return Err(bad("update.uuid", format!("{uuid:?} is not a lowercase UUID")));
        }
        self.check_names(file)?;
        for (i, req) in self.update.base_requires.iter().enumerate() {
            if req.contains(['(', ')']) || req.split_whitespace().count() == 0 {
                return Err(bad(
                    &format!("update.base-requires[{i}]"),
                    format!("{req:?} is not a simple dependency (no rich dependencies)"),
                ));
            }
        }
        if let Some(var) = &self.signing.passphrase_env
            && !charset(var, "_")
        {
            return Err(bad(
                "signing.passphrase-env",
                format!("{var:?} is not an environment variable name"),
            ));
        }
        if self.rpms.is_empty() && self.packages.is_empty() && self.templates.is_empty() {
            return Err(bad("pack", "holds no [[rpm]], no [[package]] and no [[template]]".into()));
        }
        self.check_packages(file)
    }

    /// Names that go into file names and metadata: `update.key-name` is a plain file name that
    /// takes no name of the pack's own metadata, and the fields in ISO names fit.
    fn check_names(&self, file: &Utf8Path) -> Result<(), Error> {
        let bad = |key: &str, reason: String| Error::Spec {
            at: file.to_string(),
            reason: format!("{key}: {reason}"),
        };
        let p = &self.pack;
        for (key, value) in [
            ("pack.version", &p.version),
            ("pack.build", &p.build),
            ("pack.originator", &p.originator),
        ] {
            if value.len() > MAX_FIELD {
                return Err(bad(
                    key,
                    format!(
                        "is longer than {MAX_FIELD} characters (it goes into the ISO's file name)"
                    ),
                ));
            }
        }
        let key_name = self.key_name();
        if !charset(&key_name, "._-") || key_name.starts_with('.') {
            return Err(bad(
                "update.key-name",
                format!(
                    "{:?} must be a plain file name (letters, digits, '.', '_' and '-', not starting with '.')",
                    truncated(&key_name)
                ),
            ));
        }
        if RESERVED_ROOT_NAMES.contains(&key_name.as_str()) {
            return Err(bad(
                "update.key-name",
                format!("{key_name:?} is the name of the update pack's own metadata"),
            ));
        }
        if key_name.len() > MAX_ISO_NAME {
            return Err(bad(
                "update.key-name",
                format!("is longer than {MAX_ISO_NAME} characters (a name on the ISO)"),
            ));
        }
        Ok(())
    }

    /// Rules of the `[[package]]` and `[[template]]` tables.
    fn check_packages(&self, file: &Utf8Path) -> Result<(), Error> {
        let bad = |key: &str, reason: String| Error::Spec {
            at: file.to_string(),
            reason: format!("{key}: {reason}"),
        };
        for (i, t) in self.templates.iter().enumerate() {
            if t.path.extension() != Some("toml") {
                return Err(bad(
                    &format!("template[{i}].path"),
                    format!("{:?} is not a template definition (a .toml file)", t.path),
                ));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, pkg) in self.packages.iter().enumerate() {
            let key = format!("package[{i}]");
            if !charset(&pkg.name, "._+-") {
                return Err(bad(
                    &format!("{key}.name"),
                    format!("{:?} is not an RPM name", pkg.name),
                ));
            }
            if !names.insert(pkg.name.clone()) {
                return Err(bad(
                    &format!("{key}.name"),
                    format!("{:?} is defined twice", pkg.name),
                ));
            }
            for (field, v) in
                [("version", &pkg.version), ("release", &pkg.release), ("arch", &pkg.arch)]
            {
                if !charset(v, "._+~^") {
                    return Err(bad(
                        &format!("{key}.{field}"),
                        format!("{v:?} may hold letters, digits and '._+~^' only"),
                    ));
                }
            }
            let file_name =
                format!("{}-{}-{}.{}.rpm", pkg.name, pkg.version, pkg.release, pkg.arch);
            if file_name.len() > MAX_ISO_NAME {
                return Err(bad(
                    &key,
                    format!(
                        "the RPM's file name NAME-VERSION-RELEASE.ARCH.rpm would be {} characters, more than the {MAX_ISO_NAME} an ISO name holds",
                        file_name.len()
                    ),
                ));
            }
            for dep in pkg.requires.iter().chain(&pkg.provides) {
                if dep.contains(['(', ')']) {
                    return Err(bad(
                        &key,
                        format!("{dep:?}: rich dependencies are not readable by rpm 4.11"),
                    ));
                }
            }
            for (j, f) in pkg.files.iter().enumerate() {
                let fkey = format!("{key}.files[{j}]");
                if !f.dest.starts_with('/') || f.dest.split('/').any(|c| c == "..") {
                    return Err(bad(
                        &format!("{fkey}.dest"),
                        format!("{:?} must be an absolute path without '..'", f.dest),
                    ));
                }
                if f.dest.ends_with("EULA") {
                    return Err(bad(
                        &format!("{fkey}.dest"),
                        "files named *EULA stop unattended legacy installs".into(),
                    ));
                }
                if u32::from_str_radix(&f.mode, 8).map_or(true, |m| m > 0o7777) {
                    return Err(bad(
                        &format!("{fkey}.mode"),
                        format!("{:?} is not an octal mode like \"0644\"", f.mode),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Octal mode of a [`FileSpec`], validated by [`PackSpec::parse`].
pub fn file_mode_bits(f: &FileSpec) -> u32 {
    u32::from_str_radix(&f.mode, 8).expect("validated")
}

/// A valid `pack.toml` shared by the tests of this crate.
#[cfg(test)]
pub(crate) mod tests_support {
    pub const GOOD: &str = r#"
[pack]
name = "xscontainer"
version = "6.5.0"
build = "100205c"
originator = "xs"
description = "XSContainer Management"

[legacy]
requires = [{ originator = "xcp", name = "main", test = "ge", version = "1.9.0" }]

[update]
base-requires = ["platform-version >= 2.3"]
after-apply-guidance = ["restartXAPI"]

[[rpm]]
path = "rpms/*.rpm"
"#;
}

#[cfg(test)]
mod tests;
