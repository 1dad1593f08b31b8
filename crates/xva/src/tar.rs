//! Tar headers of an XVA, as xapi's importer reads them.
//!
//! The writer emits POSIX ustar headers (POSIX.1-1988, `magic "ustar\0"`, `version "00"`,
//! typeflag `'0'`) with names under 100 bytes and no PAX or GNU extension records; xapi itself
//! writes V7 headers (`xapi-project/xen-api:ocaml/xapi-aux/tar_helpers.ml`, ocaml-tar's
//! default `compatibility_level`). The reader refuses every header xapi's tar library,
//! `mirage/ocaml-tar` 2.x (`lib/tar.ml`, `Header.unmarshal`), refuses: the checksum is the
//! *unsigned* byte sum (`Header.checksum`; the signed sum of old tars is not accepted), and the
//! numeric fields `mode`, `uid`, `gid`, `size`, `mtime`, `chksum` (and `devmajor`, `devminor`
//! when the magic starts with `ustar`) are octal after NULs are taken as spaces and the ends
//! trimmed (`unmarshal_int`, `unmarshal_int64`). The `prefix` field is joined on whenever the
//! magic starts with `ustar` (POSIX and GNU alike), as ocaml-tar does.

/// Size of a tar block.
pub(crate) const BLOCK: usize = 512;
/// Longest member name the writer emits: the ustar `name` field is 100 bytes and we never use
/// `prefix` or a terminating-NUL-less full field.
pub(crate) const MAX_NAME: usize = 99;
/// Largest value the 11 octal digits of `size` and `mtime` can hold.
pub(crate) const MAX_OCTAL_11: u64 = 0o777_7777_7777;

const NAME: std::ops::Range<usize> = 0..100;
const MODE: std::ops::Range<usize> = 100..108;
const UID: std::ops::Range<usize> = 108..116;
const GID: std::ops::Range<usize> = 116..124;
const SIZE: std::ops::Range<usize> = 124..136;
const MTIME: std::ops::Range<usize> = 136..148;
const CHKSUM: std::ops::Range<usize> = 148..156;
/// Numeric fields ocaml-tar parses in every header, with their names.
const NUMERIC: [(&str, std::ops::Range<usize>); 4] =
    [("mode", MODE), ("uid", UID), ("gid", GID), ("mtime", MTIME)];
const TYPEFLAG: usize = 156;
const MAGIC: std::ops::Range<usize> = 257..263;
const VERSION: std::ops::Range<usize> = 263..265;
const UNAME: std::ops::Range<usize> = 265..297;
const GNAME: std::ops::Range<usize> = 297..329;
const DEVMAJOR: std::ops::Range<usize> = 329..337;
const DEVMINOR: std::ops::Range<usize> = 337..345;
const PREFIX: std::ops::Range<usize> = 345..500;

/// Mode of every member (xapi reads none; it writes 0400 itself).
const FILE_MODE: u64 = 0o644;

/// Number of zero bytes that pad a member of `size` bytes to a whole block.
pub(crate) fn padding(size: u64) -> usize {
    let rem = usize::try_from(size % BLOCK as u64).expect("below 512");
    (BLOCK - rem) % BLOCK
}

/// Writes `value` as zero-padded octal filling `field` but its last byte, which is NUL.
fn put_octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    assert_eq!(text.len(), digits, "value {value} too large for a {}-byte field", field.len());
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
}

/// A ustar header for a regular file. The caller guarantees `name` is ASCII-safe and at most
/// [`MAX_NAME`] bytes, and that `size` and `mtime` are at most [`MAX_OCTAL_11`].
pub(crate) fn ustar_header(name: &str, size: u64, mtime: u64) -> [u8; BLOCK] {
    assert!(name.len() <= MAX_NAME && !name.is_empty(), "member name {name:?}");
    let mut h = [0u8; BLOCK];
    h[NAME][..name.len()].copy_from_slice(name.as_bytes());
    put_octal(&mut h[MODE], FILE_MODE);
    put_octal(&mut h[UID], 0);
    put_octal(&mut h[GID], 0);
    put_octal(&mut h[SIZE], size);
    put_octal(&mut h[MTIME], mtime);
    h[TYPEFLAG] = b'0';
    h[MAGIC].copy_from_slice(b"ustar\0");
    h[VERSION].copy_from_slice(b"00");
    h[UNAME][..4].copy_from_slice(b"root");
    h[GNAME][..4].copy_from_slice(b"root");
    put_octal(&mut h[DEVMAJOR], 0);
    put_octal(&mut h[DEVMINOR], 0);
    // The checksum is computed with its own field as spaces, then written as six octal digits,
    // NUL and space (the layout GNU tar and ocaml-tar both write).
    h[CHKSUM].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[CHKSUM].copy_from_slice(text.as_bytes());
    h
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    /// Member name (with the ustar prefix joined on), lossily decoded.
    pub name: String,
    /// Data size in bytes.
    pub size: u64,
    /// Type flag.
    pub typeflag: u8,
}

