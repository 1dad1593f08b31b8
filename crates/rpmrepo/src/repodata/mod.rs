//! Yum repository metadata (`repodata/`) in the layout `createrepo_c --no-database` 0.17 writes and
//! the XenServer consumers read (`docs/formats/packs.md` section "Repository metadata"):
//! gzip-compressed `primary`, `filelists` and `other`, an optional comps file as `group` and
//! `group_gz`, and `repomd.xml` with sha256 checksums everywhere.
//!
//! Output is deterministic: packages are sorted by location, gzip headers carry mtime 0 and no
//! file name, and every time written (`<time file>`, `<timestamp>`, `<revision>`) is the
//! caller's source date, so two runs over the same RPMs are byte-identical. File names are
//! either `<sha256>-<kind>.xml.gz` (`createrepo_c`'s default) or simple (`primary.xml.gz`, as
//! `--simple-md-filenames`).

mod comps;
mod filelists;
mod other;
mod primary;
mod repomd;
mod xml;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};

use camino::{Utf8Path, Utf8PathBuf};
use flate2::GzBuilder;
use xspack_io::{AtomicDir, HashingWriter, Sha256Digest};

pub use comps::{RepoGroup, write_comps};
pub use filelists::write_filelists;
pub use other::{CHANGELOG_LIMIT, write_other};
pub use primary::{is_primary_file, write_primary};
pub use repomd::write_repomd;

use crate::Error;
use crate::header::{RpmHeader, read_rpm};

/// Name of the metadata directory under the repository root.
pub const REPODATA_DIR: &str = "repodata";
/// gzip level of the metadata files (zlib's default, as `createrepo_c` uses).
const GZIP_LEVEL: u32 = 6;
/// Base name of the comps file, as build-update passes it to `createrepo_c`.
const GROUPS_NAME: &str = "groups.xml";

/// One RPM of the repository with what repodata records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPackage {
    /// Path relative to the repository root, `/`-separated (e.g. `Packages/foo.rpm`).
    pub location: String,
    /// The `<time file>` value (`createrepo_c`: the file's mtime; here the source date).
    pub file_time: u64,
    /// The package's header.
    pub header: RpmHeader,
}

/// How [`write_repodata`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepodataOptions {
    /// Every timestamp and the revision (seconds since the epoch, normally
    /// `SOURCE_DATE_EPOCH`).
    pub source_date: u32,
    /// Plain names (`primary.xml.gz`) instead of `<sha256>-primary.xml.gz`.
    pub simple_names: bool,
    /// Comps groups; none means no `group`/`group_gz` data.
    pub groups: Vec<RepoGroup>,
    /// Replace an existing `repodata/` (atomically) instead of refusing.
    pub replace: bool,
}

impl RepodataOptions {
    /// Hashed names, no groups, refuse to replace, all times `source_date`.
    pub fn new(source_date: u32) -> Self {
        RepodataOptions { source_date, simple_names: false, groups: Vec::new(), replace: false }
    }
}

/// One metadata file as `repomd.xml` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepodataFile {
    /// The data type: `primary`, `filelists`, `other`, `group`, `group_gz`.
    pub kind: String,
    /// Location relative to the repository root (`repodata/...`).
    pub location: String,
    /// SHA-256 of the file as stored.
    pub checksum: Sha256Digest,
    /// Size of the file as stored.
    pub size: u64,
    /// SHA-256 of the uncompressed content (compressed files only).
    pub open_checksum: Option<Sha256Digest>,
    /// Size of the uncompressed content (compressed files only).
    pub open_size: Option<u64>,
}

/// What [`write_repodata`] wrote.
#[derive(Debug, Clone)]
pub struct RepodataSummary {
    /// The packages, sorted by location, with their headers.
    pub packages: Vec<RepoPackage>,
    /// The metadata files, in `repomd.xml` order.
    pub files: Vec<RepodataFile>,
    /// SHA-256 of `repodata/repomd.xml`.
    pub repomd_sha256: Sha256Digest,
    /// Path of `repodata/repomd.xml` (the file to sign).
    pub repomd_path: Utf8PathBuf,
}

