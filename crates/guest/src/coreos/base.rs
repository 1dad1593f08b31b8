//! The CoreOS base disk: a Flatcar Container Linux or Fedora CoreOS image for the `openstack`
//! platform (whose kernel command line carries `ignition.platform.id=openstack`, so Ignition
//! reads the `config-2` drive), given as a raw disk, plain or compressed with gzip, bzip2, xz or
//! zstd.
//!
//! The file is read once, as a stream: the compression is found from its magic bytes, the
//! decompressed head is checked to be a GPT disk (UEFI 2.10 section 5.3, `xspack_disk::partition`)
//! whose partition names are those of a known distribution, and the rest flows through. The
//! disk size comes from the GPT header (the backup header sits on the last sector), so the
//! writers know it before the data arrives, and a stream that ends early or runs long is an
//! error.
//!
//! A disk may be grown (to a whole number of 2 MiB units, the XenServer VDI unit, or to a size
//! the user asks for). The GPT is then moved as `sgdisk -e` would: the primary header points at
//! a new backup header on the new last sector, the protective MBR covers the new size, the old
//! backup copy is zeroed, and the partitions
//! stay where they are. Flatcar and Fedora CoreOS grow their root partition into the free space
//! on first boot.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest as _, Sha256};
use xspack_disk::partition::{GptEntry, GptHeader, crc32};
use xspack_io::Sha256Digest;

use crate::Error;

/// Bytes read before the GPT is judged: the protective MBR, the header and the usual 128-entry
/// array fit in 17 KiB; arrays elsewhere in the first MiB are accepted too.
const HEAD: usize = 1 << 20;
/// The XenServer VDI unit.
const UNIT: u64 = 2 << 20;
const SECTOR: u64 = 512;

/// How the base file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain raw disk.
    None,
    /// gzip (`.gz`).
    Gzip,
    /// bzip2 (`.bz2`).
    Bzip2,
    /// xz (`.xz`).
    Xz,
    /// Zstandard (`.zst`), as some Flatcar images are published.
    Zstd,
}

/// The distribution a base disk holds, known by its GPT partition names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// Flatcar Container Linux: `EFI-SYSTEM`, `BIOS-BOOT`, `USR-A`, `USR-B`, `OEM`, `ROOT`, ...
    Flatcar,
    /// Fedora CoreOS: `BIOS-BOOT`, `EFI-SYSTEM`, `boot`, `root`.
    FedoraCoreos,
}

impl Distribution {
    /// Partition names (GPT `PARTLABEL`s) every image of the distribution has.
    pub fn required_labels(self) -> &'static [&'static str] {
        match self {
            Distribution::Flatcar => &["EFI-SYSTEM", "USR-A", "ROOT"],
            Distribution::FedoraCoreos => &["EFI-SYSTEM", "boot", "root"],
        }
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Distribution::Flatcar => "Flatcar Container Linux",
            Distribution::FedoraCoreos => "Fedora CoreOS",
        })
    }
}

/// Hashes a file as it is read, for the build manifest.
struct HashedFile {
    file: std::fs::File,
    state: Arc<Mutex<(Sha256, u64)>>,
}

impl Read for HashedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.0.update(&buf[..n]);
        state.1 += n as u64;
        Ok(n)
    }
}

/// The digest and size of the base file, complete once its disk has been read to the end.
#[derive(Debug, Clone, Default)]
pub struct FileDigest(Arc<Mutex<(Sha256, u64)>>);

impl FileDigest {
    /// The SHA-256 and length of the bytes read so far.
    pub fn get(&self) -> (Sha256Digest, u64) {
        let state = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (Sha256Digest(state.0.clone().finalize().into()), state.1)
    }
}

/// A base disk opened and checked, ready to stream.
pub struct BaseDisk {
    path: Utf8PathBuf,
    /// The compression found.
    pub compression: Compression,
    /// The distribution found.
    pub distribution: Distribution,
    /// The partition names, in table order.
    pub labels: Vec<String>,
    /// Size of the disk in the file.
    pub original_size: u64,
    /// Size of the disk written.
    pub size: u64,
    /// The file's digest, complete once the disk has been read.
    pub file_digest: FileDigest,
    head: Vec<u8>,
    rest: Box<dyn Read + Send>,
    /// The moved GPT: the new primary header sector, and the backup copy (array then header)
    /// for the last sectors.
    moved: Option<([u8; 512], Vec<u8>)>,
    /// Bytes of the original backup copy, zeroed when the GPT moves.
    backup_len: u64,
}

