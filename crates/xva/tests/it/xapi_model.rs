//! xapi's import of an XVA, re-stated from its source as a test oracle: what `xe vm-import`
//! does with the bytes after `ova.xml`, written independently of the crate's reader.
//!
//! - tar headers as `mirage/ocaml-tar` 2.x reads them (`lib/tar.ml`: `Header.unmarshal`,
//!   `HeaderReader.read`): an all-zero block is skipped once, a second one ends the stream; the
//!   checksum is the unsigned byte sum; numeric fields are octal after NULs become spaces and the
//!   ends are trimmed (`unmarshal_int`, `unmarshal_int64`); the `prefix` is joined on when the
//!   magic starts with `ustar`; `g` records are skipped and `x` records (simplified here) only
//!   skipped;
//! - the first member must be `ova.xml` (`import.ml` `assert_filename_is`);
//! - each streamed VDI, sorted by id (`stream_vdi.ml` `vdi_ordering`), is received by
//!   `recv_all_vdi`: headers until the data reaches `virtual_size`; a chunk's name must start
//!   with the VDI id and its suffix must increase as a string and parse with `int_of_string`;
//!   skipped chunks count the length of the archive's first chunk; the checksum member's header
//!   is read *before* the chunk's padding is skipped; its extension picks the algorithm, and with
//!   `export_vsn > 0` its text must equal the digest of the chunk it names
//!   (`verify_inline_checksum`); a write that starts at or past the end of the VDI fails;
//! - with `export_vsn < 2` a checksum table must follow the disks, which our archives never have.
//!
//! What follows the last disk is never read. `ova.xml` itself is judged by the mutation that
//! made it (the model takes a verdict and the streamed VDIs from the test case).

use std::fmt::Write as _;

use sha1::{Digest, Sha1};

/// 512-byte tar block.
const BLOCK: usize = 512;

/// The outcome of importing: each streamed VDI's bytes, in `vdis` order, or why it failed.
pub type Import = Result<Vec<Vec<u8>>, String>;

struct Stream<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// A header as ocaml-tar returns it.
struct Hdr {
    name: String,
    size: usize,
}

impl Stream<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("End_of_file reading {n} bytes at {}", self.pos))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn block(&mut self) -> Result<Option<Hdr>, String> {
        let b: [u8; BLOCK] = self.take(BLOCK)?.try_into().expect("a block");
        if b.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        unmarshal(&b).map(Some)
    }

    /// `Tar_unix.get_next_header`.
    fn next_header(&mut self) -> Result<Hdr, String> {
        loop {
            let at = self.pos;
            let h = match self.block()? {
                Some(h) => h,
                None => self.block()?.ok_or("End_of_stream")?,
            };
            match self.bytes[at + 156] {
                b'g' | b'x' | b'L' => {
                    let skip = h.size.div_ceil(BLOCK) * BLOCK;
                    self.take(skip)?;
                }
                _ => return Ok(h),
            }
        }
    }
}

fn trim_numerical(field: &[u8]) -> Vec<u8> {
    let blank = |b: &u8| matches!(b, 0 | b' ' | b'\t' | b'\n' | b'\r' | 0x0c);
    let start = field.iter().position(|b| !blank(b)).unwrap_or(field.len());
    let end = field.iter().rposition(|b| !blank(b)).map_or(start, |i| i + 1);
    field[start..end].to_vec()
}

/// `int_of_string ("0o0" ^ trim_numerical x)`.
fn octal(field: &[u8], what: &str) -> Result<u64, String> {
    let mut v: u64 = 0;
    for &b in &trim_numerical(field) {
        match b {
            b'0'..=b'7' => {
                v = v
                    .checked_mul(8)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or("big")?
            }
            b'_' => {}
            _ => return Err(format!("Failure int_of_string in {what}")),
        }
    }
    Ok(v)
}

fn c_string(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

fn unmarshal(b: &[u8; BLOCK]) -> Result<Hdr, String> {
    let recorded = octal(&b[148..156], "chksum")?;
    let sum: u64 = b
        .iter()
        .enumerate()
        .map(|(i, &x)| if (148..156).contains(&i) { 32 } else { u64::from(x) })
        .sum();
    if recorded != sum {
        return Err("Checksum_mismatch".into());
    }
    let ustar = b[257..263].starts_with(b"ustar");
    let mut name = c_string(&b[..100]);
    if ustar {
        let prefix = c_string(&b[345..500]);
        name = match (name.is_empty(), prefix.is_empty()) {
            (true, _) => prefix,
            (false, true) => name,
            (false, false) if prefix.ends_with('/') => format!("{prefix}{name}"),
            (false, false) => format!("{prefix}/{name}"),
        };
    }
    for (what, r) in [("mode", 100..108), ("uid", 108..116), ("gid", 116..124), ("mtime", 136..148)]
    {
        octal(&b[r], what)?;
    }
    if ustar {
        octal(&b[329..337], "devmajor")?;
        octal(&b[337..345], "devminor")?;
    }
    let size = octal(&b[124..136], "size")?;
    Ok(Hdr { name, size: usize::try_from(size).map_err(|_| "size")? })
}

fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// OCaml's `int_of_string` for the decimal forms a chunk suffix takes.
fn int_of_string(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return Err(format!("Failure int_of_string {s:?}"));
    }
    let v: i64 = digits.replace('_', "").parse().map_err(|_| "int_of_string overflow")?;
    Ok(if s.starts_with('-') { -v } else { v })
}

/// OCaml's `Filename.extension`: from the last `.` of the base name (not a leading one).
fn extension(name: &str) -> &str {
    let base = name.rsplit('/').next().unwrap_or(name);
    match base.rfind('.') {
        Some(i) if base[..i].bytes().any(|b| b != b'.') => &base[i..],
        _ => "",
    }
}

