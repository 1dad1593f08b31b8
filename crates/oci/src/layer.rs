//! Streaming one layer: verify → decompress → tar entries.
//!
//! The stored blob is hashed as it is read (its `sha256` digest), decompressed by sniffing the
//! magic number (gzip `1f 8b`, zstd `28 b5 2f fd`, else a plain tar), and the decompressed
//! stream is hashed again (the config's `diff_id`). Both are checked after the last byte, so a
//! caller must treat what it saw as unverified until [`crate::Image::read_layer`] returns `Ok`.
//! Tar entries follow POSIX pax (`SCHILY.xattr.*` for xattrs, fractional `mtime`) and GNU
//! (long names, old sparse files) conventions as the `tar` crate decodes them.

use std::io::{self, BufRead, Read};

use flate2::read::MultiGzDecoder;
use xspack_io::HashingReader;

use crate::{Digest, Error, Image, LayerInfo};

/// What a layer entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file; its data follows.
    File,
    /// A directory.
    Dir,
    /// A symlink with this target, verbatim.
    Symlink(Vec<u8>),
    /// A hard link to this path (relative to the image root).
    Hardlink(Vec<u8>),
    /// A character device.
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A FIFO.
    Fifo,
}

/// Ownership, mode, times and xattrs of an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time: seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// Access time from pax, if recorded.
    pub atime: Option<(i64, u32)>,
    /// Change time from pax, if recorded.
    pub ctime: Option<(i64, u32)>,
    /// Extended attributes from `SCHILY.xattr.*` pax records, in archive order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One entry of a layer.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    /// Position in the layer's tar stream, from 0.
    pub index: u64,
    /// The path as recorded (not yet normalised).
    pub path: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// Ownership, mode, times, xattrs.
    pub meta: EntryMeta,
    /// Data size (regular files).
    pub size: u64,
}

/// Totals of one layer read.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerSummary {
    /// Entries seen.
    pub entries: u64,
    /// Bytes of the stored blob.
    pub stored_bytes: u64,
    /// Bytes of the uncompressed tar.
    pub tar_bytes: u64,
    /// `none`, `gzip` or `zstd`.
    pub compression: &'static str,
}

impl Image {
    /// Streams `layer`, calling `visit` with each entry and a reader of its data (which the
    /// visitor may leave unread). Fails if the blob digest, size or `diff_id` do not match, or
    /// the stream is corrupt.
    pub fn read_layer<E: From<Error>>(
        &self,
        layer: &LayerInfo,
        visit: impl FnMut(&LayerEntry, &mut dyn Read) -> Result<(), E>,
    ) -> Result<LayerSummary, E> {
        self.stream_layer(layer, Checks { blob: true, diff_id: true, last: None }, visit)
    }

    /// Like [`Image::read_layer`], for a layer already read once with `read_layer`, visiting
    /// the entries up to and including index `last`. One digest is enough to prove the bytes
    /// did not change since: the blob digest when the manifest records one (it covers the
    /// stored, usually compressed, bytes: fewer to hash, and hashed on the reading thread,
    /// beside decompression), else the `diff_id`. With the blob digest, nothing after entry
    /// `last` is decompressed: the digest of the stored bytes covers it.
    pub fn reread_layer<E: From<Error>>(
        &self,
        layer: &LayerInfo,
        last: u64,
        visit: impl FnMut(&LayerEntry, &mut dyn Read) -> Result<(), E>,
    ) -> Result<LayerSummary, E> {
        let blob = layer.digest.is_some();
        let checks = Checks { blob, diff_id: !blob, last: blob.then_some(last) };
        self.stream_layer(layer, checks, visit)
    }

