//! Dates of ECMA-119: the 7-byte recording date of directory records (9.1.5, also the short
//! form of Rock Ridge `TF`) and the 17-byte digit form of volume descriptors (8.4.26.1, also the
//! long form of `TF`).
//!
//! Everything is written in UTC (offset 0); calendar conversion is [`xspack_io::civil`].

use xspack_io::civil::{Civil, civil_from_unix, unix_from_civil};

/// Earliest time a directory record can hold: 1900-01-01T00:00:00Z.
pub(crate) const MIN_TIME: i64 = -2_208_988_800;
/// Latest time a directory record can hold: 2155-12-31T23:59:59Z.
pub(crate) const MAX_TIME: i64 = 5_869_583_999;

/// Whether `t` fits a 7-byte recording date.
pub(crate) fn in_range(t: i64) -> bool {
    (MIN_TIME..=MAX_TIME).contains(&t)
}

/// The 7-byte recording date (ECMA-119 9.1.5), in UTC. `t` must satisfy [`in_range`].
pub(crate) fn dir_date(t: i64) -> [u8; 7] {
    let c = civil_from_unix(t.clamp(MIN_TIME, MAX_TIME));
    let year = u8::try_from(c.year - 1900).unwrap_or(u8::MAX);
    [year, c.month, c.day, c.hour, c.minute, c.second, 0]
}

/// The 17-byte volume descriptor date (ECMA-119 8.4.26.1), in UTC, hundredths zero.
pub(crate) fn vd_date(t: i64) -> [u8; 17] {
    let c = civil_from_unix(t);
    let text = format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}00",
        c.year.clamp(1, 9999),
        c.month,
        c.day,
        c.hour,
        c.minute,
        c.second
    );
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(&text.as_bytes()[..16]);
    out
}

/// The "not specified" volume descriptor date: sixteen `0` digits and offset 0.
pub(crate) const VD_DATE_UNSET: [u8; 17] = *b"0000000000000000\0";

/// Applies a signed GMT offset in 15-minute units (valid range -48 to +52), as recorded.
fn apply_offset(local: i64, offset: u8) -> Option<i64> {
    let offset = i64::from(offset.cast_signed());
    (-48..=52).contains(&offset).then(|| local - offset * 15 * 60)
}

/// Parses a 7-byte recording date; `None` when it is invalid or unset.
pub(crate) fn parse_dir_date(b: &[u8]) -> Option<i64> {
    let b: &[u8; 7] = b.try_into().ok()?;
    let civil = Civil {
        year: 1900 + i64::from(b[0]),
        month: b[1],
        day: b[2],
        hour: b[3],
        minute: b[4],
        second: b[5],
    };
    apply_offset(unix_from_civil(civil)?, b[6])
}

/// Parses a 17-byte digit date; `None` when it is unset ("0000...") or invalid.
pub(crate) fn parse_vd_date(b: &[u8]) -> Option<i64> {
    let b: &[u8; 17] = b.try_into().ok()?;
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = std::str::from_utf8(&b[r]).ok()?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let year = digits(0..4)?;
    if year == 0 {
        return None;
    }
    let field = |r| digits(r).and_then(|v| u8::try_from(v).ok());
    let civil = Civil {
        year,
        month: field(4..6)?,
        day: field(6..8)?,
        hour: field(8..10)?,
        minute: field(10..12)?,
        second: field(12..14)?,
    };
    apply_offset(unix_from_civil(civil)?, b[16])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_dates() {
        // 2023-11-14T22:13:20Z, a common SOURCE_DATE_EPOCH.
        assert_eq!(&vd_date(1_700_000_000), b"2023111422132000\0");
        assert_eq!(dir_date(1_700_000_000), [123, 11, 14, 22, 13, 20, 0]);
        assert_eq!(dir_date(0), [70, 1, 1, 0, 0, 0, 0]);
        assert_eq!(dir_date(MIN_TIME), [0, 1, 1, 0, 0, 0, 0]);
        assert_eq!(dir_date(MAX_TIME), [255, 12, 31, 23, 59, 59, 0]);
        assert!(in_range(MIN_TIME) && in_range(MAX_TIME));
        assert!(!in_range(MIN_TIME - 1) && !in_range(MAX_TIME + 1));
        // 2000-02-29 is a leap day; 1900-02-29 is not.
        assert_eq!(parse_dir_date(&[100, 2, 29, 0, 0, 0, 0]), Some(951_782_400));
        assert_eq!(parse_dir_date(&[0, 2, 29, 0, 0, 0, 0]), None);
    }

    #[test]
    fn offsets_and_invalid_dates() {
        // 01:00 at GMT+1 (offset 4) is 00:00 UTC.
        assert_eq!(parse_dir_date(&[70, 1, 1, 1, 0, 0, 4]), Some(0));
        assert_eq!(parse_dir_date(&[70, 1, 1, 0, 0, 0, 53]), None);
        assert_eq!(parse_dir_date(&[70, 0, 1, 0, 0, 0, 0]), None);
        assert_eq!(parse_dir_date(&[70, 1, 1, 0, 0]), None);
        assert_eq!(parse_vd_date(&VD_DATE_UNSET), None);
        assert_eq!(parse_vd_date(b"2023111422132000\0"), Some(1_700_000_000));
        assert_eq!(parse_vd_date(b"2023x11422132000\0"), None);
        assert_eq!(parse_vd_date(b"2023131422132000\0"), None);
    }

    proptest! {
        #[test]
        fn round_trips(t in MIN_TIME..=MAX_TIME) {
            prop_assert_eq!(parse_dir_date(&dir_date(t)), Some(t));
            prop_assert_eq!(parse_vd_date(&vd_date(t)), Some(t));
        }

        #[test]
        fn civil_round_trips(t in -100_000_000_000i64..100_000_000_000) {
            prop_assert_eq!(unix_from_civil(civil_from_unix(t)), Some(t));
        }
    }
}
