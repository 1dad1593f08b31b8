//! The rules a VHD must follow, one [`Violation`] each.
//!
//! They mirror blktap's `vhd-util check` (`xapi-project/blktap:vhd/lib/vhd-util-check.c` and
//! the `libvhd` checks it relies on, `vhd/lib/libvhd.c`), plus the stricter layout that xapi's
//! forward-only `vhd-tool` needs (`xapi-project/vhd-tool`, which reads the file front to
//! back). Each check returns the first [`Violation`] it finds.

use super::footer::{CHECKSUM_OFFSET, FOOTER_RESERVED};
use super::{
    BATMAP_COOKIE, BATMAP_VERSION, BLOCK_SIZE, DiskType, DynamicHeader, FEATURE_RESERVED,
    FEATURE_TEMPORARY, FOOTER_COOKIE, FORMAT_VERSION, Footer, Geometry, HEADER_COOKIE,
    HEADER_VERSION, SECTOR_SIZE, TAP_VERSION, TIMESTAMP_SLACK, Violation,
};
use crate::bytes::is_zero;

/// Offset of the first non-zero byte of `bytes`, which start at `base`.
fn first_nonzero(bytes: &[u8], base: u64) -> Option<u64> {
    bytes.iter().position(|&b| b != 0).map(|i| base + i as u64)
}

fn is_old_tap(footer: &Footer) -> bool {
    footer.creator_app[..3] == *b"tap"
        && (footer.creator_version == 0x0000_0001 || footer.creator_version == 0x0001_0001)
}

/// `vhd_util_check_validate_footer` and libvhd's nil-uuid test, in that order. `now` is the
/// current time in VHD seconds (since 2000).
pub(crate) fn check_footer(f: &Footer, offset: u64, now: u64) -> Result<(), Violation> {
    if f.cookie != FOOTER_COOKIE {
        return Err(Violation::FooterCookie { offset, found: f.cookie });
    }
    let computed = f.computed_checksum();
    if computed != f.checksum {
        // Old tap versions set the hidden flag without updating the checksum.
        let forgiven = f.hidden != 0
            && is_old_tap(f)
            && Footer { hidden: 0, ..f.clone() }.computed_checksum() == f.checksum;
        if !forgiven {
            return Err(Violation::FooterChecksum { offset, stored: f.checksum, computed });
        }
    }
    if f.features & FEATURE_RESERVED == 0 {
        return Err(Violation::FooterReservedFeature { offset, features: f.features });
    }
    if f.features & !(FEATURE_TEMPORARY | FEATURE_RESERVED) != 0 {
        return Err(Violation::FooterExtraFeatures { offset, features: f.features });
    }
    if f.format_version != FORMAT_VERSION {
        return Err(Violation::FooterVersion { offset, version: f.format_version });
    }
    let sparse = [DiskType::Dynamic.code(), DiskType::Differencing.code()];
    if !sparse.contains(&f.disk_type) && f.data_offset != u64::MAX {
        return Err(Violation::FooterDataOffset { offset, data_offset: f.data_offset });
    }
    let limit = now + TIMESTAMP_SLACK;
    if u64::from(f.timestamp) > limit {
        return Err(Violation::FooterTimestamp { offset, timestamp: f.timestamp, limit });
    }
    if f.creator_app[..3] == *b"tap" && f.creator_version > TAP_VERSION {
        return Err(Violation::TapCreatorVersion { offset, version: f.creator_version });
    }
    let max = Geometry::for_size(f.current_size);
    if max.packed() < f.geometry.packed() {
        return Err(Violation::GeometryTooLarge { offset, geometry: f.geometry, max });
    }
    if f.disk_type().is_none() {
        return Err(Violation::DiskType { offset, code: f.disk_type });
    }
    if f.saved_state > 1 {
        return Err(Violation::SavedState { offset, value: f.saved_state });
    }
    if f.hidden > 1 {
        return Err(Violation::HiddenState { offset, value: f.hidden });
    }
    if let Some(at) =
        first_nonzero(&f.reserved, offset + (super::FOOTER_SIZE - FOOTER_RESERVED) as u64)
    {
        return Err(Violation::FooterReserved { offset: at });
    }
    if f.uuid.is_nil() {
        return Err(Violation::NilUuid { offset });
    }
    debug_assert_eq!(CHECKSUM_OFFSET, 64);
    Ok(())
}

/// The primary (end) and backup (offset 0) footers must be identical, except that old tap
/// versions may set the hidden flag in the backup only.
pub(crate) fn check_footers_match(
    primary: &Footer,
    backup: &Footer,
    primary_offset: u64,
) -> Result<(), Violation> {
    if primary == backup
        || (backup.hidden != 0
            && is_old_tap(backup)
            && *primary == Footer { hidden: 0, ..backup.clone() })
    {
        Ok(())
    } else {
        Err(Violation::FooterMismatch { primary: primary_offset })
    }
}

