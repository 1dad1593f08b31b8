//! xorriso and isoinfo read what we write.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use camino::Utf8Path;
use xspack_iso::{
    EntryKind, Error, IsoBuilder, IsoLevel, IsoReader, Joliet, Metadata, write_iso_file,
};

use crate::{
    EPOCH, LONG_NAME, REPODATA_NAME, image_of_tree, options, pack_tree, run, run_latin1, tempdir,
};

/// Writes the image of `src` to `dest` with `write_iso_file`.
fn write_tree_iso(src: &Utf8Path, dest: &Utf8Path, opts: xspack_iso::IsoOptions) {
    let mut b = IsoBuilder::new(opts).unwrap();
    let files = b.add_host_tree(src, "").unwrap();
    let summary = write_iso_file(&b, dest, false, |id| files.open(id)).unwrap();
    assert_eq!(summary.bytes, fs::metadata(dest).unwrap().len());
}

/// Extracts with xorriso and requires `diff -r` to find no difference (symlinks compared as
/// links).
fn assert_extracts_identically(iso: &Utf8Path, src: &Utf8Path, out: &Utf8Path) {
    run("xorriso", &["-osirrox", "on", "-indev", iso.as_str(), "-extract", "/", out.as_str()]);
    let diff = run("diff", &["-r", "--no-dereference", src.as_str(), out.as_str()]);
    assert_eq!(diff, "");
}

