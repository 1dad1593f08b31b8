//! Reading RPM headers without loading payloads.
//!
//! The file layout is the one of the RPM v4 package format (rpm.org `docs/manual/format.md`):
//! a 96-byte lead, the signature header padded to 8 bytes, the main header, then the compressed
//! cpio payload. The rpm crate's `PackageMetadata` parses lead and headers; this module feeds
//! it through [`TeeHasher`] so the whole file is hashed (SHA-256 and MD5) in the same single
//! pass that then drains the payload, and checks what the signature header and header record:
//! the header SHA-256 and SHA-1 digests (`RPMSIGTAG_SHA256`/`SHA1`, over the exact header
//! bytes), the header+payload size (`RPMSIGTAG_SIZE`/`LONGSIZE`) and the payload SHA-256
//! (`RPMTAG_PAYLOADDIGEST`).
//!
//! Field choices follow what `createrepo_c` 0.17 puts into `primary.xml`, so that the
//! repodata writer can use an [`RpmHeader`] as is.

use std::fs::File;
use std::io::{self, BufReader, Read};

use camino::Utf8Path;
use rpm::{IndexSignatureTag, IndexTag, PackageMetadata};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use xspack_io::{BUFFER_SIZE, Sha256Digest};

use crate::BuiltRpm;
use crate::Error;
use crate::deps::Dependency;
use crate::digest::{Md5Digest, TeeHasher, hex};
use crate::layout::{self, Prefix};

/// `RPMFILE_GHOST` (rpm `rpmfiles.h`): the file is not in the payload.
const FILE_FLAG_GHOST: u32 = 1 << 6;
/// `RPMFILE_CONFIG`.
const FILE_FLAG_CONFIG: u32 = 1;
/// `PGPHASHALGO_SHA256`, the only payload digest algorithm rpm writes in practice.
const PGPHASHALGO_SHA256: u32 = 8;
/// Directory type bits of a file mode (`S_IFMT` and `S_IFDIR`, `S_IFLNK`).
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// The byte range of the main header within the file, as `rpm:header-range` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRange {
    /// Offset of the header's first byte (after the lead and the padded signature header).
    pub start: u64,
    /// Offset just past the header, where the payload starts.
    pub end: u64,
}

/// What repodata calls a file's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A regular file, symlink or device (repodata writes no `type`).
    File,
    /// A directory, ghost or not (`type="dir"`).
    Dir,
    /// A `%ghost` file that is not in the payload (`type="ghost"`).
    Ghost,
}

/// One entry of the header's file list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Absolute install path.
    pub path: String,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Size in bytes (directories: as recorded, often 4096 or 0).
    pub size: u64,
    /// Hex digest of a regular file's content (algorithm: [`RpmHeader::file_digest_algo`]);
    /// empty for directories, symlinks and ghosts.
    pub digest: String,
    /// Raw `RPMFILE_*` flags (config, doc, ghost, ...).
    pub flags: u32,
    /// Owner name.
    pub user: String,
    /// Group name.
    pub group: String,
    /// Symlink target, if a symlink.
    pub link_target: Option<String>,
    /// Modification time, seconds since the epoch.
    pub mtime: u32,
    /// Repodata type, derived from `mode` and `flags`.
    pub kind: FileKind,
}

impl FileEntry {
    /// Whether the entry is `%config`.
    pub fn is_config(&self) -> bool {
        self.flags & FILE_FLAG_CONFIG != 0
    }

    /// Whether the entry is a symbolic link.
    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }
}

/// One `%changelog` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogEntry {
    /// The author line, e.g. `Joe <joe@example.com> - 1.0-1`.
    pub author: String,
    /// Seconds since the epoch.
    pub time: u64,
    /// The entry text.
    pub text: String,
}

