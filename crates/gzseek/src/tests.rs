//! Tests of the seek index against zlib-rs and flate2 output of every shape.

use std::io::Read;

use zlib_rs::{Inflate, InflateFlush, Status};

use super::*;
use crate::bits::Bits;
use crate::check;
use crate::index::Start;
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
    let (first, index) = check::round_trip(input, stored, spacing, u64::MAX).expect("an index");
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
    for (i, len) in [90_000, 300_000, 5, 700_000, 64 * 1024, 1_000_000].iter().cycle().enumerate() {
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
        check::round_trip(input, &bad, 8192, u64::MAX);
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
