//! Reading ISO 9660 images (ECMA-119) with Rock Ridge and Joliet, treating the image as hostile.
//!
//! The volume descriptor set (8.1 to 8.5) gives the primary hierarchy and, when a Supplementary
//! Volume Descriptor carries a Joliet escape sequence (`%/@`, `%/C`, `%/E`), the Joliet one.
//! Rock Ridge is used when the root's `.` record starts with a SUSP `SP` entry.
//!
//! Every offset and length is checked against the image size before it is used, directories
//! are walked iteratively with a set of visited extents (a directory met twice is a loop),
//! and [`ReadLimits`] bounds entries, depth, path length, directory size and continuation
//! chains, so a malformed image gives a typed error, never a panic, hang or huge allocation.
//!
//! The reader refuses what the real consumers refuse: Linux's isofs driver, which
//! `xe-install-supplemental-pack` mounts packs with (`fs/isofs/inode.c` `isofs_fill_super`:
//! logical block size, the root's `.` record as the root inode; `dir.c` `do_isofs_readdir`:
//! record lengths; `rock.c`: SUSP entry lengths and continuation areas), and xorriso
//! (libisofs) and isoinfo, which `tests/it/iso_diff.rs` runs on mutated images: the `.` and
//! `..` records must describe the directory and its parent; both-byte-order fields must agree;
//! every SUSP entry has version 1 and no entry of length below 4 with room left; the root's
//! `SP` is well formed; the last `NM` or `SL` does not continue; `NM` and `SL` flags have POSIX
//! meanings; every Rock Ridge record has a `PX` of a POSIX file type. Stricter on purpose:
//! logical blocks of 2048 bytes only, no multi-extent or interleaved files, no extended
//! attribute records, no Rock Ridge directory relocation, no duplicate or traversing names.

mod dir;
mod entry;
mod names;
mod susp;

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Seek, SeekFrom};

use self::dir::{FLAG_ASSOCIATED, FLAG_MULTI_EXTENT, RawRecord, extent_range, parse_extent};
pub use self::entry::{Entry, EntryKind, FileReader, ReadLimits, VolumeInfo};
use self::names::{ascii_field, check_name, joliet_name, kind_of, primary_name, ucs2_field};
use crate::bytes::{get_u16_le, get_u32_le};
use crate::time::{parse_dir_date, parse_vd_date};
use crate::{Error, SECTOR_SIZE};

/// Volume descriptors read before giving up on finding a terminator.
const MAX_DESCRIPTORS: u64 = 64;
/// Largest SUSP Continuation Area accepted.
const MAX_AREA: u32 = 64 * 1024;
/// Reading budget beyond the image size (see `IsoReader::reset_budget`).
const BUDGET_SLACK: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    Primary,
    Joliet,
}

/// A reader of one image. See the module documentation for the checks it makes.
#[derive(Debug)]
pub struct IsoReader<R> {
    inner: R,
    len: u64,
    /// Where extents must end: the image length, or the declared volume space if smaller.
    volume_end: u64,
    limits: ReadLimits,
    volume: VolumeInfo,
    primary_root: RawRecord,
    joliet_root: Option<RawRecord>,
    /// Bytes to skip at the start of each System Use field, when Rock Ridge is in use.
    susp_skip: Option<usize>,
    /// Directory and continuation-area bytes the current walk may still read.
    budget: u64,
    /// Entries the current walk may still list ([`ReadLimits::max_entries`]).
    entries_left: usize,
}

impl<R: Read + Seek> IsoReader<R> {
    /// Opens an image with the default [`ReadLimits`].
    pub fn new(inner: R) -> Result<Self, Error> {
        Self::with_limits(inner, ReadLimits::default())
    }

    /// Opens an image: reads the volume descriptors and detects Rock Ridge.
    pub fn with_limits(mut inner: R, limits: ReadLimits) -> Result<Self, Error> {
        let len = inner.seek(SeekFrom::End(0)).map_err(|source| Error::Read {
            op: "finding the image size",
            offset: 0,
            source,
        })?;
        let mut reader = IsoReader {
            inner,
            len,
            volume_end: len,
            limits,
            volume: VolumeInfo::empty(),
            primary_root: empty_record(),
            joliet_root: None,
            susp_skip: None,
            budget: 0,
            entries_left: limits.max_entries,
        };
        reader.read_descriptors()?;
        reader.detect_rock_ridge()?;
        Ok(reader)
    }

    /// The volume's identification.
    pub fn volume(&self) -> &VolumeInfo {
        &self.volume
    }

