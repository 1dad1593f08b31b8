//! `xspack pack`: the example packs built, then checked by the tools a XenServer host and its
//! build engineers use: isoinfo and xorriso, `rpm -K`, gpg as xapi runs it, dnf precheck and
//! apply into a fake root, and the legacy install script against a fake root with a fake `xe`
//! (`docs/formats/packs.md` section "Checking without a host").

use std::process::{Command, Output};

use camino::{Utf8Path, Utf8PathBuf};

use crate::common::{
    assert_rpm_signatures, code, error_hint, keygen, repo_root, run, stderr, tempdir, tool, xspack,
};
use crate::rpmcheck::{legacy_rpm_signatures, release_stub, rpm_checks};

const EPOCH: &str = "1700000000";

/// Builds `packs/<pack>` into `dir/<out>` signed with `key`.
pub(crate) fn build(pack: &str, dir: &Utf8Path, out: &str, key: &Utf8Path) -> Utf8PathBuf {
    let dest = dir.join(out);
    let src = repo_root().join("packs").join(pack);
    let o = xspack()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args([
            "-q",
            "pack",
            "build",
            src.as_str(),
            "--sign-key",
            key.as_str(),
            "-o",
            dest.as_str(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    dest
}

/// Extracts an ISO with xorriso (Rock Ridge names and modes).
pub(crate) fn extract(iso: &Utf8Path, dest: &Utf8Path) {
    tool("xorriso", &["-osirrox", "on", "-indev", iso.as_str(), "-extract", "/", dest.as_str()]);
}

fn mode(path: &Utf8Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn iso_tools_read_both_formats() {
    let (_t, dir) = tempdir();
    let (secret, public) = keygen(&dir);
    let dist = build("demo", &dir, "dist", &secret);
    let legacy = dist.join("xspack-demo-1.0.0-1.iso");
    let update = dist.join("xspack-demo-1.0.0-1-update.iso");
    for iso in [&legacy, &update] {
        let d = String::from_utf8(tool("isoinfo", &["-d", "-i", iso.as_str()]).stdout).unwrap();
        assert!(d.contains("Volume id: XSPACK_DEMO"), "{d}");
        assert!(
            d.contains("Rock Ridge signatures version 1 found")
                && d.contains("Joliet with UCS level 3 found"),
            "{d}"
        );
        let out = run(&["pack", "verify", iso.as_str(), "--key", public.as_str()]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let listing =
        String::from_utf8(tool("isoinfo", &["-R", "-l", "-i", legacy.as_str()]).stdout).unwrap();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x") && l.trim_end().ends_with(" install.sh")),
        "{listing}"
    );
    let joliet =
        String::from_utf8(tool("isoinfo", &["-J", "-f", "-i", update.as_str()]).stdout).unwrap();
    assert!(
        joliet.contains("/repodata/repomd.xml.asc")
            && joliet.contains("/Packages/update-xspack-demo-1.0.0-1.noarch.rpm"),
        "{joliet}"
    );
    // Extracted files are byte-equal to what the legacy metadata promises, scripts executable.
    let x = dir.join("x");
    extract(&legacy, &x);
    assert_eq!(mode(&x.join("install.sh")), 0o755);
    assert_eq!(mode(&x.join("install")), 0o755);
    let pkgs = std::fs::read_to_string(x.join("XS-PACKAGES")).unwrap();
    for rpm in ["xspack-demo-1.0.0-1.noarch.rpm", "xspack-demo-templates-1.0.0-1.noarch.rpm"] {
        let md5 = String::from_utf8(tool("md5sum", &[x.join(rpm).as_str()]).stdout).unwrap();
        let md5 = md5.split_whitespace().next().unwrap();
        assert!(pkgs.contains(&format!("md5=\"{md5}\">{rpm}<")), "{pkgs}");
    }
    // The payload comes first in install order: the templates RPM requires the plugin RPM.
    assert!(
        pkgs.find("xspack-demo-1.0.0").unwrap() < pkgs.find("xspack-demo-templates").unwrap(),
        "{pkgs}"
    );
}

#[test]
fn rpm_and_gpg_accept_the_signatures() {
    let (_t, dir) = tempdir();
    let (secret, public) = keygen(&dir);
    let dist = build("demo", &dir, "dist", &secret);
    let x = dir.join("x");
    extract(&dist.join("xspack-demo-1.0.0-1-update.iso"), &x);
    // rpm -K with the key in a scratch rpmdb.
    let rpms: Vec<Utf8PathBuf> = std::fs::read_dir(x.join("Packages"))
        .unwrap()
        .map(|e| Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap())
        .collect();
    assert_rpm_signatures(&dir, &x.join("RPM-GPG-KEY-xspack"), &rpms);
    // gpg as xapi runs it: GOODSIG and TRUST_ULTIMATE for update.xml and repomd.xml.
    let home = dir.join("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    tool("gpg", &["--batch", "--homedir", home.as_str(), "--import", public.as_str()]);
    let fpr = String::from_utf8(
        tool("gpg", &["--batch", "--homedir", home.as_str(), "--with-colons", "--list-keys"])
            .stdout,
    )
    .unwrap();
    let fpr =
        fpr.lines().find(|l| l.starts_with("fpr:")).unwrap().split(':').nth(9).unwrap().to_owned();
    let trust = dir.join("trust.txt");
    std::fs::write(&trust, format!("{fpr}:6:\n")).unwrap();
    tool("gpg", &["--batch", "--homedir", home.as_str(), "--import-ownertrust", trust.as_str()]);
    for file in ["update.xml", "repodata/repomd.xml"] {
        let f = x.join(file);
        let out = tool(
            "gpg",
            &[
                "--batch",
                "--homedir",
                home.as_str(),
                "--status-fd",
                "1",
                "--verify",
                &format!("{f}.asc"),
                f.as_str(),
            ],
        );
        let status = String::from_utf8_lossy(&out.stdout);
        assert!(
            status.contains("[GNUPG:] GOODSIG") && status.contains("[GNUPG:] TRUST_ULTIMATE"),
            "{file}: {status}"
        );
    }
    // A one-byte change to repomd.xml breaks its signature, for gpg and for pack verify.
    let repomd = x.join("repodata/repomd.xml");
    let mut bytes = std::fs::read(&repomd).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&repomd, bytes).unwrap();
    let bad = Command::new("gpg")
        .args([
            "--batch",
            "--homedir",
            home.as_str(),
            "--verify",
            &format!("{repomd}.asc"),
            repomd.as_str(),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

/// The xapi yum configuration (`docs/formats/packs.md` section "Apply"), for an extracted pack.
pub(crate) fn yum_conf(dir: &Utf8Path, repo: &Utf8Path, label: &str, key: &str) -> Utf8PathBuf {
    let conf = dir.join("yum.conf");
    std::fs::write(
        &conf,
        format!(
            "[main]\nkeepcache=0\nreposdir=/dev/null\ngpgcheck=1\nrepo_gpgcheck=1\ninstallonlypkgs=\ngroup_command=compat\n\n\
             [{label}]\nname={label}\nbaseurl=file://{repo}\ngpgkey=file://{repo}/{key}\n"
        ),
    )
    .unwrap();
    conf
}

pub(crate) fn dnf(conf: &Utf8Path, root: &Utf8Path, cache: &Utf8Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("dnf");
    cmd.args([
        "-y",
        "-c",
        conf.as_str(),
        "--installroot",
        root.as_str(),
        "--releasever=8",
        "--noplugins",
        "--setopt",
        &format!("cachedir={cache}"),
    ]);
    cmd.args(args);
    cmd.output().expect("dnf runs (install it with just oracles)")
}

#[test]
fn dnf_prechecks_and_applies_into_a_fake_root() {
    let (_t, dir) = tempdir();
    let (secret, _public) = keygen(&dir);
    let dist = build("demo", &dir, "dist", &secret);
    let x = dir.join("repo");
    extract(&dist.join("xspack-demo-1.0.0-1-update.iso"), &x);
    // A fake dom0: an rpmdb and the release package's platform-version provide.
    let root = dir.join("root");
    tool("rpm", &["--root", root.as_str(), "--initdb"]);
    let stub = dir.join("stub.rpm");
    release_stub(&stub);
    tool("rpm", &["--root", root.as_str(), "-i", "--nosignature", "--noscripts", stub.as_str()]);
    let conf = yum_conf(&dir, &x, "xspack-demo", "RPM-GPG-KEY-xspack");
    let cache = dir.join("cache");
    let pre = dnf(&conf, &root, &cache, &["install", "control-xspack-demo"]);
    assert!(
        pre.status.success(),
        "precheck: {}{}",
        String::from_utf8_lossy(&pre.stdout),
        String::from_utf8_lossy(&pre.stderr)
    );
    let apply = dnf(&conf, &root, &cache, &["install", "@update"]);
    assert!(
        apply.status.success(),
        "apply: {}{}",
        String::from_utf8_lossy(&apply.stdout),
        String::from_utf8_lossy(&apply.stderr)
    );
    // xapi's resync_host reads /var/update/applied/<uuid>: it must parse as update.xml.
    let applied: Vec<_> = std::fs::read_dir(root.join("var/update/applied"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(applied.len(), 1, "{applied:?}");
    let text = std::fs::read_to_string(&applied[0]).unwrap();
    assert_eq!(text, std::fs::read_to_string(x.join("update.xml")).unwrap());
    assert!(
        root.join("usr/bin/xspack-demo").is_file()
            && root.join("etc/xapi.d/vm-templates/xspack-demo.json").is_file()
    );
    // A tampered repomd.xml is refused by the repo signature check.
    let repomd = x.join("repodata/repomd.xml");
    let text = std::fs::read_to_string(&repomd).unwrap().replacen("<revision>", "<revision>1", 1);
    std::fs::write(&repomd, text).unwrap();
    let root2 = dir.join("root2");
    tool("rpm", &["--root", root2.as_str(), "--initdb"]);
    let tampered = dnf(&conf, &root2, &dir.join("cache2"), &["install", "control-xspack-demo"]);
    assert!(!tampered.status.success(), "a tampered repomd.xml was accepted");
    let err = String::from_utf8_lossy(&tampered.stderr);
    assert!(
        err.to_lowercase().contains("gpg") || err.to_lowercase().contains("signature"),
        "{err}"
    );
}

/// A fake XenServer 6.x/7.0 host for the legacy install script.
struct FakeHost {
    root: Utf8PathBuf,
    bin: Utf8PathBuf,
    xe_log: Utf8PathBuf,
}

fn fake_host(dir: &Utf8Path, platform_version: Option<&str>) -> FakeHost {
    let root = dir.join("host");
    std::fs::create_dir_all(root.join("etc/xensource/installed-repos")).unwrap();
    std::fs::write(root.join("etc/xensource-inventory"), "PRODUCT_BRAND='XenServer'\nPLATFORM_NAME='XCP'\nINSTALLATION_UUID='0e2c7c2a-2d7b-4c47-9b4c-5c8d5d0e0001'\n").unwrap();
    if let Some(v) = platform_version {
        let main = root.join("etc/xensource/installed-repos/xcp:main");
        std::fs::create_dir_all(&main).unwrap();
        std::fs::write(main.join("XS-REPOSITORY"), format!("<repository originator=\"xcp\" name=\"main\" product=\"XCP\" version=\"{v}\" build=\"x\">\n  <description>XCP</description>\n</repository>\n")).unwrap();
    }
    tool("rpm", &["--root", root.as_str(), "--initdb"]);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let xe_log = dir.join("xe.log");
    std::fs::write(bin.join("xe"), format!("#!/bin/sh\necho \"$@\" >> '{xe_log}'\n")).unwrap();
    std::fs::set_permissions(bin.join("xe"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .unwrap();
    FakeHost { root, bin, xe_log }
}

fn install(x: &Utf8Path, host: &FakeHost) -> Output {
    Command::new("sh")
        .arg(x.join("install.sh"))
        .arg("-b")
        .env("XSPACK_ROOT", &host.root)
        .env("XSPACK_RPM", format!("rpm --root {}", host.root))
        .env("XSPACK_RPM_INSTALL_OPTS", "--nodeps --noscripts --nosignature")
        .env("PATH", format!("{}:{}", host.bin, std::env::var("PATH").unwrap()))
        .output()
        .unwrap()
}

#[test]
fn legacy_install_script_installs_and_records_the_pack() {
    let (_t, dir) = tempdir();
    let (secret, _) = keygen(&dir);
    let dist = build("demo", &dir, "dist", &secret);
    let x = dir.join("x");
    extract(&dist.join("xspack-demo-1.0.0-1.iso"), &x);

    let host = fake_host(&dir.join("ok"), Some("2.1.0"));
    let out = install(&x, &host);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Pack installation successful."), "{text}");
    tool("rpm", &["--root", host.root.as_str(), "-q", "xspack-demo", "xspack-demo-templates"]);
    let recorded = host.root.join("etc/xensource/installed-repos/xspack:xspack-demo");
    assert_eq!(
        std::fs::read(recorded.join("XS-REPOSITORY")).unwrap(),
        std::fs::read(x.join("XS-REPOSITORY")).unwrap()
    );
    assert!(recorded.join("XS-PACKAGES").is_file());
    let log = std::fs::read_to_string(&host.xe_log).unwrap();
    assert_eq!(log, "host-refresh-pack-info host-uuid=0e2c7c2a-2d7b-4c47-9b4c-5c8d5d0e0001\n");
    // A second run skips what is installed and still succeeds in batch mode.
    let again = install(&x, &host);
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stdout).contains("is already installed"));

    // Missing requirement: fatal, exit 1, nothing recorded.
    let host = fake_host(&dir.join("missing"), None);
    let out = install(&x, &host);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("FATAL: missing dependency xcp:main ge 1.9.0")
    );
    assert!(!host.root.join("etc/xensource/installed-repos/xspack:xspack-demo").exists());
    // Too old a platform: unsatisfied, and batch mode answers no with exit 2.
    let host = fake_host(&dir.join("old"), Some("1.8.9"));
    let out = install(&x, &host);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("unsatisfied dependency xcp:main ge 1.9.0 (installed: 1.8.9)")
    );
    // A corrupted RPM is caught by its MD5 before anything is installed.
    let rpm = x.join("xspack-demo-1.0.0-1.noarch.rpm");
    let mut bytes = std::fs::read(&rpm).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&rpm, bytes).unwrap();
    let host = fake_host(&dir.join("md5"), Some("2.1.0"));
    let out = install(&x, &host);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("FATAL: MD5 mismatch for xspack-demo-1.0.0-1.noarch.rpm")
    );
}

#[test]
fn same_inputs_same_isos() {
    let (_t, dir) = tempdir();
    let (secret, _) = keygen(&dir);
    let a = build("demo", &dir, "a", &secret);
    let b = build("demo", &dir, "b", &secret);
    assert_eq!(
        std::fs::read(a.join("SHA256SUMS")).unwrap(),
        std::fs::read(b.join("SHA256SUMS")).unwrap()
    );
}

/// Payloads are compressed on every core in fixed-size blocks: a pack whose payload spans many
/// gzip blocks comes out the same on one core (`taskset`, which `available_parallelism`
/// follows) as on all of them.
#[test]
fn the_same_isos_on_one_core_and_on_all() {
    let (_t, dir) = tempdir();
    let (secret, _) = keygen(&dir);
    let pack = dir.join("multi");
    std::fs::create_dir_all(pack.join("files")).unwrap();
    // 6 MiB: a dozen 512 KiB blocks of text that compresses, and of bytes that do not.
    let mut data = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..(6 << 20) / 8 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let word = if i % 3 == 0 { x } else { u64::from_le_bytes(*b"log line") };
        data.extend_from_slice(&word.to_le_bytes());
    }
    std::fs::write(pack.join("files/data"), data).unwrap();
    std::fs::write(
        pack.join("pack.toml"),
        "[pack]\nname = \"multi\"\nversion = \"1.0.0\"\nbuild = \"1\"\noriginator = \"xspack\"\n\
         description = \"many blocks\"\n\n[[package]]\nname = \"multi\"\nversion = \"1\"\n\
         summary = \"s\"\ndescription = \"d\"\nfiles = [{ src = \"files/data\", dest = \"/opt/m\" }]\n",
    )
    .unwrap();
    let sums = |out: &str, one_core: bool| {
        let dest = dir.join(out);
        let mut cmd = if one_core {
            let mut c = std::process::Command::new("taskset");
            c.args(["-c", "0", env!("CARGO_BIN_EXE_xspack")]);
            c
        } else {
            xspack()
        };
        let o = cmd
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .args(["-q", "pack", "build", pack.as_str(), "--sign-key", secret.as_str(), "-o"])
            .arg(&dest)
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        std::fs::read_to_string(dest.join("SHA256SUMS")).unwrap()
    };
    let all = sums("all", false);
    assert_eq!(all.lines().count(), 2, "{all}");
    assert_eq!(sums("one", true), all);
}

/// A copy of packs/demo in `dir` to break.
fn demo_copy(dir: &Utf8Path) -> Utf8PathBuf {
    let dest = dir.join("demo");
    std::fs::create_dir_all(dir).unwrap();
    tool("cp", &["-r", repo_root().join("packs/demo").as_str(), dest.as_str()]);
    dest
}

/// Builds `pack`, which must fail with `exit` and the error `want`; returns the hint line.
fn build_fails(pack: &Utf8Path, key: &Utf8Path, want: &str, exit: i32) -> Option<String> {
    let out_dir = pack.with_file_name("out");
    let out = xspack()
        .args([
            "-q",
            "pack",
            "build",
            pack.as_str(),
            "--sign-key",
            key.as_str(),
            "-o",
            out_dir.as_str(),
        ])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), exit, "{err}");
    let hint = error_hint(&err);
    assert!(err.lines().next().unwrap().contains(want), "want {want:?} in {err}");
    assert!(!out_dir.exists(), "no output after a failure");
    hint
}

#[test]
fn bad_packs_fail_cleanly() {
    let (_t, dir) = tempdir();
    let (secret, _) = keygen(&dir);
    // A typo in pack.toml names file, line and column.
    let pack = demo_copy(&dir.join("typo"));
    let toml = pack.join("pack.toml");
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("originator = \"xspack\"", "orginator = \"xspack\"");
    std::fs::write(&toml, text).unwrap();
    let hint = build_fails(&pack, &secret, &format!("{toml}:7:1: unknown field `orginator`"), 3);
    assert_eq!(
        hint.as_deref(),
        Some(
            "valid keys here: name, version, build, originator, description, formats, target \
             (see packs/README.md)"
        )
    );
    // An invalid label.
    let pack = demo_copy(&dir.join("label"));
    let toml = pack.join("pack.toml");
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("name = \"xspack-demo\"\nversion", "name = \"xspack demo\"\nversion");
    std::fs::write(&toml, text).unwrap();
    assert_eq!(build_fails(&pack, &secret, "pack.name", 3), None);
    // A missing payload file.
    let pack = demo_copy(&dir.join("missing"));
    std::fs::remove_file(pack.join("files/plugin")).unwrap();
    assert_eq!(build_fails(&pack, &secret, "files/plugin", 3), None);
    // A corrupt prebuilt RPM, and a duplicate NEVRA.
    let pack = demo_copy(&dir.join("corrupt"));
    std::fs::create_dir(pack.join("rpms")).unwrap();
    std::fs::write(pack.join("rpms/broken-1-1.noarch.rpm"), b"\xed\xab\xee\xdbnot really an rpm")
        .unwrap();
    let toml = pack.join("pack.toml");
    std::fs::write(
        &toml,
        std::fs::read_to_string(&toml).unwrap() + "\n[[rpm]]\npath = \"rpms/*.rpm\"\n",
    )
    .unwrap();
    assert_eq!(build_fails(&pack, &secret, "broken-1-1.noarch.rpm", 3), None);
    // Two RPMs with the same NEVRA: a prebuilt copy of a package the pack also builds.
    let pack = demo_copy(&dir.join("dup"));
    let built = build("demo", &dir.join("dup"), "first", &secret);
    let x = dir.join("dup/x");
    extract(&built.join("xspack-demo-1.0.0-1.iso"), &x);
    std::fs::create_dir(pack.join("rpms")).unwrap();
    std::fs::copy(
        x.join("xspack-demo-1.0.0-1.noarch.rpm"),
        pack.join("rpms/xspack-demo-1.0.0-1.noarch.rpm"),
    )
    .unwrap();
    let toml = pack.join("pack.toml");
    std::fs::write(
        &toml,
        std::fs::read_to_string(&toml).unwrap() + "\n[[rpm]]\npath = \"rpms/*.rpm\"\n",
    )
    .unwrap();
    assert_eq!(
        build_fails(&pack, &secret, "duplicate package xspack-demo-1.0.0-1.noarch", 3),
        None
    );
    // A key that is not a key.
    let pack = demo_copy(&dir.join("key"));
    let bogus = dir.join("bogus.asc");
    std::fs::write(
        &bogus,
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nnope\n-----END PGP PRIVATE KEY BLOCK-----\n",
    )
    .unwrap();
    let hint = build_fails(&pack, &bogus, "bogus.asc", 3).unwrap();
    assert!(hint.contains("xspack pack keygen -o keys"), "{hint}");
    // A key file that is not there.
    let missing = dir.join("missing.asc");
    let hint = build_fails(&pack, &missing, "missing.asc: reading secret key", 3).unwrap();
    assert!(hint.contains("--sign-key keys/signing.asc"), "{hint}");
}

#[test]
fn verify_catches_a_wrong_key_and_tampering() {
    let (_t, dir) = tempdir();
    let (secret, _) = keygen(&dir);
    std::fs::create_dir(dir.join("other")).unwrap();
    let (_, other_public) = keygen(&dir.join("other"));
    let dist = build("demo", &dir, "dist", &secret);
    let update = dist.join("xspack-demo-1.0.0-1-update.iso");
    let out = run(&["pack", "verify", update.as_str(), "--key", other_public.as_str()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("update.xml.asc"), "{}", stderr(&out));
    // Flip one byte inside an RPM of the legacy ISO: its signature header no longer parses
    // (or, elsewhere, its digests and MD5 no longer match).
    let legacy = dist.join("xspack-demo-1.0.0-1.iso");
    let mut bytes = std::fs::read(&legacy).unwrap();
    let rpm_magic = [0xed, 0xab, 0xee, 0xdb];
    let at = bytes.windows(4).position(|w| w == rpm_magic).unwrap();
    bytes[at + 200] ^= 0x01;
    let tampered = dir.join("tampered.iso");
    std::fs::write(&tampered, bytes).unwrap();
    let out = run(&["pack", "verify", tampered.as_str()]);
    assert_eq!(code(&out), 3);
    let err = stderr(&out);
    assert!(err.contains(".noarch.rpm: corrupt RPM header"), "{err}");
}

/// Builds the pack directory `src` into `dest` signed with `key`, as `just pack` does
/// (`scripts/pack-all`: packs may use the repository's `templates/`).
fn build_dir(src: &Utf8Path, dest: &Utf8Path, key: &Utf8Path) {
    let templates = repo_root().join("templates");
    let o = xspack()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["-q", "pack", "build", src.as_str(), "--sign-key", key.as_str(), "-o"])
        .arg(dest)
        .args(["--allow-outside", templates.as_str()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{src}: {}", stderr(&o));
}

/// Every pack under packs/ (what `just pack` builds), built with a test key: the update ISO
/// passes all of `rpm_checks`, the legacy ISO's RPMs pass `rpm -Kv`.
#[test]
fn every_pack_passes_rpm_checks() {
    use xspack_pack::{PackFormat, PackSpec};
    let (_t, dir) = tempdir();
    let (secret, public) = keygen(&dir);
    let mut checked = Vec::new();
    for name in crate::common::listing(&repo_root().join("packs")) {
        let src = repo_root().join("packs").join(&name);
        let toml = src.join("pack.toml");
        if !toml.is_file() {
            continue;
        }
        let spec = PackSpec::load(&toml).unwrap();
        let dest = dir.join(&name);
        build_dir(&src, &dest, &secret);
        let stem = format!("{}-{}-{}", spec.pack.name, spec.pack.version, spec.pack.build);
        let mut want: Vec<String> = Vec::new();
        if spec.pack.formats.contains(&PackFormat::Legacy) {
            let iso = dest.join(format!("{stem}.iso"));
            legacy_rpm_signatures(&iso, &public);
            want.push(format!("{stem}.iso"));
        }
        if spec.pack.formats.contains(&PackFormat::Update) {
            let iso = dest.join(format!("{stem}-update.iso"));
            rpm_checks(&iso, &public);
            want.push(format!("{stem}-update.iso"));
        }
        want.extend(["SHA256SUMS".into(), "manifest.json".into()]);
        want.sort();
        assert_eq!(crate::common::listing(&dest), want, "{name}: the ISOs of its formats");
        checked.push(name);
    }
    assert!(checked.len() >= 2, "packs/ holds demo and guest-templates at least: {checked:?}");
}

/// Writes a pack of about 1.1 GB of generated data into `dir`: `data.bin`, 1040 MiB of one
/// pseudo-random 1 MiB block repeated with its index in its first 8 bytes (deflate's window is
/// 32 KiB, so gzip -9 cannot shrink it: the ISO, which holds the compressed RPM, stays over
/// 1 GiB; mostly zeros would make a pack of a few MB), and `zeros.bin`, 48 MiB of zeros (sparse)
/// with a 64 KiB block every 8 MiB, the part gzip does shrink. Generating it takes seconds; the
/// debug `pack build` of it about a minute on two cores, half of that in deflate.
fn big_pack(dir: &Utf8Path) -> Utf8PathBuf {
    use std::io::{Seek, SeekFrom, Write};
    const MIB: u64 = 1 << 20;
    let pack = dir.join("big");
    std::fs::create_dir_all(pack.join("files")).unwrap();
    let mut block = vec![0u8; 1 << 20];
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for word in block.chunks_exact_mut(8) {
        // xorshift64 (Marsaglia 2003): deterministic and fast enough unoptimised.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes());
    }
    let mut data =
        std::io::BufWriter::new(std::fs::File::create(pack.join("files/data.bin")).unwrap());
    for i in 0..1040u64 {
        block[..8].copy_from_slice(&i.to_le_bytes());
        data.write_all(&block).unwrap();
    }
    data.into_inner().unwrap().sync_all().unwrap();
    let mut zeros = std::fs::File::create(pack.join("files/zeros.bin")).unwrap();
    zeros.set_len(48 * MIB).unwrap();
    for at in (0..48).step_by(8) {
        zeros.seek(SeekFrom::Start(at * MIB)).unwrap();
        zeros.write_all(&block[..64 << 10]).unwrap();
    }
    std::fs::write(
        pack.join("pack.toml"),
        "[pack]\nname = \"xspack-big\"\nversion = \"1.0.0\"\nbuild = \"1\"\noriginator = \"xspack\"\n\
         description = \"a pack over 1 GiB\"\nformats = [\"update\"]\n\n\
         [update]\nbase-requires = [\"platform-version >= 2.2.0\"]\n\n\
         [[package]]\nname = \"xspack-big\"\nversion = \"1.0.0\"\nsummary = \"generated data\"\n\
         description = \"About 1.1 GB of generated data.\"\nlicense = \"MIT\"\nfiles = [\n\
         \x20 { src = \"files/data.bin\", dest = \"/opt/xspack-big/data.bin\" },\n\
         \x20 { src = \"files/zeros.bin\", dest = \"/opt/xspack-big/zeros.bin\" },\n]\n",
    )
    .unwrap();
    pack
}

/// A pack over 1 GiB, built signed in the update format: the ISO is over 1 GiB and passes every
/// rpm check.
#[test]
fn a_pack_over_1_gib_passes_rpm_checks() {
    let (_t, dir) = tempdir();
    let (secret, public) = keygen(&dir);
    let pack = big_pack(&dir);
    let dest = dir.join("dist");
    // Built under a probe that reports the peak RSS of the build (getrusage(2)
    // RUSAGE_CHILDREN): payloads, RPMs and the ISO are streamed, so 1 GiB needs no more
    // memory than a small pack.
    let probe = "import resource, subprocess, sys\n\
                 r = subprocess.run(sys.argv[1:])\n\
                 print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
                 sys.exit(r.returncode)\n";
    let o = std::process::Command::new("python3")
        .args(["-c", probe, env!("CARGO_BIN_EXE_xspack"), "-q", "pack", "build", pack.as_str()])
        .args(["--sign-key", secret.as_str(), "-o", dest.as_str()])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let peak_kib: u64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert!(peak_kib <= 128 << 10, "pack build of over 1 GiB peaked at {peak_kib} KiB");
    // The inputs are not needed any more: free their disk space before the checks use more.
    std::fs::remove_dir_all(&pack).unwrap();
    let iso = dest.join("xspack-big-1.0.0-1-update.iso");
    let size = std::fs::metadata(&iso).unwrap().len();
    assert!(size > 1 << 30, "{iso}: {size} bytes");
    rpm_checks(&iso, &public);
}

/// A 5 GiB file (sparse) in a `[[package]]`: rpm 4.11, the default target, cannot install a
/// file of 4 GiB or more (crates/rpmrepo/src/target.rs), so the build fails with exit 3
/// (bad input), one error line naming the file and the target, and no output.
#[test]
fn a_5_gib_file_is_refused_for_the_default_target() {
    let (_t, dir) = tempdir();
    let (secret, _) = keygen(&dir);
    let pack = dir.join("huge");
    std::fs::create_dir_all(pack.join("files")).unwrap();
    std::fs::File::create(pack.join("files/huge.img")).unwrap().set_len(5 << 30).unwrap();
    std::fs::write(
        pack.join("pack.toml"),
        "[pack]\nname = \"xspack-huge\"\nversion = \"1.0.0\"\nbuild = \"1\"\noriginator = \"xspack\"\n\
         description = \"a 5 GiB file\"\nformats = [\"update\"]\n\n\
         [[package]]\nname = \"xspack-huge\"\nversion = \"1.0.0\"\nsummary = \"huge\"\n\
         description = \"A 5 GiB file.\"\nlicense = \"MIT\"\n\
         files = [{ src = \"files/huge.img\", dest = \"/opt/xspack-huge/huge.img\" }]\n",
    )
    .unwrap();
    let out_dir = dir.join("out");
    let out = xspack()
        .args(["-q", "pack", "build", pack.as_str(), "--sign-key", secret.as_str(), "-o"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(code(&out), 3, "{err}");
    assert_eq!(error_hint(&err), None, "one line: {err}");
    for part in
        ["/opt/xspack-huge/huge.img", "files/huge.img", "5368709120", "rpm 4.11", "XenServer 8"]
    {
        assert!(err.contains(part), "{part:?} missing from: {err}");
    }
    assert!(!out_dir.exists(), "no output (so no ISO) after a refusal");
}
