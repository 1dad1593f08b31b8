//! gzip members (RFC 1952) of DEFLATE data (RFC 1951), decoded once in sequence while noting a
//! seek index, then again in parallel from it.
//!
//! The first read of a layer decodes its gzip members one after another, as any gzip reader
//! does ([`IndexingDecoder`]), and notes an *access point* about every [`SPACING`] bytes of
//! output: where decoding can resume in the stored bytes, how many bytes of output came
//! before, and the 32 KiB of output just before (the most a back-reference may reach). This is
//! the method of zlib's `examples/zran.c`. A later read decodes the stretches between access
//! points on several threads at once ([`SegmentDecoder`]), and [`crate::layer`] hands their
//! output on in order.
//!
//! Access points are of two kinds:
//! - **Block boundaries.** zlib-rs' safe API stops there (`InflateFlush::Block`) but does not
//!   say at which bit of the last byte taken the next block starts (it returns whole unused
//!   bytes), so the block starts at one of 8 bits. Each point keeps the first [`CHECK`] bytes
//!   of output after it, and decoding a segment tries the 8 bits until one reproduces them.
//! - **Between two symbols of a fixed-code block.** zlib-ng and zlib-rs at level 1 write a
//!   whole member as one such block: no boundary to seek to. Past the spacing, the first read
//!   stops with its output full (between symbols, with up to a match still owed), then finds
//!   the one start bit and debt whose symbols, read with the fixed codes of RFC 1951 §3.2.6,
//!   replay the output that follows; a segment from there gets a fixed-code block header put
//!   before that bit.
//!
//! A decoder cannot start mid-byte, so the bits of that byte before the start are replaced by
//! empty DEFLATE blocks of the right total length ([`Bits::filler`]), and the window is given as
//! the decoder's dictionary. Every segment must decode to the length and CRC-32 the first read
//! noted, or it fails.
//!
//! The index is our own, made from the same bytes a digest later proves unchanged; a segment
//! that fails to decode is still reported as a corrupt layer, never as a panic.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::os::unix::fs::FileExt;

use zlib_rs::{Inflate, InflateFlush, Status};

/// Output bytes between access points: enough to amortise starting a decoder, small enough
/// that the segments in flight stay a few MiB.
pub(crate) const SPACING: u64 = 1 << 20;
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

/// Where decoding can resume, and what comes before and after it.
#[derive(Debug, Clone)]
struct AccessPoint {
    start: Start,
    /// Output bytes before it.
    out: u64,
    /// Bytes of window (32 KiB, or all output so far when less).
    window_len: u32,
    /// Bytes of output from the block on kept as its check: [`CHECK`], or less at the end.
    check_len: u32,
}

/// Where a segment's decoding starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// At a block boundary. The decoder had taken `consumed` stored bytes when it stopped
    /// there: the block starts within the last of them, or right after them.
    Boundary { consumed: u64 },
    /// Between two symbols of a block with fixed Huffman codes, at this bit of the blob.
    /// `last` is whether the block seemed to be its member's last (the other is tried too).
    InFixedBlock { bit: u64, last: bool },
}

impl Start {
    /// The first stored byte a segment starting here needs.
    fn first_byte(self) -> u64 {
        match self {
            Start::Boundary { consumed } => consumed.saturating_sub(1),
            Start::InFixedBlock { bit, .. } => bit / 8,
        }
    }

    /// One past the last stored byte a segment ending here needs, with a few to spare for a
    /// decoder that looks ahead.
    fn end_byte(self) -> u64 {
        match self {
            Start::Boundary { consumed } => consumed + 8,
            Start::InFixedBlock { bit, .. } => bit / 8 + 9,
        }
    }

