//! Which existing directory a build may replace (`--force`).
//!
//! Replacing swaps the new tree in with `renameat2(RENAME_EXCHANGE)` and deletes the old one, so
//! the rule is strict: a build replaces only a directory that is empty, or that holds a previous
//! build of the same tool and nothing else. That is, its `manifest.json` parses, names the tool,
//! and lists every file in the directory (`SHA256SUMS` and `manifest.json` aside). Beyond that,
//! the directory must not be, or hold, a [`Guarded`] path: the current directory, the home
//! directory, or an input of the build. Symbolic links are never followed inside it, and a
//! symbolic link, a regular file or a device in place of the directory is refused.
//!
//! The check runs when the build starts and again just before the exchange.

use std::collections::BTreeSet;
use std::io::Read;

use camino::{Utf8Path, Utf8PathBuf};

use crate::{Error, MANIFEST_NAME, Manifest, SHA256SUMS_NAME};

/// The largest `manifest.json` read to decide whether a directory is a previous build.
pub const MAX_MANIFEST_BYTES: u64 = crate::MAX_LIST_BYTES;

/// A path that a replaced directory must neither be nor contain.
#[derive(Debug, Clone)]
pub struct Guarded {
    /// The path.
    pub path: Utf8PathBuf,
    /// What it is, for the error: "the current directory", "the input foo.tar".
    pub what: String,
}

impl Guarded {
    /// Guards `path`, described as `what`.
    pub fn new(path: impl Into<Utf8PathBuf>, what: impl Into<String>) -> Self {
        Guarded { path: path.into(), what: what.into() }
    }

    /// The paths every build guards: the current directory and `$HOME`.
    pub fn defaults() -> Vec<Guarded> {
        let mut guarded = Vec::new();
        if let Some(cwd) = std::env::current_dir().ok().and_then(|p| Utf8PathBuf::try_from(p).ok())
        {
            guarded.push(Guarded::new(cwd, "the current directory"));
        }
        if let Some(home) = std::env::var("HOME").ok().filter(|h| !h.is_empty()) {
            guarded.push(Guarded::new(home, "the home directory"));
        }
        guarded
    }
}

/// Checks that `dest` may be replaced by a build of `tool`: see the module documentation.
/// A `dest` that does not exist passes (there is nothing to replace).
pub fn check_replaceable(dest: &Utf8Path, tool: &str, guarded: &[Guarded]) -> Result<(), Error> {
    let refuse = |reason: String| Error::NotReplaceable { dir: dest.to_owned(), reason };
    let meta = match std::fs::symlink_metadata(dest) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("checking output directory", dest, e)),
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Err(refuse("is a symbolic link, not a directory".into()));
    }
    if !kind.is_dir() {
        return Err(refuse("is a file, not a directory".into()));
    }
    let canonical = canonical(dest)?;
    for g in guarded {
        let inside = match g.path.canonicalize_utf8() {
            Ok(p) => p,
            // A guarded path that does not exist (an input named by a transport prefix, say)
            // is compared as written, made absolute.
            Err(_) => absolute(&g.path),
        };
        if inside.starts_with(&canonical) {
            let how = if inside == canonical { "is" } else { "holds" };
            return Err(refuse(format!("{how} {}", g.what)));
        }
    }
    let mut entries =
        std::fs::read_dir(dest).map_err(|e| Error::io("reading output directory", dest, e))?;
    if entries.next().is_none() {
        return Ok(());
    }
    let listed = previous_build(dest, tool).map_err(refuse)?;
    check_listed(dest, &listed).map_err(refuse)
}

/// The files a previous build in `dest` listed, or why `dest` is not one.
fn previous_build(dest: &Utf8Path, tool: &str) -> Result<BTreeSet<String>, String> {
    let not_ours = |why: &str| format!("is not empty and {why}, so it is not a previous build");
    let path = dest.join(MANIFEST_NAME);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => meta,
        Ok(_) => return Err(not_ours(&format!("its {MANIFEST_NAME} is not a regular file"))),
        Err(_) => return Err(not_ours(&format!("holds no {MANIFEST_NAME}"))),
    };
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(not_ours(&format!(
            "its {MANIFEST_NAME} is larger than {} MiB",
            MAX_MANIFEST_BYTES >> 20
        )));
    }
    let mut data = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES).read_to_end(&mut data))
        .map_err(|e| not_ours(&format!("its {MANIFEST_NAME} cannot be read ({e})")))?;
    let manifest = Manifest::parse(&data, &path)
        .map_err(|e| not_ours(&format!("its {MANIFEST_NAME} is not valid ({e})")))?;
    if manifest.tool.name != tool {
        return Err(not_ours(&format!(
            "its {MANIFEST_NAME} names the tool {:?}, not {tool}",
            manifest.tool.name
        )));
    }
    let mut listed: BTreeSet<String> =
        manifest.outputs.iter().map(|o| o.path.as_str().to_owned()).collect();
    listed.insert(MANIFEST_NAME.to_owned());
    listed.insert(SHA256SUMS_NAME.to_owned());
    Ok(listed)
}

