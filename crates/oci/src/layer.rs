//! Streaming one layer: verify → decompress → tar entries.
//!
//! The stored blob is hashed as it is read (its `sha256` digest), decompressed by sniffing the
//! magic number (gzip `1f 8b`, zstd `28 b5 2f fd`, else a plain tar), and the decompressed
//! stream is hashed again (the config's `diff_id`). Both are checked after the last byte, so a
//! caller must treat what it saw as unverified until [`crate::Image::read_layer`] returns `Ok`.
//! Tar entries follow POSIX pax (`SCHILY.xattr.*` for xattrs, fractional `mtime`) and GNU
//! (long names, old sparse files) conventions. The `tar` crate walks the stream; every header
//! passes [`crate::tar_guard`] first, which refuses a pax or GNU long name header too large to
//! hold before its body is read, and keeps the bodies for this module's own pax parser
//! ([`crate::pax`]). Names, link targets and xattrs are held to [`crate::limits`].
//!
//! The first read of a layer notes a proof of its stored bytes ([`crate::proof`]: BLAKE3 of
//! every 1 MiB), so a reread proves the blocks it uses without hashing the whole blob again,
//! and stops reading once its visitor is done. The first read of a gzip layer also notes a
//! seek index ([`xspack_gzseek`]); a reread decodes the stretches between its access points on
//! one thread per core (at most [`MAX_SEGMENT_WORKERS`]) and hands them on in order, so a
//! second pass is not bound to one core.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Seek};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use xspack_io::HashingReader;

