//! Targets: what a generation of XenServer hosts can install. A pack is built for one target,
//! declared in `pack.toml`; every RPM is checked against it when the pack is built (our own
//! RPMs before a byte is written, prebuilt ones from their headers), and again by
//! `xspack pack verify`.
//!
//! A target is the dom0's package tools: the rpm that installs the RPMs, the yum or dnf that
//! reads the repository, and the gpg that checks the pack's detached signatures. What rpm can
//! install is what its `rpmlibProvides` table lists (`lib/rpmds.c` of the rpm release), the
//! payload compressors its rpmio has (`rpmio/rpmio.c`, `FDIO_t` table), the file digest
//! algorithms its digest backend knows (`rpmio/digest_nss.c` in rpm 4.11, `digest_openssl.c`
//! in 4.16), and whether it has `rpmlib(LargeFiles)`: without it, a file of 4 GiB or more, or
//! files totalling more, cannot be described (`build/files.c`, `genCpioListAndHeader`, in
//! rpm 4.12 and later). yum 3 and dnf 4 both read the repodata xspack writes (sha256
//! checksums, gzip, a comps group), and gpg 2.0 and later both check its RSA signatures, so
//! those tools add no further limit today; they are named so that a later target can.
//!
//! Errors name the target as [`Target::name`] and the file or feature refused.

use std::fmt;

use crate::Error;
use crate::header::RpmHeader;

/// A generation of hosts and the package tools of its dom0.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Target {
    /// What `pack.toml` names, e.g. `xenserver-8`.
    pub id: &'static str,
    /// Named in errors and reports, e.g. `rpm 4.11 (XenServer 8 / XCP-ng 8.x dom0)`.
    pub name: &'static str,
    /// The hosts it reaches, for humans.
    pub hosts: &'static str,
    /// The dom0's rpm, e.g. `rpm 4.11.3`.
    pub rpm: &'static str,
    /// The dom0's package manager, e.g. `yum 3.4.3`.
    pub installer: &'static str,
    /// The gpg that checks detached signatures, e.g. `gpg 2.0`.
    pub gpg: &'static str,
    /// The `rpmlib(...)` features its rpm provides, by name inside the parentheses.
    rpmlib: &'static [&'static [&'static str]],
    /// `PAYLOADCOMPRESSOR` values its rpm decompresses.
    compressors: &'static [&'static str],
    /// `FILEDIGESTALGO` values (`OpenPGP` hash algorithm ids, RFC 4880 9.4) its rpm computes.
    file_digests: &'static [u32],
}

/// `rpmlib(...)` features of rpm 4.11.3 as `CentOS` 7 builds it (bzip2, xz, Lua and file
/// capabilities compiled in): `lib/rpmds.c`, `rpmlibProvides`, at `rpm-4.11.3-release`.
const RPMLIB_4_11: &[&str] = &[
    "VersionedDependencies",
    "CompressedFileNames",
    "PayloadIsBzip2",
    "PayloadIsXz",
    "PayloadIsLzma",
    "PayloadFilesHavePrefix",
    "ExplicitPackageProvide",
    "HeaderLoadSortsTags",
    "ScriptletInterpreterArgs",
    "PartialHardlinkSets",
    "ConcurrentAccess",
    "BuiltinLuaScripts",
    "FileDigests",
    "FileCaps",
    "ScriptletExpansion",
    "TildeInVersions",
];

/// What rpm 4.16.1.3 adds to 4.11's features (`lib/rpmds.c` at tag `rpm-4.16.1.3`): caret
/// versions, large files, rich and dynamic build dependencies and zstd payloads.
const RPMLIB_4_16_ADDS: &[&str] =
    &["CaretInVersions", "LargeFiles", "RichDependencies", "DynamicBuildRequires", "PayloadIsZstd"];

/// MD5, SHA-1, SHA-256, SHA-384, SHA-512 and SHA-224: what rpm 4.11's NSS backend maps
/// (`rpmio/digest_nss.c`, `getHashAlg`) and rpm 4.16's OpenSSL backend too.
const FILE_DIGESTS: &[u32] = &[1, 2, 8, 9, 10, 11];

