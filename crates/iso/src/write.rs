//! Serialising a [`Layout`]: volume descriptors (ECMA-119 8.4, 8.5 with the Joliet escape
//! sequence `%/E`, 8.3), path tables (9.4), directory records (9.1), SUSP Continuation Areas and
//! file data, in sector order to a forward-only writer.
//!
//! File bytes are streamed from the reader the data source opens, through one fixed buffer, and
//! never held whole; each source must deliver exactly the size its file was declared with.

use std::io::{self, BufWriter, Read, Write};

use camino::Utf8Path;
use xspack_io::{AtomicFile, BUFFER_SIZE};

use crate::bytes::{put_u16_both, put_u32_both, set_u16_both, set_u32_both};
use crate::layout::{FIRST_DESCRIPTOR, Hierarchy, Layout, Record};
use crate::time::{VD_DATE_UNSET, dir_date, vd_date};
use crate::tree::{FileId, IsoBuilder, ROOT};
use crate::{Error, SECTOR_SIZE};

const SECTOR: usize = 2048;
/// ECMA-119 9.1.6: the Directory bit of the file flags.
const FLAG_DIRECTORY: u8 = 2;
/// Joliet escape sequence for UCS-2 level 3.
const JOLIET_ESCAPE: &[u8; 3] = b"%/E";
const STANDARD_ID: &[u8; 5] = b"CD001";
/// Length of the root directory record in a volume descriptor (ECMA-119 8.4.18).
const ROOT_RECORD_LEN: u8 = 34;

/// What [`write_iso`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct IsoSummary {
    /// Size of the image in 2048-byte sectors.
    pub sectors: u32,
    /// Size of the image in bytes.
    pub bytes: u64,
    /// Directories, the root included.
    pub directories: usize,
    /// Regular files.
    pub files: usize,
    /// Symlinks.
    pub symlinks: usize,
}

/// Writes the image of `builder` to `out`, front to back, and returns `out`.
///
/// `open` is called once per regular file, in image order (not necessarily the order files
/// were added), and must return a reader of exactly the declared size. Wrap `out` in
/// [`xspack_io::HashingWriter`] to digest the image as it is written.
pub fn write_iso<W: Write, R: Read>(
    builder: &IsoBuilder,
    out: W,
    mut open: impl FnMut(FileId) -> io::Result<R>,
) -> Result<(W, IsoSummary), Error> {
    let layout = Layout::compute(builder)?;
    let mut sink = Sink { out: BufWriter::with_capacity(BUFFER_SIZE, out), pos: 0 };
    sink.zeros(FIRST_DESCRIPTOR * SECTOR_SIZE)?;
    sink.put(&volume_descriptor(builder, &layout, &layout.primary, false))?;
    if let Some(joliet) = &layout.joliet {
        sink.put(&volume_descriptor(builder, &layout, joliet, true))?;
    }
    let mut terminator = [0u8; SECTOR];
    terminator[0] = 255;
    terminator[1..6].copy_from_slice(STANDARD_ID);
    terminator[6] = 1;
    sink.put(&terminator)?;

    for h in std::iter::once(&layout.primary).chain(&layout.joliet) {
        debug_assert_eq!(sink.pos, u64::from(h.l_table) * SECTOR_SIZE);
        for big_endian in [false, true] {
            sink.put(&path_table(h, big_endian))?;
            sink.pad_to_sector()?;
        }
    }
    for h in std::iter::once(&layout.primary).chain(&layout.joliet) {
        for dir in &h.dirs {
            debug_assert_eq!(sink.pos, u64::from(dir.extent) * SECTOR_SIZE);
            sink.put(&directory_extent(builder, &dir.records, dir.sectors))?;
        }
    }
    write_areas(&mut sink, &layout)?;
    let mut buf = vec![0u8; BUFFER_SIZE];
    for file in &layout.files {
        debug_assert!(file.size == 0 || sink.pos == u64::from(file.extent) * SECTOR_SIZE);
        let path = || builder.path_of(file.node);
        let source = open(file.id).map_err(|source| Error::Source { path: path(), source })?;
        copy_exact(source, &mut sink, file.size, &mut buf, path)?;
        sink.pad_to_sector()?;
    }
    debug_assert_eq!(sink.pos, u64::from(layout.total_sectors) * SECTOR_SIZE);
    let out = sink.out.into_inner().map_err(|e| Error::Write(e.into_error()))?;
    let summary = IsoSummary {
        sectors: layout.total_sectors,
        bytes: u64::from(layout.total_sectors) * SECTOR_SIZE,
        directories: layout.primary.dirs.len(),
        files: layout.files.len(),
        symlinks: layout.symlinks,
    };
    Ok((out, summary))
}

