//! A reader under the `tar` crate that inspects every header before the crate sees it, so that
//! a tar extension header too large to hold is refused from its size field, before its body is
//! read, and keeps the bodies of those it lets through for xspack's own pax parser.
//!
//! Why: the `tar` crate (0.4.46, `EntriesFields::next_entry` in `archive.rs`) reads the whole
//! body of a pax extended header (`x`), a GNU long name (`L`) and a GNU long link (`K`) into a
//! `Vec` (`EntryFields::read_all`, a `read_to_end`) before it hands out the entry they
//! describe, whatever their size field says. A hostile layer declaring a 2 GiB pax header would
//! make it allocate as much of that as the stream holds. Raw iteration
//! (`Entries::raw(true)`) hands those headers out unread, but also drops what the crate does
//! with them that a layer needs: a pax `size` record overrides the header's size field (Go's
//! `archive/tar` writes files of 8 GiB and more so, with 0 in the header), and the crate's
//! position in the stream follows it; GNU sparse maps are only decoded then too.
//!
//! So the crate still parses, and this reader sits between it and the stream, knowing where
//! the next header starts: after an extension header from its size field, after any other
//! entry from what [`TarWatch::entry_started`] is told. When the crate reaches that position,
//! the reader fetches the 512-byte header first; a valid `x`, `g`, `L` or `K` header whose size
//! field is above [`MAX_PAX_HEADER`] or [`MAX_GNU_LONG_NAME`] fails the read, so the crate
//! returns an error before it allocates anything, and [`TarWatch::refusal`] says why. The
//! extension blocks of a GNU sparse file's map are counted the same way, up to
//! [`MAX_GNU_SPARSE_BLOCKS`]. The bodies
//! of the others are copied as they pass (at most those caps), so the caller parses the pax
//! records itself: the crate's parser splits records at newlines, which breaks on binary
//! values (`security.capability`) and lets a value that holds a newline be read as records.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Seek, SeekFrom};

use crate::limits::{MAX_GNU_LONG_NAME, MAX_GNU_SPARSE_BLOCKS, MAX_PAX_HEADER};

/// A tar block.
const BLOCK: u64 = 512;

/// `n` rounded up to whole blocks, `None` on overflow.
fn blocks(n: u64) -> Option<u64> {
    Some(n.checked_add(BLOCK - 1)? & !(BLOCK - 1))
}

/// The bodies of the extension headers before one entry, as recorded.
#[derive(Debug, Default)]
pub(crate) struct ExtBodies {
    /// The pax extended header (`x`).
    pub pax: Option<Vec<u8>>,
    /// The GNU long name (`L`), its trailing NUL included.
    pub long_name: Option<Vec<u8>>,
    /// The GNU long link target (`K`), its trailing NUL included.
    pub long_link: Option<Vec<u8>>,
}

/// An extension header refused from its size field.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// The header's own name field, as recorded (`PaxHeaders.0/x`, `././@LongLink`).
    pub name: Vec<u8>,
    /// Where the header starts in the tar stream.
    pub offset: u64,
    /// What is wrong, with the limit.
    pub reason: String,
}

/// What the reader and its caller share: the position, where the next header starts, the
/// bodies kept and a refusal.
#[derive(Debug, Default)]
pub(crate) struct TarWatch {
    /// Bytes handed to the tar reader (read or skipped).
    pos: Cell<u64>,
    /// Where the next header starts, when known.
    next_header: Cell<Option<u64>>,
    /// Bodies of the extension headers read since the last entry.
    bodies: RefCell<ExtBodies>,
    /// Why the stream was refused.
    refused: RefCell<Option<Refusal>>,
}

impl TarWatch {
    /// A reader of `inner` to give the tar crate; the stream starts with a header.
    pub fn wrap<R>(&self, inner: R) -> TarGuard<'_, R> {
        self.pos.set(0);
        self.next_header.set(Some(0));
        TarGuard {
            inner,
            watch: self,
            block: tar::Header::new_old(),
            at: 0,
            len: 0,
            capture: None,
            sparse: None,
        }
    }

    /// To call as soon as the tar crate hands out `entry` (before reading its data): notes where
    /// the header after it starts, and returns the bodies of the extension headers before it.
    pub fn entry_started<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> ExtBodies {
        // The crate has read the entry's header blocks (a sparse file's extra ones too) and none
        // of its data; the data takes the stored size, in whole blocks, as the crate counts it.
        let stored = if entry.header().entry_type().is_gnu_sparse() {
            crate_pax_size(entry).or_else(|| entry.header().entry_size().ok())
        } else {
            Some(entry.size())
        };
        let next = stored.and_then(blocks).and_then(|len| self.pos.get().checked_add(len));
        self.next_header.set(next);
        std::mem::take(&mut *self.bodies.borrow_mut())
    }

    /// Why the stream was refused, once a read failed for that reason.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refused.borrow_mut().take()
    }
}

