//! Hardening against hostile and careless use (issue 18): `--force` replaces only what is
//! ours, failed builds leave no directories behind and sweep what killed ones left, and the
//! files a `pack.toml` or template definition names stay inside its directory, are regular
//! files, and are never secret key material. Each class is tried in several shapes.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::process::Output;

use camino::{Utf8Path, Utf8PathBuf};

use xspack_testkit::{Compression, DockerLayout, Entry, ImageSpec, layer_tar};

use crate::common::{code, error_hint, keygen, repo_root, stderr, tempdir, xspack};

/// A special file case: (source path, what the error says, how to make it under the case dir).
type Special = (&'static str, &'static str, fn(&Utf8Path));
/// An image's layers: each tar and how it is compressed.
type Layers = Vec<(Vec<u8>, Compression)>;

/// A small legacy-only pack at `dir/pack` (no signing key needed): one payload file, one
/// script. `extra` is appended to its `[[package]]` table's `files` list.
fn small_pack(dir: &Utf8Path, extra_files: &str, extra_toml: &str) -> Utf8PathBuf {
    let pack = dir.join("pack");
    std::fs::create_dir_all(pack.join("files")).unwrap();
    std::fs::write(pack.join("files/app.conf"), b"setting = 1\n").unwrap();
    std::fs::write(pack.join("post.sh"), b"#!/bin/sh\ntrue\n").unwrap();
    std::fs::write(
        pack.join("pack.toml"),
        format!(
            "[pack]\nname = \"hardening\"\nversion = \"1.0.0\"\nbuild = \"1\"\noriginator = \"xspack\"\n\
             description = \"hardening\"\nformats = [\"legacy\"]\n\n\
             [[package]]\nname = \"hardening\"\nversion = \"1.0\"\nsummary = \"s\"\ndescription = \"d\"\n\
             post = \"post.sh\"\n\
             files = [{{ src = \"files/app.conf\", dest = \"/etc/app.conf\" }}{extra_files}]\n{extra_toml}"
        ),
    )
    .unwrap();
    pack
}

/// Runs `xspack pack build PACK ARGS...` in `cwd`.
fn pack_build(cwd: &Utf8Path, pack: &Utf8Path, args: &[&str]) -> Output {
    xspack()
        .current_dir(cwd)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["-q", "pack", "build", pack.as_str()])
        .args(args)
        .output()
        .unwrap()
}

/// Everything under `path` (not following symlinks): relative name → (kind, size, mtime, inode,
/// content digest for files).
fn snapshot(path: &Utf8Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![path.to_owned()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        let rel = p.strip_prefix(path).unwrap().to_string();
        let digest = if meta.is_file() {
            xspack_io::Sha256Digest::of_bytes(&std::fs::read(&p).unwrap()).to_string()
        } else {
            String::new()
        };
        out.insert(
            rel,
            format!(
                "{:?} {} {} {} {digest}",
                meta.file_type(),
                meta.len(),
                meta.mtime(),
                meta.ino()
            ),
        );
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap());
            }
        }
    }
    out
}

/// Asserts a refusal: exit `want`, one error line containing every one of `says`.
fn refused(out: &Output, want: i32, says: &[&str]) {
    let err = stderr(out);
    assert_eq!(code(out), want, "{err}");
    error_hint(&err);
    for s in says {
        assert!(err.contains(s), "want {s:?} in: {err}");
    }
    assert!(!err.contains("panicked") && !err.contains(".xspack-scratch"), "{err}");
}

