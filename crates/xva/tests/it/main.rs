//! Integration tests of xspack-xva: oracle round trips through GNU tar and xva-img, one
//! hand-broken archive per reader rule, property round trips, the golden `ova.xml`, and a sparse
//! 20 GiB disk.
//!
//! The oracles are installed by `scripts/oracles`; a missing tool fails the test.

mod broken;
mod golden;
mod limits;
mod oracle;
mod props;
mod sparse;
mod xapi_model;
mod xva_diff;

use std::io::{self, Cursor, Read};

use xspack_xva::{
    ChecksumKind, DISK_ALIGNMENT, DiskSpec, Error, Uuid, VmSpec, XvaOptions, XvaReader, XvaSummary,
    write_xva,
};

/// A spec named `name` with one disk per entry of `sizes` and an empty CD drive; every UUID is
/// derived from `name` and the object's role.
pub fn spec(name: &str, sizes: &[u64]) -> VmSpec {
    let uuid = |role: &str| Uuid::from_seed(format!("{name}/{role}").as_bytes());
    let mut spec = VmSpec::new(name, uuid("vm"));
    spec.sr_uuid = uuid("sr");
    spec.cd_drive = Some(uuid("cd"));
    for (i, &size) in sizes.iter().enumerate() {
        let mut disk = DiskSpec::new(size, uuid(&format!("vdi{i}")), uuid(&format!("vbd{i}")));
        disk.name = format!("disk {i}");
        disk.bootable = i == 0;
        spec.disks.push(disk);
    }
    spec
}

/// A disk of `size` bytes whose bytes in `regions` (offset, length) are a position-dependent
/// pattern and zero elsewhere. Reading it allocates nothing, so it can stand for a 20 GiB disk.
pub struct SparseDisk {
    size: u64,
    pos: u64,
    regions: Vec<(u64, u64)>,
    pattern: std::sync::Arc<Vec<u8>>,
}

/// Length of the repeating data pattern; odd, so chunks at different offsets differ.
const PATTERN_LEN: usize = (1 << 20) + 4093;

impl SparseDisk {
    /// A disk with data in `regions`, sorted and non-overlapping.
    pub fn new(size: u64, regions: &[(u64, u64)]) -> SparseDisk {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let pattern = (0..PATTERN_LEN)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Never zero, so a data region never looks elidable.
                (state >> 56) as u8 | 1
            })
            .collect();
        SparseDisk {
            size,
            pos: 0,
            regions: regions.to_vec(),
            pattern: std::sync::Arc::new(pattern),
        }
    }

    /// The whole disk in memory (for small disks).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut copy = SparseDisk { pos: 0, ..self.clone() };
        let mut out = Vec::new();
        copy.read_to_end(&mut out).unwrap();
        out
    }
}

impl Clone for SparseDisk {
    fn clone(&self) -> Self {
        SparseDisk {
            size: self.size,
            pos: self.pos,
            regions: self.regions.clone(),
            pattern: self.pattern.clone(),
        }
    }
}

