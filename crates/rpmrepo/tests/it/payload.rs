//! Payloads of many compression blocks (gzip's 512 KiB blocks deflated on several threads,
//! xz's 24 MiB blocks, one here): Debian's rpm checks the package digests, `rpm2cpio | cpio` lists and
//! extracts the files, and the bytes come back whole. (That the bytes do not depend on the
//! thread count is checked in the compressors' unit tests.) Also the whole-file digests
//! [`xspack_rpmrepo::BuiltRpm`] carries.

use std::fs;
use std::io::Write;
use std::process::{Command, Stdio};

use xspack_rpmrepo::{Compression, RpmBuilder};

use crate::{EPOCH, run, signing_key, tempdir, write_rpm};

/// `len` bytes: 2 MB of pseudo-random bytes (xorshift), then numbered text lines.
fn mixed(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < 2_000_000.min(len) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    let mut line = 0u64;
    while out.len() < len {
        line += 1;
        out.extend_from_slice(format!("{line} {}\n", line.wrapping_mul(2_654_435_761)).as_bytes());
    }
    out.truncate(len);
    out
}

/// `rpm2cpio rpm | cpio ARGS`: its stdout, both exiting 0.
fn rpm2cpio_cpio(rpm: &camino::Utf8Path, cpio_args: &[&str]) -> Vec<u8> {
    let mut rpm2cpio = Command::new("rpm2cpio")
        .arg(rpm.as_str())
        .stdout(Stdio::piped())
        .spawn()
        .expect("rpm2cpio runs");
    let archive = rpm2cpio.stdout.take().unwrap();
    let cpio = Command::new("cpio")
        .args(cpio_args)
        .stdin(archive)
        .stderr(Stdio::null())
        .output()
        .expect("cpio runs");
    assert!(rpm2cpio.wait().unwrap().success(), "rpm2cpio {rpm} failed");
    assert!(cpio.status.success(), "cpio {cpio_args:?} failed on {rpm}");
    cpio.stdout
}

#[test]
fn multi_block_gzip_and_xz_payloads_are_read_by_rpm_and_cpio() {
    let (_t, dir) = tempdir();
    let key = signing_key();
    // 6 MiB: a dozen gzip blocks. xz: one 24 MiB block (several blocks are checked against
    // `xz -dc` in the unit tests; two here took minutes in the debug build).
    for (name, compression, len) in
        [("gz", Compression::Gzip, 6 << 20), ("xz", Compression::Xz, 4 << 20)]
    {
        let big = mixed(len);
        let src = dir.join(format!("{name}.bin"));
        fs::File::create(&src).unwrap().write_all(&big).unwrap();
        let b = RpmBuilder::new(format!("bulk-{name}"), "1", "1")
            .source_date(EPOCH)
            .compression(compression)
            .file_from_disk(src.clone(), "/opt/bulk/big.bin", 0o644)
            .file_from_bytes(b"small\n".to_vec(), "/opt/bulk/small.txt", 0o644);
        let rpm = write_rpm(&dir.join(name), &b, Some(&key));
        let checked = run("rpm", &["-K", "--nosignature", rpm.as_str()]);
        assert!(checked.ends_with("digests OK\n"), "{checked}");
        let expected = if name == "gz" { "gzip" } else { "xz" };
        assert_eq!(run("rpm", &["-qp", "--qf", "%{PAYLOADCOMPRESSOR}", rpm.as_str()]), expected);
        let listing = String::from_utf8(rpm2cpio_cpio(&rpm, &["-t"])).unwrap();
        assert_eq!(listing, "./opt/bulk/big.bin\n./opt/bulk/small.txt\n", "{name}");
        let data = rpm2cpio_cpio(&rpm, &["-i", "--to-stdout", "./opt/bulk/big.bin"]);
        assert!(data == big, "{name}: the file did not come back whole");
    }
}

#[test]
fn built_rpm_carries_the_whole_file_digests_read_rpm_finds() {
    let (_t, dir) = tempdir();
    let key = signing_key();
    for compression in [Compression::Gzip, Compression::Xz] {
        let b = crate::demo_builder().compression(compression);
        let out = dir.join(format!("{compression:?}"));
        fs::create_dir_all(&out).unwrap();
        let built = b.write_to_dir(&out, Some(&key), false).unwrap();
        let path = out.join(&built.file_name);
        let read = xspack_rpmrepo::read_rpm(&path).unwrap();
        assert_eq!(read.md5, Some(built.md5));
        assert_eq!((read.sha256, read.package_size), (built.sha256, built.size));
        let bytes = fs::read(&path).unwrap();
        assert_eq!(built.md5, xspack_rpmrepo::Md5Digest::of_bytes(&bytes));
        // The header-only reader gives the same record.
        let header_only = xspack_rpmrepo::read_built_rpm(&path, &built).unwrap();
        assert_eq!(format!("{header_only:?}"), format!("{read:?}"));
        // A file replaced since is refused.
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(xspack_rpmrepo::read_built_rpm(&path, &built).is_err());
    }
}
