//! `xspack image build --flavor coreos`: a container host from a stand-in Flatcar base image
//! (a GPT disk with Flatcar's partition names, made here; no real image can be downloaded) and
//! four small workload images named after the seed's mysql, tomcat, apache and hadoop, in the
//! four source layouts.
//!
//! Oracles: Ignition's JSON schema (3.3.0, shipped in the `ignition-config` crate) and that
//! crate's parser (the real Ignition runs on the drive in `tests/e2e/ignition.rs`); `isoinfo` and `blkid` on the config drive; `e2fsck`, `blkid`, `debugfs` and
//! `sha256sum --check` on the data disk (exactly what the guest runs before `docker load`);
//! `qemu-img compare` on the VHDs; `xva-img` and `xspack verify` on the XVA.
//!
//! The real boot test, [`coreos_guest_boots_when_a_base_is_given`], is ignored unless
//! `XSPACK_COREOS_BASE` names a real Flatcar OpenStack image (see docs/guide.md).

use std::process::Output;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_disk::DiskSource as _;
use xspack_disk::partition::{DiskBuilder, Partition, PartitionType};
use xspack_testkit::{Compression, DockerLayout, Entry, ImageSpec, layer_tar};

use crate::common::{EPOCH, assert_same_disk, code, stderr, tempdir, tool, tool_stdout, xspack};

const FLATCAR: [&str; 7] =
    ["EFI-SYSTEM", "BIOS-BOOT", "USR-A", "USR-B", "OEM", "OEM-CONFIG", "ROOT"];
const CONTAINERS: [&str; 4] = ["mysql", "tomcat", "apache", "hadoop"];

/// A 64 MiB disk partitioned like Flatcar, with data in each partition.
fn base_disk(names: &[&str]) -> Vec<u8> {
    let mut builder = DiskBuilder::gpt(xspack_disk::Uuid::from_bytes([9; 16])).size(64 << 20);
    for (i, name) in names.iter().enumerate() {
        let kind = if i == 0 { PartitionType::EFI_SYSTEM } else { PartitionType::LINUX_FILESYSTEM };
        let data = xspack_testkit::noise(i as u64 + 40, 300_000);
        let guid = xspack_disk::Uuid::from_bytes([u8::try_from(i).unwrap() + 1; 16]);
        builder =
            builder.partition(Partition::new(kind, 4 << 20).guid(guid).name(*name).source(data));
    }
    let mut disk = builder.build().unwrap();
    let mut bytes = vec![0u8; usize::try_from(disk.size()).unwrap()];
    disk.read_exact_at(0, &mut bytes).unwrap();
    bytes
}

/// A workload image: a base layer and the service's own files.
fn workload(name: &str) -> ImageSpec {
    let base = layer_tar(&[Entry::dir("etc"), Entry::file("etc/os-release", "ID=alpine\n")]);
    let app = layer_tar(&[
        Entry::dir("srv"),
        Entry::file(format!("srv/{name}.bin"), xspack_testkit::noise(name.len() as u64, 90_000)),
    ]);
    let mut spec = ImageSpec::new(vec![(base, Compression::Gzip), (app, Compression::Zstd)]);
    spec.config = serde_json::json!({"Cmd": [format!("/srv/{name}.bin")]});
    spec
}

/// Writes the base (xz), the four images and a guest.toml into `dir` (the guide's CoreOS
/// section runs on them too).
pub fn inputs(dir: &Utf8Path) -> Utf8PathBuf {
    std::fs::write(dir.join("flatcar.img"), base_disk(&FLATCAR)).unwrap();
    tool("xz", &["-T1", "-0", "--keep", dir.join("flatcar.img").as_str()]);
    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    workload("mysql")
        .write_docker_archive(&images.join("mysql.tar"), "mysql:8", DockerLayout::Classic)
        .unwrap();
    workload("tomcat").write_oci_dir(&images.join("tomcat"), "latest").unwrap();
    workload("apache").write_oci_archive(&images.join("apache.tar"), "latest").unwrap();
    workload("hadoop")
        .write_docker_archive(&images.join("hadoop.tar"), "hadoop:3", DockerLayout::Blobs)
        .unwrap();
    let spec = dir.join("guest.toml");
    std::fs::write(
        &spec,
        r#"name = "apps"
hostname = "apps-host"
memory = "4G"
vcpus = 2
ssh-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq5 ops@example"]

[[container]]
name = "mysql"
image = "docker-archive:images/mysql.tar"
ports = ["3306:3306"]
env = { MYSQL_ROOT_PASSWORD = "s3cret pass", MYSQL_DATABASE = "app" }
volumes = ["/var/lib/mysql:/var/lib/mysql"]

[[container]]
name = "tomcat"
image = "oci:images/tomcat:latest"
ports = ["8080:8080"]
restart = "on-failure"

[[container]]
name = "apache"
image = "oci-archive:images/apache.tar"
ports = ["80:80"]
volumes = ["/srv/www:/usr/local/apache2/htdocs:ro"]

[[container]]
name = "hadoop"
image = "images/hadoop.tar"
command = ["hdfs", "namenode"]
"#,
    )
    .unwrap();
    spec
}

