//! rpm (4.18 here) reads what `RpmBuilder` writes: metadata, dependencies, scripts, file list,
//! signatures, and an actual install into a scratch root.

use std::fs;

use xspack_rpmrepo::{Compression, Error, PublicKey, RpmBuilder, verify_rpm_signature};

use crate::{
    EPOCH, demo_builder, gpg, gpg_home, run, run_any, signing_key, tempdir, test_key, write_rpm,
};

/// The rpmlib features rpm 4.11 (`CentOS` 7) provides that our packages may need.
const RPM_411_FEATURES: [&str; 3] =
    ["rpmlib(CompressedFileNames)", "rpmlib(FileDigests)", "rpmlib(PayloadFilesHavePrefix)"];

#[test]
fn rpm_qpi_shows_the_metadata() {
    let (_t, dir) = tempdir();
    let rpm = write_rpm(&dir, &demo_builder(), None);
    let info = run("rpm", &["-qpi", rpm.as_str()]);
    for line in [
        "Name        : demo-driver",
        "Version     : 1.2.3",
        "Release     : 4",
        "Architecture: noarch",
        "License     : MIT",
        "Summary     : Demo <driver> & \"tools\"",
        "Vendor      : Example & Co",
        "URL         : https://example.invalid/demo",
        "A demo package.\nSecond line & <markup>.",
    ] {
        assert!(info.contains(line), "{line:?} missing from rpm -qpi:\n{info}");
    }
    let qf = run(
        "rpm",
        &[
            "-qp",
            "--qf",
            "%{BUILDTIME} %{PAYLOADCOMPRESSOR} %{FILEDIGESTALGO} %{EPOCH}",
            rpm.as_str(),
        ],
    );
    assert_eq!(qf, format!("{EPOCH} gzip 8 (none)"));
}

#[test]
fn requires_provides_and_scripts() {
    let (_t, dir) = tempdir();
    let rpm = write_rpm(&dir, &demo_builder(), None);
    let requires = run("rpm", &["-qp", "--requires", rpm.as_str()]);
    for dep in [
        "bash >= 4.2",
        "coreutils",
        "platform-version >= 2.3",
        "/bin/sh",
        "config(demo-driver) = 1.2.3-4",
    ] {
        assert!(requires.lines().any(|l| l == dep), "{dep:?} missing:\n{requires}");
    }
    // Only rpmlib features rpm 4.11 has: no PayloadIsZstd, RichDependencies, LargeFiles.
    for line in requires.lines().filter(|l| l.starts_with("rpmlib(")) {
        let name = line.split_whitespace().next().unwrap();
        assert!(RPM_411_FEATURES.contains(&name), "rpm 4.11 lacks {line}");
    }
    let provides = run("rpm", &["-qp", "--provides", rpm.as_str()]);
    for dep in
        ["demo-capability = 1:2.0-1", "demo-driver = 1.2.3-4", "config(demo-driver) = 1.2.3-4"]
    {
        assert!(provides.lines().any(|l| l == dep), "{dep:?} missing:\n{provides}");
    }
    let scripts = run("rpm", &["-qp", "--scripts", rpm.as_str()]);
    for part in [
        "postinstall scriptlet (using /bin/sh):\necho post-install",
        "postuninstall scriptlet (using /bin/sh):\necho post-uninstall",
        "posttrans scriptlet (using /bin/sh):\necho post-trans",
    ] {
        assert!(scripts.contains(part), "{part:?} missing:\n{scripts}");
    }
    let conflicts = run("rpm", &["-qp", "--conflicts", "--obsoletes", rpm.as_str()]);
    assert_eq!(conflicts, "old-demo < 1.0\ndemo-legacy <= 0.9\n");
}

