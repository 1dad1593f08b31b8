//! What rpm 4.11 needs from the signature header, as Debian's rpm 4.18 sees it: the payload
//! size (`rpm2cpio` fails without it), MD5 and SHA-1, header-only and header+payload
//! signatures, all verified by `rpm -K`; a flipped payload byte fails it. Also the refusal of
//! what rpm 4.11 cannot install.

use std::fs;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::process::Command;

use xspack_rpmrepo::{Compression, Error, RpmBuilder};

use crate::{EPOCH, demo_builder, run, run_any, signing_key, tempdir, test_key, write_rpm};

/// `rpm2cpio rpm | cpio -t`-style check: rpm2cpio exits 0 and its output is a cpio archive
/// listing the payload names.
fn rpm2cpio(rpm: &camino::Utf8Path) -> Vec<u8> {
    let out = Command::new("rpm2cpio").arg(rpm.as_str()).output().expect("rpm2cpio runs");
    assert!(
        out.status.success(),
        "rpm2cpio {rpm} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn signature_header_has_what_rpm_411_reads() {
    let (_t, dir) = tempdir();
    let key = signing_key();
    for (name, compression, signed) in [
        ("gz", Compression::Gzip, None),
        ("xz", Compression::Xz, None),
        ("gz-signed", Compression::Gzip, Some(&key)),
        ("xz-signed", Compression::Xz, Some(&key)),
    ] {
        let rpm = write_rpm(&dir.join(name), &demo_builder().compression(compression), signed);
        let qf = run(
            "rpm",
            &[
                "-qp",
                "--qf",
                "%{SIGSIZE} %{ARCHIVESIZE} %{SIGMD5} %{SHA1HEADER} %{SHA256HEADER} \
                 %{RSAHEADER:pgpsig}|%{SIGPGP:pgpsig}",
                rpm.as_str(),
            ],
        );
        let fields: Vec<&str> = qf.splitn(6, ' ').collect();
        let archive = rpm2cpio(&rpm);
        assert_eq!(fields[1], archive.len().to_string(), "{name}: ARCHIVESIZE: {qf}");
        let file_len = fs::metadata(&rpm).unwrap().len();
        let size: u64 = fields[0].parse().unwrap();
        assert!(size < file_len && size > archive.len() as u64 / 10, "{name}: SIGSIZE {qf}");
        assert_eq!(fields[2].len(), 32, "{name}: MD5 {qf}");
        assert_eq!(fields[3].len(), 40, "{name}: SHA1 {qf}");
        assert_eq!(fields[4].len(), 64, "{name}: SHA256 {qf}");
        let short_id = key.info().short_id().to_lowercase();
        let sigs = fields[5];
        if signed.is_some() {
            let (rsa, pgp) = sigs.split_once('|').unwrap();
            for s in [rsa, pgp] {
                assert!(s.starts_with("RSA/SHA256, ") && s.ends_with(&short_id), "{name}: {qf}");
            }
        } else {
            assert_eq!(sigs, "(none)|(none)", "{name}");
        }
        // The archive holds the payload files, under ./ names.
        let text = String::from_utf8_lossy(&archive);
        assert!(text.contains("./usr/share/demo/data.bin") && text.contains("TRAILER!!!"));
        assert!(!text.contains("demo.log"), "{name}: ghosts are not in the payload");
    }
}

#[test]
fn rpm_k_checks_md5_and_both_signatures_and_a_flipped_payload_byte_fails() {
    let (_t, dir) = tempdir();
    let key = signing_key();
    let rpm = write_rpm(&dir.join("out"), &demo_builder(), Some(&key));
    let pubkey = dir.join("key.asc");
    fs::write(&pubkey, &test_key().public_armored).unwrap();
    let db = dir.join("db");
    run("rpm", &["--dbpath", db.as_str(), "--import", pubkey.as_str()]);
    let checked = run("rpm", &["--dbpath", db.as_str(), "-Kv", rpm.as_str()]);
    let short_id = key.info().short_id().to_lowercase();
    for line in [
        format!("Header V4 RSA/SHA256 Signature, key ID {short_id}: OK"),
        "Header SHA256 digest: OK".into(),
        "Header SHA1 digest: OK".into(),
        "Payload SHA256 digest: OK".into(),
        format!("V4 RSA/SHA256 Signature, key ID {short_id}: OK"),
        "MD5 digest: OK".into(),
    ] {
        assert!(checked.lines().any(|l| l.trim() == line), "{line:?} missing:\n{checked}");
    }
    // Flip one byte in the middle of the payload.
    let header = xspack_rpmrepo::read_rpm(&rpm).unwrap().header_range;
    let mut bytes = fs::read(&rpm).unwrap();
    let at = usize::midpoint(usize::try_from(header.end).unwrap(), bytes.len());
    bytes[at] ^= 0x01;
    let bad = dir.join("bad.rpm");
    fs::write(&bad, &bytes).unwrap();
    let checked = run_any("rpm", &["--dbpath", db.as_str(), "-Kv", bad.as_str()]);
    assert!(!checked.ok, "rpm -K passed a flipped payload byte:\n{}", checked.stdout);
    for line in ["MD5 digest: BAD", "Payload SHA256 digest: BAD"] {
        assert!(checked.stdout.contains(line), "{line:?} missing:\n{}", checked.stdout);
    }
    assert!(
        checked.stdout.contains(&format!("V4 RSA/SHA256 Signature, key ID {short_id}: BAD")),
        "{}",
        checked.stdout
    );
    let err = xspack_rpmrepo::read_rpm(&bad).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
}

#[test]
fn seekable_spooled_and_file_outputs_are_the_same_bytes() {
    let (_t, dir) = tempdir();
    let key = signing_key();
    let b = demo_builder().compression(Compression::Xz);
    let rpm = write_rpm(&dir, &b, Some(&key));
    let on_disk = fs::read(&rpm).unwrap();
    let (spooled, built) = b.write(Vec::new(), Some(&key)).unwrap();
    assert_eq!(spooled, on_disk);
    assert_eq!(built.size, on_disk.len() as u64);
    assert_eq!(built.sha256, xspack_io::Sha256Digest::of_bytes(&on_disk));
    // A seekable output starting past other data: the package lands from there.
    let mut cursor = Cursor::new(b"prefix".to_vec());
    cursor.seek(SeekFrom::End(0)).unwrap();
    let (mut cursor, _) = b.write_seekable(cursor, Some(&key)).unwrap();
    cursor.seek(SeekFrom::Start(6)).unwrap();
    let mut rest = Vec::new();
    cursor.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, on_disk);
}

