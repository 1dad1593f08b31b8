//! Byte-identical outputs across rewrites of the conversion core: every format built from the
//! benchmark fixtures, the guest fixtures and `packs/` must have the SHA-256 that the
//! reference commit's `xspack` gives the same inputs with the same `SOURCE_DATE_EPOCH`.
//!
//! The reference commit is named in `tests/golden/identity/REFERENCE`; its `xspack` is built
//! from `git archive` once per machine, under `target/fixtures/reference/` (a debug build in
//! a target directory of its own, a few minutes). The inputs that are the same on every machine (the
//! synthetic image of the benchmarks and the packs, unsigned) also have their `SHA256SUMS`
//! recorded as golden files beside it, so a change shows in review too; the Debian roots of
//! `scripts/fixtures` differ from one debootstrap to the next, so only the reference binary
//! can speak for them.
//!
//! An intended change of output moves `REFERENCE` to the commit that made it, and rewrites the
//! golden files (`just golden`).

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_testkit::fixtures;

use crate::common::{EPOCH, code, golden, repo_root, stderr, tempdir};

/// The reference commit: the first word of `tests/golden/identity/REFERENCE`.
fn reference_commit() -> String {
    let text = std::fs::read_to_string(golden("identity/REFERENCE")).unwrap();
    let commit = text.split_whitespace().next().unwrap_or_default().to_owned();
    assert!(
        commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
        "tests/golden/identity/REFERENCE must start with a full commit hash, not {commit:?}"
    );
    commit
}

/// The reference commit's `xspack`, built once per machine (test processes that ask at the
/// same time wait on a lock for the one that builds it).
fn reference_xspack() -> Utf8PathBuf {
    let commit = reference_commit();
    let root = repo_root();
    let dir = fixtures::fixtures_dir().join("reference").join(&commit);
    let bin = dir.join("xspack");
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    if bin.is_file() {
        return bin;
    }
    let src = dir.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).unwrap();
    let archive = Command::new("git")
        .args(["-C", root.as_str(), "archive", "--format=tar", &commit])
        .output()
        .expect("git runs");
    assert!(
        archive.status.success(),
        "git archive {commit}: {} (the clone must hold the reference commit)",
        String::from_utf8_lossy(&archive.stderr)
    );
    std::fs::write(dir.join("src.tar"), &archive.stdout).unwrap();
    crate::common::tool("tar", &["-xf", dir.join("src.tar").as_str(), "-C", src.as_str()]);
    let build = Command::new(env!("CARGO"))
        .current_dir(&src)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .args(["build", "--locked", "--quiet", "-p", "xspack-cli", "--target-dir"])
        .arg(dir.join("target"))
        .output()
        .expect("cargo runs");
    assert!(
        build.status.success(),
        "building the reference xspack at {commit}:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    std::fs::copy(dir.join("target/debug/xspack"), dir.join("xspack.new")).unwrap();
    std::fs::rename(dir.join("xspack.new"), &bin).unwrap();
    // Only the binary is kept: the build's gigabytes go.
    std::fs::remove_dir_all(dir.join("target")).unwrap();
    std::fs::remove_dir_all(&src).unwrap();
    std::fs::remove_file(dir.join("src.tar")).unwrap();
    bin
}

/// Runs `bin` with `args` then `-o OUT`, in `cwd`, and returns OUT's `SHA256SUMS`.
fn sums(bin: &Utf8Path, cwd: &Utf8Path, args: &[&str], out: &Utf8Path) -> String {
    let run = Command::new(bin)
        .current_dir(cwd)
        .env_remove("COLUMNS")
        .env("NO_COLOR", "1")
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .arg("-q")
        .args(args)
        .args(["-o", out.as_str()])
        .output()
        .expect("xspack runs");
    assert_eq!(code(&run), 0, "{bin} {args:?}: {}", stderr(&run));
    std::fs::read_to_string(out.join("SHA256SUMS")).unwrap()
}

/// Builds `args` with this xspack and the reference one, in `cwd`, and requires the same
/// `SHA256SUMS`; with `golden_name`, they must also equal that golden file. Every output is
/// removed once hashed.
fn assert_identical(name: &str, cwd: &Utf8Path, args: &[&str], golden_name: Option<&str>) {
    let (_t, dir) = tempdir();
    let ours = sums(Utf8Path::new(env!("CARGO_BIN_EXE_xspack")), cwd, args, &dir.join("ours"));
    std::fs::remove_dir_all(dir.join("ours")).unwrap();
    let reference = sums(&reference_xspack(), cwd, args, &dir.join("reference"));
    assert!(
        ours == reference,
        "{name}: the outputs differ from the reference commit's:\nours:\n{ours}\nreference:\n\
         {reference}"
    );
    if let Some(file) = golden_name {
        expectorate::assert_contents(golden(&format!("identity/{file}")), &ours);
    }
}

