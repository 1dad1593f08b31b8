//! Targets: a pack is refused what its target's rpm cannot install, records its target in the
//! ISO, and `verify_iso` judges the RPMs against the recorded target, a given one, or the
//! default for an ISO that records none.

use camino::{Utf8Path, Utf8PathBuf};
use xspack_io::Classify as _;
use xspack_iso::{EntryKind, IsoBuilder, IsoOptions, IsoReader, Metadata};
use xspack_pack::verify::verify_iso;
use xspack_rpmrepo::{Dependency, EL9, RpmBuilder, XENSERVER_8};

use super::{build, tempdir};

const PACK: &str = r#"
[pack]
name = "t"
version = "1.0.0"
build = "1"
originator = "xspack"
description = "Prebuilt RPMs"
formats = ["legacy"]

[[rpm]]
path = "rpms/*.rpm"
"#;

/// A pack directory holding one prebuilt RPM that needs rpm 4.12+ (a boolean dependency).
fn pack_with_rich_rpm(dir: &Utf8Path, target_line: &str) -> Utf8PathBuf {
    let p = dir.join("pack");
    std::fs::create_dir_all(p.join("rpms")).unwrap();
    let toml =
        PACK.replace("formats = [\"legacy\"]", &format!("formats = [\"legacy\"]\n{target_line}"));
    std::fs::write(p.join("pack.toml"), toml).unwrap();
    RpmBuilder::new("rich", "1.0", "1")
        .source_date(1)
        .target(&EL9)
        .requires(Dependency::any("(a or b)"))
        .write_to_dir(&p.join("rpms"), None, false)
        .unwrap();
    p
}

#[test]
fn a_prebuilt_rpm_the_target_cannot_install_is_refused_naming_target_and_file() {
    let (_t, dir) = tempdir();
    let pack = pack_with_rich_rpm(&dir, "");
    let err = build(&pack, &dir.join("out")).unwrap_err();
    let text = err.to_string();
    assert!(err.is_bad_input(), "{text}");
    for want in ["rich-1.0-1.noarch.rpm", "rpmlib(RichDependencies)", "rpm 4.11 (XenServer 8"] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }
    assert!(!dir.join("out/t-1.0.0-1.iso").exists());
}

#[test]
fn the_target_is_recorded_and_verify_judges_against_it() {
    let (_t, dir) = tempdir();
    let pack = pack_with_rich_rpm(&dir, "target = \"el9\"");
    build(&pack, &dir.join("out")).unwrap();
    let iso = dir.join("out/t-1.0.0-1.iso");
    let reader = IsoReader::new(std::fs::File::open(&iso).unwrap()).unwrap();
    let app = reader.volume().application_id.clone();
    assert!(app.starts_with("XSPACK ") && app.ends_with(" TARGET EL9"), "{app}");

    let report = verify_iso(&iso, None, None).unwrap();
    assert_eq!(report.target, "el9");
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    // Judged against the hosts of XenServer 8, the same ISO fails, naming the RPM.
    let err = verify_iso(&iso, None, Some(&XENSERVER_8)).unwrap_err();
    let text = err.to_string();
    assert!(err.is_bad_input(), "{text}");
    assert!(
        text.contains("rich-1.0-1.noarch.rpm")
            && text.contains("rpmlib(RichDependencies)")
            && text.contains("rpm 4.11"),
        "{text}"
    );
}

/// The ISO at `src` written again with xspack-iso's default identifiers: an ISO that records
/// no target, as one made by another tool.
fn remaster_without_record(src: &Utf8Path, dest: &Utf8Path) {
    let mut reader = IsoReader::new(std::fs::File::open(src).unwrap()).unwrap();
    let entries = reader.entries().unwrap();
    let mut builder = IsoBuilder::new(IsoOptions::new("T", 1_700_000_000)).unwrap();
    let mut data = Vec::new();
    for e in &entries {
        let mode = e.mode.unwrap_or(0o644) & 0o7777;
        match e.kind {
            EntryKind::Dir => builder.add_dir(&e.path, Metadata::new(mode)).unwrap(),
            EntryKind::File => {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut reader.open_file(e).unwrap(), &mut bytes).unwrap();
                builder.add_file(&e.path, bytes.len() as u64, Metadata::new(mode)).unwrap();
                data.push(bytes);
            }
            _ => panic!("unexpected entry {e:?}"),
        }
    }
    let out = std::fs::File::create(dest).unwrap();
    xspack_iso::write_iso(&builder, out, |id| Ok(std::io::Cursor::new(data[id.index()].clone())))
        .unwrap();
}

#[test]
fn an_iso_without_a_record_is_judged_against_the_default_and_says_so() {
    let (_t, dir) = tempdir();
    let pack = pack_with_rich_rpm(&dir, "target = \"el9\"");
    build(&pack, &dir.join("out")).unwrap();
    let bare = dir.join("bare.iso");
    remaster_without_record(&dir.join("out/t-1.0.0-1.iso"), &bare);
    let err = verify_iso(&bare, None, None).unwrap_err().to_string();
    assert!(err.contains("rpmlib(RichDependencies)") && err.contains("rpm 4.11"), "{err}");
    let report = verify_iso(&bare, None, Some(&EL9)).unwrap();
    assert_eq!(report.target, "el9");
    // Without a record and with no --target, the warning names the default it judged by.
    let plain_pack = pack_with_rich_rpm(&dir.join("plain2"), "");
    std::fs::remove_dir_all(plain_pack.join("rpms")).unwrap();
    std::fs::create_dir_all(plain_pack.join("rpms")).unwrap();
    RpmBuilder::new("plain", "1.0", "1")
        .source_date(1)
        .write_to_dir(&plain_pack.join("rpms"), None, false)
        .unwrap();
    build(&plain_pack, &dir.join("out2")).unwrap();
    remaster_without_record(&dir.join("out2/t-1.0.0-1.iso"), &bare.with_extension("2.iso"));
    let report = verify_iso(&bare.with_extension("2.iso"), None, None).unwrap();
    assert_eq!(report.target, "xenserver-8");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("records no target") && w.contains("xenserver-8")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn an_unknown_target_is_refused_listing_the_known_ones() {
    let (_t, dir) = tempdir();
    let pack = pack_with_rich_rpm(&dir, "target = \"el7\"");
    let err = build(&pack, &dir.join("out")).unwrap_err().to_string();
    assert!(err.contains("pack.target") && err.contains("xenserver-8, el9"), "{err}");
}
