//! Fixtures for tests: container images built byte by byte, so tests need no daemon, no
//! registry and no downloads.
//!
//! - [`Entry`] and [`layer_tar`] write a layer tar in POSIX pax format: ustar headers plus `x`
//!   records for long or non-UTF-8 paths, link targets, large ids, nanosecond mtimes and
//!   `SCHILY.xattr.*` attributes.
//! - [`ImageSpec`] writes an image as an OCI layout directory, an OCI archive, or a
//!   `docker save` archive (the classic `<id>/layer.tar` layout, with or without skopeo's
//!   symlinks, and the newer layout with `blobs/`).
//! - [`noise`] gives deterministic incompressible bytes for file contents.

pub mod child;
pub mod console;
pub mod ext4check;
pub mod fixtures;
mod pe;
mod rng;
mod tar;

use std::io::Write;

use camino::Utf8Path;
use serde_json::json;
use xspack_io::Sha256Digest;

pub use pe::{pe_image, signed_pe};
pub use rng::Rng;
pub use tar::{Entry, EntryKind, layer_tar, pax_record, plain_tar};

/// Two layers whose files hold zero blocks in every arrangement that matters to sparse disk
/// formats: zero runs across 2 MiB VHD blocks, an all-zero file, a zero tail, 600 small
/// all-zero files, and a one-block-and-a-byte file in a second, uncompressed layer.
pub fn zero_block_layers() -> Vec<(Vec<u8>, Compression)> {
    let mut entries = vec![Entry::dir("z")];
    entries.push(Entry::file("z/zeros", vec![0u8; 5 << 20]));
    let mut holes = vec![0u8; 9 << 20];
    holes[10] = 1;
    holes[(6 << 20) + 4096 * 3 + 1] = 2;
    holes[(9 << 20) - 1] = 3;
    entries.push(Entry::file("z/holes", holes));
    for i in 0..600usize {
        entries.push(Entry::file(format!("z/small{i:03}"), vec![0u8; 100 + i]));
    }
    entries.push(Entry::file("z/tail", [vec![7u8; 4096], vec![0u8; 3 << 20]].concat()));
    vec![
        (layer_tar(&entries), Compression::Gzip),
        (layer_tar(&[Entry::file("z/later", vec![0u8; 4097])]), Compression::None),
    ]
}

/// Deterministic pseudo-random bytes (xorshift64), the same for the same seed on every run.
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip at level 1: zlib-ng (and zlib-rs) write the whole layer as one DEFLATE block.
    Gzip,
    /// gzip at the default level (6): a DEFLATE block every few hundred KiB at most, as Go's
    /// `compress/gzip` (docker, buildkit), pigz and GNU gzip write layers.
    GzipDefault,
    /// zstd.
    Zstd,
}

impl Compression {
    fn media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip | Compression::GzipDefault => {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            }
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// Compresses `data`, deterministically.
    pub fn apply(self, data: &[u8]) -> Vec<u8> {
        match self {
            Compression::None => data.to_vec(),
            Compression::Gzip | Compression::GzipDefault => {
                let level = if self == Compression::Gzip {
                    flate2::Compression::fast()
                } else {
                    flate2::Compression::default()
                };
                let mut enc = flate2::GzBuilder::new().mtime(0).write(Vec::new(), level);
                enc.write_all(data).expect("in memory");
                enc.finish().expect("in memory")
            }
            Compression::Zstd => zstd::encode_all(data, 3).expect("in memory"),
        }
    }
}

/// Layout of a `docker save` archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerLayout {
    /// `<id>/layer.tar` files, as Docker before 25 wrote.
    Classic,
    /// `<diff_id>.tar` files with `<id>/layer.tar` symlinks, as skopeo writes.
    ClassicSymlinks,
    /// `blobs/sha256/…` with an OCI `index.json` beside `manifest.json`, as Docker 25+ writes.
    Blobs,
}

/// An image to write: layers (tar bytes and compression) and the run configuration.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// Layers, base first: uncompressed tar bytes and how to store them.
    pub layers: Vec<(Vec<u8>, Compression)>,
    /// The `config` object of the image configuration (Env, Cmd, ...).
    pub config: serde_json::Value,
}

/// Digests and blobs of a built image.
#[derive(Debug, Clone)]
pub struct Built {
    /// Stored layer blobs with their digests.
    pub layers: Vec<(Sha256Digest, Vec<u8>)>,
    /// Uncompressed layer digests.
    pub diff_ids: Vec<Sha256Digest>,
    /// Config bytes and digest.
    pub config: (Sha256Digest, Vec<u8>),
    /// Manifest bytes and digest.
    pub manifest: (Sha256Digest, Vec<u8>),
}

fn digest_str(d: &Sha256Digest) -> String {
    format!("sha256:{d}")
}

