//! The RPM and XVA artifacts read back by this workspace's own strict readers. The Debian tools
//! (`rpm -K`, `rpm -i`, `xva-img`, mtools) check them in `tests/e2e/template.rs`.

use std::io::Cursor;

use camino::Utf8Path;
use xspack_io::Classify as _;
use xspack_io::NoProgress;
use xspack_rpmrepo::{SigningKey, TestKeyOptions, generate_test_key, read_rpm_from};
use xspack_template::{
    CONFIG_DRIVE_SIZE, MARKER_FILE, TemplateSpec, config_drive_image, render_guest_json,
    template_rpm, validate_guest_template_file, write_template_xva,
};
use xspack_xva::{BootMode, XvaReader};

use crate::{EPOCH, SHIPPED, shipped, spec_in, tempdir};

fn rpm_bytes(spec: &TemplateSpec, key: Option<&SigningKey>) -> Vec<u8> {
    let json = render_guest_json(spec).unwrap();
    let (bytes, built) =
        template_rpm(spec, &json, 1_700_000_000).unwrap().write(Vec::new(), key).unwrap();
    assert_eq!(built.signed, key.is_some());
    bytes
}

#[test]
fn template_rpm_holds_the_json_and_is_reproducible() {
    let spec = shipped("coreos-container-host");
    let bytes = rpm_bytes(&spec, None);
    assert_eq!(bytes, rpm_bytes(&spec, None), "same inputs, same bytes");
    let header = read_rpm_from(bytes.as_slice(), Utf8Path::new("t.rpm")).unwrap();
    assert_eq!(header.nevra(), "xspack-coreos-container-host-template-1.0.0-1.noarch");
    assert_eq!(header.build_time, 1_700_000_000);
    let paths: Vec<&str> = header.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["/etc/xapi.d/vm-templates/xspack-coreos-container-host.json"]);
    assert!(header.summary.contains("xspack CoreOS container host"), "{}", header.summary);
}

#[test]
fn signed_template_rpm_verifies_with_the_public_key() {
    let key =
        generate_test_key(&TestKeyOptions::new("t <t@example.invalid>", 1_700_000_000)).unwrap();
    let signing = SigningKey::from_armored(&key.secret_armored, "test key", None).unwrap();
    let spec = shipped("debian-guest");
    let (_t, dir) = tempdir();
    let path = dir.join("t.rpm");
    std::fs::write(&path, rpm_bytes(&spec, Some(&signing))).unwrap();
    xspack_rpmrepo::verify_rpm_signature(&path, &signing.public_key()).unwrap();
    // The scripts are plain text in the header: the marker and the wrapper are there.
    let raw = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    assert!(raw.contains(&format!("rm -f {MARKER_FILE} || :")), "posttrans");
    assert!(raw.contains("/usr/bin/create-guest-templates-wrapper || :"), "posttrans");
}

#[test]
fn golden_json_files_pass_the_validator_from_disk() {
    for stem in SHIPPED {
        let name = shipped(stem).json_file_name();
        let path = format!("{}/../../tests/golden/templates/{name}", env!("CARGO_MANIFEST_DIR"));
        validate_guest_template_file(Utf8Path::new(&path)).unwrap();
    }
}

/// Reads every disk of an XVA back.
fn read_back(xva: Vec<u8>) -> (xspack_xva::VmSpec, Vec<Vec<u8>>) {
    let mut reader = XvaReader::new(Cursor::new(xva)).unwrap();
    let spec = reader.spec().clone();
    let mut disks = Vec::new();
    while reader.next_disk().unwrap().is_some() {
        let mut data = Vec::new();
        reader.copy_disk(&mut data).unwrap();
        disks.push(data);
    }
    reader.finish().unwrap();
    (spec, disks)
}

