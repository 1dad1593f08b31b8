//! The FAT image builder: the tree of names, its layout on the volume, and the image as a
//! [`DiskSource`].

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::sync::Arc;

use camino::Utf8Path;
use xspack_io::Progress;

use super::dir::{
    ATTR_ARCHIVE, ATTR_DIRECTORY, ATTR_VOLUME_ID, DosTime, NO_NAME, ShortName, assign_short_names,
    check_long_name, label_bytes, lfn_count, lfn_entries, short_entry,
};
use super::geometry::{DIR_ENTRY_SIZE, Geometry, VolumeFields};
use super::table::FatTable;
use super::{AUTO_SIZE_STEP, FatError, FatOptions, FatType, MAX_FILE_SIZE, SECTOR_SIZE};
use crate::bytes::align_up;
use crate::compose::Composite;
use crate::{DiskSource, Error, ReopenSource};

/// Most entries a directory may have (section 6: its size is limited to 2 MiB).
const MAX_DIR_ENTRIES: u64 = 65536;
/// Largest image: 2^32 sectors.
const MAX_SIZE: u64 = (u32::MAX as u64) * SECTOR_SIZE;

enum Node<'a> {
    Dir(Dir<'a>),
    File(Box<dyn DiskSource + 'a>),
}

/// Children by upper-cased name (FAT compares names without case), with the name as given.
#[derive(Default)]
struct Dir<'a> {
    children: BTreeMap<String, (String, Node<'a>)>,
}

/// Collects the directories and files of a FAT image; [`build`](Self::build) lays it out.
///
/// Paths are `/`-separated and relative to the root (a leading `/` is ignored); missing parent
/// directories are created.
pub struct FatBuilder<'a> {
    opts: FatOptions,
    root: Dir<'a>,
}

impl fmt::Debug for FatBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FatBuilder").field("opts", &self.opts).finish_non_exhaustive()
    }
}

/// The components of `path`, each checked as a long name.
fn components(path: &str) -> Result<Vec<&str>, FatError> {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for part in &parts {
        check_long_name(part)?;
    }
    Ok(parts)
}

impl<'a> FatBuilder<'a> {
    /// An empty volume.
    pub fn new(opts: FatOptions) -> Self {
        FatBuilder { opts, root: Dir::default() }
    }

    /// The directory at `parts`, created with its parents if missing.
    fn dir_mut(&mut self, parts: &[&str]) -> Result<&mut Dir<'a>, FatError> {
        let mut dir = &mut self.root;
        for (i, part) in parts.iter().enumerate() {
            let (_, node) = dir
                .children
                .entry(part.to_uppercase())
                .or_insert_with(|| ((*part).to_owned(), Node::Dir(Dir::default())));
            dir = match node {
                Node::Dir(d) => d,
                Node::File(_) => {
                    return Err(FatError::NotADirectory { path: parts[..=i].join("/") });
                }
            };
        }
        Ok(dir)
    }

    /// Adds the directory `path` and its parents; adding an existing directory does nothing.
    pub fn add_dir(&mut self, path: &str) -> Result<(), FatError> {
        let parts = components(path)?;
        self.dir_mut(&parts).map(|_| ())
    }

    /// Adds the file `path` with the bytes of `content` (read only when the image is read).
    pub fn add_file(&mut self, path: &str, content: impl DiskSource + 'a) -> Result<(), FatError> {
        let parts = components(path)?;
        let Some((name, parents)) = parts.split_last() else {
            return Err(FatError::InvalidName { name: path.to_owned(), why: "no file name" });
        };
        if content.size() > MAX_FILE_SIZE {
            return Err(FatError::FileTooLarge { path: path.to_owned(), size: content.size() });
        }
        let dir = self.dir_mut(parents)?;
        let key = name.to_uppercase();
        if dir.children.contains_key(&key) {
            return Err(FatError::Exists { path: path.to_owned() });
        }
        dir.children.insert(key, ((*name).to_owned(), Node::File(Box::new(content))));
        Ok(())
    }

    /// Adds the file `path` holding `bytes`.
    pub fn add_file_bytes(
        &mut self,
        path: &str,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<(), FatError> {
        self.add_file(path, bytes.into())
    }

    /// Adds the file `path` of `len` bytes read from the readers `open` returns; it is opened
    /// once per pass over the image (see [`ReopenSource`]).
    pub fn add_file_reader<F, R>(&mut self, path: &str, len: u64, open: F) -> Result<(), FatError>
    where
        F: FnMut() -> io::Result<R> + 'a,
        R: Read + 'a,
    {
        self.add_file(path, ReopenSource::new(len, open))
    }

    /// Lays the volume out: chooses the size (if not given), type and cluster size, allocates
    /// every directory and file, and renders the metadata.
    pub fn build(self) -> Result<FatImage<'a>, Error> {
        let label = label_bytes(&self.opts.label)?;
        let mut tree = Flat::default();
        tree.flatten(self.root, "", 0, label != NO_NAME)?;
        let size = match self.opts.size {
            Some(size) => size,
            None => tree.smallest_size(self.opts.fat_type)?,
        };
        let geo = tree.fit(size, self.opts.fat_type)?;
        let volume = VolumeFields {
            volume_id: self.opts.volume_id,
            label,
            hidden_sectors: self.opts.hidden_sectors,
        };
        Ok(tree.assemble(geo, &volume, DosTime::from_epoch(self.opts.source_date_epoch)))
    }
}

