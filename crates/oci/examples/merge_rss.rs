//! Peak memory of reading and merging one layer of many entries: the resource bound of the
//! hardening issue ("peak RSS stays at most 128 MiB up to 250,000 entries in any shape").
//!
//! ```sh
//! cargo run --release -p xspack-oci --example merge_rss -- [SHAPE...] [--entries N]
//! ```
//!
//! SHAPE is `flat` (N small files in one directory), `deep` (a chain of directories as deep
//! as `PATH_MAX` allows, then files at its bottom, every path near 4,095 bytes), `dirs` (N
//! directories, 500 per parent) or `empty` (N empty files, 500 per directory); all four by
//! default. Two more on request: `names` (N empty files named with 255 bytes, 500 per
//! directory) and `links` (N symlinks with targets of 4,095 bytes, 500 per directory), the
//! most a name and a symlink target may hold. Each layer is written to a temporary OCI layout, then a fresh process (this
//! program again) opens it, reads the layer and merges it into a `MergedTree`, as the image
//! builder does for one layer, and reports its peak RSS (`VmHWM` from `/proc/self/status`).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::process::Command;
use std::time::Instant;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_oci::{Image, ImageSource, MergedTree};

const DEFAULT_ENTRIES: usize = 250_000;
const PER_DIR: usize = 500;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, dir] = &args[..]
        && flag == "--merge"
    {
        return merge(Utf8Path::new(dir));
    }
    let mut entries = DEFAULT_ENTRIES;
    let mut shapes = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--entries" => entries = it.next().ok_or("--entries N")?.parse()?,
            "flat" | "deep" | "dirs" | "empty" | "names" | "links" => shapes.push(arg.clone()),
            other => return Err(format!("unknown argument {other:?}").into()),
        }
    }
    if shapes.is_empty() {
        shapes = ["flat", "deep", "dirs", "empty"].map(String::from).to_vec();
    }
    for shape in shapes {
        let dir = tempfile::tempdir()?;
        let root = Utf8PathBuf::try_from(dir.path().join("oci"))?;
        let start = Instant::now();
        let tar_bytes = write_layout(&root, &shape, entries)?;
        let built = start.elapsed();
        let out = Command::new(std::env::current_exe()?).arg("--merge").arg(&root).output()?;
        if !out.status.success() {
            return Err(format!("{shape}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        print!(
            "{shape:>5}: {entries} entries, tar {:.1} MiB (written in {:.1?}); {}",
            tar_bytes as f64 / 1_048_576.0,
            built,
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(())
}

/// Reads and merges the one layer of the layout at `root`, then prints the peak RSS.
fn merge(root: &Utf8Path) -> Result<(), Box<dyn std::error::Error>> {
    let start = Instant::now();
    let image = Image::open(&ImageSource::OciDir { path: root.to_owned(), reference: None })?;
    let mut tree = MergedTree::new();
    for layer in &image.layers {
        let label = layer.label();
        image.read_layer(layer, |entry, _| tree.apply(layer.index, &label, entry))?;
    }
    tree.shrink_to_fit();
    let took = start.elapsed();
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map_or_else(|| "?".to_owned(), |v| v.trim().to_owned())
    };
    println!(
        "merged {} nodes in {took:.1?}: VmHWM {}, VmRSS {}",
        tree.node_count(),
        field("VmHWM:"),
        field("VmRSS:")
    );
    Ok(())
}

/// Writes a one-layer OCI layout of `shape` at `root`; the tar's size.
fn write_layout(root: &Utf8Path, shape: &str, entries: usize) -> io::Result<u64> {
    let blobs = root.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let scratch = blobs.join("layer.tmp");
    let file = xspack_io::HashingWriter::new(BufWriter::new(File::create(&scratch)?));
    let mut tar = tar::Builder::new(file);
    write_entries(&mut tar, shape, entries)?;
    let hashing = tar.into_inner()?;
    let (mut file, digest, tar_bytes) = hashing.finish();
    file.flush()?;
    drop(file);
    std::fs::rename(&scratch, blobs.join(digest.to_string()))?;
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{digest}")]},
    }))?;
    let config_digest = xspack_io::Sha256Digest::of_bytes(&config);
    std::fs::write(blobs.join(config_digest.to_string()), &config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{config_digest}"),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": format!("sha256:{digest}"),
            "size": tar_bytes,
        }],
    }))?;
    let manifest_digest = xspack_io::Sha256Digest::of_bytes(&manifest);
    std::fs::write(blobs.join(manifest_digest.to_string()), &manifest)?;
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest.len(),
        }],
    }))?;
    std::fs::write(root.join("index.json"), index)?;
    std::fs::write(root.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(tar_bytes)
}

/// Appends the `entries` entries of `shape` to `tar`.
fn write_entries<W: Write>(
    tar: &mut tar::Builder<W>,
    shape: &str,
    entries: usize,
) -> io::Result<()> {
    let mut add = |path: &[u8], kind: tar::EntryType, data: &[u8]| -> io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(data.len() as u64);
        let path = std::str::from_utf8(path).expect("ASCII names");
        tar.append_data(&mut header, path, data)
    };
    match shape {
        "flat" => {
            for i in 0..entries {
                add(format!("srv/f{i:07}").as_bytes(), tar::EntryType::Regular, b"0123456789")?;
            }
        }
        "deep" => {
            // `d/d/…/d`: 2,040 nested directories, 4,079 bytes, then files at the bottom whose
            // paths are 4,087 bytes.
            let mut dir = Vec::new();
            let mut dirs = 0;
            while dir.len() + 2 <= 4080 && dirs < entries {
                if !dir.is_empty() {
                    dir.push(b'/');
                }
                dir.push(b'd');
                add(&dir, tar::EntryType::Directory, b"")?;
                dirs += 1;
            }
            for i in 0..entries - dirs {
                let path = [&dir[..], format!("/f{i:06}").as_bytes()].concat();
                add(&path, tar::EntryType::Regular, b"")?;
            }
        }
        "dirs" => {
            let parents = entries.div_ceil(PER_DIR + 1);
            let mut made = 0;
            'all: for p in 0..parents {
                for c in 0..=PER_DIR {
                    if made == entries {
                        break 'all;
                    }
                    let path = if c == 0 { format!("d{p:04}") } else { format!("d{p:04}/s{c:03}") };
                    add(path.as_bytes(), tar::EntryType::Directory, b"")?;
                    made += 1;
                }
            }
        }
        "empty" => {
            for i in 0..entries {
                let path = format!("e{:04}/f{:03}", i / PER_DIR, i % PER_DIR);
                add(path.as_bytes(), tar::EntryType::Regular, b"")?;
            }
        }
        "names" => {
            for i in 0..entries {
                let name = format!("{:0>255}", i % PER_DIR);
                let path = format!("n{:04}/{name}", i / PER_DIR);
                add(path.as_bytes(), tar::EntryType::Regular, b"")?;
            }
        }
        "links" => {
            for i in 0..entries {
                let target = format!("{i:0>4095}");
                let path = format!("l{:04}/s{:03}", i / PER_DIR, i % PER_DIR);
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_mtime(1_700_000_000);
                header.set_uid(0);
                header.set_gid(0);
                header.set_size(0);
                tar.append_link(&mut header, path, target)?;
            }
        }
        other => return Err(io::Error::other(format!("unknown shape {other}"))),
    }
    Ok(())
}
