//! Verifying a directory against its `SHA256SUMS` and `manifest.json`.
//!
//! Both lists are untrusted. Every listed file is opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` (see openat2(2)), so no path or symlink in the directory can make us read
//! outside it, and FIFOs are opened non-blocking and refused. Files are hashed in parallel, one
//! worker per core. The report names every missing, extra and mismatched file; when both lists
//! are present they must agree with each other as well as with the files.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use xspack_io::{Progress, ProgressReader, ProgressTask, ProgressUnit, Sha256Digest};

use crate::{Error, MANIFEST_NAME, Manifest, RelPath, SHA256SUMS_NAME, Sha256Sums};

/// The outcome of [`verify_dir`].
#[derive(Debug)]
pub struct VerifyReport {
    /// The directory verified.
    pub dir: Utf8PathBuf,
    /// Which of `SHA256SUMS` and `manifest.json` were present and used.
    pub sources: Vec<&'static str>,
    /// The manifest, when `manifest.json` was present.
    pub manifest: Option<Manifest>,
    /// Files that matched, with their sizes.
    pub verified: Vec<(RelPath, u64)>,
    /// Listed files that do not exist.
    pub missing: Vec<RelPath>,
    /// Files present in the directory but listed nowhere (lossy UTF-8 names).
    pub extra: Vec<String>,
    /// Listed files that exist but do not match.
    pub mismatched: Vec<Mismatch>,
}

/// A listed file that failed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The file.
    pub path: RelPath,
    /// What is wrong.
    pub problem: Problem,
}

/// What is wrong with a listed file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The content hashes to a different digest.
    Digest {
        /// Recorded digest.
        expected: Sha256Digest,
        /// Digest of the file now.
        actual: Sha256Digest,
    },
    /// The size differs from the one in `manifest.json`.
    Size {
        /// Recorded size.
        expected: u64,
        /// Size of the file now.
        actual: u64,
    },
    /// The path is a symlink, a directory, a device or a FIFO, or passes through a symlink.
    NotAFile,
    /// The file could not be read.
    Unreadable(String),
    /// The two lists disagree about this file.
    ListsDisagree(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Digest { expected, actual } => {
                write!(f, "sha256 mismatch (expected {expected}, found {actual})")
            }
            Problem::Size { expected, actual } => {
                write!(f, "size mismatch (expected {expected} bytes, found {actual})")
            }
            Problem::NotAFile => f.write_str("not a regular file inside the directory"),
            Problem::Unreadable(e) => write!(f, "unreadable: {e}"),
            Problem::ListsDisagree(why) => f.write_str(why),
        }
    }
}

impl VerifyReport {
    /// Whether every listed file matched and nothing else is present.
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.mismatched.is_empty()
    }

    /// Total bytes of the files that matched.
    pub fn verified_bytes(&self) -> u64 {
        self.verified.iter().map(|(_, n)| n).sum()
    }
}

/// What the lists say about one file.
#[derive(Debug, Default)]
struct Expected {
    from_sums: Option<Sha256Digest>,
    from_manifest: Option<(u64, Sha256Digest)>,
}

enum Outcome {
    Ok(u64),
    Missing,
    Bad(Problem),
}

/// Verifies the directory `dir` against the `SHA256SUMS` and/or `manifest.json` inside it.
///
/// Returns `Err` when the lists themselves are absent or malformed ([`xspack_io::Classify::is_bad_input`]) or
/// the directory cannot be read; otherwise a report, which may list problems.
pub fn verify_dir(dir: &Utf8Path, progress: &dyn Progress) -> Result<VerifyReport, Error> {
    verify(dir, None, progress)
}

/// Verifies the one file `path` of the directory `dir` against the lists there. Other files,
/// listed or not, are not looked at. It is an error ([`Error::NotListed`]) if no list names it.
pub fn verify_file(
    dir: &Utf8Path,
    path: &RelPath,
    progress: &dyn Progress,
) -> Result<VerifyReport, Error> {
    verify(dir, Some(path), progress)
}