pub fn build(dir: &Utf8Path, out: &Utf8Path, extra: &[&str]) -> Output {
    let spec = dir.join("guest.toml");
    let base = dir.join("flatcar.img.xz");
    let mut args = vec!["-q", "image", "build", "--flavor", "coreos", "--base", base.as_str()];
    args.extend(["--spec", spec.as_str(), "-o", out.as_str()]);
    args.extend_from_slice(extra);
    xspack().env("SOURCE_DATE_EPOCH", EPOCH.to_string()).args(&args).output().unwrap()
}

/// The schema of Ignition 3.3.0, from the `ignition-config` crate's sources.
fn ignition_schema() -> serde_json::Value {
    let meta = tool_stdout(
        env!("CARGO"),
        &[
            "metadata",
            "--format-version",
            "1",
            "--locked",
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ],
    );
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "ignition-config")
        .expect("ignition-config is a dependency")["manifest_path"]
        .as_str()
        .unwrap()
        .to_owned();
    let schema = Utf8Path::new(&manifest).parent().unwrap().join("src/v3_3/ignition.json");
    serde_json::from_slice(&std::fs::read(&schema).unwrap()).unwrap()
}

/// Extracts `/openstack/latest/NAME` from the config drive with isoinfo (Rock Ridge names).
fn drive_file(iso: &Utf8Path, name: &str) -> Vec<u8> {
    tool("isoinfo", &["-R", "-i", iso.as_str(), "-x", &format!("/openstack/latest/{name}")]).stdout
}

fn check_config_drive(iso: &Utf8Path) {
    let info = tool_stdout("isoinfo", &["-d", "-i", iso.as_str()]);
    assert!(info.contains("Volume id: config-2"), "{info}");
    let blkid = tool_stdout("blkid", &["-p", "-o", "export", iso.as_str()]);
    assert!(blkid.contains("LABEL=config-2") && blkid.contains("TYPE=iso9660"), "{blkid}");
    let user_data = drive_file(iso, "user_data");
    // Ignition's own schema, then the typed parser that reports unknown keys.
    let config: serde_json::Value = serde_json::from_slice(&user_data).unwrap();
    let schema = ignition_schema();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&config).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (parsed, warnings) = ignition_config::Config::parse_slice(&user_data).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let ignition_config::Config::V3_3(parsed) = parsed else { panic!("not 3.3.0") };
    let units = parsed.systemd.unwrap().units.unwrap();
    let names: Vec<&str> = units.iter().map(|u| u.name.as_str()).collect();
    for c in CONTAINERS {
        assert!(names.contains(&format!("xspack-{c}.service").as_str()), "{names:?}");
    }
    let load = units.iter().find(|u| u.name == "xspack-images.service").unwrap();
    assert!(load.contents.as_ref().unwrap().contains("docker load --input mysql.tar"));
    let mysql = units.iter().find(|u| u.name == "xspack-mysql.service").unwrap();
    let text = mysql.contents.as_ref().unwrap();
    assert!(text.contains("--publish 3306:3306"), "{text}");
    assert!(text.contains("--env \"MYSQL_ROOT_PASSWORD=s3cret pass\""), "{text}");
    assert!(text.contains("Restart=always"), "{text}");
    let users = parsed.passwd.unwrap().users.unwrap();
    assert_eq!(users[0].name, "core");
    let meta: serde_json::Value =
        serde_json::from_slice(&drive_file(iso, "meta_data.json")).unwrap();
    assert_eq!(meta["hostname"], "apps-host");
    assert!(meta["public_keys"]["key-0"].as_str().unwrap().starts_with("ssh-ed25519 "));
}

