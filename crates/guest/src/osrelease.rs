//! The distribution of an image, from `os-release` (freedesktop `os-release(5)`).
//!
//! `/etc/os-release` is read first and `/usr/lib/os-release` is the fallback, both with symlinks
//! followed inside the image. Lines are `KEY=value`; a value may be quoted with `"` or `'`, and
//! inside double quotes `\` escapes `"`, `\`, `$` and `` ` ``. The family is Debian or Ubuntu when
//! `ID`, or one word of `ID_LIKE`, says so; Ubuntu wins over Debian, since Ubuntu's derivatives
//! (`ID_LIKE="ubuntu debian"`) configure networks with netplan.

use xspack_oci::{Image, MergedTree};

use crate::Error;

/// The fields of os-release the guest build uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `ID`, lower case (`debian`, `ubuntu`); `linux` when absent, as os-release(5) says.
    pub id: String,
    /// The words of `ID_LIKE`.
    pub id_like: Vec<String>,
    /// `PRETTY_NAME`, else `NAME`, else `Linux`.
    pub pretty_name: String,
    /// `VERSION_ID`, if any.
    pub version_id: Option<String>,
}

/// The distribution families the ubuntu flavor accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Debian and derivatives that are not Ubuntu-based.
    Debian,
    /// Ubuntu and its derivatives.
    Ubuntu,
}

impl Family {
    /// The packages to add to a Dockerfile for a kernel, an initramfs and systemd.
    pub fn kernel_packages(self) -> &'static str {
        match self {
            Family::Debian => "linux-image-amd64 initramfs-tools systemd-sysv",
            Family::Ubuntu => "linux-image-virtual initramfs-tools systemd-sysv",
        }
    }

    /// The Dockerfile line that installs `packages`.
    pub fn dockerfile_line(packages: &str) -> String {
        format!(
            "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y {packages}"
        )
    }
}

impl OsRelease {
    /// Parses the text of an os-release file.
    pub fn parse(text: &str) -> OsRelease {
        let mut out = OsRelease { id: "linux".into(), ..OsRelease::default() };
        let mut name = None;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else { continue };
            let value = unquote(value.trim());
            match key.trim() {
                "ID" => out.id = value.to_ascii_lowercase(),
                "ID_LIKE" => {
                    out.id_like = value.split_whitespace().map(str::to_ascii_lowercase).collect();
                }
                "PRETTY_NAME" => out.pretty_name = value,
                "NAME" => name = Some(value),
                "VERSION_ID" => out.version_id = Some(value),
                _ => {}
            }
        }
        if out.pretty_name.is_empty() {
            out.pretty_name = name.unwrap_or_else(|| "Linux".into());
        }
        out
    }

    /// The family, or `None` for a distribution outside the Debian family.
    pub fn family(&self) -> Option<Family> {
        let words =
            || std::iter::once(self.id.as_str()).chain(self.id_like.iter().map(String::as_str));
        if words().any(|w| w == "ubuntu") {
            Some(Family::Ubuntu)
        } else if words().any(|w| w == "debian") {
            Some(Family::Debian)
        } else {
            None
        }
    }
}

/// Removes one level of shell-style quoting, as os-release(5) allows.
fn unquote(value: &str) -> String {
    let bytes = value.as_bytes();
    if bytes.len() >= 2 && bytes[0] == b'\'' && bytes[bytes.len() - 1] == b'\'' {
        return value[1..value.len() - 1].to_owned();
    }
    if bytes.len() >= 2 && bytes[0] == b'"' && bytes[bytes.len() - 1] == b'"' {
        let mut out = String::new();
        let mut chars = value[1..value.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\'
                && let Some(next) = chars.next()
            {
                if !matches!(next, '"' | '\\' | '$' | '`') {
                    out.push('\\');
                }
                out.push(next);
            } else {
                out.push(c);
            }
        }
        return out;
    }
    value.to_owned()
}

/// Reads the image's os-release and checks that it is of the Debian family.
pub fn detect(image: &Image, tree: &mut MergedTree) -> Result<(OsRelease, Family), Error> {
    const PATHS: [&[u8]; 2] = [b"etc/os-release", b"usr/lib/os-release"];
    let files = xspack_image::read_files(image, tree, &PATHS)?;
    let text = PATHS.iter().find_map(|p| files.get(*p)).ok_or(Error::NoOsRelease)?;
    let release = OsRelease::parse(&String::from_utf8_lossy(text));
    match release.family() {
        Some(family) => Ok((release, family)),
        None => Err(Error::NotDebian { id: release.id, pretty: release.pretty_name }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_from_id_and_id_like() {
        let debian = OsRelease::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
             VERSION_ID=\"12\"\nID=debian\n",
        );
        assert_eq!(debian.family(), Some(Family::Debian));
        assert_eq!(debian.pretty_name, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(debian.version_id.as_deref(), Some("12"));
        let mint = OsRelease::parse("NAME='Linux Mint'\nID=linuxmint\nID_LIKE=\"ubuntu debian\"\n");
        assert_eq!(mint.family(), Some(Family::Ubuntu));
        assert_eq!(mint.pretty_name, "Linux Mint");
        let raspbian = OsRelease::parse("ID=raspbian\nID_LIKE=debian\n");
        assert_eq!(raspbian.family(), Some(Family::Debian));
        let alpine = OsRelease::parse("ID=alpine\nPRETTY_NAME=\"Alpine Linux v3.20\"\n");
        assert_eq!(alpine.family(), None);
        let fedora = OsRelease::parse("ID=fedora\nID_LIKE=\"rhel centos\"\n");
        assert_eq!(fedora.family(), None);
        let empty = OsRelease::parse("");
        assert_eq!((empty.id.as_str(), empty.pretty_name.as_str()), ("linux", "Linux"));
    }

    #[test]
    fn double_quotes_take_escapes() {
        assert_eq!(unquote(r#""a \"b\" \$c \\ \x""#), r#"a "b" $c \ \x"#);
        assert_eq!(unquote("'single \\ kept'"), "single \\ kept");
        assert_eq!(unquote("bare"), "bare");
    }
}
