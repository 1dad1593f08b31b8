//! XVA archives: the format of XenServer's `xe vm-export` and `xe vm-import`.
//!
//! An XVA is an uncompressed tar stream: `ova.xml` (the VM's metadata as an XML-RPC value), then
//! for each disk a run of 1 MiB chunks named `Ref:N/%08d`, each followed by its `.checksum`.
//! The rules are those of xapi's exporter and importer (`xapi-project/xen-api`:
//! `ocaml/xapi/export.ml`, `import.ml` `with_open_archive` and `stream_import`,
//! `stream_vdi.ml` `send_one` and `recv_all_vdi`), of its tar library (`mirage/ocaml-tar` 2.x
//! `Header.unmarshal`), and of xva-img (`eriklax/xva-img:src/disk.cpp`).
//!
//! - [`VmSpec`] describes the VM (or template) and its disks; [`VmSpec::to_ova_xml`] renders
//!   `ova.xml` and [`VmSpec::from_ova_xml`] parses one back.
//! - [`write_xva`] streams an archive forward-only into any [`std::io::Write`], one chunk in
//!   memory at a time; [`write_xva_file`] does the same into an atomic output file, and
//!   [`XvaStream`] takes the disks' bytes written into it instead of read from readers.
//! - [`XvaReader`] refuses everything xapi's import refuses while streaming the disks back as raw bytes,
//!   and [`XvaReader::finish`] reports an [`XvaSummary`].
//!
//! ```
//! use std::io::Cursor;
//! use xspack_xva::{DiskSpec, Uuid, VmSpec, XvaOptions, XvaReader, write_xva, DISK_ALIGNMENT};
//!
//! let mut spec = VmSpec::new("demo", Uuid::from_seed(b"vm"));
//! spec.sr_uuid = Uuid::from_seed(b"sr");
//! spec.disks.push(DiskSpec::new(DISK_ALIGNMENT, Uuid::from_seed(b"vdi"), Uuid::from_seed(b"vbd")));
//! let raw = vec![7u8; DISK_ALIGNMENT as usize];
//! let xva = write_xva(Vec::new(), &spec, &mut [&raw[..]], &XvaOptions::default())?;
//!
//! let mut reader = XvaReader::new(Cursor::new(xva))?;
//! let mut back = Vec::new();
//! while reader.next_disk()?.is_some() {
//!     reader.copy_disk(&mut back)?;
//! }
//! assert_eq!(back, raw);
//! assert_eq!(reader.finish()?.disks[0].chunks, 2);
//! # Ok::<(), xspack_xva::Error>(())
//! ```

mod checksum;
mod error;
mod ova;
mod reader;
mod spec;
mod tar;

mod writer;
mod xmlrpc;

pub use checksum::ChecksumKind;
pub use error::Error;
pub use reader::{
    DiskInfo, DiskReader, DiskSummary, MAX_OVA_XML, XvaReader, XvaSummary, summarize_xva_file,
};
pub use spec::{BootMode, DiskSpec, Memory, VdiType, VmSpec};
pub use writer::{XvaOptions, XvaStream, write_xva, write_xva_file};
pub use xspack_io::{ParseUuidError, Uuid};

/// Size of a disk chunk member: every chunk but a disk's last is exactly this long (`stream_vdi.ml` `send_one`, `recv_all_vdi`).
pub const CHUNK_SIZE: u64 = 1024 * 1024;

/// The writer's rule for disk sizes: a positive multiple of 2 MiB, because SM rounds VDI sizes
/// up to 2 MiB and an unaligned size would change on import (`xapi-project/sm:libs/sm/vhdutil.py`, `VHD_BLOCK_SIZE`).
pub const DISK_ALIGNMENT: u64 = 2 * 1024 * 1024;

/// Largest disk the writer accepts: SM caps VHD-backed VDIs at 2040 GiB (`xapi-project/sm:libs/sm/vhdutil.py`, `MAX_VHD_SIZE`).
pub const MAX_DISK_SIZE: u64 = 2040 * 1024 * 1024 * 1024;

/// Name of the first member of every XVA (ocaml-tar, `import.ml` `assert_filename_is`).
pub const OVA_XML: &str = "ova.xml";