impl fmt::Debug for BaseDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseDisk")
            .field("path", &self.path)
            .field("distribution", &self.distribution)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

fn bad(path: &Utf8Path, reason: impl Into<String>) -> Error {
    Error::BaseImage { path: path.to_owned(), reason: reason.into() }
}

/// The decompressing reader for `file`, judged by its first bytes.
fn decompressor(
    path: &Utf8Path,
    file: impl Read + Send + 'static,
) -> Result<(Compression, Box<dyn Read + Send>), Error> {
    let mut buffered = BufReader::with_capacity(1 << 20, file);
    let magic = buffered.fill_buf().map_err(|e| Error::io("reading", path, e))?.to_vec();
    let starts = |m: &[u8]| magic.starts_with(m);
    if starts(b"QFI\xfb") {
        return Err(bad(
            path,
            "is a qcow2 image; convert it first: qemu-img convert -O raw IN.qcow2 OUT.img",
        ));
    }
    if starts(b"conectix") {
        return Err(bad(
            path,
            "is a VHD; give the raw OpenStack image (.img, .img.gz, .img.bz2, .img.xz or .img.zst)",
        ));
    }
    Ok(if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        // RFC 8878 section 3.1.1: the frame magic. Every frame of the file is read.
        let decoder = zstd::stream::read::Decoder::with_buffer(buffered)
            .map_err(|e| Error::io("starting zstd decompression of", path, e))?;
        (Compression::Zstd, Box::new(decoder))
    } else if starts(&[0x1f, 0x8b]) {
        (Compression::Gzip, Box::new(flate2::bufread::MultiGzDecoder::new(buffered)))
    } else if starts(b"BZh") {
        (Compression::Bzip2, Box::new(bzip2::bufread::MultiBzDecoder::new(buffered)))
    } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        (Compression::Xz, Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buffered)))
    } else {
        (Compression::None, Box::new(buffered))
    })
}

/// What the GPT in `head` says: the primary header, its entry array bytes and the used entries.
fn read_gpt(path: &Utf8Path, head: &[u8]) -> Result<(GptHeader, Vec<u8>, Vec<GptEntry>), Error> {
    let not_gpt = |why: String| {
        bad(
            path,
            format!(
                "is not a GPT disk ({why}); give a Flatcar or Fedora CoreOS OpenStack raw image"
            ),
        )
    };
    if head.len() < 2 * 512 || head[510..512] != [0x55, 0xaa] {
        return Err(not_gpt("no MBR signature in sector 0".into()));
    }
    let header = GptHeader::decode(&head[512..1024]).map_err(|e| not_gpt(e.to_string()))?;
    if header.my_lba != 1 {
        return Err(not_gpt(format!("the primary header says it is at LBA {}", header.my_lba)));
    }
    let len = u64::from(header.entry_count) * u64::from(header.entry_size);
    let start = header.entries_lba.checked_mul(SECTOR);
    let range = start.and_then(|s| Some(s..s.checked_add(len)?));
    let Some(range) = range.filter(|r| r.start >= 1024 && r.end <= head.len() as u64) else {
        return Err(not_gpt(format!(
            "its entry array (LBA {}, {} entries) is not within the first MiB",
            header.entries_lba, header.entry_count
        )));
    };
    let array = head[usize::try_from(range.start).expect("in head")
        ..usize::try_from(range.end).expect("in head")]
        .to_vec();
    if crc32(&array) != header.entries_crc32 {
        return Err(not_gpt("the entry array does not match its CRC".into()));
    }
    let mut entries = Vec::new();
    for chunk in array.chunks(header.entry_size as usize) {
        if let Some(e) = GptEntry::decode(chunk).map_err(|e| not_gpt(e.to_string()))? {
            entries.push(e);
        }
    }
    Ok((header, array, entries))
}

