//! The main header: package metadata, the file list, dependencies, scriptlets and payload
//! facts, with the tags rpm 4.11.3's rpmbuild writes (`build/pack.c`: `writeRPM`,
//! `rpmlibNeedsFeature`; `build/files.c`: `genCpioListAndHeader`, `compressFilelist`;
//! `build/reqprov.c`: `addReqProv`; `build/parseScript.c`), tag numbers and types from
//! `lib/rpmtag.h`:
//!
//! - file paths as `DIRNAMES`/`BASENAMES`/`DIRINDEXES` (`rpmlib(CompressedFileNames)`),
//!   SHA-256 file digests (`FILEDIGESTALGO` 8, `rpmlib(FileDigests)`), `./` payload names
//!   (`rpmlib(PayloadFilesHavePrefix)`), `rpmlib(PayloadIsXz)` for xz payloads and
//!   `rpmlib(RichDependencies)` for boolean dependencies ([`rpmlib_features`], which the
//!   package's target checks first);
//! - 32-bit `SIZE`/`FILESIZES` only: the 64-bit `LONGSIZE`/`LONGFILESIZES` need
//!   `rpmlib(LargeFiles)` and rpm 4.12's stripped cpio headers, which this writer does not
//!   write, so `super::write_package` refuses files of 4 GiB and more for every target;
//! - the self-provides `name = [epoch:]version-release` (plus `name(isa)` for an arch) and,
//!   with `%config` files, `config(name)` provided and required; scriptlet interpreters
//!   required with `RPMSENSE_INTERP` and the scriptlet's phase;
//! - the payload digests newer rpm checks (`PAYLOADDIGEST` 5092 over the compressed payload,
//!   `PAYLOADDIGESTALT` 5097 over the cpio archive, algorithm 8): they are not known until
//!   the payload is written, so they are written as zeros and patched in place
//!   ([`PAYLOAD_DIGEST`], [`PAYLOAD_DIGEST_ALT`]): same length, same header size.

use super::blob::{Header, Value};
use super::payload::{Item, Scan};
use crate::build::{Compression, RpmBuilder, ScriptKind, Source};
use crate::deps::{DepFlags, Dependency};

pub(crate) const HEADERIMMUTABLE: u32 = 63;
const HEADERI18NTABLE: u32 = 100;
const NAME: u32 = 1000;
const VERSION: u32 = 1001;
const RELEASE: u32 = 1002;
const EPOCH: u32 = 1003;
const SUMMARY: u32 = 1004;
const DESCRIPTION: u32 = 1005;
const BUILDTIME: u32 = 1006;
const BUILDHOST: u32 = 1007;
const SIZE: u32 = 1009;
const VENDOR: u32 = 1011;
const LICENSE: u32 = 1014;
const PACKAGER: u32 = 1015;
const GROUP: u32 = 1016;
const URL: u32 = 1020;
const OS: u32 = 1021;
const ARCH: u32 = 1022;
const FILESIZES: u32 = 1028;
const FILEMODES: u32 = 1030;
const FILERDEVS: u32 = 1033;
const FILEMTIMES: u32 = 1034;
const FILEDIGESTS: u32 = 1035;
const FILELINKTOS: u32 = 1036;
const FILEFLAGS: u32 = 1037;
const FILEUSERNAME: u32 = 1039;
const FILEGROUPNAME: u32 = 1040;
const SOURCERPM: u32 = 1044;
const FILEVERIFYFLAGS: u32 = 1045;
const PROVIDENAME: u32 = 1047;
const REQUIREFLAGS: u32 = 1048;
const REQUIRENAME: u32 = 1049;
const REQUIREVERSION: u32 = 1050;
const CONFLICTFLAGS: u32 = 1053;
const CONFLICTNAME: u32 = 1054;
const CONFLICTVERSION: u32 = 1055;
const RPMVERSION: u32 = 1064;
const OBSOLETENAME: u32 = 1090;
const FILEDEVICES: u32 = 1095;
const FILEINODES: u32 = 1096;
const FILELANGS: u32 = 1097;
const PROVIDEFLAGS: u32 = 1112;
const PROVIDEVERSION: u32 = 1113;
const OBSOLETEFLAGS: u32 = 1114;
const OBSOLETEVERSION: u32 = 1115;
const DIRINDEXES: u32 = 1116;
const BASENAMES: u32 = 1117;
const DIRNAMES: u32 = 1118;
const PAYLOADFORMAT: u32 = 1124;
const PAYLOADCOMPRESSOR: u32 = 1125;
const PAYLOADFLAGS: u32 = 1126;
const FILEDIGESTALGO: u32 = 5011;
const ENCODING: u32 = 5062;
/// `RPMTAG_PAYLOADDIGEST` (rpm 4.14+ checks it; older rpm ignores it).
pub(crate) const PAYLOAD_DIGEST: u32 = 5092;
const PAYLOAD_DIGEST_ALGO: u32 = 5093;
/// `RPMTAG_PAYLOADDIGESTALT`: digest of the uncompressed archive (rpm 4.16+).
pub(crate) const PAYLOAD_DIGEST_ALT: u32 = 5097;

