//! `image build --format raw|vhd|qcow2|xva`: every format from one build, checked by qemu-img,
//! vhdiinfo and xva-img against the raw image; `verify` and `inspect` on single artifacts.

use camino::Utf8Path;
use xspack_testkit::{Compression, Entry, ImageSpec, layer_tar};

use crate::common::{assert_same_disk, code, run, stderr, stdout, tempdir, tool_stdout};

fn image() -> ImageSpec {
    let mut entries = vec![Entry::dir("data")];
    for i in 0..50u32 {
        let body: Vec<u8> =
            (0..70_000u32).map(|k| u8::try_from((k * 7 + i) % 251).unwrap()).collect();
        entries.push(Entry::file(format!("data/f{i:02}"), body));
    }
    ImageSpec::new(vec![(layer_tar(&entries), Compression::Gzip)])
}

fn build_all(root: &Utf8Path) -> camino::Utf8PathBuf {
    image().write_oci_dir(&root.join("layout"), "latest").unwrap();
    let dist = root.join("dist");
    let mut args =
        vec!["-q", "image", "build", "--flavor", "none", "--name", "disk", "-o", dist.as_str()];
    for f in ["raw", "vhd", "qcow2", "xva"] {
        args.extend(["--format", f]);
    }
    let source = format!("oci:{root}/layout");
    args.push(&source);
    let out = run(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    dist
}

#[test]
fn every_format_holds_the_same_disk() {
    let (_t, root) = tempdir();
    let dist = build_all(&root);
    let raw = dist.join("disk.raw");
    let size = std::fs::metadata(&raw).unwrap().len();
    assert_eq!(size % (2 << 20), 0);
    // qemu-img: formats, exact sizes, identical content, a clean qcow2.
    let info = tool_stdout(
        "qemu-img",
        &["info", "--output=json", "-f", "vpc", dist.join("disk.vhd").as_str()],
    );
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["virtual-size"], size);
    assert_eq!(info["format"], "vpc");
    assert_same_disk(&raw, "vpc", &dist.join("disk.vhd"));
    assert_same_disk(&raw, "qcow2", &dist.join("disk.qcow2"));
    tool_stdout("qemu-img", &["check", "-f", "qcow2", dist.join("disk.qcow2").as_str()]);
    // vhdiinfo: a dynamic disk of exactly the raw size.
    let vhdi = tool_stdout("vhdiinfo", &[dist.join("disk.vhd").as_str()]);
    assert!(vhdi.contains("Dynamic"), "{vhdi}");
    assert!(vhdi.contains(&format!("{size} bytes")), "{vhdi}");
    // xva-img rebuilds the disk from the XVA byte for byte.
    let x = root.join("x");
    std::fs::create_dir(&x).unwrap();
    tool_stdout("tar", &["-xf", dist.join("disk.xva").as_str(), "-C", x.as_str()]);
    let refs: Vec<String> = std::fs::read_dir(&x)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("Ref:"))
        .collect();
    assert_eq!(refs.len(), 1, "{refs:?}");
    let back = root.join("back.raw");
    tool_stdout("xva-img", &["-p", "disk-export", &format!("{x}/{}/", refs[0]), back.as_str()]);
    assert!(
        std::fs::read(&back).unwrap() == std::fs::read(&raw).unwrap(),
        "xva-img output differs from the raw image"
    );
    // Our own checks pass on each artifact, and the directory verifies.
    for f in ["disk.vhd", "disk.xva", "disk.qcow2", "disk.raw"] {
        let out = run(&["verify", dist.join(f).as_str()]);
        assert_eq!(code(&out), 0, "{f}: {}", stderr(&out));
    }
    let out = run(&["verify", dist.join("disk.xva").as_str()]);
    assert_eq!(
        stdout(&out),
        format!(
            "{}: OK (XVA structure and checksums, sha256 in SHA256SUMS and manifest.json)\n",
            dist.join("disk.xva")
        )
    );
    assert_eq!(code(&run(&["verify", dist.as_str()])), 0);
}

