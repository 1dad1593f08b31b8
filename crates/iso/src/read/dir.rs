//! Splitting a directory extent into directory records (ECMA-119 9.1), checking every length.
//!
//! A record never crosses a sector boundary (6.8.1.1): a zero length byte means the rest of the
//! sector is padding. The identifier and System Use field are bounded by the record length, as
//! Linux's `do_isofs_readdir` (`fs/isofs/dir.c`) requires ("Corrupted directory entry"). The
//! both-byte-order fields (7.2.3, 7.3.3: extent, data length, volume sequence number) must
//! hold the same value in both halves: Linux reads the little-endian half, libisofs (xorriso)
//! compares them, so a disagreement means two readers see two different files.

use crate::bytes::get_u32_le;
use crate::layout::RECORD_BASE;
use crate::{Error, SECTOR_SIZE};

const SECTOR: usize = 2048;
/// Smallest record: the fixed part and a one-byte identifier.
const MIN_RECORD: usize = RECORD_BASE + 1;

/// ECMA-119 9.1.6 file flags.
pub(crate) const FLAG_DIRECTORY: u8 = 0x02;
pub(crate) const FLAG_ASSOCIATED: u8 = 0x04;
pub(crate) const FLAG_MULTI_EXTENT: u8 = 0x80;

/// One directory record, as recorded.
#[derive(Debug, Clone)]
pub(crate) struct RawRecord {
    /// Byte offset of the record in the image.
    pub offset: u64,
    pub extent: u32,
    pub size: u32,
    pub date: [u8; 7],
    pub flags: u8,
    /// Extended attribute record length, interleave unit size and gap: all 0 when supported.
    pub unusual: bool,
    pub ident: Vec<u8>,
    pub system_use: Vec<u8>,
}

impl RawRecord {
    /// Whether this is the `.` (0x00) or `..` (0x01) record.
    pub(crate) fn is_self_or_parent(&self) -> bool {
        self.ident == [0] || self.ident == [1]
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.flags & FLAG_DIRECTORY != 0
    }
}

/// Parses one record from the start of `rec` (which is at most the rest of its sector).
pub(crate) fn parse_record(rec: &[u8], offset: u64, dir_path: &str) -> Result<RawRecord, Error> {
    let bad = |reason: String| Error::BadRecord { path: dir_path.into(), offset, reason };
    let len = usize::from(*rec.first().ok_or_else(|| bad("empty record".into()))?);
    if len < MIN_RECORD {
        return Err(bad(format!("length {len} is below the minimum {MIN_RECORD}")));
    }
    let rec =
        rec.get(..len).ok_or_else(|| bad(format!("length {len} crosses a sector boundary")))?;
    let ident_len = usize::from(rec[32]);
    let ident_end = RECORD_BASE + ident_len;
    if ident_len == 0 || ident_end > len {
        return Err(bad(format!("identifier length {ident_len} does not fit a record of {len}")));
    }
    for (field, at, width) in
        [("extent", 2, 4), ("data length", 10, 4), ("volume sequence number", 28, 2)]
    {
        let le = rec[at..at + width].iter().rev().fold(0u32, |v, &b| (v << 8) | u32::from(b));
        let be = rec[at + width..at + 2 * width].iter().fold(0u32, |v, &b| (v << 8) | u32::from(b));
        if le != be {
            return Err(bad(format!(
                "{field} is {le} in little-endian and {be} in big-endian byte order"
            )));
        }
    }
    let system_use_start = (ident_end + usize::from(ident_len.is_multiple_of(2))).min(len);
    let mut date = [0u8; 7];
    date.copy_from_slice(&rec[18..25]);
    Ok(RawRecord {
        offset,
        extent: get_u32_le(rec, 2).unwrap_or(0),
        size: get_u32_le(rec, 10).unwrap_or(0),
        date,
        flags: rec[25],
        unusual: rec[1] != 0 || rec[26] != 0 || rec[27] != 0,
        ident: rec[RECORD_BASE..ident_end].to_vec(),
        system_use: rec[system_use_start..].to_vec(),
    })
}

