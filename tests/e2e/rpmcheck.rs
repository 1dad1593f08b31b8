//! rpm 4.18's own checks on every RPM a built pack ships ([`rpm_checks`]): `rpm -Kv` with the
//! pack's key, one `rpm -i` transaction of all of them into a throw-away root next to a stand-in
//! for dom0's base packages, `rpm -Va` on that root, `rpm2cpio | cpio -t` against each header's
//! file list, and dnf installing the `update` group from the ISO's repository. The pack tests
//! (`pack.rs`) run it on every pack under `packs/` and on a generated pack over 1 GiB; the test
//! here shows that it fails on a damaged package.
//!
//! What the rpm commands print is rpm 4.18's (Debian 12): `rpm -Kv` prints one line per header
//! signature and digest, then per header+payload signature and digest, in the order of
//! `rpmvsInit`'s table (`lib/rpmvs.c`, tag `rpm-4.18.0-release`,
//! github.com/rpm-software-management/rpm), each as `formatResult` (`lib/rpmchecksig.c`) makes it:
//! `<description>: OK` or `: BAD`, `: NOKEY`, `: NOTFOUND`.

use std::io::Read;
use std::process::{Command, Stdio};

use camino::{Utf8Path, Utf8PathBuf};

use crate::common::{tempdir, tool, tool_stdout};
use crate::pack::{dnf, extract, yum_conf};

/// Runs every check of this module on the update ISO `iso`, signed with the public key `key`;
/// panics naming the first package and check that fails.
pub fn rpm_checks(iso: &Utf8Path, key: &Utf8Path) {
    let (_t, dir) = tempdir();
    let tree = dir.join("iso");
    extract(iso, &tree);
    let rpms = rpms_in(&tree.join("Packages"));
    assert!(!rpms.is_empty(), "{iso}: no RPM under Packages/");
    let db = keyring(&dir, key);
    for rpm in &rpms {
        if let Err(e) = check_signatures(&db, rpm) {
            panic!("{iso}: {e}");
        }
    }
    let stub = dir.join("xcp-ng-release.rpm");
    release_stub(&stub);
    install_all_and_verify(&dir, key, &stub, &rpms);
    for rpm in &rpms {
        assert_payload_lists_header_files(&db, rpm);
    }
    dnf_installs_the_update_group(&dir, &tree, &stub, &rpms);
}

/// `rpm -Kv` only, on the RPMs at the top of the legacy ISO `iso` (a legacy pack's RPMs sit next
/// to `XS-PACKAGES`).
pub fn legacy_rpm_signatures(iso: &Utf8Path, key: &Utf8Path) {
    let (_t, dir) = tempdir();
    let tree = dir.join("iso");
    extract(iso, &tree);
    let rpms = rpms_in(&tree);
    assert!(!rpms.is_empty(), "{iso}: no RPM at the top");
    let db = keyring(&dir, key);
    for rpm in &rpms {
        if let Err(e) = check_signatures(&db, rpm) {
            panic!("{iso}: {e}");
        }
    }
}

/// The `*.rpm` files in `dir`, sorted.
pub fn rpms_in(dir: &Utf8Path) -> Vec<Utf8PathBuf> {
    let mut rpms: Vec<Utf8PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap())
        .filter(|p| p.extension() == Some("rpm"))
        .collect();
    rpms.sort();
    rpms
}

/// A scratch rpmdb under `dir` holding only the public key `key`.
pub fn keyring(dir: &Utf8Path, key: &Utf8Path) -> Utf8PathBuf {
    let db = dir.join("keyring");
    tool("rpm", &["--dbpath", db.as_str(), "--initdb"]);
    tool("rpm", &["--dbpath", db.as_str(), "--import", key.as_str()]);
    db
}

/// `rpm -Kv` of `rpm` against the keys in the rpmdb `db`: the exit code is 0 and the package has
/// exactly the signatures and digests xspack writes (docs/rpm.md), each `OK`, with the key of
/// `db`. The error is what rpm printed.
pub fn check_signatures(db: &Utf8Path, rpm: &Utf8Path) -> Result<(), String> {
    // The short key ID rpm prints: the version of the gpg-pubkey package `--import` made.
    let key_id =
        tool_stdout("rpm", &["--dbpath", db.as_str(), "-q", "gpg-pubkey", "--qf", "%{VERSION}"]);
    let out = Command::new("rpm")
        .args(["--dbpath", db.as_str(), "-Kv", rpm.as_str()])
        .output()
        .expect("rpm runs (install it with just oracles)");
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let want = [
        format!("{rpm}:"),
        format!("Header V4 RSA/SHA256 Signature, key ID {key_id}: OK"),
        "Header SHA256 digest: OK".into(),
        "Header SHA1 digest: OK".into(),
        "Payload SHA256 digest: OK".into(),
        format!("V4 RSA/SHA256 Signature, key ID {key_id}: OK"),
        "MD5 digest: OK".into(),
    ];
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    if out.status.success() && lines == want {
        Ok(())
    } else {
        Err(format!("rpm -Kv exited {:?}, want {want:#?}, got:\n{text}", out.status.code()))
    }
}

