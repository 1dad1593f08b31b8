//! A bootable-style GPT disk assembled as a stream: an ESP holding our FAT image and a Linux
//! partition holding an ext4 image made by `mkfs.ext4 -d` (test-only), written as raw, VHD and
//! qcow2 from the same [`PartitionedDisk`] source, then checked by the real tools: `qemu-img
//! compare` says all three are identical, `sfdisk --verify` is clean, `e2fsck -fn` is clean on
//! the ext4 partition read back at its offset, and `fsck.fat` and mtools on the ESP.

use std::fs;
use std::io::{Read, Seek, SeekFrom};

use camino::{Utf8Path, Utf8PathBuf};
use xspack_disk::fat::{FatImage, FatOptions};
use xspack_disk::partition::{DiskBuilder, Partition, PartitionType, PartitionedDisk};
use xspack_disk::qcow2::{Qcow2Options, write_qcow2_file};
use xspack_disk::vhd::write_vhd_file;
use xspack_disk::{DiskSource, Error, FileSource};
use xspack_io::NoProgress;

use crate::fat::{Tree, assert_fsck_clean, builder, check_volume, sample_tree};
use crate::partition::{guid, write_raw};
use crate::{MIB, NOW, noise, sparse_file, tempdir, tool, tool_ok, vhd_opts};

const ESP_SIZE: u64 = 32 * MIB;
const ROOT_SIZE: u64 = 24 * MIB;
const EXT4_UUID: &str = "6d2f8a1e-3c4b-4e5f-9a0b-1c2d3e4f5a6b";

/// A small root tree made into an ext4 image by `mkfs.ext4 -d`.
fn make_ext4(dir: &Utf8Path) -> Utf8PathBuf {
    let root = dir.join("root");
    for d in ["boot/grub", "etc", "usr/bin"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("etc/hostname"), "xspack\n").unwrap();
    fs::write(root.join("boot/grub/grub.cfg"), "menuentry 'x' {\n linux /vmlinuz\n}\n").unwrap();
    fs::write(root.join("usr/bin/tool"), noise(300_000, 5)).unwrap();
    std::os::unix::fs::symlink("../usr/bin/tool", root.join("etc/tool")).unwrap();
    let image = dir.join("root.ext4");
    let hash_seed = format!("hash_seed={EXT4_UUID}");
    let out = tool(
        "mkfs.ext4",
        &["-q", "-F", "-d", root.as_str(), "-U", EXT4_UUID, "-E", &hash_seed, "-L", "root"]
            .into_iter()
            .chain([image.as_str(), "24M"])
            .collect::<Vec<_>>(),
    );
    assert!(out.status.success(), "mkfs.ext4: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(fs::metadata(&image).unwrap().len(), ROOT_SIZE);
    image
}

fn esp(tree: &Tree) -> FatImage<'_> {
    let mut opts = FatOptions::new(0x5EED_0001, NOW).with_label("ESP").with_size(ESP_SIZE);
    opts.hidden_sectors = 2048;
    builder(tree, opts).build().unwrap()
}

fn disk<'a>(tree: &'a Tree, ext4: &Utf8Path) -> PartitionedDisk<'a> {
    DiskBuilder::gpt(guid("9f1c0000-0000-4000-8000-00000000d15c"))
        .partition(
            Partition::new(PartitionType::EFI_SYSTEM, ESP_SIZE)
                .guid(guid("9f1c0000-0000-4000-8000-0000000000e5"))
                .name("EFI system")
                .source(esp(tree)),
        )
        .partition(
            Partition::new(PartitionType::LINUX_FILESYSTEM, ROOT_SIZE)
                .guid(guid("9f1c0000-0000-4000-8000-0000000000f5"))
                .name("root")
                .source(FileSource::open(ext4).unwrap()),
        )
        .build()
        .unwrap()
}

/// Copies `len` bytes at `offset` of `from` into a new file `to`.
fn extract(from: &Utf8Path, offset: u64, len: u64, to: &Utf8Path) {
    let mut f = fs::File::open(from).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut out = sparse_file(to);
    std::io::copy(&mut f.take(len), &mut out).unwrap();
    out.finish().unwrap();
}

fn assert_identical(raw: &Utf8Path, format: &str, image: &Utf8Path) {
    let out =
        tool_ok("qemu-img", &["compare", "-f", "raw", "-F", format, raw.as_str(), image.as_str()]);
    assert!(out.contains("Images are identical"), "{out}");
}

