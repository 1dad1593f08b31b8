//! `xspack pack verify`: checks a pack ISO as the hosts that install it would, and more.
//!
//! - legacy (`XS-REPOSITORY` present): the rules of `docs/formats/packs.md` sections
//!   "XS-REPOSITORY" and "XS-PACKAGES", every listed file's size and MD5, and executable `install`
//!   and `install.sh`;
//! - update (`update.xml` present): xapi's `update.xml` rules (`docs/formats/packs.md` section
//!   "update.xml"), `repomd.xml` and every metadata file's sha256 and size (compressed and open),
//!   every RPM's sha256 and size against `primary`, the `update` group naming `update-<label>`, and
//!   the detached signatures on `update.xml` and `repodata/repomd.xml` (`docs/formats/packs.md`
//!   section "Signing and keys"), plus RPM header signatures when the pack names a key.
//!
//! Every RPM is read whole (header digests, payload digest and size checked) and judged
//! against the pack's target: the one given, else the one the ISO records
//! (`crate::target_record`), else the default.
//!
//! The ISO is untrusted: it is read through xspack-iso's bounded reader, small documents are
//! size-capped, and every failure is a typed error naming the file.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};

use camino::Utf8Path;
use md5::Digest as _;
use sha2::Sha256;
use xspack_iso::{Entry, EntryKind, IsoReader};
use xspack_rpmrepo::{PublicKey, RpmHeader, Target};

use crate::Error;
use crate::target_record::{self, Recorded};
use crate::update::UpdateXml;
use crate::xml::{self, Element};

/// Largest metadata document read into memory (primary.xml of a very large pack fits).
const MAX_DOCUMENT: u64 = 64 << 20;

/// What `verify_iso` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PackReport {
    /// `legacy` and/or `update`.
    pub formats: Vec<&'static str>,
    /// Pack label.
    pub name: String,
    /// Pack version.
    pub version: String,
    /// The target the RPMs were judged against (an id such as `xenserver-8`).
    pub target: &'static str,
    /// RPM files checked.
    pub rpms: Vec<String>,
    /// What was checked, for the summary line.
    pub checked: Vec<String>,
    /// Things that are legal but worth saying.
    pub warnings: Vec<String>,
}

impl xspack_io::Classify for Error {
    /// Whether the error means the ISO breaks a rule (as opposed to a failure to read it).
    fn fault(&self) -> xspack_io::Fault {
        xspack_io::Fault::input_if(match self {
            Error::Io(_) => false,
            // Writing a package out (a full disk) or any other I/O is not the input's fault.
            Error::Rpm(e) => !matches!(
                **e,
                xspack_rpmrepo::Error::Write { .. }
                    | xspack_rpmrepo::Error::Io(_)
                    | xspack_rpmrepo::Error::Output(_)
            ),
            Error::Iso(e) => e.is_bad_input(),
            Error::VmTemplate(e) => e.is_bad_input(),
            _ => true,
        })
    }
}

fn bad(what: &str, reason: impl Into<String>) -> Error {
    Error::metadata(what, reason)
}

struct Iso {
    reader: IsoReader<File>,
    entries: BTreeMap<String, Entry>,
}

impl Iso {
    fn open(path: &Utf8Path) -> Result<Self, Error> {
        let file =
            File::open(path).map_err(|e| Error::Io(xspack_io::IoError::new("opening", path, e)))?;
        let mut reader = IsoReader::new(file).map_err(|e| Error::Iso(Box::new(e)))?;
        let entries = reader
            .entries()
            .map_err(|e| Error::Iso(Box::new(e)))?
            .into_iter()
            .map(|e| (e.path.trim_start_matches('/').to_owned(), e))
            .collect();
        Ok(Iso { reader, entries })
    }

