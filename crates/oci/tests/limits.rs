//! The size limits on what one layer entry may carry (`xspack_oci::limits`), at the limit
//! (accepted) and one past it (refused), for every way a name or link target can arrive in a
//! tar: the ustar header (name and prefix, linkname), a pax extended header (`path`,
//! `linkpath`, `SCHILY.xattr.*`) and GNU long name and link entries (`L`, `K`). And tar
//! extension headers too large to hold, refused from their size field before their body is
//! read.
//!
//! The tars are written here byte by byte, so that every field can be set to what a hostile
//! layer would hold.

use camino::Utf8PathBuf;
use xspack_oci::limits::{
    MAX_GNU_LONG_NAME, MAX_GNU_SPARSE_BLOCKS, MAX_NAME, MAX_PATH, MAX_PAX_HEADER, MAX_SYMLINK,
    MAX_XATTR_NAME, MAX_XATTR_VALUE,
};
use xspack_oci::{EntryKind, Error, Image, ImageSource, LayerEntry};
use xspack_testkit::{Compression, ImageSpec, pax_record};

const BLOCK: usize = 512;

/// The magic and version of a ustar header (POSIX) or a GNU one (GNU tar's `L`/`K` entries).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Magic {
    Ustar,
    Gnu,
}

/// One 512-byte header. `size` is written to the size field whatever follows.
fn header(
    name: &[u8],
    prefix: &[u8],
    typeflag: u8,
    link: &[u8],
    size: u64,
    magic: Magic,
) -> Vec<u8> {
    assert!(name.len() <= 100 && prefix.len() <= 155 && link.len() <= 100);
    let mut h = vec![0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{value:0width$o}", width = field.len() - 1);
        if text.len() < field.len() {
            field[..text.len()].copy_from_slice(text.as_bytes());
        } else {
            // Too large for octal: base-256, as GNU tar and Go write it.
            field.fill(0);
            let len = field.len();
            field[len - 8..].copy_from_slice(&value.to_be_bytes());
            field[0] |= 0x80;
        }
    };
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = typeflag;
    h[157..157 + link.len()].copy_from_slice(link);
    match magic {
        Magic::Ustar => {
            h[257..265].copy_from_slice(b"ustar\x0000");
            h[345..345 + prefix.len()].copy_from_slice(prefix);
        }
        Magic::Gnu => {
            assert!(prefix.is_empty(), "GNU headers have no prefix");
            h[257..265].copy_from_slice(b"ustar  \0");
        }
    }
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A tar stream, written one piece at a time.
#[derive(Default)]
struct Tar(Vec<u8>);

impl Tar {
    /// A header and its body, padded to whole blocks.
    fn raw(&mut self, header: &[u8], body: &[u8]) -> &mut Self {
        self.0.extend_from_slice(header);
        self.0.extend_from_slice(body);
        self.0.resize(self.0.len().next_multiple_of(BLOCK), 0);
        self
    }

    /// A pax extended header of these raw bytes.
    fn pax_body(&mut self, body: &[u8]) -> &mut Self {
        self.raw(&header(b"PaxHeaders/x", b"", b'x', b"", body.len() as u64, Magic::Ustar), body)
    }

    /// A pax extended header of these records.
    fn pax(&mut self, records: &[(&[u8], &[u8])]) -> &mut Self {
        let body: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.pax_body(&body)
    }

    /// A GNU long name (`L`) or long link (`K`) entry holding `name` and its NUL.
    fn gnu_long(&mut self, typeflag: u8, name: &[u8]) -> &mut Self {
        let mut body = name.to_vec();
        body.push(0);
        let h = header(b"././@LongLink", b"", typeflag, b"", body.len() as u64, Magic::Gnu);
        self.raw(&h, &body)
    }

    /// A ustar entry with no data.
    fn entry(&mut self, name: &[u8], typeflag: u8, link: &[u8]) -> &mut Self {
        self.raw(&header(name, b"", typeflag, link, 0, Magic::Ustar), b"")
    }

    /// A regular file holding `data`.
    fn file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        self.raw(&header(name, b"", b'0', b"", data.len() as u64, Magic::Ustar), data)
    }

    /// With the end-of-archive marker.
    fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.0);
        out.resize(out.len() + 2 * BLOCK, 0);
        out
    }
}

