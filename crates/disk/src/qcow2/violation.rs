//! Every way a qcow2 image can break the rules checked in `read/`, as one error enum.
//!
//! Each variant says which upstream rule it enforces: a function of QEMU's qcow2 driver
//! (`qemu/qemu:block/qcow2.c`, `block/qcow2-refcount.c`, `block/qcow2-snapshot.c`, limits from
//! `block/qcow2.h`) that makes `qemu-img info` fail to open the image or `qemu-img check` report
//! it, or the specification (`qemu/qemu:docs/interop/qcow2.txt`). A few are rules of ours that
//! QEMU does not have: those say so ("deliberate").

use std::fmt;

/// A table or cluster of a qcow2 image that a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Place {
    /// The header cluster (cluster 0).
    Header,
    /// The active L1 table.
    L1Table,
    /// The refcount table.
    RefcountTable,
    /// A refcount block, by its index in the refcount table.
    RefcountBlock {
        /// Index in the refcount table.
        index: u64,
    },
    /// The snapshot table.
    SnapshotTable,
    /// The L1 table of a snapshot.
    SnapshotL1 {
        /// Index of the snapshot in the snapshot table.
        snapshot: u32,
    },
    /// The L2 table an L1 entry points to.
    L2Table {
        /// The snapshot whose L1 table it is; `None` for the active one.
        snapshot: Option<u32>,
        /// Index of the L1 entry.
        l1_index: u64,
    },
    /// A standard (uncompressed) data cluster.
    Data {
        /// The snapshot whose tables map it; `None` for the active ones.
        snapshot: Option<u32>,
        /// Guest offset it maps.
        guest_offset: u64,
    },
    /// A compressed data cluster.
    Compressed {
        /// The snapshot whose tables map it; `None` for the active ones.
        snapshot: Option<u32>,
        /// Guest offset it maps.
        guest_offset: u64,
    },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn of(f: &mut fmt::Formatter<'_>, snapshot: Option<u32>) -> fmt::Result {
            match snapshot {
                Some(s) => write!(f, " of snapshot {s}"),
                None => Ok(()),
            }
        }
        match *self {
            Place::Header => write!(f, "the header cluster"),
            Place::L1Table => write!(f, "the L1 table"),
            Place::RefcountTable => write!(f, "the refcount table"),
            Place::RefcountBlock { index } => write!(f, "refcount block {index}"),
            Place::SnapshotTable => write!(f, "the snapshot table"),
            Place::SnapshotL1 { snapshot } => write!(f, "the L1 table of snapshot {snapshot}"),
            Place::L2Table { snapshot, l1_index } => {
                write!(f, "the L2 table of L1 entry {l1_index}")?;
                of(f, snapshot)
            }
            Place::Data { snapshot, guest_offset } => {
                write!(f, "the data cluster for guest offset {guest_offset}")?;
                of(f, snapshot)
            }
            Place::Compressed { snapshot, guest_offset } => {
                write!(f, "the compressed cluster for guest offset {guest_offset}")?;
                of(f, snapshot)
            }
        }
    }
}

