//! Integration tests of xspack-manifest: output directories, verification, and GNU
//! `sha256sum` as the oracle for the checksum list in both directions.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::symlink;
use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;
use xspack_io::Classify as _;
use xspack_io::{NoProgress, Sha256Digest, live_temp_paths};
use xspack_manifest::{
    Input, InputDigest, MANIFEST_NAME, Manifest, OutputDir, Problem, RelPath, SHA256SUMS_NAME,
    Sha256Sums, Tool, verify_dir,
};

fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

fn tool() -> Tool {
    Tool { name: "xspack".into(), version: "0.1.0".into() }
}

fn rel(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

/// Names that need escaping, quoting or care in `SHA256SUMS`.
const TRICKY: &[&str] = &[
    "plain.iso",
    "with space.vhd",
    " leading-space",
    "back\\slash",
    "new\nline",
    "star*name",
    "sub/dir/nested.xva",
    "unicode-\u{e9}\u{4e2d}.rpm",
];

/// Builds a committed output directory holding `files`.
fn build(dest: &Utf8Path, files: &[(&str, &[u8])]) -> Manifest {
    let mut out = OutputDir::create(dest, tool(), 1_700_000_000, false).unwrap();
    out.add_input(Input {
        name: "packs/demo/pack.toml".into(),
        kind: "pack".into(),
        digest: InputDigest(Sha256Digest::of_bytes(b"pack")),
        size: 4,
    });
    for (name, body) in files {
        out.write_file(&rel(name), body).unwrap();
    }
    out.commit().unwrap().1
}

fn tricky_files() -> Vec<(&'static str, Vec<u8>)> {
    TRICKY
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, format!("content {i}\n").repeat(i + 1).into_bytes()))
        .collect()
}

fn build_tricky(dest: &Utf8Path) -> Manifest {
    let files = tricky_files();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    build(dest, &refs)
}

#[test]
fn sha256sum_accepts_what_we_write() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    build_tricky(&dist);
    let out = Command::new("sha256sum")
        .args(["--check", "--strict", SHA256SUMS_NAME])
        .current_dir(&dist)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sha256sum -c failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches(": OK").count(), TRICKY.len(), "{stdout}");
}

#[test]
fn we_accept_what_sha256sum_writes() {
    let (_t, dir) = tempdir();
    for (name, body) in tricky_files() {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &body).unwrap();
    }
    for mode in ["--text", "--binary", "--tag"] {
        let out = Command::new("sha256sum")
            .arg(mode)
            .arg("--")
            .args(TRICKY)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let sums = Sha256Sums::parse(&out.stdout, "sha256sum-output".into()).unwrap();
        assert_eq!(sums.len(), TRICKY.len(), "{mode}");
        for (name, body) in tricky_files() {
            assert_eq!(
                sums.get(&rel(name)),
                Some(&Sha256Digest::of_bytes(&body)),
                "{mode} {name:?}"
            );
        }
    }
}

#[test]
fn verify_passes_on_a_fresh_build() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    let manifest = build_tricky(&dist);
    let report = verify_dir(&dist, &NoProgress).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.sources, [SHA256SUMS_NAME, MANIFEST_NAME]);
    assert_eq!(report.verified.len(), TRICKY.len());
    assert_eq!(report.manifest.unwrap(), manifest);
    // manifest.json on disk is the canonical text.
    assert_eq!(fs::read_to_string(dist.join(MANIFEST_NAME)).unwrap(), manifest.to_json().unwrap());
}

#[test]
fn one_byte_tamper_is_named() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    build_tricky(&dist);
    let victim = dist.join("sub/dir/nested.xva");
    let mut bytes = fs::read(&victim).unwrap();
    bytes[3] ^= 0x01;
    fs::write(&victim, &bytes).unwrap();
    let report = verify_dir(&dist, &NoProgress).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.mismatched.len(), 1);
    assert_eq!(report.mismatched[0].path, rel("sub/dir/nested.xva"));
    assert!(matches!(report.mismatched[0].problem, Problem::Digest { .. }));
    assert!(report.missing.is_empty() && report.extra.is_empty());
}