#[test]
fn force_replaces_only_an_empty_directory_or_a_previous_build() {
    let (_t, root) = tempdir();
    let work = root.join("work");
    let pack = small_pack(&work, "", "");
    let inputs_before = snapshot(&pack);

    // Accepted: a new directory, a previous build, an empty directory.
    refused_or_ok(&pack_build(&work, &pack, &["-o", "out"]), 0);
    refused_or_ok(&pack_build(&work, &pack, &["-o", "out", "--force"]), 0);
    std::fs::create_dir(work.join("empty")).unwrap();
    refused_or_ok(&pack_build(&work, &pack, &["-o", "empty", "--force"]), 0);
    assert!(work.join("empty/manifest.json").is_file());

    // Refused, each leaving the target exactly as it was.
    std::fs::create_dir_all(root.join("home/.ssh")).unwrap();
    std::fs::write(root.join("home/.ssh/id_ed25519"), b"secret").unwrap();
    std::fs::create_dir(work.join("photos")).unwrap();
    std::fs::write(work.join("photos/cat.jpg"), b"meow").unwrap();
    refused_or_ok(&pack_build(&work, &pack, &["-o", "edited"]), 0);
    std::fs::write(work.join("edited/NOTES.txt"), b"my notes").unwrap();
    refused_or_ok(&pack_build(&work, &pack, &["-o", "nested"]), 0);
    std::fs::create_dir(work.join("nested/keep")).unwrap();
    std::fs::write(work.join("nested/keep/x"), b"x").unwrap();
    std::fs::write(work.join("file.txt"), b"a file").unwrap();
    std::os::unix::fs::symlink("out", work.join("link")).unwrap();
    refused_or_ok(&pack_build(&work, &pack, &["-o", "other-tool"]), 0);
    let manifest = std::fs::read_to_string(work.join("other-tool/manifest.json")).unwrap();
    std::fs::write(
        work.join("other-tool/manifest.json"),
        manifest.replace("\"name\": \"xspack\"", "\"name\": \"other\""),
    )
    .unwrap();
    let home = root.join("home");
    let cases: [(&str, Utf8PathBuf, &[&str]); 10] = [
        (".", work.clone(), &["is the current directory"]),
        ("..", root.clone(), &["holds the current directory"]),
        (home.as_str(), home.clone(), &["is the home directory"]),
        ("pack", pack.clone(), &["is the input"]),
        ("photos", work.join("photos"), &["holds no manifest.json"]),
        ("edited", work.join("edited"), &["does not list", "NOTES.txt"]),
        ("nested", work.join("nested"), &["does not list"]),
        ("file.txt", work.join("file.txt"), &["is a file, not a directory"]),
        ("link", work.join("link"), &["is a symbolic link"]),
        ("other-tool", work.join("other-tool"), &["names the tool \"other\""]),
    ];
    for (dest, path, says) in cases {
        let before = snapshot(&path);
        let out = xspack()
            .current_dir(&work)
            .env("HOME", &home)
            .args(["-q", "pack", "build", pack.as_str(), "-o", dest, "--force"])
            .output()
            .unwrap();
        let mut all = vec!["refusing to replace it"];
        all.extend_from_slice(says);
        refused(&out, 2, &all);
        assert_eq!(snapshot(&path), before, "-o {dest} --force changed it");
    }
    // The same rules hold for image and template builds: one shape each.
    let template = repo_root().join("templates/debian-guest.toml");
    let out = xspack()
        .current_dir(&work)
        .args(["-q", "template", "build", template.as_str(), "--format", "json"])
        .args(["-o", "photos", "--force"])
        .output()
        .unwrap();
    refused(&out, 2, &["photos: refusing to replace it"]);
    let layout = root.join("img/layout");
    ImageSpec::new(vec![(layer_tar(&[Entry::file("a", b"x".to_vec())]), Compression::None)])
        .write_oci_dir(&layout, "latest")
        .unwrap();
    let out = xspack()
        .current_dir(&work)
        .args(["-q", "image", "build", &format!("oci:{layout}"), "--flavor", "none", "-o", "."])
        .arg("--force")
        .output()
        .unwrap();
    refused(&out, 2, &["refusing to replace it: it is the current directory"]);
    let out = xspack()
        .current_dir(&work)
        .args(["-q", "image", "build", &format!("oci:{layout}"), "--flavor", "none", "-o"])
        .args([root.as_str(), "--force"])
        .output()
        .unwrap();
    refused(&out, 2, &["refusing to replace it: it holds the current directory"]);
    let out = xspack()
        .current_dir(&root)
        .args(["-q", "image", "build", &format!("oci:{layout}"), "--flavor", "none", "-o"])
        .args(["img", "--force"])
        .output()
        .unwrap();
    refused(&out, 2, &["refusing to replace it: it holds the input"]);
    // No input was changed, moved or deleted by any of it.
    assert_eq!(snapshot(&pack), inputs_before);
}

