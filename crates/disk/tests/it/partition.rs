//! GPT and MBR disks as util-linux (`sfdisk --json`, `sfdisk --verify`, `fdisk -l`) and GPT
//! fdisk (`sgdisk -v`) see them; our GPT reader on the same disks; property tests of the GPT
//! structures and their CRCs; and tamper tests.

use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;
use serde_json::{Value, json};
use xspack_disk::partition::{
    ATTR_LEGACY_BIOS_BOOTABLE, ATTR_NO_BLOCK_IO, ATTR_REQUIRED, DiskBuilder, Gpt, GptEntry,
    GptHeader, Mbr, Partition, PartitionType, PartitionedDisk, TableError, crc32,
};
use xspack_disk::{DiskSource, Error, Uuid};
use xspack_io::NoProgress;

use crate::{MIB, noise, sparse_file, tempdir, tool_ok};

/// A GUID from its text form.
pub fn guid(text: &str) -> Uuid {
    text.parse().unwrap()
}

/// Writes `disk` as a raw file at `dir/name`.
pub fn write_raw(disk: PartitionedDisk<'_>, dir: &Utf8Path, name: &str) -> Utf8PathBuf {
    let path = dir.join(name);
    disk.write_raw(sparse_file(&path), &NoProgress).unwrap().finish().unwrap();
    path
}

const DISK_GUID: &str = "01234567-89ab-4cde-8f01-23456789abcd";
const GUIDS: [&str; 4] = [
    "11111111-2222-4333-8444-555555555555",
    "21686148-0000-4000-8000-000000000002",
    "a0a0a0a0-b1b1-4c2c-9d3d-e4e4e4e4e4e4",
    "ffffffff-eeee-4ddd-accc-bbbbbbbbbbbb",
];

/// Four partitions: an ESP with data, a BIOS boot partition, an odd-sized Linux partition and
/// a swap partition filling the rest of a 40 MiB disk.
fn gpt_disk() -> PartitionedDisk<'static> {
    DiskBuilder::gpt(guid(DISK_GUID))
        .size(40 * MIB)
        .boot_code(&[0xEB; 440])
        .partition(
            Partition::new(PartitionType::EFI_SYSTEM, 3 * MIB)
                .guid(guid(GUIDS[0]))
                .name("EFI system")
                .attributes(ATTR_LEGACY_BIOS_BOOTABLE | 1 << 63)
                .source(noise(100_000, 7)),
        )
        .partition(
            Partition::new(PartitionType::BIOS_BOOT, MIB)
                .guid(guid(GUIDS[1]))
                .name("BIOS boot")
                .attributes(ATTR_REQUIRED | ATTR_NO_BLOCK_IO),
        )
        .partition(
            Partition::new(PartitionType::LINUX_FILESYSTEM, 5 * MIB + 512)
                .guid(guid(GUIDS[2]))
                .name("root ü 名")
                .attributes(1 << 60),
        )
        .partition(Partition::fill(PartitionType::LINUX_SWAP).guid(guid(GUIDS[3])).name("swap"))
        .build()
        .unwrap()
}

fn sfdisk_json(path: &Utf8Path) -> Value {
    let mut v: Value =
        serde_json::from_str(&tool_ok("sfdisk", &["--json", path.as_str()])).unwrap();
    // Device and node names come from the file name.
    let table = v["partitiontable"].as_object_mut().unwrap();
    table.remove("device");
    for p in table["partitions"].as_array_mut().unwrap() {
        p.as_object_mut().unwrap().remove("node");
    }
    v
}

fn assert_verified(path: &Utf8Path) {
    let out = tool_ok("sfdisk", &["--verify", path.as_str()]);
    assert!(out.contains("No errors detected."), "{out}");
    assert!(!out.to_lowercase().contains("warning"), "{out}");
}