    /// Returns the underlying reader.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Every entry of the primary hierarchy (with Rock Ridge names, modes and symlinks when
    /// present), sorted by path; the root itself is not listed.
    pub fn entries(&mut self) -> Result<Vec<Entry>, Error> {
        let root = self.primary_root.clone();
        self.walk(&root, Tree::Primary)
    }

    /// Every entry of the Joliet hierarchy, sorted by path, or `None` without Joliet.
    pub fn joliet_entries(&mut self) -> Result<Option<Vec<Entry>>, Error> {
        match self.joliet_root.clone() {
            Some(root) => self.walk(&root, Tree::Joliet).map(Some),
            None => Ok(None),
        }
    }

    /// The primary-hierarchy entry at `path` (`/`-separated, relative to the root), found by
    /// reading only the directories along the path.
    pub fn lookup(&mut self, path: &str) -> Result<Entry, Error> {
        let not_found = || Error::NotFound { path: path.into() };
        let mut dir = Some(self.primary_root.clone());
        let mut grandparent = self.primary_root.extent;
        let mut found: Option<Entry> = None;
        self.reset_budget();
        for component in path.split('/') {
            // A component after a file, or an empty one, names nothing.
            let parent = dir.take().filter(|_| !component.is_empty()).ok_or_else(not_found)?;
            let prefix = found.as_ref().map_or(String::new(), |e| e.path.clone());
            let listing = self.list_dir(&prefix, &parent, grandparent, Tree::Primary)?;
            grandparent = parent.extent;
            let (entry, raw) = listing
                .into_iter()
                .find(|(e, _)| e.path.rsplit('/').next() == Some(component))
                .ok_or_else(not_found)?;
            dir = raw;
            found = Some(entry);
        }
        found.ok_or_else(not_found)
    }