/// A broken rule of a qcow2 image. Offsets are byte offsets in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The file cannot hold the header its version needs (72 bytes for version 2, 104 for 3).
    #[error("the file ({len} bytes) is shorter than a qcow2 header ({need} bytes)")]
    TooShort {
        /// File length.
        len: u64,
        /// Header length needed.
        need: u64,
    },
    /// The magic is not `QFI\xfb` (`qcow2_do_open`: "Image is not in qcow2 format").
    #[error("bad magic (not a qcow2 image)")]
    Magic,
    /// The version is not 2 or 3 (`qcow2_do_open`: "Unsupported qcow2 version").
    #[error("version {version} is not 2 or 3")]
    Version {
        /// Version stored.
        version: u32,
    },
    /// `cluster_bits` is outside 9..=21 (`qcow2_do_open`, `MIN_CLUSTER_BITS`/`MAX_CLUSTER_BITS`).
    #[error("cluster_bits {bits} is outside {min}..={max}")]
    ClusterBits {
        /// Value stored.
        bits: u32,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
    },
    /// A version 3 `header_length` below 104 or above the cluster size (`qcow2_do_open`:
    /// "qcow2 header too short", "qcow2 header exceeds cluster size").
    #[error("header_length {length} is not in {min}..={max}")]
    HeaderLength {
        /// Value stored.
        length: u32,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed (the cluster size).
        max: u64,
    },
    /// `header_length` is not a multiple of 8 (qcow2.txt, header byte 100; QEMU does not check).
    #[error("header_length {length} is not a multiple of 8")]
    HeaderLengthUnaligned {
        /// Value stored.
        length: u32,
    },
    /// Incompatible feature bit 0, dirty: the refcounts may be wrong (qcow2.txt; QEMU repairs
    /// such an image when it opens it writable, and `qemu-img check` finds the damage).
    #[error("is marked dirty (refcounts may be wrong)")]
    Dirty,
    /// Incompatible feature bit 1, corrupt (qcow2.txt; `qcow2_do_open` refuses to open it
    /// writable).
    #[error("is marked corrupt")]
    MarkedCorrupt,
    /// A known incompatible feature this crate does not read: external data file (bit 2),
    /// compression type (bit 3) or extended L2 entries (bit 4). Deliberate: QEMU reads them.
    #[error("uses the incompatible feature {name} (bit {bit}), which is not supported")]
    UnsupportedFeature {
        /// Feature name (qcow2.txt).
        name: &'static str,
        /// Bit number.
        bit: u32,
    },
    /// Incompatible feature bits nobody knows (`qcow2_do_open`: "Unsupported qcow2
    /// feature(s)", anything outside `QCOW2_INCOMPAT_MASK`).
    #[error("has unknown incompatible feature bits {bits:#x}")]
    UnknownFeatures {
        /// The unknown bits.
        bits: u64,
    },
    /// A compression type other than zlib without incompatible feature bit 3
    /// (`validate_compression_type`: the bit must be set for any other type).
    #[error("compression_type {value} is not 0 (zlib) but the compression type feature is off")]
    CompressionType {
        /// Value stored at byte 104.
        value: u8,
    },
    /// Autoclear feature bit 1, raw external data, without an external data file
    /// (`qcow2_do_open`: "data-file-raw requires a data file").
    #[error("the autoclear feature data-file-raw (bit 1) is set without an external data file")]
    DataFileRaw,
    /// `refcount_order` above 6 (`qcow2_do_open`: "Reference count entry width too large").
    #[error("refcount_order {order} is above {max}")]
    RefcountOrder {
        /// Value stored.
        order: u32,
        /// Largest allowed.
        max: u32,
    },
    /// A backing file. Deliberate: verify checks self-contained images only (QEMU refuses only
    /// an offset past the first cluster and a name over 1023 bytes, in `qcow2_do_open`).
    #[error("has a backing file (offset {offset}); only self-contained images are supported")]
    BackingFile {
        /// `backing_file_offset`.
        offset: u64,
    },
    /// Encryption. Deliberate for methods 1 (AES) and 2 (LUKS); QEMU refuses any other method
    /// (`qcow2_update_options_prepare`: "Unsupported encryption method").
    #[error("is encrypted (method {method}); encryption is not supported")]
    Encrypted {
        /// `crypt_method`.
        method: u32,
    },
    /// `refcount_table_clusters` is zero (`qcow2_do_open`: "Image does not contain a reference
    /// count table").
    #[error("refcount table has no clusters")]
    NoRefcountTable,
    /// A table larger than QEMU accepts (`qcow2_validate_table` with `QCOW_MAX_L1_SIZE` 32 MiB
    /// and `QCOW_MAX_REFTABLE_SIZE` 8 MiB; `qcow2_do_read_snapshots` with
    /// `QCOW_MAX_SNAPSHOTS_SIZE` 64 MiB; `calculate_refcounts` for snapshot L1 tables).
    #[error("{place} of {size} bytes exceeds the limit of {max} bytes")]
    TableTooLarge {
        /// The table.
        place: Place,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// More snapshots than `QCOW_MAX_SNAPSHOTS` (`qcow2_validate_table` in `qcow2_do_open`).
    #[error("{count} snapshots exceed the limit of {max}")]
    TooManySnapshots {
        /// `nb_snapshots`.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// A table or cluster offset that is not cluster-aligned (`qcow2_validate_table`,
    /// `check_refcounts_l1`, `check_refcounts_l2`, `check_refblocks`, `calculate_refcounts`).
    #[error("{place} at offset {offset} is not cluster-aligned")]
    Unaligned {
        /// What is misplaced.
        place: Place,
        /// Its offset.
        offset: u64,
    },
    /// A table or cluster that does not lie inside the file (`qcow2_inc_refcounts_imrt`:
    /// "counting reference for region exceeding the end of the file"; `check_refblocks`:
    /// "refcount block is outside image"). Stricter than QEMU, which lets the last cluster
    /// stick out by less than a cluster.
    #[error(
        "{place} at offset {offset} ({len} bytes) lies beyond the end of the file ({file_size} bytes)"
    )]
    OutsideFile {
        /// What is misplaced.
        place: Place,
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
        /// File length.
        file_size: u64,
    },
    /// An L1 table too small for the virtual size (`qcow2_do_open`: "L1 table is too small").
    #[error(
        "L1 table of {entries} entries cannot map the virtual size of {virtual_size} bytes \
         ({needed} entries needed)"
    )]
    L1TooSmall {
        /// `l1_size`.
        entries: u32,
        /// Entries the virtual size needs.
        needed: u64,
        /// Virtual size.
        virtual_size: u64,
    },
    /// A header extension running past the end of the header area, which is the first
    /// cluster (`qcow2_read_extensions`: "Header extension too large").
    #[error(
        "header extension {magic:#010x} at offset {offset}: its {len} bytes run past the end of \
         the header area at {end}"
    )]
    ExtensionTooLarge {
        /// Extension type.
        magic: u32,
        /// Offset of the extension's 8-byte header.
        offset: u64,
        /// Length stored.
        len: u32,
        /// End of the header area.
        end: u64,
    },
    /// A backing file format name of 16 bytes or more (`qcow2_read_extensions`:
    /// "`ext_backing_format`: len too large", the size of `bs->backing_format`).
    #[error("backing file format extension of {len} bytes is not shorter than {max}")]
    BackingFormatTooLong {
        /// Length stored.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// A header extension this crate does not read. Deliberate for bitmaps and the external
    /// data file name; QEMU refuses a crypto header without LUKS encryption
    /// (`qcow2_read_extensions`).
    #[error("has a {name} header extension ({magic:#010x}), which is not supported")]
    UnsupportedExtension {
        /// Extension name (qcow2.txt).
        name: &'static str,
        /// Extension type.
        magic: u32,
    },
    /// A snapshot with more than `QCOW_MAX_SNAPSHOT_EXTRA_DATA` bytes of extra data
    /// (`qcow2_do_read_snapshots`: "Too much extra metadata in snapshot table entry").
    #[error("snapshot {index}: {size} bytes of extra data exceed the limit of {max}")]
    SnapshotExtraData {
        /// Snapshot index.
        index: u32,
        /// `extra_data_size`.
        size: u32,
        /// The limit.
        max: u32,
    },
    /// A version 3 snapshot with less than the 16 bytes of extra data (the large VM state
    /// size and the disk size) every version 3 entry has (qcow2.txt, "Snapshot table entry";
    /// `qcow2_check_read_snapshot_table`: "snapshot table entry is incomplete").
    #[error("snapshot {index}: {size} bytes of extra data, fewer than the {min} version 3 needs")]
    SnapshotIncomplete {
        /// Snapshot index.
        index: u32,
        /// `extra_data_size`.
        size: u32,
        /// The least allowed.
        min: u32,
    },
    /// An L1, L2 or refcount table entry with reserved bits set (`check_refcounts_l1`,
    /// `check_refcounts_l2` with `L1E_RESERVED_MASK`/`L2E_STD_RESERVED_MASK`, `check_refblocks`
    /// with `REFT_RESERVED_MASK`).
    #[error("{place}: entry {entry:#018x} has reserved bits set")]
    ReservedBits {
        /// The table or cluster the entry points to.
        place: Place,
        /// The entry.
        entry: u64,
    },
    /// A non-zero L1 entry whose offset is zero: QEMU counts a reference to cluster 0 for it
    /// (`check_refcounts_l1`), which `qemu-img check` then reports as a refcount error.
    #[error("{place}: entry {entry:#018x} has flags but no offset")]
    NoOffset {
        /// The table the entry would point to.
        place: Place,
        /// The entry.
        entry: u64,
    },
    /// A compressed cluster with the copied flag (`check_refcounts_l2`: "copied flag must never
    /// be set for compressed clusters").
    #[error("{place}: entry {entry:#018x} is compressed and has the copied flag")]
    CompressedCopied {
        /// The cluster.
        place: Place,
        /// The entry.
        entry: u64,
    },
    /// Guest data mapped past the virtual size. Deliberate: QEMU keeps VM state there in
    /// snapshots taken by a running VM, which self-contained disk images do not have.
    #[error("{place} lies beyond the virtual size of {virtual_size} bytes")]
    BeyondVirtualSize {
        /// The table or cluster.
        place: Place,
        /// Virtual size.
        virtual_size: u64,
    },
    /// A refcount block whose cluster is also used by something else (`check_refblocks`:
    /// "ERROR refcount block N refcount=...").
    #[error(
        "{place} at offset {offset} is also used by other metadata or data ({references} references)"
    )]
    RefblockShared {
        /// The refcount block.
        place: Place,
        /// Its offset.
        offset: u64,
        /// References counted.
        references: u64,
    },
    /// A host cluster referenced more often than a refcount entry can count
    /// (`qcow2_inc_refcounts_imrt`: "overflow cluster").
    #[error(
        "host cluster {cluster} is referenced more than {max} times, the most {bits}-bit refcounts hold"
    )]
    RefcountOverflow {
        /// Host cluster index.
        cluster: u64,
        /// Largest refcount.
        max: u64,
        /// Refcount width.
        bits: u32,
    },
    /// Host clusters whose stored refcount is below the references to them: data can be
    /// overwritten while in use (`compare_refcounts`: "ERROR cluster N refcount=R
    /// reference=S", counted as corruption).
    #[error(
        "host cluster {cluster} (offset {offset}) has refcount {stored} but {referenced} \
         references ({count} such clusters; qemu-img check reports corruption)"
    )]
    RefcountTooLow {
        /// The first such cluster.
        cluster: u64,
        /// Its offset.
        offset: u64,
        /// Refcount stored.
        stored: u64,
        /// References counted.
        referenced: u64,
        /// How many clusters are so.
        count: u64,
    },
    /// Host clusters whose stored refcount is above the references to them
    /// (`compare_refcounts`: "Leaked cluster"). `qemu-img check` exits 3 for these; xspack
    /// never writes leaks, so verify refuses them too.
    #[error(
        "host cluster {cluster} (offset {offset}) is leaked: refcount {stored} but {referenced} \
         references ({count} leaked clusters; qemu-img check reports leaks)"
    )]
    Leaked {
        /// The first such cluster.
        cluster: u64,
        /// Its offset.
        offset: u64,
        /// Refcount stored.
        stored: u64,
        /// References counted.
        referenced: u64,
        /// How many clusters are so.
        count: u64,
    },
    /// The copied flag of an active L1 or L2 entry disagrees with the refcount: it must be set
    /// exactly when the refcount is 1 (`check_oflag_copied`: "ERROR `OFLAG_COPIED`").
    #[error("{place}: the copied flag is {} but the refcount is {refcount}", if *.copied { "set" } else { "clear" })]
    CopiedFlag {
        /// The table or cluster the entry points to.
        place: Place,
        /// Whether the flag is set.
        copied: bool,
        /// The refcount.
        refcount: u64,
    },
    /// The file has more clusters than the refcount cross-check holds counts for (one byte a
    /// cluster; QEMU's own limit, in `qcow2_check_refcounts`, is `INT_MAX` clusters).
    #[error(
        "the file has {clusters} clusters; the refcount check holds one byte per cluster and \
         stops at {max} clusters"
    )]
    TooManyClusters {
        /// Clusters in the file.
        clusters: u64,
        /// The limit.
        max: u64,
    },
    /// The L1 and L2 tables to walk, counting tables shared by snapshots once per reference,
    /// exceed what the check reads (a bound on its time, as the cluster limit bounds memory).
    #[error(
        "the L1 and L2 tables to walk exceed {max} bytes (tables shared by snapshots count once per reference)"
    )]
    WalkTooLarge {
        /// The limit.
        max: u64,
    },
}
