//! Image-wide options: the identifiers of the Primary Volume Descriptor (ECMA-119 8.4), the
//! date every default timestamp takes, the interchange level of primary names and the Joliet
//! variant.
//!
//! Identifier fields are checked against their ECMA-119 character sets (7.4.1): d-characters
//! (`A-Z 0-9 _`) for the volume and volume set identifiers, a-characters (d-characters plus space
//! and ``!"%&'()*+,-./:;<=>?``) for the others.

use crate::{Error, time};

/// Interchange level of the primary (ECMA-119) names, which only readers without Rock Ridge and
/// Joliet see. Rock Ridge `NM` keeps the real name either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsoLevel {
    /// Level 1 (ECMA-119 10.1): `NAME8.EXT` file names and 8-character directory names.
    #[default]
    One,
    /// Level 2 (ECMA-119 10.2): up to 30 characters of name plus extension, 31 for directories.
    Two,
}

impl IsoLevel {
    /// Longest directory identifier.
    pub(crate) fn max_dir_len(self) -> usize {
        match self {
            IsoLevel::One => 8,
            IsoLevel::Two => 31,
        }
    }
}

/// Whether and how the Joliet hierarchy (UCS-2 level 3, escape sequence `%/E`) is written.
///
/// Joliet names are the real names in UCS-2 big-endian, without the `;1` version suffix (as
/// genisoimage and xorriso record them). Symlinks have no Joliet form and are left out of that
/// hierarchy. A name Joliet cannot hold (too long, a character outside the Basic Multilingual
/// Plane, a control character or one of `* / : ; ? \`) is an [`Error::JolietName`], never
/// silently changed; use [`Joliet::Off`] for such trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Joliet {
    /// No Joliet volume descriptor.
    Off,
    /// Names of up to 64 UCS-2 characters, as the Joliet specification allows.
    Standard,
    /// Names of up to 103 UCS-2 characters, the `-joliet-long` extension of mkisofs, which
    /// the reference supplemental-pack builder uses so the 80-character `repodata` names fit.
    #[default]
    Long,
}

impl Joliet {
    /// Longest name in UCS-2 code units, or `None` when Joliet is off.
    pub(crate) fn max_name_len(self) -> Option<usize> {
        match self {
            Joliet::Off => None,
            Joliet::Standard => Some(64),
            Joliet::Long => Some(103),
        }
    }
}

/// Options of an image. Build with [`IsoOptions::new`], then set fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IsoOptions {
    /// Volume identifier (the label), 1 to 32 d-characters (`A-Z 0-9 _`); see
    /// [`sanitize_volume_id`]. The Joliet descriptor records its first 16 characters.
    /// With [`IsoOptions::verbatim_volume_id`] it may also hold `a-z`, `-` and `.`.
    pub volume_id: String,
    /// Seconds since the Unix epoch: the volume creation and modification dates, and the
    /// mtime of every entry that does not set its own. Years 1900 to 2155.
    pub source_date_epoch: i64,
    /// System identifier, up to 32 a-characters (empty by default).
    pub system_id: String,
    /// Volume set identifier, up to 128 d-characters (empty by default).
    pub volume_set_id: String,
    /// Publisher identifier, up to 128 a-characters (empty by default).
    pub publisher_id: String,
    /// Data preparer identifier, up to 128 a-characters (empty by default).
    pub data_preparer_id: String,
    /// Application identifier, up to 128 a-characters (`XSPACK <version>` by default).
    pub application_id: String,
    /// Interchange level of primary names.
    pub level: IsoLevel,
    /// Joliet variant.
    pub joliet: Joliet,
    /// Allow directories deeper than the 8 levels and ISO paths longer than the 255 characters
    /// of ECMA-119 6.8.2.1 (Linux, xorriso and isoinfo read such images; strict readers may
    /// not). Off by default, so such trees fail with [`Error::TooDeep`] or
    /// [`Error::PathTooLong`].
    pub allow_deep_paths: bool,
    /// Write the volume identifier as given, lower case, `-` and `.` included, as
    /// `genisoimage -V` and xorriso do. Some labels are matched exactly by their readers: an
    /// `OpenStack` config drive must be labelled `config-2`, which is not made of d-characters.
    /// Linux, blkid and isoinfo read such labels unchanged. Off by default.
    pub verbatim_volume_id: bool,
}

impl IsoOptions {
    /// Options with the given label and epoch and defaults for everything else.
    pub fn new(volume_id: impl Into<String>, source_date_epoch: i64) -> Self {
        IsoOptions {
            volume_id: volume_id.into(),
            source_date_epoch,
            system_id: String::new(),
            volume_set_id: String::new(),
            publisher_id: String::new(),
            data_preparer_id: String::new(),
            application_id: format!("XSPACK {}", env!("CARGO_PKG_VERSION")),
            level: IsoLevel::default(),
            joliet: Joliet::default(),
            allow_deep_paths: false,
            verbatim_volume_id: false,
        }
    }

