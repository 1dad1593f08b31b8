//! A gzip writer that deflates on every core and still writes one gzip member whose bytes do
//! not depend on the number of threads: the block-parallel DEFLATE technique (pigz's), written
//! here from the formats' specs, RFC 1951 (DEFLATE) and RFC 1952 (gzip).
//!
//! The input is cut into blocks of [`BLOCK_SIZE`] bytes, a constant: where the cuts fall depends
//! only on the input's length. Each block is deflated on its own, at level 9, by a fresh raw
//! DEFLATE stream primed with the last 32 KiB of the block before it as preset dictionary (the
//! whole window RFC 1951 §2 lets a back-reference reach, so no match the serial compressor
//! could take across the cut is lost). Each block but the last ends with a sync flush: its last
//! DEFLATE block is not final (BFINAL = 0) and an empty stored block brings it to a byte
//! boundary, so the blocks' outputs concatenate into one valid DEFLATE stream; the last block
//! is finished (BFINAL = 1). Around it: the 10-byte gzip header flate2's `GzEncoder` writes at
//! level 9 (no name, MTIME 0, XFL 2 "maximum compression", OS 255 "unknown"), and the trailer,
//! CRC-32 and ISIZE of the whole input (RFC 1952 §2.3.1), both computed here as the input
//! arrives. The result is a single member: `gzip -d`, zlib's `gzread` (rpm's `gzdio`) and
//! flate2's single-member `GzDecoder` read it like any other.
//!
//! Each block is a pure function of its bytes and its dictionary, so a block's output is the
//! same whichever thread deflates it and whichever number of threads there are: 1 thread
//! deflates the blocks in turn, on the caller's thread, into the same bytes. With more, the
//! caller's thread cuts the blocks and hands them to `threads` workers, and writes the outputs
//! in input order; at most `2 × threads + 2` blocks are in flight (queued, being deflated, or
//! done and waiting for an earlier one), so memory stays bounded by about twice that many
//! blocks plus each worker's DEFLATE state, whatever the input size. An input shorter than
//! one block never starts a thread.
//!
//! Why not the `gzp` crate, which does the same: its writer thread owns the output, so the
//! output must be `Send + 'static` (or the whole build run inside a thread scope), which the
//! package writer's borrowed outputs are not; it pins its threads to cores (`core_affinity`),
//! which is not ours to do in a build tool; its `Drop` finishes the stream with an `unwrap`; and
//! it brings `flume`, `bytes`, `num_cpus`, `core_affinity` and `log` along for a few hundred
//! lines written here.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Input bytes per block. On 64 MiB of mixed random and text input, blocks of 64 KiB to 1 MiB
/// all came within 0.5% of one serial level-9 stream (slightly smaller, even: each block starts
/// fresh Huffman codes, and the dictionary keeps the matches across the cut); on 2 threads only
/// blocks of 512 KiB and more halved the time in the one quiet run the shared machine gave. At
/// most `2 × threads + 2` blocks in flight, each about twice this size (input and output), is
/// 6 MiB on 2 cores. Figures in docs/performance.md, "Parallel payload compression".
pub(crate) const BLOCK_SIZE: usize = 512 * 1024;
/// The DEFLATE window: the most a back-reference can reach (RFC 1951 §2).
const WINDOW: usize = 32 * 1024;
/// RFC 1952 §2.3: ID1 ID2, CM = 8 (deflate), FLG = 0, MTIME = 0, XFL = 2 (the slowest
/// algorithm, as zlib and flate2 mark level 9), OS = 255 (unknown, as flate2 writes).
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255];

/// At most this many workers: `2 × 32 + 2` blocks in flight is about 70 MiB with the workers'
/// DEFLATE state, which keeps a pack build within 128 MiB on any machine.
pub(crate) const MAX_THREADS: usize = 32;

/// Worker threads for this machine: one per core the process may use, at most
/// [`MAX_THREADS`].
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get).min(MAX_THREADS)
}

/// Deflates `data` as one piece of a raw DEFLATE stream: primed with `dict`, ended by a sync
/// flush, or by the final block if `last`.
fn deflate_block(z: &mut Compress, dict: &[u8], data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    z.reset();
    if !dict.is_empty() {
        z.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    // Level 9 rarely grows data by more than a stored block's 5 bytes per 64 KiB; the loop
    // grows the buffer if it must.
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 64);
    let mut consumed = 0usize;
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let (before_in, before_out) = (z.total_in(), out.len());
        let status =
            z.compress_vec(&data[consumed..], &mut out, flush).map_err(io::Error::other)?;
        let read = usize::try_from(z.total_in() - before_in).map_err(io::Error::other)?;
        consumed += read;
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once all input is taken and output room was left.
            Status::Ok if !last && consumed == data.len() && out.len() < out.capacity() => {
                return Ok(out);
            }
            Status::BufError if read == 0 && out.len() == before_out => {
                return Err(io::Error::other("deflate made no progress"));
            }
            Status::Ok | Status::BufError => {}
        }
    }
}

