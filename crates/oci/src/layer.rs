//! Streaming one layer: verify → decompress → tar entries.
//!
//! The stored blob is hashed as it is read (its `sha256` digest), decompressed by sniffing the
//! magic number (gzip `1f 8b`, zstd `28 b5 2f fd`, else a plain tar), and the decompressed
//! stream is hashed again (the config's `diff_id`). Both are checked after the last byte, so a
//! caller must treat what it saw as unverified until [`crate::Image::read_layer`] returns `Ok`.
//! Tar entries follow POSIX pax (`SCHILY.xattr.*` for xattrs, fractional `mtime`) and GNU
//! (long names, old sparse files) conventions as the `tar` crate decodes them.
//!
//! The first read of a gzip layer notes a seek index ([`crate::gzip`]); a reread decodes the
//! stretches between its access points on one thread per core (at most [`MAX_SEGMENT_WORKERS`])
//! and hands them on in order, so a second pass is not bound to one core.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Seek};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use xspack_io::HashingReader;

use crate::gzip::{IndexingDecoder, SeekIndex, Segment};
use crate::{Digest, Error, Image, LayerInfo};

/// What a layer entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file; its data follows.
    File,
    /// A directory.
    Dir,
    /// A symlink with this target, verbatim.
    Symlink(Vec<u8>),
    /// A hard link to this path (relative to the image root).
    Hardlink(Vec<u8>),
    /// A character device.
    CharDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A block device.
    BlockDev {
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
    /// A FIFO.
    Fifo,
}

/// Ownership, mode, times and xattrs of an entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time: seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// Access time from pax, if recorded.
    pub atime: Option<(i64, u32)>,
    /// Change time from pax, if recorded.
    pub ctime: Option<(i64, u32)>,
    /// Extended attributes from `SCHILY.xattr.*` pax records, in archive order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One entry of a layer.
#[derive(Debug, Clone)]
pub struct LayerEntry {
    /// Position in the layer's tar stream, from 0.
    pub index: u64,
    /// The path as recorded (not yet normalised).
    pub path: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// Ownership, mode, times, xattrs.
    pub meta: EntryMeta,
    /// Data size (regular files).
    pub size: u64,
}

/// Totals of one layer read.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerSummary {
    /// Entries seen.
    pub entries: u64,
    /// Bytes of the stored blob.
    pub stored_bytes: u64,
    /// Bytes of the uncompressed tar.
    pub tar_bytes: u64,
    /// `none`, `gzip` or `zstd`.
    pub compression: &'static str,
}

impl Image {
    /// Streams `layer`, calling `visit` with each entry and a reader of its data (which the
    /// visitor may leave unread). Fails if the blob digest, size or `diff_id` do not match, or
    /// the stream is corrupt.
    pub fn read_layer<E: From<Error>>(
        &self,
        layer: &LayerInfo,
        visit: impl FnMut(&LayerEntry, &mut dyn Read) -> Result<(), E>,
    ) -> Result<LayerSummary, E> {
        let checks = Checks { blob: true, diff_id: true, last: None, index: true };
        self.stream_layer(layer, checks, visit)
    }

    /// Like [`Image::read_layer`], for a layer already read once with `read_layer`, visiting
    /// the entries up to and including index `last`. One digest is enough to prove the bytes
    /// did not change since: the blob digest when the manifest records one (it covers the
    /// stored, usually compressed, bytes: fewer to hash, and hashed on the reading thread,
    /// beside decompression), else the `diff_id`. With the blob digest, nothing after entry
    /// `last` is decompressed: the digest of the stored bytes covers it. A gzip layer is
    /// decompressed on several threads when the first read left a seek index.
    pub fn reread_layer<E: From<Error>>(
        &self,
        layer: &LayerInfo,
        last: u64,
        visit: impl FnMut(&LayerEntry, &mut dyn Read) -> Result<(), E>,
    ) -> Result<LayerSummary, E> {
        let blob = layer.digest.is_some();
        let checks = Checks { blob, diff_id: !blob, last: blob.then_some(last), index: false };
        self.stream_layer(layer, checks, visit)
    }

    /// The seek index the first read of `layer` left, if any.
    fn seek_index(&self, layer: &LayerInfo) -> Option<Arc<SeekIndex>> {
        let indexes = self.seek_indexes.lock().unwrap_or_else(PoisonError::into_inner);
        indexes.get(&layer.index).cloned()
    }

