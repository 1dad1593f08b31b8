//! Fault injection (issue 9): SIGINT and SIGTERM in the middle of an image build and a pack
//! build, SIGKILL and the next run's sweep, a file size limit standing in for a full disk, a read-only output directory, and two
//! builds racing for one output directory. Each time nothing is corrupted, the error is clear,
//! and a rerun succeeds.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use xspack_testkit::{Compression, Entry, ImageSpec, layer_tar};

use crate::common::{code, keygen, stderr, tempdir, xspack};

/// An image big enough that a build takes a while: incompressible files, stored uncompressed.
fn big_image(dir: &Utf8Path) -> String {
    let mut entries = vec![Entry::dir("data")];
    for i in 0..32u64 {
        entries.push(Entry::file(format!("data/f{i:02}"), xspack_testkit::noise(i, 2 << 20)));
    }
    let layout = dir.join("layout");
    ImageSpec::new(vec![(layer_tar(&entries), Compression::None)])
        .write_oci_dir(&layout, "latest")
        .unwrap();
    format!("oci:{layout}")
}

/// A pack with one large payload file, so its RPM and ISO take a while to write.
fn big_pack(dir: &Utf8Path) -> Utf8PathBuf {
    let pack = dir.join("pack");
    std::fs::create_dir_all(pack.join("files")).unwrap();
    std::fs::write(pack.join("files/big"), xspack_testkit::noise(99, 16 << 20)).unwrap();
    std::fs::write(
        pack.join("pack.toml"),
        "[pack]\nname = \"faults\"\nversion = \"1.0.0\"\nbuild = \"1\"\noriginator = \"xspack\"\n\
         description = \"faults\"\nformats = [\"legacy\", \"update\"]\n\n[legacy]\nproduct = \"XCP\"\n\n\
         [[package]]\nname = \"faults\"\nversion = \"1.0.0\"\nsummary = \"s\"\ndescription = \"d\"\n\
         license = \"MIT\"\nfiles = [{ src = \"files/big\", dest = \"/usr/share/faults/big\" }]\n",
    )
    .unwrap();
    pack
}

fn image_args(source: &str, out: &Utf8Path) -> Vec<String> {
    [
        "-q",
        "image",
        "build",
        source,
        "--flavor",
        "none",
        "--format",
        "raw",
        "--format",
        "vhd",
        "-o",
        out.as_str(),
    ]
    .iter()
    .map(|&s| s.to_owned())
    .collect()
}

fn pack_args(pack: &Utf8Path, key: &Utf8Path, out: &Utf8Path) -> Vec<String> {
    ["-q", "pack", "build", pack.as_str(), "--sign-key", key.as_str(), "-o", out.as_str()]
        .iter()
        .map(|&s| s.to_owned())
        .collect()
}

/// Lines of stderr other than a `hint:`.
fn error_lines(err: &str) -> usize {
    err.lines().filter(|l| !l.starts_with("hint: ")).count()
}

/// `xspack verify` of a finished build directory must pass.
fn verifies(out: &Utf8Path) {
    let o = xspack().args(["-q", "verify", out.as_str()]).output().unwrap();
    assert_eq!(code(&o), 0, "{out}: {}", stderr(&o));
}

