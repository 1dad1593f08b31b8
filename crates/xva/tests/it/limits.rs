//! `ova.xml` is read into memory only up to [`MAX_OVA_XML`] (16 MiB): larger is refused by its
//! header's size before any of it is read (`broken::oversized_ova_xml_is_refused_before_reading_it`),
//! and one just under the limit made of two million empty values is parsed in bounded memory
//! (peak RSS measured in a child process from `/proc/self/status` `VmHWM`).

use std::io::Cursor;

use xspack_testkit::child::{peak_rss_kib, reported, run_test_in_child};
use xspack_xva::{Error, MAX_OVA_XML, XvaReader};

/// An archive whose `ova.xml` is a flat array of `<value/>`, just under [`MAX_OVA_XML`].
fn huge_ova_xml() -> Vec<u8> {
    let head = b"<?xml version=\"1.0\"?><value><array><data>";
    let tail = b"</data></array></value>";
    let room = usize::try_from(MAX_OVA_XML).unwrap() - head.len() - tail.len();
    let mut xml = head.to_vec();
    xml.extend(b"<value/>".repeat(room / 8));
    xml.extend_from_slice(tail);
    let mut h = [0u8; 512];
    h[..7].copy_from_slice(b"ova.xml");
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..124].copy_from_slice(b"0000000\x000000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", xml.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..265].copy_from_slice(b"ustar\x0000");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(&xml);
    out.resize(out.len().next_multiple_of(512) + 1024, 0);
    out
}

#[test]
fn an_ova_xml_at_the_limit_is_parsed_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.xva");
    std::fs::write(&path, huge_ova_xml()).unwrap();
    let text = run_test_in_child(
        "limits::read_and_report_peak_rss",
        ("XSPACK_XVA_LIMITS_ARCHIVE", path.to_str().unwrap()),
    );
    assert_eq!(reported(&text, "ERROR"), "ova.xml: document: version: missing");
    let peak_kib: u64 = reported(&text, "VMHWM").parse().unwrap();
    eprintln!("peak RSS reading a 16 MiB ova.xml of 2 million values: {} MiB", peak_kib / 1024);
    assert!(peak_kib < 512 * 1024, "peak RSS {peak_kib} KiB");
}

/// Run by the test above in a child process, so that `VmHWM` is this read's alone.
#[test]
#[ignore = "run by an_ova_xml_at_the_limit_is_parsed_in_bounded_memory"]
fn read_and_report_peak_rss() {
    let path = std::env::var("XSPACK_XVA_LIMITS_ARCHIVE").expect("run by the parent test");
    let bytes = std::fs::read(path).unwrap();
    let err = XvaReader::new(Cursor::new(bytes)).err().expect("refused");
    assert!(matches!(err, Error::OvaField { .. }), "{err}");
    println!("ERROR {err}");
    println!("VMHWM {}", peak_rss_kib());
}