    fn stream_layer<E: From<Error>>(
        &self,
        layer: &LayerInfo,
        checks: Checks,
        mut visit: impl FnMut(&LayerEntry, &mut dyn Read) -> Result<(), E>,
    ) -> Result<LayerSummary, E> {
        let label = layer.label();
        let blob = self.open_blob(layer)?;
        let (stored_writer, stored_reader) = xspack_io::pipe::pipe(PIPE_DEPTH);
        let (writer, reader) = xspack_io::pipe::pipe(PIPE_DEPTH);
        // Three threads share the cores: one reads the blob (hashing it when asked), one
        // decompresses, and this one hashes the tar when asked, parses it and visits.
        let (consumed, read, produced) = std::thread::scope(|s| {
            let reading = s.spawn(|| read_blob(blob, stored_writer, checks.blob));
            let decompressing = s.spawn(|| produce(stored_reader, writer, &label));
            let mut reader = HashingReader::new(reader);
            let consumed = (|| -> Result<u64, E> {
                let mut entries_seen = 0;
                let corrupt = |e: &dyn std::fmt::Display| Error::Layer {
                    layer: label.clone(),
                    reason: format!("corrupt layer: {e}"),
                };
                let tar: &mut dyn Read =
                    if checks.diff_id { &mut reader } else { reader.get_mut() };
                {
                    let mut archive = tar::Archive::new(&mut *tar);
                    let entries = archive.entries().map_err(|e| corrupt(&e))?;
                    for (index, entry) in entries.enumerate() {
                        if checks.last.is_some_and(|last| index as u64 > last) {
                            // The rest is proven by the blob digest the reader computes.
                            return Ok(entries_seen);
                        }
                        let mut entry = entry.map_err(|e| corrupt(&e))?;
                        entries_seen += 1;
                        let Some(parsed) = convert(&mut entry, index as u64, &label)? else {
                            continue;
                        };
                        visit(&parsed, &mut entry)?;
                    }
                }
                // The tar end marker and any padding count towards the diff_id.
                io::copy(tar, &mut io::sink()).map_err(|e| corrupt(&e))?;
                Ok(entries_seen)
            })();
            // Unblocks the producer if we stopped early.
            let (pipe, diff_id, tar_bytes) = reader.finish();
            drop(pipe);
            let consumed = consumed.map(|entries| (entries, Digest(diff_id), tar_bytes));
            let produced = decompressing.join().expect("the decompressor does not panic");
            (consumed, reading.join().expect("the blob reader does not panic"), produced)
        });
        // A read failure explains everything after it; a wrong size or digest explains a
        // decompression failure; that explains a truncated tar better than the tar error.
        let read = read.map_err(|e| Error::Layer {
            layer: label.clone(),
            reason: format!("reading the blob: {e}"),
        })?;
        check_blob(layer, &label, read.bytes, read.digest)?;
        let produced = produced?;
        if let Some(e) = produced.error {
            return Err(e.into());
        }
        let (entries, diff_id, tar_bytes) = consumed?;
        if checks.diff_id && diff_id != layer.diff_id {
            return Err(Error::DigestMismatch {
                what: label,
                kind: "diff_id",
                expected: layer.diff_id.to_string(),
                actual: diff_id.to_string(),
            }
            .into());
        }
        Ok(LayerSummary {
            entries,
            stored_bytes: read.bytes,
            tar_bytes,
            compression: produced.compression,
        })
    }
}

/// Which digests one pass over a layer computes.
#[derive(Debug, Clone, Copy)]
struct Checks {
    /// The blob digest, over the stored bytes (checked when the manifest records one).
    blob: bool,
    /// The `diff_id`, over the uncompressed tar.
    diff_id: bool,
    /// The last entry wanted, when the rest need not be decompressed (the blob digest covers
    /// it).
    last: Option<u64>,
}

/// Chunks in flight between two threads (256 KiB each).
const PIPE_DEPTH: usize = 8;

/// What the blob reader measured.
struct BlobRead {
    bytes: u64,
    /// The blob digest, when asked for.
    digest: Option<Digest>,
}

/// Reads the whole blob in chunks, hashing them when `digest`, and sends them on. When the
/// decompressor stops early the rest is still read, counted and hashed: a wrong size or digest
/// is the better diagnosis of a damaged blob than the decoding error it caused.
fn read_blob(
    mut blob: Box<dyn Read + Send>,
    mut out: xspack_io::pipe::PipeWriter,
    digest: bool,
) -> io::Result<BlobRead> {
    let mut hasher = digest.then(|| xspack_io::HashingWriter::new(io::sink()));
    let mut bytes = 0u64;
    let mut open = true;
    loop {
        let chunk = out.read_chunk(&mut blob)?;
        let filled = chunk.len();
        bytes += filled as u64;
        if let Some(h) = &mut hasher {
            io::Write::write_all(h, &chunk)?;
        }
        let end = filled < xspack_io::pipe::CHUNK;
        // Once the decompressor has stopped, the rest is only counted (and hashed).
        open = open && out.send_chunk(chunk).is_ok();
        if end {
            break;
        }
    }
    let _ = out.finish();
    Ok(BlobRead { bytes, digest: hasher.map(|h| Digest(h.finish().1)) })
}

