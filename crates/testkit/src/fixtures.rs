//! The cached fixtures shared by the tests and the benchmarks: the Debian roots that
//! `scripts/fixtures/*` make once per machine (they need root; the tests that use them fail,
//! never skip, when the scripts cannot run), and the synthetic image the benchmarks time,
//! generated here from a fixed seed so it is the same on every machine.

use std::process::Command;
use std::sync::OnceLock;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Value, json};
use xspack_io::Sha256Digest;

use crate::{Compression, Entry, ImageSpec, Rng, layer_tar};

/// The repository's root (where `scripts/` and `target/` are).
pub fn repo_root() -> Utf8PathBuf {
    Utf8PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Where the cached fixtures live: `$XSPACK_FIXTURES`, or `target/fixtures` of the repository
/// (shared by every `CARGO_TARGET_DIR` a build uses).
pub fn fixtures_dir() -> Utf8PathBuf {
    std::env::var("XSPACK_FIXTURES")
        .map_or_else(|_| repo_root().join("target/fixtures"), Utf8PathBuf::from)
}

/// Runs `scripts/fixtures/NAME`, which makes the fixture once and prints its directory.
///
/// # Panics
/// When the script fails: a test that needs the fixture cannot go on without it.
pub fn script(name: &str) -> Utf8PathBuf {
    let script = repo_root().join("scripts/fixtures").join(name);
    let out = Command::new(&script).output().unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed (it needs root once per machine):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Utf8PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The bookworm minbase OCI layout of `scripts/fixtures/bookworm`, as a source string.
pub fn bookworm_image() -> String {
    format!("oci:{}/oci", script("bookworm"))
}

/// The directory of `scripts/fixtures/bookworm-guest` (`rootfs.tar`), made once per process.
pub fn bookworm_guest() -> &'static Utf8Path {
    static DIR: OnceLock<Utf8PathBuf> = OnceLock::new();
    DIR.get_or_init(|| script("bookworm-guest"))
}

/// The sha256 of the guest fixture's layer tar, hashed once per process.
fn guest_rootfs_digest(tar: &Utf8Path) -> &'static str {
    static DIGEST: OnceLock<String> = OnceLock::new();
    DIGEST.get_or_init(|| {
        let file = std::fs::File::open(tar).unwrap_or_else(|e| panic!("{tar}: {e}"));
        let mut h = xspack_io::HashingReader::new(file);
        std::io::copy(&mut h, &mut std::io::sink()).unwrap_or_else(|e| panic!("{tar}: {e}"));
        h.finish().1.to_hex()
    })
}

fn put_blob(dir: &Utf8Path, data: &[u8]) -> (String, usize) {
    let digest = Sha256Digest::of_bytes(data).to_hex();
    std::fs::write(dir.join("blobs/sha256").join(&digest), data).expect("writing a blob");
    (digest, data.len())
}

/// Writes an OCI image layout at `dir` whose single layer is the guest fixture's tar
/// (hard-linked, not copied) and whose configuration is `config`; returns the source string
/// `oci:DIR:guest`.
pub fn bookworm_guest_image(dir: &Utf8Path, config: &Value) -> String {
    let tar = bookworm_guest().join("rootfs.tar");
    let digest = guest_rootfs_digest(&tar);
    let size = std::fs::metadata(&tar).expect("the fixture's tar").len();
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("creating the layout");
    let blob = dir.join("blobs/sha256").join(digest);
    if std::fs::hard_link(&tar, &blob).is_err() {
        std::fs::copy(&tar, &blob).expect("copying the fixture's tar");
    }
    let image_config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{digest}")]},
    }))
    .expect("JSON");
    let (config_digest, config_size) = put_blob(dir, &image_config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config_size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{digest}"),
            "size": size,
        }],
    }))
    .expect("JSON");
    let (manifest_digest, manifest_size) = put_blob(dir, &manifest);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_size,
            "annotations": {"org.opencontainers.image.ref.name": "guest"},
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).expect("JSON"))
        .expect("writing index.json");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("writing oci-layout");
    format!("oci:{dir}:guest")
}

/// Small files in layer 1 of the synthetic image, spread over directories.
const SYNTH_SMALL: usize = 40_000;
/// Small files added by layer 2.
const SYNTH_SMALL_2: usize = 10_000;
/// Large incompressible files: 100 MiB each.
const SYNTH_LARGE: usize = 100 << 20;

/// The synthetic image of the benchmarks, as an OCI layout at `dest` (reused when present):
/// `files` × 50,000 small files and `bytes` × nine large incompressible ones (about `bytes`
/// GB) over three gzip layers, with whiteouts and an opaque directory. The same seed gives the
/// same bytes on every machine. (1, 1) is the standard fixture; (2, 2) and (1, 2) measure how
/// cost grows with size and file count together and with bytes alone.
pub fn synthetic(dest: &Utf8Path, files: usize, bytes: usize) -> std::io::Result<Utf8PathBuf> {
    if dest.join("index.json").is_file() {
        return Ok(dest.to_owned());
    }
    eprintln!("generating {dest} (about {bytes} GB, {files} x 50,000 files, once)");
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut data = |len: usize| {
        let mut v = vec![0u8; len];
        rng.fill(&mut v);
        v
    };
    let mut l1 = Vec::new();
    for i in 0..SYNTH_SMALL * files {
        let len = (i * 37) % 8192;
        l1.push(Entry::file(format!("small/d{:03}/f{i:05}", i % 500), data(len)));
    }
    for i in 0..6 * bytes {
        l1.push(Entry::file(format!("large/blob{i}.bin"), data(SYNTH_LARGE)));
    }
    l1.push(Entry::file("opaque/old", data(100)));
    let mut l2 = Vec::new();
    for i in 0..SYNTH_SMALL_2 * files {
        l2.push(Entry::file(format!("more/d{:03}/g{i:05}", i % 100), data((i * 53) % 8192)));
    }
    for i in (0..SYNTH_SMALL * files).step_by(40) {
        l2.push(Entry::file(format!("small/d{:03}/.wh.f{i:05}", i % 500), Vec::new()));
    }
    l2.push(Entry::file("opaque/.wh..wh..opq", Vec::new()));
    l2.push(Entry::file("opaque/new", data(100)));
    for i in 6 * bytes..8 * bytes {
        l2.push(Entry::file(format!("large/blob{i}.bin"), data(SYNTH_LARGE)));
    }
    let l3 = vec![
        Entry::file("large/blob0.bin", data(SYNTH_LARGE)),
        Entry::file("large/.wh.blob1.bin", Vec::new()),
    ];
    let spec = ImageSpec::new(vec![
        (layer_tar(&l1), Compression::Gzip),
        (layer_tar(&l2), Compression::Gzip),
        (layer_tar(&l3), Compression::Gzip),
    ]);
    // Written beside the cache and renamed into place, so a reader never sees half of it.
    let tmp = dest.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    spec.write_oci_dir(&tmp, "latest")?;
    std::fs::rename(&tmp, dest)?;
    Ok(dest.to_owned())
}
