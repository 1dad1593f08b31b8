//! The fuzz harnesses: each turns the fuzzer's bytes into the input one of xspack's readers
//! takes and runs the reader to the end. An error is the expected outcome for almost every
//! input; a panic, an abort or a hang is a bug. [`seeds`] gives one valid input per target, made
//! by xspack's own writers, so the fuzzer starts from structures it would never guess.
//! [`ext4_tree`] fuzzes a writer instead: the bytes describe a tree, and the ext4 image written
//! from it must be clean for `e2fsck -fn`, with every link count right.

use std::io::{Cursor, Read};

mod ext4_tree;
mod pack_paths;
pub use ext4_tree::ext4_tree;
pub use pack_paths::pack_paths;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::json;
use xspack_io::Sha256Digest;

/// The fuzz targets, as named in Cargo.toml.
pub const TARGETS: [&str; 10] = [
    "layer",
    "gzip_index",
    "oci_json",
    "vhd",
    "xva",
    "iso",
    "qcow2",
    "pack_toml",
    "ext4_tree",
    "pack_paths",
];

const MEDIA: [&str; 3] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
];

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", Sha256Digest::of_bytes(bytes))
}

fn scratch() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).expect("UTF-8 temp path");
    (dir, path)
}

/// The uncompressed content of a layer blob, if it decompresses at all (for its diff_id).
fn decompressed(media: usize, blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let limit = 64 << 20;
    let _ = match media {
        1 => flate2::read::MultiGzDecoder::new(blob).take(limit).read_to_end(&mut out),
        2 => match zstd::stream::read::Decoder::new(blob) {
            Ok(d) => d.take(limit).read_to_end(&mut out),
            Err(e) => Err(e),
        },
        _ => {
            out.extend_from_slice(blob);
            Ok(0)
        }
    };
    out
}

/// Writes an OCI layout at `dir` whose documents are `index`, `manifest` and `config` (the
/// descriptors that point at them fixed up, unless the document itself is fuzzed) and blobs.
fn write_layout(dir: &Utf8Path, index: Option<&[u8]>, manifest: &[u8], config: &[u8], blobs: &[&[u8]]) {
    let b = dir.join("blobs/sha256");
    std::fs::create_dir_all(&b).expect("blobs dir");
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).expect("write");
    for blob in blobs.iter().chain([&config, &manifest]) {
        std::fs::write(b.join(&sha(blob)[7..]), blob).expect("write");
    }
    let index = match index {
        Some(i) => i.to_vec(),
        None => serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": sha(manifest), "size": manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }],
        }))
        .expect("json"),
    };
    std::fs::write(dir.join("index.json"), index).expect("write");
}

fn manifest_for(config: &[u8], layers: &[(usize, &[u8])]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|(m, blob)| json!({"mediaType": MEDIA[*m], "digest": sha(blob), "size": blob.len()}))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": config.len()},
        "layers": layers,
    }))
    .expect("json")
}

fn config_for(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .expect("json")
}

/// Opens the image at `source`, merges its layers and maps the tree to ext4 inodes.
fn open_and_merge(source: &str) {
    let Ok(source) = xspack_oci::ImageSource::parse(source) else { return };
    let Ok(image) = xspack_oci::Image::open(&source) else { return };
    let _ = xspack_image::merge_layers(&image, &xspack_io::NoProgress);
}

/// `layer`: the first byte picks the compression (none, gzip, zstd) and whether the layer sits
/// on top of a fixed base layer; the rest is the layer blob, stored under its correct digest
/// and diff_id so the reader gets past the checks into the tar and merge code.
pub fn layer(data: &[u8]) {
    let Some((&mode, blob)) = data.split_first() else { return };
    let media = usize::from(mode % 3);
    let tar = decompressed(media, blob);
    let (_t, dir) = scratch();
    let base = xspack_testkit::layer_tar(&[
        xspack_testkit::Entry::dir("etc"),
        xspack_testkit::Entry::file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
        xspack_testkit::Entry::new("etc/link", xspack_testkit::EntryKind::Symlink(b"passwd".to_vec())),
    ]);
    let (layers, diff_ids): (Vec<(usize, &[u8])>, Vec<String>) = if mode & 0x80 != 0 {
        (vec![(0, &base), (media, blob)], vec![sha(&base), sha(&tar)])
    } else {
        (vec![(media, blob)], vec![sha(&tar)])
    };
    let config = config_for(&diff_ids);
    let manifest = manifest_for(&config, &layers);
    let blobs: Vec<&[u8]> = layers.iter().map(|(_, b)| *b).collect();
    write_layout(&dir, None, &manifest, &config, &blobs);
    open_and_merge(&format!("oci:{dir}"));
}