/// `PGPHASHALGO_SHA256`.
const SHA256_ALGO: u32 = 8;
/// `RPMFILE_*` flags.
const FILE_CONFIG: u32 = 1;
const FILE_DOC: u32 = 1 << 1;
const FILE_NOREPLACE: u32 = 1 << 4;
const FILE_GHOST: u32 = 1 << 6;
/// `RPMVERIFY_ALL`, and what `%ghost` leaves out (digest, size, link target, mtime).
const VERIFY_ALL: u32 = u32::MAX;
const VERIFY_NOT_FOR_GHOSTS: u32 = 1 | (1 << 1) | (1 << 2) | (1 << 5);
/// `RPMSENSE_CONFIG`.
const SENSE_CONFIG: u32 = 1 << 28;
/// The placeholder of a SHA-256 hex digest.
pub(crate) const DIGEST_PLACEHOLDER: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

/// `%{_isa}` of an architecture, for the `name(isa)` self-provide.
fn isa(arch: &str) -> Option<&'static str> {
    match arch {
        "x86_64" | "amd64" | "ia32e" => Some("x86-64"),
        "i386" | "i486" | "i586" | "i686" | "athlon" => Some("x86-32"),
        "aarch64" => Some("aarch-64"),
        "ppc64" | "ppc64le" => Some("ppc-64"),
        "s390x" => Some("s390-64"),
        _ => None,
    }
}

/// The `rpmlib(...)` features package `b` needs, as rpmbuild adds them
/// (`build/pack.c`, `rpmlibNeedsFeature` callers; versions from `lib/rpmds.c`): each with why.
pub(crate) fn rpmlib_features(b: &RpmBuilder) -> Vec<(&'static str, &'static str, String)> {
    let mut features = vec![
        ("CompressedFileNames", "3.0.4-1", "its file list".to_owned()),
        ("FileDigests", "4.6.0-1", "its SHA-256 file digests".to_owned()),
        ("PayloadFilesHavePrefix", "4.0-1", "its payload".to_owned()),
    ];
    if b.compression == Compression::Xz {
        features.push(("PayloadIsXz", "5.2-1", "its xz payload".to_owned()));
    }
    let deps = b.requires.iter().chain(&b.provides).chain(&b.conflicts).chain(&b.obsoletes);
    if let Some(dep) = deps.clone().find(|d| d.is_rich()) {
        features.push((
            "RichDependencies",
            "4.12.0-1",
            format!("the boolean dependency {:?}", dep.to_string()),
        ));
    }
    features
}

fn rpmlib(feature: &str, version: &str) -> Dependency {
    Dependency {
        name: format!("rpmlib({feature})"),
        flags: DepFlags::RPMLIB | DepFlags::LESS | DepFlags::EQUAL,
        version: version.to_owned(),
    }
}

fn sorted(deps: impl IntoIterator<Item = Dependency>) -> Vec<Dependency> {
    let mut v: Vec<Dependency> = deps.into_iter().collect();
    v.sort_by(|a, b| {
        (a.name.as_str(), a.version.as_str(), a.flags).cmp(&(
            b.name.as_str(),
            b.version.as_str(),
            b.flags,
        ))
    });
    v.dedup();
    v
}

fn put_deps(h: &mut Header, tags: [u32; 3], deps: &[Dependency]) {
    let [name, flags, version] = tags;
    h.put(name, Value::StrArray(deps.iter().map(|d| d.name.clone()).collect()));
    h.put(flags, Value::Int32(deps.iter().map(|d| d.flags).collect()));
    h.put(version, Value::StrArray(deps.iter().map(|d| d.version.clone()).collect()));
}

