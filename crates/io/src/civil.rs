//! UTC calendar dates of Unix seconds, for the date fields of the formats we write (ECMA-119
//! volume and directory dates, FAT directory entries, man pages).
//!
//! Conversion between Unix seconds and the proleptic Gregorian calendar counts days from
//! 0000-03-01 in 400-year eras of 146 097 days, so it is exact for every year and needs no tables.

/// Days in one 400-year Gregorian cycle.
const DAYS_PER_ERA: i64 = 146_097;
/// Days from 0000-03-01 to 1970-01-01.
const UNIX_EPOCH_DAY: i64 = 719_468;
const SECONDS_PER_DAY: i64 = 86_400;

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year (proleptic Gregorian; may be negative).
    pub year: i64,
    /// Month, 1 to 12.
    pub month: u8,
    /// Day of the month, 1 to 31.
    pub day: u8,
    /// Hour, 0 to 23.
    pub hour: u8,
    /// Minute, 0 to 59.
    pub minute: u8,
    /// Second, 0 to 59.
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
pub fn civil_from_unix(t: i64) -> Civil {
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
pub fn unix_from_civil(c: Civil) -> Option<i64> {
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

impl Civil {
    /// The date as `YYYY-MM-DD`.
    pub fn date_string(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    /// The time as an RFC 3339 UTC timestamp, `YYYY-MM-DDTHH:MM:SSZ`.
    pub fn rfc3339(&self) -> String {
        let (h, m, s) = (self.hour, self.minute, self.second);
        format!("{}T{h:02}:{m:02}:{s:02}Z", self.date_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let c = civil_from_unix(1_700_000_000);
        assert_eq!(
            (c.year, c.month, c.day, c.hour, c.minute, c.second),
            (2023, 11, 14, 22, 13, 20)
        );
        assert_eq!(c.date_string(), "2023-11-14");
        assert_eq!(c.rfc3339(), "2023-11-14T22:13:20Z");
        assert_eq!(civil_from_unix(4_102_444_799).rfc3339(), "2099-12-31T23:59:59Z");
        assert!(civil_from_unix(i64::MAX).year > 292_000_000_000, "no overflow at the far end");
        assert_eq!(civil_from_unix(0).date_string(), "1970-01-01");
        assert_eq!(civil_from_unix(11_016 * 86_400).date_string(), "2000-02-29");
        assert_eq!(civil_from_unix(-1).date_string(), "1969-12-31");
        assert_eq!(unix_from_civil(civil_from_unix(951_782_400)), Some(951_782_400));
        let mut bad = civil_from_unix(0);
        bad.month = 2;
        bad.day = 29;
        assert_eq!(unix_from_civil(bad), None, "1970 is not a leap year");
    }
}
