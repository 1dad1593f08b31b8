//! `primary.xml`: the yum "common" metadata (namespace `http://linux.duke.edu/metadata/common`
//! with `rpm:` = `http://linux.duke.edu/metadata/rpm`), laid out element by element as
//! `createrepo_c` 0.17 writes it.
//!
//! Dependency lists follow `createrepo_c`'s visible rules (checked against its output in the
//! crate's tests): `rpmlib(...)` requirements are dropped, as are requirements on the package's
//! own primary files and requirements identical to one of its provides; `pre="1"` marks
//! requirements needed by `%pre`/`%post`; an entry equal to the last one written for the same
//! name is skipped. Only "primary" files are listed (see [`is_primary_file`]).

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};

use crate::deps::{DepFlags, Dependency};
use crate::header::{FileKind, RpmHeader};
use crate::repodata::RepoPackage;
use crate::repodata::xml::{attr, text};

/// Namespace of `primary.xml`'s root element.
pub const NS_COMMON: &str = "http://linux.duke.edu/metadata/common";
/// Namespace of the `rpm:` elements.
pub const NS_RPM: &str = "http://linux.duke.edu/metadata/rpm";

/// Whether `path` belongs in `primary.xml`'s file list: files under `/etc/`, anything with
/// `bin/` in its path, and `/usr/lib/sendmail` (yum's rule for file dependencies resolvable
/// without `filelists.xml`).
pub fn is_primary_file(path: &str) -> bool {
    path.starts_with("/etc/") || path.contains("bin/") || path == "/usr/lib/sendmail"
}

/// Writes the `<version>` element shared by the three metadata files.
pub(crate) fn write_version(out: &mut impl Write, h: &RpmHeader) -> io::Result<()> {
    writeln!(
        out,
        "  <version epoch=\"{}\" ver=\"{}\" rel=\"{}\"/>",
        h.epoch.unwrap_or(0),
        attr(&h.version),
        attr(&h.release)
    )
}

/// Opens a package of `filelists.xml` or `other.xml`: `<package pkgid name arch>` and its
/// `<version>`.
pub(crate) fn write_package_open(out: &mut impl Write, h: &RpmHeader) -> io::Result<()> {
    writeln!(
        out,
        "<package pkgid=\"{}\" name=\"{}\" arch=\"{}\">",
        h.sha256,
        attr(&h.name),
        attr(&h.arch)
    )?;
    write_version(out, h)
}

/// The file type attribute as filelists and primary write it.
pub(crate) fn file_type_attr(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "",
        FileKind::Dir => " type=\"dir\"",
        FileKind::Ghost => " type=\"ghost\"",
    }
}

/// One `<rpm:entry>` to write.
struct Entry<'a> {
    dep: &'a Dependency,
    pre: bool,
}

/// Key identifying an entry for de-duplication: sense bits, version, pre.
type EntryKey<'a> = (u32, &'a str, bool);

fn dedup<'a>(entries: impl Iterator<Item = Entry<'a>>) -> Vec<Entry<'a>> {
    let mut last: HashMap<&str, EntryKey<'a>> = HashMap::new();
    let mut out = Vec::new();
    for e in entries {
        let key = (e.dep.flags & DepFlags::SENSE_MASK, e.dep.version.as_str(), e.pre);
        if last.get(e.dep.name.as_str()) == Some(&key) {
            continue;
        }
        last.insert(&e.dep.name, key);
        out.push(e);
    }
    out
}

fn plain(deps: &[Dependency]) -> Vec<Entry<'_>> {
    dedup(deps.iter().map(|dep| Entry { dep, pre: false }))
}

fn requires(h: &RpmHeader) -> Vec<Entry<'_>> {
    let own_files: HashSet<&str> =
        h.files.iter().map(|f| f.path.as_str()).filter(|p| is_primary_file(p)).collect();
    let provided: HashSet<(&str, u32, &str)> = h
        .provides
        .iter()
        .map(|p| (p.name.as_str(), p.flags & DepFlags::SENSE_MASK, p.version.as_str()))
        .collect();
    dedup(
        h.requires
            .iter()
            .filter(|d| !d.is_rpmlib())
            .filter(|d| !own_files.contains(d.name.as_str()))
            .filter(|d| {
                !provided.contains(&(
                    d.name.as_str(),
                    d.flags & DepFlags::SENSE_MASK,
                    d.version.as_str(),
                ))
            })
            .map(|dep| Entry { dep, pre: dep.is_pre() }),
    )
}

