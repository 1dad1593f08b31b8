//! gzip members (RFC 1952) of DEFLATE data (RFC 1951), decoded once in sequence while noting a
//! seek index, then again in parallel from it. Container layers are the use (`xspack-oci`
//! rereads a layer this way), but nothing here knows about containers.
//!
//! The first read of a layer decodes its gzip members one after another, as any gzip reader
//! does ([`IndexingDecoder`]), and notes an *access point* about every [`SPACING`] bytes of
//! output: where decoding can resume in the stored bytes, how many bytes of output came
//! before, and the 32 KiB of output just before (the most a back-reference may reach). This is
//! the method of zlib's `examples/zran.c`. A later read decodes the stretches between access
//! points on several threads at once ([`SeekIndex::decode`]), and the caller hands their output
//! on in order.
//!
//! Access points are of two kinds:
//! - **Block boundaries.** zlib-rs' safe API stops there (`InflateFlush::Block`) but does not
//!   say at which bit of the last byte taken the next block starts (it returns whole unused
//!   bytes), so the block starts at one of 8 bits. Each point keeps the first `CHECK` (4 KiB) bytes
//!   of output after it, and decoding a segment tries the 8 bits until one reproduces them.
//! - **Between two symbols of a fixed-code block.** zlib-ng and zlib-rs at level 1 write a
//!   whole member as one such block: no boundary to seek to. Past the spacing, the first read
//!   stops with its output full (between symbols, with up to a match still owed), then finds
//!   the one start bit and debt whose symbols, read with the fixed codes of RFC 1951 §3.2.6,
//!   replay the output that follows; a segment from there gets a fixed-code block header put
//!   before that bit.
//!
//! A decoder cannot start mid-byte, so the bits of that byte before the start are replaced by
//! empty DEFLATE blocks of the right total length (`Bits::filler`), and the window is given as
//! the decoder's dictionary. Every segment must decode to the length and CRC-32 the first read
//! noted, or it fails.
//!
//! The index is our own, made from the same bytes a digest later proves unchanged; a segment
//! that fails to decode is still reported as a corrupt layer, never as a panic.

mod bits;
mod check;
mod fixed;
mod index;
mod indexing;
mod segment;
#[cfg(test)]
mod tests;

pub use check::check_round_trip;
pub use index::{SeekIndex, Segment};
pub use indexing::IndexingDecoder;

use std::io;

/// Output bytes between access points: enough to amortise starting a decoder, small enough
/// that the segments in flight stay a few MiB.
pub const SPACING: u64 = 1 << 20;
/// The DEFLATE window: the farthest back a match may reach.
pub(crate) const WINDOW: usize = 32 * 1024;

/// Output bytes kept per access point to tell the right start bit from the wrong ones (a wrong
/// start fails or differs within a few bytes, except in runs of zeros, as in tar headers).
pub(crate) const CHECK: usize = 4096;

/// Scratch bytes per access point: its window, then its check bytes.
pub(crate) const SLOT: u64 = (WINDOW + CHECK) as u64;

/// `window_bits` for gzip wrapped members.
pub(crate) const GZIP_BITS: u8 = 16 + 15;

/// `window_bits` for raw DEFLATE.
pub(crate) const RAW_BITS: u8 = 15;

pub(crate) fn invalid(reason: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.to_owned())
}
