//! Bad image sources for `xspack image build`: broken tar, gzip and zstd streams, malformed
//! OCI and docker JSON, digest, size and `diff_id` mismatches, traversal, escaping whiteouts,
//! bad hard links, duplicate entries, an empty layer and huge declared sizes.

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Value, json};
use xspack_io::Sha256Digest;
use xspack_testkit::{Compression, Entry, EntryKind, layer_tar, plain_tar};

use super::{Case, case_dir, run_group};
use crate::common::tempdir;

const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", Sha256Digest::of_bytes(bytes))
}

/// An OCI layout held as JSON values and blobs. [`Layout::write`] recomputes the config and
/// manifest descriptors, so only the damage a case makes remains.
struct Layout {
    index: Value,
    manifest: Value,
    config: Value,
    blobs: Vec<Vec<u8>>,
}

impl Layout {
    /// One layer: `blob` stored as `media`, its tar content hashing to `diff_id`.
    fn raw(blob: Vec<u8>, media: &str, diff_id: &str) -> Self {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json"},
            "layers": [{"mediaType": media, "digest": sha(&blob), "size": blob.len()}],
        });
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }],
        });
        Layout { index, manifest, config, blobs: vec![blob] }
    }

    /// A layer of `tar` bytes compressed as `c`, with a correct digest and `diff_id`.
    fn of_tar(tar: &[u8], c: Compression) -> Self {
        let media = match c {
            Compression::None => TAR,
            Compression::Gzip | Compression::GzipDefault => GZIP,
            Compression::Zstd => ZSTD,
        };
        Layout::raw(c.apply(tar), media, &sha(tar))
    }

    /// A layer of `entries`, gzipped.
    fn of_entries(entries: &[Entry]) -> Self {
        Layout::of_tar(&layer_tar(entries), Compression::Gzip)
    }

    fn write(&self, dir: &Utf8Path) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let put = |bytes: &[u8]| {
            std::fs::write(blobs.join(&sha(bytes)[7..]), bytes).unwrap();
        };
        for b in &self.blobs {
            put(b);
        }
        let config = serde_json::to_vec(&self.config).unwrap();
        put(&config);
        let mut manifest = self.manifest.clone();
        if manifest["config"].is_object() {
            manifest["config"]["digest"] = sha(&config).into();
            manifest["config"]["size"] = config.len().into();
        }
        let manifest = serde_json::to_vec(&manifest).unwrap();
        put(&manifest);
        let mut index = self.index.clone();
        if index["manifests"][0].is_object() {
            index["manifests"][0]["digest"] = sha(&manifest).into();
            index["manifests"][0]["size"] = manifest.len().into();
        }
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    }
}

fn good_entries() -> Vec<Entry> {
    vec![Entry::dir("etc"), Entry::file("etc/hostname", "corpus\n")]
}

fn good_tar() -> Vec<u8> {
    layer_tar(&good_entries())
}

/// A single-layer valid image.
fn good() -> Layout {
    Layout::of_entries(&good_entries())
}

/// `image build` of `source` into `dir/out`.
fn build_args(source: &str, dir: &Utf8Path) -> Vec<String> {
    let out = dir.join("out");
    ["image", "build", source, "--flavor", "none", "-o", out.as_str()]
        .iter()
        .map(|&s| s.to_owned())
        .collect()
}

struct Cases {
    root: Utf8PathBuf,
    list: Vec<(Utf8PathBuf, Case)>,
}

impl Cases {
    /// An OCI layout case: `layout` is written to `<case>/layout`, then `damage` applied to it.
    fn oci(
        &mut self,
        name: &str,
        layout: &Layout,
        damage: impl FnOnce(&Utf8Path),
        code: i32,
        problem: &str,
    ) {
        let dir = case_dir(&self.root, name);
        let path = dir.join("layout");
        layout.write(&path);
        damage(&path);
        let source = format!("oci:{path}");
        self.push(name, &dir, &source, code, &source, problem);
    }

    /// A case whose input is the file `file` holding `bytes`, given as `prefix` + path.
    fn file(&mut self, name: &str, prefix: &str, bytes: &[u8], code: i32, problem: &str) {
        let dir = case_dir(&self.root, name);
        let path = dir.join("image.tar");
        std::fs::write(&path, bytes).unwrap();
        let source = format!("{prefix}{path}");
        self.push(name, &dir, &source, code, path.as_str(), problem);
    }

