//! `filelists.xml` (namespace `http://linux.duke.edu/metadata/filelists`): every file of every
//! package, with `type="dir"` for directories and `type="ghost"` for `%ghost` files, as
//! `createrepo_c` 0.17 writes it. yum needs it to resolve file dependencies outside the primary
//! file set.

use std::io::{self, Write};

use crate::repodata::RepoPackage;
use crate::repodata::primary::{file_type_attr, write_package_open};
use crate::repodata::xml::text;

/// Namespace of `filelists.xml`'s root element.
pub const NS_FILELISTS: &str = "http://linux.duke.edu/metadata/filelists";

/// Writes uncompressed `filelists.xml` for `packages`, in the given order, to `out`.
pub fn write_filelists<W: Write>(mut out: W, packages: &[RepoPackage]) -> io::Result<W> {
    writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
    writeln!(out, "<filelists xmlns=\"{NS_FILELISTS}\" packages=\"{}\">", packages.len())?;
    for p in packages {
        let h = &p.header;
        write_package_open(&mut out, h)?;
        for f in &h.files {
            writeln!(out, "  <file{}>{}</file>", file_type_attr(f.kind), text(&f.path))?;
        }
        writeln!(out, "</package>")?;
    }
    write!(out, "</filelists>")?;
    Ok(out)
}
