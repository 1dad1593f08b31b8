//! Oracles: GNU tar lists and extracts what we write, `file` sees ustar headers, and xva-img
//! 1.4.2 (`xva-img disk-export`) rebuilds every disk byte-identically (`eriklax/xva-img:src/disk.cpp`).

use std::fs;
use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_xva::{ChecksumKind, DISK_ALIGNMENT};

use crate::{SparseDisk, run, spec, standard, write};

fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

/// Extracts `xva` with GNU tar and rebuilds each disk with xva-img, comparing with `cmp`.
fn xva_img_round_trip(xva: &[u8], disks: &[Vec<u8>], root: &Utf8Path) {
    let file = root.join("x.xva");
    fs::write(&file, xva).unwrap();
    let dir = root.join("d");
    fs::create_dir(&dir).unwrap();
    run(Command::new("tar").arg("-xf").arg(&file).arg("-C").arg(&dir));
    for (i, disk) in disks.iter().enumerate() {
        let raw = root.join(format!("disk{i}.raw"));
        fs::write(&raw, disk).unwrap();
        let out = root.join(format!("out{i}.raw"));
        // Disk i's VDI is Ref:{3+2i}; xva-img wants the chunk directory (trailing slash).
        let chunk_dir = dir.join(format!("Ref:{}/", 3 + 2 * i));
        run(Command::new("xva-img").arg("-p").arg("disk-export").arg(chunk_dir.as_str()).arg(&out));
        run(Command::new("cmp").arg(&raw).arg(&out));
    }
}

#[test]
fn xva_img_rebuilds_one_disk() {
    let (_t, root) = tempdir();
    let size = 4 * DISK_ALIGNMENT;
    let mib = 1 << 20;
    // Data in chunk 0, across chunks 2-3, and in the last chunk; chunks 1 and 4-6 are elided.
    let disk = SparseDisk::new(size, &[(0, 512), (2 * mib + 100, mib), (size - 10, 10)]).to_vec();
    let xva = write(&spec("one", &[size]), std::slice::from_ref(&disk), ChecksumKind::Sha1);
    xva_img_round_trip(&xva, &[disk], &root);
}

#[test]
fn xva_img_rebuilds_two_disks_including_an_all_zero_one() {
    let (_t, root) = tempdir();
    let (_, mut disks) = standard();
    // A third disk that is all zeros: only its first and last chunks are written.
    disks.push(vec![0; usize::try_from(2 * DISK_ALIGNMENT).unwrap()]);
    let sizes: Vec<u64> = disks.iter().map(|d| d.len() as u64).collect();
    let xva = write(&spec("two", &sizes), &disks, ChecksumKind::Sha1);
    xva_img_round_trip(&xva, &disks, &root);
}

#[test]
fn gnu_tar_lists_members_in_order_with_ustar_headers() {
    let (_t, root) = tempdir();
    let (spec, disks) = standard();
    let file = root.join("x.xva");
    fs::write(&file, write(&spec, &disks, ChecksumKind::Sha1)).unwrap();

    // -R prints each member's block number: consecutive numbers with no gaps prove there are no
    // hidden PAX or GNU long-name records between the members.
    let out = run(Command::new("tar").arg("-tvRf").arg(&file));
    let listing = String::from_utf8(out.stdout).unwrap();
    let mut names = Vec::new();
    let mut next_block = 0u64;
    for line in listing.lines() {
        let rest = line.strip_prefix("block ").unwrap_or_else(|| panic!("{line}"));
        let (block, entry) = rest.split_once(": ").unwrap();
        if entry.starts_with("** ") {
            // "** Block of NULs **" then "** End of File **": the end-of-archive marker.
            assert_eq!(block.parse::<u64>().unwrap(), next_block, "{line}");
            assert!(matches!(entry, "** Block of NULs **" | "** End of File **"), "{line}");
            continue;
        }
        let fields: Vec<&str> = entry.split_whitespace().collect();
        assert_eq!(fields[0], "-rw-r--r--", "{line}");
        assert_eq!(fields[1], "root/root", "{line}");
        let size: u64 = fields[2].parse().unwrap();
        assert_eq!(block.parse::<u64>().unwrap(), next_block, "{line}");
        next_block += 1 + size.div_ceil(512);
        names.push(fields[5].to_owned());
    }
    let expected = [
        "ova.xml",
        "Ref:3/00000000",
        "Ref:3/00000000.checksum",
        "Ref:3/00000001",
        "Ref:3/00000001.checksum",
        "Ref:3/00000003",
        "Ref:3/00000003.checksum",
        "Ref:5/00000000",
        "Ref:5/00000000.checksum",
        "Ref:5/00000001",
        "Ref:5/00000001.checksum",
    ];
    assert_eq!(names, expected);

    let out = run(Command::new("file").arg("-b").arg(&file));
    let kind = String::from_utf8(out.stdout).unwrap();
    assert_eq!(kind.trim(), "POSIX tar archive", "ustar magic, not GNU or V7");

    // The checksum members hold exactly what sha1sum computes for the extracted chunks.
    let dir = root.join("d");
    fs::create_dir(&dir).unwrap();
    run(Command::new("tar").arg("-xf").arg(&file).arg("-C").arg(&dir));
    let chunk = dir.join("Ref:3/00000001");
    let out = run(Command::new("sha1sum").arg(&chunk));
    let sum = String::from_utf8(out.stdout).unwrap();
    let recorded = fs::read_to_string(dir.join("Ref:3/00000001.checksum")).unwrap();
    assert_eq!(sum.split_whitespace().next().unwrap(), recorded);
}
