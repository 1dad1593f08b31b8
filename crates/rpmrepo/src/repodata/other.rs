//! `other.xml` (namespace `http://linux.duke.edu/metadata/other`): changelogs. Like
//! `createrepo_c` 0.17, only the newest [`CHANGELOG_LIMIT`] entries are kept, written oldest
//! first.

use std::io::{self, Write};

use crate::repodata::RepoPackage;
use crate::repodata::primary::write_package_open;
use crate::repodata::xml::{attr, text};

/// Namespace of `other.xml`'s root element.
pub const NS_OTHER: &str = "http://linux.duke.edu/metadata/other";

/// How many changelog entries per package `other.xml` keeps (`createrepo_c`'s default).
pub const CHANGELOG_LIMIT: usize = 10;

/// Writes uncompressed `other.xml` for `packages`, in the given order, to `out`.
pub fn write_other<W: Write>(mut out: W, packages: &[RepoPackage]) -> io::Result<W> {
    writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    writeln!(out, "<otherdata xmlns=\"{NS_OTHER}\" packages=\"{}\">", packages.len())?;
    for p in packages {
        let h = &p.header;
        write_package_open(&mut out, h)?;
        // Headers store the newest entry first.
        for c in h.changelog.iter().take(CHANGELOG_LIMIT).rev() {
            writeln!(
                out,
                "  <changelog author=\"{}\" date=\"{}\">{}</changelog>",
                attr(&c.author),
                c.time,
                text(&c.text)
            )?;
        }
        writeln!(out, "</package>")?;
    }
    write!(out, "</otherdata>")?;
    Ok(out)
}
