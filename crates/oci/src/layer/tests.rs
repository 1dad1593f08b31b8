//! Tests of reading and rereading layers: a reread stops after the last entry wanted and
//! proves what it read, and one from a gzip seek index gives the same entries.

use std::io;

use super::*;
use camino::Utf8PathBuf;
use xspack_testkit::{Compression, Entry, ImageSpec, layer_tar};

/// A one-layer OCI layout: a small file, then a large one.
fn layout(compression: Compression) -> (tempfile::TempDir, Image) {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::try_from(dir.path().join("oci")).unwrap();
    let layer = layer_tar(&[
        Entry::file("etc/hostname", "box\n"),
        Entry::file("srv/data", xspack_testkit::noise(5, 300_000)),
    ]);
    ImageSpec::new(vec![(layer, compression)]).write_oci_dir(&root, "latest").unwrap();
    let image =
        Image::open(&crate::ImageSource::OciDir { path: root, reference: Some("latest".into()) })
            .unwrap();
    (dir, image)
}

fn paths_visited(image: &Image, last: u64) -> Result<Vec<Vec<u8>>, Error> {
    let mut seen = Vec::new();
    image.reread_layer(&image.layers[0], last, |entry, _| -> Result<(), Error> {
        seen.push(entry.path.clone());
        Ok(())
    })?;
    Ok(seen)
}

