//! Linear directory blocks: `ext4_dir_entry_2` records packed into 4 KiB blocks.
//!
//! Each record is `{inode u32, rec_len u16, name_len u8, file_type u8, name}` padded to 4 bytes;
//! the last record of a block stretches to the block's end, and no record crosses a block
//! (kernel `Documentation/filesystems/ext4/directory.rst`, "Linear (Classic) Directories").

use crate::BLOCK_SIZE;

/// `file_type` values of directory entries.
pub mod file_type {
    /// Regular file.
    pub const REG: u8 = 1;
    /// Directory.
    pub const DIR: u8 = 2;
    /// Character device.
    pub const CHR: u8 = 3;
    /// Block device.
    pub const BLK: u8 = 4;
    /// FIFO.
    pub const FIFO: u8 = 5;
    /// Socket.
    pub const SOCK: u8 = 6;
    /// Symbolic link.
    pub const SYMLINK: u8 = 7;
}

const HEADER: usize = 8;
#[allow(clippy::cast_possible_truncation)]
const BLOCK: usize = crate::BLOCK_BYTES;

const fn record_len(name_len: usize) -> usize {
    (HEADER + name_len + 3) & !3
}

/// Number of blocks the entries need, with `.` and `..` first.
pub fn blocks_needed(names: impl Iterator<Item = usize>) -> u64 {
    let mut blocks = 1u64;
    let mut used = record_len(1) + record_len(2);
    for len in names {
        let rec = record_len(len);
        if used + rec > BLOCK {
            blocks += 1;
            used = 0;
        }
        used += rec;
    }
    blocks
}

/// Renders a directory: `.` → `self_ino`, `..` → `parent_ino`, then `entries`
/// (name, inode, file type), padded with empty blocks up to `min_blocks`.
pub fn render(
    self_ino: u32,
    parent_ino: u32,
    entries: &[(&[u8], u32, u8)],
    min_blocks: u64,
) -> Vec<u8> {
    let all = [(&b"."[..], self_ino, file_type::DIR), (&b".."[..], parent_ino, file_type::DIR)];
    let mut out: Vec<u8> = Vec::with_capacity(BLOCK);
    let mut block_start = 0usize;
    let mut last_rec: Option<usize> = None;
    for (name, ino, ftype) in all.iter().copied().chain(entries.iter().copied()) {
        let rec = record_len(name.len());
        if out.len() - block_start + rec > BLOCK {
            stretch_last(&mut out, last_rec, block_start);
            block_start = out.len();
        }
        last_rec = Some(out.len());
        out.extend_from_slice(&ino.to_le_bytes());
        out.extend_from_slice(&u16::try_from(rec).expect("record under a block").to_le_bytes());
        out.push(u8::try_from(name.len()).expect("names are at most 255 bytes"));
        out.push(ftype);
        out.extend_from_slice(name);
        out.resize(out.len() + rec - HEADER - name.len(), 0);
    }
    stretch_last(&mut out, last_rec, block_start);
    while (out.len() as u64) < min_blocks * BLOCK_SIZE {
        // An empty block: one unused record (inode 0) covering all of it.
        let start = out.len();
        out.resize(start + BLOCK, 0);
        out[start + 4..start + 6]
            .copy_from_slice(&u16::try_from(BLOCK).expect("4096 fits").to_le_bytes());
    }
    out
}

/// Every directory of a plan, kept as its entries rather than its rendered blocks: the names
/// in one arena and 12 bytes an entry, so a directory costs about its names, not 4 KiB a
/// block, until the writer renders it ([`Listings::render`]) just before writing it.
#[derive(Debug, Default)]
pub(crate) struct Listings {
    /// Every name, one after another.
    names: Vec<u8>,
    /// Every entry: (end of its name in `names`, inode, file type).
    entries: Vec<(usize, u32, u8)>,
    dirs: Vec<Listing>,
}

/// One directory of [`Listings`] (24 bytes: there may be millions).
#[derive(Debug)]
struct Listing {
    ino: u32,
    parent: u32,
    min_blocks: u32,
    /// Its entries: `entries[first..]`, up to the next directory's first.
    first: usize,
}

impl Listings {
    /// Adds directory `ino` (in `parent`) naming `entries`, at least `min_blocks` long; returns
    /// its index.
    pub fn push<'a>(
        &mut self,
        (ino, parent): (u32, u32),
        entries: impl Iterator<Item = (&'a [u8], u32, u8)>,
        min_blocks: u64,
    ) -> u32 {
        let first = self.entries.len();
        for (name, child, ftype) in entries {
            self.names.extend_from_slice(name);
            self.entries.push((self.names.len(), child, ftype));
        }
        let min_blocks = u32::try_from(min_blocks).expect("at most four blocks");
        self.dirs.push(Listing { ino, parent, min_blocks, first });
        u32::try_from(self.dirs.len() - 1).expect("fewer than 2^32 directories")
    }

