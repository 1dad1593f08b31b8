//! Names of both hierarchies and the order of their directory records.
//!
//! - Primary identifiers (ECMA-119 7.5, 7.6, 10): d-characters only, `NAME.EXT;1` for files and
//!   `NAME` for directories, cut to the interchange level's lengths. Names are mangled one
//!   directory at a time, in byte order of the real names, and a collision replaces the end of
//!   the name with the smallest free decimal counter, so the result depends on the tree alone.
//! - Joliet identifiers: the real name in UCS-2 big-endian, checked against the Joliet limits.
//! - Record order (ECMA-119 9.3): by name, then extension, each compared as if the shorter were
//!   padded with spaces, then by version, descending. Joliet uses the same rule on UCS-2 code
//!   units, taking the text after the last `.` as the extension.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use crate::Error;
use crate::options::{IsoLevel, Joliet, is_d_char};

/// Most characters of name plus extension in a level 2 file identifier (ECMA-119 7.5.1).
const LEVEL2_FILE_CHARS: usize = 30;
/// Longest extension kept when a level 2 name must be shortened.
const LEVEL2_MAX_EXT: usize = 8;

/// A primary identifier split for mangling and sorting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrimaryName {
    pub name: String,
    pub ext: String,
    pub is_dir: bool,
}

impl PrimaryName {
    /// The recorded identifier: `NAME` for directories, `NAME.EXT;1` for files.
    pub(crate) fn identifier(&self) -> Vec<u8> {
        if self.is_dir {
            self.name.clone().into_bytes()
        } else {
            format!("{}.{};1", self.name, self.ext).into_bytes()
        }
    }

    /// Orders records by ECMA-119 9.3 (versions are all 1, so they never decide). Names are
    /// unique and hold no spaces, so the final comparison only makes the order total.
    pub(crate) fn ecma_cmp(&self, other: &Self) -> Ordering {
        padded_cmp(self.name.as_bytes(), other.name.as_bytes(), b' ')
            .then_with(|| padded_cmp(self.ext.as_bytes(), other.ext.as_bytes(), b' '))
            .then_with(|| (&self.name, &self.ext).cmp(&(&other.name, &other.ext)))
    }
}

