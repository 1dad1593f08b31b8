//! One hand-broken VHD per checker rule; each must fail with its own [`Violation`].
//!
//! The base image is `small_disk()`: 16 MiB, 8 blocks, blocks 0, 1 and 3 allocated. Its layout:
//! footer copy 0, header 512, BAT 1536, batmap header 2048, batmap 2560, blocks from 3072 (sectors
//! 6, 4103 and 8200), footer at EOF - 512.

use std::io::Cursor;
use std::sync::OnceLock;

use xspack_disk::vhd::{
    BAT_UNUSED, BatmapHeader, DiskType, DynamicHeader, Footer, VhdFile, Violation, write_vhd,
};
use xspack_disk::{Error, Uuid};
use xspack_io::NoProgress;

use crate::{MIB, NOW, small_disk, vhd_opts};

const HEADER: usize = 512;
const BAT: usize = 1536;
const BATMAP_HEADER: usize = 2048;

fn base() -> Vec<u8> {
    static BASE: OnceLock<Vec<u8>> = OnceLock::new();
    BASE.get_or_init(|| {
        let raw = small_disk().render();
        write_vhd(raw.as_slice(), Vec::new(), &vhd_opts(), &NoProgress).unwrap().0
    })
    .clone()
}

fn open(img: Vec<u8>) -> Result<VhdFile<Cursor<Vec<u8>>>, Error> {
    VhdFile::open_at(Cursor::new(img), NOW)
}

#[track_caller]
fn violation(img: Vec<u8>) -> Violation {
    match open(img) {
        Err(Error::Vhd(v)) => {
            // Every message names the rule and where it broke.
            let text = v.to_string();
            assert!(text.chars().any(|c| c.is_ascii_digit()), "{text}");
            v
        }
        Err(e) => panic!("expected a rule violation, got: {e}"),
        Ok(_) => panic!("tampered image passed the checks"),
    }
}

fn footer_offset(img: &[u8]) -> usize {
    img.len() - 512
}

fn footer(img: &[u8], at: usize) -> Footer {
    Footer::decode(img[at..at + 512].try_into().unwrap())
}

/// Applies `edit` to both footers and re-checksums them, so only the edited rule breaks.
fn edit_footers(mut img: Vec<u8>, edit: impl Fn(&mut Footer)) -> Vec<u8> {
    for at in [0, footer_offset(&img)] {
        let mut f = footer(&img, at);
        edit(&mut f);
        f.checksum = f.computed_checksum();
        img[at..at + 512].copy_from_slice(&f.encode());
    }
    img
}

fn edit_header(mut img: Vec<u8>, edit: impl Fn(&mut DynamicHeader)) -> Vec<u8> {
    let mut h = DynamicHeader::decode(img[HEADER..HEADER + 1024].try_into().unwrap());
    edit(&mut h);
    h.checksum = h.computed_checksum();
    img[HEADER..HEADER + 1024].copy_from_slice(&h.encode());
    img
}

fn edit_batmap_header(mut img: Vec<u8>, edit: impl Fn(&mut BatmapHeader)) -> Vec<u8> {
    let range = BATMAP_HEADER..BATMAP_HEADER + 512;
    let mut h = BatmapHeader::decode(img[range.clone()].try_into().unwrap());
    edit(&mut h);
    img[range].copy_from_slice(&h.encode());
    img
}

fn bat(img: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(img[BAT + 4 * i..BAT + 4 * i + 4].try_into().unwrap())
}

fn set_bat(mut img: Vec<u8>, i: usize, sector: u32) -> Vec<u8> {
    img[BAT + 4 * i..BAT + 4 * i + 4].copy_from_slice(&sector.to_be_bytes());
    img
}

#[test]
fn base_image_passes() {
    let img = base();
    assert_eq!(
        (bat(&img, 0), bat(&img, 1), bat(&img, 2), bat(&img, 3)),
        (6, 4103, BAT_UNUSED, 8200)
    );
    let mut vhd = open(img).unwrap();
    vhd.check_stream_layout().unwrap();
}

// File.