/// Writes the image atomically to `dest` (see [`AtomicFile`]): it appears complete or not at
/// all. An existing `dest` is an error unless `replace` is set.
pub fn write_iso_file<R: Read>(
    builder: &IsoBuilder,
    dest: &Utf8Path,
    replace: bool,
    open: impl FnMut(FileId) -> io::Result<R>,
) -> Result<IsoSummary, Error> {
    let file =
        if replace { AtomicFile::create_or_replace(dest)? } else { AtomicFile::create(dest)? };
    let (mut file, summary) = write_iso(builder, file, open).map_err(|e| match e {
        Error::Write(source) => Error::io("writing", dest, source),
        other => other,
    })?;
    file.flush().map_err(|e| Error::io("writing", dest, e))?;
    file.commit()?;
    Ok(summary)
}

/// The output and its position, for the forward-only writer.
struct Sink<W: Write> {
    out: BufWriter<W>,
    pos: u64,
}

impl<W: Write> Sink<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.out.write_all(bytes).map_err(Error::Write)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> Result<(), Error> {
        const ZEROS: [u8; SECTOR] = [0; SECTOR];
        while n > 0 {
            let chunk = usize::try_from(n).map_or(SECTOR, |n| n.min(SECTOR));
            self.put(&ZEROS[..chunk])?;
            n -= chunk as u64;
        }
        Ok(())
    }

    fn pad_to_sector(&mut self) -> Result<(), Error> {
        let rem = self.pos % SECTOR_SIZE;
        if rem == 0 { Ok(()) } else { self.zeros(SECTOR_SIZE - rem) }
    }
}

/// Copies exactly `size` bytes from `source`, then checks that the source has nothing more.
fn copy_exact<W: Write>(
    mut source: impl Read,
    sink: &mut Sink<W>,
    size: u64,
    buf: &mut [u8],
    path: impl Fn() -> String,
) -> Result<(), Error> {
    let mut done = 0u64;
    let read = |source: &mut dyn Read, buf: &mut [u8]| loop {
        match source.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other.map_err(|source| Error::Source { path: path(), source }),
        }
    };
    while done < size {
        let want = usize::try_from(size - done).map_or(buf.len(), |r| r.min(buf.len()));
        let n = read(&mut source, &mut buf[..want])?;
        if n == 0 {
            return Err(Error::SourceTooShort { path: path(), expected: size, actual: done });
        }
        sink.put(&buf[..n])?;
        done += n as u64;
    }
    if read(&mut source, &mut buf[..1])? > 0 {
        return Err(Error::SourceTooLong { path: path(), expected: size });
    }
    Ok(())
}

/// Writes a text field: ASCII padded with spaces, or for Joliet UCS-2 big-endian padded with
/// UCS-2 spaces (an odd final byte stays 0). Text that does not fit is cut.
fn text_field(buf: &mut [u8], at: usize, len: usize, text: &str, joliet: bool) {
    let field = &mut buf[at..at + len];
    if joliet {
        let units = text.encode_utf16().chain(std::iter::repeat(u16::from(b' ')));
        for (pair, unit) in field.chunks_exact_mut(2).zip(units) {
            pair.copy_from_slice(&unit.to_be_bytes());
        }
    } else {
        let bytes = text.bytes().chain(std::iter::repeat(b' '));
        for (b, c) in field.iter_mut().zip(bytes) {
            *b = c;
        }
    }
}

