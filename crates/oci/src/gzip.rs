//! gzip members (RFC 1952) of DEFLATE data (RFC 1951), decoded once in sequence while noting a
//! seek index, then again in parallel from it.
//!
//! The first read of a layer decodes its gzip members one after another, as any gzip reader
//! does ([`IndexingDecoder`]), and notes an *access point* about every [`SPACING`] bytes of
//! output: where a DEFLATE block starts in the stored bytes, how many bytes of output came
//! before it, and the 32 KiB of output just before it (the most a back-reference of a later
//! block may reach). This is the method of zlib's `examples/zran.c`. A later read decodes the
//! stretches between access points on several threads at once ([`SegmentDecoder`]), and
//! [`crate::layer`] hands their output on in order.
//!
//! zlib-rs' safe API stops at block boundaries (`InflateFlush::Block`) but does not say at which
//! bit of the last byte taken the next block starts; it returns whole unused bytes, so the block
//! starts at one of 8 bit positions. Each access point therefore keeps the first
//! [`CHECK`] bytes of output from the block on, and decoding a segment tries the 8 positions
//! until one reproduces them. A decoder cannot start mid-byte, so the bits of that byte before
//! the block are replaced by empty DEFLATE blocks of the right total length (see [`filler`]),
//! and the window is given as the decoder's dictionary.
//!
//! The index is our own, made from the same bytes a digest later proves unchanged; a segment
//! that fails to decode is still reported as a corrupt layer, never as a panic.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::os::unix::fs::FileExt;

use zlib_rs::{Inflate, InflateFlush, Status};

/// Output bytes between access points: enough to amortise starting a decoder, small enough
/// that the segments in flight stay a few MiB.
pub(crate) const SPACING: u64 = 2 << 20;
/// The DEFLATE window: the farthest back a match may reach.
const WINDOW: usize = 32 * 1024;
/// Output bytes kept per access point to tell the right start bit from the wrong ones (a wrong
/// start fails or differs within a few bytes, except in runs of zeros, as in tar headers).
const CHECK: usize = 4096;
/// Scratch bytes per access point: its window, then its check bytes.
const SLOT: u64 = (WINDOW + CHECK) as u64;
/// `window_bits` for gzip wrapped members.
const GZIP_BITS: u8 = 16 + 15;
/// `window_bits` for raw DEFLATE.
const RAW_BITS: u8 = 15;

/// Where a DEFLATE block starts, and what comes before and after it.
#[derive(Debug, Clone)]
struct AccessPoint {
    /// Stored bytes the decoder had taken when it stopped at the boundary: the block starts
    /// within the last byte of them, or right after them.
    consumed: u64,
    /// Output bytes before the block.
    out: u64,
    /// Bytes of window (32 KiB, or all output so far when less).
    window_len: u32,
    /// Bytes of output from the block on kept as its check: [`CHECK`], or less at the end.
    check_len: u32,
}

/// Access points of one gzip blob, with their windows and check bytes in an unlinked scratch
/// file (so memory stays flat however long the layer is).
#[derive(Debug)]
pub(crate) struct SeekIndex {
    points: Vec<AccessPoint>,
    windows: File,
    /// Output bytes of the whole blob.
    total_out: u64,
    /// CRC-32 of each segment's output.
    crcs: Vec<u32>,
}

/// One stretch of a blob to decode: from an access point (or the start) to the next (or the
/// end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Position in the index: 0 starts at the blob's first byte.
    pub number: usize,
    /// First stored byte the segment needs.
    pub start: u64,
    /// One past the last stored byte it needs (clipped to the blob by the reader).
    pub end: u64,
    /// Output bytes it yields.
    pub out_len: u64,
    /// CRC-32 of that output.
    pub crc: u32,
}

