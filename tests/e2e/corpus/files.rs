//! Damaged artifacts given to `verify`, `inspect` and `pack verify`: ISO, VHD, XVA and qcow2
//! files cut short or with a broken structure, each made from a good artifact xspack built.

use camino::{Utf8Path, Utf8PathBuf};
use xspack_testkit::{Compression, Entry, ImageSpec, layer_tar};

use super::{Case, case_dir, run_group};
use crate::common::{code, stderr, tempdir, xspack};

/// Builds the good artifacts once: `disk.{raw,vhd,qcow2,xva}` and a legacy pack ISO.
fn good_artifacts(root: &Utf8Path) -> (Utf8PathBuf, Utf8PathBuf) {
    let entries =
        vec![Entry::dir("data"), Entry::file("data/a", xspack_testkit::noise(9, 300_000))];
    ImageSpec::new(vec![(layer_tar(&entries), Compression::Gzip)])
        .write_oci_dir(&root.join("layout"), "latest")
        .unwrap();
    let dist = root.join("dist");
    let source = format!("oci:{root}/layout");
    let mut args = vec![
        "-q",
        "image",
        "build",
        &source,
        "--flavor",
        "none",
        "--name",
        "disk",
        "-o",
        dist.as_str(),
    ];
    for f in ["raw", "vhd", "qcow2", "xva"] {
        args.extend(["--format", f]);
    }
    let out = xspack().args(&args).output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let pack = root.join("pack");
    std::fs::create_dir_all(pack.join("files")).unwrap();
    std::fs::write(pack.join("files/a"), "payload\n").unwrap();
    std::fs::write(
        pack.join("pack.toml"),
        "[pack]\nname = \"corpus\"\nversion = \"1.0.0\"\nbuild = \"1\"\noriginator = \"xspack\"\n\
         description = \"corpus\"\nformats = [\"legacy\"]\n\n[legacy]\nproduct = \"XCP\"\n\n\
         [[package]]\nname = \"corpus\"\nversion = \"1.0.0\"\nsummary = \"s\"\ndescription = \"d\"\n\
         license = \"MIT\"\nfiles = [{ src = \"files/a\", dest = \"/usr/share/corpus/a\" }]\n",
    )
    .unwrap();
    let packs = root.join("packs");
    let out = xspack()
        .args(["-q", "pack", "build", pack.as_str(), "--unsigned", "-o", packs.as_str()])
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    (dist, packs.join("corpus-1.0.0-1.iso"))
}

fn be32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn be64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_be_bytes());
}

/// Rewrites the VHD footer's checksum (ones' complement of the byte sum, field excluded).
fn fix_footer_checksum(footer: &mut [u8]) {
    footer[64..68].fill(0);
    let sum: u32 = footer[..512].iter().map(|&b| u32::from(b)).sum();
    be32(footer, 64, !sum);
}