impl ImageSpec {
    /// An image of `layers` with a small default configuration.
    pub fn new(layers: Vec<(Vec<u8>, Compression)>) -> Self {
        ImageSpec { layers, config: json!({"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]}) }
    }

    /// Computes blobs, config and manifest.
    pub fn build(&self) -> Built {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        let mut descriptors = Vec::new();
        for (tar, compression) in &self.layers {
            let blob = compression.apply(tar);
            let digest = Sha256Digest::of_bytes(&blob);
            diff_ids.push(Sha256Digest::of_bytes(tar));
            descriptors.push(json!({
                "mediaType": compression.media_type(),
                "digest": digest_str(&digest),
                "size": blob.len(),
            }));
            layers.push((digest, blob));
        }
        let config = serde_json::to_vec(&json!({
            "architecture": "amd64",
            "os": "linux",
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(digest_str).collect::<Vec<_>>()},
        }))
        .expect("json");
        let config_digest = Sha256Digest::of_bytes(&config);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_str(&config_digest),
                "size": config.len(),
            },
            "layers": descriptors,
        }))
        .expect("json");
        let manifest_digest = Sha256Digest::of_bytes(&manifest);
        Built {
            layers,
            diff_ids,
            config: (config_digest, config),
            manifest: (manifest_digest, manifest),
        }
    }

    /// The files of an OCI layout: `oci-layout`, `index.json` (naming the manifest `ref_name`)
    /// and the blobs.
    pub fn oci_files(&self, ref_name: &str) -> Vec<(String, Vec<u8>)> {
        let built = self.build();
        let index = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": digest_str(&built.manifest.0),
                "size": built.manifest.1.len(),
                "annotations": {"org.opencontainers.image.ref.name": ref_name},
            }],
        }))
        .expect("json");
        let mut files = vec![
            ("oci-layout".to_owned(), br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
            ("index.json".to_owned(), index),
            (format!("blobs/sha256/{}", built.manifest.0), built.manifest.1.clone()),
            (format!("blobs/sha256/{}", built.config.0), built.config.1.clone()),
        ];
        for (digest, blob) in built.layers {
            files.push((format!("blobs/sha256/{digest}"), blob));
        }
        files
    }

    /// Writes an OCI layout directory at `dir`.
    pub fn write_oci_dir(&self, dir: &Utf8Path, ref_name: &str) -> std::io::Result<()> {
        for (name, data) in self.oci_files(ref_name) {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().expect("has a parent"))?;
            std::fs::write(path, data)?;
        }
        Ok(())
    }

    /// Writes an OCI archive (a tar of the layout) at `path`.
    pub fn write_oci_archive(&self, path: &Utf8Path, ref_name: &str) -> std::io::Result<()> {
        std::fs::write(path, plain_tar(&self.oci_files(ref_name), &[]))
    }

    /// Writes a `docker save` archive at `path`, tagged `tag`.
    pub fn write_docker_archive(
        &self,
        path: &Utf8Path,
        tag: &str,
        layout: DockerLayout,
    ) -> std::io::Result<()> {
        let built = self.build();
        let mut files = Vec::new();
        let mut links = Vec::new();
        let mut layer_paths = Vec::new();
        let config_name;
        match layout {
            DockerLayout::Blobs => {
                files = self.oci_files(tag);
                config_name = format!("blobs/sha256/{}", built.config.0);
                for (digest, _) in &built.layers {
                    layer_paths.push(format!("blobs/sha256/{digest}"));
                }
            }
            DockerLayout::Classic | DockerLayout::ClassicSymlinks => {
                config_name = format!("{}.json", built.config.0);
                files.push((config_name.clone(), built.config.1.clone()));
                for (i, ((tar, _), diff_id)) in self.layers.iter().zip(&built.diff_ids).enumerate()
                {
                    // Classic archives hold uncompressed layers; the directory name is a layer id.
                    let id = Sha256Digest::of_bytes(format!("layer-{i}-{diff_id}").as_bytes());
                    let member = format!("{id}/layer.tar");
                    if layout == DockerLayout::ClassicSymlinks {
                        files.push((format!("{diff_id}.tar"), tar.clone()));
                        links.push((member.clone(), format!("../{diff_id}.tar")));
                    } else {
                        files.push((member.clone(), tar.clone()));
                    }
                    files.push((format!("{id}/VERSION"), b"1.0".to_vec()));
                    layer_paths.push(member);
                }
            }
        }
        let manifest = serde_json::to_vec(&json!([{
            "Config": config_name,
            "RepoTags": [tag],
            "Layers": layer_paths,
        }]))
        .expect("json");
        files.push(("manifest.json".to_owned(), manifest));
        std::fs::write(path, plain_tar(&files, &links))
    }
}

/// Fails listing every disagreement a differential test found between our reader and its
/// oracles, one per line.
pub fn assert_no_disagreements(disagreements: &[String]) {
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