impl SeekIndex {
    /// The segments, in order; there is one more than there are access points.
    pub(crate) fn segments(&self) -> Vec<Segment> {
        let n = self.points.len();
        (0..=n)
            .map(|number| {
                let (start, out_start) = if number == 0 {
                    (0, 0)
                } else {
                    let p = &self.points[number - 1];
                    (p.consumed.saturating_sub(1), p.out)
                };
                let (end, out_end) = match self.points.get(number) {
                    // The block ending at the next point ends within its last byte taken; a
                    // few more bytes cost nothing.
                    Some(p) => (p.consumed + 8, p.out),
                    None => (u64::MAX, self.total_out),
                };
                Segment { number, start, end, out_len: out_end - out_start, crc: self.crcs[number] }
            })
            .collect()
    }

    /// Access points noted.
    #[cfg(test)]
    pub(crate) fn points(&self) -> usize {
        self.points.len()
    }

    /// Decodes `segment` from its stored bytes (`input`, from `segment.start` up to its end or
    /// the end of the blob) into pieces of at most `piece` bytes, each from `spare`. The output
    /// must have the length and CRC-32 the first read noted.
    pub(crate) fn decode(
        &self,
        segment: Segment,
        input: &[u8],
        piece: usize,
        spare: &mut dyn FnMut() -> Vec<u8>,
    ) -> io::Result<Vec<Vec<u8>>> {
        let mismatch = || {
            invalid(&format!(
                "the stored bytes decode to other data than the first read gave (segment {})",
                segment.number
            ))
        };
        if segment.number == 0 {
            let mut decoder =
                SegmentDecoder::new(input, 0, Vec::new(), None, Some(segment.out_len));
            return collect(&mut decoder, segment, piece, spare)?.ok_or_else(mismatch);
        }
        let point = &self.points[segment.number - 1];
        let slot = (segment.number - 1) as u64 * SLOT;
        let mut window = vec![0; point.window_len as usize];
        self.windows.read_exact_at(&mut window, slot)?;
        let mut check = vec![0; point.check_len as usize];
        self.windows.read_exact_at(&mut check, slot + WINDOW as u64)?;
        // The block starts `unused` bits before the end of the bytes taken, 0 to 7.
        for unused in 0..8u64 {
            let bit = point.consumed * 8 - unused;
            let Some(start) = StartBit::new(bit, segment.start, input) else { continue };
            // The first bytes rule out most wrong starts cheaply.
            let mut trial = start.decoder(input, &window, Some(check.len() as u64))?;
            let mut got = Vec::with_capacity(check.len());
            if trial.read_to_end(&mut got).is_err() || got != check {
                continue;
            }
            // A wrong start can still give the same first bytes (in a run of zeros its codes
            // may fall into step with the real ones), so only the length and CRC-32 of the
            // whole segment decide.
            let mut decoder = start.decoder(input, &window, Some(segment.out_len))?;
            if let Ok(Some(pieces)) = collect(&mut decoder, segment, piece, spare) {
                return Ok(pieces);
            }
        }
        Err(mismatch())
    }
}

/// Reads `decoder` to its end into pieces; `None` if the length or CRC-32 is not the
/// segment's.
fn collect(
    decoder: &mut dyn Read,
    segment: Segment,
    piece: usize,
    spare: &mut dyn FnMut() -> Vec<u8>,
) -> io::Result<Option<Vec<Vec<u8>>>> {
    let mut pieces = Vec::new();
    let mut crc = 0;
    let mut total = 0u64;
    loop {
        let mut buf = spare();
        buf.resize(piece, 0);
        let n = xspack_io::read_full(decoder, &mut buf)?;
        buf.truncate(n);
        crc = zlib_rs::crc32::crc32(crc, &buf);
        total += n as u64;
        if n > 0 {
            pieces.push(buf);
        }
        if n < piece {
            break;
        }
    }
    Ok((total == segment.out_len && crc == segment.crc).then_some(pieces))
}

/// A block start tried: the byte it falls in, relative to a segment's input, and the bit.
struct StartBit {
    /// Index of the byte holding the block's first bit, in the segment's input.
    byte: usize,
    /// The bit within it, 0 to 7.
    bit: u32,
}

impl StartBit {
    fn new(bit: u64, input_start: u64, input: &[u8]) -> Option<Self> {
        let byte = usize::try_from((bit / 8).checked_sub(input_start)?).ok()?;
        let bit = u32::try_from(bit % 8).expect("a bit index is under 8");
        (byte < input.len() || bit == 0).then_some(StartBit { byte, bit })
    }

