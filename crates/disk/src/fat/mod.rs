//! A deterministic FAT12/16/32 image writer for EFI system partitions and config drives, and
//! a reader of files on volumes of any origin ([`FatReader`]), written from Microsoft's "FAT:
//! General Overview of On-Disk Format" (FAT specification 1.03, `fatgen103`), sections 3
//! (boot sector and BPB), 4 (FAT), 5 (`FSInfo`), 6 (directories) and 7 (long names).
//!
//! [`FatBuilder`] collects directories and files (from bytes, from any [`DiskSource`], or from
//! a reader that can be opened again) and [`FatBuilder::build`] lays out a [`FatImage`]:
//!
//! ```text
//! reserved sectors   boot sector (BPB); on FAT32 also FSInfo (1), backup boot sector (6)
//!                    and backup FSInfo (7), 32 sectors in all
//! FAT 1, FAT 2       one entry per cluster; chains are contiguous, so the tables are computed
//!                    as they are read
//! root directory     FAT12/16 only: a fixed region of 512 entries or more
//! data               (FAT32 root directory), subdirectories, then file data, each contiguous,
//!                    in sorted path order
//! ```
//!
//! The image is a [`DiskSource`] (to put in a partition with
//! [`DiskBuilder`](crate::partition::DiskBuilder), or to write as VHD or qcow2), or it is written
//! forward with [`FatImage::write_to`]. File data is read from its source only as the image is
//! read; only directories are held in memory.
//!
//! **Type and cluster size** follow the size, as the specification's tables do: FAT12 up to
//! 8400 sectors (4.1 MB), FAT16 up to 512 MiB, FAT32 above; then the cluster size of the
//! specification's table for that size, or the smallest one that gives a valid cluster count
//! (FAT12 < 4085 ≤ FAT16 < 65525 ≤ FAT32). [`FatOptions::fat_type`] forces a type, e.g. FAT32
//! for an ESP of 33 MiB or more, as the UEFI spec prefers for fixed disks.
//!
//! **Determinism**: entries are sorted by name (case-insensitively, as FAT compares them),
//! every timestamp is [`FatOptions::source_date_epoch`], the volume id is given, and short
//! names are derived from long names the same way every time (`NAME~1.EXT` tails, section
//! 7.4). Names that are not valid upper-case 8.3 names get long-name entries.

mod build;
mod dir;
mod geometry;
mod read;
mod table;

pub use build::{FatBuilder, FatImage, FatInfo};
pub use read::FatReader;

#[cfg(doc)]
use crate::DiskSource;

use std::fmt;

/// Bytes per sector; the only size we write.
pub const SECTOR_SIZE: u64 = 512;
/// Largest file FAT can hold: 4 GiB - 1.
pub const MAX_FILE_SIZE: u64 = u32::MAX as u64;
/// Size steps of an automatically sized image: 1 MiB, the partition alignment.
pub const AUTO_SIZE_STEP: u64 = 1 << 20;

/// The three FAT variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FatType {
    /// 12-bit entries, fewer than 4085 clusters.
    Fat12,
    /// 16-bit entries, 4085 to 65524 clusters.
    Fat16,
    /// 28-bit entries in 32 bits, 65525 clusters or more.
    Fat32,
}

impl FatType {
    /// Bits per FAT entry as stored.
    pub const fn bits(self) -> u32 {
        match self {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        }
    }

    /// The valid range of data cluster counts (section 3.5: the count alone decides the type).
    pub const fn cluster_range(self) -> std::ops::RangeInclusive<u32> {
        match self {
            FatType::Fat12 => 1..=4084,
            FatType::Fat16 => 4085..=65524,
            FatType::Fat32 => 65525..=0x0FFF_FFF5,
        }
    }
}

impl fmt::Display for FatType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FAT{}", self.bits())
    }
}