/// The script tag, its interpreter tag and the dependency phase flag of a scriptlet.
fn script_tags(kind: ScriptKind) -> (u32, u32, u32) {
    match kind {
        ScriptKind::Pre => (1023, 1085, DepFlags::SCRIPT_PRE),
        ScriptKind::Post => (1024, 1086, DepFlags::SCRIPT_POST),
        ScriptKind::PreUn => (1025, 1087, DepFlags::SCRIPT_PREUN),
        ScriptKind::PostUn => (1026, 1088, DepFlags::SCRIPT_POSTUN),
        ScriptKind::PostTrans => (1152, 1154, DepFlags::POSTTRANS),
    }
}

fn file_flags(item: &Item<'_>) -> u32 {
    let a = &item.entry.attrs;
    let mut f = 0;
    if a.config {
        f |= FILE_CONFIG;
        if a.noreplace {
            f |= FILE_NOREPLACE;
        }
    }
    if a.doc {
        f |= FILE_DOC;
    }
    if item.is_ghost() {
        f |= FILE_GHOST;
    }
    f
}

/// A path's directory (with its trailing `/`) and base name.
fn split(dest: &str) -> (&str, &str) {
    dest.split_at(dest.rfind('/').map_or(0, |i| i + 1))
}

fn put_files(h: &mut Header, items: &[Item<'_>], mtime: u32) {
    let dirs: Vec<&str> = items
        .iter()
        .map(|i| split(&i.entry.dest).0)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let indexes = items
        .iter()
        .map(|i| {
            let at = dirs.binary_search(&split(&i.entry.dest).0).unwrap_or(0);
            u32::try_from(at).unwrap_or(u32::MAX)
        })
        .collect();
    let base = items.iter().map(|i| split(&i.entry.dest).1.to_owned()).collect();
    let ghost = |i: &Item<'_>| i.is_ghost();
    let each = |f: &dyn Fn(&Item<'_>) -> u32| items.iter().map(f).collect::<Vec<u32>>();
    let strings = |f: &dyn Fn(&Item<'_>) -> String| items.iter().map(f).collect::<Vec<String>>();
    h.put(FILESIZES, Value::Int32(each(&|i| u32::try_from(i.size).unwrap_or(u32::MAX))));
    h.put(FILEMODES, Value::Int16(items.iter().map(|i| (i.mode & 0xffff) as u16).collect()));
    h.put(FILERDEVS, Value::Int16(vec![0; items.len()]));
    h.put(FILEMTIMES, Value::Int32(vec![mtime; items.len()]));
    h.put(FILEDIGESTS, Value::StrArray(strings(&|i| i.digest.clone())));
    h.put(
        FILELINKTOS,
        Value::StrArray(strings(&|i| match &i.entry.source {
            Source::Symlink(t) => t.clone(),
            _ => String::new(),
        })),
    );
    h.put(FILEFLAGS, Value::Int32(each(&file_flags)));
    h.put(FILEUSERNAME, Value::StrArray(strings(&|i| i.entry.attrs.user.clone())));
    h.put(FILEGROUPNAME, Value::StrArray(strings(&|i| i.entry.attrs.group.clone())));
    h.put(
        FILEVERIFYFLAGS,
        Value::Int32(each(&|i| {
            if ghost(i) { VERIFY_ALL & !VERIFY_NOT_FOR_GHOSTS } else { VERIFY_ALL }
        })),
    );
    h.put(FILEDEVICES, Value::Int32(each(&|i| u32::from(!ghost(i)))));
    h.put(
        FILEINODES,
        Value::Int32((1..=items.len()).map(|n| u32::try_from(n).unwrap_or(u32::MAX)).collect()),
    );
    h.put(FILELANGS, Value::StrArray(vec![String::new(); items.len()]));
    h.put(DIRINDEXES, Value::Int32(indexes));
    h.put(BASENAMES, Value::StrArray(base));
    h.put(DIRNAMES, Value::StrArray(dirs.iter().map(|d| (*d).to_owned()).collect()));
}

/// The main header of `b` with the files of `scan`, payload digests as placeholders.
pub(crate) fn main_header(b: &RpmBuilder, scan: &Scan<'_>, build_time: u32) -> Header {
    let mut h = Header::default();
    let s = |v: &str| Value::Str(v.to_owned());
    h.put(HEADERI18NTABLE, Value::StrArray(vec!["C".into()]));
    h.put(NAME, s(&b.name));
    h.put(VERSION, s(&b.version));
    h.put(RELEASE, s(&b.release));
    if let Some(e) = b.epoch {
        h.put(EPOCH, Value::Int32(vec![e]));
    }
    h.put(SUMMARY, Value::I18n(b.summary.clone()));
    h.put(DESCRIPTION, Value::I18n(b.description.clone().unwrap_or_else(|| b.summary.clone())));
    h.put(BUILDTIME, Value::Int32(vec![build_time]));
    if let Some(host) = &b.build_host {
        h.put(BUILDHOST, s(host));
    }
    let total: u64 = scan.items.iter().map(|i| i.size).sum();
    h.put(SIZE, Value::Int32(vec![u32::try_from(total).unwrap_or(u32::MAX)]));
    for (tag, v) in [(VENDOR, &b.vendor), (PACKAGER, &b.packager), (URL, &b.url)] {
        if let Some(v) = v {
            h.put(tag, s(v));
        }
    }
    h.put(LICENSE, s(&b.license));
    h.put(GROUP, Value::I18n(b.group.clone().unwrap_or_else(|| "Unspecified".into())));
    h.put(OS, s("linux"));
    h.put(ARCH, s(&b.arch));
    h.put(SOURCERPM, s("(none)"));
    h.put(RPMVERSION, s(concat!("xspack-rpmrepo ", env!("CARGO_PKG_VERSION"))));
    if !scan.items.is_empty() {
        put_files(&mut h, &scan.items, build_time);
    }
    h.put(FILEDIGESTALGO, Value::Int32(vec![SHA256_ALGO]));
    h.put(ENCODING, s("utf-8"));
    h.put(PAYLOADFORMAT, s("cpio"));
    let (compressor, level) = match b.compression {
        Compression::Gzip => ("gzip", super::payload::GZIP_LEVEL),
        Compression::Xz => ("xz", super::payload::XZ_LEVEL),
    };
    h.put(PAYLOADCOMPRESSOR, s(compressor));
    h.put(PAYLOADFLAGS, s(&level.to_string()));
    h.put(PAYLOAD_DIGEST, Value::StrArray(vec![DIGEST_PLACEHOLDER.into()]));
    h.put(PAYLOAD_DIGEST_ALGO, Value::Int32(vec![SHA256_ALGO]));
    h.put(PAYLOAD_DIGEST_ALT, Value::StrArray(vec![DIGEST_PLACEHOLDER.into()]));

    let evr = match b.epoch {
        Some(e) => format!("{e}:{}-{}", b.version, b.release),
        None => format!("{}-{}", b.version, b.release),
    };
    let eq = |name: String, flags: u32| Dependency {
        name,
        flags: flags | DepFlags::EQUAL,
        version: evr.clone(),
    };
    let mut provides = b.provides.clone();
    let mut requires = b.requires.clone();
    provides.push(eq(b.name.clone(), 0));
    if let Some(isa) = isa(&b.arch) {
        provides.push(eq(format!("{}({isa})", b.name), 0));
    }
    if scan.items.iter().any(|i| i.entry.attrs.config) {
        provides.push(eq(format!("config({})", b.name), SENSE_CONFIG));
        requires.push(eq(format!("config({})", b.name), SENSE_CONFIG));
    }
    for (feature, version, _) in rpmlib_features(b) {
        requires.push(rpmlib(feature, version));
    }
    for (kind, body) in &b.scripts {
        let (script, prog, phase) = script_tags(*kind);
        h.put(script, s(body));
        h.put(prog, s(crate::build::SCRIPT_SHELL));
        requires.push(Dependency {
            name: crate::build::SCRIPT_SHELL.into(),
            flags: DepFlags::INTERP | phase,
            version: String::new(),
        });
    }
    put_deps(&mut h, [PROVIDENAME, PROVIDEFLAGS, PROVIDEVERSION], &sorted(provides));
    put_deps(&mut h, [REQUIRENAME, REQUIREFLAGS, REQUIREVERSION], &sorted(requires));
    put_deps(&mut h, [CONFLICTNAME, CONFLICTFLAGS, CONFLICTVERSION], &sorted(b.conflicts.clone()));
    put_deps(&mut h, [OBSOLETENAME, OBSOLETEFLAGS, OBSOLETEVERSION], &sorted(b.obsoletes.clone()));
    h
}