#[test]
fn file_size_not_sector_multiple() {
    let mut img = base();
    img.truncate(img.len() - 100);
    assert!(matches!(violation(img), Violation::FileSize { .. }));
}

#[test]
fn short_footer_of_511_bytes_is_accepted() {
    let mut img = base();
    img.pop();
    open(img).unwrap();
}

#[test]
fn file_too_short() {
    assert_eq!(violation(vec![0; 1024]), Violation::FileTooShort { len: 1024 });
}

// Footer.

#[test]
fn footer_bad_cookie() {
    let mut img = base();
    let at = footer_offset(&img);
    img[at] = b'C';
    let v = violation(img);
    assert!(
        matches!(v, Violation::FooterCookie { offset, found } if offset == at as u64 && &found == b"Conectix")
    );
}

#[test]
fn footer_checksum_flipped() {
    let mut img = base();
    let at = footer_offset(&img);
    img[at + 64] ^= 0x01;
    assert!(
        matches!(violation(img), Violation::FooterChecksum { offset, .. } if offset == at as u64)
    );
}

#[test]
fn footer_reserved_feature_missing() {
    let img = edit_footers(base(), |f| f.features = 0);
    assert!(matches!(violation(img), Violation::FooterReservedFeature { features: 0, .. }));
}

#[test]
fn footer_extra_features() {
    let img = edit_footers(base(), |f| f.features = 0x6);
    assert!(matches!(violation(img), Violation::FooterExtraFeatures { features: 6, .. }));
}

#[test]
fn footer_version() {
    let img = edit_footers(base(), |f| f.format_version = 0x0002_0000);
    assert!(matches!(violation(img), Violation::FooterVersion { version: 0x0002_0000, .. }));
}

#[test]
fn fixed_footer_with_data_offset() {
    let img = edit_footers(base(), |f| f.disk_type = DiskType::Fixed.code());
    assert!(matches!(violation(img), Violation::FooterDataOffset { data_offset: 512, .. }));
}

#[test]
fn footer_time_in_future() {
    let vhd_now = u32::try_from(NOW - 946_684_800).unwrap();
    let ok = edit_footers(base(), |f| f.timestamp = vhd_now + 1800);
    open(ok).unwrap();
    let img = edit_footers(base(), |f| f.timestamp = vhd_now + 1801);
    assert!(matches!(violation(img), Violation::FooterTimestamp { .. }));
}

#[test]
fn tap_creator_version_too_new() {
    let img = edit_footers(base(), |f| f.creator_version = 0x0001_0004);
    assert!(matches!(violation(img), Violation::TapCreatorVersion { version: 0x0001_0004, .. }));
}

#[test]
fn geometry_too_large() {
    // What qemu-img's force_size=on writes (`docs/formats/vhd.md` section "Creator"; qemu
    // `block/vpc.c`).
    let img = edit_footers(base(), |f| {
        f.geometry = xspack_disk::vhd::Geometry { cylinders: 65535, heads: 16, sectors: 255 };
    });
    assert!(matches!(violation(img), Violation::GeometryTooLarge { .. }));
}

#[test]
fn wrong_disk_type() {
    // With the data offset of a sparse disk, or the data offset rule fires first.
    let img = edit_footers(base(), |f| {
        f.disk_type = 5;
        f.data_offset = u64::MAX;
    });
    assert!(matches!(violation(img), Violation::DiskType { code: 5, .. }));
}

#[test]
fn saved_state_not_boolean() {
    let img = edit_footers(base(), |f| f.saved_state = 2);
    assert!(matches!(violation(img), Violation::SavedState { value: 2, .. }));
}

#[test]
fn hidden_state_not_boolean() {
    let img = edit_footers(base(), |f| f.hidden = 2);
    assert!(matches!(violation(img), Violation::HiddenState { value: 2, .. }));
}

#[test]
fn footer_reserved_bytes_set() {
    let img = edit_footers(base(), |f| f.reserved[10] = 1);
    let at = footer_offset(&img) as u64;
    assert_eq!(violation(img), Violation::FooterReserved { offset: at + 86 + 10 });
}