    fn stream_layer<E: From<Error>>(
        &self,
        layer: &LayerInfo,
        checks: Checks,
        mut visit: impl FnMut(&LayerEntry, &mut dyn Read) -> Result<(), E>,
    ) -> Result<LayerSummary, E> {
        let label = layer.label();
        let blob = self.open_blob(layer)?;
        let index = if checks.index { None } else { self.seek_index(layer) };
        let pool = Pools::default();
        let skip_to = AtomicU64::new(0);
        let (job_tx, job_rx) = sync_channel::<SegmentJob>(0);
        let jobs = Mutex::new(job_rx);
        let (consumed, read, produced) = std::thread::scope(|s| {
            // Either three threads share the cores: one reads the blob (hashing it when asked),
            // one decompresses, and this one hashes the tar when asked, parses it and visits;
            // or, with a seek index, the reader hands stretches of the blob to
            // one decompressing thread per core, and this one takes their output in order.
            let (tar, reading, decompressing) = if let Some(index) = &index {
                let workers = std::thread::available_parallelism()
                    .map_or(2, usize::from)
                    .clamp(2, MAX_SEGMENT_WORKERS);
                // Each thread can have a segment ready when the parser wants it.
                let (order_tx, order_rx) = sync_channel(workers);
                let size = layer.size;
                let sink = SegmentSink { order: order_tx, jobs: job_tx, pool: &pool };
                let reading =
                    s.spawn(move || read_blob_segments(blob, index, size, sink, checks.blob));
                for _ in 0..workers {
                    s.spawn(|| decode_segments(index, &jobs, &pool, &skip_to));
                }
                let segments = SegmentReader {
                    order: order_rx,
                    pieces: Vec::new().into_iter(),
                    current: Vec::new(),
                    at: 0,
                    pool: &pool,
                    pos: 0,
                    skip: 0,
                    skip_to: &skip_to,
                };
                (TarStream::Segments(segments), reading, None)
            } else {
                drop(job_tx);
                let (stored_writer, stored_reader) = xspack_io::pipe::pipe(PIPE_DEPTH);
                let (writer, reader) = xspack_io::pipe::pipe(PIPE_DEPTH);
                let reading = s.spawn(|| read_blob(blob, stored_writer, checks.blob));
                let label = &label;
                let decompressing =
                    s.spawn(move || produce(stored_reader, writer, label, checks.index));
                (TarStream::Piped(reader), reading, Some(decompressing))
            };
            // Dropping the reader unblocks the producers if the parser stopped early.
            let consumed = parse_tar(tar, checks, &label, &mut visit);
            let produced = match decompressing {
                Some(handle) => handle.join().expect("the decompressor does not panic"),
                None => Ok(Produced { compression: "gzip", error: None, index: None }),
            };
            (consumed, reading.join().expect("the blob reader does not panic"), produced)
        });
        // A read failure explains everything after it; a wrong size or digest explains a
        // decompression failure; that explains a truncated tar better than the tar error.
        let read = read.map_err(|e| Error::Layer {
            layer: label.clone(),
            reason: format!("reading the blob: {e}"),
        })?;
        check_blob(layer, &label, read.bytes, read.digest)?;
        let produced = produced?;
        if let Some(e) = produced.error {
            return Err(e.into());
        }
        if let Some(index) = produced.index {
            let mut indexes = self.seek_indexes.lock().unwrap_or_else(PoisonError::into_inner);
            indexes.insert(layer.index, Arc::new(index));
        }
        let (entries, diff_id, tar_bytes) = consumed?;
        if checks.diff_id && diff_id != layer.diff_id {
            return Err(Error::DigestMismatch {
                what: label,
                kind: "diff_id",
                expected: layer.diff_id.to_string(),
                actual: diff_id.to_string(),
            }
            .into());
        }
        Ok(LayerSummary {
            entries,
            stored_bytes: read.bytes,
            tar_bytes,
            compression: produced.compression,
        })
    }
}

/// The tar stream of one pass: decompressed in sequence, or from the segments of a seek index
/// (which can skip what nobody reads).
enum TarStream<'a> {
    Piped(xspack_io::pipe::PipeReader),
    Segments(SegmentReader<'a>),
}