/// Parses all records of a directory extent read from byte `base` of the image. More than
/// `max_records` records is [`Error::LimitExceeded`] with `limit` (the reader's entry limit),
/// found before they are all held in memory.
pub(crate) fn parse_extent(
    data: &[u8],
    base: u64,
    dir_path: &str,
    max_records: usize,
    limit: u64,
) -> Result<Vec<RawRecord>, Error> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        if data[pos] == 0 {
            pos = (pos / SECTOR + 1) * SECTOR;
            continue;
        }
        if out.len() >= max_records {
            return Err(Error::LimitExceeded {
                path: dir_path.into(),
                what: "number of entries",
                limit,
            });
        }
        let sector_end = ((pos / SECTOR + 1) * SECTOR).min(data.len());
        let rec = parse_record(&data[pos..sector_end], base + pos as u64, dir_path)?;
        pos += usize::from(data[pos]);
        out.push(rec);
    }
    Ok(out)
}

/// Byte range of an extent, or `None` when it overflows.
pub(crate) fn extent_range(extent: u32, size: u64) -> Option<(u64, u64)> {
    let start = u64::from(extent).checked_mul(SECTOR_SIZE)?;
    Some((start, start.checked_add(size)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ident: &[u8], su: &[u8]) -> Vec<u8> {
        let len = RECORD_BASE + ident.len() + usize::from(ident.len().is_multiple_of(2)) + su.len();
        let mut r = vec![0u8; len];
        r[0] = u8::try_from(len).unwrap();
        r[2..6].copy_from_slice(&7u32.to_le_bytes());
        r[6..10].copy_from_slice(&7u32.to_be_bytes());
        r[10..14].copy_from_slice(&9u32.to_le_bytes());
        r[14..18].copy_from_slice(&9u32.to_be_bytes());
        r[32] = u8::try_from(ident.len()).unwrap();
        r[33..33 + ident.len()].copy_from_slice(ident);
        let su_at = len - su.len();
        r[su_at..].copy_from_slice(su);
        r
    }

    #[test]
    fn parses_records_and_skips_sector_padding() {
        let mut data = record(&[0], b"");
        data.extend(record(b"AB.;1", b"NM\x05\x01\x00"));
        data.resize(SECTOR, 0);
        data.extend(record(b"NEXT", b""));
        data.resize(2 * SECTOR, 0);
        let recs = parse_extent(&data, 4096, "d", 9, 9).unwrap();
        assert_eq!(recs.len(), 3);
        assert!(recs[0].is_self_or_parent());
        assert_eq!((recs[1].extent, recs[1].size), (7, 9));
        assert_eq!(recs[1].system_use, b"NM\x05\x01\x00");
        assert_eq!(recs[2].offset, 4096 + 2048);
        assert_eq!(recs[2].ident, b"NEXT");
        let err = parse_extent(&data, 4096, "d", 2, 7).unwrap_err();
        assert_eq!(err.to_string(), "d: number of entries exceeds the limit of 7");
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut short = record(b"A", b"");
        short[0] = 20;
        let err = parse_extent(&short, 0, "d", 9, 9).unwrap_err();
        assert_eq!(
            err.to_string(),
            "d: bad directory record at byte 0: length 20 is below the minimum 34"
        );
        let mut overrun = record(b"A", b"");
        overrun[32] = 9;
        assert!(parse_extent(&overrun, 0, "d", 9, 9).is_err());
        let mut zero_ident = record(b"A", b"");
        zero_ident[32] = 0;
        assert!(parse_extent(&zero_ident, 0, "d", 9, 9).is_err());
        // A record running past the end of its sector (the slice given).
        let err = parse_record(&record(b"LONGER", b"")[..36], 0, "d").unwrap_err();
        assert!(err.to_string().contains("length 40 crosses a sector boundary"));
        let mut halves = record(b"A", b"");
        halves[17] = 8;
        let err = parse_extent(&halves, 0, "d", 9, 9).unwrap_err();
        assert!(err.to_string().contains("data length is 9 in little-endian and 8 in big-endian"));
        assert_eq!(extent_range(u32::MAX, u64::MAX), None);
        assert_eq!(extent_range(2, 5), Some((4096, 4101)));
    }
}
