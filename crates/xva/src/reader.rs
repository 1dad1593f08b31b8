//! The XVA reader: refuses everything xapi's import refuses, while streaming the disks back as
//! raw bytes. Each rule has its own [`Error`] variant naming the member.
//!
//! xapi's rules (`xapi-project/xen-api:ocaml/xapi/import.ml` `with_open_archive`,
//! `stream_vdi.ml` `recv_all_vdi` and `verify_inline_checksum`, and `mirage/ocaml-tar` 2.x
//! `Header.unmarshal`): the first member is named exactly `ova.xml` (`assert_filename_is`);
//! tar headers have a valid unsigned checksum and octal numeric fields; each streamed VDI's
//! chunks are named `<VDI id>/<suffix>` with increasing suffixes; each chunk is followed by a
//! `.checksum` (SHA-1, lowercase hex) or `.xxhash` (XXH64, `%016LX`) member whose text equals
//! the chunk's digest; the chunks run until the disk's `virtual_size`; every chunk is a
//! multiple of 512 bytes (xapi reads the checksum member's header before it skips the chunk's
//! padding). xva-img (`eriklax/xva-img:src/disk.cpp` `Disk::Export`) also needs each chunk's
//! checksum member.
//!
//! Stricter on purpose, where xapi accepts or misreads: only regular files; suffixes of exactly
//! eight digits (`%08d`); disks in VDI-id string order (`vdi_ordering`); each disk starts with
//! chunk 0, every chunk but the last is 1 MiB and the last ends exactly at `virtual_size`; a
//! checksum member is named after its chunk and comes right after it; the archive ends with
//! two zero blocks and nothing but zeros after them; `ova.xml` is at most [`MAX_OVA_XML`]
//! bytes. A chunk is verified before any of its bytes are handed out, and memory stays at one
//! chunk.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};

use camino::Utf8Path;
use serde::Serialize;
use xspack_io::BUFFER_SIZE;

use crate::ova::{OvaDoc, decode, stream_order};
use crate::tar::{BLOCK, Header, HeaderProblem, is_zero_block, padding, parse_header};
use crate::writer::{CHUNK, ZERO_CHUNK};
use crate::{BootMode, CHUNK_SIZE, ChecksumKind, Error, Memory, OVA_XML, Uuid, VmSpec};

/// Largest `ova.xml` read into memory. Real ones are a few KiB (a VM with snapshots, tens).
pub const MAX_OVA_XML: u64 = 16 * 1024 * 1024;

/// The disk whose data [`XvaReader::read_disk`] now returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskInfo {
    /// Index of the disk in [`VmSpec::disks`].
    pub index: usize,
    /// The VDI's id in `ova.xml`, which is also the directory of its chunks.
    pub vdi_ref: String,
    /// Size of the disk in bytes.
    pub virtual_size: u64,
}

/// What [`XvaReader::finish`] found in a disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DiskSummary {
    /// The VDI's id in `ova.xml`.
    pub vdi_ref: String,
    /// The VDI's `name_label`.
    pub name: String,
    /// Size of the disk in bytes.
    pub virtual_size: u64,
    /// Chunk members present (all-zero chunks may be left out).
    pub chunks: u64,
    /// Bytes of disk data stored in those chunks.
    pub stored_bytes: u64,
    /// The checksum kind of the disk's first chunk.
    pub checksum: ChecksumKind,
}

/// What an XVA holds, for `xspack inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct XvaSummary {
    /// `name_label` of the VM.
    pub name: String,
    /// UUID of the VM.
    pub uuid: Uuid,
    /// Whether it is a template.
    pub is_template: bool,
    /// Memory limits.
    pub memory: Memory,
    /// `VCPUs_max`.
    pub vcpus_max: u32,
    /// `VCPUs_at_startup`.
    pub vcpus_at_startup: u32,
    /// Firmware.
    pub boot: BootMode,
    /// Whether the VM has an (empty) CD drive.
    pub cd_drive: bool,
    /// Disks, in [`VmSpec::disks`] order.
    pub disks: Vec<DiskSummary>,
    /// Bytes read from the archive, end-of-archive blocks and padding included.
    pub archive_size: u64,
}

