//! `SHA256SUMS`: the checksum list that GNU coreutils `sha256sum -c` checks.
//!
//! Format, from coreutils `src/digest.c` (`output_file`, `split_3`, `filename_unescape`):
//!
//! ```text
//! <64 hex digits><space><space or '*'><file name>\n
//! ```
//!
//! A name holding a backslash or a newline is written with a leading `\` on the line, and with
//! `\\` and `\n` as escapes inside the name; no other escapes exist. We write text mode (two
//! spaces), lowercase hex, LF line ends, one line per file, sorted by name, so the file is
//! byte-for-byte reproducible. The parser also accepts binary mode (`*`), a single space,
//! upper-case hex and the BSD form `SHA256 (name) = hex` that `sha256sum --tag` writes.

use std::collections::BTreeMap;
use std::io::{self, Write};

use camino::Utf8Path;
use xspack_io::Sha256Digest;

use crate::{Error, RelPath};

/// A parsed or to-be-written `SHA256SUMS`: file names and their digests, sorted by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sha256Sums {
    entries: BTreeMap<RelPath, Sha256Digest>,
}

impl Sha256Sums {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `path`; a path may appear only once.
    pub fn insert(&mut self, path: RelPath, digest: Sha256Digest) -> Result<(), Error> {
        if self.entries.contains_key(&path) {
            return Err(Error::Duplicate { path });
        }
        self.entries.insert(path, digest);
        Ok(())
    }

    /// The digest recorded for `path`.
    pub fn get(&self, path: &RelPath) -> Option<&Sha256Digest> {
        self.entries.get(path)
    }

    /// Entries in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&RelPath, &Sha256Digest)> {
        self.entries.iter()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the list in `sha256sum` text-mode format.
    pub fn write_to<W: Write>(&self, mut w: W) -> io::Result<W> {
        for (path, digest) in &self.entries {
            let name = path.as_str();
            if name.contains(['\\', '\n']) {
                let escaped = name.replace('\\', "\\\\").replace('\n', "\\n");
                writeln!(w, "\\{digest}  {escaped}")?;
            } else {
                writeln!(w, "{digest}  {name}")?;
            }
        }
        Ok(w)
    }

    /// The list as text.
    pub fn to_text(&self) -> String {
        let bytes = self.write_to(Vec::new()).expect("writing to a Vec cannot fail");
        String::from_utf8(bytes).expect("paths and hex are UTF-8")
    }

    /// Parses `data`, the contents of `file` (used in error messages).
    pub fn parse(data: &[u8], file: &Utf8Path) -> Result<Self, Error> {
        let mut sums = Sha256Sums::new();
        if data.is_empty() {
            return Ok(sums);
        }
        let body = data.strip_suffix(b"\n").unwrap_or(data);
        for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
            let line = index + 1;
            let bad = |reason: String| Error::Sha256Sums { file: file.to_owned(), line, reason };
            let text =
                std::str::from_utf8(raw).map_err(|_| bad("file name is not UTF-8".into()))?;
            let (name, digest) = parse_line(text).map_err(bad)?;
            let path =
                RelPath::new(name.clone()).map_err(|e| bad(format!("file name {name:?}: {e}")))?;
            sums.insert(path, digest).map_err(|_| bad(format!("{name:?} is listed twice")))?;
        }
        Ok(sums)
    }

    /// Reads and parses the file at `path`.
    pub fn read_file(path: &Utf8Path) -> Result<Self, Error> {
        let data = crate::read_list_file(path)?;
        Self::parse(&data, path)
    }
}

/// Parses one line into a file name and digest.
fn parse_line(line: &str) -> Result<(String, Sha256Digest), String> {
    let (escaped, line) = match line.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    if line.is_empty() {
        return Err("empty line".into());
    }
    let parse_hex = |hex: &str| hex.parse::<Sha256Digest>().map_err(|e| format!("bad digest: {e}"));
    let (digest, name) = if let Some(rest) = line.strip_prefix("SHA256 (") {
        let (name, hex) = rest.rsplit_once(") = ").ok_or("malformed BSD-style line")?;
        (parse_hex(hex)?, name)
    } else {
        let hex = line.get(..64).ok_or("line too short for a SHA-256 digest")?;
        let digest = parse_hex(hex)?;
        let rest = line[64..].strip_prefix(' ').ok_or("expected a space after the digest")?;
        (digest, rest.strip_prefix([' ', '*']).unwrap_or(rest))
    };
    if name.is_empty() {
        return Err("missing file name".into());
    }
    let name = if escaped { unescape(name)? } else { name.to_owned() };
    Ok((name, digest))
}