#[test]
fn nil_uuid() {
    let img = edit_footers(base(), |f| f.uuid = Uuid::NIL);
    assert!(matches!(violation(img), Violation::NilUuid { .. }));
}

#[test]
fn footer_copy_differs() {
    let mut img = base();
    let mut copy = footer(&img, 0);
    copy.uuid = Uuid::from_bytes([9; 16]);
    copy.checksum = copy.computed_checksum();
    img[..512].copy_from_slice(&copy.encode());
    let at = footer_offset(&img) as u64;
    assert_eq!(violation(img), Violation::FooterMismatch { primary: at });
}

#[test]
fn broken_footer_copy_is_reported_at_offset_zero() {
    let mut img = base();
    img[64] ^= 0xff;
    assert!(matches!(violation(img), Violation::FooterChecksum { offset: 0, .. }));
}

#[test]
fn fixed_disks_are_valid_but_unsupported() {
    let img = edit_footers(base(), |f| {
        f.disk_type = DiskType::Fixed.code();
        f.data_offset = u64::MAX;
    });
    let err = open(img).unwrap_err();
    assert!(matches!(err, Error::UnsupportedVhdType { disk_type: DiskType::Fixed }), "{err}");
}

// Dynamic header.

#[test]
fn header_offset_outside_file() {
    let img = edit_footers(base(), |f| f.data_offset = 1 << 40);
    assert!(
        matches!(violation(img), Violation::HeaderOffset { data_offset, .. } if data_offset == 1 << 40)
    );
}

#[test]
fn header_bad_cookie() {
    let mut img = base();
    img[HEADER + 7] = b'X';
    assert!(matches!(violation(img), Violation::HeaderCookie { offset: 512, .. }));
}

#[test]
fn header_checksum_flipped() {
    let mut img = base();
    img[HEADER + 36 + 3] ^= 0x80;
    assert!(matches!(violation(img), Violation::HeaderChecksum { offset: 512, .. }));
}

#[test]
fn header_version() {
    let img = edit_header(base(), |h| h.header_version = 0x0001_0001);
    assert!(matches!(violation(img), Violation::HeaderVersion { .. }));
}

#[test]
fn header_data_offset() {
    let img = edit_header(base(), |h| h.data_offset = 0);
    assert!(matches!(violation(img), Violation::HeaderDataOffset { data_offset: 0, .. }));
}

#[test]
fn table_offset_unaligned_or_zero() {
    for table_offset in [0, 1537] {
        let img = edit_header(base(), |h| h.table_offset = table_offset);
        assert_eq!(violation(img), Violation::TableOffset { offset: 512, table_offset });
    }
}

#[test]
fn bat_runs_into_footer() {
    let img = base();
    let end = footer_offset(&img) as u64;
    let img = edit_header(img, |h| h.table_offset = end);
    assert!(
        matches!(violation(img), Violation::BatPastFooter { bat_end, .. } if bat_end == end + 32)
    );
}

#[test]
fn block_size_not_power_of_two() {
    let img = edit_header(base(), |h| h.block_size = 3 << 20);
    assert!(
        matches!(violation(img), Violation::BlockSize { block_size, .. } if block_size == 3 << 20)
    );
}

#[test]
fn block_size_above_2_mib() {
    let img = edit_header(base(), |h| h.block_size = 4 << 20);
    assert!(matches!(violation(img), Violation::BlockSizeTooLarge { .. }));
}

#[test]
fn header_reserved_bytes_set() {
    let img = edit_header(base(), |h| h.reserved1 = 0x100);
    assert_eq!(violation(img), Violation::HeaderReserved { offset: 512 + 60 + 2 });
    let img = edit_header(base(), |h| h.reserved2[255] = 1);
    assert_eq!(violation(img), Violation::HeaderReserved { offset: 512 + 1023 });
}