/// A sparse entry's pax `size` as the tar crate reads it (`pax_extensions_value`: the first
/// `size` record, unless a record before it is malformed or it is not a number).
fn crate_pax_size<R: Read>(entry: &mut tar::Entry<'_, R>) -> Option<u64> {
    for ext in entry.pax_extensions().ok()?? {
        let ext = ext.ok()?;
        if ext.key() == Ok("size") {
            return ext.value().ok()?.parse().ok();
        }
    }
    None
}

/// An extension header body being passed on, copied for the entry it describes.
#[derive(Debug)]
struct Capture {
    kind: u8,
    /// Where the body starts in the stream.
    start: u64,
    /// Its size.
    len: usize,
    body: Vec<u8>,
}

/// The reader [`TarWatch::wrap`] makes.
#[derive(Debug)]
pub(crate) struct TarGuard<'w, R> {
    inner: R,
    watch: &'w TarWatch,
    /// A header fetched for inspection, `at` of its `len` bytes passed on.
    block: tar::Header,
    at: usize,
    len: usize,
    capture: Option<Capture>,
    /// While a GNU sparse file's map continues in extension blocks: the header's name and
    /// offset, and the blocks read so far.
    sparse: Option<(Vec<u8>, u64, u64)>,
}

impl<R> TarGuard<'_, R> {
    /// The stream under the guard.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> TarGuard<'_, R> {
    /// Fetches the header at `pos` and decides on it before anything of it is passed on.
    fn fetch_header(&mut self, pos: u64) -> io::Result<()> {
        self.watch.next_header.set(None);
        let bytes = self.block.as_mut_bytes();
        let mut len = 0;
        while len < bytes.len() {
            match self.inner.read(&mut bytes[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        (self.at, self.len) = (0, len);
        if len < bytes.len() {
            self.sparse = None;
            return Ok(()); // The end of the stream: the crate says what that means.
        }
        if let Some((name, offset, blocks)) = self.sparse.take() {
            // A sparse map's extension block: `isextended` at byte 504 says if another follows.
            let blocks = blocks + 1;
            if blocks > MAX_GNU_SPARSE_BLOCKS {
                let reason = format!(
                    "a GNU sparse map of more than {MAX_GNU_SPARSE_BLOCKS} extension blocks, \
                     the most xspack reads"
                );
                return Err(self.refuse(Refusal { name, offset, reason }));
            }
            if self.block.as_bytes()[504] != 0 {
                self.watch.next_header.set(Some(pos + BLOCK));
                self.sparse = Some((name, offset, blocks));
            }
            return Ok(());
        }
        let bytes = self.block.as_bytes();
        if bytes[156] == b'S' && bytes[482] != 0 && self.block.as_gnu().is_some() {
            // Where the tar crate reads the map's extension blocks, one at a time.
            let name = header_name(&self.block);
            self.watch.next_header.set(Some(pos + BLOCK));
            self.sparse = Some((name, pos, 0));
            return Ok(());
        }
        let Some((kind, size)) = extension(&self.block) else { return Ok(()) };
        let (limit, what) = match kind {
            b'x' => (MAX_PAX_HEADER, "a pax extended header"),
            b'g' => (MAX_PAX_HEADER, "a pax global header"),
            b'L' => (MAX_GNU_LONG_NAME, "a GNU long name"),
            _ => (MAX_GNU_LONG_NAME, "a GNU long link target"),
        };
        if size > limit {
            let why = if limit == MAX_PAX_HEADER {
                format!("more than the {limit} bytes (1 MiB) xspack reads")
            } else {
                format!("more than the {limit} bytes of PATH_MAX, its NUL included")
            };
            let reason = format!("{what} of {size} bytes, {why}");
            let name = header_name(&self.block);
            return Err(self.refuse(Refusal { name, offset: pos, reason }));
        }
        let body = pos + BLOCK;
        self.watch.next_header.set(blocks(size).and_then(|len| body.checked_add(len)));
        if kind != b'g' {
            // The crate returns a global header as an entry and reads nothing of it.
            let len = usize::try_from(size).expect("at most 1 MiB");
            let capture = Capture { kind, start: body, len, body: Vec::with_capacity(len) };
            self.capture = Some(capture);
            self.keep(body, &[]);
        }
        Ok(())
    }

    /// Notes `refusal` for [`TarWatch::refusal`]; the error to fail the read with, passing on
    /// nothing of the block.
    fn refuse(&mut self, refusal: Refusal) -> io::Error {
        self.len = 0;
        let error = io::Error::new(io::ErrorKind::InvalidData, refusal.reason.clone());
        *self.watch.refused.borrow_mut() = Some(refusal);
        error
    }

    /// Copies what of `bytes` (at `pos` in the stream) belongs to the body being captured.
    fn keep(&mut self, pos: u64, bytes: &[u8]) {
        let Some(capture) = &mut self.capture else { return };
        let want = capture.start + capture.body.len() as u64;
        let end = pos + bytes.len() as u64;
        if pos > want {
            self.capture = None; // Skipped, so the crate did not read it either.
            return;
        }
        if end > want {
            let from = usize::try_from(want - pos).expect("within bytes");
            let take = (bytes.len() - from).min(capture.len - capture.body.len());
            capture.body.extend_from_slice(&bytes[from..from + take]);
        }
        if capture.body.len() == capture.len {
            let capture = self.capture.take().expect("just seen");
            let mut bodies = self.watch.bodies.borrow_mut();
            let slot = match capture.kind {
                b'x' => &mut bodies.pax,
                b'L' => &mut bodies.long_name,
                _ => &mut bodies.long_link,
            };
            *slot = Some(capture.body);
        }
    }
}

/// A header's own name field, up to its first NUL.
fn header_name(header: &tar::Header) -> Vec<u8> {
    header.as_old().name.split(|&b| b == 0).next().unwrap_or_default().to_vec()
}

/// The typeflag and size of a valid extension header (`x`, `g`, `L`, `K`); `None` for any
/// other block (a bad one the crate refuses itself).
fn extension(header: &tar::Header) -> Option<(u8, u64)> {
    let bytes = header.as_bytes();
    let kind = bytes[156];
    if !matches!(kind, b'x' | b'g' | b'L' | b'K') {
        return None;
    }
    // The checksum as the crate computes it: the field itself counted as spaces.
    let sum = bytes[..148].iter().chain(&bytes[156..]).map(|&b| u32::from(b)).sum::<u32>() + 8 * 32;
    if header.cksum().ok()? != sum {
        return None;
    }
    header.entry_size().ok().map(|size| (kind, size))
}

impl<R: Read> Read for TarGuard<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let pos = self.watch.pos.get();
        if self.at == self.len && self.watch.next_header.get() == Some(pos) {
            self.fetch_header(pos)?;
        }
        let n = if self.at < self.len {
            let n = buf.len().min(self.len - self.at);
            buf[..n].copy_from_slice(&self.block.as_bytes()[self.at..self.at + n]);
            self.at += n;
            n
        } else {
            // Stop at the next header, so it is fetched and inspected first.
            let room = match self.watch.next_header.get() {
                Some(next) if next > pos => {
                    usize::try_from(next - pos).map_or(buf.len(), |left| left.min(buf.len()))
                }
                _ => buf.len(),
            };
            self.inner.read(&mut buf[..room])?
        };
        self.keep(pos, &buf[..n]);
        self.watch.pos.set(pos + n as u64);
        Ok(n)
    }
}

/// Forward from the current position only: how the crate skips data nobody read.
impl<R: Read + Seek> Seek for TarGuard<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let SeekFrom::Current(by) = to else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "only forward seeks"));
        };
        let by = u64::try_from(by)
            .map_err(|_| io::Error::new(io::ErrorKind::Unsupported, "only forward seeks"))?;
        let pos = self.watch.pos.get();
        let buffered = by.min((self.len - self.at) as u64);
        self.at += usize::try_from(buffered).expect("at most a block");
        if by > buffered {
            let rest = i64::try_from(by - buffered).expect("was an i64");
            self.inner.seek(SeekFrom::Current(rest))?;
        }
        let to = pos.checked_add(by).ok_or_else(|| io::Error::other("seek past 2^64"))?;
        if self.watch.next_header.get().is_some_and(|next| next < to) {
            // Never done by the crate, which seeks to a header and reads it.
            self.watch.next_header.set(None);
        }
        self.watch.pos.set(to);
        Ok(to)
    }
}
