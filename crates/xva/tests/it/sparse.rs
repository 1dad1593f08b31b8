//! Sparseness at scale: a 20 GiB disk holding about 200 MiB of data gives an XVA of about
//! 200 MiB, written and read back as streams (no 20 GiB file is ever created).

use std::io::{self, BufReader, BufWriter, Read, Write};

use xspack_xva::{ChecksumKind, XvaOptions, XvaReader, write_xva};

use crate::{SparseDisk, spec};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A writer that checks what is written against a reference stream.
struct Compare<R> {
    reference: R,
    buf: Vec<u8>,
    compared: u64,
}

impl<R: Read> Write for Compare<R> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.resize(data.len(), 0);
        self.reference.read_exact(&mut self.buf)?;
        assert!(
            self.buf == data,
            "disk differs in the {} bytes at offset {}",
            data.len(),
            self.compared
        );
        self.compared += data.len() as u64;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn twenty_gib_disk_with_200_mib_of_data() {
    let size = 20 * GIB;
    // 100 regions of almost 2 MiB spread over the disk, each inside two chunks.
    let regions: Vec<(u64, u64)> =
        (0..100).map(|i| (i * 200 * MIB + 4096, 2 * MIB - 8192)).collect();
    let disk = SparseDisk::new(size, &regions);
    let spec = spec("sparse", &[size]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.xva");
    let file = std::fs::File::create(&path).unwrap();
    let opts = XvaOptions::default().with_checksum(ChecksumKind::Sha1);
    let out = write_xva(BufWriter::new(file), &spec, &mut [disk.clone()], &opts).unwrap();
    out.into_inner().unwrap().sync_all().unwrap();

    let len = std::fs::metadata(&path).unwrap().len();
    // 200 data chunks (1 MiB each, chunk 0 among them), the last chunk, and headers.
    assert!((201 * MIB..202 * MIB).contains(&len), "XVA is {len} bytes");

    let mut reader = XvaReader::new(BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();
    reader.next_disk().unwrap().unwrap();
    let mut compare = Compare { reference: disk, buf: Vec::new(), compared: 0 };
    assert_eq!(reader.copy_disk(&mut compare).unwrap(), size);
    let summary = reader.finish().unwrap();
    assert_eq!(summary.disks[0].chunks, 201);
    assert_eq!(summary.disks[0].virtual_size, size);
}