    fn entry(&self, name: &str) -> Result<&Entry, Error> {
        match self.entries.get(name) {
            Some(e) if e.kind == EntryKind::File => Ok(e),
            Some(_) => Err(bad(name, "is not a regular file")),
            None => Err(bad(name, "is missing from the ISO")),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.entries.get(name).is_some_and(|e| e.kind == EntryKind::File)
    }

    fn read(&mut self, name: &str) -> Result<Vec<u8>, Error> {
        let entry = self.entry(name)?.clone();
        if entry.size > MAX_DOCUMENT {
            return Err(bad(name, format!("is larger than {MAX_DOCUMENT} bytes")));
        }
        let mut data = Vec::new();
        self.reader
            .open_file(&entry)
            .map_err(|e| Error::Iso(Box::new(e)))?
            .read_to_end(&mut data)
            .map_err(|e| bad(name, format!("unreadable: {e}")))?;
        Ok(data)
    }

    fn text(&mut self, name: &str) -> Result<String, Error> {
        String::from_utf8(self.read(name)?).map_err(|_| bad(name, "is not UTF-8"))
    }

    /// Streams `name` through MD5 and SHA-256; returns (md5 hex, sha256 hex, size).
    fn hash(&mut self, name: &str) -> Result<(String, String, u64), Error> {
        let entry = self.entry(name)?.clone();
        let mut r = self.reader.open_file(&entry).map_err(|e| Error::Iso(Box::new(e)))?;
        let mut md5 = md5::Md5::new();
        let mut sha = <Sha256 as sha2::Digest>::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = r.read(&mut buf).map_err(|e| bad(name, format!("unreadable: {e}")))?;
            if n == 0 {
                break;
            }
            md5.update(&buf[..n]);
            sha2::Digest::update(&mut sha, &buf[..n]);
            size += n as u64;
        }
        let hex = |b: &[u8]| {
            b.iter().fold(String::new(), |mut s, x| {
                s.push_str(&format!("{x:02x}"));
                s
            })
        };
        Ok((hex(&md5.finalize()), hex(&sha2::Digest::finalize(sha)), size))
    }

    /// Reads the RPM `name` whole: its header, its digests and sizes checked.
    fn rpm(&mut self, name: &str) -> Result<RpmHeader, Error> {
        let entry = self.entry(name)?.clone();
        let r = self.reader.open_file(&entry).map_err(|e| Error::Iso(Box::new(e)))?;
        xspack_rpmrepo::read_rpm_from(r, Utf8Path::new(name)).map_err(|e| Error::Rpm(Box::new(e)))
    }

    /// Copies `name` into a temporary file (RPM signature checks read paths).
    fn extract(&mut self, name: &str, dir: &Utf8Path) -> Result<camino::Utf8PathBuf, Error> {
        let entry = self.entry(name)?.clone();
        let dest = dir.join(name.rsplit('/').next().unwrap_or(name));
        let mut out = File::create(&dest)
            .map_err(|e| Error::Io(xspack_io::IoError::new("writing", &dest, e)))?;
        let mut r = self.reader.open_file(&entry).map_err(|e| Error::Iso(Box::new(e)))?;
        io::copy(&mut r, &mut out).map_err(|e| bad(name, format!("unreadable: {e}")))?;
        Ok(dest)
    }
}

fn parse_xml(name: &str, text: &str) -> Result<Element, Error> {
    xml::parse(text).map_err(|e| bad(name, e))
}

/// Checks the pack ISO at `path`; signatures against `key`, or the key file the ISO carries;
/// RPMs against `target`, or the target the ISO records.
pub fn verify_iso(
    path: &Utf8Path,
    key: Option<&PublicKey>,
    target: Option<&'static Target>,
) -> Result<PackReport, Error> {
    let mut iso = Iso::open(path)?;
    let mut report = PackReport::default();
    let target = judged_against(&iso, target, path, &mut report)?;
    report.target = target.id;
    let legacy = iso.has("XS-REPOSITORY");
    let update = iso.has("update.xml");
    if !legacy && !update {
        return Err(bad(
            path.as_str(),
            "holds neither XS-REPOSITORY (legacy pack) nor update.xml (update pack)",
        ));
    }
    if legacy {
        verify_legacy(&mut iso, target, &mut report)?;
    }
    if update {
        verify_update(&mut iso, key, target, &mut report)?;
    }
    Ok(report)
}