/// `n` bytes of path: components of up to 200 bytes (`a`…), one `/` between them.
fn path_of(n: usize) -> Vec<u8> {
    let mut path = Vec::new();
    let mut letter = b'a';
    while path.len() < n {
        if !path.is_empty() {
            path.push(b'/');
        }
        let len = (n - path.len()).min(200);
        path.extend(std::iter::repeat_n(letter, len));
        letter = if letter == b'z' { b'a' } else { letter + 1 };
    }
    assert_eq!(path.len(), n);
    path
}

/// A component of `n` bytes.
fn name_of(n: usize) -> Vec<u8> {
    vec![b'n'; n]
}

/// What reading a one-layer image of `tar` gives: its entries with their data, or the error.
fn read(tar: Vec<u8>) -> Result<Vec<(LayerEntry, Vec<u8>)>, Error> {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::try_from(dir.path().join("oci")).unwrap();
    ImageSpec::new(vec![(tar, Compression::None)]).write_oci_dir(&root, "x").unwrap();
    let image =
        Image::open(&ImageSource::OciDir { path: root, reference: Some("x".into()) }).unwrap();
    let mut seen = Vec::new();
    image.read_layer(&image.layers[0], |entry, data| -> Result<(), Error> {
        let mut bytes = Vec::new();
        data.read_to_end(&mut bytes).unwrap();
        seen.push((entry.clone(), bytes));
        Ok(())
    })?;
    Ok(seen)
}

/// The one entry of `tar`, which must be accepted.
fn accepted(tar: Vec<u8>) -> LayerEntry {
    let mut entries = read(tar).unwrap_or_else(|e| panic!("refused: {e}"));
    assert_eq!(entries.len(), 1);
    entries.remove(0).0
}

/// The message `tar` is refused with; it must name an entry, quoting at most 200 characters
/// of it, and hold `want`.
fn refused(tar: Vec<u8>, want: &str) -> String {
    let err = read(tar).map(|e| e.len()).expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, Error::Entry { .. }), "{text}");
    assert!(text.contains(want), "wanted {want:?} in: {text}");
    let quoted = text.split('"').nth(1).expect("a quoted entry");
    assert!(quoted.chars().count() <= 201, "quotes {} characters: {text}", quoted.len());
    assert!(text.len() < 600, "{} bytes: {text}", text.len());
    text
}

#[test]
fn ustar_names_and_link_targets_are_within_every_limit() {
    // ustar holds at most a 155-byte prefix, '/' and a 100-byte name, and a 100-byte link
    // target: every limit is out of its reach, and the longest it can hold pass.
    let (prefix, name) = (name_of(155), vec![b'm'; 100]);
    let mut tar = Tar::default();
    tar.raw(&header(&name, &prefix, b'0', b"", 0, Magic::Ustar), b"");
    let entry = accepted(tar.finish());
    assert_eq!(entry.path, [&prefix[..], b"/", &name[..]].concat());
    let target = name_of(100);
    let entry = accepted(Tar::default().entry(b"link", b'2', &target).finish());
    assert_eq!(entry.kind, EntryKind::Symlink(target.clone()));
    let entry = accepted(Tar::default().entry(b"hard", b'1', &target).finish());
    assert_eq!(entry.kind, EntryKind::Hardlink(target));
}

#[test]
fn a_pax_path_of_4095_bytes_passes_and_4096_is_refused() {
    let long = path_of(MAX_PATH);
    let entry = accepted(Tar::default().pax(&[(b"path", &long)]).file(b"short", b"").finish());
    assert_eq!(entry.path, long);
    let long = path_of(MAX_PATH + 1);
    let text = refused(
        Tar::default().pax(&[(b"path", &long)]).file(b"short", b"").finish(),
        "a pax path record of 4096 bytes, more than the 4095 Linux allows (PATH_MAX less its NUL)",
    );
    // The header's own name is the one quoted: the long one is refused before it is used.
    assert!(text.contains("entry \"short\""), "{text}");
}