/// The next thing in the tar stream.
enum Next {
    Member(Header),
    /// Two zero blocks.
    End,
    /// End of input at a block boundary, without the end-of-archive blocks.
    Eof,
}

/// A chunk or checksum member name, split.
enum Name<'a> {
    Chunk { vdi: &'a str, index: u64 },
    Checksum,
    Other,
}

fn classify(name: &str) -> Name<'_> {
    let Some((vdi, rest)) = name.split_once('/') else { return Name::Other };
    let (digits, suffix) = rest.split_once('.').map_or((rest, None), |(d, s)| (d, Some(s)));
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Name::Other;
    }
    match suffix {
        None => Name::Chunk { vdi, index: digits.parse().expect("8 digits") },
        Some(s) if ChecksumKind::from_suffix(s).is_some() => Name::Checksum,
        Some(_) => Name::Other,
    }
}

/// Progress through the disk being read.
struct DiskState {
    index: usize,
    size: u64,
    /// End of the data read from the archive so far, gaps included.
    covered: u64,
    /// Zero bytes (a gap of elided chunks) to hand out before `buf[start..end]`.
    zeros: u64,
    start: usize,
    end: usize,
    last: Option<u64>,
}

impl DiskState {
    fn drained(&self) -> bool {
        self.zeros == 0 && self.start == self.end
    }
}

/// Reads an XVA from a forward-only stream, checking it as it goes.
///
/// Call [`XvaReader::next_disk`] until it returns `None`, reading each disk with
/// [`XvaReader::read_disk`], [`XvaReader::copy_disk`] or [`XvaReader::disk_reader`] (or not at
/// all: skipped disks are still verified), then [`XvaReader::finish`].
pub struct XvaReader<R> {
    src: R,
    pos: u64,
    doc: OvaDoc,
    order: Vec<usize>,
    started: usize,
    first_chunk: Option<u64>,
    disks: Vec<DiskSummary>,
    disk: Option<DiskState>,
    buf: Vec<u8>,
}

impl<R: Read> XvaReader<R> {
    /// Reads and checks the first member, `ova.xml`.
    pub fn new(src: R) -> Result<Self, Error> {
        let mut r = XvaReader {
            src,
            pos: 0,
            doc: OvaDoc { spec: VmSpec::default(), vdi_ids: Vec::new() },
            order: Vec::new(),
            started: 0,
            first_chunk: None,
            disks: Vec::new(),
            disk: None,
            buf: vec![0; CHUNK],
        };
        let h = match r.next_header()? {
            Next::Member(h) if h.name == OVA_XML => h,
            Next::Member(h) => return Err(Error::FirstMember { member: h.name }),
            Next::End | Next::Eof => {
                return Err(Error::FirstMember { member: "end of archive".into() });
            }
        };
        check_regular(&h)?;
        if h.size > MAX_OVA_XML {
            return Err(Error::OvaXmlTooLarge { size: h.size, limit: MAX_OVA_XML });
        }
        let mut xml = vec![0; usize::try_from(h.size).expect("below MAX_OVA_XML")];
        r.read_member_data(&h.name, &mut xml)?;
        let xml = String::from_utf8(xml).map_err(|e| Error::Xml { reason: e.to_string() })?;
        r.doc = decode(&xml)?;
        r.order = stream_order(&r.doc.vdi_ids);
        r.disks = r
            .doc
            .spec
            .disks
            .iter()
            .zip(&r.doc.vdi_ids)
            .map(|(d, id)| DiskSummary {
                vdi_ref: id.clone(),
                name: d.name.clone(),
                virtual_size: d.virtual_size,
                chunks: 0,
                stored_bytes: 0,
                checksum: ChecksumKind::Sha1,
            })
            .collect();
        Ok(r)
    }