/// `vhd_util_check_validate_header`, then blktap's 2 MiB block size limit. `footer` is the
/// offset of the footer at the end of the file.
pub(crate) fn check_header(h: &DynamicHeader, offset: u64, footer: u64) -> Result<(), Violation> {
    if h.cookie != HEADER_COOKIE {
        return Err(Violation::HeaderCookie { offset, found: h.cookie });
    }
    let computed = h.computed_checksum();
    if computed != h.checksum {
        return Err(Violation::HeaderChecksum { offset, stored: h.checksum, computed });
    }
    if h.header_version != HEADER_VERSION {
        return Err(Violation::HeaderVersion { offset, version: h.header_version });
    }
    if h.data_offset != u64::MAX {
        return Err(Violation::HeaderDataOffset { offset, data_offset: h.data_offset });
    }
    if h.table_offset == 0 || !h.table_offset.is_multiple_of(SECTOR_SIZE) {
        return Err(Violation::TableOffset { offset, table_offset: h.table_offset });
    }
    let bat_end = h.table_offset.saturating_add(u64::from(h.max_table_entries) * 4);
    if bat_end > footer {
        return Err(Violation::BatPastFooter { offset, bat_end, footer });
    }
    if !h.block_size.is_power_of_two() || u64::from(h.block_size) < SECTOR_SIZE {
        return Err(Violation::BlockSize { offset, block_size: h.block_size });
    }
    if h.reserved1 != 0 {
        let at = first_nonzero(&h.reserved1.to_be_bytes(), offset + 60).expect("non-zero");
        return Err(Violation::HeaderReserved { offset: at });
    }
    if let Some(at) = first_nonzero(&h.reserved2, offset + 768) {
        return Err(Violation::HeaderReserved { offset: at });
    }
    if h.block_size > BLOCK_SIZE {
        return Err(Violation::BlockSizeTooLarge { offset, block_size: h.block_size });
    }
    Ok(())
}

/// `vhd_util_check_validate_differencing_header` for a disk without parent.
pub(crate) fn check_no_parent(h: &DynamicHeader, offset: u64) -> Result<(), Violation> {
    if !is_zero(&h.parent_name) {
        return Err(Violation::ParentName { offset });
    }
    if !is_zero(&h.parent_locators) {
        return Err(Violation::ParentLocators { offset });
    }
    if h.parent_uuid != [0; 16] {
        return Err(Violation::ParentUuid { offset });
    }
    if h.parent_timestamp != 0 {
        return Err(Violation::ParentTimestamp { offset, value: h.parent_timestamp });
    }
    Ok(())
}

/// Where the blocks may go, for [`check_bat`].
pub(crate) struct BatBounds {
    /// Offset of the BAT.
    pub table_offset: u64,
    /// End of all metadata in bytes (`vhd_end_of_headers`).
    pub metadata_end: u64,
    /// Offset of the footer at the end (rounded up to a sector for short footers).
    pub footer: u64,
    /// Sectors of one block, its bitmap included.
    pub block_sectors: u64,
}

/// `vhd_util_check_bat` for the first `bat.len()` entries (the blocks of the virtual size).
/// Overlaps are found by sorting, not by blktap's quadratic scan; the result is the same.
pub(crate) fn check_bat(bat: &[u32], b: &BatBounds) -> Result<(), Violation> {
    let entry_offset = |i: usize| b.table_offset + 4 * i as u64;
    let mut used: Vec<(u32, u32)> = Vec::new();
    for (i, &sector) in bat.iter().enumerate() {
        if sector == super::BAT_UNUSED {
            continue;
        }
        let block = u32::try_from(i).expect("BAT index fits u32");
        let start = u64::from(sector) * SECTOR_SIZE;
        if start < b.metadata_end / SECTOR_SIZE * SECTOR_SIZE {
            let end = b.metadata_end;
            return Err(Violation::BlockClobbersHeaders {
                offset: entry_offset(i),
                block,
                sector,
                end,
            });
        }
        if u64::from(sector) + b.block_sectors > b.footer / SECTOR_SIZE {
            let footer = b.footer;
            return Err(Violation::BlockPastFooter {
                offset: entry_offset(i),
                block,
                sector,
                footer,
            });
        }
        used.push((sector, block));
    }
    used.sort_unstable();
    let clash = used
        .windows(2)
        .filter(|w| u64::from(w[1].0) < u64::from(w[0].0) + b.block_sectors)
        .map(|w| if w[0].1 < w[1].1 { (w[0], w[1]) } else { (w[1], w[0]) })
        .min_by_key(|((_, block), _)| *block);
    if let Some(((sector, block), (other_sector, other))) = clash {
        let offset = entry_offset(block as usize);
        return Err(Violation::BlocksOverlap { offset, block, sector, other, other_sector });
    }
    Ok(())
}