#[test]
fn files_over_4_gib_are_refused_for_rpm_411_before_being_read_and_bad_inputs_too() {
    let (_t, dir) = tempdir();
    let big = dir.join("big.img");
    let f = fs::File::create(&big).unwrap();
    f.set_len(5 << 30).unwrap(); // sparse: nothing is written
    let err = RpmBuilder::new("big", "1", "1")
        .source_date(EPOCH)
        .file_from_disk(big.clone(), "/opt/big/big.img", 0o644)
        .write(Vec::new(), None)
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    for part in ["/opt/big/big.img", big.as_str(), "rpm 4.11", "LargeFiles"] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    // Files of 4 GiB or less each, but more together, are refused too.
    let parts: Vec<_> = (0..2)
        .map(|i| {
            let p = dir.join(format!("part{i}"));
            fs::File::create(&p).unwrap().set_len(3 << 30).unwrap();
            p
        })
        .collect();
    let mut b = RpmBuilder::new("two", "1", "1").source_date(EPOCH);
    for (i, p) in parts.iter().enumerate() {
        b = b.file_from_disk(p.clone(), format!("/opt/two/{i}"), 0o644);
    }
    let err = b.write(Vec::new(), None).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    for part in ["package two", "6442450944 bytes", "rpm 4.11"] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    let err = RpmBuilder::new("dir", "1", "1")
        .file_from_disk(dir.clone(), "/opt/dir", 0o644)
        .write(Vec::new(), None)
        .unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let err = RpmBuilder::new("dup", "1", "1")
        .file_from_bytes(b"a".to_vec(), "/opt/a", 0o644)
        .file_from_bytes(b"b".to_vec(), "/opt/a", 0o644)
        .write(Vec::new(), None)
        .unwrap_err();
    assert!(err.to_string().contains("/opt/a is listed twice"), "{err}");
}

