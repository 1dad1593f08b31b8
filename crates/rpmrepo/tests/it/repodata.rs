//! Our repodata is read by dnf offline, has the same package records as `createrepo_c`'s for
//! the same RPMs, and is reproducible.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;

use camino::{Utf8Path, Utf8PathBuf};
use quick_xml::Reader;
use quick_xml::events::Event;
use xspack_rpmrepo::{
    Comparison, Dependency, Error, RepoGroup, RepodataOptions, RpmBuilder, write_repodata,
};

use crate::{EPOCH, demo_builder, rpmbuild_probe, run, signing_key, tempdir, write_rpm};

/// One package's records in the three metadata files, in a canonical text form: one line per
/// start/end tag (attributes raw, in document order) and per non-blank text, entities kept as
/// written, so escaping is compared too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `location href`.
    pub location: String,
    /// The `<package>` element of primary.xml.
    pub primary: Vec<String>,
    /// The `<package>` element of filelists.xml.
    pub filelists: Vec<String>,
    /// The `<package>` element of other.xml.
    pub other: Vec<String>,
}

fn gunzip(path: &Utf8Path) -> String {
    let mut text = String::new();
    flate2::read::GzDecoder::new(fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
    text
}

fn attrs(e: &quick_xml::events::BytesStart<'_>) -> String {
    e.attributes()
        .map(|a| {
            let a = a.unwrap();
            format!(" {}=\"{}\"", a.key.as_ref(), a.value)
        })
        .collect::<Vec<_>>()
        .concat()
}

/// Splits a metadata document into its `<package>` elements, canonicalised.
fn packages(xml: &str) -> Vec<Vec<String>> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    let mut current: Option<Vec<String>> = None;
    loop {
        let event = reader.read_event().unwrap();
        let line = match &event {
            Event::Start(e) if e.name().as_ref() == "package" => {
                current = Some(Vec::new());
                format!("<package{}>", attrs(e))
            }
            Event::Start(e) => format!("<{}{}>", e.name().as_ref(), attrs(e)),
            Event::Empty(e) => format!("<{}{}/>", e.name().as_ref(), attrs(e)),
            Event::End(e) => format!("</{}>", e.name().as_ref()),
            Event::Text(t) => t.as_ref().to_owned(),
            Event::GeneralRef(r) => format!("&{};", r.as_ref()),
            Event::Eof => break,
            _ => continue,
        };
        if let Some(lines) = &mut current {
            if !line.trim().is_empty() {
                lines.push(line.clone());
            }
            if line == "</package>" {
                out.push(current.take().unwrap());
            }
        }
    }
    out
}

fn attr_of(lines: &[String], prefix: &str, attr: &str) -> String {
    let line = lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("{prefix} missing: {lines:?}"));
    let start = line.find(&format!(" {attr}=\"")).unwrap() + attr.len() + 3;
    line[start..].split('"').next().unwrap().to_owned()
}

/// The attributes of element `name` in a primary record, as `a=v b=v`.
pub fn primary_record(lines: &[String], name: &str) -> String {
    let line = lines.iter().find(|l| l.starts_with(&format!("<{name} "))).unwrap();
    line.trim_start_matches(&format!("<{name} ")).trim_end_matches("/>").replace('"', "")
}

