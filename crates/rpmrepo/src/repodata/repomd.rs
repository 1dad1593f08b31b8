//! `repomd.xml` (namespace `http://linux.duke.edu/metadata/repo`): the index of the metadata
//! files with their sha256 checksums and sizes, compressed (`checksum`, `size`) and
//! uncompressed (`open-checksum`, `open-size`), laid out as `createrepo_c` 0.17 writes it. This
//! is the file that gets the detached signature `repomd.xml.asc`.

use std::io::{self, Write};

use crate::repodata::RepodataFile;
use crate::repodata::xml::{attr, text};

/// Namespace of `repomd.xml`'s root element.
pub const NS_REPO: &str = "http://linux.duke.edu/metadata/repo";

/// Writes `repomd.xml` listing `files` (in order) with revision `revision` and every
/// timestamp set to `timestamp`.
pub fn write_repomd<W: Write>(
    mut out: W,
    files: &[RepodataFile],
    revision: &str,
    timestamp: u64,
) -> io::Result<W> {
    writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    writeln!(
        out,
        "<repomd xmlns=\"{NS_REPO}\" xmlns:rpm=\"{}\">",
        crate::repodata::primary::NS_RPM
    )?;
    writeln!(out, "  <revision>{}</revision>", text(revision))?;
    for f in files {
        writeln!(out, "  <data type=\"{}\">", attr(&f.kind))?;
        writeln!(out, "    <checksum type=\"sha256\">{}</checksum>", f.checksum)?;
        if let Some(open) = &f.open_checksum {
            writeln!(out, "    <open-checksum type=\"sha256\">{open}</open-checksum>")?;
        }
        writeln!(out, "    <location href=\"{}\"/>", attr(&f.location))?;
        writeln!(out, "    <timestamp>{timestamp}</timestamp>")?;
        writeln!(out, "    <size>{}</size>", f.size)?;
        if let Some(open) = f.open_size {
            writeln!(out, "    <open-size>{open}</open-size>")?;
        }
        writeln!(out, "  </data>")?;
    }
    writeln!(out, "</repomd>")?;
    Ok(out)
}