#[test]
fn parent_fields_on_a_dynamic_disk() {
    let img = edit_header(base(), |h| h.parent_name[1] = b'a');
    assert_eq!(violation(img), Violation::ParentName { offset: 512 });
    let img = edit_header(base(), |h| h.parent_locators[0] = 1);
    assert_eq!(violation(img), Violation::ParentLocators { offset: 512 });
    let img = edit_header(base(), |h| h.parent_uuid[15] = 1);
    assert_eq!(violation(img), Violation::ParentUuid { offset: 512 });
    let img = edit_header(base(), |h| h.parent_timestamp = 7);
    assert_eq!(violation(img), Violation::ParentTimestamp { offset: 512, value: 7 });
}

// BAT.

#[test]
fn bat_smaller_than_disk() {
    let img = edit_header(base(), |h| h.max_table_entries = 7);
    assert_eq!(violation(img), Violation::BatTooSmall { offset: 512, blocks: 8, entries: 7 });
}

#[test]
fn block_inside_headers() {
    let img = set_bat(base(), 1, 3);
    let v = violation(img);
    assert!(
        matches!(v, Violation::BlockClobbersHeaders { offset, block: 1, sector: 3, end: 3072 } if offset == BAT as u64 + 4)
    );
}

#[test]
fn bat_entry_past_eof() {
    let img = set_bat(base(), 3, 0x0100_0000);
    let v = violation(img);
    assert!(matches!(v, Violation::BlockPastFooter { block: 3, sector: 0x0100_0000, .. }), "{v}");
}

#[test]
fn block_overlapping_the_footer() {
    // Block 3 moved one sector later: its last sector is the footer.
    let img = base();
    let moved = bat(&img, 3) + 1;
    let v = violation(set_bat(img, 3, moved));
    assert!(matches!(v, Violation::BlockPastFooter { block: 3, .. }), "{v}");
}

#[test]
fn overlapping_blocks() {
    let img = set_bat(base(), 1, 6 + 4096);
    let v = violation(img);
    assert_eq!(
        v,
        Violation::BlocksOverlap {
            offset: 1536,
            block: 0,
            sector: 6,
            other: 1,
            other_sector: 4102
        }
    );
    let img = set_bat(base(), 3, 6);
    assert!(matches!(violation(img), Violation::BlocksOverlap { block: 0, other: 3, .. }));
}

// Batmap.

#[test]
fn batmap_missing() {
    // An empty disk whose BAT is declared so long that the batmap header would hit the footer.
    let raw = vec![0u8; 4 * MIB as usize];
    let img = write_vhd(raw.as_slice(), Vec::new(), &vhd_opts(), &NoProgress).unwrap().0;
    assert_eq!(img.len(), 3584);
    let img = edit_header(img, |h| h.max_table_entries = 384);
    assert_eq!(violation(img), Violation::BatmapMissing { offset: 3072 });
}

#[test]
fn batmap_bad_cookie() {
    let img = edit_batmap_header(base(), |h| h.cookie = *b"tdbatmaq");
    assert!(matches!(violation(img), Violation::BatmapCookie { offset: 2048, .. }));
}

#[test]
fn batmap_version_too_new() {
    let img = edit_batmap_header(base(), |h| h.version = 0x0001_0003);
    assert!(matches!(violation(img), Violation::BatmapVersion { version: 0x0001_0003, .. }));
}

#[test]
fn batmap_size_zero() {
    let img = edit_batmap_header(base(), |h| h.batmap_size = 0);
    assert_eq!(violation(img), Violation::BatmapSizeZero { offset: 2048 });
}

#[test]
fn batmap_smaller_than_bat() {
    // A 10 GiB empty disk has 5120 blocks and a two-sector batmap; claim one sector.
    let zeros = Zeros(10 << 30);
    let img = write_vhd(zeros, Vec::new(), &vhd_opts(), &NoProgress).unwrap().0;
    let at = 1536 + 5120 * 4;
    let mut h = BatmapHeader::decode(img[at..at + 512].try_into().unwrap());
    assert_eq!(h.batmap_size, 2);
    h.batmap_size = 1;
    let mut img = img;
    img[at..at + 512].copy_from_slice(&h.encode());
    let v = violation(img);
    assert_eq!(v, Violation::BatmapTooSmall { offset: at as u64, sectors: 1, entries: 5120 });
}