/// The data disk: a clean ext4 labelled xspack-data whose archives pass `sha256sum --check`
/// and hold the input images, digest for digest.
fn check_data_disk(root: &Utf8Path, data: &Utf8Path) {
    tool("e2fsck", &["-fn", data.as_str()]);
    let blkid = tool_stdout("blkid", &["-p", "-o", "export", data.as_str()]);
    assert!(blkid.contains("LABEL=xspack-data") && blkid.contains("TYPE=ext4"), "{blkid}");
    let got = root.join("got");
    std::fs::create_dir(&got).unwrap();
    for file in ["SHA256SUMS", "index.json"]
        .into_iter()
        .map(String::from)
        .chain(CONTAINERS.iter().map(|c| format!("{c}.tar")))
    {
        let cmd = format!("dump /images/{file} {got}/{file}");
        tool("debugfs", &["-R", &cmd, data.as_str()]);
    }
    let check = std::process::Command::new("sha256sum")
        .args(["--check", "--strict", "SHA256SUMS"])
        .current_dir(&got)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(got.join("index.json")).unwrap()).unwrap();
    for (i, c) in CONTAINERS.iter().enumerate() {
        let entry = &index["containers"][i];
        assert_eq!(entry["name"], *c);
        // The archive opens as a docker archive with the input's config and layers.
        let back = xspack_oci::Image::open(&xspack_oci::ImageSource::DockerArchive {
            path: got.join(format!("{c}.tar")),
            reference: None,
        })
        .unwrap();
        let input = workload(c).build();
        assert_eq!(back.config_digest.0, input.config.0, "{c}");
        assert_eq!(entry["config_digest"], format!("sha256:{}", input.config.0));
        let diff_ids: Vec<_> = back.layers.iter().map(|l| l.diff_id.0).collect();
        assert_eq!(diff_ids, input.diff_ids, "{c}");
        for layer in &back.layers {
            back.read_layer(layer, |_, _| Ok::<(), xspack_oci::Error>(())).unwrap();
        }
    }
}

