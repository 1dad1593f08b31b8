//! Bad pack inputs for `xspack pack build`: malformed pack.toml, truncated, corrupt and badly
//! signed RPMs, and signing keys that are not usable secret keys.

use camino::{Utf8Path, Utf8PathBuf};
use xspack_rpmrepo::{RpmBuilder, SigningKey};

use super::{Case, case_dir, run_group};
use crate::common::{code, keygen, stderr, tempdir, xspack};

/// A minimal valid pack.toml: one package of one file, legacy format.
const PACK: &str = r#"[pack]
name = "corpus"
version = "1.0.0"
build = "1"
originator = "xspack"
description = "bad-input corpus pack"
formats = ["legacy"]

[legacy]
product = "XCP"

[[package]]
name = "corpus"
version = "1.0.0"
summary = "corpus payload"
description = "One file."
license = "MIT"
files = [{ src = "files/a", dest = "/usr/share/corpus/a" }]
"#;

/// Writes the pack (with `toml` as its pack.toml) into `dir/pack`; returns the pack.toml path.
fn write_pack(dir: &Utf8Path, toml: &[u8]) -> Utf8PathBuf {
    let pack = dir.join("pack");
    std::fs::create_dir_all(pack.join("files")).unwrap();
    std::fs::write(pack.join("files/a"), "payload\n").unwrap();
    std::fs::write(pack.join("pack.toml"), toml).unwrap();
    pack.join("pack.toml")
}

/// An RPM named `name`, signed with `key` or not.
fn rpm(name: &str, key: Option<&SigningKey>) -> Vec<u8> {
    let (bytes, _) = RpmBuilder::new(name, "1.0", "1")
        .summary("prebuilt")
        .description("A prebuilt package.")
        .license("MIT")
        .source_date(1_700_000_000)
        .file_from_bytes(b"data".to_vec(), format!("/usr/share/{name}/f"), 0o644)
        .write(Vec::new(), key)
        .unwrap();
    bytes
}

struct Keys {
    secret: Utf8PathBuf,
    public: Utf8PathBuf,
    other: SigningKey,
}

