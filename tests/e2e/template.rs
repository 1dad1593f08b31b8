//! `xspack template`: the shipped templates built into JSON, RPM and XVA, then checked by the tools
//! a host uses: `rpm -K` with the key in a scratch rpmdb, `rpm --root R -i` and `-e` with the
//! scriptlets run chrooted in a fake root against a fake `create-guest-templates-wrapper` and `xe`
//! (`docs/formats/templates.md` section "The template RPM"), `xspack verify` and `xva-img` on the
//! XVAs with isoinfo and blkid on the config drive (`docs/formats/config-drive.md`), and the
//! guest-templates pack built from `[[template]]`.

use std::process::Output;

use camino::{Utf8Path, Utf8PathBuf};

use crate::common::{
    assert_rpm_signatures, code, error_hint, golden, keygen, repo_root, run, stderr, stdout,
    tempdir, tool, xspack,
};

const EPOCH: &str = "1700000000";
const COREOS: &str = "xspack-coreos-container-host";

fn shipped(stem: &str) -> Utf8PathBuf {
    repo_root().join(format!("templates/{stem}.toml"))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `xspack template build TEMPLATE -o dir/out ARGS...`, which must succeed.
fn build(template: &Utf8Path, dir: &Utf8Path, out: &str, args: &[&str]) -> Utf8PathBuf {
    let dest = dir.join(out);
    let o = xspack()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["-q", "template", "build", template.as_str(), "-o", dest.as_str()])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    dest
}