/// Exit 0 expected (a setup step), with the error shown otherwise.
fn refused_or_ok(out: &Output, want: i32) {
    assert_eq!(code(out), want, "{}", stderr(out));
}

#[test]
fn failed_builds_leave_no_directories_and_sweep_what_killed_ones_left() {
    let (_t, root) = tempdir();
    let pack = small_pack(&root, "", "[[rpm]]\npath = \"bad.rpm\"\n");
    std::fs::write(pack.join("bad.rpm"), b"\xed\xab\xee\xdbnot really an rpm").unwrap();
    let out = pack_build(&root, &pack, &["-o", "new/a/b/out"]);
    refused(&out, 3, &["bad.rpm"]);
    assert!(!root.join("new").exists(), "the parents it made are gone");
    // A parent that existed before is kept, and only the ones made are removed.
    std::fs::create_dir(root.join("kept")).unwrap();
    let out = pack_build(&root, &pack, &["-o", "kept/x/y/out"]);
    refused(&out, 3, &["bad.rpm"]);
    assert_eq!(crate::common::listing(&root.join("kept")), Vec::<String>::new());

    // Temporaries of a killed run (no process holds their lock) go with the next run, and
    // nothing else in the directory is touched.
    let good = small_pack(&root.join("g"), "", "");
    std::fs::create_dir_all(root.join("dist/.out.Ab3dE9.xspack-tmp/.xspack-scratch")).unwrap();
    std::fs::write(root.join("dist/.out.Ab3dE9.xspack-tmp/half.iso"), vec![0u8; 4096]).unwrap();
    std::fs::write(root.join("dist/.out.Zz9yY8.xspack-tmp"), b"a half-written file").unwrap();
    std::fs::write(root.join("dist/.out.notes"), b"mine").unwrap();
    let out = pack_build(&root, &good, &["-o", "dist/out"]);
    refused_or_ok(&out, 0);
    assert_eq!(crate::common::listing(&root.join("dist")), [".out.notes", "out"]);
}