/// Parses the tar stream, visiting entries (up to `checks.last`), and hashes it when asked:
/// the number of entries, the digest and the bytes passed.
fn parse_tar<E: From<Error>>(
    tar: TarStream<'_>,
    checks: Checks,
    label: &str,
    visit: &mut impl FnMut(&LayerEntry, &mut dyn Read) -> Result<(), E>,
) -> Result<(u64, Digest, u64), E> {
    let tar: Box<dyn Read + Send + '_> = match tar {
        // Nothing to hash: entries nobody reads are skipped, undecoded where a whole segment
        // falls inside them.
        TarStream::Segments(segments) if !checks.diff_id => {
            let mut archive = tar::Archive::new(segments);
            let entries = archive.entries_with_seek().map_err(|e| corrupt(label, &e))?;
            let seen = visit_entries(entries, checks, label, visit)?;
            let segments = archive.into_inner();
            return Ok((seen, Digest(xspack_io::Sha256Digest([0; 32])), segments.pos));
        }
        TarStream::Segments(segments) => Box::new(segments),
        TarStream::Piped(piped) => Box::new(piped),
    };
    let mut reader = HashingReader::new(tar);
    let tar: &mut dyn Read = if checks.diff_id { &mut reader } else { reader.get_mut() };
    let seen = {
        let mut archive = tar::Archive::new(&mut *tar);
        let entries = archive.entries().map_err(|e| corrupt(label, &e))?;
        visit_entries(entries, checks, label, visit)?
    };
    if checks.diff_id {
        // The tar end marker and any padding count towards the diff_id.
        io::copy(tar, &mut io::sink()).map_err(|e| corrupt(label, &e))?;
    }
    let (_, diff_id, tar_bytes) = reader.finish();
    Ok((seen, Digest(diff_id), tar_bytes))
}

/// Visits `entries` up to `checks.last`; the number seen.
fn visit_entries<R: Read, E: From<Error>>(
    entries: tar::Entries<'_, R>,
    checks: Checks,
    label: &str,
    visit: &mut impl FnMut(&LayerEntry, &mut dyn Read) -> Result<(), E>,
) -> Result<u64, E> {
    let mut seen = 0;
    for (index, entry) in entries.enumerate() {
        if checks.last.is_some_and(|last| index as u64 > last) {
            // The rest is proven by the blob digest the reader computes.
            break;
        }
        let mut entry = entry.map_err(|e| corrupt(label, &e))?;
        seen += 1;
        let Some(parsed) = convert(&mut entry, index as u64, label)? else {
            continue;
        };
        visit(&parsed, &mut entry)?;
    }
    Ok(seen)
}

/// Which digests one pass over a layer computes.
#[derive(Debug, Clone, Copy)]
struct Checks {
    /// The blob digest, over the stored bytes (checked when the manifest records one).
    blob: bool,
    /// The `diff_id`, over the uncompressed tar.
    diff_id: bool,
    /// The last entry wanted, when the rest need not be decompressed (the blob digest covers
    /// it).
    last: Option<u64>,
    /// Note a seek index for later reads (the first read), rather than use one.
    index: bool,
}

/// Chunks in flight between two threads (256 KiB each).
const PIPE_DEPTH: usize = 8;

/// What the blob reader measured.
struct BlobRead {
    bytes: u64,
    /// The blob digest, when asked for.
    digest: Option<Digest>,
}

/// Reads the whole blob in chunks, hashing them when `digest`, and sends them on. When the
/// decompressor stops early the rest is still read, counted and hashed: a wrong size or digest
/// is the better diagnosis of a damaged blob than the decoding error it caused.
fn read_blob(
    mut blob: Box<dyn Read + Send>,
    mut out: xspack_io::pipe::PipeWriter,
    digest: bool,
) -> io::Result<BlobRead> {
    let mut hasher = digest.then(|| xspack_io::HashingWriter::new(io::sink()));
    let mut bytes = 0u64;
    let mut open = true;
    loop {
        let chunk = out.read_chunk(&mut blob)?;
        let filled = chunk.len();
        bytes += filled as u64;
        if let Some(h) = &mut hasher {
            io::Write::write_all(h, &chunk)?;
        }
        let end = filled < xspack_io::pipe::CHUNK;
        // Once the decompressor has stopped, the rest is only counted (and hashed).
        open = open && out.send_chunk(chunk).is_ok();
        if end {
            break;
        }
    }
    let _ = out.finish();
    Ok(BlobRead { bytes, digest: hasher.map(|h| Digest(h.finish().1)) })
}

/// What the producer thread measured.
struct Produced {
    compression: &'static str,
    /// Why decompressing failed, if it did (reported after the blob's size and digest).
    error: Option<Error>,
    /// The seek index noted on the way, if asked for and worth having.
    index: Option<SeekIndex>,
}

