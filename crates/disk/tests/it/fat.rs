//! FAT images as dosfstools and mtools see them: `fsck.fat -n` finds nothing to fix, `mdir`
//! lists exactly our tree (long names included), `mtype` reads every file back byte for byte,
//! and `minfo` shows the type, label and serial number we asked for.

use std::collections::BTreeSet;
use std::io::Cursor;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_disk::fat::{FatBuilder, FatOptions, FatType};
use xspack_io::{NoProgress, Sha256Digest};

use crate::{NOW, mtools, noise, sparse_file, tempdir, tool};

/// The files and directories of the sample volume.
pub struct Tree {
    /// Files with their content.
    pub files: Vec<(String, Vec<u8>)>,
    /// Directories (without the parents implied by files).
    pub dirs: Vec<String>,
}

/// An ESP and config-drive mix: nested upper- and lower-case paths, long names (with spaces,
/// non-ASCII, and over 26 characters), an exact 8.3 name, an empty file, a file spanning many
/// clusters, an empty directory and a directory of 300 entries.
pub fn sample_tree() -> Tree {
    let mut files = vec![
        ("EFI/BOOT/BOOTX64.EFI".to_owned(), noise(150_000, 1)),
        ("EFI/BOOT/grub.cfg".to_owned(), b"set timeout=0\n".to_vec()),
        ("boot/grub/grub.cfg".to_owned(), b"menuentry 'x' {\n linux /vmlinuz\n}\n".to_vec()),
        ("openstack/latest/meta_data.json".to_owned(), br#"{"uuid": "x"}"#.to_vec()),
        ("Long File Name With Spaces.txt".to_owned(), b"spaces\n".to_vec()),
        ("ünïcödé-名前.txt".to_owned(), "ünï\n".as_bytes().to_vec()),
        ("a-name-that-is-much-longer-than-twenty-six-characters.conf".to_owned(), noise(700, 2)),
        ("README".to_owned(), b"exact 8.3 name\n".to_vec()),
        ("empty.txt".to_owned(), Vec::new()),
        ("from-reader.bin".to_owned(), noise(70_000, 3)),
    ];
    for i in 0..300 {
        files.push((format!("many/file-{i:03}.txt"), format!("file {i}\n").into_bytes()));
    }
    Tree { files, dirs: vec!["emptydir".to_owned(), "EFI/Linux".to_owned()] }
}

/// The builder of `tree`; `from-reader.bin` comes from a reader, the rest from bytes.
pub fn builder(tree: &Tree, opts: FatOptions) -> FatBuilder<'_> {
    let mut b = FatBuilder::new(opts);
    for dir in &tree.dirs {
        b.add_dir(dir).unwrap();
    }
    for (path, data) in &tree.files {
        if path == "from-reader.bin" {
            let len = data.len() as u64;
            b.add_file_reader(path, len, move || Ok(Cursor::new(data.as_slice()))).unwrap();
        } else {
            b.add_file_bytes(path, data.clone()).unwrap();
        }
    }
    b
}

/// The lines `mdir -/ -b` prints for `tree`: every directory (with a trailing `/`) and file.
fn expected_listing(tree: &Tree) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    let mut add_dirs = |path: &str| {
        let parts: Vec<&str> = path.split('/').collect();
        for n in 1..=parts.len() {
            set.insert(format!("::/{}/", parts[..n].join("/")));
        }
    };
    for dir in &tree.dirs {
        add_dirs(dir);
    }
    for (path, _) in &tree.files {
        if let Some((parent, _)) = path.rsplit_once('/') {
            add_dirs(parent);
        }
    }
    set.extend(tree.files.iter().map(|(p, _)| format!("::/{p}")));
    set
}

/// Checks the FAT volume at `image` (mtools drive spec, e.g. `disk.raw@@1M`) against `tree`.
pub fn check_volume(image: &str, tree: &Tree) {
    let listing = String::from_utf8(mtools("mdir", &["-i", image, "-/", "-b", "::"])).unwrap();
    let got: BTreeSet<String> = listing.lines().map(str::to_owned).collect();
    assert_eq!(got, expected_listing(tree));
    for (path, data) in tree.files.iter().filter(|(p, _)| !p.starts_with("many/")) {
        let back = mtools("mtype", &["-i", image, &format!("::/{path}")]);
        assert!(back == *data, "{path}: {} bytes back, {} expected", back.len(), data.len());
    }
    let back = mtools("mtype", &["-i", image, "::/many/file-299.txt"]);
    assert_eq!(back, b"file 299\n");
}

