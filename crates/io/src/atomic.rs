//! Atomic outputs: an artifact appears under its final name complete, or not at all.
//!
//! Output is written to a temporary file (or directory) in the destination's own directory,
//! flushed to disk with fsync, then renamed into place with `renameat2(RENAME_NOREPLACE)` so an
//! existing artifact is never clobbered by accident (see rename(2)). The parent directory is
//! fsynced afterwards so the rename itself survives a crash.
//!
//! Every live temporary path is kept in a process-wide registry. On error the owner's `Drop`
//! removes it; on SIGINT, SIGTERM or SIGHUP the handler thread started by
//! [`install_signal_cleanup`] removes every registered path and then lets the signal terminate
//! the process. Creating, committing and cleaning up all happen under the registry lock, so a
//! signal can never slip in between a rename and the bookkeeping. Parent directories that an
//! output made ([`AtomicDir::create_with_parents`]) are registered too, and removed (when still
//! empty) with it.
//!
//! A process killed by SIGKILL, or a machine that lost power, cleans up nothing. So each
//! temporary is locked (`flock(2)`, exclusive) by the process that made it, for as long as it
//! lives, and every new output first sweeps the temporaries of the same destination that no
//! live process holds: `.NAME.XXXXXX.xspack-tmp` beside `NAME`. The sweep and the creation of
//! the new temporary happen under a lock on the parent directory, so a sweep can never take a
//! temporary that another build has made but not yet locked. Builds hold that lock for
//! milliseconds; if another program holds it for seconds, the sweep is skipped rather than the
//! build kept waiting.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{CWD, RenameFlags, renameat_with};
use tempfile::{NamedTempFile, TempDir};

use crate::Error;

/// Suffix of every temporary output name, so leftovers are easy to recognise.
const TEMP_SUFFIX: &str = ".xspack-tmp";
/// Mode of committed files and directories (before the umask of the directory's owner matters).
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// What a signal's cleanup does with a registered path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cleanup {
    /// A temporary output: removed with everything in it.
    Remove,
    /// A parent directory an output made: removed only if empty, after every temporary.
    RemoveIfEmpty,
}

#[derive(Default)]
struct Registry {
    next_id: u64,
    live: BTreeMap<u64, (Utf8PathBuf, Cleanup)>,
}

fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: Mutex<Registry> = Mutex::new(Registry { next_id: 0, live: BTreeMap::new() });
    // A panic elsewhere must not stop cleanup: the data is a plain map and stays consistent.
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    fn add(&mut self, path: Utf8PathBuf, cleanup: Cleanup) -> Registration {
        let id = self.next_id;
        self.next_id += 1;
        self.live.insert(id, (path, cleanup));
        Registration(Some(id))
    }

    /// Removes every temporary, then every directory made for one (innermost first).
    fn clean_all(&self) {
        for (path, cleanup) in self.live.values() {
            if *cleanup == Cleanup::Remove {
                remove_path(path);
            }
        }
        for (path, cleanup) in self.live.values().rev() {
            if *cleanup == Cleanup::RemoveIfEmpty {
                let _ = fs::remove_dir(path);
            }
        }
    }
}

/// Removes its registry entry when dropped, unless already removed under the lock.
struct Registration(Option<u64>);

impl Registration {
    fn release(&mut self, reg: &mut Registry) {
        if let Some(id) = self.0.take() {
            reg.live.remove(&id);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if self.0.is_some() {
            let mut reg = registry();
            self.release(&mut reg);
        }
    }
}

/// Temporary output paths that currently exist and would be removed on a signal.
pub fn live_temp_paths() -> Vec<Utf8PathBuf> {
    registry()
        .live
        .values()
        .filter(|(_, cleanup)| *cleanup == Cleanup::Remove)
        .map(|(path, _)| path.clone())
        .collect()
}

/// Starts a thread that, on SIGINT, SIGTERM or SIGHUP, removes every live temporary output and
/// then terminates the process as the signal would have; SIGXFSZ is caught so that exceeding a
/// file size limit is an ordinary write error (EFBIG). Call it once, early in `main`; later
/// calls do nothing.
pub fn install_signal_cleanup() -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    static INSTALLED: OnceLock<()> = OnceLock::new();
    if INSTALLED.get().is_some() {
        return Ok(());
    }
    // A file size limit (RLIMIT_FSIZE) raises SIGXFSZ, whose default action kills the process
    // before any cleanup can run. With a handler installed the write fails with EFBIG instead,
    // and the ordinary error path reports it and removes the temporary outputs.
    signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    )?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new().name("xspack-signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            // Hold the lock until the process ends, so no commit or new temp file can follow.
            registry().clean_all();
            let _ = signal_hook::low_level::emulate_default_handler(signal);
            std::process::exit(128 + signal);
        }
    })?;
    let _ = INSTALLED.set(());
    Ok(())
}

