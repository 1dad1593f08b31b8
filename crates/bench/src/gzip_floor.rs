//! The pack-from-files floor: what any tool that packs these files must at least do. Read
//! every payload file, gzip it at level 9 on all cores, write the result and fsync it, and
//! sha256 what was written.
//!
//! In process, with the flate2 build xspack uses (zlib-rs, level 9), so the floor and xspack
//! run the same compressor; `pigz -9` would measure zlib's C code instead. The input is cut at
//! every file end and every [`CHUNK`] bytes; each chunk is deflated on its own (no dictionary
//! from the one before, so a little worse ratio than one stream) and ends on a sync flush, and
//! the chunks, in order, form one gzip member: a valid `.gz` of the files concatenated in name
//! order. The CRC-32 of each chunk is taken by its worker and combined in order.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};
use flate2::{Compress, Compression, Crc, FlushCompress};
use sha2::{Digest as _, Sha256};

/// Input bytes per compressed chunk.
const CHUNK: usize = 1 << 20;
/// gzip level, as xspack's RPM payloads.
const LEVEL: u32 = 9;
/// gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
/// An empty final block with fixed codes: ends the DEFLATE stream after the sync-flushed
/// chunks.
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// One chunk of input, numbered in stream order.
type Job = (usize, Vec<u8>);
/// One compressed chunk, its number, and the CRC-32 of its input.
type Done = (usize, Vec<u8>, Crc);

/// `xspack-bench gzip-floor DIR OUT`: every file in DIR, in name order, to OUT as gzip -9 on
/// all cores; prints the sha256 of OUT.
pub fn run(args: &[String]) -> Result<()> {
    let [dir, out] = args else { bail!("usage: xspack-bench gzip-floor DIR OUT") };
    let digest = compress_dir(Utf8Path::new(dir), Utf8Path::new(out))?;
    println!("{}  {out}", hex(&digest));
    Ok(())
}