/// Why a header block was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HeaderProblem {
    Checksum { name: String },
    Field { name: String, field: &'static str },
}

fn c_string(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Parses an octal field: optional leading spaces, digits, then NUL or space terminators.
fn parse_octal(field: &[u8]) -> Option<u64> {
    let text = field.iter().skip_while(|&&b| b == b' ');
    let mut value: u64 = 0;
    let mut seen_digit = false;
    let mut ended = false;
    for &b in text {
        match b {
            b'0'..=b'7' if !ended => {
                value = value.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
                seen_digit = true;
            }
            0 | b' ' => ended = true,
            _ => return None,
        }
    }
    seen_digit.then_some(value)
}

/// Whether a block is all zeros (an end-of-archive block).
pub(crate) fn is_zero_block(block: &[u8; BLOCK]) -> bool {
    block.iter().all(|&b| b == 0)
}

/// Whether ocaml-tar parses `field` as a number: NULs count as spaces, leading and trailing
/// blanks are trimmed (OCaml's `String.trim`), and what is left is octal digits, or nothing
/// (which it reads as 0). Underscores, which OCaml's `int_of_string` would also take, are
/// refused.
fn ocaml_tar_number(field: &[u8]) -> bool {
    let blank = |b: &u8| matches!(b, 0 | b' ' | b'\t' | b'\n' | b'\r' | 0x0c);
    let start = field.iter().position(|b| !blank(b)).unwrap_or(field.len());
    let end = field.iter().rposition(|b| !blank(b)).map_or(start, |i| i + 1);
    field[start..end].iter().all(|b| (b'0'..=b'7').contains(b))
}

/// Parses a non-zero header block, verifying its checksum and numeric fields.
pub(crate) fn parse_header(h: &[u8; BLOCK]) -> Result<Header, HeaderProblem> {
    let mut name = c_string(&h[NAME]);
    let ustar = h[MAGIC].starts_with(b"ustar");
    if ustar {
        // ocaml-tar joins with `Filename.concat`: no second `/` after a prefix ending in one.
        let prefix = c_string(&h[PREFIX]);
        if name.is_empty() {
            name = prefix;
        } else if !prefix.is_empty() {
            let sep = if prefix.ends_with('/') { "" } else { "/" };
            name = format!("{prefix}{sep}{name}");
        }
    }
    let recorded = parse_octal(&h[CHKSUM])
        .ok_or_else(|| HeaderProblem::Field { name: name.clone(), field: "chksum" })?;
    let unsigned: u64 = h
        .iter()
        .enumerate()
        .map(|(i, &b)| if CHKSUM.contains(&i) { u64::from(b' ') } else { u64::from(b) })
        .sum();
    if recorded != unsigned {
        return Err(HeaderProblem::Checksum { name });
    }
    let size = parse_octal(&h[SIZE])
        .ok_or_else(|| HeaderProblem::Field { name: name.clone(), field: "size" })?;
    let dev = [("devmajor", DEVMAJOR), ("devminor", DEVMINOR)];
    let fields = NUMERIC.iter().chain(dev.iter().filter(|_| ustar));
    if let Some((field, _)) = fields.into_iter().find(|(_, r)| !ocaml_tar_number(&h[r.clone()])) {
        return Err(HeaderProblem::Field { name, field });
    }
    Ok(Header { name, size, typeflag: h[TYPEFLAG] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_ustar_fields() {
        let h = ustar_header("Ref:3/00000000", 1 << 20, 0o1234);
        assert_eq!(&h[..14], b"Ref:3/00000000");
        assert_eq!(&h[MODE], b"0000644\0");
        assert_eq!(&h[SIZE], b"00004000000\0");
        assert_eq!(&h[MTIME], b"00000001234\0");
        assert_eq!(&h[MAGIC], b"ustar\0");
        assert_eq!(&h[VERSION], b"00");
        assert_eq!(h[TYPEFLAG], b'0');
        assert_eq!(h[CHKSUM.end - 2..CHKSUM.end], *b"\0 ");
        let parsed = parse_header(&h).unwrap();
        assert_eq!(parsed, Header { name: "Ref:3/00000000".into(), size: 1 << 20, typeflag: b'0' });
    }

    #[test]
    fn any_flipped_byte_breaks_the_checksum_or_a_field() {
        let h = ustar_header("ova.xml", 100, 0);
        for i in 0..BLOCK {
            let mut bad = h;
            bad[i] ^= 0x01;
            assert!(parse_header(&bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn honours_prefix_and_old_formats() {
        let mut h = ustar_header("00000001", 5, 0);
        h[PREFIX][..5].copy_from_slice(b"Ref:9");
        h[CHKSUM].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        h[CHKSUM].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        assert_eq!(parse_header(&h).unwrap().name, "Ref:9/00000001");
    }

    fn refix(h: &mut [u8; BLOCK]) {
        h[CHKSUM].fill(b' ');
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        h[CHKSUM].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }

    #[test]
    fn signed_checksums_are_refused_as_ocaml_tar_does() {
        // A byte above 0x7f makes the signed and unsigned sums differ.
        let mut h = ustar_header("ova.xml", 100, 0);
        h[UNAME][10] = 0xe9;
        let signed: i64 = h
            .iter()
            .enumerate()
            .map(|(i, &b)| if CHKSUM.contains(&i) { 32 } else { i64::from(b.cast_signed()) })
            .sum();
        h[CHKSUM].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
        assert_eq!(parse_header(&h), Err(HeaderProblem::Checksum { name: "ova.xml".into() }));
        refix(&mut h);
        assert!(parse_header(&h).is_ok());
    }

    #[test]
    fn numeric_fields_must_be_octal() {
        for (field, range) in
            NUMERIC.into_iter().chain([("devmajor", DEVMAJOR), ("devminor", DEVMINOR)])
        {
            let mut h = ustar_header("ova.xml", 100, 0);
            h[range.start + 2] = b'9';
            refix(&mut h);
            assert_eq!(
                parse_header(&h),
                Err(HeaderProblem::Field { name: "ova.xml".into(), field })
            );
            // Empty, or padded with spaces and NULs, is what ocaml-tar reads as 0: accepted.
            h[range.clone()].fill(0);
            h[range.start + 1] = b' ';
            refix(&mut h);
            assert!(parse_header(&h).is_ok(), "{field}");
        }
        // Without the ustar magic, devmajor and devminor are not parsed (V7 has none).
        let mut h = ustar_header("ova.xml", 100, 0);
        h[MAGIC].fill(0);
        h[VERSION].fill(0);
        h[DEVMAJOR].copy_from_slice(b"zzzzzzz\0");
        refix(&mut h);
        assert!(parse_header(&h).is_ok());
        assert!(ocaml_tar_number(b" \t017\0\n"));
        assert!(!ocaml_tar_number(b"0 17"));
        assert!(!ocaml_tar_number(b"1_7"));
    }

    #[test]
    fn gnu_magic_joins_the_prefix_too() {
        let mut h = ustar_header("00000001", 5, 0);
        h[MAGIC].copy_from_slice(b"ustar ");
        h[VERSION].copy_from_slice(b" \0");
        h[PREFIX][..6].copy_from_slice(b"Ref:9/");
        refix(&mut h);
        assert_eq!(parse_header(&h).unwrap().name, "Ref:9/00000001");
        h[NAME].fill(0);
        refix(&mut h);
        assert_eq!(parse_header(&h).unwrap().name, "Ref:9/");
    }

    #[test]
    fn octal_parsing() {
        assert_eq!(parse_octal(b"00000000644\0"), Some(0o644));
        assert_eq!(parse_octal(b"   644 \0"), Some(0o644));
        assert_eq!(parse_octal(b"\0\0\0"), None);
        assert_eq!(parse_octal(b"0008"), None);
        assert_eq!(parse_octal(b"12 3"), None);
        assert_eq!(padding(0), 0);
        assert_eq!(padding(1), 511);
        assert_eq!(padding(512), 0);
    }
}
