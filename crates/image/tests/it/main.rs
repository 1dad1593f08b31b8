//! Container image → ext4, checked end to end: fixtures written by xspack-testkit in every
//! source format, images checked with `e2fsck -fn`, read back with `debugfs`, and compared
//! with an independent unpack by `umoci unpack --rootless`.

mod fixtures;

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_image::{RootfsBuild, RootfsOptions, formats, identity, merge_layers, write_ext4};
use xspack_io::Classify as _;
use xspack_io::NoProgress;
use xspack_oci::{Image, ImageSource};
use xspack_testkit::DockerLayout;

use xspack_testkit::ext4check::{Expected, e2fsck, read_tree, umoci_contents};

use crate::fixtures::kitchen_sink;

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

fn opts() -> RootfsOptions {
    let mut o = RootfsOptions::default();
    o.source_date_epoch = 1_700_000_000;
    o.label = "rootfs".into();
    o
}

/// Builds the ext4 image of `source` in two passes, returning its bytes.
fn build(source: &str) -> Vec<u8> {
    let image = Image::open(&ImageSource::parse(source).unwrap()).unwrap();
    let tree = merge_layers(&image, &NoProgress).unwrap();
    let (bytes, summary) = write_ext4(&image, tree, &opts(), Vec::new(), &NoProgress).unwrap();
    assert_eq!(bytes.len() as u64, summary.size);
    bytes
}

/// Builds the ext4 image of `source` in a single pass (the first layer's files written into
/// the image as it is first read), returning its bytes.
fn build_single_pass(source: &str) -> Vec<u8> {
    let image = Image::open(&ImageSource::parse(source).unwrap()).unwrap();
    single_pass(&image, |_| {})
}

/// A single-pass build of `image`, with `fixup` applied to the merged tree first.
fn single_pass(image: &Image, fixup: impl FnOnce(&mut xspack_oci::MergedTree)) -> Vec<u8> {
    let (_t, dir) = tempdir();
    let path = dir.join("fs.raw");
    let file =
        std::fs::File::options().read(true).write(true).create_new(true).open(&path).unwrap();
    let mut rootfs =
        RootfsBuild::merge(image, (file, None), dir.as_std_path(), false, &NoProgress).unwrap();
    fixup(rootfs.tree_mut());
    let (file, summary) = rootfs.write(&opts(), &NoProgress).unwrap();
    drop(file);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, summary.size);
    bytes
}

/// The kitchen-sink fixture as an OCI layout in `dir`, opened, with the tree it must give.
fn kitchen_sink_image(dir: &Utf8Path) -> (Image, BTreeMap<Vec<u8>, Expected>) {
    let (spec, expected) = kitchen_sink();
    spec.write_oci_dir(&dir.join("layout"), "latest").unwrap();
    let image = Image::open(&ImageSource::parse(&format!("oci:{dir}/layout")).unwrap()).unwrap();
    (image, expected)
}

/// A way of building the image of a source.
type Build = fn(&str) -> Vec<u8>;

/// Both ways of building, named.
const BUILDS: [(&str, Build); 2] = [("two passes", build), ("single pass", build_single_pass)];

fn check_against(expected: &BTreeMap<Vec<u8>, Expected>, image_path: &Utf8Path) {
    e2fsck(image_path);
    let got = read_tree(image_path);
    let mut missing = Vec::new();
    for (path, want) in expected {
        match got.get(path) {
            Some(item) => assert_eq!(item, want, "{}", String::from_utf8_lossy(path)),
            None => missing.push(String::from_utf8_lossy(path).into_owned()),
        }
    }
    assert!(missing.is_empty(), "missing from the image: {missing:?}");
    let extra: Vec<String> = got
        .keys()
        .filter(|p| !expected.contains_key(*p) && p.as_slice() != b"lost+found")
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    assert!(extra.is_empty(), "unexpected in the image: {extra:?}");
}

