//! Test images: the real bookworm guest root from `scripts/fixtures/bookworm-guest` (one layer
//! tar made by GNU tar), turned into an OCI image layout here (and from that into a
//! `docker save` archive by xspack's own writer); and small synthetic images written by
//! xspack-testkit.

use std::io::Read as _;
use std::process::Command;
use std::sync::OnceLock;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use xspack_testkit::{Compression, Entry, EntryKind, ImageSpec, layer_tar};

/// The fixture directory (`rootfs.tar`, `boot/`), made once per machine by the script.
pub fn bookworm_guest() -> &'static Utf8Path {
    static DIR: OnceLock<Utf8PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/fixtures/bookworm-guest");
        let out = Command::new(script).output().expect("scripts/fixtures/bookworm-guest runs");
        assert!(
            out.status.success(),
            "scripts/fixtures/bookworm-guest failed (it needs root once per machine):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Utf8PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// The sha256 of the fixture's layer tar, hashed once per test process.
fn rootfs_digest(tar: &Utf8Path) -> &'static str {
    static DIGEST: OnceLock<String> = OnceLock::new();
    DIGEST.get_or_init(|| {
        let mut file = std::fs::File::open(tar).unwrap();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        xspack_io::Sha256Digest(h.finalize().into()).to_hex()
    })
}

fn put_blob(dir: &Utf8Path, data: &[u8]) -> (String, usize) {
    let digest = xspack_io::Sha256Digest::of_bytes(data).to_hex();
    std::fs::write(dir.join("blobs/sha256").join(&digest), data).unwrap();
    (digest, data.len())
}

/// Writes an OCI image layout at `dir` whose single layer is the fixture's tar (hard-linked,
/// not copied) and whose configuration is `config`; returns the source string `oci:DIR:guest`.
pub fn bookworm_guest_image(dir: &Utf8Path, config: &Value) -> String {
    let tar = bookworm_guest().join("rootfs.tar");
    let digest = rootfs_digest(&tar);
    let size = std::fs::metadata(&tar).unwrap().len();
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let blob = dir.join("blobs/sha256").join(digest);
    if std::fs::hard_link(&tar, &blob).is_err() {
        std::fs::copy(&tar, &blob).unwrap();
    }
    let image_config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{digest}")]},
    }))
    .unwrap();
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
    .unwrap();
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
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    format!("oci:{dir}:guest")
}

/// The same image as a `docker save` archive at `path`, written by xspack's own
/// [`xspack_oci::docker_archive`] from the OCI layout (digests checked as it streams); returns
/// the source string `docker-archive:PATH`.
pub fn bookworm_guest_docker_archive(path: &Utf8Path, config: &Value) -> String {
    let layout = path.with_extension("layout");
    let source = bookworm_guest_image(&layout, config);
    let image = xspack_oci::Image::open(&xspack_oci::ImageSource::parse(&source).unwrap()).unwrap();
    let archive =
        xspack_oci::docker_archive::DockerArchive::new(&image, "bookworm-guest:test", 0).unwrap();
    let mut file = std::fs::File::create(path).unwrap();
    let copied = std::io::copy(&mut archive.reader().unwrap(), &mut file).unwrap();
    assert_eq!(copied, archive.size());
    std::fs::remove_dir_all(&layout).unwrap();
    format!("docker-archive:{path}")
}

pub use xspack_testkit::noise;

/// A fake kernel and initrd of the synthetic image.
pub fn fake_boot_files() -> (Vec<u8>, Vec<u8>) {
    (noise(1, 300_000), noise(2, 200_000))
}

fn exe(path: &str) -> Entry {
    Entry::file(path, b"#!/bin/false\n".to_vec()).mode(0o755)
}

fn link(path: &str, target: &str) -> Entry {
    Entry::new(path, EntryKind::Symlink(target.as_bytes().to_vec()))
}

/// A small Debian-looking image: os-release, systemd as init, ifupdown, a fake kernel and
/// initrd (unless `kernel` is false), and `/.dockerenv`. `os_release` replaces the os-release.
pub fn synthetic(os_release: Option<&str>, kernel: bool) -> ImageSpec {
    let (vmlinuz, initrd) = fake_boot_files();
    let mut entries = vec![
        Entry::dir("usr"),
        Entry::dir("usr/lib"),
        link("lib", "usr/lib"),
        link("bin", "usr/bin"),
        link("sbin", "usr/sbin"),
        exe("usr/lib/systemd/systemd"),
        link("usr/sbin/init", "/lib/systemd/systemd"),
        exe("usr/bin/sh"),
        exe("usr/sbin/ifup"),
        exe("usr/sbin/dhclient"),
        Entry::file(".dockerenv", Vec::new()),
        Entry::dir("etc"),
        link("etc/os-release", "../usr/lib/os-release"),
    ];
    if let Some(text) = os_release {
        entries.push(Entry::file("usr/lib/os-release", text.as_bytes().to_vec()));
    }
    if kernel {
        entries.push(Entry::dir("boot"));
        entries.push(Entry::file("boot/vmlinuz-6.1.0-1-amd64", vmlinuz));
        entries.push(Entry::file("boot/initrd.img-6.1.0-1-amd64", initrd));
    }
    let mut spec = ImageSpec::new(vec![(layer_tar(&entries), Compression::Gzip)]);
    spec.config = json!({
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": ["echo hello"],
        "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "GREETING=hi"],
    });
    spec
}

/// Debian 12's os-release.
pub const DEBIAN_OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n\
    NAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n";
