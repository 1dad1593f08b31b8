//! Writing an image as a `docker save` archive: the tarball that `docker load` and `podman load`
//! read (Docker's image tarball format, `manifest.json` with `Config`, `RepoTags` and `Layers`,
//! as moby's `image/tarexport` reads it).
//!
//! The archive is planned first, so its size is known before a byte is written (a filesystem
//! writer needs it), then read as a stream: the config and every layer blob go through
//! verbatim, compressed or not (`docker load` sniffs the compression of each layer), and are
//! checked against their digests as they pass. Members are named after their digests as
//! `blobs/sha256/<hex>`, as Docker 25 and later name them; a layer of a `docker save` archive
//! whose name carries no digest keeps a name of the form `layers/<n>/layer.tar`.
//!
//! The archive is a function of the image and the tag: member order is fixed (manifest, config,
//! layers), owners are 0, modes 0644 and every mtime is the given source date.

use std::collections::VecDeque;
use std::io::{self, Read};

use xspack_io::HashingReader;

use crate::{Digest, Error, Image};

const BLOCK: u64 = 512;

/// What a member holds.
#[derive(Debug, Clone)]
enum Content {
    Bytes(Vec<u8>),
    /// Layer `n`'s stored blob.
    Layer(usize),
}

#[derive(Debug, Clone)]
struct Member {
    name: String,
    size: u64,
    content: Content,
}

/// A `docker save` archive of one image, planned and ready to stream.
#[derive(Debug)]
pub struct DockerArchive<'a> {
    image: &'a Image,
    members: Vec<Member>,
    size: u64,
    mtime: u64,
}

/// Whether `tag` is a reference `docker load` accepts as a `RepoTags` entry: lower-case
/// repository path components and a tag (`name:tag`).
pub fn check_repo_tag(tag: &str) -> Result<(), String> {
    let (repo, version) =
        tag.rsplit_once(':').ok_or_else(|| format!("{tag:?} has no :tag (use name:tag)"))?;
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && c.as_bytes()[0].is_ascii_alphanumeric()
            && c.as_bytes()[c.len() - 1].is_ascii_alphanumeric()
    };
    if repo.is_empty() || !repo.split('/').all(component_ok) {
        return Err(format!(
            "{tag:?}: the repository must be lower-case letters, digits and . _ - between slashes"
        ));
    }
    let tag_ok = !version.is_empty()
        && version.len() <= 128
        && version.as_bytes()[0] != b'.'
        && version.as_bytes()[0] != b'-'
        && version.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !tag_ok {
        return Err(format!("{tag:?}: the tag must be 1 to 128 letters, digits, . _ -"));
    }
    Ok(())
}

