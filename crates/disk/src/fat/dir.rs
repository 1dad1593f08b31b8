//! Directory entries (FAT specification section 6), long-name entries (section 7), short names
//! derived from long names (section 7.4, numeric tails) and DOS timestamps (section 6.3).

use std::collections::HashSet;

use crate::bytes::{put, put_le16, put_le32};

use super::FatError;

/// Attribute of a file that changed since the last backup; set on every file we write, as
/// `mcopy` and Windows do.
pub(crate) const ATTR_ARCHIVE: u8 = 0x20;
pub(crate) const ATTR_DIRECTORY: u8 = 0x10;
pub(crate) const ATTR_VOLUME_ID: u8 = 0x08;
/// `READ_ONLY | HIDDEN | SYSTEM | VOLUME_ID`: marks a long-name entry.
const ATTR_LONG_NAME: u8 = 0x0F;
/// Set in the order byte of the last (first stored) long-name entry.
const LAST_LONG_ENTRY: u8 = 0x40;
/// UTF-16 code units per long-name entry.
const LFN_UNITS: usize = 13;
/// Longest long name, in UTF-16 code units.
const MAX_LFN_UNITS: usize = 255;
/// Byte offsets of the 13 name units inside a long-name entry.
const LFN_OFFSETS: [usize; LFN_UNITS] = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
/// A short name: 8 name bytes and 3 extension bytes, space-padded.
pub(crate) type ShortName = [u8; 11];
/// The label stored when there is none.
pub(crate) const NO_NAME: ShortName = *b"NO NAME    ";

/// A DOS date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DosTime {
    pub date: u16,
    pub time: u16,
    /// Hundredths of a second past the 2-second `time`, 0 to 199.
    pub hundredths: u8,
}

/// 1980-01-01T00:00:00Z, the DOS epoch.
const DOS_EPOCH: u64 = 315_532_800;
/// 2107-12-31T23:59:59Z, the last DOS time.
const DOS_END: u64 = 4_354_819_199;

impl DosTime {
    /// The UTC time `epoch` seconds after 1970, clamped to the DOS range.
    pub fn from_epoch(epoch: u64) -> Self {
        let t = epoch.clamp(DOS_EPOCH, DOS_END);
        let secs = t % 86_400;
        let c = xspack_io::civil::civil_from_unix(i64::try_from(t).expect("clamped to 2107"));
        let (year, month, day) = (c.year.unsigned_abs(), u64::from(c.month), u64::from(c.day));
        let date = ((year - 1980) << 9) | (month << 5) | day;
        let time = (secs / 3600) << 11 | (secs / 60 % 60) << 5 | (secs % 60 / 2);
        DosTime {
            date: u16::try_from(date).expect("years 1980 to 2107"),
            time: u16::try_from(time).expect("a time of day"),
            hundredths: u8::try_from(secs % 2 * 100).expect("0 or 100"),
        }
    }
}

/// A 32-byte short entry.
pub(crate) fn short_entry(
    name: &ShortName,
    attr: u8,
    cluster: u32,
    size: u32,
    t: DosTime,
) -> [u8; 32] {
    let mut e = [0u8; 32];
    put(&mut e, 0, name);
    e[11] = attr;
    e[13] = t.hundredths;
    put_le16(&mut e, 14, t.time);
    put_le16(&mut e, 16, t.date);
    put_le16(&mut e, 18, t.date);
    let [lo, hi] = [cluster & 0xFFFF, cluster >> 16].map(|v| u16::try_from(v).expect("16 bits"));
    put_le16(&mut e, 20, hi);
    put_le16(&mut e, 22, t.time);
    put_le16(&mut e, 24, t.date);
    put_le16(&mut e, 26, lo);
    put_le32(&mut e, 28, size);
    e
}

