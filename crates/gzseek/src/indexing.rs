//! The first read: gzip members decoded one after another, as any gzip reader does, noting an
//! access point about every `SPACING` bytes of output (the method of zlib's
//! `examples/zran.c`).

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::os::unix::fs::FileExt;

use zlib_rs::{Inflate, InflateFlush, Status};

use crate::fixed::{MidBlock, resolve};
use crate::index::{AccessPoint, SeekIndex, Start};
use crate::{CHECK, GZIP_BITS, SLOT, WINDOW, invalid};

/// Reads gzip members in sequence (like a multi-member gzip reader) and, when asked, notes a
/// [`SeekIndex`] on the way.
pub struct IndexingDecoder<R> {
    input: R,
    inflate: Inflate,
    /// Stored bytes taken.
    in_total: u64,
    /// Output bytes yielded.
    out_total: u64,
    member_done: bool,
    finished: bool,
    index: Option<IndexBuilder>,
}

/// The index under construction.
pub(crate) struct IndexBuilder {
    pub(crate) spacing: u64,
    pub(crate) points: Vec<AccessPoint>,
    /// `None` until the first window is written; dropped with the index if a write fails.
    pub(crate) windows: Option<File>,
    /// Recent output, once within a window of the next point.
    pub(crate) recent: Vec<u8>,
    /// The first block boundary at or after this much output becomes the next point.
    pub(crate) next_at: u64,
    /// From this much output on, with no block boundary yet, a stop inside a block is tried.
    pub(crate) mid_at: u64,
    /// The point still gathering its check bytes, and those bytes.
    pub(crate) pending: Option<usize>,
    pub(crate) check: Vec<u8>,
    /// A stop inside a block, waiting for the output after it.
    pub(crate) mid: Option<MidBlock>,
    /// The points inside the current fixed-code block, until it shows whether that block was
    /// its member's last, and the output where it ended: the decoder stops at the end of every
    /// block, the last one too, so the block was the last if the member ends right there.
    pub(crate) open_fixed: Vec<usize>,
    pub(crate) open_fixed_end: Option<u64>,
    /// Scratch writes failed: no index, and the later read decodes in sequence.
    pub(crate) failed: bool,
    /// CRC-32 of the output since the last point, and of each segment before it.
    pub(crate) crc: u32,
    pub(crate) crcs: Vec<u32>,
}

/// Output past the point due before a stop inside a block is tried (blocks of most encoders
/// end well before), and between tries.
pub(crate) const MID_AFTER: u64 = 128 * 1024;

/// The longest match: the most output a decoder stopped inside a block may still owe.
pub(crate) const MAX_MATCH: usize = 258;

/// Stored bytes kept after a stop inside a block, to find the next symbol in.
pub(crate) const LOOKAHEAD: usize = 8 * 1024;

impl IndexBuilder {
    pub(crate) fn new(spacing: u64) -> Self {
        IndexBuilder {
            spacing,
            points: Vec::new(),
            windows: None,
            recent: Vec::new(),
            next_at: spacing,
            mid_at: spacing + MID_AFTER,
            pending: None,
            check: Vec::with_capacity(CHECK),
            mid: None,
            open_fixed: Vec::new(),
            open_fixed_end: None,
            failed: false,
            crc: 0,
            crcs: Vec::new(),
        }
    }

    /// Stored bytes the decoder just took.
    pub(crate) fn saw_input(&mut self, taken: &[u8]) {
        if let Some(m) = &mut self.mid
            && m.input.len() < LOOKAHEAD
        {
            m.input.extend_from_slice(taken);
        }
    }

    pub(crate) fn saw_output(&mut self, at: u64, out: &[u8]) {
        if let Some(m) = &mut self.mid {
            m.truth.extend_from_slice(out);
            if m.truth.len() >= MAX_MATCH + CHECK {
                self.resolve_mid();
            }
        } else {
            self.crc = zlib_rs::crc32::crc32(self.crc, out);
            if self.pending.is_some() {
                let take = (CHECK - self.check.len()).min(out.len());
                self.check.extend_from_slice(&out[..take]);
                if self.check.len() == CHECK {
                    self.end_check();
                }
            }
        }
        if at + out.len() as u64 > self.next_at.saturating_sub(WINDOW as u64) {
            let keep = out.len().min(WINDOW);
            self.recent.extend_from_slice(&out[out.len() - keep..]);
            if self.recent.len() > 2 * WINDOW {
                self.recent.drain(..self.recent.len() - WINDOW);
            }
        }
    }