fn write_entries(out: &mut impl Write, tag: &str, entries: &[Entry<'_>]) -> io::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    writeln!(out, "    <rpm:{tag}>")?;
    for Entry { dep, pre } in entries {
        write!(out, "      <rpm:entry name=\"{}\"", attr(&dep.name))?;
        if let (Some(cmp), Some(evr)) = (dep.comparison(), dep.evr()) {
            write!(
                out,
                " flags=\"{}\" epoch=\"{}\" ver=\"{}\"",
                cmp.repodata_name(),
                attr(&evr.epoch),
                attr(&evr.version)
            )?;
            if let Some(rel) = &evr.release {
                write!(out, " rel=\"{}\"", attr(rel))?;
            }
        }
        if *pre {
            write!(out, " pre=\"1\"")?;
        }
        writeln!(out, "/>")?;
    }
    writeln!(out, "    </rpm:{tag}>")
}

fn write_package(out: &mut impl Write, p: &RepoPackage) -> io::Result<()> {
    let h = &p.header;
    writeln!(out, "<package type=\"rpm\">")?;
    writeln!(out, "  <name>{}</name>", text(&h.name))?;
    writeln!(out, "  <arch>{}</arch>", text(&h.arch))?;
    write_version(out, h)?;
    writeln!(out, "  <checksum type=\"sha256\" pkgid=\"YES\">{}</checksum>", h.sha256)?;
    writeln!(out, "  <summary>{}</summary>", text(&h.summary))?;
    writeln!(out, "  <description>{}</description>", text(&h.description))?;
    writeln!(out, "  <packager>{}</packager>", text(&h.packager))?;
    writeln!(out, "  <url>{}</url>", text(&h.url))?;
    writeln!(out, "  <time file=\"{}\" build=\"{}\"/>", p.file_time, h.build_time)?;
    writeln!(
        out,
        "  <size package=\"{}\" installed=\"{}\" archive=\"{}\"/>",
        h.package_size, h.installed_size, h.archive_size
    )?;
    writeln!(out, "  <location href=\"{}\"/>", attr(&p.location))?;
    writeln!(out, "  <format>")?;
    writeln!(out, "    <rpm:license>{}</rpm:license>", text(&h.license))?;
    writeln!(out, "    <rpm:vendor>{}</rpm:vendor>", text(&h.vendor))?;
    writeln!(out, "    <rpm:group>{}</rpm:group>", text(&h.group))?;
    writeln!(out, "    <rpm:buildhost>{}</rpm:buildhost>", text(&h.build_host))?;
    writeln!(out, "    <rpm:sourcerpm>{}</rpm:sourcerpm>", text(&h.source_rpm))?;
    writeln!(
        out,
        "    <rpm:header-range start=\"{}\" end=\"{}\"/>",
        h.header_range.start, h.header_range.end
    )?;
    write_entries(out, "provides", &plain(&h.provides))?;
    write_entries(out, "requires", &requires(h))?;
    write_entries(out, "conflicts", &plain(&h.conflicts))?;
    write_entries(out, "obsoletes", &plain(&h.obsoletes))?;
    write_entries(out, "suggests", &plain(&h.suggests))?;
    write_entries(out, "enhances", &plain(&h.enhances))?;
    write_entries(out, "recommends", &plain(&h.recommends))?;
    write_entries(out, "supplements", &plain(&h.supplements))?;
    for f in h.files.iter().filter(|f| is_primary_file(&f.path)) {
        writeln!(out, "    <file{}>{}</file>", file_type_attr(f.kind), text(&f.path))?;
    }
    writeln!(out, "  </format>")?;
    writeln!(out, "</package>")
}

/// Writes uncompressed `primary.xml` for `packages`, in the given order, to `out`.
pub fn write_primary<W: Write>(mut out: W, packages: &[RepoPackage]) -> io::Result<W> {
    writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    writeln!(
        out,
        "<metadata xmlns=\"{NS_COMMON}\" xmlns:rpm=\"{NS_RPM}\" packages=\"{}\">",
        packages.len()
    )?;
    for p in packages {
        write_package(&mut out, p)?;
    }
    // createrepo_c ends the document without a newline.
    write!(out, "</metadata>")?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_files() {
        for yes in ["/etc/x", "/usr/bin/x", "/sbin/x", "/opt/sbin/q", "/usr/lib/sendmail"] {
            assert!(is_primary_file(yes), "{yes}");
        }
        for no in ["/etc", "/opt/sbin", "/opt/bin-x/bin", "/usr/lib/sendmail2", "/var/log/x"] {
            assert!(!is_primary_file(no), "{no}");
        }
    }

    #[test]
    fn dedup_compares_with_the_last_entry_of_the_same_name() {
        let sh = |flags| Dependency::any("/bin/sh").with_flags(flags);
        let deps = [
            sh(DepFlags::INTERP | DepFlags::POSTTRANS),
            sh(DepFlags::INTERP | DepFlags::PRETRANS),
            sh(DepFlags::INTERP | DepFlags::SCRIPT_PRE),
            sh(DepFlags::INTERP | DepFlags::SCRIPT_PREUN),
        ];
        let entries = dedup(deps.iter().map(|dep| Entry { dep, pre: dep.is_pre() }));
        let pres: Vec<bool> = entries.iter().map(|e| e.pre).collect();
        assert_eq!(pres, [false, true, false]);
    }
}