    /// The VM described by `ova.xml`.
    pub fn spec(&self) -> &VmSpec {
        &self.doc.spec
    }

    /// Moves to the next disk in archive order, first reading (and verifying) whatever is left
    /// of the current one. `None` once every disk has been started.
    pub fn next_disk(&mut self) -> Result<Option<DiskInfo>, Error> {
        while self.disk.is_some() {
            let d = self.disk.as_mut().expect("checked");
            d.zeros = 0;
            d.start = d.end;
            if d.covered == d.size {
                self.disk = None;
            } else {
                self.load_chunk()?;
            }
        }
        let Some(&index) = self.order.get(self.started) else { return Ok(None) };
        self.started += 1;
        let size = self.doc.spec.disks[index].virtual_size;
        let state = DiskState { index, size, covered: 0, zeros: 0, start: 0, end: 0, last: None };
        self.disk = Some(state);
        Ok(Some(DiskInfo { index, vdi_ref: self.doc.vdi_ids[index].clone(), virtual_size: size }))
    }

    /// Reads raw bytes of the current disk into `out`; `Ok(0)` at its end (or with no disk).
    pub fn read_disk(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        loop {
            let Some(d) = self.disk.as_mut() else { return Ok(0) };
            if out.is_empty() || (d.drained() && d.covered == d.size) {
                return Ok(0);
            }
            if d.zeros > 0 {
                let n = usize::try_from(d.zeros).unwrap_or(usize::MAX).min(out.len());
                out[..n].fill(0);
                d.zeros -= n as u64;
                return Ok(n);
            }
            if d.start < d.end {
                let n = (d.end - d.start).min(out.len());
                out[..n].copy_from_slice(&self.buf[d.start..d.start + n]);
                d.start += n;
                return Ok(n);
            }
            self.load_chunk()?;
        }
    }

    /// Writes the rest of the current disk to `out`; returns the bytes written.
    pub fn copy_disk(&mut self, out: &mut impl Write) -> Result<u64, Error> {
        let mut written = 0;
        loop {
            let Some(d) = self.disk.as_mut() else { return Ok(written) };
            let piece = if d.zeros > 0 {
                let n = usize::try_from(d.zeros).unwrap_or(CHUNK).min(CHUNK);
                d.zeros -= n as u64;
                &ZERO_CHUNK[..n]
            } else if d.start < d.end {
                let piece = &self.buf[d.start..d.end];
                d.start = d.end;
                piece
            } else if d.covered == d.size {
                return Ok(written);
            } else {
                self.load_chunk()?;
                continue;
            };
            out.write_all(piece).map_err(Error::Write)?;
            written += piece.len() as u64;
        }
    }

