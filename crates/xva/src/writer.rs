//! The XVA writer: a forward-only tar stream, one 1 MiB chunk in memory at a time.
//!
//! Member order and names follow xapi's own exporter (`xapi-project/xen-api:ocaml/xapi/`
//! `stream_vdi.ml` `send_one`): `ova.xml`, then each disk in VDI-id string order as `Ref:N/%08d` chunks, each immediately
//! followed by its checksum member. All-zero chunks are left out, except each disk's first and
//! last, which xapi and xva-img need. Headers are ustar, and the archive ends with two zero
//! blocks.

use std::fmt;
use std::io::{self, BufWriter, Read, Write};

use camino::{Utf8Path, Utf8PathBuf};
use xspack_io::{AtomicFile, BUFFER_SIZE, NoProgress, Progress, ProgressTask, ProgressUnit};

use crate::ova::{stream_order, vdi_ref};
use crate::tar::{BLOCK, MAX_OCTAL_11, padding, ustar_header};
use crate::{CHUNK_SIZE, ChecksumKind, Error, OVA_XML, VmSpec};

/// 1 MiB of zeros, to test chunks against (slice equality compiles to `memcmp`, fast even in
/// unoptimised builds) and to fill gaps when reading.
pub(crate) static ZERO_CHUNK: [u8; CHUNK] = [0; CHUNK];
pub(crate) const CHUNK: usize = 1 << 20;
const _: () = assert!(CHUNK as u64 == CHUNK_SIZE);

/// How to write an XVA.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct XvaOptions<'a> {
    /// Which checksum member follows each chunk. Keep the default SHA-1 `.checksum` unless
    /// every target host runs xapi v1.170 or later (`stream_vdi.ml` `verify_inline_checksum`).
    pub checksum: ChecksumKind,
    /// Modification time of every member, in seconds since the epoch; pass
    /// `SOURCE_DATE_EPOCH` for reproducible output. At most `0o77777777777`.
    pub mtime: u64,
    /// [`write_xva_file`] only: replace an existing file instead of failing.
    pub replace: bool,
    /// Where to report progress: one task counting the disks' bytes.
    pub progress: &'a dyn Progress,
}

impl Default for XvaOptions<'_> {
    fn default() -> Self {
        XvaOptions { checksum: ChecksumKind::Sha1, mtime: 0, replace: false, progress: &NoProgress }
    }
}

impl fmt::Debug for XvaOptions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XvaOptions")
            .field("checksum", &self.checksum)
            .field("mtime", &self.mtime)
            .field("replace", &self.replace)
            .finish_non_exhaustive()
    }
}

impl<'a> XvaOptions<'a> {
    /// Sets [`XvaOptions::checksum`].
    #[must_use]
    pub fn with_checksum(mut self, checksum: ChecksumKind) -> Self {
        self.checksum = checksum;
        self
    }

    /// Sets [`XvaOptions::mtime`].
    #[must_use]
    pub fn with_mtime(mut self, mtime: u64) -> Self {
        self.mtime = mtime;
        self
    }

    /// Sets [`XvaOptions::replace`].
    #[must_use]
    pub fn with_replace(mut self, replace: bool) -> Self {
        self.replace = replace;
        self
    }

    /// Sets [`XvaOptions::progress`].
    #[must_use]
    pub fn with_progress(mut self, progress: &'a dyn Progress) -> Self {
        self.progress = progress;
        self
    }
}

/// Writes the XVA of `spec` to `out` and returns it. `disks[i]` yields the raw bytes of
/// `spec.disks[i]`: exactly its `virtual_size` bytes, which must be a positive multiple of
/// 2 MiB ([`crate::DISK_ALIGNMENT`]). Nothing is buffered beyond one chunk.
pub fn write_xva<W: Write, R: Read>(
    mut out: W,
    spec: &VmSpec,
    disks: &mut [R],
    opts: &XvaOptions<'_>,
) -> Result<W, Error> {
    let xml = spec.to_ova_xml()?;
    if disks.len() != spec.disks.len() {
        return Err(Error::DiskCount { expected: spec.disks.len(), got: disks.len() });
    }
    if opts.mtime > MAX_OCTAL_11 {
        return Err(Error::spec("options.mtime", "does not fit the 11 octal digits of tar"));
    }
    let total = spec.disks.iter().map(|d| d.virtual_size).sum();
    let task = opts.progress.task("writing XVA", Some(total), ProgressUnit::Bytes);
    let mut w = MemberWriter { out: &mut out, mtime: opts.mtime, kind: opts.checksum };
    w.member(OVA_XML, xml.as_bytes())?;
    let ids: Vec<String> = (0..spec.disks.len()).map(vdi_ref).collect();
    let mut buf = vec![0u8; CHUNK];
    for i in stream_order(&ids) {
        let size = spec.disks[i].virtual_size;
        w.disk(i, &ids[i], size, &mut disks[i], &mut buf, task.as_ref())?;
    }
    out.write_all(&[0u8; 2 * BLOCK]).map_err(Error::Write)?;
    out.flush().map_err(Error::Write)?;
    task.finish();
    Ok(out)
}

