//! `FatReader` against volumes of both origins: ours and `mkfs.fat` + `mcopy` (dosfstools and
//! mtools), FAT12, FAT16 and FAT32, long names included; damaged volumes give errors, never a
//! panic; and `uefi_boot::secure_boot_ready` on GPT disks built with and without signed
//! loaders.

use xspack_disk::fat::{FatBuilder, FatOptions, FatReader, FatType};
use xspack_disk::partition::{DiskBuilder, Partition, PartitionType};
use xspack_disk::uefi_boot::secure_boot_ready;
use xspack_disk::{DiskSource, Uuid};
use xspack_io::NoProgress;
use xspack_testkit::{Rng, pe_image, signed_pe};

use crate::fat::{builder, sample_tree};
use crate::{NOW, mtools, tempdir, tool};

/// Our volume of the sample tree, in memory.
fn ours(opts: FatOptions) -> Vec<u8> {
    builder(&sample_tree(), opts).build().unwrap().write_to(Vec::new(), &NoProgress).unwrap()
}

fn read(volume: &[u8], path: &str) -> Result<Option<Vec<u8>>, xspack_disk::Error> {
    let mut src = volume;
    let len = volume.len() as u64;
    FatReader::open(&mut src, 0, len)?.read_file(path, 1 << 30)
}

#[test]
fn reads_every_file_of_our_volumes_and_of_mkfs_fat_volumes() {
    let tree = sample_tree();
    let (_t, dir) = tempdir();
    // The tree on the host, for mcopy.
    let host = dir.join("tree");
    for (path, data) in &tree.files {
        let p = host.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, data).unwrap();
    }
    for (fat, size_mib) in [(FatType::Fat12, 4u64), (FatType::Fat16, 64), (FatType::Fat32, 40)] {
        let opts = FatOptions::new(7, NOW).with_fat_type(fat).with_size(size_mib << 20);
        let mine = ours(opts);
        let img = dir.join(format!("{fat}.img"));
        let bits = fat.bits().to_string();
        let size_kib = (size_mib * 1024).to_string();
        let out = tool("mkfs.fat", &["-F", &bits, "-C", img.as_str(), &size_kib]);
        assert!(out.status.success(), "mkfs.fat: {}", String::from_utf8_lossy(&out.stderr));
        let mut args = vec!["-s".to_owned(), "-i".to_owned(), img.to_string()];
        for entry in std::fs::read_dir(&host).unwrap() {
            args.push(entry.unwrap().path().to_str().unwrap().to_owned());
        }
        args.push("::/".to_owned());
        mtools("mcopy", &args.iter().map(String::as_str).collect::<Vec<_>>());
        let theirs = std::fs::read(&img).unwrap();
        for (origin, volume) in [("ours", &mine), ("mkfs.fat", &theirs)] {
            let mut src = volume.as_slice();
            let reader = FatReader::open(&mut src, 0, volume.len() as u64).unwrap();
            assert_eq!(reader.fat_type(), fat, "{origin}");
            for (path, data) in &tree.files {
                let back = read(volume, path).unwrap();
                assert!(back.as_ref() == Some(data), "{origin} {fat}: {path}");
            }
            let upper = read(volume, "efi/boot/bootx64.efi").unwrap();
            assert_eq!(upper.as_deref(), Some(&tree.files[0].1[..]), "{origin}: case");
            assert_eq!(read(volume, "EFI/BOOT/missing.efi").unwrap(), None, "{origin}");
            assert_eq!(read(volume, "EFI/BOOT").unwrap(), None, "{origin}: a directory");
            assert_eq!(read(volume, "README/x").unwrap(), None, "{origin}: through a file");
            let err = {
                let mut src = volume.as_slice();
                let mut r = FatReader::open(&mut src, 0, volume.len() as u64).unwrap();
                r.read_file("from-reader.bin", 1000).unwrap_err().to_string()
            };
            assert!(err.contains("more than the 1000 read"), "{err}");
        }
    }
}