    /// A raw decoder fed the filler and the input from the block on, with `window` as its
    /// dictionary, yielding `limit` bytes.
    fn decoder<I: AsRef<[u8]>>(
        &self,
        input: I,
        window: &[u8],
        limit: Option<u64>,
    ) -> io::Result<SegmentDecoder<I>> {
        let mut prefix = Vec::new();
        let mut from = self.byte;
        if self.bit > 0 {
            prefix = filler(self.bit);
            let last = prefix.last_mut().expect("a filler for a non-zero bit has bytes");
            *last |= input.as_ref()[self.byte] & (0xffu8 << self.bit);
            from += 1;
        }
        let mut inflate = Inflate::new(false, RAW_BITS);
        inflate.set_dictionary(window).map_err(|e| invalid(e.as_str()))?;
        Ok(SegmentDecoder::new(input, from, prefix, Some(inflate), limit))
    }
}

fn invalid(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.to_owned())
}

/// DEFLATE bits, least significant first as RFC 1951 §3.1.1 packs them.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    len: usize,
}

impl Bits {
    /// A value of `n` bits, least significant bit first (header fields, extra bits).
    fn put(&mut self, value: u32, n: u32) {
        for i in 0..n {
            if self.len.is_multiple_of(8) {
                self.bytes.push(0);
            }
            let bit = u8::try_from((value >> i) & 1).expect("one bit");
            *self.bytes.last_mut().expect("pushed above") |= bit << (self.len % 8);
            self.len += 1;
        }
    }

    /// A Huffman code of `n` bits, most significant bit first.
    fn code(&mut self, code: u32, n: u32) {
        for i in (0..n).rev() {
            self.put((code >> i) & 1, 1);
        }
    }

    /// An empty block with fixed codes: header and end-of-block, 10 bits.
    fn empty_fixed(&mut self) {
        self.put(0, 1); // not the last block
        self.put(1, 2); // fixed Huffman codes
        self.code(0, 7); // end of block (256) is 0000000
    }

    /// An empty block with dynamic codes, 95 bits: the literal/length code has only
    /// end-of-block (length 1, which zlib accepts as a lone incomplete code) and no distance
    /// codes. Its code-length code (complete: 18 → `0`, 0 → `10`, 1 → `11`) spells 256 zeros
    /// with two runs of symbol 18, then 1 for end-of-block, then 0 for the one distance code.
    fn empty_dynamic(&mut self) {
        self.put(0, 1); // not the last block
        self.put(2, 2); // dynamic Huffman codes
        self.put(0, 5); // HLIT: 257 literal/length codes
        self.put(0, 5); // HDIST: 1 distance code
        self.put(15, 4); // HCLEN: 19 code length code lengths
        // In the order of RFC 1951 §3.2.7: 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1 15.
        for length in [0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0] {
            self.put(length, 3);
        }
        self.code(0, 1); // 18: zeros, 11 + 7 extra bits
        self.put(138 - 11, 7);
        self.code(0, 1);
        self.put(118 - 11, 7);
        self.code(0b11, 2); // 1: end-of-block has length 1
        self.code(0b10, 2); // 0: no distance code
        self.code(0, 1); // end of block
    }
}

/// Bits that make a decoder starting at a byte boundary end up `bit` bits (1 to 7) into a
/// byte: empty blocks whose length is `bit` more than a whole number of bytes. Fixed ones are
/// 10 bits (2 mod 8), the dynamic one 95 (7 mod 8), so one dynamic block makes the length odd
/// and up to three fixed ones add the rest. The caller puts the real bits of the byte above
/// them.
fn filler(bit: u32) -> Vec<u8> {
    let mut bits = Bits::default();
    let fixed = if bit % 2 == 1 {
        bits.empty_dynamic();
        ((bit + 1) % 8) / 2
    } else {
        bit / 2
    };
    for _ in 0..fixed {
        bits.empty_fixed();
    }
    debug_assert_eq!(bits.len % 8, bit as usize);
    bits.bytes
}