fn verify(
    dir: &Utf8Path,
    only: Option<&RelPath>,
    progress: &dyn Progress,
) -> Result<VerifyReport, Error> {
    let sums = read_list(dir, SHA256SUMS_NAME, Sha256Sums::read_file)?;
    let manifest = read_list(dir, MANIFEST_NAME, Manifest::read_file)?;
    if sums.is_none() && manifest.is_none() {
        return Err(Error::NoManifest { dir: dir.to_owned() });
    }
    let mut sources = Vec::new();
    let mut expected: BTreeMap<RelPath, Expected> = BTreeMap::new();
    if let Some(sums) = &sums {
        sources.push(SHA256SUMS_NAME);
        for (path, digest) in sums.iter() {
            expected.entry(path.clone()).or_default().from_sums = Some(*digest);
        }
    }
    if let Some(manifest) = &manifest {
        sources.push(MANIFEST_NAME);
        for out in &manifest.outputs {
            expected.entry(out.path.clone()).or_default().from_manifest =
                Some((out.size, out.sha256));
        }
    }
    if let Some(only) = only {
        if !expected.contains_key(only) {
            return Err(Error::NotListed {
                path: only.clone(),
                dir: dir.to_owned(),
                lists: sources.join(" or "),
            });
        }
        expected.retain(|p, _| p == only);
    }

    let root = File::open(dir).map_err(|e| Error::io("opening directory", dir, e))?;
    let entries: Vec<(&RelPath, &Expected)> = expected.iter().collect();
    let total: u64 =
        entries.iter().filter_map(|(_, e)| e.from_manifest.map(|(size, _)| size)).sum();
    let task = progress.task("verifying", (total > 0).then_some(total), ProgressUnit::Bytes);
    let outcomes = check_all(&root, &entries, sources.len() == 2, task.as_ref());
    task.finish();

    let extra = if only.is_some() { Vec::new() } else { find_extra(dir, &expected)? };
    let mut report = VerifyReport {
        dir: dir.to_owned(),
        sources,
        manifest,
        verified: Vec::new(),
        missing: Vec::new(),
        extra,
        mismatched: Vec::new(),
    };
    for ((path, _), outcome) in entries.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Ok(size) => report.verified.push((path.clone(), size)),
            Outcome::Missing => report.missing.push(path.clone()),
            Outcome::Bad(problem) => {
                report.mismatched.push(Mismatch { path: path.clone(), problem });
            }
        }
    }
    Ok(report)
}

fn read_list<T>(
    dir: &Utf8Path,
    name: &str,
    read: impl Fn(&Utf8Path) -> Result<T, Error>,
) -> Result<Option<T>, Error> {
    let path = dir.join(name);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("reading", path, e)),
        Ok(meta) if !meta.is_file() => {
            Err(Error::Manifest { file: path, reason: "not a regular file".into() })
        }
        Ok(_) => read(&path).map(Some),
    }
}

/// Checks every entry, spreading the work over the available cores.
fn check_all(
    root: &File,
    entries: &[(&RelPath, &Expected)],
    both_lists: bool,
    task: &dyn ProgressTask,
) -> Vec<Outcome> {
    let workers =
        std::thread::available_parallelism().map_or(1, usize::from).min(entries.len()).max(1);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> =
        Mutex::new((0..entries.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, expected)) = entries.get(i) else { break };
                    let outcome = check_one(root, path, expected, both_lists, task);
                    results.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[i] =
                        Some(outcome);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .into_iter()
        .map(|o| o.expect("every entry checked"))
        .collect()
}