#[test]
fn kitchen_sink_in_every_source_format() {
    let (_t, dir) = tempdir();
    let (spec, expected) = kitchen_sink();
    spec.write_oci_dir(&dir.join("layout"), "latest").unwrap();
    spec.write_oci_archive(&dir.join("oci.tar"), "v1").unwrap();
    for (name, layout) in [
        ("classic", DockerLayout::Classic),
        ("symlinks", DockerLayout::ClassicSymlinks),
        ("blobs", DockerLayout::Blobs),
    ] {
        spec.write_docker_archive(&dir.join(format!("{name}.tar")), "xspack/sink:1", layout)
            .unwrap();
    }
    let sources = [
        format!("oci:{dir}/layout"),
        format!("oci:{dir}/layout:latest"),
        format!("oci-archive:{dir}/oci.tar"),
        format!("{dir}/oci.tar"),
        format!("docker-archive:{dir}/classic.tar"),
        format!("docker-archive:{dir}/symlinks.tar:xspack/sink:1"),
        format!("{dir}/blobs.tar"),
    ];
    for (how, build) in BUILDS {
        let mut first: Option<Vec<u8>> = None;
        for source in &sources {
            let bytes = build(source);
            let path = dir.join("fs.img");
            std::fs::write(&path, &bytes).unwrap();
            check_against(&expected, &path);
            // The content is the same whatever the packaging; only the image identity (and
            // so the UUID) may differ between OCI and docker forms.
            if source.starts_with("oci") {
                match &first {
                    None => first = Some(bytes),
                    Some(f) => assert!(f == &bytes, "{how}: {source} differs from the first"),
                }
            }
        }
    }
}

#[test]
fn two_builds_are_identical() {
    let (_t, dir) = tempdir();
    let (spec, _) = kitchen_sink();
    spec.write_oci_dir(&dir.join("layout"), "latest").unwrap();
    let source = format!("oci:{dir}/layout");
    for (how, build) in BUILDS {
        assert!(build(&source) == build(&source), "{how}");
    }
}

#[test]
fn content_matches_umoci_unpack() {
    let (_t, dir) = tempdir();
    let (mut spec, expected) = kitchen_sink();
    // umoci 0.4 (Debian 12) reads no zstd layers; the same tar, gzipped, is the same image.
    for layer in &mut spec.layers {
        layer.1 = xspack_testkit::Compression::Gzip;
    }
    spec.write_oci_dir(&dir.join("layout"), "latest").unwrap();
    let mut theirs = umoci_contents(&dir.join("layout"), "latest", &dir.join("bundle"));
    // Rootless umoci leaves empty files where device nodes belong; we write real devices.
    for (path, e) in &expected {
        if matches!(e.kind, 'c' | 'b') {
            assert_eq!(
                theirs.remove(path).as_deref(),
                Some(EMPTY_SHA256),
                "{}",
                String::from_utf8_lossy(path)
            );
        }
    }
    let ours: BTreeMap<Vec<u8>, String> =
        expected.iter().filter_map(|(p, e)| e.sha256.clone().map(|s| (p.clone(), s))).collect();
    assert_eq!(ours, theirs, "regular file contents differ from umoci's unpack");
    // And the image itself holds the same, however it is built.
    let path = dir.join("fs.img");
    for (_, build) in BUILDS {
        std::fs::write(&path, build(&format!("oci:{dir}/layout"))).unwrap();
        check_against(&expected, &path);
    }
}