    /// Opens a regular file's data for reading.
    pub fn open_file(&mut self, entry: &Entry) -> Result<FileReader<'_, R>, Error> {
        if entry.kind != EntryKind::File {
            return Err(Error::NotAFile { path: entry.path.clone() });
        }
        let start = self.check_extent(&entry.path, entry.extent, entry.size)?;
        if entry.size > 0 {
            self.inner.seek(SeekFrom::Start(start)).map_err(|source| Error::Read {
                op: "seeking to a file",
                offset: start,
                source,
            })?;
        }
        Ok(FileReader { inner: &mut self.inner, remaining: entry.size })
    }

    /// Starts a walk: in a valid image the directories of one hierarchy and the continuation
    /// areas never overlap, so together they are at most the image's size. Reading more means
    /// overlapping extents crafted to make the walk quadratic.
    fn reset_budget(&mut self) {
        self.budget = self.len.saturating_add(BUDGET_SLACK);
        self.entries_left = self.limits.max_entries;
    }

    fn spend(&mut self, bytes: u64, path: &str) -> Result<(), Error> {
        self.budget = self.budget.checked_sub(bytes).ok_or_else(|| Error::LimitExceeded {
            path: path.into(),
            what: "directory and continuation data read (overlapping extents)",
            limit: self.len.saturating_add(BUDGET_SLACK),
        })?;
        Ok(())
    }

    fn read_at(&mut self, offset: u64, len: u64, what: &'static str) -> Result<Vec<u8>, Error> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(Error::Truncated { what, offset, image_len: self.len });
        }
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
        self.inner
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.inner.read_exact(&mut buf))
            .map_err(|source| Error::Read { op: what, offset, source })?;
        Ok(buf)
    }

    /// Checks that an extent lies within the image and returns its byte offset.
    fn check_extent(&self, path: &str, extent: u32, size: u64) -> Result<u64, Error> {
        let oob = || Error::ExtentOutOfBounds {
            path: path.into(),
            extent,
            size,
            image_len: self.volume_end,
        };
        match extent_range(extent, size) {
            Some((start, end)) if size == 0 || end <= self.volume_end => Ok(start),
            _ => Err(oob()),
        }
    }

    fn read_descriptors(&mut self) -> Result<(), Error> {
        let mut primary: Option<(u64, Vec<u8>)> = None;
        for sector in 16..16 + MAX_DESCRIPTORS {
            let vd = self.read_at(sector * SECTOR_SIZE, SECTOR_SIZE, "volume descriptor")?;
            let bad = |reason: String| Error::BadDescriptor { sector, reason };
            if &vd[1..6] != b"CD001" {
                return Err(bad("missing the standard identifier CD001".into()));
            }
            match vd[0] {
                255 => {
                    let Some((pvd_sector, pvd)) = primary else {
                        return Err(bad("terminator before any primary volume descriptor".into()));
                    };
                    return self.primary_descriptor(&pvd, pvd_sector);
                }
                1 if primary.is_none() => {
                    if vd[6] != 1 {
                        return Err(bad(format!("version {}, expected 1", vd[6])));
                    }
                    primary = Some((sector, vd));
                }
                2 if self.joliet_root.is_none() => self.joliet_descriptor(&vd, sector)?,
                _ => {}
            }
        }
        Err(Error::BadDescriptor {
            sector: 16,
            reason: format!("no set terminator within {MAX_DESCRIPTORS} descriptors"),
        })
    }

    fn primary_descriptor(&mut self, vd: &[u8], sector: u64) -> Result<(), Error> {
        let bad = |reason: String| Error::BadDescriptor { sector, reason };
        let block = get_u16_le(vd, 128).unwrap_or(0);
        if block != 2048 {
            return Err(bad(format!("logical block size {block} is not 2048")));
        }
        let space = get_u32_le(vd, 80).unwrap_or(0);
        let needed = u64::from(space) * SECTOR_SIZE;
        if needed > self.len {
            return Err(Error::Truncated {
                what: "volume space",
                offset: needed,
                image_len: self.len,
            });
        }
        // The volume holds at least the system area, this descriptor and the terminator; the
        // extents it describes lie inside it, even if the file goes on (padding).
        if u64::from(space) < sector + 2 {
            return Err(bad(format!(
                "volume space of {space} sectors ends before the volume descriptors"
            )));
        }
        self.volume_end = needed;
        self.primary_root = self.root_record(vd, sector)?;
        let text = |at: usize, len: usize| ascii_field(&vd[at..at + len]);
        self.volume = VolumeInfo {
            system_id: text(8, 32),
            volume_id: text(40, 32),
            volume_set_id: text(190, 128),
            publisher_id: text(318, 128),
            data_preparer_id: text(446, 128),
            application_id: text(574, 128),
            volume_space_size: space,
            created: parse_vd_date(&vd[813..830]),
            modified: parse_vd_date(&vd[830..847]),
            ..std::mem::replace(&mut self.volume, VolumeInfo::empty())
        };
        Ok(())
    }

    fn joliet_descriptor(&mut self, vd: &[u8], sector: u64) -> Result<(), Error> {
        let level = match &vd[88..91] {
            b"%/@" => 1,
            b"%/C" => 2,
            b"%/E" => 3,
            _ => return Ok(()), // some other supplementary descriptor
        };
        self.joliet_root = Some(self.root_record(vd, sector)?);
        self.volume.joliet_level = Some(level);
        self.volume.joliet_volume_id = Some(ucs2_field(&vd[40..72]));
        Ok(())
    }

    fn root_record(&self, vd: &[u8], sector: u64) -> Result<RawRecord, Error> {
        let offset = sector * SECTOR_SIZE + 156;
        let root = dir::parse_record(&vd[156..190], offset, "/")?;
        if !root.is_dir() {
            return Err(Error::BadDescriptor {
                sector,
                reason: "root record is not a directory".into(),
            });
        }
        self.check_extent("/", root.extent, u64::from(root.size))?;
        Ok(root)
    }

    /// Rock Ridge is in use when the root's `.` record starts with `SP` (SUSP 5.3).
    fn detect_rock_ridge(&mut self) -> Result<(), Error> {
        self.reset_budget();
        let root = self.primary_root.clone();
        let size = u64::from(root.size).min(SECTOR_SIZE);
        if size == 0 {
            return Err(Error::BadRecord {
                path: "/".into(),
                offset: root.offset,
                reason: "root directory is empty".into(),
            });
        }
        let start = self.check_extent("/", root.extent, size)?;
        let data = self.read_at(start, size, "root directory")?;
        let dot = dir::parse_record(&data, start, "/")?;
        let su = self.system_use(&dot.system_use, "/", true)?;
        if let Some(skip) = su.sp {
            self.susp_skip = Some(usize::from(skip));
            self.volume.rock_ridge = Some(su.extensions.into_iter().next().unwrap_or_default());
        }
        Ok(())
    }

    fn system_use(
        &mut self,
        field: &[u8],
        path: &str,
        root_dot: bool,
    ) -> Result<susp::SystemUse, Error> {
        let max = self.limits.max_continuations;
        susp::parse(field, path, max, root_dot, |(block, offset, len)| {
            let bad = |reason: &str| Error::BadSusp { path: path.into(), reason: reason.into() };
            if len > MAX_AREA || offset >= 2048 {
                return Err(bad("continuation area offset or length out of range"));
            }
            let start = u64::from(block) * SECTOR_SIZE + u64::from(offset);
            if start + u64::from(len) > self.len {
                return Err(bad("continuation area lies beyond the end of the image"));
            }
            self.spend(u64::from(len), path)?;
            self.read_at(start, u64::from(len), "SUSP continuation area")
        })
    }

    /// Lists a directory: each child entry, with its raw record for directories.
    fn list_dir(
        &mut self,
        dir_path: &str,
        dir: &RawRecord,
        parent: u32,
        tree: Tree,
    ) -> Result<Vec<(Entry, Option<RawRecord>)>, Error> {
        let shown = if dir_path.is_empty() { "/" } else { dir_path };
        let size = u64::from(dir.size);
        if size > self.limits.max_dir_size {
            return Err(Error::LimitExceeded {
                path: shown.into(),
                what: "directory size",
                limit: self.limits.max_dir_size,
            });
        }
        let start = self.check_extent(shown, dir.extent, size)?;
        self.spend(size, shown)?;
        let data = self.read_at(start, size, "directory extent")?;
        let limit = self.limits.max_entries;
        // `.`, `..` and the entries the walk may still take.
        let room = self.entries_left.saturating_add(2);
        let records = parse_extent(&data, start, shown, room, limit as u64)?;
        self.check_dot_records(&records, dir, parent, shown, tree)?;
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for rec in records {
            if rec.is_self_or_parent() || rec.flags & FLAG_ASSOCIATED != 0 {
                continue;
            }
            let entry = self.entry(dir_path, &rec, tree)?;
            if !names.insert(entry.path.clone()) {
                return Err(Error::DuplicateName { path: entry.path });
            }
            let raw = (entry.kind == EntryKind::Dir).then_some(rec);
            out.push((entry, raw));
        }
        Ok(out)
    }

    /// The first two records of a directory are `.` and `..` (ECMA-119 6.8.2.2): `.` describes
    /// the directory itself (Linux reads the root inode from the root's `.` record,
    /// `isofs_fill_super`), `..` its parent (the root's own for the root). Their System Use
    /// fields are read like any other (the root's `.` holds `SP`), and their other fields
    /// follow the rules of every record.
    fn check_dot_records(
        &mut self,
        records: &[RawRecord],
        dir: &RawRecord,
        parent: u32,
        shown: &str,
        tree: Tree,
    ) -> Result<(), Error> {
        for (i, (ident, extent, what)) in
            [(0u8, dir.extent, "`.`"), (1, parent, "`..`")].into_iter().enumerate()
        {
            let Some(rec) = records.get(i) else {
                return Err(bad_record(
                    shown,
                    dir.offset,
                    format!("the directory has no {what} record"),
                ));
            };
            let bad = |reason: String| bad_record(shown, rec.offset, reason);
            if rec.ident != [ident] {
                return Err(bad(format!("record {i} is not the {what} record")));
            }
            if !rec.is_dir() || rec.extent != extent {
                return Err(bad(format!(
                    "the {what} record points to sector {} instead of directory sector {extent}",
                    rec.extent
                )));
            }
            if i == 0 && rec.size != dir.size {
                return Err(bad(format!(
                    "the `.` record gives the directory {} bytes, its parent's record {}",
                    rec.size, dir.size
                )));
            }
            if rec.unusual {
                return Err(Error::UnsupportedFeature {
                    path: shown.into(),
                    feature: "extended attribute records or interleaved files",
                });
            }
            if let (Tree::Primary, Some(skip)) = (tree, self.susp_skip) {
                let field = rec.system_use.get(skip..).unwrap_or_default();
                let su = self.system_use(field, shown, false)?;
                // RRIP 4.1.1: PX on every record, `.` and `..` included, with a directory
                // type here (libisofs checks theirs as it checks every other record's).
                if su.px.is_none_or(|px| px.mode & 0o170_000 != 0o040_000) {
                    return Err(Error::BadSusp {
                        path: shown.into(),
                        reason: format!("the {what} record has no PX entry of a directory"),
                    });
                }
            }
        }
        Ok(())
    }

    fn entry(&mut self, dir_path: &str, rec: &RawRecord, tree: Tree) -> Result<Entry, Error> {
        let iso_name = match tree {
            Tree::Primary => primary_name(&rec.ident, rec.is_dir()),
            Tree::Joliet => joliet_name(&rec.ident),
        };
        let join = |name: &str| {
            if dir_path.is_empty() { name.to_string() } else { format!("{dir_path}/{name}") }
        };
        let shown = join(&String::from_utf8_lossy(&iso_name));
        if rec.flags & FLAG_MULTI_EXTENT != 0 {
            return Err(Error::UnsupportedFeature { path: shown, feature: "multi-extent files" });
        }
        if rec.unusual {
            return Err(Error::UnsupportedFeature {
                path: shown,
                feature: "extended attribute records or interleaved files",
            });
        }
        let su = match (tree, self.susp_skip) {
            (Tree::Primary, Some(skip)) => {
                let field = rec.system_use.get(skip..).unwrap_or_default();
                self.system_use(field, &shown, false)?
            }
            _ => susp::SystemUse::default(),
        };
        if su.relocation {
            return Err(Error::UnsupportedFeature {
                path: shown,
                feature: "Rock Ridge directory relocation (CL/RE/PL)",
            });
        }
        let name_bytes = su.name.clone().unwrap_or(iso_name);
        let name = String::from_utf8(name_bytes)
            .map_err(|_| Error::BadName { path: shown.clone(), reason: "not UTF-8".into() })?;
        check_name(&name, su.name_is_special)
            .map_err(|reason| Error::BadName { path: shown.clone(), reason: reason.into() })?;
        let path = join(&name);
        self.check_path(&path)?;
        let rock_ridge = tree == Tree::Primary && self.susp_skip.is_some();
        let kind = kind_of(rec, &su, rock_ridge, &path)?;
        let symlink_target = match &su.symlink {
            Some(t) if kind == EntryKind::Symlink => {
                Some(String::from_utf8(t.clone()).map_err(|_| Error::BadSusp {
                    path: path.clone(),
                    reason: "symlink target is not UTF-8".into(),
                })?)
            }
            _ => None,
        };
        let size = u64::from(rec.size);
        if kind == EntryKind::File {
            self.check_extent(&path, rec.extent, size)?;
        }
        Ok(Entry {
            kind,
            mode: su.px.map(|p| p.mode),
            nlink: su.px.map(|p| p.nlink),
            uid: su.px.map(|p| p.uid),
            gid: su.px.map(|p| p.gid),
            size,
            mtime: su.mtime.or_else(|| parse_dir_date(&rec.date)),
            symlink_target,
            extent: rec.extent,
            path,
        })
    }

    fn check_path(&self, path: &str) -> Result<(), Error> {
        let limit = |what, limit: usize| Error::LimitExceeded {
            path: path.into(),
            what,
            limit: limit as u64,
        };
        if path.len() > self.limits.max_path_len {
            return Err(limit("path length", self.limits.max_path_len));
        }
        if path.split('/').count() > self.limits.max_depth {
            return Err(limit("directory depth", self.limits.max_depth));
        }
        Ok(())
    }

    /// Walks a hierarchy iteratively, refusing directory loops.
    fn walk(&mut self, root: &RawRecord, tree: Tree) -> Result<Vec<Entry>, Error> {
        self.reset_budget();
        let mut visited = BTreeSet::from([root.extent]);
        let mut stack = vec![(String::new(), root.clone(), root.extent)];
        let mut out = Vec::new();
        while let Some((path, dir, parent)) = stack.pop() {
            for (entry, raw) in self.list_dir(&path, &dir, parent, tree)? {
                if let Some(raw) = raw {
                    if !visited.insert(raw.extent) {
                        return Err(Error::DirectoryLoop { path: entry.path, extent: raw.extent });
                    }
                    stack.push((entry.path.clone(), raw, dir.extent));
                }
                out.push(entry);
                self.entries_left = self.limits.max_entries.saturating_sub(out.len());
                if out.len() > self.limits.max_entries {
                    return Err(Error::LimitExceeded {
                        path: path.clone(),
                        what: "number of entries",
                        limit: self.limits.max_entries as u64,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

fn bad_record(path: &str, offset: u64, reason: String) -> Error {
    Error::BadRecord { path: path.into(), offset, reason }
}

fn empty_record() -> RawRecord {
    RawRecord {
        offset: 0,
        extent: 0,
        size: 0,
        date: [0; 7],
        flags: 0,
        unusual: false,
        ident: vec![0],
        system_use: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECTOR: usize = 2048;

    #[test]
    fn too_small_for_descriptors() {
        let err = IsoReader::new(std::io::Cursor::new(vec![0u8; 10 * SECTOR])).unwrap_err();
        assert!(matches!(err, Error::Truncated { what: "volume descriptor", .. }), "{err}");
        let err = IsoReader::new(std::io::Cursor::new(vec![0u8; 40 * SECTOR])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "volume descriptor in sector 16: missing the standard identifier CD001"
        );
    }
}