fn check_one(
    root: &File,
    path: &RelPath,
    expected: &Expected,
    both_lists: bool,
    task: &dyn ProgressTask,
) -> Outcome {
    if let (Some(a), Some((_, b))) = (expected.from_sums, expected.from_manifest)
        && a != b
    {
        return Outcome::Bad(Problem::ListsDisagree(format!(
            "{SHA256SUMS_NAME} says {a} but {MANIFEST_NAME} says {b}"
        )));
    }
    if both_lists {
        match (expected.from_sums, expected.from_manifest) {
            (Some(_), None) => {
                return Outcome::Bad(Problem::ListsDisagree(format!(
                    "listed in {SHA256SUMS_NAME} only"
                )));
            }
            (None, Some(_)) => {
                return Outcome::Bad(Problem::ListsDisagree(format!(
                    "listed in {MANIFEST_NAME} only"
                )));
            }
            _ => {}
        }
    }
    let file = match open_beneath(root, path.as_str()) {
        Ok(f) => f,
        Err(e) => return classify_open_error(&e),
    };
    let meta = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Outcome::Bad(Problem::Unreadable(e.to_string())),
    };
    if !meta.is_file() {
        return Outcome::Bad(Problem::NotAFile);
    }
    if let Some((size, _)) = expected.from_manifest
        && size != meta.len()
    {
        return Outcome::Bad(Problem::Size { expected: size, actual: meta.len() });
    }
    let want =
        expected.from_sums.or(expected.from_manifest.map(|(_, d)| d)).expect("listed somewhere");
    match xspack_io::hash_reader(ProgressReader::new(file, task)) {
        Ok((actual, _)) if actual == want => Outcome::Ok(meta.len()),
        Ok((actual, _)) => Outcome::Bad(Problem::Digest { expected: want, actual }),
        Err(e) => Outcome::Bad(Problem::Unreadable(e.to_string())),
    }
}

fn classify_open_error(e: &io::Error) -> Outcome {
    match e.raw_os_error().map(rustix::io::Errno::from_raw_os_error) {
        Some(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => Outcome::Missing,
        Some(rustix::io::Errno::LOOP | rustix::io::Errno::XDEV) => Outcome::Bad(Problem::NotAFile),
        _ => Outcome::Bad(Problem::Unreadable(e.to_string())),
    }
}

/// Opens `rel` under `root` without following any symlink and without leaving `root`.
fn open_beneath(root: &File, rel: &str) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    loop {
        match rustix::fs::openat2(root, rel, flags, Mode::empty(), resolve) {
            Ok(fd) => return Ok(File::from(fd)),
            // The kernel asks for a retry when a rename raced with the lookup.
            Err(rustix::io::Errno::AGAIN) => {}
            Err(rustix::io::Errno::NOSYS) => return open_beneath_fallback(root, rel, flags),
            Err(e) => return Err(e.into()),
        }
    }
}

/// For kernels before 5.6: refuse symlinked ancestors by hand, then open with `O_NOFOLLOW`.
fn open_beneath_fallback(root: &File, rel: &str, flags: OFlags) -> io::Result<File> {
    let mut prefix = String::new();
    let components: Vec<&str> = rel.split('/').collect();
    for component in &components[..components.len() - 1] {
        prefix.push_str(component);
        let st = rustix::fs::statat(root, prefix.as_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
            return Err(rustix::io::Errno::LOOP.into());
        }
        prefix.push('/');
    }
    Ok(File::from(rustix::fs::openat(root, rel, flags, Mode::empty())?))
}

/// Every non-directory under `dir` that no list names, except the lists themselves.
fn find_extra(
    dir: &Utf8Path,
    expected: &BTreeMap<RelPath, Expected>,
) -> Result<Vec<String>, Error> {
    let mut extra = Vec::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().map_or_else(
                || dir.to_owned(),
                |p| Utf8PathBuf::from(p.to_string_lossy().as_ref()),
            );
            Error::io("walking directory", path, e.into())
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let rel = entry.path().strip_prefix(dir).expect("walk stays under its root");
        let name = rel.to_string_lossy().into_owned();
        if name == SHA256SUMS_NAME || name == MANIFEST_NAME {
            continue;
        }
        let listed = rel
            .to_str()
            .and_then(|s| RelPath::new(s).ok())
            .is_some_and(|p| expected.contains_key(&p));
        if !listed {
            extra.push(name);
        }
    }
    Ok(extra)
}