#[test]
fn a_gnu_long_name_of_4095_bytes_passes_and_4096_is_refused_from_its_header() {
    let long = path_of(MAX_PATH);
    let entry = accepted(Tar::default().gnu_long(b'L', &long).file(b"short", b"").finish());
    assert_eq!(entry.path, long);
    // 4,096 bytes and a NUL: the L entry's size field is past the limit.
    let text = refused(
        Tar::default().gnu_long(b'L', &path_of(MAX_PATH + 1)).file(b"short", b"").finish(),
        "a GNU long name of 4097 bytes, more than the 4096 bytes of PATH_MAX, its NUL included \
         (at byte 0 of the tar)",
    );
    assert!(text.contains("entry \"././@LongLink\""), "{text}");
    // A body of 4,096 bytes without a NUL is within the cap, and the name still too long.
    let mut body = path_of(MAX_PATH + 1);
    let mut tar = Tar::default();
    tar.raw(&header(b"././@LongLink", b"", b'L', b"", body.len() as u64, Magic::Gnu), &body);
    let text =
        refused(tar.file(b"short", b"").finish(), "a path of 4096 bytes, more than the 4095");
    body.truncate(200);
    assert!(text.contains(&format!("entry \"{}…\"", String::from_utf8(body).unwrap())), "{text}");
}

#[test]
fn a_path_component_of_255_bytes_passes_and_256_is_refused() {
    for long_name in [false, true] {
        let tar = |name: &[u8]| {
            let path = [b"dir/", name, b"/file"].concat();
            let mut tar = Tar::default();
            if long_name {
                tar.gnu_long(b'L', &path);
            } else {
                tar.pax(&[(b"path", &path)]);
            }
            tar.file(b"short", b"").finish()
        };
        accepted(tar(&name_of(MAX_NAME)));
        let text = refused(
            tar(&name_of(MAX_NAME + 1)),
            "a path component of 256 bytes, more than ext4's 255",
        );
        // `dir/` and 196 bytes of the name: 200 characters, then the ellipsis.
        assert!(text.contains(&format!("entry \"dir/{}…\"", "n".repeat(196))), "{text}");
    }
    // A whiteout names an entry of up to 255 bytes: its `.wh.` prefix does not count.
    let whiteout = |name: &[u8]| {
        let path = [b"dir/.wh.", name].concat();
        Tar::default().pax(&[(b"path", &path)]).file(b"short", b"").finish()
    };
    accepted(whiteout(&name_of(MAX_NAME)));
    refused(whiteout(&name_of(MAX_NAME + 1)), "a path component of 260 bytes");
}

#[test]
fn a_symlink_target_of_4095_bytes_passes_and_4096_is_refused() {
    for long_link in [false, true] {
        let tar = |target: &[u8]| {
            let mut tar = Tar::default();
            if long_link {
                tar.gnu_long(b'K', target);
            } else {
                tar.pax(&[(b"linkpath", target)]);
            }
            tar.entry(b"link", b'2', b"short").finish()
        };
        let target = path_of(MAX_SYMLINK);
        assert_eq!(accepted(tar(&target)).kind, EntryKind::Symlink(target));
        let want = if long_link {
            "a GNU long link target of 4097 bytes, more than the 4096 bytes of PATH_MAX"
        } else {
            "a pax linkpath record of 4096 bytes, more than the 4095"
        };
        refused(tar(&path_of(MAX_SYMLINK + 1)), want);
    }
    // A K body of 4,096 bytes without its NUL passes the cap; the target is one too long.
    let target = path_of(MAX_SYMLINK + 1);
    let mut tar = Tar::default();
    tar.raw(&header(b"././@LongLink", b"", b'K', b"", target.len() as u64, Magic::Gnu), &target);
    refused(
        tar.entry(b"link", b'2', b"short").finish(),
        "entry \"link\": a symlink target of 4096 bytes, more than the 4095 ext4 allows",
    );
}