fn blob_member(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

impl<'a> DockerArchive<'a> {
    /// Plans the archive of `image` tagged `repo_tag` (see [`check_repo_tag`]), every mtime
    /// `mtime`. Reads the config (checking its digest); layers are read only when streamed.
    pub fn new(image: &'a Image, repo_tag: &str, mtime: u64) -> Result<Self, Error> {
        check_repo_tag(repo_tag)
            .map_err(|reason| Error::Source { source_name: image.source.to_string(), reason })?;
        let config = image.config_bytes()?;
        let config_name = blob_member(&image.config_digest);
        let mut layers = Vec::with_capacity(image.layers.len());
        for layer in &image.layers {
            let name = match layer.digest {
                Some(d) => blob_member(&d),
                None => format!("layers/{}/layer.tar", layer.index + 1),
            };
            layers.push(Member { name, size: layer.size, content: Content::Layer(layer.index) });
        }
        let manifest = serde_json::json!([{
            "Config": config_name,
            "RepoTags": [repo_tag],
            "Layers": layers.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
        }]);
        let manifest = format!("{manifest}\n").into_bytes();
        let mut members = vec![
            Member {
                name: "manifest.json".into(),
                size: manifest.len() as u64,
                content: Content::Bytes(manifest),
            },
            Member {
                name: config_name,
                size: config.len() as u64,
                content: Content::Bytes(config),
            },
        ];
        // A layer blob shared by two layers is stored once.
        for layer in layers {
            if !members.iter().any(|m| m.name == layer.name) {
                members.push(layer);
            }
        }
        let size =
            members.iter().map(|m| BLOCK + m.size.div_ceil(BLOCK) * BLOCK).sum::<u64>() + 2 * BLOCK;
        Ok(DockerArchive { image, members, size, mtime })
    }

    /// The image archived.
    pub fn image(&self) -> &'a Image {
        self.image
    }

    /// The archive's length in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The member names, in archive order.
    pub fn member_names(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| m.name.as_str())
    }

    /// The archive as a stream of exactly [`size`](DockerArchive::size) bytes. A layer blob
    /// that is shorter, longer or of another digest than the image says fails the read with
    /// [`io::ErrorKind::InvalidData`], naming the layer.
    pub fn reader(&self) -> io::Result<ArchiveReader<'_>> {
        let mut pieces = VecDeque::new();
        for member in &self.members {
            let padding = vec![
                0;
                usize::try_from(member.size.div_ceil(BLOCK) * BLOCK - member.size)
                    .expect("below 512")
            ];
            let mut bytes = self.header(member)?.to_vec();
            match &member.content {
                Content::Bytes(data) => {
                    bytes.extend_from_slice(data);
                    bytes.extend_from_slice(&padding);
                    pieces.push_back(Piece::Bytes(io::Cursor::new(bytes)));
                }
                Content::Layer(index) => {
                    pieces.push_back(Piece::Bytes(io::Cursor::new(bytes)));
                    pieces.push_back(Piece::Layer(*index));
                    pieces.push_back(Piece::Bytes(io::Cursor::new(padding)));
                }
            }
        }
        pieces.push_back(Piece::Bytes(io::Cursor::new(vec![0; 1024])));
        Ok(ArchiveReader { archive: self, pieces })
    }

    fn header(&self, member: &Member) -> io::Result<[u8; 512]> {
        let mut h = tar::Header::new_ustar();
        h.set_path(&member.name)?;
        h.set_size(member.size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        Ok(*h.as_bytes())
    }
}

/// A stretch of the archive.
enum Piece {
    Bytes(io::Cursor<Vec<u8>>),
    /// Layer `n`'s blob, not opened yet.
    Layer(usize),
    /// Layer `n`'s blob being read.
    Open(usize, HashingReader<io::Take<Box<dyn Read + Send>>>),
}

/// Reads a [`DockerArchive`] front to back.
pub struct ArchiveReader<'a> {
    archive: &'a DockerArchive<'a>,
    pieces: VecDeque<Piece>,
}

impl std::fmt::Debug for ArchiveReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveReader").field("pieces", &self.pieces.len()).finish_non_exhaustive()
    }
}

fn invalid(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

impl ArchiveReader<'_> {
    /// Checks a blob read to its declared size: nothing more, and the digest the image gives.
    fn check_blob(
        &self,
        index: usize,
        reader: HashingReader<io::Take<Box<dyn Read + Send>>>,
    ) -> io::Result<()> {
        let layer = &self.archive.image.layers[index];
        let (take, digest, len) = reader.finish();
        if len != layer.size {
            return Err(invalid(format!(
                "{}: the blob ended after {len} of {} bytes",
                layer.label(),
                layer.size
            )));
        }
        let mut rest = take.into_inner();
        if rest.read(&mut [0u8; 1])? != 0 {
            return Err(invalid(format!(
                "{}: the blob is longer than {} bytes",
                layer.label(),
                layer.size
            )));
        }
        if let Some(expected) = layer.digest
            && expected.0 != digest
        {
            return Err(invalid(format!(
                "{}: the blob's digest is {}, not {expected}",
                layer.label(),
                Digest(digest)
            )));
        }
        Ok(())
    }
}