    /// The bits the segment may start at, and the block header to put before each (for a
    /// start inside a block); the check bytes tell them apart.
    fn candidates(self) -> Vec<(u64, Option<bool>)> {
        match self {
            // The block starts `unused` bits before the end of the bytes taken, 0 to 7.
            Start::Boundary { consumed } => (0..8)
                .filter_map(|unused| Some((consumed.checked_mul(8)?.checked_sub(unused)?, None)))
                .collect(),
            Start::InFixedBlock { bit, last } => vec![(bit, Some(last)), (bit, Some(!last))],
        }
    }
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
    /// Output bytes before it.
    pub out: u64,
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
                    (p.start.first_byte(), p.out)
                };
                let (end, out_end) = match self.points.get(number) {
                    Some(p) => (p.start.end_byte(), p.out),
                    None => (u64::MAX, self.total_out),
                };
                Segment {
                    number,
                    start,
                    end,
                    out: out_start,
                    out_len: out_end - out_start,
                    crc: self.crcs[number],
                }
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
        for (bit, header) in point.start.candidates() {
            let Some(start) = StartBit::new(bit, segment.start, input, header) else { continue };
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

/// A start tried: the byte it falls in, relative to a segment's input, the bit, and the block
/// header to put before it when it is inside a fixed-code block (whether the block is last).
struct StartBit {
    /// Index of the byte holding the first bit, in the segment's input.
    byte: usize,
    /// The bit within it, 0 to 7.
    bit: u32,
    header: Option<bool>,
}

impl StartBit {
    fn new(bit: u64, input_start: u64, input: &[u8], header: Option<bool>) -> Option<Self> {
        let byte = usize::try_from((bit / 8).checked_sub(input_start)?).ok()?;
        let bit = u32::try_from(bit % 8).expect("a bit index is under 8");
        (byte < input.len() || bit == 0).then_some(StartBit { byte, bit, header })
    }

    /// A raw decoder fed the filler and the input from the block on, with `window` as its
    /// dictionary, yielding `limit` bytes.
    fn decoder<I: AsRef<[u8]>>(
        &self,
        input: I,
        window: &[u8],
        limit: Option<u64>,
    ) -> io::Result<SegmentDecoder<I>> {
        // Empty blocks (and the header of a fixed-code block) ending `bit` bits into a byte,
        // whose other bits are the input's.
        let mut bits = Bits::default();
        match self.header {
            None => bits.filler(self.bit),
            Some(last) => {
                bits.filler((self.bit + 5) % 8);
                bits.put(u32::from(last), 1);
                bits.put(1, 2); // fixed Huffman codes
            }
        }
        debug_assert_eq!(bits.len % 8, self.bit as usize);
        let mut prefix = bits.bytes;
        let mut from = self.byte;
        if self.bit > 0 {
            let last = prefix.last_mut().expect("bits for a non-zero bit fill a byte");
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

    /// Empty blocks adding `bit` (0 to 7) bits more than a whole number of bytes, so a decoder
    /// that starts at a byte boundary ends up `bit` bits into a byte. Fixed ones are 10 bits
    /// (2 mod 8), the dynamic one 95 (7 mod 8): one dynamic block makes the length odd and up
    /// to three fixed ones add the rest.
    fn filler(&mut self, bit: u32) {
        let fixed = if bit % 2 == 1 {
            self.empty_dynamic();
            ((bit + 1) % 8) / 2
        } else {
            bit / 2
        };
        for _ in 0..fixed {
            self.empty_fixed();
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
    /// From this much output on, with no block boundary yet, a stop inside a block is tried.
    mid_at: u64,
    /// The point still gathering its check bytes, and those bytes.
    pending: Option<usize>,
    check: Vec<u8>,
    /// A stop inside a block, waiting for the output after it.
    mid: Option<MidBlock>,
    /// The points inside the current fixed-code block, until it shows whether that block was
    /// its member's last, and the output where it ended: the decoder stops at the end of every
    /// block, the last one too, so the block was the last if the member ends right there.
    open_fixed: Vec<usize>,
    open_fixed_end: Option<u64>,
    /// Scratch writes failed: no index, and the later read decodes in sequence.
    failed: bool,
    /// CRC-32 of the output since the last point, and of each segment before it.
    crc: u32,
    crcs: Vec<u32>,
}

/// Output past the point due before a stop inside a block is tried (blocks of most encoders
/// end well before), and between tries.
const MID_AFTER: u64 = 128 * 1024;
/// The longest match: the most output a decoder stopped inside a block may still owe.
const MAX_MATCH: usize = 258;
/// Stored bytes kept after a stop inside a block, to find the next symbol in.
const LOOKAHEAD: usize = 8 * 1024;

/// A stop inside a block (the output was full): the next symbol starts within the last byte
/// taken or right after it, and up to [`MAX_MATCH`] bytes of output may come before it.
struct MidBlock {
    /// Stored bytes taken.
    consumed: u64,
    /// Output before the stop.
    out: u64,
    /// The window before the stop.
    window: Vec<u8>,
    /// Stored bytes from the last one taken on.
    input: Vec<u8>,
    /// All output since the stop (not yet in the CRC).
    truth: Vec<u8>,
}

impl IndexBuilder {
    fn new(spacing: u64) -> Self {
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
    fn saw_input(&mut self, taken: &[u8]) {
        if let Some(m) = &mut self.mid
            && m.input.len() < LOOKAHEAD
        {
            m.input.extend_from_slice(taken);
        }
    }

    fn saw_output(&mut self, at: u64, out: &[u8]) {
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
    fn boundary(&mut self, consumed: u64, out: u64) {
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
    fn member_end(&mut self, out: u64) {
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
    fn wants_full_stop(&self, out: u64) -> bool {
        !self.failed && self.mid.is_none() && self.pending.is_none() && out >= self.mid_at
    }

    /// The decoder stopped with its output full after taking `consumed` stored bytes, the last
    /// of them `last_taken`: a point inside a block, if one is due and the output after it
    /// tells exactly where the next symbol starts.
    fn full_stop(&mut self, consumed: u64, out: u64, last_taken: u8) {
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
    fn drop_mid(&mut self, out: u64) {
        if let Some(m) = self.mid.take() {
            self.crc = zlib_rs::crc32::crc32(self.crc, &m.truth);
            self.mid_at = out + MID_AFTER;
        }
    }

    /// Finds where the next symbol starts after the stop inside a block, and makes it a point
    /// if exactly one start fits the output.
    fn resolve_mid(&mut self) {
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
    fn add_point(&mut self, start: Start, out: u64, window: &[u8], check: &[u8]) -> Option<()> {
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

/// One symbol of a fixed-code block.
#[derive(Debug, Clone, Copy)]
enum Symbol {
    Literal(u8),
    Copy { len: u16, dist: u16 },
}

/// Where the next symbol after a stop inside a block starts (bit of the blob), and how much
/// output the decoder still owed before it: the one start (of 8 bits) and debt (up to a
/// match) whose fixed-code symbols replay the output seen after the stop, `None` if none or
/// several fit (a block with its own codes, or a run of one byte).
fn resolve(m: &MidBlock) -> Option<(u64, usize)> {
    let mut found = None;
    for unused in 0..8u64 {
        let from = usize::try_from(8 - unused).expect("under 9");
        // A few symbols rule out almost every start and debt; only the rest are replayed in
        // full.
        let Some(head) = fixed_symbols(&m.input, from, 64) else { continue };
        let mut full = None;
        for owed in 0..=MAX_MATCH {
            if !replays(&head, &m.window, &m.truth, owed, 64) {
                continue;
            }
            if full.is_none() {
                full = Some(fixed_symbols(&m.input, from, CHECK));
            }
            let Some(Some(symbols)) = &full else { break };
            if replays(symbols, &m.window, &m.truth, owed, CHECK) {
                if found.is_some() {
                    return None;
                }
                found = Some((m.consumed * 8 - unused, owed));
            }
        }
    }
    found
}

/// Reads fixed-code symbols (RFC 1951 §3.2.6) from bit `pos` of `input` until they give
/// `want` bytes; `None` at an invalid code, the end of the block or the end of `input`.
fn fixed_symbols(input: &[u8], pos: usize, want: usize) -> Option<Vec<Symbol>> {
    let mut r = BitReader { input, pos };
    let mut symbols = Vec::new();
    let mut out = 0usize;
    while out < want {
        // Huffman codes are read most significant bit first.
        let mut code = r.code(7)?;
        let symbol = if code <= 0b001_0111 {
            256 + code
        } else {
            code = code << 1 | r.bit()?;
            match code {
                0b0011_0000..=0b1011_1111 => code - 0b0011_0000,
                0b1100_0000..=0b1100_0111 => 280 + code - 0b1100_0000,
                _ => 144 + (code << 1 | r.bit()?) - 0b1_1001_0000,
            }
        };
        match symbol {
            0..=255 => {
                symbols.push(Symbol::Literal(u8::try_from(symbol).expect("a literal")));
                out += 1;
            }
            257..=285 => {
                let len = match symbol {
                    257..=264 => symbol - 254,
                    285 => 258,
                    _ => {
                        let k = symbol - 261;
                        let n = k / 4;
                        ((4 + k % 4) << n) + 3 + r.value(n)?
                    }
                };
                let dist = match r.code(5)? {
                    code @ 0..=3 => code + 1,
                    code @ 4..=29 => {
                        let n = (code - 2) / 2;
                        ((2 + code % 2) << n) + 1 + r.value(n)?
                    }
                    _ => return None,
                };
                symbols.push(Symbol::Copy {
                    len: u16::try_from(len).expect("at most 258"),
                    dist: u16::try_from(dist).expect("at most 32768"),
                });
                out += len as usize;
            }
            // End of block (too soon to check) or an invalid code.
            _ => return None,
        }
    }
    Some(symbols)
}

/// Bits of DEFLATE data, least significant first.
struct BitReader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl BitReader<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = self.input.get(self.pos / 8)?;
        let b = (byte >> (self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(b))
    }

    /// A Huffman code of `n` bits, most significant first.
    fn code(&mut self, n: u32) -> Option<u32> {
        let mut code = 0;
        for _ in 0..n {
            code = code << 1 | self.bit()?;
        }
        Some(code)
    }

    /// A value of `n` extra bits, least significant first.
    fn value(&mut self, n: u32) -> Option<u32> {
        let mut value = 0;
        for i in 0..n {
            value |= self.bit()? << i;
        }
        Some(value)
    }
}

/// Whether `symbols`, after `owed` bytes of `truth`, give the next `len` bytes of it (with
/// `window` before `truth` for back-references).
fn replays(symbols: &[Symbol], window: &[u8], truth: &[u8], owed: usize, len: usize) -> bool {
    let mut at = owed;
    let end = owed + len;
    let byte_at = |pos: usize, dist: u16| -> Option<u8> {
        if let Some(src) = pos.checked_sub(usize::from(dist)) {
            Some(truth[src])
        } else {
            let back = usize::from(dist) - pos;
            window.len().checked_sub(back).map(|i| window[i])
        }
    };
    for symbol in symbols {
        match *symbol {
            Symbol::Literal(b) => {
                if truth[at] != b {
                    return false;
                }
                at += 1;
            }
            Symbol::Copy { len, dist } => {
                for _ in 0..len {
                    if at == end {
                        return true;
                    }
                    if byte_at(at, dist) != Some(truth[at]) {
                        return false;
                    }
                    at += 1;
                }
            }
        }
        if at == end {
            return true;
        }
    }
    false
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
            index: spacing.map(IndexBuilder::new),
        }
    }

    /// The index, once every member was read to the end; `None` when none was asked for, the
    /// stream was not read to its end, or there is nothing to seek to.
    pub(crate) fn into_index(self) -> Option<SeekIndex> {
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

/// Decodes `stored` as gzip noting an access point about every 4 KiB of output, then decodes
/// every segment of that index again; the two must agree. For the fuzz harness: it panics if
/// they do not, or if a segment of an index fails to decode the stream it was made from.
pub(crate) fn check_round_trip(stored: &[u8]) {
    // Bounded: a few bytes may inflate to gigabytes (and then no index is kept).
    round_trip(stored, stored, 4096, 64 << 20);
}

/// Decodes `stored` (read through `input`) noting an access point every `spacing` bytes of
/// output, at most `limit` bytes of it, then decodes every segment of the index again, and
/// panics unless each has its length, no piece is longer than asked, and together they give
/// the same bytes. The first decode's output and the index; `None` if that decode failed or
/// left no index.
fn round_trip(
    input: impl BufRead,
    stored: &[u8],
    spacing: u64,
    limit: u64,
) -> Option<(Vec<u8>, SeekIndex)> {
    const PIECE: usize = 64 * 1024;
    let mut decoder = IndexingDecoder::new(input, Some(spacing));
    let mut first = Vec::new();
    (&mut decoder).take(limit).read_to_end(&mut first).ok()?;
    let index = decoder.into_index()?;
    let mut again = Vec::with_capacity(first.len());
    for segment in index.segments() {
        let start = usize::try_from(segment.start).expect("within the input");
        let end = usize::try_from(segment.end).unwrap_or(usize::MAX).min(stored.len());
        let pieces = index
            .decode(segment, &stored[start..end], PIECE, &mut Vec::new)
            .unwrap_or_else(|e| panic!("segment {} of its own stream: {e}", segment.number));
        assert!(pieces.iter().all(|p| p.len() <= PIECE));
        let before = again.len();
        for piece in pieces {
            again.extend_from_slice(&piece);
        }
        assert_eq!((again.len() - before) as u64, segment.out_len, "{segment:?}");
    }
    assert!(again == first, "the segments decode to other bytes than the first read");
    Some((first, index))
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
        let input = io::BufReader::with_capacity(5000, stored);
        let (first, index) = super::round_trip(input, stored, spacing, u64::MAX).expect("an index");
        assert!(first == data, "the sequential decode differs");
        index.points()
    }

    #[test]
    fn the_filler_leaves_the_decoder_on_every_bit() {
        for bit in 1..8u32 {
            // The filler then a stored block holding "xspack", its header in the high bits.
            let mut bits = Bits::default();
            bits.filler(bit);
            assert_eq!(bits.len % 8, bit as usize);
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

    /// Many members of both kinds (one fixed-code block, or blocks of their own codes):
    /// points fall before, inside and at the end of members.
    #[test]
    fn many_members_of_both_kinds() {
        let data = sample(4 << 20, 13);
        let mut stored = Vec::new();
        let mut at = 0;
        for (i, len) in
            [90_000, 300_000, 5, 700_000, 64 * 1024, 1_000_000].iter().cycle().enumerate()
        {
            if at >= data.len() {
                break;
            }
            let piece = &data[at..(at + len).min(data.len())];
            stored.extend(if i % 2 == 0 {
                gzip_blocks(piece, 1, piece.len())
            } else {
                gzip(piece, 6, None)
            });
            at += piece.len();
        }
        for spacing in [16 * 1024, 100_000, 1 << 20] {
            round_trip(&data, &stored, spacing);
        }
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

    /// zlib-ng's (and zlib-rs') level 1 writes a whole member as one block with fixed codes:
    /// points fall inside it, between symbols, in one member or across several.
    #[test]
    fn one_fixed_block_is_indexed_between_symbols() {
        let data = sample(3 << 20, 9);
        let points = round_trip(&data, &gzip_blocks(&data, 1, data.len()), 128 * 1024);
        assert!(points >= 6, "{points} points");
        let (a, b) = data.split_at(1 << 20);
        let mut members = gzip_blocks(a, 1, a.len());
        members.extend(gzip_blocks(b, 1, b.len()));
        let points = round_trip(&data, &members, 100 * 1024);
        assert!(points >= 6, "{points} points");
        // Whether each point's block is its member's last is known, not guessed: the one in
        // the last stretch of each member says so.
        let mut dec = IndexingDecoder::new(&members[..], Some(100 * 1024));
        io::copy(&mut dec, &mut io::sink()).unwrap();
        let index = dec.into_index().unwrap();
        let lasts: Vec<(u64, bool)> = index
            .points
            .iter()
            .filter_map(|p| match p.start {
                Start::InFixedBlock { last, .. } => Some((p.out, last)),
                Start::Boundary { .. } => None,
            })
            .collect();
        // Every point is in its member's only block, so that block is the last, always.
        assert!(lasts.len() >= 6 && lasts.iter().all(|&(_, last)| last), "{lasts:?}");
        // Fixed-code blocks of 700,000 bytes in one member: only points in the last are last.
        let stored = gzip_blocks(&data, 1, 700_000);
        round_trip(&data, &stored, 100 * 1024);
        let mut dec = IndexingDecoder::new(&stored[..], Some(100 * 1024));
        io::copy(&mut dec, &mut io::sink()).unwrap();
        let index = dec.into_index().unwrap();
        let last_block = (data.len() as u64 - 1) / 700_000 * 700_000;
        let mut inside = 0;
        for p in &index.points {
            if let Start::InFixedBlock { last, .. } = p.start {
                inside += 1;
                assert_eq!(last, p.out >= last_block, "point at {}", p.out);
            }
        }
        assert!(inside >= 6, "{inside} points inside blocks");
        // Nothing but zeros: no start is unique, so no points, and one segment.
        let zeros = vec![0u8; 2 << 20];
        let stored = gzip_blocks(&zeros, 1, zeros.len());
        let mut dec = IndexingDecoder::new(&stored[..], Some(4096));
        io::copy(&mut dec, &mut io::sink()).unwrap();
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

    /// Damaged streams (a byte flipped anywhere, with points of both kinds about) decode or
    /// fail with an error, never a panic; when one still decodes whole, its index decodes
    /// it the same again.
    #[test]
    fn damaged_streams_fail_or_round_trip() {
        let data = sample(300_000, 21);
        let mut stored = gzip_blocks(&data[..150_000], 6, 2000);
        stored.extend(gzip_blocks(&data[150_000..], 1, 150_000));
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..300 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bad = stored.clone();
            let at = usize::try_from(state % bad.len() as u64).unwrap();
            bad[at] ^= u8::try_from(state >> 56).unwrap() | 1;
            // Either the first decode fails, or its index decodes the same bytes again.
            let input = io::BufReader::with_capacity(3000, &bad[..]);
            super::round_trip(input, &bad, 8192, u64::MAX);
        }
    }

    /// The fuzz harness's check passes on good streams of both kinds and on garbage.
    #[test]
    fn the_fuzz_check_holds_on_good_and_bad_input() {
        let data = sample(200_000, 31);
        check_round_trip(&gzip_blocks(&data, 1, data.len()));
        check_round_trip(&gzip_blocks(&data, 6, 3000));
        check_round_trip(&gzip(&data, 9, Some(10_000)));
        check_round_trip(b"\x1f\x8b\x08\x00garbage");
        check_round_trip(&[]);
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