/// Decompresses the stored bytes by magic number and sends the tar on.
fn produce(
    mut stored: xspack_io::pipe::PipeReader,
    mut out: xspack_io::pipe::PipeWriter,
    label: &str,
    index: bool,
) -> Result<Produced, Error> {
    let mut seek_index = None;
    let (compression, error) = 'read: {
        let head = stored.fill_buf().map_err(|e| corrupt(label, &e))?;
        if head.is_empty() {
            // Not even the end-of-archive blocks of an empty tar: nothing a layer tool writes.
            let reason = "empty blob (0 bytes): not a tar archive, compressed or not".to_owned();
            break 'read ("none", Some(Error::Layer { layer: label.to_owned(), reason }));
        }
        if head.starts_with(&[0x1f, 0x8b]) {
            let spacing = index.then_some(crate::gzip::SPACING);
            let mut decoder = IndexingDecoder::new(&mut stored, spacing);
            let copied = copy_out(&mut decoder, &mut out);
            // Read to its end (the parser took every byte): the index is complete.
            if copied.is_ok() {
                seek_index = decoder.into_index();
            }
            break 'read ("gzip", finish_copy(copied, &mut stored, label));
        }
        let (mut decoder, compression): (Box<dyn Read + '_>, &'static str) =
            if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                let zstd = zstd::stream::read::Decoder::with_buffer(&mut stored)
                    .map_err(|e| corrupt(label, &e))?;
                (Box::new(zstd), "zstd")
            } else {
                (Box::new(&mut stored), "none")
            };
        let copied = copy_out(&mut decoder, &mut out);
        drop(decoder);
        (compression, finish_copy(copied, &mut stored, label))
    };
    // A closed reader here means the parser failed; its error is the one to report.
    let _ = out.finish();
    Ok(Produced { compression, error, index: seek_index })
}

/// A layer whose bytes do not decode or parse.
fn corrupt(label: &str, e: &dyn std::fmt::Display) -> Error {
    Error::Layer { layer: label.to_owned(), reason: format!("corrupt layer: {e}") }
}

/// The outcome of decompressing: a parser that stopped early will report why itself; after a
/// whole stream, the bytes after it still belong to the blob, and the reader hashes them.
fn finish_copy(
    copied: io::Result<()>,
    stored: &mut xspack_io::pipe::PipeReader,
    label: &str,
) -> Option<Error> {
    match copied {
        Ok(()) => io::copy(stored, &mut io::sink()).err().map(|e| corrupt(label, &e)),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => None,
        Err(e) => Some(corrupt(label, &e)),
    }
}

/// Decompresses into whole pipe chunks (no intermediate buffer).
fn copy_out(decoder: &mut dyn Read, out: &mut xspack_io::pipe::PipeWriter) -> io::Result<()> {
    loop {
        let chunk = out.read_chunk(decoder)?;
        let end = chunk.len() < xspack_io::pipe::CHUNK;
        out.send_chunk(chunk)?;
        if end {
            return Ok(());
        }
    }
}

/// The most threads decoding segments of a seek-indexed layer at once (each holds a segment
/// of about [`crate::gzip::SPACING`] bytes, as does each one ready for the parser).
const MAX_SEGMENT_WORKERS: usize = 8;
/// Emptied output pieces kept for reuse: about as many as the segments in flight hold, so
/// pieces freed on one thread are not allocated anew on another (which fragments the heap).
const PIECE_POOL: usize = 24;
/// Segment input buffers kept for reuse.
const INPUT_POOL: usize = 3;

/// Buffers handed between the reader, the decoding threads and the parser, for reuse.
#[derive(Default)]
struct Pools {
    pieces: Mutex<Vec<Vec<u8>>>,
    inputs: Mutex<Vec<Vec<u8>>>,
}

/// Where the reader hands segments: their outputs' receivers to the parser in order, the jobs
/// to the decoding threads.
struct SegmentSink<'a> {
    order: SyncSender<Receiver<Decoded>>,
    jobs: SyncSender<SegmentJob>,
    pool: &'a Pools,
}

/// What became of a segment.
enum SegmentOutput {
    /// Its output, in pieces.
    Pieces(Vec<Vec<u8>>),
    /// Not decoded: it lies wholly in a stretch the parser skips. Its length.
    Skipped(u64),
}

/// A decoded segment, or why it would not decode.
type Decoded = io::Result<SegmentOutput>;

