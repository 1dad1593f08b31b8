//! The header structure shared by the signature header and the main header, as rpm's
//! `headerExport` writes it after `headerReload` made it one immutable region (rpm 4.11.3
//! `lib/header.c`: `headerExport`, `regionSwab`; `lib/header_internal.h`: `entryInfo_s`; the
//! type codes and alignments of `rpmTagType` in `lib/rpmtag.h` and `typeAlign[]`):
//!
//! - a 16-byte preamble: magic `8e ad e8 01`, 4 reserved zero bytes, the entry count and the
//!   data size, big-endian;
//! - the index: 16-byte entries (tag, type, offset into the data, count), the region tag first
//!   and then the others sorted by tag;
//! - the data, each entry's value aligned to its type's size (2, 4 or 8 bytes) with zero bytes,
//!   in index order, and last the region trailer: one more 16-byte entry (the region tag,
//!   `RPM_BIN_TYPE`, minus the index size, 16) that the region tag's offset points to.
//!
//! Strings end with a NUL; string arrays are NUL-separated strings; `I18NSTRING` values are
//! stored as strings for the single locale `C` of `HEADERI18NTABLE`.

/// `RPM_INT16_TYPE` and friends (`rpmTagType`).
const TYPE_INT16: u32 = 3;
const TYPE_INT32: u32 = 4;
const TYPE_INT64: u32 = 5;
const TYPE_STRING: u32 = 6;
const TYPE_BIN: u32 = 7;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

/// The header magic and version 1, then four reserved bytes.
const MAGIC: [u8; 8] = [0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];
/// Size of the preamble and of one index entry.
pub(crate) const PREAMBLE_SIZE: usize = 16;
pub(crate) const ENTRY_SIZE: usize = 16;
/// The largest data store rpm reads (`hdrchkData` in `lib/header_internal.h`).
const MAX_DATA: usize = 0x0fff_ffff;

/// One tag's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Int16(Vec<u16>),
    Int32(Vec<u32>),
    Int64(Vec<u64>),
    Str(String),
    Bin(Vec<u8>),
    StrArray(Vec<String>),
    I18n(String),
}

impl Value {
    fn type_code(&self) -> u32 {
        match self {
            Value::Int16(_) => TYPE_INT16,
            Value::Int32(_) => TYPE_INT32,
            Value::Int64(_) => TYPE_INT64,
            Value::Str(_) => TYPE_STRING,
            Value::Bin(_) => TYPE_BIN,
            Value::StrArray(_) => TYPE_STRING_ARRAY,
            Value::I18n(_) => TYPE_I18NSTRING,
        }
    }

    fn align(&self) -> usize {
        match self {
            Value::Int16(_) => 2,
            Value::Int32(_) => 4,
            Value::Int64(_) => 8,
            _ => 1,
        }
    }

    fn count(&self) -> usize {
        match self {
            Value::Int16(v) => v.len(),
            Value::Int32(v) => v.len(),
            Value::Int64(v) => v.len(),
            Value::Str(_) | Value::I18n(_) => 1,
            Value::Bin(v) => v.len(),
            Value::StrArray(v) => v.len(),
        }
    }

    fn append(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int16(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_be_bytes())),
            Value::Int32(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_be_bytes())),
            Value::Int64(v) => v.iter().for_each(|x| out.extend_from_slice(&x.to_be_bytes())),
            Value::Str(s) | Value::I18n(s) => {
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            }
            Value::Bin(b) => out.extend_from_slice(b),
            Value::StrArray(v) => v.iter().for_each(|s| {
                out.extend_from_slice(s.as_bytes());
                out.push(0);
            }),
        }
    }
}

/// A header being assembled: tags and values, encoded by [`Header::encode`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Header {
    entries: Vec<(u32, Value)>,
}

/// An encoded header, and where each entry's value lies in it.
#[derive(Debug, Clone)]
pub(crate) struct Encoded {
    pub(crate) bytes: Vec<u8>,
    offsets: Vec<(u32, usize)>,
}

impl Encoded {
    /// Byte offset, within [`Encoded::bytes`], of `tag`'s value.
    pub(crate) fn value_offset(&self, tag: u32) -> Option<usize> {
        self.offsets.iter().find(|(t, _)| *t == tag).map(|(_, o)| *o)
    }
}