#[test]
fn coreos_guest_holds_its_containers_on_verified_disks() {
    let (_t, dir) = tempdir();
    inputs(&dir);
    let dist = dir.join("dist");
    let out = build(&dir, &dist, &["--format", "raw", "--format", "vhd", "--format", "xva"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let names = crate::common::listing(&dist);
    assert_eq!(
        names,
        [
            "SHA256SUMS",
            "apps-config-2.iso",
            "apps-data.raw",
            "apps-data.vhd",
            "apps.raw",
            "apps.vhd",
            "apps.xva",
            "manifest.json"
        ]
    );
    assert!(
        std::fs::read(dist.join("apps.raw")).unwrap()
            == std::fs::read(dir.join("flatcar.img")).unwrap()
    );
    check_config_drive(&dist.join("apps-config-2.iso"));
    check_data_disk(&dir, &dist.join("apps-data.raw"));
    for disk in ["apps", "apps-data"] {
        assert_same_disk(
            &dist.join(format!("{disk}.raw")),
            "vpc",
            &dist.join(format!("{disk}.vhd")),
        );
    }
    // The XVA: our verifier, then xva-img exports each disk as the raw it came from.
    let verify = xspack().args(["verify", dist.join("apps.xva").as_str()]).output().unwrap();
    assert_eq!(code(&verify), 0, "{}", stderr(&verify));
    let x = dir.join("x");
    std::fs::create_dir(&x).unwrap();
    tool("tar", &["-xf", dist.join("apps.xva").as_str(), "-C", x.as_str()]);
    let ova = std::fs::read_to_string(x.join("ova.xml")).unwrap();
    assert!(ova.contains("config-drive"), "the config drive is marked");
    assert!(ova.contains("<name>memory_static_max</name><value>4294967296</value>"), "4 GiB");
    let mut refs: Vec<String> = std::fs::read_dir(&x)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("Ref:"))
        .collect();
    refs.sort_by_key(|r| r[4..].parse::<u32>().unwrap());
    assert_eq!(refs.len(), 3, "{refs:?}");
    let expected = ["apps.raw", "apps-data.raw", "apps-config-2.iso"];
    for (r, raw) in refs.iter().zip(expected) {
        let back = dir.join(format!("{r}.raw"));
        tool("xva-img", &["-p", "disk-export", &format!("{x}/{r}/"), back.as_str()]);
        assert!(
            std::fs::read(&back).unwrap() == std::fs::read(dist.join(raw)).unwrap(),
            "{r} is {raw}"
        );
    }
    // A second build is byte-identical.
    let again = dir.join("again");
    let out = build(&dir, &again, &["--format", "raw", "--format", "vhd", "--format", "xva"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap(),
        std::fs::read_to_string(again.join("SHA256SUMS")).unwrap()
    );
}

#[test]
fn coreos_sources_without_a_spec_and_a_grown_base() {
    let (_t, dir) = tempdir();
    inputs(&dir);
    let dist = dir.join("dist");
    let images = dir.join("images");
    let key = dir.join("id.pub");
    std::fs::write(&key, "# ops\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq5 ops@example\n").unwrap();
    let out = xspack()
        .env("SOURCE_DATE_EPOCH", EPOCH.to_string())
        .args([
            "-q",
            "image",
            "build",
            "--flavor",
            "coreos",
            "--base",
            dir.join("flatcar.img").as_str(),
        ])
        .args([images.join("mysql.tar").as_str(), &format!("oci:{images}/tomcat")])
        .args([
            "--size",
            "100M",
            "--runtime",
            "podman",
            "--ssh-key",
            key.as_str(),
            "--format",
            "raw",
            "-o",
            dist.as_str(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let base = dist.join("coreos-host.raw");
    assert_eq!(std::fs::metadata(&base).unwrap().len(), 100 << 20);
    // sfdisk reads both GPT copies and complains of a misplaced backup or a protective MBR
    // of the old size; sgdisk -v checks the whole table.
    let table = tool("sfdisk", &["--dump", base.as_str()]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("name=\"ROOT\""), "{text}");
    assert!(table.stderr.is_empty(), "{}", String::from_utf8_lossy(&table.stderr));
    let verify = tool_stdout("sgdisk", &["-v", base.as_str()]);
    assert!(verify.contains("No problems found"), "{verify}");
    let user_data = drive_file(&dist.join("coreos-host-config-2.iso"), "user_data");
    let text = String::from_utf8(user_data).unwrap();
    assert!(text.contains("/usr/bin/podman run --rm --name mysql"), "{text}");
    assert!(text.contains("xspack-tomcat.service"), "{text}");
}

#[test]
fn bad_coreos_inputs_fail_with_one_line() {
    let (_t, dir) = tempdir();
    inputs(&dir);
    std::fs::write(dir.join("ubuntu.img"), {
        let mut d = base_disk(&["root"]);
        d.truncate(64 << 20);
        d
    })
    .unwrap();
    std::fs::write(dir.join("flatcar.qcow2"), b"QFI\xfb\0\0\0\x03 not really").unwrap();
    let whole = std::fs::read(dir.join("flatcar.img")).unwrap();
    std::fs::write(dir.join("short.img"), &whole[..40 << 20]).unwrap();
    std::fs::write(
        dir.join("bad.toml"),
        "[[container]]\nname = \"web\"\nimage = \"x\"\nports = [\"eighty\"]\n",
    )
    .unwrap();
    std::fs::write(dir.join("key.pub"), "not a key\n").unwrap();
    let base = dir.join("flatcar.img");
    let mysql = dir.join("images/mysql.tar");
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (vec![mysql.to_string()], 2, "--flavor coreos needs --base FILE"),
        (
            vec!["--base".into(), dir.join("ubuntu.img").to_string(), mysql.to_string()],
            3,
            "not those of Flatcar",
        ),
        (
            vec!["--base".into(), dir.join("short.img").to_string(), mysql.to_string()],
            3,
            "short.img: ends after 41943040 of the 67108864 bytes its GPT describes (truncated?)",
        ),
        (
            vec!["--base".into(), dir.join("flatcar.qcow2").to_string(), mysql.to_string()],
            3,
            "qemu-img convert -O raw",
        ),
        (
            vec!["--base".into(), dir.join("missing.img").to_string(), mysql.to_string()],
            1,
            "missing.img",
        ),
        (
            vec![
                "--base".into(),
                base.to_string(),
                "--spec".into(),
                dir.join("bad.toml").to_string(),
            ],
            3,
            "port \"eighty\"",
        ),
        (
            vec![
                "--base".into(),
                base.to_string(),
                "--ssh-key".into(),
                dir.join("key.pub").to_string(),
                mysql.to_string(),
            ],
            3,
            "not a public key line",
        ),
        (
            vec!["--base".into(), base.to_string(), mysql.to_string(), mysql.to_string()],
            3,
            "two containers are named \"mysql\"",
        ),
        (
            vec![
                "--base".into(),
                base.to_string(),
                "--boot".into(),
                "uefi".into(),
                mysql.to_string(),
            ],
            2,
            "apply to --flavor ubuntu",
        ),
    ];
    for (args, want_code, want) in cases {
        let dist = dir.join("dist");
        let out = xspack()
            .args(["image", "build", "--flavor", "coreos", "-o", dist.as_str()])
            .args(&args)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(code(&out), want_code, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(
            err.trim_end().lines().filter(|l| l.starts_with("xspack: error")).count(),
            1,
            "{err}"
        );
        assert!(!dist.exists(), "{args:?}: no output on failure");
    }
}

#[test]
fn coreos_options_are_usage_errors_for_other_flavors() {
    let (_t, dir) = tempdir();
    inputs(&dir);
    let (base, mysql) = (dir.join("flatcar.img"), dir.join("images/mysql.tar"));
    let out = xspack()
        .args(["image", "build", "--flavor", "ubuntu", "--base", base.as_str(), mysql.as_str()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("apply to --flavor coreos"), "{}", stderr(&out));
}

/// A runnable workload for the boot test: the host's static busybox, sleeping.
fn busybox_workload(dir: &Utf8Path, name: &str) -> Utf8PathBuf {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static (just oracles installs it)");
    let layer = layer_tar(&[Entry::dir("bin"), Entry::file("bin/busybox", busybox).mode(0o755)]);
    let mut spec = ImageSpec::new(vec![(layer, Compression::Gzip)]);
    spec.config = serde_json::json!({"Cmd": ["/bin/busybox", "sleep", "1000000"]});
    let path = dir.join(format!("{name}.tar"));
    spec.write_docker_archive(&path, &format!("{name}:1"), DockerLayout::Classic).unwrap();
    path
}

/// Boots the guest under QEMU (TCG, `SeaBIOS`) from a real Flatcar `OpenStack` image and waits
/// until the console says each container runs. Run it with
/// `XSPACK_COREOS_BASE=/path/flatcar_production_openstack_image.img.gz cargo nextest run
/// --test e2e --run-ignored only coreos_guest_boots`. The containers are four busybox images
/// named like the seed's services; `XSPACK_COREOS_SPEC` (a guest.toml) replaces them.
#[test]
#[ignore = "needs a real Flatcar image in XSPACK_COREOS_BASE; none can be downloaded here"]
fn coreos_guest_boots_when_a_base_is_given() {
    let base = std::env::var("XSPACK_COREOS_BASE")
        .expect("XSPACK_COREOS_BASE names a Flatcar OpenStack image");
    let (_t, dir) = tempdir();
    let (spec, names): (Utf8PathBuf, Vec<String>) =
        if let Ok(spec) = std::env::var("XSPACK_COREOS_SPEC") {
            let parsed = xspack_guest::coreos::GuestSpec::load(Utf8Path::new(&spec)).unwrap();
            (spec.into(), parsed.containers.iter().map(|c| c.name.clone()).collect())
        } else {
            let mut text = String::new();
            for c in CONTAINERS {
                let image = busybox_workload(&dir, c);
                text.push_str(&format!("[[container]]\nname = \"{c}\"\nimage = \"{image}\"\n"));
            }
            std::fs::write(dir.join("guest.toml"), text).unwrap();
            (dir.join("guest.toml"), CONTAINERS.map(String::from).to_vec())
        };
    let dist = dir.join("dist");
    let out = xspack()
        .args(["-q", "image", "build", "--flavor", "coreos", "--base", &base])
        .args(["--spec", spec.as_str(), "--size", "12G", "--format", "raw"])
        .args(["-o", dist.as_str(), "--name", "boot"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let drive = |f: &str| format!("file={dist}/{f},format=raw,if=virtio");
    let mut qemu = std::process::Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-m", "2048", "-smp", "2", "-nographic", "-no-reboot"])
        .args(["-drive", &drive("boot.raw"), "-drive", &drive("boot-data.raw")])
        .args(["-drive", &format!("{},readonly=on", drive("boot-config-2.iso"))])
        .args(["-nic", "user,model=virtio-net-pci"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 runs");
    let console = qemu.stdout.take().unwrap();
    let lines: Vec<String> =
        names.iter().map(|c| format!("xspack: container {c} running")).collect();
    let waited = xspack_testkit::console::wait_for_lines(
        console,
        &lines,
        std::time::Duration::from_mins(30),
    );
    let _ = qemu.kill();
    let _ = qemu.wait();
    if let Err(log) = waited {
        panic!("{log}");
    }
}
