//! The header reader agrees with `rpm -qp --qf`, `sha256sum`/`md5sum` and `createrepo_c`, and
//! refuses truncated, corrupt and foreign files with errors naming them.

use std::fs;

use camino::Utf8Path;
use xspack_rpmrepo::{Error, RpmHeader, read_rpm};

use crate::repodata::{createrepo_records, primary_record};
use crate::{demo_builder, rpmbuild_probe, run, signing_key, tempdir, write_rpm};

fn qf(rpm: &Utf8Path, format: &str) -> String {
    run("rpm", &["-qp", "--qf", format, rpm.as_str()])
}

/// `(none)` as rpm prints absent tags, else the value.
fn or_empty(s: &str) -> &str {
    if s == "(none)" { "" } else { s }
}

fn check_against_rpm(rpm: &Utf8Path, h: &RpmHeader) {
    let fields = qf(
        rpm,
        "%{NEVRA}|%{NAME}|%{EPOCH}|%{VERSION}|%{RELEASE}|%{ARCH}|%{LONGSIZE}|%{BUILDTIME}|%{SOURCERPM}|%{LICENSE}|%{SUMMARY}|%{VENDOR}|%{BUILDHOST}|%{PACKAGER}|%{URL}|%{ARCHIVESIZE}|%{FILEDIGESTALGO}",
    );
    let f: Vec<&str> = fields.split('|').collect();
    assert_eq!(f[0], h.nevra());
    assert_eq!(
        (f[1], f[3], f[4], f[5]),
        (h.name.as_str(), h.version.as_str(), h.release.as_str(), h.arch.as_str())
    );
    assert_eq!(or_empty(f[2]), h.epoch.map(|e| e.to_string()).unwrap_or_default());
    assert_eq!(f[6], h.installed_size.to_string());
    assert_eq!(f[7], h.build_time.to_string());
    assert_eq!(or_empty(f[8]), or_empty(&h.source_rpm));
    assert_eq!((f[9], f[10]), (h.license.as_str(), h.summary.as_str()));
    assert_eq!(
        (or_empty(f[11]), or_empty(f[12]), or_empty(f[13]), or_empty(f[14])),
        (h.vendor.as_str(), h.build_host.as_str(), h.packager.as_str(), h.url.as_str())
    );
    assert_eq!(or_empty(f[15]).parse::<u64>().unwrap_or(0), h.archive_size);
    assert_eq!(or_empty(f[16]).parse::<u32>().unwrap_or(1), h.file_digest_algo);

    let files = qf(
        rpm,
        "[%{FILENAMES}|%{FILEMODES}|%{FILESIZES}|%{FILEDIGESTS}|%{FILEFLAGS}|%{FILEUSERNAME}|%{FILEGROUPNAME}|%{FILELINKTOS}|%{FILEMTIMES}\n]",
    );
    let ours = h
        .files
        .iter()
        .map(|e| {
            format!(
                "{}|{}|{}|{}|{}|{}|{}|{}|{}\n",
                e.path,
                e.mode,
                e.size,
                e.digest,
                e.flags,
                e.user,
                e.group,
                e.link_target.as_deref().unwrap_or(""),
                e.mtime
            )
        })
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(files, ours);

    for (tag, deps) in [
        ("REQUIRE", &h.requires),
        ("PROVIDE", &h.provides),
        ("CONFLICT", &h.conflicts),
        ("OBSOLETE", &h.obsoletes),
        ("RECOMMEND", &h.recommends),
        ("SUGGEST", &h.suggests),
        ("SUPPLEMENT", &h.supplements),
        ("ENHANCE", &h.enhances),
    ] {
        let theirs = qf(rpm, &format!("[%{{{tag}NAME}}|%{{{tag}FLAGS}}|%{{{tag}VERSION}}\n]"));
        let ours = deps
            .iter()
            .map(|d| format!("{}|{}|{}\n", d.name, d.flags, d.version))
            .collect::<Vec<_>>()
            .concat();
        assert_eq!(theirs, ours, "{tag}");
    }
    let changelog = qf(rpm, "[%{CHANGELOGTIME}|%{CHANGELOGNAME}|%{CHANGELOGTEXT}\n]");
    let ours = h
        .changelog
        .iter()
        .map(|c| format!("{}|{}|{}\n", c.time, c.author, c.text))
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(changelog, ours);

    assert_eq!(h.package_size, fs::metadata(rpm).unwrap().len());
    let sha = run("sha256sum", &[rpm.as_str()]);
    assert_eq!(sha.split_whitespace().next().unwrap(), h.sha256.to_string());
    let md5 = run("md5sum", &[rpm.as_str()]);
    assert_eq!(md5.split_whitespace().next().unwrap(), h.md5.unwrap().to_string());
}

#[test]
fn reader_agrees_with_rpm_on_our_and_rpmbuild_packages() {
    let (_t, dir) = tempdir();
    let ours = write_rpm(&dir.join("ours"), &demo_builder(), Some(&signing_key()));
    let header = read_rpm(&ours).unwrap();
    assert_eq!(header.nevra(), "demo-driver-1.2.3-4.noarch");
    check_against_rpm(&ours, &header);

    let probe = rpmbuild_probe(&dir);
    let header = read_rpm(&probe).unwrap();
    assert_eq!(header.nevra(), "probe-2:3.0-1.el7.noarch");
    assert!(header.archive_size > 0 && header.changelog.len() == 2);
    check_against_rpm(&probe, &header);
}

