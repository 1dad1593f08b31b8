//! Amounts of memory and disk as guest-templates JSON writes them: digits and an optional binary
//! unit, `\d+[KMGT]?` (`xenserver/guest-templates-json:guesttemplates/blank_template.py`
//! `amount_to_int`; `docs/formats/templates.md` section "Sizes"). The unit may be lower case; there
//! is no `B` suffix.

/// Parses `2G`, `512M`, `1536m` or `1073741824` into bytes.
pub fn parse_amount(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not an amount like \"2G\" (digits, then K, M, G or T)");
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'K' | b'k') => (&text[..text.len() - 1], 10),
        Some(b'M' | b'm') => (&text[..text.len() - 1], 20),
        Some(b'G' | b'g') => (&text[..text.len() - 1], 30),
        Some(b'T' | b't') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is too large"))?;
    n.checked_shl(shift).filter(|b| b >> shift == n).ok_or_else(|| format!("{text:?} is too large"))
}

/// Writes `bytes` in the largest unit that divides it exactly: `2G`, `1536M`, `7`.
pub fn format_amount(bytes: u64) -> String {
    for (unit, shift) in [('T', 40), ('G', 30), ('M', 20), ('K', 10)] {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_round_trip() {
        for (text, bytes) in [
            ("2G", 2u64 << 30),
            ("1536M", 1536 << 20),
            ("8g", 8 << 30),
            ("1T", 1 << 40),
            ("4K", 4096),
            ("7", 7),
        ] {
            assert_eq!(parse_amount(text), Ok(bytes), "{text}");
        }
        assert_eq!(format_amount(2 << 30), "2G");
        assert_eq!(format_amount(3 << 29), "1536M");
        assert_eq!(format_amount(4096), "4K");
        assert_eq!(format_amount(0), "0");
        assert_eq!(format_amount(7), "7");
    }

    #[test]
    fn bad_amounts_are_refused() {
        for text in ["", "G", "2GB", "2 G", "-1G", "1.5G", "0x10", "99999999999T"] {
            assert!(parse_amount(text).is_err(), "{text}");
        }
    }
}