/// The byte counts of signature tags 268 (header) and 1002 (header+payload) of an RPM.
fn signature_lengths(rpm: &[u8]) -> (u32, u32) {
    let be = |at: usize| u32::from_be_bytes(rpm[at..at + 4].try_into().unwrap());
    let il = be(96 + 8) as usize;
    let mut found = (0, 0);
    for i in 0..il {
        let entry = 96 + 16 + i * 16;
        match be(entry) {
            268 => found.0 = be(entry + 12),
            1002 => found.1 = be(entry + 12),
            _ => {}
        }
    }
    found
}

#[test]
fn a_signature_shorter_than_the_modulus_fits_the_same_room() {
    // An RSA signature loses a leading zero byte about once in 256: find source dates whose
    // signatures come out short, and check that the file keeps its layout and rpm accepts it.
    let (_t, dir) = tempdir();
    let key = signing_key();
    let build = |date: u32| {
        RpmBuilder::new("short", "1", "1")
            .source_date(date)
            .file_from_bytes(b"x\n".to_vec(), "/opt/short/x", 0o644)
            .write(Vec::new(), Some(&key))
            .unwrap()
            .0
    };
    let full = build(EPOCH);
    let full_lengths = signature_lengths(&full);
    let short = (EPOCH + 1..EPOCH + 3000)
        .map(build)
        .find(|rpm| signature_lengths(rpm) != full_lengths)
        .expect("a short signature within 3000 tries");
    let (a, b) = (signature_lengths(&short), full_lengths);
    assert!(a.0 <= b.0 && a.1 <= b.1 && a != b, "{a:?} against {b:?}");
    let rpm = dir.join("short.rpm");
    fs::write(&rpm, &short).unwrap();
    let full_rpm = dir.join("full.rpm");
    fs::write(&full_rpm, &full).unwrap();
    assert_eq!(
        xspack_rpmrepo::read_rpm(&rpm).unwrap().header_range.start,
        xspack_rpmrepo::read_rpm(&full_rpm).unwrap().header_range.start,
        "the signature header keeps its size"
    );
    let pubkey = dir.join("key.asc");
    fs::write(&pubkey, &test_key().public_armored).unwrap();
    let db = dir.join("db");
    run("rpm", &["--dbpath", db.as_str(), "--import", pubkey.as_str()]);
    let checked = run("rpm", &["--dbpath", db.as_str(), "-Kv", rpm.as_str()]);
    assert_eq!(checked.matches(": OK").count(), 6, "{checked}");
    rpm2cpio(&rpm);
}

#[test]
fn an_empty_package_and_an_arch_package_with_epoch_are_whole() {
    let (_t, dir) = tempdir();
    let key = signing_key();
    let empty = write_rpm(
        &dir.join("empty"),
        &RpmBuilder::new("meta", "1", "1")
            .source_date(EPOCH)
            .requires(xspack_rpmrepo::Dependency::any("platform-version")),
        Some(&key),
    );
    let archive = rpm2cpio(&empty);
    assert!(String::from_utf8_lossy(&archive).contains("TRAILER!!!"));
    assert_eq!(run("rpm", &["-qpl", empty.as_str()]), "(contains no files)\n");
    let arch = write_rpm(
        &dir.join("arch"),
        &RpmBuilder::new("drv", "2.0", "1")
            .source_date(EPOCH)
            .epoch(3)
            .arch("x86_64")
            .file_from_bytes(b"ko".to_vec(), "/lib/modules/x/drv.ko", 0o644),
        Some(&key),
    );
    assert_eq!(arch.file_name(), Some("drv-2.0-1.x86_64.rpm"));
    rpm2cpio(&arch);
    let provides = run("rpm", &["-qp", "--provides", arch.as_str()]);
    assert_eq!(provides, "drv = 3:2.0-1\ndrv(x86-64) = 3:2.0-1\n");
    for rpm in [&empty, &arch] {
        let checked = run("rpm", &["-K", "--nosignature", rpm.as_str()]);
        assert!(checked.ends_with("digests OK\n"), "{checked}");
    }
}
