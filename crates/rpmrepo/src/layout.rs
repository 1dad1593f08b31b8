//! The byte layout in front of an RPM's payload, read and checked before anything parses it
//! (RPM v4 package format, rpm.org `docs/manual/format.md`, and the header structure of
//! `docs/manual/hregions.md`):
//!
//! - the 96-byte lead, starting with the magic `ed ab ee db`;
//! - the signature header, padded to a multiple of 8 bytes;
//! - the main header, ending where the payload starts.
//!
//! A header is a 16-byte preamble (magic `8e ad e8 01`, 4 reserved bytes, entry count, data
//! size), an index of 16-byte entries (tag, type, offset, count) and the data store. Every
//! count, size and offset is checked here, with rpm's own limits, so that a hostile or damaged
//! file becomes a typed error: the rpm crate trusts these numbers (it allocates what the
//! preamble says and slices the store at the offsets the index gives).

use std::io::{self, Read};

use camino::Utf8Path;

use crate::Error;
use crate::digest::hex;
use crate::header::HeaderRange;

/// The four magic bytes at the start of every RPM (the lead).
pub(crate) const LEAD_MAGIC: [u8; 4] = [0xed, 0xab, 0xee, 0xdb];
/// Size of the lead.
pub(crate) const LEAD_SIZE: usize = 96;
/// The header structure's magic and version 1.
const HEADER_MAGIC: [u8; 4] = [0x8e, 0xad, 0xe8, 0x01];
/// Size of a header preamble: magic, reserved, entry count, data size.
const PREAMBLE_SIZE: usize = 16;
/// Size of one index entry.
const INDEX_ENTRY_SIZE: usize = 16;
/// rpm's limits on a header (`hdrchkTags` and `hdrchkData` in rpm's `header_internal.h`).
const MAX_HEADER_ENTRIES: u32 = 0xffff;
const MAX_HEADER_DATA: u32 = 0x0fff_ffff;

/// The lead and both headers of an RPM, as read.
#[derive(Debug)]
pub(crate) struct Prefix {
    /// Bytes from the start of the file to the end of the main header.
    pub(crate) bytes: Vec<u8>,
    /// Offset of the main header.
    header_start: usize,
}

impl Prefix {
    /// The main header's bytes (what header digests and signatures cover).
    pub(crate) fn header(&self) -> &[u8] {
        &self.bytes[self.header_start..]
    }

    /// Where the main header lies in the file.
    pub(crate) fn header_range(&self) -> HeaderRange {
        HeaderRange { start: self.header_start as u64, end: self.bytes.len() as u64 }
    }
}

fn corrupt(path: &Utf8Path, reason: String) -> Error {
    Error::CorruptHeader { path: path.to_owned(), reason }
}