#[test]
fn a_hard_link_target_is_a_path() {
    for long_link in [false, true] {
        let tar = |target: &[u8]| {
            let mut tar = Tar::default();
            if long_link {
                tar.gnu_long(b'K', target);
            } else {
                tar.pax(&[(b"linkpath", target)]);
            }
            tar.entry(b"hard", b'1', b"short").finish()
        };
        let target = path_of(MAX_PATH);
        assert_eq!(accepted(tar(&target)).kind, EntryKind::Hardlink(target));
        let want = if long_link { "long link target of 4097 bytes" } else { "of 4096 bytes" };
        refused(tar(&path_of(MAX_PATH + 1)), want);
        let target = [b"dir/", &name_of(MAX_NAME)[..]].concat();
        accepted(tar(&target));
        let target = [b"dir/", &name_of(MAX_NAME + 1)[..]].concat();
        refused(tar(&target), "a hard link target component of 256 bytes, more than ext4's 255");
    }
}

#[test]
fn xattr_names_of_255_bytes_and_values_of_64_kib_pass_one_more_is_refused() {
    let tar = |name: &[u8], value: &[u8]| {
        let key = [b"SCHILY.xattr.", name].concat();
        Tar::default().pax(&[(&key, value)]).file(b"f", b"").finish()
    };
    let name = [b"user.", &name_of(MAX_XATTR_NAME - 5)[..]].concat();
    let value = vec![0xa5; MAX_XATTR_VALUE];
    assert_eq!(accepted(tar(&name, &value)).meta.xattrs, vec![(name.clone(), value.clone())]);
    let long = [&name[..], b"x"].concat();
    let text = refused(tar(&long, b"v"), "an extended attribute name of 256 bytes (\"user.nnn");
    assert!(text.contains("more than the kernel's 255 (XATTR_NAME_MAX)"), "{text}");
    assert!(text.contains("n…\")"), "the name is cut to 200 characters: {text}");
    refused(
        tar(b"user.big", &[value, vec![0]].concat()),
        "extended attribute \"user.big\": a value of 65537 bytes, more than the kernel's 65536 \
         (XATTR_SIZE_MAX)",
    );
    refused(tar(b"", b"v"), "an extended attribute with an empty name");
}

#[test]
fn binary_xattr_values_are_read_whole() {
    // The length field alone ends a record: a value may hold newlines and NULs, and what
    // looks like a record inside it is not one.
    let value = b"\x01\x00\n13 path=evil\n\x00\xff".to_vec();
    let entry = accepted(
        Tar::default()
            .pax(&[(b"SCHILY.xattr.security.capability", &value), (b"mtime", b"1.5")])
            .file(b"bin/ping", b"")
            .finish(),
    );
    assert_eq!(entry.path, b"bin/ping");
    assert_eq!(entry.meta.xattrs, vec![(b"security.capability".to_vec(), value)]);
    assert_eq!(entry.meta.mtime, (1, 500_000_000));
}

#[test]
fn a_pax_header_of_1_mib_passes_and_one_byte_more_is_refused_from_its_header() {
    let cap = usize::try_from(MAX_PAX_HEADER).unwrap();
    let filler = |len: usize| {
        // One `comment` record of exactly `len` bytes: `len` counts its own digits.
        let digits = len.to_string().len();
        let rec = pax_record(b"comment", &vec![b'c'; len - digits - 10]);
        assert_eq!(rec.len(), len);
        rec
    };
    let mut body = pax_record(b"path", b"etc/motd");
    body.extend(filler(cap - body.len()));
    assert_eq!(body.len(), cap);
    let tar = Tar::default().pax_body(&body).file(b"short", b"hello").finish();
    let entries = read(tar).unwrap();
    assert_eq!(entries[0].0.path, b"etc/motd");
    assert_eq!(entries[0].1, b"hello");
    body.extend(b"\0");
    refused(
        Tar::default().pax_body(&body).file(b"short", b"hello").finish(),
        "entry \"PaxHeaders/x\": a pax extended header of 1048577 bytes, more than the 1048576 \
         bytes (1 MiB) xspack reads (at byte 0 of the tar)",
    );
}

