//! Property round trips: `ova.xml` encode/decode, and writer to reader on small random sparse
//! disks.

use std::collections::BTreeMap;

use proptest::prelude::*;
use xspack_xva::{BootMode, ChecksumKind, DISK_ALIGNMENT, DiskSpec, Memory, Uuid, VdiType, VmSpec};

use crate::{SparseDisk, read_all, write};

/// Text XML can carry, with the characters that need escaping or care: markup, quotes, CR,
/// tabs, newlines, leading and trailing spaces, and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 &<>\"'\\r\\n\\t;:/=é中🦀\\]]{0,12}").unwrap()
}

fn string_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(text(), text(), 0..4)
}

fn memory() -> impl Strategy<Value = Memory> {
    proptest::array::uniform4(1u64..1 << 40).prop_map(|mut m| {
        m.sort_unstable();
        Memory { static_min: m[0], dynamic_min: m[1], dynamic_max: m[2], static_max: m[3] }
    })
}

prop_compose! {
    fn disk(i: usize)(
        name in text(),
        description in text(),
        units in 1u64..2000,
        bootable: bool,
        read_only: bool,
        user: bool,
    ) -> DiskSpec {
        let seed = |role: &str| Uuid::from_seed(format!("{role}{i}").as_bytes());
        let mut d = DiskSpec::new(units * DISK_ALIGNMENT, seed("vdi"), seed("vbd"));
        d.name = name;
        d.description = description;
        d.bootable = bootable;
        d.read_only = read_only;
        d.vdi_type = if user { VdiType::User } else { VdiType::System };
        d
    }
}

fn disks() -> impl Strategy<Value = Vec<DiskSpec>> {
    (0usize..5).prop_flat_map(|n| (0..n).map(disk).collect::<Vec<_>>())
}

prop_compose! {
    fn vm_spec()(
        name in text(),
        description in text(),
        memory in memory(),
        (vcpus_max, vcpus_at_startup) in (1u32..64).prop_flat_map(|m| (Just(m), 1..=m)),
        boot in prop_oneof![Just(BootMode::Bios), Just(BootMode::Uefi), Just(BootMode::UefiSecureBoot), Just(BootMode::UefiSecureBootAuto)],
        boot_order in "[cdn]{1,3}",
        mut platform in string_map(),
        is_template: bool,
        mut other_config in string_map(),
        recommendations in text(),
        disks in disks(),
        cd: bool,
    ) -> VmSpec {
        if boot != BootMode::Bios {
            platform.remove("secureboot");
        }
        other_config.remove("default_template");
        let mut spec = VmSpec::new(name, Uuid::from_seed(b"vm"));
        spec.description = description;
        spec.memory = memory;
        spec.vcpus_max = vcpus_max;
        spec.vcpus_at_startup = vcpus_at_startup;
        spec.boot = boot;
        spec.boot_order = boot_order;
        spec.platform = platform;
        spec.is_template = is_template;
        spec.other_config = other_config;
        spec.recommendations = recommendations;
        spec.sr_uuid = if disks.is_empty() { Uuid::NIL } else { Uuid::from_seed(b"sr") };
        spec.disks = disks;
        spec.cd_drive = cd.then(|| Uuid::from_seed(b"cd"));
        spec
    }
}

proptest! {
    #[test]
    fn ova_xml_round_trips(spec in vm_spec()) {
        let xml = spec.to_ova_xml().unwrap();
        prop_assert_eq!(VmSpec::from_ova_xml(&xml).unwrap(), spec);
    }
}

/// Up to three regions of data in a disk of `size` bytes.
fn regions(size: u64) -> impl Strategy<Value = Vec<(u64, u64)>> {
    proptest::collection::vec((0..size, 1u64..300_000), 0..4).prop_map(move |mut r| {
        r.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::new();
        for (off, len) in r {
            let start = out.last().map_or(off, |&(o, l)| off.max(o + l));
            let end = (off + len).min(size);
            if start < end {
                out.push((start, end - start));
            }
        }
        out
    })
}

fn sparse_disks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let one = (1u64..=2).prop_flat_map(|units| {
        let size = units * DISK_ALIGNMENT;
        regions(size).prop_map(move |r| SparseDisk::new(size, &r).to_vec())
    });
    proptest::collection::vec(one, 1..=3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn writer_to_reader_round_trips(disks in sparse_disks(), xxhash: bool) {
        let sizes: Vec<u64> = disks.iter().map(|d| d.len() as u64).collect();
        let spec = crate::spec("prop", &sizes);
        let kind = if xxhash { ChecksumKind::Xxh64 } else { ChecksumKind::Sha1 };
        let xva = write(&spec, &disks, kind);
        let (back, summary) = read_all(&xva).unwrap();
        prop_assert_eq!(&back, &disks);
        for (disk, s) in disks.iter().zip(&summary.disks) {
            let chunks: Vec<&[u8]> = disk.chunks(1 << 20).collect();
            let last = chunks.len() - 1;
            let stored = chunks
                .iter()
                .enumerate()
                .filter(|(i, c)| *i == 0 || *i == last || c.iter().any(|&b| b != 0))
                .count();
            prop_assert_eq!(s.chunks, stored as u64);
            prop_assert_eq!(s.checksum, kind);
        }
    }
}