fn short_read(e: io::Error, path: &Utf8Path, what: &str) -> Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        Error::Truncated {
            path: path.to_owned(),
            reason: format!("the file ends inside the {what}"),
        }
    } else {
        Error::io("reading RPM headers", path, e)
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads the lead, checking its magic so non-RPM input gets a clear error.
fn read_lead(buf: &mut impl Read, path: &Utf8Path, out: &mut Vec<u8>) -> Result<(), Error> {
    let mut lead = [0u8; LEAD_SIZE];
    let mut filled = 0;
    while filled < LEAD_SIZE {
        match buf.read(&mut lead[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading RPM lead", path, e)),
        }
    }
    let not_rpm = |reason: String| Error::NotRpm { path: path.to_owned(), reason };
    if filled < LEAD_MAGIC.len() {
        return Err(not_rpm(format!("file too short ({filled} bytes)")));
    }
    if lead[..LEAD_MAGIC.len()] != LEAD_MAGIC {
        return Err(not_rpm(format!("lead magic is {}, expected edabeedb", hex(&lead[..4]))));
    }
    if filled < LEAD_SIZE {
        return Err(short_read(io::ErrorKind::UnexpectedEof.into(), path, "lead"));
    }
    out.extend_from_slice(&lead);
    Ok(())
}

/// Reads one header (preamble, index, store) onto `out` and checks every index entry.
fn read_header(
    buf: &mut impl Read,
    path: &Utf8Path,
    what: &str,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let mut preamble = [0u8; PREAMBLE_SIZE];
    buf.read_exact(&mut preamble).map_err(|e| short_read(e, path, what))?;
    if preamble[..4] != HEADER_MAGIC {
        return Err(corrupt(
            path,
            format!("{what} magic is {}, expected 8eade801", hex(&preamble[..4])),
        ));
    }
    let (entries, data) = (be32(&preamble[8..]), be32(&preamble[12..]));
    if entries == 0 || entries > MAX_HEADER_ENTRIES || data > MAX_HEADER_DATA {
        return Err(corrupt(
            path,
            format!("{what} claims {entries} entries and {data} data bytes"),
        ));
    }
    // Both bounded just above, so this cannot overflow.
    let index_len = entries as usize * INDEX_ENTRY_SIZE;
    let mut rest = vec![0u8; index_len + data as usize];
    buf.read_exact(&mut rest).map_err(|e| short_read(e, path, what))?;
    let (index, store) = rest.split_at(index_len);
    for (i, entry) in index.chunks_exact(INDEX_ENTRY_SIZE).enumerate() {
        check_entry(entry, store).map_err(|why| {
            corrupt(path, format!("{what} entry {i} (tag {}): {why}", be32(&entry[..4])))
        })?;
    }
    out.extend_from_slice(&preamble);
    out.extend_from_slice(&rest);
    Ok(())
}

/// Checks that an index entry's data lies inside the store, as rpm's `headerVerifyInfo` and
/// its data checks do.
fn check_entry(entry: &[u8], store: &[u8]) -> Result<(), &'static str> {
    let (kind, offset, count) = (be32(&entry[4..]), be32(&entry[8..]), be32(&entry[12..]));
    // The offset is signed on disk; a negative one reads as above MAX_HEADER_DATA here.
    let start = usize::try_from(offset).ok().filter(|&o| o <= store.len());
    let start = start.ok_or("offset outside the data store")?;
    let count = count as usize;
    let fixed = |size: usize| start.checked_add(count.checked_mul(size)?);
    let end = match kind {
        0 => Some(start),      // NULL
        1 | 2 | 7 => fixed(1), // CHAR, INT8, BIN
        3 => fixed(2),         // INT16
        4 => fixed(4),         // INT32
        5 => fixed(8),         // INT64
        6 | 8 | 9 => {
            // STRING, STRING_ARRAY, I18NSTRING: `count` NUL-terminated strings.
            let mut pos = start;
            for _ in 0..count {
                let nul = store.get(pos..).and_then(|s| s.iter().position(|&b| b == 0));
                pos += nul.ok_or("unterminated string")? + 1;
            }
            Some(pos)
        }
        _ => return Err("unknown data type"),
    };
    match end {
        Some(end) if end <= store.len() => Ok(()),
        _ => Err("data runs past the data store"),
    }
}

/// Reads and checks the lead, the signature header with its padding, and the main header.
/// The reader is left at the first payload byte.
pub(crate) fn read_prefix(buf: &mut impl Read, path: &Utf8Path) -> Result<Prefix, Error> {
    let mut bytes = Vec::new();
    read_lead(buf, path, &mut bytes)?;
    read_header(buf, path, "signature header", &mut bytes)?;
    // The signature header is padded to a multiple of 8 bytes (the lead's 96 already is).
    let mut padding = vec![0u8; (8 - bytes.len() % 8) % 8];
    buf.read_exact(&mut padding).map_err(|e| short_read(e, path, "signature header padding"))?;
    bytes.extend_from_slice(&padding);
    let header_start = bytes.len();
    read_header(buf, path, "header", &mut bytes)?;
    Ok(Prefix { bytes, header_start })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(bytes: &[u8]) -> Result<Prefix, Error> {
        read_prefix(&mut &bytes[..], Utf8Path::new("t.rpm"))
    }

    fn lead() -> Vec<u8> {
        let mut data = vec![0u8; LEAD_SIZE];
        data[..4].copy_from_slice(&LEAD_MAGIC);
        data
    }

    fn header(entries: &[[u32; 4]], store: &[u8]) -> Vec<u8> {
        let mut h = HEADER_MAGIC.to_vec();
        h.extend_from_slice(&[0; 4]);
        h.extend_from_slice(&u32::try_from(entries.len()).unwrap().to_be_bytes());
        h.extend_from_slice(&u32::try_from(store.len()).unwrap().to_be_bytes());
        for e in entries {
            for v in e {
                h.extend_from_slice(&v.to_be_bytes());
            }
        }
        h.extend_from_slice(store);
        h
    }

    #[test]
    fn short_and_foreign_input() {
        assert!(matches!(prefix(b""), Err(Error::NotRpm { .. })));
        assert!(matches!(prefix(b"\xed\xab"), Err(Error::NotRpm { .. })));
        let err = prefix(b"<?xml version=\"1.0\"?>").unwrap_err();
        assert!(err.to_string().starts_with("t.rpm: not an RPM package"), "{err}");
        assert!(matches!(prefix(&lead()[..50]), Err(Error::Truncated { .. })));
        assert!(matches!(prefix(&lead()), Err(Error::Truncated { .. })));
    }

    #[test]
    fn hostile_sizes_are_refused_before_allocation() {
        let mut data = lead();
        data.extend_from_slice(&HEADER_MAGIC);
        data.extend_from_slice(&[0; 4]);
        data.extend_from_slice(&u32::MAX.to_be_bytes());
        data.extend_from_slice(&u32::MAX.to_be_bytes());
        let err = prefix(&data).unwrap_err();
        assert!(err.to_string().contains("signature header claims"), "{err}");
    }

    #[test]
    fn entries_must_stay_inside_the_store() {
        let good = [1000, 6, 0, 1];
        let cases: [([u32; 4], &str); 5] = [
            ([1000, 6, 4, 1], "unterminated"),
            ([1000, 4, 2, 1], "runs past"),
            ([1000, 8, 0, 3], "unterminated"),
            ([1000, 4, u32::MAX, 1], "offset outside"),
            ([1000, 42, 0, 1], "unknown data type"),
        ];
        let mut ok = lead();
        ok.extend(header(&[good], b"abc\0"));
        ok.extend([0; 4]); // padding to 8 bytes
        ok.extend(header(&[[1000, 4, 0, 1]], b"\0\0\0\x05"));
        let p = prefix(&ok).unwrap();
        assert_eq!(p.header_range().start, 96 + 16 + 16 + 4 + 4);
        for (entry, want) in cases {
            let mut data = lead();
            data.extend(header(&[entry], b"abc\0"));
            let err = prefix(&data).unwrap_err();
            assert!(
                matches!(err, Error::CorruptHeader { .. }) && err.to_string().contains(want),
                "{err}"
            );
        }
    }
}