/// The batmap header checks of `vhd_util_check_validate_batmap` that need no map bytes.
pub(crate) fn check_batmap_header(
    h: &super::BatmapHeader,
    offset: u64,
    entries: u32,
    footer: u64,
) -> Result<(), Violation> {
    if h.cookie != BATMAP_COOKIE {
        return Err(Violation::BatmapCookie { offset, found: h.cookie });
    }
    if h.version > BATMAP_VERSION {
        return Err(Violation::BatmapVersion { offset, version: h.version });
    }
    if h.batmap_size == 0 {
        return Err(Violation::BatmapSizeZero { offset });
    }
    if (u64::from(h.batmap_size) << 12) < u64::from(entries) {
        return Err(Violation::BatmapTooSmall { offset, sectors: h.batmap_size, entries });
    }
    if h.batmap_offset == 0 || !h.batmap_offset.is_multiple_of(SECTOR_SIZE) {
        return Err(Violation::BatmapOffset { offset, batmap_offset: h.batmap_offset });
    }
    let end = h.batmap_offset.saturating_add(u64::from(h.batmap_size) * SECTOR_SIZE);
    if end > footer {
        return Err(Violation::BatmapPastFooter { offset, end, footer });
    }
    Ok(())
}

/// The batmap checksum, over the bytes and with the signedness blktap uses
/// (`vhd_checksum_batmap`), and `vhd_util_check_batmap`'s test that every full block is
/// allocated. `current_size` is the footer's.
pub(crate) fn check_batmap(
    h: &super::BatmapHeader,
    offset: u64,
    map: &[u8],
    bat: &[u32],
    current_size: u64,
) -> Result<(), Violation> {
    let computed = super::batmap_checksum(map, current_size, h.version);
    if computed != h.checksum {
        return Err(Violation::BatmapChecksum { offset, stored: h.checksum, computed });
    }
    for (i, &sector) in bat.iter().enumerate() {
        if map[i / 8] & (0x80 >> (i % 8)) != 0 && sector == super::BAT_UNUSED {
            let block = u32::try_from(i).expect("BAT index fits u32");
            let offset = h.batmap_offset + (i / 8) as u64;
            return Err(Violation::BatmapMarksUnallocated { offset, block });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Uuid;

    fn footer() -> Footer {
        Footer::dynamic(64 << 20, Uuid::from_bytes([3; 16]), 100)
    }

    fn resum(mut f: Footer) -> Footer {
        f.checksum = f.computed_checksum();
        f
    }

    #[test]
    fn valid_footer_passes() {
        check_footer(&footer(), 512, 100).unwrap();
    }

    #[test]
    fn hidden_flag_forgiven_for_old_tap_only() {
        let mut f = footer();
        f.creator_version = 0x0001_0001;
        let f = resum(f);
        let hidden = Footer { hidden: 1, ..f.clone() };
        check_footer(&hidden, 0, 100).unwrap();
        check_footers_match(&f, &hidden, 512).unwrap();
        let current = Footer { hidden: 1, ..footer() };
        assert!(matches!(check_footer(&current, 0, 100), Err(Violation::FooterChecksum { .. })));
    }

    #[test]
    fn timestamp_slack() {
        let f = resum(Footer { timestamp: 1000 + 1800, ..footer() });
        check_footer(&f, 0, 1000).unwrap();
        let f = resum(Footer { timestamp: 1000 + 1801, ..footer() });
        let err = check_footer(&f, 7, 1000).unwrap_err();
        assert_eq!(err, Violation::FooterTimestamp { offset: 7, timestamp: 2801, limit: 2800 });
    }

    #[test]
    fn messages_name_rule_and_offset() {
        let err = Violation::FooterCookie { offset: 512, found: *b"conect\0\x01" };
        assert_eq!(err.to_string(), r#"footer at 512: invalid cookie "conect\x00\x01""#);
        let err = check_footer(&resum(Footer { saved_state: 2, ..footer() }), 9, 100).unwrap_err();
        assert_eq!(err.to_string(), "footer at 9: invalid 'saved' state 2");
    }

    #[test]
    fn overlaps_report_the_lowest_block() {
        let bounds = BatBounds {
            table_offset: 1536,
            metadata_end: 3072,
            footer: 1 << 30,
            block_sectors: 4097,
        };
        check_bat(&[6, 6 + 4097, super::super::BAT_UNUSED], &bounds).unwrap();
        let err = check_bat(&[6 + 4097, 6 + 4096, 6], &bounds).unwrap_err();
        assert_eq!(
            err,
            Violation::BlocksOverlap {
                offset: 1536,
                block: 0,
                sector: 6 + 4097,
                other: 1,
                other_sector: 6 + 4096
            }
        );
    }
}