#[test]
fn builds_json_rpm_and_xva_reproducibly() {
    let (_t, dir) = tempdir();
    let a = build(&shipped("coreos-container-host"), &dir, "a", &[]);
    let names = crate::common::listing(&a);
    assert_eq!(
        names,
        [
            "SHA256SUMS",
            "manifest.json",
            "xspack-coreos-container-host-template-1.0.0-1.noarch.rpm",
            "xspack-coreos-container-host.json",
            "xspack-coreos-container-host.xva",
        ]
    );
    // The JSON is the golden file, and the directory verifies.
    assert_eq!(
        std::fs::read_to_string(a.join(format!("{COREOS}.json"))).unwrap(),
        std::fs::read_to_string(golden(&format!("templates/{COREOS}.json"))).unwrap()
    );
    let out = run(&["verify", a.as_str()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let manifest = std::fs::read_to_string(a.join("manifest.json")).unwrap();
    assert!(
        manifest.contains("\"kind\": \"template\"") && manifest.contains("\"kind\": \"user-data\"")
    );
    // Same inputs, same bytes.
    let b = build(&shipped("coreos-container-host"), &dir, "b", &[]);
    assert_eq!(
        std::fs::read(a.join("SHA256SUMS")).unwrap(),
        std::fs::read(b.join("SHA256SUMS")).unwrap()
    );
    // --format picks artifacts; --json reports them.
    let o = xspack()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["--json", "template", "build", shipped("debian-guest").as_str(), "--format", "json"])
        .args(["--format", "xva", "-o", dir.join("c").as_str()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let result: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(result["name"], "xspack-debian-guest");
    let paths: Vec<&str> = result["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["xspack-debian-guest.json", "xspack-debian-guest.xva"]);
}

/// An RPM standing in for dom0's base: a static busybox as `/bin/sh` and `rm`, and fakes of
/// `create-guest-templates-wrapper` and `xe` that append their calls to `/var/log/calls.log`.
fn fake_dom0_rpm(dest: &Utf8Path) {
    use xspack_rpmrepo::RpmBuilder;
    let busybox = String::from_utf8(tool("sh", &["-c", "command -v busybox"]).stdout).unwrap();
    let fake = |name: &str| format!("#!/bin/sh\necho \"{name} $*\" >> /var/log/calls.log\n");
    let file = std::fs::File::create(dest).unwrap();
    RpmBuilder::new("fake-dom0", "1", "1")
        .summary("fake dom0")
        .description("A shell and the template loader's entry points, faked.")
        .source_date(1_700_000_000)
        .file_from_disk(busybox.trim(), "/bin/busybox", 0o755)
        .symlink("/bin/sh", "busybox")
        .symlink("/bin/rm", "busybox")
        .file_from_bytes(
            fake("create-guest-templates-wrapper"),
            "/usr/bin/create-guest-templates-wrapper",
            0o755,
        )
        .file_from_bytes(fake("xe"), "/usr/bin/xe", 0o755)
        .dir("/var/log", 0o755)
        .dir("/var/lib/misc", 0o755)
        .write(file, None)
        .unwrap();
}

#[test]
fn rpm_checks_the_signature_and_installs_into_a_fake_root() {
    let (_t, dir) = tempdir();
    let (secret, public) = keygen(&dir);
    let out = build(
        &shipped("coreos-container-host"),
        &dir,
        "out",
        &["--format", "rpm", "--sign-key", secret.as_str()],
    );
    let rpm = out.join(format!("{COREOS}-template-1.0.0-1.noarch.rpm"));
    // rpm -K with the key imported into a scratch rpmdb.
    assert_rpm_signatures(&dir, &public, std::slice::from_ref(&rpm));
    // A fake root: rpm installs the fake base, then the template RPM, running its scriptlets
    // chrooted (rpm --root needs root privileges to chroot).
    let root = dir.join("root");
    tool("rpm", &["--root", root.as_str(), "--initdb"]);
    tool("rpm", &["--root", root.as_str(), "--import", public.as_str()]);
    let base = dir.join("fake-dom0.rpm");
    fake_dom0_rpm(&base);
    tool("rpm", &["--root", root.as_str(), "-i", "--nosignature", base.as_str()]);
    let marker = root.join("var/lib/misc/ran-create-guest-templates");
    std::fs::write(&marker, "").unwrap();
    tool("rpm", &["--root", root.as_str(), "-i", rpm.as_str()]);
    let installed = root.join(format!("etc/xapi.d/vm-templates/{COREOS}.json"));
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(golden(&format!("templates/{COREOS}.json"))).unwrap()
    );
    let log = root.join("var/log/calls.log");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "create-guest-templates-wrapper \n");
    assert!(!marker.exists(), "%posttrans removes the marker so the service reloads at boot");
    // Erasing reloads again, so the template disappears; xe is never called directly.
    std::fs::write(&marker, "").unwrap();
    tool("rpm", &["--root", root.as_str(), "-e", &format!("{COREOS}-template")]);
    assert!(!installed.exists());
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "create-guest-templates-wrapper \ncreate-guest-templates-wrapper \n"
    );
    assert!(!marker.exists());
}

/// Extracts `xva` into `dir` and rebuilds the disk of `vdi_ref` with xva-img.
fn xva_img(xva: &Utf8Path, dir: &Utf8Path, vdi_ref: &str) -> Utf8PathBuf {
    let x = dir.join("x");
    if !x.exists() {
        std::fs::create_dir(&x).unwrap();
        tool("tar", &["-xf", xva.as_str(), "-C", x.as_str()]);
    }
    let raw = dir.join(format!("{vdi_ref}.raw"));
    tool("xva-img", &["-p", "disk-export", &format!("{x}/{vdi_ref}/"), raw.as_str()]);
    raw
}

/// Checks a config drive image as xscontainer made it (ISO 9660 labelled `config-2`) with
/// isoinfo and blkid: label, Rock Ridge names and the user data.
fn check_config_drive(raw: &Utf8Path, user_data: &[u8]) {
    let info = text(&tool("isoinfo", &["-d", "-i", raw.as_str()]));
    assert!(info.contains("Volume id: config-2\n"), "{info}");
    assert!(info.contains("Rock Ridge signatures version 1 found"), "{info}");
    assert!(info.contains("Joliet with UCS level 3 found"), "{info}");
    // What udev's /dev/disk/by-label (and so coreos-cloudinit, Ignition, cloud-init) sees.
    let probe = text(&tool("blkid", &["-p", "-o", "export", raw.as_str()]));
    assert!(probe.contains("\nLABEL=config-2\n") && probe.contains("\nTYPE=iso9660\n"), "{probe}");
    let read = |path: &str| tool("isoinfo", &["-R", "-i", raw.as_str(), "-x", path]).stdout;
    assert_eq!(read("/openstack/latest/user_data"), user_data);
    let meta = text(&tool(
        "isoinfo",
        &["-R", "-i", raw.as_str(), "-x", "/openstack/latest/meta_data.json"],
    ));
    assert!(meta.contains("\"uuid\":"), "{meta}");
}

#[test]
fn xva_with_disks_passes_verify_and_xva_img() {
    let (_t, dir) = tempdir();
    let image: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("root.raw"), &image).unwrap();
    let user_data = b"#cloud-config\nhostname: t\n";
    std::fs::write(dir.join("user-data"), user_data).unwrap();
    let toml = dir.join("t.toml");
    std::fs::write(
        &toml,
        "[template]\nname = \"t\"\nlabel = \"T CoreOS\"\nversion = \"1\"\nflavor = \"coreos\"\n\
         boot = \"uefi\"\nmemory = \"1G\"\n\n[[disk]]\nsize = \"4M\"\nimage = \"root.raw\"\n\n\
         [config-drive]\nuser-data = \"user-data\"\n\n[xva]\nembed-disks = true\n",
    )
    .unwrap();
    let out = build(&toml, &dir, "out", &["--format", "xva"]);
    let xva = out.join("t.xva");
    let v = run(&["verify", xva.as_str()]);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    // Disk 0 (VDI Ref:3) is the image padded with zeros; disk 1 (Ref:5) the config drive.
    let root = xva_img(&xva, &dir, "Ref:3");
    let mut want = image.clone();
    want.resize(4 << 20, 0);
    assert!(std::fs::read(&root).unwrap() == want, "xva-img's disk differs from the image");
    check_config_drive(&xva_img(&xva, &dir, "Ref:5"), user_data);
}

