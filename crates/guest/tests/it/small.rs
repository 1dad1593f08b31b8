//! A small synthetic Debian image (fake kernel) through both boot modes and every format: the
//! disk's tables, boot code, filesystem, pygrub view and derived formats, read by other tools.

use std::process::Command;

use camino::Utf8Path;
use xspack_guest::fixups::Network;
use xspack_guest::seed::{SeedOptions, write_seed};
use xspack_guest::ubuntu::{BootMode, UbuntuOptions};
use xspack_image::DiskFormat;

use crate::fixture::{DEBIAN_OS_RELEASE, fake_boot_files, synthetic};
use crate::{EPOCH, build, extract, pygrub, run, sfdisk, tempdir};

fn debugfs_cat(fs: &Utf8Path, path: &str) -> String {
    let out = run(Command::new("debugfs").arg("-R").arg(format!("cat {path}")).arg(fs));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn bios_disk_has_grub_a_pygrub_config_and_every_format() {
    let (_t, dir) = tempdir();
    synthetic(Some(DEBIAN_OS_RELEASE), true).write_oci_dir(&dir.join("layout"), "x").unwrap();
    let source = format!("oci:{dir}/layout:x");
    let formats = vec![DiskFormat::Raw, DiskFormat::Vhd, DiskFormat::Qcow2, DiskFormat::Xva];
    let mut opts = UbuntuOptions::new("small", formats, EPOCH);
    opts.hostname = Some("small-guest".into());
    let (summary, out) = build(&source, &dir, &opts).unwrap();
    assert_eq!(summary.fixups.network, Network::Ifupdown);
    assert_eq!(summary.service.as_deref(), Some("xspack-app.service"));
    assert_eq!(summary.boot_files.kernel, "/boot/vmlinuz-6.1.0-1-amd64");
    let raw = out.join("small.raw");
    let size = std::fs::metadata(&raw).unwrap().len();
    assert_eq!(size % (2 << 20), 0);

    // The table, as sfdisk reads it: one active Linux partition at 1 MiB.
    let table = sfdisk(&raw);
    assert_eq!(table["label"], "dos");
    let parts = table["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!((parts[0]["start"].as_u64(), parts[0]["type"].as_str()), (Some(2048), Some("83")));
    assert_eq!(parts[0]["bootable"], true);

    // GRUB's boot.img in the MBR, pointing at the core image in LBA 1 (diskboot.img first).
    let disk = std::fs::read(&raw).unwrap();
    let boot_img = std::fs::read("/usr/lib/grub/i386-pc/boot.img").unwrap();
    assert_eq!(disk[..0x5C], boot_img[..0x5C]);
    assert_eq!(disk[0x5C..0x64], 1u64.to_le_bytes());
    assert_eq!(disk[0x66..0x68], [0x90, 0x90]);
    assert_eq!(disk[0x68..440], boot_img[0x68..440]);
    let diskboot = std::fs::read("/usr/lib/grub/i386-pc/diskboot.img").unwrap();
    assert_eq!(disk[512..512 + 0x1F4], diskboot[..0x1F4]);
    assert_eq!(disk[512 + 0x1F4..512 + 0x1FC], 2u64.to_le_bytes(), "the rest at LBA 2");

    // The root filesystem: clean, with the fix-ups.
    let fs = dir.join("root.ext4");
    let part_size = parts[0]["size"].as_u64().unwrap() * 512;
    extract(&raw, 1 << 20, part_size, &fs);
    run(Command::new("e2fsck").arg("-fn").arg(&fs));
    let fstab = debugfs_cat(&fs, "/etc/fstab");
    assert!(fstab.contains(&format!("UUID={} / ext4", summary.root_uuid)), "{fstab}");
    assert_eq!(debugfs_cat(&fs, "/etc/hostname"), "small-guest\n");
    assert_eq!(debugfs_cat(&fs, "/etc/machine-id"), "");
    let unit = debugfs_cat(&fs, "/etc/systemd/system/xspack-app.service");
    assert!(unit.contains("ExecStart=\"/bin/sh\" \"-c\" \"echo hello\""), "{unit}");
    assert!(unit.contains("Environment=\"GREETING=hi\""), "{unit}");
    let grub_cfg = debugfs_cat(&fs, "/boot/grub/grub.cfg");
    assert!(grub_cfg.contains("menuentry 'Debian GNU/Linux 12 (bookworm)' {"), "{grub_cfg}");
    let dockerenv = run(Command::new("debugfs").args(["-R", "stat /.dockerenv"]).arg(&fs));
    assert!(String::from_utf8_lossy(&dockerenv.stderr).contains("File not found"));

    // pygrub finds the kernel and initrd through /boot/grub/grub.cfg on partition 1.
    let (kernel, initrd, args) = pygrub(&raw, &dir);
    let (want_kernel, want_initrd) = fake_boot_files();
    assert!(kernel == want_kernel && initrd == want_initrd, "pygrub extracted other files");
    assert_eq!(args, summary.cmdline);
    assert!(args.contains("console=tty0 console=ttyS0,115200n8"), "{args}");

    // The derived formats hold the same disk.
    for (file, format) in [("small.vhd", "vpc"), ("small.qcow2", "qcow2")] {
        run(Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", format])
            .arg(&raw)
            .arg(out.join(file)));
    }
    let xva_dir = dir.join("xva");
    std::fs::create_dir_all(&xva_dir).unwrap();
    run(Command::new("tar").arg("-xf").arg(out.join("small.xva")).arg("-C").arg(&xva_dir));
    let back = dir.join("xva.raw");
    run(Command::new("xva-img")
        .args(["-p", "disk-export"])
        .arg(format!("{xva_dir}/Ref:3/"))
        .arg(&back));
    run(Command::new("cmp").arg(&raw).arg(&back));
    let ova = std::fs::read_to_string(xva_dir.join("ova.xml")).unwrap();
    assert!(ova.contains("<name>firmware</name><value>bios</value>"), "BIOS boot params");

    // The same inputs give the same bytes.
    let (_t2, dir2) = tempdir();
    synthetic(Some(DEBIAN_OS_RELEASE), true).write_oci_dir(&dir2.join("layout"), "x").unwrap();
    let mut again = opts.clone();
    again.formats = vec![DiskFormat::Raw];
    let (_, out2) = build(&format!("oci:{dir2}/layout:x"), &dir2, &again).unwrap();
    assert!(std::fs::read(out2.join("small.raw")).unwrap() == disk, "reproducible");
}

#[test]
fn uefi_disk_has_root_first_and_an_esp_with_grub() {
    let (_t, dir) = tempdir();
    synthetic(Some(DEBIAN_OS_RELEASE), true).write_oci_dir(&dir.join("layout"), "x").unwrap();
    let mut opts = UbuntuOptions::new("efi", vec![DiskFormat::Raw, DiskFormat::Xva], EPOCH);
    opts.boot = BootMode::Uefi;
    opts.disk_size = Some(128 << 20);
    let (summary, out) = build(&format!("oci:{dir}/layout:x"), &dir, &opts).unwrap();
    let raw = out.join("efi.raw");
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), 128 << 20);
    run(Command::new("sfdisk").arg("--verify").arg(&raw));
    let table = sfdisk(&raw);
    assert_eq!(table["label"], "gpt");
    let parts = table["partitions"].as_array().unwrap();
    assert_eq!(parts[0]["type"], "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "root is entry 1");
    assert_eq!(parts[1]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "then the ESP");
    let esp_offset = parts[1]["start"].as_u64().unwrap() * 512;
    let esp = dir.join("esp.fat");
    extract(&raw, esp_offset, 32 << 20, &esp);
    run(Command::new("fsck.fat").arg("-n").arg(&esp));
    let efi = run(Command::new("mtype").arg("-i").arg(&esp).arg("::EFI/BOOT/BOOTX64.EFI")).stdout;
    assert_eq!(&efi[..2], b"MZ", "a PE image");
    let root = dir.join("root.ext4");
    extract(&raw, 1 << 20, parts[0]["size"].as_u64().unwrap() * 512, &root);
    run(Command::new("e2fsck").arg("-fn").arg(&root));
    let xva = run(Command::new("tar").arg("-xOf").arg(out.join("efi.xva")).arg("ova.xml")).stdout;
    let ova = String::from_utf8(xva).unwrap();
    assert!(ova.contains("<name>firmware</name><value>uefi</value>"), "UEFI boot params");
    // pygrub reads GPT entry 1.
    let (kernel, _, args) = pygrub(&raw, &dir);
    assert!(kernel == fake_boot_files().0);
    assert!(args.starts_with(&format!("root=UUID={} ro ", summary.root_uuid)), "{args}");
}

#[test]
fn cidata_seed_reads_back() {
    let (_t, dir) = tempdir();
    let mut opts =
        SeedOptions::new("iid-guest-1", b"#cloud-config\nhostname: seeded\n".to_vec(), EPOCH);
    opts.hostname = Some("seeded".into());
    let path = dir.join("seed.img");
    std::fs::write(&path, write_seed(&opts, Vec::new()).unwrap()).unwrap();
    run(Command::new("fsck.fat").arg("-n").arg(&path));
    let info = String::from_utf8(run(Command::new("minfo").arg("-i").arg(&path).arg("::")).stdout)
        .unwrap();
    assert!(info.contains("disk label=\"CIDATA     \""), "{info}");
    let user = run(Command::new("mtype").arg("-i").arg(&path).arg("::user-data")).stdout;
    assert_eq!(user, opts.user_data);
    let meta = run(Command::new("mtype").arg("-i").arg(&path).arg("::meta-data")).stdout;
    assert_eq!(meta, b"instance-id: \"iid-guest-1\"\nlocal-hostname: \"seeded\"\n");
}

#[test]
fn kernel_and_initrd_from_the_build_host() {
    let (_t, dir) = tempdir();
    synthetic(Some(DEBIAN_OS_RELEASE), false).write_oci_dir(&dir.join("layout"), "x").unwrap();
    let (kernel_path, initrd_path) = (dir.join("vmlinuz"), dir.join("initrd.img"));
    std::fs::write(&kernel_path, b"host kernel").unwrap();
    std::fs::write(&initrd_path, b"host initrd").unwrap();
    let mut opts = UbuntuOptions::new("host-kernel", vec![DiskFormat::Raw], EPOCH);
    opts.kernel = Some(kernel_path);
    opts.initrd = Some(initrd_path);
    opts.kernel_args = vec!["quiet".into()];
    let (summary, out) = build(&format!("oci:{dir}/layout:x"), &dir, &opts).unwrap();
    assert_eq!(summary.boot_files.kernel, "/boot/vmlinuz-xspack");
    let (kernel, initrd, args) = pygrub(&out.join("host-kernel.raw"), &dir);
    assert_eq!((kernel.as_slice(), initrd.as_slice()), (&b"host kernel"[..], &b"host initrd"[..]));
    assert!(args.ends_with(" quiet"), "{args}");
    let mut half = opts.clone();
    half.initrd = None;
    let err = build(&format!("oci:{dir}/layout:x"), &dir, &half).unwrap_err().to_string();
    assert_eq!(err, "a kernel and an initrd must be given together");
}