#[test]
fn rpm_qplv_lists_files_with_modes_owners_and_flags() {
    let (_t, dir) = tempdir();
    let rpm = write_rpm(&dir, &demo_builder(), None);
    let listing = run("rpm", &["-qplv", rpm.as_str()]);
    let line = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(path) || l.contains(&format!("{path} ->")))
            .unwrap_or_else(|| panic!("{path} not listed:\n{listing}"))
            .to_owned()
    };
    assert!(line("/usr/bin/demo-tool").starts_with("-rwxr-xr-x    1 root     root"), "{listing}");
    assert!(line("/etc/demo/demo.conf").starts_with("-rw-r-----    1 root     root"), "{listing}");
    assert!(
        line("/opt/demo/owned.txt").starts_with("-rw-------    1 daemon   daemon"),
        "{listing}"
    );
    assert!(line("/var/lib/demo").starts_with("drwxr-x---"), "{listing}");
    assert!(line("/usr/share/demo/data.bin").contains(" 5000 "), "{listing}");
    assert!(
        line("/usr/bin/demo").starts_with("lrwxrwxrwx")
            && line("/usr/bin/demo").ends_with("-> demo-tool")
    );
    let flags = run("rpm", &["-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", rpm.as_str()]);
    assert!(flags.lines().any(|l| l == "cn /etc/demo/demo.conf"), "{flags}");
    assert!(flags.lines().any(|l| l == "g /var/log/demo.log"), "{flags}");
    let mtimes = run("rpm", &["-qp", "--qf", "[%{FILEMTIMES}\n]", rpm.as_str()]);
    assert!(mtimes.lines().all(|l| l == EPOCH.to_string()), "{mtimes}");
}

#[test]
fn rpm_installs_gzip_and_xz_packages_into_a_scratch_root() {
    for compression in [Compression::Gzip, Compression::Xz] {
        let (_t, dir) = tempdir();
        let rpm = write_rpm(&dir.join("out"), &demo_builder().compression(compression), None);
        let compressor = run("rpm", &["-qp", "--qf", "%{PAYLOADCOMPRESSOR}", rpm.as_str()]);
        assert_eq!(compressor, if compression == Compression::Gzip { "gzip" } else { "xz" });
        let root = dir.join("root");
        fs::create_dir_all(&root).unwrap();
        run("rpm", &["--root", root.as_str(), "--initdb"]);
        run("rpm", &["--root", root.as_str(), "-i", "--nodeps", "--noscripts", rpm.as_str()]);
        assert_eq!(fs::read(root.join("usr/bin/demo-tool")).unwrap(), b"#!/bin/sh\necho demo\n");
        assert_eq!(fs::read(root.join("usr/share/demo/data.bin")).unwrap(), vec![7u8; 5000]);
        assert_eq!(fs::read_link(root.join("usr/bin/demo")).unwrap().to_str(), Some("demo-tool"));
        // rpm -V re-checks every installed file's digest, size, mode and link target.
        run(
            "rpm",
            &["--root", root.as_str(), "-V", "--nodeps", "--nouser", "--nogroup", "demo-driver"],
        );
    }
}

#[test]
fn rpm_k_verifies_our_header_signature_only_with_our_key() {
    let (_t, dir) = tempdir();
    let key = signing_key();
    let rpm = write_rpm(&dir.join("out"), &demo_builder(), Some(&key));
    let pubkey = dir.join("RPM-GPG-KEY-test");
    fs::write(&pubkey, &test_key().public_armored).unwrap();
    let short_id = key.info().short_id().to_lowercase();

    let db = dir.join("db-empty");
    let no_key = run_any("rpm", &["--dbpath", db.as_str(), "-Kv", rpm.as_str()]);
    assert!(!no_key.ok, "rpm -K passed without the key:\n{}", no_key.stdout);
    assert!(no_key.stdout.contains(&format!("key ID {short_id}: NOKEY")), "{}", no_key.stdout);

    let db = dir.join("db-ours");
    run("rpm", &["--dbpath", db.as_str(), "--import", pubkey.as_str()]);
    let checked = run("rpm", &["--dbpath", db.as_str(), "-Kv", rpm.as_str()]);
    assert!(
        checked.contains(&format!("Header V4 RSA/SHA256 Signature, key ID {short_id}: OK")),
        "{checked}"
    );
    assert!(
        checked.contains("Header SHA256 digest: OK")
            && checked.contains("Payload SHA256 digest: OK"),
        "{checked}"
    );

    // Another RSA key (made by gpg) does not verify it, for rpm nor for us.
    let home = gpg_home(&dir);
    gpg(
        &home,
        &[
            "--passphrase",
            "",
            "--quick-gen-key",
            "Other <other@example.invalid>",
            "rsa2048",
            "sign",
            "never",
        ],
    );
    let other = gpg(&home, &["--armor", "--export"]).stdout;
    let other_file = dir.join("other.asc");
    fs::write(&other_file, &other).unwrap();
    let db = dir.join("db-other");
    run("rpm", &["--dbpath", db.as_str(), "--import", other_file.as_str()]);
    let wrong = run_any("rpm", &["--dbpath", db.as_str(), "-Kv", rpm.as_str()]);
    assert!(!wrong.ok && wrong.stdout.contains("NOKEY"), "{}", wrong.stdout);

    // Our verifier agrees in all three cases.
    let info = verify_rpm_signature(&rpm, &key.public_key()).unwrap();
    assert_eq!(info.key_id, key.info().key_id);
    assert_eq!(info.created, EPOCH);
    let other = PublicKey::from_armored(&other, "other.asc").unwrap();
    let err = verify_rpm_signature(&rpm, &other).unwrap_err();
    assert!(
        matches!(err, Error::BadSignature { .. }) && err.to_string().contains("NOKEY"),
        "{err}"
    );
    let unsigned = write_rpm(&dir.join("unsigned"), &demo_builder(), None);
    assert!(matches!(
        verify_rpm_signature(&unsigned, &key.public_key()),
        Err(Error::UnsignedRpm { .. })
    ));
}

