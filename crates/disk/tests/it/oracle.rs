//! Our images as the real readers see them: `qemu-img` (vpc and qcow2 drivers) and libvhdi.

use std::fs;

use camino::Utf8Path;
use serde_json::Value;
use xspack_disk::FileSource;
use xspack_disk::qcow2::{Qcow2Options, write_qcow2_file};
use xspack_disk::vhd::{open_vhd_file, write_vhd_file};
use xspack_io::NoProgress;

use crate::{MIB, Pattern, small_disk, tempdir, tool, tool_ok, vhd_opts};

fn info(format: &str, path: &Utf8Path) -> Value {
    let out = tool_ok("qemu-img", &["info", "--output=json", "-f", format, path.as_str()]);
    serde_json::from_str(&out).unwrap()
}

fn assert_identical(raw: &Utf8Path, format: &str, image: &Utf8Path) {
    let out =
        tool_ok("qemu-img", &["compare", "-f", "raw", "-F", format, raw.as_str(), image.as_str()]);
    assert!(out.contains("Images are identical"), "{out}");
}

fn assert_qcow2_check_clean(image: &Utf8Path) {
    let out = tool("qemu-img", &["check", "--output=json", "-f", "qcow2", image.as_str()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "qemu-img check: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(report["check-errors"], 0, "{text}");
    for key in ["corruptions", "leaks", "corruptions-fixed", "leaks-fixed"] {
        assert!(report.get(key).is_none_or(|v| v == 0), "{key} in {text}");
    }
}

/// Writes `pattern` as a sparse raw file (holes where it is zero) and returns its path.
pub fn write_raw(dir: &Utf8Path, pattern: &Pattern) -> camino::Utf8PathBuf {
    use std::os::unix::fs::FileExt as _;
    let path = dir.join("disk.raw");
    let file = fs::File::create(&path).unwrap();
    file.set_len(pattern.size).unwrap();
    for r in &pattern.regions {
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        pattern.fill(r.start, &mut buf);
        file.write_all_at(&buf, r.start).unwrap();
    }
    path
}

#[test]
fn vhd_reads_back_in_qemu_and_libvhdi() {
    let (_tmp, dir) = tempdir();
    let pattern = small_disk();
    let raw = write_raw(&dir, &pattern);
    let vhd = dir.join("disk.vhd");
    let summary =
        write_vhd_file(FileSource::open(&raw).unwrap(), &vhd, &vhd_opts(), &NoProgress).unwrap();
    assert_eq!((summary.total_blocks, summary.allocated_blocks), (8, 3));
    assert_eq!(fs::metadata(&vhd).unwrap().len(), summary.file_size);

    let info = info("vpc", &vhd);
    assert_eq!(info["format"], "vpc");
    assert_eq!(info["virtual-size"], 16 * MIB, "exact size, not CHS-rounded");
    assert_eq!(info["cluster-size"], 2 * MIB);
    assert_identical(&raw, "vpc", &vhd);

    let out = tool_ok("vhdiinfo", &[vhd.as_str()]);
    let field = |name: &str| {
        let rest = out.lines().find_map(|l| l.trim().strip_prefix(name));
        let rest = rest.unwrap_or_else(|| panic!("no {name} in vhdiinfo output:\n{out}"));
        rest.trim_start_matches(|c: char| c.is_whitespace() || c == ':').to_owned()
    };
    assert_eq!(field("Disk type"), "Dynamic");
    assert!(field("Media size").ends_with("(16777216 bytes)"), "{out}");
    assert_eq!(field("Format version"), "1.0");
    assert_eq!(field("Identifier"), vhd_opts().uuid.to_string());

    // Our own checker and reader agree.
    let mut back = open_vhd_file(&vhd).unwrap();
    back.check_stream_layout().unwrap();
    let mut bytes = Vec::new();
    std::io::copy(&mut back.raw_reader(), &mut bytes).unwrap();
    assert!(bytes == pattern.render());
}

#[test]
fn vhd_of_a_full_and_an_empty_disk() {
    let (_tmp, dir) = tempdir();
    for (name, region) in [("full", Some(0..6 * MIB)), ("empty", None)] {
        let sub = dir.join(name);
        fs::create_dir(&sub).unwrap();
        let pattern = Pattern::new(6 * MIB, region.into_iter().collect());
        let raw = write_raw(&sub, &pattern);
        let vhd = sub.join("disk.vhd");
        write_vhd_file(FileSource::open(&raw).unwrap(), &vhd, &vhd_opts(), &NoProgress).unwrap();
        assert_eq!(info("vpc", &vhd)["virtual-size"], 6 * MIB);
        assert_identical(&raw, "vpc", &vhd);
    }
}

#[test]
fn qcow2_reads_back_and_checks_clean() {
    let (_tmp, dir) = tempdir();
    let pattern = small_disk();
    let raw = write_raw(&dir, &pattern);
    for compress in [false, true] {
        let image = dir.join(format!("disk-{compress}.qcow2"));
        let opts = Qcow2Options::new(compress);
        let summary =
            write_qcow2_file(FileSource::open(&raw).unwrap(), &image, &opts, &NoProgress).unwrap();
        // 1.5 MiB = 24 clusters, plus one cluster each for the two small regions.
        assert_eq!(summary.allocated_clusters, 26);
        // Clusters 0, 3, ..., 21 are noise and stay plain (see `Pattern`); the others shrink.
        let compressed = if compress { 26 - 8 } else { 0 };
        assert_eq!(summary.compressed_clusters, compressed);
        let info = info("qcow2", &image);
        assert_eq!(info["format"], "qcow2");
        assert_eq!(info["virtual-size"], 16 * MIB);
        assert_eq!(info["cluster-size"], 65536);
        assert_eq!(info["format-specific"]["data"]["compat"], "1.1", "qcow2 version 3");
        assert_identical(&raw, "qcow2", &image);
        assert_qcow2_check_clean(&image);
    }
}

#[test]
fn qcow2_with_several_l2_tables_and_an_odd_size() {
    // 1.25 GiB + 1536 bytes: three L2 tables' reach, a partial last cluster with data at its end.
    let size = 1280 * MIB + 1536;
    let pattern = Pattern::new(
        size,
        vec![
            100..70_000,
            511 * MIB + 65_000..513 * MIB + 10,
            1100 * MIB..1100 * MIB + 3 * 65_536,
            size - 1000..size,
        ],
    );
    let (_tmp, dir) = tempdir();
    let raw = write_raw(&dir, &pattern);
    for compress in [false, true] {
        let image = dir.join(format!("odd-{compress}.qcow2"));
        let opts = Qcow2Options::new(compress);
        write_qcow2_file(FileSource::open(&raw).unwrap(), &image, &opts, &NoProgress).unwrap();
        assert_eq!(info("qcow2", &image)["virtual-size"], size);
        assert_identical(&raw, "qcow2", &image);
        assert_qcow2_check_clean(&image);
    }
}

#[test]
fn qcow2_from_a_forward_only_reader() {
    let pattern = small_disk();
    let (_tmp, dir) = tempdir();
    let raw = write_raw(&dir, &pattern);
    let image = dir.join("reopened.qcow2");
    let mut opened = 0;
    let source = xspack_disk::ReopenSource::new(pattern.size, || {
        opened += 1;
        Ok(pattern.clone())
    });
    write_qcow2_file(source, &image, &Qcow2Options::new(true), &NoProgress).unwrap();
    assert_eq!(opened, 2, "one reader per pass");
    assert_identical(&raw, "qcow2", &image);
}

#[test]
fn reads_vhds_written_by_qemu() {
    let (_tmp, dir) = tempdir();
    let pattern = small_disk();
    let raw = write_raw(&dir, &pattern);
    let vhd = dir.join("qemu.vhd");
    let convert = |opts: &str, out: &Utf8Path| {
        let args = ["convert", "-f", "raw", "-O", "vpc", "-o", opts, raw.as_str(), out.as_str()];
        tool_ok("qemu-img", &args);
    };
    convert("subformat=dynamic", &vhd);
    // qemu rounds the size up to a CHS-representable one, so its last block is partial.
    let size = info("vpc", &vhd)["virtual-size"].as_u64().unwrap();
    assert!(size > pattern.size && !size.is_multiple_of(2 * MIB), "{size}");
    let mut file = open_vhd_file(&vhd).unwrap();
    let summary = file.info();
    assert_eq!((summary.creator_app.as_str(), summary.virtual_size), ("qemu", size));
    assert!(!summary.batmap);
    let mut back = Vec::new();
    std::io::copy(&mut file.raw_reader(), &mut back).unwrap();
    let mut want = pattern.render();
    want.resize(usize::try_from(size).unwrap(), 0);
    assert!(back == want);

    // force_size=on keeps the size but writes the largest geometry, which blktap refuses.
    let forced = dir.join("forced.vhd");
    convert("subformat=dynamic,force_size=on", &forced);
    let err = open_vhd_file(&forced).unwrap_err();
    assert!(
        matches!(err.violation(), Some(xspack_disk::vhd::Violation::GeometryTooLarge { .. })),
        "{err:#}"
    );
    assert!(err.to_string().contains("forced.vhd"), "{err}");
}