impl Read for SparseDisk {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.size - self.pos;
        let mut n = usize::try_from(left.min(buf.len() as u64)).unwrap();
        if n == 0 {
            return Ok(0);
        }
        let region = self.regions.iter().find(|(off, len)| off + len > self.pos);
        match region {
            Some(&(off, len)) if off <= self.pos => {
                n = n.min(usize::try_from(off + len - self.pos).unwrap());
                let mut done = 0;
                while done < n {
                    let p = usize::try_from((self.pos + done as u64) % PATTERN_LEN as u64).unwrap();
                    let take = (n - done).min(PATTERN_LEN - p);
                    buf[done..done + take].copy_from_slice(&self.pattern[p..p + take]);
                    done += take;
                }
            }
            Some(&(off, _)) => {
                n = n.min(usize::try_from(off - self.pos).unwrap());
                buf[..n].fill(0);
            }
            None => buf[..n].fill(0),
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Writes the XVA of `spec` with `disks` into memory.
pub fn write(spec: &VmSpec, disks: &[Vec<u8>], checksum: ChecksumKind) -> Vec<u8> {
    let mut inputs: Vec<&[u8]> = disks.iter().map(Vec::as_slice).collect();
    let opts = XvaOptions::default().with_checksum(checksum).with_mtime(1_700_000_000);
    write_xva(Vec::new(), spec, &mut inputs, &opts).unwrap()
}

/// Reads an XVA completely, returning every disk (in spec order) and the summary.
pub fn read_all(xva: &[u8]) -> Result<(Vec<Vec<u8>>, XvaSummary), Error> {
    let mut reader = XvaReader::new(Cursor::new(xva))?;
    let mut disks = vec![Vec::new(); reader.spec().disks.len()];
    while let Some(info) = reader.next_disk()? {
        reader.copy_disk(&mut disks[info.index])?;
    }
    Ok((disks, reader.finish()?))
}

/// The standard test VM: disk 0 is 4 MiB with data in chunks 0, 1 and 3 (chunk 2 is zero and
/// elided), disk 1 is 2 MiB of data.
pub fn standard() -> (VmSpec, Vec<Vec<u8>>) {
    let mib = 1 << 20;
    let d0 = SparseDisk::new(2 * DISK_ALIGNMENT, &[(100, mib), (3 * mib + 7, 1000)]).to_vec();
    let d1 = SparseDisk::new(DISK_ALIGNMENT, &[(0, DISK_ALIGNMENT)]).to_vec();
    (spec("standard", &[2 * DISK_ALIGNMENT, DISK_ALIGNMENT]), vec![d0, d1])
}

/// Runs `cmd`, failing the test (with its stderr) when it cannot start or exits non-zero.
pub fn run(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{cmd:?} could not run ({e}); install the oracles with scripts/oracles")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn round_trips_in_memory() {
    let (spec, disks) = standard();
    for kind in [ChecksumKind::Sha1, ChecksumKind::Xxh64] {
        let xva = write(&spec, &disks, kind);
        let (back, summary) = read_all(&xva).unwrap();
        assert_eq!(back, disks);
        assert_eq!(summary.name, "standard");
        assert_eq!(summary.archive_size, xva.len() as u64);
        let chunks: Vec<u64> = summary.disks.iter().map(|d| d.chunks).collect();
        assert_eq!(chunks, [3, 2]);
        assert!(summary.disks.iter().all(|d| d.checksum == kind));
        assert!(summary.cd_drive);
    }
}

#[test]
fn two_writes_are_byte_identical() {
    let (spec, disks) = standard();
    assert_eq!(write(&spec, &disks, ChecksumKind::Sha1), write(&spec, &disks, ChecksumKind::Sha1));
}

#[test]
fn disk_reader_and_skipping() {
    let (spec, disks) = standard();
    let xva = write(&spec, &disks, ChecksumKind::Sha1);
    let mut reader = XvaReader::new(Cursor::new(&xva)).unwrap();
    // Disk order in the archive is Ref:3 then Ref:5: read the first through io::Read in odd
    // sizes, skip the second (still verified), then finish.
    let info = reader.next_disk().unwrap().unwrap();
    assert_eq!((info.index, info.vdi_ref.as_str()), (0, "Ref:3"));
    let mut back = Vec::new();
    let mut piece = vec![0u8; 4099];
    loop {
        let n = reader.disk_reader().read(&mut piece).unwrap();
        if n == 0 {
            break;
        }
        back.extend_from_slice(&piece[..n]);
    }
    assert_eq!(back, disks[0]);
    assert_eq!(reader.next_disk().unwrap().unwrap().vdi_ref, "Ref:5");
    assert_eq!(reader.finish().unwrap().disks[1].chunks, 2);
}

#[test]
fn write_xva_file_is_atomic_and_summarized() {
    let dir = tempfile::tempdir().unwrap();
    let path = camino::Utf8PathBuf::from_path_buf(dir.path().join("vm.xva")).unwrap();
    let (spec, disks) = standard();
    let mut inputs: Vec<&[u8]> = disks.iter().map(Vec::as_slice).collect();
    let opts = XvaOptions::default();
    assert_eq!(xspack_xva::write_xva_file(&path, &spec, &mut inputs, &opts).unwrap(), path);
    let again = xspack_xva::write_xva_file(&path, &spec, &mut inputs, &opts);
    assert!(matches!(again, Err(Error::Output(xspack_io::Error::Exists { .. }))));
    let summary = xspack_xva::summarize_xva_file(&path).unwrap();
    assert_eq!(summary.disks.len(), 2);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    let missing = xspack_xva::summarize_xva_file(&path.with_file_name("nope.xva"));
    assert!(matches!(missing, Err(Error::Io(e)) if e.op == "opening"));
}