#[test]
fn a_tampered_signed_header_fails_rpm_k_and_our_checks() {
    let (_t, dir) = tempdir();
    let key = signing_key();
    let rpm = write_rpm(&dir.join("out"), &demo_builder(), Some(&key));
    let mut bytes = fs::read(&rpm).unwrap();
    // Change the summary text inside the header: same length, so only digests and the
    // signature can tell.
    let at = bytes.windows(4).position(|w| w == b"Demo").unwrap();
    bytes[at] = b'd';
    fs::write(&rpm, &bytes).unwrap();
    let pubkey = dir.join("key.asc");
    fs::write(&pubkey, &test_key().public_armored).unwrap();
    let db = dir.join("db");
    run("rpm", &["--dbpath", db.as_str(), "--import", pubkey.as_str()]);
    let checked = run_any("rpm", &["--dbpath", db.as_str(), "-Kv", rpm.as_str()]);
    assert!(!checked.ok && checked.stdout.contains("BAD"), "{}", checked.stdout);
    let err = verify_rpm_signature(&rpm, &key.public_key()).unwrap_err();
    assert!(matches!(err, Error::BadSignature { .. }), "{err}");
    let err = xspack_rpmrepo::read_rpm(&rpm).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { what: "header SHA-256", .. }), "{err}");
}

#[test]
fn builds_are_byte_identical_signed_or_not() {
    let (_t, dir) = tempdir();
    let key = signing_key();
    for (i, signed) in [None, Some(&key)].into_iter().enumerate() {
        let a = write_rpm(&dir.join(format!("a{i}")), &demo_builder(), signed);
        let b = write_rpm(&dir.join(format!("b{i}")), &demo_builder(), signed);
        assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "signed: {}", signed.is_some());
    }
    // The source date, not the clock, decides the bytes.
    let later = write_rpm(&dir.join("later"), &demo_builder().source_date(EPOCH + 1), None);
    assert_ne!(
        fs::read(later).unwrap(),
        fs::read(dir.join("a0/demo-driver-1.2.3-4.noarch.rpm")).unwrap()
    );
}

#[test]
fn files_from_disk_are_packaged() {
    let (_t, dir) = tempdir();
    let src = dir.join("src.txt");
    fs::write(&src, b"from disk\n").unwrap();
    let rpm = write_rpm(
        &dir.join("out"),
        &RpmBuilder::new("disk", "1", "1").source_date(EPOCH).file_from_disk(
            src.clone(),
            "/opt/disk/src.txt",
            0o600,
        ),
        None,
    );
    let listing = run("rpm", &["-qplv", rpm.as_str()]);
    assert!(
        listing.starts_with("-rw-------    1 root     root") && listing.contains(" 10 "),
        "{listing}"
    );
    let digests = run("rpm", &["-qp", "--qf", "[%{FILEDIGESTS}]", rpm.as_str()]);
    assert_eq!(digests, xspack_io::Sha256Digest::of_bytes(b"from disk\n").to_string());
    let err = RpmBuilder::new("disk", "1", "1")
        .file_from_disk(dir.join("missing"), "/opt/x", 0o644)
        .write(Vec::new(), None);
    assert!(matches!(err, Err(Error::Build { .. })), "{err:?}");
}