/// Everything repodata and pack metadata need from one RPM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpmHeader {
    /// `%{NAME}`.
    pub name: String,
    /// `%{EPOCH}`, if the header has one.
    pub epoch: Option<u32>,
    /// `%{VERSION}`.
    pub version: String,
    /// `%{RELEASE}`.
    pub release: String,
    /// `%{ARCH}`.
    pub arch: String,
    /// `%{SUMMARY}`.
    pub summary: String,
    /// `%{DESCRIPTION}`.
    pub description: String,
    /// `%{LICENSE}`.
    pub license: String,
    /// `%{VENDOR}` (empty when absent).
    pub vendor: String,
    /// `%{GROUP}` (empty when absent).
    pub group: String,
    /// `%{PACKAGER}` (empty when absent).
    pub packager: String,
    /// `%{URL}` (empty when absent).
    pub url: String,
    /// `%{BUILDHOST}` (empty when absent).
    pub build_host: String,
    /// `%{SOURCERPM}` (empty when absent).
    pub source_rpm: String,
    /// `%{BUILDTIME}`.
    pub build_time: u64,
    /// Sum of the file sizes (`%{LONGSIZE}` or `%{SIZE}`).
    pub installed_size: u64,
    /// Uncompressed payload size as recorded (signature `PAYLOADSIZE`/`LONGARCHIVESIZE`, or
    /// header `ARCHIVESIZE`); 0 when not recorded.
    pub archive_size: u64,
    /// Size of the RPM file in bytes.
    pub package_size: u64,
    /// Where the main header lies in the file.
    pub header_range: HeaderRange,
    /// SHA-256 of the whole file (repodata `pkgid`).
    pub sha256: Sha256Digest,
    /// MD5 of the whole file (legacy `XS-PACKAGES`); `None` when read with
    /// [`read_rpm_without_md5`].
    pub md5: Option<Md5Digest>,
    /// `Requires`, in header order (including `rpmlib(...)` and scriptlet interpreters).
    pub requires: Vec<Dependency>,
    /// `Provides`, in header order.
    pub provides: Vec<Dependency>,
    /// `Conflicts`.
    pub conflicts: Vec<Dependency>,
    /// `Obsoletes`.
    pub obsoletes: Vec<Dependency>,
    /// `Recommends` (weak; ignored by rpm 4.11).
    pub recommends: Vec<Dependency>,
    /// `Suggests`.
    pub suggests: Vec<Dependency>,
    /// `Supplements`.
    pub supplements: Vec<Dependency>,
    /// `Enhances`.
    pub enhances: Vec<Dependency>,
    /// The file list, in header order (sorted by path in packages rpm builds).
    pub files: Vec<FileEntry>,
    /// `RPMTAG_FILEDIGESTALGO` (1 = MD5, 8 = SHA-256), 1 when absent as rpm assumes.
    pub file_digest_algo: u32,
    /// `%{PAYLOADCOMPRESSOR}` (`gzip`, `xz`, `zstd`, ...), empty when absent.
    pub payload_compressor: String,
    /// Changelog, newest first as stored.
    pub changelog: Vec<ChangelogEntry>,
}

impl RpmHeader {
    /// `name-[epoch:]version-release.arch`, as `rpm -q --qf '%{NEVRA}'` prints it.
    pub fn nevra(&self) -> String {
        match self.epoch {
            Some(e) => format!("{}-{e}:{}-{}.{}", self.name, self.version, self.release, self.arch),
            None => format!("{}-{}-{}.{}", self.name, self.version, self.release, self.arch),
        }
    }

    /// `name-version-release.arch.rpm`, the conventional file name.
    pub fn file_name(&self) -> String {
        format!("{}-{}-{}.{}.rpm", self.name, self.version, self.release, self.arch)
    }

    /// `version-release`, as `rpm -q --qf '%{VERSION}-%{RELEASE}'` prints it.
    pub fn version_release(&self) -> String {
        format!("{}-{}", self.version, self.release)
    }
}

/// Reads the RPM at `path`: parses its headers, hashes the whole file in one streaming pass
/// and checks the recorded header and payload digests and sizes.
pub fn read_rpm(path: &Utf8Path) -> Result<RpmHeader, Error> {
    let file = File::open(path).map_err(|e| Error::io("opening RPM", path, e))?;
    read_rpm_from(file, path)
}

/// [`read_rpm`] without the MD5 of the file, which only the legacy pack format lists: a third
/// of the hashing work saved when no legacy metadata is written.
pub fn read_rpm_without_md5(path: &Utf8Path) -> Result<RpmHeader, Error> {
    let file = File::open(path).map_err(|e| Error::io("opening RPM", path, e))?;
    read_rpm_impl(file, path, false)
}

/// [`read_rpm`] on any reader; `path` names the file in errors. Reads `reader` to its end.
pub fn read_rpm_from(reader: impl Read, path: &Utf8Path) -> Result<RpmHeader, Error> {
    read_rpm_impl(reader, path, true)
}

