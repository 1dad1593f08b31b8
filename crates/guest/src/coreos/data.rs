//! The data disk of a CoreOS guest: a whole-disk ext4 filesystem labelled `xspack-data`
//! (no partition table; the guest mounts it by label) holding, in `images/`:
//!
//! - `NAME.tar`: each container's image as a `docker save` archive
//!   ([`xspack_oci::docker_archive`]), which `docker load` and `podman load` read;
//! - `SHA256SUMS`: the archives' digests, in `sha256sum --check` format, checked by the guest
//!   before it loads anything;
//! - `index.json`: per container, the archive, its digest, the tag it loads as, and the image
//!   it came from (source, image digest and config digest).
//!
//! Written by our ext4 writer in one forward pass, the archives streaming from their layer
//! blobs and hashed as they pass; the two small files come last, so they can hold those
//! digests, and their sizes are known in advance because a digest's text has a fixed length.

use std::io::Write;

use xspack_ext4::{Attrs, Ext4Options, FsBuilder, NodeKind, Timestamp};
use xspack_io::{HashingReader, Progress, ProgressUnit, Sha256Digest};
use xspack_oci::docker_archive::DockerArchive;

use super::ignition::{DATA_LABEL, IMAGES_DIR};
use crate::Error;

/// One archive to store.
#[derive(Debug)]
pub struct DataEntry<'a> {
    /// Container name.
    pub name: String,
    /// File name in `images/`.
    pub file: String,
    /// The tag it loads as.
    pub tag: String,
    /// The archive.
    pub archive: DockerArchive<'a>,
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArchive {
    /// Container name.
    pub name: String,
    /// File name in `images/`.
    pub file: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: Sha256Digest,
}

/// Identity and timestamp of the filesystem.
#[derive(Debug, Clone)]
pub struct DataOptions {
    /// Filesystem UUID.
    pub uuid: [u8; 16],
    /// Directory hash seed.
    pub hash_seed: [u8; 16],
    /// Every timestamp.
    pub source_date_epoch: u64,
}

fn sums(stored: &[(String, Sha256Digest)]) -> String {
    let mut text = String::new();
    for (file, d) in stored {
        text.push_str(&format!("{d}  {file}\n"));
    }
    text
}

fn index(entries: &[DataEntry<'_>], digests: &[Sha256Digest]) -> String {
    let list: Vec<serde_json::Value> = entries
        .iter()
        .zip(digests)
        .map(|(e, d)| {
            let image = e.archive.image();
            serde_json::json!({
                "name": e.name,
                "archive": e.file,
                "sha256": d.to_string(),
                "size": e.archive.size(),
                "tag": e.tag,
                "source": image.source.portable_name(),
                "image_digest": image.digest.to_string(),
                "config_digest": image.config_digest.to_string(),
            })
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&serde_json::json!({ "containers": list }))
        .expect("JSON values serialize");
    text.push('\n');
    text
}

/// Writes the data disk holding `entries` to `out`; returns the disk size and the digests.
pub fn write_data_disk<W: Write>(
    entries: &[DataEntry<'_>],
    opts: &DataOptions,
    out: W,
    progress: &dyn Progress,
) -> Result<(W, u64, Vec<StoredArchive>), Error> {
    let mtime = Timestamp::from_secs(i64::try_from(opts.source_date_epoch).unwrap_or(i64::MAX));
    let attrs = |perm: u16| Attrs { perm, mtime, atime: mtime, ctime: mtime, ..Attrs::default() };
    let mut fs = FsBuilder::new(attrs(0o755));
    let dir = fs.add(NodeKind::Dir, attrs(0o755));
    fs.link(fs.root(), IMAGES_DIR.as_bytes(), dir)?;
    // Placeholder digests have the length of real ones.
    let zero = vec![Sha256Digest([0; 32]); entries.len()];
    let sums_len =
        sums(&entries.iter().map(|e| (e.file.clone(), zero[0])).collect::<Vec<_>>()).len();
    let index_len = index(entries, &zero).len();
    let mut ids = Vec::new();
    for (key, e) in entries.iter().enumerate() {
        let id =
            fs.add(NodeKind::File { size: e.archive.size(), data_key: key as u64 }, attrs(0o644));
        fs.link(dir, e.file.as_bytes(), id)?;
        ids.push(id);
    }
    let n = entries.len() as u64;
    let sums_id = fs.add(NodeKind::File { size: sums_len as u64, data_key: n }, attrs(0o644));
    fs.link(dir, b"SHA256SUMS", sums_id)?;
    let index_id = fs.add(NodeKind::File { size: index_len as u64, data_key: n + 1 }, attrs(0o644));
    fs.link(dir, b"index.json", index_id)?;

    let mut ext4 = Ext4Options::new(opts.uuid, opts.hash_seed, opts.source_date_epoch);
    DATA_LABEL.clone_into(&mut ext4.label);
    let plan = fs.plan(&ext4)?;
    let task = progress.task("writing data disk", Some(plan.size_bytes()), ProgressUnit::Bytes);
    let mut writer = plan.writer(out);
    let mut digests = Vec::new();
    for (id, size) in plan.file_order() {
        if let Some(i) = ids.iter().position(|x| *x == id) {
            let reader = entries[i]
                .archive
                .reader()
                .map_err(|e| Error::io("reading", &entries[i].name, e))?;
            let mut hashing = HashingReader::new(reader);
            writer.write_file(id, &mut hashing)?;
            digests.push(hashing.finish().1);
        } else if id == sums_id {
            let files: Vec<_> =
                entries.iter().map(|e| e.file.clone()).zip(digests.iter().copied()).collect();
            let text = sums(&files);
            debug_assert_eq!(text.len(), sums_len);
            writer.write_file(id, &mut text.as_bytes())?;
        } else {
            let text = index(entries, &digests);
            debug_assert_eq!(text.len(), index_len);
            writer.write_file(id, &mut text.as_bytes())?;
        }
        task.advance(size);
    }
    let out = writer.finish()?;
    task.finish();
    let stored = entries
        .iter()
        .zip(digests)
        .map(|(e, sha256)| StoredArchive {
            name: e.name.clone(),
            file: e.file.clone(),
            size: e.archive.size(),
            sha256,
        })
        .collect();
    Ok((out, plan.size_bytes(), stored))
}