use crate::limits::{self, check_path, check_symlink, check_xattr, shown};
use crate::proof::{BlobProof, ProofChecker, ProofRecorder};
use crate::tar_guard::{ExtBodies, TarWatch};
use crate::{Digest, Error, Image, LayerInfo, pax};
use xspack_gzseek::{IndexingDecoder, SeekIndex, Segment};

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
        self.stream_layer(layer, checks, None, visit)
    }

    /// Like [`Image::read_layer`], for a layer already read once with `read_layer`, visiting
    /// the entries up to and including index `last`, and reading no further than they need.
    ///
    /// The first read verified the stored bytes and noted a BLAKE3 proof of every 1 MiB of
    /// them (`proof`); the reread proves each block it uses against it, and fails if one
    /// changed. A gzip layer is decompressed on several threads when the first read left a
    /// seek index. Without a first read, the blob digest (or, when the manifest records
    /// none, the `diff_id`) is checked over the whole layer instead.
    pub fn reread_layer<E: From<Error>>(
        &self,
        layer: &LayerInfo,
        last: u64,
        visit: impl FnMut(&LayerEntry, &mut dyn Read) -> Result<(), E>,
    ) -> Result<LayerSummary, E> {
        let first = self.first_read(layer);
        let blob = layer.digest.is_some();
        let checks = match first {
            Some(_) => Checks { blob: false, diff_id: false, last: Some(last), index: false },
            None => Checks { blob, diff_id: !blob, last: blob.then_some(last), index: false },
        };
        self.stream_layer(layer, checks, first.as_deref(), visit)
    }

    /// What the first read of `layer` left, if it was read.
    fn first_read(&self, layer: &LayerInfo) -> Option<Arc<FirstRead>> {
        let first_reads = self.first_reads.lock().unwrap_or_else(PoisonError::into_inner);
        first_reads.get(&layer.index).cloned()
    }

    fn stream_layer<E: From<Error>>(
        &self,
        layer: &LayerInfo,
        checks: Checks,
        first: Option<&FirstRead>,
        mut visit: impl FnMut(&LayerEntry, &mut dyn Read) -> Result<(), E>,
    ) -> Result<LayerSummary, E> {
        let label = layer.label();
        let blob = self.open_blob(layer)?;
        let index = first.and_then(|first| Some((first.index.as_ref()?, &first.proof)));
        let tap = || StoredTap::new(checks.blob, checks.index, first.map(|first| &first.proof));
        let pool = Pools::default();
        let skip_to = AtomicU64::new(0);
        let (job_tx, job_rx) = sync_channel::<SegmentJob>(0);
        let jobs = Mutex::new(job_rx);
        let (consumed, read, produced) = std::thread::scope(|s| {
            // Either three threads share the cores: one reads the blob (hashing it when asked),
            // one decompresses, and this one hashes the tar when asked, parses it and visits;
            // or, with a seek index, the reader hands stretches of the blob to
            // one decompressing thread per core, and this one takes their output in order.
            let (tar, reading, decompressing) = if let Some((index, proof)) = index {
                let workers = std::thread::available_parallelism()
                    .map_or(2, usize::from)
                    .clamp(2, MAX_SEGMENT_WORKERS);
                // Each thread can have a segment ready when the parser wants it.
                let (order_tx, order_rx) = sync_channel(workers);
                let size = layer.size;
                let sink = SegmentSink { order: order_tx, jobs: job_tx, pool: &pool };
                let tap = StoredTap::new(false, false, Some(proof));
                let reading = s.spawn(move || read_blob_segments(blob, index, size, sink, tap));
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
                let tap = tap();
                let reading = s.spawn(|| read_blob(blob, stored_writer, tap));
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
        // A reread with a proof has checked every byte it read against it.
        if first.is_none() {
            check_blob(layer, &label, read.bytes, read.digest)?;
        }
        let produced = produced?;
        if let Some(e) = produced.error {
            return Err(e.into());
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
        if let Some(proof) = read.proof {
            // Everything checked: what this read saw is what the next may rely on.
            let first = FirstRead { proof: proof.finish(), index: produced.index };
            let mut first_reads = self.first_reads.lock().unwrap_or_else(PoisonError::into_inner);
            first_reads.insert(layer.index, Arc::new(first));
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
    // Every header is inspected before the tar crate reads it (`tar_guard`).
    let watch = TarWatch::default();
    let tar: Box<dyn Read + Send + '_> = match tar {
        // Nothing to hash: entries nobody reads are skipped, undecoded where a whole segment
        // falls inside them.
        TarStream::Segments(segments) if !checks.diff_id => {
            let mut archive = tar::Archive::new(watch.wrap(segments));
            let entries = archive.entries_with_seek().map_err(|e| corrupt(label, &e))?;
            let seen = visit_entries(entries, &watch, checks, label, visit)?;
            let segments = archive.into_inner().into_inner();
            return Ok((seen, Digest(xspack_io::Sha256Digest([0; 32])), segments.pos));
        }
        TarStream::Segments(segments) => Box::new(segments),
        TarStream::Piped(piped) => Box::new(piped),
    };
    let mut reader = HashingReader::new(tar);
    let tar: &mut dyn Read = if checks.diff_id { &mut reader } else { reader.get_mut() };
    let seen = {
        let mut archive = tar::Archive::new(watch.wrap(&mut *tar));
        let entries = archive.entries().map_err(|e| corrupt(label, &e))?;
        visit_entries(entries, &watch, checks, label, visit)?
    };
    if checks.diff_id {
        // The tar end marker and any padding count towards the diff_id.
        io::copy(tar, &mut io::sink()).map_err(|e| corrupt(label, &e))?;
    }
    let (_, diff_id, tar_bytes) = reader.finish();
    Ok((seen, Digest(diff_id), tar_bytes))
}

/// Visits `entries` up to `checks.last`; the number seen. `watch` is the one whose reader the
/// entries come through.
fn visit_entries<R: Read, E: From<Error>>(
    entries: tar::Entries<'_, R>,
    watch: &TarWatch,
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
        let mut entry = entry.map_err(|e| match watch.refusal() {
            Some(refusal) => Error::Entry {
                layer: label.to_owned(),
                entry: shown(&refusal.name),
                reason: format!("{} (at byte {} of the tar)", refusal.reason, refusal.offset),
            },
            None => corrupt(label, &e),
        })?;
        let bodies = watch.entry_started(&mut entry);
        seen += 1;
        let Some(parsed) = convert(&mut entry, &bodies, index as u64, label)? else {
            continue;
        };
        drop(bodies);
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

/// What the first read of a layer leaves for the next.
#[derive(Debug)]
pub(crate) struct FirstRead {
    /// BLAKE3 of every block of the stored bytes the first read verified.
    proof: BlobProof,
    /// Where a gzip layer can be decoded from, besides its start.
    index: Option<SeekIndex>,
}

/// What the blob reader measured.
struct BlobRead {
    bytes: u64,
    /// The blob digest, when asked for.
    digest: Option<Digest>,
    /// The proof of the stored bytes, when asked to note one.
    proof: Option<ProofRecorder>,
}

/// What is computed over the stored bytes as they are read: the blob digest, a proof for
/// the next read, or the check against the first read's proof.
struct StoredTap<'a> {
    digest: Option<xspack_io::HashingWriter<io::Sink>>,
    record: Option<ProofRecorder>,
    check: Option<ProofChecker<'a>>,
}

impl<'a> StoredTap<'a> {
    fn new(digest: bool, record: bool, check: Option<&'a BlobProof>) -> Self {
        StoredTap {
            digest: digest.then(|| xspack_io::HashingWriter::new(io::sink())),
            record: record.then(ProofRecorder::default),
            check: check.map(ProofChecker::new),
        }
    }

    fn update(&mut self, bytes: &[u8]) -> io::Result<()> {
        if let Some(h) = &mut self.digest {
            io::Write::write_all(h, bytes)?;
        }
        if let Some(r) = &mut self.record {
            r.update(bytes);
        }
        match &mut self.check {
            Some(c) => c.update(bytes),
            None => Ok(()),
        }
    }

    /// Whether reading may stop once nobody wants more bytes: only when checking a proof
    /// (a digest needs every byte), and only once every byte passed on is proven.
    fn may_stop(&self) -> bool {
        self.check.as_ref().is_some_and(ProofChecker::at_boundary)
    }

    /// Every byte before this is proven (all of them when there is no proof to check).
    fn proven(&self) -> u64 {
        self.check.as_ref().map_or(u64::MAX, ProofChecker::verified)
    }

    /// At the end of the blob: checks the proof's last block and size.
    fn end(&mut self) -> io::Result<()> {
        match &mut self.check {
            Some(c) => c.finish(),
            None => Ok(()),
        }
    }

    fn finish(self, bytes: u64) -> BlobRead {
        BlobRead { bytes, digest: self.digest.map(|h| Digest(h.finish().1)), proof: self.record }
    }
}

/// Reads the blob in chunks through `tap` and sends them on. When the decompressor stops
/// early the rest is still read, counted and hashed (a wrong size or digest is the better
/// diagnosis of a damaged blob than the decoding error it caused), unless a proof is being
/// checked: then reading stops at the end of the block being proven.
fn read_blob(
    mut blob: Box<dyn Read + Send>,
    mut out: xspack_io::pipe::PipeWriter,
    mut tap: StoredTap<'_>,
) -> io::Result<BlobRead> {
    let mut bytes = 0u64;
    let mut open = true;
    loop {
        let chunk = out.read_chunk(&mut blob)?;
        let filled = chunk.len();
        bytes += filled as u64;
        tap.update(&chunk)?;
        let end = filled < xspack_io::pipe::CHUNK;
        // Once the decompressor has stopped, the rest is only counted (and hashed).
        open = open && out.send_chunk(chunk).is_ok();
        if end {
            tap.end()?;
            break;
        }
        if !open && tap.may_stop() {
            break;
        }
    }
    let _ = out.finish();
    Ok(tap.finish(bytes))
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
            let spacing = index.then_some(xspack_gzseek::SPACING);
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
    // The tar crate's messages can quote a header's path (up to 256 bytes): cut them.
    let reason = format!("corrupt layer: {}", xspack_io::quote::truncated(&e.to_string()));
    Error::Layer { layer: label.to_owned(), reason }
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
/// of about [`xspack_gzseek::SPACING`] bytes, as does each one ready for the parser).
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

/// Reads the blob in chunks through `tap`, which proves them against the first read, and cuts
/// the stored bytes of each segment of `index` out of them for the decoding threads: once a
/// segment's bytes are proven, the receiver of its output goes to the parser in order, the
/// job to whichever thread is free. Reading stops once the parser has.
fn read_blob_segments(
    mut blob: Box<dyn Read + Send>,
    index: &SeekIndex,
    size: u64,
    sink: SegmentSink<'_>,
    mut tap: StoredTap<'_>,
) -> io::Result<BlobRead> {
    let SegmentSink { order, jobs, pool } = sink;
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
        tap.update(&buf[..n])?;
        let end = offset + n as u64;
        let at_end = n < buf.len();
        if at_end {
            tap.end()?;
        }
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
            let proven = tap.proven().min(end);
            while open.front().is_some_and(|(segment, _)| segment.end <= proven) {
                let (segment, input) = open.pop_front().expect("checked above");
                dispatch(segment, input, &mut dispatching);
            }
        }
        offset = end;
        // Every segment handed on was proven; once the parser has stopped, nothing more is.
        if at_end || !dispatching {
            break;
        }
    }
    if dispatching {
        // The last segment runs to the end of the blob (and any other is cut short by it).
        for (segment, input) in open {
            dispatch(segment, input, &mut dispatching);
        }
    }
    // The parser and the decoding threads see the end.
    drop((order, jobs));
    Ok(tap.finish(offset))
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

/// An entry's pax records, and those that say where its name, link target and data are.
struct PaxFields<'a> {
    records: Vec<pax::Record<'a>>,
    path: Option<&'a [u8]>,
    link: Option<&'a [u8]>,
    size: Option<&'a [u8]>,
}

impl<'a> PaxFields<'a> {
    /// Parses a pax header body (none: no records). A `path` or `linkpath` record longer than
    /// a path can be is refused even when a GNU long name overrides it, and so is a second
    /// `path`, `linkpath` or `size` record: readers disagree on which one counts (the tar
    /// crate takes the first, Go's `archive/tar` the last).
    fn parse(body: Option<&'a [u8]>) -> Result<Self, String> {
        let records = body.map(pax::records).transpose()?.unwrap_or_default();
        let mut fields = PaxFields { records: Vec::new(), path: None, link: None, size: None };
        for &(key, value) in &records {
            let (slot, what) = match key {
                b"path" => (&mut fields.path, "path"),
                b"linkpath" => (&mut fields.link, "linkpath"),
                b"size" => (&mut fields.size, "size"),
                _ => continue,
            };
            if slot.replace(value).is_some() {
                return Err(format!("two pax {what} records"));
            }
            if what != "size" && value.len() > limits::MAX_PATH {
                return Err(format!(
                    "a pax {what} record of {} bytes, more than the {} Linux allows (PATH_MAX \
                     less its NUL)",
                    value.len(),
                    limits::MAX_PATH
                ));
            }
        }
        fields.records = records;
        Ok(fields)
    }

    /// Sets what the records say of `meta`: xattrs, times, owner.
    fn apply(&self, meta: &mut EntryMeta) -> Result<(), String> {
        for &(key, value) in &self.records {
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                check_xattr(name, value)?;
                meta.xattrs.push((name.to_vec(), value.to_vec()));
            } else if key.starts_with(b"GNU.sparse.") {
                return Err("pax sparse files are not supported".into());
            } else {
                let number = || std::str::from_utf8(value).ok().and_then(|v| v.parse::<u32>().ok());
                match key {
                    b"mtime" => meta.mtime = pax_time(value).ok_or("bad pax mtime")?,
                    b"atime" => meta.atime = pax_time(value),
                    b"ctime" => meta.ctime = pax_time(value),
                    b"uid" => meta.uid = number().ok_or("bad pax uid")?,
                    b"gid" => meta.gid = number().ok_or("bad pax gid")?,
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// A GNU long name or link body without its terminating NUL (and any padding after it).
fn trim_nuls(body: &[u8]) -> &[u8] {
    let end = body.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    &body[..end]
}

/// Turns a tar entry, with the bodies of the extension headers before it, into a
/// [`LayerEntry`]; `None` for entries that carry nothing (pax global headers).
///
/// The name is the GNU long name, else the pax `path`, else the header's (ustar prefix and
/// name); the link target likewise from the GNU long link, `linkpath` or the header: the order
/// of GNU tar, Go's `archive/tar` and the `tar` crate. Each is checked against [`crate::limits`].
fn convert<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    bodies: &ExtBodies,
    index: u64,
    layer: &str,
) -> Result<Option<LayerEntry>, Error> {
    let header = entry.header();
    let entry_type = header.entry_type();
    if entry_type == tar::EntryType::XGlobalHeader {
        return Ok(None);
    }
    let fail = |path: &[u8], reason: String| Error::Entry {
        layer: layer.to_owned(),
        entry: shown(path),
        reason,
    };
    let recorded = header.path_bytes();
    let pax = PaxFields::parse(bodies.pax.as_deref()).map_err(|why| fail(&recorded, why))?;
    let path = match (&bodies.long_name, pax.path) {
        (Some(long), _) => trim_nuls(long).to_vec(),
        (None, Some(pax)) => pax.to_vec(),
        (None, None) => recorded.into_owned(),
    };
    let bad = |reason: String| fail(&path, reason);
    check_path("path", &path).map_err(bad)?;
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
    let kind = match entry_type {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            EntryKind::File
        }
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink | tar::EntryType::Link => {
            let target = match (&bodies.long_link, pax.link) {
                (Some(long), _) => trim_nuls(long).to_vec(),
                (None, Some(pax)) => pax.to_vec(),
                (None, None) => header
                    .link_name_bytes()
                    .ok_or_else(|| bad("link without a target".into()))?
                    .into_owned(),
            };
            if entry_type == tar::EntryType::Symlink {
                check_symlink(&target).map_err(bad)?;
                EntryKind::Symlink(target)
            } else {
                check_path("hard link target", &target).map_err(bad)?;
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
        other => {
            return Err(bad(format!("unsupported tar entry type {:?}", other.as_byte() as char)));
        }
    };
    if let Some(value) = pax.size {
        let size = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| bad("bad pax size".into()))?;
        // The tar crate found the next header by the size it read; it must be this one.
        if entry_type != tar::EntryType::GNUSparse && size != entry.size() {
            return Err(bad(format!(
                "pax size {size} is not the {} bytes the tar reader used (it cannot parse a \
                 record before it)",
                entry.size()
            )));
        }
    }
    pax.apply(&mut meta).map_err(bad)?;
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

    /// The path of the blob of `image`'s first layer in the layout under `dir`.
    fn blob_path(dir: &tempfile::TempDir, image: &Image) -> std::path::PathBuf {
        let digest = image.layers[0].digest.unwrap().0.to_string();
        dir.path().join("oci/blobs/sha256").join(digest.trim_start_matches("sha256:"))
    }

    /// Flips one byte of a file.
    fn flip(path: &std::path::Path, at: usize) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at] ^= 0x55;
        std::fs::write(path, &bytes).unwrap();
    }

    /// A reread visits entries up to `last` only, for every compression. After a first read
    /// it proves every block it reads against that read's proof (here the blob is one block,
    /// so a byte changed after the last entry wanted fails it); without one it checks the
    /// blob digest over the whole blob.
    #[test]
    fn a_reread_stops_after_the_last_entry_and_proves_what_it_read() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let (dir, image) = layout(compression);
            // No first read: the blob digest, over every byte.
            assert_eq!(paths_visited(&image, 0).unwrap(), vec![b"etc/hostname".to_vec()]);
            image.read_layer(&image.layers[0], |_, _| -> Result<(), Error> { Ok(()) }).unwrap();
            assert_eq!(paths_visited(&image, 0).unwrap(), vec![b"etc/hostname".to_vec()]);
            assert_eq!(paths_visited(&image, 1).unwrap().len(), 2);
            let blob = blob_path(&dir, &image);
            let len = std::fs::metadata(&blob).unwrap().len();
            flip(&blob, usize::try_from(len).unwrap() - 2000);
            let err = paths_visited(&image, 0).unwrap_err().to_string();
            assert!(err.contains("changed since it was first read: bytes 0.."), "{err}");
            let fresh = Image::open(&image_source(&dir)).unwrap();
            let err = paths_visited(&fresh, 0).unwrap_err();
            assert!(
                matches!(&err, Error::DigestMismatch { kind: "digest", .. }),
                "{compression:?}: {err}"
            );
        }
    }

    fn image_source(dir: &tempfile::TempDir) -> crate::ImageSource {
        let path = Utf8PathBuf::try_from(dir.path().join("oci")).unwrap();
        crate::ImageSource::OciDir { path, reference: Some("latest".into()) }
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
                    _ => xspack_testkit::noise(i, 500_000),
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
        let first_read = image.first_read(&image.layers[0]).expect("a first read");
        let index = first_read.index.as_ref().expect("an index");
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
        // A change in a block a reread needs fails it, naming the block; one in a block past
        // everything it needs does not matter, and is not even read.
        let len = std::fs::metadata(blob_path(&dir, &image)).unwrap().len();
        // Far past what the reader can run ahead of the parser (a few segments).
        assert!(len > 10 * crate::proof::BLOCK as u64, "{len} bytes");
        flip(&blob_path(&dir, &image), usize::try_from(len).unwrap() - 10);
        assert_eq!(entries_read(&image, Some(3)).unwrap(), first[..4]);
        let err = entries_read(&image, Some(47)).unwrap_err().to_string();
        let last_block = (len - 1) / crate::proof::BLOCK as u64 * crate::proof::BLOCK as u64;
        assert!(err.contains(&format!("bytes {last_block}..{len} differ")), "{err}");
        flip(&blob_path(&dir, &image), usize::try_from(len).unwrap() - 10);
        entries_read(&image, Some(47)).unwrap();
        flip(&blob_path(&dir, &image), usize::try_from(len / 2).unwrap());
        let err = entries_read(&image, Some(47)).unwrap_err().to_string();
        assert!(err.contains("changed since it was first read"), "{err}");
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