#[test]
fn provisioned_template_xva_has_no_disk() {
    let spec = shipped("ubuntu-container-host");
    let xva = write_template_xva(&spec, Vec::new(), EPOCH, &NoProgress).unwrap();
    assert_eq!(xva, write_template_xva(&spec, Vec::new(), EPOCH, &NoProgress).unwrap());
    let (vm, disks) = read_back(xva);
    assert!(vm.is_template && disks.is_empty());
    assert_eq!(vm.boot, BootMode::UefiSecureBootAuto, "secure-boot = \"auto\" by default");
    assert_eq!(vm.memory.static_max, 4 << 30);
    assert_eq!(vm.memory.static_min, 2 << 30);
    assert!(
        vm.other_config["disks"].starts_with("<provision><disk device=\"0\" size=\"21474836480\"")
    );
    assert!(vm.cd_drive.is_some());
    assert!(!vm.other_config.contains_key("default_template"));
}

#[test]
fn embedded_disks_carry_the_image_and_the_config_drive() {
    let (_t, dir) = tempdir();
    let image: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join("root.raw"), &image).unwrap();
    std::fs::write(dir.join("user-data"), "#cloud-config\nhostname: t\n").unwrap();
    let spec = spec_in(
        &dir,
        "t.toml",
        r#"
[template]
name = "t"
label = "T CoreOS"
version = "1"
flavor = "coreos"
boot = "bios"
memory = "1G"

[[disk]]
size = "4M"
image = "root.raw"

[[disk]]
size = "2M"
type = "user"

[config-drive]
user-data = "user-data"

[xva]
embed-disks = true
cd-drive = false
"#,
    );
    let xva = write_template_xva(&spec, Vec::new(), EPOCH, &NoProgress).unwrap();
    let (vm, disks) = read_back(xva);
    assert_eq!(disks.len(), 3);
    assert_eq!(&disks[0][..image.len()], &image[..]);
    assert!(disks[0][image.len()..].iter().all(|b| *b == 0) && disks[0].len() == 4 << 20);
    assert!(disks[1].iter().all(|b| *b == 0) && disks[1].len() == 2 << 20);
    let drive = config_drive_image(&spec, b"#cloud-config\nhostname: t\n", EPOCH).unwrap();
    assert_eq!(drive.len() as u64, CONFIG_DRIVE_SIZE);
    assert!(disks[2] == drive, "the config drive is stored as built");
    let cd = &vm.disks[2];
    assert!(cd.read_only && !cd.bootable);
    assert_eq!(cd.other_config["config-drive"], "True");
    assert!(vm.disks[0].bootable && !vm.disks[1].bootable);
    assert!(!vm.other_config.contains_key("disks"), "embedded disks are not provisioned too");
    assert!(vm.cd_drive.is_none());
}

#[test]
fn an_image_larger_than_its_disk_is_refused() {
    let (_t, dir) = tempdir();
    std::fs::write(dir.join("big.raw"), vec![1u8; (2 << 20) + 1]).unwrap();
    let spec = spec_in(
        &dir,
        "t.toml",
        "[template]\nname = \"t\"\nlabel = \"T\"\nversion = \"1\"\nflavor = \"linux\"\nboot = \"bios\"\nmemory = \"1G\"\n\n[[disk]]\nsize = \"2M\"\nimage = \"big.raw\"\n\n[xva]\nembed-disks = true\n",
    );
    let err = write_template_xva(&spec, Vec::new(), EPOCH, &NoProgress).unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert!(err.to_string().contains("disk[0].image"), "{err}");
}

