//! One hand-broken XVA per reader rule, each asserting its specific error.
//!
//! Archives are taken apart into members with the differential tests' small tar codec
//! (`xva_diff/codec.rs`, independent of the crate's), edited, and put back together.

use std::fmt::Write as _;

use sha1::{Digest, Sha1};
use xspack_xva::{ChecksumKind, DISK_ALIGNMENT, Error, VmSpec};

use crate::xva_diff::codec::{Member, split};
use crate::{read_all, standard, write};

fn member(name: &str, data: &[u8]) -> Member {
    Member { name: name.into(), data: data.to_vec(), typeflag: b'0' }
}

fn header(name: &str, size: u64, typeflag: u8) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000600\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = typeflag;
    h[257..265].copy_from_slice(b"ustar\x0000");
    fix_checksum(&mut h);
    h
}

fn fix_checksum(h: &mut [u8]) {
    h[148..156].fill(b' ');
    let sum: u32 = h[..512].iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn build(members: &[Member]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        out.extend_from_slice(&header(&m.name, m.data.len() as u64, m.typeflag));
        out.extend_from_slice(&m.data);
        pad(&mut out);
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The members of the standard XVA (see `standard`).
fn good() -> Vec<Member> {
    let (spec, disks) = standard();
    split(&write(&spec, &disks, ChecksumKind::Sha1))
}

fn index(members: &[Member], name: &str) -> usize {
    members.iter().position(|m| m.name == name).unwrap_or_else(|| panic!("no member {name}"))
}

fn remove(members: &mut Vec<Member>, name: &str) {
    let i = index(members, name);
    members.remove(i);
}

fn error_of(xva: &[u8]) -> Error {
    match read_all(xva) {
        Ok(_) => panic!("reader accepted a broken XVA"),
        Err(e) => e,
    }
}

fn error_of_members(members: &[Member]) -> Error {
    error_of(&build(members))
}

/// Asserts that the error displays with `prefix`.
fn assert_message(err: &Error, prefix: &str) {
    let text = err.to_string();
    assert!(text.starts_with(prefix), "{text:?} does not start with {prefix:?}");
}

#[test]
fn the_codec_here_reproduces_the_writer() {
    let (spec, disks) = standard();
    let xva = write(&spec, &disks, ChecksumKind::Sha1);
    // Same members and sizes; only header bytes (mode, mtime, names of owner) differ.
    assert_eq!(build(&split(&xva)).len(), xva.len());
    assert!(read_all(&build(&good())).is_ok());
}

#[test]
fn first_member_must_be_exactly_ova_xml() {
    let mut m = good();
    m[0].name = "./ova.xml".into();
    let err = error_of_members(&m);
    assert!(matches!(&err, Error::FirstMember { member } if member == "./ova.xml"), "{err}");
    let mut m = good();
    m.insert(0, Member { typeflag: b'5', ..member("Ref:3/", b"") });
    assert!(matches!(error_of_members(&m), Error::FirstMember { member } if member == "Ref:3/"));
}

#[test]
fn directories_and_extension_records_are_refused() {
    for (name, typeflag) in [("Ref:3/", b'5'), ("PaxHeaders/x", b'x'), ("././@LongLink", b'L')] {
        let mut m = good();
        m.insert(1, Member { typeflag, ..member(name, b"") });
        let err = error_of_members(&m);
        assert!(
            matches!(&err, Error::MemberType { member, typeflag: t } if member == name && *t == char::from(typeflag)),
            "{err}"
        );
    }
}

#[test]
fn header_checksum_is_verified() {
    let m = good();
    let mut xva = build(&m);
    // The header of Ref:3/00000001 follows ova.xml, chunk 0 and its checksum.
    let offset = 512 + m[0].data.len().div_ceil(512) * 512 + 512 + (1 << 20) + 1024;
    assert_eq!(&xva[offset..offset + 14], b"Ref:3/00000001");
    xva[offset + 140] ^= 0x01; // inside mtime
    let err = error_of(&xva);
    assert!(
        matches!(&err, Error::HeaderChecksum { member, offset: o } if member == "Ref:3/00000001" && *o == offset as u64),
        "{err}"
    );
    // A size field that is not octal, with a correct checksum.
    xva[offset + 140] ^= 0x01;
    xva[offset + 124] = b'9';
    fix_checksum(&mut xva[offset..offset + 512]);
    let err = error_of(&xva);
    assert!(
        matches!(&err, Error::HeaderField { member, field: "size" } if member == "Ref:3/00000001")
    );
}

#[test]
fn members_must_be_chunks_or_checksums() {
    let mut m = good();
    m.insert(3, member("Ref:3/notes.txt", b"hi"));
    let err = error_of_members(&m);
    assert!(matches!(&err, Error::UnexpectedMember { member } if member == "Ref:3/notes.txt"));
    assert_message(&err, "Ref:3/notes.txt: unexpected member");
    let mut m = good();
    m.push(member("README", b"after the last disk"));
    assert!(
        matches!(error_of_members(&m), Error::UnexpectedMember { member } if member == "README")
    );
}

#[test]
fn chunks_must_belong_to_a_streamed_vdi() {
    let mut m = good();
    for x in m.iter_mut().filter(|x| x.name.starts_with("Ref:5/")) {
        x.name = x.name.replace("Ref:5/", "Ref:7/");
    }
    let err = error_of_members(&m);
    assert!(matches!(&err, Error::UnknownVdi { member } if member == "Ref:7/00000000"), "{err}");
}

#[test]
fn disks_must_come_in_id_order() {
    let m = good();
    let (ova, rest) = m.split_first().unwrap();
    let (d3, d5): (Vec<Member>, Vec<Member>) =
        rest.iter().cloned().partition(|x| x.name.starts_with("Ref:3/"));
    let swapped: Vec<Member> = std::iter::once(ova.clone()).chain(d5).chain(d3).collect();
    let err = error_of_members(&swapped);
    assert!(
        matches!(&err, Error::DiskOrder { member, expected } if member == "Ref:5/00000000" && expected == "Ref:3"),
        "{err}"
    );
    // A disk's chunks again after the last disk.
    let mut m = good();
    let again = m[index(&m, "Ref:3/00000000")..=index(&m, "Ref:3/00000000.checksum")].to_vec();
    m.extend(again);
    assert!(
        matches!(error_of_members(&m), Error::DiskOrder { member, .. } if member == "Ref:3/00000000")
    );
}

#[test]
fn first_chunk_must_be_present() {
    let mut m = good();
    remove(&mut m, "Ref:3/00000000");
    remove(&mut m, "Ref:3/00000000.checksum");
    let err = error_of_members(&m);
    assert!(
        matches!(&err, Error::MissingFirstChunk { member } if member == "Ref:3/00000001"),
        "{err}"
    );
}

#[test]
fn chunk_indexes_must_increase() {
    // Chunk 1 twice. (Chunk 3 before chunk 1 would end the disk at chunk 3, its last.)
    let mut m = good();
    let one = index(&m, "Ref:3/00000001");
    let pair = m[one..one + 2].to_vec();
    m.splice(one + 2..one + 2, pair);
    let err = error_of_members(&m);
    assert!(
        matches!(&err, Error::ChunkOrder { member, previous } if member == "Ref:3/00000001" && previous == "Ref:3/00000001"),
        "{err}"
    );
    // After the disk's last chunk the next member must be the next disk's.
    let mut m = good();
    let one = index(&m, "Ref:3/00000001");
    let three = index(&m, "Ref:3/00000003");
    m.swap(one, three);
    m.swap(one + 1, three + 1);
    let err = error_of_members(&m);
    assert!(
        matches!(&err, Error::DiskOrder { member, expected } if member == "Ref:3/00000001" && expected == "Ref:5"),
        "{err}"
    );
}

#[test]
fn chunks_must_lie_inside_the_disk() {
    let mut m = good();
    let last = index(&m, "Ref:5/00000001");
    m[last].name = "Ref:5/00000002".into();
    m[last + 1].name = "Ref:5/00000002.checksum".into();
    let err = error_of_members(&m);
    assert!(
        matches!(&err, Error::ChunkBeyondEnd { member, virtual_size } if member == "Ref:5/00000002" && *virtual_size == DISK_ALIGNMENT),
        "{err}"
    );
}

#[test]
fn chunks_must_be_one_mib() {
    let mut m = good();
    let i = index(&m, "Ref:3/00000001");
    m[i].data.truncate(1000);
    m[i + 1].data = sha1_hex(&m[i].data).into_bytes();
    let err = error_of_members(&m);
    assert!(
        matches!(&err, Error::ChunkSize { member, size: 1000, expected } if member == "Ref:3/00000001" && *expected == 1 << 20),
        "{err}"
    );
}

#[test]
fn checksum_must_follow_its_chunk() {
    let mut m = good();
    remove(&mut m, "Ref:3/00000001.checksum");
    let err = error_of_members(&m);
    assert!(
        matches!(&err, Error::MissingChecksum { member } if member == "Ref:3/00000001"),
        "{err}"
    );
    // The last member of the archive is a chunk.
    let mut m = good();
    m.pop();
    assert!(
        matches!(error_of_members(&m), Error::MissingChecksum { member } if member == "Ref:5/00000001")
    );
    // A checksum with no chunk before it.
    let mut m = good();
    let i = index(&m, "Ref:3/00000001.checksum");
    m.insert(i + 1, m[i].clone());
    let err = error_of_members(&m);
    assert!(
        matches!(&err, Error::OrphanChecksum { member } if member == "Ref:3/00000001.checksum"),
        "{err}"
    );
}

#[test]
fn checksums_must_be_well_formed() {
    let upper = |d: &[u8]| d.to_ascii_uppercase();
    let newline = |d: &[u8]| [d, b"\n"].concat();
    for edit in [upper as fn(&[u8]) -> Vec<u8>, newline] {
        let mut m = good();
        let i = index(&m, "Ref:3/00000001.checksum");
        m[i].data = edit(&m[i].data);
        let err = error_of_members(&m);
        assert!(
            matches!(&err, Error::ChecksumFormat { member } if member == "Ref:3/00000001.checksum"),
            "{err}"
        );
    }
}

#[test]
fn checksums_must_match() {
    let mut m = good();
    let i = index(&m, "Ref:5/00000001");
    m[i].data[12345] ^= 0x80;
    let err = error_of_members(&m);
    assert!(
        matches!(&err, Error::ChecksumMismatch { member, .. } if member == "Ref:5/00000001"),
        "{err}"
    );
    assert_message(&err, "Ref:5/00000001: checksum mismatch");
}

#[test]
fn last_chunk_must_be_present() {
    let mut m = good();
    remove(&mut m, "Ref:3/00000003");
    remove(&mut m, "Ref:3/00000003.checksum");
    let err = error_of_members(&m);
    assert!(
        matches!(&err, Error::MissingLastChunk { vdi, end, virtual_size } if vdi == "Ref:3" && *end == 2 << 20 && *virtual_size == 4 << 20),
        "{err}"
    );
    // The last disk's last chunk, at the end of the archive.
    let mut m = good();
    m.truncate(m.len() - 2);
    assert!(matches!(error_of_members(&m), Error::MissingLastChunk { vdi, .. } if vdi == "Ref:5"));
}

#[test]
fn every_streamed_disk_must_be_present() {
    let mut m = good();
    m.retain(|x| !x.name.starts_with("Ref:5/"));
    let err = error_of_members(&m);
    assert!(matches!(&err, Error::MissingDisk { vdi } if vdi == "Ref:5"), "{err}");
}

#[test]
fn archive_must_end_with_two_zero_blocks_and_only_zeros() {
    let xva = build(&good());
    assert!(matches!(error_of(&xva[..xva.len() - 1024]), Error::MissingEnd));
    assert!(matches!(error_of(&xva[..xva.len() - 512]), Error::MissingEnd));
    let mut padded = xva.clone();
    padded.extend_from_slice(&[0; 10240]);
    assert!(read_all(&padded).is_ok(), "record padding is harmless");
    let mut junk = padded;
    let at = xva.len() + 2048;
    junk[at + 3] = 1;
    assert!(matches!(error_of(&junk), Error::TrailingData { offset } if offset == at as u64));
}

#[test]
fn truncation_names_the_member() {
    let m = good();
    let xva = build(&m);
    let chunk0 = 512 + m[0].data.len().div_ceil(512) * 512 + 512;
    let err = error_of(&xva[..chunk0 + 5000]);
    assert!(matches!(&err, Error::Truncated { member } if member == "Ref:3/00000000"), "{err}");
    let err = error_of(&xva[..100]);
    assert!(
        matches!(&err, Error::Truncated { member } if member.starts_with("tar header")),
        "{err}"
    );
    let err = error_of(&xva[..700]);
    assert!(matches!(&err, Error::Truncated { member } if member == "ova.xml"), "{err}");
}

#[test]
fn gaps_need_a_full_first_chunk() {
    // First streamed disk (Ref:3) of 512 KiB, second (Ref:5) of 4 MiB with chunks 0 and 3:
    // xapi would fill the gap with 512 KiB chunks.
    let (spec, _) = standard();
    let xml = spec.to_ova_xml().unwrap();
    let size_member = |n: u64| format!("<name>virtual_size</name><value>{n}</value>");
    let xml = xml.replacen(&size_member(4 << 20), &size_member(512 << 10), 1).replacen(
        &size_member(2 << 20),
        &size_member(4 << 20),
        1,
    );
    let small = vec![1u8; 512 << 10];
    let chunk = vec![2u8; 1 << 20];
    let m = vec![
        member("ova.xml", xml.as_bytes()),
        member("Ref:3/00000000", &small),
        member("Ref:3/00000000.checksum", sha1_hex(&small).as_bytes()),
        member("Ref:5/00000000", &chunk),
        member("Ref:5/00000000.checksum", sha1_hex(&chunk).as_bytes()),
        member("Ref:5/00000003", &chunk),
        member("Ref:5/00000003.checksum", sha1_hex(&chunk).as_bytes()),
    ];
    let err = error_of_members(&m);
    assert!(
        matches!(&err, Error::GapAfterShortChunk { member, first } if member == "Ref:5/00000003" && *first == 512 << 10),
        "{err}"
    );
    // Without the gap, the same disks read fine.
    let mut full = m[..5].to_vec();
    for i in 1..4 {
        full.push(member(&format!("Ref:5/{i:08}"), &chunk));
        full.push(member(&format!("Ref:5/{i:08}.checksum"), sha1_hex(&chunk).as_bytes()));
    }
    let (disks, _) = read_all(&build(&full)).unwrap();
    assert_eq!(disks[0], small);
}

fn with_ova(edit: impl Fn(&str) -> String) -> Error {
    let mut m = good();
    let xml = edit(std::str::from_utf8(&m[0].data).unwrap());
    m[0].data = xml.into_bytes();
    error_of_members(&m)
}

#[test]
fn ova_xml_must_be_valid() {
    let err = with_ova(|x| x.replace("</struct></value>\n", ""));
    assert!(matches!(err, Error::Xml { .. }), "{err}");
    let err = with_ova(|x| {
        let start = x.find("<member><name>memory_static_max</name>").unwrap();
        let end = start + x[start..].find("</member>").unwrap() + "</member>".len();
        format!("{}{}", &x[..start], &x[end..])
    });
    assert!(
        matches!(&err, Error::OvaField { class, id, field, .. } if class == "VM" && id == "Ref:0" && field == "memory_static_max"),
        "{err}"
    );
    assert_message(&err, "ova.xml: VM Ref:0: memory_static_max: missing");
    let err = with_ova(|x| {
        x.replace(
            "<name>export_vsn</name><value>2</value>",
            "<name>export_vsn</name><value>0</value>",
        )
    });
    assert!(matches!(&err, Error::OvaField { field, .. } if field == "export_vsn"), "{err}");
    let err = with_ova(|x| x.replace("<value>BIOS order</value>", "<value/>"));
    assert!(matches!(err, Error::OvaStructure { .. }), "{err}");
    let err = with_ova(|x| {
        x.replace("<name>VDI</name><value>Ref:5</value>", "<name>VDI</name><value>Ref:99</value>")
    });
    assert!(
        matches!(&err, Error::OvaField { class, field, .. } if class == "VBD" && field == "VDI"),
        "{err}"
    );
}

#[test]
fn oversized_ova_xml_is_refused_before_reading_it() {
    let mut xva = header("ova.xml", 17 << 20, b'0').to_vec();
    xva.extend_from_slice(&[0; 1024]);
    assert!(matches!(error_of(&xva), Error::OvaXmlTooLarge { size, .. } if size == 17 << 20));
}

#[test]
fn flipping_any_byte_of_a_chunk_names_it() {
    let (spec, disks): (VmSpec, _) = standard();
    let xva = write(&spec, &disks, ChecksumKind::Sha1);
    let m = split(&xva);
    // Offset of the data of Ref:3/00000003, the sixth member.
    let mut offset = 0;
    for x in &m[..5] {
        offset += 512 + x.data.len().div_ceil(512) * 512;
    }
    offset += 512;
    assert_eq!(xva[offset..offset + (1 << 20)], m[5].data[..]);
    for flip in [0, 3 * 7 + 4, (1 << 20) - 1] {
        let mut bad = xva.clone();
        bad[offset + flip] ^= 0x10;
        let err = error_of(&bad);
        assert!(
            matches!(&err, Error::ChecksumMismatch { member, .. } if member == "Ref:3/00000003"),
            "{err}"
        );
        assert_message(&err, "Ref:3/00000003: checksum mismatch");
    }
}

#[test]
fn tar_headers_are_read_as_ocaml_tar_reads_them() {
    let xva = build(&good());
    let chunk = 512 + good()[0].data.len().next_multiple_of(512);
    // A mode field ocaml-tar's `unmarshal_int` cannot parse.
    let mut bad = xva.clone();
    bad[chunk + 101] = b'9';
    fix_checksum(&mut bad[chunk..chunk + 512]);
    let err = error_of(&bad);
    assert!(
        matches!(&err, Error::HeaderField { member, field: "mode" } if member == "Ref:3/00000000"),
        "{err}"
    );
    assert_message(&err, "Ref:3/00000000: bad tar header field mode");
    // The signed byte sum of old tars, which ocaml-tar does not accept.
    let mut bad = xva.clone();
    bad[chunk + 265] = 0xe9;
    bad[chunk + 148..chunk + 156].fill(b' ');
    let signed: i64 = bad[chunk..chunk + 512].iter().map(|&b| i64::from(b.cast_signed())).sum();
    bad[chunk + 148..chunk + 156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
    assert!(matches!(error_of(&bad), Error::HeaderChecksum { .. }));
    // A GNU magic makes ocaml-tar join the prefix field too: the name is no longer a chunk's.
    let mut bad = xva;
    bad[chunk + 257..chunk + 265].copy_from_slice(b"ustar  \0");
    bad[chunk + 345] = b'x';
    fix_checksum(&mut bad[chunk..chunk + 512]);
    let err = error_of(&bad);
    assert!(
        matches!(&err, Error::UnexpectedMember { member } if member == "x/Ref:3/00000000"),
        "{err}"
    );
}

#[test]
fn chunks_must_be_whole_blocks() {
    // Disk 1 (Ref:5) made 100 bytes shorter: its last chunk, checksum and all, is consistent,
    // but xapi would read the checksum's header from inside the chunk's padding.
    let mut m = good();
    let xml = String::from_utf8(m[0].data.clone()).unwrap();
    let size = format!("<name>virtual_size</name><value>{DISK_ALIGNMENT}</value>");
    let at = xml.find(&size).unwrap();
    let short = format!("<name>virtual_size</name><value>{}</value>", DISK_ALIGNMENT - 100);
    m[0].data = format!("{}{short}{}", &xml[..at], &xml[at + size.len()..]).into_bytes();
    let last = index(&m, "Ref:5/00000001");
    m[last].data.truncate((1 << 20) - 100);
    m[last + 1].data = sha1_hex(&m[last].data).into_bytes();
    let err = error_of_members(&m);
    assert!(
        matches!(&err, Error::UnalignedChunk { member, size } if member == "Ref:5/00000001" && *size == (1 << 20) - 100),
        "{err}"
    );
    assert_message(&err, "Ref:5/00000001: chunk is 1048476 bytes, not a multiple of 512");
}

#[test]
fn version_numbers_must_be_integers() {
    for field in ["xapi_major", "xapi_minor"] {
        let err = with_ova(|x| {
            let tag = format!("<name>{field}</name><value>");
            let at = x.find(&tag).unwrap() + tag.len();
            let end = at + x[at..].find('<').unwrap();
            format!("{}one{}", &x[..at], &x[end..])
        });
        assert!(
            matches!(&err, Error::OvaField { class, field: f, .. } if class == "version" && f == field),
            "{err}"
        );
    }
}
