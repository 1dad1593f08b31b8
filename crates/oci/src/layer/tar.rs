//! The tar stream of a layer as [`LayerEntry`]s: the `tar` crate walks it, every header passes
//! [`crate::tar_guard`] first, and pax records (`SCHILY.xattr.*`, fractional `mtime`) are read
//! by this module's own parser; names, link targets and xattrs are held to [`crate::limits`].

use std::io::{self, Read};

use xspack_io::HashingReader;

use crate::limits::{self, check_path, check_symlink, check_xattr, shown};
use crate::tar_guard::{ExtBodies, TarWatch};
use crate::{Digest, Error, pax};

use super::entry::{EntryKind, EntryMeta, LayerEntry};
use super::segment::SegmentReader;
use super::stream::{Checks, corrupt};

/// The tar stream of one pass: decompressed in sequence, or from the segments of a seek index
/// (which can skip what nobody reads).
pub(crate) enum TarStream<'a> {
    Piped(xspack_io::pipe::PipeReader),
    Segments(SegmentReader<'a>),
}

/// Parses the tar stream, visiting entries (up to `checks.last`), and hashes it when asked:
/// the number of entries, the digest and the bytes passed.
pub(crate) fn parse_tar<E: From<Error>>(
    tar: TarStream<'_>,
    checks: Checks,
    label: &str,
    visit: &mut impl FnMut(&LayerEntry, &mut dyn Read) -> Result<(), E>,
) -> Result<(u64, Digest, u64), E> {
    // Every header is inspected before the tar crate reads it (`tar_guard`).
    let watch = TarWatch::default();
    let tar: Box<dyn Read + Send + '_> = match tar {
        // Nothing to hash: entries nobody reads are skipped, undecoded where a whole segment
        // falls inside them.
        TarStream::Segments(segments) if !checks.diff_id => {
            let mut archive = tar::Archive::new(watch.wrap(segments));
            let entries = archive.entries_with_seek().map_err(|e| corrupt(label, &e))?;
            let seen = visit_entries(entries, &watch, checks, label, visit)?;
            let segments = archive.into_inner().into_inner();
            return Ok((seen, Digest(xspack_io::Sha256Digest([0; 32])), segments.pos));
        }
        TarStream::Segments(segments) => Box::new(segments),
        TarStream::Piped(piped) => Box::new(piped),
    };
    let mut reader = HashingReader::new(tar);
    let tar: &mut dyn Read = if checks.diff_id { &mut reader } else { reader.get_mut() };
    let seen = {
        let mut archive = tar::Archive::new(watch.wrap(&mut *tar));
        let entries = archive.entries().map_err(|e| corrupt(label, &e))?;
        visit_entries(entries, &watch, checks, label, visit)?
    };
    if checks.diff_id {
        // The tar end marker and any padding count towards the diff_id.
        io::copy(tar, &mut io::sink()).map_err(|e| corrupt(label, &e))?;
    }
    let (_, diff_id, tar_bytes) = reader.finish();
    Ok((seen, Digest(diff_id), tar_bytes))
}

/// Visits `entries` up to `checks.last`; the number seen. `watch` is the one whose reader the
/// entries come through.
pub(crate) fn visit_entries<R: Read, E: From<Error>>(
    entries: tar::Entries<'_, R>,
    watch: &TarWatch,
    checks: Checks,
    label: &str,
    visit: &mut impl FnMut(&LayerEntry, &mut dyn Read) -> Result<(), E>,
) -> Result<u64, E> {
    let mut seen = 0;
    for (index, entry) in entries.enumerate() {
        if checks.last.is_some_and(|last| index as u64 > last) {
            // The rest is proven by the blob digest the reader computes.
            break;
        }
        let mut entry = entry.map_err(|e| match watch.refusal() {
            Some(refusal) => Error::Entry {
                layer: label.to_owned(),
                entry: shown(&refusal.name),
                reason: format!("{} (at byte {} of the tar)", refusal.reason, refusal.offset),
            },
            None => corrupt(label, &e),
        })?;
        let bodies = watch.entry_started(&mut entry);
        seen += 1;
        let Some(parsed) = convert(&mut entry, &bodies, index as u64, label)? else {
            continue;
        };
        drop(bodies);
        visit(&parsed, &mut entry)?;
    }
    Ok(seen)
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

/// An entry's pax records, and those that say where its name, link target and data are.
pub(crate) struct PaxFields<'a> {
    pub(crate) records: Vec<pax::Record<'a>>,
    pub(crate) path: Option<&'a [u8]>,
    pub(crate) link: Option<&'a [u8]>,
    pub(crate) size: Option<&'a [u8]>,
}