#[test]
fn gpt_as_sfdisk_fdisk_and_sgdisk_see_it() {
    let (_tmp, dir) = tempdir();
    let disk = gpt_disk();
    let layout = disk.layout().clone();
    assert_eq!(layout.size, 40 * MIB);
    let path = write_raw(disk, &dir, "gpt.raw");
    let last = 40 * MIB / 512 - 1;
    let upper = |s: &str| s.to_uppercase();
    let want = json!({"partitiontable": {
        "label": "gpt",
        "id": upper(DISK_GUID),
        "unit": "sectors",
        "firstlba": 34,
        "lastlba": last - 33,
        "sectorsize": 512,
        "partitions": [
            {"start": 2048, "size": 6144, "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
             "uuid": upper(GUIDS[0]), "name": "EFI system", "attrs": "LegacyBIOSBootable GUID:63"},
            {"start": 8192, "size": 2048, "type": "21686148-6449-6E6F-744E-656564454649",
             "uuid": upper(GUIDS[1]), "name": "BIOS boot",
             "attrs": "RequiredPartition NoBlockIOProtocol"},
            {"start": 10240, "size": 10241, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
             "uuid": upper(GUIDS[2]), "name": "root ü 名", "attrs": "GUID:60"},
            {"start": 22528, "size": last - 33 - 22528 + 1,
             "type": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "uuid": upper(GUIDS[3]),
             "name": "swap"},
        ],
    }});
    assert_eq!(sfdisk_json(&path), want);
    assert_verified(&path);

    let fdisk = tool_ok("fdisk", &["-l", path.as_str()]);
    assert!(fdisk.contains("Disklabel type: gpt"), "{fdisk}");
    assert!(fdisk.contains(&format!("Disk identifier: {}", upper(DISK_GUID))), "{fdisk}");
    let rows: Vec<Vec<String>> = fdisk
        .lines()
        .filter(|l| l.starts_with(path.as_str()))
        .map(|l| l.split_whitespace().skip(1).map(str::to_owned).collect())
        .collect();
    let want_rows = [
        "2048 8191 6144 3M EFI System",
        "8192 10239 2048 1M BIOS boot",
        "10240 20480 10241 5M Linux filesystem",
        &format!("22528 {} {} 29M Linux swap", last - 33, last - 33 - 22528 + 1),
    ];
    let want_rows: Vec<Vec<String>> =
        want_rows.iter().map(|r| r.split(' ').map(str::to_owned).collect()).collect();
    assert_eq!(rows, want_rows, "{fdisk}");

    let sgdisk = tool_ok("sgdisk", &["-v", path.as_str()]);
    assert!(sgdisk.contains("No problems found."), "{sgdisk}");

    // Our reader agrees, and the ESP's content is where the table says.
    let mut raw = xspack_disk::FileSource::open(&path).unwrap();
    let gpt = Gpt::read(&mut raw).unwrap();
    assert_eq!(gpt.disk_guid, guid(DISK_GUID));
    let starts: Vec<u64> = gpt.entries.iter().map(|e| e.first_lba).collect();
    assert_eq!(
        starts,
        layout.partitions.iter().map(xspack_disk::partition::Placed::first_lba).collect::<Vec<_>>()
    );
    let mut head = vec![0u8; 100_000];
    raw.read_exact_at(MIB, &mut head).unwrap();
    assert!(head == noise(100_000, 7));
    let mut mbr = [0u8; 512];
    raw.read_exact_at(0, &mut mbr).unwrap();
    assert_eq!(Mbr::decode(&mbr).unwrap().boot_code, [0xEB; 440], "boot code in the PMBR");
}

#[test]
fn mbr_as_sfdisk_and_fdisk_see_it() {
    let (_tmp, dir) = tempdir();
    let boot_code = noise(440, 9);
    let disk = DiskBuilder::mbr(0xdead_beef)
        .boot_code(&boot_code)
        .partition(
            Partition::new(PartitionType::BASIC_DATA, 3 * MIB)
                .bootable(true)
                .source(noise(5000, 1)),
        )
        .partition(Partition::new(PartitionType::LINUX_FILESYSTEM, 4 * MIB))
        .partition(Partition::new(PartitionType::LINUX_SWAP.with_mbr(0x82), MIB + 4096))
        .partition(Partition::new(PartitionType::LINUX_EXTENDED_BOOT, MIB))
        .build()
        .unwrap();
    // 1 + 3 + 4 + 1.01 (aligned to 2) + 1 = 11 MiB, rounded up to 12.
    assert_eq!(disk.layout().size, 12 * MIB);
    let path = write_raw(disk, &dir, "mbr.raw");
    let want = json!({"partitiontable": {
        "label": "dos",
        "id": "0xdeadbeef",
        "unit": "sectors",
        "sectorsize": 512,
        "partitions": [
            {"start": 2048, "size": 6144, "type": "c", "bootable": true},
            {"start": 8192, "size": 8192, "type": "83"},
            {"start": 16384, "size": 2056, "type": "82"},
            {"start": 20480, "size": 2048, "type": "ea"},
        ],
    }});
    assert_eq!(sfdisk_json(&path), want);
    assert_verified(&path);
    let fdisk = tool_ok("fdisk", &["-l", path.as_str()]);
    assert!(fdisk.contains("Disklabel type: dos"), "{fdisk}");
    assert!(fdisk.contains("Disk identifier: 0xdeadbeef"), "{fdisk}");
    let first = fdisk.lines().find(|l| l.starts_with(&format!("{path}1"))).unwrap();
    let cols: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(cols[1..7], ["*", "2048", "8191", "6144", "3M", "c"], "{fdisk}");

    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes[..440] == boot_code, "boot code kept");
    assert_eq!(bytes[510..512], [0x55, 0xAA]);
    assert!(bytes[MIB as usize..MIB as usize + 5000] == noise(5000, 1));
}

#[test]
fn builds_are_byte_identical() {
    let digest = || {
        let out = gpt_disk().write_raw(xspack_io::HashingWriter::new(std::io::sink()), &NoProgress);
        out.unwrap().finish().1
    };
    assert_eq!(digest(), digest());
}

