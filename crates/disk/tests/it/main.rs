//! Integration tests of xspack-disk.
//!
//! - `oracle`: images read back by the real tools, `qemu-img` (info, compare, check) and
//!   libvhdi's `vhdiinfo`. A missing tool fails the test: run `scripts/oracles` to install them.
//! - `tamper`: one hand-broken VHD per rule of the checker, each failing with its own error.
//! - `qcow2_diff`: the qcow2 checker against `qemu-img check`/`info` on mutated images.
//! - `roundtrip`: writer → reader property tests, and byte-identical repeated writes.
//! - `sparse`: a 20 GiB disk holding 200 MiB of data gives images of about 200 MiB.
//! - `fat`: FAT12/16/32 images checked by `fsck.fat` and read back with mtools.
//! - `partition`: GPT and MBR disks as `sfdisk`, `fdisk` and `sgdisk` see them; GPT property
//!   and tamper tests.
//! - `assemble`: a GPT disk with a FAT ESP and an ext4 root, as raw, VHD and qcow2.

// Test disks are small and every machine we test on has a 64-bit usize.
#![allow(clippy::cast_possible_truncation)]

mod assemble;
mod fat;
mod fat_read;
mod oracle;
mod partition;
mod qcow2_diff;
mod roundtrip;
mod sparse;
mod tamper;

use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::process::{Command, Output};

use camino::Utf8PathBuf;
use xspack_disk::Uuid;
use xspack_disk::vhd::VhdOptions;

/// The "current time" the checker is given, and the creation time of test images.
pub const NOW: u64 = 1_700_000_000;
/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// The VHD options of test images.
pub fn vhd_opts() -> VhdOptions {
    VhdOptions::new(Uuid::from_bytes(*b"xspack-disk-test"), NOW)
}

/// A temporary directory, removed when the guard drops.
pub fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

/// Runs an oracle tool. A missing tool is a failure, never a skip.
pub fn tool(cmd: &str, args: &[&str]) -> Output {
    match Command::new(cmd).args(args).output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            panic!("oracle `{cmd}` is not installed: run scripts/oracles (as root) to install it")
        }
        Err(e) => panic!("running {cmd}: {e}"),
    }
}

/// Runs an oracle tool that must succeed; returns its standard output.
pub fn tool_ok(cmd: &str, args: &[&str]) -> String {
    let out = tool(cmd, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs an mtools command (UTF-8 locale, so long names print as they are) that must succeed;
/// returns its standard output as bytes.
pub fn mtools(cmd: &str, args: &[&str]) -> Vec<u8> {
    let out = match Command::new(cmd).args(args).env("LC_ALL", "C.UTF-8").output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            panic!("oracle `{cmd}` is not installed: run scripts/oracles (as root) to install it")
        }
        Err(e) => panic!("running {cmd}: {e}"),
    };
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Creates `path` for writing an image, leaving holes where whole blocks are zero.
pub fn sparse_file(path: &camino::Utf8Path) -> xspack_io::SparseFile {
    xspack_io::SparseFile::new(std::fs::File::create(path).unwrap())
}

/// Bytes that are a function of `seed` and their index, never all zero.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A disk of zeros except for `regions`, whose bytes are a non-zero function of their offset.
/// It is a `Read + Seek` that never holds the disk in memory.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// Virtual size.
    pub size: u64,
    /// Where the data is.
    pub regions: Vec<Range<u64>>,
    pos: u64,
}

impl Pattern {
    /// A disk of `size` bytes with data in `regions`.
    pub fn new(size: u64, regions: Vec<Range<u64>>) -> Self {
        assert!(regions.iter().all(|r| r.end <= size));
        Pattern { size, regions, pos: 0 }
    }

    /// The bytes at `offset`.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        buf.fill(0);
        let end = offset + buf.len() as u64;
        for r in &self.regions {
            let (start, stop) = (r.start.max(offset), r.end.min(end));
            let mut p = start;
            while p < stop {
                // One 8-byte word at a time, never with a zero byte. Every third 64 KiB
                // cluster is noise that deflate cannot shrink; the others count, and shrink.
                let word = if (p >> 16) % 3 == 0 {
                    (p / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                } else {
                    (p / 8) | 0x0101_0101_0101_0101
                };
                let bytes = word.to_le_bytes().map(|b| if b == 0 { 0x5a } else { b });
                let take = ((8 - p % 8).min(stop - p)) as usize;
                let at = (p - offset) as usize;
                let from = (p % 8) as usize;
                buf[at..at + take].copy_from_slice(&bytes[from..from + take]);
                p += take as u64;
            }
        }
    }

    /// The whole disk in memory (small disks only).
    pub fn render(&self) -> Vec<u8> {
        let mut v = vec![0u8; usize::try_from(self.size).unwrap()];
        self.fill(0, &mut v);
        v
    }

    /// Bytes of data (the sum of the region lengths).
    pub fn data_len(&self) -> u64 {
        self.regions.iter().map(|r| r.end - r.start).sum()
    }
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (buf.len() as u64).min(self.size.saturating_sub(self.pos)) as usize;
        self.fill(self.pos, &mut buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for Pattern {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = match pos {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => self.size.checked_add_signed(d).unwrap(),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).unwrap(),
        };
        Ok(self.pos)
    }
}

/// The small test disk most tests use: 16 MiB with data in blocks 0, 1 and 3 (block 3 only at
/// its very end, block 1 in a single byte), blocks 2 and 4 to 7 empty.
pub fn small_disk() -> Pattern {
    Pattern::new(16 * MIB, vec![0..3 * MIB / 2, 2 * MIB + 100..2 * MIB + 101, 8 * MIB - 7..8 * MIB])
}

#[test]
fn pattern_is_consistent() {
    let p = small_disk();
    let whole = p.render();
    let mut part = vec![0u8; 4099];
    p.fill(2 * MIB + 97, &mut part);
    assert_eq!(part, whole[(2 * MIB + 97) as usize..][..4099]);
    assert_ne!(whole[(2 * MIB + 100) as usize], 0);
    assert_eq!(whole[(2 * MIB + 101) as usize], 0);
    let mut r = p.clone();
    let mut via_read = Vec::new();
    r.read_to_end(&mut via_read).unwrap();
    assert!(via_read == whole);
}