/// Starts `args`, waits until its temporary output appears in `parent`, sends `signal`, and
/// checks the process died of it and left nothing behind.
fn interrupt(args: &[String], parent: &Utf8Path, signal: &str, signo: i32) {
    let before = crate::common::listing(parent);
    let mut child =
        xspack().args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    loop {
        let now = crate::common::listing(parent);
        if now.iter().any(|n| n.ends_with(".xspack-tmp")) {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "finished before it could be interrupted");
        assert!(start.elapsed() < Duration::from_mins(2), "no temporary output appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    // Let it get well into the work.
    std::thread::sleep(Duration::from_millis(150));
    assert!(child.try_wait().unwrap().is_none(), "finished before it could be interrupted");
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        out.status.signal() == Some(signo) || out.status.code() == Some(128 + signo),
        "dies of SIG{signal}: {:?} {err}",
        out.status
    );
    assert_eq!(crate::common::listing(parent), before, "nothing left after SIG{signal}");
}

#[test]
fn image_build_interrupted_by_sigint_and_sigterm_then_rerun() {
    let (_t, root) = tempdir();
    let source = big_image(&root);
    let out = root.join("out");
    interrupt(&image_args(&source, &out), &root, "INT", 2);
    interrupt(&image_args(&source, &out), &root, "TERM", 15);
    let o = xspack().args(image_args(&source, &out)).output().unwrap();
    assert_eq!(code(&o), 0, "rerun: {}", stderr(&o));
    verifies(&out);
}

#[test]
fn pack_build_interrupted_by_sigint_and_sigterm_then_rerun() {
    let (_t, root) = tempdir();
    let (secret, _) = keygen(&root);
    let pack = big_pack(&root);
    let out = root.join("out");
    interrupt(&pack_args(&pack, &secret, &out), &root, "INT", 2);
    interrupt(&pack_args(&pack, &secret, &out), &root, "TERM", 15);
    // The staging area inside the pack directory is clean too.
    assert_eq!(crate::common::listing(&pack), ["files", "pack.toml"]);
    let o = xspack().args(pack_args(&pack, &secret, &out)).output().unwrap();
    assert_eq!(code(&o), 0, "rerun: {}", stderr(&o));
    verifies(&out);
}

/// SIGKILL cannot be caught: the killed build leaves its temporary output (in the parent
/// directories it made). The next build of the same output finds the temporary unlocked and
/// removes it, and leaves nothing else behind.
#[test]
fn image_build_killed_by_sigkill_then_rerun_sweeps_its_temporary() {
    let (_t, root) = tempdir();
    let source = big_image(&root);
    let parent = root.join("made/by/build");
    let out = parent.join("out");
    let mut child = xspack()
        .args(image_args(&source, &out))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !(parent.is_dir()
        && crate::common::listing(&parent).iter().any(|n| n.ends_with(".xspack-tmp")))
    {
        assert!(child.try_wait().unwrap().is_none(), "finished before it could be killed");
        assert!(start.elapsed() < Duration::from_mins(2), "no temporary output appeared");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    let left = crate::common::listing(&parent);
    assert!(left.len() == 1 && left[0].starts_with(".out."), "SIGKILL leaves it: {left:?}");
    let o = xspack().args(image_args(&source, &out)).output().unwrap();
    assert_eq!(code(&o), 0, "rerun: {}", stderr(&o));
    assert_eq!(crate::common::listing(&parent), ["out"], "the stale temporary is gone");
    verifies(&out);
}

/// A file size limit (`prlimit --fsize`) makes writes fail with EFBIG as on a full disk.
#[test]
fn full_disk_is_a_clear_error_and_leaves_nothing() {
    let (_t, root) = tempdir();
    let source = big_image(&root);
    let out = root.join("out");
    let before = crate::common::listing(&root);
    let mut cmd = Command::new("prlimit");
    cmd.arg("--fsize=8388608").arg(env!("CARGO_BIN_EXE_xspack")).args(image_args(&source, &out));
    cmd.env_remove("SOURCE_DATE_EPOCH");
    let o = cmd.output().expect("prlimit runs (util-linux)");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "exits 1, not killed by SIGXFSZ: {:?} {err}", o.status);
    assert_eq!(error_lines(&err), 1, "{err}");
    assert!(err.starts_with("xspack: error: ") && err.contains("File too large"), "{err}");
    assert_eq!(crate::common::listing(&root), before, "nothing left behind");
    let o = xspack().args(image_args(&source, &out)).output().unwrap();
    assert_eq!(code(&o), 0, "rerun: {}", stderr(&o));
    verifies(&out);

    // A pack build too: writing its RPM fails, which is a failure (1), not bad input (3).
    let pack = big_pack(&root.join("p"));
    let out = root.join("p/out");
    let mut cmd = Command::new("prlimit");
    cmd.arg("--fsize=8388608").arg(env!("CARGO_BIN_EXE_xspack"));
    cmd.args(["-q", "pack", "build", pack.as_str(), "--unsigned", "-o", out.as_str()]);
    let o = cmd.env_remove("SOURCE_DATE_EPOCH").output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{:?} {err}", o.status);
    assert_eq!(error_lines(&err), 1, "{err}");
    assert!(err.contains("File too large"), "{err}");
    assert_eq!(crate::common::listing(&root.join("p")), ["pack"], "nothing left behind");
    let o = xspack()
        .args(["-q", "pack", "build", pack.as_str(), "--unsigned", "-o", out.as_str()])
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "rerun: {}", stderr(&o));
    verifies(&out);
}

/// Runs `args` as an unprivileged user when we are root (root ignores directory modes).
fn as_user(args: &[String]) -> Command {
    let root_user = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    if root_user {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            env!("CARGO_BIN_EXE_xspack"),
        ]);
        cmd.args(args).env_remove("SOURCE_DATE_EPOCH");
        cmd
    } else {
        let mut cmd = xspack();
        cmd.args(args);
        cmd
    }
}

#[test]
fn read_only_output_directory_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let (_t, root) = tempdir();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let entries = vec![Entry::dir("etc"), Entry::file("etc/hostname", "ro\n")];
    let layout = root.join("layout");
    ImageSpec::new(vec![(layer_tar(&entries), Compression::Gzip)])
        .write_oci_dir(&layout, "latest")
        .unwrap();
    for p in [&layout, &layout.join("blobs"), &layout.join("blobs/sha256")] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let ro = root.join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    let out = ro.join("out");
    let o = as_user(&image_args(&format!("oci:{layout}"), &out)).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(error_lines(&err), 1, "{err}");
    assert!(err.contains(ro.as_str()) && err.contains("Permission denied"), "{err}");
    assert!(crate::common::listing(&ro).is_empty());
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = xspack().args(image_args(&format!("oci:{layout}"), &out)).output().unwrap();
    assert_eq!(code(&o), 0, "rerun: {}", stderr(&o));
    verifies(&out);
}

#[test]
fn two_builds_racing_for_one_output_directory() {
    let (_t, root) = tempdir();
    let entries =
        vec![Entry::dir("data"), Entry::file("data/a", xspack_testkit::noise(3, 2 << 20))];
    let layout = root.join("layout");
    ImageSpec::new(vec![(layer_tar(&entries), Compression::Gzip)])
        .write_oci_dir(&layout, "latest")
        .unwrap();
    let source = format!("oci:{layout}");
    for round in 0..3 {
        let out = root.join(format!("out{round}"));
        let children: Vec<_> = (0..2)
            .map(|_| {
                xspack()
                    .args(image_args(&source, &out))
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let results: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let codes: Vec<i32> = results.iter().map(code).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1], "one wins, one fails: {codes:?}");
        let loser = results.iter().find(|r| code(r) == 1).unwrap();
        let err = stderr(loser);
        assert_eq!(error_lines(&err), 1, "{err}");
        assert!(err.contains(out.as_str()) && err.contains("already exists"), "{err}");
        verifies(&out);
        assert!(
            !crate::common::listing(&root).iter().any(|n| n.ends_with(".xspack-tmp")),
            "{:?}",
            crate::common::listing(&root)
        );
    }
}
