//! The file allocation table (FAT specification section 4), computed as it is read.
//!
//! The writer allocates every directory and file as one contiguous run, back to back from
//! cluster 2, so entry `n` is: the media and end-of-chain markers for the two reserved entries,
//! "next is `n + 1`" inside a run, end-of-chain at a run's last cluster, and free (0) after the
//! last allocated cluster. The table is therefore defined by the list of run ends; nothing of
//! it is stored, and its free tail is reported as known zeros.

use std::io;
use std::sync::Arc;

use super::FatType;
use super::geometry::MEDIA;
use crate::DiskSource;

/// One copy of the FAT.
#[derive(Debug, Clone)]
pub(crate) struct FatTable {
    fat_type: FatType,
    /// Size in bytes (whole sectors).
    len: u64,
    /// First free cluster: every cluster in `2..end` is allocated.
    end: u32,
    /// Last cluster of every run, ascending.
    chain_ends: Arc<[u32]>,
}

impl FatTable {
    pub fn new(fat_type: FatType, len: u64, end: u32, chain_ends: Arc<[u32]>) -> Self {
        debug_assert!(chain_ends.iter().all(|&e| (2..end).contains(&e)));
        debug_assert!(chain_ends.is_sorted());
        FatTable { fat_type, len, end, chain_ends }
    }

    /// The end-of-chain marker, also stored in entry 1 (with the "clean" bits of FAT16/32 set).
    fn eoc(&self) -> u32 {
        match self.fat_type {
            FatType::Fat12 => 0xFFF,
            FatType::Fat16 => 0xFFFF,
            FatType::Fat32 => 0x0FFF_FFFF,
        }
    }

    /// Bytes up to the end of the last allocated entry; zeros follow.
    fn used_bytes(&self) -> u64 {
        let entries = u64::from(self.end);
        match self.fat_type {
            FatType::Fat12 => (entries * 3).div_ceil(2),
            FatType::Fat16 => entries * 2,
            FatType::Fat32 => entries * 4,
        }
    }

    /// A reader of entries at non-decreasing indexes from `first` on.
    fn entries_from(&self, first: u32) -> impl FnMut(u32) -> u32 + '_ {
        let mut next_end = self.chain_ends.partition_point(|&e| e < first);
        let eoc = self.eoc();
        move |n| match n {
            0 => eoc & !0xFF | u32::from(MEDIA),
            1 => eoc,
            n if n >= self.end => 0,
            n => {
                while self.chain_ends.get(next_end).is_some_and(|&e| e < n) {
                    next_end += 1;
                }
                if self.chain_ends.get(next_end) == Some(&n) { eoc } else { n + 1 }
            }
        }
    }
}

impl DiskSource for FatTable {
    fn size(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "read past the FAT"))?;
        buf.fill(0);
        let stop = end.min(self.used_bytes());
        // Entries are written in groups of `group` bytes holding `per_group` entries: one
        // entry for FAT16/32, two 12-bit entries in three bytes for FAT12.
        let (group, per_group) = match self.fat_type {
            FatType::Fat12 => (3, 2),
            FatType::Fat16 => (2, 1),
            FatType::Fat32 => (4, 1),
        };
        let mut g = offset / group;
        let first = u32::try_from(g * per_group).expect("entries fit u32");
        let mut entry = self.entries_from(first);
        while g * group < stop {
            let n = u32::try_from(g * per_group).expect("entries fit u32");
            let bytes: [u8; 4] = match self.fat_type {
                FatType::Fat12 => {
                    let (a, b) = (entry(n), entry(n + 1));
                    let packed = a | (b << 12);
                    packed.to_le_bytes()
                }
                _ => entry(n).to_le_bytes(),
            };
            for (i, &byte) in bytes.iter().take(usize::try_from(group).expect("<= 4")).enumerate() {
                let at = g * group + i as u64;
                if (offset..end).contains(&at) {
                    buf[usize::try_from(at - offset).expect("inside buf")] = byte;
                }
            }
            g += 1;
        }
        Ok(())
    }

    fn known_zero(&mut self, offset: u64, _len: u64) -> io::Result<bool> {
        Ok(offset >= self.used_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(fat_type: FatType, end: u32, ends: &[u32]) -> FatTable {
        FatTable::new(fat_type, 512, end, ends.into())
    }

    fn all(t: &mut FatTable) -> Vec<u8> {
        let mut b = vec![0u8; 512];
        t.read_exact_at(0, &mut b).unwrap();
        b
    }

    #[test]
    fn fat16_and_fat32_entries() {
        // Runs 2..=3 and 4, then free.
        let mut t = table(FatType::Fat16, 5, &[3, 4]);
        let b = all(&mut t);
        assert_eq!(b[..12], [0xF8, 0xFF, 0xFF, 0xFF, 3, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0]);
        assert!(b[10..].iter().all(|&x| x == 0));
        let mut t = table(FatType::Fat32, 4, &[2, 3]);
        let b = all(&mut t);
        assert_eq!(b[..8], [0xF8, 0xFF, 0xFF, 0x0F, 0xFF, 0xFF, 0xFF, 0x0F]);
        assert_eq!(b[8..16], [0xFF, 0xFF, 0xFF, 0x0F, 0xFF, 0xFF, 0xFF, 0x0F]);
        assert!(t.known_zero(16, 100).unwrap());
        assert!(!t.known_zero(15, 100).unwrap());
    }

    #[test]
    fn fat12_packs_two_entries_in_three_bytes() {
        // Entries: FF8 FFF 003 FFF 005 006 FFF 000
        let mut t = table(FatType::Fat12, 7, &[3, 6]);
        let b = all(&mut t);
        assert_eq!(b[..12], [0xF8, 0xFF, 0xFF, 0x03, 0xF0, 0xFF, 0x05, 0x60, 0x00, 0xFF, 0x0F, 0]);
        assert!(b[11..].iter().all(|&x| x == 0));
    }

    #[test]
    fn partial_reads_match_the_whole() {
        for fat_type in [FatType::Fat12, FatType::Fat16, FatType::Fat32] {
            let mut t = table(fat_type, 90, &[10, 11, 50, 89]);
            let whole = all(&mut t);
            for (off, len) in [(0, 1), (1, 2), (4, 7), (5, 100), (133, 3), (511, 1)] {
                let mut part = vec![7u8; len];
                t.read_exact_at(off as u64, &mut part).unwrap();
                assert_eq!(part, whole[off..off + len], "{fat_type} {off}+{len}");
            }
            assert!(t.read_exact_at(510, &mut [0; 3]).is_err());
        }
    }
}
