//! The payload: a cpio archive in the SVR4 "newc" format (magic `070701`, thirteen 8-digit hex
//! fields, the name and the data each padded to 4 bytes, closed by `TRAILER!!!`), with names
//! prefixed `./` (`rpmlib(PayloadFilesHavePrefix)`), compressed with gzip or xz as a stream ([`Compressor`]).
//! The spec is rpm 4.11.3's own writer: `lib/cpio.c` (`rpmcpioHeaderWrite`,
//! `rpmcpioTrailerWrite`), `lib/fsm.c` (which entries go in: not `%ghost`s; a symlink's
//! data is its target) and `rpmio/rpmio.c` (`gzdio`, `xzdio`).
//!
//! Files are read twice, never held in memory: [`scan`] reads each once for its SHA-256 file
//! digest and size, which the header needs before the payload starts, and [`write_archive`]
//! streams them again into the compressor, checking that they did not change in between.
//! The uncompressed archive size is known from the scan alone ([`Scan::archive_size`]).

use std::fs::File;
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};
use xspack_io::BUFFER_SIZE;

use crate::Error;
use crate::build::{Compression, Entry, RpmBuilder, Source};
use crate::digest::hex;

/// Size of a newc header before the name.
const CPIO_HEADER_SIZE: u64 = 110;
const TRAILER: &str = "TRAILER!!!";
/// Payload compression levels: rpmbuild's `w9.gzdio`, and xz's default preset (decompresses
/// in under 10 MiB in dom0; preset 9 would need 65 MiB).
pub(crate) const GZIP_LEVEL: u32 = 9;
pub(crate) const XZ_LEVEL: u32 = 6;

/// File type bits of `st_mode`.
pub(crate) const S_IFREG: u32 = 0o100_000;
pub(crate) const S_IFDIR: u32 = 0o040_000;
pub(crate) const S_IFLNK: u32 = 0o120_000;

/// One entry of the package, in path order, with what the header records about it.
#[derive(Debug)]
pub(crate) struct Item<'a> {
    pub(crate) entry: &'a Entry,
    /// `st_mode`: type and permission bits.
    pub(crate) mode: u32,
    /// Size recorded in the header (and, unless a ghost or directory, in the payload).
    pub(crate) size: u64,
    /// Hex SHA-256 of a regular file, empty otherwise.
    pub(crate) digest: String,
}

impl Item<'_> {
    pub(crate) fn is_ghost(&self) -> bool {
        matches!(self.entry.source, Source::Ghost)
    }

    /// Bytes of this entry's data in the payload.
    fn data_size(&self) -> u64 {
        match self.entry.source {
            Source::Disk(..) | Source::Bytes(_) | Source::Symlink(_) => self.size,
            Source::Dir | Source::Ghost => 0,
        }
    }
}

/// What the first pass over the inputs found.
#[derive(Debug)]
pub(crate) struct Scan<'a> {
    /// Every entry, sorted by install path.
    pub(crate) items: Vec<Item<'a>>,
    /// Size of the uncompressed cpio archive.
    pub(crate) archive_size: u64,
}

fn align4(n: u64) -> u64 {
    n.div_ceil(4) * 4
}

fn cpio_name(dest: &str) -> String {
    format!(".{dest}")
}

/// Size of one archive member: header, name with its NUL, data, each padded to 4 bytes.
fn member_size(name: &str, data: u64) -> u64 {
    align4(CPIO_HEADER_SIZE + name.len() as u64 + 1) + align4(data)
}

/// Hashes `reader` to its end: hex SHA-256 and byte count.
fn hash_stream(mut reader: impl Read) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut len = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                len += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((hex(&hasher.finalize()), len))
}