/// The target to judge the RPMs against: `given`, else the ISO's record, else the default.
fn judged_against(
    iso: &Iso,
    given: Option<&'static Target>,
    path: &Utf8Path,
    report: &mut PackReport,
) -> Result<&'static Target, Error> {
    let record = target_record::recorded(&iso.reader.volume().application_id);
    match (given, record) {
        (Some(t), Recorded::Known(r)) if t != r => {
            report
                .warnings
                .push(format!("built for target {}, judged against {} as asked", r.id, t.id));
            Ok(t)
        }
        (Some(t), _) | (None, Recorded::Known(t)) => Ok(t),
        (None, Recorded::Unknown(id)) => Err(bad(
            path.as_str(),
            format!(
                "records target {id:?}, which this xspack does not know ({}); pass --target to \
                 judge it against one of those",
                Target::ids()
            ),
        )),
        (None, Recorded::None) => {
            let t = Target::DEFAULT;
            report.warnings.push(format!(
                "the ISO records no target (not built by xspack); judged against {} ({}), \
                 pass --target to choose",
                t.id, t.name
            ));
            Ok(t)
        }
    }
}

fn dotted(v: &str) -> bool {
    crate::spec::is_dotted_integers(v.split('-').next().unwrap_or(v))
}

fn verify_legacy(
    iso: &mut Iso,
    target: &'static Target,
    report: &mut PackReport,
) -> Result<(), Error> {
    report.formats.push("legacy");
    let repo_text = iso.text("XS-REPOSITORY")?;
    let repo = parse_xml("XS-REPOSITORY", &repo_text)?;
    let need = |el: &Element, k: &str| {
        el.attr(k)
            .map(str::to_owned)
            .ok_or_else(|| bad("XS-REPOSITORY", format!("<{}> lacks {k}", el.name)))
    };
    if repo.name != "repository" {
        return Err(bad("XS-REPOSITORY", "root element is not <repository>"));
    }
    let ident = |s: &str| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    for k in ["originator", "name"] {
        if !ident(&need(&repo, k)?) {
            return Err(bad(
                "XS-REPOSITORY",
                format!("{k} must be letters, digits, '.', '_' and '-'"),
            ));
        }
    }
    need(&repo, "product")?;
    report.name = need(&repo, "name")?;
    report.version = need(&repo, "version")?;
    if !dotted(&report.version) {
        return Err(bad(
            "XS-REPOSITORY",
            format!("version {:?} is not dotted integers", report.version),
        ));
    }
    match repo.children.first() {
        Some(d) if d.name == "description" && !d.text.trim().is_empty() => {}
        _ => {
            return Err(bad(
                "XS-REPOSITORY",
                "the first child must be a non-empty <description> (xapi reads only that)",
            ));
        }
    }
    for r in repo.all("requires") {
        need(r, "originator")?;
        need(r, "name")?;
        let test = need(r, "test")?;
        if !["eq", "ne", "lt", "gt", "le", "ge"].contains(&test.as_str()) {
            return Err(bad(
                "XS-REPOSITORY",
                format!("requires test {test:?} is not eq, ne, lt, gt, le or ge"),
            ));
        }
        if !dotted(&need(r, "version")?) {
            return Err(bad("XS-REPOSITORY", "a requires version is not dotted integers"));
        }
    }
    let pkgs_text = iso.text("XS-PACKAGES")?;
    let pkgs = parse_xml("XS-PACKAGES", &pkgs_text)?;
    let list: Vec<&Element> = pkgs.all("package").collect();
    if list.is_empty() {
        return Err(bad("XS-PACKAGES", "lists no package"));
    }
    for p in list {
        report.rpms.push(verify_legacy_package(iso, p, target)?);
    }
    for script in ["install", "install.sh"] {
        let entry = iso.entry(script)?;
        if entry.mode.is_none_or(|m| m & 0o111 == 0) {
            return Err(bad(script, "is not executable (Rock Ridge mode 0755 expected)"));
        }
    }
    report.checked.push(format!(
        "legacy metadata, MD5 of every package, executable install scripts, RPMs for {}",
        target.id
    ));
    Ok(())
}