/// A directory record in `out`; `susp` is the System Use field, padding included.
fn encode_record(out: &mut Vec<u8>, rec: &Record, mtime: i64) {
    let start = out.len();
    out.push(u8::try_from(rec.len).unwrap_or(0));
    out.push(0); // no extended attribute record
    put_u32_both(out, rec.extent);
    put_u32_both(out, rec.data_len);
    out.extend_from_slice(&dir_date(mtime));
    out.push(if rec.is_dir { FLAG_DIRECTORY } else { 0 });
    out.extend_from_slice(&[0, 0]); // not interleaved
    put_u16_both(out, 1); // volume sequence number
    out.push(u8::try_from(rec.ident.len()).unwrap_or(0));
    out.extend_from_slice(&rec.ident);
    if rec.ident.len().is_multiple_of(2) {
        out.push(0);
    }
    out.extend_from_slice(&rec.susp);
    debug_assert_eq!(out.len() - start, rec.len);
}

fn volume_descriptor(
    builder: &IsoBuilder,
    layout: &Layout,
    tree: &Hierarchy,
    joliet: bool,
) -> Vec<u8> {
    let opts = &builder.options;
    let mut d = vec![0u8; SECTOR];
    d[0] = if joliet { 2 } else { 1 };
    d[1..6].copy_from_slice(STANDARD_ID);
    d[6] = 1;
    text_field(&mut d, 8, 32, &opts.system_id, joliet);
    text_field(&mut d, 40, 32, &opts.volume_id, joliet);
    set_u32_both(&mut d, 80, layout.total_sectors);
    if joliet {
        d[88..91].copy_from_slice(JOLIET_ESCAPE);
    }
    set_u16_both(&mut d, 120, 1); // volume set size
    set_u16_both(&mut d, 124, 1); // volume sequence number
    set_u16_both(&mut d, 128, 2048); // logical block size
    set_u32_both(&mut d, 132, tree.path_table_size);
    d[140..144].copy_from_slice(&tree.l_table.to_le_bytes());
    d[148..152].copy_from_slice(&tree.m_table.to_be_bytes());
    // The root record is the root's "." record without its System Use field.
    let mut root = Vec::new();
    encode_record(&mut root, &tree.dirs[0].records[0], builder.mtime(ROOT));
    root[0] = ROOT_RECORD_LEN;
    d[156..190].copy_from_slice(&root[..usize::from(ROOT_RECORD_LEN)]);
    text_field(&mut d, 190, 128, &opts.volume_set_id, joliet);
    text_field(&mut d, 318, 128, &opts.publisher_id, joliet);
    text_field(&mut d, 446, 128, &opts.data_preparer_id, joliet);
    text_field(&mut d, 574, 128, &opts.application_id, joliet);
    for at in [702, 739, 776] {
        text_field(&mut d, at, 37, "", joliet); // copyright, abstract, bibliographic files
    }
    let date = vd_date(opts.source_date_epoch);
    d[813..830].copy_from_slice(&date); // creation
    d[830..847].copy_from_slice(&date); // modification
    d[847..864].copy_from_slice(&VD_DATE_UNSET); // expiration
    d[864..881].copy_from_slice(&VD_DATE_UNSET); // effective
    d[881] = 1; // file structure version
    d
}

fn path_table(h: &Hierarchy, big_endian: bool) -> Vec<u8> {
    let mut t = Vec::with_capacity(h.path_table_size as usize);
    for dir in &h.dirs {
        t.push(u8::try_from(dir.ident.len()).unwrap_or(0));
        t.push(0);
        let parent = u16::try_from(dir.parent + 1).unwrap_or(u16::MAX);
        if big_endian {
            t.extend_from_slice(&dir.extent.to_be_bytes());
            t.extend_from_slice(&parent.to_be_bytes());
        } else {
            t.extend_from_slice(&dir.extent.to_le_bytes());
            t.extend_from_slice(&parent.to_le_bytes());
        }
        t.extend_from_slice(&dir.ident);
        if dir.ident.len() % 2 == 1 {
            t.push(0);
        }
    }
    t
}

