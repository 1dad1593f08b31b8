//! Our reader reads back whatever we write, and the output is reproducible.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use proptest::prelude::*;
use xspack_iso::{EntryKind, IsoBuilder, IsoLevel, IsoReader, Metadata};

use crate::{EPOCH, image_of, image_of_tree, options, pack_tree, tempdir};

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Link(String),
}

#[derive(Debug, Clone)]
struct Spec {
    dirs: Vec<String>,
    name: String,
    kind: Kind,
    meta: Metadata,
}

/// What the reader should report for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    kind: EntryKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    target: Option<String>,
    contents: Option<Vec<u8>>,
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 ._\u{e9}\u{4e2d}-]{1,24}".prop_filter("not . or ..", |s| s != "." && s != "..")
}

fn spec() -> impl Strategy<Value = Spec> {
    let kind = prop_oneof![
        Just(Kind::Dir),
        prop::collection::vec(any::<u8>(), 0..5000).prop_map(Kind::File),
        "[a-zA-Z0-9./ _-]{1,300}".prop_map(Kind::Link),
    ];
    let meta =
        (0u32..=0o7777, 0u32..3, 0u32..3, prop::option::of(-2_208_988_800i64..5_869_583_999))
            .prop_map(|(mode, uid, gid, mtime)| Metadata { mode, uid, gid, mtime });
    (prop::collection::vec(name(), 0..3), name(), kind, meta)
        .prop_map(|(dirs, name, kind, meta)| Spec { dirs, name, kind, meta })
}

/// Adds the specs that the builder accepts and models what they should read back as.
fn build(
    specs: &[Spec],
    level: IsoLevel,
) -> (IsoBuilder, Vec<Vec<u8>>, BTreeMap<String, Expected>) {
    let mut opts = options(EPOCH);
    opts.level = level;
    let mut b = IsoBuilder::new(opts).unwrap();
    let mut contents = Vec::new();
    let mut model = BTreeMap::new();
    for s in specs {
        let path = s.dirs.iter().chain([&s.name]).cloned().collect::<Vec<_>>().join("/");
        let (added, kind, type_bits, target, body) = match &s.kind {
            Kind::Dir => (b.add_dir(&path, s.meta).is_ok(), EntryKind::Dir, 0o040_000, None, None),
            Kind::File(body) => {
                let ok = b.add_file(&path, body.len() as u64, s.meta).is_ok();
                if ok {
                    contents.push(body.clone());
                }
                (ok, EntryKind::File, 0o100_000, None, Some(body.clone()))
            }
            Kind::Link(t) => (
                b.add_symlink(&path, t, s.meta).is_ok(),
                EntryKind::Symlink,
                0o120_000,
                Some(t.clone()),
                None,
            ),
        };
        if !added {
            continue;
        }
        for depth in 1..=s.dirs.len() {
            model.entry(s.dirs[..depth].join("/")).or_insert(Expected {
                kind: EntryKind::Dir,
                mode: 0o040_755,
                uid: 0,
                gid: 0,
                mtime: EPOCH,
                target: None,
                contents: None,
            });
        }
        model.insert(
            path,
            Expected {
                kind,
                mode: type_bits | s.meta.mode,
                uid: s.meta.uid,
                gid: s.meta.gid,
                mtime: s.meta.mtime.unwrap_or(EPOCH),
                target,
                contents: body,
            },
        );
    }
    (b, contents, model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn reader_reads_back_random_trees(
        specs in prop::collection::vec(spec(), 0..24),
        level2 in any::<bool>(),
    ) {
        let level = if level2 { IsoLevel::Two } else { IsoLevel::One };
        let (b, contents, model) = build(&specs, level);
        let image = image_of(&b, &contents);
        let mut reader = IsoReader::new(Cursor::new(image)).unwrap();
        let entries = reader.entries().unwrap();
        let mut got = BTreeMap::new();
        for e in &entries {
            let body = if e.kind == EntryKind::File {
                let mut bytes = Vec::new();
                reader.open_file(e).unwrap().read_to_end(&mut bytes).unwrap();
                prop_assert_eq!(bytes.len() as u64, e.size);
                Some(bytes)
            } else {
                None
            };
            got.insert(e.path.clone(), Expected {
                kind: e.kind,
                mode: e.mode.unwrap(),
                uid: e.uid.unwrap(),
                gid: e.gid.unwrap(),
                mtime: e.mtime.unwrap(),
                target: e.symlink_target.clone(),
                contents: body,
            });
        }
        prop_assert_eq!(&got, &model);

        let joliet = reader.joliet_entries().unwrap().unwrap();
        let joliet: BTreeMap<String, (EntryKind, i64)> =
            joliet.into_iter().map(|e| (e.path, (e.kind, e.mtime.unwrap()))).collect();
        let want: BTreeMap<String, (EntryKind, i64)> = model
            .iter()
            .filter(|(_, e)| e.kind != EntryKind::Symlink)
            .map(|(p, e)| (p.clone(), (e.kind, e.mtime)))
            .collect();
        prop_assert_eq!(joliet, want);
        if let Some((path, e)) = model.iter().find(|(_, e)| e.kind == EntryKind::File) {
            let found = reader.lookup(path).unwrap();
            prop_assert_eq!(found.mode, Some(e.mode));
        }
    }
}

#[test]
fn two_builds_are_byte_identical_and_the_epoch_matters() {
    let (_t, root) = tempdir();
    let src = root.join("src");
    pack_tree(&src);
    let one = image_of_tree(&src, options(EPOCH));
    let two = image_of_tree(&src, options(EPOCH));
    assert!(one == two, "two builds of one tree differ");
    let later = image_of_tree(&src, options(EPOCH + 1));
    assert_eq!(one.len(), later.len());
    assert!(one != later, "source_date_epoch must change the image");
}

#[test]
fn insertion_order_does_not_matter() {
    let entries: Vec<(&str, &[u8])> = vec![
        ("z/last.txt", b"last"),
        ("Packages/a.rpm", b"a"),
        ("Packages/B.rpm", b"bb"),
        ("install.sh", b"#!/bin/sh\n"),
        ("repodata/repomd.xml", b"<repomd/>"),
    ];
    let image = |order: &[(&str, &[u8])]| {
        let mut b = IsoBuilder::new(options(EPOCH)).unwrap();
        let mut contents = Vec::new();
        for (path, body) in order {
            b.add_file(path, body.len() as u64, Metadata::new(0o644)).unwrap();
            contents.push(body.to_vec());
        }
        b.add_symlink("latest", "Packages/a.rpm", Metadata::new(0o777)).unwrap();
        image_of(&b, &contents)
    };
    let forward = image(&entries);
    let reversed: Vec<_> = entries.iter().rev().copied().collect();
    assert!(forward == image(&reversed), "layout depends on insertion order");
}