    fn push(
        &mut self,
        name: &str,
        dir: &Utf8Path,
        source: &str,
        code: i32,
        input: &str,
        problem: &str,
    ) {
        let mut case = Case::new(name, &[], code, input, problem);
        case.args = build_args(source, dir);
        self.list.push((dir.to_owned(), case));
    }
}

fn nothing(_: &Utf8Path) {}

/// The blob file of the first layer.
fn layer_blob(layout: &Utf8Path, l: &Layout) -> Utf8PathBuf {
    layout.join("blobs/sha256").join(&sha(&l.blobs[0])[7..])
}

fn one_layer(entries: &[Entry]) -> Layout {
    Layout::of_entries(entries)
}

/// A tar whose first header says `size` bytes follow, but only a few do.
fn tar_declaring(size: u64) -> Vec<u8> {
    let mut tar = layer_tar(&[Entry::file("big", "tiny")]);
    let text = format!("{size:011o}\0");
    tar[124..136].copy_from_slice(text.as_bytes());
    tar[148..156].fill(b' ');
    let sum: u32 = tar[..512].iter().map(|&b| u32::from(b)).sum();
    tar[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    tar
}

#[allow(clippy::too_many_lines, clippy::many_single_char_names)]
fn image_cases(root: &Utf8Path) -> Vec<(Utf8PathBuf, Case)> {
    let mut c = Cases { root: root.to_owned(), list: Vec::new() };
    let tar = good_tar();
    let gz = Compression::Gzip.apply(&tar);
    let zst = Compression::Zstd.apply(&tar);

    // Compressed streams, stored under their own correct digest and size.
    let l = Layout::raw(gz[..gz.len() / 2].to_vec(), GZIP, &sha(&tar));
    c.oci("gzip-truncated", &l, nothing, 3, "layer 1");
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    c.oci("gzip-bad-crc", &Layout::raw(bad_crc, GZIP, &sha(&tar)), nothing, 3, "layer 1");
    let mut junk = vec![0x1f, 0x8b, 0x08, 0x00];
    junk.extend(xspack_testkit::noise(1, 4000));
    c.oci("gzip-garbage", &Layout::raw(junk, GZIP, &sha(&tar)), nothing, 3, "layer 1");
    c.oci(
        "gzip-header-only",
        &Layout::raw(gz[..10].to_vec(), GZIP, &sha(&tar)),
        nothing,
        3,
        "layer 1",
    );
    c.oci(
        "zstd-truncated",
        &Layout::raw(zst[..zst.len() / 2].to_vec(), ZSTD, &sha(&tar)),
        nothing,
        3,
        "layer 1",
    );
    let mut flipped = zst.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    flipped[mid + 1] ^= 0xaa;
    c.oci("zstd-corrupt", &Layout::raw(flipped, ZSTD, &sha(&tar)), nothing, 3, "layer 1");
    let mut zjunk = vec![0x28, 0xb5, 0x2f, 0xfd];
    zjunk.extend(xspack_testkit::noise(2, 4000));
    c.oci("zstd-garbage", &Layout::raw(zjunk, ZSTD, &sha(&tar)), nothing, 3, "layer 1");

    // Tar streams.
    let cut = tar[..700].to_vec();
    c.oci("tar-truncated", &Layout::raw(cut.clone(), TAR, &sha(&cut)), nothing, 3, "layer 1");
    let mut badsum = tar.clone();
    badsum[148] = b'7';
    c.oci(
        "tar-bad-header-checksum",
        &Layout::raw(badsum.clone(), TAR, &sha(&badsum)),
        nothing,
        3,
        "layer 1",
    );
    let noise = xspack_testkit::noise(3, 2048);
    c.oci("tar-garbage", &Layout::raw(noise.clone(), TAR, &sha(&noise)), nothing, 3, "layer 1");
    c.oci(
        "layer-zero-bytes-gzip",
        &Layout::raw(Vec::new(), GZIP, &sha(b"")),
        nothing,
        3,
        "layer 1",
    );
    c.oci(
        "layer-zero-bytes-zstd",
        &Layout::raw(Vec::new(), ZSTD, &sha(b"")),
        nothing,
        3,
        "layer 1",
    );
    let huge = tar_declaring(0o777_7777_7777);
    c.oci(
        "tar-entry-huge-declared-size",
        &Layout::raw(huge.clone(), TAR, &sha(&huge)),
        nothing,
        3,
        "layer 1",
    );

    // Digests, sizes and diff_ids.
    let l = good();
    c.oci(
        "layer-digest-mismatch",
        &l,
        |p| {
            let blob = layer_blob(p, &good());
            let mut b = std::fs::read(&blob).unwrap();
            b[20] ^= 1;
            std::fs::write(&blob, b).unwrap();
        },
        3,
        "digest mismatch",
    );
    c.oci(
        "layer-size-mismatch",
        &l,
        |p| {
            let blob = layer_blob(p, &good());
            let mut b = std::fs::read(&blob).unwrap();
            b.extend_from_slice(b"extra");
            std::fs::write(&blob, b).unwrap();
        },
        3,
        "size mismatch",
    );
    let mut l = good();
    l.config["rootfs"]["diff_ids"][0] = sha(b"something else").into();
    c.oci("diff-id-mismatch", &l, nothing, 3, "diff_id mismatch");
    let mut l = good();
    l.config["rootfs"]["diff_ids"] = json!([]);
    c.oci("diff-ids-fewer-than-layers", &l, nothing, 3, "diff_ids");
    c.oci(
        "layer-blob-missing",
        &good(),
        |p| {
            std::fs::remove_file(layer_blob(p, &good())).unwrap();
        },
        3,
        "is missing",
    );
    let mut l = good();
    l.manifest["layers"][0]["size"] = json!(1u64 << 62);
    c.oci("layer-huge-declared-size", &l, nothing, 3, "size");
    // Layout::write recomputes the config descriptor: break it after writing instead.
    c.oci(
        "config-huge-declared-size",
        &good(),
        |p| {
            set_manifest_field(p, |m| m["config"]["size"] = json!(1u64 << 62));
        },
        3,
        "size",
    );
    let mut l = good();
    l.manifest["layers"][0]["digest"] = "sha256:xyz".into();
    c.oci("layer-digest-malformed", &l, nothing, 3, "sha256:xyz");
    let mut l = good();
    l.manifest["layers"][0]["digest"] = "md5:d41d8cd98f00b204e9800998ecf8427e".into();
    c.oci("layer-digest-unknown-algorithm", &l, nothing, 3, "md5:");

    // OCI JSON documents.
    c.oci(
        "index-not-json",
        &good(),
        |p| {
            std::fs::write(p.join("index.json"), "{\"schemaVersion\": 2, \"manifests\": [").unwrap()
        },
        3,
        "index.json",
    );
    c.oci(
        "index-missing",
        &good(),
        |p| std::fs::remove_file(p.join("index.json")).unwrap(),
        3,
        "index.json",
    );
    let mut l = good();
    l.index["schemaVersion"] = 3.into();
    c.oci("index-schema-version-3", &l, nothing, 3, "schemaVersion 3");
    let mut l = good();
    l.index["manifests"] = json!([]);
    c.oci("index-no-manifests", &l, nothing, 3, "index.json");
    let mut l = good();
    l.index["manifests"] = json!("a string");
    c.oci("index-manifests-wrong-type", &l, nothing, 3, "index.json");
    c.oci(
        "oci-layout-missing",
        &good(),
        |p| std::fs::remove_file(p.join("oci-layout")).unwrap(),
        3,
        "oci-layout",
    );
    c.oci(
        "oci-layout-version-2",
        &good(),
        |p| std::fs::write(p.join("oci-layout"), r#"{"imageLayoutVersion":"2.0.0"}"#).unwrap(),
        3,
        "imageLayoutVersion",
    );
    let mut l = good();
    l.manifest = json!({"schemaVersion": 2, "config": {}});
    c.oci("manifest-without-layers", &l, nothing, 3, "manifest sha256:");
    let mut l = good();
    l.manifest["mediaType"] = "application/vnd.oci.image.index.v1+jsonx".into();
    c.oci("manifest-wrong-media-type", &l, nothing, 3, "mediaType");
    let mut l = good();
    l.manifest["schemaVersion"] = 1.into();
    c.oci("manifest-schema-version-1", &l, nothing, 3, "schemaVersion 1");
    let mut l = good();
    l.config = json!({"rootfs": {"type": "layers", "diff_ids": "no"}});
    c.oci("config-diff-ids-wrong-type", &l, nothing, 3, "config sha256:");
    let mut l = good();
    l.config["rootfs"]["type"] = "zfs".into();
    c.oci("config-rootfs-type", &l, nothing, 3, "config sha256:");
    let mut l = good();
    l.manifest["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+bzip2".into();
    c.oci("layer-unknown-media-type", &l, nothing, 3, "bzip2");
    c.oci(
        "config-not-json",
        &good(),
        |p| {
            let bad = b"{\"rootfs\": ";
            std::fs::write(p.join("blobs/sha256").join(&sha(bad)[7..]), bad).unwrap();
            set_manifest_field(p, |m| {
                m["config"]["digest"] = sha(bad).into();
                m["config"]["size"] = bad.len().into();
            });
        },
        3,
        "config sha256:",
    );
    let source_dir = case_dir(root, "reference-not-found");
    good().write(&source_dir.join("layout"));
    let source = format!("oci:{source_dir}/layout:nope");
    c.push("reference-not-found", &source_dir, &source, 3, "nope", "");

    // Tree content: traversal, whiteouts, links and duplicates.
    let cases_entries: Vec<(&str, Vec<Entry>, &str)> = vec![
        ("traversal-dotdot", vec![Entry::file("../../etc/passwd", "x")], "path contains '..'"),
        (
            "traversal-inner-dotdot",
            vec![Entry::dir("usr"), Entry::file("usr/../../x", "x")],
            "path contains '..'",
        ),
        (
            "traversal-hardlink-target",
            vec![Entry::new("a", EntryKind::Hardlink(b"../../etc/shadow".to_vec()))],
            "'..'",
        ),
        ("whiteout-escape-dotdot", vec![Entry::file("../.wh.etc", "")], "'..'"),
        ("whiteout-of-dotdot", vec![Entry::dir("a"), Entry::file("a/.wh...", "")], ".wh."),
        ("whiteout-of-dot", vec![Entry::dir("a"), Entry::file("a/.wh..", "")], ".wh."),
        (
            "hardlink-missing-target",
            vec![Entry::new("a", EntryKind::Hardlink(b"nowhere".to_vec()))],
            "does not exist",
        ),
        ("hardlink-to-itself", vec![Entry::new("a", EntryKind::Hardlink(b"a".to_vec()))], "\"a\""),
        (
            "hardlink-loop",
            vec![
                Entry::new("a", EntryKind::Hardlink(b"b".to_vec())),
                Entry::new("b", EntryKind::Hardlink(b"a".to_vec())),
            ],
            "does not exist",
        ),
        (
            "hardlink-to-directory",
            vec![Entry::dir("d"), Entry::new("l", EntryKind::Hardlink(b"d".to_vec()))],
            "\"d\"",
        ),
        ("file-under-a-file", vec![Entry::file("f", "x"), Entry::file("f/g", "y")], "\"f/g\""),
        (
            "symlink-loop-as-parent",
            vec![Entry::new("s", EntryKind::Symlink(b"s".to_vec())), Entry::file("s/x", "y")],
            "\"s/x\"",
        ),
        (
            "duplicate-dir-then-file",
            vec![Entry::dir("d"), Entry::file("d/x", "1"), Entry::file("d", "2")],
            "entry \"d\": duplicate entry",
        ),
        ("duplicate-file", vec![Entry::file("f", "1"), Entry::file("f", "2")], "duplicate entry"),
        (
            "duplicate-file-then-symlink",
            vec![Entry::file("f", "1"), Entry::new("f", EntryKind::Symlink(b"/etc".to_vec()))],
            "duplicate entry",
        ),
        ("whiteout-of-nothing", vec![Entry::dir("a"), Entry::file("a/.wh.", "")], ".wh."),
        (
            "device-under-a-symlink-loop",
            vec![
                Entry::new("a", EntryKind::Symlink(b"b".to_vec())),
                Entry::new("b", EntryKind::Symlink(b"a".to_vec())),
                Entry::new("a/null", EntryKind::Char(1, 3)),
            ],
            "too many levels",
        ),
        ("empty-path", vec![Entry::file("", "x")], "entry"),
    ];
    for (name, entries, problem) in cases_entries {
        c.oci(name, &one_layer(&entries), nothing, 3, problem);
    }

    // Archives: docker save and OCI archive files.
    let docker_ok = docker_files(&tar);
    let mut d = docker_ok.clone();
    d.retain(|(n, _)| n != "manifest.json");
    c.file("docker-manifest-missing", "docker-archive:", &plain_tar(&d, &[]), 3, "manifest.json");
    let mut d = docker_ok.clone();
    set(&mut d, "manifest.json", b"[{\"Config\": ".to_vec());
    c.file("docker-manifest-not-json", "docker-archive:", &plain_tar(&d, &[]), 3, "manifest.json");
    let mut d = docker_ok.clone();
    set(
        &mut d,
        "manifest.json",
        br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["missing/layer.tar"]}]"#.to_vec(),
    );
    c.file("docker-layer-missing", "docker-archive:", &plain_tar(&d, &[]), 3, "missing/layer.tar");
    let mut d = docker_ok.clone();
    set(
        &mut d,
        "manifest.json",
        br#"[{"Config":"nothere.json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]"#.to_vec(),
    );
    c.file("docker-config-missing", "docker-archive:", &plain_tar(&d, &[]), 3, "nothere.json");
    let whole = plain_tar(&docker_ok, &[]);
    c.file(
        "docker-archive-truncated",
        "docker-archive:",
        &whole[..whole.len() - 1500],
        3,
        "archive truncated: member manifest.json",
    );
    c.file("docker-archive-empty-file", "docker-archive:", b"", 3, "");
    c.file("docker-archive-garbage", "docker-archive:", &xspack_testkit::noise(4, 3000), 3, "");
    let mut d = docker_ok.clone();
    d.push(("l/layer.tar".to_owned(), b"second copy".to_vec()));
    c.file(
        "docker-duplicate-member",
        "docker-archive:",
        &plain_tar(&d, &[]),
        3,
        "member l/layer.tar appears more than once",
    );
    let oci_archive = {
        let (_t, tmp) = tempdir();
        good().write(&tmp);
        let mut files = Vec::new();
        for name in ["oci-layout", "index.json"] {
            files.push((name.to_owned(), std::fs::read(tmp.join(name)).unwrap()));
        }
        for e in std::fs::read_dir(tmp.join("blobs/sha256")).unwrap() {
            let e = e.unwrap();
            files.push((
                format!("blobs/sha256/{}", e.file_name().to_str().unwrap()),
                std::fs::read(e.path()).unwrap(),
            ));
        }
        plain_tar(&files, &[])
    };
    c.file("oci-archive-truncated", "oci-archive:", &oci_archive[..oci_archive.len() / 2], 3, "");
    c.file("oci-archive-not-a-tar", "oci-archive:", &xspack_testkit::noise(5, 1000), 3, "");
    c.file("detected-unknown-content", "", b"hello, not an image\n", 3, "");
    c.list
}

/// A classic `docker save` archive's files: config `c.json`, layer `l/layer.tar`, manifest.
fn docker_files(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha(tar)]},
    }))
    .unwrap();
    vec![
        ("c.json".to_owned(), config),
        ("l/layer.tar".to_owned(), tar.to_vec()),
        (
            "manifest.json".to_owned(),
            br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]"#.to_vec(),
        ),
    ]
}