impl BaseDisk {
    /// Opens `path`, finds its compression, and checks its partition table. `grow_to` asks
    /// for a larger disk (rounded up to 2 MiB); the disk is always grown to a 2 MiB multiple.
    pub fn open(path: &Utf8Path, grow_to: Option<u64>) -> Result<BaseDisk, Error> {
        let file = std::fs::File::open(path).map_err(|e| Error::io("opening", path, e))?;
        let file_digest = FileDigest::default();
        let file = HashedFile { file, state: Arc::clone(&file_digest.0) };
        let (compression, mut reader) = decompressor(path, file)?;
        let mut head = vec![0u8; HEAD];
        let n = xspack_io::read_full(&mut reader, &mut head)
            .map_err(|e| Error::io("decompressing", path, e))?;
        head.truncate(n);
        let (header, array, entries) = read_gpt(path, &head)?;
        let labels: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
        let has = |l: &&str| labels.iter().any(|x| x == l);
        let distribution = [Distribution::Flatcar, Distribution::FedoraCoreos]
            .into_iter()
            .find(|d| d.required_labels().iter().all(has))
            .ok_or_else(|| {
                bad(
                    path,
                    format!(
                        "has partitions [{}], not those of Flatcar (EFI-SYSTEM, USR-A, ROOT) or \
                         Fedora CoreOS (EFI-SYSTEM, boot, root)",
                        labels.join(", ")
                    ),
                )
            })?;
        let last = header.alternate_lba;
        let array_sectors = (array.len() as u64).div_ceil(SECTOR);
        if last <= header.last_usable_lba || header.last_usable_lba < header.first_usable_lba {
            return Err(bad(path, format!("its GPT header is inconsistent (backup LBA {last})")));
        }
        let original_size = (last + 1) * SECTOR;
        if let Some(e) = entries.iter().find(|e| e.last_lba > header.last_usable_lba) {
            return Err(bad(
                path,
                format!("partition {:?} ends past the last usable sector", e.name),
            ));
        }
        let wanted = grow_to.unwrap_or(0).max(original_size);
        let size = wanted.div_ceil(UNIT) * UNIT;
        let moved = (size != original_size).then(|| {
            let new_last = size / SECTOR - 1;
            let primary = GptHeader {
                alternate_lba: new_last,
                last_usable_lba: new_last - array_sectors - 1,
                ..header.clone()
            };
            let backup = GptHeader {
                my_lba: new_last,
                alternate_lba: 1,
                entries_lba: new_last - array_sectors,
                ..primary.clone()
            };
            let mut tail = array.clone();
            tail.resize(usize::try_from(array_sectors * SECTOR).expect("small"), 0);
            tail.extend_from_slice(&backup.encode());
            (primary.encode(), tail)
        });
        if head.len() as u64 > original_size {
            return Err(bad(
                path,
                format!("holds more than the {original_size} bytes its GPT describes"),
            ));
        }
        if head.len() as u64 == original_size {
            probe_end(&mut reader, original_size).map_err(|e| bad(path, e.to_string()))?;
        }
        if let Some((sector, _)) = &moved {
            head[512..1024].copy_from_slice(sector);
            // The protective MBR's entry covers the whole disk (or 2^32 - 1 sectors).
            for entry in head[446..510].chunks_mut(16) {
                if entry[4] == 0xee {
                    let sectors = u32::try_from(size / SECTOR - 1).unwrap_or(u32::MAX);
                    entry[12..16].copy_from_slice(&sectors.to_le_bytes());
                }
            }
        }
        Ok(BaseDisk {
            path: path.to_owned(),
            compression,
            distribution,
            labels,
            original_size,
            size,
            file_digest,
            head,
            rest: reader,
            moved,
            // Never into the usable space, whatever the old layout was.
            backup_len: ((array_sectors + 1) * SECTOR)
                .min(original_size - (header.last_usable_lba + 1) * SECTOR),
        })
    }

    /// The disk's bytes, exactly [`size`](BaseDisk::size) of them. A file that holds less or
    /// more than its GPT says fails the read with [`io::ErrorKind::InvalidData`].
    pub fn into_reader(self) -> BaseReader {
        BaseReader { disk: self, offset: 0 }
    }
}