/// Reads the records of the repodata in `repo` (via its repomd.xml), with `<time file>` masked
/// (`createrepo_c` writes the file's mtime there, we write the source date).
pub fn records(repo: &Utf8Path) -> Vec<Record> {
    let repomd = fs::read_to_string(repo.join("repodata/repomd.xml")).unwrap();
    let mut locations = BTreeMap::new();
    for data in repomd.split("<data type=\"").skip(1) {
        let kind = data.split('"').next().unwrap().to_owned();
        let href =
            data.split("<location href=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
        locations.insert(kind, repo.join(href));
    }
    let primary = packages(&gunzip(&locations["primary"]));
    let filelists = packages(&gunzip(&locations["filelists"]));
    let other = packages(&gunzip(&locations["other"]));
    let mut out: Vec<Record> = primary
        .into_iter()
        .map(|mut p| {
            let location = attr_of(&p, "<location ", "href");
            // The text after `<checksum pkgid="YES">` is the package id.
            let at = p.iter().position(|l| l.starts_with("<checksum ")).unwrap();
            let pkgid = p[at + 1].clone();
            for line in &mut p {
                if line.starts_with("<time ") {
                    let build = attr_of(std::slice::from_ref(line), "<time ", "build");
                    *line = format!("<time file=\"*\" build=\"{build}\"/>");
                }
            }
            let find = |lists: &[Vec<String>]| {
                lists.iter().find(|l| attr_of(l, "<package ", "pkgid") == pkgid).cloned().unwrap()
            };
            Record { location, filelists: find(&filelists), other: find(&other), primary: p }
        })
        .collect();
    out.sort_by(|a, b| a.location.cmp(&b.location));
    out
}

/// Runs `createrepo_c --no-database` on `repo` with output in a sibling directory and returns
/// its records.
pub fn createrepo_records(repo: &Utf8Path) -> Vec<Record> {
    let out = Utf8PathBuf::from(format!("{repo}.createrepo"));
    fs::create_dir_all(&out).unwrap();
    run(
        "createrepo_c",
        &[
            "--quiet",
            "--no-database",
            "--simple-md-filenames",
            "--outputdir",
            out.as_str(),
            repo.as_str(),
        ],
    );
    let fake = Utf8PathBuf::from(format!("{repo}.createrepo-view"));
    fs::create_dir_all(&fake).unwrap();
    let _ = fs::remove_file(fake.join("repodata"));
    std::os::unix::fs::symlink(out.join("repodata"), fake.join("repodata")).unwrap();
    records(&fake)
}

/// Runs dnf offline on `repo` with a throw-away install root.
fn dnf(repo: &Utf8Path, root: &Utf8Path, args: &[&str]) -> String {
    let from = format!("r,file://{repo}");
    let mut all = vec![
        "-q",
        "--disablerepo=*",
        "--repofrompath",
        from.as_str(),
        "--enablerepo=r",
        "--setopt=r.gpgcheck=0",
        "--installroot",
        root.as_str(),
        "--releasever=8",
    ];
    all.extend_from_slice(args);
    run("dnf", &all)
}

/// A repository with the demo driver (signed), its update- package, and rpmbuild's probe.
fn sample_repo(dir: &Utf8Path) -> Utf8PathBuf {
    let repo = dir.join("repo");
    let packages = repo.join("Packages");
    write_rpm(&packages, &demo_builder(), Some(&signing_key()));
    let update = RpmBuilder::new("update-demo", "1.2.3", "1")
        .summary("Update demo")
        .source_date(EPOCH)
        .file_from_bytes(b"<update/>\n".to_vec(), "/var/update/applied/demo", 0o644)
        .requires(Dependency::versioned("demo-driver", Comparison::Ge, "1.2.3-4"));
    write_rpm(&packages, &update, Some(&signing_key()));
    fs::copy(rpmbuild_probe(dir), packages.join("probe-3.0-1.el7.noarch.rpm")).unwrap();
    repo
}

const LOCATIONS: [&str; 3] = [
    "Packages/update-demo-1.2.3-1.noarch.rpm",
    "Packages/demo-driver-1.2.3-4.noarch.rpm",
    "Packages/probe-3.0-1.el7.noarch.rpm",
];

fn options(simple: bool) -> RepodataOptions {
    let mut opts = RepodataOptions::new(EPOCH);
    opts.simple_names = simple;
    opts.groups = vec![
        RepoGroup::new("update", "demo", vec!["update-demo".into()]),
        RepoGroup::new("drivers", "demo", vec!["update-demo".into()]),
    ];
    opts
}

#[test]
fn our_records_equal_createrepo_c_records() {
    let (_t, dir) = tempdir();
    let repo = sample_repo(&dir);
    let summary = write_repodata(&repo, &LOCATIONS, &options(false)).unwrap();
    assert_eq!(summary.packages.len(), 3);
    let ours = records(&repo);
    let theirs = createrepo_records(&repo);
    assert_eq!(ours.len(), theirs.len());
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o.location, t.location);
        assert_eq!(o.primary, t.primary, "primary record of {}", o.location);
        assert_eq!(o.filelists, t.filelists, "filelists record of {}", o.location);
        assert_eq!(o.other, t.other, "other record of {}", o.location);
    }
}