impl Header {
    /// Sets `tag` (replacing an earlier value). Empty arrays are left out: rpm refuses a
    /// count of zero.
    pub(crate) fn put(&mut self, tag: u32, value: Value) {
        self.entries.retain(|(t, _)| *t != tag);
        if value.count() > 0 {
            self.entries.push((tag, value));
        }
    }

    /// Encodes the header as the region `region_tag` (`HEADERIMMUTABLE` 63 for the main
    /// header, `HEADERSIGNATURES` 62 for the signature header). Fails, saying why, when the
    /// data is larger than rpm reads (256 MiB: a file list of millions of entries).
    pub(crate) fn encode(&self, region_tag: u32) -> Result<Encoded, String> {
        let mut entries: Vec<&(u32, Value)> = self.entries.iter().collect();
        entries.sort_by_key(|(t, _)| *t);
        let il = entries.len() + 1;
        let mut data = Vec::new();
        let mut index = Vec::with_capacity(il * ENTRY_SIZE);
        let mut offsets = Vec::with_capacity(entries.len());
        let data_start = PREAMBLE_SIZE + il * ENTRY_SIZE;
        for (tag, value) in entries {
            while data.len() % value.align() != 0 {
                data.push(0);
            }
            offsets.push((*tag, data_start + data.len()));
            push_entry(&mut index, *tag, value.type_code(), data.len(), value.count());
            value.append(&mut data);
        }
        // The region trailer: an entry whose (negative) offset spans the whole index.
        let trailer_at = data.len();
        if trailer_at + ENTRY_SIZE > MAX_DATA {
            return Err(format!(
                "the header would hold {trailer_at} bytes of data; rpm reads at most {MAX_DATA}"
            ));
        }
        // Cannot overflow: the data holds at least one byte per entry.
        let index_size = i32::try_from(il * ENTRY_SIZE).unwrap_or(i32::MAX);
        data.extend_from_slice(&region_tag.to_be_bytes());
        data.extend_from_slice(&TYPE_BIN.to_be_bytes());
        data.extend_from_slice(&(-index_size).to_be_bytes());
        data.extend_from_slice(&be32(ENTRY_SIZE));
        let mut region = Vec::with_capacity(ENTRY_SIZE);
        push_entry(&mut region, region_tag, TYPE_BIN, trailer_at, ENTRY_SIZE);

        let mut bytes = Vec::with_capacity(data_start + data.len());
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&be32(il));
        bytes.extend_from_slice(&be32(data.len()));
        bytes.extend_from_slice(&region);
        bytes.extend_from_slice(&index);
        bytes.extend_from_slice(&data);
        Ok(Encoded { bytes, offsets })
    }
}

/// A size or count as 4 big-endian bytes; [`Header::encode`] keeps them under `MAX_DATA`.
fn be32(n: usize) -> [u8; 4] {
    u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes()
}

fn push_entry(out: &mut Vec<u8>, tag: u32, typ: u32, offset: usize, count: usize) {
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&typ.to_be_bytes());
    out.extend_from_slice(&be32(offset));
    out.extend_from_slice(&be32(count));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_aligns_values_and_ends_with_the_region_trailer() {
        let mut h = Header::default();
        h.put(1000, Value::Str("ab".into()));
        h.put(1006, Value::Int32(vec![7]));
        h.put(1030, Value::Int16(vec![]));
        let e = h.encode(63).unwrap();
        let b = &e.bytes;
        assert_eq!(&b[..4], &[0x8e, 0xad, 0xe8, 0x01]);
        assert_eq!(u32::from_be_bytes(b[8..12].try_into().unwrap()), 3);
        // Data: "ab\0", one pad byte, the int, then the 16-byte trailer.
        assert_eq!(u32::from_be_bytes(b[12..16].try_into().unwrap()), 3 + 1 + 4 + 16);
        let data = PREAMBLE_SIZE + 3 * ENTRY_SIZE;
        assert_eq!(e.value_offset(1000), Some(data));
        assert_eq!(e.value_offset(1006), Some(data + 4));
        assert_eq!(e.value_offset(1030), None);
        assert_eq!(&b[data + 4..data + 8], &7u32.to_be_bytes());
        // The region entry points at the trailer, whose offset is minus the index size.
        assert_eq!(&b[16..20], &63u32.to_be_bytes());
        assert_eq!(u32::from_be_bytes(b[24..28].try_into().unwrap()), 8);
        assert_eq!(&b[data + 16..data + 20], &(-48i32).to_be_bytes());
        assert_eq!(b.len(), data + 24);
    }
}