/// The path of the blob of `image`'s first layer in the layout under `dir`.
fn blob_path(dir: &tempfile::TempDir, image: &Image) -> std::path::PathBuf {
    let digest = image.layers[0].digest.unwrap().0.to_string();
    dir.path().join("oci/blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

/// Flips one byte of a file.
fn flip(path: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x55;
    std::fs::write(path, &bytes).unwrap();
}

/// A reread visits entries up to `last` only, for every compression. After a first read
/// it proves every block it reads against that read's proof (here the blob is one block,
/// so a byte changed after the last entry wanted fails it); without one it checks the
/// blob digest over the whole blob.
#[test]
fn a_reread_stops_after_the_last_entry_and_proves_what_it_read() {
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let (dir, image) = layout(compression);
        // No first read: the blob digest, over every byte.
        assert_eq!(paths_visited(&image, 0).unwrap(), vec![b"etc/hostname".to_vec()]);
        image.read_layer(&image.layers[0], |_, _| -> Result<(), Error> { Ok(()) }).unwrap();
        assert_eq!(paths_visited(&image, 0).unwrap(), vec![b"etc/hostname".to_vec()]);
        assert_eq!(paths_visited(&image, 1).unwrap().len(), 2);
        let blob = blob_path(&dir, &image);
        let len = std::fs::metadata(&blob).unwrap().len();
        flip(&blob, usize::try_from(len).unwrap() - 2000);
        let err = paths_visited(&image, 0).unwrap_err().to_string();
        assert!(err.contains("changed since it was first read: bytes 0.."), "{err}");
        let fresh = Image::open(&image_source(&dir)).unwrap();
        let err = paths_visited(&fresh, 0).unwrap_err();
        assert!(
            matches!(&err, Error::DigestMismatch { kind: "digest", .. }),
            "{compression:?}: {err}"
        );
    }
}

fn image_source(dir: &tempfile::TempDir) -> crate::ImageSource {
    let path = Utf8PathBuf::try_from(dir.path().join("oci")).unwrap();
    crate::ImageSource::OciDir { path, reference: Some("latest".into()) }
}

/// Entries visited with a digest of their data.
fn entries_read(
    image: &Image,
    last: Option<u64>,
) -> Result<Vec<(Vec<u8>, xspack_io::Sha256Digest)>, Error> {
    entries_read_if(image, last, |_| true)
}

/// Entries visited, with a digest of the data of those `read` picks (others are left
/// unread, so a reread may skip them).
fn entries_read_if(
    image: &Image,
    last: Option<u64>,
    read: impl Fn(u64) -> bool,
) -> Result<Vec<(Vec<u8>, xspack_io::Sha256Digest)>, Error> {
    let mut seen = Vec::new();
    let visit = |entry: &LayerEntry, data: &mut dyn Read| -> Result<(), Error> {
        if !read(entry.index) {
            seen.push((entry.path.clone(), xspack_io::Sha256Digest([0; 32])));
            return Ok(());
        }
        let mut hashing = xspack_io::HashingWriter::new(io::sink());
        io::copy(data, &mut hashing)
            .map_err(|e| Error::Layer { layer: "test".into(), reason: e.to_string() })?;
        seen.push((entry.path.clone(), hashing.finish().1));
        Ok(())
    };
    match last {
        None => image.read_layer(&image.layers[0], visit)?,
        Some(last) => image.reread_layer(&image.layers[0], last, visit)?,
    };
    Ok(seen)
}

/// A gzip layer of several MiB: the first read leaves a seek index, and rereads decode
/// its segments on several threads into the same entries and bytes, stopping early or
/// not, and still fail on a changed byte.
#[test]
fn a_reread_from_the_seek_index_gives_the_same_entries() {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::try_from(dir.path().join("oci")).unwrap();
    let files: Vec<Entry> = (0..48u64)
        .map(|i| {
            let data = match i % 4 {
                0 => format!("line {i} of a text file\n").repeat(9_000).into_bytes(),
                1 => vec![0; 100_000],
                _ => xspack_testkit::noise(i, 500_000),
            };
            Entry::file(format!("srv/{i:02}"), data)
        })
        .collect();
    let layer = layer_tar(&files);
    ImageSpec::new(vec![(layer, Compression::GzipDefault)]).write_oci_dir(&root, "x").unwrap();
    let image =
        Image::open(&crate::ImageSource::OciDir { path: root, reference: Some("x".into()) })
            .unwrap();
    let first = entries_read(&image, None).unwrap();
    assert_eq!(first.len(), 48);
    let first_read = image.first_read(&image.layers[0]).expect("a first read");
    let index = first_read.index.as_ref().expect("an index");
    assert!(index.segments().len() >= 4, "{} segments", index.segments().len());
    assert_eq!(entries_read(&image, Some(47)).unwrap(), first);
    assert_eq!(entries_read(&image, Some(20)).unwrap(), first[..21]);
    // Entries 5 to 40 unread: whole segments among them are skipped, undecoded, and what
    // follows still comes out right.
    let read = |i: u64| !(5..=40).contains(&i);
    let sparse = entries_read_if(&image, Some(47), read).unwrap();
    for (i, (got, want)) in sparse.iter().zip(&first).enumerate() {
        assert_eq!(got.0, want.0);
        if read(i as u64) {
            assert_eq!(got.1, want.1, "entry {i}");
        }
    }
    // A change in a block a reread needs fails it, naming the block; one in a block past
    // everything it needs does not matter, and is not even read.
    let len = std::fs::metadata(blob_path(&dir, &image)).unwrap().len();
    // Far past what the reader can run ahead of the parser (a few segments).
    assert!(len > 10 * crate::proof::BLOCK as u64, "{len} bytes");
    flip(&blob_path(&dir, &image), usize::try_from(len).unwrap() - 10);
    assert_eq!(entries_read(&image, Some(3)).unwrap(), first[..4]);
    let err = entries_read(&image, Some(47)).unwrap_err().to_string();
    let last_block = (len - 1) / crate::proof::BLOCK as u64 * crate::proof::BLOCK as u64;
    assert!(err.contains(&format!("bytes {last_block}..{len} differ")), "{err}");
    flip(&blob_path(&dir, &image), usize::try_from(len).unwrap() - 10);
    entries_read(&image, Some(47)).unwrap();
    flip(&blob_path(&dir, &image), usize::try_from(len / 2).unwrap());
    let err = entries_read(&image, Some(47)).unwrap_err().to_string();
    assert!(err.contains("changed since it was first read"), "{err}");
}
