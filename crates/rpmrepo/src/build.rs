//! The public API for building RPMs: [`RpmBuilder`] describes a package; the writer in
//! `crate::write` lays it out as rpm 4.11's rpmbuild does: the v4 package format, a gzip or xz
//! payload (never zstd), SHA-256 file digests (`rpmlib(FileDigests)`, rpm 4.6+). What needs a
//! newer rpm (boolean dependencies, files of 4 GiB or more) is refused unless the package's
//! [`Target`] has it; the default target is the `CentOS` 7 based dom0 of XenServer 8.
//!
//! Builds are reproducible: every file mtime, the build time and the signature time come from
//! the source date, owners default to root, and entries are sorted by path, so the same inputs
//! give byte-identical packages (RSA PKCS#1 v1.5 signatures are deterministic).

use std::io::{Read, Seek, Write};

use camino::{Utf8Path, Utf8PathBuf};
use xspack_io::{AtomicFile, Sha256Digest};

use crate::Error;
use crate::deps::Dependency;
use crate::keys::SigningKey;
use crate::target::Target;

/// The interpreter of every scriptlet, written explicitly as rpmbuild does.
pub(crate) const SCRIPT_SHELL: &str = "/bin/sh";

/// Payload compression. Both are understood by rpm 4.4 and later; zstd is deliberately absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// gzip, level 9 (the default, and the only choice for XenServer 6.x legacy packs).
    #[default]
    Gzip,
    /// xz, level 6.
    Xz,
}

/// Owner, mode and `%config`-style flags of a packaged file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileAttrs {
    /// Permission bits (`0o644`); the file type is implied by how the entry is added.
    pub mode: u16,
    /// Owner name.
    pub user: String,
    /// Group name.
    pub group: String,
    /// `%config`: rpm keeps local changes (writes `.rpmnew`/`.rpmsave`).
    pub config: bool,
    /// With `config`: `%config(noreplace)`.
    pub noreplace: bool,
    /// `%doc`.
    pub doc: bool,
}

impl FileAttrs {
    /// Root-owned entry with permission bits `mode`.
    pub fn mode(mode: u16) -> Self {
        FileAttrs {
            mode,
            user: "root".into(),
            group: "root".into(),
            config: false,
            noreplace: false,
            doc: false,
        }
    }

    /// `%config(noreplace)` with permission bits `mode`.
    pub fn config_noreplace(mode: u16) -> Self {
        FileAttrs { config: true, noreplace: true, ..FileAttrs::mode(mode) }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// A file read at build time, with its SHA-256 and size if the caller already read it.
    Disk(Utf8PathBuf, Option<(Sha256Digest, u64)>),
    Bytes(Vec<u8>),
    Dir,
    Ghost,
    Symlink(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) dest: String,
    pub(crate) source: Source,
    pub(crate) attrs: FileAttrs,
}

/// The result of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltRpm {
    /// `name-version-release.arch.rpm`.
    pub file_name: String,
    /// SHA-256 of the package file.
    pub sha256: Sha256Digest,
    /// MD5 of the package file (legacy pack metadata).
    pub md5: crate::Md5Digest,
    /// Size of the package file in bytes.
    pub size: u64,
    /// Whether a header signature was added.
    pub signed: bool,
}

/// Describes one RPM; [`RpmBuilder::write`] builds it.
#[derive(Debug, Clone)]
pub struct RpmBuilder {
    pub(crate) name: String,
    pub(crate) epoch: Option<u32>,
    pub(crate) version: String,
    pub(crate) release: String,
    pub(crate) arch: String,
    pub(crate) summary: String,
    pub(crate) description: Option<String>,
    pub(crate) license: String,
    pub(crate) vendor: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) packager: Option<String>,
    pub(crate) group: Option<String>,
    pub(crate) build_host: Option<String>,
    pub(crate) source_date: Option<u32>,
    pub(crate) compression: Compression,
    pub(crate) target: &'static Target,
    pub(crate) entries: Vec<Entry>,
    pub(crate) scripts: Vec<(ScriptKind, String)>,
    pub(crate) requires: Vec<Dependency>,
    pub(crate) provides: Vec<Dependency>,
    pub(crate) conflicts: Vec<Dependency>,
    pub(crate) obsoletes: Vec<Dependency>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScriptKind {
    Pre,
    Post,
    PreUn,
    PostUn,
    PostTrans,
}