enum Target {
    Dir(usize),
    File(usize),
}

struct Entry {
    name: String,
    short: ShortName,
    long: bool,
    target: Target,
}

struct FlatDir {
    parent: usize,
    entries: Vec<Entry>,
    /// Directory entries it holds, dot entries, label and long names included.
    slots: u64,
    cluster: u32,
}

struct FlatFile<'a> {
    source: Box<dyn DiskSource + 'a>,
    cluster: u32,
}

/// The tree in allocation order: directories in pre-order (root first), files in the order
/// met.
#[derive(Default)]
struct Flat<'a> {
    dirs: Vec<FlatDir>,
    files: Vec<FlatFile<'a>>,
}

impl<'a> Flat<'a> {
    fn flatten(
        &mut self,
        dir: Dir<'a>,
        path: &str,
        parent: usize,
        label: bool,
    ) -> Result<usize, FatError> {
        let index = self.dirs.len();
        let is_root = index == 0;
        let names: Vec<&str> = dir.children.values().map(|(n, _)| n.as_str()).collect();
        let shorts = assign_short_names(&names);
        let fixed = if is_root { u64::from(label) } else { 2 };
        let long_slots: usize =
            names.iter().zip(&shorts).filter(|(_, s)| s.1).map(|(n, _)| lfn_count(n)).sum();
        let slots = fixed + names.len() as u64 + long_slots as u64;
        if slots > MAX_DIR_ENTRIES {
            return Err(FatError::TooManyEntries { path: format!("/{path}"), entries: slots });
        }
        self.dirs.push(FlatDir { parent, entries: Vec::new(), slots, cluster: 0 });
        let mut entries = Vec::with_capacity(shorts.len());
        for ((_, (name, node)), (short, long)) in dir.children.into_iter().zip(shorts) {
            let target = match node {
                Node::Dir(sub) => {
                    Target::Dir(self.flatten(sub, &format!("{path}/{name}"), index, false)?)
                }
                Node::File(source) => {
                    self.files.push(FlatFile { source, cluster: 0 });
                    Target::File(self.files.len() - 1)
                }
            };
            entries.push(Entry { name, short, long, target });
        }
        self.dirs[index].entries = entries;
        Ok(index)
    }

    /// Clusters of directory `d`; the FAT12/16 root has its own region.
    fn dir_clusters(&self, d: usize, geo: &Geometry) -> u64 {
        if d == 0 && geo.fat_type != FatType::Fat32 {
            return 0;
        }
        (self.dirs[d].slots * u64::from(DIR_ENTRY_SIZE)).div_ceil(geo.cluster_bytes()).max(1)
    }