    /// The current disk as an [`io::Read`]. Its errors wrap this crate's [`Error`]
    /// (`io::Error::get_ref` and downcast to recover it).
    pub fn disk_reader(&mut self) -> DiskReader<'_, R> {
        DiskReader(self)
    }

    /// Reads and verifies whatever is left, checks the end of the archive, and reports.
    pub fn finish(mut self) -> Result<XvaSummary, Error> {
        while self.next_disk()?.is_some() {}
        match self.next_header()? {
            Next::End => self.check_trailing_zeros()?,
            Next::Eof => return Err(Error::MissingEnd),
            Next::Member(h) => return Err(self.stray_member(h.name, "end of archive")),
        }
        let spec = &self.doc.spec;
        Ok(XvaSummary {
            name: spec.name.clone(),
            uuid: spec.uuid,
            is_template: spec.is_template,
            memory: spec.memory,
            vcpus_max: spec.vcpus_max,
            vcpus_at_startup: spec.vcpus_at_startup,
            boot: spec.boot,
            cd_drive: spec.cd_drive.is_some(),
            disks: self.disks,
            archive_size: self.pos,
        })
    }

    // ----- tar level -----

    fn read_full(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let n = xspack_io::read_full(&mut self.src, buf).map_err(Error::Read)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn read_exact(&mut self, buf: &mut [u8], member: &str) -> Result<(), Error> {
        if self.read_full(buf)? < buf.len() {
            return Err(Error::Truncated { member: member.to_owned() });
        }
        Ok(())
    }

    /// Reads a member's data into `data` (exactly its size) and skips its padding.
    fn read_member_data(&mut self, member: &str, data: &mut [u8]) -> Result<(), Error> {
        self.read_exact(data, member)?;
        let mut pad = [0u8; BLOCK];
        self.read_exact(&mut pad[..padding(data.len() as u64)], member)
    }

    fn next_header(&mut self) -> Result<Next, Error> {
        let offset = self.pos;
        let mut block = [0u8; BLOCK];
        match self.read_full(&mut block)? {
            0 => return Ok(Next::Eof),
            BLOCK => {}
            _ => return Err(Error::Truncated { member: format!("tar header at offset {offset}") }),
        }
        if is_zero_block(&block) {
            let n = self.read_full(&mut block)?;
            return if n == BLOCK && is_zero_block(&block) {
                Ok(Next::End)
            } else {
                Err(Error::MissingEnd)
            };
        }
        match parse_header(&block) {
            Ok(h) => Ok(Next::Member(h)),
            Err(HeaderProblem::Checksum { name }) => {
                Err(Error::HeaderChecksum { member: name, offset })
            }
            Err(HeaderProblem::Field { name, field }) => {
                Err(Error::HeaderField { member: name, field })
            }
        }
    }

    fn check_trailing_zeros(&mut self) -> Result<(), Error> {
        let mut buf = std::mem::take(&mut self.buf);
        let result = loop {
            let offset = self.pos;
            match self.read_full(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) if buf[..n] == ZERO_CHUNK[..n] => {}
                Ok(n) => {
                    let first = buf[..n].iter().position(|&b| b != 0).expect("non-zero");
                    break Err(Error::TrailingData {
                        offset: offset + (first - first % BLOCK) as u64,
                    });
                }
                Err(e) => break Err(e),
            }
        };
        self.buf = buf;
        result
    }

    /// The error for a member found where no chunk of it may be.
    fn stray_member(&self, member: String, expected: &str) -> Error {
        match classify(&member) {
            Name::Chunk { vdi, .. } if self.doc.vdi_ids.iter().any(|id| id == vdi) => {
                Error::DiskOrder { member, expected: expected.to_owned() }
            }
            Name::Chunk { .. } => Error::UnknownVdi { member },
            Name::Checksum => Error::OrphanChecksum { member },
            Name::Other => Error::UnexpectedMember { member },
        }
    }

    // ----- chunk level -----

    /// Reads the current disk's next chunk and its checksum, verifies them, and queues the gap
    /// before it and its data.
    fn load_chunk(&mut self) -> Result<(), Error> {
        let d = self.disk.as_ref().expect("a disk is current");
        let (disk_index, size, covered, last) = (d.index, d.size, d.covered, d.last);
        let vdi = self.doc.vdi_ids[disk_index].clone();
        let unfinished = |vdi: String| match last {
            None => Error::MissingDisk { vdi },
            Some(_) => Error::MissingLastChunk { vdi, end: covered, virtual_size: size },
        };
        let h = match self.next_header()? {
            Next::Member(h) => h,
            Next::End | Next::Eof => return Err(unfinished(vdi)),
        };
        check_regular(&h)?;
        let index = match classify(&h.name) {
            Name::Chunk { vdi: v, index } if v == vdi => index,
            Name::Chunk { vdi: v, .. }
                if last.is_some() && self.doc.vdi_ids.iter().any(|id| id == v) =>
            {
                return Err(unfinished(vdi));
            }
            _ => return Err(self.stray_member(h.name, &vdi)),
        };
        let name = h.name;
        match last {
            None if index != 0 => return Err(Error::MissingFirstChunk { member: name }),
            Some(prev) if index <= prev => {
                return Err(Error::ChunkOrder {
                    member: name,
                    previous: format!("{vdi}/{prev:08}"),
                });
            }
            _ => {}
        }
        let offset = index.checked_mul(CHUNK_SIZE).filter(|&o| o < size);
        let Some(offset) = offset else {
            return Err(Error::ChunkBeyondEnd { member: name, virtual_size: size });
        };
        let expected = CHUNK_SIZE.min(size - offset);
        if h.size != expected {
            return Err(Error::ChunkSize { member: name, size: h.size, expected });
        }
        if !expected.is_multiple_of(BLOCK as u64) {
            return Err(Error::UnalignedChunk { member: name, size: expected });
        }
        if let Some(first) = self.first_chunk.filter(|&f| f != CHUNK_SIZE && offset > covered) {
            return Err(Error::GapAfterShortChunk { member: name, first });
        }
        let len = usize::try_from(expected).expect("at most 1 MiB");
        let mut buf = std::mem::take(&mut self.buf);
        let data = self.read_member_data(&name, &mut buf[..len]);
        self.buf = buf;
        data?;
        let kind = self.read_checksum(&name, len)?;
        self.first_chunk.get_or_insert(expected);
        let summary = &mut self.disks[disk_index];
        if summary.chunks == 0 {
            summary.checksum = kind;
        }
        summary.chunks += 1;
        summary.stored_bytes += expected;
        let d = self.disk.as_mut().expect("a disk is current");
        *d = DiskState {
            zeros: offset - covered,
            covered: offset + expected,
            start: 0,
            end: len,
            last: Some(index),
            ..*d
        };
        Ok(())
    }

    /// Reads the checksum member that must follow chunk `name` and checks it against the chunk
    /// data, `self.buf[..len]`.
    fn read_checksum(&mut self, name: &str, len: usize) -> Result<ChecksumKind, Error> {
        let missing = || Error::MissingChecksum { member: name.to_owned() };
        let Next::Member(h) = self.next_header()? else { return Err(missing()) };
        let kind = h
            .name
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(ChecksumKind::from_suffix)
            .ok_or_else(missing)?;
        check_regular(&h)?;
        if h.size != kind.text_len() as u64 {
            return Err(Error::ChecksumFormat { member: h.name });
        }
        let mut text = vec![0u8; kind.text_len()];
        self.read_member_data(&h.name, &mut text)?;
        if !kind.is_well_formed(&text) {
            return Err(Error::ChecksumFormat { member: h.name });
        }
        let actual = kind.compute(&self.buf[..len]);
        let expected = String::from_utf8(text).expect("hex digits");
        if actual != expected {
            return Err(Error::ChecksumMismatch { member: name.to_owned(), expected, actual });
        }
        Ok(kind)
    }
}

fn check_regular(h: &Header) -> Result<(), Error> {
    if matches!(h.typeflag, b'0' | 0) {
        Ok(())
    } else {
        Err(Error::MemberType { member: h.name.clone(), typeflag: char::from(h.typeflag) })
    }
}

/// The current disk of an [`XvaReader`] as an [`io::Read`].
pub struct DiskReader<'a, R>(&'a mut XvaReader<R>);

impl<R: Read> Read for DiskReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_disk(buf).map_err(io::Error::other)
    }
}

/// Reads and checks the XVA at `path` completely and reports what it holds.
pub fn summarize_xva_file(path: &Utf8Path) -> Result<XvaSummary, Error> {
    let io_err = |op, source| Error::Io(xspack_io::IoError::new(op, path, source));
    let file = File::open(path).map_err(|e| io_err("opening", e))?;
    let result =
        XvaReader::new(BufReader::with_capacity(BUFFER_SIZE, file)).and_then(XvaReader::finish);
    result.map_err(|e| if let Error::Read(source) = e { io_err("reading", source) } else { e })
}