/// A single pass writes every layer's files before the merge knows which survive: the ones a
/// later layer deletes or replaces must leave no trace in the image, whether they were written
/// into it (the first layer) or stashed (the others).
#[test]
fn a_single_pass_leaves_nothing_of_replaced_files() {
    use xspack_testkit::{Compression, Entry, ImageSpec, layer_tar, noise};
    let (_t, dir) = tempdir();
    let secret = b"TOP-SECRET-0123456789".repeat(5000);
    let replaced = b"OLD-CONTENT-abcdefghij".repeat(20_000);
    let stale = b"STALE-MIDDLE-LAYER-xyz".repeat(20_000);
    let deleted = b"DELETED-MIDDLE-LAYER-q".repeat(3_000);
    let holey = [noise(1, 50_000), vec![0u8; 300_000], noise(2, 50_000)].concat();
    let base = layer_tar(&[
        Entry::file("etc/keep", "kept\n"),
        Entry::file("etc/secret", secret.clone()),
        Entry::file("srv/data", replaced.clone()),
        Entry::file("srv/zeros", vec![0u8; 300_000]),
    ]);
    let upper = layer_tar(&[
        Entry::file("etc/.wh.secret", ""),
        Entry::file("srv/data", "new\n"),
        Entry::file("srv/more", noise(3, 100_000)),
        Entry::file("srv/stale", stale.clone()),
        Entry::file("srv/holey", holey.clone()),
        Entry::file("srv/deleted", deleted.clone()),
    ]);
    let top = layer_tar(&[
        Entry::file("srv/stale", "fresh\n"),
        Entry::file("srv/.wh.deleted", ""),
        Entry::file("srv/top", noise(4, 20_000)),
    ]);
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let layout = dir.join(format!("{compression:?}"));
        ImageSpec::new(vec![
            (base.clone(), compression),
            (upper.clone(), Compression::Gzip),
            (top.clone(), compression),
        ])
        .write_oci_dir(&layout, "latest")
        .unwrap();
        let source = format!("oci:{layout}");
        let bytes = build_single_pass(&source);
        for gone in [&secret[..21], &replaced[..22], &stale[..22], &deleted[..22]] {
            assert!(!bytes.windows(gone.len()).any(|w| w == gone), "{compression:?}: stale data");
        }
        let path = dir.join("fs.img");
        std::fs::write(&path, &bytes).unwrap();
        e2fsck(&path);
        let got = read_tree(&path);
        assert!(!got.contains_key(&b"etc/secret"[..]));
        assert!(!got.contains_key(&b"srv/deleted"[..]));
        let (more, top_file) = (noise(3, 100_000), noise(4, 20_000));
        for (name, want) in [
            (&b"srv/data"[..], &b"new\n"[..]),
            (b"etc/keep", b"kept\n"),
            (b"srv/stale", b"fresh\n"),
            (b"srv/holey", &holey),
            (b"srv/more", &more),
            (b"srv/top", &top_file),
        ] {
            let got = got[name].sha256.clone().unwrap();
            let want = xspack_io::Sha256Digest::of_bytes(want).to_string();
            assert_eq!(got, want, "{}", String::from_utf8_lossy(name));
        }
        assert_eq!(got.len(), build_tree_len(&source), "{compression:?}");
    }
}

/// Stashed files take the zone blocks after the first layer's, which may step over a backup
/// superblock: their bytes are then copied into place in pieces around it.
#[test]
fn stashed_files_step_over_a_backup_superblock() {
    use xspack_testkit::{Compression, Entry, ImageSpec, layer_tar, noise};
    let (_t, dir) = tempdir();
    // 127 MiB from block 2: the next file starts 254 blocks before group 1's backup.
    let base = layer_tar(&[Entry::file("big/zeros", vec![0u8; 127 << 20])]);
    let across = noise(7, 2 << 20);
    let upper = layer_tar(&[
        Entry::file("big/across", across.clone()),
        Entry::file("big/after", "after\n"),
    ]);
    ImageSpec::new(vec![(base, Compression::None), (upper, Compression::Gzip)])
        .write_oci_dir(&dir.join("layout"), "latest")
        .unwrap();
    let path = dir.join("fs.img");
    std::fs::write(&path, build_single_pass(&format!("oci:{dir}/layout"))).unwrap();
    e2fsck(&path);
    let got = read_tree(&path);
    for (name, want) in [(&b"big/across"[..], &across[..]), (b"big/after", b"after\n")] {
        let want = xspack_io::Sha256Digest::of_bytes(want).to_string();
        assert_eq!(got[name].sha256.clone().unwrap(), want, "{}", String::from_utf8_lossy(name));
    }
    let stat = xspack_testkit::ext4check::debugfs_stat(&path, b"big/across");
    assert!(stat.contains("32770"), "big/across should continue after the backup:\n{stat}");
}

/// The later layers' stashes need their directory: without it the build stops, naming it.
#[test]
fn a_missing_scratch_directory_is_named() {
    let (_t, dir) = tempdir();
    let (image, _) = kitchen_sink_image(&dir);
    assert!(image.layers.len() > 1, "the fixture has later layers to stash");
    let file = std::fs::File::create(dir.join("fs.img")).unwrap();
    let missing = dir.join("gone");
    let Err(err) =
        RootfsBuild::merge(&image, (file, None), missing.as_std_path(), false, &NoProgress)
    else {
        panic!("a build without its scratch directory succeeded");
    };
    let text = err.to_string();
    assert!(text.contains("creating a scratch file in") && text.contains("gone"), "{text}");
    assert!(!err.is_bad_input(), "the machine's fault, not the image's: {text}");
}

/// The number of paths in the two-pass build of `source`.
fn build_tree_len(source: &str) -> usize {
    let (_t, dir) = tempdir();
    let path = dir.join("fs.img");
    std::fs::write(&path, build(source)).unwrap();
    read_tree(&path).len()
}