/// [`write_xva`] into a file that appears at `path` complete or not at all. Fails if `path`
/// exists unless [`XvaOptions::replace`] is set. Returns the final path.
pub fn write_xva_file<R: Read>(
    path: &Utf8Path,
    spec: &VmSpec,
    disks: &mut [R],
    opts: &XvaOptions<'_>,
) -> Result<Utf8PathBuf, Error> {
    let file =
        if opts.replace { AtomicFile::create_or_replace(path)? } else { AtomicFile::create(path)? };
    let io_err = |source| Error::Io(xspack_io::IoError::new("writing", path, source));
    let out = write_xva(BufWriter::with_capacity(BUFFER_SIZE, file), spec, disks, opts)
        .map_err(|e| if let Error::Write(source) = e { io_err(source) } else { e })?;
    let file = out.into_inner().map_err(|e| io_err(e.into_error()))?;
    Ok(file.commit()?)
}

struct MemberWriter<'w, W> {
    out: &'w mut W,
    mtime: u64,
    kind: ChecksumKind,
}

impl<W: Write> MemberWriter<'_, W> {
    fn member(&mut self, name: &str, data: &[u8]) -> Result<(), Error> {
        let header = ustar_header(name, data.len() as u64, self.mtime);
        self.out.write_all(&header).map_err(Error::Write)?;
        self.out.write_all(data).map_err(Error::Write)?;
        let pad = padding(data.len() as u64);
        self.out.write_all(&ZERO_CHUNK[..pad]).map_err(Error::Write)
    }

    fn disk(
        &mut self,
        index: usize,
        id: &str,
        size: u64,
        src: &mut impl Read,
        buf: &mut [u8],
        task: &dyn ProgressTask,
    ) -> Result<(), Error> {
        let chunks = size / CHUNK_SIZE; // size is a multiple of 2 MiB (validated).
        for chunk in 0..chunks {
            let got = xspack_io::read_full(src, buf)
                .map_err(|source| Error::ReadDisk { disk: index, source })?;
            if got < CHUNK {
                let got = chunk * CHUNK_SIZE + got as u64;
                return Err(Error::DiskTooShort { disk: index, expected: size, got });
            }
            task.advance(CHUNK_SIZE);
            self.chunk(id, chunk, chunks, buf)?;
        }
        let mut probe = [0u8; 1];
        match xspack_io::read_full(src, &mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Error::DiskTooLong { disk: index, expected: size }),
            Err(source) => Err(Error::ReadDisk { disk: index, source }),
        }
    }
}

impl<W: Write> MemberWriter<'_, W> {
    /// Writes chunk `chunk` of `chunks` of disk `id` and its checksum, unless it is all zeros
    /// and neither the disk's first nor its last chunk (`stream_vdi.ml` `send_one`, `recv_all_vdi`).
    fn chunk(&mut self, id: &str, chunk: u64, chunks: u64, buf: &[u8]) -> Result<(), Error> {
        if chunk != 0 && chunk != chunks - 1 && buf[..] == ZERO_CHUNK[..] {
            return Ok(());
        }
        let name = format!("{id}/{chunk:08}");
        self.member(&name, buf)?;
        let sum = self.kind.compute(buf);
        self.member(&format!("{name}.{}", self.kind.suffix()), sum.as_bytes())
    }
}

/// An XVA written in one forward pass from its disks' raw bytes, written into it as a
/// [`Write`]: the disks one after the other, in stream order (by VDI id as strings, `stream_vdi.ml` `vdi_ordering`; for
/// one disk, just that disk). The output is the same as [`write_xva`]'s for the same bytes, and
/// memory is one 1 MiB chunk. [`XvaStream::finish`] checks that every disk was written whole.
pub struct XvaStream<W: Write> {
    out: W,
    mtime: u64,
    kind: ChecksumKind,
    /// (VDI id, chunks, index in the spec) of each disk, in stream order.
    disks: Vec<(String, u64, usize)>,
    /// Position in `disks`, and chunk index within that disk.
    disk: usize,
    chunk: u64,
    buf: Vec<u8>,
    task: Box<dyn ProgressTask>,
}