#[test]
fn batmap_offset_bad() {
    for batmap_offset in [0, 2561] {
        let img = edit_batmap_header(base(), |h| h.batmap_offset = batmap_offset);
        assert_eq!(violation(img), Violation::BatmapOffset { offset: 2048, batmap_offset });
    }
}

#[test]
fn batmap_past_footer() {
    let img = base();
    let end = footer_offset(&img) as u64;
    let img = edit_batmap_header(img, |h| h.batmap_offset = end);
    assert!(matches!(violation(img), Violation::BatmapPastFooter { end: e, .. } if e == end + 512));
}

#[test]
fn batmap_checksum_wrong() {
    let img = edit_batmap_header(base(), |h| h.checksum ^= 1);
    assert!(matches!(violation(img), Violation::BatmapChecksum { offset: 2048, .. }));
    // Changing the map without its checksum is caught the same way.
    let mut img = base();
    img[2560] |= 0x01;
    assert!(matches!(violation(img), Violation::BatmapChecksum { .. }));
}

#[test]
fn batmap_marks_unallocated_block() {
    let img = set_bat(base(), 3, BAT_UNUSED);
    assert_eq!(violation(img), Violation::BatmapMarksUnallocated { offset: 2560, block: 3 });
}

#[test]
fn short_footer_bounds_the_batmap_by_a_full_footer() {
    // An empty disk ends with its batmap. `vhd-util check` bounds it by EOF - 512 even when
    // the footer is one byte short, so cutting that byte puts the batmap past the bound.
    let raw = vec![0u8; 4 * MIB as usize];
    let mut img = write_vhd(raw.as_slice(), Vec::new(), &vhd_opts(), &NoProgress).unwrap().0;
    assert_eq!(img.len(), 3584);
    img.pop();
    let v = violation(img);
    assert_eq!(v, Violation::BatmapPastFooter { offset: 2048, end: 3072, footer: 3071 });
}

#[test]
fn tap_version_0_1_is_refused() {
    let img = edit_footers(base(), |f| f.creator_version = 0x0000_0001);
    assert!(matches!(violation(img), Violation::TapVersionObsolete { .. }));
}

#[test]
fn tap_1_1_batmap_is_checked_when_present() {
    let img = edit_footers(base(), |f| f.creator_version = 0x0001_0001);
    assert!(open(img.clone()).unwrap().batmap().is_some());
    let broken = edit_batmap_header(img.clone(), |h| h.checksum ^= 1);
    assert!(matches!(violation(broken), Violation::BatmapChecksum { offset: 2048, .. }));
    // Without the cookie there is no batmap, which tap 1.1 allows.
    let absent = edit_batmap_header(img, |h| h.cookie = *b"nobatmap");
    assert!(open(absent).unwrap().batmap().is_none());
}

#[test]
fn batmap_1_1_checksum_sums_signed_bytes() {
    // Blocks 0, 1 and 3 are full: the map's first byte is 0xd0, a negative `char`.
    let img = base();
    assert_eq!(img[2560], 0xd0);
    let img = edit_batmap_header(img, |h| h.version = 0x0001_0001);
    let v = violation(img.clone());
    assert_eq!(
        v,
        Violation::BatmapChecksum { offset: 2048, stored: !0xd0, computed: !0xffff_ffd0 }
    );
    open(edit_batmap_header(img, |h| h.checksum = !0xffff_ffd0)).unwrap();
}

/// A disk of 8 GiB + 2 MiB whose only data is in its last block, 4096.
struct LastBlockOnly;

impl xspack_disk::DiskSource for LastBlockOnly {
    fn size(&self) -> u64 {
        (8 << 30) + 2 * MIB
    }

    fn read_exact_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = if offset + i as u64 >= 8 << 30 { 0x5a } else { 0 };
        }
        Ok(())
    }

    fn known_zero(&mut self, offset: u64, len: u64) -> std::io::Result<bool> {
        Ok(offset + len <= 8 << 30)
    }
}