/// Rewrites a tar header's checksum after an edit.
fn fix_tar_checksum(h: &mut [u8]) {
    h[148..156].fill(b' ');
    let sum: u32 = h[..512].iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// Offset of the tar header whose name starts with `prefix` and ends with `suffix`.
fn tar_member(b: &[u8], pred: impl Fn(&str) -> bool) -> usize {
    let mut at = 0;
    while at + 512 <= b.len() {
        let name = String::from_utf8_lossy(&b[at..at + 100]).trim_end_matches('\0').to_owned();
        let size_text = String::from_utf8_lossy(&b[at + 124..at + 136])
            .trim_end_matches(['\0', ' '])
            .to_owned();
        let size = usize::from_str_radix(&size_text, 8).unwrap_or(0);
        if pred(&name) {
            return at;
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    panic!("no such member");
}

type Damage = fn(&mut Vec<u8>);

#[allow(clippy::too_many_lines)]
fn file_cases(root: &Utf8Path, dist: &Utf8Path, iso: &Utf8Path) -> Vec<(Utf8PathBuf, Case)> {
    let mut list = Vec::new();
    let mut single = |name: &str,
                      source: &Utf8Path,
                      file: &str,
                      damage: Damage,
                      commands: &[(&str, i32, &str)]| {
        let mut bytes = std::fs::read(source).unwrap();
        damage(&mut bytes);
        for &(command, code, problem) in commands {
            let case_name = format!("{name}-{}", command.replace(' ', "-"));
            let dir = case_dir(root, &case_name);
            let path = dir.join(file);
            std::fs::write(&path, &bytes).unwrap();
            let args: Vec<&str> = command.split(' ').chain([path.as_str()]).collect();
            list.push((dir, Case::new(case_name, &args, code, path.as_str(), problem)));
        }
    };
    let both = |p: &'static str| [("verify", 3, p), ("inspect", 3, p)];

    // ISO 9660 (a legacy pack ISO).
    single("iso-truncated", iso, "pack.iso", |b| b.truncate(b.len() / 2), &both("ISO"));
    single("iso-only-descriptor", iso, "pack.iso", |b| b.truncate(0x8000 + 2048), &both("ISO"));
    single(
        "iso-root-extent-out-of-bounds",
        iso,
        "pack.iso",
        |b| {
            // Root directory record at PVD offset 156; extent LBA both-endian at +2.
            let at = 0x8000 + 156 + 2;
            b[at..at + 4].copy_from_slice(&0x00ff_ffffu32.to_le_bytes());
            be32(b, at + 4, 0x00ff_ffff);
        },
        &both("ISO"),
    );
    single(
        "iso-volume-size-tiny",
        iso,
        "pack.iso",
        |b| {
            let at = 0x8000 + 80;
            b[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
            be32(b, at + 4, 1);
        },
        &both("ISO"),
    );
    single(
        "iso-root-directory-garbage",
        iso,
        "pack.iso",
        |b| {
            let at = 0x8000 + 156 + 2;
            let lba = u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize;
            let noise = xspack_testkit::noise(11, 2048);
            b[lba * 2048..lba * 2048 + 2048].copy_from_slice(&noise);
        },
        &both("ISO"),
    );
    single("iso-bad-descriptor-version", iso, "pack.iso", |b| b[0x8006] = 9, &both("ISO"));
    single(
        "iso-truncated",
        iso,
        "pack.iso",
        |b| b.truncate(b.len() / 2),
        &[("pack verify", 3, "")],
    );
    single("iso-zero-filled-pack", iso, "pack.iso", |b| b.fill(0), &[("pack verify", 3, "")]);

    // Dynamic VHD.
    let vhd = dist.join("disk.vhd");
    single(
        "vhd-footer-checksum",
        &vhd,
        "disk.vhd",
        |b| {
            let n = b.len();
            b[n - 512 + 64] ^= 0xff;
        },
        &both("VHD"),
    );
    single("vhd-truncated", &vhd, "disk.vhd", |b| b.truncate(b.len() / 2), &both("VHD"));
    single(
        "vhd-header-cookie",
        &vhd,
        "disk.vhd",
        |b| b[512..520].copy_from_slice(b"notsparse"[..8].as_ref()),
        &both("VHD"),
    );
    single(
        "vhd-bat-out-of-bounds",
        &vhd,
        "disk.vhd",
        |b| {
            let table =
                usize::try_from(u64::from_be_bytes(b[512 + 16..512 + 24].try_into().unwrap()))
                    .unwrap();
            be32(b, table, 0x7fff_fff0);
        },
        &both("VHD"),
    );
    single(
        "vhd-huge-current-size",
        &vhd,
        "disk.vhd",
        |b| {
            for at in [0, b.len() - 512] {
                be64(b, at + 48, 1 << 62);
                fix_footer_checksum(&mut b[at..at + 512]);
            }
        },
        &both("VHD"),
    );
    single(
        "vhd-footer-only",
        &vhd,
        "disk.vhd",
        |b| {
            let footer = b[b.len() - 512..].to_vec();
            *b = footer;
        },
        &both("VHD"),
    );

    // XVA.
    let xva = dist.join("disk.xva");
    single("xva-truncated", &xva, "disk.xva", |b| b.truncate(b.len() / 2), &both("XVA"));
    single(
        "xva-ova-xml-garbage",
        &xva,
        "disk.xva",
        |b| {
            let size_text =
                String::from_utf8_lossy(&b[124..136]).trim_end_matches(['\0', ' ']).to_owned();
            let size = usize::from_str_radix(&size_text, 8).unwrap();
            b[512..512 + size].copy_from_slice(&xspack_testkit::noise(12, size));
        },
        &both("XVA"),
    );
    single(
        "xva-chunk-flipped",
        &xva,
        "disk.xva",
        |b| {
            let at = tar_member(b, |n| n.starts_with("Ref:") && !n.contains('.'));
            b[at + 512 + 100] ^= 1;
        },
        &both("checksum mismatch"),
    );
    single(
        "xva-checksum-renamed",
        &xva,
        "disk.xva",
        |b| {
            let at = tar_member(b, |n| n.starts_with("Ref:") && n.ends_with(".checksum"));
            let len = b[at..at + 100].iter().position(|&c| c == 0).unwrap();
            b[at + len - 1] = b'x';
            fix_tar_checksum(&mut b[at..at + 512]);
        },
        &both("XVA"),
    );
    single("xva-tar-header-checksum", &xva, "disk.xva", |b| b[0x94] ^= 0x07, &both("XVA"));

    // qcow2: its header and tables by themselves, and its content by the lists beside it.
    let qcow2 = dist.join("disk.qcow2");
    single("qcow2-truncated", &qcow2, "disk.qcow2", |b| b.truncate(b.len() / 2), &both("qcow2"));
    single("qcow2-header-only", &qcow2, "disk.qcow2", |b| b.truncate(50), &both("qcow2"));
    single("qcow2-version-9", &qcow2, "disk.qcow2", |b| be32(b, 4, 9), &both("version 9"));
    single(
        "qcow2-cluster-bits-40",
        &qcow2,
        "disk.qcow2",
        |b| be32(b, 20, 40),
        &both("cluster_bits 40"),
    );
    single(
        "qcow2-backing-file",
        &qcow2,
        "disk.qcow2",
        |b| be64(b, 8, 0x1000),
        &both("backing file"),
    );
    single(
        "qcow2-l1-out-of-bounds",
        &qcow2,
        "disk.qcow2",
        |b| be64(b, 40, 1 << 40),
        &both("L1 table"),
    );
    single(
        "qcow2-huge-virtual-size",
        &qcow2,
        "disk.qcow2",
        |b| be64(b, 24, u64::MAX),
        &both("virtual size"),
    );
    single("qcow2-marked-corrupt", &qcow2, "disk.qcow2", |b| be64(b, 72, 2), &both("corrupt"));
    single(
        "qcow2-l2-entry-out-of-bounds",
        &qcow2,
        "disk.qcow2",
        |b| {
            let l1 = usize::try_from(u64::from_be_bytes(b[40..48].try_into().unwrap())).unwrap();
            let l2 = usize::try_from(
                u64::from_be_bytes(b[l1..l1 + 8].try_into().unwrap()) & 0x00ff_ffff_ffff_fe00,
            )
            .unwrap();
            let at = (l2..l2 + 65_536).step_by(8).find(|&i| b[i..i + 8] != [0; 8]).unwrap();
            be64(b, at, 0x8000_0000_0000_0000 | (1 << 45));
        },
        &both("beyond the end"),
    );
    for (name, damage) in
        [("qcow2-flipped-in-build", (|b: &mut Vec<u8>| b[100_000] ^= 1) as Damage)]
    {
        let dir = case_dir(root, name);
        let copy = dir.join("dist");
        std::fs::create_dir(&copy).unwrap();
        for f in ["disk.qcow2", "SHA256SUMS", "manifest.json"] {
            std::fs::copy(dist.join(f), copy.join(f)).unwrap();
        }
        let mut b = std::fs::read(copy.join("disk.qcow2")).unwrap();
        damage(&mut b);
        std::fs::write(copy.join("disk.qcow2"), b).unwrap();
        let target = copy.join("disk.qcow2");
        list.push((
            dir,
            Case::new(name, &["verify", target.as_str()], 3, target.as_str(), "disk.qcow2 ("),
        ));
    }
    list
}

#[test]
fn corpus_files_for_verify_and_inspect() {
    let (_t, root) = tempdir();
    let good = root.join("good");
    std::fs::create_dir(&good).unwrap();
    let (dist, iso) = good_artifacts(&good);
    let cases = file_cases(&root.join("cases"), &dist, &iso);
    run_group("files", &cases);
}