impl<'a> PaxFields<'a> {
    /// Parses a pax header body (none: no records). A `path` or `linkpath` record longer than
    /// a path can be is refused even when a GNU long name overrides it, and so is a second
    /// `path`, `linkpath` or `size` record: readers disagree on which one counts (the tar
    /// crate takes the first, Go's `archive/tar` the last).
    pub(crate) fn parse(body: Option<&'a [u8]>) -> Result<Self, String> {
        let records = body.map(pax::records).transpose()?.unwrap_or_default();
        let mut fields = PaxFields { records: Vec::new(), path: None, link: None, size: None };
        for &(key, value) in &records {
            let (slot, what) = match key {
                b"path" => (&mut fields.path, "path"),
                b"linkpath" => (&mut fields.link, "linkpath"),
                b"size" => (&mut fields.size, "size"),
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(format!("two pax {what} records"));
            }
            if what != "size" && value.len() > limits::MAX_PATH {
                return Err(format!(
                    "a pax {what} record of {} bytes, more than the {} Linux allows (PATH_MAX \
                     less its NUL)",
                    value.len(),
                    limits::MAX_PATH
                ));
            }
        }
        fields.records = records;
        Ok(fields)
    }

    /// Sets what the records say of `meta`: xattrs, times, owner.
    pub(crate) fn apply(&self, meta: &mut EntryMeta) -> Result<(), String> {
        for &(key, value) in &self.records {
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                check_xattr(name, value)?;
                meta.xattrs.push((name.to_vec(), value.to_vec()));
            } else if key.starts_with(b"GNU.sparse.") {
                return Err("pax sparse files are not supported".into());
            } else {
                let number = || std::str::from_utf8(value).ok().and_then(|v| v.parse::<u32>().ok());
                match key {
                    b"mtime" => meta.mtime = pax_time(value).ok_or("bad pax mtime")?,
                    b"atime" => meta.atime = pax_time(value),
                    b"ctime" => meta.ctime = pax_time(value),
                    b"uid" => meta.uid = number().ok_or("bad pax uid")?,
                    b"gid" => meta.gid = number().ok_or("bad pax gid")?,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// A GNU long name or link body without its terminating NUL (and any padding after it).
pub(crate) fn trim_nuls(body: &[u8]) -> &[u8] {
    let end = body.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &body[..end]
}

/// Turns a tar entry, with the bodies of the extension headers before it, into a
/// [`LayerEntry`]; `None` for entries that carry nothing (pax global headers).
///
/// The name is the GNU long name, else the pax `path`, else the header's (ustar prefix and
/// name); the link target likewise from the GNU long link, `linkpath` or the header: the order
/// of GNU tar, Go's `archive/tar` and the `tar` crate. Each is checked against [`crate::limits`].
pub(crate) fn convert<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    bodies: &ExtBodies,
    index: u64,
    layer: &str,
) -> Result<Option<LayerEntry>, Error> {
    let header = entry.header();
    let entry_type = header.entry_type();
    if entry_type == tar::EntryType::XGlobalHeader {
        return Ok(None);
    }
    let fail = |path: &[u8], reason: String| Error::Entry {
        layer: layer.to_owned(),
        entry: shown(path),
        reason,
    };
    let recorded = header.path_bytes();
    let pax = PaxFields::parse(bodies.pax.as_deref()).map_err(|why| fail(&recorded, why))?;
    let path = match (&bodies.long_name, pax.path) {
        (Some(long), _) => trim_nuls(long).to_vec(),
        (None, Some(pax)) => pax.to_vec(),
        (None, None) => recorded.into_owned(),
    };
    let bad = |reason: String| fail(&path, reason);
    check_path("path", &path).map_err(bad)?;
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
    let kind = match entry_type {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            EntryKind::File
        }
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink | tar::EntryType::Link => {
            let target = match (&bodies.long_link, pax.link) {
                (Some(long), _) => trim_nuls(long).to_vec(),
                (None, Some(pax)) => pax.to_vec(),
                (None, None) => header
                    .link_name_bytes()
                    .ok_or_else(|| bad("link without a target".into()))?
                    .into_owned(),
            };
            if entry_type == tar::EntryType::Symlink {
                check_symlink(&target).map_err(bad)?;
                EntryKind::Symlink(target)
            } else {
                check_path("hard link target", &target).map_err(bad)?;
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
        other => {
            return Err(bad(format!("unsupported tar entry type {:?}", other.as_byte() as char)));
        }
    };
    if let Some(value) = pax.size {
        let size = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| bad("bad pax size".into()))?;
        // The tar crate found the next header by the size it read; it must be this one.
        if entry_type != tar::EntryType::GNUSparse && size != entry.size() {
            return Err(bad(format!(
                "pax size {size} is not the {} bytes the tar reader used (it cannot parse a \
                 record before it)",
                entry.size()
            )));
        }
    }
    pax.apply(&mut meta).map_err(bad)?;
    let size = if kind == EntryKind::File { entry.size() } else { 0 };
    Ok(Some(LayerEntry { index, path, kind, meta, size }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
