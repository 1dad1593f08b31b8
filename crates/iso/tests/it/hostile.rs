//! The reader treats images as hostile: typed errors for each kind of damage, no panics on
//! random corruption.

use std::io::{Cursor, Read};
use std::sync::OnceLock;

use proptest::prelude::*;
use xspack_io::Classify as _;
use xspack_iso::{EntryKind, Error, IsoReader};

use crate::{EPOCH, options, small_image};

const SECTOR: usize = 2048;

/// A small valid image: files, a subdirectory, a symlink, a long name and a long symlink target
/// (both in SUSP continuation areas), and Joliet.
fn base_image() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| small_image(options(EPOCH)))
}

/// Offset of the primary directory record whose identifier is `ident`.
fn find_record(img: &[u8], ident: &[u8]) -> usize {
    let mut pattern = vec![u8::try_from(ident.len()).unwrap()];
    pattern.extend_from_slice(ident);
    let at = img.windows(pattern.len()).position(|w| w == pattern).expect("record present");
    at - 32
}

fn set_u32_both(img: &mut [u8], at: usize, v: u32) {
    img[at..at + 4].copy_from_slice(&v.to_le_bytes());
    img[at + 4..at + 8].copy_from_slice(&v.to_be_bytes());
}

fn root_extent(img: &[u8]) -> u32 {
    let at = 16 * SECTOR + 156 + 2;
    u32::from_le_bytes(img[at..at + 4].try_into().unwrap())
}

fn open(img: Vec<u8>) -> Result<IsoReader<Cursor<Vec<u8>>>, Error> {
    IsoReader::new(Cursor::new(img))
}

fn entries_err(img: Vec<u8>) -> Error {
    open(img).unwrap().entries().unwrap_err()
}

#[test]
fn base_image_is_valid() {
    let mut r = open(base_image().to_vec()).unwrap();
    assert_eq!(r.entries().unwrap().len(), 9);
    assert_eq!(r.lookup("far").unwrap().symlink_target.unwrap(), "t/".repeat(500));
}

#[test]
fn truncated_image() {
    let img = base_image();
    let err = open(img[..img.len() - SECTOR].to_vec()).unwrap_err();
    assert!(matches!(err, Error::Truncated { what: "volume space", .. }), "{err}");
    assert!(err.is_bad_input());
    let err = open(img[..10 * SECTOR].to_vec()).unwrap_err();
    assert!(
        matches!(err, Error::Truncated { what: "volume descriptor", offset: 32768, .. }),
        "{err}"
    );
}

#[test]
fn bad_descriptors() {
    let mut img = base_image().to_vec();
    img[16 * SECTOR + 1] = b'X';
    let err = open(img).unwrap_err();
    assert!(matches!(err, Error::BadDescriptor { sector: 16, .. }), "{err}");

    let mut img = base_image().to_vec();
    img[16 * SECTOR + 128..16 * SECTOR + 130].copy_from_slice(&512u16.to_le_bytes());
    let err = open(img).unwrap_err();
    assert_eq!(
        err.to_string(),
        "volume descriptor in sector 16: logical block size 512 is not 2048"
    );

    // No terminator: every descriptor after the PVD turned into an unknown type.
    let mut img = base_image().to_vec();
    img.resize(100 * SECTOR, 0);
    for sector in 17..81 {
        img[sector * SECTOR..sector * SECTOR + 7].copy_from_slice(b"\x05CD001\x01");
    }
    let err = open(img).unwrap_err();
    assert!(err.to_string().contains("no set terminator within 64 descriptors"), "{err}");
}

#[test]
fn root_extent_past_the_end() {
    let mut img = base_image().to_vec();
    set_u32_both(&mut img, 16 * SECTOR + 156 + 2, 0x00ff_ffff);
    let err = open(img).unwrap_err();
    assert!(matches!(err, Error::ExtentOutOfBounds { extent: 0x00ff_ffff, .. }), "{err}");
}