/// `oci_json`: the first byte picks the document the rest replaces — index.json, the image
/// manifest, the config, or a docker-archive manifest.json — around an otherwise valid image.
pub fn oci_json(data: &[u8]) {
    let Some((&which, doc)) = data.split_first() else { return };
    let tar = xspack_testkit::layer_tar(&[xspack_testkit::Entry::file("a", "b")]);
    let (_t, dir) = scratch();
    let good_config = config_for(&[sha(&tar)]);
    match which % 4 {
        0 => {
            let manifest = manifest_for(&good_config, &[(0, &tar)]);
            write_layout(&dir, Some(doc), &manifest, &good_config, &[&tar]);
            open_and_merge(&format!("oci:{dir}"));
        }
        1 => {
            write_layout(&dir, None, doc, &good_config, &[&tar]);
            open_and_merge(&format!("oci:{dir}"));
        }
        2 => {
            let manifest = manifest_for(doc, &[(0, &tar)]);
            write_layout(&dir, None, &manifest, doc, &[&tar]);
            open_and_merge(&format!("oci:{dir}"));
        }
        _ => {
            let files = vec![
                ("c.json".to_owned(), good_config),
                ("l/layer.tar".to_owned(), tar.clone()),
                ("manifest.json".to_owned(), doc.to_vec()),
            ];
            let archive = dir.join("image.tar");
            std::fs::write(&archive, xspack_testkit::plain_tar(&files, &[])).expect("write");
            open_and_merge(&format!("docker-archive:{archive}"));
        }
    }
}

/// `vhd`: a dynamic VHD, opened with its rules checked, then every block read back.
pub fn vhd(data: &[u8]) {
    if let Ok(mut vhd) = xspack_disk::vhd::VhdFile::open_at(Cursor::new(data), 1_700_000_000) {
        let _ = std::io::copy(&mut vhd.raw_reader(), &mut std::io::sink());
        let _ = vhd.check_stream_layout();
        let _ = vhd.info();
    }
}

/// `xva`: an XVA read to the end, every chunk's checksum verified.
pub fn xva(data: &[u8]) {
    if let Ok(r) = xspack_xva::XvaReader::new(Cursor::new(data)) {
        let _ = r.finish();
    }
}

/// `iso`: an ISO 9660 image: both directory trees listed, every file read.
pub fn iso(data: &[u8]) {
    let Ok(mut r) = xspack_iso::IsoReader::new(Cursor::new(data)) else { return };
    let _ = r.joliet_entries();
    let Ok(entries) = r.entries() else { return };
    for e in entries.iter().filter(|e| e.kind == xspack_iso::EntryKind::File) {
        if let Ok(mut f) = r.open_file(e) {
            let _ = std::io::copy(&mut f, &mut std::io::sink());
        }
    }
}

/// `qcow2`: a qcow2 image's header and tables checked.
pub fn qcow2(data: &[u8]) {
    let _ = xspack_disk::qcow2::check_qcow2(Cursor::new(data));
}

/// `pack_toml`: pack.toml parsed and validated.
pub fn pack_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = xspack_pack::PackSpec::parse(text, Utf8Path::new("pack.toml"));
    }
}

/// `gzip_index`: the bytes as gzip, decoded once while noting a seek index with an access
/// point every 4 KiB, then again segment by segment from that index; both must agree.
pub fn gzip_index(data: &[u8]) {
    xspack_gzseek::check_round_trip(data);
}

/// The fuzzer's bytes followed by zeros up to 1 TiB: a volume whose boot sector may claim
/// billions of clusters, as a sparse disk image can.
struct Padded<'a>(&'a [u8]);

impl xspack_disk::DiskSource for Padded<'_> {
    fn size(&self) -> u64 {
        1 << 40
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        buf.fill(0);
        if let Ok(start) = usize::try_from(offset)
            && start < self.0.len()
        {
            let n = buf.len().min(self.0.len() - start);
            buf[..n].copy_from_slice(&self.0[start..start + n]);
        }
        Ok(())
    }
}

/// `fat_read`: the bytes as the start of a FAT volume of up to 1 TiB, an ESP's boot files read
/// back and their PE signatures looked for, as the Secure Boot check of a template's disk
/// does; time and memory must not grow with the size the volume claims.
pub fn fat_read(data: &[u8]) {
    let mut src = Padded(data);
    let Ok(mut r) = xspack_disk::fat::FatReader::open(&mut src, 0, 1 << 40) else { return };
    for path in ["EFI/BOOT/BOOTX64.EFI", "EFI/BOOT/grubx64.efi", "EFI/debian/BOOTX64.CSV"] {
        if let Ok(Some(bytes)) = r.read_file(path, 1 << 24) {
            let _ = xspack_disk::pe::signature(&bytes);
        }
    }
}

/// Runs the harness of `target` on `data`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "layer" => layer(data),
        "gzip_index" => gzip_index(data),
        "oci_json" => oci_json(data),
        "vhd" => vhd(data),
        "xva" => xva(data),
        "iso" => iso(data),
        "qcow2" => qcow2(data),
        "pack_toml" => pack_toml(data),
        "ext4_tree" => ext4_tree(data),
        "pack_paths" => pack_paths(data),
        "fat_read" => fat_read(data),
        other => panic!("no fuzz target {other}"),
    }
}
