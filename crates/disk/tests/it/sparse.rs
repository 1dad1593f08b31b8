//! Sparse stays sparse: a 20 GiB disk holding 200 MiB of data, given as a `Read` of zeros with
//! a few data regions (nothing of 20 GiB is ever created), gives images of about 200 MiB.

use std::io::{Read, Seek, SeekFrom};

use serde_json::Value;
use xspack_disk::SeekSource;
use xspack_disk::qcow2::{Qcow2Options, write_qcow2_file};
use xspack_disk::vhd::{open_vhd_file, write_vhd_file};
use xspack_io::NoProgress;

use crate::{MIB, Pattern, tempdir, tool_ok, vhd_opts};

const GIB: u64 = 1 << 30;

/// 25 regions of 8 MiB spread over 20 GiB, plus one byte at an odd offset near the end.
fn twenty_gib() -> Pattern {
    let mut regions: Vec<_> = (0..25).map(|k| k * 816 * MIB..k * 816 * MIB + 8 * MIB).collect();
    regions.push(19 * GIB + 3..19 * GIB + 4);
    Pattern::new(20 * GIB, regions)
}

fn assert_about(file_size: u64, data: u64) {
    assert!(
        file_size >= data && file_size < data + data / 20,
        "{file_size} bytes for {data} bytes of data"
    );
}

#[test]
fn twenty_gib_disk_as_vhd() {
    let pattern = twenty_gib();
    let data = pattern.data_len();
    assert_eq!(data, 200 * MIB + 1);
    let (_tmp, dir) = tempdir();

    let vhd = dir.join("big.vhd");
    let source = SeekSource::new(pattern.clone(), pattern.size);
    let summary = write_vhd_file(source, &vhd, &vhd_opts(), &NoProgress).unwrap();
    assert_eq!((summary.total_blocks, summary.allocated_blocks), (10240, 101));
    assert_about(std::fs::metadata(&vhd).unwrap().len(), data);
    let info = tool_ok("qemu-img", &["info", "--output=json", "-f", "vpc", vhd.as_str()]);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["virtual-size"], 20 * GIB);
    // Spot-check the data through our reader.
    let mut file = open_vhd_file(&vhd).unwrap();
    file.check_stream_layout().unwrap();
    let mut reader = file.raw_reader();
    for offset in [0, 816 * MIB - 100, 24 * 816 * MIB + 8 * MIB - 5, 19 * GIB, 20 * GIB - 4096] {
        let mut got = vec![0u8; 4096];
        reader.seek(SeekFrom::Start(offset)).unwrap();
        reader.read_exact(&mut got).unwrap();
        let mut want = vec![0u8; 4096];
        pattern.fill(offset, &mut want);
        assert!(got == want, "data at {offset}");
    }
}

#[test]
fn twenty_gib_disk_as_qcow2() {
    let pattern = twenty_gib();
    let data = pattern.data_len();
    let (_tmp, dir) = tempdir();
    let qcow2 = dir.join("big.qcow2");
    let source = SeekSource::new(pattern.clone(), pattern.size);
    let summary = write_qcow2_file(source, &qcow2, &Qcow2Options::default(), &NoProgress).unwrap();
    assert_eq!(summary.allocated_clusters, 25 * 128 + 1);
    assert_about(std::fs::metadata(&qcow2).unwrap().len(), data);
    let info = tool_ok("qemu-img", &["info", "--output=json", "-f", "qcow2", qcow2.as_str()]);
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["virtual-size"], 20 * GIB);
    tool_ok("qemu-img", &["check", "-f", "qcow2", qcow2.as_str()]);
    // qemu sees exactly the allocated clusters as data.
    let map = tool_ok("qemu-img", &["map", "--output=json", "-f", "qcow2", qcow2.as_str()]);
    let map: Vec<Value> = serde_json::from_str(&map).unwrap();
    let mapped: u64 =
        map.iter().filter(|e| e["data"] == true).map(|e| e["length"].as_u64().unwrap()).sum();
    assert_eq!(mapped, summary.allocated_clusters * 65536);
}
