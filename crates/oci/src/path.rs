//! Layer entry paths, normalised one component at a time.
//!
//! Tar paths are untrusted bytes. `./` prefixes, empty and `.` components are dropped, and a
//! leading `/` is read relative to the image root (umoci writes `/etc/...`, and Docker and GNU
//! tar read such names the same way). Any `..` component is refused, so no entry can name
//! anything outside the image root. Names may be any bytes but `/` and NUL.

/// Splits `raw` into normalised components, or says why it cannot be used.
pub fn components(raw: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if raw.contains(&0) {
        return Err("NUL byte in path");
    }
    let mut out = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("path contains '..'"),
            c if c.len() > 255 => return Err("path component longer than 255 bytes"),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok: &[(&[u8], &[&[u8]])] = &[
            (b"etc/passwd", &[b"etc", b"passwd"]),
            (b"./etc//x/./y/", &[b"etc", b"x", b"y"]),
            (b"./", &[]),
            (b".", &[]),
            (b"caf\xe9/..x", &[b"caf\xe9", b"..x"]),
            (b"/etc/passwd", &[b"etc", b"passwd"]),
            (b"/", &[]),
        ];
        for (raw, want) in ok {
            assert_eq!(components(raw).unwrap(), *want, "{raw:?}");
        }
        for bad in [&b"/../etc/passwd"[..], b"../x", b"a/../../x", b"a/..", b"a\0b", &[b'x'; 256]] {
            assert!(components(bad).is_err(), "{bad:?}");
        }
    }
}