fn read_rpm_impl(reader: impl Read, path: &Utf8Path, md5: bool) -> Result<RpmHeader, Error> {
    let mut buf = BufReader::with_capacity(BUFFER_SIZE, TeeHasher::new(reader, md5));
    let (meta, prefix) = parse_headers(&mut buf, path)?;
    check_header_digests(&meta, prefix.header(), path)?;

    // Drain the payload, hashing it on its own as well, starting with what is buffered.
    let mut payload_hash = Sha256::new();
    let mut payload_len = buf.buffer().len() as u64;
    payload_hash.update(buf.buffer());
    let mut tee = buf.into_inner();
    let mut chunk = vec![0u8; BUFFER_SIZE];
    loop {
        match tee.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                payload_hash.update(&chunk[..n]);
                payload_len += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading RPM payload", path, e)),
        }
    }
    let range = prefix.header_range();
    check_size(&meta, range, payload_len, path)?;
    check_payload_digest(&meta, &payload_hash.finalize(), path)?;
    let (sha256, md5, package_size) = tee.finish();
    header_fields(&meta, range, sha256, md5, package_size, path)
}

/// Reads and checks the lead and both headers ([`layout::read_prefix`]), then has the rpm
/// crate parse them from memory; the reader is left at the payload.
fn parse_headers(buf: &mut impl Read, path: &Utf8Path) -> Result<(PackageMetadata, Prefix), Error> {
    let prefix = layout::read_prefix(buf, path)?;
    let meta =
        PackageMetadata::parse(&mut prefix.bytes.as_slice()).map_err(|e| parse_error(e, path))?;
    let offsets = meta.get_package_segment_offsets();
    if offsets.header != prefix.header_range().start || offsets.payload != prefix.header_range().end
    {
        return Err(corrupt(path, "the rpm crate and the header preambles disagree on the layout"));
    }
    Ok((meta, prefix))
}

/// The header of an RPM this crate has just written to `path`: the lead and headers are read
/// and checked (header digests) as [`read_rpm`] does, but the whole-file SHA-256, MD5 and
/// size come from `built`, taken as the writer read the file back, instead of a third read of
/// the payload. Refuses a file whose size is not `built.size` (replaced meanwhile).
pub fn read_built_rpm(path: &Utf8Path, built: &BuiltRpm) -> Result<RpmHeader, Error> {
    let file = File::open(path).map_err(|e| Error::io("opening RPM", path, e))?;
    let size = file.metadata().map_err(|e| Error::io("reading RPM", path, e))?.len();
    if size != built.size {
        return Err(corrupt(
            path,
            format!("{size} bytes where the writer wrote {} (changed since)", built.size),
        ));
    }
    let (meta, prefix) = parse_headers(&mut BufReader::new(file), path)?;
    check_header_digests(&meta, prefix.header(), path)?;
    let range = prefix.header_range();
    let payload = built
        .size
        .checked_sub(range.end)
        .ok_or_else(|| corrupt(path, "the headers run past the end of the file"))?;
    check_size(&meta, range, payload, path)?;
    header_fields(&meta, range, built.sha256, Some(built.md5), built.size, path)
}

/// Parses the lead and headers of the RPM at `path` without reading the payload; returns the
/// metadata and the exact bytes of the main header (what header signatures cover).
pub(crate) fn read_metadata(path: &Utf8Path) -> Result<(PackageMetadata, Vec<u8>), Error> {
    let file = File::open(path).map_err(|e| Error::io("opening RPM", path, e))?;
    let (meta, prefix) = parse_headers(&mut BufReader::new(file), path)?;
    let header = prefix.header().to_vec();
    Ok((meta, header))
}

pub(crate) fn corrupt(path: &Utf8Path, reason: impl Into<String>) -> Error {
    Error::CorruptHeader { path: path.to_owned(), reason: reason.into() }
}

fn parse_error(e: rpm::Error, path: &Utf8Path) -> Error {
    match e {
        rpm::Error::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => Error::Truncated {
            path: path.to_owned(),
            reason: "the file ends inside the lead or headers".into(),
        },
        rpm::Error::Io(io) => Error::io("reading RPM headers", path, io),
        other => corrupt(path, other.to_string()),
    }
}

