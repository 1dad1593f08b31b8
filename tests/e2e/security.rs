//! Security properties (issue 9): the signing key's secret material never appears in any output
//! byte, and setuid bits and device nodes are written into images, never onto the host.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use camino::{Utf8Path, Utf8PathBuf};
use xspack_testkit::{Compression, Entry, EntryKind, ImageSpec, layer_tar};

use crate::common::{code, keygen, stderr, tempdir, tool, xspack};

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Utf8Path) -> Vec<Utf8PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() {
                out.push(p);
            }
        }
    }
    out
}

/// The binary `OpenPGP` packets of an armored key file.
fn dearmor(path: &Utf8Path) -> Vec<u8> {
    tool("gpg", &["--dearmor", "--batch", "--output", "-", path.as_str()]).stdout
}

/// Windows of `secret` that appear nowhere in `public`: the secret-only key material.
fn secret_only_windows(secret: &[u8], public: &[u8], width: usize) -> Vec<Vec<u8>> {
    secret
        .windows(width)
        .step_by(width / 2)
        .filter(|w| !public.windows(width).any(|p| p == *w))
        .map(<[u8]>::to_vec)
        .collect()
}

fn find_leak(haystack: &[u8], needles: &[Vec<u8>]) -> Option<usize> {
    needles.iter().position(|n| haystack.windows(n.len()).any(|w| w == n.as_slice()))
}

#[test]
fn secret_key_material_never_appears_in_outputs() {
    let (_t, root) = tempdir();
    let (secret, public) = keygen(&root);
    let secret_bin = dearmor(&secret);
    let public_bin = dearmor(&public);
    let needles = secret_only_windows(&secret_bin, &public_bin, 16);
    assert!(needles.len() > 20, "the secret key has secret-only bytes: {}", needles.len());
    // The armored text too: every base64 line of the secret block not in the public one.
    let public_text = std::fs::read_to_string(&public).unwrap();
    let mut text_needles: Vec<Vec<u8>> = std::fs::read_to_string(&secret)
        .unwrap()
        .lines()
        .filter(|l| l.len() >= 40 && !l.starts_with("-----") && !public_text.contains(*l))
        .map(|l| l.as_bytes().to_vec())
        .collect();
    assert!(!text_needles.is_empty());
    text_needles.extend(needles);

    // A pack in both formats, signed (RPMs, repomd.xml, update.xml), built with --json.
    let pack = repo_root_pack();
    let out = root.join("dist");
    let o = xspack()
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args([
            "--json",
            "-v",
            "pack",
            "build",
            pack.as_str(),
            "--sign-key",
            secret.as_str(),
            "-o",
            out.as_str(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut scanned =
        vec![("stdout".to_owned(), o.stdout.clone()), ("stderr".to_owned(), o.stderr.clone())];
    for f in files_under(&out) {
        scanned.push((f.to_string(), std::fs::read(&f).unwrap()));
    }
    // Inside the ISOs: every member, and every RPM's payload decompressed.
    let x = root.join("x");
    for iso in files_under(&out).into_iter().filter(|f| f.extension() == Some("iso")) {
        let dest = x.join(iso.file_name().unwrap());
        tool(
            "xorriso",
            &["-osirrox", "on", "-indev", iso.as_str(), "-extract", "/", dest.as_str()],
        );
    }
    for f in files_under(&x) {
        if f.extension() == Some("rpm") {
            // The signature header carries the archive size (tag 1007): rpm2cpio exits 0.
            let out = std::process::Command::new("rpm2cpio").arg(&f).output().unwrap();
            assert!(out.status.success(), "{f}: rpm2cpio failed");
            let cpio = out.stdout;
            assert!(cpio.windows(10).any(|w| w == b"TRAILER!!!"), "{f}: no whole cpio payload");
            scanned.push((format!("{f} (payload)"), cpio));
        }
        scanned.push((f.to_string(), std::fs::read(&f).unwrap()));
    }
    // The failure path too: a build that fails after loading the key.
    let bad = root.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("pack.toml"), "[pack]\nname = \"x\"\n").unwrap();
    let o = xspack()
        .args(["-v", "pack", "build", bad.as_str(), "--sign-key", secret.as_str(), "-o"])
        .arg(bad.join("out"))
        .output()
        .unwrap();
    scanned.push(("failed build stderr".to_owned(), o.stderr));
    for (name, bytes) in &scanned {
        if let Some(i) = find_leak(bytes, &text_needles) {
            panic!("{name}: holds secret key material (needle {i})");
        }
    }
    assert!(scanned.len() > 10, "{}", scanned.len());
}

fn repo_root_pack() -> Utf8PathBuf {
    crate::common::repo_root().join("packs/demo")
}

/// Setuid files and device nodes of a layer go into the ext4 image only: the build creates no
/// such file on the host, nor anything outside its output directory.
#[test]
fn setuid_bits_and_devices_stay_inside_the_image() {
    let (_t, root) = tempdir();
    let entries = vec![
        Entry::dir("usr/bin"),
        Entry::file("usr/bin/su", "#!/bin/sh\n").mode(0o4755),
        Entry::file("usr/bin/wall", "#!/bin/sh\n").mode(0o2755),
        Entry::dir("dev"),
        Entry::new("dev/null", EntryKind::Char(1, 3)).mode(0o666),
        Entry::new("dev/sda", EntryKind::Block(8, 0)).mode(0o660),
        Entry::new("dev/initctl", EntryKind::Fifo).mode(0o600),
        Entry::dir("tmp").mode(0o1777),
    ];
    let layout = root.join("layout");
    ImageSpec::new(vec![(layer_tar(&entries), Compression::Gzip)])
        .write_oci_dir(&layout, "latest")
        .unwrap();
    let tmp = root.join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = root.join("out");
    let o = xspack()
        .env("TMPDIR", &tmp)
        .args([
            "-q",
            "image",
            "build",
            &format!("oci:{layout}"),
            "--flavor",
            "none",
            "--name",
            "img",
            "-o",
            out.as_str(),
        ])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Inside the image: the bits and the nodes, as the layer says.
    let tree = xspack_testkit::ext4check::read_tree(&out.join("img.raw"));
    let get = |p: &str| tree.get(p.as_bytes()).unwrap_or_else(|| panic!("{p} in the image"));
    assert_eq!(get("usr/bin/su").mode & 0o7777, 0o4755);
    assert_eq!(get("usr/bin/wall").mode & 0o7777, 0o2755);
    assert_eq!((get("dev/null").kind, get("dev/null").dev), ('c', Some((1, 3))));
    assert_eq!((get("dev/sda").kind, get("dev/sda").dev), ('b', Some((8, 0))));
    assert_eq!(get("dev/initctl").kind, 'p');
    assert_eq!(get("tmp").mode & 0o7777, 0o1777);
    // On the host: nothing new but the output directory's regular files, none setuid or setgid.
    assert!(std::fs::read_dir(&tmp).unwrap().next().is_none(), "nothing in TMPDIR");
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = Utf8PathBuf::from_path_buf(e.path()).unwrap();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let t = meta.file_type();
            assert!(
                !(t.is_char_device() || t.is_block_device() || t.is_fifo() || t.is_socket()),
                "{p}: a node on the host"
            );
            assert_eq!(meta.permissions().mode() & 0o6000, 0, "{p}: setuid or setgid on the host");
            if t.is_dir() {
                stack.push(p);
            }
        }
    }
    let listing = crate::common::listing(&out);
    assert_eq!(listing, ["SHA256SUMS", "img.raw", "manifest.json"]);
}