/// Fails if `rest` holds anything more: the file is longer than its GPT says. Like every read
/// error of [`BaseReader`], the message leaves the file to the caller to name.
fn probe_end(rest: &mut dyn Read, size: u64) -> io::Result<()> {
    if xspack_io::read_full(rest, &mut [0u8; 1])? == 0 {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("holds more than the {size} bytes its GPT describes"),
    ))
}

/// Reads a [`BaseDisk`] front to back.
#[derive(Debug)]
pub struct BaseReader {
    disk: BaseDisk,
    offset: u64,
}

impl Read for BaseReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let d = &mut self.disk;
        let at = self.offset;
        if buf.is_empty() || at >= d.size {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(d.size - at).unwrap_or(usize::MAX));
        let head_len = d.head.len() as u64;
        let n = if at < head_len.min(d.original_size) {
            let end = head_len.min(d.original_size);
            let n = want.min(usize::try_from(end - at).expect("within head"));
            let start = usize::try_from(at).expect("within head");
            buf[..n].copy_from_slice(&d.head[start..start + n]);
            n
        } else if at < d.original_size {
            let n = want.min(usize::try_from(d.original_size - at).unwrap_or(usize::MAX));
            let got = d.rest.read(&mut buf[..n])?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "ends after {at} of the {} bytes its GPT describes (truncated?)",
                        d.original_size
                    ),
                ));
            }
            if at + got as u64 == d.original_size {
                probe_end(&mut d.rest, d.original_size)?;
            }
            got
        } else {
            // Growth: zeros, then the moved backup copy on the last sectors.
            let tail = d.moved.as_ref().map_or(&[][..], |(_, t)| &t[..]);
            let tail_start = d.size - tail.len() as u64;
            if at < tail_start {
                let n = want.min(usize::try_from(tail_start - at).unwrap_or(usize::MAX));
                buf[..n].fill(0);
                n
            } else {
                let start = usize::try_from(at - tail_start).expect("within tail");
                let n = want.min(tail.len() - start);
                buf[..n].copy_from_slice(&tail[start..start + n]);
                n
            }
        };
        // The old backup copy is zeroed when the GPT moves.
        if d.moved.is_some() {
            let old = d.original_size - d.backup_len..d.original_size;
            let end = at + n as u64;
            if end > old.start && at < old.end {
                let from = usize::try_from(old.start.saturating_sub(at)).expect("within buf");
                let to = usize::try_from(old.end.min(end) - at).expect("within buf");
                buf[from..to].fill(0);
            }
        }
        self.offset += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use xspack_disk::DiskSource;
    use xspack_disk::partition::{DiskBuilder, Gpt, Partition, PartitionType};

    use super::*;

    /// A small disk partitioned like a Flatcar (or Fedora CoreOS) image, with data in a
    /// partition.
    fn disk(names: &[&str], size: u64) -> Vec<u8> {
        let mut builder = DiskBuilder::gpt(xspack_disk::Uuid::from_bytes([7; 16])).size(size);
        for (i, name) in names.iter().enumerate() {
            let data = xspack_testkit::noise(i as u64, 256 << 10);
            let kind =
                if i == 0 { PartitionType::EFI_SYSTEM } else { PartitionType::LINUX_FILESYSTEM };
            let guid = xspack_disk::Uuid::from_bytes([u8::try_from(i).unwrap() + 1; 16]);
            builder = builder
                .partition(Partition::new(kind, 1 << 20).guid(guid).name(*name).source(data));
        }
        let mut disk = builder.build().unwrap();
        let mut out = vec![0u8; usize::try_from(disk.size()).unwrap()];
        disk.read_exact_at(0, &mut out).unwrap();
        out
    }

    const FLATCAR: [&str; 6] = ["EFI-SYSTEM", "BIOS-BOOT", "USR-A", "USR-B", "OEM", "ROOT"];

    fn write_file(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> Utf8PathBuf {
        let path = Utf8PathBuf::try_from(dir.path().join(name)).unwrap();
        std::fs::write(&path, data).unwrap();
        path
    }

    fn read_all(base: BaseDisk) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        base.into_reader().read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn every_compression_streams_the_same_disk() {
        let raw = disk(&FLATCAR, 16 << 20);
        let dir = tempfile::tempdir().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&raw).unwrap();
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&raw).unwrap();
        // Two frames, as zstd writes a file compressed in parts.
        let half = raw.len() / 2;
        let zst = [
            zstd::encode_all(&raw[..half], 1).unwrap(),
            zstd::encode_all(&raw[half..], 1).unwrap(),
        ]
        .concat();
        let files = [
            ("a.img", raw.clone(), Compression::None),
            ("a.img.gz", gz.finish().unwrap(), Compression::Gzip),
            ("a.img.bz2", bz.finish().unwrap(), Compression::Bzip2),
            ("a.img.xz", xz.finish().unwrap(), Compression::Xz),
            ("a.img.zst", zst, Compression::Zstd),
        ];
        for (name, bytes, compression) in files {
            let base = BaseDisk::open(&write_file(&dir, name, &bytes), None).unwrap();
            assert_eq!(base.compression, compression);
            assert_eq!(base.distribution, Distribution::Flatcar);
            assert_eq!(base.labels, FLATCAR);
            assert_eq!(base.size, raw.len() as u64);
            let digest = base.file_digest.clone();
            assert!(read_all(base).unwrap() == raw, "{name}");
            assert_eq!(digest.get(), (Sha256Digest::of_bytes(&bytes), bytes.len() as u64));
        }
        let fcos = disk(&["BIOS-BOOT", "EFI-SYSTEM", "boot", "root"], 16 << 20);
        let base = BaseDisk::open(&write_file(&dir, "f.img", &fcos), None).unwrap();
        assert_eq!(base.distribution, Distribution::FedoraCoreos);
    }

    #[test]
    fn a_grown_disk_keeps_its_partitions_and_moves_the_backup_gpt() {
        let raw = disk(&FLATCAR, 16 << 20);
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(&dir, "a.img", &raw);
        let base = BaseDisk::open(&path, Some((24 << 20) + 1)).unwrap();
        assert_eq!(base.size, 26 << 20, "rounded up to 2 MiB");
        let mut grown = read_all(base).unwrap();
        assert_eq!(grown.len(), 26 << 20);
        // Gpt::read checks both headers, both arrays, their CRCs and the last-LBA rule.
        let before = Gpt::read(&mut raw.clone()).unwrap();
        let after = Gpt::read(&mut grown).unwrap();
        assert_eq!(before, after);
        let data_end = usize::try_from(before.entries.last().unwrap().last_lba + 1).unwrap() * 512;
        assert!(grown[1024..data_end] == raw[1024..data_end], "partitions unchanged");
        assert!(
            grown[raw.len() - 33 * 512..raw.len()].iter().all(|&b| b == 0),
            "old backup zeroed"
        );
    }

    #[test]
    fn wrong_and_damaged_bases_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let raw = disk(&FLATCAR, 16 << 20);
        let open = |name: &str, data: &[u8]| {
            BaseDisk::open(&write_file(&dir, name, data), None).and_then(|b| {
                read_all(b)
                    .map_err(|e| Error::BaseImage { path: "x".into(), reason: e.to_string() })
            })
        };
        let ubuntu = disk(&["root", "EFI system partition"], 16 << 20);
        let mut bad_crc = raw.clone();
        bad_crc[2 * 512 + 60] ^= 1;
        let mut qcow = raw.clone();
        qcow[..4].copy_from_slice(b"QFI\xfb");
        let cases: [(&str, Vec<u8>, &str); 7] = [
            ("ubuntu.img", ubuntu, "not those of Flatcar"),
            ("crc.img", bad_crc, "does not match its CRC"),
            ("qcow.img", qcow, "qemu-img convert -O raw"),
            ("zeros.img", vec![0; 1 << 20], "no MBR signature"),
            ("short.img", raw[..10 << 20].to_vec(), "truncated"),
            ("long.img", [&raw[..], &[1u8; 512]].concat(), "holds more than"),
            ("tiny.img", b"hello".to_vec(), "not a GPT disk"),
        ];
        for (name, data, want) in cases {
            let err = open(name, &data).unwrap_err().to_string();
            assert!(err.contains(want), "{name}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }
}
