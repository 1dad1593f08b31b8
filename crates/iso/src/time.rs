//! Dates of ECMA-119: the 7-byte recording date of directory records (9.1.5, also the short
//! form of Rock Ridge `TF`) and the 17-byte digit form of volume descriptors (8.4.26.1, also the
//! long form of `TF`).
//!
//! Everything is written in UTC (offset 0). Conversion between Unix seconds and the proleptic
//! Gregorian calendar counts days from 0000-03-01 in 400-year eras of 146 097 days, so it is exact
//! for every year and needs no tables.

/// Days in one 400-year Gregorian cycle.
const DAYS_PER_ERA: i64 = 146_097;
/// Days from 0000-03-01 to 1970-01-01.
const UNIX_EPOCH_DAY: i64 = 719_468;
const SECONDS_PER_DAY: i64 = 86_400;

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Civil {
    pub year: i64,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

/// Days since 1970-01-01 of a Gregorian date (month 1 to 12).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    // Count years from March so that the leap day ends the year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (i64::from(month) + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_ERA + day_of_era - UNIX_EPOCH_DAY
}

/// Splits Unix seconds into a UTC calendar date and time of day.
pub(crate) fn civil_from_unix(t: i64) -> Civil {
    let days = t.div_euclid(SECONDS_PER_DAY);
    let secs = t.rem_euclid(SECONDS_PER_DAY);
    let z = days + UNIX_EPOCH_DAY;
    let era = z.div_euclid(DAYS_PER_ERA);
    let day_of_era = z - era * DAYS_PER_ERA;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // All narrowed values are bounded by the calendar arithmetic above.
    Civil {
        year,
        month: narrow(month),
        day: narrow(day),
        hour: narrow(secs / 3600),
        minute: narrow(secs / 60 % 60),
        second: narrow(secs % 60),
    }
}

fn narrow(v: i64) -> u8 {
    u8::try_from(v).unwrap_or(0)
}

/// Unix seconds of a UTC calendar time, or `None` when a field is out of range.
pub(crate) fn unix_from_civil(c: Civil) -> Option<i64> {
    let days_in_month = match c.month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if c.year % 4 == 0 && (c.year % 100 != 0 || c.year % 400 == 0) => 29,
        2 => 28,
        _ => return None,
    };
    if c.day == 0 || c.day > days_in_month || c.hour > 23 || c.minute > 59 || c.second > 59 {
        return None;
    }
    let days = days_from_civil(c.year, c.month, c.day);
    Some(
        days * SECONDS_PER_DAY
            + i64::from(c.hour) * 3600
            + i64::from(c.minute) * 60
            + i64::from(c.second),
    )
}

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
        let c = civil_from_unix(1_700_000_000);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (2023, 11, 14, 22, 13, 20)
        );
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
