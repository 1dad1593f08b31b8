//! The ubuntu flavor end to end, checked by independent tools: `sfdisk` reads the tables,
//! `e2fsck -fn` the root filesystem, pygrub (xen-utils-4.17) extracts the kernel and initrd,
//! `qemu-img compare` and `xva-img` read the derived formats back, `mtools` and `fsck.fat` read
//! the FAT images, and QEMU (TCG, `SeaBIOS` and OVMF) boots the real bookworm fixture to the
//! line its Entrypoint service prints. A missing tool fails the test: run `scripts/oracles`.

mod boot;
mod errors;
mod fixture;
mod small;

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::process::{Command, Output};

use camino::{Utf8Path, Utf8PathBuf};
use xspack_guest::ubuntu::{GuestSummary, UbuntuOptions};
use xspack_io::NoProgress;
use xspack_manifest::{OutputDir, Tool};
use xspack_oci::{Image, ImageSource};

/// pygrub of Debian 12's xen-utils-4.17.
pub const PYGRUB: &str = "/usr/lib/xen-4.17/bin/pygrub";
/// SOURCE_DATE_EPOCH of every test build.
pub const EPOCH: u64 = 1_700_000_000;

/// A temporary directory on the same filesystem as `target/` (so fixtures hard-link).
pub fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

/// Runs `cmd`, failing the test (never skipping) when the tool is missing or fails.
pub fn run(cmd: &mut Command) -> Output {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{shown}: {e} (a test oracle is missing: run scripts/oracles as root)")
    });
    assert!(
        out.status.success(),
        "{shown}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Builds the guest of `source` with `opts` into `dir/out` as the CLI does (the root
/// filesystem in a single pass); returns the summary and the output directory.
pub fn build(
    source: &str,
    dir: &Utf8Path,
    opts: &UbuntuOptions,
) -> Result<(GuestSummary, Utf8PathBuf), xspack_guest::Error> {
    let image = Image::open(&ImageSource::parse(source).unwrap()).unwrap();
    let dest = dir.join("out");
    let tool = Tool { name: "xspack".into(), version: "test".into() };
    let mut out = OutputDir::create(&dest, tool, EPOCH, true).unwrap();
    let summary = xspack_guest::ubuntu::build(&image, &mut out, opts, &NoProgress)?;
    let (dest, _) = out.commit().unwrap();
    Ok((summary, dest))
}

/// Copies `size` bytes at `offset` of `disk` into a new file `path`.
pub fn extract(disk: &Utf8Path, offset: u64, size: u64, path: &Utf8Path) {
    let mut src = std::fs::File::open(disk).unwrap();
    src.seek(SeekFrom::Start(offset)).unwrap();
    let mut dst = std::fs::File::create(path).unwrap();
    let copied = std::io::copy(&mut src.take(size), &mut dst).unwrap();
    assert_eq!(copied, size);
    dst.flush().unwrap();
}

/// Runs pygrub on `disk` as xenopsd does (`--output-format=simple`, quiet), extracting into a
/// new directory; returns the kernel bytes, the initrd bytes and the args.
pub fn pygrub(disk: &Utf8Path, dir: &Utf8Path) -> (Vec<u8>, Vec<u8>, String) {
    let outdir = dir.join("pygrub");
    std::fs::create_dir_all(&outdir).unwrap();
    let out = run(Command::new(PYGRUB)
        .args(["-q", "--output-format=simple"])
        .arg(format!("--output-directory={outdir}"))
        .arg(disk));
    let text = String::from_utf8(out.stdout).unwrap();
    eprintln!("pygrub: {}", text.trim());
    // The simple format is one "name value" line each for kernel, ramdisk and args.
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in pygrub's output: {text}"))
            .to_owned()
    };
    let kernel = std::fs::read(field("kernel")).unwrap();
    let ramdisk = std::fs::read(field("ramdisk")).unwrap();
    let args = field("args");
    (kernel, ramdisk, args)
}

/// `sfdisk --json` of `disk`.
pub fn sfdisk(disk: &Utf8Path) -> serde_json::Value {
    let out = run(Command::new("sfdisk").arg("--json").arg(disk));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["partitiontable"].clone()
}