    /// A block ended at `out` bytes of output, after `consumed` stored bytes.
    pub(crate) fn boundary(&mut self, consumed: u64, out: u64) {
        if !self.open_fixed.is_empty() {
            if self.open_fixed_end.is_none() {
                self.open_fixed_end = Some(out);
            } else {
                // A second block ended: the one holding the points was not its member's last.
                self.open_fixed.clear();
                self.open_fixed_end = None;
            }
        }
        self.drop_mid(out);
        if self.failed || out < self.next_at || self.pending.is_some() {
            return;
        }
        let window = self.recent[self.recent.len().saturating_sub(WINDOW)..].to_vec();
        if self.add_point(Start::Boundary { consumed }, out, &window, &[]).is_some() {
            self.pending = Some(self.points.len() - 1);
        }
    }

    /// A member ended at `out` bytes of output.
    pub(crate) fn member_end(&mut self, out: u64) {
        // The decoder also stops after a member's last block: no block starts there (its
        // trailer does), so a point just made there goes, and its segment joins the one before.
        if self.pending.is_some_and(|p| p + 1 == self.points.len() && self.points[p].out == out) {
            self.points.pop();
            self.pending = None;
            self.check.clear();
            self.crc = self.crcs.pop().unwrap_or(0);
        }
        if self.open_fixed_end.is_none_or(|end| end == out) {
            for &p in &self.open_fixed {
                if let Start::InFixedBlock { last, .. } = &mut self.points[p].start {
                    *last = true;
                }
            }
        }
        self.open_fixed.clear();
        self.open_fixed_end = None;
        self.drop_mid(out);
    }

    /// Whether a stop inside a block would be tried now.
    pub(crate) fn wants_full_stop(&self, out: u64) -> bool {
        !self.failed && self.mid.is_none() && self.pending.is_none() && out >= self.mid_at
    }

    /// The decoder stopped with its output full after taking `consumed` stored bytes, the last
    /// of them `last_taken`: a point inside a block, if one is due and the output after it
    /// tells exactly where the next symbol starts.
    pub(crate) fn full_stop(&mut self, consumed: u64, out: u64, last_taken: u8) {
        if !self.wants_full_stop(out) {
            return;
        }
        self.mid = Some(MidBlock {
            consumed,
            out,
            window: self.recent[self.recent.len().saturating_sub(WINDOW)..].to_vec(),
            input: vec![last_taken],
            truth: Vec::new(),
        });
    }

    /// Gives up the stop inside a block being looked at; its output goes to the CRC.
    pub(crate) fn drop_mid(&mut self, out: u64) {
        if let Some(m) = self.mid.take() {
            self.crc = zlib_rs::crc32::crc32(self.crc, &m.truth);
            self.mid_at = out + MID_AFTER;
        }
    }

    /// Finds where the next symbol starts after the stop inside a block, and makes it a point
    /// if exactly one start fits the output.
    pub(crate) fn resolve_mid(&mut self) {
        let Some(m) = self.mid.take() else { return };
        let Some((bit, owed)) = resolve(&m) else {
            self.crc = zlib_rs::crc32::crc32(self.crc, &m.truth);
            self.mid_at = m.out + m.truth.len() as u64 + MID_AFTER;
            return;
        };
        let mut window = m.window;
        window.extend_from_slice(&m.truth[..owed]);
        window.drain(..window.len().saturating_sub(WINDOW));
        let out = m.out + owed as u64;
        self.crc = zlib_rs::crc32::crc32(self.crc, &m.truth[..owed]);
        let check = &m.truth[owed..owed + CHECK];
        if self.add_point(Start::InFixedBlock { bit, last: false }, out, &window, check).is_some() {
            if self.open_fixed_end.is_some() {
                // A block ended since the last points: theirs was not the member's last.
                self.open_fixed.clear();
                self.open_fixed_end = None;
            }
            self.open_fixed.push(self.points.len() - 1);
        }
        self.crc = zlib_rs::crc32::crc32(self.crc, &m.truth[owed..]);
    }

    /// Notes a point at `out` (its window and any check bytes in the scratch file) and ends
    /// the segment before it; `None` (and no index) if the scratch file cannot be written.
    pub(crate) fn add_point(
        &mut self,
        start: Start,
        out: u64,
        window: &[u8],
        check: &[u8],
    ) -> Option<()> {
        let slot = self.points.len() as u64 * SLOT;
        let written = (|| -> io::Result<()> {
            let file = match &mut self.windows {
                Some(file) => file,
                None => self.windows.insert(tempfile::tempfile()?),
            };
            file.write_all_at(window, slot)?;
            file.write_all_at(check, slot + WINDOW as u64)
        })();
        if written.is_err() {
            self.failed = true;
            return None;
        }
        self.points.push(AccessPoint {
            start,
            out,
            window_len: u32::try_from(window.len()).expect("a window is 32 KiB at most"),
            check_len: u32::try_from(check.len()).expect("a check is 4 KiB at most"),
        });
        self.crcs.push(std::mem::take(&mut self.crc));
        self.next_at = out + self.spacing;
        self.mid_at = self.next_at + MID_AFTER;
        // The next window is all new output when the spacing is wider than a window (the
        // bytes kept here then fall out of it), else it reaches back past this point.
        let stale = self.recent.len().saturating_sub(WINDOW);
        self.recent.drain(..stale);
        Some(())
    }