#[test]
fn directory_extent_past_the_end() {
    let mut img = base_image().to_vec();
    let rec = find_record(&img, b"SUB");
    set_u32_both(&mut img, rec + 2, 0x00ff_ffff);
    let err = entries_err(img);
    match err {
        Error::ExtentOutOfBounds { ref path, extent: 0x00ff_ffff, .. } => assert_eq!(path, "sub"),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn file_extent_past_the_end() {
    let mut img = base_image().to_vec();
    let rec = find_record(&img, b"CD.;1");
    set_u32_both(&mut img, rec + 2, 0x0100_0000);
    let err = entries_err(img);
    assert!(matches!(err, Error::ExtentOutOfBounds { ref path, .. } if path == "cd"), "{err}");
}

#[test]
fn directory_loop() {
    let mut img = base_image().to_vec();
    let root = root_extent(&img);
    let rec = find_record(&img, b"DEEPER");
    set_u32_both(&mut img, rec + 2, root);
    let err = entries_err(img);
    assert_eq!(
        err.to_string(),
        format!("sub/deeper: directory loop (extent at sector {root} was already visited)")
    );
}

#[test]
fn hostile_names() {
    // A Rock Ridge name of ".." would escape the directory on extraction.
    let mut img = base_image().to_vec();
    let nm = img.windows(7).position(|w| w == b"NM\x07\x01\x00ab").unwrap();
    img[nm + 5..nm + 7].copy_from_slice(b"..");
    let err = entries_err(img);
    assert!(matches!(err, Error::BadName { .. }), "{err}");

    let mut img = base_image().to_vec();
    let nm = img.windows(7).position(|w| w == b"NM\x07\x01\x00cd").unwrap();
    img[nm + 5..nm + 7].copy_from_slice(b"ab");
    let err = entries_err(img);
    assert_eq!(err.to_string(), "ab: name recorded twice in its directory");
}

#[test]
fn continuation_loop() {
    // Make the area holding the ER chain to itself.
    let mut img = base_image().to_vec();
    let er = img.windows(4).position(|w| w == b"ER\xed\x01").unwrap();
    let (block, offset) =
        (u32::try_from(er / SECTOR).unwrap(), u32::try_from(er % SECTOR).unwrap());
    img[er..er + 237].fill(0);
    img[er..er + 4].copy_from_slice(b"CE\x1c\x01");
    // The rest of the old ER's room becomes a SUSP padding entry (PD, SUSP 5.2).
    img[er + 28..er + 32].copy_from_slice(&[b'P', b'D', 237 - 28, 1]);
    for (i, v) in [block, offset, 28].into_iter().enumerate() {
        set_u32_both(&mut img, er + 4 + 8 * i, v);
    }
    let err = open(img).unwrap_err();
    assert!(
        matches!(err, Error::LimitExceeded { what: "chain of SUSP continuation areas", .. }),
        "{err}"
    );
}

#[test]
fn reading_a_directory_as_a_file_is_refused() {
    let mut r = open(base_image().to_vec()).unwrap();
    let sub = r.lookup("sub").unwrap();
    assert!(matches!(r.open_file(&sub), Err(Error::NotAFile { .. })));
    assert!(matches!(r.lookup("sub/missing"), Err(Error::NotFound { .. })));
    assert!(matches!(r.lookup("ab/under-a-file"), Err(Error::NotFound { .. })));
}

/// Parses everything the reader can reach; errors are fine, panics and hangs are not.
fn exercise(img: Vec<u8>) {
    let Ok(mut r) = open(img) else { return };
    if let Ok(entries) = r.entries() {
        for e in entries.iter().filter(|e| e.kind == EntryKind::File) {
            if let Ok(mut f) = r.open_file(e) {
                let _ = f.read_to_end(&mut Vec::new());
            }
        }
        if let Some(e) = entries.first() {
            let _ = r.lookup(&e.path);
        }
    }
    let _ = r.joliet_entries();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn random_corruption_never_panics(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
        metadata_only in any::<bool>(),
    ) {
        let mut img = base_image().to_vec();
        // Bias towards the descriptors, path tables, directories and continuation areas.
        let span = if metadata_only { (40 * SECTOR).min(img.len()) } else { img.len() };
        for (index, byte) in flips {
            let at = 16 * SECTOR + index.index(span - 16 * SECTOR);
            img[at] = byte;
        }
        exercise(img);
    }

    #[test]
    fn truncation_never_panics(len in 0usize..60 * SECTOR) {
        let img = base_image();
        exercise(img[..len.min(img.len())].to_vec());
    }
}
