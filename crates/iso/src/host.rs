//! Adding a directory tree from the host file system to an [`IsoBuilder`].
//!
//! Entries keep their permission bits and their type (directory, regular file, symlink, never
//! followed); owners become 0:0 and mtimes are clamped to `source_date_epoch`, as the
//! reproducible-builds `SOURCE_DATE_EPOCH` convention asks, so staging the same tree twice gives
//! the same image. File bytes are not read here: [`HostFiles::open`] opens them at write time.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use camino::{Utf8Path, Utf8PathBuf};

use crate::Error;
use crate::tree::{FileId, IsoBuilder, Metadata};

/// Host paths of the files added by [`IsoBuilder::add_host_tree`], to open at write time.
#[derive(Debug, Default, Clone)]
pub struct HostFiles {
    paths: BTreeMap<FileId, Utf8PathBuf>,
}

impl HostFiles {
    /// The host path of a file.
    pub fn path(&self, id: FileId) -> Option<&Utf8Path> {
        self.paths.get(&id).map(Utf8PathBuf::as_path)
    }

    /// Opens a file for reading; an id not added by this tree is a `NotFound` error.
    pub fn open(&self, id: FileId) -> io::Result<File> {
        let path = self.path(id).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("file #{} is not a host file", id.0))
        })?;
        File::open(path)
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether there are no files.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Adds the files of another tree.
    pub fn extend(&mut self, other: HostFiles) {
        self.paths.extend(other.paths);
    }
}

impl IsoBuilder {
    /// Adds everything below the host directory `src` at `dest` in the image (`""` for the image
    /// root, whose metadata then comes from `src`). Fails on FIFOs, sockets, devices and names
    /// or symlink targets that are not UTF-8.
    pub fn add_host_tree(&mut self, src: &Utf8Path, dest: &str) -> Result<HostFiles, Error> {
        let meta = fs::metadata(src).map_err(|e| Error::io("reading metadata", src, e))?;
        if !meta.is_dir() {
            return Err(Error::Unsupported { path: src.to_owned(), reason: "not a directory" });
        }
        let root_meta = self.host_meta(&meta);
        if dest.is_empty() {
            self.set_root_metadata(root_meta)?;
        } else {
            self.add_dir(dest, root_meta)?;
        }
        let mut files = HostFiles::default();
        let mut stack = vec![(src.to_owned(), dest.to_owned())];
        while let Some((dir, image_dir)) = stack.pop() {
            for (name, host) in sorted_children(&dir)? {
                let image = if image_dir.is_empty() { name } else { format!("{image_dir}/{name}") };
                let meta = fs::symlink_metadata(&host)
                    .map_err(|e| Error::io("reading metadata", &host, e))?;
                let md = self.host_meta(&meta);
                let kind = meta.file_type();
                if kind.is_dir() {
                    self.add_dir(&image, md)?;
                    stack.push((host, image));
                } else if kind.is_file() {
                    let id = self.add_file(&image, meta.len(), md)?;
                    files.paths.insert(id, host);
                } else if kind.is_symlink() {
                    let target =
                        fs::read_link(&host).map_err(|e| Error::io("reading symlink", &host, e))?;
                    let Some(target) = target.to_str() else {
                        return Err(Error::Unsupported {
                            path: host,
                            reason: "symlink target is not UTF-8",
                        });
                    };
                    self.add_symlink(&image, target, md)?;
                } else {
                    return Err(Error::Unsupported {
                        path: host,
                        reason: "not a regular file, directory or symlink",
                    });
                }
            }
        }
        Ok(files)
    }

    fn host_meta(&self, meta: &fs::Metadata) -> Metadata {
        let mode = meta.permissions().mode() & 0o7777;
        Metadata::new(mode).with_mtime(meta.mtime().min(self.options.source_date_epoch))
    }
}

/// The entries of a host directory, sorted by name.
fn sorted_children(dir: &Utf8Path) -> Result<Vec<(String, Utf8PathBuf)>, Error> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("reading directory", dir, e))? {
        let entry = entry.map_err(|e| Error::io("reading directory", dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            let lossy = entry.file_name().to_string_lossy().into_owned();
            return Err(Error::Unsupported { path: dir.join(lossy), reason: "name is not UTF-8" });
        };
        let host = dir.join(&name);
        out.push((name, host));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::IsoOptions;

    #[test]
    fn stages_a_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        fs::create_dir_all(root.join("sub/deeper")).unwrap();
        fs::write(root.join("install.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(root.join("install.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("sub/deeper/data"), "x").unwrap();
        symlink("../install.sh", root.join("sub/link")).unwrap();
        let mut b = IsoBuilder::new(IsoOptions::new("T", 1000)).unwrap();
        let files = b.add_host_tree(root, "").unwrap();
        assert_eq!(files.len(), 2);
        let (first, second) = (FileId(0), FileId(1));
        assert_eq!(b.file(first).unwrap(), ("install.sh".into(), 10));
        assert_eq!(b.file(second).unwrap(), ("sub/deeper/data".into(), 1));
        assert_eq!(files.path(first), Some(root.join("install.sh").as_path()));
        let node = b.files[0];
        assert_eq!(b.nodes[node].meta, Metadata::new(0o755).with_mtime(1000));
        assert!(files.open(FileId(7)).is_err());

        let mut b = IsoBuilder::new(IsoOptions::new("T", 1000)).unwrap();
        b.add_host_tree(root, "under/here").unwrap();
        assert_eq!(b.file(FileId(0)).unwrap().0, "under/here/install.sh");
    }

    #[test]
    fn refuses_special_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        let sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
        let mut b = IsoBuilder::new(IsoOptions::new("T", 0)).unwrap();
        let err = b.add_host_tree(root, "").unwrap_err();
        assert!(err.to_string().ends_with("sock: not a regular file, directory or symlink"));
        drop(sock);
        let err = b.add_host_tree(&root.join("missing"), "").unwrap_err();
        assert!(matches!(err, Error::Io(e) if e.op == "reading metadata"));
    }
}