fn check_header_digests(
    meta: &PackageMetadata,
    header: &[u8],
    path: &Utf8Path,
) -> Result<(), Error> {
    let sig = &meta.signature;
    if let Ok(recorded) = sig.get_entry_data_as_string(IndexSignatureTag::RPMSIGTAG_SHA256) {
        let actual = hex(&Sha256::digest(header));
        if !recorded.eq_ignore_ascii_case(&actual) {
            return Err(Error::DigestMismatch {
                path: path.to_owned(),
                what: "header SHA-256",
                expected: recorded.to_owned(),
                actual,
            });
        }
    }
    if let Ok(recorded) = sig.get_entry_data_as_string(IndexSignatureTag::RPMSIGTAG_SHA1) {
        let actual = hex(&Sha1::digest(header));
        if !recorded.eq_ignore_ascii_case(&actual) {
            return Err(Error::DigestMismatch {
                path: path.to_owned(),
                what: "header SHA-1",
                expected: recorded.to_owned(),
                actual,
            });
        }
    }
    Ok(())
}

fn check_size(
    meta: &PackageMetadata,
    range: HeaderRange,
    payload: u64,
    path: &Utf8Path,
) -> Result<(), Error> {
    let sig = &meta.signature;
    let recorded = sig
        .get_entry_data_as_u64(IndexSignatureTag::RPMSIGTAG_LONGSIZE)
        .or_else(|_| sig.get_entry_data_as_u32(IndexSignatureTag::RPMSIGTAG_SIZE).map(u64::from));
    let Ok(recorded) = recorded else { return Ok(()) };
    let actual = range.end - range.start + payload;
    if actual < recorded {
        return Err(Error::Truncated {
            path: path.to_owned(),
            reason: format!(
                "header and payload are {actual} bytes, the signature header says {recorded}"
            ),
        });
    }
    if actual > recorded {
        return Err(corrupt(
            path,
            format!("header and payload are {actual} bytes, the signature header says {recorded}"),
        ));
    }
    Ok(())
}

fn check_payload_digest(
    meta: &PackageMetadata,
    actual: &[u8],
    path: &Utf8Path,
) -> Result<(), Error> {
    let header = &meta.header;
    let Ok(recorded) = header.get_entry_data_as_string_array(IndexTag::RPMTAG_PAYLOADSHA256) else {
        return Ok(());
    };
    let algo = header
        .get_entry_data_as_u32(IndexTag::RPMTAG_PAYLOADSHA256ALGO)
        .unwrap_or(PGPHASHALGO_SHA256);
    let (Some(recorded), PGPHASHALGO_SHA256) = (recorded.first(), algo) else { return Ok(()) };
    let actual = hex(actual);
    if !recorded.eq_ignore_ascii_case(&actual) {
        return Err(Error::DigestMismatch {
            path: path.to_owned(),
            what: "payload SHA-256",
            expected: (*recorded).to_owned(),
            actual,
        });
    }
    Ok(())
}

/// A string tag that may be absent (empty then); other failures are corruption.
fn optional_text(result: Result<&str, rpm::Error>, path: &Utf8Path) -> Result<String, Error> {
    match result {
        Ok(s) => Ok(s.to_owned()),
        Err(rpm::Error::TagNotFound(_)) => Ok(String::new()),
        Err(e) => Err(corrupt(path, e.to_string())),
    }
}

fn required_text(
    result: Result<&str, rpm::Error>,
    what: &str,
    path: &Utf8Path,
) -> Result<String, Error> {
    result.map(str::to_owned).map_err(|e| corrupt(path, format!("{what}: {e}")))
}

fn deps(
    result: Result<Vec<rpm::Dependency>, rpm::Error>,
    path: &Utf8Path,
) -> Result<Vec<Dependency>, Error> {
    let list = result.map_err(|e| corrupt(path, e.to_string()))?;
    Ok(list
        .into_iter()
        .map(|d| Dependency { name: d.name, flags: d.flags.bits(), version: d.version })
        .collect())
}

fn archive_size(meta: &PackageMetadata) -> u64 {
    let sig = &meta.signature;
    sig.get_entry_data_as_u64(IndexSignatureTag::RPMSIGTAG_LONGARCHIVESIZE)
        .or_else(|_| {
            sig.get_entry_data_as_u32(IndexSignatureTag::RPMSIGTAG_PAYLOADSIZE).map(u64::from)
        })
        .or_else(|_| meta.header.get_entry_data_as_u64(IndexTag::RPMTAG_LONGARCHIVESIZE))
        .or_else(|_| meta.header.get_entry_data_as_u32(IndexTag::RPMTAG_ARCHIVESIZE).map(u64::from))
        .unwrap_or(0)
}