#[test]
fn repomd_lists_what_createrepo_c_lists() {
    let (_t, dir) = tempdir();
    let repo = sample_repo(&dir);
    let summary = write_repodata(&repo, &LOCATIONS, &options(false)).unwrap();
    let repomd = fs::read_to_string(&summary.repomd_path).unwrap();
    assert!(repomd.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<repomd xmlns=\"http://linux.duke.edu/metadata/repo\" xmlns:rpm=\"http://linux.duke.edu/metadata/rpm\">\n  <revision>1700000000</revision>\n"), "{repomd}");
    let kinds: Vec<&str> = summary.files.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, ["primary", "filelists", "other", "group", "group_gz"]);
    for f in &summary.files {
        let path = repo.join(&f.location);
        let sha = run("sha256sum", &[path.as_str()]);
        assert_eq!(
            sha.split_whitespace().next().unwrap(),
            f.checksum.to_string(),
            "{}",
            f.location
        );
        assert_eq!(fs::metadata(&path).unwrap().len(), f.size);
        let name = f.location.trim_start_matches("repodata/");
        assert!(name.starts_with(&format!("{}-", f.checksum)), "{name}");
        assert_eq!(f.open_checksum.is_some(), f.kind != "group");
    }
    // createrepo_c given our groups.xml produces the same structure: element names and the
    // set of data types, in the same order.
    let out = dir.join("cr");
    fs::create_dir_all(&out).unwrap();
    let groups = repo.join(&summary.files[3].location);
    run(
        "createrepo_c",
        &[
            "--quiet",
            "--no-database",
            "-g",
            groups.as_str(),
            "--outputdir",
            out.as_str(),
            repo.as_str(),
        ],
    );
    let theirs = fs::read_to_string(out.join("repodata/repomd.xml")).unwrap();
    let shape = |s: &str| -> Vec<String> {
        s.lines().map(|l| l.trim().split(['>', ' ']).next().unwrap().to_owned()).collect()
    };
    assert_eq!(shape(&repomd), shape(&theirs));
    let data_types = |s: &str| -> Vec<String> {
        s.split("<data type=\"").skip(1).map(|d| d.split('"').next().unwrap().to_owned()).collect()
    };
    assert_eq!(data_types(&repomd), data_types(&theirs));
}

#[test]
fn dnf_reads_our_repodata_offline() {
    let (_t, dir) = tempdir();
    let repo = sample_repo(&dir);
    write_repodata(&repo, &LOCATIONS, &options(false)).unwrap();
    let root = dir.join("dnfroot");
    let info = dnf(&repo, &root, &["repoquery", "--info", "demo-driver"]);
    for line in [
        "Name         : demo-driver",
        "Version      : 1.2.3",
        "Release      : 4",
        "Architecture : noarch",
        "License      : MIT",
        "Repository   : r",
    ] {
        assert!(info.contains(line), "{line:?} missing:\n{info}");
    }
    assert!(info.contains("Summary      : Demo <driver> & \"tools\""), "{info}");
    let requires = dnf(&repo, &root, &["repoquery", "--requires", "update-demo"]);
    assert!(requires.lines().any(|l| l == "demo-driver >= 1.2.3-4"), "{requires}");
    let files = dnf(&repo, &root, &["repoquery", "-l", "demo-driver"]);
    assert!(files.lines().any(|l| l == "/usr/share/demo/data.bin"), "{files}");
    let who = dnf(&repo, &root, &["repoquery", "--whatprovides", "/usr/bin/demo-tool"]);
    assert!(who.contains("demo-driver-0:1.2.3-4.noarch"), "{who}");
    let probe =
        dnf(&repo, &root, &["repoquery", "--qf", "%{epoch}:%{version}-%{release}", "probe"]);
    assert_eq!(probe.trim(), "2:3.0-1.el7");
    for group in ["update", "drivers"] {
        let group_info = dnf(&repo, &root, &["group", "info", group]);
        assert!(group_info.contains("Mandatory Packages:"), "{group_info}");
        assert!(group_info.lines().any(|l| l.trim() == "update-demo"), "{group_info}");
    }
}

