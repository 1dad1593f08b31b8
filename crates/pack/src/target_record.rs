//! Where a pack records the hosts it was built for: the ISO 9660 application identifier of
//! its ISO (ECMA-119 8.4.24, 128 a-characters), `XSPACK <version> TARGET <ID>`. No consumer
//! of a pack reads that field (xapi and the legacy installer read files, not volume
//! descriptors), so the record changes nothing on the host; `isoinfo -d` shows it, and
//! `xspack pack verify` reads it to judge a pack built elsewhere against its own target.

use xspack_rpmrepo::Target;

/// The word before the target id.
const MARK: &str = " TARGET ";

/// `base` (`XSPACK <version>`) with the target appended, upper case (a-characters have no
/// lower case letters).
pub(crate) fn application_id(base: &str, target: &Target) -> String {
    format!("{base}{MARK}{}", target.id.to_ascii_uppercase())
}

/// What an ISO's application identifier says of its target.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// A target this xspack knows.
    Known(&'static Target),
    /// A target id this xspack does not know (a newer xspack's, say).
    Unknown(String),
    /// No record: the ISO was not made by xspack, or by an xspack before targets.
    None,
}

/// Reads the record [`application_id`] writes.
pub(crate) fn recorded(application_id: &str) -> Recorded {
    let Some((_, rest)) = application_id.split_once(MARK) else { return Recorded::None };
    let id = rest.split_whitespace().next().unwrap_or_default();
    match Target::by_id(id) {
        Some(t) => Recorded::Known(t),
        None => Recorded::Unknown(id.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for t in xspack_rpmrepo::TARGETS {
            let id = application_id("XSPACK 0.1.0", t);
            assert!(id.len() <= 128 && !id.chars().any(|c| c.is_ascii_lowercase()), "{id}");
            assert_eq!(recorded(&id), Recorded::Known(t));
        }
        assert_eq!(recorded("XSPACK 0.1.0"), Recorded::None);
        assert_eq!(recorded("MKISOFS ISO9660/HFS FILESYSTEM CREATOR"), Recorded::None);
        assert_eq!(
            recorded("XSPACK 9.0 TARGET XENSERVER-10"),
            Recorded::Unknown("XENSERVER-10".into())
        );
    }
}
