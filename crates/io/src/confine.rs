//! Input files named by a definition file (`pack.toml`, a template TOML), kept inside the
//! directories the user allows.
//!
//! A definition may come from a pull request, so the paths in it are not trusted: `../../`,
//! an absolute path, or a symbolic link committed beside the definition could make a build
//! read (and ship) any file the build user can read, such as `~/.ssh/id_rsa`. [`InputRoots`]
//! resolves each path with `realpath(3)` (every symbolic link and `..` followed) and accepts it
//! only if the result lies inside one of its roots: the directory of the definition, plus the
//! directories the user names on the command line (`--allow-outside`). It also accepts only
//! regular files, decided with `stat(2)` before anything opens the file, so a FIFO, a device
//! such as `/dev/zero` or a socket never blocks or streams forever.
//!
//! The check is made on the paths as they are when the build starts; the caller then reads
//! the resolved path it returns, which holds no symbolic link.

use std::fmt;
use std::os::unix::fs::FileTypeExt;

use camino::{Utf8Path, Utf8PathBuf};

/// The directories inputs may come from.
#[derive(Debug, Clone)]
pub struct InputRoots {
    /// Canonical roots, the definition's directory first.
    roots: Vec<Utf8PathBuf>,
}

/// Why an input path was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The path resolves outside every root.
    #[error(
        "{} resolves to {}, outside {}; allow that directory with --allow-outside",
        Shown(path),
        Shown(resolved),
        Shown(root)
    )]
    Outside {
        /// The path as written (joined to the definition's directory).
        path: Utf8PathBuf,
        /// Where it leads.
        resolved: Utf8PathBuf,
        /// The definition's own directory.
        root: Utf8PathBuf,
    },
    /// The path is not a regular file.
    #[error("{} is {kind}, not a regular file", Shown(path))]
    NotRegular {
        /// The path as written.
        path: Utf8PathBuf,
        /// What it is: "a directory", "a FIFO", "a character device", ...
        kind: &'static str,
    },
    /// The path cannot be resolved (missing, a dangling link, no permission, a loop).
    #[error("{}: {error}", Shown(path))]
    Unresolvable {
        /// The path as written.
        path: Utf8PathBuf,
        /// The cause, printed in the message (not a `source`, so it is said once).
        error: std::io::Error,
    },
    /// A root named by the user is not a directory.
    #[error("--allow-outside {}: {reason}", Shown(root))]
    BadRoot {
        /// The root as given.
        root: Utf8PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Displays a path from an untrusted definition: at most [`crate::MAX_QUOTED`] characters.
struct Shown<'a>(&'a Utf8Path);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::quote::truncated(self.0.as_str()))
    }
}

impl InputRoots {
    /// Inputs may come from `definition_dir` (`""` means the current directory) and from the
    /// directories in `allowed`, each of which must exist.
    pub fn new(definition_dir: &Utf8Path, allowed: &[Utf8PathBuf]) -> Result<Self, InputError> {
        let dir =
            if definition_dir.as_str().is_empty() { Utf8Path::new(".") } else { definition_dir };
        let mut roots = vec![
            dir.canonicalize_utf8()
                .map_err(|error| InputError::Unresolvable { path: dir.to_owned(), error })?,
        ];
        for root in allowed {
            let canonical = root
                .canonicalize_utf8()
                .map_err(|e| InputError::BadRoot { root: root.clone(), reason: e.to_string() })?;
            if !canonical.is_dir() {
                return Err(InputError::BadRoot {
                    root: root.clone(),
                    reason: "not a directory".into(),
                });
            }
            roots.push(canonical);
        }
        Ok(InputRoots { roots })
    }

    /// The same allowed directories, for a definition in `definition_dir` (a template named by
    /// a pack).
    pub fn for_dir(&self, definition_dir: &Utf8Path) -> Result<Self, InputError> {
        let mut roots = InputRoots::new(definition_dir, &[])?;
        roots.roots.extend(self.roots[1..].iter().cloned());
        Ok(roots)
    }

    /// The definition's own directory, resolved.
    pub fn definition_dir(&self) -> &Utf8Path {
        &self.roots[0]
    }