/// An RPM standing in for the XenServer/XCP-ng release package and dom0's base: it provides
/// `platform-version` 3.2.1 (XCP-ng 8.2.1; the packs require `>= 2.2.0`) and
/// `product-version`, and holds a static busybox as `/bin/sh` and `rm` for the scriptlets rpm
/// runs chrooted into the root, and a fake `create-guest-templates-wrapper` (what template
/// RPMs call in `%posttrans`) that appends its call to `/var/log/calls.log`.
pub fn release_stub(dest: &Utf8Path) {
    use xspack_rpmrepo::{Comparison, Dependency, RpmBuilder};
    let busybox = tool_stdout("sh", &["-c", "command -v busybox"]);
    let (file, _) = RpmBuilder::new("xcp-ng-release", "8.2.1", "1")
        .summary("release stub")
        .description("Provides what the control RPM requires, and a shell for scriptlets.")
        .license("MIT")
        .source_date(1_700_000_000)
        .provides(Dependency::versioned("platform-version", Comparison::Eq, "3.2.1"))
        .provides(Dependency::versioned("product-version", Comparison::Eq, "8.2.1"))
        .file_from_disk(busybox.trim(), "/bin/busybox", 0o755)
        .symlink("/bin/sh", "busybox")
        .symlink("/bin/rm", "busybox")
        .file_from_bytes(
            "#!/bin/sh\necho \"create-guest-templates-wrapper $*\" >> /var/log/calls.log\n",
            "/usr/bin/create-guest-templates-wrapper",
            0o755,
        )
        .dir("/var/log", 0o755)
        .dir("/run", 0o755)
        .write(std::fs::File::create(dest).unwrap(), None)
        .unwrap();
    drop(file);
}

/// A fresh root `dir/name` with an rpmdb holding `key`.
fn stub_root(dir: &Utf8Path, name: &str, key: &Utf8Path) -> Utf8PathBuf {
    let root = dir.join(name);
    tool("rpm", &["--root", root.as_str(), "--initdb"]);
    tool("rpm", &["--root", root.as_str(), "--import", key.as_str()]);
    root
}

