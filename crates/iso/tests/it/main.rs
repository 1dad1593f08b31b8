//! Integration tests of xspack-iso.
//!
//! - `oracle`: images checked by the real tools, xorriso (listing, extraction + `diff -r`) and
//!   isoinfo (descriptors, Joliet names, Rock Ridge modes). A missing tool fails the test; run
//!   `scripts/oracles` to install them.
//! - `roundtrip`: proptest trees written and read back by our reader; reproducibility.
//! - `hostile`: malformed images give typed errors, random corruption never panics.

mod hostile;
mod iso_diff;
mod limits;
mod oracle;
mod roundtrip;

use std::fs;
use std::io::Cursor;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::process::Command;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_iso::{IsoBuilder, IsoOptions, Metadata, write_iso};

/// The epoch every test image uses unless it tests the epoch.
pub const EPOCH: i64 = 1_700_000_000;

/// A temporary directory and its UTF-8 path.
pub fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

/// Runs an oracle tool and returns its stdout; fails (never skips) when the tool is missing or
/// exits non-zero, showing the command and its stderr.
pub fn run_raw(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("oracle `{tool}` cannot run ({e}); install it with scripts/oracles")
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{tool} {args:?} failed with {}:\n{stderr}", out.status);
    out.stdout
}

/// [`run_raw`] for tools that print UTF-8.
pub fn run(tool: &str, args: &[&str]) -> String {
    String::from_utf8(run_raw(tool, args)).unwrap()
}

/// [`run_raw`] for isoinfo's Joliet listings, which it prints in ISO 8859-1 (characters beyond
/// it become `_`).
pub fn run_latin1(tool: &str, args: &[&str]) -> String {
    run_raw(tool, args).into_iter().map(char::from).collect()
}

/// A long name (90 characters) that needs Rock Ridge or Joliet-long.
pub const LONG_NAME: &str =
    "demo-driver-with-a-very-long-package-name-beyond-sixty-four-characters-1.0-1.x86_64.rpm";
/// An 80-character repodata name, as createrepo writes them.
pub const REPODATA_NAME: &str =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-primary.xml.gz";

/// Deterministic pseudo-random bytes (xorshift), so large files are not trivially compressible.
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn write_file(root: &Utf8Path, rel: &str, body: &[u8], mode: u32) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, body).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A staged pack tree with every case the oracles check: executable scripts, mixed case,
/// spaces, long names, a deep path, an empty file and directory, a few MiB of data, symlinks,
/// names that collide once upper-cased, non-ASCII names and restrictive modes.
pub fn pack_tree(root: &Utf8Path) {
    write_file(root, "install.sh", b"#!/bin/sh\necho installing\n", 0o755);
    write_file(root, "install", b"#!/usr/bin/env python\nprint('installing')\n", 0o755);
    write_file(root, "XS-REPOSITORY", b"<repository originator=\"xs\" name=\"demo\"/>\n", 0o644);
    write_file(root, "XS-PACKAGES", b"<packages/>\n", 0o644);
    write_file(root, "Mixed Case Name.txt", b"mixed\n", 0o644);
    write_file(root, "name with spaces.rpm", b"spaces\n", 0o644);
    write_file(root, LONG_NAME, b"long\n", 0o644);
    write_file(root, &format!("repodata/{REPODATA_NAME}"), b"gz\n", 0o644);
    write_file(root, "a/b/c/d/e/f/g/deep-file.txt", b"deep\n", 0o644);
    write_file(root, "empty", b"", 0o644);
    write_file(root, "Packages/big.bin", &noise(3 * 1024 * 1024 + 123, 7), 0o644);
    write_file(root, "README", b"upper\n", 0o644);
    write_file(root, "readme", b"lower\n", 0o644);
    write_file(root, "caf\u{e9}-\u{fc}n\u{ef}c\u{f6}d\u{e9}-\u{4e2d}.txt", b"unicode\n", 0o644);
    write_file(root, "secret.key", b"k\n", 0o600);
    fs::create_dir(root.join("emptydir")).unwrap();
    symlink("../name with spaces.rpm", root.join("Packages/latest.rpm")).unwrap();
    symlink("/etc/xensource-inventory", root.join("abs-link")).unwrap();
}

/// Options for test images.
pub fn options(epoch: i64) -> IsoOptions {
    let mut opts = IsoOptions::new("XSPACK_TEST", epoch);
    opts.publisher_id = "XSPACK TESTS".into();
    opts
}

/// Builds the image of a host tree in memory.
pub fn image_of_tree(src: &Utf8Path, opts: IsoOptions) -> Vec<u8> {
    let mut b = IsoBuilder::new(opts).unwrap();
    let files = b.add_host_tree(src, "").unwrap();
    write_iso(&b, Vec::new(), |id| files.open(id)).unwrap().0
}

/// A small image of `opts`: files, a subdirectory, a symlink, a long name and a long symlink
/// target (both in SUSP continuation areas).
pub fn small_image(opts: IsoOptions) -> Vec<u8> {
    let mut b = IsoBuilder::new(opts).unwrap();
    let mut contents = Vec::new();
    for (path, body) in [
        ("ab", b"one".to_vec()),
        ("cd", b"two".to_vec()),
        ("sub/file", noise(5000, 3)),
        ("sub/deeper/x", b"x".to_vec()),
        (&"n".repeat(100), b"long".to_vec()),
    ] {
        b.add_file(path, body.len() as u64, Metadata::new(0o644)).unwrap();
        contents.push(body);
    }
    b.add_symlink("link", "sub/file", Metadata::new(0o777)).unwrap();
    b.add_symlink("far", &"t/".repeat(500), Metadata::new(0o777)).unwrap();
    image_of(&b, &contents)
}

/// An image of `files` (path, bytes) built in memory.
pub fn image_of(b: &IsoBuilder, contents: &[Vec<u8>]) -> Vec<u8> {
    write_iso(b, Vec::new(), |id| Ok(Cursor::new(contents[id.index()].as_slice()))).unwrap().0
}
