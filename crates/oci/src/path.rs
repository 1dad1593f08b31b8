//! Layer entry paths, normalised one component at a time.
//!
//! Tar paths are untrusted bytes. `./` prefixes, empty and `.` components are dropped, and a
//! leading `/` is read relative to the image root (umoci writes `/etc/...`, and Docker and GNU
//! tar read such names the same way). Any `..` component is refused, so no entry can name
//! anything outside the image root. Names may be any bytes but `/` and NUL.

use crate::limits::{long_component, long_component_message};

/// Splits `raw` into normalised components, or says why it cannot be used.
pub fn components(raw: &[u8]) -> Result<Vec<&[u8]>, String> {
    if raw.contains(&0) {
        return Err("NUL byte in path".into());
    }
    let mut out = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("path contains '..'".into()),
            c => out.push(c),
        }
    }
    // A whiteout's `.wh.` prefix does not count: it names an entry, and is never written.
    match long_component(&out, true) {
        Some(len) => Err(long_component_message("path", len)),
        None => Ok(out),
    }
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
        let whiteout = [&b".wh."[..], &[b'x'; 255]].concat();
        assert_eq!(components(&whiteout).unwrap(), [&whiteout[..]]);
        assert!(components(&[&whiteout[..], b"/x"].concat()).is_err());
    }
}