/// A directory's extent: its records, none across a sector boundary, zero-filled.
fn directory_extent(b: &IsoBuilder, records: &[Record], sectors: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(sectors as usize * SECTOR);
    for rec in records {
        let used = out.len() % SECTOR;
        if used + rec.len > SECTOR {
            out.resize(out.len() + SECTOR - used, 0);
        }
        encode_record(&mut out, rec, b.mtime(rec.target));
    }
    out.resize(sectors as usize * SECTOR, 0);
    out
}

/// Writes the Continuation Areas block by block.
fn write_areas<W: Write>(sink: &mut Sink<W>, l: &Layout) -> Result<(), Error> {
    let mut block = vec![0u8; SECTOR];
    let mut current = l.ce_start;
    for area in &l.areas {
        while area.block > current {
            sink.put(&block)?;
            block.fill(0);
            current += 1;
        }
        let at = area.offset as usize;
        block[at..at + area.bytes.len()].copy_from_slice(&area.bytes);
    }
    if current < l.ce_start + l.ce_sectors {
        sink.put(&block)?;
        current += 1;
    }
    debug_assert_eq!(current, l.ce_start + l.ce_sectors);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::{IsoOptions, Metadata};

    fn builder() -> IsoBuilder {
        let mut b = IsoBuilder::new(IsoOptions::new("TEST", 1_700_000_000)).unwrap();
        b.add_file("a.txt", 5, Metadata::new(0o644)).unwrap();
        b
    }

    #[test]
    fn descriptors_in_place() {
        let (img, summary) = write_iso(&builder(), Vec::new(), |_| Ok(&b"hello"[..])).unwrap();
        assert_eq!(img.len() as u64, summary.bytes);
        assert_eq!(img.len() % SECTOR, 0);
        let pvd = &img[16 * SECTOR..17 * SECTOR];
        assert_eq!(&pvd[..7], b"\x01CD001\x01");
        assert_eq!(&pvd[40..48], b"TEST    ");
        assert_eq!(&pvd[813..830], b"2023111422132000\0");
        let svd = &img[17 * SECTOR..18 * SECTOR];
        assert_eq!(&svd[88..91], b"%/E");
        assert_eq!(&svd[40..48], b"\0T\0E\0S\0T");
        assert_eq!(&img[18 * SECTOR..18 * SECTOR + 7], b"\xffCD001\x01");
        assert!(img.windows(5).any(|w| w == b"hello"));
    }

    #[test]
    fn source_size_is_checked() {
        let err = write_iso(&builder(), Vec::new(), |_| Ok(&b"hell"[..])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.txt: data source delivered 4 bytes but the file was declared with 5"
        );
        let err = write_iso(&builder(), Vec::new(), |_| Ok(&b"hello!"[..])).unwrap_err();
        assert!(matches!(err, Error::SourceTooLong { expected: 5, .. }));
        let err = write_iso(&builder(), Vec::new(), |_| -> io::Result<Cursor<Vec<u8>>> {
            Err(io::Error::other("gone"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "a.txt: reading the file's data source");
    }

    #[test]
    fn text_fields() {
        let mut buf = [0u8; 7];
        text_field(&mut buf, 0, 7, "AB", false);
        assert_eq!(&buf, b"AB     ");
        let mut buf = [0u8; 7];
        text_field(&mut buf, 0, 7, "AB", true);
        assert_eq!(&buf, b"\0A\0B\0 \0");
        text_field(&mut buf, 0, 3, "ABCDEF", false);
        assert_eq!(&buf[..3], b"ABC");
    }
}
