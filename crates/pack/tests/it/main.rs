//! Integration tests of xspack-pack: packs whose RPMs include VM template RPMs built from
//! `[[template]]` definitions, and the guest-templates validator on `[[package]]` JSON files.

mod target;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_io::Classify as _;
use xspack_io::NoProgress;
use xspack_iso::{EntryKind, IsoReader};
use xspack_manifest::{OutputDir, Tool};
use xspack_pack::{BuildOptions, Error, PackSpec, build_pack};

const EPOCH: u64 = 1_700_000_000;

fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

const PACK: &str = r#"
[pack]
name = "t"
version = "1.0.0"
build = "1"
originator = "xspack"
description = "Templates"
formats = ["legacy"]

[[template]]
path = "templates/guest.toml"
"#;

const TEMPLATE: &str = r#"
[template]
name = "t-guest"
label = "T guest"
version = "2.0"
flavor = "debian"
boot = "bios"
memory = "1G"

[[disk]]
size = "4G"
"#;

/// A pack directory `dir/pack` with `pack.toml` and `templates/guest.toml`.
fn pack_dir(dir: &Utf8Path, pack: &str, template: &str) -> Utf8PathBuf {
    let p = dir.join("pack");
    std::fs::create_dir_all(p.join("templates")).unwrap();
    std::fs::write(p.join("pack.toml"), pack).unwrap();
    std::fs::write(p.join("templates/guest.toml"), template).unwrap();
    p
}

/// Builds the pack into `dest`; returns the RPM file names and the manifest's input kinds.
fn build(pack: &Utf8Path, dest: &Utf8Path) -> Result<(Vec<String>, Vec<String>), Error> {
    let tool = Tool { name: "xspack".into(), version: "0".into() };
    let mut out = OutputDir::create(dest, tool, EPOCH, false).unwrap();
    let opts = BuildOptions::new(EPOCH, None, &NoProgress);
    let summary = build_pack(&pack.join("pack.toml"), &mut out, &opts)?;
    let (_, manifest) = out.commit().unwrap();
    Ok((summary.rpms, manifest.inputs.into_iter().map(|i| i.kind).collect()))
}

#[test]
fn a_template_becomes_an_rpm_of_the_pack() {
    let (_t, dir) = tempdir();
    let pack = pack_dir(&dir, PACK, TEMPLATE);
    let (rpms, inputs) = build(&pack, &dir.join("out")).unwrap();
    assert_eq!(rpms, ["t-guest-template-2.0-1.noarch.rpm"]);
    assert_eq!(inputs, ["pack", "template"]);
    let iso = std::fs::File::open(dir.join("out/t-1.0.0-1.iso")).unwrap();
    let mut reader = IsoReader::new(iso).unwrap();
    let entries = reader.entries().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.kind == EntryKind::File && e.path == "t-guest-template-2.0-1.noarch.rpm"),
        "{entries:?}"
    );
}

#[test]
fn a_bad_template_fails_the_pack_and_names_the_file() {
    let (_t, dir) = tempdir();
    let pack = pack_dir(&dir, PACK, &TEMPLATE.replace("memory", "memroy"));
    let err = build(&pack, &dir.join("out")).unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    let text = err.to_string();
    assert!(text.contains("templates/guest.toml:8:1: unknown field `memroy`"), "{text}");
    // A missing definition is bad input too, naming pack.toml's field before anything is read.
    let pack = pack_dir(&dir.join("missing"), &PACK.replace("guest.toml", "nope.toml"), TEMPLATE);
    let err = build(&pack, &dir.join("out2")).unwrap_err();
    let text = err.to_string();
    assert!(
        err.is_bad_input() && text.contains("template[0].path: ") && text.contains("nope.toml"),
        "{err}"
    );
}