    fn file_clusters(&self, f: usize, geo: &Geometry) -> u64 {
        self.files[f].source.size().div_ceil(geo.cluster_bytes())
    }

    /// The geometry for `size` bytes, if the content fits.
    fn fit(&self, size: u64, fat_type: Option<FatType>) -> Result<Geometry, FatError> {
        let root_slots = u32::try_from(self.dirs[0].slots).expect("at most 65536");
        let geo = Geometry::choose(size, fat_type, root_slots)?;
        let needed: u64 = (0..self.dirs.len()).map(|d| self.dir_clusters(d, &geo)).sum::<u64>()
            + (0..self.files.len()).map(|f| self.file_clusters(f, &geo)).sum::<u64>();
        if needed > u64::from(geo.clusters) {
            let cluster_size = u32::try_from(geo.cluster_bytes()).expect("<= 32 KiB");
            return Err(FatError::Full { needed, available: geo.clusters, cluster_size });
        }
        Ok(geo)
    }

    /// The smallest multiple of [`AUTO_SIZE_STEP`] that fits, scanning up from a lower bound
    /// (the data and directory bytes, unrounded).
    fn smallest_size(&self, fat_type: Option<FatType>) -> Result<u64, FatError> {
        let data: u64 = self.files.iter().map(|f| f.source.size()).sum::<u64>()
            + self.dirs.iter().map(|d| d.slots * u64::from(DIR_ENTRY_SIZE)).sum::<u64>();
        let mut size = align_up(data.max(1), AUTO_SIZE_STEP);
        loop {
            match self.fit(size, fat_type) {
                Ok(_) => return Ok(size),
                Err(e @ (FatError::Full { .. } | FatError::NoLayout { .. })) => {
                    if size + AUTO_SIZE_STEP > MAX_SIZE {
                        return Err(e);
                    }
                    size += AUTO_SIZE_STEP;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Allocates clusters and renders the image.
    fn assemble(mut self, geo: Geometry, volume: &VolumeFields, time: DosTime) -> FatImage<'a> {
        let mut next = 2u32;
        let mut chain_ends = Vec::new();
        let mut alloc = |clusters: u64| {
            if clusters == 0 {
                return 0;
            }
            let first = next;
            next += u32::try_from(clusters).expect("checked by fit");
            chain_ends.push(next - 1);
            first
        };
        for d in 0..self.dirs.len() {
            self.dirs[d].cluster = alloc(self.dir_clusters(d, &geo));
        }
        for f in 0..self.files.len() {
            self.files[f].cluster = alloc(self.file_clusters(f, &geo));
        }
        let used = next - 2;
        let free = geo.clusters - used;
        let next_free = if free > 0 { next } else { u32::MAX };

        let size = u64::from(geo.total_sectors) * SECTOR_SIZE;
        let mut disk = Composite::new(size);
        disk.push_source(0, geo.reserved_region(volume, free, next_free));
        let fat_len = u64::from(geo.fat_sectors) * SECTOR_SIZE;
        let table = FatTable::new(geo.fat_type, fat_len, next, Arc::from(chain_ends));
        disk.push_source(geo.fat_offset(0), table.clone());
        disk.push_source(geo.fat_offset(1), table);
        let (root_offset, root_len) = geo.root_region();
        if root_len > 0 {
            disk.push_source(root_offset, self.render_dir(0, &volume.label, time, root_len));
        }
        for d in 0..self.dirs.len() {
            let len = self.dir_clusters(d, &geo) * geo.cluster_bytes();
            if len > 0 {
                let bytes = self.render_dir(d, &volume.label, time, len);
                disk.push_source(geo.cluster_offset(self.dirs[d].cluster), bytes);
            }
        }
        for file in self.files {
            if file.cluster != 0 {
                disk.push_source(geo.cluster_offset(file.cluster), file.source);
            }
        }
        let info = FatInfo {
            fat_type: geo.fat_type,
            size,
            cluster_size: u32::try_from(geo.cluster_bytes()).expect("<= 32 KiB"),
            clusters: geo.clusters,
            used_clusters: used,
            volume_id: volume.volume_id,
        };
        FatImage { info, disk }
    }

    /// The entries of directory `d`, zero-padded to `len` bytes.
    fn render_dir(&self, d: usize, label: &ShortName, time: DosTime, len: u64) -> Vec<u8> {
        let dir = &self.dirs[d];
        let mut out = Vec::with_capacity(usize::try_from(len).expect("at most 2 MiB"));
        if d == 0 {
            if *label != NO_NAME {
                out.extend_from_slice(&short_entry(label, ATTR_VOLUME_ID, 0, 0, time));
            }
        } else {
            let parent = if dir.parent == 0 { 0 } else { self.dirs[dir.parent].cluster };
            out.extend_from_slice(&short_entry(
                b".          ",
                ATTR_DIRECTORY,
                dir.cluster,
                0,
                time,
            ));
            out.extend_from_slice(&short_entry(b"..         ", ATTR_DIRECTORY, parent, 0, time));
        }
        for e in &dir.entries {
            if e.long {
                out.extend(lfn_entries(&e.name, &e.short).iter().flatten());
            }
            let (attr, cluster, size) = match e.target {
                Target::Dir(i) => (ATTR_DIRECTORY, self.dirs[i].cluster, 0),
                Target::File(i) => {
                    let f = &self.files[i];
                    let size = u32::try_from(f.source.size()).expect("checked when added");
                    (ATTR_ARCHIVE, f.cluster, size)
                }
            };
            out.extend_from_slice(&short_entry(&e.short, attr, cluster, size, time));
        }
        debug_assert_eq!(out.len() as u64, dir.slots * u64::from(DIR_ENTRY_SIZE));
        out.resize(usize::try_from(len).expect("at most 2 MiB"), 0);
        out
    }
}

/// What the layout chose.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FatInfo {
    /// The FAT type.
    pub fat_type: FatType,
    /// Image size in bytes.
    pub size: u64,
    /// Bytes per cluster.
    pub cluster_size: u32,
    /// Data clusters of the volume.
    pub clusters: u32,
    /// Clusters holding directories and files.
    pub used_clusters: u32,
    /// The volume serial number.
    pub volume_id: u32,
}

/// A laid-out FAT image: a [`DiskSource`], or written forward with [`write_to`](Self::write_to).
pub struct FatImage<'a> {
    info: FatInfo,
    disk: Composite<'a>,
}

impl fmt::Debug for FatImage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FatImage").field("info", &self.info).finish_non_exhaustive()
    }
}