#[test]
fn pack_inputs_stay_inside_the_pack_directory() {
    let (_t, root) = tempdir();
    std::fs::write(root.join("outside.txt"), b"not for shipping").unwrap();
    std::fs::create_dir(root.join("shared")).unwrap();
    std::fs::write(root.join("shared/common.conf"), b"shared = 1\n").unwrap();
    let file = |src: &str| format!(", {{ src = {src:?}, dest = \"/etc/x\" }}");
    let shapes: Vec<(String, String, &str)> = vec![
        (file("../../outside.txt"), String::new(), "package[0].files[1].src"),
        (file("/etc/passwd"), String::new(), "package[0].files[1].src"),
        (file("files/escape"), String::new(), "package[0].files[1].src"),
        (file("files/../../../outside.txt"), String::new(), "package[0].files[1].src"),
        (String::new(), "[[rpm]]\npath = \"../../*.txt\"\n".into(), "rpm[0].path"),
        (String::new(), "[[rpm]]\npath = \"/etc/*.conf\"\n".into(), "rpm[0].path"),
        (
            String::new(),
            "[[template]]\npath = \"../../shared/t.toml\"\n".into(),
            "template[0].path",
        ),
    ];
    for (i, (files, toml, field)) in shapes.iter().enumerate() {
        let dir = root.join(format!("case{i}"));
        let pack = small_pack(&dir, files, toml);
        std::os::unix::fs::symlink(root.join("outside.txt"), pack.join("files/escape")).unwrap();
        std::fs::write(root.join("shared/t.toml"), b"").unwrap();
        let out = pack_build(&dir, &pack, &["-o", "out"]);
        refused(&out, 3, &[&format!("pack.toml: {field}: "), "outside", "--allow-outside"]);
        assert!(!dir.join("out").exists());
    }
    // A script counts too.
    let dir = root.join("script");
    let pack = small_pack(&dir, "", "");
    let toml = std::fs::read_to_string(pack.join("pack.toml")).unwrap();
    std::fs::write(pack.join("pack.toml"), toml.replace("post.sh", "../../outside.txt")).unwrap();
    refused(&pack_build(&dir, &pack, &["-o", "out"]), 3, &["package[0].post: ", "outside"]);
    // [signing] key too, although the key is not payload.
    let dir = root.join("signing");
    let pack = small_pack(&dir, "", "[signing]\nkey = \"../../outside.txt\"\n");
    refused(&pack_build(&dir, &pack, &["-o", "out"]), 3, &["signing.key: ", "outside"]);

    // --allow-outside opens exactly the directory named.
    let dir = root.join("allowed");
    let pack = small_pack(&dir, &file("../../shared/common.conf"), "");
    refused(&pack_build(&dir, &pack, &["-o", "out"]), 3, &["outside"]);
    let shared = root.join("shared");
    refused_or_ok(&pack_build(&dir, &pack, &["-o", "out", "--allow-outside", shared.as_str()]), 0);
    refused(
        &pack_build(&dir, &pack, &["-o", "o2", "--allow-outside", "no/such/dir"]),
        2,
        &["--allow-outside no/such/dir"],
    );
    // A symlink inside the pack to an allowed directory is fine; the repository's packs build
    // with templates/ allowed (what `just pack` does).
    let templates = repo_root().join("templates");
    let guest_templates = repo_root().join("packs/guest-templates");
    let out = xspack()
        .args(["-q", "pack", "build", guest_templates.as_str(), "--unsigned", "-o"])
        .arg(root.join("gt"))
        .output()
        .unwrap();
    refused(&out, 3, &["template[0].path: ", "outside"]);
    let out = xspack()
        .args(["-q", "pack", "build", guest_templates.as_str(), "--unsigned", "-o"])
        .arg(root.join("gt"))
        .args(["--allow-outside", templates.as_str()])
        .output()
        .unwrap();
    refused_or_ok(&out, 0);
}

#[test]
fn pack_inputs_are_regular_files_and_never_secret_keys() {
    let (_t, root) = tempdir();
    let (secret, _) = keygen(&root);
    let file = |src: &str| format!(", {{ src = {src:?}, dest = \"/etc/x\" }}");
    // Special files: refused before anything opens them (a FIFO would block forever).
    let specials: [Special; 3] = [
        ("files/fifo", "is a FIFO", |d| {
            let st = std::process::Command::new("mkfifo").arg(d.join("pack/files/fifo")).status();
            assert!(st.unwrap().success());
        }),
        ("files/zero", "is a character device", |d| {
            std::os::unix::fs::symlink("/dev/zero", d.join("pack/files/zero")).unwrap();
        }),
        ("files", "is a directory", |_| {}),
    ];
    for (i, (src, says, make)) in specials.iter().enumerate() {
        let dir = root.join(format!("special{i}"));
        small_pack(&dir, &file(src), "");
        make(&dir);
        let allow = ["--allow-outside", "/dev"];
        let out = pack_build(&dir, &dir.join("pack"), &[&["-o", "out"][..], &allow[..]].concat());
        refused(&out, 3, &["package[0].files[1].src: ", says]);
    }
    // Secret key material as payload: the signing key itself, a copy, a key pasted in a
    // config file, and a binary export.
    let armored = std::fs::read_to_string(&secret).unwrap();
    let binary =
        crate::common::tool("gpg", &["--dearmor", "--batch", "--output", "-", secret.as_str()])
            .stdout;
    let payloads: [(&str, Vec<u8>, &str); 3] = [
        ("files/copy.asc", armored.clone().into_bytes(), "ASCII-armored OpenPGP secret key"),
        (
            "files/app.yaml",
            format!("name: app\nkey: |\n  {}\n", armored.replace('\n', "\n  ")).into_bytes(),
            "ASCII-armored OpenPGP secret key",
        ),
        ("files/key.gpg", binary, "binary OpenPGP secret key"),
    ];
    for (i, (src, bytes, says)) in payloads.iter().enumerate() {
        let dir = root.join(format!("secret{i}"));
        let pack = small_pack(&dir, &file(src), "");
        std::fs::write(pack.join(src), bytes).unwrap();
        let out = pack_build(&dir, &pack, &["-o", "out", "--format", "legacy"]);
        refused(&out, 3, &["package[0].files[1].src: ", says]);
    }
    // The --sign-key file itself, reached through a hard link inside the pack.
    let dir = root.join("signkey");
    let pack = small_pack(&dir, &file("files/signing.asc"), "");
    std::fs::hard_link(&secret, pack.join("files/signing.asc")).unwrap();
    let out = pack_build(&dir, &pack, &["-o", "out", "--sign-key", secret.as_str()]);
    refused(&out, 3, &["package[0].files[1].src: ", "is the signing key file"]);
    // A public key is fine to ship.
    let dir = root.join("public");
    let pack = small_pack(&dir, &file("files/RPM-GPG-KEY"), "");
    std::fs::copy(root.join("keys/signing.pub.asc"), pack.join("files/RPM-GPG-KEY")).unwrap();
    refused_or_ok(&pack_build(&dir, &pack, &["-o", "out"]), 0);
}

