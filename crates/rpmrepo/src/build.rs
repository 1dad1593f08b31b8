//! Building RPMs with the rpm crate, constrained to what rpm 4.11 (`CentOS` 7 based XenServer
//! 7.x/8.x dom0) reads: the v4 package format, a gzip or xz payload (never zstd), SHA-256 file
//! digests (`rpmlib(FileDigests)`, rpm 4.6+), no boolean dependencies
//! (supplemental-pack.md section 2.3).
//!
//! Builds are reproducible: every file mtime, the build time and the signature time come from
//! the source date, owners default to root, and entries are sorted by path by the rpm crate, so
//! the same inputs give byte-identical packages (RSA PKCS#1 v1.5 signatures are deterministic).

use std::io::Write;

use camino::{Utf8Path, Utf8PathBuf};
use rpm::{CompressionWithLevel, FileOptions, PackageBuilder, Scriptlet};
use xspack_io::{AtomicFile, HashingWriter, Sha256Digest};

use crate::Error;
use crate::deps::Dependency;
use crate::keys::SigningKey;

/// Payload compression level for gzip: rpmbuild's default (`w9.gzdio`).
const GZIP_LEVEL: u32 = 9;
/// Payload compression level for xz: xz's default preset, which decompresses in under 10 MiB
/// of memory (preset 9 would need 65 MiB in dom0).
const XZ_LEVEL: u32 = 6;
/// The interpreter of every scriptlet, written explicitly as rpmbuild does.
const SCRIPT_SHELL: &str = "/bin/sh";

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
enum Source {
    Disk(Utf8PathBuf),
    Bytes(Vec<u8>),
    Dir,
    Ghost,
    Symlink(String),
}

#[derive(Debug, Clone)]
struct Entry {
    dest: String,
    source: Source,
    attrs: FileAttrs,
}

/// The result of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltRpm {
    /// `name-version-release.arch.rpm`.
    pub file_name: String,
    /// SHA-256 of the package file.
    pub sha256: Sha256Digest,
    /// Size of the package file in bytes.
    pub size: u64,
    /// Whether a header signature was added.
    pub signed: bool,
}