#[test]
fn package_json_for_the_template_directory_is_validated() {
    let (_t, dir) = tempdir();
    let pack = pack_dir(
        &dir,
        &PACK.replace(
            "[[template]]\npath = \"templates/guest.toml\"",
            "[[package]]\nname = \"j\"\nversion = \"1\"\nsummary = \"s\"\ndescription = \"d\"\n\
             files = [{ src = \"t.json\", dest = \"/etc/xapi.d/vm-templates/t.json\" }]",
        ),
        TEMPLATE,
    );
    std::fs::write(
        pack.join("t.json"),
        r#"{ "uuid": "5c8f5a8e-9d8a-4b2e-9a51-2f7a0c1d3e01", "min_memory": "2G", "vcpus": 2 }"#,
    )
    .unwrap();
    let err = build(&pack, &dir.join("out")).unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert!(err.to_string().contains("t.json: key \"vcpus\": unknown key"), "{err}");
    std::fs::write(
        pack.join("t.json"),
        r#"{ "uuid": "5c8f5a8e-9d8a-4b2e-9a51-2f7a0c1d3e01", "min_memory": "2G" }"#,
    )
    .unwrap();
    assert_eq!(build(&pack, &dir.join("out")).unwrap().0, ["j-1-1.noarch.rpm"]);
}

#[test]
fn template_tables_parse_and_are_checked() {
    let parse = |text: &str| PackSpec::parse(text, Utf8Path::new("packs/x/pack.toml"));
    let spec = parse(PACK).unwrap();
    assert_eq!(spec.templates[0].path, "templates/guest.toml");
    assert!(spec.rpms.is_empty() && spec.packages.is_empty(), "a template alone is a payload");
    let err = parse(&PACK.replace("guest.toml", "guest.json")).unwrap_err().to_string();
    assert!(err.contains("template[0].path") && err.contains("not a template"), "{err}");
    let err = parse(&PACK.replace("path = ", "file = ")).unwrap_err().to_string();
    assert!(err.starts_with("packs/x/pack.toml:11:1: unknown field `file`"), "{err}");
    let err = parse(&PACK.replace("[[template]]\npath = \"templates/guest.toml\"", ""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("no [[template]]"), "{err}");
}

#[test]
fn a_package_chooses_its_payload_compression() {
    let (_t, dir) = tempdir();
    let p = dir.join("pack");
    std::fs::create_dir_all(p.join("files")).unwrap();
    std::fs::write(p.join("files/a"), "text ".repeat(1000)).unwrap();
    let package = |name: &str, compression: &str| {
        format!(
            "[[package]]\nname = \"{name}\"\nversion = \"1\"\nsummary = \"s\"\ndescription = \"d\"\n\
             {compression}files = [{{ src = \"files/a\", dest = \"/opt/{name}/a\" }}]\n"
        )
    };
    let toml = PACK.replace("[[template]]\npath = \"templates/guest.toml\"\n", "")
        + &package("gz", "")
        + &package("xz", "compression = \"xz\"\n");
    std::fs::write(p.join("pack.toml"), toml).unwrap();
    let (rpms, _) = build(&p, &dir.join("out")).unwrap();
    assert_eq!(rpms.len(), 2, "{rpms:?}");
    let mut reader =
        IsoReader::new(std::fs::File::open(dir.join("out/t-1.0.0-1.iso")).unwrap()).unwrap();
    for (name, want) in [("gz-1-1.noarch.rpm", "gzip"), ("xz-1-1.noarch.rpm", "xz")] {
        let entry = reader.entries().unwrap().into_iter().find(|e| e.path == name).unwrap();
        let file = reader.open_file(&entry).unwrap();
        let header = xspack_rpmrepo::read_rpm_from(file, Utf8Path::new(name)).unwrap();
        assert_eq!(header.payload_compressor, want, "{name}");
    }
    let bad = std::fs::read_to_string(p.join("pack.toml")).unwrap().replace("\"xz\"", "\"zstd\"");
    std::fs::write(p.join("pack.toml"), bad).unwrap();
    let err = build(&p, &dir.join("out2")).unwrap_err().to_string();
    assert!(err.contains("unknown variant `zstd`, expected `gzip` or `xz`"), "{err}");
}