/// The dom0 of XenServer 7.x and 8, Citrix Hypervisor 8.x and XCP-ng 7.x and 8.x: a `CentOS` 7
/// base with rpm 4.11.3, yum 3.4.3 and gpg 2.0.22. The default.
pub const XENSERVER_8: Target = Target {
    id: "xenserver-8",
    name: "rpm 4.11 (XenServer 8 / XCP-ng 8.x dom0)",
    hosts: "XenServer 7.0 to 8, Citrix Hypervisor 8.x, XCP-ng 7.x and 8.x (CentOS 7 based dom0)",
    rpm: "rpm 4.11.3",
    installer: "yum 3.4.3",
    gpg: "gpg 2.0",
    rpmlib: &[RPMLIB_4_11],
    compressors: &["gzip", "bzip2", "xz", "lzma"],
    file_digests: FILE_DIGESTS,
};

/// A dom0 on an Enterprise Linux 9 base: rpm 4.16, dnf 4, gpg 2.3. Opt-in.
pub const EL9: Target = Target {
    id: "el9",
    name: "rpm 4.16 (EL9-based dom0)",
    hosts: "dom0s on an Enterprise Linux 9 base (rpm 4.16 and dnf); no XenServer or XCP-ng \
            release ships one yet",
    rpm: "rpm 4.16.1",
    installer: "dnf 4",
    gpg: "gpg 2.3",
    rpmlib: &[RPMLIB_4_11, RPMLIB_4_16_ADDS],
    compressors: &["gzip", "bzip2", "xz", "lzma", "zstd"],
    file_digests: FILE_DIGESTS,
};

/// Every target, the default first.
pub const TARGETS: &[&Target] = &[&XENSERVER_8, &EL9];

impl Target {
    /// The target packs are built for unless `pack.toml` says otherwise.
    pub const DEFAULT: &'static Target = &XENSERVER_8;

