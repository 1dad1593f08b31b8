//! `xspack image build --flavor ubuntu`: the bootable-guest path through the CLI, on small
//! synthetic images (the crate's own tests boot a real bookworm guest under QEMU).

use camino::Utf8Path;
use xspack_testkit::{Compression, Entry, EntryKind, ImageSpec, layer_tar, signed_pe};

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

/// [`debian`] with stand-ins for the signed boot packages (shim-signed,
/// shim-helpers-amd64-signed, grub-efi-amd64-signed) and a signed kernel: PE images with an
/// Authenticode certificate table, which boot nothing.
fn debian_with_signed_chain() -> ImageSpec {
    let entries = vec![
        Entry::dir("usr/lib/shim"),
        Entry::file("usr/lib/shim/shimx64.efi.signed", signed_pe(9000)),
        Entry::file("usr/lib/shim/fbx64.efi.signed", signed_pe(3000)),
        Entry::file("usr/lib/shim/mmx64.efi.signed", signed_pe(5000)),
        Entry::dir("usr/lib/grub/x86_64-efi-signed"),
        Entry::file("usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", signed_pe(7000)),
        Entry::file("boot/vmlinuz-6.1.0-1-amd64", signed_pe(4096)),
    ];
    let mut spec = debian(DEBIAN, true);
    spec.layers.push((layer_tar(&entries), Compression::Gzip));
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

/// The bytes of `path` on the FAT partition starting at sector `start` of `disk` (mtools).
fn fat_file(disk: &Utf8Path, start: u64, path: &str, dir: &Utf8Path) -> Option<Vec<u8>> {
    let dest = dir.join(path.replace('/', "_"));
    let image = format!("{disk}@@{}", start * 512);
    let out =
        crate::common::tool("mcopy", &["-n", "-i", &image, &format!("::{path}"), dest.as_str()]);
    out.status.success().then(|| std::fs::read(&dest).unwrap())
}

#[test]
fn secure_boot_ready_guest_gets_the_signed_chain_and_says_so() {
    let (_t, dir) = tempdir();
    let spec = debian_with_signed_chain();
    let out = build(&dir, &spec, &["--boot", "uefi", "--format", "raw", "--format", "xva"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let dist = dir.join("dist");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dist.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["boot"],
        serde_json::json!({"firmware": "uefi", "chain": "shim", "secure_boot": true})
    );
    // The ESP is laid out as Debian's grub-install --force-extra-removable does.
    let raw = dist.join("guest.raw");
    let table: serde_json::Value =
        serde_json::from_str(&tool_stdout("sfdisk", &["--json", raw.as_str()])).unwrap();
    let esp = table["partitiontable"]["partitions"][1]["start"].as_u64().unwrap();
    // The stand-ins of debian_with_signed_chain, told apart by their sizes.
    let (shim, grub, fallback, mok) =
        (signed_pe(9000), signed_pe(7000), signed_pe(3000), signed_pe(5000));
    for (path, bytes) in [
        ("EFI/BOOT/BOOTX64.EFI", &shim),
        ("EFI/BOOT/grubx64.efi", &grub),
        ("EFI/BOOT/fbx64.efi", &fallback),
        ("EFI/BOOT/mmx64.efi", &mok),
        ("EFI/debian/shimx64.efi", &shim),
        ("EFI/debian/grubx64.efi", &grub),
        ("EFI/debian/mmx64.efi", &mok),
    ] {
        assert!(fat_file(&raw, esp, path, &dir).as_ref() == Some(bytes), "{path} on the ESP");
    }
    let cfg = String::from_utf8(fat_file(&raw, esp, "EFI/debian/grub.cfg", &dir).unwrap()).unwrap();
    assert!(cfg.contains("search --no-floppy --fs-uuid --set=root ") && cfg.contains("configfile"));
    assert_eq!(fat_file(&raw, esp, "EFI/BOOT/grub.cfg", &dir).unwrap(), cfg.as_bytes());
    let csv = fat_file(&raw, esp, "EFI/debian/BOOTX64.CSV", &dir).unwrap();
    assert_eq!(
        &csv[..22],
        "shimx64.efi".encode_utf16().flat_map(u16::to_le_bytes).collect::<Vec<_>>()
    );
    // The XVA asks XenServer for Secure Boot where the pool has the certificates.
    let xva = dist.join("guest.xva");
    let inspect = run(&["--json", "inspect", xva.as_str()]);
    assert_eq!(code(&inspect), 0, "{}", stderr(&inspect));
    let summary: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(summary["artifact"]["info"]["boot"], "uefi-secure-boot-auto", "{summary}");
    let ova = tool_stdout("tar", &["-xOf", xva.as_str(), "ova.xml"]);
    assert!(ova.contains("<name>secureboot</name><value>auto</value>"), "{ova}");
    assert_eq!(code(&run(&["verify", dist.as_str()])), 0);
    let shown = crate::common::stdout(&run(&["inspect", dist.as_str()]));
    assert!(shown.contains("boot               UEFI, the image's signed shim"), "{shown}");
}

#[test]
fn secure_boot_require_names_what_the_image_lacks_and_auto_falls_back() {
    let (_t, dir) = tempdir();
    let out = build(
        &dir.join("require"),
        &debian(DEBIAN, true),
        &["--boot", "uefi", "--secure-boot", "require"],
    );
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(
        err.lines().filter(|l| !l.starts_with("hint:") && !l.trim().is_empty()).count(),
        1,
        "{err}"
    );
    assert!(
        err.contains("shim-signed (/usr/lib/shim/shimx64.efi.signed)")
            && err.contains(
                "grub-efi-amd64-signed (/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed)"
            )
            && err.contains("/boot/vmlinuz-6.1.0-1-amd64"),
        "{err}"
    );
    let hint = crate::common::error_hint(&err).expect("a hint");
    assert!(hint.contains("shim-signed grub-efi-amd64-signed"), "{hint}");
    assert!(!dir.join("require/dist").exists(), "no output");

    // auto: the unsigned chain, a one-line note, and an XVA that keeps Secure Boot off.
    let auto = dir.join("auto");
    let spec = debian(DEBIAN, true);
    spec.write_oci_dir(&auto.join("layout"), "latest").unwrap();
    let source = format!("oci:{auto}/layout");
    let dist = auto.join("dist");
    let out = run(&[
        "image",
        "build",
        &source,
        "--flavor",
        "ubuntu",
        "--name",
        "guest",
        "-o",
        dist.as_str(),
        "--boot",
        "uefi",
        "--format",
        "xva",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("Secure Boot")).collect();
    assert_eq!(notes.len(), 1, "{}", stderr(&out));
    assert!(notes[0].contains("boots with Secure Boot off") && notes[0].contains("shim-signed"));
    let manifest = std::fs::read_to_string(dist.join("manifest.json")).unwrap();
    assert!(
        manifest.contains("\"chain\": \"grub\"") && manifest.contains("\"secure_boot\": false")
    );
    let ova = tool_stdout("tar", &["-xOf", dist.join("guest.xva").as_str(), "ova.xml"]);
    assert!(ova.contains("<name>secureboot</name><value>false</value>"), "{ova}");

    // Secure Boot is a UEFI feature, and an ubuntu-flavor option.
    let out = build(&dir.join("bios"), &debian(DEBIAN, true), &["--secure-boot", "require"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let out = run(&["image", "build", "x.tar", "--flavor", "none", "--secure-boot", "off"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
}

/// A UEFI template embedding `raw` as its boot disk, with `secure-boot = choice`.
fn template_embedding(dir: &Utf8Path, raw: &Utf8Path, choice: &str) -> camino::Utf8PathBuf {
    let size = std::fs::metadata(raw).unwrap().len().div_ceil(2 << 20) * 2;
    let toml = dir.join(format!("t-{choice}.toml"));
    std::fs::copy(raw, dir.join("boot.raw")).unwrap();
    std::fs::write(
        &toml,
        format!(
            "[template]\nname = \"t\"\nlabel = \"T\"\nversion = \"1\"\nflavor = \"debian\"\n\
             boot = \"uefi\"\nsecure-boot = \"{choice}\"\nmemory = \"1G\"\n\n[[disk]]\n\
             size = \"{size}M\"\nimage = \"boot.raw\"\n\n[xva]\nembed-disks = true\n"
        ),
    )
    .unwrap();
    toml
}

#[test]
fn templates_embedding_a_guest_follow_its_boot_chain() {
    let (_t, dir) = tempdir();
    let signed = build(&dir.join("signed"), &debian_with_signed_chain(), &["--boot", "uefi"]);
    assert_eq!(code(&signed), 0, "{}", stderr(&signed));
    let unsigned = build(
        &dir.join("unsigned"),
        &debian_with_signed_chain(),
        &["--boot", "uefi", "--secure-boot", "off"],
    );
    assert_eq!(code(&unsigned), 0, "{}", stderr(&unsigned));

    let boot_of = |xva: &Utf8Path| {
        let out = run(&["--json", "inspect", xva.as_str()]);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["artifact"]["info"]["boot"].as_str().unwrap().to_owned()
    };
    let toml =
        template_embedding(&dir.join("signed"), &dir.join("signed/dist/guest.raw"), "require");
    let dist = dir.join("t-signed");
    let out = run(&["template", "build", toml.as_str(), "--format", "xva", "-o", dist.as_str()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(boot_of(&dist.join("t.xva")), "uefi-secure-boot-auto");
    assert_eq!(code(&run(&["verify", dist.as_str()])), 0);

    let unsigned_raw = dir.join("unsigned/dist/guest.raw");
    let toml = template_embedding(&dir.join("unsigned"), &unsigned_raw, "auto");
    let dist = dir.join("t-unsigned");
    let out = run(&["template", "build", toml.as_str(), "--format", "xva", "-o", dist.as_str()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("BOOTX64.EFI on its EFI system partition is unsigned"), "{err}");
    assert_eq!(boot_of(&dist.join("t.xva")), "uefi");

    let toml = template_embedding(&dir.join("unsigned"), &unsigned_raw, "require");
    let dist = dir.join("t-require");
    let out = run(&["template", "build", toml.as_str(), "--format", "xva", "-o", dist.as_str()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(stderr(&out).contains("template.secure-boot = \"require\""), "{}", stderr(&out));
    assert!(!dist.exists(), "no output");
}