/// Runs `fsck.fat -n` on the file `image`, which must report nothing.
pub fn assert_fsck_clean(image: &Utf8Path) {
    let out = tool("fsck.fat", &["-n", image.as_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fsck.fat -n {image} ({}):\n{stdout}\n{stderr}", out.status);
    // A clean volume prints the version line and a summary only.
    assert_eq!(stdout.lines().count(), 2, "fsck.fat -n {image}:\n{stdout}\n{stderr}");
    assert!(stderr.is_empty(), "fsck.fat -n {image}:\n{stderr}");
}

fn minfo_field(info: &str, name: &str) -> String {
    let line = info.lines().find_map(|l| l.strip_prefix(name));
    line.unwrap_or_else(|| panic!("no {name} in minfo output:\n{info}")).trim().to_owned()
}

fn write(dir: &Utf8Path, name: &str, b: FatBuilder<'_>) -> (Utf8PathBuf, Sha256Digest) {
    let path = dir.join(name);
    let img = b.build().unwrap();
    let mut out = xspack_io::HashingWriter::new(sparse_file(&path));
    out = img.write_to(out, &NoProgress).unwrap();
    let (file, digest, _) = out.finish();
    file.finish().unwrap();
    (path, digest)
}

#[test]
fn fat12_fat16_fat32_pass_fsck_and_read_back() {
    let tree = sample_tree();
    let (_tmp, dir) = tempdir();
    let cases = [
        // Automatic size: the smallest whole MiB, FAT12 by size.
        ("fat12", FatOptions::new(0x0012_3456, NOW).with_label("cidata"), FatType::Fat12),
        (
            "fat16",
            FatOptions::new(0xABCD_EF01, NOW).with_label("ESP").with_size(64 << 20),
            FatType::Fat16,
        ),
        (
            "fat32",
            FatOptions::new(0x1111_2222, NOW).with_fat_type(FatType::Fat32).with_size(40 << 20),
            FatType::Fat32,
        ),
    ];
    for (name, opts, fat_type) in cases {
        let img = builder(&tree, opts.clone()).build().unwrap();
        assert_eq!(img.info().fat_type, fat_type, "{name}");
        let (path, digest) = write(&dir, &format!("{name}.img"), builder(&tree, opts.clone()));
        let (_, again) = write(&dir, &format!("{name}-again.img"), builder(&tree, opts.clone()));
        assert_eq!(digest, again, "{name}: two builds differ");

        assert_fsck_clean(&path);
        check_volume(path.as_str(), &tree);
        let info = String::from_utf8(mtools("minfo", &["-i", path.as_str(), "::"])).unwrap();
        assert_eq!(minfo_field(&info, "disk type="), format!("\"{fat_type}   \""));
        assert_eq!(minfo_field(&info, "serial number:"), format!("{:08X}", opts.volume_id));
        let label =
            if opts.label.is_empty() { "NO NAME".to_owned() } else { opts.label.to_uppercase() };
        assert_eq!(minfo_field(&info, "disk label="), format!("\"{label:<11}\""));
        // mtools shows the SOURCE_DATE_EPOCH time (2023-11-14 22:13 UTC) on every entry.
        let listing = String::from_utf8(mtools("mdir", &["-i", path.as_str(), "::/EFI"])).unwrap();
        assert!(
            listing.lines().any(|l| l.starts_with("BOOT ") && l.contains("2023-11-14  22:13")),
            "{listing}"
        );
    }
}

#[test]
fn fat12_root_directory_grows_past_512_entries() {
    // 600 long names take 1200 root entries, more than the usual 512.
    let (_tmp, dir) = tempdir();
    let mut b = FatBuilder::new(FatOptions::new(1, NOW));
    let mut tree = Tree { files: Vec::new(), dirs: Vec::new() };
    for i in 0..600 {
        let path = format!("entry-{i:03}.txt");
        b.add_file_bytes(&path, Vec::new()).unwrap();
        tree.files.push((path, Vec::new()));
    }
    let (path, _) = write(&dir, "root.img", b);
    assert_fsck_clean(&path);
    let listing =
        String::from_utf8(mtools("mdir", &["-i", path.as_str(), "-/", "-b", "::"])).unwrap();
    assert_eq!(
        listing.lines().collect::<BTreeSet<_>>(),
        expected_listing(&tree).iter().map(String::as_str).collect()
    );
}