#[test]
fn esp_and_ext4_disk_as_raw_vhd_and_qcow2() {
    let (_tmp, dir) = tempdir();
    let ext4 = make_ext4(&dir);
    let tree = sample_tree();

    let mut source = disk(&tree, &ext4);
    let layout = source.layout().clone();
    // 1 MiB + 32 + 24, then the backup GPT: 58 MiB, a multiple of 2 MiB for VHD.
    assert_eq!(layout.size, 58 * MIB);
    let (esp_at, root_at) = (layout.partitions[0].offset, layout.partitions[1].offset);
    assert_eq!((esp_at, root_at), (MIB, 33 * MIB));

    let vhd = dir.join("disk.vhd");
    let summary = write_vhd_file(&mut source, &vhd, &vhd_opts(), &NoProgress).unwrap();
    assert!(summary.allocated_blocks < summary.total_blocks, "gaps stay sparse: {summary:?}");
    let qcow2 = dir.join("disk.qcow2");
    write_qcow2_file(&mut source, &qcow2, &Qcow2Options::new(true), &NoProgress).unwrap();
    let raw = write_raw(source, &dir, "disk.raw");
    assert_eq!(fs::metadata(&raw).unwrap().len(), 58 * MIB);

    assert_identical(&raw, "vpc", &vhd);
    assert_identical(&raw, "qcow2", &qcow2);
    let out = tool_ok("sfdisk", &["--verify", raw.as_str()]);
    assert!(out.contains("No errors detected."), "{out}");

    // The ext4 partition, read back at its offset, is the image we gave, and e2fsck is clean.
    let part = dir.join("p2.ext4");
    extract(&raw, root_at, ROOT_SIZE, &part);
    let (given, back) = (fs::read(&ext4).unwrap(), fs::read(&part).unwrap());
    assert!(given == back, "partition 2 differs from the ext4 image");
    let fsck = tool("e2fsck", &["-fn", part.as_str()]);
    assert!(
        fsck.status.success(),
        "e2fsck -fn: {}\n{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let cat = tool_ok("debugfs", &["-R", "cat /etc/hostname", part.as_str()]);
    assert_eq!(cat, "xspack\n");

    // The ESP, read in place through mtools' offset syntax and extracted for fsck.fat.
    check_volume(&format!("{raw}@@{esp_at}"), &tree);
    let p1 = dir.join("p1.fat");
    extract(&raw, esp_at, ESP_SIZE, &p1);
    assert_fsck_clean(&p1);
}

#[test]
fn stream_content_gives_the_same_raw_disk() {
    let (_tmp, dir) = tempdir();
    let ext4 = make_ext4(&dir);
    let tree = sample_tree();
    let want = disk(&tree, &ext4).write_raw(Vec::new(), &NoProgress).unwrap();

    let streamed = |tree| {
        DiskBuilder::gpt(guid("9f1c0000-0000-4000-8000-00000000d15c"))
            .partition(
                Partition::new(PartitionType::EFI_SYSTEM, ESP_SIZE)
                    .guid(guid("9f1c0000-0000-4000-8000-0000000000e5"))
                    .name("EFI system")
                    .stream(move |out| {
                        esp(tree).write_to(out, &NoProgress).map_err(std::io::Error::other)?;
                        Ok(())
                    }),
            )
            .partition(
                Partition::new(PartitionType::LINUX_FILESYSTEM, ROOT_SIZE)
                    .guid(guid("9f1c0000-0000-4000-8000-0000000000f5"))
                    .name("root")
                    .stream(|out| std::io::copy(&mut fs::File::open(&ext4)?, out).map(|_| ())),
            )
            .build()
            .unwrap()
    };
    let got = streamed(&tree).write_raw(Vec::new(), &NoProgress).unwrap();
    assert!(got == want, "streamed and read contents differ");

    // A stream cannot be read at offsets, so the sparse writers refuse it.
    let mut disk = streamed(&tree);
    assert!(disk.read_exact_at(MIB, &mut [0; 512]).is_err());
    let err = write_vhd_file(disk, &dir.join("no.vhd"), &vhd_opts(), &NoProgress).unwrap_err();
    let Error::File { source, .. } = &err else { panic!("{err}") };
    assert!(matches!(**source, Error::Source { offset, .. } if offset == 0), "{source}");
}