/// One segment to decode, with its stored bytes and where its output goes.
struct SegmentJob {
    segment: Segment,
    input: Vec<u8>,
    done: SyncSender<Decoded>,
}

/// Reads the whole blob in chunks, hashing them when `digest`, and cuts the stored bytes of
/// each segment of `index` out of them for the decoding threads: the receiver of each
/// segment's output goes to the parser in order, the job to whichever thread is free. Once
/// the parser has stopped, the rest is only counted (and hashed).
fn read_blob_segments(
    mut blob: Box<dyn Read + Send>,
    index: &SeekIndex,
    size: u64,
    sink: SegmentSink<'_>,
    digest: bool,
) -> io::Result<BlobRead> {
    let SegmentSink { order, jobs, pool } = sink;
    let mut hasher = digest.then(|| xspack_io::HashingWriter::new(io::sink()));
    let segments = index.segments();
    let mut next = 0;
    let mut open: VecDeque<(Segment, Vec<u8>)> = VecDeque::new();
    let mut offset = 0u64;
    let mut dispatching = true;
    let dispatch = |segment: Segment, input: Vec<u8>, dispatching: &mut bool| {
        let (done, output) = sync_channel(1);
        *dispatching = *dispatching
            && order.send(output).is_ok()
            && jobs.send(SegmentJob { segment, input, done }).is_ok();
    };
    let mut buf = vec![0u8; xspack_io::pipe::CHUNK];
    loop {
        let n = xspack_io::read_full(&mut blob, &mut buf)?;
        if let Some(h) = &mut hasher {
            io::Write::write_all(h, &buf[..n])?;
        }
        let end = offset + n as u64;
        if dispatching {
            while let Some(&segment) = segments.get(next)
                && segment.start < end
            {
                let len = segment.end.min(size).saturating_sub(segment.start);
                let mut input = pool.inputs.lock().unwrap_or_else(PoisonError::into_inner).pop();
                let input = input.get_or_insert_default();
                input.clear();
                input.reserve(usize::try_from(len).unwrap_or(0));
                open.push_back((segment, std::mem::take(input)));
                next += 1;
            }
            for (segment, input) in &mut open {
                let from = segment.start.max(offset);
                let to = segment.end.min(end);
                if from < to {
                    let range = usize::try_from(from - offset).expect("within the chunk")
                        ..usize::try_from(to - offset).expect("within the chunk");
                    input.extend_from_slice(&buf[range]);
                }
            }
            while open.front().is_some_and(|(segment, _)| segment.end <= end) {
                let (segment, input) = open.pop_front().expect("checked above");
                dispatch(segment, input, &mut dispatching);
            }
        }
        offset = end;
        if n < buf.len() {
            break;
        }
    }
    // The last segment runs to the end of the blob (and any other is cut short by it).
    for (segment, input) in open {
        dispatch(segment, input, &mut dispatching);
    }
    // The parser and the decoding threads see the end.
    drop((order, jobs));
    Ok(BlobRead { bytes: offset, digest: hasher.map(|h| Digest(h.finish().1)) })
}

/// Decodes segments from `jobs` until the reader is done.
fn decode_segments(
    index: &SeekIndex,
    jobs: &Mutex<Receiver<SegmentJob>>,
    pool: &Pools,
    skip_to: &AtomicU64,
) {
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        let end = job.segment.out + job.segment.out_len;
        if end <= skip_to.load(Ordering::Relaxed) {
            let _ = job.done.send(Ok(SegmentOutput::Skipped(job.segment.out_len)));
            continue;
        }
        let mut spare = || {
            let mut pieces = pool.pieces.lock().unwrap_or_else(PoisonError::into_inner);
            pieces.pop().unwrap_or_else(|| Vec::with_capacity(xspack_io::pipe::CHUNK))
        };
        let decoded = index
            .decode(job.segment, &job.input, xspack_io::pipe::CHUNK, &mut spare)
            .map(SegmentOutput::Pieces);
        let mut inputs = pool.inputs.lock().unwrap_or_else(PoisonError::into_inner);
        if inputs.len() < INPUT_POOL {
            inputs.push(job.input);
        }
        drop(inputs);
        // The parser may have stopped; then the output is simply dropped.
        let _ = job.done.send(decoded);
    }
}

