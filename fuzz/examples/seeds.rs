//! Writes one valid input per fuzz target, made by xspack's own writers, into
//! `corpus/<target>/` (generated, not committed): `cargo run --example seeds [DIR]`.

use std::io::Cursor;

use xspack_testkit::{Compression, Entry, EntryKind, layer_tar};

fn main() {
    let root = std::env::args().nth(1).unwrap_or_else(|| "corpus".to_owned());
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();

    // Layers: a tree with every kind of entry, whiteouts and a hard link, in each compression.
    let tar = layer_tar(&[
        Entry::dir("usr/bin"),
        Entry::file("usr/bin/su", "#!/bin/sh\n").mode(0o4755),
        Entry::new("usr/bin/hl", EntryKind::Hardlink(b"usr/bin/su".to_vec())),
        Entry::new("usr/bin/sl", EntryKind::Symlink(b"su".to_vec())),
        Entry::new("dev-null", EntryKind::Char(1, 3)),
        Entry::file("etc/.wh.passwd", ""),
        Entry::file("var/.wh..wh..opq", ""),
        Entry::file("long/".repeat(30) + "name", "x").xattr("user.k", "v"),
    ]);
    for (mode, c) in [(0u8, Compression::None), (1, Compression::Gzip), (2, Compression::Zstd)] {
        for top in [0u8, 0x80] {
            let mut s = vec![mode | top];
            s.extend(c.apply(&tar));
            seeds.push(("layer", s));
        }
    }

    // gzip with access points of both kinds: one fixed-code block (level 1) and many blocks
    // with their own codes (level 6), over text, zeros and noise.
    let mut mixed = Vec::new();
    for i in 0..40u64 {
        mixed.extend(format!("line {i} of some text\n").repeat(60).into_bytes());
        mixed.extend(std::iter::repeat_n(0u8, 700));
        mixed.extend(xspack_testkit::noise(i, 900));
    }
    for c in [Compression::Gzip, Compression::GzipDefault] {
        seeds.push(("gzip_index", c.apply(&mixed)));
    }

    // OCI and docker JSON documents, as the testkit writes them.
    let spec = xspack_testkit::ImageSpec::new(vec![(tar.clone(), Compression::None)]);
    let built = spec.build();
    for (name, data) in spec.oci_files("latest") {
        if name == "index.json" {
            seeds.push(("oci_json", [&[0u8][..], &data].concat()));
        }
    }
    seeds.push(("oci_json", [&[1u8][..], &built.manifest.1].concat()));
    seeds.push(("oci_json", [&[2u8][..], &built.config.1].concat()));
    seeds.push((
        "oci_json",
        [&[3u8][..], br#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["l/layer.tar"]}]"#].concat(),
    ));

    // Disks of 2 MiB. VHD blocks (2 MiB) and XVA chunks (1 MiB) that hold data make seeds of
    // megabytes, which slow every execution: those disks are empty (the tables are what the
    // readers check); the qcow2 one has a little data in 64 KiB clusters.
    let mut raw = vec![0u8; 2 << 20];
    let size = raw.len() as u64;
    let uuid = xspack_io::Uuid::from_seed(b"fuzz seed");
    let (vhd, _) = xspack_disk::vhd::write_vhd(
        xspack_disk::SeekSource::new(Cursor::new(raw.clone()), size),
        Vec::new(),
        &xspack_disk::vhd::VhdOptions::new(uuid, 1_700_000_000),
        &xspack_io::NoProgress,
    )
    .expect("vhd");
    seeds.push(("vhd", vhd));
    let zeros = raw.clone();
    raw[1000..5000].fill(0xa5);
    raw[(1 << 20) + 7] = 1;
    for compress in [false, true] {
        let (q, _) = xspack_disk::qcow2::write_qcow2(
            xspack_disk::SeekSource::new(Cursor::new(raw.clone()), size),
            Vec::new(),
            &xspack_disk::qcow2::Qcow2Options::new(compress),
            &xspack_io::NoProgress,
        )
        .expect("qcow2");
        seeds.push(("qcow2", q));
    }
    let mut vm = xspack_xva::VmSpec::new("seed", uuid);
    vm.sr_uuid = xspack_io::Uuid::from_seed(b"sr");
    vm.disks.push(xspack_xva::DiskSpec::new(
        size,
        xspack_io::Uuid::from_seed(b"vdi"),
        xspack_io::Uuid::from_seed(b"vbd"),
    ));
    let xva = xspack_xva::write_xva(
        Vec::new(),
        &vm,
        &mut [Cursor::new(zeros)],
        &xspack_xva::XvaOptions::default(),
    )
    .expect("xva");
    seeds.push(("xva", xva));

    // A small FAT12 ESP: the shim layout's loaders (stand-in PE images, one signed) and a long
    // name.
    let mut fat = xspack_disk::fat::FatBuilder::new(
        xspack_disk::fat::FatOptions::new(7, 1_700_000_000).with_size(128 << 10),
    );
    fat.add_file_bytes("EFI/BOOT/BOOTX64.EFI", xspack_testkit::signed_pe(3000)).expect("fat");
    fat.add_file_bytes("EFI/BOOT/grubx64.efi", xspack_testkit::pe_image(2000, None)).expect("fat");
    fat.add_file_bytes("EFI/debian/BOOTX64.CSV", b"s\0h\0".to_vec()).expect("fat");
    let fat = fat.build().expect("fat").write_to(Vec::new(), &xspack_io::NoProgress).expect("fat");
    seeds.push(("fat_read", fat));

    // An ISO with Rock Ridge and Joliet, a directory, files and a symlink.
    let mut b = xspack_iso::IsoBuilder::new(xspack_iso::IsoOptions::new("SEED", 1_700_000_000))
        .expect("iso options");
    b.add_dir("dir", xspack_iso::Metadata::new(0o755)).expect("dir");
    let a = b.add_file("dir/a.txt", 5, xspack_iso::Metadata::new(0o644)).expect("file");
    let s = b.add_file("install.sh", 10, xspack_iso::Metadata::new(0o755)).expect("file");
    b.add_symlink("latest", "install.sh", xspack_iso::Metadata::new(0o777)).expect("symlink");
    let (iso, _) = xspack_iso::write_iso(&b, Vec::new(), |id| {
        Ok(Cursor::new(if id == a { b"hello".to_vec() } else if id == s { b"#!/bin/sh\n".to_vec() } else { Vec::new() }))
    })
    .expect("iso");
    seeds.push(("iso", iso));

    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../packs/demo/pack.toml");
    seeds.push(("pack_toml", std::fs::read(demo).expect("packs/demo/pack.toml")));

    // ext4 trees, as programs of `xspack_fuzz::ext4_tree` (an op byte, then its arguments):
    // every kind of inode, names at their limits, many links, xattrs, deep nesting, extreme
    // times and owners; and one that gives a file 65,025 names, where the 65,001st is refused.
    let varied: &[&[u8]] = &[
        &[0, 0, 0, 0, 1],               // directory /n1
        &[1, 1, 0, 0, 2, 0, 16, 0, 7],  // 16-byte file /n1/n2
        &[2, 0, 0, 0, 0, 0, 3],         // and a second name, /n3
        &[3, 0, 0, 200],                // and 200 more
        &[4, 1, 0, 0, 4, 3, 1],         // 60-byte symlink (the shortest slow one)
        &[4, 0, 0, 0, 5, 1, 1],         // 1-byte symlink
        &[4, 0, 0, 0, 8, 4, 1],         // 4,095-byte symlink
        &[5, 0, 0, 0, 6, 4, 6, 0],      // character device 4095:1048575
        &[6, 0, 0, 0, 7, 1],            // socket
        &[7, 1, 0, 0, 10, 64, 0],       // user.* xattr of 64 bytes on /n1
        &[7, 2, 0, 4, 0, 2, 0],         // POSIX ACL on the file
        &[7, 3, 0, 0, 250, 0xd0, 0x0e], // 255-byte xattr name, the xattr block full
        &[8, 1, 0, 40],                 // 40 nested directories under /n1
        &[9, 144],                      // a directory of 144 subdirectories
        &[10, 0, 0, 6, 16, 0],          // the root's times at 2446
        &[10, 3, 0, 0, 0, 0],           // and a file's before 1901
        &[11, 3, 0, 4, 1, 0xed, 0x01],  // owners past 16 bits
        &[1, 0, 0, 201, 3, 254, 9],     // a 203-byte name, three blocks of data
        &[0, 0, 0, 243],                // lost+found, made by the caller
    ];
    seeds.push(("ext4_tree", varied.concat()));
    // A 5-byte file /n1, then 65,025 names for it.
    let many_links = [1u8, 0, 0, 0, 1, 0, 5, 0, 0, 3, 0, 0, 255];
    seeds.push(("ext4_tree", many_links.to_vec()));

    // pack.toml paths (`xspack_fuzz::pack_paths`): a control byte choosing each line's field
    // (two bits a line) and whether `shared` is allowed, then one path a line.
    let paths = "files/a\npost.sh\nfiles/*.rpm\nfiles/t.toml\nfiles/link-in\n\
                 files/link-out\n../shared/common.conf\nfiles/up/outside.txt";
    for control in [0b1110_0100u8, 0x00, 0xE4 | 0x80, 0x55] {
        let mut s = vec![control];
        s.extend_from_slice(paths.as_bytes());
        seeds.push(("pack_paths", s));
    }

    for (i, (target, data)) in seeds.iter().enumerate() {
        let dir = format!("{root}/{target}");
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(format!("{dir}/seed-{i:02}"), data).expect("write seed");
        // Every seed runs through its harness cleanly.
        xspack_fuzz::run(target, data);
    }
    println!("{} seeds in {root}/", seeds.len());
}