    /// Checks every identifier and the epoch.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.volume_id.is_empty() {
            return Err(Error::InvalidIdentifier {
                field: "volume id",
                value: String::new(),
                reason: "must not be empty".into(),
            });
        }
        if self.verbatim_volume_id {
            check_chars("volume id", &self.volume_id, 32, is_label_char, LABEL_CHARS)?;
        } else {
            check_chars("volume id", &self.volume_id, 32, is_d_char, "d-character (A-Z, 0-9, _)")?;
        }
        check_chars("volume set id", &self.volume_set_id, 128, is_d_char, "d-character")?;
        check_chars("system id", &self.system_id, 32, is_a_char, A_CHARS)?;
        check_chars("publisher id", &self.publisher_id, 128, is_a_char, A_CHARS)?;
        check_chars("data preparer id", &self.data_preparer_id, 128, is_a_char, A_CHARS)?;
        check_chars("application id", &self.application_id, 128, is_a_char, A_CHARS)?;
        if !time::in_range(self.source_date_epoch) {
            return Err(Error::InvalidEpoch(self.source_date_epoch));
        }
        Ok(())
    }
}

const A_CHARS: &str = "a-character (A-Z, 0-9, _, space, !\"%&'()*+,-./:;<=>?)";

/// ECMA-119 d-characters: `A-Z`, `0-9`, `_`.
pub(crate) fn is_d_char(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
}

/// ECMA-119 a-characters: d-characters, space and ``!"%&'()*+,-./:;<=>?``.
fn is_a_char(c: char) -> bool {
    is_d_char(c) || " !\"%&'()*+,-./:;<=>?".contains(c)
}

const LABEL_CHARS: &str = "label character (A-Z, a-z, 0-9, _, -, .)";

/// What a verbatim volume identifier may hold: d-characters, `a-z`, `-` and `.`.
fn is_label_char(c: char) -> bool {
    is_d_char(c) || c.is_ascii_lowercase() || c == '-' || c == '.'
}

fn check_chars(
    field: &'static str,
    value: &str,
    max: usize,
    allowed: fn(char) -> bool,
    set: &str,
) -> Result<(), Error> {
    let err = |reason: String| Error::InvalidIdentifier { field, value: value.into(), reason };
    if let Some((i, c)) = value.chars().enumerate().find(|&(_, c)| !allowed(c)) {
        return Err(err(format!("character {c:?} at position {} is not a {set}", i + 1)));
    }
    // Only ASCII is left, so bytes are characters.
    if value.len() > max {
        return Err(err(format!("has {} characters, at most {max} allowed", value.len())));
    }
    Ok(())
}

/// Turns a free-form label (such as a pack name) into a valid volume identifier: ASCII letters
/// upper-cased, every other character outside `A-Z 0-9 _` replaced by `_`, cut to 32 characters;
/// an empty label gives `CDROM`.
pub fn sanitize_volume_id(label: &str) -> String {
    let id: String = label
        .chars()
        .map(|c| c.to_ascii_uppercase())
        .map(|c| if is_d_char(c) { c } else { '_' })
        .take(32)
        .collect();
    if id.is_empty() { "CDROM".into() } else { id }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(opts: &IsoOptions) -> String {
        opts.validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid() {
        let opts = IsoOptions::new("XSCONTAINER", 1_700_000_000);
        opts.validate().unwrap();
        assert!(opts.application_id.starts_with("XSPACK "));
    }

    #[test]
    fn volume_id_rules() {
        assert_eq!(reason(&IsoOptions::new("", 0)), "volume id \"\": must not be empty");
        assert_eq!(
            reason(&IsoOptions::new("xscontainer", 0)),
            "volume id \"xscontainer\": character 'x' at position 1 is not a d-character (A-Z, 0-9, _)"
        );
        assert!(
            reason(&IsoOptions::new("A".repeat(33), 0)).contains("has 33 characters, at most 32")
        );
        IsoOptions::new("A".repeat(32), 0).validate().unwrap();
    }

    #[test]
    fn other_fields_and_epoch() {
        let mut opts = IsoOptions::new("X", 0);
        opts.publisher_id = "ACME, INC. <HTTPS://EXAMPLE>".into();
        opts.validate().unwrap();
        opts.publisher_id = "acme".into();
        assert!(reason(&opts).starts_with("publisher id \"acme\": character 'a'"));
        let mut opts = IsoOptions::new("X", 0);
        opts.system_id = "S".repeat(33);
        assert!(reason(&opts).contains("at most 32"));
        let opts = IsoOptions::new("X", time::MAX_TIME + 1);
        assert!(matches!(opts.validate(), Err(Error::InvalidEpoch(_))));
    }

    #[test]
    fn verbatim_volume_ids() {
        let mut opts = IsoOptions::new("config-2", 0);
        assert!(reason(&opts).contains("not a d-character"));
        opts.verbatim_volume_id = true;
        opts.validate().unwrap();
        opts.volume_id = "config 2".into();
        assert_eq!(
            reason(&opts),
            "volume id \"config 2\": character ' ' at position 7 is not a label character \
             (A-Z, a-z, 0-9, _, -, .)"
        );
    }

    #[test]
    fn sanitizing_labels() {
        assert_eq!(sanitize_volume_id("xscontainer-1.0"), "XSCONTAINER_1_0");
        assert_eq!(sanitize_volume_id(""), "CDROM");
        assert_eq!(sanitize_volume_id(&"é".repeat(40)).len(), 32);
        IsoOptions::new(sanitize_volume_id("Über pack"), 0).validate().unwrap();
    }
}