    /// The target `id` names (`xenserver-8`, `el9`), case-insensitively.
    pub fn by_id(id: &str) -> Option<&'static Target> {
        TARGETS.iter().copied().find(|t| t.id.eq_ignore_ascii_case(id))
    }

    /// The ids of every target, for error messages: `xenserver-8, el9`.
    pub fn ids() -> String {
        TARGETS.iter().map(|t| t.id).collect::<Vec<_>>().join(", ")
    }

    /// Whether the target's rpm provides `rpmlib(feature)`.
    pub fn has_rpmlib(&self, feature: &str) -> bool {
        self.rpmlib.iter().any(|set| set.contains(&feature))
    }

    /// Whether files of 4 GiB and more (and totals over 4 GiB) can be installed.
    pub fn large_files(&self) -> bool {
        self.has_rpmlib("LargeFiles")
    }

    fn refuse(&self, package: &str, what: String) -> Error {
        Error::Unsupported { package: package.to_owned(), target: self.name, what }
    }

    /// Refuses `rpmlib(feature)`, which package `package` needs because of `why`, unless the
    /// target provides it.
    pub(crate) fn check_feature(
        &self,
        package: &str,
        feature: &str,
        why: &str,
    ) -> Result<(), Error> {
        if self.has_rpmlib(feature) {
            return Ok(());
        }
        Err(self
            .refuse(package, format!("{why} needs rpmlib({feature}), which {} lacks", self.rpm)))
    }

    /// Refuses one file of `size` bytes at `dest` (read from `source`) the target cannot
    /// install, naming package `package`.
    pub fn check_file(
        &self,
        package: &str,
        dest: &str,
        source: &str,
        size: u64,
    ) -> Result<(), Error> {
        if !self.large_files() && size > u64::from(u32::MAX) {
            return Err(self.refuse(
                package,
                format!(
                    "file {dest} (from {source}) has {size} bytes: files of 4 GiB or more need \
                     rpmlib(LargeFiles), which {} lacks (rpm 4.12+ has it)",
                    self.rpm
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a package whose files total `total` bytes, if too many.
    pub fn check_total(&self, package: &str, total: u64) -> Result<(), Error> {
        if !self.large_files() && total > u64::from(u32::MAX) {
            return Err(self.refuse(
                package,
                format!(
                    "its files total {total} bytes: over 4 GiB needs rpmlib(LargeFiles), which \
                     {} lacks (rpm 4.12+ has it); split the files over several packages",
                    self.rpm
                ),
            ));
        }
        Ok(())
    }

    /// Checks a package built elsewhere, from its header: the `rpmlib(...)` features it
    /// requires, its payload compressor, its file digest algorithm and its file sizes. `file`
    /// names it in the error.
    pub fn check_rpm(&self, file: &str, h: &RpmHeader) -> Result<(), Error> {
        for dep in h.requires.iter().filter(|d| d.is_rpmlib()) {
            let feature = dep
                .name
                .strip_prefix("rpmlib(")
                .and_then(|f| f.strip_suffix(')'))
                .unwrap_or(&dep.name);
            if !self.has_rpmlib(feature) {
                return Err(self.refuse(
                    file,
                    format!("it requires rpmlib({feature}), which {} lacks", self.rpm),
                ));
            }
        }
        let compressor =
            if h.payload_compressor.is_empty() { "gzip" } else { &h.payload_compressor };
        if !self.compressors.contains(&compressor) {
            return Err(self.refuse(
                file,
                format!(
                    "its payload is compressed with {compressor}, which {} cannot read",
                    self.rpm
                ),
            ));
        }
        if !self.file_digests.contains(&h.file_digest_algo) {
            return Err(self.refuse(
                file,
                format!(
                    "its file digests use algorithm {} ({}), which {} lacks",
                    h.file_digest_algo,
                    digest_name(h.file_digest_algo),
                    self.rpm
                ),
            ));
        }
        for f in &h.files {
            self.check_file(file, &f.path, file, f.size)?;
        }
        self.check_total(file, h.files.iter().map(|f| f.size).sum())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id)
    }
}

/// The name of an `OpenPGP` hash algorithm id (RFC 4880 9.4, RFC 6637).
fn digest_name(id: u32) -> &'static str {
    match id {
        1 => "MD5",
        2 => "SHA-1",
        3 => "RIPEMD-160",
        5 => "MD2",
        6 => "TIGER-192",
        7 => "HAVAL",
        8 => "SHA-256",
        9 => "SHA-384",
        10 => "SHA-512",
        11 => "SHA-224",
        12 => "SHA3-256",
        14 => "SHA3-512",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_default() {
        assert_eq!(Target::DEFAULT.id, "xenserver-8");
        assert_eq!(Target::by_id("XenServer-8"), Some(&XENSERVER_8));
        assert_eq!(Target::by_id("el9"), Some(&EL9));
        assert_eq!(Target::by_id("el7"), None);
        assert_eq!(Target::ids(), "xenserver-8, el9");
    }

    #[test]
    fn only_newer_rpm_has_large_files_rich_dependencies_and_zstd() {
        for feature in ["LargeFiles", "RichDependencies", "PayloadIsZstd", "CaretInVersions"] {
            assert!(!XENSERVER_8.has_rpmlib(feature), "{feature}");
            assert!(EL9.has_rpmlib(feature), "{feature}");
        }
        for feature in RPMLIB_4_11 {
            assert!(EL9.has_rpmlib(feature), "{feature}");
        }
        let err = XENSERVER_8.check_file("p", "/big", "big.img", 5 << 30).unwrap_err().to_string();
        assert!(err.contains("/big") && err.contains("rpm 4.11 (XenServer 8"), "{err}");
        EL9.check_file("p", "/big", "big.img", 5 << 30).unwrap();
        assert!(XENSERVER_8.check_total("p", u64::from(u32::MAX) + 1).is_err());
        XENSERVER_8.check_total("p", u64::from(u32::MAX)).unwrap();
    }
}