/// Describes one RPM; [`RpmBuilder::write`] builds it.
#[derive(Debug, Clone)]
pub struct RpmBuilder {
    name: String,
    epoch: Option<u32>,
    version: String,
    release: String,
    arch: String,
    summary: String,
    description: Option<String>,
    license: String,
    vendor: Option<String>,
    url: Option<String>,
    packager: Option<String>,
    group: Option<String>,
    build_host: Option<String>,
    source_date: Option<u32>,
    compression: Compression,
    entries: Vec<Entry>,
    scripts: Vec<(ScriptKind, String)>,
    requires: Vec<Dependency>,
    provides: Vec<Dependency>,
    conflicts: Vec<Dependency>,
    obsoletes: Vec<Dependency>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScriptKind {
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
        self.entries.push(Entry { dest: dest.into(), source: Source::Disk(src.into()), attrs });
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

    fn fail(&self, reason: &dyn std::fmt::Display) -> Error {
        Error::Build { package: self.name.clone(), reason: reason.to_string() }
    }

    fn check(&self) -> Result<(), Error> {
        let all = self
            .requires
            .iter()
            .chain(&self.provides)
            .chain(&self.conflicts)
            .chain(&self.obsoletes);
        if let Some(dep) = all.clone().find(|d| d.is_rich()) {
            return Err(Error::RichDependency {
                package: self.name.clone(),
                dependency: dep.to_string(),
            });
        }
        if let Some(dep) = all.clone().find(|d| d.name.is_empty()) {
            return Err(self.fail(&format!("empty dependency name in {dep:?}")));
        }
        for entry in &self.entries {
            let dest = &entry.dest;
            if !dest.starts_with('/') || dest.len() < 2 {
                return Err(self.fail(&format!("install path {dest:?} must be absolute")));
            }
            if dest.split('/').any(|c| c == ".." || c == ".")
                || dest.ends_with('/')
                || dest.contains("//")
            {
                return Err(self.fail(&format!(
                    "install path {dest:?} must be normalised (no '.', '..', '//' or trailing '/')"
                )));
            }
        }
        Ok(())
    }

    fn options(entry: &Entry, mtime: rpm::Timestamp) -> FileOptions {
        let a = &entry.attrs;
        let builder = match &entry.source {
            Source::Disk(_) | Source::Bytes(_) => FileOptions::new(entry.dest.clone()),
            Source::Dir => FileOptions::dir(entry.dest.clone()),
            Source::Ghost => FileOptions::ghost(entry.dest.clone()),
            Source::Symlink(target) => FileOptions::symlink(entry.dest.clone(), target.clone()),
        };
        let mut builder = builder
            .permissions(a.mode)
            .user(a.user.clone())
            .group(a.group.clone())
            .modified_at(mtime);
        if a.config {
            builder = builder.config();
            if a.noreplace {
                builder = builder.noreplace();
            }
        }
        if a.doc {
            builder = builder.doc();
        }
        builder.into()
    }

    fn package(&self, source_date: u32) -> Result<rpm::Package, Error> {
        self.check()?;
        let level = match self.compression {
            Compression::Gzip => CompressionWithLevel::Gzip(GZIP_LEVEL),
            Compression::Xz => CompressionWithLevel::Xz(XZ_LEVEL),
        };
        // No reserved signature space (`RPMSIGTAG_RESERVEDSPACE`, rpm 4.14+): packages are
        // signed here, never re-signed in place, and rpm 4.11 predates the tag.
        let config =
            rpm::BuildConfig::v4().compression(level).source_date(source_date).reserved_space(None);
        let mut b = PackageBuilder::new(
            &self.name,
            &self.version,
            &self.license,
            &self.arch,
            &self.summary,
        );
        b.using_config(config).release(self.release.clone());
        if let Some(e) = self.epoch {
            b.epoch(e);
        }
        b.description(self.description.clone().unwrap_or_else(|| self.summary.clone()));
        if let Some(v) = &self.vendor {
            b.vendor(v.clone());
        }
        if let Some(v) = &self.url {
            b.url(v.clone());
        }
        if let Some(v) = &self.packager {
            b.packager(v.clone());
        }
        if let Some(v) = &self.group {
            b.group(v.clone());
        }
        if let Some(host) = &self.build_host {
            b.build_host(host);
        }
        let mtime = rpm::Timestamp(source_date);
        for entry in &self.entries {
            let options = Self::options(entry, mtime);
            let added = match &entry.source {
                Source::Disk(src) => b.with_file(src.as_std_path(), options),
                Source::Bytes(bytes) => b.with_file_contents(bytes.clone(), options),
                Source::Dir => b.with_dir_entry(options),
                Source::Ghost => b.with_ghost(options),
                Source::Symlink(_) => b.with_symlink(options),
            };
            added.map_err(|e| match &entry.source {
                Source::Disk(src) => self.fail(&format!("{src}: {e}")),
                _ => self.fail(&format!("{}: {e}", entry.dest)),
            })?;
        }
        for (kind, body) in &self.scripts {
            let script = Scriptlet::new(body.clone()).prog(vec![SCRIPT_SHELL]);
            match kind {
                ScriptKind::Pre => b.pre_install_script(script),
                ScriptKind::Post => b.post_install_script(script),
                ScriptKind::PreUn => b.pre_uninstall_script(script),
                ScriptKind::PostUn => b.post_uninstall_script(script),
                ScriptKind::PostTrans => b.post_trans_script(script),
            };
        }
        let convert = |d: &Dependency| rpm::Dependency {
            name: d.name.clone(),
            flags: rpm::DependencyFlags::from_bits_retain(d.flags),
            version: d.version.clone(),
        };
        for d in &self.requires {
            b.requires(convert(d));
        }
        for d in &self.provides {
            b.provides(convert(d));
        }
        for d in &self.conflicts {
            b.conflicts(convert(d));
        }
        for d in &self.obsoletes {
            b.obsoletes(convert(d));
        }
        b.build().map_err(|e| self.fail(&e))
    }

    /// Builds the package, signs its header with `key` if given, and writes it to `out`.
    /// Returns the writer and what was built.
    pub fn write<W: Write>(
        &self,
        out: W,
        key: Option<&SigningKey>,
    ) -> Result<(W, BuiltRpm), Error> {
        let source_date = self.source_date.unwrap_or_else(|| rpm::Timestamp::now().0);
        let mut package = self.package(source_date)?;
        if let Some(key) = key {
            let when = rpm::Timestamp(key.signature_time(source_date));
            package
                .sign_with_timestamp(key.rpm_signer()?, when)
                .map_err(|e| Error::Sign { what: self.file_name(), reason: e.to_string() })?;
        }
        let mut hashing = HashingWriter::new(out);
        let write_err = |e: &dyn std::fmt::Display| Error::Write {
            package: self.name.clone(),
            reason: e.to_string(),
        };
        package.write(&mut hashing).map_err(|e| write_err(&e))?;
        hashing.flush().map_err(|e| write_err(&e))?;
        let (out, sha256, size) = hashing.finish();
        Ok((out, BuiltRpm { file_name: self.file_name(), sha256, size, signed: key.is_some() }))
    }

    /// Builds into `dir/<name-version-release.arch.rpm>` atomically (replacing an existing file
    /// only if `replace`).
    pub fn write_to_dir(
        &self,
        dir: &Utf8Path,
        key: Option<&SigningKey>,
        replace: bool,
    ) -> Result<BuiltRpm, Error> {
        let dest = dir.join(self.file_name());
        let file = if replace {
            AtomicFile::create_or_replace(&dest)?
        } else {
            AtomicFile::create(&dest)?
        };
        let (file, built) = self.write(file, key)?;
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
        assert!(matches!(err, Error::RichDependency { .. }), "{err}");
        assert!(err.to_string().contains("rpm 4.11"), "{err}");
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
