//! Differential test of the ISO reader against xorriso and isoinfo.
//!
//! Seeds are images from our writer: a small tree with a subdirectory, symlinks, a long name and
//! a long symlink target (both in SUSP continuation areas), with and without Joliet, and the pack
//! tree of the oracle tests. A seeded RNG applies one or two mutations to each (volume
//! descriptor fields, path tables, directory records and their lengths, extents beyond the
//! image and back to an ancestor, SUSP and Rock Ridge entries, the Joliet descriptor and tree,
//! truncation, bit flips in the metadata) and the test asks, for every mutant:
//!
//! - xorriso: `-indev IMG -find / -exec lsdl` and `-osirrox on -extract / DIR`, with
//!   `-return_with SORRY 32`: a problem of severity SORRY or worse gives a non-zero exit;
//! - isoinfo `-d`, `-l`, `-R -l` and, with Joliet, `-J -l`: a non-zero exit, a crash, a hang
//!   (killed after [`HANG`] seconds), or anything written on stderr (isoinfo reports damage
//!   there and still exits 0);
//! - our reader, as `xspack verify` runs it: both hierarchies listed and every file read.
//!
//! It asserts that whatever an oracle refuses or flags, our reader refuses, with a one-line
//! error. `XSPACK_ISO_DIFF_CASES` (default 300) and `XSPACK_ISO_DIFF_SEED` change the run. A
//! missing `xorriso` or `isoinfo` fails the test.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Cursor};
use std::process::Command;
use xspack_testkit::Rng;

use camino::Utf8Path;
use xspack_iso::{EntryKind, IsoReader, Joliet};

use crate::{EPOCH, image_of_tree, options, pack_tree, small_image};

const SECTOR: usize = 2048;
/// Seconds after which an oracle that has not finished is taken to hang (isoinfo loops forever
/// on some damaged directories): a refusal, not a time measurement. Its runs take milliseconds.
const HANG: &str = "20";

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
}