    /// Writes the pending point's check bytes after its window.
    pub(crate) fn end_check(&mut self) {
        let Some(p) = self.pending.take() else { return };
        let slot = p as u64 * SLOT + WINDOW as u64;
        match self.windows.as_ref().map(|f| f.write_all_at(&self.check, slot)) {
            Some(Ok(())) => {
                self.points[p].check_len =
                    u32::try_from(self.check.len()).expect("a check is 4 KiB at most");
            }
            _ => self.failed = true,
        }
        self.check.clear();
    }
}

impl<R: BufRead> IndexingDecoder<R> {
    /// A decoder of the gzip members in `input`, noting an access point about every `spacing`
    /// output bytes when `spacing` is given.
    pub fn new(input: R, spacing: Option<u64>) -> Self {
        IndexingDecoder {
            input,
            inflate: Inflate::new(true, GZIP_BITS),
            in_total: 0,
            out_total: 0,
            member_done: false,
            finished: false,
            index: spacing.map(IndexBuilder::new),
        }
    }

    /// The index, once every member was read to the end; `None` when none was asked for, the
    /// stream was not read to its end, or there is nothing to seek to.
    pub fn into_index(self) -> Option<SeekIndex> {
        let mut index = self.index?;
        index.drop_mid(self.out_total);
        index.end_check();
        if !self.finished || index.failed || index.points.is_empty() {
            return None;
        }
        index.crcs.push(index.crc);
        Some(SeekIndex {
            points: index.points,
            windows: index.windows?,
            total_out: self.out_total,
            crcs: index.crcs,
        })
    }
}

impl<R: BufRead> Read for IndexingDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if self.finished {
                return Ok(0);
            }
            if self.member_done {
                if self.input.fill_buf()?.is_empty() {
                    self.finished = true;
                    return Ok(0);
                }
                // Another member follows (anything else fails its header check).
                self.inflate = Inflate::new(true, GZIP_BITS);
                self.member_done = false;
            }
            // While indexing, stop at every block boundary.
            let indexing = self.index.as_ref().is_some_and(|i| !i.failed);
            let flush = if indexing { InflateFlush::Block } else { InflateFlush::NoFlush };
            // Up to where block boundaries start to count, so a point is not put off by a
            // whole buffer.
            let room = match &self.index {
                Some(i) if indexing && self.out_total < i.next_at => {
                    buf.len().min(usize::try_from(i.next_at - self.out_total).unwrap_or(usize::MAX))
                }
                // A stop inside a block is due: make one soon (with the output full, so the
                // decoder stops between symbols).
                Some(i) if indexing && i.wants_full_stop(self.out_total) => buf.len().min(4096),
                _ => buf.len(),
            };
            let buf = &mut buf[..room];
            let src = self.input.fill_buf()?;
            let src_len = src.len();
            let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self.inflate.decompress(src, buf, flush);
            let consumed = usize::try_from(self.inflate.total_in() - in0).expect("within src");
            let produced = usize::try_from(self.inflate.total_out() - out0).expect("within buf");
            let last_taken = consumed.checked_sub(1).map(|i| src[i]);
            if let Some(index) = &mut self.index {
                index.saw_input(&src[..consumed]);
            }
            self.input.consume(consumed);
            self.in_total += consumed as u64;
            if let Some(index) = &mut self.index {
                index.saw_output(self.out_total, &buf[..produced]);
            }
            self.out_total += produced as u64;
            match status {
                Ok(Status::StreamEnd) => {
                    self.member_done = true;
                    if let Some(index) = &mut self.index {
                        index.member_end(self.out_total);
                    }
                }
                Ok(Status::Ok | Status::BufError) => {
                    if let Some(index) = &mut self.index
                        && indexing
                        && consumed < src_len
                    {
                        if produced < buf.len() {
                            // Stopping with input and output room left: a block just ended.
                            index.boundary(self.in_total, self.out_total);
                        } else if let Some(byte) = last_taken {
                            index.full_stop(self.in_total, self.out_total, byte);
                        }
                    }
                    if src_len == 0 && produced == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the gzip data ends in the middle of a member",
                        ));
                    }
                }
                Err(e) => return Err(invalid(self.inflate.error_message().unwrap_or(e.as_str()))),
            }
            if produced > 0 {
                return Ok(produced);
            }
        }
    }
}