#[test]
fn size_change_is_reported_as_size() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    build_tricky(&dist);
    fs::OpenOptions::new()
        .append(true)
        .open(dist.join("plain.iso"))
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let report = verify_dir(&dist, &NoProgress).unwrap();
    assert_eq!(report.mismatched.len(), 1);
    assert!(matches!(report.mismatched[0].problem, Problem::Size { expected: 10, actual: 11 }));
}

#[test]
fn missing_and_extra_are_reported_by_name() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    build_tricky(&dist);
    fs::remove_file(dist.join("with space.vhd")).unwrap();
    fs::write(dist.join("stray.txt"), b"?").unwrap();
    fs::write(dist.join("sub/stray2"), b"?").unwrap();
    let report = verify_dir(&dist, &NoProgress).unwrap();
    assert_eq!(report.missing, [rel("with space.vhd")]);
    assert_eq!(report.extra, ["stray.txt", "sub/stray2"]);
    assert!(report.mismatched.is_empty());
}

#[test]
fn symlinks_never_lead_outside() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    build(&dist, &[("a", b"a"), ("sub/b", b"b")]);
    let outside = root.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("b"), b"b").unwrap();
    fs::write(outside.join("a"), b"a").unwrap();
    // A symlinked file and a symlinked parent directory, both pointing at identical content.
    fs::remove_file(dist.join("a")).unwrap();
    symlink(outside.join("a"), dist.join("a")).unwrap();
    fs::remove_dir_all(dist.join("sub")).unwrap();
    symlink(&outside, dist.join("sub")).unwrap();
    let report = verify_dir(&dist, &NoProgress).unwrap();
    let problems: Vec<(&str, &Problem)> =
        report.mismatched.iter().map(|m| (m.path.as_str(), &m.problem)).collect();
    assert_eq!(problems, [("a", &Problem::NotAFile), ("sub/b", &Problem::NotAFile)]);
}

#[test]
fn fifo_is_refused_without_blocking() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    build(&dist, &[("pipe", b"x")]);
    fs::remove_file(dist.join("pipe")).unwrap();
    let status = Command::new("mkfifo").arg(dist.join("pipe")).status().unwrap();
    assert!(status.success());
    let report = verify_dir(&dist, &NoProgress).unwrap();
    assert_eq!(report.mismatched[0].problem, Problem::NotAFile);
}

#[test]
fn lists_must_agree() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    build(&dist, &[("a", b"a"), ("b", b"b")]);
    // Rewrite SHA256SUMS so it lists only `a`, with the digest of something else.
    let mut sums = Sha256Sums::new();
    sums.insert(rel("a"), Sha256Digest::of_bytes(b"other")).unwrap();
    fs::write(dist.join(SHA256SUMS_NAME), sums.to_text()).unwrap();
    let report = verify_dir(&dist, &NoProgress).unwrap();
    let problems: Vec<String> =
        report.mismatched.iter().map(|m| format!("{}: {}", m.path, m.problem)).collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("a: SHA256SUMS says"), "{problems:?}");
    assert_eq!(problems[1], "b: listed in manifest.json only");
}

#[test]
fn either_list_alone_is_enough() {
    let (_t, root) = tempdir();
    for keep in [SHA256SUMS_NAME, MANIFEST_NAME] {
        let dist = root.join(keep);
        build(&dist, &[("a", b"a")]);
        let other = if keep == MANIFEST_NAME { SHA256SUMS_NAME } else { MANIFEST_NAME };
        fs::remove_file(dist.join(other)).unwrap();
        let report = verify_dir(&dist, &NoProgress).unwrap();
        assert!(report.is_ok(), "{keep}: {report:?}");
        assert_eq!(report.sources, [keep]);
    }
}

#[test]
fn no_lists_is_bad_input() {
    let (_t, dir) = tempdir();
    let err = verify_dir(&dir, &NoProgress).unwrap_err();
    assert!(err.is_bad_input());
    assert!(err.to_string().contains("no SHA256SUMS or manifest.json"), "{err}");
}

#[test]
fn malformed_lists_are_bad_input_with_position() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    build(&dist, &[("a", b"a")]);
    fs::write(dist.join(MANIFEST_NAME), "{\n  \"manifest_version\": 1,\n  \"tool\": 7\n}\n")
        .unwrap();
    let err = verify_dir(&dist, &NoProgress).unwrap_err();
    assert!(err.is_bad_input());
    let msg = err.to_string();
    assert!(msg.contains("manifest.json: line 3, column"), "{msg}");
}

