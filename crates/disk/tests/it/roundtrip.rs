//! Writer → reader round trips on small random sparse disks, and reproducibility.

use std::io::{Cursor, Read};

use proptest::prelude::*;
use xspack_disk::qcow2::{Qcow2Options, write_qcow2};
use xspack_disk::vhd::{VhdFile, VhdOptions, write_vhd, write_vhd_file};
use xspack_disk::{Error, ReopenSource, SeekSource, Uuid};
use xspack_io::{HashingWriter, NoProgress};

use crate::{MIB, NOW, Pattern, small_disk, tempdir, tool_ok, vhd_opts};

const BLOCK: u64 = 2 * MIB;

/// A disk of 1 to 5 blocks with up to 6 data regions of up to 300 KB.
fn arb_disk(blocks: std::ops::RangeInclusive<u64>) -> impl Strategy<Value = Pattern> {
    blocks.prop_flat_map(|blocks| {
        let size = blocks * BLOCK;
        proptest::collection::vec((0..size, 1..300_000u64), 0..6).prop_map(move |regions| {
            let regions = regions.into_iter().map(|(start, len)| start..(start + len).min(size));
            Pattern::new(size, regions.collect())
        })
    })
}

fn nonzero_blocks(raw: &[u8]) -> u32 {
    let count = raw.chunks(BLOCK as usize).filter(|b| b.iter().any(|&x| x != 0)).count();
    u32::try_from(count).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn vhd_round_trips(pattern in arb_disk(1..=5), seekable in any::<bool>()) {
        let raw = pattern.render();
        let image = if seekable {
            let source = SeekSource::new(pattern.clone(), pattern.size);
            write_vhd(source, Vec::new(), &vhd_opts(), &NoProgress).unwrap().0
        } else {
            let source = ReopenSource::new(pattern.size, || Ok(pattern.clone()));
            write_vhd(source, Vec::new(), &vhd_opts(), &NoProgress).unwrap().0
        };
        let mut vhd = VhdFile::open_at(Cursor::new(image), NOW).unwrap();
        vhd.check_stream_layout().unwrap();
        let info = vhd.info();
        prop_assert_eq!(info.virtual_size, pattern.size);
        prop_assert_eq!(info.allocated_blocks, nonzero_blocks(&raw));
        let mut back = Vec::new();
        vhd.raw_reader().read_to_end(&mut back).unwrap();
        prop_assert!(back == raw);
    }
}

proptest! {
    // Each case runs qemu-img, so few of them.
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn qcow2_round_trips_through_qemu(pattern in arb_disk(1..=3), compress in any::<bool>()) {
        let (_tmp, dir) = tempdir();
        let raw_path = dir.join("disk.raw");
        std::fs::write(&raw_path, pattern.render()).unwrap();
        let image = dir.join("disk.qcow2");
        let source = SeekSource::new(pattern.clone(), pattern.size);
        xspack_disk::qcow2::write_qcow2_file(source, &image, &Qcow2Options::new(compress), &NoProgress)
            .unwrap();
        let out = tool_ok(
            "qemu-img",
            &["compare", "-f", "raw", "-F", "qcow2", raw_path.as_str(), image.as_str()],
        );
        prop_assert!(out.contains("Images are identical"));
    }
}

fn digest_of_vhd(opts: &VhdOptions) -> xspack_io::Sha256Digest {
    let raw = small_disk().render();
    let (out, _) =
        write_vhd(raw.as_slice(), HashingWriter::new(std::io::sink()), opts, &NoProgress).unwrap();
    out.finish().1
}

#[test]
fn two_writes_are_byte_identical() {
    let raw = small_disk().render();
    let vhd = || write_vhd(raw.as_slice(), Vec::new(), &vhd_opts(), &NoProgress).unwrap().0;
    let first = vhd();
    assert!(first == vhd());
    assert_eq!(digest_of_vhd(&vhd_opts()), digest_of_vhd(&vhd_opts()));
    // The options are all that varies: id and time.
    let other_time = VhdOptions::new(vhd_opts().uuid, NOW + 1);
    assert_ne!(digest_of_vhd(&vhd_opts()), digest_of_vhd(&other_time));
    let other_id = VhdOptions::new(Uuid::from_bytes([1; 16]), NOW);
    assert_ne!(digest_of_vhd(&vhd_opts()), digest_of_vhd(&other_id));

    for compress in [false, true] {
        let opts = Qcow2Options::new(compress);
        let qcow2 = || write_qcow2(raw.as_slice(), Vec::new(), &opts, &NoProgress).unwrap().0;
        let first = qcow2();
        assert!(first == qcow2(), "qcow2 (compress: {compress}) differs between writes");
    }
}

#[test]
fn file_writers_are_atomic_and_never_clobber() {
    let (_tmp, dir) = tempdir();
    let raw = small_disk().render();
    let path = dir.join("disk.vhd");
    let summary = write_vhd_file(raw.as_slice(), &path, &vhd_opts(), &NoProgress).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), summary.file_size);
    let err = write_vhd_file(raw.as_slice(), &path, &vhd_opts(), &NoProgress).unwrap_err();
    assert!(matches!(err, Error::Output(xspack_io::Error::Exists { .. })), "{err}");
    // A failing write leaves nothing behind.
    let bad = dir.join("bad.vhd");
    let err = write_vhd_file(&raw[..3 * 1024 * 1024], &bad, &vhd_opts(), &NoProgress).unwrap_err();
    assert!(matches!(err, Error::File { .. }), "{err}");
    assert!(err.to_string().contains("bad.vhd"), "{err}");
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["disk.vhd"]);
}

#[test]
fn a_source_that_changes_between_passes_is_caught() {
    // Compressed qcow2 re-derives every stream; a changed cluster gives another length.
    let raw = small_disk().render();
    let mut changed = raw.clone();
    // Cluster 1 deflates well (see `Pattern`), so it is stored compressed.
    changed[65_536 + 100..65_536 + 200].fill(0x55);
    let mut calls = 0;
    let source = ReopenSource::new(raw.len() as u64, || {
        calls += 1;
        Ok(Cursor::new(if calls == 1 { raw.clone() } else { changed.clone() }))
    });
    match write_qcow2(source, Vec::new(), &Qcow2Options::new(true), &NoProgress) {
        Err(Error::SourceChanged { offset }) => assert_eq!(offset, 65_536),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("the change went unnoticed"),
    }
}