/// One block for a worker, and where its output goes.
struct Job {
    dict: Vec<u8>,
    data: Vec<u8>,
    last: bool,
    reply: SyncSender<io::Result<Vec<u8>>>,
}

/// The workers: each takes the next job from the shared queue.
struct Pool {
    jobs: Option<mpsc::Sender<Job>>,
    handles: Vec<JoinHandle<()>>,
}

impl Pool {
    fn start(threads: usize, level: u32) -> io::Result<Pool> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let mut pool = Pool { jobs: Some(jobs), handles: Vec::with_capacity(threads) };
        for i in 0..threads {
            let queue = Arc::clone(&queue);
            let handle = std::thread::Builder::new()
                .name(format!("gzip-{i}"))
                .spawn(move || work(&queue, level))?;
            pool.handles.push(handle);
        }
        Ok(pool)
    }

    fn send(&self, job: Job) -> io::Result<()> {
        let stopped = || io::Error::other("the compression workers stopped");
        self.jobs.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Closing the queue ends each worker after its current block.
        self.jobs = None;
        for handle in self.handles.drain(..) {
            // A worker that panicked has already dropped its reply, which its reader reports.
            let _ = handle.join();
        }
    }
}

fn work(queue: &Mutex<Receiver<Job>>, level: u32) {
    let mut z = Compress::new(Compression::new(level), false);
    loop {
        let job = match queue.lock() {
            Ok(queue) => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
            Err(_) => return,
        };
        let out = deflate_block(&mut z, &job.dict, &job.data, job.last);
        // The writer may have been dropped meanwhile: nobody wants this block then.
        let _ = job.reply.send(out);
    }
}

/// The parallel gzip writer: [`Write`] the input, then [`ParGzEncoder::finish`].
pub(crate) struct ParGzEncoder<W: Write> {
    out: W,
    level: u32,
    threads: usize,
    block_size: usize,
    /// The block being filled.
    block: Vec<u8>,
    /// The last [`WINDOW`] bytes before `block`.
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    /// Input length modulo 2^32 (ISIZE).
    isize: u32,
    header_written: bool,
    /// Started with the first full block, if `threads > 1`.
    pool: Option<Pool>,
    /// Outputs of blocks in flight, in input order.
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    /// The caller's own compressor, for one thread and for input of one block.
    serial: Option<Compress>,
}

impl<W: Write> ParGzEncoder<W> {
    /// A writer with `threads` workers (at least 1) and blocks of `block_size` bytes (at least
    /// the window); the output depends on `block_size`, never on `threads`.
    pub(crate) fn with_threads(out: W, level: u32, threads: usize, block_size: usize) -> Self {
        let block_size = block_size.max(WINDOW);
        ParGzEncoder {
            out,
            level,
            threads: threads.max(1),
            block_size,
            block: Vec::with_capacity(block_size),
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            isize: 0,
            header_written: false,
            pool: None,
            pending: VecDeque::new(),
            serial: None,
        }
    }

    fn max_in_flight(&self) -> usize {
        2 * self.threads + 2
    }

    fn emit(&mut self, bytes: &[u8]) -> io::Result<()> {
        if !self.header_written {
            self.out.write_all(&HEADER)?;
            self.header_written = true;
        }
        self.out.write_all(bytes)
    }

    /// Writes out the oldest block in flight, waiting for it.
    fn wait_oldest(&mut self) -> io::Result<()> {
        if let Some(reply) = self.pending.pop_front() {
            let out =
                reply.recv().map_err(|_| io::Error::other("a compression worker stopped"))??;
            self.emit(&out)?;
        }
        Ok(())
    }

    /// Writes out the blocks at the head of the queue that are done, without waiting.
    fn write_ready(&mut self) -> io::Result<()> {
        while let Some(reply) = self.pending.front() {
            let out = match reply.try_recv() {
                Ok(out) => out?,
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => {
                    return Err(io::Error::other("a compression worker stopped"));
                }
            };
            self.pending.pop_front();
            self.emit(&out)?;
        }
        Ok(())
    }

    /// Deflates the current block, `last` or followed by more.
    fn cut(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(
            &mut self.block,
            if last { Vec::new() } else { Vec::with_capacity(self.block_size) },
        );
        let tail = data.len().saturating_sub(WINDOW);
        let next_dict = if last { Vec::new() } else { data[tail..].to_vec() };
        let dict = std::mem::replace(&mut self.dict, next_dict);
        // One thread, or the whole input in one block: deflated here.
        if self.threads == 1 || (last && self.pool.is_none()) {
            let level = self.level;
            let z =
                self.serial.get_or_insert_with(|| Compress::new(Compression::new(level), false));
            let out = deflate_block(z, &dict, &data, last)?;
            return self.emit(&out);
        }
        if self.pool.is_none() {
            self.pool = Some(Pool::start(self.threads, self.level)?);
        }
        while self.pending.len() >= self.max_in_flight() {
            self.wait_oldest()?;
        }
        let (reply, result) = mpsc::sync_channel(1);
        if let Some(pool) = &self.pool {
            pool.send(Job { dict, data, last, reply })?;
        }
        self.pending.push_back(result);
        self.write_ready()
    }

