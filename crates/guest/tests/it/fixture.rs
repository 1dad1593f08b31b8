//! Test images: the real bookworm guest root from `scripts/fixtures/bookworm-guest` (one layer
//! tar made by GNU tar), turned into an OCI image layout here (and from that into a
//! `docker save` archive by xspack's own writer); and small synthetic images written by
//! xspack-testkit.

use camino::Utf8Path;
use serde_json::{Value, json};

use xspack_testkit::{Compression, Entry, EntryKind, ImageSpec, layer_tar};

pub use xspack_testkit::fixtures::{bookworm_guest, bookworm_guest_image};

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