impl FatImage<'_> {
    /// What the layout chose.
    pub fn info(&self) -> &FatInfo {
        &self.info
    }

    /// Writes the image forward to `out` and returns `out`.
    pub fn write_to<W: Write>(mut self, mut out: W, progress: &dyn Progress) -> Result<W, Error> {
        self.disk.write_to(&mut out, "writing FAT image", progress)?;
        Ok(out)
    }

    /// Writes the image to a new file at `path`, atomically.
    pub fn write_file(self, path: &Utf8Path, progress: &dyn Progress) -> Result<(), Error> {
        crate::write_atomic(path, |out| self.write_to(out, progress).map(|_| ()))
    }
}

impl DiskSource for FatImage<'_> {
    fn size(&self) -> u64 {
        self.info.size
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.disk.read_exact_at(offset, buf)
    }

    fn known_zero(&mut self, offset: u64, len: u64) -> io::Result<bool> {
        self.disk.known_zero(offset, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::{get_le16, get_le32};
    use xspack_io::NoProgress;

    fn opts() -> FatOptions {
        FatOptions::new(0x1234_5678, 1_700_000_000).with_label("test")
    }

    fn image(b: FatBuilder<'_>) -> Vec<u8> {
        b.build().unwrap().write_to(Vec::new(), &NoProgress).unwrap()
    }

    #[test]
    fn tree_rules() {
        let mut b = FatBuilder::new(opts());
        b.add_file_bytes("/EFI/BOOT/BOOTX64.EFI", b"x".to_vec()).unwrap();
        b.add_dir("efi/boot").unwrap();
        assert!(matches!(
            b.add_file_bytes("efi/Boot/bootx64.efi", vec![]),
            Err(FatError::Exists { .. })
        ));
        assert!(matches!(b.add_dir("EFI/BOOT/BOOTX64.EFI/x"), Err(FatError::NotADirectory { .. })));
        assert!(matches!(b.add_file_bytes("/", vec![]), Err(FatError::InvalidName { .. })));
        assert!(matches!(b.add_file_bytes("a/../b", vec![]), Err(FatError::InvalidName { .. })));
        let big = ReopenSource::new(MAX_FILE_SIZE + 1, || Ok(io::empty()));
        assert!(matches!(b.add_file("big", big), Err(FatError::FileTooLarge { .. })));
    }

    #[test]
    fn smallest_size_and_layout() {
        let mut b = FatBuilder::new(opts());
        b.add_file_bytes("a.txt", vec![7u8; 3000]).unwrap();
        b.add_dir("empty").unwrap();
        let img = b.build().unwrap();
        let info = img.info().clone();
        assert_eq!((info.fat_type, info.size, info.cluster_size), (FatType::Fat12, 1 << 20, 512));
        // "empty" takes one cluster, a.txt six.
        assert_eq!(info.used_clusters, 7);
        let bytes = img.write_to(Vec::new(), &NoProgress).unwrap();
        assert_eq!(bytes.len(), 1 << 20);
        // Root directory after the boot sector and two 6-sector FATs: label, then a.txt
        // (lower case: long name, then short) and empty.
        let root = 512 * (1 + 2 * 6);
        assert_eq!(&bytes[root..root + 11], b"TEST       ");
        assert_eq!(bytes[root + 32] & 0x40, 0x40, "long-name entry first");
        assert_eq!(&bytes[root + 64..root + 75], b"A       TXT");
        assert_eq!(get_le16(&bytes, root + 64 + 26), 3, "a.txt after the directory");
        assert_eq!(get_le32(&bytes, root + 64 + 28), 3000);
    }

    #[test]
    fn forced_fat32_and_full_volume() {
        let mut b = FatBuilder::new(opts().with_fat_type(FatType::Fat32));
        b.add_file_bytes("x", vec![1u8; 10]).unwrap();
        let img = b.build().unwrap();
        assert_eq!((img.info().fat_type, img.info().size), (FatType::Fat32, 33 << 20));
        let mut b = FatBuilder::new(opts().with_size(1 << 20));
        b.add_file_bytes("x", vec![1u8; 1 << 20]).unwrap();
        let err = b.build().unwrap_err();
        assert!(err.to_string().contains("clusters of 512 bytes"), "{err}");
    }

    #[test]
    fn builds_are_identical_and_reads_match_writes() {
        let make = || {
            let mut b = FatBuilder::new(opts().with_size(8 << 20));
            b.add_file_bytes("Config/user-data", b"#cloud-config\n".to_vec()).unwrap();
            b.add_file_reader("meta", 5, || Ok(io::Cursor::new(b"hello"))).unwrap();
            b
        };
        let first = image(make());
        assert_eq!(first, image(make()));
        let mut img = make().build().unwrap();
        let mut via_reads = vec![0u8; first.len()];
        for (i, chunk) in via_reads.chunks_mut(3001).enumerate() {
            img.read_exact_at(i as u64 * 3001, chunk).unwrap();
        }
        assert!(via_reads == first);
        assert!(img.known_zero(7 << 20, 1 << 20).unwrap(), "free space is known zero");
    }
}