/// What the producer thread measured.
struct Produced {
    compression: &'static str,
    /// Why decompressing failed, if it did (reported after the blob's size and digest).
    error: Option<Error>,
}

/// Decompresses the stored bytes by magic number and sends the tar on.
fn produce(
    mut stored: xspack_io::pipe::PipeReader,
    mut out: xspack_io::pipe::PipeWriter,
    label: &str,
) -> Result<Produced, Error> {
    let corrupt = |e: &dyn std::fmt::Display| Error::Layer {
        layer: label.to_owned(),
        reason: format!("corrupt layer: {e}"),
    };
    let (compression, error) = 'read: {
        let head = stored.fill_buf().map_err(|e| corrupt(&e))?;
        if head.is_empty() {
            // Not even the end-of-archive blocks of an empty tar: nothing a layer tool writes.
            let reason = "empty blob (0 bytes): not a tar archive, compressed or not".to_owned();
            break 'read ("none", Some(Error::Layer { layer: label.to_owned(), reason }));
        }
        let (mut decoder, compression): (Box<dyn Read + '_>, &'static str) =
            if head.starts_with(&[0x1f, 0x8b]) {
                (Box::new(MultiGzDecoder::new(&mut stored)), "gzip")
            } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                let zstd = zstd::stream::read::Decoder::with_buffer(&mut stored)
                    .map_err(|e| corrupt(&e))?;
                (Box::new(zstd), "zstd")
            } else {
                (Box::new(&mut stored), "none")
            };
        let copied = match copy_out(&mut decoder, &mut out) {
            Ok(()) => Ok(()),
            // The parser stopped early and will report why.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(corrupt(&e)),
        };
        drop(decoder);
        // Bytes after the compressed stream still belong to the blob; the reader hashes them.
        let drained = if copied.is_ok() {
            io::copy(&mut stored, &mut io::sink()).map(|_| ()).map_err(|e| corrupt(&e))
        } else {
            Ok(())
        };
        (compression, copied.and(drained).err())
    };
    // A closed reader here means the parser failed; its error is the one to report.
    let _ = out.finish();
    Ok(Produced { compression, error })
}

/// Decompresses into whole pipe chunks (no intermediate buffer).
fn copy_out(decoder: &mut dyn Read, out: &mut xspack_io::pipe::PipeWriter) -> io::Result<()> {
    loop {
        let chunk = out.read_chunk(decoder)?;
        let end = chunk.len() < xspack_io::pipe::CHUNK;
        out.send_chunk(chunk)?;
        if end {
            return Ok(());
        }
    }
}

/// Compares the blob as read with the size and digest the manifest records.
fn check_blob(
    layer: &LayerInfo,
    label: &str,
    stored_bytes: u64,
    stored: Option<Digest>,
) -> Result<(), Error> {
    let mismatch = |kind, expected: String, actual: String| Error::DigestMismatch {
        what: label.to_owned(),
        kind,
        expected,
        actual,
    };
    if stored_bytes != layer.size {
        return Err(mismatch("size", layer.size.to_string(), stored_bytes.to_string()));
    }
    if let (Some(want), Some(stored)) = (layer.digest, stored)
        && want != stored
    {
        return Err(mismatch("digest", want.to_string(), stored.to_string()));
    }
    Ok(())
}

/// A pax time: `seconds[.fraction]`, possibly negative.
fn pax_time(value: &[u8]) -> Option<(i64, u32)> {
    let text = std::str::from_utf8(value).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits =
        frac.as_bytes().iter().take(9).map(|b| u32::from(b - b'0')).collect::<Vec<_>>();
    digits.resize(9, 0);
    let nanos = digits.iter().fold(0u32, |acc, d| acc * 10 + d);
    Some((secs, nanos))
}