/// Checks one `<package>` of XS-PACKAGES: its size and MD5, and an RPM against `target`.
/// Returns the file name.
fn verify_legacy_package(
    iso: &mut Iso,
    p: &Element,
    target: &'static Target,
) -> Result<String, Error> {
    let file = p.text.trim().to_owned();
    let what = format!("XS-PACKAGES: {file}");
    for k in ["label", "type", "size", "md5"] {
        if p.attr(k).is_none() {
            return Err(bad(&what, format!("lacks {k}")));
        }
    }
    let size: u64 = p
        .attr("size")
        .unwrap_or_default()
        .parse()
        .map_err(|_| bad(&what, "size is not an integer"))?;
    let (md5, actual) = if p.attr("type") == Some("rpm") {
        let header = iso.rpm(&file)?;
        target.check_rpm(&file, &header).map_err(|e| Error::Rpm(Box::new(e)))?;
        (header.md5.map(|m| m.to_string()).unwrap_or_default(), header.package_size)
    } else {
        let (md5, _, size) = iso.hash(&file)?;
        (md5, size)
    };
    if actual != size {
        return Err(bad(&file, format!("size {actual} differs from XS-PACKAGES' {size}")));
    }
    let listed = p.attr("md5").unwrap_or_default();
    if md5 != listed {
        return Err(bad(&file, format!("MD5 {md5} differs from XS-PACKAGES' {listed}")));
    }
    Ok(file)
}

/// (sha256, size) a `<data>` or `<package>` element records.
fn recorded(el: &Element, what: &str) -> Result<(String, u64), Error> {
    let checksum = el.first("checksum").ok_or_else(|| bad(what, "no <checksum>"))?;
    if checksum.attr("type") != Some("sha256") {
        return Err(bad(what, "checksum type is not sha256"));
    }
    let size_el = el.first("size").ok_or_else(|| bad(what, "no <size>"))?;
    let size_text =
        size_el.attr("package").map_or_else(|| size_el.text.trim().to_owned(), str::to_owned);
    let size = size_text.parse().map_err(|_| bad(what, "size is not an integer"))?;
    Ok((checksum.text.trim().to_owned(), size))
}

fn gunzip(name: &str, data: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .take(MAX_DOCUMENT)
        .read_to_end(&mut out)
        .map_err(|e| bad(name, format!("corrupt gzip: {e}")))?;
    Ok(out)
}

fn verify_update(
    iso: &mut Iso,
    key: Option<&PublicKey>,
    target: &'static Target,
    report: &mut PackReport,
) -> Result<(), Error> {
    report.formats.push("update");
    let update_text = iso.text("update.xml")?;
    let update = UpdateXml::parse(&update_text)?;
    report.name.clone_from(&update.name_label);
    report.version.clone_from(&update.version);
    // repomd.xml and the files it lists.
    let repomd_text = iso.text("repodata/repomd.xml")?;
    let repomd = parse_xml("repodata/repomd.xml", &repomd_text)?;
    let mut data: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for d in repomd.all("data") {
        let kind = d.attr("type").unwrap_or_default().to_owned();
        let what = format!("repomd.xml data {kind:?}");
        let href = d
            .first("location")
            .and_then(|l| l.attr("href"))
            .ok_or_else(|| bad(&what, "no location"))?
            .to_owned();
        let (sha, size) = recorded(d, &what)?;
        let bytes = iso.read(&href)?;
        let actual = xspack_io::Sha256Digest::of_bytes(&bytes).to_string();
        if actual != sha || bytes.len() as u64 != size {
            return Err(bad(
                &href,
                format!(
                    "sha256 {actual} / size {} differ from repomd.xml's {sha} / {size}",
                    bytes.len()
                ),
            ));
        }
        let open = if bytes.starts_with(&[0x1f, 0x8b]) { gunzip(&href, &bytes)? } else { bytes };
        if let Some(oc) = d.first("open-checksum") {
            let actual = xspack_io::Sha256Digest::of_bytes(&open).to_string();
            if actual != oc.text.trim() {
                return Err(bad(
                    &href,
                    format!("open-checksum {actual} differs from repomd.xml's {}", oc.text.trim()),
                ));
            }
        }
        data.insert(kind, open);
    }
    for required in ["primary", "filelists"] {
        if !data.contains_key(required) {
            return Err(bad("repodata/repomd.xml", format!("lists no {required}")));
        }
    }
    let group = data
        .get("group")
        .or_else(|| data.get("group_gz"))
        .ok_or_else(|| bad("repodata/repomd.xml", "lists no group file (the `update` group)"))?;
    let comps = parse_xml("comps", &String::from_utf8_lossy(group))?;
    let update_rpm = format!("update-{}", update.name_label);
    let in_group = comps
        .all("group")
        .find(|g| g.first("id").is_some_and(|i| i.text.trim() == "update"))
        .ok_or_else(|| bad("comps", "has no group with id `update` (xapi installs @update)"))?
        .first("packagelist")
        .is_some_and(|l| l.all("packagereq").any(|p| p.text.trim() == update_rpm));
    if !in_group {
        return Err(bad("comps", format!("group `update` does not list {update_rpm}")));
    }
    // Every package of primary: present, with its sha256 and size.
    let primary = parse_xml("primary", &String::from_utf8_lossy(&data["primary"]))?;
    let mut names = Vec::new();
    for p in primary.all("package") {
        let name = p.first("name").map(|n| n.text.trim().to_owned()).unwrap_or_default();
        let href = p
            .first("location")
            .and_then(|l| l.attr("href"))
            .ok_or_else(|| bad("primary", format!("{name}: no location")))?
            .to_owned();
        let (sha, size) = recorded(p, &format!("primary: {name}"))?;
        let header = iso.rpm(&href)?;
        target.check_rpm(&href, &header).map_err(|e| Error::Rpm(Box::new(e)))?;
        let (actual, actual_size) = (header.sha256.to_string(), header.package_size);
        if actual != sha || actual_size != size {
            return Err(bad(
                &href,
                format!(
                    "sha256 {actual} / size {actual_size} differ from primary's {sha} / {size}"
                ),
            ));
        }
        report.rpms.push(href);
        names.push(name);
    }
    for needed in std::iter::once(update_rpm.clone())
        .chain((!update.control.is_empty()).then(|| update.control.clone()))
    {
        if !names.contains(&needed) {
            return Err(bad("primary", format!("{needed} is not in the repository")));
        }
    }
    report.checked.push(format!(
        "update.xml rules, repodata, sha256 of every package, RPMs for {}",
        target.id
    ));
    verify_signatures(iso, key, &update, report)
}