#[test]
fn repodata_is_reproducible_and_simple_names_work() {
    let (_t, dir) = tempdir();
    let repo = sample_repo(&dir);
    let copy = dir.join("copy");
    fs::create_dir_all(copy.join("Packages")).unwrap();
    for loc in LOCATIONS {
        fs::copy(repo.join(loc), copy.join(loc)).unwrap();
    }
    let a = write_repodata(&repo, &LOCATIONS, &options(false)).unwrap();
    let mut reversed = LOCATIONS;
    reversed.reverse();
    let b = write_repodata(&copy, &reversed, &options(false)).unwrap();
    assert_eq!(a.files, b.files);
    for f in &a.files {
        assert_eq!(
            fs::read(repo.join(&f.location)).unwrap(),
            fs::read(copy.join(&f.location)).unwrap()
        );
    }
    assert_eq!(fs::read(&a.repomd_path).unwrap(), fs::read(&b.repomd_path).unwrap());

    // Writing again needs `replace`; simple names then replace the hashed ones atomically.
    let err = write_repodata(&repo, &LOCATIONS, &options(true)).unwrap_err();
    assert!(matches!(err, Error::Output(_)), "{err}");
    let mut opts = options(true);
    opts.replace = true;
    let simple = write_repodata(&repo, &LOCATIONS, &opts).unwrap();
    let mut names: Vec<String> = fs::read_dir(repo.join("repodata"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "filelists.xml.gz",
            "groups.xml",
            "groups.xml.gz",
            "other.xml.gz",
            "primary.xml.gz",
            "repomd.xml"
        ]
    );
    assert_eq!(simple.files[0].location, "repodata/primary.xml.gz");
    assert_eq!(simple.files[0].checksum, a.files[0].checksum);
    // dnf reads the simple layout too.
    let list = dnf(&repo, &dir.join("dnfroot"), &["repoquery", "--qf", "%{name}"]);
    assert_eq!(list.lines().collect::<Vec<_>>(), ["demo-driver", "probe", "update-demo"]);
}

#[test]
fn bad_inputs_are_refused() {
    let (_t, dir) = tempdir();
    let repo = sample_repo(&dir);
    fs::copy(repo.join(LOCATIONS[1]), repo.join("Packages/copy.rpm")).unwrap();
    let err =
        write_repodata(&repo, &[LOCATIONS[1], "Packages/copy.rpm"], &RepodataOptions::new(EPOCH))
            .unwrap_err();
    assert!(matches!(err, Error::DuplicateNevra { .. }), "{err}");
    assert!(err.to_string().contains("demo-driver-1.2.3-4.noarch"), "{err}");

    for bad in ["../x.rpm", "/abs.rpm", "repodata/x.rpm"] {
        let err = write_repodata(&repo, &[bad], &RepodataOptions::new(EPOCH)).unwrap_err();
        assert!(matches!(err, Error::InvalidRepoPath { .. }), "{err}");
    }
    let err = write_repodata(&repo, &[LOCATIONS[1], LOCATIONS[1]], &RepodataOptions::new(EPOCH))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRepoPath { reason: "listed twice", .. }), "{err}");

    let mut opts = RepodataOptions::new(EPOCH);
    opts.groups = vec![RepoGroup::new("update", "demo", vec!["update-missing".into()])];
    let err = write_repodata(&repo, &LOCATIONS, &opts).unwrap_err();
    assert!(matches!(err, Error::InvalidGroup { .. }), "{err}");

    fs::write(repo.join("Packages/not.rpm"), b"not an rpm").unwrap();
    let err =
        write_repodata(&repo, &["Packages/not.rpm"], &RepodataOptions::new(EPOCH)).unwrap_err();
    assert!(matches!(err, Error::NotRpm { .. }), "{err}");
    // Nothing was written by the failed runs.
    assert!(!repo.join("repodata").exists());
}
