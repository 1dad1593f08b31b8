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

mod entry;
mod segment;
mod stream;
mod tar;
#[cfg(test)]
mod tests;

pub use entry::{EntryKind, EntryMeta, LayerEntry, LayerSummary};
pub(crate) use stream::FirstRead;

use std::io::Read;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex, PoisonError};

use crate::{Error, Image, LayerInfo};

use segment::{
    MAX_SEGMENT_WORKERS, Pools, SegmentJob, SegmentReader, SegmentSink, decode_segments,
    read_blob_segments,
};
use stream::{Checks, PIPE_DEPTH, Produced, StoredTap, check_blob, produce, read_blob};
use tar::{TarStream, parse_tar};

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