/// Compares as if the shorter slice were padded with `pad` (ECMA-119 9.3).
fn padded_cmp<T: Ord + Copy>(a: &[T], b: &[T], pad: T) -> Ordering {
    let len = a.len().max(b.len());
    (0..len)
        .map(|i| a.get(i).copied().unwrap_or(pad).cmp(&b.get(i).copied().unwrap_or(pad)))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

fn d_chars(s: &str) -> String {
    s.chars().map(|c| c.to_ascii_uppercase()).map(|c| if is_d_char(c) { c } else { '_' }).collect()
}

fn truncated(s: &str, max: usize) -> String {
    // d_chars output is ASCII, so byte and char positions agree.
    s[..s.len().min(max)].to_string()
}

/// The unmangled primary form of one name, and the longest its name part may be.
fn primary_form(real: &str, is_dir: bool, level: IsoLevel) -> (PrimaryName, usize) {
    if is_dir {
        let max = level.max_dir_len();
        return (
            PrimaryName { name: truncated(&d_chars(real), max), ext: String::new(), is_dir },
            max,
        );
    }
    // The extension follows the last dot, unless that dot starts the name (".profile").
    let (base, ext) = match real.rfind('.') {
        Some(i) if i > 0 => (&real[..i], &real[i + 1..]),
        _ => (real, ""),
    };
    let (base, ext) = (d_chars(base), d_chars(ext));
    let (ext, max_name) = match level {
        IsoLevel::One => (truncated(&ext, 3), 8),
        IsoLevel::Two => {
            let ext = if base.len() + ext.len() > LEVEL2_FILE_CHARS {
                truncated(&ext, LEVEL2_MAX_EXT)
            } else {
                ext
            };
            let max_name = LEVEL2_FILE_CHARS - ext.len();
            (ext, max_name)
        }
    };
    (PrimaryName { name: truncated(&base, max_name), ext, is_dir }, max_name)
}

/// Primary names for the children of one directory, given as `(real name, is_dir)` in byte
/// order of the real names. Returns the names in the same order, unique within the directory.
pub(crate) fn primary_names<'a>(
    children: impl IntoIterator<Item = (&'a str, bool)>,
    level: IsoLevel,
) -> Vec<PrimaryName> {
    let mut taken = BTreeSet::new();
    let mut out = Vec::new();
    for (real, is_dir) in children {
        let (mut name, max_name) = primary_form(real, is_dir, level);
        let stem = name.name.clone();
        let mut counter = 0u64;
        // Files and directories share one namespace: "FOO" and "FOO.;1" look alike to readers.
        while !taken.insert((name.name.clone(), name.ext.clone())) {
            counter += 1;
            let suffix = counter.to_string();
            name.name =
                format!("{}{suffix}", truncated(&stem, max_name.saturating_sub(suffix.len())));
        }
        out.push(name);
    }
    out
}

/// Encodes a real name as a Joliet identifier (UCS-2 code units), or explains why it cannot be.
pub(crate) fn joliet_name(path: &str, real: &str, joliet: Joliet) -> Result<Vec<u16>, Error> {
    let bad = |reason: String| Error::JolietName { path: path.into(), reason };
    let max = joliet.max_name_len().unwrap_or(usize::MAX);
    let mut units = Vec::with_capacity(real.len());
    for c in real.chars() {
        let Ok(unit) = u16::try_from(u32::from(c)) else {
            return Err(bad(format!(
                "character U+{:04X} is outside the Basic Multilingual Plane that UCS-2 covers",
                u32::from(c)
            )));
        };
        if c < ' ' || "*/:;?\\".contains(c) {
            return Err(bad(format!("character {c:?} is not allowed in Joliet names")));
        }
        units.push(unit);
    }
    if units.len() > max {
        let variant = if joliet == Joliet::Standard { "Joliet" } else { "Joliet-long" };
        return Err(bad(format!(
            "{} characters exceed the {variant} limit of {max} (build without Joliet to keep it)",
            units.len()
        )));
    }
    Ok(units)
}

/// Orders Joliet records: ECMA-119 9.3 on UCS-2 code units, extension after the last dot.
pub(crate) fn joliet_cmp(a: &[u16], b: &[u16]) -> Ordering {
    fn split(units: &[u16]) -> (&[u16], &[u16]) {
        match units.iter().rposition(|&u| u == u16::from(b'.')) {
            Some(i) if i > 0 => (&units[..i], &units[i + 1..]),
            _ => (units, &[]),
        }
    }
    let (an, ae) = split(a);
    let (bn, be) = split(b);
    let space = u16::from(b' ');
    padded_cmp(an, bn, space).then_with(|| padded_cmp(ae, be, space)).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[(&str, bool)], level: IsoLevel) -> Vec<String> {
        primary_names(names.iter().copied(), level)
            .iter()
            .map(|n| String::from_utf8(n.identifier()).unwrap())
            .collect()
    }

    #[test]
    fn level1_mangling() {
        let got = ids(
            &[
                ("Mixed Case Name.txt", false),
                ("install.sh", false),
                ("repodata", true),
                ("XS-REPOSITORY", false),
                (".profile", false),
                ("archive.tar.gz", false),
                ("Packages", true),
            ],
            IsoLevel::One,
        );
        assert_eq!(
            got,
            [
                "MIXED_CA.TXT;1",
                "INSTALL.SH;1",
                "REPODATA",
                "XS_REPOS.;1",
                "_PROFILE.;1",
                "ARCHIVE_.GZ;1",
                "PACKAGES"
            ]
        );
    }

    #[test]
    fn collisions_get_counters() {
        let got = ids(
            &[
                ("README", false),
                ("Readme", false),
                ("readme", true),
                ("readme-long-1.txt", false),
                ("readme-long-2.txt", false),
            ],
            IsoLevel::One,
        );
        assert_eq!(got, ["README.;1", "README1.;1", "README2", "README_L.TXT;1", "README_1.TXT;1"]);
        let many: Vec<String> = (0..12).map(|i| format!("longname-{i:02}.rpm")).collect();
        let got = ids(&many.iter().map(|n| (n.as_str(), false)).collect::<Vec<_>>(), IsoLevel::One);
        assert_eq!(got[0], "LONGNAME.RPM;1");
        assert_eq!(got[10], "LONGNA10.RPM;1");
        assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 12);
    }

    #[test]
    fn level2_mangling() {
        let got = ids(
            &[
                ("demo-driver-1.0-1.x86_64.rpm", false),
                ("a-very-long-directory-name-beyond-31", true),
                ("name.with-a-very-long-extension-part", false),
            ],
            IsoLevel::Two,
        );
        assert_eq!(
            got,
            [
                "DEMO_DRIVER_1_0_1_X86_64.RPM;1",
                "A_VERY_LONG_DIRECTORY_NAME_BEYO",
                "NAME.WITH_A_V;1"
            ]
        );
    }

    #[test]
    fn ecma_order() {
        let mut names = primary_names(
            [("b", false), ("a.z", false), ("a", true), ("ab", false), ("a_", false)],
            IsoLevel::One,
        );
        names.sort_by(PrimaryName::ecma_cmp);
        let got: Vec<String> =
            names.iter().map(|n| String::from_utf8(n.identifier()).unwrap()).collect();
        // "A" (dir) and "A.Z;1" share the name A; the empty extension pads to a space and sorts first.
        assert_eq!(got, ["A", "A.Z;1", "AB.;1", "A_.;1", "B.;1"]);
    }

    #[test]
    fn joliet_names() {
        let ok = joliet_name("p", "Mixed Case é 中.txt", Joliet::Standard).unwrap();
        assert_eq!(ok.len(), 18);
        let err = joliet_name("p", "smile 😀", Joliet::Long).unwrap_err();
        assert_eq!(
            err.to_string(),
            "p: Joliet cannot record this name: character U+1F600 is outside the Basic Multilingual Plane that UCS-2 covers"
        );
        assert!(joliet_name("p", "a:b", Joliet::Long).is_err());
        assert!(joliet_name("p", "tab\t", Joliet::Long).is_err());
        assert!(joliet_name("p", &"x".repeat(64), Joliet::Standard).is_ok());
        assert!(joliet_name("p", &"x".repeat(65), Joliet::Standard).is_err());
        assert!(joliet_name("p", &"x".repeat(103), Joliet::Long).is_ok());
        let err = joliet_name("p", &"x".repeat(104), Joliet::Long).unwrap_err();
        assert!(err.to_string().contains("104 characters exceed the Joliet-long limit of 103"));
    }

    #[test]
    fn joliet_order_is_total() {
        let enc = |s: &str| s.encode_utf16().collect::<Vec<u16>>();
        let mut v = [enc("b"), enc("a "), enc("a"), enc("a.txt"), enc("Z"), enc("a.b.c")];
        v.sort_by(|a, b| joliet_cmp(a, b));
        let got: Vec<String> = v.iter().map(|u| String::from_utf16(u).unwrap()).collect();
        assert_eq!(got, ["Z", "a", "a ", "a.txt", "a.b.c", "b"]);
    }
}