#[test]
fn damaged_volumes_give_errors_never_panics() {
    let volume = ours(FatOptions::new(7, NOW).with_fat_type(FatType::Fat16).with_size(64 << 20));
    let message = |v: &[u8], path: &str| read(v, path).unwrap_err().to_string();

    // The boot sector's rules.
    let mut bad = volume.clone();
    bad[510] = 0;
    assert!(message(&bad, "README").contains("no boot sector signature"));
    let mut bad = volume.clone();
    bad[11..13].copy_from_slice(&100u16.to_le_bytes());
    assert!(message(&bad, "README").contains("100 bytes per sector"));
    let mut bad = volume.clone();
    bad[13] = 3;
    assert!(message(&bad, "README").contains("3 sectors per cluster"));
    let mut bad = volume.clone();
    bad[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
    bad[19..21].copy_from_slice(&0u16.to_le_bytes());
    assert!(message(&bad, "README").contains("overrun the volume"));
    let mut src = &volume[..4096];
    let err = FatReader::open(&mut src, 0, volume.len() as u64).err().unwrap().to_string();
    assert!(err.contains("does not fit the disk"), "{err}");

    // Every cluster's FAT entry pointing at itself: a directory's chain loops, and ends at
    // the most clusters 65536 entries take.
    let mut bad = volume.clone();
    let reserved = usize::from(u16::from_le_bytes([bad[14], bad[15]])) * 512;
    let fat_sectors = usize::from(u16::from_le_bytes([bad[22], bad[23]]));
    for c in 2..(fat_sectors * 512 / 2) {
        let at = reserved + 2 * c;
        bad[at..at + 2].copy_from_slice(&u16::try_from(c).unwrap_or(0xFFF7).to_le_bytes());
    }
    let err = message(&bad, "EFI/BOOT/BOOTX64.EFI");
    assert!(err.contains("the directory at cluster") && err.contains("is too large"), "{err}");
    // A chain into the reserved clusters.
    let mut bad = volume.clone();
    for c in 2..(fat_sectors * 512 / 2) {
        let at = reserved + 2 * c;
        bad[at..at + 2].copy_from_slice(&1u16.to_le_bytes());
    }
    assert!(message(&bad, "from-reader.bin").contains("outside the data region"));

    // Random damage to the metadata: any result but a panic.
    let small = ours(FatOptions::new(7, NOW));
    let meta = 64 << 10;
    let mut rng = Rng(0x5eed);
    for _ in 0..3000 {
        let mut bad = small.clone();
        for _ in 0..=rng.next_u64() % 8 {
            let at = usize::try_from(rng.next_u64() % meta).unwrap();
            bad[at] = rng.next_u64() as u8;
        }
        for path in ["EFI/BOOT/BOOTX64.EFI", "many/file-123.txt", "from-reader.bin"] {
            let _ = read(&bad, path);
        }
    }
}

/// A GPT disk whose ESP holds `files`.
fn uefi_disk(files: &[(&str, Vec<u8>)], esp_type: PartitionType) -> Vec<u8> {
    let mut fat = FatBuilder::new(FatOptions::new(9, NOW).with_size(33 << 20));
    for (path, data) in files {
        fat.add_file_bytes(path, data.clone()).unwrap();
    }
    let fat = fat.build().unwrap();
    let disk = DiskBuilder::gpt(Uuid::from_bytes([1; 16]))
        .partition(
            Partition::new(PartitionType::LINUX_FILESYSTEM, 1 << 20)
                .guid(Uuid::from_bytes([2; 16])),
        )
        .partition(Partition::new(esp_type, 33 << 20).guid(Uuid::from_bytes([3; 16])).source(fat))
        .build()
        .unwrap();
    disk.write_raw(Vec::new(), &NoProgress).unwrap()
}

fn ready(disk: &[u8]) -> Result<(), String> {
    let mut src: &[u8] = disk;
    secure_boot_ready(&mut src as &mut dyn DiskSource).unwrap()
}

#[test]
fn secure_boot_readiness_of_uefi_disks() {
    let esp = PartitionType::EFI_SYSTEM;
    let shim = ("EFI/BOOT/BOOTX64.EFI", signed_pe(8000));
    let grub = ("EFI/BOOT/grubx64.efi", signed_pe(6000));
    assert_eq!(ready(&uefi_disk(&[shim.clone(), grub.clone()], esp)), Ok(()));
    assert_eq!(
        ready(&uefi_disk(std::slice::from_ref(&shim), esp)),
        Ok(()),
        "a signed loader alone"
    );
    let unsigned_grub = ("EFI/BOOT/grubx64.efi", pe_image(6000, None));
    let why = ready(&uefi_disk(&[shim.clone(), unsigned_grub], esp)).unwrap_err();
    assert!(why.contains("grubx64.efi on its EFI system partition is unsigned"), "{why}");
    let why =
        ready(&uefi_disk(&[("EFI/BOOT/BOOTX64.EFI", pe_image(6000, None))], esp)).unwrap_err();
    assert!(why.contains("BOOTX64.EFI on its EFI system partition is unsigned"), "{why}");
    let why =
        ready(&uefi_disk(&[("EFI/BOOT/BOOTX64.EFI", b"#!/bin/sh".to_vec())], esp)).unwrap_err();
    assert!(why.contains("not an EFI binary"), "{why}");
    let why = ready(&uefi_disk(&[grub], esp)).unwrap_err();
    assert!(why.contains("has no \\EFI\\BOOT\\BOOTX64.EFI"), "{why}");
    let why = ready(&uefi_disk(&[shim], PartitionType::LINUX_FILESYSTEM)).unwrap_err();
    assert_eq!(why, "it has no EFI system partition");
    let why = ready(&vec![0u8; 4 << 20]).unwrap_err();
    assert!(why.starts_with("it has no valid GPT"), "{why}");
}
