//! Helpers shared by the end-to-end tests.

use std::process::{Command, Output};

use camino::{Utf8Path, Utf8PathBuf};
use xspack_io::Sha256Digest;
use xspack_manifest::{Input, InputDigest, OutputDir, RelPath, Tool};

/// A fixed timestamp so golden text does not change: 2023-11-14T22:13:20Z.
pub const EPOCH: u64 = 1_700_000_000;

/// The binary under test, with an environment that does not leak into the results.
pub fn xspack() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xspack"));
    cmd.env_remove("SOURCE_DATE_EPOCH").env_remove("COLUMNS").env("NO_COLOR", "1");
    cmd
}

/// The repository root (packs/, templates/).
pub use xspack_testkit::fixtures::repo_root;

/// A fresh signing key pair in `dir/keys` from `xspack pack keygen`: (secret, public).
pub fn keygen(dir: &Utf8Path) -> (Utf8PathBuf, Utf8PathBuf) {
    let keys = dir.join("keys");
    let out = xspack()
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .args(["-q", "pack", "keygen", "-o", keys.as_str()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    (keys.join("signing.asc"), keys.join("signing.pub.asc"))
}

/// `rpm -Kv` on each of `rpms` with `public_key` imported into a scratch rpmdb under `dir`: every
/// package must carry a good V4 RSA/SHA256 header signature and nothing may be NOT OK.
pub fn assert_rpm_signatures(dir: &Utf8Path, public_key: &Utf8Path, rpms: &[Utf8PathBuf]) {
    let db = dir.join("rpmdb");
    tool("rpm", &["--dbpath", db.as_str(), "--initdb"]);
    tool("rpm", &["--dbpath", db.as_str(), "--import", public_key.as_str()]);
    for rpm in rpms {
        let out = tool("rpm", &["--dbpath", db.as_str(), "-Kv", rpm.as_str()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Header V4 RSA/SHA256 Signature")
                && text.contains(": OK")
                && !text.contains("NOT OK"),
            "{rpm}: {text}"
        );
    }
}

/// Runs `xspack` with `args`.
pub fn run(args: &[&str]) -> Output {
    xspack().args(args).output().expect("xspack runs")
}

/// Runs an oracle tool and requires success; the panic names the tool and its output.
pub fn tool(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (install it with just oracles): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts that `qemu-img compare` finds the raw image `raw` and `other`, an image in qemu's
/// format `format` (`vpc`, `qcow2`), to hold the same disk.
pub fn assert_same_disk(raw: &Utf8Path, format: &str, other: &Utf8Path) {
    let compare = tool_stdout(
        "qemu-img",
        &["compare", "-f", "raw", "-F", format, raw.as_str(), other.as_str()],
    );
    assert!(compare.contains("Images are identical"), "{raw} against {other}: {compare}");
}

/// [`tool`]'s stdout as text.
pub fn tool_stdout(program: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&tool(program, args).stdout).into_owned()
}

/// The error shape: `xspack: error: <input>: <what is wrong>` on one line, then at most one
/// `hint: <fix>` line. Returns the hint.
pub fn error_hint(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.first().is_some_and(|l| l.starts_with("xspack: error: ")), "{stderr}");
    assert!(lines.len() <= 2, "one error line and at most one hint: {stderr}");
    lines.get(1).map(|l| l.strip_prefix("hint: ").expect("a hint line").to_owned())
}

/// stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

/// stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("UTF-8 stderr")
}

/// The exit code, which must exist (no death by signal).
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

/// Path of a golden file.
pub fn golden(name: &str) -> String {
    format!("{}/../../tests/golden/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A temporary directory with a UTF-8 path.
pub fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

/// A small committed build directory at `dest`, always with the same bytes.
pub fn sample_build(dest: &Utf8Path) {
    let tool = Tool { name: "xspack".into(), version: "0.1.0".into() };
    let mut out = OutputDir::create(dest, tool, EPOCH, false).unwrap();
    out.add_input(Input {
        name: "packs/demo/pack.toml".into(),
        kind: "pack".into(),
        digest: InputDigest(Sha256Digest::of_bytes(b"[pack]\n")),
        size: 7,
    });
    out.add_input(Input {
        name: "rpms/demo-1.0-1.noarch.rpm".into(),
        kind: "rpm".into(),
        digest: InputDigest(Sha256Digest::of_bytes(b"rpm")),
        size: 3,
    });
    let files: [(&str, Vec<u8>); 3] = [
        ("demo-1.0.iso", vec![0x11; 3 * 1024 * 1024 + 17]),
        ("demo-1.0.xva", (0..=255u8).cycle().take(100_000).collect()),
        ("templates/demo.json", b"{\"name\": \"demo\"}\n".to_vec()),
    ];
    for (name, body) in files {
        out.write_file(&RelPath::new(name).unwrap(), &body).unwrap();
    }
    out.commit().unwrap();
}

/// The names in `dir` (not recursive), sorted.
pub fn listing(dir: &Utf8Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}