/// The first pass: sorts the entries, refuses duplicates and sizes the package's target
/// cannot install (or this writer cannot write), and reads every file once for its digest
/// and size.
pub(crate) fn scan(b: &RpmBuilder) -> Result<Scan<'_>, Error> {
    let mut entries: Vec<&Entry> = b.entries.iter().collect();
    entries.sort_by(|x, y| x.dest.cmp(&y.dest));
    if let Some(w) = entries.windows(2).find(|w| w[0].dest == w[1].dest) {
        return Err(b.fail(&format!("{} is listed twice", w[0].dest)));
    }
    // Sizes first, from the file system: what the target cannot take is refused before
    // anything is read.
    let mut total = 0u64;
    for entry in &entries {
        total += match &entry.source {
            Source::Disk(src, _) => {
                let meta = std::fs::metadata(src).map_err(|e| b.fail(&format!("{src}: {e}")))?;
                if !meta.is_file() {
                    return Err(b.fail(&format!("{src}: not a regular file")));
                }
                check_size(b, &entry.dest, src.as_str(), meta.len())?;
                meta.len()
            }
            Source::Bytes(bytes) => bytes.len() as u64,
            _ => 0,
        };
    }
    check_total(b, total)?;
    let mut items = Vec::with_capacity(entries.len());
    let mut archive_size = member_size(TRAILER, 0);
    for entry in entries {
        let perms = u32::from(entry.attrs.mode) & 0o7777;
        let (mode, size, digest) = match &entry.source {
            // Read already by the caller: its digest is checked again as the payload copies it.
            Source::Disk(_, Some((sha256, size))) => (S_IFREG | perms, *size, sha256.to_hex()),
            Source::Disk(src, None) => {
                let file = File::open(src).map_err(|e| b.fail(&format!("{src}: {e}")))?;
                let (digest, size) =
                    hash_stream(file).map_err(|e| b.fail(&format!("{src}: {e}")))?;
                (S_IFREG | perms, size, digest)
            }
            Source::Bytes(bytes) => {
                (S_IFREG | perms, bytes.len() as u64, hex(&Sha256::digest(bytes)))
            }
            Source::Dir => (S_IFDIR | perms, 0, String::new()),
            Source::Ghost => (S_IFREG | perms, 0, String::new()),
            Source::Symlink(target) => (S_IFLNK | 0o777, target.len() as u64, String::new()),
        };
        let item = Item { entry, mode, size, digest };
        if !item.is_ghost() {
            archive_size += member_size(&cpio_name(&entry.dest), item.data_size());
        }
        items.push(item);
    }
    // A file may have grown since it was measured.
    for item in &items {
        check_size(b, &item.entry.dest, &item.entry.dest, item.size)?;
    }
    check_total(b, items.iter().map(|i| i.size).sum())?;
    Ok(Scan { items, archive_size })
}

/// Refuses a file the target cannot install, then one this writer cannot write: sizes of
/// 4 GiB and more need `LONGFILESIZES` and rpm 4.12's stripped cpio headers (`lib/cpio.c`,
/// `rpmcpioStrippedHeaderWrite`), which it does not write.
fn check_size(b: &RpmBuilder, dest: &str, source: &str, size: u64) -> Result<(), Error> {
    b.target.check_file(&b.name, dest, source, size)?;
    if size > u64::from(u32::MAX) {
        return Err(b.fail(&format!(
            "file {dest} (from {source}) has {size} bytes: xspack writes files under 4 GiB only"
        )));
    }
    Ok(())
}

/// [`check_size`] for the sum of the file sizes (`SIZE` is 32 bits without `LONGSIZE`).
fn check_total(b: &RpmBuilder, total: u64) -> Result<(), Error> {
    b.target.check_total(&b.name, total)?;
    if total > u64::from(u32::MAX) {
        return Err(b.fail(&format!(
            "its files total {total} bytes: xspack writes packages under 4 GiB of files only; \
             split the files over several packages"
        )));
    }
    Ok(())
}

/// The compressor in front of the output: gzip or xz on every core ([`super::pgzip`],
/// [`super::pxz`]), with output that depends on the input alone, not on the number of cores.
pub(crate) enum Compressor<W: Write> {
    Gzip(super::pgzip::ParGzEncoder<W>),
    Xz(liblzma::write::XzEncoder<W>),
}

impl<W: Write> Compressor<W> {
    /// A compressor using this machine's cores.
    pub(crate) fn new(compression: Compression, out: W) -> io::Result<Self> {
        let threads = match compression {
            Compression::Gzip => super::pgzip::default_threads(),
            Compression::Xz => super::pxz::threads(XZ_LEVEL),
        };
        Self::with_threads(compression, out, threads)
    }

    /// A compressor on `threads` threads: the same output for any number.
    pub(crate) fn with_threads(
        compression: Compression,
        out: W,
        threads: usize,
    ) -> io::Result<Self> {
        Ok(match compression {
            Compression::Gzip => Compressor::Gzip(super::pgzip::ParGzEncoder::with_threads(
                out,
                GZIP_LEVEL,
                threads,
                super::pgzip::BLOCK_SIZE,
            )),
            Compression::Xz => Compressor::Xz(super::pxz::encoder(out, XZ_LEVEL, threads)?),
        })
    }