#[test]
fn batmap_checksum_covers_what_blktap_sums() {
    // 4097 blocks need a two-sector batmap, but blktap sums `current_size >> 24` = 512 bytes
    // of it (one sector): block 4096's bit, in the second sector, is outside the checksum.
    let img = write_vhd(LastBlockOnly, Vec::new(), &vhd_opts(), &NoProgress).unwrap().0;
    let vhd = open(img).unwrap();
    let (h, map) = vhd.batmap().unwrap();
    assert_eq!((h.batmap_size, map[512]), (2, 0x80));
    assert_eq!(h.checksum, !0, "the checksum of the first sector, all zeros");
}

// Stream layout (xapi's forward-only vhd-tool); these images pass `vhd-util check`.

#[test]
fn stream_blocks_out_of_order() {
    let img = base();
    let (b0, b1) = (bat(&img, 0), bat(&img, 1));
    let img = set_bat(set_bat(img, 0, b1), 1, b0);
    let mut vhd = open(img).unwrap();
    let err = vhd.check_stream_layout().unwrap_err();
    let expected =
        Violation::StreamBlockOrder { offset: 1540, block: 1, sector: 6, previous: 4103 };
    assert_eq!(err.violation(), Some(&expected));
}

#[test]
fn stream_bitmap_not_all_ones() {
    let mut img = base();
    img[8200 * 512 + 511] = 0xFE;
    let mut vhd = open(img).unwrap();
    let err = vhd.check_stream_layout().unwrap_err();
    let expected = Violation::StreamBitmap { offset: 8200 * 512, block: 3 };
    assert_eq!(err.violation(), Some(&expected));
}

#[test]
fn stream_header_and_table_elsewhere() {
    // Rebuild the empty 4 MiB image with the header at 1024 and the BAT at 2048.
    let raw = vec![0u8; 4 * MIB as usize];
    let img = write_vhd(raw.as_slice(), Vec::new(), &vhd_opts(), &NoProgress).unwrap().0;
    let footer_bytes = &img[..512];
    let header = DynamicHeader::decode(img[512..1536].try_into().unwrap());
    let mut moved = vec![0u8; 512 + 512 + 1024 + 512 + 512 + 512 + 512];
    let mut f = Footer::decode(footer_bytes.try_into().unwrap());
    f.data_offset = 1024;
    f.checksum = f.computed_checksum();
    let mut h = header;
    h.table_offset = 2048;
    h.checksum = h.computed_checksum();
    let len = moved.len();
    moved[..512].copy_from_slice(&f.encode());
    moved[1024..2048].copy_from_slice(&h.encode());
    moved[2048..2560].copy_from_slice(&img[1536..2048]);
    let mut bh = BatmapHeader::decode(img[2048..2560].try_into().unwrap());
    bh.batmap_offset = 3072;
    moved[2560..3072].copy_from_slice(&bh.encode());
    moved[len - 512..].copy_from_slice(&f.encode());
    let mut vhd = open(moved.clone()).unwrap();
    let err = vhd.check_stream_layout().unwrap_err();
    assert_eq!(err.violation(), Some(&Violation::StreamHeaderOffset { data_offset: 1024 }));

    // Header back at 512, BAT still at 2048.
    f.data_offset = 512;
    f.checksum = f.computed_checksum();
    moved[..512].copy_from_slice(&f.encode());
    moved[512..1536].copy_from_slice(&h.encode());
    moved[1536..2048].fill(0);
    moved[len - 512..].copy_from_slice(&f.encode());
    let mut vhd = open(moved).unwrap();
    let err = vhd.check_stream_layout().unwrap_err();
    assert_eq!(err.violation(), Some(&Violation::StreamTableOffset { table_offset: 2048 }));
}

/// A disk of zeros the writer never reads.
struct Zeros(u64);

impl xspack_disk::DiskSource for Zeros {
    fn size(&self) -> u64 {
        self.0
    }

    fn read_exact_at(&mut self, _: u64, buf: &mut [u8]) -> std::io::Result<()> {
        buf.fill(0);
        Ok(())
    }

    fn known_zero(&mut self, _: u64, _: u64) -> std::io::Result<bool> {
        Ok(true)
    }
}
