//! The crate's error type. Archive errors name the tar member they concern, ova.xml errors the
//! object and field, so a message alone says what to look at.

/// Errors from building, writing and reading XVAs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- Describing the VM -----
    /// A [`crate::VmSpec`] field holds a value that cannot be written or would fail the import.
    #[error("invalid VM spec: {field}: {reason}")]
    InvalidSpec {
        /// The field, e.g. `memory` or `disks[1].virtual_size`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The number of disk inputs differs from the number of disks in the spec.
    #[error("{got} disk inputs for a spec with {expected} disks")]
    DiskCount {
        /// Disks in the spec.
        expected: usize,
        /// Inputs given.
        got: usize,
    },
    /// A disk input ended before its `virtual_size`.
    #[error("disk {disk}: input ends after {got} of {expected} bytes")]
    DiskTooShort {
        /// Index of the disk in the spec.
        disk: usize,
        /// Declared size.
        expected: u64,
        /// Bytes read.
        got: u64,
    },
    /// A disk input has more bytes than its `virtual_size`.
    #[error("disk {disk}: input is longer than its virtual size of {expected} bytes")]
    DiskTooLong {
        /// Index of the disk in the spec.
        disk: usize,
        /// Declared size.
        expected: u64,
    },
    /// Reading a disk input failed.
    #[error("disk {disk}: reading the input")]
    ReadDisk {
        /// Index of the disk in the spec.
        disk: usize,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the archive stream failed.
    #[error("writing the XVA stream")]
    Write(#[source] std::io::Error),
    /// An operation on a file failed.
    #[error(transparent)]
    Io(#[from] xspack_io::IoError),
    /// Atomic output failed.
    #[error(transparent)]
    Output(#[from] xspack_io::Error),

    // ----- ova.xml -----
    /// `ova.xml` is not well-formed XML or does not follow the XML-RPC value grammar.
    #[error("ova.xml: {reason}")]
    Xml {
        /// What is wrong, with the byte offset when known.
        reason: String,
    },
    /// An object's field in `ova.xml` is missing or has the wrong type or value.
    #[error("ova.xml: {object}: {field}: {reason}", object = object_name(.class, .id))]
    OvaField {
        /// The object's class, e.g. `VM`.
        class: String,
        /// The object's id, e.g. `Ref:0`.
        id: String,
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `ova.xml` is well-formed but describes something this crate does not read (no VM, a
    /// dangling reference, a PV guest, an ISO in the CD drive...).
    #[error("ova.xml: {reason}")]
    OvaStructure {
        /// What is wrong.
        reason: String,
    },

    // ----- The tar container -----
    /// Reading the archive failed.
    #[error("reading the XVA stream")]
    Read(#[source] std::io::Error),
    /// The archive ends inside a member or where a member was required.
    #[error("{member}: archive truncated")]
    Truncated {
        /// The member being read, or what was expected next.
        member: String,
    },
    /// A tar header's checksum does not match its bytes.
    #[error("{member}: tar header checksum mismatch at offset {offset}")]
    HeaderChecksum {
        /// The member name as far as it can be read.
        member: String,
        /// Offset of the header in the archive.
        offset: u64,
    },
    /// A numeric tar header field cannot be parsed.
    #[error("{member}: bad tar header field {field}")]
    HeaderField {
        /// The member.
        member: String,
        /// The field, e.g. `size`.
        field: &'static str,
    },
    /// The first member is not named exactly `ova.xml` (ocaml-tar, `import.ml` `assert_filename_is`).
    #[error("{member}: first member must be ova.xml")]
    FirstMember {
        /// The member found first.
        member: String,
    },
    /// A member is not a regular file: a directory, link, PAX or GNU long-name record (ocaml-tar, `import.ml` `assert_filename_is`).
    #[error("{member}: not a regular file (tar type {typeflag:?}); XVAs hold only files")]
    MemberType {
        /// The member.
        member: String,
        /// Its tar type flag.
        typeflag: char,
    },
    /// `ova.xml` is larger than the reader accepts.
    #[error("ova.xml: {size} bytes is larger than the {limit}-byte limit")]
    OvaXmlTooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A member's name is not `Ref:N/NNNNNNNN` or its checksum, or it comes after the last disk.
    #[error("{member}: unexpected member")]
    UnexpectedMember {
        /// The member.
        member: String,
    },
    /// A chunk names a VDI that `ova.xml` does not stream (`stream_vdi.ml` `recv_all_vdi`).
    #[error("{member}: no streamed VDI with this id in ova.xml")]
    UnknownVdi {
        /// The member.
        member: String,
    },
    /// A chunk belongs to a disk other than the one due next (disks stream in id order, `stream_vdi.ml` `vdi_ordering`).
    #[error("{member}: disks out of order: expected {expected}")]
    DiskOrder {
        /// The member.
        member: String,
        /// What was due instead.
        expected: String,
    },
    /// A disk's first chunk is not chunk 0, which is always written (`stream_vdi.ml` `send_one`, `recv_all_vdi`).
    #[error("{member}: first chunk of the disk must be 00000000")]
    MissingFirstChunk {
        /// The member.
        member: String,
    },
    /// A chunk index is not greater than the one before it (`stream_vdi.ml` `recv_all_vdi`).
    #[error("{member}: chunk index not after {previous}")]
    ChunkOrder {
        /// The member.
        member: String,
        /// The previous chunk of the disk.
        previous: String,
    },
    /// A chunk starts at or past the disk's `virtual_size`.
    #[error("{member}: chunk lies beyond the disk's virtual size of {virtual_size} bytes")]
    ChunkBeyondEnd {
        /// The member.
        member: String,
        /// The disk's size from ova.xml.
        virtual_size: u64,
    },
    /// A chunk's size is not 1 MiB (or, for the disk's last chunk, the remainder) (`stream_vdi.ml` `send_one`, `recv_all_vdi`).
    #[error("{member}: chunk is {size} bytes, expected {expected}")]
    ChunkSize {
        /// The member.
        member: String,
        /// Its size.
        size: u64,
        /// The size it must have.
        expected: u64,
    },
    /// A disk's last chunk is not a multiple of 512 bytes, because the disk's `virtual_size` is
    /// not: xapi reads the checksum member's header before skipping the chunk's padding
    /// (`stream_vdi.ml` `recv_all_vdi`), so it would read a header from inside the padding.
    #[error("{member}: chunk is {size} bytes, not a multiple of 512 (xapi cannot import it)")]
    UnalignedChunk {
        /// The member.
        member: String,
        /// Its size.
        size: u64,
    },
    /// Zero chunks were skipped after a first chunk shorter than 1 MiB: xapi would fill the gap
    /// with chunks of that shorter length (`stream_vdi.ml` `send_one`, `recv_all_vdi`).
    #[error("{member}: gap before this chunk, but the archive's first chunk is {first} bytes")]
    GapAfterShortChunk {
        /// The member after the gap.
        member: String,
        /// Length of the archive's first chunk.
        first: u64,
    },
    /// A chunk is not immediately followed by its `.checksum` or `.xxhash` member (`stream_vdi.ml` `verify_inline_checksum`).
    #[error("{member}: not followed by its checksum member")]
    MissingChecksum {
        /// The chunk.
        member: String,
    },
    /// A checksum member does not follow its chunk.
    #[error("{member}: checksum member without its chunk just before it")]
    OrphanChecksum {
        /// The checksum member.
        member: String,
    },
    /// A checksum member's payload is not 40 lowercase (`.checksum`) or 16 uppercase
    /// (`.xxhash`) hex characters (`stream_vdi.ml` `verify_inline_checksum`).
    #[error("{member}: malformed checksum")]
    ChecksumFormat {
        /// The checksum member.
        member: String,
    },
    /// A chunk's data does not match its checksum.
    #[error("{member}: checksum mismatch (recorded {expected}, computed {actual})")]
    ChecksumMismatch {
        /// The chunk.
        member: String,
        /// The recorded checksum.
        expected: String,
        /// The checksum of the data.
        actual: String,
    },
    /// A disk's chunks stop before `virtual_size`: its last chunk is missing (`stream_vdi.ml` `send_one`, `recv_all_vdi`).
    #[error("{vdi}: disk data ends at {end} of {virtual_size} bytes (last chunk missing)")]
    MissingLastChunk {
        /// The VDI id.
        vdi: String,
        /// Where the data present ends.
        end: u64,
        /// The disk's size from ova.xml.
        virtual_size: u64,
    },
    /// A streamed VDI has no chunks at all.
    #[error("{vdi}: no chunks for this disk")]
    MissingDisk {
        /// The VDI id.
        vdi: String,
    },
    /// The archive has no end-of-archive marker (two zero blocks) (ocaml-tar, `import.ml` `assert_filename_is`).
    #[error("end-of-archive: missing the two zero blocks")]
    MissingEnd,
    /// Non-zero bytes follow the end-of-archive marker.
    #[error("end-of-archive: non-zero data at offset {offset}")]
    TrailingData {
        /// Offset of the first non-zero byte's block.
        offset: u64,
    },
}

/// `VM Ref:0`, or only the class for an object without an id (the document, its version).
fn object_name(class: &str, id: &str) -> String {
    if id.is_empty() { class.to_owned() } else { format!("{class} {id}") }
}

impl Error {
    pub(crate) fn spec(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidSpec { field: field.into(), reason: reason.into() }
    }

    pub(crate) fn field(class: &str, id: &str, field: &str, reason: impl Into<String>) -> Self {
        Error::OvaField {
            class: class.into(),
            id: id.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn structure(reason: impl Into<String>) -> Self {
        Error::OvaStructure { reason: reason.into() }
    }
}

impl xspack_io::Classify for Error {
    /// Whether the error means the input (archive or spec) is bad, as opposed to a failure to
    /// read or write it.
    fn fault(&self) -> xspack_io::Fault {
        xspack_io::Fault::input_if({
            !matches!(
                self,
                Error::ReadDisk { .. }
                    | Error::Write(_)
                    | Error::Io(_)
                    | Error::Output(_)
                    | Error::Read(_)
            )
        })
    }
}