const ALL_FORMATS: [&str; 8] =
    ["--format", "raw", "--format", "vhd", "--format", "qcow2", "--format", "xva"];

/// The synthetic image of the benchmarks (about 1 GB over three layers, with whiteouts): a
/// bare filesystem in every format, and VHD alone (the raw image then a scratch file).
#[test]
fn synthetic_image_outputs_are_unchanged() {
    let layout = fixtures::synthetic(&fixtures::fixtures_dir().join("synthetic"), 1, 1).unwrap();
    let source = format!("oci:{layout}:latest");
    let mut args =
        vec!["image", "build", source.as_str(), "--flavor", "none", "--name", "synthetic"];
    args.extend(ALL_FORMATS);
    assert_identical("synthetic", &repo_root(), &args, Some("synthetic.SHA256SUMS"));
    let args = ["image", "build", source.as_str(), "--flavor", "none", "--name", "synthetic"];
    let args = [&args[..], &["--format", "vhd"][..]].concat();
    assert_identical("synthetic VHD", &repo_root(), &args, Some("synthetic-vhd.SHA256SUMS"));
}

/// The debootstrap bookworm image of the benchmarks, a bare filesystem in every format.
#[test]
fn bookworm_image_outputs_are_unchanged() {
    let source = fixtures::bookworm_image();
    let mut args =
        vec!["image", "build", source.as_str(), "--flavor", "none", "--name", "bookworm"];
    args.extend(ALL_FORMATS);
    assert_identical("bookworm", &repo_root(), &args, None);
}

/// The real bookworm guest fixture, an ubuntu-flavor guest with BIOS and with UEFI, in every
/// format.
#[test]
fn guest_outputs_are_unchanged() {
    let (_t, dir) = tempdir();
    let config = serde_json::json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo hello"],
        "User": "nobody",
        "WorkingDir": "/srv",
    });
    let source = fixtures::bookworm_guest_image(&dir.join("layout"), &config);
    for boot in ["bios", "uefi"] {
        let mut args = vec!["image", "build", source.as_str(), "--flavor", "ubuntu"];
        args.extend(["--name", "guest", "--boot", boot]);
        args.extend(ALL_FORMATS);
        assert_identical(&format!("guest ({boot})"), &dir, &args, None);
    }
}

/// The synthetic guest of the CLI tests (a stand-in kernel) and the CoreOS host of the CLI
/// tests (a stand-in Flatcar base and four workloads), in every format.
#[test]
fn synthetic_guest_and_coreos_outputs_are_unchanged() {
    let (_t, dir) = tempdir();
    let spec = crate::guest::debian(crate::guest::DEBIAN, true);
    spec.write_oci_dir(&dir.join("debian"), "latest").unwrap();
    let source = format!("oci:{dir}/debian:latest");
    let mut args = vec!["image", "build", source.as_str(), "--flavor", "ubuntu", "--name", "d"];
    args.extend(ALL_FORMATS);
    assert_identical("synthetic guest", &dir, &args, None);

    let guest_toml = crate::coreos::inputs(&dir);
    let base = dir.join("flatcar.img.xz");
    let mut args = vec!["image", "build", "--flavor", "coreos", "--base", base.as_str()];
    args.extend(["--spec", guest_toml.as_str()]);
    args.extend(ALL_FORMATS);
    assert_identical("coreos host", &dir, &args, None);
}

/// Every pack of `packs/`, unsigned (a signature would need the same key on both sides; the
/// signing code is not part of the conversion core).
#[test]
fn pack_outputs_are_unchanged() {
    let root = repo_root();
    let mut packs: Vec<Utf8PathBuf> = std::fs::read_dir(root.join("packs"))
        .unwrap()
        .map(|e| Utf8PathBuf::try_from(e.unwrap().path()).unwrap())
        .filter(|p| p.join("pack.toml").is_file())
        .collect();
    packs.sort();
    assert!(!packs.is_empty(), "packs/ holds no pack");
    for pack in packs {
        let name = pack.file_name().unwrap().to_owned();
        let args = ["pack", "build", pack.as_str(), "--unsigned", "--allow-outside", "templates"];
        assert_identical(&name, &root, &args, Some(&format!("pack-{name}.SHA256SUMS")));
    }
}