impl Read for ArchiveReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = match self.pieces.front_mut() {
                None => return Ok(0),
                Some(Piece::Bytes(cursor)) => cursor.read(buf)?,
                Some(piece @ Piece::Layer(_)) => {
                    let Piece::Layer(index) = *piece else { unreachable!("matched") };
                    let layer = &self.archive.image.layers[index];
                    let blob = self.archive.image.open_blob(layer).map_err(io::Error::other)?;
                    *piece = Piece::Open(index, HashingReader::new(blob.take(layer.size)));
                    continue;
                }
                Some(Piece::Open(_, reader)) => reader.read(buf)?,
            };
            if n > 0 {
                return Ok(n);
            }
            if let Some(Piece::Open(index, reader)) = self.pieces.pop_front() {
                self.check_blob(index, reader)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ImageSource;
    use camino::Utf8PathBuf;
    use xspack_testkit::{Compression, DockerLayout, ImageSpec};
    use xspack_testkit::{Entry, layer_tar};

    fn spec() -> ImageSpec {
        let base = layer_tar(&[Entry::dir("etc"), Entry::file("etc/hostname", "box\n")]);
        let top = layer_tar(&[Entry::file("srv/data", xspack_testkit::noise(3, 70_000))]);
        ImageSpec::new(vec![(base, Compression::Gzip), (top, Compression::Zstd)])
    }

    fn archive_of(image: &Image, tag: &str) -> Vec<u8> {
        let archive = DockerArchive::new(image, tag, 1_700_000_000).unwrap();
        let mut bytes = Vec::new();
        archive.reader().unwrap().read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, archive.size(), "the planned size is the size written");
        bytes
    }

    /// Every source layout round-trips: the archive opens as a docker archive with the same
    /// config digest, `diff_ids` and blobs.
    #[test]
    fn archives_reopen_with_the_same_identity() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8PathBuf::try_from(dir.path().to_path_buf()).unwrap();
        let spec = spec();
        spec.write_oci_dir(&dir.join("oci"), "latest").unwrap();
        spec.write_docker_archive(&dir.join("classic.tar"), "x:1", DockerLayout::Classic).unwrap();
        spec.write_docker_archive(&dir.join("blobs.tar"), "x:1", DockerLayout::Blobs).unwrap();
        for source in
            [format!("oci:{dir}/oci"), format!("{dir}/classic.tar"), format!("{dir}/blobs.tar")]
        {
            let image = Image::open(&ImageSource::parse(&source).unwrap()).unwrap();
            let bytes = archive_of(&image, "xspack/web:1");
            let out = dir.join("out.tar");
            std::fs::write(&out, &bytes).unwrap();
            let back =
                Image::open(&ImageSource::DockerArchive { path: out, reference: None }).unwrap();
            assert_eq!(back.config_digest, image.config_digest, "{source}");
            let ids = |i: &Image| i.layers.iter().map(|l| l.diff_id).collect::<Vec<_>>();
            assert_eq!(ids(&back), ids(&image), "{source}");
            for layer in &back.layers {
                back.read_layer(layer, |_, _| Ok::<(), Error>(())).unwrap();
            }
            assert!(bytes == archive_of(&image, "xspack/web:1"), "reproducible");
            let manifest: serde_json::Value = {
                let start = 512;
                let len = usize::try_from(
                    u64::from_str_radix(std::str::from_utf8(&bytes[124..135]).unwrap(), 8).unwrap(),
                )
                .unwrap();
                serde_json::from_slice(&bytes[start..start + len]).unwrap()
            };
            assert_eq!(manifest[0]["RepoTags"][0], "xspack/web:1");
        }
    }

    #[test]
    fn a_changed_blob_fails_the_read_naming_the_layer() {
        let dir = tempfile::tempdir().unwrap();
        let dir = Utf8PathBuf::try_from(dir.path().to_path_buf()).unwrap();
        spec().write_oci_dir(&dir, "latest").unwrap();
        let image = Image::open(&ImageSource::parse(&format!("oci:{dir}")).unwrap()).unwrap();
        let blob = dir.join(&image.layers[1].blob);
        let mut data = std::fs::read(&blob).unwrap();
        let last = data.len() - 1;
        data[last] ^= 1;
        std::fs::write(&blob, &data).unwrap();
        let archive = DockerArchive::new(&image, "a:b", 0).unwrap();
        let err = archive.reader().unwrap().read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().starts_with("layer 2 ("), "{err}");
        data.push(0);
        data[last] ^= 1;
        std::fs::write(&blob, &data).unwrap();
        let err = archive.reader().unwrap().read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
    }

    #[test]
    fn repo_tags_are_checked() {
        for good in ["mysql:8", "xspack/web:latest", "a.b/c_d-e:1.0-x"] {
            assert!(check_repo_tag(good).is_ok(), "{good}");
        }
        for bad in ["mysql", "MySQL:8", "web:", ":x", "a//b:1", "web:-x", "-a:1", "a:b c"] {
            assert!(check_repo_tag(bad).is_err(), "{bad}");
        }
    }
}
