//! `xspack image build`: end to end from generated images, and the bad inputs of issue 4 —
//! each a one-line error naming the input, a non-zero exit, and no output directory.

use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_testkit::{Compression, DockerLayout, Entry, EntryKind, ImageSpec, layer_tar};

use crate::common::{code, run, stderr, stdout, tempdir, xspack};

fn small_image() -> ImageSpec {
    let base = vec![
        Entry::dir("etc"),
        Entry::file("etc/os-release", "ID=debian\nVERSION_ID=12\n"),
        Entry::dir("usr/bin"),
        Entry::file("usr/bin/hello", "#!/bin/sh\necho hello\n").mode(0o755),
        Entry::new("usr/bin/hi", EntryKind::Hardlink(b"usr/bin/hello".to_vec())),
    ];
    let top = vec![Entry::file("etc/motd", "welcome\n"), Entry::file("usr/bin/.wh.hi", "")];
    ImageSpec::new(vec![
        (layer_tar(&base), Compression::Gzip),
        (layer_tar(&top), Compression::Zstd),
    ])
}

fn e2fsck(image: &Utf8Path) {
    let out = Command::new("e2fsck").arg("-fn").arg(image).output().expect("e2fsck runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn builds_a_verified_ext4_image_with_manifest() {
    let (_t, root) = tempdir();
    small_image().write_oci_dir(&root.join("layout"), "latest").unwrap();
    let dist = root.join("out");
    let out = run(&[
        "image",
        "build",
        &format!("oci:{root}/layout"),
        "--flavor",
        "none",
        "--name",
        "demo",
        "-o",
        dist.as_str(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(crate::common::listing(&dist), ["SHA256SUMS", "demo.raw", "manifest.json"]);
    assert!(stdout(&out).starts_with(&format!("{dist}/demo.raw: ")), "{}", stdout(&out));
    e2fsck(&dist.join("demo.raw"));
    let check = run(&["verify", dist.as_str()]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    let sums =
        Command::new("sha256sum").args(["-c", "SHA256SUMS"]).current_dir(&dist).status().unwrap();
    assert!(sums.success());
    // The manifest records the image and each layer as inputs.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dist.join("manifest.json")).unwrap()).unwrap();
    let kinds: Vec<&str> = manifest["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["oci", "layer", "layer"]);
    assert!(manifest["inputs"][0]["digest"].as_str().unwrap().starts_with("sha256:"));
}

#[test]
fn same_input_same_bytes_and_no_clobber() {
    let (_t, root) = tempdir();
    small_image()
        .write_docker_archive(&root.join("img.tar"), "demo:1", DockerLayout::ClassicSymlinks)
        .unwrap();
    let mut digests = Vec::new();
    for dir in ["a", "b"] {
        let out = xspack()
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["-q", "image", "build", &format!("{root}/img.tar"), "--flavor", "none", "-o"])
            .arg(root.join(dir))
            .output()
            .unwrap();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert!(out.stdout.is_empty() && out.stderr.is_empty());
        digests.push(std::fs::read(root.join(dir).join("SHA256SUMS")).unwrap());
    }
    assert_eq!(digests[0], digests[1]);
    let again = run(&[
        "image",
        "build",
        &format!("{root}/img.tar"),
        "--flavor",
        "none",
        "-o",
        root.join("a").as_str(),
    ]);
    assert_eq!(code(&again), 1);
    assert!(
        stderr(&again).contains("already exists\nhint: add --force to replace it\n"),
        "{}",
        stderr(&again)
    );
    let forced = run(&[
        "-q",
        "image",
        "build",
        &format!("{root}/img.tar"),
        "--flavor",
        "none",
        "--force",
        "-o",
        root.join("a").as_str(),
    ]);
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
}

#[test]
fn json_result_lists_artifacts_and_inputs() {
    let (_t, root) = tempdir();
    small_image().write_oci_archive(&root.join("img.tar"), "v1").unwrap();
    let out = run(&[
        "--json",
        "image",
        "build",
        &format!("oci-archive:{root}/img.tar:v1"),
        "--flavor",
        "none",
        "-o",
        root.join("o").as_str(),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["command"], "image build");
    assert_eq!(v["artifacts"][0]["path"], "img.raw");
    assert_eq!(v["inputs"].as_array().unwrap().len(), 3);
}

/// Writes `spec` as an OCI layout, applies `damage` to the layout directory, and builds it.
fn build_broken(
    name: &str,
    damage: impl FnOnce(&Utf8Path),
) -> (String, i32, Utf8PathBuf, tempfile::TempDir) {
    let (t, root) = tempdir();
    let layout = root.join("layout");
    small_image().write_oci_dir(&layout, "latest").unwrap();
    damage(&layout);
    let dist = root.join("dist");
    let out = run(&[
        "-q",
        "image",
        "build",
        &format!("oci:{layout}"),
        "--flavor",
        "none",
        "--name",
        name,
        "-o",
        dist.as_str(),
    ]);
    (stderr(&out), code(&out), root, t)
}

/// Blobs of the layout: (path, bytes) of every file under blobs/sha256.
fn blobs(layout: &Utf8Path) -> Vec<Utf8PathBuf> {
    let dir = layout.join("blobs/sha256");
    let mut v: Vec<Utf8PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| dir.join(e.unwrap().file_name().to_str().unwrap()))
        .collect();
    v.sort();
    v
}

fn find_blob(layout: &Utf8Path, pred: impl Fn(&[u8]) -> bool) -> Utf8PathBuf {
    blobs(layout).into_iter().find(|p| pred(&std::fs::read(p).unwrap())).expect("blob found")
}

fn assert_clean_failure(stderr: &str, code: i32, root: &Utf8Path, want: &str) {
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("xspack: error: oci:"), "{stderr}");
    assert!(stderr.contains(want), "want {want:?} in {stderr}");
    // No output directory and no temporary leftovers beside it.
    let left: Vec<String> =
        crate::common::listing(root).into_iter().filter(|n| n != "layout").collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn truncated_gzip_layer() {
    let (err, code, root, _t) = build_broken("x", |layout| {
        let blob = find_blob(layout, |b| b.starts_with(&[0x1f, 0x8b]));
        let data = std::fs::read(&blob).unwrap();
        std::fs::write(&blob, &data[..data.len() / 2]).unwrap();
    });
    // The manifest records the blob's size, so truncation is caught before decompression.
    assert_clean_failure(&err, code, &root, "layer 1: size mismatch: expected");
}

#[test]
fn wrong_diff_id() {
    let (err, code, root, _t) = build_broken("x", |layout| {
        // Point the config at another diff_id, and fix up the digests so only diff_id is wrong.
        let cfg = find_blob(layout, is_config);
        let text = String::from_utf8(std::fs::read(&cfg).unwrap()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let first = v["rootfs"]["diff_ids"][0].as_str().unwrap().to_owned();
        let forged = text.replace(
            &first,
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        );
        rewrite_blob(layout, &cfg, forged.as_bytes());
    });
    assert_clean_failure(&err, code, &root, "layer 1 (sha256:");
    assert!(err.contains("diff_id mismatch: expected sha256:0000"), "{err}");
}

/// Replaces blob `old` with `data`, updating the references to it (manifest, then index.json)
/// so that only the intended damage remains.
fn rewrite_blob(layout: &Utf8Path, old: &Utf8Path, data: &[u8]) {
    let old_digest = format!("sha256:{}", old.file_name().unwrap());
    let new_digest = format!("sha256:{}", xspack_io::Sha256Digest::of_bytes(data));
    std::fs::remove_file(old).unwrap();
    std::fs::write(layout.join("blobs/sha256").join(&new_digest[7..]), data).unwrap();
    let manifest = find_blob(layout, is_manifest);
    let mut mv: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(mv["config"]["digest"], old_digest.as_str());
    mv["config"]["digest"] = new_digest.into();
    mv["config"]["size"] = data.len().into();
    let mbytes = serde_json::to_vec(&mv).unwrap();
    std::fs::remove_file(&manifest).unwrap();
    let mhex = xspack_io::Sha256Digest::of_bytes(&mbytes).to_string();
    std::fs::write(layout.join("blobs/sha256").join(&mhex), &mbytes).unwrap();
    let mut iv: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    iv["manifests"][0]["digest"] = format!("sha256:{mhex}").into();
    iv["manifests"][0]["size"] = mbytes.len().into();
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&iv).unwrap()).unwrap();
}

fn is_manifest(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| v.get("layers").is_some())
}

fn is_config(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| v.get("rootfs").is_some())
}

#[test]
fn missing_blob() {
    let (err, code, root, _t) = build_broken("x", |layout| {
        let blob = find_blob(layout, |b| b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
        std::fs::remove_file(blob).unwrap();
    });
    assert_clean_failure(&err, code, &root, "is missing");
}

#[test]
fn malformed_index_and_manifest() {
    let (err, code, root, _t) = build_broken("x", |layout| {
        std::fs::write(layout.join("index.json"), "{\"schemaVersion\": 2, \"manifests\": [")
            .unwrap();
    });
    assert_clean_failure(&err, code, &root, "index.json: EOF while parsing");
    let (err, code, root, _t) = build_broken("x", |layout| {
        // A manifest that is not JSON, under its own correct digest and size.
        let bad = br#"{"schemaVersion": 2, "config": "#;
        let hex = xspack_io::Sha256Digest::of_bytes(bad).to_string();
        std::fs::write(layout.join("blobs/sha256").join(&hex), bad).unwrap();
        let mut iv: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        iv["manifests"][0]["digest"] = format!("sha256:{hex}").into();
        iv["manifests"][0]["size"] = bad.len().into();
        std::fs::write(layout.join("index.json"), serde_json::to_vec(&iv).unwrap()).unwrap();
    });
    assert_clean_failure(&err, code, &root, "EOF while parsing a value");
    assert!(err.contains(": manifest sha256:"), "{err}");
}

fn image_with(entries: &[Entry]) -> ImageSpec {
    ImageSpec::new(vec![(layer_tar(entries), Compression::Gzip)])
}

fn build_spec(spec: &ImageSpec) -> (String, i32, Utf8PathBuf, tempfile::TempDir) {
    let (t, root) = tempdir();
    spec.write_oci_dir(&root.join("layout"), "latest").unwrap();
    let out = run(&[
        "-q",
        "image",
        "build",
        &format!("oci:{root}/layout"),
        "--flavor",
        "none",
        "-o",
        root.join("dist").as_str(),
    ]);
    (stderr(&out), code(&out), root, t)
}

#[test]
fn traversal_entries() {
    for (path, want) in [
        ("../../etc/passwd", "entry \"../../etc/passwd\": path contains '..'"),
        ("/../etc/passwd", "entry \"/../etc/passwd\": path contains '..'"),
        ("usr/../../x", "entry \"usr/../../x\": path contains '..'"),
    ] {
        let (err, code, root, _t) = build_spec(&image_with(&[Entry::file(path, "x")]));
        assert_clean_failure(&err, code, &root, want);
        assert!(err.contains("layer 1 (sha256:"), "{err}");
    }
}

#[test]
fn hardlink_to_missing_target() {
    let spec = image_with(&[Entry::new("a", EntryKind::Hardlink(b"nowhere".to_vec()))]);
    let (err, code, root, _t) = build_spec(&spec);
    assert_clean_failure(&err, code, &root, "hard link target \"nowhere\" does not exist");
}

#[test]
fn too_small_size_states_the_need() {
    let (_t, root) = tempdir();
    small_image().write_oci_dir(&root.join("layout"), "latest").unwrap();
    let out = run(&[
        "image",
        "build",
        &format!("oci:{root}/layout"),
        "--flavor",
        "none",
        "--size",
        "1M",
        "-o",
        root.join("d").as_str(),
    ]);
    assert_eq!(code(&out), 1);
    let err = stderr(&out);
    assert!(
        err.contains("filesystem size 1048576 bytes is too small: the content needs at least"),
        "{err}"
    );
    assert_eq!(crate::common::listing(&root), ["layout"]);
}

#[test]
fn usage_errors() {
    for args in [
        &["image", "build", "x.tar"][..],
        &["image", "build", "a", "b", "--flavor", "none"][..],
        &["image", "build", "a", "--flavor", "coreos"][..],
        &["image", "build", "a", "--flavor", "none", "--size", "10"][..],
        &["image", "build", "a", "--flavor", "none", "--name", "../x"][..],
    ] {
        let out = run(args);
        assert_eq!(code(&out), 2, "{args:?}: {}", stderr(&out));
    }
    let out = run(&["image", "build", "docker://mysql", "--flavor", "none"]);
    assert_eq!(code(&out), 3);
    assert_eq!(
        stderr(&out),
        "xspack: error: docker://mysql: unknown transport \"docker\" (use docker-archive:, oci: or oci-archive:)\n"
    );
}
