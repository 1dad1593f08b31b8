//! Pax extended header records (POSIX.1-2001 `pax`, "pax Extended Header"): each is
//! `"%d %s=%s\n"`, length, keyword and value, the length in decimal counting the whole record.
//!
//! The length alone says where a record ends, so a value may hold any bytes, newlines and NULs
//! included (binary xattr values do). Any record that does not parse is an error, and so is one
//! whose length runs past the end of the header.

/// One record: keyword and value.
pub(crate) type Record<'a> = (&'a [u8], &'a [u8]);

/// The records of a pax header body, in order. Trailing NUL padding is ignored.
pub(crate) fn records(mut data: &[u8]) -> Result<Vec<Record<'_>>, String> {
    let mut out = Vec::new();
    while !data.iter().all(|&b| b == 0) {
        let digits = data.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || digits > 20 || data.get(digits) != Some(&b' ') {
            return Err(format!(
                "pax record {}: no decimal length and space at its start",
                out.len() + 1
            ));
        }
        let len = std::str::from_utf8(&data[..digits])
            .ok()
            .and_then(|d| d.parse::<u64>().ok())
            .unwrap_or(u64::MAX);
        if len > data.len() as u64 {
            return Err(format!(
                "pax record {}: its length field says {len} bytes, more than the {} left in \
                 the header",
                out.len() + 1,
                data.len()
            ));
        }
        let len = usize::try_from(len).expect("at most the data's length");
        // The smallest record is "N k=\n": the length, a space, a keyword, '=' and a newline.
        if len < digits + 4 {
            return Err(format!("pax record {}: a length of {len}, too short", out.len() + 1));
        }
        if data[len - 1] != b'\n' {
            return Err(format!(
                "pax record {}: not ended by a newline at its length",
                out.len() + 1
            ));
        }
        let body = &data[digits + 1..len - 1];
        let Some(eq) = body.iter().position(|&b| b == b'=') else {
            return Err(format!("pax record {}: no '=' between keyword and value", out.len() + 1));
        };
        if eq == 0 {
            return Err(format!("pax record {}: an empty keyword", out.len() + 1));
        }
        out.push((&body[..eq], &body[eq + 1..]));
        data = &data[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_cut_by_their_length() {
        let data = b"12 path=abc\n30 SCHILY.xattr.user.a=x\ny=\0z\n\0\0\0";
        let got = records(data).unwrap();
        assert_eq!(got, vec![(&b"path"[..], &b"abc"[..]), (b"SCHILY.xattr.user.a", b"x\ny=\0z")]);
        assert_eq!(records(b"").unwrap(), vec![]);
        for (bad, want) in [
            (&b"13 path=abc\n"[..], "its length field says 13 bytes, more than the 12 left"),
            (b"99999999999999999999999 path=abc\n", "no decimal length"),
            (b"18446744073709551616 p=\n", "more than the 24 left"),
            (b"11 pathabc\n", "no '='"),
            (b"12 path=abcd", "not ended by a newline"),
            (b"6 =ab\n", "an empty keyword"),
            (b"path=abc\n", "no decimal length"),
            (b"3 a\n", "a length of 3, too short"),
            (b"12 path=abc\nx", "pax record 2: no decimal length"),
        ] {
            let err = records(bad).unwrap_err();
            assert!(err.contains(want), "{bad:?}: {err}");
        }
    }
}