/// Writes a both-endian 32-bit field (7.3.3); `halves` 1: only little-endian, 2: only big.
fn set733(b: &mut [u8], at: usize, v: u32, halves: u8) {
    if halves != 2 {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    if halves != 1 {
        b[at + 4..at + 8].copy_from_slice(&v.to_be_bytes());
    }
}

/// A directory record of the image.
#[derive(Clone, Debug)]
struct Rec {
    at: usize,
    len: usize,
    joliet: bool,
    /// The System Use field (byte range in the image).
    su: (usize, usize),
}

/// Where a seed keeps things.
#[derive(Clone, Debug, Default)]
struct Layout {
    /// Sectors of the volume descriptors (PVD first), terminator excluded.
    descriptors: Vec<usize>,
    joliet_svd: Option<usize>,
    records: Vec<Rec>,
    /// Directory extents (sectors).
    dirs: Vec<u32>,
    /// Sector of the first file data (metadata lies before it).
    metadata_end: usize,
}

fn layout(img: &[u8]) -> Layout {
    let mut l = Layout::default();
    let mut roots = Vec::new();
    for s in 16..32 {
        let vd = &img[s * SECTOR..(s + 1) * SECTOR];
        match vd[0] {
            255 => break,
            1 => roots.push((s * SECTOR + 156, false)),
            2 if vd[88..91].starts_with(b"%/") => {
                l.joliet_svd = Some(s);
                roots.push((s * SECTOR + 156, true));
            }
            _ => {}
        }
        l.descriptors.push(s);
    }
    let mut seen = BTreeSet::new();
    let mut data_start = img.len() / SECTOR;
    for (root_at, joliet) in roots {
        let mut stack = vec![(le32(img, root_at + 2), le32(img, root_at + 10))];
        while let Some((extent, size)) = stack.pop() {
            if !seen.insert((extent, joliet)) {
                continue;
            }
            l.dirs.push(extent);
            let start = extent as usize * SECTOR;
            let mut pos = start;
            while pos < start + size as usize {
                let len = usize::from(img[pos]);
                if len == 0 {
                    pos = (pos / SECTOR + 1) * SECTOR;
                    continue;
                }
                let name_len = usize::from(img[pos + 32]);
                let su_start = (33 + name_len + usize::from(name_len % 2 == 0)).min(len);
                let dir = img[pos + 25] & 2 != 0;
                let ident = img[pos + 33];
                l.records.push(Rec { at: pos, len, joliet, su: (pos + su_start, pos + len) });
                let (e, sz) = (le32(img, pos + 2), le32(img, pos + 10));
                if dir && !(name_len == 1 && ident <= 1) {
                    stack.push((e, sz));
                } else if !dir && sz > 0 {
                    data_start = data_start.min(e as usize);
                }
                pos += len;
            }
        }
    }
    l.metadata_end = data_start;
    l
}

/// Whether a (possibly damaged) image has a Joliet descriptor before its set terminator, which
/// is when isoinfo `-J` is asked.
fn has_joliet(img: &[u8]) -> bool {
    for s in 16..32 {
        let Some(vd) = img.get(s * SECTOR..(s + 1) * SECTOR) else { return false };
        match vd[0] {
            255 => return false,
            2 if vd[88..91].starts_with(b"%/") && matches!(vd[90], b'@' | b'C' | b'E') => {
                return true;
            }
            _ => {}
        }
    }
    false
}

/// The clean images the mutations start from.
fn seeds() -> Vec<Vec<u8>> {
    let small = |joliet: bool| {
        let mut opts = options(EPOCH);
        if !joliet {
            opts.joliet = Joliet::Off;
        }
        small_image(opts)
    };
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(dir.path()).unwrap();
    pack_tree(root);
    vec![small(true), small(false), image_of_tree(root, options(EPOCH))]
}

/// Edits of a volume descriptor.
fn mutate_descriptor(rng: &mut Rng, img: &mut [u8], l: &Layout) -> String {
    let s = rng.pick(&l.descriptors);
    let at = s * SECTOR;
    let space = u32::try_from(img.len() / SECTOR).unwrap();
    let halves = rng.pick(&[0u8, 0, 1, 2]);
    match rng.below(11) {
        0 => {
            let v = rng.pick(&[0, 1, 17, space - 1, space + 1, space * 2, u32::MAX]);
            set733(img, at + 80, v, halves);
            format!("sector {s}: volume space {v} (halves {halves})")
        }
        1 => {
            let v = rng.pick(&[0u16, 512, 1024, 4096, 2047]);
            let both = [v.to_le_bytes(), v.to_be_bytes()].concat();
            img[at + 128..at + 132].copy_from_slice(&both);
            format!("sector {s}: logical block size {v}")
        }
        2 => {
            let old = le32(img, at + 132);
            let v = rng.pick(&[0, old + 1, old.saturating_sub(1), old * 100, u32::MAX]);
            set733(img, at + 132, v, halves);
            format!("sector {s}: path table size {v}")
        }
        3 => {
            let v = rng.pick(&[0u32, 1, 16, space, space + 100, u32::MAX]);
            let (off, name) = rng.pick(&[(140usize, "L"), (148, "M")]);
            let bytes = if off == 140 { v.to_le_bytes() } else { v.to_be_bytes() };
            img[at + off..at + off + 4].copy_from_slice(&bytes);
            format!("sector {s}: {name} path table at {v}")
        }
        4 => {
            let dirs = &l.dirs;
            let other = rng.pick(dirs);
            let v = rng.pick(&[0u32, 16, space, u32::MAX / 2, other]);
            set733(img, at + 158, v, halves);
            format!("sector {s}: root extent {v}")
        }
        5 => {
            let old = le32(img, at + 166);
            let v = rng.pick(&[0, 1, 34, old + 2048, old * 1000, u32::MAX]);
            set733(img, at + 166, v, halves);
            format!("sector {s}: root size {v}")
        }
        6 => {
            img[at + 181] ^= rng.pick(&[2u8, 0x80, 4, 1]);
            format!("sector {s}: root flags")
        }
        7 => {
            img[at + 156] = rng.pick(&[0u8, 33, 35, 200]);
            format!("sector {s}: root record length {}", img[at + 156])
        }
        8 => {
            let (off, v) = rng.pick(&[(1usize, b'X'), (6, 2u8), (0, 3), (0, 0)]);
            img[at + off] = v;
            format!("sector {s}: byte {off} = {v}")
        }
        9 => {
            let v = rng.pick(&[b"%/X", b"%/@", b"%/C", b"\0\0\0"]);
            img[at + 88..at + 91].copy_from_slice(v);
            format!("sector {s}: escape {:?}", String::from_utf8_lossy(v))
        }
        _ => {
            // The set terminator.
            let t = l.descriptors.last().unwrap() + 1;
            img[t * SECTOR] = rng.pick(&[0u8, 1, 2]);
            format!("terminator type {}", img[t * SECTOR])
        }
    }
}

/// Edits of a directory record (either tree).
fn mutate_record(rng: &mut Rng, img: &mut [u8], l: &Layout) -> String {
    let r = rng.pick(&l.records);
    let at = r.at;
    let space = u32::try_from(img.len() / SECTOR).unwrap();
    let halves = rng.pick(&[0u8, 0, 1, 2]);
    let tree = if r.joliet { "joliet" } else { "primary" };
    let what = match rng.below(10) {
        0 => {
            let v = rng.pick(&[
                0u8,
                33,
                34,
                255,
                u8::try_from(r.len + 2).unwrap_or(255),
                u8::try_from(r.len - 1).unwrap_or(0),
            ]);
            img[at] = v;
            format!("length {v}")
        }
        1 => {
            img[at + 1] = 1;
            "extended attribute length 1".into()
        }
        2 => {
            let other = rng.pick(&l.dirs);
            let v = rng.pick(&[0u32, 16, space, space + 10, u32::MAX, other]);
            set733(img, at + 2, v, halves);
            format!("extent {v} (halves {halves})")
        }
        3 => {
            let old = le32(img, at + 10);
            let v =
                rng.pick(&[0, old + 1, old.saturating_sub(1), old * 1000, u32::MAX, old + 2048]);
            set733(img, at + 10, v, halves);
            format!("size {v} (halves {halves})")
        }
        4 => {
            let f = rng.pick(&[2u8, 0x80, 4, 1]);
            img[at + 25] ^= f;
            format!("flags ^ {f:#x}")
        }
        5 => {
            img[at + 26] = 1;
            img[at + 27] = rng.pick(&[0u8, 1]);
            "interleave".into()
        }
        6 => {
            let v = rng.pick(&[0u16, 2]);
            img[at + 28..at + 30].copy_from_slice(&v.to_le_bytes());
            img[at + 30..at + 32].copy_from_slice(&v.to_be_bytes());
            format!("volume sequence number {v}")
        }
        7 => {
            let v = rng.pick(&[0u8, img[at + 32] + 1, 255]);
            img[at + 32] = v;
            format!("name length {v}")
        }
        8 => {
            let n = usize::from(img[at + 32]).max(1);
            let pos = at + 33 + rng.below(n);
            img[pos] = rng.pick(&[b'/', 0, b'a', b';', b'.', 0xff]);
            format!("name byte {:#x}", img[pos])
        }
        _ => {
            // Its date.
            img[at + 18 + rng.below(7)] = rng.pick(&[0u8, 255, 200]);
            "date".into()
        }
    };
    format!("{tree} record at {at}: {what}")
}

/// Edits of a SUSP / Rock Ridge entry in a primary record's System Use field.
fn mutate_susp(rng: &mut Rng, img: &mut [u8], l: &Layout) -> String {
    let with_su: Vec<&Rec> =
        l.records.iter().filter(|r| !r.joliet && r.su.1 > r.su.0 + 4).collect();
    let r = rng.pick(&with_su);
    // The entries of the field.
    let mut entries = Vec::new();
    let mut pos = r.su.0;
    while pos + 4 <= r.su.1 && img[pos + 2] >= 4 {
        entries.push(pos);
        pos += usize::from(img[pos + 2]);
    }
    if entries.is_empty() {
        return "no SUSP entry".into();
    }
    let e = rng.pick(&entries);
    let sig = String::from_utf8_lossy(&img[e..e + 2]).into_owned();
    let space = u32::try_from(img.len() / SECTOR).unwrap();
    let what = match rng.below(6) {
        0 => {
            let v = rng.pick(&[0u8, 3, img[e + 2] + 1, 255, img[e + 2] - 1]);
            img[e + 2] = v;
            format!("length {v}")
        }
        1 => {
            img[e + 3] = rng.pick(&[0u8, 2]);
            "version".into()
        }
        2 if sig == "CE" => {
            let (off, v) = rng.pick(&[
                (4usize, space + 5),
                (4, 0),
                (12, 2047),
                (12, 4000),
                (20, 100_000),
                (20, 0),
            ]);
            set733(img, e + off, v, 0);
            format!("CE field {off} = {v}")
        }
        3 if sig == "SP" => {
            img[e + 4] = 0;
            "SP check bytes".into()
        }
        4 if sig == "PX" => {
            let mode = rng.pick(&[0o170_000u32, 0o040_755, 0o100_644, 0o120_777, 0]);
            set733(img, e + 4, mode, 0);
            format!("PX mode {mode:o}")
        }
        4 if sig == "NM" || sig == "SL" => {
            img[e + 4] = rng.pick(&[2u8, 4, 1, 0x20]);
            format!("flags {}", img[e + 4])
        }
        _ => {
            let k = e + rng.below(usize::from(img[e + 2]).max(1));
            img[k] ^= 1 << rng.below(8);
            "flip a bit".into()
        }
    };
    format!("SUSP {sig} at {e}: {what}")
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> (Vec<u8>, String) {
    let mut img = seed.to_vec();
    let mut labels = Vec::new();
    for _ in 0..=usize::from(rng.chance(25)) {
        let l = layout(seed);
        let label = match rng.below(10) {
            0 | 1 => mutate_descriptor(rng, &mut img, &l),
            2..=4 => mutate_record(rng, &mut img, &l),
            5 | 6 => mutate_susp(rng, &mut img, &l),
            7 => {
                let inside = (17 + rng.below(img.len() / SECTOR - 17)) * SECTOR;
                let cut = rng.pick(&[img.len() - 1, img.len() - SECTOR, inside]);
                img.truncate(cut);
                format!("truncate to {cut}")
            }
            8 => {
                let s = 17 + rng.below(l.metadata_end.saturating_sub(17).max(1));
                img[s * SECTOR..(s + 1) * SECTOR].fill(0);
                format!("zero sector {s}")
            }
            _ => {
                let k = 16 * SECTOR + rng.below(l.metadata_end.saturating_sub(16).max(1) * SECTOR);
                img[k] ^= 1 << rng.below(8);
                format!("flip a bit at {k}")
            }
        };
        labels.push(label);
        if img.len() < seed.len() {
            break;
        }
    }
    (img, labels.join("; "))
}

/// Our verdict, as `xspack verify` reads an image: both trees, every file's bytes.
fn ours(img: &[u8]) -> Result<(), String> {
    let mut r = IsoReader::new(Cursor::new(img)).map_err(|e| e.to_string())?;
    let entries = r.entries().map_err(|e| e.to_string())?;
    r.joliet_entries().map_err(|e| e.to_string())?;
    for e in entries.iter().filter(|e| e.kind == EntryKind::File) {
        let mut f = r.open_file(e).map_err(|e| e.to_string())?;
        io::copy(&mut f, &mut io::sink()).map_err(|err| format!("{}: {err}", e.path))?;
    }
    Ok(())
}

fn xorriso(file: &Utf8Path, out: &Utf8Path) -> Result<(), String> {
    let o = Command::new("timeout")
        .args([
            "-s",
            "KILL",
            HANG,
            "xorriso",
            "-abort_on",
            "NEVER",
            "-return_with",
            "SORRY",
            "32",
            "-indev",
        ])
        .arg(file)
        .args(["-find", "/", "-exec", "lsdl", "--", "-osirrox", "on", "-extract", "/"])
        .arg(out)
        .output()
        .expect("xorriso runs; install it with scripts/oracles");
    let _ = fs::remove_dir_all(out);
    if o.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&o.stderr);
        let line = err
            .lines()
            .find(|l| l.contains("SORRY") || l.contains("FAILURE") || l.contains("FATAL"));
        Err(format!("xorriso {}: {}", o.status, line.unwrap_or("").trim()))
    }
}