/// How to lay out a FAT image.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FatOptions {
    /// Image size in bytes, a multiple of 512. `None` picks the smallest multiple of
    /// [`AUTO_SIZE_STEP`] that holds the content.
    pub size: Option<u64>,
    /// Force a FAT type instead of choosing it by size.
    pub fat_type: Option<FatType>,
    /// Volume label, up to 11 characters of the 8.3 character set and spaces; stored upper
    /// case. Empty: no label (`NO NAME`).
    pub label: String,
    /// The volume serial number (`BS_VolID`). Derive it from input digests.
    pub volume_id: u32,
    /// Seconds since 1970 for every timestamp (`SOURCE_DATE_EPOCH`); clamped to FAT's range,
    /// 1980 to 2107.
    pub source_date_epoch: u64,
    /// `BPB_HiddSec`: the sector offset of the partition that will hold the image. Only some
    /// boot loaders read it; 0 is fine for UEFI and Linux.
    pub hidden_sectors: u32,
}

impl FatOptions {
    /// Options with the given volume id and timestamp, automatic size and type, and no label.
    pub fn new(volume_id: u32, source_date_epoch: u64) -> Self {
        FatOptions {
            size: None,
            fat_type: None,
            label: String::new(),
            volume_id,
            source_date_epoch,
            hidden_sectors: 0,
        }
    }

    /// These options with a fixed size in bytes.
    #[must_use]
    pub fn with_size(mut self, size: u64) -> Self {
        self.size = Some(size);
        self
    }

    /// These options with a volume label.
    #[must_use]
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// These options with a forced FAT type.
    #[must_use]
    pub fn with_fat_type(mut self, fat_type: FatType) -> Self {
        self.fat_type = Some(fat_type);
        self
    }
}

/// Why a FAT image cannot be built, or a file read from one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FatError {
    /// A volume being read breaks a rule of the format.
    #[error("corrupt FAT volume: {0}")]
    Corrupt(String),
    /// A file being read is larger than the reader was asked to read.
    #[error("{path}: {size} bytes, more than the {max} read")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A path component that FAT cannot store as a long name.
    #[error("{name:?} is not a valid FAT file name: {why}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong.
        why: &'static str,
    },
    /// Two entries whose names are equal once upper-cased (FAT ignores case).
    #[error("{path} already exists (FAT names are case-insensitive)")]
    Exists {
        /// The path added second.
        path: String,
    },
    /// A path goes through a file.
    #[error("{path} is a file, not a directory")]
    NotADirectory {
        /// The file's path.
        path: String,
    },
    /// A file of 4 GiB or more.
    #[error("{path}: {size} bytes exceed FAT's maximum file size of 4 GiB - 1")]
    FileTooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// A directory with more than 65536 entries (long-name entries included).
    #[error("{path}: {entries} directory entries exceed FAT's maximum of 65536")]
    TooManyEntries {
        /// The directory.
        path: String,
        /// Entries it needs.
        entries: u64,
    },
    /// A label that FAT cannot store.
    #[error("volume label {label:?}: {why}")]
    BadLabel {
        /// The label.
        label: String,
        /// What is wrong.
        why: &'static str,
    },
    /// An image size that is not a multiple of 512 or past 2 TiB.
    #[error("FAT image size {size} bytes is not a multiple of 512 or exceeds 2 TiB")]
    BadSize {
        /// The size asked for.
        size: u64,
    },
    /// No cluster size gives a valid layout of this type at this size.
    #[error("no {fat_type} layout fits {size} bytes")]
    NoLayout {
        /// The image size.
        size: u64,
        /// The type.
        fat_type: FatType,
    },
    /// The content does not fit.
    #[error("the content needs {needed} clusters of {cluster_size} bytes; {available} exist")]
    Full {
        /// Clusters needed.
        needed: u64,
        /// Clusters of the volume.
        available: u32,
        /// Cluster size in bytes.
        cluster_size: u32,
    },
}
