//! Peak memory of builds with a 200 MB payload of generated data and a 3 GiB payload of sparse
//! files, each measured in a child process (this test binary run again for that test alone):
//! the payload is compressed and written as a stream, so the peak resident set (`VmHWM`)
//! stays far below the payload size. No timing is asserted.

use std::fs;
use std::io::Write;
use std::process::Command;

use camino::Utf8Path;
use xspack_rpmrepo::{Compression, RpmBuilder};
use xspack_testkit::child::{peak_rss_kib, reported, run_test_in_child};

use crate::{EPOCH, run, signing_key, tempdir};

const CHILD_ENV: &str = "XSPACK_RPM_MEMORY_CHILD";
/// The payload: 4 files of 50 MB.
const FILES: u64 = 4;
const FILE_SIZE: u64 = 50_000_000;
/// The bound the writer promises, whatever the payload size.
const MAX_PEAK_KIB: u64 = 128 * 1024;

/// Pseudo-random bytes (xorshift), half of them in runs of text so that gzip works for them.
fn generate(path: &Utf8Path, seed: u64) {
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut x = seed | 1;
    let mut block = vec![0u8; 1 << 16];
    for i in 0..FILE_SIZE.div_ceil(block.len() as u64) {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bytes = if i % 2 == 0 { x.to_le_bytes() } else { *b"payload " };
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        let left = FILE_SIZE - i * block.len() as u64;
        f.write_all(&block[..block.len().min(usize::try_from(left).unwrap())]).unwrap();
    }
    f.flush().unwrap();
}

/// Builds one signed RPM of every file in `src` into `out`.
fn build(src: &Utf8Path, out: &Utf8Path) {
    let key = signing_key();
    let mut names: Vec<String> =
        fs::read_dir(src).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let mut b = RpmBuilder::new("bulk", "1", "1").source_date(EPOCH).compression(Compression::Gzip);
    for name in names {
        b = b.file_from_disk(src.join(&name), format!("/opt/bulk/{name}"), 0o644);
    }
    b.write_to_dir(out, Some(&key), false).unwrap();
}

/// Runs `test` again in a child that builds `dir/src` into `dir/out` and reports its peak
/// RSS; checks the bound and the package.
fn peak_of_child(test: &str, dir: &Utf8Path) {
    fs::create_dir_all(dir.join("out")).unwrap();
    let stdout = run_test_in_child(test, (CHILD_ENV, dir.as_str()));
    let peak: u64 = reported(&stdout, "VMHWM_KIB=").parse().unwrap();
    eprintln!("peak RSS of the build: {peak} KiB");
    assert!(peak <= MAX_PEAK_KIB, "peak RSS {peak} KiB");
    // The result is a whole package: rpm checks its digests and rpm2cpio reads it.
    let rpm = dir.join("out/bulk-1-1.noarch.rpm");
    let checked = run("rpm", &["-K", "--nosignature", rpm.as_str()]);
    assert!(checked.contains("digests OK"), "{checked}");
    let status = Command::new("rpm2cpio")
        .arg(rpm.as_str())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "rpm2cpio failed");
}

/// In the child: builds and prints the peak RSS. Returns whether this is the child.
fn child() -> bool {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return false };
    let dir = Utf8Path::new(&dir);
    build(&dir.join("src"), &dir.join("out"));
    println!("VMHWM_KIB={}", peak_rss_kib());
    true
}

#[test]
fn a_200_mb_payload_is_built_in_bounded_memory() {
    if child() {
        return;
    }
    let (_t, dir) = tempdir();
    fs::create_dir_all(dir.join("src")).unwrap();
    for i in 0..FILES {
        generate(&dir.join(format!("src/f{i}")), i + 1);
    }
    peak_of_child("memory::a_200_mb_payload_is_built_in_bounded_memory", &dir);
}

#[test]
fn a_3_gib_payload_of_sparse_files_is_built_in_bounded_memory() {
    if child() {
        return;
    }
    let (_t, dir) = tempdir();
    fs::create_dir_all(dir.join("src")).unwrap();
    for i in 0..3 {
        fs::File::create(dir.join(format!("src/s{i}.img"))).unwrap().set_len(1 << 30).unwrap();
    }
    peak_of_child("memory::a_3_gib_payload_of_sparse_files_is_built_in_bounded_memory", &dir);
}