/// Compresses the regular files of `dir`, in name order, into the gzip file `out` (fsynced),
/// and returns the sha256 of `out`.
pub fn compress_dir(dir: &Utf8Path, out: &Utf8Path) -> Result<[u8; 32]> {
    let mut files: Vec<Utf8PathBuf> = Vec::new();
    for entry in dir.read_dir_utf8().with_context(|| format!("reading {dir}"))? {
        let entry = entry.with_context(|| format!("reading {dir}"))?;
        if entry.file_type().with_context(|| format!("reading {}", entry.path()))?.is_file() {
            files.push(entry.into_path());
        }
    }
    files.sort();
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let output = std::fs::File::create(out).with_context(|| format!("creating {out}"))?;
    let (job_tx, job_rx) = sync_channel::<Job>(2 * workers);
    let (done_tx, done_rx) = sync_channel::<Done>(2 * workers);
    // Shared by the workers only: when they all stop, the reader's sends fail and it stops.
    let jobs = Arc::new(Mutex::new(job_rx));
    std::thread::scope(|s| -> Result<[u8; 32]> {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let done_tx = done_tx.clone();
                let jobs = Arc::clone(&jobs);
                s.spawn(move || -> Result<()> {
                    while let Some((i, input)) = next_job(&jobs)? {
                        let mut crc = Crc::new();
                        crc.update(&input);
                        let deflated = deflate_chunk(&input)?;
                        if done_tx.send((i, deflated, crc)).is_err() {
                            // The writer stopped on an error, which it reports.
                            return Ok(());
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        drop((done_tx, jobs));
        let writer = s.spawn(move || write_in_order(output, out, &done_rx));
        let read = read_chunks(&files, |job| job_tx.send(job).is_ok());
        drop(job_tx);
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("a compression worker panicked"))??;
        }
        let digest = writer.join().map_err(|_| anyhow::anyhow!("the writer panicked"))??;
        read?;
        Ok(digest)
    })
}

/// The next chunk to compress, or `None` when the reader is done.
fn next_job(jobs: &Mutex<Receiver<Job>>) -> Result<Option<Job>> {
    let rx = jobs.lock().map_err(|_| anyhow::anyhow!("a compression worker panicked"))?;
    Ok(rx.recv().ok())
}

/// Reads `files` in order, in chunks of at most [`CHUNK`] bytes that never span two files,
/// handing each to `send` until it returns false.
fn read_chunks(files: &[Utf8PathBuf], mut send: impl FnMut(Job) -> bool) -> Result<()> {
    let mut index = 0;
    for path in files {
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
        loop {
            let mut buf = Vec::with_capacity(CHUNK);
            let n = (&mut file)
                .take(CHUNK as u64)
                .read_to_end(&mut buf)
                .with_context(|| format!("reading {path}"))?;
            if n == 0 {
                break;
            }
            if !send((index, buf)) {
                return Ok(());
            }
            index += 1;
        }
    }
    Ok(())
}

/// Raw DEFLATE of `input` at [`LEVEL`], ending on a sync flush (byte-aligned, not final), so
/// chunks can be concatenated.
fn deflate_chunk(input: &[u8]) -> Result<Vec<u8>> {
    let mut c = Compress::new(Compression::new(LEVEL), false);
    let mut out = Vec::with_capacity(input.len() + input.len() / 64 + 1024);
    loop {
        let consumed = usize::try_from(c.total_in())?;
        c.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
            .context("deflating a chunk")?;
        // The flush is complete once all input is in and the output did not fill up.
        if usize::try_from(c.total_in())? == input.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(64 * 1024);
    }
}

/// Writes the gzip header, the chunks in order as they arrive, the final block and trailer,
/// hashing every byte written; fsyncs the file.
fn write_in_order(file: std::fs::File, path: &Utf8Path, done: &Receiver<Done>) -> Result<[u8; 32]> {
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut sha = Sha256::new();
    let mut put = |bytes: &[u8]| -> Result<()> {
        sha.update(bytes);
        out.write_all(bytes).with_context(|| format!("writing {path}"))
    };
    put(&GZIP_HEADER)?;
    let mut crc = Crc::new();
    let mut pending: BTreeMap<usize, (Vec<u8>, Crc)> = BTreeMap::new();
    let mut next = 0;
    for (i, deflated, chunk_crc) in done {
        pending.insert(i, (deflated, chunk_crc));
        while let Some((deflated, chunk_crc)) = pending.remove(&next) {
            put(&deflated)?;
            crc.combine(&chunk_crc);
            next += 1;
        }
    }
    if !pending.is_empty() {
        bail!("chunk {next} never arrived");
    }
    put(&FINAL_BLOCK)?;
    put(&crc.sum().to_le_bytes())?;
    put(&crc.amount().to_le_bytes())?;
    let file = out
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)
        .with_context(|| format!("writing {path}"))?;
    file.sync_all().with_context(|| format!("syncing {path}"))?;
    Ok(sha.finalize().into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The output is one gzip member of the files concatenated in name order, whatever the
    /// chunking, and the returned digest is the output's.
    #[test]
    fn output_is_the_gzip_of_the_files_in_order() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let root = Utf8Path::from_path(dir.path()).context("not UTF-8")?;
        let files = root.join("files");
        std::fs::create_dir(&files)?;
        let text: Vec<u8> =
            (0..300_000).flat_map(|i: u32| format!("line {i}\n").into_bytes()).collect();
        let noise = (0..CHUNK * 2 + 17)
            .map(|i| u8::try_from(i * 7919 % 251))
            .collect::<Result<Vec<u8>, _>>()?;
        std::fs::write(files.join("b.txt"), &text)?;
        std::fs::write(files.join("a.bin"), &noise)?;
        std::fs::write(files.join("c.empty"), b"")?;
        let out = root.join("out.gz");
        let digest = compress_dir(&files, &out)?;
        let written = std::fs::read(&out)?;
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&written)));
        let mut inflated = Vec::new();
        flate2::read::GzDecoder::new(&written[..]).read_to_end(&mut inflated)?;
        assert!(inflated == [noise, text].concat(), "inflated output differs from the input");
        Ok(())
    }
}