    /// Directory `dir`'s blocks, as [`render`] makes them.
    pub fn render(&self, dir: u32) -> Vec<u8> {
        let d = &self.dirs[dir as usize];
        let end = self.dirs.get(dir as usize + 1).map_or(self.entries.len(), |next| next.first);
        let start = |i: usize| if i == 0 { 0 } else { self.entries[i - 1].0 };
        let entries: Vec<(&[u8], u32, u8)> = (d.first..end)
            .map(|i| {
                let (end, ino, ftype) = self.entries[i];
                (&self.names[start(i)..end], ino, ftype)
            })
            .collect();
        render(d.ino, d.parent, &entries, u64::from(d.min_blocks))
    }
}

/// Extends the last record of the current block to the block's end.
fn stretch_last(out: &mut Vec<u8>, last: Option<usize>, block_start: usize) {
    let Some(at) = last else { return };
    let end = block_start + BLOCK;
    let rec = end - at;
    out[at + 4..at + 6]
        .copy_from_slice(&u16::try_from(rec).expect("record under a block").to_le_bytes());
    out.resize(end, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(block: &[u8]) -> Vec<(u32, usize, Vec<u8>)> {
        let mut at = 0;
        let mut out = Vec::new();
        while at < block.len() {
            let ino = u32::from_le_bytes(block[at..at + 4].try_into().unwrap());
            let rec = usize::from(u16::from_le_bytes([block[at + 4], block[at + 5]]));
            let len = usize::from(block[at + 6]);
            out.push((ino, rec, block[at + 8..at + 8 + len].to_vec()));
            at += rec;
        }
        out
    }

    #[test]
    fn small_directory_is_one_block() {
        let data = render(12, 2, &[(b"hello", 13, file_type::REG)], 1);
        assert_eq!(data.len(), 4096);
        let recs = records(&data);
        assert_eq!(
            recs.iter().map(|r| r.2.as_slice()).collect::<Vec<_>>(),
            [&b"."[..], b"..", b"hello"]
        );
        assert_eq!(recs[2].1, 4096 - 12 - 12);
    }

    #[test]
    fn listings_render_as_render_does() {
        let mut listings = Listings::default();
        let two = [(&b"one"[..], 13u32, file_type::REG), (&b"two"[..], 14, file_type::DIR)];
        let long: Vec<Vec<u8>> = (0..400).map(|i| format!("entry-{i:04}").into_bytes()).collect();
        let many: Vec<(&[u8], u32, u8)> =
            long.iter().zip(20u32..).map(|(n, ino)| (n.as_slice(), ino, 1)).collect();
        let first = listings.push((12, 2), two.iter().copied(), 1);
        let empty = listings.push((11, 2), std::iter::empty(), 4);
        let big = listings.push((15, 12), many.iter().copied(), 1);
        assert_eq!(listings.render(first), render(12, 2, &two, 1));
        assert_eq!(listings.render(empty), render(11, 2, &[], 4));
        assert_eq!(listings.render(big), render(15, 12, &many, 1));
        assert!(listings.render(big).len() > 4096, "several blocks");
    }

    #[test]
    fn blocks_needed_matches_render() {
        let names: Vec<Vec<u8>> =
            (0..3000).map(|i| format!("file-{i:05}-{}", "x".repeat(i % 40)).into_bytes()).collect();
        let entries: Vec<(&[u8], u32, u8)> =
            names.iter().map(|n| (n.as_slice(), 20, file_type::REG)).collect();
        let data = render(12, 2, &entries, 1);
        assert_eq!(data.len() as u64, blocks_needed(names.iter().map(Vec::len)) * BLOCK_SIZE);
        let mut seen = 0;
        for block in data.chunks(4096) {
            let recs = records(block);
            assert_eq!(recs.iter().map(|r| r.1).sum::<usize>(), 4096);
            seen += recs.len();
        }
        assert_eq!(seen, 3002);
    }

    #[test]
    fn padding_blocks_are_empty_records() {
        let data = render(11, 2, &[], 4);
        assert_eq!(data.len(), 4 * 4096);
        assert_eq!(records(&data[4096..8192]), [(0, 4096, Vec::new())]);
    }
}