/// The checksum of a short name that every long-name entry of it carries (section 7.2).
pub(crate) fn lfn_checksum(name: &ShortName) -> u8 {
    name.iter().fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// Entries a long name takes, before its short entry.
pub(crate) fn lfn_count(name: &str) -> usize {
    name.encode_utf16().count().div_ceil(LFN_UNITS)
}

/// The long-name entries of `name` in the order they are stored (last part first).
pub(crate) fn lfn_entries(name: &str, short: &ShortName) -> Vec<[u8; 32]> {
    let mut units: Vec<u16> = name.encode_utf16().collect();
    let count = units.len().div_ceil(LFN_UNITS);
    if units.len() < count * LFN_UNITS {
        // NUL-terminated, then padded with 0xFFFF.
        units.push(0);
        units.resize(count * LFN_UNITS, 0xFFFF);
    }
    let checksum = lfn_checksum(short);
    (1..=count)
        .rev()
        .map(|n| {
            let mut e = [0u8; 32];
            e[0] =
                u8::try_from(n).expect("at most 20") | if n == count { LAST_LONG_ENTRY } else { 0 };
            e[11] = ATTR_LONG_NAME;
            e[13] = checksum;
            for (unit, &at) in units[(n - 1) * LFN_UNITS..].iter().zip(&LFN_OFFSETS) {
                put_le16(&mut e, at, *unit);
            }
            e
        })
        .collect()
}

/// Checks that `name` can be a long file name.
pub(crate) fn check_long_name(name: &str) -> Result<(), FatError> {
    let invalid = |why| Err(FatError::InvalidName { name: name.to_owned(), why });
    if name.is_empty() || name == "." || name == ".." {
        return invalid("empty, `.` or `..`");
    }
    if name.encode_utf16().count() > MAX_LFN_UNITS {
        return invalid("longer than 255 UTF-16 code units");
    }
    if name.ends_with(['.', ' ']) {
        return invalid("ends with a dot or a space");
    }
    if name.chars().any(|c| c < ' ' || c == '\x7f' || "\"*/:<>?\\|".contains(c)) {
        return invalid("contains a control character or one of \" * / : < > ? \\ |");
    }
    Ok(())
}

/// Whether `c` may appear in a short name (section 6.1), other than a letter or digit.
fn short_special(c: u8) -> bool {
    b"$%'-_@~`!(){}^#&".contains(&c)
}

fn short_char(c: u8) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || short_special(c)
}

/// `name` as a short name if it already is a valid one: upper case, 1–8 characters, and an
/// optional extension of 1–3.
pub(crate) fn exact_short(name: &str) -> Option<ShortName> {
    let (base, ext) = name.split_once('.').unwrap_or((name, ""));
    let ok = |part: &str, max| part.len() <= max && part.bytes().all(short_char);
    if base.is_empty() || !ok(base, 8) || !ok(ext, 3) || (name.contains('.') && ext.is_empty()) {
        return None;
    }
    let mut short = [b' '; 11];
    short[..base.len()].copy_from_slice(base.as_bytes());
    short[8..8 + ext.len()].copy_from_slice(ext.as_bytes());
    Some(short)
}

/// Assigns the short names of one directory's entries. Names that are valid short names are
/// kept as they are (and need no long name); the others get the upper-cased name if that is a
/// valid short name still free, or else a numeric-tail name `BASIS~N.EXT`.
pub(crate) fn assign_short_names(names: &[&str]) -> Vec<(ShortName, bool)> {
    let mut taken: HashSet<ShortName> = names.iter().filter_map(|n| exact_short(n)).collect();
    names
        .iter()
        .map(|name| {
            if let Some(short) = exact_short(name) {
                return (short, false);
            }
            if let Some(short) = exact_short(&name.to_ascii_uppercase())
                && name.is_ascii()
                && taken.insert(short)
            {
                return (short, true);
            }
            (numeric_tail(name, &mut taken), true)
        })
        .collect()
}

/// The section 7.4 basis name with the first free `~N` tail.
fn numeric_tail(name: &str, taken: &mut HashSet<ShortName>) -> ShortName {
    let lossy = |s: &str| -> Vec<u8> {
        s.chars()
            .filter(|&c| c != ' ' && c != '.')
            .map(|c| {
                let u = c.to_ascii_uppercase();
                if u.is_ascii() && short_char(u as u8) { u as u8 } else { b'_' }
            })
            .collect()
    };
    let trimmed = name.trim_start_matches('.');
    let (base, ext) = trimmed.rsplit_once('.').unwrap_or((trimmed, ""));
    let mut base = lossy(base);
    let mut ext = lossy(ext);
    base.truncate(8);
    ext.truncate(3);
    if base.is_empty() {
        base.push(b'_');
    }
    for n in 1u32.. {
        let tail = format!("~{n}");
        let keep = base.len().min(8 - tail.len());
        let mut short = [b' '; 11];
        short[..keep].copy_from_slice(&base[..keep]);
        short[keep..keep + tail.len()].copy_from_slice(tail.as_bytes());
        short[8..8 + ext.len()].copy_from_slice(&ext);
        if taken.insert(short) {
            return short;
        }
    }
    unreachable!("a directory has at most 65536 entries")
}