/// A GPT disk of 40 MiB whose ESP holds `bootx64` as the removable-media loader.
fn uefi_raw(bootx64: Vec<u8>) -> Vec<u8> {
    use xspack_disk::Uuid;
    use xspack_disk::fat::{FatBuilder, FatOptions};
    use xspack_disk::partition::{DiskBuilder, Partition, PartitionType};
    let mut fat = FatBuilder::new(FatOptions::new(5, EPOCH).with_size(33 << 20));
    fat.add_file_bytes("EFI/BOOT/BOOTX64.EFI", bootx64).unwrap();
    DiskBuilder::gpt(Uuid::from_bytes([4; 16]))
        .partition(
            Partition::new(PartitionType::EFI_SYSTEM, 33 << 20)
                .guid(Uuid::from_bytes([5; 16]))
                .source(fat.build().unwrap()),
        )
        .size(40 << 20)
        .build()
        .unwrap()
        .write_raw(Vec::new(), &NoProgress)
        .unwrap()
}

fn uefi_spec(dir: &Utf8Path, secure_boot: &str) -> TemplateSpec {
    spec_in(
        dir,
        "t.toml",
        &format!(
            "[template]\nname = \"t\"\nlabel = \"T\"\nversion = \"1\"\nflavor = \"debian\"\n\
             boot = \"uefi\"\nsecure-boot = \"{secure_boot}\"\nmemory = \"1G\"\n\n[[disk]]\n\
             size = \"40M\"\nimage = \"root.raw\"\n\n[xva]\nembed-disks = true\n"
        ),
    )
}

#[test]
fn secure_boot_follows_the_embedded_disks_loader() {
    let (_t, dir) = tempdir();
    // A signed loader: Secure Boot where the pool has the certificates.
    std::fs::write(dir.join("root.raw"), uefi_raw(xspack_testkit::signed_pe(6000))).unwrap();
    for choice in ["auto", "require"] {
        let spec = uefi_spec(&dir, choice);
        let decision = xspack_template::secure_boot(&spec, true).unwrap();
        assert!(decision.enabled && decision.note.is_none(), "{choice}");
        let (vm, _) = read_back(write_template_xva(&spec, Vec::new(), EPOCH, &NoProgress).unwrap());
        assert_eq!(vm.boot, BootMode::UefiSecureBootAuto, "{choice}");
    }
    let spec = uefi_spec(&dir, "off");
    let (vm, _) = read_back(write_template_xva(&spec, Vec::new(), EPOCH, &NoProgress).unwrap());
    assert_eq!(vm.boot, BootMode::Uefi);
    let json: serde_json::Value = serde_json::from_str(&render_guest_json(&spec).unwrap()).unwrap();
    assert_eq!(json["platform"]["secureboot"], "false", "off, over the base's auto");

    // An unsigned loader: auto keeps Secure Boot off and says why; require refuses.
    std::fs::write(dir.join("root.raw"), uefi_raw(xspack_testkit::pe_image(6000, None))).unwrap();
    let spec = uefi_spec(&dir, "auto");
    let decision = xspack_template::secure_boot(&spec, true).unwrap();
    assert!(!decision.enabled);
    let note = decision.note.unwrap();
    assert!(note.contains("disk[0].image root.raw cannot boot with Secure Boot: \\EFI\\BOOT\\BOOTX64.EFI on its EFI system partition is unsigned"), "{note}");
    let (vm, _) = read_back(write_template_xva(&spec, Vec::new(), EPOCH, &NoProgress).unwrap());
    assert_eq!(vm.boot, BootMode::Uefi);
    let json: serde_json::Value = serde_json::from_str(&render_guest_json(&spec).unwrap()).unwrap();
    assert_eq!(json["platform"]["secureboot"], "auto", "the JSON has no disk to check");
    let err = write_template_xva(&uefi_spec(&dir, "require"), Vec::new(), EPOCH, &NoProgress)
        .unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    assert!(
        err.to_string().contains("template.secure-boot = \"require\", but disk[0].image"),
        "{err}"
    );

    // A disk that is no GPT at all.
    std::fs::write(dir.join("root.raw"), vec![0u8; 40 << 20]).unwrap();
    let note = xspack_template::secure_boot(&uefi_spec(&dir, "auto"), true).unwrap().note.unwrap();
    assert!(note.contains("it has no valid GPT"), "{note}");
}