#[test]
fn template_inputs_stay_inside_their_directory() {
    let (_t, root) = tempdir();
    std::fs::write(root.join("secret.txt"), b"#cloud-config\n").unwrap();
    let defs = root.join("defs");
    std::fs::create_dir(&defs).unwrap();
    std::fs::write(defs.join("user-data"), b"#cloud-config\n").unwrap();
    let base = std::fs::read_to_string(repo_root().join("templates/coreos-container-host.toml"))
        .unwrap()
        .replace("coreos-container-host.cloud-config", "USER_DATA");
    let shapes = [
        ("../secret.txt", "config-drive.user-data: ", "outside"),
        ("/etc/passwd", "config-drive.user-data: ", "outside"),
        ("link", "config-drive.user-data: ", "outside"),
        ("fifo", "config-drive.user-data: ", "is a FIFO"),
    ];
    std::os::unix::fs::symlink(root.join("secret.txt"), defs.join("link")).unwrap();
    let st = std::process::Command::new("mkfifo").arg(defs.join("fifo")).status().unwrap();
    assert!(st.success());
    for (i, (user_data, field, says)) in shapes.iter().enumerate() {
        let toml = defs.join(format!("t{i}.toml"));
        std::fs::write(&toml, base.replace("USER_DATA", user_data)).unwrap();
        let out = xspack()
            .args(["-q", "template", "build", toml.as_str(), "--format", "xva", "-o"])
            .arg(root.join(format!("out{i}")))
            .output()
            .unwrap();
        refused(&out, 3, &[field, says]);
        assert!(!root.join(format!("out{i}")).exists());
    }
    let toml = defs.join("ok.toml");
    std::fs::write(&toml, base.replace("USER_DATA", "user-data")).unwrap();
    let out = xspack()
        .args(["-q", "template", "build", toml.as_str(), "--format", "xva", "-o"])
        .arg(root.join("ok"))
        .output()
        .unwrap();
    refused_or_ok(&out, 0);
    let toml = defs.join("wide.toml");
    std::fs::write(&toml, base.replace("USER_DATA", "../secret.txt")).unwrap();
    let out = xspack()
        .args(["-q", "template", "build", toml.as_str(), "--format", "xva", "-o"])
        .arg(root.join("wide"))
        .args(["--allow-outside", root.as_str()])
        .output()
        .unwrap();
    refused_or_ok(&out, 0);
}