impl<W: Write> XvaStream<W> {
    /// Writes `ova.xml` for `spec` to `out` and returns the stream that takes the disks'
    /// bytes. [`XvaOptions::replace`] does not apply.
    pub fn new(mut out: W, spec: &VmSpec, opts: &XvaOptions<'_>) -> Result<Self, Error> {
        let xml = spec.to_ova_xml()?;
        if opts.mtime > MAX_OCTAL_11 {
            return Err(Error::spec("options.mtime", "does not fit the 11 octal digits of tar"));
        }
        let total = spec.disks.iter().map(|d| d.virtual_size).sum();
        let task = opts.progress.task("writing XVA", Some(total), ProgressUnit::Bytes);
        MemberWriter { out: &mut out, mtime: opts.mtime, kind: opts.checksum }
            .member(OVA_XML, xml.as_bytes())?;
        let ids: Vec<String> = (0..spec.disks.len()).map(vdi_ref).collect();
        let disks = stream_order(&ids)
            .into_iter()
            .map(|i| (ids[i].clone(), spec.disks[i].virtual_size / CHUNK_SIZE, i))
            .collect();
        Ok(XvaStream {
            out,
            mtime: opts.mtime,
            kind: opts.checksum,
            disks,
            disk: 0,
            chunk: 0,
            buf: Vec::with_capacity(CHUNK),
            task,
        })
    }

    /// Checks that every disk was written whole, ends the archive and returns the output.
    pub fn finish(mut self) -> Result<W, Error> {
        if self.disk < self.disks.len() {
            let (_, chunks, disk) = self.disks[self.disk];
            return Err(Error::DiskTooShort {
                disk,
                expected: chunks * CHUNK_SIZE,
                got: self.chunk * CHUNK_SIZE + self.buf.len() as u64,
            });
        }
        self.out.write_all(&[0u8; 2 * BLOCK]).map_err(Error::Write)?;
        self.out.flush().map_err(Error::Write)?;
        self.task.finish();
        Ok(self.out)
    }

    /// The output, for callers that need to look at it while writing.
    pub fn get_ref(&self) -> &W {
        &self.out
    }
}