fn isoinfo(file: &Utf8Path, joliet: bool) -> Result<(), String> {
    let mut runs = vec![vec!["-d"], vec!["-l"], vec!["-R", "-l"]];
    if joliet {
        runs.push(vec!["-J", "-l"]);
    }
    for args in runs {
        let o = Command::new("timeout")
            .args(["-s", "KILL", HANG, "isoinfo"])
            .args(&args)
            .arg("-i")
            .arg(file)
            .output()
            .expect("isoinfo runs; install it with scripts/oracles");
        if !o.status.success() || !o.stderr.is_empty() {
            let err = String::from_utf8_lossy(&o.stderr);
            return Err(format!(
                "isoinfo {args:?} {}: {}",
                o.status,
                err.lines().next().unwrap_or("").trim()
            ));
        }
    }
    Ok(())
}

#[test]
fn reader_refuses_what_xorriso_and_isoinfo_refuse() {
    let cases: usize = std::env::var("XSPACK_ISO_DIFF_CASES").map_or(300, |v| v.parse().unwrap());
    let seed: u64 =
        std::env::var("XSPACK_ISO_DIFF_SEED").map_or(0x150_d1ff, |v| v.parse().unwrap());
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8Path::from_path(tmp.path()).unwrap();
    let file = root.join("x.iso");
    let out = root.join("out");
    let seeds = seeds();
    for s in &seeds {
        fs::write(&file, s).unwrap();
        let joliet = has_joliet(s);
        assert_eq!(xorriso(&file, &out), Ok(()));
        assert_eq!(isoinfo(&file, joliet), Ok(()));
        assert_eq!(ours(s), Ok(()));
    }
    let mut rng = Rng(seed | 1);
    let (mut refused_x, mut refused_i, mut refused_ours) = (0, 0, 0);
    let mut disagreements = Vec::new();
    for n in 0..cases {
        let seed_img = rng.pick(&seeds);
        let (img, label) = mutate(&mut rng, &seed_img);
        fs::write(&file, &img).unwrap();
        let joliet = has_joliet(&img);
        let x = xorriso(&file, &out);
        let i = isoinfo(&file, joliet);
        let us = ours(&img);
        if std::env::var("XSPACK_ISO_DIFF_DUMP").is_ok_and(|d| d == n.to_string()) {
            fs::write("/tmp/iso-diff-case.iso", &img).unwrap();
        }
        refused_x += usize::from(x.is_err());
        refused_i += usize::from(i.is_err());
        refused_ours += usize::from(us.is_err());
        match (&x, &i, &us) {
            (Err(why), _, Ok(())) | (_, Err(why), Ok(())) => {
                disagreements.push(format!("case {n} [{label}]: accepted, but {why}"));
            }
            (_, _, Err(e)) => assert!(!e.is_empty() && !e.contains('\n'), "case {n}: {e:?}"),
            _ => {}
        }
    }
    eprintln!(
        "{cases} cases (seed {seed:#x}): xorriso refused {refused_x}, isoinfo {refused_i}, we \
         {refused_ours}; {} disagreements",
        disagreements.len()
    );
    xspack_testkit::assert_no_disagreements(&disagreements);
    assert!(
        refused_ours * 5 > cases && refused_ours < cases,
        "the mutations must break some but not all images"
    );
}