#[test]
fn a_huge_pax_header_is_refused_without_reading_it() {
    // 3 GiB declared; 4 MiB of records follow, then the stream ends. The tar crate on its own
    // would read all of it into memory before looking at what it describes.
    let start = std::time::Instant::now();
    let declared = 3u64 << 30;
    let records: Vec<u8> = (0..4096).flat_map(|_| pax_record(b"comment", &[b'c'; 1010])).collect();
    let mut tar = Tar::default();
    tar.file(b"first", b"data");
    tar.0.extend(header(b"PaxHeaders/huge", b"", b'x', b"", declared, Magic::Ustar));
    tar.0.extend(&records);
    let text = refused(
        tar.0.clone(),
        "entry \"PaxHeaders/huge\": a pax extended header of 3221225472 bytes, more than the \
         1048576 bytes (1 MiB) xspack reads (at byte 1024 of the tar)",
    );
    assert!(text.starts_with("layer 1 ("), "{text}");
    // A global header is held to the same cap, though nothing reads its body.
    let mut tar = Tar::default();
    tar.0.extend(header(b"PaxHeaders/global", b"", b'g', b"", declared, Magic::Ustar));
    refused(tar.0, "a pax global header of 3221225472 bytes");
    assert!(start.elapsed().as_secs() < 30, "took {:?}", start.elapsed());
}

#[test]
fn broken_pax_records_are_refused() {
    let tar = |body: &[u8]| Tar::default().pax_body(body).file(b"f", b"").finish();
    refused(
        tar(b"99 path=abc\n"),
        "entry \"f\": pax record 1: its length field says 99 bytes, more than the 12 left in the \
         header",
    );
    refused(tar(b"11 pathabc\n"), "pax record 1: no '=' between keyword and value");
    refused(tar(b"12 path=abc\nxyz"), "pax record 2: no decimal length");
    let dup = [pax_record(b"path", b"a"), pax_record(b"path", b"b")].concat();
    refused(tar(&dup), "two pax path records");
}

#[test]
fn a_pax_size_overrides_the_header_and_the_next_header_is_still_inspected() {
    // Go's archive/tar writes a file of 8 GiB or more with 0 in the size field and its size in
    // a pax record: the data and the next header are found by that size.
    let data = vec![7u8; 1500];
    let mut tar = Tar::default();
    tar.pax(&[(b"size", b"1500")]);
    tar.raw(&header(b"big", b"", b'0', b"", 0, Magic::Ustar), &data);
    tar.0.extend(header(b"PaxHeaders/huge", b"", b'x', b"", 1 << 40, Magic::Ustar));
    refused(tar.0.clone(), "a pax extended header of 1099511627776 bytes");
    let mut tar = Tar::default();
    tar.pax(&[(b"size", b"1500")]);
    tar.raw(&header(b"big", b"", b'0', b"", 0, Magic::Ustar), &data);
    tar.gnu_long(b'L', &path_of(300)).file(b"x", b"after");
    let entries = read(tar.finish()).unwrap();
    assert_eq!((entries[0].0.size, &entries[0].1), (1500, &data));
    assert_eq!((&entries[1].0.path, &entries[1].1[..]), (&path_of(300), &b"after"[..]));
}