/// The same image, however its path is spelled and wherever the build runs, gives the same
/// bytes: every artifact (XVA included) and `manifest.json`, which records no host path.
#[test]
fn outputs_do_not_depend_on_how_sources_are_spelled_or_where_the_build_runs() {
    let (_t, root) = tempdir();
    let image = ImageSpec::new(vec![
        (
            layer_tar(&[Entry::dir("etc"), Entry::file("etc/os-release", "ID=debian\n")]),
            Compression::Gzip,
        ),
        (layer_tar(&[Entry::file("etc/motd", "hello\n")]), Compression::Zstd),
    ]);
    let images = root.join("images");
    std::fs::create_dir_all(root.join("elsewhere/deeper")).unwrap();
    image.write_oci_dir(&images.join("img"), "latest").unwrap();
    image.write_docker_archive(&images.join("img.tar"), "demo:1", DockerLayout::Classic).unwrap();
    std::os::unix::fs::symlink(images.join("img"), root.join("elsewhere/alias")).unwrap();
    // (working directory, source) pairs naming the same image.
    let spellings: [(&[(Utf8PathBuf, String)], &str); 2] = [
        (
            &[
                (images.clone(), "oci:img".to_owned()),
                (root.join("elsewhere/deeper"), format!("oci:{images}/img/")),
                (root.join("elsewhere"), "oci:./alias".to_owned()),
                (images.join("img"), "oci:.".to_owned()),
            ],
            "oci",
        ),
        (
            &[
                (images.clone(), "docker-archive:img.tar".to_owned()),
                (root.join("elsewhere/deeper"), format!("{images}/img.tar")),
                (root.join("elsewhere"), "../images/./img.tar".to_owned()),
            ],
            "docker",
        ),
    ];
    for (runs, kind) in spellings {
        let mut seen: Option<(Vec<u8>, Vec<u8>)> = None;
        for (i, (cwd, source)) in runs.iter().enumerate() {
            let out = root.join(format!("out-{kind}-{i}"));
            let o = xspack()
                .current_dir(cwd)
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .args(["-q", "image", "build", source, "--flavor", "none", "--name", "demo"])
                .args([
                    "--format", "raw", "--format", "vhd", "--format", "qcow2", "--format", "xva",
                ])
                .args(["-o", out.as_str()])
                .output()
                .unwrap();
            refused_or_ok(&o, 0);
            let sums = std::fs::read(out.join("SHA256SUMS")).unwrap();
            let manifest = std::fs::read(out.join("manifest.json")).unwrap();
            // No output holds a host path: neither the test's root nor the working directory.
            for name in crate::common::listing(&out) {
                let bytes = std::fs::read(out.join(&name)).unwrap();
                for needle in [root.as_str(), cwd.as_str()] {
                    let hit = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
                    assert!(!hit, "{name} of {source:?} holds {needle}");
                }
            }
            match &seen {
                None => seen = Some((sums, manifest)),
                Some((first_sums, first_manifest)) => {
                    assert_eq!(&sums, first_sums, "{source:?} from {cwd}");
                    assert_eq!(
                        String::from_utf8_lossy(&manifest),
                        String::from_utf8_lossy(first_manifest),
                        "{source:?} from {cwd}"
                    );
                }
            }
        }
    }
}