impl<W: Write> Write for XvaStream<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some((id, chunks, _)) = self.disks.get(self.disk) else {
            return if data.is_empty() {
                Ok(0)
            } else {
                let (_, chunks, disk) =
                    self.disks.last().map_or((String::new(), 0, 0), Clone::clone);
                Err(io::Error::other(Error::DiskTooLong { disk, expected: chunks * CHUNK_SIZE }))
            };
        };
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            let mut w = MemberWriter { out: &mut self.out, mtime: self.mtime, kind: self.kind };
            w.chunk(id, self.chunk, *chunks, &self.buf).map_err(|e| match e {
                Error::Write(e) => e,
                e => io::Error::other(e),
            })?;
            self.task.advance(CHUNK_SIZE);
            self.buf.clear();
            self.chunk += 1;
            if self.chunk == *chunks {
                self.disk += 1;
                self.chunk = 0;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DISK_ALIGNMENT, DiskSpec, Uuid};

    fn spec(sizes: &[u64]) -> VmSpec {
        let mut spec = VmSpec::new("t", Uuid::from_seed(b"vm"));
        spec.sr_uuid = Uuid::from_seed(b"sr");
        for (i, &size) in sizes.iter().enumerate() {
            let seed = |role: &str| Uuid::from_seed(format!("{role}{i}").as_bytes());
            spec.disks.push(DiskSpec::new(size, seed("vdi"), seed("vbd")));
        }
        spec
    }

    /// Member names of a tar stream, read by walking the headers.
    fn names(tar: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut pos = 0;
        while tar[pos] != 0 {
            let block: &[u8; BLOCK] = tar[pos..pos + BLOCK].try_into().unwrap();
            let h = crate::tar::parse_header(block).unwrap();
            out.push(h.name);
            pos += BLOCK + usize::try_from(h.size).unwrap() + padding(h.size);
        }
        assert!(tar[pos..].iter().all(|&b| b == 0));
        assert_eq!(tar.len() - pos, 2 * BLOCK);
        out
    }

    #[test]
    fn elides_inner_zero_chunks_only() {
        let size = 2 * DISK_ALIGNMENT;
        let xva = write_xva(
            Vec::new(),
            &spec(&[size]),
            &mut [io::repeat(0).take(size)],
            &XvaOptions::default(),
        )
        .unwrap();
        assert_eq!(
            names(&xva)[1..],
            [
                "Ref:3/00000000",
                "Ref:3/00000000.checksum",
                "Ref:3/00000003",
                "Ref:3/00000003.checksum"
            ]
        );
    }

    #[test]
    fn streams_disks_in_id_string_order() {
        // Disk 3 has VDI id Ref:9, disk 4 has Ref:11, which sorts before Ref:3.
        let sizes = [DISK_ALIGNMENT; 5];
        let mut inputs: Vec<_> = sizes.iter().map(|&s| io::repeat(1).take(s)).collect();
        let opts = XvaOptions::default().with_checksum(ChecksumKind::Xxh64);
        let xva = write_xva(Vec::new(), &spec(&sizes), &mut inputs, &opts).unwrap();
        let dirs: Vec<String> = names(&xva)
            .iter()
            .filter(|n| n.ends_with("00000000"))
            .map(|n| n.split('/').next().unwrap().to_owned())
            .collect();
        assert_eq!(dirs, ["Ref:11", "Ref:3", "Ref:5", "Ref:7", "Ref:9"]);
        assert!(names(&xva).iter().any(|n| n.ends_with(".xxhash")));
    }

    #[test]
    fn stream_writes_the_same_bytes_as_write_xva() {
        let sizes =
            [2 * DISK_ALIGNMENT, DISK_ALIGNMENT, DISK_ALIGNMENT, DISK_ALIGNMENT, CHUNK_SIZE * 6];
        let disks: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let mut d = vec![0u8; usize::try_from(s).unwrap()];
                d[i * 1000 + 3] = 1;
                d[CHUNK + 1] = u8::try_from(i).unwrap();
                d
            })
            .collect();
        let spec = spec(&sizes);
        let opts = XvaOptions::default().with_mtime(1_700_000_000);
        let mut inputs: Vec<&[u8]> = disks.iter().map(Vec::as_slice).collect();
        let want = write_xva(Vec::new(), &spec, &mut inputs, &opts).unwrap();
        let mut stream = XvaStream::new(Vec::new(), &spec, &opts).unwrap();
        let ids: Vec<String> = (0..sizes.len()).map(vdi_ref).collect();
        let all: Vec<u8> = stream_order(&ids).into_iter().flat_map(|i| disks[i].clone()).collect();
        for piece in all.chunks(300_001) {
            stream.write_all(piece).unwrap();
        }
        assert!(stream.write_all(&[0]).is_err(), "past the last disk");
        assert!(stream.finish().unwrap() == want);

        let mut short = XvaStream::new(Vec::new(), &spec, &opts).unwrap();
        short.write_all(&all[..CHUNK + 5]).unwrap();
        assert!(matches!(short.finish(), Err(Error::DiskTooShort { .. })));
    }

    #[test]
    fn input_length_must_match() {
        let spec = spec(&[DISK_ALIGNMENT]);
        let short = write_xva(
            Vec::new(),
            &spec,
            &mut [io::repeat(1).take(DISK_ALIGNMENT - 1)],
            &XvaOptions::default(),
        );
        assert!(
            matches!(short, Err(Error::DiskTooShort { disk: 0, got, .. }) if got == DISK_ALIGNMENT - 1)
        );
        let long = write_xva(
            Vec::new(),
            &spec,
            &mut [io::repeat(1).take(DISK_ALIGNMENT + 1)],
            &XvaOptions::default(),
        );
        assert!(matches!(long, Err(Error::DiskTooLong { disk: 0, .. })));
        let none: &mut [io::Empty] = &mut [];
        assert!(matches!(
            write_xva(Vec::new(), &spec, none, &XvaOptions::default()),
            Err(Error::DiskCount { .. })
        ));
    }

    #[test]
    fn refuses_unaligned_sizes_and_huge_mtime() {
        let bad =
            write_xva(Vec::new(), &spec(&[CHUNK_SIZE]), &mut [io::empty()], &XvaOptions::default());
        assert!(
            matches!(bad, Err(Error::InvalidSpec { field, .. }) if field == "disks[0].virtual_size")
        );
        let opts = XvaOptions::default().with_mtime(MAX_OCTAL_11 + 1);
        let bad = write_xva(Vec::new(), &spec(&[]), &mut [] as &mut [io::Empty], &opts);
        assert!(matches!(bad, Err(Error::InvalidSpec { field, .. }) if field == "options.mtime"));
    }
}
