//! `xspack image build --flavor ubuntu`: the bootable-guest path through the CLI, on small
//! synthetic images (the crate's own tests boot a real bookworm guest under QEMU).

use camino::Utf8Path;
use xspack_testkit::{Compression, Entry, EntryKind, ImageSpec, layer_tar};

use crate::common::{code, run, stderr, tempdir, tool_stdout};

/// A Debian-like image with a stand-in kernel and initrd, or without them.
pub fn debian(os_release: &str, kernel: bool) -> ImageSpec {
    let mut entries = vec![
        Entry::dir("etc"),
        Entry::file("usr/lib/os-release", os_release),
        Entry::new("etc/os-release", EntryKind::Symlink(b"../usr/lib/os-release".to_vec())),
        Entry::dir("etc/network"),
        Entry::file("etc/network/interfaces", "source /etc/network/interfaces.d/*\n"),
        Entry::dir("boot"),
        Entry::file("bin/sh", "#!fake shell\n").mode(0o755),
        Entry::file("lib/systemd/systemd", "#!fake init\n").mode(0o755),
        Entry::new("sbin/init", EntryKind::Symlink(b"/lib/systemd/systemd".to_vec())),
        Entry::file(".dockerenv", ""),
    ];
    if kernel {
        entries.push(Entry::file("boot/vmlinuz-6.1.0-1-amd64", vec![0x4d; 4096]));
        entries.push(Entry::file("boot/initrd.img-6.1.0-1-amd64", vec![0x1f; 4096]));
    }
    let mut spec = ImageSpec::new(vec![(layer_tar(&entries), Compression::Gzip)]);
    spec.config = serde_json::json!({"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hello"]});
    spec
}

pub const DEBIAN: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";

fn build(dir: &Utf8Path, spec: &ImageSpec, extra: &[&str]) -> std::process::Output {
    spec.write_oci_dir(&dir.join("layout"), "latest").unwrap();
    let source = format!("oci:{dir}/layout");
    let out_dir = dir.join("dist");
    let mut args = vec![
        "-q",
        "image",
        "build",
        source.as_str(),
        "--flavor",
        "ubuntu",
        "--name",
        "guest",
        "-o",
        out_dir.as_str(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn ubuntu_flavor_builds_a_partitioned_disk_xva_and_seed() {
    let (_t, dir) = tempdir();
    let user_data = dir.join("user-data");
    std::fs::write(&user_data, "#cloud-config\nhostname: guest\n").unwrap();
    let out = build(
        &dir,
        &debian(DEBIAN, true),
        &["--format", "raw", "--format", "xva", "--seed", user_data.as_str()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let dist = dir.join("dist");
    let names = crate::common::listing(&dist);
    assert_eq!(names, ["SHA256SUMS", "guest-seed.img", "guest.raw", "guest.xva", "manifest.json"]);
    let table: serde_json::Value =
        serde_json::from_str(&tool_stdout("sfdisk", &["--json", dist.join("guest.raw").as_str()]))
            .unwrap();
    assert_eq!(table["partitiontable"]["label"], "dos");
    assert_eq!(table["partitiontable"]["partitions"][0]["bootable"], true);
    let label = tool_stdout("minfo", &["-i", dist.join("guest-seed.img").as_str(), "::"]);
    assert!(label.to_lowercase().contains("cidata"), "{label}");
    assert_eq!(code(&run(&["verify", dist.as_str()])), 0);
    assert_eq!(code(&run(&["verify", dist.join("guest.xva").as_str()])), 0);
}

#[test]
fn uefi_guest_has_a_gpt_with_an_esp() {
    let (_t, dir) = tempdir();
    let out = build(&dir, &debian(DEBIAN, true), &["--boot", "uefi"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let table: serde_json::Value = serde_json::from_str(&tool_stdout(
        "sfdisk",
        &["--json", dir.join("dist/guest.raw").as_str()],
    ))
    .unwrap();
    assert_eq!(table["partitiontable"]["label"], "gpt");
    let types: Vec<&str> = table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "no EFI system partition: {types:?}"
    );
}

#[test]
fn bad_guests_fail_with_one_line() {
    let (_t, dir) = tempdir();
    let alpine =
        "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.0\nPRETTY_NAME=\"Alpine Linux v3.20\"\n";
    let out = build(&dir.join("alpine"), &debian(alpine, true), &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("not Debian or Ubuntu based"), "{}", stderr(&out));
    assert!(!dir.join("alpine/dist").exists());
    let out = build(&dir.join("nokernel"), &debian(DEBIAN, false), &[]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let hint = crate::common::error_hint(&stderr(&out)).expect("a hint");
    assert!(
        hint.contains("linux-image-amd64") && hint.contains("--kernel FILE --initrd FILE"),
        "the hint says what to install: {hint}"
    );
    let out = run(&["image", "build", "x.tar", "--flavor", "none", "--boot", "uefi"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}