fn file_entries(meta: &PackageMetadata, path: &Utf8Path) -> Result<Vec<FileEntry>, Error> {
    let mut files = Vec::new();
    meta.for_each_file_entry(|entry| {
        let mode = u32::from(entry.mode().raw_mode());
        let flags = entry.flags().bits();
        let kind = if mode & S_IFMT == S_IFDIR {
            FileKind::Dir
        } else if flags & FILE_FLAG_GHOST != 0 {
            FileKind::Ghost
        } else {
            FileKind::File
        };
        files.push(FileEntry {
            path: format!("{}{}", entry.dirname(), entry.basename()),
            mode,
            size: entry.size() as u64,
            digest: entry.digest().map(|d| d.as_hex().to_owned()).unwrap_or_default(),
            flags,
            user: entry.user().to_owned(),
            group: entry.group().to_owned(),
            link_target: entry.linkto().map(str::to_owned),
            mtime: entry.modified_at().0,
            kind,
        });
        Ok(())
    })
    .map_err(|e| corrupt(path, format!("file list: {e}")))?;
    Ok(files)
}

fn header_fields(
    meta: &PackageMetadata,
    range: HeaderRange,
    sha256: Sha256Digest,
    md5: Option<Md5Digest>,
    package_size: u64,
    path: &Utf8Path,
) -> Result<RpmHeader, Error> {
    let epoch = match meta.get_epoch() {
        Ok(e) => Some(e),
        Err(rpm::Error::TagNotFound(_)) => None,
        Err(e) => return Err(corrupt(path, format!("epoch: {e}"))),
    };
    let build_time = match meta.get_build_time() {
        Ok(t) => t,
        Err(rpm::Error::TagNotFound(_)) => 0,
        Err(e) => return Err(corrupt(path, format!("build time: {e}"))),
    };
    let installed_size = match meta.get_installed_size() {
        Ok(s) => s,
        Err(rpm::Error::TagNotFound(_)) => 0,
        Err(e) => return Err(corrupt(path, format!("size: {e}"))),
    };
    let changelog = meta
        .get_changelog_entries()
        .map_err(|e| corrupt(path, format!("changelog: {e}")))?
        .into_iter()
        .map(|c| ChangelogEntry { author: c.name, time: c.timestamp, text: c.description })
        .collect();
    let h = &meta.header;
    Ok(RpmHeader {
        name: required_text(meta.get_name(), "name", path)?,
        epoch,
        version: required_text(meta.get_version(), "version", path)?,
        release: required_text(meta.get_release(), "release", path)?,
        arch: required_text(meta.get_arch(), "arch", path)?,
        summary: optional_text(meta.get_summary(), path)?,
        description: optional_text(meta.get_description(), path)?,
        license: optional_text(meta.get_license(), path)?,
        vendor: optional_text(meta.get_vendor(), path)?,
        group: optional_text(meta.get_group(), path)?,
        packager: optional_text(meta.get_packager(), path)?,
        url: optional_text(meta.get_url(), path)?,
        build_host: optional_text(meta.get_build_host(), path)?,
        source_rpm: optional_text(meta.get_source_rpm(), path)?,
        build_time,
        installed_size,
        archive_size: archive_size(meta),
        package_size,
        header_range: range,
        sha256,
        md5,
        requires: deps(meta.get_requires(), path)?,
        provides: deps(meta.get_provides(), path)?,
        conflicts: deps(meta.get_conflicts(), path)?,
        obsoletes: deps(meta.get_obsoletes(), path)?,
        recommends: deps(meta.get_recommends(), path)?,
        suggests: deps(meta.get_suggests(), path)?,
        supplements: deps(meta.get_supplements(), path)?,
        enhances: deps(meta.get_enhances(), path)?,
        files: file_entries(meta, path)?,
        file_digest_algo: h.get_entry_data_as_u32(IndexTag::RPMTAG_FILEDIGESTALGO).unwrap_or(1),
        payload_compressor: optional_text(
            h.get_entry_data_as_string(IndexTag::RPMTAG_PAYLOADCOMPRESSOR),
            path,
        )?,
        changelog,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<RpmHeader, Error> {
        read_rpm_from(bytes, Utf8Path::new("t.rpm"))
    }

    #[test]
    fn empty_and_short_files_are_not_rpms() {
        assert!(matches!(read(b""), Err(Error::NotRpm { .. })), "{:?}", read(b""));
        assert!(matches!(read(b"\xed\xab"), Err(Error::NotRpm { .. })));
        let err = read(b"<?xml version=\"1.0\"?>").unwrap_err();
        assert!(err.to_string().contains("t.rpm: not an RPM package"), "{err}");
    }
}