#[test]
fn xorriso_lists_and_extracts_the_pack_tree() {
    let (_t, root) = tempdir();
    let src = root.join("src");
    pack_tree(&src);
    let iso = root.join("pack.iso");
    write_tree_iso(&src, &iso, options(EPOCH));

    let listing = run("xorriso", &["-indev", iso.as_str(), "-find", "/", "-exec", "lsdl"]);
    let line = |name: &str| {
        listing
            .lines()
            .find(|l| l.contains(&format!("'/{name}'")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{listing}"))
            .to_string()
    };
    assert!(line("install.sh").starts_with("-rwxr-xr-x"), "{listing}");
    assert!(line("install").starts_with("-rwxr-xr-x"), "{listing}");
    assert!(line("secret.key").starts_with("-rw-------"), "{listing}");
    assert!(line("XS-REPOSITORY").starts_with("-rw-r--r--"), "{listing}");
    assert!(line("Packages").starts_with("drwxr-xr-x"), "{listing}");
    assert!(line(LONG_NAME).starts_with("-rw-r--r--"), "{listing}");
    let latest = line("Packages/latest.rpm");
    assert!(latest.starts_with("lrwxrwxrwx"), "{latest}");
    assert!(latest.ends_with("-> '../name with spaces.rpm'"), "{latest}");
    assert!(line("abs-link").ends_with("-> '/etc/xensource-inventory'"), "{listing}");
    assert!(line("a/b/c/d/e/f/g/deep-file.txt").starts_with("-rw-r--r--"), "{listing}");

    assert_extracts_identically(&iso, &src, &root.join("out"));
    let extracted = fs::metadata(root.join("out/install.sh")).unwrap();
    assert_eq!(extracted.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        fs::read_link(root.join("out/Packages/latest.rpm")).unwrap().to_str(),
        Some("../name with spaces.rpm")
    );
}

#[test]
fn isoinfo_reports_volume_rock_ridge_joliet_and_modes() {
    let (_t, root) = tempdir();
    let src = root.join("src");
    pack_tree(&src);
    let iso = root.join("pack.iso");
    write_tree_iso(&src, &iso, options(EPOCH));

    let desc = run("isoinfo", &["-d", "-i", iso.as_str()]);
    for want in [
        "CD-ROM is in ISO 9660 format",
        "Volume id: XSPACK_TEST",
        "Publisher id: XSPACK TESTS",
        "Application id: XSPACK ",
        "Logical block size is: 2048",
        "Rock Ridge signatures version 1 found",
        "Joliet with UCS level 3 found",
    ] {
        assert!(desc.contains(want), "missing {want:?} in:\n{desc}");
    }
    let size: u64 = desc
        .lines()
        .find_map(|l| l.strip_prefix("Volume size is: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(size * 2048, fs::metadata(&iso).unwrap().len());

    let joliet = run_latin1("isoinfo", &["-J", "-f", "-i", iso.as_str()]);
    let joliet: Vec<&str> = joliet.lines().collect();
    for want in [
        "/Mixed Case Name.txt".to_string(),
        "/name with spaces.rpm".into(),
        format!("/{LONG_NAME}"),
        format!("/repodata/{REPODATA_NAME}"),
        "/a/b/c/d/e/f/g/deep-file.txt".into(),
        // isoinfo prints Latin-1 and replaces the CJK character with `_`.
        "/caf\u{e9}-\u{fc}n\u{ef}c\u{f6}d\u{e9}-_.txt".into(),
        "/README".into(),
        "/readme".into(),
        "/emptydir".into(),
    ] {
        assert!(joliet.contains(&want.as_str()), "missing {want:?} in:\n{joliet:#?}");
    }
    // Symlinks have no Joliet form.
    assert!(!joliet.iter().any(|l| l.ends_with("latest.rpm")), "{joliet:#?}");

    let rr = run("isoinfo", &["-R", "-l", "-i", iso.as_str()]);
    let mode_of = |name: &str| {
        rr.lines()
            .find(|l| l.ends_with(&format!("]  {name} ")) || l.contains(&format!("]  {name} -> ")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{rr}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(mode_of("install.sh"), "-rwxr-xr-x");
    assert_eq!(mode_of("secret.key"), "-rw-------");
    assert_eq!(mode_of("Mixed Case Name.txt"), "-rw-r--r--");
    assert_eq!(mode_of("latest.rpm"), "lrwxrwxrwx");
    assert!(rr.contains("latest.rpm -> ../name with spaces.rpm"), "{rr}");
    assert_eq!(mode_of("Packages"), "drwxr-xr-x");

    // Without extensions, isoinfo sees unique d-character 8.3 names.
    let plain = run("isoinfo", &["-f", "-i", iso.as_str()]);
    let plain: Vec<&str> = plain.lines().collect();
    for want in ["/INSTALL.SH;1", "/INSTALL.;1", "/XS_REPOS.;1", "/README.;1", "/README1.;1"] {
        assert!(plain.contains(&want), "missing {want:?} in:\n{plain:#?}");
    }
    let mut unique = plain.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), plain.len());
}

#[test]
fn our_reader_reads_the_pack_tree_back() {
    let (_t, root) = tempdir();
    let src = root.join("src");
    pack_tree(&src);
    let image = image_of_tree(&src, options(EPOCH));
    let mut reader = IsoReader::new(std::io::Cursor::new(image)).unwrap();
    assert_eq!(reader.volume().volume_id, "XSPACK_TEST");
    assert_eq!(reader.volume().rock_ridge.as_deref(), Some("RRIP_1991A"));
    assert_eq!(reader.volume().joliet_level, Some(3));
    assert_eq!(reader.volume().created, Some(EPOCH));
    let entries = reader.entries().unwrap();
    let mut host: Vec<String> = walk_host(&src);
    host.sort();
    let listed: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
    assert_eq!(listed, host);
    for entry in &entries {
        let path = src.join(&entry.path);
        let meta = fs::symlink_metadata(&path).unwrap();
        assert_eq!(entry.mode, Some(meta.mode()), "{}", entry.path);
        assert_eq!(entry.mtime, Some(meta.mtime().min(EPOCH)), "{}", entry.path);
        match entry.kind {
            EntryKind::File => {
                let mut bytes = Vec::new();
                reader.open_file(entry).unwrap().read_to_end(&mut bytes).unwrap();
                assert_eq!(bytes, fs::read(&path).unwrap(), "{}", entry.path);
            }
            EntryKind::Symlink => {
                let target = fs::read_link(&path).unwrap();
                assert_eq!(entry.symlink_target.as_deref(), target.to_str());
            }
            EntryKind::Dir => assert!(meta.is_dir()),
            EntryKind::Special => panic!("no special files were staged"),
        }
    }
    let joliet = reader.joliet_entries().unwrap().unwrap();
    let joliet: Vec<&str> = joliet.iter().map(|e| e.path.as_str()).collect();
    let no_links: Vec<&str> =
        entries.iter().filter(|e| e.kind != EntryKind::Symlink).map(|e| e.path.as_str()).collect();
    assert_eq!(joliet, no_links);
}

fn walk_host(root: &Utf8Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = camino::Utf8PathBuf::try_from(entry.unwrap().path()).unwrap();
            out.push(path.strip_prefix(root).unwrap().to_string());
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

#[test]
fn deep_paths_need_the_option_and_then_extract() {
    let (_t, root) = tempdir();
    let src = root.join("src");
    let deep = ["level"; 12].join("/");
    fs::create_dir_all(src.join(&deep)).unwrap();
    fs::write(src.join(&deep).join("bottom.txt"), "bottom\n").unwrap();

    let mut b = IsoBuilder::new(options(EPOCH)).unwrap();
    let err = b.add_host_tree(&src, "").unwrap_err();
    assert!(matches!(err, Error::TooDeep { depth: 9, max: 8, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "level/level/level/level/level/level/level/level: directory depth 9 exceeds the ISO 9660 limit of 8 levels"
    );

    let mut opts = options(EPOCH);
    opts.allow_deep_paths = true;
    let iso = root.join("deep.iso");
    write_tree_iso(&src, &iso, opts);
    assert_extracts_identically(&iso, &src, &root.join("out"));
    let joliet = run("isoinfo", &["-J", "-f", "-i", iso.as_str()]);
    assert!(joliet.contains(&format!("/{deep}/bottom.txt")), "{joliet}");
}

#[test]
fn names_beyond_joliet_need_joliet_off() {
    let (_t, root) = tempdir();
    let src = root.join("src");
    let name = format!("{}.rpm", "x".repeat(200));
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("sub").join(&name), "x\n").unwrap();
    fs::write(src.join("smile \u{1F600}.txt"), "x\n").unwrap();

    let mut b = IsoBuilder::new(options(EPOCH)).unwrap();
    let files = b.add_host_tree(&src, "").unwrap();
    let err = write_iso_file(&b, &root.join("x.iso"), false, |id| files.open(id)).unwrap_err();
    assert!(matches!(err, Error::JolietName { .. }), "{err}");
    assert!(!root.join("x.iso").exists(), "a failed write leaves no output");

    let mut opts = options(EPOCH);
    opts.joliet = Joliet::Off;
    opts.level = IsoLevel::Two;
    let iso = root.join("rr-only.iso");
    write_tree_iso(&src, &iso, opts);
    assert_extracts_identically(&iso, &src, &root.join("out"));
    let desc = run("isoinfo", &["-d", "-i", iso.as_str()]);
    assert!(desc.contains("Rock Ridge signatures version 1 found"), "{desc}");
    assert!(desc.contains("NO Joliet present"), "{desc}");
    let plain = run("isoinfo", &["-f", "-i", iso.as_str()]);
    assert!(plain.contains(&format!("/SUB/{}.RPM;1", "X".repeat(27))), "{plain}");
}

#[test]
fn long_symlink_targets_and_names_use_continuation_areas() {
    let (_t, root) = tempdir();
    let src = root.join("src");
    fs::create_dir_all(&src).unwrap();
    // Targets are limited to 1024 bytes for xorriso; 950 still need four SL entries.
    let long_target = format!("{}/end", ["component-of-a-long-target"; 35].join("/"));
    std::os::unix::fs::symlink(&long_target, src.join("far")).unwrap();
    let long_name = "n".repeat(255);
    fs::write(src.join(&long_name), "n\n").unwrap();

    let mut opts = options(EPOCH);
    opts.joliet = Joliet::Off;
    let iso = root.join("ce.iso");
    write_tree_iso(&src, &iso, opts);
    assert_extracts_identically(&iso, &src, &root.join("out"));
    let mut reader = IsoReader::new(fs::File::open(&iso).unwrap()).unwrap();
    let far = reader.lookup("far").unwrap();
    assert_eq!(far.symlink_target.as_deref(), Some(long_target.as_str()));
    assert_eq!(reader.lookup(&long_name).unwrap().size, 2);
}

#[test]
fn explicit_metadata_reaches_xorriso() {
    let (_t, root) = tempdir();
    let mut b = IsoBuilder::new(options(EPOCH)).unwrap();
    b.add_dir("bin", Metadata::new(0o750).with_owner(10, 20)).unwrap();
    b.add_file("bin/tool", 4, Metadata::new(0o4755).with_owner(1, 2).with_mtime(86_400)).unwrap();
    let iso = root.join("meta.iso");
    write_iso_file(&b, &iso, false, |_| Ok(&b"tool"[..])).unwrap();
    let listing = run("xorriso", &["-indev", iso.as_str(), "-find", "/", "-exec", "lsdl"]);
    assert!(listing.contains("drwxr-x---    1 10       20"), "{listing}");
    assert!(
        listing.contains("-rwsr-xr-x    1 1        2               4 Jan  2  1970 '/bin/tool'"),
        "{listing}"
    );
    // Writing again without `replace` refuses to clobber.
    let err = write_iso_file(&b, &iso, false, |_| Ok(&b"tool"[..])).unwrap_err();
    assert!(matches!(err, Error::Output(_)), "{err}");
    write_iso_file(&b, &iso, true, |_| Ok(&b"tool"[..])).unwrap();
}
