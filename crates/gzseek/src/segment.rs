//! Decoding one segment from its access point: raw DEFLATE from the start bit, with the
//! window as the decoder's dictionary, checked against the length and CRC-32 the first read
//! noted.

use std::io::{self, Read};

use zlib_rs::{Inflate, InflateFlush, Status};

use crate::{GZIP_BITS, invalid};

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
    pub(crate) fn new(
        input: I,
        at: usize,
        prefix: Vec<u8>,
        raw: Option<Inflate>,
        limit: Option<u64>,
    ) -> Self {
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