fn unescape(name: &str) -> Result<String, String> {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            other => {
                return Err(format!(
                    "invalid escape \\{}",
                    other.map(String::from).unwrap_or_default()
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D1: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const D2: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn sums(entries: &[(&str, &str)]) -> Sha256Sums {
        let mut s = Sha256Sums::new();
        for (p, d) in entries {
            s.insert(RelPath::new(*p).unwrap(), d.parse().unwrap()).unwrap();
        }
        s
    }

    #[test]
    fn writes_sorted_text_mode_with_escapes() {
        let s = sums(&[("b.iso", D1), ("a\\b\nc", D2), ("a.iso", D2)]);
        assert_eq!(s.to_text(), format!("{D2}  a.iso\n\\{D2}  a\\\\b\\nc\n{D1}  b.iso\n"));
    }

    #[test]
    fn parses_gnu_variants() {
        let text = format!(
            "{D1}  text\n{D1} *binary\n{D1} single\n\\{up}  esc\\\\aped\\n\nSHA256 (bsd name) = {D2}\n",
            up = D2.to_uppercase()
        );
        let s = Sha256Sums::parse(text.as_bytes(), "SHA256SUMS".into()).unwrap();
        let names: Vec<&str> = s.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["binary", "bsd name", "esc\\aped\n", "single", "text"]);
        assert_eq!(s.get(&RelPath::new("esc\\aped\n").unwrap()).unwrap().to_string(), D2);
    }

    #[test]
    fn accepts_missing_final_newline_and_empty_file() {
        assert_eq!(Sha256Sums::parse(format!("{D1}  a").as_bytes(), "S".into()).unwrap().len(), 1);
        assert!(Sha256Sums::parse(b"", "S".into()).unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_lines_with_line_numbers() {
        let cases: &[(String, &str)] = &[
            (format!("{D1}  ok\n\n"), "line 2: empty line"),
            (format!("{D1}  ok\nshort  x\n"), "line 2: line too short"),
            (format!("{}  x\n", &D1.replace('e', "z")), "line 1: bad digest"),
            (format!("{D1}x  x\n"), "line 1: expected a space"),
            (format!("{D1}  \n"), "line 1: missing file name"),
            (format!("{D1}  ../etc/passwd\n"), "line 1: file name \"../etc/passwd\": component"),
            (format!("{D1}  /etc/passwd\n"), "absolute path"),
            (format!("{D1}  a\n{D2}  a\n"), "line 2: \"a\" is listed twice"),
            (format!("\\{D1}  a\\tb\n"), "line 1: invalid escape \\t"),
            (format!("\\{D1}  a\\\n"), "line 1: invalid escape \\"),
            (format!("SHA256 (x = {D1}\n"), "malformed BSD-style"),
            (format!("{}  a\n", "é".repeat(40)), "line 1: bad digest"),
        ];
        for (text, want) in cases {
            let err = Sha256Sums::parse(text.as_bytes(), "dist/SHA256SUMS".into()).unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("dist/SHA256SUMS: "), "{msg}");
            assert!(msg.contains(want), "{text:?}: {msg}");
        }
        let err = Sha256Sums::parse(b"\xff\xfe", "S".into()).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"));
    }

    fn name_strategy() -> impl Strategy<Value = String> {
        // Components of printable text plus the two characters that need escaping.
        let component = "[a-zA-Z0-9 ._\\-\\\\\n\u{e9}\u{4e2d}]{1,12}"
            .prop_filter("no dot components", |c| c != "." && c != "..");
        proptest::collection::vec(component, 1..4).prop_map(|v| v.join("/"))
    }

    proptest! {
        #[test]
        fn round_trip(entries in proptest::collection::btree_map(name_strategy(), any::<[u8; 32]>(), 0..20)) {
            let mut s = Sha256Sums::new();
            for (name, digest) in &entries {
                s.insert(RelPath::new(name.clone()).unwrap(), Sha256Digest(*digest)).unwrap();
            }
            let text = s.to_text();
            prop_assert_eq!(Sha256Sums::parse(text.as_bytes(), "S".into()).unwrap(), s);
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Sha256Sums::parse(&data, "S".into());
        }
    }
}