    /// Resolves `path` and checks that it is a regular file inside a root; returns the
    /// resolved path (no symbolic links left), which is what the caller should open.
    pub fn check_file(&self, path: &Utf8Path) -> Result<Utf8PathBuf, InputError> {
        let resolved = path
            .canonicalize_utf8()
            .map_err(|error| InputError::Unresolvable { path: path.to_owned(), error })?;
        if !self.roots.iter().any(|root| resolved.starts_with(root)) {
            return Err(InputError::Outside {
                path: path.to_owned(),
                resolved,
                root: self.roots[0].clone(),
            });
        }
        let kind = std::fs::metadata(&resolved)
            .map_err(|error| InputError::Unresolvable { path: path.to_owned(), error })?
            .file_type();
        if kind.is_file() {
            return Ok(resolved);
        }
        let kind = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a file"
        };
        Err(InputError::NotRegular { path: path.to_owned(), kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_QUOTED;

    fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = Utf8PathBuf::from_path_buf(t.path().canonicalize().unwrap()).unwrap();
        (t, p)
    }

    #[test]
    fn paths_stay_inside_their_roots() {
        let (_t, root) = tmp();
        let pack = root.join("pack");
        std::fs::create_dir_all(pack.join("files")).unwrap();
        std::fs::create_dir_all(root.join("shared")).unwrap();
        std::fs::write(pack.join("files/a"), b"a").unwrap();
        std::fs::write(root.join("secret"), b"s").unwrap();
        std::fs::write(root.join("shared/t"), b"t").unwrap();
        std::os::unix::fs::symlink("../../secret", pack.join("files/link")).unwrap();
        std::os::unix::fs::symlink("a", pack.join("files/inner")).unwrap();
        std::os::unix::fs::symlink(&root, pack.join("up")).unwrap();

        let roots = InputRoots::new(&pack, &[]).unwrap();
        assert_eq!(roots.check_file(&pack.join("files/a")).unwrap(), pack.join("files/a"));
        assert_eq!(roots.check_file(&pack.join("files/inner")).unwrap(), pack.join("files/a"));
        for escape in ["../secret", "files/../../secret", "files/link", "up/secret", "/etc/passwd"]
        {
            let err = roots.check_file(&pack.join(escape)).unwrap_err();
            assert!(matches!(err, InputError::Outside { .. }), "{escape}: {err}");
            assert!(err.to_string().contains("--allow-outside"), "{err}");
        }
        assert!(matches!(
            roots.check_file(&pack.join("../shared/t")),
            Err(InputError::Outside { .. })
        ));
        let wider = InputRoots::new(&pack, &[root.join("shared")]).unwrap();
        assert_eq!(wider.check_file(&pack.join("../shared/t")).unwrap(), root.join("shared/t"));
        assert!(wider.check_file(&pack.join("../secret")).is_err(), "only the named root opens");
        let template = wider.for_dir(&root.join("shared")).unwrap();
        assert!(template.check_file(&root.join("shared/t")).is_ok());
        assert!(template.check_file(&pack.join("files/a")).is_err());
        assert!(matches!(
            InputRoots::new(&pack, &[root.join("secret")]),
            Err(InputError::BadRoot { .. })
        ));
    }

    #[test]
    fn only_regular_files_are_inputs() {
        let (_t, root) = tmp();
        let fifo = root.join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fifo.as_std_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
        std::os::unix::fs::symlink("missing", root.join("dangling")).unwrap();
        std::fs::create_dir(root.join("dir")).unwrap();
        let roots = InputRoots::new(&root, &[Utf8PathBuf::from("/dev")]).unwrap();
        let kind = |p: &str| match roots.check_file(&root.join(p)) {
            Err(InputError::NotRegular { kind, .. }) => kind,
            other => panic!("{p}: {other:?}"),
        };
        assert_eq!(kind("fifo"), "a FIFO");
        assert_eq!(kind("zero"), "a character device");
        assert_eq!(kind("dir"), "a directory");
        assert!(matches!(
            roots.check_file(&root.join("dangling")),
            Err(InputError::Unresolvable { .. })
        ));
    }

    #[test]
    fn long_paths_are_shortened_in_messages() {
        let (_t, root) = tmp();
        let roots = InputRoots::new(&root, &[]).unwrap();
        let long = root.join("x".repeat(5000));
        let err = roots.check_file(&long).unwrap_err().to_string();
        assert!(err.len() < 2 * MAX_QUOTED + 100, "{} bytes: {err}", err.len());
    }
}
