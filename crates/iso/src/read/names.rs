//! Names and types of entries as recorded: primary identifiers without their version, Joliet
//! UCS-2 identifiers, Rock Ridge names checked for traversal, and the entry type from the
//! record flags and Rock Ridge `PX`/`SL`.

use super::dir::RawRecord;
use super::entry::EntryKind;
use super::susp::SystemUse;
use crate::Error;

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFSOCK: u32 = 0o140_000;

/// The type of an entry from its record flags and Rock Ridge `PX`/`SL`.
pub(super) fn kind_of(
    rec: &RawRecord,
    su: &SystemUse,
    rock_ridge: bool,
    path: &str,
) -> Result<EntryKind, Error> {
    let bad = |reason: &str| Error::BadSusp { path: path.into(), reason: reason.into() };
    let Some(px) = su.px else {
        if rock_ridge {
            // RRIP 4.1.1: PX is mandatory on every record of a Rock Ridge tree; libisofs
            // refuses a record without it.
            return Err(bad("no PX entry, which Rock Ridge requires on every record"));
        }
        return Ok(if rec.is_dir() {
            EntryKind::Dir
        } else if su.symlink.is_some() {
            EntryKind::Symlink
        } else {
            EntryKind::File
        });
    };
    // RRIP 4.1.1: the file type is one of POSIX's seven; libisofs refuses the rest ("Mandatory
    // Rock Ridge PX entry is not present or it contains invalid values").
    let kind = match px.mode & S_IFMT {
        S_IFDIR => EntryKind::Dir,
        S_IFREG => EntryKind::File,
        S_IFLNK => EntryKind::Symlink,
        S_IFIFO | S_IFCHR | S_IFBLK | S_IFSOCK => EntryKind::Special,
        other => return Err(bad(&format!("PX file type {other:o} is not a POSIX file type"))),
    };
    if (kind == EntryKind::Dir) != rec.is_dir() {
        return Err(bad("PX file type disagrees with the directory flag"));
    }
    if (kind == EntryKind::Symlink) != su.symlink.is_some() {
        return Err(bad("a symlink needs both a PX symlink mode and an SL entry"));
    }
    Ok(kind)
}

pub(super) fn check_name(name: &str, special: bool) -> Result<(), &'static str> {
    if special || name == "." || name == ".." {
        return Err("`.` or `..` used as a name");
    }
    if name.is_empty() {
        return Err("empty");
    }
    if name.contains('/') || name.contains('\0') {
        return Err("contains `/` or NUL");
    }
    Ok(())
}

/// A primary identifier without its `;version` and, for files, a trailing `.`.
pub(super) fn primary_name(ident: &[u8], is_dir: bool) -> Vec<u8> {
    if is_dir {
        return ident.to_vec();
    }
    let base = ident.iter().rposition(|&b| b == b';').map_or(ident, |i| &ident[..i]);
    base.strip_suffix(b".").unwrap_or(base).to_vec()
}

/// A Joliet identifier (UCS-2 big-endian) as UTF-8 bytes, without `;version`. Unpaired
/// surrogates and an odd length become U+FFFD, which UTF-8 validation then accepts.
pub(super) fn joliet_name(ident: &[u8]) -> Vec<u8> {
    let units: Vec<u16> =
        ident.chunks(2).map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])).collect();
    let text = String::from_utf16_lossy(&units);
    let base = text.rsplit_once(';').map_or(text.as_str(), |(b, _)| b);
    base.as_bytes().to_vec()
}

pub(super) fn ascii_field(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim_end_matches([' ', '\0']).to_string()
}

pub(super) fn ucs2_field(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&joliet_name(bytes)).trim_end_matches([' ', '\0']).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(primary_name(b"INSTALL.SH;1", false), b"INSTALL.SH");
        assert_eq!(primary_name(b"README.;1", false), b"README");
        assert_eq!(primary_name(b"NOVERSION", false), b"NOVERSION");
        assert_eq!(primary_name(b"DIR.X", true), b"DIR.X");
        assert_eq!(joliet_name(b"\0a\0b\0;\x001"), b"ab");
        assert_eq!(joliet_name(b"\xd8\x00\0a"), "\u{fffd}a".as_bytes());
        assert_eq!(joliet_name(b"\0a\0"), "a\u{0}".as_bytes());
        assert_eq!(ucs2_field(b"\0L\0A\0B\0 \0 "), "LAB");
        assert!(check_name("ok name", false).is_ok());
        for bad in ["", ".", "..", "a/b", "nul\0"] {
            assert!(check_name(bad, false).is_err(), "{bad:?}");
        }
        assert!(check_name("x", true).is_err());
    }
}
