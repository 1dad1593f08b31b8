//! The seek index: access points, with their windows and check bytes kept in a scratch file,
//! and the segments between them, each decoded on its own ([`SeekIndex::decode`]).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use crate::bits::StartBit;
use crate::segment::SegmentDecoder;
use crate::{SLOT, WINDOW, invalid};

/// Where decoding can resume, and what comes before and after it.
#[derive(Debug, Clone)]
pub(crate) struct AccessPoint {
    pub(crate) start: Start,
    /// Output bytes before it.
    pub(crate) out: u64,
    /// Bytes of window (32 KiB, or all output so far when less).
    pub(crate) window_len: u32,
    /// Bytes of output from the block on kept as its check: [`crate::CHECK`], or less at the end.
    pub(crate) check_len: u32,
}

/// Where a segment's decoding starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// At a block boundary. The decoder had taken `consumed` stored bytes when it stopped
    /// there: the block starts within the last of them, or right after them.
    Boundary { consumed: u64 },
    /// Between two symbols of a block with fixed Huffman codes, at this bit of the blob.
    /// `last` is whether the block seemed to be its member's last (the other is tried too).
    InFixedBlock { bit: u64, last: bool },
}

impl Start {
    /// The first stored byte a segment starting here needs.
    pub(crate) fn first_byte(self) -> u64 {
        match self {
            Start::Boundary { consumed } => consumed.saturating_sub(1),
            Start::InFixedBlock { bit, .. } => bit / 8,
        }
    }

    /// One past the last stored byte a segment ending here needs, with a few to spare for a
    /// decoder that looks ahead.
    pub(crate) fn end_byte(self) -> u64 {
        match self {
            Start::Boundary { consumed } => consumed + 8,
            Start::InFixedBlock { bit, .. } => bit / 8 + 9,
        }
    }

    /// The bits the segment may start at, and the block header to put before each (for a
    /// start inside a block); the check bytes tell them apart.
    pub(crate) fn candidates(self) -> Vec<(u64, Option<bool>)> {
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
pub struct SeekIndex {
    pub(crate) points: Vec<AccessPoint>,
    pub(crate) windows: File,
    /// Output bytes of the whole blob.
    pub(crate) total_out: u64,
    /// CRC-32 of each segment's output.
    pub(crate) crcs: Vec<u32>,
}

/// One stretch of a blob to decode: from an access point (or the start) to the next (or the
/// end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
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
    pub fn segments(&self) -> Vec<Segment> {
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
    pub fn decode(
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
pub(crate) fn collect(
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