/// Installs the stub and all of `rpms` in one `rpm -i` transaction, scriptlets and signature
/// checks included, into a throw-away root; then `rpm -Va` finds every installed file as its
/// header describes it (no output, exit 0). The root is removed afterwards.
fn install_all_and_verify(dir: &Utf8Path, key: &Utf8Path, stub: &Utf8Path, rpms: &[Utf8PathBuf]) {
    let root = stub_root(dir, "rpm-root", key);
    let mut args = vec!["--root", root.as_str(), "-i", stub.as_str()];
    args.extend(rpms.iter().map(|r| r.as_str()));
    let out = tool("rpm", &args);
    // Debian's rpm prints these two lines on every install without its own `--force-debian`
    // option; any other line on stderr is a warning about the packages (NOKEY, a scriptlet).
    let warnings: Vec<&str> = std::str::from_utf8(&out.stderr)
        .unwrap()
        .lines()
        .filter(|l| {
            !l.starts_with("rpm: RPM should not be used directly")
                && !l.starts_with("rpm: However assuming you know")
        })
        .collect();
    assert!(
        warnings.is_empty(),
        "rpm -i warned: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The scriptlets ran under the root's /bin/sh: one wrapper call per %posttrans that has it.
    let posttrans = rpms
        .iter()
        .filter(|r| {
            let script = tool_stdout(
                "rpm",
                &["--root", root.as_str(), "-qp", "--qf", "%{POSTTRANS}", r.as_str()],
            );
            script.contains("create-guest-templates-wrapper")
        })
        .count();
    let calls = std::fs::read_to_string(root.join("var/log/calls.log")).unwrap_or_default();
    assert_eq!(calls.lines().count(), posttrans, "{calls}");
    let installed = tool_stdout("rpm", &["--root", root.as_str(), "-qa", "--qf", "%{NAME}\n"]);
    assert_eq!(
        installed.lines().filter(|l| !l.starts_with("gpg-pubkey")).count(),
        rpms.len() + 1,
        "{installed}"
    );
    let verify = Command::new("rpm").args(["--root", root.as_str(), "-Va"]).output().unwrap();
    assert!(
        verify.status.success() && verify.stdout.is_empty() && verify.stderr.is_empty(),
        "rpm -Va exited {:?}: {}{}",
        verify.status.code(),
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// `rpm2cpio rpm | cpio -t`: both exit 0 and the archive holds exactly the files the header
/// lists (`./`-prefixed in the archive, docs/rpm.md).
fn assert_payload_lists_header_files(db: &Utf8Path, rpm: &Utf8Path) {
    let mut header: Vec<String> = tool_stdout(
        "rpm",
        &["--dbpath", db.as_str(), "-qp", "--qf", "[%{FILENAMES}\n]", rpm.as_str()],
    )
    .lines()
    .map(str::to_owned)
    .collect();
    header.sort();
    let mut rpm2cpio = Command::new("rpm2cpio")
        .arg(rpm)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("rpm2cpio runs (install it with just oracles)");
    let cpio = Command::new("cpio")
        .args(["-t", "--quiet"])
        .stdin(rpm2cpio.stdout.take().unwrap())
        .output()
        .expect("cpio runs (install it with just oracles)");
    let mut err = String::new();
    rpm2cpio.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = rpm2cpio.wait().unwrap();
    assert!(status.success() && err.is_empty(), "rpm2cpio {rpm}: {status}: {err}");
    assert!(
        cpio.status.success() && cpio.stderr.is_empty(),
        "cpio -t of {rpm}: {}: {}",
        cpio.status,
        String::from_utf8_lossy(&cpio.stderr)
    );
    let mut archive: Vec<String> = String::from_utf8(cpio.stdout)
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix('.').unwrap_or_else(|| panic!("{rpm}: {l} lacks ./")).to_owned())
        .collect();
    archive.sort();
    assert_eq!(archive, header, "{rpm}: cpio -t against the header's FILENAMES");
}

/// dnf, configured as xapi configures yum for an update, installs the `update` group from the
/// extracted ISO `tree` into a fresh root holding only the release stub: every package but
/// `control-*` ends up installed. The root is removed afterwards.
fn dnf_installs_the_update_group(
    dir: &Utf8Path,
    tree: &Utf8Path,
    stub: &Utf8Path,
    rpms: &[Utf8PathBuf],
) {
    let key_name = crate::common::listing(tree)
        .into_iter()
        .find(|n| n.starts_with("RPM-GPG-KEY-"))
        .expect("the update ISO carries its public key");
    let root = dir.join("dnf-root");
    tool("rpm", &["--root", root.as_str(), "--initdb"]);
    tool("rpm", &["--root", root.as_str(), "-i", "--nosignature", stub.as_str()]);
    let conf = yum_conf(dir, tree, "pack", &key_name);
    let out = dnf(&conf, &root, &dir.join("dnf-cache"), &["install", "@update"]);
    assert!(
        out.status.success(),
        "dnf install @update: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for rpm in rpms {
        let name = tool_stdout("rpm", &["-qp", "--nosignature", "--qf", "%{NAME}", rpm.as_str()]);
        if !name.starts_with("control-") {
            tool("rpm", &["--root", root.as_str(), "-q", &name]);
        }
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_signature_check_catches_a_flipped_payload_byte() {
    let (_t, dir) = tempdir();
    let (secret, public) = crate::common::keygen(&dir);
    let dist = crate::pack::build("demo", &dir, "dist", &secret);
    let tree = dir.join("x");
    extract(&dist.join("xspack-demo-1.0.0-1-update.iso"), &tree);
    let db = keyring(&dir, &public);
    let rpm = tree.join("Packages/xspack-demo-1.0.0-1.noarch.rpm");
    check_signatures(&db, &rpm).unwrap();
    // One bit inside the compressed payload, which ends the file (before gzip's 8-byte trailer).
    let mut bytes = std::fs::read(&rpm).unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 0x01;
    std::fs::write(&rpm, bytes).unwrap();
    let err = check_signatures(&db, &rpm).unwrap_err();
    for bad in ["Payload SHA256 digest: BAD", "MD5 digest: BAD", "V4 RSA/SHA256 Signature"] {
        assert!(err.contains(bad), "{bad:?} missing from: {err}");
    }
    // The header checks still pass: only the payload changed.
    assert!(err.contains("Header SHA256 digest: OK"), "{err}");
    // And one bit in the header (its name, past the 96-byte lead and the signature header).
    let other = tree.join("Packages/xspack-demo-templates-1.0.0-1.noarch.rpm");
    let mut bytes = std::fs::read(&other).unwrap();
    let name = b"xspack-demo-templates";
    let at = bytes.windows(name.len()).skip(96).position(|w| w == name).unwrap() + 96;
    bytes[at] ^= 0x20;
    std::fs::write(&other, bytes).unwrap();
    let err = check_signatures(&db, &other).unwrap_err();
    assert!(err.contains("Header SHA256 digest: BAD"), "{err}");
}
