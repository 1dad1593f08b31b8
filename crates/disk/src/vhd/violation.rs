//! Every way a VHD can break the rules checked in `check.rs`, as one error enum.
//!
//! Variants quote the message blktap's `vhd-util check` prints, where it has one, and carry the
//! absolute file offset of the structure or entry at fault.

use std::fmt;

use super::Geometry;

/// A broken rule. Offsets are absolute byte offsets in the VHD file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The file length is neither a multiple of 512 nor one byte short of one.
    #[error("invalid file size {len}: not a multiple of 512 (nor 511 past one)")]
    FileSize {
        /// File length.
        len: u64,
    },
    /// The file is too short to hold a dynamic VHD's footers and headers.
    #[error("file of {len} bytes is too short for a VHD")]
    FileTooShort {
        /// File length.
        len: u64,
    },
    /// Footer cookie is not `conectix`.
    #[error("footer at {offset}: invalid cookie \"{}\"", Ascii(.found))]
    FooterCookie {
        /// Footer offset.
        offset: u64,
        /// The cookie found.
        found: [u8; 8],
    },
    /// Footer checksum is wrong.
    #[error("footer at {offset}: invalid checksum {stored:#010x} (computed {computed:#010x})")]
    FooterChecksum {
        /// Footer offset.
        offset: u64,
        /// Checksum stored.
        stored: u32,
        /// Checksum of the contents.
        computed: u32,
    },
    /// Footer features lack the reserved bit 0x2.
    #[error("footer at {offset}: invalid 'reserved' feature (features {features:#x} lack 0x2)")]
    FooterReservedFeature {
        /// Footer offset.
        offset: u64,
        /// Features stored.
        features: u32,
    },
    /// Footer features have bits other than temporary (0x1) and reserved (0x2).
    #[error("footer at {offset}: invalid extra features {features:#x}")]
    FooterExtraFeatures {
        /// Footer offset.
        offset: u64,
        /// Features stored.
        features: u32,
    },
    /// Footer file format version is not 1.0.
    #[error("footer at {offset}: invalid file format version {version:#010x}")]
    FooterVersion {
        /// Footer offset.
        offset: u64,
        /// Version stored.
        version: u32,
    },
    /// A fixed disk's footer data offset is not all ones.
    #[error("footer at {offset}: invalid data offset {data_offset:#x} for a fixed disk")]
    FooterDataOffset {
        /// Footer offset.
        offset: u64,
        /// Data offset stored.
        data_offset: u64,
    },
    /// The timestamp is more than 1800 s in the future.
    #[error("footer at {offset}: creation time in future ({timestamp} > {limit}, VHD seconds)")]
    FooterTimestamp {
        /// Footer offset.
        offset: u64,
        /// Timestamp stored (seconds since 2000).
        timestamp: u32,
        /// Latest timestamp allowed.
        limit: u64,
    },
    /// Creator `tap` claims a version newer than blktap's 1.3.
    #[error("footer at {offset}: unsupported tap creator version {version:#010x}")]
    TapCreatorVersion {
        /// Footer offset.
        offset: u64,
        /// Version stored.
        version: u32,
    },
    /// Creator `tap` version 0.1, which blktap's `vhd_open` refuses as obsolete and broken
    /// (`xapi-project/blktap:vhd/lib/libvhd.c`, "error unsupported version 0.1 VHD"), so
    /// `vhd-util check` fails on it after the footer and header checks.
    #[error("footer at {offset}: unsupported tap creator version 0.1 (obsolete)")]
    TapVersionObsolete {
        /// Footer offset.
        offset: u64,
    },
    /// The geometry exceeds the CHS geometry of the size.
    #[error("footer at {offset}: geometry too large ({geometry} > {max})")]
    GeometryTooLarge {
        /// Footer offset.
        offset: u64,
        /// Geometry stored.
        geometry: Geometry,
        /// Geometry of the size.
        max: Geometry,
    },
    /// The disk type is not fixed (2), dynamic (3) or differencing (4).
    #[error("footer at {offset}: invalid type {code}")]
    DiskType {
        /// Footer offset.
        offset: u64,
        /// Type stored.
        code: u32,
    },
    /// The saved state is neither 0 nor 1.
    #[error("footer at {offset}: invalid 'saved' state {value}")]
    SavedState {
        /// Footer offset.
        offset: u64,
        /// Value stored.
        value: u8,
    },
    /// blktap's hidden flag is neither 0 nor 1.
    #[error("footer at {offset}: invalid 'hidden' state {value}")]
    HiddenState {
        /// Footer offset.
        offset: u64,
        /// Value stored.
        value: u8,
    },
    /// A reserved footer byte is not zero.
    #[error("footer: invalid 'reserved' bits (non-zero byte at {offset})")]
    FooterReserved {
        /// Offset of the first non-zero reserved byte.
        offset: u64,
    },
    /// The unique id is nil.
    #[error("footer at {offset}: invalid (NULL) uuid")]
    NilUuid {
        /// Footer offset.
        offset: u64,
    },
    /// The footer copy at offset 0 differs from the footer at the end.
    #[error("primary footer at {primary} and backup footer at 0 do not match")]
    FooterMismatch {
        /// Offset of the footer at the end.
        primary: u64,
    },
    /// The footer's data offset does not leave room for the header between the footers.
    #[error("footer at {offset}: header offset {data_offset} outside [512, {limit}]")]
    HeaderOffset {
        /// Footer offset.
        offset: u64,
        /// Data offset stored.
        data_offset: u64,
        /// Largest header offset that fits.
        limit: u64,
    },
    /// Header cookie is not `cxsparse`.
    #[error("header at {offset}: invalid cookie \"{}\"", Ascii(.found))]
    HeaderCookie {
        /// Header offset.
        offset: u64,
        /// The cookie found.
        found: [u8; 8],
    },
    /// Header checksum is wrong.
    #[error("header at {offset}: invalid checksum {stored:#010x} (computed {computed:#010x})")]
    HeaderChecksum {
        /// Header offset.
        offset: u64,
        /// Checksum stored.
        stored: u32,
        /// Checksum of the contents.
        computed: u32,
    },
    /// Header version is not 1.0.
    #[error("header at {offset}: invalid header version {version:#010x}")]
    HeaderVersion {
        /// Header offset.
        offset: u64,
        /// Version stored.
        version: u32,
    },
    /// The header's (unused) data offset is not all ones.
    #[error("header at {offset}: invalid data offset {data_offset:#x}")]
    HeaderDataOffset {
        /// Header offset.
        offset: u64,
        /// Data offset stored.
        data_offset: u64,
    },
    /// The BAT offset is zero or not a multiple of 512.
    #[error("header at {offset}: invalid table offset {table_offset}")]
    TableOffset {
        /// Header offset.
        offset: u64,
        /// Table offset stored.
        table_offset: u64,
    },
    /// The BAT runs into the footer at the end of the file.
    #[error("header at {offset}: invalid table offset: BAT ends at {bat_end}, past {footer}")]
    BatPastFooter {
        /// Header offset.
        offset: u64,
        /// End of the BAT.
        bat_end: u64,
        /// Offset of the footer at the end.
        footer: u64,
    },
    /// The block size is not a power of two of at least one sector.
    #[error("header at {offset}: invalid block size {block_size}")]
    BlockSize {
        /// Header offset.
        offset: u64,
        /// Block size stored.
        block_size: u32,
    },
    /// The block size exceeds 2 MiB, which blktap cannot open.
    #[error("header at {offset}: block size {block_size} larger than 2 MiB")]
    BlockSizeTooLarge {
        /// Header offset.
        offset: u64,
        /// Block size stored.
        block_size: u32,
    },
    /// A reserved header byte is not zero.
    #[error("header: invalid reserved bits (non-zero byte at {offset})")]
    HeaderReserved {
        /// Offset of the first non-zero reserved byte.
        offset: u64,
    },
    /// A disk without parent names one.
    #[error("header at {offset}: invalid non-null parent name")]
    ParentName {
        /// Header offset.
        offset: u64,
    },
    /// A disk without parent has parent locators.
    #[error("header at {offset}: invalid non-null parent locators")]
    ParentLocators {
        /// Header offset.
        offset: u64,
    },
    /// A disk without parent has a parent id.
    #[error("header at {offset}: invalid non-null parent uuid")]
    ParentUuid {
        /// Header offset.
        offset: u64,
    },
    /// A disk without parent has a parent timestamp.
    #[error("header at {offset}: invalid non-zero parent timestamp {value}")]
    ParentTimestamp {
        /// Header offset.
        offset: u64,
        /// Value stored.
        value: u32,
    },
    /// The BAT has fewer entries than the disk has blocks.
    #[error("header at {offset}: VHD size ({blocks} blocks) exceeds BAT size ({entries})")]
    BatTooSmall {
        /// Header offset.
        offset: u64,
        /// Blocks of the virtual size.
        blocks: u64,
        /// BAT entries.
        entries: u32,
    },
    /// A block starts inside the metadata.
    #[error(
        "BAT entry at {offset}: block {block} (sector {sector}) clobbers headers ending at {end}"
    )]
    BlockClobbersHeaders {
        /// Offset of the BAT entry.
        offset: u64,
        /// Block index.
        block: u32,
        /// Sector stored.
        sector: u32,
        /// End of the metadata, in bytes.
        end: u64,
    },
    /// A block runs into the footer or past the end of the file.
    #[error("BAT entry at {offset}: block {block} (sector {sector}) clobbers footer at {footer}")]
    BlockPastFooter {
        /// Offset of the BAT entry.
        offset: u64,
        /// Block index.
        block: u32,
        /// Sector stored.
        sector: u32,
        /// Offset of the footer at the end.
        footer: u64,
    },
    /// Two blocks overlap.
    #[error(
        "BAT entry at {offset}: block {block} (sector {sector}) clobbers block {other} (sector {other_sector})"
    )]
    BlocksOverlap {
        /// Offset of the BAT entry of `block`.
        offset: u64,
        /// Block index.
        block: u32,
        /// Its sector.
        sector: u32,
        /// The other block.
        other: u32,
        /// Its sector.
        other_sector: u32,
    },
    /// A `tap` disk of version 1.2 or later has no room for its batmap header.
    #[error("batmap header at {offset}: missing (runs into the footer)")]
    BatmapMissing {
        /// Where the batmap header should be.
        offset: u64,
    },
    /// Batmap cookie is not `tdbatmap`.
    #[error("batmap header at {offset}: invalid cookie \"{}\"", Ascii(.found))]
    BatmapCookie {
        /// Batmap header offset.
        offset: u64,
        /// The cookie found.
        found: [u8; 8],
    },
    /// The batmap version is newer than 1.2.
    #[error("batmap header at {offset}: unsupported batmap version {version:#010x}")]
    BatmapVersion {
        /// Batmap header offset.
        offset: u64,
        /// Version stored.
        version: u32,
    },
    /// The batmap size is zero.
    #[error("batmap header at {offset}: invalid size zero")]
    BatmapSizeZero {
        /// Batmap header offset.
        offset: u64,
    },
    /// The batmap has fewer bits than the BAT has entries.
    #[error(
        "batmap header at {offset}: batmap-BAT size mismatch ({sectors} sectors < {entries} entries)"
    )]
    BatmapTooSmall {
        /// Batmap header offset.
        offset: u64,
        /// Batmap size in sectors.
        sectors: u32,
        /// BAT entries.
        entries: u32,
    },
    /// The batmap offset is zero or not a multiple of 512.
    #[error("batmap header at {offset}: invalid batmap offset {batmap_offset}")]
    BatmapOffset {
        /// Batmap header offset.
        offset: u64,
        /// Batmap offset stored.
        batmap_offset: u64,
    },
    /// The batmap runs into the footer.
    #[error("batmap header at {offset}: invalid batmap size: map ends at {end}, past {footer}")]
    BatmapPastFooter {
        /// Batmap header offset.
        offset: u64,
        /// End of the batmap.
        end: u64,
        /// Offset of the footer at the end.
        footer: u64,
    },
    /// The batmap checksum is wrong.
    #[error(
        "batmap header at {offset}: invalid checksum {stored:#010x} (computed {computed:#010x})"
    )]
    BatmapChecksum {
        /// Batmap header offset.
        offset: u64,
        /// Checksum stored.
        stored: u32,
        /// Checksum of the map.
        computed: u32,
    },
    /// The batmap marks a block full that the BAT leaves unallocated.
    #[error("batmap at {offset}: batmap shows unallocated block {block} full")]
    BatmapMarksUnallocated {
        /// Offset of the batmap byte holding the bit.
        offset: u64,
        /// Block index.
        block: u32,
    },
    /// vhd-tool: the dynamic header is not at 512.
    #[error("stream layout: header at {data_offset}, expected 512")]
    StreamHeaderOffset {
        /// Footer data offset.
        data_offset: u64,
    },
    /// vhd-tool: the BAT is not at 1536.
    #[error("stream layout: BAT at {table_offset}, expected 1536")]
    StreamTableOffset {
        /// Header table offset.
        table_offset: u64,
    },
    /// vhd-tool: blocks are not in ascending file order.
    #[error(
        "stream layout: block {block} at sector {sector} does not follow the previous block at sector {previous}"
    )]
    StreamBlockOrder {
        /// Offset of the BAT entry.
        offset: u64,
        /// Block index.
        block: u32,
        /// Its sector.
        sector: u32,
        /// Sector of the previous allocated block.
        previous: u32,
    },
    /// vhd-tool: a block's sector bitmap is not all ones.
    #[error("stream layout: sector bitmap of block {block} at {offset} is not all ones")]
    StreamBitmap {
        /// Offset of the bitmap.
        offset: u64,
        /// Block index.
        block: u32,
    },
}

/// Cookie bytes shown as escaped ASCII.
struct Ascii<'a>(&'a [u8; 8]);

impl fmt::Display for Ascii<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.escape_ascii())
    }
}