/// Turns a tar entry into a [`LayerEntry`]; `None` for entries that carry nothing (pax global
/// headers).
fn convert<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    index: u64,
    layer: &str,
) -> Result<Option<LayerEntry>, Error> {
    let path = entry.path_bytes().into_owned();
    let bad = |reason: String| Error::Entry {
        layer: layer.to_owned(),
        entry: String::from_utf8_lossy(&path).into_owned(),
        reason,
    };
    let header = entry.header();
    let mut meta = EntryMeta {
        mode: header.mode().map_err(|e| bad(format!("bad mode: {e}")))? & 0o7777,
        uid: u32::try_from(header.uid().map_err(|e| bad(format!("bad uid: {e}")))?)
            .map_err(|_| bad("uid above 2^32".into()))?,
        gid: u32::try_from(header.gid().map_err(|e| bad(format!("bad gid: {e}")))?)
            .map_err(|_| bad("gid above 2^32".into()))?,
        mtime: (
            i64::try_from(header.mtime().map_err(|e| bad(format!("bad mtime: {e}")))?)
                .unwrap_or(i64::MAX),
            0,
        ),
        ..EntryMeta::default()
    };
    let entry_type = header.entry_type();
    let kind = match entry_type {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            EntryKind::File
        }
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink | tar::EntryType::Link => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| bad("link without a target".into()))?
                .into_owned();
            if entry_type == tar::EntryType::Symlink {
                EntryKind::Symlink(target)
            } else {
                EntryKind::Hardlink(target)
            }
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            let major = header
                .device_major()
                .map_err(|e| bad(format!("bad device major: {e}")))?
                .unwrap_or(0);
            let minor = header
                .device_minor()
                .map_err(|e| bad(format!("bad device minor: {e}")))?
                .unwrap_or(0);
            if entry_type == tar::EntryType::Char {
                EntryKind::CharDev { major, minor }
            } else {
                EntryKind::BlockDev { major, minor }
            }
        }
        tar::EntryType::Fifo => EntryKind::Fifo,
        tar::EntryType::XGlobalHeader => return Ok(None),
        other => {
            return Err(bad(format!("unsupported tar entry type {:?}", other.as_byte() as char)));
        }
    };
    if let Some(pax) = entry.pax_extensions().map_err(|e| bad(format!("bad pax header: {e}")))? {
        for ext in pax {
            let ext = ext.map_err(|e| bad(format!("bad pax record: {e}")))?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                meta.xattrs.push((name.to_vec(), value.to_vec()));
            } else if key.starts_with(b"GNU.sparse.") {
                return Err(bad("pax sparse files are not supported".into()));
            } else {
                let number = || std::str::from_utf8(value).ok().and_then(|v| v.parse::<u32>().ok());
                match key {
                    b"mtime" => {
                        meta.mtime = pax_time(value).ok_or_else(|| bad("bad pax mtime".into()))?;
                    }
                    b"atime" => meta.atime = pax_time(value),
                    b"ctime" => meta.ctime = pax_time(value),
                    b"uid" => meta.uid = number().ok_or_else(|| bad("bad pax uid".into()))?,
                    b"gid" => meta.gid = number().ok_or_else(|| bad("bad pax gid".into()))?,
                    _ => {}
                }
            }
        }
    }
    let size = if kind == EntryKind::File { entry.size() } else { 0 };
    Ok(Some(LayerEntry { index, path, kind, meta, size }))
}

#[cfg(test)]
mod tests {
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
        let image = Image::open(&crate::ImageSource::OciDir {
            path: root,
            reference: Some("latest".into()),
        })
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

    /// A re-read visits entries up to `last` only, for every compression, and still proves the
    /// whole blob unchanged: a byte changed after the last entry wanted fails it.
    #[test]
    fn a_reread_stops_after_the_last_entry_and_still_checks_the_whole_blob() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let (dir, image) = layout(compression);
            image.read_layer(&image.layers[0], |_, _| -> Result<(), Error> { Ok(()) }).unwrap();
            assert_eq!(paths_visited(&image, 0).unwrap(), vec![b"etc/hostname".to_vec()]);
            assert_eq!(paths_visited(&image, 1).unwrap().len(), 2);
            let digest = image.layers[0].digest.unwrap().0.to_string();
            let hex = digest.trim_start_matches("sha256:");
            let blob = dir.path().join("oci/blobs/sha256").join(hex);
            let mut bytes = std::fs::read(&blob).unwrap();
            let at = bytes.len() - 2000;
            bytes[at] ^= 0x55;
            std::fs::write(&blob, &bytes).unwrap();
            let err = paths_visited(&image, 0).unwrap_err();
            assert!(
                matches!(&err, Error::DigestMismatch { kind: "digest", .. }),
                "{compression:?}: {err}"
            );
        }
    }

    #[test]
    fn pax_times() {
        assert_eq!(pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(pax_time(b"1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(pax_time(b"-1.000000001"), Some((-1, 1)));
        assert_eq!(pax_time(b"12.1234567891234"), Some((12, 123_456_789)));
        assert_eq!(pax_time(b"x"), None);
        assert_eq!(pax_time(b"1.x"), None);
    }
}