    /// Deflates what is left, writes the trailer and gives the output back.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.cut(true)?;
        while !self.pending.is_empty() {
            self.wait_oldest()?;
        }
        self.pool = None;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.clone().finalize().to_le_bytes());
        trailer[4..].copy_from_slice(&self.isize.to_le_bytes());
        self.out.write_all(&trailer)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.block_size - self.block.len();
        let n = buf.len().min(room);
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1): the truncation is the format.
        #[allow(clippy::cast_possible_truncation)]
        let added = n as u32;
        self.isize = self.isize.wrapping_add(added);
        if self.block.len() == self.block_size {
            self.cut(false)?;
        }
        Ok(n)
    }

    /// Writes out the blocks already deflated and flushes the output. Unlike a zlib flush it
    /// does not cut the current block: where blocks end must not depend on when this is called.
    fn flush(&mut self) -> io::Result<()> {
        self.write_ready()?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use crate::write::testdata::{mixed, system};

    fn gzip(input: &[u8], threads: usize, block: usize) -> Vec<u8> {
        let mut z = ParGzEncoder::with_threads(Vec::new(), 9, threads, block);
        // Odd write sizes: the cuts must not follow them.
        for chunk in input.chunks(7919) {
            z.write_all(chunk).unwrap();
        }
        z.finish().unwrap()
    }

    fn sizes() -> Vec<(String, Vec<u8>)> {
        [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 3 * BLOCK_SIZE, 5_000_000]
            .into_iter()
            .map(|n| (format!("{n} bytes"), mixed(n, 100_000)))
            .collect()
    }

    #[test]
    fn output_is_the_same_for_1_2_and_4_threads() {
        for (what, input) in sizes() {
            let one = gzip(&input, 1, BLOCK_SIZE);
            assert_eq!(gzip(&input, 2, BLOCK_SIZE), one, "2 threads, {what}");
            assert_eq!(gzip(&input, 4, BLOCK_SIZE), one, "4 threads, {what}");
        }
    }

    #[test]
    fn one_member_that_flate2_and_gzip_read_back() {
        for (what, input) in sizes() {
            let gz = gzip(&input, 3, BLOCK_SIZE);
            assert_eq!(gz[..10], HEADER, "{what}");
            let mut single = Vec::new();
            flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut single).unwrap();
            assert_eq!(single, input, "GzDecoder, {what}");
            let mut multi = Vec::new();
            flate2::read::MultiGzDecoder::new(&gz[..]).read_to_end(&mut multi).unwrap();
            assert_eq!(multi, input, "MultiGzDecoder, {what}");
            assert_eq!(system("gzip", &["-dc"], &gz), input, "gzip -dc, {what}");
            system("gzip", &["-t"], &gz);
            // CRC-32 and ISIZE of the input.
            let n = gz.len();
            assert_eq!(gz[n - 4..], u32::try_from(input.len()).unwrap().to_le_bytes(), "{what}");
            assert_eq!(gz[n - 8..n - 4], crc32fast::hash(&input).to_le_bytes(), "{what}");
        }
    }

    #[test]
    fn the_header_is_the_one_flate2_writes_at_level_9() {
        let mut serial = flate2::write::GzEncoder::new(Vec::new(), Compression::new(9));
        serial.write_all(b"x").unwrap();
        let serial = serial.finish().unwrap();
        assert_eq!(serial[..10], HEADER);
        // A single block is one serial DEFLATE stream: the same bytes as flate2's.
        assert_eq!(gzip(b"x", 2, BLOCK_SIZE), serial);
    }

    #[test]
    fn a_damaged_stream_is_refused() {
        let mut gz = gzip(&mixed(3 * BLOCK_SIZE, 100_000), 2, BLOCK_SIZE);
        let n = gz.len();
        gz[n - 6] ^= 1;
        let mut out = Vec::new();
        assert!(flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).is_err());
    }

    /// Output size and time for block sizes; `cargo test --release -p xspack-rpmrepo
    /// pgzip::tests::block_sizes -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn block_sizes() {
        let input = mixed(64 << 20, 100_000);
        let serial = {
            let t = std::time::Instant::now();
            let mut z = flate2::write::GzEncoder::new(Vec::new(), Compression::new(9));
            z.write_all(&input).unwrap();
            let n = z.finish().unwrap().len();
            eprintln!("serial: {n} bytes, {:?}", t.elapsed());
            n
        };
        for block in [64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20] {
            for threads in [1, default_threads()] {
                let t = std::time::Instant::now();
                let n = gzip(&input, threads, block).len();
                eprintln!(
                    "block {} KiB, {threads} threads: {n} bytes ({:+.3}%), {:?}",
                    block >> 10,
                    (n as f64 / serial as f64 - 1.0) * 100.0,
                    t.elapsed()
                );
            }
        }
    }
}