/// Imports `xva` as xapi would, given the verdict on `ova.xml` (`None`: it is accepted), its
/// `export_vsn`, and the streamed VDIs (id, `virtual_size`) in any order.
pub fn import(
    xva: &[u8],
    ova_refusal: Option<&str>,
    export_vsn: i64,
    vdis: &[(String, u64)],
) -> Import {
    let mut s = Stream { bytes: xva, pos: 0 };
    // with_open_archive: the first block must parse and be ova.xml.
    let first: [u8; BLOCK] = s.take(BLOCK)?.try_into().expect("a block");
    let hdr = unmarshal(&first)?;
    if hdr.name != "ova.xml" {
        return Err(format!("Unexpected_file {:?}", hdr.name));
    }
    s.take(hdr.size)?;
    s.take(hdr.size.next_multiple_of(BLOCK) - hdr.size)?;
    if let Some(reason) = ova_refusal {
        return Err(format!("ova.xml: {reason}"));
    }
    let mut order: Vec<usize> = (0..vdis.len()).collect();
    order.sort_by(|&a, &b| vdis[a].0.cmp(&vdis[b].0));
    let mut disks = vec![Vec::new(); vdis.len()];
    let mut first_chunk: Option<usize> = None;
    let inline = export_vsn > 0;
    for i in order {
        let (prefix, size) = (&vdis[i].0, vdis[i].1);
        let size = usize::try_from(size).map_err(|_| "size")?;
        let mut disk = vec![0u8; size];
        let mut table: Vec<(String, String)> = Vec::new();
        let mut last = "-1".to_string();
        // `offset` is xapi's count of the data received, which ends the loop; `pos` is where
        // the VDI's file descriptor is: they differ when a suffix goes backwards numerically.
        let mut offset: i64 = 0;
        let mut pos: usize = 0;
        let end = i64::try_from(size).map_err(|_| "size")?;
        while offset < end {
            let hdr = s.next_header()?;
            let first = *first_chunk.get_or_insert(hdr.size);
            if !hdr.name.starts_with(prefix.as_str()) {
                return Err(format!("Invalid XVA file: {:?} not prefixed {prefix}", hdr.name));
            }
            let suffix = hdr
                .name
                .get(prefix.len() + 1..)
                .ok_or_else(|| format!("Invalid_argument String.sub {:?}", hdr.name))?
                .to_string();
            if suffix.as_bytes() <= last.as_bytes() {
                return Err(format!("Invalid XVA file: suffix {suffix:?} after {last:?}"));
            }
            let skipped = int_of_string(&suffix)? - int_of_string(&last)? - 1;
            let skipped_size = skipped.saturating_mul(i64::try_from(first).map_err(|_| "len")?);
            if skipped > 0 {
                // A sparse SR seeks over the gap.
                pos = pos.saturating_add(usize::try_from(skipped_size).unwrap_or(usize::MAX));
            }
            let data = s.take(hdr.size)?.to_vec();
            if !data.is_empty() {
                // Unix.write to the VDI: fails at or past its end, short (ignored) across it.
                if pos >= size {
                    return Err(format!("ENOSPC writing {:?} at {pos}", hdr.name));
                }
                let n = data.len().min(size - pos);
                disk[pos..pos + n].copy_from_slice(&data[..n]);
                pos += n;
            }
            // The checksum member's header is read before the chunk's padding is skipped.
            let csum_hdr = s.next_header()?;
            let digest = match extension(&csum_hdr.name) {
                ".xxhash" => format!("{:016X}", xxhash_rust::xxh64::xxh64(&data, 0)),
                ".checksum" => sha1_hex(&data),
                _ => return Err(format!("Found unsupported checksum file: {:?}", csum_hdr.name)),
            };
            table.insert(0, (hdr.name.clone(), digest));
            s.take(hdr.size.next_multiple_of(BLOCK) - hdr.size)?;
            if inline {
                let text = s.take(csum_hdr.size)?.to_vec();
                s.take(csum_hdr.size.next_multiple_of(BLOCK) - csum_hdr.size)?;
                let base = &csum_hdr.name[..csum_hdr.name.len() - extension(&csum_hdr.name).len()];
                let expected = table
                    .iter()
                    .find(|(n, _)| n == base)
                    .ok_or_else(|| format!("Not_found: no chunk {base:?} for its checksum"))?;
                if text != expected.1.as_bytes() {
                    return Err(format!("Invalid_checksum for {base:?}"));
                }
            }
            offset = offset
                .saturating_add(skipped_size)
                .saturating_add(i64::try_from(data.len()).map_err(|_| "len")?);
            last = suffix;
        }
        disks[i] = disk;
    }
    if export_vsn < 2 {
        // Tar_unix.Archive.with_next_file: the checksum table that our archives never have.
        let hdr = s.next_header()?;
        return Err(format!("checksum table expected, found {:?}", hdr.name));
    }
    Ok(disks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ocaml_helpers() {
        assert_eq!(extension("Ref:3/00000001.checksum"), ".checksum");
        assert_eq!(extension("Ref:3/00000001"), "");
        assert_eq!(extension("Ref:3.x/00000001"), "");
        assert_eq!(int_of_string("00000012"), Ok(12));
        assert!(int_of_string("0000000a").is_err());
        assert_eq!(octal(b" 0644\0", "m"), Ok(0o644));
        assert_eq!(octal(b"\0\0\0", "m"), Ok(0));
        assert!(octal(b"0 644", "m").is_err());
    }
}