/// `xspack man -o DIR` into a shared directory (`just install` uses
/// `/usr/local/share/man/man1`) writes its pages beside the others and replaces only its own.
#[test]
fn man_pages_go_beside_other_pages_and_replace_only_their_own() {
    let (_t, root) = tempdir();
    let man1 = root.join("share/man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    std::fs::write(man1.join("ls.1"), b"other package's page").unwrap();
    let man = |force: bool| {
        let mut cmd = xspack();
        cmd.args(["-q", "man", "-o", man1.as_str(), "--source-date-epoch", "1700000000"]);
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    refused_or_ok(&man(false), 0);
    let pages = crate::common::listing(&man1);
    assert!(pages.contains(&"ls.1".to_owned()) && pages.contains(&"xspack.1".to_owned()));
    std::fs::write(man1.join("xspack.1"), b"stale").unwrap();
    let before = snapshot(&man1);
    let again = man(false);
    assert_eq!(code(&again), 1, "{}", stderr(&again));
    assert!(stderr(&again).contains("xspack.1: already exists"), "{}", stderr(&again));
    assert_eq!(snapshot(&man1), before, "nothing written without --force");
    refused_or_ok(&man(true), 0);
    assert_eq!(std::fs::read(man1.join("ls.1")).unwrap(), b"other package's page");
    assert_ne!(std::fs::read(man1.join("xspack.1")).unwrap(), b"stale");
    assert_eq!(crate::common::listing(&man1), pages, "no temporaries left");
    // A new directory is made whole, with its parents.
    let fresh = root.join("new/man1");
    let o = xspack().args(["-q", "man", "-o", fresh.as_str()]).output().unwrap();
    refused_or_ok(&o, 0);
    assert_eq!(crate::common::listing(&fresh).len(), pages.len() - 1);
}

/// `--size` is a disk budget: a build stops with exit 3 as soon as the layers' file data passes
/// it, before writing more, whichever layer holds the data and however it is split.
#[test]
fn size_is_a_budget_that_stops_inflating_layers_early() {
    let (_t, root) = tempdir();
    let big = || Entry::file("big", vec![0x5a; 48 << 20]);
    let many: Vec<Entry> =
        (0..40).map(|i| Entry::file(format!("f{i}"), vec![1; 1 << 20])).collect();
    let shapes: [(&str, Layers); 3] = [
        ("first-layer", vec![(layer_tar(&[big()]), Compression::Gzip)]),
        (
            "later-layer",
            vec![
                (layer_tar(&[Entry::file("small", "x")]), Compression::None),
                (layer_tar(&[big()]), Compression::Zstd),
            ],
        ),
        ("many-files", vec![(layer_tar(&many), Compression::Gzip)]),
    ];
    for (name, layers) in shapes {
        let layout = root.join(name);
        ImageSpec::new(layers).write_oci_dir(&layout, "latest").unwrap();
        let out = root.join(format!("{name}-out"));
        let o = xspack()
            .args(["-q", "image", "build", &format!("oci:{layout}"), "--flavor", "none"])
            .args(["--size", "16M", "--format", "vhd", "-o", out.as_str()])
            .output()
            .unwrap();
        refused(&o, 3, &["more file data than the 16777216 bytes asked for (--size)"]);
        assert!(!out.exists());
        assert!(!crate::common::listing(&root).iter().any(|n| n.ends_with(".xspack-tmp")));
    }
}

/// Peak RSS stays within 128 MiB at 250,000 entries in every shape: one directory of
/// one-byte files, directories of empty files, a forest of directories and chains of nested
/// directories (`scripts/rss-shapes`, the measurement `docs/reliability.md` reports, run on
/// the binary under test: each build in its own probe process, its peak read with
/// `getrusage(RUSAGE_CHILDREN)`).
#[test]
fn peak_rss_stays_within_128_mib_at_250000_entries_in_every_shape() {
    let out = std::process::Command::new(repo_root().join("scripts/rss-shapes"))
        .arg("250000")
        .arg(env!("CARGO_BIN_EXE_xspack"))
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/rss-shapes: {}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut shapes = BTreeMap::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [shape, entries, _, mib, "MiB"] = fields[..] else {
            panic!("unexpected line {line:?}")
        };
        assert_eq!(entries, "250000", "{line}");
        shapes.insert(shape.to_owned(), mib.parse::<f64>().unwrap());
    }
    assert_eq!(shapes.keys().collect::<Vec<_>>(), ["deep", "dirs", "empty", "flat"], "{text}");
    for (shape, mib) in &shapes {
        assert!(*mib <= 128.0, "{shape}: peak RSS {mib} MiB at 250,000 entries\n{text}");
    }
}