#[allow(clippy::too_many_lines)]
fn pack_cases(root: &Utf8Path, keys: &Keys) -> Vec<(Utf8PathBuf, Case)> {
    let mut list = Vec::new();
    let mut add = |name: &str,
                   toml: &[u8],
                   extra: &dyn Fn(&Utf8Path),
                   key: &Utf8Path,
                   code: i32,
                   input: &dyn Fn(&Utf8Path) -> String,
                   problem: &str| {
        let dir = case_dir(root, name);
        let toml = write_pack(&dir, toml);
        let pack = toml.parent().unwrap().to_owned();
        extra(&pack);
        let out = dir.join("out");
        let case = Case::new(
            name,
            &["pack", "build", pack.as_str(), "--sign-key", key.as_str(), "-o", out.as_str()],
            code,
            input(&pack),
            problem,
        );
        list.push((dir, case));
    };
    let toml_of = |p: &Utf8Path| p.join("pack.toml").to_string();
    let none = |_: &Utf8Path| {};
    let key = keys.secret.as_path();

    // pack.toml.
    add("toml-syntax", b"[pack\nname = 1\n", &none, key, 3, &toml_of, ":1:");
    add("toml-empty", b"", &none, key, 3, &toml_of, "pack");
    add(
        "toml-not-utf8",
        b"[pack]\nname = \"\xff\xfe\"\n",
        &none,
        key,
        3,
        &toml_of,
        "not valid UTF-8",
    );
    add(
        "toml-unknown-field",
        PACK.replace("originator", "orginator").as_bytes(),
        &none,
        key,
        3,
        &toml_of,
        "unknown field `orginator`",
    );
    add(
        "toml-missing-pack-table",
        PACK.replace("[pack]", "[pak]").as_bytes(),
        &none,
        key,
        3,
        &toml_of,
        "pak",
    );
    add(
        "toml-bad-name",
        PACK.replace(
            "name = \"corpus\"\nversion = \"1.0.0\"\nbuild",
            "name = \"cor pus\"\nversion = \"1.0.0\"\nbuild",
        )
        .as_bytes(),
        &none,
        key,
        3,
        &toml_of,
        "pack.name",
    );
    add(
        "toml-unknown-format",
        PACK.replace("[\"legacy\"]", "[\"zip\"]").as_bytes(),
        &none,
        key,
        3,
        &toml_of,
        "zip",
    );
    add(
        "toml-wrong-type",
        PACK.replace("build = \"1\"", "build = 1").as_bytes(),
        &none,
        key,
        3,
        &toml_of,
        "invalid type: integer `1`, expected a string",
    );
    add(
        "toml-bad-file-mode",
        PACK.replace(
            "dest = \"/usr/share/corpus/a\"",
            "dest = \"/usr/share/corpus/a\", mode = \"0999\"",
        )
        .as_bytes(),
        &none,
        key,
        3,
        &toml_of,
        "0999",
    );
    add(
        "toml-relative-dest",
        PACK.replace("/usr/share/corpus/a", "usr/share/corpus/a").as_bytes(),
        &none,
        key,
        3,
        &toml_of,
        "usr/share/corpus/a",
    );
    add(
        "toml-duplicate-package",
        format!("{PACK}\n{}", &PACK[PACK.find("[[package]]").unwrap()..]).as_bytes(),
        &none,
        key,
        3,
        &toml_of,
        "corpus",
    );
    add(
        "toml-missing-source-file",
        PACK.replace("files/a", "files/gone").as_bytes(),
        &none,
        key,
        3,
        &|p| p.join("files/gone").to_string(),
        "",
    );

    // Prebuilt RPMs.
    let with_rpm = format!("{PACK}\n[[rpm]]\npath = \"rpms/*.rpm\"\n");
    let unsigned = rpm("prebuilt", None);
    let rpm_at = |p: &Utf8Path| p.join("rpms/prebuilt-1.0-1.noarch.rpm").to_string();
    let put = |bytes: Vec<u8>| {
        move |p: &Utf8Path| {
            std::fs::create_dir_all(p.join("rpms")).unwrap();
            std::fs::write(p.join("rpms/prebuilt-1.0-1.noarch.rpm"), &bytes).unwrap();
        }
    };
    add(
        "rpm-truncated",
        with_rpm.as_bytes(),
        &put(unsigned[..unsigned.len() / 2].to_vec()),
        key,
        3,
        &rpm_at,
        "",
    );
    add("rpm-lead-only", with_rpm.as_bytes(), &put(unsigned[..96].to_vec()), key, 3, &rpm_at, "");
    let mut bad_header = unsigned.clone();
    bad_header[96..99].copy_from_slice(b"XYZ");
    add(
        "rpm-bad-signature-header-magic",
        with_rpm.as_bytes(),
        &put(bad_header),
        key,
        3,
        &rpm_at,
        "",
    );
    let mut bad_index = unsigned.clone();
    // The signature header's index count (after magic, version and reserved bytes).
    bad_index[104..108].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
    add("rpm-huge-header-count", with_rpm.as_bytes(), &put(bad_index), key, 3, &rpm_at, "");
    add("rpm-empty-file", with_rpm.as_bytes(), &put(Vec::new()), key, 3, &rpm_at, "");
    add(
        "rpm-unsigned",
        with_rpm.as_bytes(),
        &put(unsigned.clone()),
        key,
        3,
        &rpm_at,
        "not signed by the pack key",
    );
    add(
        "rpm-signed-by-another-key",
        with_rpm.as_bytes(),
        &put(rpm("prebuilt", Some(&keys.other))),
        key,
        3,
        &rpm_at,
        "not signed by the pack key",
    );

    // Signing keys.
    let key_dir = root.join("keys-bad");
    std::fs::create_dir_all(&key_dir).unwrap();
    let secret_text = std::fs::read_to_string(&keys.secret).unwrap();
    let bad_keys: Vec<(&str, Vec<u8>)> = vec![
        (
            "key-not-a-key",
            b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnope\n-----END PGP PRIVATE KEY BLOCK-----\n"
                .to_vec(),
        ),
        ("key-empty", Vec::new()),
        ("key-truncated", secret_text.as_bytes()[..secret_text.len() / 2].to_vec()),
        ("key-garbage", xspack_testkit::noise(7, 600)),
        ("key-public-only", std::fs::read(&keys.public).unwrap()),
    ];
    for (name, bytes) in bad_keys {
        let path = key_dir.join(format!("{name}.asc"));
        std::fs::write(&path, bytes).unwrap();
        let shown = path.to_string();
        add(name, PACK.as_bytes(), &none, &path, 3, &|_| shown.clone(), "");
    }
    let missing = key_dir.join("no-such-key.asc");
    add(
        "key-missing-file",
        PACK.as_bytes(),
        &none,
        &missing,
        3,
        &|_| missing.to_string(),
        "No such file",
    );
    list
}

#[test]
fn corpus_pack_inputs() {
    let (_t, root) = tempdir();
    let (secret, public) = keygen(&root);
    let other_dir = root.join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let (other_secret, _) = keygen(&other_dir);
    let other = SigningKey::from_file(&other_secret, None).unwrap();
    let keys = Keys { secret, public, other };
    // The unbroken pack builds, so every failure below comes from its one defect.
    let control = case_dir(&root, "control");
    let toml = write_pack(&control, PACK.as_bytes());
    let out = xspack()
        .args(["-q", "pack", "build", toml.as_str(), "--sign-key", keys.secret.as_str(), "-o"])
        .arg(control.join("out"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "control pack: {}", stderr(&out));
    let cases = pack_cases(&root, &keys);
    run_group("pack", &cases);
}