/// An old-GNU sparse file: a 4 KiB hole, then 512 bytes of 9s; its map in the header and
/// `extensions` (at least one) empty extension blocks.
fn gnu_sparse(tar: &mut Tar, extensions: u64) {
    let mut h = header(b"sparse", b"", b'S', b"", 512, Magic::Gnu);
    let octal12 = |field: &mut [u8], value: u64| {
        field[..11].copy_from_slice(format!("{value:011o}").as_bytes());
    };
    octal12(&mut h[386..398], 4096); // sparse[0].offset
    octal12(&mut h[398..410], 512); // sparse[0].numbytes
    h[482] = 1; // isextended: a block of map follows
    octal12(&mut h[483..495], 4608); // realsize
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    tar.0.extend(&h);
    for i in 1..=extensions {
        let mut extension = vec![0u8; BLOCK];
        extension[504] = u8::from(i < extensions); // isextended
        tar.0.extend(extension);
    }
    tar.0.extend(vec![9u8; 512]);
}

#[test]
fn a_pax_size_the_tar_crate_cannot_read_is_refused() {
    // The tar crate splits pax records at newlines: a binary value before the size record
    // hides it from the crate, which would take the header's 0 and read the data as headers.
    let mut tar = Tar::default();
    tar.pax(&[(b"SCHILY.xattr.user.a", b"x\ny"), (b"size", b"1500")]);
    tar.raw(&header(b"big", b"", b'0', b"", 0, Magic::Ustar), &[7u8; 1500]);
    refused(
        tar.finish(),
        "entry \"big\": pax size 1500 is not the 0 bytes the tar reader used (it cannot parse a \
         record before it)",
    );
}

#[test]
fn entries_after_a_gnu_sparse_file_are_still_inspected() {
    let mut tar = Tar::default();
    gnu_sparse(&mut tar, 1);
    tar.file(b"next", b"after");
    let entries = read(tar.finish()).unwrap();
    assert_eq!(entries[0].0.size, 4608);
    assert_eq!(entries[0].1[..4096], [0u8; 4096]);
    assert_eq!(entries[0].1[4096..4608], [9u8; 512]);
    assert_eq!((&entries[1].0.path[..], &entries[1].1[..]), (&b"next"[..], &b"after"[..]));
    let mut tar = Tar::default();
    gnu_sparse(&mut tar, 1);
    tar.0.extend(header(b"PaxHeaders/huge", b"", b'x', b"", 1 << 30, Magic::Ustar));
    let text = refused(tar.0, "a pax extended header of 1073741824 bytes");
    assert!(text.ends_with("(at byte 1536 of the tar)"), "{text}");
}

#[test]
fn a_sparse_map_of_2048_extension_blocks_passes_and_2049_are_refused() {
    let mut tar = Tar::default();
    gnu_sparse(&mut tar, MAX_GNU_SPARSE_BLOCKS);
    tar.file(b"next", b"after");
    let entries = read(tar.finish()).unwrap();
    assert_eq!((entries[0].0.size, entries.len()), (4608, 2));
    let mut tar = Tar::default();
    tar.file(b"first", b"");
    gnu_sparse(&mut tar, MAX_GNU_SPARSE_BLOCKS + 1);
    refused(
        tar.finish(),
        "entry \"sparse\": a GNU sparse map of more than 2048 extension blocks, the most xspack \
         reads (at byte 512 of the tar)",
    );
}

#[test]
fn the_caps_follow_the_kernel_limits() {
    assert_eq!(MAX_GNU_LONG_NAME, MAX_PATH as u64 + 1);
    const { assert!(MAX_PAX_HEADER > (2 * MAX_PATH + 4 * MAX_XATTR_VALUE) as u64) };
}

#[test]
fn an_archive_with_a_huge_pax_header_is_refused_when_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::try_from(dir.path().join("image.tar")).unwrap();
    let mut tar = Tar::default();
    tar.file(b"manifest.json", b"[]");
    tar.0.extend(header(b"PaxHeaders/huge", b"", b'x', b"", 3 << 30, Magic::Ustar));
    tar.0.extend(vec![b'1'; 1 << 20]);
    std::fs::write(&path, &tar.0).unwrap();
    let err = Image::open(&ImageSource::DockerArchive { path, reference: None }).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(
            "member \"PaxHeaders/huge\" at byte 1024: a pax extended header of 3221225472 bytes, \
             more than the 1048576 bytes (1 MiB) xspack reads"
        ),
        "{text}"
    );
}
