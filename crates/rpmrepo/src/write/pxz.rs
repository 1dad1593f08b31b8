//! An xz writer that compresses on every core: liblzma's multithreaded stream encoder
//! (`lzma_stream_encoder_mt`), writing one .xz stream of independent blocks (The .xz File
//! Format, version 1.2.1, §3 "Block": each block has its own header, compressed data and
//! check, and the index at the stream's end lists them all).
//!
//! The input is cut into blocks of [`BLOCK_SIZE`] bytes, a constant, each compressed with LZMA2
//! at preset [`super::payload::XZ_LEVEL`] from an empty dictionary: a block's bytes depend on
//! its input alone, and the stream on the block size, never on the number of threads (the
//! tests check it for 1, 2 and 4 threads).
//!
//! The integrity check is SHA-256, the one rpm 4.11.3's own writer asks for (`rpmio/rpmio.c`,
//! `lzopen_internal`: `lzma_easy_encoder(&lzfile->strm, level, LZMA_CHECK_SHA256)`). rpm
//! reads the payload with `lzma_auto_decoder(&lzfile->strm, 100<<20, 0)` (same function): a
//! 100 MiB memory limit, far above what preset 6 needs to decode (its 8 MiB dictionary, under
//! 10 MiB in all), and a decoder that takes any number of blocks.
//!
//! Memory: each thread holds an LZMA2 encoder (94 MiB at preset 6, most of it the match
//! finder) and the input and output of its block: liblzma plans 165 MiB per thread with
//! 24 MiB blocks (`lzma_stream_encoder_mt_memusage`). Not even one fits the 128 MiB that a
//! gzip pack build stays within, so xz payloads are the exception to that bound: [`threads`]
//! takes as many threads as the cores and [`MEMORY_BUDGET`] allow (one per core up to three),
//! and the output is the same whatever that number is.

use std::io::{self, Write};

use liblzma::stream::{Check, MtStreamBuilder};
use liblzma::write::XzEncoder;

/// Input bytes per block: 3 × the 8 MiB dictionary of preset 6, liblzma's own default for
/// this preset, so that a block fills the dictionary and still gets most of its benefit.
/// Smaller blocks would start more of the input from an empty dictionary (the output grew
/// with them, docs/performance.md).
pub(crate) const BLOCK_SIZE: u64 = 24 << 20;
/// At most this many threads.
pub(crate) const MAX_THREADS: usize = 4;
/// What the encoder's threads may plan to use in all (liblzma's estimate), so a many-core
/// machine does not give a pack build gigabytes of encoders: three threads at preset 6.
pub(crate) const MEMORY_BUDGET: u64 = 512 << 20;

/// Threads for this machine: one per core, as many as [`MEMORY_BUDGET`] allows at `preset`
/// (at least one), at most [`MAX_THREADS`].
pub(crate) fn threads(preset: u32) -> usize {
    let cores = super::pgzip::default_threads().min(MAX_THREADS);
    (2..=cores)
        .rev()
        .find(|&t| builder(preset, t, BLOCK_SIZE).memusage() <= MEMORY_BUDGET)
        .unwrap_or(1)
}

fn builder(preset: u32, threads: usize, block_size: u64) -> MtStreamBuilder {
    let mut b = MtStreamBuilder::new();
    b.threads(u32::try_from(threads.clamp(1, MAX_THREADS)).unwrap_or(1))
        .block_size(block_size)
        .preset(preset)
        .check(Check::Sha256);
    b
}

/// An xz encoder at `preset` on `threads` threads (at least 1) writing to `out`.
pub(crate) fn encoder<W: Write>(out: W, preset: u32, threads: usize) -> io::Result<XzEncoder<W>> {
    encoder_with_blocks(out, preset, threads, BLOCK_SIZE)
}

/// [`encoder`] with blocks of `block_size` bytes (the tests' smaller blocks).
fn encoder_with_blocks<W: Write>(
    out: W,
    preset: u32,
    threads: usize,
    block_size: u64,
) -> io::Result<XzEncoder<W>> {
    let stream = builder(preset, threads, block_size).encoder().map_err(io::Error::other)?;
    Ok(XzEncoder::new_stream(out, stream))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::write::testdata::{mixed, system};

    /// Blocks of 1 MiB: the same machinery as 24 MiB ones, on inputs the tests can afford.
    const TEST_BLOCK: u64 = 1 << 20;

    fn xz(input: &[u8], threads: usize) -> Vec<u8> {
        let mut z = encoder_with_blocks(Vec::new(), 6, threads, TEST_BLOCK).unwrap();
        for chunk in input.chunks(1 << 20) {
            z.write_all(chunk).unwrap();
        }
        z.finish().unwrap()
    }

    /// Sizes around the block: empty, one byte, a block, a block ± 1, several blocks.
    fn inputs() -> Vec<(String, Vec<u8>)> {
        let block = usize::try_from(TEST_BLOCK).unwrap();
        [0, 1, block - 1, block, block + 1, 5 * block + 300_000]
            .into_iter()
            .map(|n| (format!("{n} bytes"), mixed(n, 300_000)))
            .collect()
    }

    #[test]
    fn output_is_the_same_for_1_2_and_4_threads_and_xz_reads_it() {
        for (what, input) in inputs() {
            let one = xz(&input, 1);
            assert_eq!(xz(&input, 2), one, "2 threads, {what}");
            assert_eq!(xz(&input, 4), one, "4 threads, {what}");
            let mut back = Vec::new();
            liblzma::read::XzDecoder::new(&one[..]).read_to_end(&mut back).unwrap();
            assert_eq!(back, input, "liblzma, {what}");
            assert_eq!(system("xz", &["-dc"], &one), input, "xz -dc, {what}");
            system("xz", &["-t"], &one);
            // Check ID 0x0A: SHA-256 (.xz format §2.1.1.2), in the stream flags.
            assert_eq!(one[6..8], [0, 0x0a], "{what}");
        }
    }

    #[test]
    fn the_real_block_size_makes_one_block_of_a_small_input_and_bounds_memory() {
        let one = {
            let mut z = encoder(Vec::new(), 6, 1).unwrap();
            z.write_all(b"payload").unwrap();
            z.finish().unwrap()
        };
        let two = {
            let mut z = encoder(Vec::new(), 6, 2).unwrap();
            z.write_all(b"payload").unwrap();
            z.finish().unwrap()
        };
        assert_eq!(one, two);
        assert_eq!(system("xz", &["-dc"], &one), b"payload");
        // What liblzma plans to allocate for MAX_THREADS threads, blocks and encoders.
        let usage = MtStreamBuilder::new()
            .threads(u32::try_from(MAX_THREADS).unwrap())
            .block_size(BLOCK_SIZE)
            .preset(6)
            .check(Check::Sha256)
            .memusage();
        eprintln!("xz encoder, {MAX_THREADS} threads: {} MiB", usage >> 20);
        assert!(usage < 1 << 30, "{usage}");
    }
}

#[cfg(test)]
mod budget {
    use super::*;

    #[test]
    fn threads_fit_the_memory_budget() {
        let t = threads(6);
        assert!((1..=3).contains(&t), "{t}");
        assert!(t == 1 || builder(6, t, BLOCK_SIZE).memusage() <= MEMORY_BUDGET);
        // liblzma's plan for one thread of preset 6 with 24 MiB blocks, as documented.
        assert_eq!(builder(6, 1, BLOCK_SIZE).memusage() >> 20, 165);
        assert!(builder(6, 4, BLOCK_SIZE).memusage() > MEMORY_BUDGET);
    }
}