/// Removes `path`. The build's other threads run on while the signal thread does this, and
/// one may create a file in a temporary directory being removed (its final `rmdir` then fails
/// as not empty) or create the directory again: so it tries until the path is gone, a few
/// times.
fn remove_path(path: &Utf8Path) {
    for _ in 0..100 {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {
                let _ = fs::remove_dir_all(path);
            }
            Ok(_) => {
                let _ = fs::remove_file(path);
            }
            Err(_) => return,
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Directories made for an output's parent, outermost first, each registered for removal
/// (when empty) on a signal. Dropping it removes those still empty, innermost first; an
/// output that commits keeps them ([`MadeDirs::keep`]).
#[derive(Default)]
struct MadeDirs(Vec<(Utf8PathBuf, Registration)>);

impl MadeDirs {
    /// Makes the missing directories of `dir`'s chain, registering each one made here.
    fn make(reg: &mut Registry, dir: &Utf8Path) -> Result<Self, Error> {
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at.filter(|d| !d.as_str().is_empty()) {
            match fs::symlink_metadata(d) {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(d.to_owned()),
                Err(e) => return Err(Error::io("checking output path", d, e)),
            }
            at = d.parent();
        }
        let mut made = MadeDirs::default();
        for d in missing.into_iter().rev() {
            match fs::create_dir(&d) {
                Ok(()) => {
                    let registration = reg.add(d.clone(), Cleanup::RemoveIfEmpty);
                    made.0.push((d, registration));
                }
                // Another process made it meanwhile: it is theirs, not ours to remove.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("creating directory", &d, e)),
            }
        }
        Ok(made)
    }

    /// Keeps the directories: the output that needed them is in place.
    fn keep(mut self, reg: &mut Registry) {
        for (_, registration) in &mut self.0 {
            registration.release(reg);
        }
        self.0.clear();
    }

    /// Removes the directories (those still empty) with the registry already locked.
    fn remove(mut self, reg: &mut Registry) {
        for (dir, registration) in self.0.iter_mut().rev() {
            let _ = fs::remove_dir(&*dir);
            registration.release(reg);
        }
        self.0.clear();
    }
}

impl Drop for MadeDirs {
    fn drop(&mut self) {
        for (dir, _) in self.0.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Whether `entry` is the name of a temporary of the output named `name`:
/// `.NAME.XXXXXX.xspack-tmp`, six letters and digits in the middle (tempfile's random part).
fn is_temp_of(entry: &str, name: &str) -> bool {
    entry
        .strip_prefix('.')
        .and_then(|e| e.strip_prefix(name))
        .and_then(|e| e.strip_prefix('.'))
        .and_then(|e| e.strip_suffix(TEMP_SUFFIX))
        .is_some_and(|rand| rand.len() == 6 && rand.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Takes an exclusive `flock` on `file` without waiting.
fn lock(file: &File) -> io::Result<()> {
    use rustix::fs::{FlockOperation, flock};
    flock(file, FlockOperation::NonBlockingLockExclusive).map_err(io::Error::from)
}

/// How long a build waits for the lock on an output's parent directory. Builds hold it for
/// milliseconds; a lock held longer is someone else's, and the sweep is skipped rather than
/// the build made to wait on it.
const PARENT_LOCK_WAIT: std::time::Duration =
    std::time::Duration::from_millis(if cfg!(test) { 200 } else { 5_000 });

/// Takes an exclusive `flock` on `file`, trying for up to `wait`.
fn lock_within(file: &File, wait: std::time::Duration) -> io::Result<()> {
    let start = std::time::Instant::now();
    loop {
        match lock(file) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && start.elapsed() < wait => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            done => return done,
        }
    }
}

/// Opens `path` (a file or directory, never following a symlink nor waiting on a FIFO) for
/// locking.
fn open_for_lock(path: &Utf8Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags, open};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    Ok(File::from(open(path.as_std_path(), flags, Mode::empty())?))
}

/// Locks `parent` and removes the temporaries of `name` in it that no live process holds (left
/// by a process killed with SIGKILL, or a crash). Returns the locked parent, to be held until
/// the new temporary is made and locked; `None` where the filesystem has no `flock`, and then
/// nothing is swept.
fn sweep_stale(parent: &Utf8Path, name: &str) -> Option<File> {
    let dir = File::open(parent).ok()?;
    lock_within(&dir, PARENT_LOCK_WAIT).ok()?;
    let Ok(entries) = fs::read_dir(parent) else { return Some(dir) };
    for entry in entries.flatten() {
        let Some(entry_name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if !is_temp_of(&entry_name, name) {
            continue;
        }
        let path = parent.join(&entry_name);
        let Ok(meta) = fs::symlink_metadata(&path) else { continue };
        if !(meta.is_dir() || meta.is_file()) {
            continue;
        }
        let Ok(held) = open_for_lock(&path) else { continue };
        if lock(&held).is_ok() {
            // Nobody holds it: its owner is gone. Remove it while holding its lock.
            if meta.is_dir() {
                let _ = fs::remove_dir_all(&path);
            } else {
                let _ = fs::remove_file(&path);
            }
        }
    }
    Some(dir)
}

/// Splits `dest` into its parent directory (`.` when empty) and file name.
fn split_dest(dest: &Utf8Path) -> Result<(Utf8PathBuf, String), Error> {
    let invalid = || Error::InvalidPath { path: dest.to_owned() };
    let name = dest.file_name().ok_or_else(invalid)?;
    let parent = match dest.parent() {
        Some(p) if !p.as_str().is_empty() => p.to_owned(),
        _ => Utf8PathBuf::from("."),
    };
    Ok((parent, name.to_owned()))
}

fn check_absent(dest: &Utf8Path) -> Result<(), Error> {
    match fs::symlink_metadata(dest) {
        Ok(_) => Err(Error::Exists { path: dest.to_owned() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("checking output path", dest, e)),
    }
}

fn temp_path(path: &std::path::Path) -> Result<Utf8PathBuf, Error> {
    Utf8PathBuf::from_path_buf(path.to_owned())
        .map_err(|p| Error::InvalidPath { path: Utf8PathBuf::from(p.to_string_lossy().as_ref()) })
}

fn sync_dir(dir: &Utf8Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io("syncing directory", dir, e))
}

/// A temporary output just made, registered and locked.
struct Started<T> {
    temp: T,
    path: Utf8PathBuf,
    registration: Registration,
    /// The lock on the temporary, when it needs a handle of its own (a directory).
    lock: Option<File>,
    made_dirs: MadeDirs,
}

/// Checks `dest` (absent unless `replace`), makes its parent directories when `parents`,
/// sweeps stale temporaries of `dest`, then makes its temporary stand-in beside it with `make`,
/// locks it with `hold` and registers it, under the registry lock so a signal cannot strike
/// in between.
fn start<T>(
    dest: &Utf8Path,
    replace: bool,
    parents: bool,
    (mode, what): (u32, &'static str),
    make: impl FnOnce(&tempfile::Builder<'_, '_>, &Utf8Path) -> io::Result<T>,
    path_of: impl FnOnce(&T) -> &std::path::Path,
    hold: impl FnOnce(&T, &Utf8Path) -> Option<File>,
) -> Result<Started<T>, Error> {
    let (parent, name) = split_dest(dest)?;
    let mut reg = registry();
    let made_dirs = if parents { MadeDirs::make(&mut reg, &parent)? } else { MadeDirs::default() };
    let attempt = (|| {
        if !replace {
            check_absent(dest)?;
        }
        let parent_lock = sweep_stale(&parent, &name);
        let prefix = format!(".{name}.");
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(TEMP_SUFFIX).permissions(fs::Permissions::from_mode(mode));
        let temp = make(&builder, &parent).map_err(|e| Error::io(what, &parent, e))?;
        let path = temp_path(path_of(&temp))?;
        let lock = hold(&temp, &path);
        drop(parent_lock);
        Ok((temp, path, lock))
    })();
    match attempt {
        Ok((temp, path, lock)) => {
            let registration = reg.add(path.clone(), Cleanup::Remove);
            Ok(Started { temp, path, registration, lock, made_dirs })
        }
        Err(e) => {
            made_dirs.remove(&mut reg);
            Err(e)
        }
    }
}

/// A file that appears at its destination only when [`AtomicFile::commit`] succeeds.
///
/// Writes go to a temporary file beside the destination. Dropping an uncommitted `AtomicFile`
/// removes the temporary file.
pub struct AtomicFile {
    // Declared before `registration` so the file is removed before the entry is released.
    temp: Option<NamedTempFile>,
    registration: Registration,
    dest: Utf8PathBuf,
    replace: bool,
}

impl AtomicFile {
    /// Starts writing `dest`, which must not exist now nor when committed.
    pub fn create(dest: impl AsRef<Utf8Path>) -> Result<Self, Error> {
        Self::open(dest.as_ref(), false)
    }

    /// Starts writing `dest`, replacing it on commit if it exists.
    pub fn create_or_replace(dest: impl AsRef<Utf8Path>) -> Result<Self, Error> {
        Self::open(dest.as_ref(), true)
    }

    fn open(dest: &Utf8Path, replace: bool) -> Result<Self, Error> {
        let started = start(
            dest,
            replace,
            false,
            (FILE_MODE, "creating temporary file"),
            |b, parent| b.tempfile_in(parent),
            |t| t.path(),
            // The file's own descriptor holds the lock while it is written.
            |t: &NamedTempFile, _| {
                let _ = lock(t.as_file());
                None
            },
        )?;
        Ok(AtomicFile {
            temp: Some(started.temp),
            registration: started.registration,
            dest: dest.to_owned(),
            replace,
        })
    }

    /// The final path.
    pub fn dest(&self) -> &Utf8Path {
        &self.dest
    }

    fn file(&mut self) -> &mut File {
        self.temp.as_mut().expect("temp file present until commit").as_file_mut()
    }

    /// Flushes the data to disk and renames the file into place.
    pub fn commit(mut self) -> Result<Utf8PathBuf, Error> {
        let temp = self.temp.take().expect("temp file present until commit");
        temp.as_file()
            .sync_all()
            .map_err(|e| Error::io("syncing", temp.path().to_string_lossy().as_ref(), e))?;
        let mut reg = registry();
        let persisted = if self.replace {
            temp.persist(&self.dest)
        } else {
            temp.persist_noclobber(&self.dest)
        };
        // On failure `persisted` still owns the temp file and removes it when dropped below.
        self.registration.release(&mut reg);
        drop(reg);
        match persisted {
            Ok(_) => {}
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::Exists { path: self.dest.clone() });
            }
            Err(e) => return Err(Error::io("renaming into place", &self.dest, e.error)),
        }
        let (parent, _) = split_dest(&self.dest)?;
        sync_dir(&parent)?;
        Ok(self.dest.clone())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

/// Reading back what was written (an RPM's payload, to sign it), before the commit.
impl Read for AtomicFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file().read(buf)
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file().seek(pos)
    }
}

/// A directory that appears at its destination, with everything written into it, only when
/// [`AtomicDir::commit`] succeeds. Dropping it uncommitted removes the temporary directory.
pub struct AtomicDir {
    temp: Option<TempDir>,
    registration: Registration,
    temp_path: Utf8PathBuf,
    dest: Utf8PathBuf,
    replace: bool,
    /// The `flock` that tells other runs this temporary is alive.
    _lock: Option<File>,
    /// Parent directories made for it, removed (when empty) after the temporary on failure.
    made_dirs: Option<MadeDirs>,
}

impl AtomicDir {
    /// Starts building the directory `dest`, which must not exist now nor when committed.
    pub fn create(dest: impl AsRef<Utf8Path>) -> Result<Self, Error> {
        Self::open(dest.as_ref(), false)
    }

    /// Starts building `dest`, atomically exchanging it with an existing directory on commit.
    pub fn create_or_replace(dest: impl AsRef<Utf8Path>) -> Result<Self, Error> {
        Self::open(dest.as_ref(), true)
    }

    /// Like [`AtomicDir::create`] (or [`AtomicDir::create_or_replace`] with `replace`), making
    /// the missing parent directories of `dest` first. Those that it made are removed again,
    /// when empty, if the directory is never committed, also on SIGINT, SIGTERM or SIGHUP.
    pub fn create_with_parents(dest: impl AsRef<Utf8Path>, replace: bool) -> Result<Self, Error> {
        Self::open_with(dest.as_ref(), replace, true)
    }

    fn open(dest: &Utf8Path, replace: bool) -> Result<Self, Error> {
        Self::open_with(dest, replace, false)
    }

    fn open_with(dest: &Utf8Path, replace: bool, parents: bool) -> Result<Self, Error> {
        let started = start(
            dest,
            replace,
            parents,
            (DIR_MODE, "creating temporary directory"),
            |b, parent| b.tempdir_in(parent),
            |t| t.path(),
            |_, path| open_for_lock(path).ok().filter(|f| lock(f).is_ok()),
        )?;
        Ok(AtomicDir {
            temp: Some(started.temp),
            registration: started.registration,
            temp_path: started.path,
            dest: dest.to_owned(),
            replace,
            _lock: started.lock,
            made_dirs: Some(started.made_dirs),
        })
    }

    /// Where to write the directory's contents until it is committed.
    pub fn path(&self) -> &Utf8Path {
        &self.temp_path
    }

    /// The final path.
    pub fn dest(&self) -> &Utf8Path {
        &self.dest
    }

    /// Syncs the contents and renames the directory into place.
    pub fn commit(mut self) -> Result<Utf8PathBuf, Error> {
        sync_tree(&self.temp_path)?;
        let mut reg = registry();
        // From here the rename, not TempDir, decides what happens to the temporary path.
        let temp = self.temp.take().expect("temp dir present until commit");
        let _ = temp.keep();
        let renamed = rename_noreplace(&self.temp_path, &self.dest);
        let result = match renamed {
            Ok(()) => {
                self.registration.release(&mut reg);
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.replace => {
                // Swap in the new tree; the old one now sits at the registered temp path and is
                // removed below (or by the signal handler if we are interrupted meanwhile).
                renameat_with(
                    CWD,
                    self.temp_path.as_std_path(),
                    CWD,
                    self.dest.as_std_path(),
                    RenameFlags::EXCHANGE,
                )
                .map_err(|e| Error::io("exchanging directories", &self.dest, e.into()))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(Error::Exists { path: self.dest.clone() })
            }
            Err(e) => Err(Error::io("renaming into place", &self.dest, e)),
        };
        drop(reg);
        if self.registration.0.is_some() {
            // Either the old tree after an exchange, or our own tree after a failure.
            let _ = fs::remove_dir_all(&self.temp_path);
            self.registration = Registration(None);
            let mut reg = registry();
            reg.live.retain(|_, (p, _)| p != &self.temp_path);
        }
        result?;
        if let Some(made) = self.made_dirs.take() {
            made.keep(&mut registry());
        }
        let (parent, _) = split_dest(&self.dest)?;
        sync_dir(&parent)?;
        Ok(self.dest.clone())
    }
}

impl Drop for AtomicDir {
    fn drop(&mut self) {
        // TempDir removes itself; then the parents made for it go, those still empty. Kept
        // explicit so the order (directory, then parents, then registry entries) is visible.
        self.temp.take();
        self.made_dirs.take();
    }
}

/// `rename(2)` that fails with `AlreadyExists` instead of replacing `to`.
fn rename_noreplace(from: &Utf8Path, to: &Utf8Path) -> io::Result<()> {
    match renameat_with(CWD, from.as_std_path(), CWD, to.as_std_path(), RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // Filesystems without RENAME_NOREPLACE: check, then rename. Racy, but only there.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

/// fsyncs every regular file and directory under `root`, then `root` itself.
fn sync_tree(root: &Utf8Path) -> Result<(), Error> {
    let entries = fs::read_dir(root).map_err(|e| Error::io("reading directory", root, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("reading directory", root, e))?;
        let path = temp_path(&entry.path())?;
        let kind = entry.file_type().map_err(|e| Error::io("reading directory", &path, e))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io("syncing", &path, e))?;
        }
    }
    sync_dir(root)
}

#[cfg(test)]
mod tests;