/// The volume label as stored, upper-cased and space-padded.
pub(crate) fn label_bytes(label: &str) -> Result<ShortName, FatError> {
    let bad = |why| FatError::BadLabel { label: label.to_owned(), why };
    if label.is_empty() {
        return Ok(NO_NAME);
    }
    if label.len() > 11 {
        return Err(bad("longer than 11 characters"));
    }
    let upper = label.to_ascii_uppercase();
    if label.starts_with(' ') || !upper.bytes().all(|c| c == b' ' || short_char(c)) {
        return Err(bad("only letters, digits, spaces and $%'-_@~`!(){}^#& are allowed"));
    }
    let mut stored = [b' '; 11];
    stored[..upper.len()].copy_from_slice(upper.as_bytes());
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed DOS date and time of the given fields (section 6.3).
    fn packed(y: u16, mo: u16, d: u16, h: u16, mi: u16, s: u16) -> (u16, u16) {
        (((y - 1980) << 9) | (mo << 5) | d, (h << 11) | (mi << 5) | (s / 2))
    }

    #[test]
    fn dos_times() {
        let date_time = |t: DosTime| (t.date, t.time);
        let t = DosTime::from_epoch(1_700_000_000);
        assert_eq!(date_time(t), packed(2023, 11, 14, 22, 13, 20));
        assert_eq!(t.hundredths, 0);
        assert_eq!(DosTime::from_epoch(1_700_000_001).hundredths, 100);
        // Before 1980 and after 2107 clamp to the range.
        assert_eq!(date_time(DosTime::from_epoch(0)), packed(1980, 1, 1, 0, 0, 0));
        assert_eq!(date_time(DosTime::from_epoch(u64::MAX)), packed(2107, 12, 31, 23, 59, 59));
        // A leap day: 2024-02-29T00:00:00Z.
        assert_eq!(date_time(DosTime::from_epoch(1_709_164_800)), packed(2024, 2, 29, 0, 0, 0));
    }

    #[test]
    fn short_names() {
        assert_eq!(&exact_short("BOOTX64.EFI").unwrap(), b"BOOTX64 EFI");
        assert_eq!(&exact_short("EFI").unwrap(), b"EFI        ");
        for not in ["bootx64.efi", "A.B.C", "TOOLONGNAME", "X.ABCD", ".X", "X.", "A B", "A+B"] {
            assert!(exact_short(not).is_none(), "{not}");
        }
        let names = [
            "BOOT",
            "boot.cfg",
            "Long File Name.txt",
            "LONGFI~1.TXT",
            "long file name.TXT",
            ".hidden",
            "ünï",
        ];
        let got: Vec<_> = assign_short_names(&names)
            .into_iter()
            .map(|(s, lfn)| (String::from_utf8(s.to_vec()).unwrap(), lfn))
            .collect();
        let want = [
            ("BOOT       ", false),
            ("BOOT    CFG", true),
            ("LONGFI~2TXT", true), // ~1 is a real file's name
            ("LONGFI~1TXT", false),
            ("LONGFI~3TXT", true),
            ("HIDDEN~1   ", true),
            ("_N_~1      ", true), // ü and ï become _
        ];
        let want: Vec<_> = want.iter().map(|&(s, l)| (s.to_owned(), l)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn long_name_entries() {
        let short = *b"LONGFI~1TXT";
        let entries = lfn_entries("Long File Name.txt", &short);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0][0], 0x42, "second part, stored first, flagged last");
        assert_eq!(entries[1][0], 0x01);
        assert!(entries.iter().all(|e| e[11] == 0x0F && e[13] == lfn_checksum(&short)));
        // Part 2 holds "e.txt", the NUL and 0xFFFF padding.
        assert_eq!(&entries[0][1..11], b"e\0.\0t\0x\0t\0");
        assert_eq!(&entries[0][14..18], &[0, 0, 0xFF, 0xFF]);
        assert_eq!(&entries[0][28..32], &[0xFF; 4]);
        // Exactly 13 units: no terminator.
        let full = lfn_entries("abcdefghijklm", &short);
        assert_eq!((full.len(), full[0][30]), (1, b'm'));
        assert_eq!(lfn_count("abcdefghijklmn"), 2);
    }

    #[test]
    fn name_and_label_checks() {
        for bad in ["", ".", "..", "a/b", "a:b", "trailing.", "trailing ", "tab\t"] {
            assert!(check_long_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_long_name(&"x".repeat(256)).is_err());
        check_long_name("ok name+with,=;[] chars.tar.gz").unwrap();
        assert_eq!(&label_bytes("esp").unwrap(), b"ESP        ");
        assert_eq!(label_bytes("").unwrap(), NO_NAME);
        assert!(label_bytes("waytoolonglabel").is_err());
        assert!(label_bytes("a.b").is_err());
    }

    #[test]
    fn entry_fields() {
        let t = DosTime::from_epoch(1_700_000_001);
        let e = short_entry(b"A          ", ATTR_ARCHIVE, 0x0012_3456, 99, t);
        assert_eq!(e[11], 0x20);
        assert_eq!(e[13], 100);
        assert_eq!(e[20..22], [0x12, 0]);
        assert_eq!(e[26..28], [0x56, 0x34]);
        assert_eq!(e[28..32], [99, 0, 0, 0]);
        // The checksum of section 7.2, computed by hand for "A          ".
        let mut sum = 0u8;
        for &b in b"A          " {
            sum = (if sum & 1 == 1 { 0x80u8 } else { 0 }).wrapping_add(sum >> 1).wrapping_add(b);
        }
        assert_eq!(lfn_checksum(b"A          "), sum);
    }
}