#[test]
fn header_range_agrees_with_createrepo_c() {
    let (_t, dir) = tempdir();
    let repo = dir.join("repo");
    write_rpm(&repo.join("Packages"), &demo_builder(), Some(&signing_key()));
    let probe = rpmbuild_probe(&dir);
    fs::copy(&probe, repo.join("Packages/probe.rpm")).unwrap();
    let theirs = createrepo_records(&repo);
    for location in ["Packages/demo-driver-1.2.3-4.noarch.rpm", "Packages/probe.rpm"] {
        let h = read_rpm(&repo.join(location)).unwrap();
        let record = theirs.iter().find(|r| r.location == location).unwrap();
        let range = primary_record(&record.primary, "rpm:header-range");
        assert_eq!(
            range,
            format!("start={} end={}", h.header_range.start, h.header_range.end),
            "{location}"
        );
        assert!(
            h.header_range.start > 96 && h.header_range.start.is_multiple_of(8),
            "{:?}",
            h.header_range
        );
    }
}

fn assert_err(path: &Utf8Path, check: impl Fn(&Error) -> bool) -> Error {
    let err = read_rpm(path).unwrap_err();
    assert!(check(&err), "unexpected error {err:?}");
    assert!(err.to_string().starts_with(path.as_str()), "error does not name the file: {err}");
    err
}

#[test]
fn truncated_corrupt_and_foreign_files_are_refused() {
    let (_t, dir) = tempdir();
    let good = write_rpm(&dir.join("good"), &demo_builder(), None);
    let bytes = fs::read(&good).unwrap();
    let h = read_rpm(&good).unwrap();
    let (start, end) = (
        usize::try_from(h.header_range.start).unwrap(),
        usize::try_from(h.header_range.end).unwrap(),
    );
    let variant = |name: &str, data: &[u8]| {
        let p = dir.join(name);
        fs::write(&p, data).unwrap();
        p
    };

    // Cut inside the header, and inside the payload.
    assert_err(&variant("cut-header.rpm", &bytes[..start + 40]), |e| {
        matches!(e, Error::Truncated { .. })
    });
    assert_err(&variant("cut-lead.rpm", &bytes[..60]), |e| matches!(e, Error::Truncated { .. }));
    let e = assert_err(&variant("cut-payload.rpm", &bytes[..bytes.len() - 10]), |e| {
        matches!(e, Error::Truncated { .. })
    });
    assert!(e.to_string().contains("signature header says"), "{e}");

    // A byte changed in the header data, in the header magic, and in the payload.
    let mut data = bytes.clone();
    data[end - 20] ^= 0x01;
    assert_err(&variant("header-byte.rpm", &data), |e| {
        matches!(e, Error::DigestMismatch { what: "header SHA-256", .. })
    });
    let mut data = bytes.clone();
    data[start] = 0;
    assert_err(&variant("header-magic.rpm", &data), |e| matches!(e, Error::CorruptHeader { .. }));
    let mut data = bytes.clone();
    let last = data.len() - 1;
    data[last] ^= 0xff;
    assert_err(&variant("payload-byte.rpm", &data), |e| {
        matches!(e, Error::DigestMismatch { what: "payload SHA-256", .. })
    });
    let mut data = bytes.clone();
    data.extend_from_slice(b"trailing");
    assert_err(&variant("trailing.rpm", &data), |e| matches!(e, Error::CorruptHeader { .. }));

    // Not RPMs at all.
    assert_err(&variant("text.rpm", b"<?xml version=\"1.0\"?>\n<update/>\n"), |e| {
        matches!(e, Error::NotRpm { .. })
    });
    assert_err(&variant("empty.rpm", b""), |e| matches!(e, Error::NotRpm { .. }));
    assert_err(&dir.join("missing.rpm"), |e| matches!(e, Error::Io { .. }));

    // rpm agrees that the corrupted ones are broken.
    let checked =
        crate::run_any("rpm", &["-K", "--nosignature", dir.join("header-byte.rpm").as_str()]);
    assert!(!checked.ok, "{}", checked.stdout);
}

#[test]
fn random_corruption_gives_errors_not_panics() {
    let (_t, dir) = tempdir();
    let good = write_rpm(&dir, &demo_builder(), Some(&signing_key()));
    let bytes = fs::read(&good).unwrap();
    let end = usize::try_from(read_rpm(&good).unwrap().header_range.end).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..300 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut data = bytes.clone();
        // Mostly the lead and headers, where parsing happens; sometimes the payload.
        let span = if round % 4 == 0 { data.len() } else { end };
        let at = usize::try_from(seed % span as u64).unwrap();
        data[at] ^= u8::try_from(seed >> 56).unwrap() | 1;
        let result = xspack_rpmrepo::read_rpm_from(data.as_slice(), Utf8Path::new("fuzz.rpm"));
        // Bytes outside anything digested (the lead's name field, padding) may change freely.
        if let Err(e) = result {
            assert!(e.to_string().starts_with("fuzz.rpm"), "{e}");
        }
    }
}