/// Detached signatures on update.xml and repomd.xml, and RPM header signatures when the pack
/// names a key.
fn verify_signatures(
    iso: &mut Iso,
    key: Option<&PublicKey>,
    update: &UpdateXml,
    report: &mut PackReport,
) -> Result<(), Error> {
    let key_owned;
    let key = match key {
        Some(k) => k,
        None if !update.key.is_empty() && iso.has(&update.key) => {
            let text = iso.text(&update.key.clone())?;
            key_owned = PublicKey::from_armored(&text, &update.key)
                .map_err(|e| bad(&update.key, e.to_string()))?;
            report.warnings.push(format!("signatures checked against the key the ISO carries ({}); pass --key to check who signed it", update.key));
            &key_owned
        }
        None => return Err(bad("update.xml", "no --key given and the ISO carries no key file")),
    };
    for signed in ["update.xml", "repodata/repomd.xml"] {
        let sig_name = format!("{signed}.asc");
        if !iso.has(&sig_name) {
            return Err(bad(signed, "is not signed (xapi refuses unsigned packs)"));
        }
        let sig = iso.text(&sig_name)?;
        let content = iso.read(signed)?;
        xspack_rpmrepo::verify_detached(key, content.as_slice(), &sig, Utf8Path::new(signed))
            .map_err(|e| bad(&sig_name, e.to_string()))?;
    }
    let mut checked = format!("signatures on update.xml and repomd.xml by {}", key.info().key_id);
    if !update.key.is_empty() {
        let tmp = tempfile::tempdir().map_err(|e| {
            Error::Io(xspack_io::IoError::new("creating a temporary directory", "tmp", e))
        })?;
        let dir = Utf8Path::from_path(tmp.path()).ok_or_else(|| bad("tmp", "not UTF-8"))?;
        for href in report.rpms.clone() {
            let path = iso.extract(&href, dir)?;
            xspack_rpmrepo::verify_rpm_signature(&path, key)
                .map_err(|e| bad(&href, format!("RPM signature: {e}")))?;
            let _ = std::fs::remove_file(path);
        }
        checked.push_str(" and every RPM header");
    }
    report.checked.push(checked);
    Ok(())
}
