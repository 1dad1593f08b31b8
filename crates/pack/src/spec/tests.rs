//! Unit tests of `pack.toml` parsing and validation.

use super::tests_support::GOOD;
use super::*;

fn parse(text: &str) -> Result<PackSpec, Error> {
    PackSpec::parse(text, Utf8Path::new("packs/x/pack.toml"))
}

#[test]
fn good_spec_parses_with_defaults() {
    let spec = parse(GOOD).unwrap();
    assert_eq!(spec.pack.formats, [PackFormat::Legacy, PackFormat::Update]);
    assert_eq!(spec.legacy.product, "XCP");
    assert_eq!(spec.legacy.requires[0].test, VersionTest::Ge);
    assert_eq!(spec.key_name(), "RPM-GPG-KEY-xs");
    assert_eq!(spec.update.after_apply_guidance, [Guidance::RestartXapi]);
}

#[test]
fn typos_name_file_line_and_column() {
    let err =
        parse(&GOOD.replace("originator = \"xs\"", "orginator = \"xs\"")).unwrap_err().to_string();
    assert!(err.starts_with("packs/x/pack.toml:6:1: unknown field `orginator`"), "{err}");
    let err = parse(&GOOD.replace("\"restartXAPI\"", "\"reboot\"")).unwrap_err().to_string();
    assert!(err.starts_with("packs/x/pack.toml:14:"), "{err}");
    assert!(err.contains("unknown variant `reboot`"), "{err}");
    let err = parse("[pack\nname=1").unwrap_err().to_string();
    assert!(err.starts_with("packs/x/pack.toml:1:"), "{err}");
}

#[test]
fn rules_are_enforced() {
    let cases = [
        (GOOD.replace("name = \"xscontainer\"", "name = \"xs container\""), "pack.name"),
        (GOOD.replace("version = \"6.5.0\"", "version = \"6.5-rc1\""), "pack.version"),
        (
            GOOD.replace(
                "test = \"ge\", version = \"1.9.0\"",
                "test = \"ge\", version = \"1.9.x\"",
            ),
            "legacy.requires[0].version",
        ),
        (GOOD.replace("[update]", "[update]\nuuid = \"ABC\""), "update.uuid"),
        (GOOD.replace("platform-version >= 2.3", "(a or b)"), "update.base-requires[0]"),
        (GOOD.replace("[[rpm]]\npath = \"rpms/*.rpm\"", ""), "holds no [[rpm]]"),
        (
            GOOD.replace("description = \"XSContainer Management\"", "description = \"caf\u{e9}\""),
            "pack.description",
        ),
    ];
    for (text, want) in cases {
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(want), "want {want:?} in {err}");
        assert!(err.starts_with("packs/x/pack.toml"), "{err}");
    }
}

#[test]
fn built_packages_are_checked() {
    let base = format!(
        "{GOOD}\n[[package]]\nname = \"t\"\nversion = \"1.0\"\nsummary = \"s\"\ndescription = \"d\"\nfiles = [{{ src = \"a\", dest = \"DEST\", mode = \"MODE\" }}]\n"
    );
    let ok = base.replace("DEST", "/etc/a").replace("MODE", "0644");
    assert_eq!(parse(&ok).unwrap().packages[0].files[0].owner, "root");
    for (dest, mode, want) in [
        ("etc/a", "0644", "absolute"),
        ("/etc/../x", "0644", "absolute"),
        ("/opt/EULA", "0644", "EULA"),
        ("/etc/a", "0999", "octal"),
    ] {
        let err = parse(&base.replace("DEST", dest).replace("MODE", mode)).unwrap_err().to_string();
        assert!(err.contains(want), "{dest} {mode}: {err}");
    }
}

#[test]
fn names_that_would_collide_or_overflow_are_refused() {
    let with_key =
        |name: &str| GOOD.replace("[update]\n", &format!("[update]\nkey-name = {name:?}\n"));
    assert_eq!(parse(&with_key("RPM-GPG-KEY-xs.asc")).unwrap().key_name(), "RPM-GPG-KEY-xs.asc");
    for name in [
        "update.xml",
        "update.xml.asc",
        "repodata",
        "Packages",
        "..",
        ".",
        ".hidden",
        "a/b",
        "../x",
        "",
    ] {
        let err = parse(&with_key(name)).unwrap_err().to_string();
        assert!(err.contains("update.key-name"), "{name:?}: {err}");
    }
    let err = parse(&with_key(&"k".repeat(104))).unwrap_err().to_string();
    assert!(err.contains("update.key-name: is longer than 103"), "{err}");
    let long_version = format!("1.{}", "2.".repeat(20)) + "3";
    for (from, to, field) in [
        ("version = \"6.5.0\"", format!("version = {long_version:?}"), "pack.version"),
        ("build = \"100205c\"", format!("build = \"{}\"", "b".repeat(33)), "pack.build"),
        ("originator = \"xs\"", format!("originator = \"{}\"", "o".repeat(33)), "pack.originator"),
    ] {
        let err = parse(&GOOD.replacen(from, &to, 1)).unwrap_err().to_string();
        assert!(err.contains(&format!("{field}: is longer than 32")), "{err}");
    }
    // An over-long version is quoted in at most 200 characters.
    let huge =
        GOOD.replacen("version = \"6.5.0\"", &format!("version = \"{}\"", "x".repeat(10_000)), 1);
    let err = parse(&huge).unwrap_err().to_string();
    assert!(err.contains("pack.version") && err.len() < 400, "{} bytes", err.len());
    let pkg = |name: &str| {
        format!(
            "{GOOD}\n[[package]]\nname = {name:?}\nversion = \"1.0\"\nsummary = \"s\"\ndescription = \"d\"\n"
        )
    };
    assert!(parse(&pkg(&"n".repeat(80))).is_ok());
    let err = parse(&pkg(&"n".repeat(90))).unwrap_err().to_string();
    assert!(err.contains("package[0]: the RPM's file name"), "{err}");
}

#[test]
fn dotted_integers() {
    assert!(is_dotted_integers("1.9.0"));
    assert!(!is_dotted_integers("1..0") && !is_dotted_integers("") && !is_dotted_integers("1.a"));
}
