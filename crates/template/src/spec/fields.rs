//! Single values of `templates/<name>.toml` that carry their own rule, checked while the TOML
//! is deserialized so that an error names the value's line and column.

use serde::Deserialize;
use xspack_xva::Uuid;

use crate::size::parse_amount;

/// A size in bytes, written `"8G"` (`\d+[KMGT]?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Amount(pub u64);

impl TryFrom<String> for Amount {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        parse_amount(&text).map(Amount)
    }
}

/// A template name: lower-case letters, digits, `.`, `_` and `-`, starting with a letter or
/// digit, at most 64 characters (it names a file and an RPM).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Name(pub String);

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let ok = text.len() <= 64
            && text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if ok {
            Ok(Name(text))
        } else {
            Err(format!(
                "{text:?} must be lower-case letters, digits, '.', '_' and '-' (at most 64, \
                 starting with a letter or digit)"
            ))
        }
    }
}

/// An RPM version or release: letters, digits and `._+~^`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RpmField(pub String);

impl TryFrom<String> for RpmField {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if !text.is_empty()
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "._+~^".contains(c))
        {
            Ok(RpmField(text))
        } else {
            Err(format!("{text:?} may hold letters, digits and '._+~^' only"))
        }
    }
}

/// A UUID in its lower-case hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct UuidText(pub Uuid);

impl TryFrom<String> for UuidText {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        match text.parse::<Uuid>() {
            Ok(u) if !u.is_nil() && u.to_string() == text => Ok(UuidText(u)),
            _ => Err(format!("{text:?} is not a lower-case, non-nil UUID")),
        }
    }
}

/// `HVM_boot_params:order`: distinct letters from `c` (disk), `d` (CD) and `n` (network).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct BootOrder(pub String);

impl TryFrom<String> for BootOrder {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let mut seen = String::new();
        for c in text.chars() {
            if !matches!(c, 'c' | 'd' | 'n') || seen.contains(c) {
                return Err(format!("{text:?} must be distinct letters from c, d and n"));
            }
            seen.push(c);
        }
        if seen.is_empty() {
            return Err("the boot order must not be empty".into());
        }
        Ok(BootOrder(text))
    }
}
