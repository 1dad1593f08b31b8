//! Paths of files inside an output directory, as recorded in `SHA256SUMS` and `manifest.json`.
//!
//! A manifest is untrusted input: a path in it must never lead `verify` outside the directory.
//! So a [`RelPath`] is relative, `/`-separated, and has no empty, `.` or `..` components. It
//! also has no NUL (impossible in a Unix path) and no carriage return, which `sha256sum` before
//! coreutils 9.2 cannot escape.

use std::fmt;

/// A validated relative path inside an output directory.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

/// Why a string is not a valid [`RelPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelPathError {
    /// The path is empty.
    #[error("empty path")]
    Empty,
    /// The path starts with `/`.
    #[error("absolute path")]
    Absolute,
    /// A component is empty, `.` or `..`.
    #[error("component {0:?} is not allowed")]
    Component(String),
    /// The path holds a character that cannot appear in a checksum list.
    #[error("character {0:?} is not allowed")]
    Character(char),
}

impl RelPath {
    /// Validates `path`.
    pub fn new(path: impl Into<String>) -> Result<Self, RelPathError> {
        let path = path.into();
        if path.is_empty() {
            return Err(RelPathError::Empty);
        }
        if path.starts_with('/') {
            return Err(RelPathError::Absolute);
        }
        if let Some(c) = path.chars().find(|&c| c == '\0' || c == '\r') {
            return Err(RelPathError::Character(c));
        }
        if let Some(bad) = path.split('/').find(|c| c.is_empty() || *c == "." || *c == "..") {
            return Err(RelPathError::Component(bad.to_owned()));
        }
        Ok(RelPath(path))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of the manifest files themselves at the top of the directory.
    pub fn is_manifest_file(&self) -> bool {
        self.0 == crate::SHA256SUMS_NAME || self.0 == crate::MANIFEST_NAME
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names with newlines would break one-line reports; show those quoted and escaped.
        if self.0.chars().any(char::is_control) {
            write!(f, "{:?}", self.0)
        } else {
            f.write_str(&self.0)
        }
    }
}

impl fmt::Debug for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelPath({:?})", self.0)
    }
}

impl serde::Serialize for RelPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for RelPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RelPath::new(s.clone())
            .map_err(|e| serde::de::Error::custom(format_args!("path {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, Result<(), RelPathError>)] = &[
            ("a.iso", Ok(())),
            ("sub/dir/file name with spaces", Ok(())),
            ("back\\slash\nnewline", Ok(())),
            ("..hidden", Ok(())),
            ("", Err(RelPathError::Empty)),
            ("/etc/passwd", Err(RelPathError::Absolute)),
            ("../x", Err(RelPathError::Component("..".into()))),
            ("a/../../x", Err(RelPathError::Component("..".into()))),
            ("./a", Err(RelPathError::Component(".".into()))),
            ("a//b", Err(RelPathError::Component(String::new()))),
            ("a/", Err(RelPathError::Component(String::new()))),
            ("a\0b", Err(RelPathError::Character('\0'))),
            ("a\rb", Err(RelPathError::Character('\r'))),
        ];
        for (input, want) in cases {
            assert_eq!(RelPath::new(*input).map(|_| ()), *want, "{input:?}");
        }
    }

    #[test]
    fn display_escapes_control_characters() {
        assert_eq!(RelPath::new("a\nb").unwrap().to_string(), "\"a\\nb\"");
        assert_eq!(RelPath::new("plain name").unwrap().to_string(), "plain name");
    }
}
