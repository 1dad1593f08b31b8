//! The real-world fixture: a `debootstrap --variant=minbase bookworm` root, packed by umoci
//! (OCI layout) and skopeo (docker-archive), made once per machine by
//! `scripts/fixtures/bookworm`. Its ext4 must pass e2fsck and hold every file of the root:
//! type, mode, owner, size, content, link target, device numbers and link count.

use std::process::Command;

use camino::Utf8PathBuf;
use xspack_testkit::ext4check::{e2fsck, read_tree, scan_dir};

use crate::common::{code, run, stderr, tempdir};

/// Unmounts when dropped, so a failed assertion leaves no mount behind.
struct Mount(Utf8PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The running kernel mounts the image read-only, and `diff -r` finds the same tree as the
/// root it came from (devices, which diff cannot compare, were checked above).
fn kernel_reads_the_same_tree(
    image: &camino::Utf8Path,
    rootfs: &camino::Utf8Path,
    scratch: &camino::Utf8Path,
) {
    let mnt = scratch.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let out = Command::new("mount")
        .args(["-o", "loop,ro"])
        .arg(image)
        .arg(&mnt)
        .output()
        .expect("mount runs");
    assert!(
        out.status.success(),
        "mount -o loop,ro (needs root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _mounted = Mount(mnt.clone());
    let out = Command::new("diff")
        .args(["-r", "--no-dereference"])
        .arg(&mnt)
        .arg(rootfs)
        .output()
        .expect("diff runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let unexplained: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains(" is a character special file while file "))
        .filter(|l| *l != format!("Only in {mnt}: lost+found"))
        .collect();
    assert!(unexplained.is_empty(), "the mounted image differs: {unexplained:#?}");
}

/// Path of the cached fixture, made on first use.
pub fn fixture() -> Utf8PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/fixtures/bookworm");
    let out = Command::new(script).output().expect("scripts/fixtures/bookworm runs");
    assert!(
        out.status.success(),
        "making the bookworm fixture failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Utf8PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn bookworm_minbase_matches_its_root_file_for_file() {
    let fixture = fixture();
    let (_t, dir) = tempdir();
    let dist = dir.join("oci");
    let source = format!("oci:{fixture}/oci:bookworm");
    let out = run(&[
        "-q",
        "image",
        "build",
        &source,
        "--flavor",
        "none",
        "--name",
        "bookworm",
        "-o",
        dist.as_str(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let image = dist.join("bookworm.raw");
    e2fsck(&image);
    let ours = read_tree(&image);
    let theirs = scan_dir(&fixture.join("rootfs"));
    let mut differences = Vec::new();
    for (path, want) in &theirs {
        match ours.get(path) {
            Some(got) if got == want => {}
            Some(got) => differences
                .push(format!("{}: image {got:?}, root {want:?}", String::from_utf8_lossy(path))),
            None => differences
                .push(format!("{}: missing from the image", String::from_utf8_lossy(path))),
        }
    }
    for path in ours.keys().filter(|p| !theirs.contains_key(*p) && p.as_slice() != b"lost+found") {
        differences.push(format!("{}: only in the image", String::from_utf8_lossy(path)));
    }
    assert!(
        differences.is_empty(),
        "{} differences, first: {:#?}",
        differences.len(),
        &differences[..differences.len().min(10)]
    );
    assert!(theirs.len() > 6000, "the fixture has {} entries", theirs.len());
    kernel_reads_the_same_tree(&image, &fixture.join("rootfs"), &dir);

    // The docker-archive packing of the same root gives a clean filesystem as well.
    let docker = dir.join("docker");
    let out = run(&[
        "-q",
        "image",
        "build",
        &format!("docker-archive:{fixture}/docker.tar"),
        "--flavor",
        "none",
        "-o",
        docker.as_str(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    e2fsck(&docker.join("docker.raw"));
}