fn set(files: &mut [(String, Vec<u8>)], name: &str, data: Vec<u8>) {
    files.iter_mut().find(|(n, _)| n == name).expect("member exists").1 = data;
}

/// Edits the manifest blob of the layout at `p` and re-points index.json at the result.
fn set_manifest_field(p: &Utf8Path, edit: impl FnOnce(&mut Value)) {
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(p.join("index.json")).unwrap()).unwrap();
    let old = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let old_path = p.join("blobs/sha256").join(&old[7..]);
    let mut m: Value = serde_json::from_slice(&std::fs::read(&old_path).unwrap()).unwrap();
    edit(&mut m);
    let bytes = serde_json::to_vec(&m).unwrap();
    std::fs::remove_file(old_path).unwrap();
    std::fs::write(p.join("blobs/sha256").join(&sha(&bytes)[7..]), &bytes).unwrap();
    index["manifests"][0]["digest"] = sha(&bytes).into();
    index["manifests"][0]["size"] = bytes.len().into();
    std::fs::write(p.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn corpus_image_sources() {
    let (_t, root) = tempdir();
    // The unbroken image builds, so every failure below comes from its one defect.
    let control = case_dir(&root, "control");
    good().write(&control.join("layout"));
    let out = crate::common::xspack()
        .arg("-q")
        .args(build_args(&format!("oci:{control}/layout"), &control))
        .output()
        .unwrap();
    assert_eq!(crate::common::code(&out), 0, "control image: {}", crate::common::stderr(&out));
    let cases = image_cases(&root);
    run_group("image", &cases);
}