/// The decoded segments, in order, as one stream. Seeking forward (over entries nobody reads)
/// skips bytes; segments that lie wholly in a skipped stretch are not decoded at all.
struct SegmentReader<'a> {
    order: Receiver<Receiver<Decoded>>,
    pieces: std::vec::IntoIter<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
    pool: &'a Pools,
    /// Output offset of `current[at]`.
    pos: u64,
    /// Bytes to drop from `pos` on before handing any out.
    skip: u64,
    /// Shared with the decoding threads: where the stream is skipped to.
    skip_to: &'a AtomicU64,
}

impl Read for SegmentReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        xspack_io::read_via_fill_buf(self, out)
    }
}

impl BufRead for SegmentReader<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        loop {
            let left = self.current.len() - self.at;
            if left > 0 && self.skip == 0 {
                return Ok(&self.current[self.at..]);
            }
            if left > 0 {
                let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(left);
                self.at += n;
                self.pos += n as u64;
                self.skip -= n as u64;
                continue;
            }
            if let Some(piece) = self.pieces.next() {
                let done = std::mem::replace(&mut self.current, piece);
                self.at = 0;
                let mut pieces = self.pool.pieces.lock().unwrap_or_else(PoisonError::into_inner);
                if pieces.len() < PIECE_POOL && done.capacity() > 0 {
                    pieces.push(done);
                }
                continue;
            }
            let Ok(output) = self.order.recv() else { return Ok(&[]) };
            match output.recv() {
                Ok(Ok(SegmentOutput::Pieces(pieces))) => self.pieces = pieces.into_iter(),
                Ok(Ok(SegmentOutput::Skipped(len))) => {
                    // Only a segment wholly inside the skipped stretch is left undecoded.
                    debug_assert!(len <= self.skip);
                    self.pos += len;
                    self.skip = self.skip.saturating_sub(len);
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("a segment decoder stopped")),
            }
        }
    }

    fn consume(&mut self, amount: usize) {
        let amount = amount.min(self.current.len() - self.at);
        self.at += amount;
        self.pos += amount as u64;
    }
}

/// Forward only, from the current position: what the tar reader does to pass over the data
/// of an entry nobody reads.
impl Seek for SegmentReader<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let io::SeekFrom::Current(by) = to else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "only forward seeks"));
        };
        let by = u64::try_from(by)
            .map_err(|_| io::Error::new(io::ErrorKind::Unsupported, "only forward seeks"))?;
        self.skip += by;
        let target = self.pos + self.skip;
        self.skip_to.fetch_max(target, Ordering::Relaxed);
        Ok(target)
    }
}

/// Compares the blob as read with the size and digest the manifest records.
fn check_blob(
    layer: &LayerInfo,
    label: &str,
    stored_bytes: u64,
    stored: Option<Digest>,
) -> Result<(), Error> {
    let mismatch = |kind, expected: String, actual: String| Error::DigestMismatch {
        what: label.to_owned(),
        kind,
        expected,
        actual,
    };
    if stored_bytes != layer.size {
        return Err(mismatch("size", layer.size.to_string(), stored_bytes.to_string()));
    }
    if let (Some(want), Some(stored)) = (layer.digest, stored)
        && want != stored
    {
        return Err(mismatch("digest", want.to_string(), stored.to_string()));
    }
    Ok(())
}

/// A pax time: `seconds[.fraction]`, possibly negative.
fn pax_time(value: &[u8]) -> Option<(i64, u32)> {
    let text = std::str::from_utf8(value).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits =
        frac.as_bytes().iter().take(9).map(|b| u32::from(b - b'0')).collect::<Vec<_>>();
    digits.resize(9, 0);
    let nanos = digits.iter().fold(0u32, |acc, d| acc * 10 + d);
    Some((secs, nanos))
}