    /// Ends the compressed stream and gives the output back.
    pub(crate) fn finish(self) -> io::Result<W> {
        match self {
            Compressor::Gzip(e) => e.finish(),
            Compressor::Xz(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(e) => e.write(buf),
            Compressor::Xz(e) => e.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(e) => e.flush(),
            Compressor::Xz(e) => e.flush(),
        }
    }
}

fn write_member(
    out: &mut impl Write,
    name: &str,
    fields: [u32; 3],
    data_size: u64,
) -> io::Result<()> {
    let [ino, mode, mtime] = fields;
    let size = u32::try_from(data_size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio member over 4 GiB"))?;
    let namesize = name.len() + 1;
    let header = format!(
        "070701{ino:08x}{mode:08x}{:08x}{:08x}{:08x}{mtime:08x}{size:08x}{:08x}{:08x}{:08x}{:08x}{namesize:08x}{:08x}",
        0, 0, 1, 0, 0, 0, 0, 0
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    pad(out, CPIO_HEADER_SIZE + namesize as u64)
}

/// Zero bytes up to the next multiple of 4 after `len` bytes.
fn pad(out: &mut impl Write, len: u64) -> io::Result<()> {
    let n = usize::try_from(align4(len) - len).unwrap_or(0);
    out.write_all(&[0; 3][..n])
}

/// Copies the file at `src` into the archive, checking it still has the size and digest the
/// scan found.
fn copy_file(
    b: &RpmBuilder,
    item: &Item<'_>,
    src: &camino::Utf8Path,
    out: &mut impl Write,
) -> Result<(), Error> {
    let changed = || b.fail(&format!("{src} changed while the package was built"));
    let file = File::open(src).map_err(|e| b.fail(&format!("{src}: {e}")))?;
    let mut reader = file.take(item.size + 1);
    let mut buf = vec![0u8; BUFFER_SIZE];
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(b.fail(&format!("{src}: {e}"))),
        };
        len += n as u64;
        if len > item.size {
            return Err(changed());
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| b.write_fail(&e))?;
    }
    if len != item.size || hex(&hasher.finalize()) != item.digest {
        return Err(changed());
    }
    Ok(())
}

/// Writes the uncompressed cpio archive of `scan` to `out` (normally a compressor).
pub(crate) fn write_archive(
    b: &RpmBuilder,
    scan: &Scan<'_>,
    mtime: u32,
    out: &mut impl Write,
) -> Result<(), Error> {
    for (i, item) in scan.items.iter().enumerate() {
        if item.is_ghost() {
            continue;
        }
        let ino = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let name = cpio_name(&item.entry.dest);
        write_member(out, &name, [ino, item.mode, mtime], item.data_size())
            .map_err(|e| b.write_fail(&e))?;
        match &item.entry.source {
            Source::Disk(src, _) => copy_file(b, item, src, out)?,
            Source::Bytes(bytes) => out.write_all(bytes).map_err(|e| b.write_fail(&e))?,
            Source::Symlink(target) => {
                out.write_all(target.as_bytes()).map_err(|e| b.write_fail(&e))?;
            }
            Source::Dir | Source::Ghost => {}
        }
        pad(out, item.data_size()).map_err(|e| b.write_fail(&e))?;
    }
    write_member(out, TRAILER, [0, 0, 0], 0).map_err(|e| b.write_fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_size_is_what_is_written() {
        let b = RpmBuilder::new("x", "1", "1")
            .file_from_bytes(b"hello".to_vec(), "/opt/x/a", 0o644)
            .dir("/opt/x", 0o755)
            .symlink("/opt/x/l", "a")
            .ghost("/opt/x/g", crate::FileAttrs::mode(0o600));
        let scan = scan(&b).unwrap();
        let paths: Vec<_> = scan.items.iter().map(|i| i.entry.dest.as_str()).collect();
        assert_eq!(paths, ["/opt/x", "/opt/x/a", "/opt/x/g", "/opt/x/l"]);
        let mut out = Vec::new();
        write_archive(&b, &scan, 1, &mut out).unwrap();
        assert_eq!(out.len() as u64, scan.archive_size);
        assert!(out.starts_with(b"070701"));
        assert_eq!(&out[110..117], b"./opt/x");
        assert!(!out.windows(8).any(|w| w == b"/opt/x/g"), "ghosts stay out of the payload");
        let dup = RpmBuilder::new("x", "1", "1").dir("/a", 0o755).dir("/a", 0o755);
        assert!(matches!(super::scan(&dup), Err(Error::Build { .. })));
    }
}