/// Decodes one segment: gzip members from the start of the blob, or raw DEFLATE from an access
/// point up to the end of that member, then whole members, until `limit` output bytes (or the
/// end of the input when there is no limit).
pub(crate) struct SegmentDecoder<I> {
    input: I,
    at: usize,
    /// Bits fed before `input`: the filler and the block's first byte.
    prefix: Vec<u8>,
    prefix_at: usize,
    inflate: Inflate,
    /// Whether `inflate` decodes raw DEFLATE (a member entered mid-way, whose gzip trailer is
    /// skipped by hand).
    raw: bool,
    /// The current member has ended.
    member_done: bool,
    /// Output bytes still to yield, if bounded.
    limit: Option<u64>,
}

impl<I: AsRef<[u8]>> SegmentDecoder<I> {
    fn new(input: I, at: usize, prefix: Vec<u8>, raw: Option<Inflate>, limit: Option<u64>) -> Self {
        let is_raw = raw.is_some();
        SegmentDecoder {
            input,
            at,
            prefix,
            prefix_at: 0,
            inflate: raw.unwrap_or_else(|| Inflate::new(true, GZIP_BITS)),
            raw: is_raw,
            member_done: false,
            limit,
        }
    }
}

impl<I: AsRef<[u8]>> Read for SegmentDecoder<I> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = match self.limit {
            Some(limit) => buf.len().min(usize::try_from(limit).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        if want == 0 {
            return Ok(0);
        }
        loop {
            if self.member_done {
                if self.raw {
                    // CRC-32 and ISIZE: the digest of the stored bytes covers them.
                    self.at += 8;
                    self.raw = false;
                }
                if self.at >= self.input.as_ref().len() {
                    return match self.limit {
                        Some(_) => Err(invalid("the gzip data ends before the segment does")),
                        None => Ok(0),
                    };
                }
                self.inflate = Inflate::new(true, GZIP_BITS);
                self.member_done = false;
            }
            let from_prefix = self.prefix_at < self.prefix.len();
            let src = if from_prefix {
                &self.prefix[self.prefix_at..]
            } else {
                &self.input.as_ref()[self.at..]
            };
            let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self.inflate.decompress(src, &mut buf[..want], InflateFlush::NoFlush);
            let consumed = usize::try_from(self.inflate.total_in() - in0).expect("within src");
            let produced = usize::try_from(self.inflate.total_out() - out0).expect("within buf");
            if from_prefix {
                self.prefix_at += consumed;
            } else {
                self.at += consumed;
            }
            match status {
                Ok(Status::StreamEnd) => self.member_done = true,
                Ok(Status::Ok | Status::BufError) => {
                    if produced == 0 && consumed == 0 {
                        return Err(invalid("the gzip data ends in the middle of a member"));
                    }
                }
                Err(e) => return Err(invalid(self.inflate.error_message().unwrap_or(e.as_str()))),
            }
            if produced > 0 {
                if let Some(limit) = &mut self.limit {
                    *limit -= produced as u64;
                }
                return Ok(produced);
            }
        }
    }
}