/// Walks `dest` (without following symlinks): every file must be `listed`, and directories
/// may hold only listed files. Stops at the first entry that is not.
fn check_listed(dest: &Utf8Path, listed: &BTreeSet<String>) -> Result<(), String> {
    let mut pending = vec![String::new()];
    while let Some(rel) = pending.pop() {
        let dir = if rel.is_empty() { dest.to_owned() } else { dest.join(&rel) };
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("cannot be read: {dir}: {e}"))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot be read: {dir}: {e}"))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = if rel.is_empty() { name.into_owned() } else { format!("{rel}/{name}") };
            let kind = entry.file_type().map_err(|e| format!("cannot be read: {path}: {e}"))?;
            if kind.is_dir() {
                if !listed.iter().any(|l| l.starts_with(&format!("{path}/"))) {
                    return Err(unlisted(&path, "a directory"));
                }
                pending.push(path);
            } else if !kind.is_file() {
                return Err(unlisted(&path, "a special file or symbolic link"));
            } else if !listed.contains(&path) {
                return Err(unlisted(&path, "a file"));
            }
        }
    }
    Ok(())
}

fn unlisted(path: &str, what: &str) -> String {
    let shown: String = path.chars().take(200).collect();
    format!(
        "holds {what} its {MANIFEST_NAME} does not list ({shown}), so it is not only a previous build"
    )
}

fn canonical(path: &Utf8Path) -> Result<Utf8PathBuf, Error> {
    path.canonicalize_utf8().map_err(|e| Error::io("resolving output directory", path, e))
}

/// `path` made absolute against the current directory, lexically.
fn absolute(path: &Utf8Path) -> Utf8PathBuf {
    std::path::absolute(path)
        .ok()
        .and_then(|p| Utf8PathBuf::try_from(p).ok())
        .unwrap_or_else(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OutputDir, RelPath, Tool};

    fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = Utf8PathBuf::from_path_buf(t.path().canonicalize().unwrap()).unwrap();
        (t, p)
    }

    fn build(dest: &Utf8Path, files: &[&str]) {
        let tool = Tool { name: "xspack".into(), version: "0".into() };
        let mut out = OutputDir::create(dest, tool, 0, false).unwrap();
        for f in files {
            out.write_file(&RelPath::new(*f).unwrap(), b"x").unwrap();
        }
        out.commit().unwrap();
    }

    fn reason(dest: &Utf8Path, guarded: &[Guarded]) -> String {
        match check_replaceable(dest, "xspack", guarded) {
            Err(Error::NotReplaceable { reason, .. }) => reason,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn empty_missing_and_previous_builds_may_be_replaced() {
        let (_t, root) = tmp();
        check_replaceable(&root.join("missing"), "xspack", &[]).unwrap();
        std::fs::create_dir(root.join("empty")).unwrap();
        check_replaceable(&root.join("empty"), "xspack", &[]).unwrap();
        build(&root.join("dist"), &["a.iso", "sub/b.vhd"]);
        check_replaceable(&root.join("dist"), "xspack", &[]).unwrap();
    }

    #[test]
    fn anything_else_is_refused() {
        let (_t, root) = tmp();
        std::fs::write(root.join("file"), b"x").unwrap();
        assert!(reason(&root.join("file"), &[]).contains("is a file"));
        std::os::unix::fs::symlink("file", root.join("link")).unwrap();
        assert!(reason(&root.join("link"), &[]).contains("symbolic link"));

        std::fs::create_dir(root.join("photos")).unwrap();
        std::fs::write(root.join("photos/cat.jpg"), b"x").unwrap();
        assert!(reason(&root.join("photos"), &[]).contains("holds no manifest.json"));

        build(&root.join("dist"), &["a.iso", "sub/b.vhd"]);
        std::fs::write(root.join("dist/notes.txt"), b"mine").unwrap();
        assert!(reason(&root.join("dist"), &[]).contains("(notes.txt)"));
        std::fs::remove_file(root.join("dist/notes.txt")).unwrap();
        std::fs::create_dir(root.join("dist/sub/more")).unwrap();
        assert!(reason(&root.join("dist"), &[]).contains("a directory"));
        std::fs::remove_dir(root.join("dist/sub/more")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("dist/sub/etc")).unwrap();
        assert!(reason(&root.join("dist"), &[]).contains("symbolic link"));
        std::fs::remove_file(root.join("dist/sub/etc")).unwrap();
        check_replaceable(&root.join("dist"), "xspack", &[]).unwrap();

        let manifest = std::fs::read_to_string(root.join("dist/manifest.json")).unwrap();
        std::fs::write(root.join("dist/manifest.json"), manifest.replace("xspack", "other"))
            .unwrap();
        assert!(reason(&root.join("dist"), &[]).contains("names the tool \"other\""));
        std::fs::write(root.join("dist/manifest.json"), b"{").unwrap();
        assert!(reason(&root.join("dist"), &[]).contains("not valid"));
    }

    #[test]
    fn guarded_paths_are_never_replaced() {
        let (_t, root) = tmp();
        std::fs::create_dir_all(root.join("work/src")).unwrap();
        let guard = [Guarded::new(root.join("work/src"), "the input src")];
        assert_eq!(reason(&root.join("work"), &guard), "holds the input src");
        assert_eq!(reason(&root.join("work/src"), &guard), "is the input src");
        // Reached through a symlinked parent, or spelled with `..`, it is the same directory.
        std::os::unix::fs::symlink(root.join("work"), root.join("alias")).unwrap();
        assert_eq!(reason(&root.join("alias/src/../src"), &guard), "is the input src");
        check_replaceable(&root.join("elsewhere"), "xspack", &guard).unwrap();
        std::fs::create_dir(root.join("sibling")).unwrap();
        check_replaceable(&root.join("sibling"), "xspack", &guard).unwrap();
        // An empty directory holding the input still holds it.
        let nested = [Guarded::new(root.join("sibling/not-yet"), "the input not-yet")];
        assert_eq!(reason(&root.join("sibling"), &nested), "holds the input not-yet");
    }
}