impl RpmBuilder {
    /// A `noarch` package `name-version-release` with no files, summary `name`, license
    /// `Proprietary` and the source date taken from `SOURCE_DATE_EPOCH` (the current time if
    /// unset, which is not reproducible).
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        release: impl Into<String>,
    ) -> Self {
        let name = name.into();
        RpmBuilder {
            summary: name.clone(),
            name,
            epoch: None,
            version: version.into(),
            release: release.into(),
            arch: "noarch".into(),
            description: None,
            license: "Proprietary".into(),
            vendor: None,
            url: None,
            packager: None,
            group: None,
            build_host: None,
            source_date: crate::source_date_epoch(),
            compression: Compression::Gzip,
            target: Target::DEFAULT,
            entries: Vec::new(),
            scripts: Vec::new(),
            requires: Vec::new(),
            provides: Vec::new(),
            conflicts: Vec::new(),
            obsoletes: Vec::new(),
        }
    }

    /// Sets the epoch.
    #[must_use]
    pub fn epoch(mut self, epoch: u32) -> Self {
        self.epoch = Some(epoch);
        self
    }

    /// Sets the architecture (`noarch` by default, or e.g. `x86_64`).
    #[must_use]
    pub fn arch(mut self, arch: impl Into<String>) -> Self {
        self.arch = arch.into();
        self
    }

    /// Sets the one-line summary.
    #[must_use]
    pub fn summary(mut self, summary: impl Into<String>) -> Self {
        self.summary = summary.into();
        self
    }

    /// Sets the description (the summary if never set).
    #[must_use]
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the license string.
    #[must_use]
    pub fn license(mut self, license: impl Into<String>) -> Self {
        self.license = license.into();
        self
    }

    /// Sets the vendor.
    #[must_use]
    pub fn vendor(mut self, vendor: impl Into<String>) -> Self {
        self.vendor = Some(vendor.into());
        self
    }

    /// Sets the URL.
    #[must_use]
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Sets the packager.
    #[must_use]
    pub fn packager(mut self, packager: impl Into<String>) -> Self {
        self.packager = Some(packager.into());
        self
    }

    /// Sets the (legacy) group; rpm shows `Unspecified` without one.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Records a build host (none by default, which keeps builds host-independent).
    #[must_use]
    pub fn build_host(mut self, host: impl Into<String>) -> Self {
        self.build_host = Some(host.into());
        self
    }

    /// Sets the source date: build time, file mtimes and signature time.
    #[must_use]
    pub fn source_date(mut self, epoch_seconds: u32) -> Self {
        self.source_date = Some(epoch_seconds);
        self
    }

    /// Sets the payload compression.
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets the hosts the package is for ([`Target::DEFAULT`] unless set): what their rpm
    /// lacks is refused before anything is written.
    #[must_use]
    pub fn target(mut self, target: &'static Target) -> Self {
        self.target = target;
        self
    }

    /// Adds a root-owned regular file read from `src` at build time, installed at `dest`.
    #[must_use]
    pub fn file_from_disk(
        self,
        src: impl Into<Utf8PathBuf>,
        dest: impl Into<String>,
        mode: u16,
    ) -> Self {
        self.file_from_disk_with(src, dest, FileAttrs::mode(mode))
    }

    /// Adds a regular file read from `src` at build time, with owner and flags.
    #[must_use]
    pub fn file_from_disk_with(
        mut self,
        src: impl Into<Utf8PathBuf>,
        dest: impl Into<String>,
        attrs: FileAttrs,
    ) -> Self {
        self.entries.push(Entry {
            dest: dest.into(),
            source: Source::Disk(src.into(), None),
            attrs,
        });
        self
    }

    /// [`RpmBuilder::file_from_disk_with`] for a file whose SHA-256 and size the caller has
    /// just read (to record it as an input, say): the writer takes them for the header
    /// instead of reading the file an extra time. It still hashes the file as it copies it
    /// into the payload, and refuses the package if the file no longer has that digest.
    #[must_use]
    pub fn file_from_disk_known(
        mut self,
        src: impl Into<Utf8PathBuf>,
        dest: impl Into<String>,
        attrs: FileAttrs,
        (sha256, size): (Sha256Digest, u64),
    ) -> Self {
        let source = Source::Disk(src.into(), Some((sha256, size)));
        self.entries.push(Entry { dest: dest.into(), source, attrs });
        self
    }

    /// Adds a root-owned regular file with the given content.
    #[must_use]
    pub fn file_from_bytes(
        self,
        content: impl Into<Vec<u8>>,
        dest: impl Into<String>,
        mode: u16,
    ) -> Self {
        self.file_from_bytes_with(content, dest, FileAttrs::mode(mode))
    }

    /// Adds a regular file with the given content, owner and flags.
    #[must_use]
    pub fn file_from_bytes_with(
        mut self,
        content: impl Into<Vec<u8>>,
        dest: impl Into<String>,
        attrs: FileAttrs,
    ) -> Self {
        self.entries.push(Entry {
            dest: dest.into(),
            source: Source::Bytes(content.into()),
            attrs,
        });
        self
    }

    /// Adds a root-owned directory entry (the package then owns the directory).
    #[must_use]
    pub fn dir(self, dest: impl Into<String>, mode: u16) -> Self {
        self.dir_with(dest, FileAttrs::mode(mode))
    }

    /// Adds a directory entry with owner.
    #[must_use]
    pub fn dir_with(mut self, dest: impl Into<String>, attrs: FileAttrs) -> Self {
        self.entries.push(Entry { dest: dest.into(), source: Source::Dir, attrs });
        self
    }

    /// Adds a `%ghost` file: owned and listed, but not in the payload.
    #[must_use]
    pub fn ghost(mut self, dest: impl Into<String>, attrs: FileAttrs) -> Self {
        self.entries.push(Entry { dest: dest.into(), source: Source::Ghost, attrs });
        self
    }

    /// Adds a root-owned symbolic link `dest` pointing to `target`.
    #[must_use]
    pub fn symlink(mut self, dest: impl Into<String>, target: impl Into<String>) -> Self {
        self.entries.push(Entry {
            dest: dest.into(),
            source: Source::Symlink(target.into()),
            attrs: FileAttrs::mode(0o777),
        });
        self
    }

    fn script(mut self, kind: ScriptKind, body: impl Into<String>) -> Self {
        self.scripts.retain(|(k, _)| *k != kind);
        self.scripts.push((kind, body.into()));
        self
    }

    /// Sets the `%pre` scriptlet (run by `/bin/sh`).
    #[must_use]
    pub fn pre_install(self, body: impl Into<String>) -> Self {
        self.script(ScriptKind::Pre, body)
    }

    /// Sets the `%post` scriptlet.
    #[must_use]
    pub fn post_install(self, body: impl Into<String>) -> Self {
        self.script(ScriptKind::Post, body)
    }

    /// Sets the `%preun` scriptlet.
    #[must_use]
    pub fn pre_uninstall(self, body: impl Into<String>) -> Self {
        self.script(ScriptKind::PreUn, body)
    }

    /// Sets the `%postun` scriptlet.
    #[must_use]
    pub fn post_uninstall(self, body: impl Into<String>) -> Self {
        self.script(ScriptKind::PostUn, body)
    }

    /// Sets the `%posttrans` scriptlet.
    #[must_use]
    pub fn post_trans(self, body: impl Into<String>) -> Self {
        self.script(ScriptKind::PostTrans, body)
    }

    /// Adds a `Requires`.
    #[must_use]
    pub fn requires(mut self, dep: Dependency) -> Self {
        self.requires.push(dep);
        self
    }

    /// Adds a `Provides`.
    #[must_use]
    pub fn provides(mut self, dep: Dependency) -> Self {
        self.provides.push(dep);
        self
    }

    /// Adds a `Conflicts`.
    #[must_use]
    pub fn conflicts(mut self, dep: Dependency) -> Self {
        self.conflicts.push(dep);
        self
    }

    /// Adds an `Obsoletes`.
    #[must_use]
    pub fn obsoletes(mut self, dep: Dependency) -> Self {
        self.obsoletes.push(dep);
        self
    }

    /// `name-version-release.arch.rpm`.
    pub fn file_name(&self) -> String {
        format!("{}-{}-{}.{}.rpm", self.name, self.version, self.release, self.arch)
    }

    pub(crate) fn fail(&self, reason: &dyn std::fmt::Display) -> Error {
        Error::Build { package: self.name.clone(), reason: reason.to_string() }
    }

    pub(crate) fn write_fail(&self, reason: &dyn std::fmt::Display) -> Error {
        Error::Write { package: self.name.clone(), reason: reason.to_string() }
    }

    fn check(&self) -> Result<(), Error> {
        let all = self
            .requires
            .iter()
            .chain(&self.provides)
            .chain(&self.conflicts)
            .chain(&self.obsoletes);
        if let Some(dep) = all.clone().find(|d| d.name.is_empty()) {
            return Err(self.fail(&format!("empty dependency name in {dep:?}")));
        }
        // rpmbuild's own character rules (build/parsePreamble.c, `rpmCharCheck`): a name of
        // alphanumerics and `.-_+%{}`, starting with an alphanumeric, `_` or `%`; version and
        // release of alphanumerics and `._+%{}~` (rpm 4.11 has no `^`).
        let name_ok = |c: char| c.is_ascii_alphanumeric() || ".-_+%{}".contains(c);
        let version_ok = |c: char| c.is_ascii_alphanumeric() || "._+%{}~".contains(c);
        if self.name.is_empty()
            || !self.name.chars().all(name_ok)
            || !self.name.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '%')
        {
            return Err(self.fail(&format!(
                "name {:?}: use letters, digits and .-_+%{{}}, starting with a letter or digit",
                self.name
            )));
        }
        for (what, value) in [("version", &self.version), ("release", &self.release)] {
            if value.is_empty() || !value.chars().all(version_ok) {
                return Err(self.fail(&format!(
                    "{what} {value:?}: use letters, digits and ._+%{{}}~ (no '-')"
                )));
            }
        }
        // Control characters break rpm's output and repodata XML (tab and newline are text).
        let control = |v: &str| v.contains(|c: char| c.is_control() && c != '\t' && c != '\n');
        let texts = [&self.summary, &self.license, &self.arch]
            .into_iter()
            .chain(&self.description)
            .chain(&self.vendor)
            .chain(&self.url)
            .chain(&self.packager)
            .chain(&self.group)
            .chain(&self.build_host);
        let deps = all.flat_map(|d| [&d.name, &d.version]);
        let files = self.entries.iter().flat_map(|e| {
            let link = match &e.source {
                Source::Symlink(t) => Some(t),
                _ => None,
            };
            [&e.attrs.user, &e.attrs.group].into_iter().chain(link)
        });
        if let Some(bad) = texts.chain(deps).chain(files).find(|v| control(v)) {
            return Err(self.fail(&format!("{bad:?} contains control characters")));
        }
        for entry in &self.entries {
            let dest = &entry.dest;
            if !dest.starts_with('/') || dest.len() < 2 {
                return Err(self.fail(&format!("install path {dest:?} must be absolute")));
            }
            if dest.split('/').any(|c| c == ".." || c == ".")
                || dest.ends_with('/')
                || dest.contains("//")
                || dest.contains(|c: char| c.is_control())
            {
                return Err(self.fail(&format!(
                    "install path {dest:?} must be normalised (no '.', '..', '//', trailing '/' \
                     or control characters)"
                )));
            }
        }
        Ok(())
    }

    /// Builds the package, signs it with `key` if given, and writes it to `out`, which needs
    /// no `Seek`: the package is built in an unnamed temporary file first, then copied.
    /// Returns the writer and what was built.
    pub fn write<W: Write>(
        &self,
        out: W,
        key: Option<&SigningKey>,
    ) -> Result<(W, BuiltRpm), Error> {
        self.check()?;
        crate::write::write_spooled(self, key, out)
    }

    /// [`RpmBuilder::write`] straight into a seekable, readable output (from its current
    /// position): the payload is compressed into place, then header and payload are read
    /// back once for the signatures. Leaves `out` at the end of the package.
    pub fn write_seekable<W: Read + Write + Seek>(
        &self,
        out: W,
        key: Option<&SigningKey>,
    ) -> Result<(W, BuiltRpm), Error> {
        self.check()?;
        crate::write::write_package(self, key, out)
    }

    /// Builds into `dir/<name-version-release.arch.rpm>` atomically (replacing an existing file
    /// only if `replace`).
    pub fn write_to_dir(
        &self,
        dir: &Utf8Path,
        key: Option<&SigningKey>,
        replace: bool,
    ) -> Result<BuiltRpm, Error> {
        self.check()?;
        let dest = dir.join(self.file_name());
        let file = if replace {
            AtomicFile::create_or_replace(&dest)?
        } else {
            AtomicFile::create(&dest)?
        };
        let (file, built) = crate::write::write_package(self, key, file)?;
        file.commit()?;
        Ok(built)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deps::Comparison;

    #[test]
    fn rich_dependencies_are_refused() {
        let err = RpmBuilder::new("x", "1", "1")
            .source_date(1)
            .requires(Dependency::any("(a or b)"))
            .write(Vec::new(), None)
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("(a or b)") && msg.contains("rpm 4.11 (XenServer 8"), "{msg}");
        // A target whose rpm reads them takes them, and the package says it needs that rpm.
        let mut rpm = Vec::new();
        RpmBuilder::new("x", "1", "1")
            .source_date(1)
            .target(&crate::target::EL9)
            .requires(Dependency::any("(a or b)"))
            .write(&mut rpm, None)
            .unwrap();
        let h = crate::read_rpm_from(rpm.as_slice(), Utf8Path::new("x.rpm")).unwrap();
        assert!(h.requires.iter().any(|d| d.name == "rpmlib(RichDependencies)"));
        assert!(crate::target::XENSERVER_8.check_rpm("x.rpm", &h).is_err());
        crate::target::EL9.check_rpm("x.rpm", &h).unwrap();
    }

    #[test]
    fn a_known_digest_is_checked_as_the_payload_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let src = Utf8Path::from_path(dir.path()).unwrap().join("f");
        std::fs::write(&src, b"hello").unwrap();
        let right = (Sha256Digest::of_bytes(b"hello"), 5);
        let b = |known| {
            RpmBuilder::new("x", "1", "1").source_date(1).file_from_disk_known(
                src.clone(),
                "/opt/f",
                FileAttrs::mode(0o644),
                known,
            )
        };
        let mut rpm = Vec::new();
        b(right).write(&mut rpm, None).unwrap();
        let h = crate::read_rpm_from(rpm.as_slice(), Utf8Path::new("x.rpm")).unwrap();
        assert_eq!(h.files[0].digest, right.0.to_hex());
        // The file is not what the caller read: refused, never packaged with a wrong digest.
        for wrong in [(Sha256Digest::of_bytes(b"hellO"), 5), (right.0, 4), (right.0, 6)] {
            let err = b(wrong).write(Vec::new(), None).unwrap_err().to_string();
            assert!(err.contains("changed while the package was built"), "{err}");
        }
    }

    #[test]
    fn relative_install_paths_are_refused() {
        let err = RpmBuilder::new("x", "1", "1")
            .file_from_bytes(b"a".to_vec(), "etc/x", 0o644)
            .write(Vec::new(), None);
        assert!(matches!(err, Err(Error::Build { .. })));
        let err = RpmBuilder::new("x", "1", "1").dir("/opt/../etc", 0o755).write(Vec::new(), None);
        assert!(matches!(err, Err(Error::Build { .. })));
    }

    #[test]
    fn names_versions_and_texts_follow_rpmbuild_rules() {
        let refused = |b: RpmBuilder| {
            let err = b.write(Vec::new(), None).unwrap_err();
            assert!(matches!(err, Error::Build { .. }), "{err}");
        };
        refused(RpmBuilder::new("x y", "1", "1"));
        refused(RpmBuilder::new("-x", "1", "1"));
        refused(RpmBuilder::new("x", "1-2", "1"));
        refused(RpmBuilder::new("x", "1", "1^git"));
        refused(RpmBuilder::new("x", "1", "1").summary("a\u{1b}[31m"));
        refused(RpmBuilder::new("x", "1", "1").requires(Dependency::any("a\rb")));
        refused(RpmBuilder::new("x", "1", "1").symlink("/l", "t\0"));
        let ok = RpmBuilder::new("x_y+1.2", "1.0~rc1", "1.el7").description("two\nlines\tok");
        assert!(ok.source_date(1).write(Vec::new(), None).is_ok());
    }

    #[test]
    fn same_inputs_same_bytes() {
        let make = || {
            RpmBuilder::new("same", "1.0", "1")
                .source_date(1_700_000_000)
                .file_from_bytes(b"hello\n".to_vec(), "/opt/same/hello", 0o644)
                .requires(Dependency::versioned("bash", Comparison::Ge, "4"))
                .write(Vec::new(), None)
                .unwrap()
        };
        let (a, built) = make();
        let (b, _) = make();
        assert_eq!(a, b);
        assert_eq!(built.size, a.len() as u64);
        assert_eq!(built.file_name, "same-1.0-1.noarch.rpm");
    }
}