#[test]
fn shipped_xvas_pass_verify_and_the_coreos_config_drive_reads_back() {
    let (_t, dir) = tempdir();
    for stem in ["coreos-container-host", "ubuntu-container-host", "debian-guest"] {
        let out = build(&shipped(stem), &dir, stem, &["--format", "xva"]);
        let xva = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap())
            .find(|p| p.extension() == Some("xva"))
            .unwrap();
        let v = run(&["verify", xva.as_str()]);
        assert_eq!(code(&v), 0, "{stem}: {}", stderr(&v));
        assert!(stdout(&v).contains("OK (XVA structure and checksums"), "{}", stdout(&v));
        if stem == "coreos-container-host" {
            let user_data =
                std::fs::read(repo_root().join("templates/coreos-container-host.cloud-config"))
                    .unwrap();
            check_config_drive(&xva_img(&xva, &dir, "Ref:5"), &user_data);
        }
    }
}

#[test]
fn the_guest_templates_pack_ships_template_rpms() {
    let (_t, dir) = tempdir();
    let (secret, public) = keygen(&dir);
    let dest = dir.join("dist");
    let src = repo_root().join("packs/guest-templates");
    let o = xspack()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args([
            "-q",
            "pack",
            "build",
            src.as_str(),
            "--sign-key",
            secret.as_str(),
            "-o",
            dest.as_str(),
            "--allow-outside",
            repo_root().join("templates").as_str(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let iso = dest.join("xspack-guest-templates-1.0.0-1-update.iso");
    let v = run(&["pack", "verify", iso.as_str(), "--key", public.as_str()]);
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    let x = dir.join("x");
    tool("xorriso", &["-osirrox", "on", "-indev", iso.as_str(), "-extract", "/", x.as_str()]);
    for name in
        ["xspack-coreos-container-host", "xspack-ubuntu-container-host", "xspack-debian-guest"]
    {
        let rpm = x.join(format!("Packages/{name}-template-1.0.0-1.noarch.rpm"));
        let files = text(&tool("rpm", &["-qpl", "--nosignature", rpm.as_str()]));
        assert_eq!(files, format!("/etc/xapi.d/vm-templates/{name}.json\n"));
        let scripts = text(&tool("rpm", &["-qp", "--scripts", "--nosignature", rpm.as_str()]));
        assert!(scripts.contains("/usr/bin/create-guest-templates-wrapper || :"), "{scripts}");
    }
}

/// Runs `xspack` with `args` (no SOURCE_DATE_EPOCH) and checks a one-line error (and at most a
/// hint under it); returns the hint.
fn fails(args: &[&str], exit: i32, want: &str) -> Option<String> {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(code(&out), exit, "{args:?}: {err}");
    let hint = error_hint(&err);
    assert!(err.lines().next().unwrap().contains(want), "want {want:?} in {err}");
    hint
}

#[test]
fn bad_templates_fail_cleanly() {
    let (_t, dir) = tempdir();
    let good = std::fs::read_to_string(shipped("debian-guest")).unwrap();
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, good.replace("memory = ", "memroy = ")).unwrap();
    let out = dir.join("out");
    let hint = fails(
        &["template", "build", typo.as_str(), "-o", out.as_str()],
        3,
        &format!("{typo}:11:1: unknown field `memroy`"),
    )
    .unwrap();
    assert!(hint.starts_with("valid keys here: ") && hint.contains("memory"), "{hint}");
    let coreos = dir.join("coreos.toml");
    std::fs::write(&coreos, good.replace("flavor = \"debian\"", "flavor = \"coreos\"")).unwrap();
    fails(&["template", "build", coreos.as_str(), "-o", out.as_str()], 3, "template.label");
    // The user data of the config drive is missing: a failure to read, exit 1.
    let drive = dir.join("drive.toml");
    std::fs::write(
        &drive,
        good.replace("[[disk]]\nsize = \"10G\"\n", "[config-drive]\nuser-data = \"nope\"\n"),
    )
    .unwrap();
    fails(
        &["template", "build", drive.as_str(), "-o", out.as_str()],
        3,
        "config-drive.user-data: ",
    );
    fails(
        &["template", "build", dir.join("absent.toml").as_str(), "-o", out.as_str()],
        1,
        "absent.toml",
    );
    fails(
        &[
            "template",
            "build",
            shipped("debian-guest").as_str(),
            "--format",
            "json",
            "--sign-key",
            "k",
            "-o",
            out.as_str(),
        ],
        2,
        "--sign-key signs the RPM",
    );
    assert!(!out.exists(), "no output after a failure");
}

#[test]
fn check_validates_json_from_disk() {
    let golden_json = golden(&format!("templates/{COREOS}.json"));
    let out = run(&["template", "check", &golden_json]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{golden_json}: OK (guest-templates JSON)\n"));
    let (_t, dir) = tempdir();
    let bad = dir.join("bad.json");
    for (doc, want) in [
        (
            r#"{"uuid": "094706dd-5d22-4830-99b7-c710769c9dcc", "vcpus": 2}"#,
            "key \"vcpus\": unknown key",
        ),
        (
            r#"{"uuid": "094706dd-5d22-4830-99b7-c710769c9dcc", "min_memory": 2}"#,
            "key \"min_memory\": expected an amount",
        ),
        (r#"{"name_label": "x"}"#, "key \"uuid\": missing"),
        ("{", "not valid JSON"),
    ] {
        std::fs::write(&bad, doc).unwrap();
        fails(&["template", "check", bad.as_str()], 3, &format!("{bad}: {want}"));
    }
}