/// Offset of the data of the first `Ref:*/%08d` chunk member in an XVA.
fn first_chunk_data(xva: &[u8]) -> (usize, String) {
    let mut at = 0;
    while at + 512 <= xva.len() {
        let header = &xva[at..at + 512];
        let name = String::from_utf8_lossy(&header[..100]).trim_end_matches('\0').to_owned();
        let size_text =
            String::from_utf8_lossy(&header[124..136]).trim_end_matches(['\0', ' ']).to_owned();
        let size = usize::from_str_radix(&size_text, 8).unwrap();
        if name.starts_with("Ref:") && !name.contains('.') {
            return (at + 512, name);
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    panic!("no chunk found");
}

#[test]
fn a_flipped_chunk_byte_names_the_chunk() {
    let (_t, root) = tempdir();
    let dist = build_all(&root);
    let xva = dist.join("disk.xva");
    let mut bytes = std::fs::read(&xva).unwrap();
    let (offset, chunk) = first_chunk_data(&bytes);
    bytes[offset + 1234] ^= 0x01;
    let tampered = root.join("tampered.xva");
    std::fs::write(&tampered, &bytes).unwrap();
    let out = run(&["verify", tampered.as_str()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&chunk) && err.contains("checksum mismatch"), "{err}");
    // The copy in the directory is caught by the directory's own lists as well.
    std::fs::write(&xva, &bytes).unwrap();
    let out = run(&["verify", xva.as_str()]);
    assert_eq!(code(&out), 3);
    assert!(stderr(&out).contains(&chunk), "{}", stderr(&out));
}

#[test]
fn a_broken_vhd_is_refused_with_the_rule() {
    let (_t, root) = tempdir();
    let dist = build_all(&root);
    let mut bytes = std::fs::read(dist.join("disk.vhd")).unwrap();
    let len = bytes.len();
    bytes[len - 512 + 64] ^= 0xff; // footer checksum field
    let broken = root.join("broken.vhd");
    std::fs::write(&broken, &bytes).unwrap();
    let out = run(&["verify", broken.as_str()]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(&format!("xspack: error: {broken}: VHD: ")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn inspect_shows_each_artifact() {
    let (_t, root) = tempdir();
    let dist = build_all(&root);
    let out = run(&["inspect", "--json", dist.join("disk.vhd").as_str()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let size = std::fs::metadata(dist.join("disk.raw")).unwrap().len();
    assert_eq!(v["artifact"]["info"]["virtual_size"], size);
    assert_eq!(v["artifact"]["info"]["creator_app"], "tap");
    let out = run(&["inspect", dist.join("disk.xva").as_str()]);
    assert_eq!(code(&out), 0);
    assert!(stdout(&out).contains("info.name"), "{}", stdout(&out));
    let out = run(&["inspect", dist.join("disk.raw").as_str()]);
    assert_eq!(code(&out), 1, "a raw filesystem has no format to inspect");
}

/// Whichever formats are asked for together, each comes out the same: also for files with zero
/// blocks (runs across 2 MiB VHD blocks, all-zero files, zero tails) that leave VHD blocks
/// empty. (The library's streamed and derived paths are compared in xspack-image's tests.)
#[test]
fn one_pass_formats_equal_the_raw_derived_ones() {
    let (_t, root) = tempdir();
    let layers = xspack_testkit::zero_block_layers();
    ImageSpec::new(layers).write_oci_dir(&root.join("layout"), "latest").unwrap();
    let source = format!("oci:{root}/layout");
    let build = |dir: &str, formats: &[&str]| {
        let dist = root.join(dir);
        let mut args =
            vec!["-q", "image", "build", "--flavor", "none", "--name", "d", "-o", dist.as_str()];
        for f in formats {
            args.extend(["--format", f]);
        }
        args.push(&source);
        let out = run(&args);
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        dist
    };
    let derived = build("derived", &["raw", "vhd", "qcow2", "xva"]);
    let one_pass = build("one-pass", &["raw", "vhd", "xva"]);
    let vhd_only = build("vhd-only", &["vhd"]);
    let xva_only = build("xva-only", &["xva"]);
    let read = |p: camino::Utf8PathBuf| std::fs::read(&p).unwrap();
    for (dir, file) in [
        (&one_pass, "d.raw"),
        (&one_pass, "d.vhd"),
        (&one_pass, "d.xva"),
        (&vhd_only, "d.vhd"),
        (&xva_only, "d.xva"),
    ] {
        assert!(read(dir.join(file)) == read(derived.join(file)), "{dir}/{file} differs");
    }
    let info = tool_stdout("vhdiinfo", &[one_pass.join("d.vhd").as_str()]);
    assert!(info.contains("Dynamic"), "{info}");
    assert_same_disk(&one_pass.join("d.raw"), "vpc", &vhd_only.join("d.vhd"));
    assert_eq!(code(&run(&["verify", vhd_only.as_str()])), 0);
    assert_eq!(code(&run(&["verify", xva_only.join("d.xva").as_str()])), 0);
}