#[test]
fn twenty_thousand_entries_and_large_files() {
    let (_t, dir) = tempdir();
    let (spec, expected) = fixtures::big_directory();
    spec.write_oci_dir(&dir.join("layout"), "latest").unwrap();
    let path = dir.join("fs.img");
    for (how, build) in BUILDS {
        std::fs::write(&path, build(&format!("oci:{dir}/layout"))).unwrap();
        e2fsck(&path);
        let got = read_tree(&path);
        let extra: Vec<_> = got
            .keys()
            .filter(|k| !expected.contains_key(*k))
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        assert_eq!(extra, ["lost+found"], "{how}");
        assert_eq!(got.len(), expected.len() + 1, "{how}: every entry plus lost+found");
        for probe in [&b"many/f00000"[..], b"many/f19999", b"big/random.bin", b"big/zeros.bin"] {
            let name = String::from_utf8_lossy(probe);
            assert_eq!(got.get(probe), expected.get(probe), "{how}: {name}");
        }
    }
}

#[test]
fn fixups_and_reading_files_from_the_image() {
    use xspack_oci::EntryMeta;
    use xspack_testkit::{Compression, Entry, EntryKind, ImageSpec, layer_tar};
    let (_t, dir) = tempdir();
    let layer = layer_tar(&[
        Entry::file("usr/lib/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
        Entry::new("etc/os-release", EntryKind::Symlink(b"../usr/lib/os-release".to_vec())),
        Entry::file(".dockerenv", ""),
        Entry::file("etc/hostname", "container\n"),
    ]);
    ImageSpec::new(vec![(layer, Compression::Gzip)])
        .write_oci_dir(&dir.join("layout"), "latest")
        .unwrap();
    let image = Image::open(&ImageSource::parse(&format!("oci:{dir}/layout")).unwrap()).unwrap();
    let mut tree = merge_layers(&image, &NoProgress).unwrap();
    let files =
        xspack_image::read_files(&image, &mut tree, &[b"etc/os-release", b"missing"]).unwrap();
    assert_eq!(files[&b"etc/os-release".to_vec()], b"ID=debian\nVERSION_ID=\"12\"\n");
    assert_eq!(files.len(), 1);
    let meta = EntryMeta { mode: 0o644, ..EntryMeta::default() };
    tree.put_file(b"etc/hostname", b"guest\n".to_vec(), meta.clone()).unwrap();
    tree.put_file(
        b"etc/systemd/system/app.service",
        b"[Service]\nExecStart=/bin/true\n".to_vec(),
        meta.clone(),
    )
    .unwrap();
    tree.put_symlink(
        b"etc/systemd/system/multi-user.target.wants/app.service",
        b"../app.service",
        EntryMeta { mode: 0o777, ..meta.clone() },
    )
    .unwrap();
    tree.put_dir(b"var/lib/cloud/seed", EntryMeta { mode: 0o700, ..meta }).unwrap();
    assert!(tree.remove(b".dockerenv"));
    let (bytes, _) = write_ext4(&image, tree.clone(), &opts(), Vec::new(), &NoProgress).unwrap();
    let path = dir.join("fs.img");
    std::fs::write(&path, bytes).unwrap();
    e2fsck(&path);
    let got = read_tree(&path);
    assert!(!got.contains_key(b".dockerenv".as_slice()));
    assert_eq!(
        got[&b"etc/hostname".to_vec()].sha256.as_deref(),
        Some(xspack_io::Sha256Digest::of_bytes(b"guest\n").to_string().as_str())
    );
    assert_eq!(
        got[&b"etc/systemd/system/multi-user.target.wants/app.service".to_vec()].target.as_deref(),
        Some(&b"../app.service"[..])
    );
    assert_eq!(got[&b"var/lib/cloud/seed".to_vec()].mode, 0o700);
    // The same fixups after a single pass, which wrote the replaced hostname already.
    let fixed = tree;
    let single = single_pass(&image, |tree| *tree = fixed);
    std::fs::write(&path, &single).unwrap();
    e2fsck(&path);
    let again = read_tree(&path);
    assert_eq!(again, got);
    assert!(!single.windows(10).any(|w| w == b"container\n"), "the replaced hostname is gone");
}

/// Layers whose files hold zero blocks in every arrangement that matters (zero runs across
/// blocks, all-zero files, zero tails) that leave VHD blocks empty. The VHD and XVA that
/// `build` streams from one read of the image (VHD's block map worked out from the ext4 plan)
/// equal those made from the raw file as guests make them ([`formats::derive_image`],
/// [`formats::write_xva`]), whichever formats are asked for; qemu-img reads the same disk
/// from each.
#[test]
fn streamed_formats_equal_the_raw_derived_ones() {
    use xspack_image::{BuildRequest, DiskFormat};
    use xspack_manifest::{OutputDir, Tool};
    let (_t, root) = tempdir();
    let layers = xspack_testkit::zero_block_layers();
    xspack_testkit::ImageSpec::new(layers).write_oci_dir(&root.join("layout"), "latest").unwrap();
    let image = Image::open(&ImageSource::parse(&format!("oci:{root}/layout")).unwrap()).unwrap();
    let out_dir = |name: &str| {
        let tool = Tool { name: "xspack".into(), version: "test".into() };
        OutputDir::create(&root.join(name), tool, 1_700_000_000, false).unwrap()
    };
    let build = |name: &str, formats: &[DiskFormat]| {
        let mut out = out_dir(name);
        let request = BuildRequest::new("d", formats.to_vec(), opts());
        xspack_image::build(&image, &mut out, &request, &NoProgress).unwrap();
        out.commit().unwrap().0
    };
    let all = [DiskFormat::Raw, DiskFormat::Vhd, DiskFormat::Qcow2, DiskFormat::Xva];
    let single = build("single", &all);
    let vhd_only = build("vhd-only", &[DiskFormat::Vhd]);
    let xva_only = build("xva-only", &[DiskFormat::Xva]);
    let raw = single.join("d.raw");
    let size = std::fs::metadata(&raw).unwrap().len();
    let mut out = out_dir("derived");
    let epoch = opts().source_date_epoch;
    let uuid = xspack_disk::Uuid::from_digest(&identity::image_seed("vhd uuid", &image));
    formats::derive_image(&mut out, &raw, DiskFormat::Vhd, "d.vhd", uuid, epoch, &NoProgress)
        .unwrap();
    let vm = xspack_image::bare_vm_spec(&image, "d", size);
    formats::write_xva(&mut out, "d.xva", &vm, &[&raw], epoch, &NoProgress).unwrap();
    let derived = out.commit().unwrap().0;
    let read = |p: Utf8PathBuf| std::fs::read(&p).unwrap();
    for (dir, file) in
        [(&single, "d.vhd"), (&single, "d.xva"), (&vhd_only, "d.vhd"), (&xva_only, "d.xva")]
    {
        assert!(read(dir.join(file)) == read(derived.join(file)), "{dir}/{file} differs");
    }
    e2fsck(&raw);
    for (file, format) in [("d.vhd", "vpc"), ("d.qcow2", "qcow2")] {
        let compare = std::process::Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", format])
            .arg(&raw)
            .arg(single.join(file))
            .output()
            .unwrap();
        assert!(compare.status.success(), "{file}: {}", String::from_utf8_lossy(&compare.stdout));
    }
}

/// A filesystem above 16 GiB has more descriptor blocks than the data zone leaves room for:
/// the single-pass build falls back to two passes over the same file, with the same files.
#[test]
fn a_single_pass_above_16_gib_falls_back_to_two_passes() {
    let (_t, dir) = tempdir();
    let (image, expected) = kitchen_sink_image(&dir);
    let mut big = opts();
    big.size = Some(17 << 30);
    let file_path = dir.join("fs.img");
    let file =
        std::fs::File::options().read(true).write(true).create_new(true).open(&file_path).unwrap();
    let rootfs =
        RootfsBuild::merge(&image, (file, None), dir.as_std_path(), false, &NoProgress).unwrap();
    let (file, summary) = rootfs.write(&big, &NoProgress).unwrap();
    drop(file);
    assert_eq!(summary.size, 17 << 30);
    assert_eq!(std::fs::metadata(&file_path).unwrap().len(), 17 << 30);
    check_against(&expected, &file_path);
}

/// Layers are read in parallel but merged in order, and a layer read ahead of its turn holds
/// only a bounded amount of entries before waiting: here the upper layers hold far more
/// (long names, ~40 MB of entries) than that budget, and whiteouts in the top layer must
/// still remove exactly what the layer below added.
#[test]
fn layers_read_ahead_of_their_turn_merge_in_order() {
    use xspack_testkit::{Compression, Entry, ImageSpec, layer_tar};
    let (_t, dir) = tempdir();
    // Long paths of short-enough components: about 850 bytes per entry.
    let deep = vec!["n".repeat(200); 4].join("/");
    let middle: Vec<Entry> =
        (0..20_000).map(|i| Entry::file(format!("a/{deep}/f{i}"), "x")).collect();
    let mut top: Vec<Entry> = (0..20_000)
        .filter(|i| i % 2 == 0)
        .map(|i| Entry::file(format!("a/{deep}/.wh.f{i}"), ""))
        .collect();
    top.extend((0..20_000).map(|i| Entry::file(format!("b/{deep}/g{i}"), "y")));
    ImageSpec::new(vec![
        (layer_tar(&[Entry::dir("a"), Entry::dir("b")]), Compression::Gzip),
        (layer_tar(&middle), Compression::Zstd),
        (layer_tar(&top), Compression::None),
    ])
    .write_oci_dir(&dir.join("layout"), "latest")
    .unwrap();
    let image = Image::open(&ImageSource::parse(&format!("oci:{dir}/layout")).unwrap()).unwrap();
    let tree = merge_layers(&image, &NoProgress).unwrap();
    let a = tree.lookup(format!("a/{deep}").as_bytes()).unwrap();
    let b = tree.lookup(format!("b/{deep}").as_bytes()).unwrap();
    assert_eq!(tree.children(a).count(), 10_000, "every even file of the middle layer whited out");
    assert!(tree.children(a).all(|(name, _)| {
        let i: u32 = std::str::from_utf8(&name[1..]).unwrap().parse().unwrap();
        i % 2 == 1
    }));
    assert_eq!(tree.children(b).count(), 20_000);
}

#[test]
fn read_file_after_pass_one_finds_every_layers_bytes_without_reading_a_layer_again() {
    use xspack_oci::EntryMeta;
    use xspack_testkit::{Compression, Entry, EntryKind, ImageSpec, Rng, layer_tar};
    let (_t, dir) = tempdir();
    let mut big = vec![0u8; 3 * 4096 + 17];
    Rng(7).fill(&mut big[4096..]);
    let base = layer_tar(&[
        Entry::file("usr/lib/first", big.clone()),
        Entry::file("usr/lib/replaced", "old"),
        Entry::new("usr/lib/link", EntryKind::Symlink(b"first".to_vec())),
    ]);
    let upper = layer_tar(&[
        Entry::file("usr/lib/replaced", "new bytes"),
        Entry::file("usr/lib/second", big[..5000].to_vec()),
    ]);
    ImageSpec::new(vec![(base, Compression::Gzip), (upper, Compression::Zstd)])
        .write_oci_dir(&dir.join("layout"), "latest")
        .unwrap();
    let image = Image::open(&ImageSource::parse(&format!("oci:{dir}/layout")).unwrap()).unwrap();
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(dir.join("fs.img"))
        .unwrap();
    let mut rootfs =
        RootfsBuild::merge(&image, (file, None), dir.as_std_path(), false, &NoProgress).unwrap();
    let max = 1 << 20;
    assert_eq!(rootfs.read_file(b"usr/lib/first", max).unwrap().unwrap(), big, "layer 0");
    assert_eq!(rootfs.read_file(b"usr/lib/link", max).unwrap().unwrap(), big, "a symlink");
    assert_eq!(rootfs.read_file(b"usr/lib/replaced", max).unwrap().unwrap(), b"new bytes");
    assert_eq!(rootfs.read_file(b"usr/lib/second", max).unwrap().unwrap(), big[..5000]);
    assert_eq!(rootfs.read_file(b"usr/lib/missing", max).unwrap(), None);
    assert_eq!(rootfs.read_file(b"usr/lib", max).unwrap(), None, "a directory");
    let meta = EntryMeta { mode: 0o644, ..EntryMeta::default() };
    rootfs.tree_mut().put_file(b"etc/added", b"inline".to_vec(), meta).unwrap();
    assert_eq!(rootfs.read_file(b"etc/added", max).unwrap().unwrap(), b"inline");
    let err = rootfs.read_file(b"usr/lib/first", 100).unwrap_err();
    assert!(err.to_string().contains("/usr/lib/first: 12305 bytes, more than the 100"), "{err}");
}