#[test]
fn tampered_tables_are_refused() {
    let mut raw = gpt_disk().write_raw(Vec::new(), &NoProgress).unwrap();
    assert!(Gpt::read(&mut raw.as_slice()).is_ok());
    let last = raw.len() - 512;
    // Primary header, primary entries, backup entries, backup header, protective MBR.
    for (at, what) in [
        (512 + 40, "GPT header"),
        (1024 + 200, "GPT entries"),
        (last - 16384 + 3, "backup GPT entries"),
        (last + 60, "GPT header"),
        (450, "protective"),
    ] {
        raw[at] ^= 0x40;
        let err = Gpt::read(&mut raw.as_slice()).unwrap_err();
        assert!(format!("{err}").contains(what), "byte {at}: {err}");
        raw[at] ^= 0x40;
    }
    // A consistent header pointing elsewhere is caught by the cross-checks.
    let mut h = GptHeader::decode(&raw[512..1024]).unwrap();
    h.alternate_lba -= 1;
    raw[512..1024].copy_from_slice(&h.encode());
    let err = Gpt::read(&mut raw.as_slice()).unwrap_err();
    assert!(matches!(err, Error::Partition(TableError::Malformed { .. })), "{err}");
}

fn arb_uuid() -> impl Strategy<Value = Uuid> {
    any::<[u8; 16]>().prop_map(Uuid::from_bytes)
}

fn arb_name() -> impl Strategy<Value = String> {
    // Up to 36 UTF-16 units: characters from the BMP (1 unit) and beyond (2 units), no NUL.
    prop::collection::vec(any::<char>().prop_filter("no NUL", |&c| c != '\0'), 0..=36).prop_map(
        |chars| {
            let mut name = String::new();
            for c in chars {
                if name.encode_utf16().count() + c.len_utf16() <= 36 {
                    name.push(c);
                }
            }
            name
        },
    )
}

fn arb_entry() -> impl Strategy<Value = GptEntry> {
    (arb_uuid(), arb_uuid(), any::<u64>(), any::<u64>(), any::<u64>(), arb_name()).prop_map(
        |(t, u, first_lba, last_lba, attributes, name)| GptEntry {
            type_guid: if t.is_nil() { Uuid::from_bytes([1; 16]) } else { t },
            unique_guid: u,
            first_lba,
            last_lba,
            attributes,
            name,
        },
    )
}

proptest! {
    #[test]
    fn header_round_trips_and_detects_any_flip(
        lbas in any::<[u64; 5]>(), disk_guid in arb_uuid(), count in any::<u32>(),
        size_log in 7u32..12, crc in any::<u32>(), flip in 0usize..92, bit in 0u8..8,
    ) {
        let h = GptHeader {
            my_lba: lbas[0], alternate_lba: lbas[1], first_usable_lba: lbas[2],
            last_usable_lba: lbas[3], disk_guid, entries_lba: lbas[4], entry_count: count,
            entry_size: 1 << size_log, entries_crc32: crc,
        };
        let mut b = h.encode();
        prop_assert_eq!(GptHeader::decode(&b).unwrap(), h);
        prop_assert!(b[92..].iter().all(|&x| x == 0));
        b[flip] ^= 1 << bit;
        prop_assert!(GptHeader::decode(&b).is_err(), "flip at {} not detected", flip);
    }

    #[test]
    fn entry_round_trips(e in arb_entry()) {
        let b = e.encode().unwrap();
        prop_assert_eq!(GptEntry::decode(&b).unwrap(), Some(e));
    }

    #[test]
    fn tables_round_trip_through_a_disk(
        disk_guid in arb_uuid().prop_filter("not nil", |u| !u.is_nil()),
        entries in prop::collection::vec(arb_entry(), 0..20),
        flip in 0usize..16384,
    ) {
        // Lay the entries out one 8-sector slot each, on a 1 MiB disk.
        let total = 2048u64;
        let entries: Vec<GptEntry> = entries.into_iter().enumerate().map(|(i, mut e)| {
            e.first_lba = 34 + 8 * i as u64;
            e.last_lba = e.first_lba + e.attributes % 8;
            if e.unique_guid.is_nil() { e.unique_guid = Uuid::from_bytes([2; 16]); }
            e
        }).collect();
        let gpt = Gpt { disk_guid, entries };
        let (primary, backup) = gpt.encode(total).unwrap();
        let array = &primary[512..];
        prop_assert_eq!(GptHeader::decode(&primary[..512]).unwrap().entries_crc32, crc32(array));
        let mut disk = vec![0u8; (total * 512) as usize];
        disk[..512].copy_from_slice(&Mbr::protective(total).encode());
        disk[512..512 + primary.len()].copy_from_slice(&primary);
        let tail = disk.len() - backup.len();
        disk[tail..].copy_from_slice(&backup);
        prop_assert_eq!(Gpt::read(&mut disk.as_slice()).unwrap(), gpt);
        // Any flipped bit of the primary array breaks its CRC.
        disk[1024 + flip] ^= 0x10;
        let err = Gpt::read(&mut disk.as_slice()).unwrap_err();
        prop_assert!(matches!(err, Error::Partition(TableError::BadCrc { .. })), "{}", err);
    }
}