/// Checks that `location` is a clean relative path inside the repository.
fn check_location(location: &str) -> Result<(), Error> {
    let bad = |reason| Error::InvalidRepoPath { path: location.to_owned(), reason };
    if location.is_empty() || location.starts_with('/') {
        return Err(bad("must be relative to the repository root"));
    }
    if location.contains('\\') {
        return Err(bad("must use '/' separators"));
    }
    if location.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(bad("must not contain empty, '.' or '..' components"));
    }
    if location.split('/').next() == Some(REPODATA_DIR) {
        return Err(bad("must not be inside repodata/"));
    }
    Ok(())
}

/// Reads the RPMs at `locations` (relative to `root`), sorts them by location and refuses
/// duplicate NEVRAs.
pub fn read_packages<S: AsRef<str>>(
    root: &Utf8Path,
    locations: &[S],
    file_time: u64,
) -> Result<Vec<RepoPackage>, Error> {
    let mut by_location = BTreeMap::new();
    for loc in locations {
        let loc = loc.as_ref();
        check_location(loc)?;
        if by_location.contains_key(loc) {
            return Err(Error::InvalidRepoPath { path: loc.to_owned(), reason: "listed twice" });
        }
        let header = read_rpm(&root.join(loc))?;
        by_location.insert(loc.to_owned(), header);
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut packages = Vec::with_capacity(by_location.len());
    for (location, header) in by_location {
        // The epoch counts as 0 when absent, as rpm compares it.
        let nevra = format!(
            "{}-{}:{}-{}.{}",
            header.name,
            header.epoch.unwrap_or(0),
            header.version,
            header.release,
            header.arch
        );
        if let Some(first) = seen.insert(nevra.clone(), location.clone()) {
            return Err(Error::DuplicateNevra { nevra: header.nevra(), first, second: location });
        }
        packages.push(RepoPackage { location, file_time, header });
    }
    Ok(packages)
}

fn gzip_level() -> flate2::Compression {
    flate2::Compression::new(GZIP_LEVEL)
}

/// Writes one metadata file into `dir` via `content`, gzip-compressed if `gzip`, then names it
/// by its checksum unless `simple`.
fn write_meta(
    dir: &Utf8Path,
    kind: &str,
    base: &str,
    gzip: bool,
    simple: bool,
    content: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<RepodataFile, Error> {
    let stored = if gzip { format!("{base}.gz") } else { base.to_owned() };
    let path = dir.join(&stored);
    let file =
        File::create(&path).map_err(|e| Error::io("creating metadata file", path.as_path(), e))?;
    let stored_hash = HashingWriter::new(BufWriter::new(file));
    let io_err = |e| Error::io("writing metadata file", path.as_path(), e);
    let (sink, checksum, size, open) = if gzip {
        // mtime 0 and no file name keep the gzip header independent of when and where.
        let gz = GzBuilder::new().mtime(0).write(stored_hash, gzip_level());
        let mut open_hash = HashingWriter::new(gz);
        content(&mut open_hash).map_err(io_err)?;
        let (gz, open_checksum, open_size) = open_hash.finish();
        let (sink, checksum, size) = gz.finish().map_err(io_err)?.finish();
        (sink, checksum, size, Some((open_checksum, open_size)))
    } else {
        let mut w = stored_hash;
        content(&mut w).map_err(io_err)?;
        let (sink, checksum, size) = w.finish();
        (sink, checksum, size, None)
    };
    sink.into_inner().map_err(|e| io_err(e.into_error()))?;
    let name = if simple { stored } else { format!("{checksum}-{stored}") };
    if !simple {
        let dest = dir.join(&name);
        fs::rename(&path, &dest).map_err(|e| Error::io("naming metadata file", dest, e))?;
    }
    Ok(RepodataFile {
        kind: kind.to_owned(),
        location: format!("{REPODATA_DIR}/{name}"),
        checksum,
        size,
        open_checksum: open.map(|(c, _)| c),
        open_size: open.map(|(_, s)| s),
    })
}

/// Writes `root/repodata/` for the RPMs at `locations` (paths relative to `root`), atomically:
/// the directory appears complete or not at all. Every group's mandatory packages must be in
/// the repository.
pub fn write_repodata<S: AsRef<str>>(
    root: &Utf8Path,
    locations: &[S],
    opts: &RepodataOptions,
) -> Result<RepodataSummary, Error> {
    let packages = read_packages(root, locations, u64::from(opts.source_date))?;
    write_repodata_for(root, packages, opts)
}

/// [`write_repodata`] for packages whose headers were already read (with [`read_rpm`]), so no
/// RPM is read twice. Locations are checked, sorted, and duplicate NEVRAs refused as there.
pub fn write_repodata_for(
    root: &Utf8Path,
    mut packages: Vec<RepoPackage>,
    opts: &RepodataOptions,
) -> Result<RepodataSummary, Error> {
    packages.sort_by(|a, b| a.location.cmp(&b.location));
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, p) in packages.iter().enumerate() {
        check_location(&p.location)?;
        if i > 0 && packages[i - 1].location == p.location {
            return Err(Error::InvalidRepoPath {
                path: p.location.clone(),
                reason: "listed twice",
            });
        }
        let h = &p.header;
        let nevra =
            format!("{}-{}:{}-{}.{}", h.name, h.epoch.unwrap_or(0), h.version, h.release, h.arch);
        if let Some(first) = seen.insert(nevra, p.location.clone()) {
            return Err(Error::DuplicateNevra {
                nevra: h.nevra(),
                first,
                second: p.location.clone(),
            });
        }
    }
    let mut group_ids = std::collections::HashSet::new();
    for g in &opts.groups {
        g.check()?;
        if !group_ids.insert(g.id.as_str()) {
            return Err(Error::InvalidGroup { id: g.id.clone(), reason: "defined twice" });
        }
        if !g.mandatory.iter().all(|m| packages.iter().any(|p| &p.header.name == m)) {
            return Err(Error::InvalidGroup {
                id: g.id.clone(),
                reason: "a mandatory package is not in the repository",
            });
        }
    }
    let dest = root.join(REPODATA_DIR);
    let out =
        if opts.replace { AtomicDir::create_or_replace(&dest)? } else { AtomicDir::create(&dest)? };
    let dir = out.path().to_owned();
    let simple = opts.simple_names;
    let mut files = vec![
        write_meta(&dir, "primary", "primary.xml", true, simple, |w| {
            write_primary(w, &packages).map(drop)
        })?,
        write_meta(&dir, "filelists", "filelists.xml", true, simple, |w| {
            write_filelists(w, &packages).map(drop)
        })?,
        write_meta(&dir, "other", "other.xml", true, simple, |w| {
            write_other(w, &packages).map(drop)
        })?,
    ];
    if !opts.groups.is_empty() {
        let comps = write_comps(Vec::new(), &opts.groups)
            .map_err(|e| Error::io("writing comps", dir.as_path(), e))?;
        files.push(write_meta(&dir, "group", GROUPS_NAME, false, simple, |w| w.write_all(&comps))?);
        files.push(write_meta(&dir, "group_gz", GROUPS_NAME, true, simple, |w| {
            w.write_all(&comps)
        })?);
    }
    let repomd_tmp = dir.join("repomd.xml");
    let file = File::create(&repomd_tmp)
        .map_err(|e| Error::io("creating repomd.xml", repomd_tmp.as_path(), e))?;
    let revision = opts.source_date.to_string();
    let hashing = write_repomd(
        HashingWriter::new(BufWriter::new(file)),
        &files,
        &revision,
        u64::from(opts.source_date),
    )
    .map_err(|e| Error::io("writing repomd.xml", repomd_tmp.as_path(), e))?;
    let (sink, repomd_sha256, _) = hashing.finish();
    sink.into_inner()
        .map_err(|e| Error::io("writing repomd.xml", repomd_tmp.as_path(), e.into_error()))?;
    out.commit()?;
    Ok(RepodataSummary { packages, files, repomd_sha256, repomd_path: dest.join("repomd.xml") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_must_be_clean() {
        for bad in [
            "",
            "/abs.rpm",
            "a//b.rpm",
            "./a.rpm",
            "a/../b.rpm",
            "repodata/x.rpm",
            "a\\b.rpm",
            "a/",
        ] {
            assert!(check_location(bad).is_err(), "{bad:?}");
        }
        for good in ["a.rpm", "Packages/a.rpm", "repodata2/x.rpm"] {
            assert!(check_location(good).is_ok(), "{good:?}");
        }
    }
}