/// Reads gzip members in sequence (like a multi-member gzip reader) and, when asked, notes a
/// [`SeekIndex`] on the way.
pub(crate) struct IndexingDecoder<R> {
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
struct IndexBuilder {
    spacing: u64,
    points: Vec<AccessPoint>,
    /// `None` until the first window is written; dropped with the index if a write fails.
    windows: Option<File>,
    /// Recent output, once within a window of the next point.
    recent: Vec<u8>,
    /// The first block boundary at or after this much output becomes the next point.
    next_at: u64,
    /// The point still gathering its check bytes, and those bytes.
    pending: Option<usize>,
    check: Vec<u8>,
    /// Scratch writes failed: no index, and the later read decodes in sequence.
    failed: bool,
    /// CRC-32 of the output since the last point, and of each segment before it.
    crc: u32,
    crcs: Vec<u32>,
}

impl IndexBuilder {
    fn saw_output(&mut self, at: u64, out: &[u8]) {
        self.crc = zlib_rs::crc32::crc32(self.crc, out);
        if self.pending.is_some() {
            let take = (CHECK - self.check.len()).min(out.len());
            self.check.extend_from_slice(&out[..take]);
            if self.check.len() == CHECK {
                self.end_check();
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

    fn boundary(&mut self, consumed: u64, out: u64) {
        if self.failed || out < self.next_at || self.pending.is_some() {
            return;
        }
        let window = &self.recent[self.recent.len().saturating_sub(WINDOW)..];
        let slot = self.points.len() as u64 * SLOT;
        let written = (|| -> io::Result<()> {
            let file = match &mut self.windows {
                Some(file) => file,
                None => self.windows.insert(tempfile::tempfile()?),
            };
            file.write_all_at(window, slot)
        })();
        if written.is_err() {
            self.failed = true;
            return;
        }
        self.points.push(AccessPoint {
            consumed,
            out,
            window_len: u32::try_from(window.len()).expect("a window is 32 KiB at most"),
            check_len: 0,
        });
        self.pending = Some(self.points.len() - 1);
        self.crcs.push(std::mem::take(&mut self.crc));
        self.next_at = out + self.spacing;
        // The next window is all new output when the spacing is wider than a window (the
        // bytes kept here then fall out of it), else it reaches back past this point.
        let stale = self.recent.len().saturating_sub(WINDOW);
        self.recent.drain(..stale);
    }

    /// Writes the pending point's check bytes after its window.
    fn end_check(&mut self) {
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
    pub(crate) fn new(input: R, spacing: Option<u64>) -> Self {
        IndexingDecoder {
            input,
            inflate: Inflate::new(true, GZIP_BITS),
            in_total: 0,
            out_total: 0,
            member_done: false,
            finished: false,
            index: spacing.map(|spacing| IndexBuilder {
                spacing,
                points: Vec::new(),
                windows: None,
                recent: Vec::new(),
                next_at: spacing,
                pending: None,
                check: Vec::with_capacity(CHECK),
                failed: false,
                crc: 0,
                crcs: Vec::new(),
            }),
        }
    }

    /// The index, once every member was read to the end; `None` when none was asked for, the
    /// stream was not read to its end, or there is nothing to seek to.
    pub(crate) fn into_index(self) -> Option<SeekIndex> {
        let mut index = self.index?;
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
            let blocks =
                self.index.as_ref().is_some_and(|i| !i.failed && self.out_total >= i.next_at);
            let flush = if blocks { InflateFlush::Block } else { InflateFlush::NoFlush };
            // Up to where block boundaries start to count, so a point is not put off by a
            // whole buffer.
            let room = match &self.index {
                Some(i) if !blocks && !i.failed => {
                    buf.len().min(usize::try_from(i.next_at - self.out_total).unwrap_or(usize::MAX))
                }
                _ => buf.len(),
            };
            let buf = &mut buf[..room];
            let src = self.input.fill_buf()?;
            let src_len = src.len();
            let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
            let status = self.inflate.decompress(src, buf, flush);
            let consumed = usize::try_from(self.inflate.total_in() - in0).expect("within src");
            let produced = usize::try_from(self.inflate.total_out() - out0).expect("within buf");
            self.input.consume(consumed);
            self.in_total += consumed as u64;
            if let Some(index) = &mut self.index {
                index.saw_output(self.out_total, &buf[..produced]);
            }
            self.out_total += produced as u64;
            match status {
                Ok(Status::StreamEnd) => self.member_done = true,
                Ok(Status::Ok | Status::BufError) => {
                    // With `Block`, stopping with input and output room left means a block
                    // just ended.
                    if blocks
                        && consumed < src_len
                        && produced < buf.len()
                        && let Some(index) = &mut self.index
                    {
                        index.boundary(self.in_total, self.out_total);
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

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    /// Bytes of mixed compressibility: text-like runs, random runs and zeros.
    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let run = (next() % 40_000) as usize + 1;
            match next() % 4 {
                0 => out.extend(xspack_testkit::noise(next(), run)),
                1 => out.extend(std::iter::repeat_n(0u8, run)),
                _ => {
                    let words = [&b"usr/lib/"[..], b"x86_64", b" linux ", b"gnu", b"\n", b"0123"];
                    for _ in 0..run / 6 {
                        out.extend_from_slice(words[(next() % 6) as usize]);
                    }
                }
            }
        }
        out.truncate(len);
        out
    }

    fn gzip(data: &[u8], level: u32, flush_every: Option<usize>) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::new(level));
        match flush_every {
            Some(n) => {
                for piece in data.chunks(n) {
                    enc.write_all(piece).unwrap();
                    // Empty stored blocks, as pigz writes between its pieces.
                    enc.flush().unwrap();
                }
            }
            None => enc.write_all(data).unwrap(),
        }
        enc.finish().unwrap()
    }

    /// Decodes `stored` with an index every `spacing` bytes, then every segment from the
    /// index; both must give `data` back.
    fn round_trip(data: &[u8], stored: &[u8], spacing: u64) -> usize {
        // Input in small pieces, as from a pipe.
        let mut dec =
            IndexingDecoder::new(io::BufReader::with_capacity(5000, stored), Some(spacing));
        let mut first = Vec::new();
        dec.read_to_end(&mut first).unwrap();
        assert!(first == data, "the sequential decode differs");
        let index = dec.into_index().expect("an index");
        let mut again = Vec::new();
        for segment in index.segments() {
            let start = usize::try_from(segment.start).unwrap();
            let end = usize::try_from(segment.end).unwrap_or(usize::MAX).min(stored.len());
            let pieces = index
                .decode(segment, &stored[start..end], 100_000, &mut Vec::new)
                .unwrap_or_else(|e| panic!("{segment:?}: {e}"));
            assert!(pieces.iter().all(|p| p.len() <= 100_000));
            let before = again.len();
            again.extend(pieces.concat());
            assert_eq!((again.len() - before) as u64, segment.out_len, "{segment:?}");
        }
        assert!(again == data, "the segments differ from the data");
        index.points()
    }

    #[test]
    fn the_filler_leaves_the_decoder_on_every_bit() {
        for bit in 1..8u32 {
            let bytes = filler(bit);
            // The filler then a stored block holding "xspack", its header in the high bits.
            let mut bits = Bits { len: bytes.len() * 8 - (8 - bit as usize), bytes };
            bits.put(1, 1); // last block
            bits.put(0, 2); // stored
            let mut stream = bits.bytes;
            stream.extend_from_slice(&6u16.to_le_bytes());
            stream.extend_from_slice(&(!6u16).to_le_bytes());
            stream.extend_from_slice(b"xspack");
            let mut inflate = Inflate::new(false, RAW_BITS);
            let mut out = [0u8; 16];
            let status = inflate.decompress(&stream, &mut out, InflateFlush::Finish);
            assert_eq!(status, Ok(Status::StreamEnd), "bit {bit}");
            assert_eq!(&out[..6], b"xspack", "bit {bit}");
        }
    }

    #[test]
    fn segments_decode_to_the_same_bytes_at_every_level() {
        let data = sample(3 << 20, 7);
        for level in [1, 6, 9] {
            let points = round_trip(&data, &gzip(&data, level, None), 64 * 1024);
            assert!(points >= 1, "level {level}: {points} points");
        }
    }

    /// gzip with a block ended (`Z_BLOCK`, not byte aligned) after every `every` input bytes.
    fn gzip_blocks(data: &[u8], level: i32, every: usize) -> Vec<u8> {
        let mut deflate = zlib_rs::Deflate::new(level, true, GZIP_BITS);
        let mut out = vec![0; zlib_rs::compress_bound(data.len()) + data.len() / every * 16 + 64];
        let mut pieces = data.chunks(every).peekable();
        while let Some(piece) = pieces.next() {
            let flush = if pieces.peek().is_some() {
                zlib_rs::DeflateFlush::Block
            } else {
                zlib_rs::DeflateFlush::Finish
            };
            let at = usize::try_from(deflate.total_out()).unwrap();
            deflate.compress(piece, &mut out[at..], flush).unwrap();
        }
        out.truncate(usize::try_from(deflate.total_out()).unwrap());
        out
    }

    /// Blocks every few KiB give hundreds of access points, starting at every bit of a byte,
    /// and often in runs of zeros, where a wrong start bit can reproduce the first bytes.
    #[test]
    fn small_blocks_give_many_access_points() {
        let data = sample(1 << 20, 9);
        for level in [1, 6, 9] {
            let points = round_trip(&data, &gzip_blocks(&data, level, 3000), 4096);
            assert!(points > 150, "level {level}: {points} points");
        }
    }

    #[test]
    fn segments_cross_members_and_empty_stored_blocks() {
        let a = sample(700_000, 3);
        let b = sample(900_000, 5);
        let mut stored = gzip(&a, 6, Some(100_000));
        stored.extend(gzip(&b, 1, None));
        stored.extend(gzip(&[], 6, None));
        let data = [a, b].concat();
        let points = round_trip(&data, &stored, 50_000);
        assert!(points >= 5, "{points} points");
    }

    #[test]
    fn incompressible_data_indexes_at_stored_blocks() {
        let data: Vec<u8> = sample(2 << 20, 11).iter().map(|b| b ^ 0x5a).collect();
        let random = xspack_testkit::noise(99, 1 << 20);
        let data = [data, random].concat();
        round_trip(&data, &gzip(&data, 6, None), 100_000);
    }

    #[test]
    fn a_small_stream_has_no_index() {
        let data = sample(10_000, 1);
        let stored = gzip(&data, 6, None);
        let mut dec = IndexingDecoder::new(&stored[..], Some(SPACING));
        io::copy(&mut dec, &mut io::sink()).unwrap();
        assert!(dec.into_index().is_none());
    }

    #[test]
    fn one_block_has_no_index() {
        let data = sample(1 << 20, 9);
        let compressed = gzip_blocks(&data, 1, data.len());
        let mut dec = IndexingDecoder::new(&compressed[..], Some(4096));
        let mut got = Vec::new();
        dec.read_to_end(&mut got).unwrap();
        assert!(got == data);
        assert!(dec.into_index().is_none());
    }

    #[test]
    fn an_unfinished_read_has_no_index() {
        let data = sample(1 << 20, 2);
        let stored = gzip(&data, 6, None);
        let mut dec = IndexingDecoder::new(&stored[..], Some(64 * 1024));
        let mut half = vec![0; 1 << 19];
        dec.read_exact(&mut half).unwrap();
        assert!(dec.into_index().is_none());
    }

    #[test]
    fn truncated_and_corrupt_streams_fail() {
        let data = sample(1 << 20, 4);
        let stored = gzip(&data, 6, None);
        let mut dec = IndexingDecoder::new(&stored[..stored.len() / 2], None);
        let err = io::copy(&mut dec, &mut io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{err}");
        let mut bad = stored.clone();
        bad[stored.len() / 3] ^= 0x55;
        bad[stored.len() / 3 + 1] ^= 0xaa;
        let mut dec = IndexingDecoder::new(&bad[..], None);
        assert!(io::copy(&mut dec, &mut io::sink()).is_err());
        let mut trailing = stored.clone();
        trailing.extend_from_slice(b"not gzip");
        let mut dec = IndexingDecoder::new(&trailing[..], None);
        assert!(io::copy(&mut dec, &mut io::sink()).is_err());
    }

    #[test]
    fn a_segment_of_other_bytes_fails_cleanly() {
        let data = sample(1 << 20, 6);
        let stored = gzip(&data, 6, None);
        let mut dec = IndexingDecoder::new(&stored[..], Some(100_000));
        io::copy(&mut dec, &mut io::sink()).unwrap();
        let index = dec.into_index().unwrap();
        for segment in index.segments() {
            let start = usize::try_from(segment.start).unwrap();
            let end = usize::try_from(segment.end).unwrap_or(usize::MAX).min(stored.len());
            let mut other = stored[start..end].to_vec();
            for b in other.iter_mut().skip(2) {
                *b = b.wrapping_mul(31).wrapping_add(7);
            }
            let err = index.decode(segment, &other, 4096, &mut Vec::new).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            let short = &stored[start..start + 3.min(end - start)];
            assert!(index.decode(segment, short, 4096, &mut Vec::new).is_err());
        }
    }
}