#[test]
fn existing_output_dir_is_not_clobbered() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    build(&dist, &[("a", b"first")]);
    let Err(err) = OutputDir::create(&dist, tool(), 0, false) else { panic!("clobbered") };
    assert!(err.to_string().contains("already exists"), "{err}");
    // With replace, the whole directory is swapped for the new one.
    let mut out = OutputDir::create(&dist, tool(), 0, true).unwrap();
    out.write_file(&rel("b"), b"second").unwrap();
    out.commit().unwrap();
    let names: Vec<String> = fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(verify_dir(&dist, &NoProgress).unwrap().is_ok());
    assert_eq!(fs::read_dir(&root).unwrap().count(), 1, "no temp directories left");
}

/// A reader that yields `ok` bytes, then fails.
struct FailAfter {
    ok: usize,
}

impl Read for FailAfter {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ok == 0 {
            return Err(io::Error::other("injected failure"));
        }
        let n = buf.len().min(self.ok).min(4096);
        buf[..n].fill(0xab);
        self.ok -= n;
        Ok(n)
    }
}

/// Builds `dist` with one complete artifact, then one whose source fails after `fail_at` bytes.
fn build_with_failure(dist: &Utf8Path, fail_at: usize) -> Result<(), String> {
    let mut out = OutputDir::create(dist, tool(), 0, false).map_err(|e| e.to_string())?;
    out.write_file(&rel("complete.bin"), &[1u8; 5000]).map_err(|e| e.to_string())?;
    let mut file = out.create_file(&rel("sub/big.bin")).map_err(|e| e.to_string())?;
    io::copy(&mut FailAfter { ok: fail_at }, &mut file).map_err(|e| e.to_string())?;
    out.finish_file(file).map_err(|e| e.to_string())?;
    out.commit().map_err(|e| e.to_string())?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn failure_mid_write_leaves_no_output(fail_at in 0usize..300_000) {
        let (_t, root) = tempdir();
        let dist = root.join("dist");
        let err = build_with_failure(&dist, fail_at).unwrap_err();
        prop_assert!(err.contains("injected failure"), "{}", err);
        prop_assert!(!dist.exists(), "partial output under the final name");
        prop_assert_eq!(fs::read_dir(&root).unwrap().count(), 0, "temp files left behind");
        prop_assert!(!live_temp_paths().iter().any(|p| p.starts_with(&root)));
    }
}

#[test]
fn scratch_files_never_reach_the_output() {
    let (_t, root) = tempdir();
    let dist = root.join("dist");
    let mut out = OutputDir::create(&dist, tool(), 0, false).unwrap();
    let scratch = out.scratch_path("raw.tmp").unwrap();
    fs::write(&scratch, b"intermediate").unwrap();
    let rel = rel("a.bin");
    out.write_file(&rel, b"artifact").unwrap();
    assert_eq!(fs::read(out.path_of(&rel)).unwrap(), b"artifact");
    out.commit().unwrap();
    assert!(verify_dir(&dist, &NoProgress).unwrap().is_ok(), "no extra files");
    assert!(!dist.join(".xspack-scratch").exists());
}

/// A checksum list larger than `MAX_LIST_BYTES` (here 300 MB, sparse) is refused by its size,
/// before anything is read or allocated; one at the limit is read (and found malformed).
#[test]
fn huge_checksum_lists_are_refused_before_they_are_read() {
    for name in [MANIFEST_NAME, SHA256SUMS_NAME] {
        let (_t, dir) = tempdir();
        build(&dir.join("d"), &[("a.iso", b"a")]);
        let list = dir.join("d").join(name);
        fs::File::options().write(true).open(&list).unwrap().set_len(300 << 20).unwrap();
        let err = verify_dir(&dir.join("d"), &NoProgress).unwrap_err();
        assert!(err.is_bad_input(), "{err}");
        let text = err.to_string();
        assert!(text.contains("314572800 bytes, more than the 16 MiB"), "{name}: {text}");
        fs::File::options()
            .write(true)
            .open(&list)
            .unwrap()
            .set_len(xspack_manifest::MAX_LIST_BYTES)
            .unwrap();
        let err = verify_dir(&dir.join("d"), &NoProgress).unwrap_err().to_string();
        assert!(!err.contains("more than the 16 MiB"), "{name}: {err}");
    }
}
