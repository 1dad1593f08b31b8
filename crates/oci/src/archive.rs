//! Random access to the members of an uncompressed tar archive (`docker save` output and OCI
//! archives), by an index of member names to data offsets built in one pass over the headers.
//! Symlinked members (skopeo writes `<id>/layer.tar -> ../<diff_id>.tar`) are resolved inside
//! the archive.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use camino::{Utf8Path, Utf8PathBuf};

use xspack_io::quote::truncated;

use crate::Error;
use crate::limits::shown;
use crate::tar_guard::TarWatch;

/// Longest chain of symlinked members followed.
const MAX_LINKS: usize = 8;

#[derive(Debug, Clone)]
enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

/// Member names → locations in one tar file.
#[derive(Debug)]
pub struct TarIndex {
    path: Utf8PathBuf,
    members: HashMap<String, Member>,
}

/// Normalises a member name: no `./` prefix, no empty or `.` components.
fn clean(name: &str) -> String {
    name.split('/').filter(|c| !c.is_empty() && *c != ".").collect::<Vec<_>>().join("/")
}

impl TarIndex {
    /// Reads every header of the tar at `path`, seeking over member data.
    pub fn scan(path: &Utf8Path) -> Result<Self, Error> {
        let file = File::open(path).map_err(|e| Error::io("opening archive", path.as_str(), e))?;
        let len =
            file.metadata().map_err(|e| Error::io("opening archive", path.as_str(), e))?.len();
        let bad = |reason: String| Error::Source { source_name: path.to_string(), reason };
        // Every header is inspected before the tar crate reads it (`tar_guard`): an oversized
        // pax or GNU long name header is refused from its size field.
        let watch = TarWatch::default();
        let mut archive = tar::Archive::new(watch.wrap(BufReader::new(file)));
        let mut members = HashMap::new();
        let entries =
            archive.entries_with_seek().map_err(|e| bad(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| match watch.refusal() {
                Some(refusal) => bad(format!(
                    "broken tar archive: member {:?} at byte {}: {}",
                    shown(&refusal.name),
                    refusal.offset,
                    refusal.reason
                )),
                None => bad(format!("broken tar archive: {}", truncated(&e.to_string()))),
            })?;
            drop(watch.entry_started(&mut entry));
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = clean(&name);
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let (offset, size) = (entry.raw_file_position(), entry.size());
                    // Seeking past the end succeeds: check that the data is really there.
                    if offset.checked_add(size).is_none_or(|end| end > len) {
                        return Err(bad(format!(
                            "archive truncated: member {} ({size} bytes) ends beyond the end of the file ({len} bytes)",
                            truncated(&name)
                        )));
                    }
                    Member::File { offset, size }
                }
                tar::EntryType::Symlink => {
                    let target =
                        entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned());
                    let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                    let target = target.unwrap_or_default();
                    let joined =
                        if target.starts_with('/') { target } else { format!("{dir}/{target}") };
                    Member::Link(resolve_dots(&joined))
                }
                _ => continue,
            };
            // Which copy a reader would pick is a guess: refuse rather than pick one.
            if members.contains_key(&name) {
                return Err(bad(format!("member {} appears more than once", truncated(&name))));
            }
            members.insert(name, member);
        }
        Ok(TarIndex { path: path.to_owned(), members })
    }

    /// Whether a regular or symlinked member `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.members.contains_key(&clean(name))
    }

    /// Offset and size of member `name`, following member symlinks.
    fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = clean(name);
        for _ in 0..MAX_LINKS {
            match self.members.get(&name)? {
                Member::File { offset, size } => return Some((*offset, *size)),
                Member::Link(target) => name = target.clone(),
            }
        }
        None
    }

    /// The size of member `name`.
    pub fn size(&self, name: &str) -> Option<u64> {
        self.locate(name).map(|(_, size)| size)
    }

    /// A reader of member `name`'s bytes.
    pub fn open(&self, name: &str) -> io::Result<Option<Box<dyn Read + Send>>> {
        let Some((offset, size)) = self.locate(name) else { return Ok(None) };
        let mut file = File::open(&self.path)?;
        file.seek(SeekFrom::Start(offset))?;
        Ok(Some(Box::new(file.take(size))))
    }
}

/// Resolves `.` and `..` in an archive-internal path (clamped at the archive root).
fn resolve_dots(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dots_resolve_inside() {
        assert_eq!(resolve_dots("abc/../def.tar"), "def.tar");
        assert_eq!(resolve_dots("/../../x"), "x");
        assert_eq!(clean("./blobs//sha256/./x"), "blobs/sha256/x");
    }
}
