//! Resource bounds of the reader on a directory of a million entries: refused at
//! [`ReadLimits::max_entries`], with the limit named, in bounded memory (peak RSS measured in a
//! child process from `/proc/self/status` `VmHWM`).

use std::io::Cursor;

use xspack_iso::{Error, IsoReader, ReadLimits};
use xspack_testkit::child::{peak_rss_kib, reported, run_test_in_child};

const SECTOR: usize = 2048;

fn both32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    b[at + 4..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn record(out: &mut Vec<u8>, ident: &[u8], extent: u32, size: u32, dir: bool) {
    let len = 33 + ident.len() + usize::from(ident.len().is_multiple_of(2));
    let sector_left = SECTOR - out.len() % SECTOR;
    if len > sector_left {
        out.resize(out.len() + sector_left, 0);
    }
    let at = out.len();
    out.resize(at + len, 0);
    out[at] = u8::try_from(len).unwrap();
    both32(out, at + 2, extent);
    both32(out, at + 10, size);
    out[at + 25] = if dir { 2 } else { 0 };
    out[at + 28..at + 32].copy_from_slice(&[1, 0, 0, 1]);
    out[at + 32] = u8::try_from(ident.len()).unwrap();
    out[at + 33..at + 33 + ident.len()].copy_from_slice(ident);
}

/// A plain ISO 9660 image (no Rock Ridge, no Joliet) whose root holds `n` empty files.
pub fn flat_image(n: usize) -> Vec<u8> {
    let root_sector = 18u32;
    let mut dir = Vec::new();
    // `.` and `..` are written once the size is known.
    record(&mut dir, &[0], root_sector, 0, true);
    record(&mut dir, &[1], root_sector, 0, true);
    for i in 0..n {
        record(&mut dir, format!("F{i:07}.;1").as_bytes(), 0, 0, false);
    }
    dir.resize(dir.len().next_multiple_of(SECTOR), 0);
    let size = u32::try_from(dir.len()).unwrap();
    both32(&mut dir, 10, size);
    both32(&mut dir, 34 + 10, size);
    let mut img = vec![0u8; 18 * SECTOR];
    let pvd = 16 * SECTOR;
    img[pvd..pvd + 7].copy_from_slice(b"\x01CD001\x01");
    let total = u32::try_from(18 + dir.len() / SECTOR).unwrap();
    both32(&mut img, pvd + 80, total);
    img[pvd + 128..pvd + 132].copy_from_slice(&[0, 8, 8, 0]);
    let mut root = Vec::new();
    record(&mut root, &[0], root_sector, size, true);
    img[pvd + 156..pvd + 190].copy_from_slice(&root[..34]);
    img[17 * SECTOR..17 * SECTOR + 7].copy_from_slice(b"\xffCD001\x01");
    img.extend_from_slice(&dir);
    img
}

#[test]
fn flat_images_are_read() {
    let mut r = IsoReader::new(Cursor::new(flat_image(1000))).unwrap();
    assert_eq!(r.entries().unwrap().len(), 1000);
}

#[test]
fn a_million_entries_are_refused_at_the_limit_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("million.iso");
    std::fs::write(&path, flat_image(1_000_000)).unwrap();
    let text = run_test_in_child(
        "limits::read_and_report_peak_rss",
        ("XSPACK_ISO_LIMITS_IMAGE", path.to_str().unwrap()),
    );
    assert_eq!(reported(&text, "ERROR"), "/: number of entries exceeds the limit of 100000");
    let peak_kib: u64 = reported(&text, "VMHWM").parse().unwrap();
    eprintln!("peak RSS reading a million entries: {} MiB", peak_kib / 1024);
    // The 44 MB directory extent is read whole (at most ReadLimits::max_dir_size, 64 MiB),
    // plus the records up to the entry limit.
    assert!(peak_kib < 256 * 1024, "peak RSS {peak_kib} KiB");
}

/// Run by the test above in a child process, so that `VmHWM` is this read's alone.
#[test]
#[ignore = "run by a_million_entries_are_refused_at_the_limit_in_bounded_memory"]
fn read_and_report_peak_rss() {
    let path = std::env::var("XSPACK_ISO_LIMITS_IMAGE").expect("run by the parent test");
    let file = std::fs::File::open(path).unwrap();
    let mut reader = IsoReader::with_limits(file, ReadLimits::default()).unwrap();
    let err = reader.entries().unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { what: "number of entries", .. }), "{err}");
    println!("ERROR {err}");
    println!("VMHWM {}", peak_rss_kib());
}