/// Turns a tar entry into a [`LayerEntry`]; `None` for entries that carry nothing (pax global
/// headers).
fn convert<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    index: u64,
    layer: &str,
) -> Result<Option<LayerEntry>, Error> {
    let path = entry.path_bytes().into_owned();
    let bad = |reason: String| Error::Entry {
        layer: layer.to_owned(),
        entry: String::from_utf8_lossy(&path).into_owned(),
        reason,
    };
    let header = entry.header();
    let mut meta = EntryMeta {
        mode: header.mode().map_err(|e| bad(format!("bad mode: {e}")))? & 0o7777,
        uid: u32::try_from(header.uid().map_err(|e| bad(format!("bad uid: {e}")))?)
            .map_err(|_| bad("uid above 2^32".into()))?,
        gid: u32::try_from(header.gid().map_err(|e| bad(format!("bad gid: {e}")))?)
            .map_err(|_| bad("gid above 2^32".into()))?,
        mtime: (
            i64::try_from(header.mtime().map_err(|e| bad(format!("bad mtime: {e}")))?)
                .unwrap_or(i64::MAX),
            0,
        ),
        ..EntryMeta::default()
    };
    let entry_type = header.entry_type();
    let kind = match entry_type {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            EntryKind::File
        }
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink | tar::EntryType::Link => {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| bad("link without a target".into()))?
                .into_owned();
            if entry_type == tar::EntryType::Symlink {
                EntryKind::Symlink(target)
            } else {
                EntryKind::Hardlink(target)
            }
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            let major = header
                .device_major()
                .map_err(|e| bad(format!("bad device major: {e}")))?
                .unwrap_or(0);
            let minor = header
                .device_minor()
                .map_err(|e| bad(format!("bad device minor: {e}")))?
                .unwrap_or(0);
            if entry_type == tar::EntryType::Char {
                EntryKind::CharDev { major, minor }
            } else {
                EntryKind::BlockDev { major, minor }
            }
        }
        tar::EntryType::Fifo => EntryKind::Fifo,
        tar::EntryType::XGlobalHeader => return Ok(None),
        other => {
            return Err(bad(format!("unsupported tar entry type {:?}", other.as_byte() as char)));
        }
    };
    if let Some(pax) = entry.pax_extensions().map_err(|e| bad(format!("bad pax header: {e}")))? {
        for ext in pax {
            let ext = ext.map_err(|e| bad(format!("bad pax record: {e}")))?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                meta.xattrs.push((name.to_vec(), value.to_vec()));
            } else if key.starts_with(b"GNU.sparse.") {
                return Err(bad("pax sparse files are not supported".into()));
            } else {
                let number = || std::str::from_utf8(value).ok().and_then(|v| v.parse::<u32>().ok());
                match key {
                    b"mtime" => {
                        meta.mtime = pax_time(value).ok_or_else(|| bad("bad pax mtime".into()))?;
                    }
                    b"atime" => meta.atime = pax_time(value),
                    b"ctime" => meta.ctime = pax_time(value),
                    b"uid" => meta.uid = number().ok_or_else(|| bad("bad pax uid".into()))?,
                    b"gid" => meta.gid = number().ok_or_else(|| bad("bad pax gid".into()))?,
                    _ => {}
                }
            }
        }
    }
    let size = if kind == EntryKind::File { entry.size() } else { 0 };
    Ok(Some(LayerEntry { index, path, kind, meta, size }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use camino::Utf8PathBuf;
    use xspack_testkit::{Compression, Entry, ImageSpec, layer_tar};

    /// A one-layer OCI layout: a small file, then a large one.
    fn layout(compression: Compression) -> (tempfile::TempDir, Image) {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::try_from(dir.path().join("oci")).unwrap();
        let layer = layer_tar(&[
            Entry::file("etc/hostname", "box\n"),
            Entry::file("srv/data", xspack_testkit::noise(5, 300_000)),
        ]);
        ImageSpec::new(vec![(layer, compression)]).write_oci_dir(&root, "latest").unwrap();
        let image = Image::open(&crate::ImageSource::OciDir {
            path: root,
            reference: Some("latest".into()),
        })
        .unwrap();
        (dir, image)
    }

    fn paths_visited(image: &Image, last: u64) -> Result<Vec<Vec<u8>>, Error> {
        let mut seen = Vec::new();
        image.reread_layer(&image.layers[0], last, |entry, _| -> Result<(), Error> {
            seen.push(entry.path.clone());
            Ok(())
        })?;
        Ok(seen)
    }

    /// A re-read visits entries up to `last` only, for every compression, and still proves the
    /// whole blob unchanged: a byte changed after the last entry wanted fails it.
    #[test]
    fn a_reread_stops_after_the_last_entry_and_still_checks_the_whole_blob() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let (dir, image) = layout(compression);
            image.read_layer(&image.layers[0], |_, _| -> Result<(), Error> { Ok(()) }).unwrap();
            assert_eq!(paths_visited(&image, 0).unwrap(), vec![b"etc/hostname".to_vec()]);
            assert_eq!(paths_visited(&image, 1).unwrap().len(), 2);
            let digest = image.layers[0].digest.unwrap().0.to_string();
            let hex = digest.trim_start_matches("sha256:");
            let blob = dir.path().join("oci/blobs/sha256").join(hex);
            let mut bytes = std::fs::read(&blob).unwrap();
            let at = bytes.len() - 2000;
            bytes[at] ^= 0x55;
            std::fs::write(&blob, &bytes).unwrap();
            let err = paths_visited(&image, 0).unwrap_err();
            assert!(
                matches!(&err, Error::DigestMismatch { kind: "digest", .. }),
                "{compression:?}: {err}"
            );
        }
    }

    /// Entries visited with a digest of their data.
    fn entries_read(
        image: &Image,
        last: Option<u64>,
    ) -> Result<Vec<(Vec<u8>, xspack_io::Sha256Digest)>, Error> {
        entries_read_if(image, last, |_| true)
    }

    /// Entries visited, with a digest of the data of those `read` picks (others are left
    /// unread, so a reread may skip them).
    fn entries_read_if(
        image: &Image,
        last: Option<u64>,
        read: impl Fn(u64) -> bool,
    ) -> Result<Vec<(Vec<u8>, xspack_io::Sha256Digest)>, Error> {
        let mut seen = Vec::new();
        let visit = |entry: &LayerEntry, data: &mut dyn Read| -> Result<(), Error> {
            if !read(entry.index) {
                seen.push((entry.path.clone(), xspack_io::Sha256Digest([0; 32])));
                return Ok(());
            }
            let mut hashing = xspack_io::HashingWriter::new(io::sink());
            io::copy(data, &mut hashing)
                .map_err(|e| Error::Layer { layer: "test".into(), reason: e.to_string() })?;
            seen.push((entry.path.clone(), hashing.finish().1));
            Ok(())
        };
        match last {
            None => image.read_layer(&image.layers[0], visit)?,
            Some(last) => image.reread_layer(&image.layers[0], last, visit)?,
        };
        Ok(seen)
    }

    /// A gzip layer of several MiB: the first read leaves a seek index, and rereads decode
    /// its segments on several threads into the same entries and bytes, stopping early or
    /// not, and still fail on a changed byte.
    #[test]
    fn a_reread_from_the_seek_index_gives_the_same_entries() {
        let dir = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::try_from(dir.path().join("oci")).unwrap();
        let files: Vec<Entry> = (0..48u64)
            .map(|i| {
                let data = match i % 4 {
                    0 => format!("line {i} of a text file\n").repeat(9_000).into_bytes(),
                    1 => vec![0; 100_000],
                    _ => xspack_testkit::noise(i, 250_000),
                };
                Entry::file(format!("srv/{i:02}"), data)
            })
            .collect();
        let layer = layer_tar(&files);
        ImageSpec::new(vec![(layer, Compression::GzipDefault)]).write_oci_dir(&root, "x").unwrap();
        let image =
            Image::open(&crate::ImageSource::OciDir { path: root, reference: Some("x".into()) })
                .unwrap();
        let first = entries_read(&image, None).unwrap();
        assert_eq!(first.len(), 48);
        let index = image.seek_index(&image.layers[0]).expect("an index");
        assert!(index.segments().len() >= 4, "{} segments", index.segments().len());
        assert_eq!(entries_read(&image, Some(47)).unwrap(), first);
        assert_eq!(entries_read(&image, Some(20)).unwrap(), first[..21]);
        // Entries 5 to 40 unread: whole segments among them are skipped, undecoded, and what
        // follows still comes out right.
        let read = |i: u64| !(5..=40).contains(&i);
        let sparse = entries_read_if(&image, Some(47), read).unwrap();
        for (i, (got, want)) in sparse.iter().zip(&first).enumerate() {
            assert_eq!(got.0, want.0);
            if read(i as u64) {
                assert_eq!(got.1, want.1, "entry {i}");
            }
        }
        let digest = image.layers[0].digest.unwrap().0.to_string();
        let blob = dir.path().join("oci/blobs/sha256").join(digest.trim_start_matches("sha256:"));
        let mut bytes = std::fs::read(&blob).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x55;
        std::fs::write(&blob, &bytes).unwrap();
        let err = entries_read(&image, Some(47)).unwrap_err();
        assert!(matches!(&err, Error::DigestMismatch { kind: "digest", .. }), "{err}");
    }

    #[test]
    fn pax_times() {
        assert_eq!(pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(pax_time(b"1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(pax_time(b"-1.000000001"), Some((-1, 1)));
        assert_eq!(pax_time(b"12.1234567891234"), Some((12, 123_456_789)));
        assert_eq!(pax_time(b"x"), None);
        assert_eq!(pax_time(b"1.x"), None);
    }
}
