//! Rereading a gzip layer on every core: the stretches between the seek index's access points
//! are decoded on their own threads (at most `MAX_SEGMENT_WORKERS`), and [`SegmentReader`]
//! hands their output to the tar parser in order.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read, Seek};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, PoisonError};

use xspack_gzseek::{SeekIndex, Segment};

use super::stream::{BlobRead, StoredTap};

/// The most threads decoding segments of a seek-indexed layer at once (each holds a segment
/// of about [`xspack_gzseek::SPACING`] bytes, as does each one ready for the parser).
pub(crate) const MAX_SEGMENT_WORKERS: usize = 8;

/// Emptied output pieces kept for reuse: about as many as the segments in flight hold, so
/// pieces freed on one thread are not allocated anew on another (which fragments the heap).
pub(crate) const PIECE_POOL: usize = 24;

/// Segment input buffers kept for reuse.
pub(crate) const INPUT_POOL: usize = 3;

/// Buffers handed between the reader, the decoding threads and the parser, for reuse.
#[derive(Default)]
pub(crate) struct Pools {
    pub(crate) pieces: Mutex<Vec<Vec<u8>>>,
    pub(crate) inputs: Mutex<Vec<Vec<u8>>>,
}

/// Where the reader hands segments: their outputs' receivers to the parser in order, the jobs
/// to the decoding threads.
pub(crate) struct SegmentSink<'a> {
    pub(crate) order: SyncSender<Receiver<Decoded>>,
    pub(crate) jobs: SyncSender<SegmentJob>,
    pub(crate) pool: &'a Pools,
}

/// What became of a segment.
pub(crate) enum SegmentOutput {
    /// Its output, in pieces.
    Pieces(Vec<Vec<u8>>),
    /// Not decoded: it lies wholly in a stretch the parser skips. Its length.
    Skipped(u64),
}

/// A decoded segment, or why it would not decode.
pub(crate) type Decoded = io::Result<SegmentOutput>;

/// One segment to decode, with its stored bytes and where its output goes.
pub(crate) struct SegmentJob {
    pub(crate) segment: Segment,
    pub(crate) input: Vec<u8>,
    pub(crate) done: SyncSender<Decoded>,
}

/// Reads the blob in chunks through `tap`, which proves them against the first read, and cuts
/// the stored bytes of each segment of `index` out of them for the decoding threads: once a
/// segment's bytes are proven, the receiver of its output goes to the parser in order, the
/// job to whichever thread is free. Reading stops once the parser has.
pub(crate) fn read_blob_segments(
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
pub(crate) fn decode_segments(
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
pub(crate) struct SegmentReader<'a> {
    pub(crate) order: Receiver<Receiver<Decoded>>,
    pub(crate) pieces: std::vec::IntoIter<Vec<u8>>,
    pub(crate) current: Vec<u8>,
    pub(crate) at: usize,
    pub(crate) pool: &'a Pools,
    /// Output offset of `current[at]`.
    pub(crate) pos: u64,
    /// Bytes to drop from `pos` on before handing any out.
    pub(crate) skip: u64,
    /// Shared with the decoding threads: where the stream is skipped to.
    pub(crate) skip_to: &'a AtomicU64,
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
