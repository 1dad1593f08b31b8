//! `just bench`: times xspack against the tools users run today, side by side in one run.
//!
//! Each benchmark runs its contenders for several rounds, rotating which goes first, each run
//! on a fresh scratch filesystem (a new loop-mounted ext4 when running as root: ext4 skips
//! recently freed inodes, so reusing one directory makes unpacking slow and erratic) and after
//! a `sync`; each benchmark starts with the page cache dropped (as root). The table shows medians of wall time, CPU time (user + system) and peak RSS of
//! the measured process, and ratios to the baseline. Absolute times on a shared machine mean
//! little; compare the ratios. Results are also written to `target/bench/results.{json,md}`.
//! xspack fsyncs its outputs before renaming them into place; the baselines end with
//! `sync FILE` on their output, so both sides pay for durable results.
//!
//! Every timed command runs under `xspack-bench measure`, which starts it as its only child
//! and reads that child's resource usage with getrusage(2) `RUSAGE_CHILDREN`.
//!
//! The benchmarks (`--only NAME` runs one):
//!
//! - `verify`: `xspack verify` against `sha256sum -c` on ~520 MiB;
//! - `image-bookworm`, `image-synthetic`: image to raw ext4 against `umoci unpack --rootless` +
//!   `mkfs.ext4 -d`, image to VHD against that pipeline + `qemu-img convert -O vpc`, image to
//!   XVA, and the floor (`xspack-bench floor`: inflate and sha256 every layer, layers in
//!   parallel, writing nothing), on the debootstrap bookworm minbase image and on a synthetic
//!   ~1 GB image of 50,000 files in 3 layers;
//! - `scale-synthetic`: the synthetic image at twice the size and file count, and at twice the
//!   bytes with the same files, against the floor, for how time and peak RSS grow;
//! - `formats`: VHD and XVA against raw from the same bookworm image, and against
//!   `qemu-img convert -O vpc` of the raw image (alone, and after xspack's raw build);
//! - `pack`: an update pack of ~200 MB against `createrepo_c` + `xorriso -as mkisofs`;
//! - `pack-from-files`: an update pack built from ~500 MiB of files (half incompressible, half
//!   text; one `[[package]]`) against what users run today, `rpmbuild -bb` of a `.spec` with
//!   the same files and the same payload compression (gzip -9, SHA-256 file digests), then
//!   `createrepo_c` + `xorriso -as mkisofs`; and the floor (`xspack-bench gzip-floor`: the
//!   files gzipped at level 9 with xspack's flate2 (zlib-rs) on all cores, written, fsynced
//!   and sha256ed).

mod fixtures;
mod floor;
mod gzip_floor;
mod measure;
mod report;
mod scratch;

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::measure::Sample;

/// Rounds per benchmark unless `--rounds N` is given.
const DEFAULT_ROUNDS: usize = 3;
/// The benchmarks, in the order they run; `--only NAME` picks one.
const BENCHES: [&str; 7] = [
    "verify",
    "image-bookworm",
    "image-synthetic",
    "scale-synthetic",
    "formats",
    "pack",
    "pack-from-files",
];
/// Stands for the run's scratch directory in a contender's argv.
const SCRATCH: &str = "{scratch}";

/// One way of doing a benchmark's job.
#[derive(Debug, Clone)]
pub struct Contender {
    /// Name in the table.
    pub label: String,
    /// Command; [`SCRATCH`] is replaced by a fresh scratch directory per run.
    pub argv: Vec<String>,
    /// Working directory.
    pub cwd: Option<Utf8PathBuf>,
    /// Run as the unprivileged user `nobody`, as users run the baseline.
    pub unprivileged: bool,
    /// Index of the contender this one's ratio is taken against; `None` for a baseline.
    pub compare_to: Option<usize>,
}

impl Contender {
    fn new(label: &str, argv: Vec<String>, compare_to: Option<usize>) -> Self {
        Contender { label: label.into(), argv, cwd: None, unprivileged: false, compare_to }
    }
}

/// A job done by xspack and by the baselines, and optionally the floor.
struct Bench {
    name: String,
    contenders: Vec<Contender>,
    /// More ratios to print: (contender, contender it is compared with).
    extra: Vec<(usize, usize)>,
}

/// Writes back dirty pages and drops the clean page cache. Only root may drop it; otherwise
/// the benchmark runs on the cache as it is.
fn drop_page_cache() {
    let _ = std::process::Command::new("sync").status();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3\n");
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("measure") => return measure::run_child(&args[1..]),
        Some("floor") => return floor::run(&args[1..]),
        Some("gzip-floor") => return gzip_floor::run(&args[1..]),
        _ => {}
    }
    let mut rounds = DEFAULT_ROUNDS;
    let mut only: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rounds" => {
                rounds = it
                    .next()
                    .context("--rounds takes a number")?
                    .parse()
                    .context("--rounds takes a number")?;
            }
            "--only" => only = Some(it.next().context("--only takes a benchmark name")?.clone()),
            _ => bail!("usage: xspack-bench [--rounds N] [--only {}]", BENCHES.join("|")),
        }
    }
    if let Some(name) = only.as_deref().filter(|o| !BENCHES.contains(o)) {
        bail!("--only {name}: no such benchmark (one of {})", BENCHES.join(", "));
    }
    let target = target_dir();
    let xspack = target.join("release/xspack");
    if !xspack.is_file() {
        bail!("{xspack}: not built; run `cargo build --release -p xspack-cli` (just bench does)");
    }
    let me = Utf8PathBuf::from_path_buf(std::env::current_exe()?)
        .map_err(|p| anyhow::anyhow!("{}: not UTF-8", p.display()))?;
    let scratch = scratch::Scratch::detect();
    eprintln!("bench: scratch filesystems: {}", scratch.describe());
    let mut benches = Vec::new();
    // Each benchmark starts from a settled page cache (its warm-up run then reads the inputs
    // back in): after hours of builds, a full and fragmented cache moved timings by up to 30%.
    let want = |name: &str| {
        let run = only.as_deref().is_none_or(|o| o == name);
        if run {
            drop_page_cache();
        }
        run
    };
    if want("verify") {
        benches.push(verify_bench(&xspack, &fixtures::dir(&target))?);
    }
    let fixtures_dir = fixtures::dir(&target);
    if want("image-bookworm") {
        let layout = fixtures::bookworm(&target)?;
        benches.push(image_bench("image-bookworm", &xspack, &me, &layout, "bookworm")?);
    }
    if want("image-synthetic") {
        let layout = fixtures::synthetic(&fixtures_dir.join("synthetic"), 1, 1)?;
        benches.push(image_bench("image-synthetic", &xspack, &me, &layout, "latest")?);
    }
    if want("scale-synthetic") {
        let both = fixtures::synthetic(&fixtures_dir.join("synthetic-2x"), 2, 2)?;
        let bytes = fixtures::synthetic(&fixtures_dir.join("synthetic-2x-bytes"), 1, 2)?;
        benches.push(scale_bench("scale-synthetic-2x", &xspack, &me, &both, &bytes));
    }
    if want("formats") {
        let layout = fixtures::bookworm(&target)?;
        let raw = fixtures::raw_image(
            &xspack,
            &format!("oci:{layout}:bookworm"),
            &fixtures_dir.join("bookworm.raw"),
        )?;
        benches.push(formats_bench(&xspack, &layout, &raw));
    }
    if want("pack") {
        let pack = fixtures::pack(&fixtures_dir.join("pack"))?;
        benches.push(pack_bench(&xspack, &pack));
    }
    if want("pack-from-files") {
        let pack = fixtures::pack_from_files(&fixtures_dir.join("pack-from-files"))?;
        benches.push(pack_from_files_bench(&xspack, &me, &pack));
    }
    let mut results = Vec::new();
    for bench in &benches {
        eprintln!("bench: {} ({rounds} rounds)", bench.name);
        let samples = run_bench(bench, rounds, &scratch)?;
        results.push(report::BenchResult::new(
            &bench.name,
            &bench.contenders,
            &bench.extra,
            &samples,
        ));
    }
    report::print_and_save(&results, rounds, &scratch.describe(), &target.join("bench"))
}

fn verify_bench(xspack: &Utf8Path, fixtures: &Utf8Path) -> Result<Bench> {
    let dir = fixtures::verify_fixture(&fixtures.join("verify"))?;
    Ok(Bench {
        name: "verify".into(),
        extra: Vec::new(),
        contenders: vec![
            Contender {
                label: "xspack verify".into(),
                argv: vec![xspack.to_string(), "-q".into(), "verify".into(), dir.to_string()],
                cwd: None,
                unprivileged: false,
                compare_to: Some(1),
            },
            Contender {
                label: "sha256sum -c".into(),
                argv: ["sha256sum", "--check", "--quiet", "SHA256SUMS"].map(String::from).to_vec(),
                cwd: Some(dir),
                unprivileged: false,
                compare_to: None,
            },
        ],
    })
}

/// `xspack image build SOURCE --format FORMAT` into the scratch directory.
fn xspack_build(xspack: &Utf8Path, source: &str, format: &str) -> Vec<String> {
    [xspack.as_str(), "-q", "image", "build", source, "--flavor", "none", "--name", "fs"]
        .iter()
        .map(ToString::to_string)
        .chain(["--format".into(), format.into(), "-o".into(), format!("{SCRATCH}/out")])
        .collect()
}

/// The floor program on `layout`.
fn floor(me: &Utf8Path, layout: &Utf8Path, reference: &str, compare_to: usize) -> Contender {
    Contender::new(
        "floor: inflate + sha256 every layer",
        vec![me.to_string(), "floor".into(), layout.to_string(), reference.into()],
        Some(compare_to),
    )
}

/// Image to raw ext4, to VHD and to XVA: xspack against the rootless pipeline users run
/// (`umoci unpack --rootless` + `mkfs.ext4 -d`, then `qemu-img convert -O vpc` for VHD), with
/// the decompress-and-hash floor.
fn image_bench(
    name: &str,
    xspack: &Utf8Path,
    me: &Utf8Path,
    layout: &Utf8Path,
    reference: &str,
) -> Result<Bench> {
    let source = format!("oci:{layout}:{reference}");
    let size = fixtures::image_size(xspack, &source)?;
    let unpack_mkfs = format!(
        "umoci unpack --rootless --image '{layout}:{reference}' \"$0/bundle\" >/dev/null && \
         mkfs.ext4 -q -F -d \"$0/bundle/rootfs\" \"$0/fs.img\" {}k",
        size / 1024
    );
    let raw_baseline = format!("{unpack_mkfs} && sync \"$0/fs.img\"");
    let vhd_baseline = format!(
        "{unpack_mkfs} && qemu-img convert -O vpc -o subformat=dynamic,force_size=on \
         \"$0/fs.img\" \"$0/fs.vhd\" && sync \"$0/fs.vhd\""
    );
    let baseline = |label: &str, script: String| Contender {
        label: label.into(),
        argv: vec!["sh".into(), "-c".into(), script, SCRATCH.into()],
        cwd: None,
        unprivileged: true,
        compare_to: None,
    };
    Ok(Bench {
        name: name.into(),
        extra: vec![(4, 3)],
        contenders: vec![
            Contender::new(
                "xspack image build --format raw",
                xspack_build(xspack, &source, "raw"),
                Some(1),
            ),
            baseline("umoci unpack --rootless + mkfs.ext4 -d (as nobody)", raw_baseline),
            Contender::new(
                "xspack image build --format vhd",
                xspack_build(xspack, &source, "vhd"),
                Some(3),
            ),
            baseline(
                "umoci unpack --rootless + mkfs.ext4 -d + qemu-img convert -O vpc (as nobody)",
                vhd_baseline,
            ),
            Contender::new(
                "xspack image build --format xva",
                xspack_build(xspack, &source, "xva"),
                Some(0),
            ),
            floor(me, layout, reference, 0),
        ],
    })
}

/// The synthetic image at twice the size and file count, and at twice the bytes with the
/// same files: how xspack's time and memory grow, against the floor (no baseline, to keep
/// `just bench` short).
fn scale_bench(
    name: &str,
    xspack: &Utf8Path,
    me: &Utf8Path,
    both: &Utf8Path,
    bytes: &Utf8Path,
) -> Bench {
    let source = format!("oci:{both}:latest");
    let bytes_source = format!("oci:{bytes}:latest");
    let floor_of = |layout: &Utf8Path, label: &str| Contender {
        label: format!("floor: inflate + sha256 every layer ({label})"),
        compare_to: None,
        ..floor(me, layout, "latest", 0)
    };
    Bench {
        name: name.into(),
        extra: Vec::new(),
        contenders: vec![
            Contender::new(
                "xspack image build --format raw (2x bytes, 2x files)",
                xspack_build(xspack, &source, "raw"),
                Some(2),
            ),
            Contender::new(
                "xspack image build --format vhd (2x bytes, 2x files)",
                xspack_build(xspack, &source, "vhd"),
                Some(2),
            ),
            floor_of(both, "2x bytes, 2x files"),
            Contender::new(
                "xspack image build --format vhd (2x bytes, same files)",
                xspack_build(xspack, &bytes_source, "vhd"),
                Some(4),
            ),
            floor_of(bytes, "2x bytes, same files"),
        ],
    }
}

/// Disk formats from one image build: VHD and XVA against raw output (ratio to raw), and
/// `qemu-img convert -O vpc` of the raw image for comparison.
fn formats_bench(xspack: &Utf8Path, layout: &Utf8Path, raw: &Utf8Path) -> Bench {
    let source = format!("oci:{layout}:bookworm");
    Bench {
        name: "formats".into(),
        extra: vec![(0, 3), (0, 4), (2, 3)],
        contenders: vec![
            Contender::new(
                "xspack image build --format vhd",
                xspack_build(xspack, &source, "vhd"),
                Some(1),
            ),
            Contender::new(
                "xspack image build --format raw",
                xspack_build(xspack, &source, "raw"),
                None,
            ),
            Contender::new(
                "xspack image build --format xva",
                xspack_build(xspack, &source, "xva"),
                Some(1),
            ),
            Contender::new(
                "qemu-img convert -O vpc (from the raw image)",
                [
                    "qemu-img",
                    "convert",
                    "-O",
                    "vpc",
                    "-o",
                    "subformat=dynamic,force_size=on",
                    raw.as_str(),
                ]
                .iter()
                .map(ToString::to_string)
                .chain([format!("{SCRATCH}/fs.vhd")])
                .collect(),
                Some(1),
            ),
            Contender::new(
                "xspack raw + qemu-img convert -O vpc",
                vec![
                    "sh".into(),
                    "-c".into(),
                    format!(
                        "'{xspack}' -q image build '{source}' --flavor none --name fs -o \"$0/out\" && \
                         qemu-img convert -O vpc -o subformat=dynamic,force_size=on \
                         \"$0/out/fs.raw\" \"$0/fs.vhd\" && sync \"$0/fs.vhd\""
                    ),
                    SCRATCH.into(),
                ],
                Some(1),
            ),
        ],
    }
}

/// An update pack of about 200 MB of RPMs: xspack against `createrepo_c` + `xorriso -as mkisofs`
/// on the same RPMs (neither signs). Both copy the RPMs into their staging tree: the scratch
/// filesystem is another device, so hard links are not possible for either.
fn pack_bench(xspack: &Utf8Path, pack: &Utf8Path) -> Bench {
    let baseline = format!(
        "mkdir -p \"$0/repo\" && cp -r '{pack}/rpms' \"$0/repo/Packages\" && \
         createrepo_c --quiet --no-database \"$0/repo\" && \
         xorriso -as mkisofs -quiet -r -J -joliet-long -o \"$0/pack.iso\" \"$0/repo\" && \
         sync \"$0/pack.iso\""
    );
    Bench {
        name: "pack".into(),
        extra: Vec::new(),
        contenders: vec![
            Contender {
                label: "xspack pack build --format update --unsigned".into(),
                argv: xspack_pack_build(xspack, pack),
                cwd: None,
                unprivileged: false,
                compare_to: Some(1),
            },
            Contender {
                label: "createrepo_c + xorriso -as mkisofs".into(),
                argv: vec!["sh".into(), "-c".into(), baseline, SCRATCH.into()],
                cwd: None,
                unprivileged: false,
                compare_to: None,
            },
        ],
    }
}

/// `xspack pack build PACK --format update --unsigned` into the scratch directory.
fn xspack_pack_build(xspack: &Utf8Path, pack: &Utf8Path) -> Vec<String> {
    [
        xspack.as_str(),
        "-q",
        "pack",
        "build",
        pack.as_str(),
        "--format",
        "update",
        "--unsigned",
        "-o",
    ]
    .iter()
    .map(ToString::to_string)
    .chain([format!("{SCRATCH}/out")])
    .collect()
}

/// An update pack from ~500 MiB of payload files (see [`fixtures::pack_from_files`]): xspack
/// against `rpmbuild -bb` of the same package with the same payload compression (gzip level 9,
/// `w9.gzdio`, which is also rpm 4.18's built-in default; SHA-256 file digests), then
/// `createrepo_c` + `xorriso -as mkisofs` as in [`pack_bench`]; and the gzip floor. rpmbuild's
/// `%install` copies the files into its build root, as a spec does; its `_topdir` is on the
/// scratch filesystem, so moving the RPM into the repository is a rename.
fn pack_from_files_bench(xspack: &Utf8Path, me: &Utf8Path, pack: &Utf8Path) -> Bench {
    let baseline = format!(
        "rpmbuild -bb --quiet --define \"_topdir $0/rpmbuild\" --define '_sourcedir {pack}/files' \
         --define '_binary_payload w9.gzdio' --define '_binary_filedigest_algorithm 8' \
         '{pack}/bench-files.spec' && \
         mkdir -p \"$0/repo/Packages\" && mv \"$0\"/rpmbuild/RPMS/noarch/*.rpm \"$0/repo/Packages/\" && \
         createrepo_c --quiet --no-database \"$0/repo\" && \
         xorriso -as mkisofs -quiet -r -J -joliet-long -o \"$0/pack.iso\" \"$0/repo\" && \
         sync \"$0/pack.iso\""
    );
    Bench {
        name: "pack-from-files".into(),
        extra: Vec::new(),
        contenders: vec![
            Contender::new(
                "xspack pack build --format update --unsigned",
                xspack_pack_build(xspack, pack),
                Some(1),
            ),
            Contender::new(
                "rpmbuild -bb (gzip -9) + createrepo_c + xorriso -as mkisofs",
                vec!["sh".into(), "-c".into(), baseline, SCRATCH.into()],
                None,
            ),
            Contender::new(
                "floor: gzip -9 on all cores + sha256 of the output",
                vec![
                    me.to_string(),
                    "gzip-floor".into(),
                    pack.join("files").to_string(),
                    format!("{SCRATCH}/payload.gz"),
                ],
                Some(0),
            ),
        ],
    }
}

/// Warms every contender once, then runs `rounds` rounds, rotating the order.
fn run_bench(bench: &Bench, rounds: usize, scratch: &scratch::Scratch) -> Result<Vec<Vec<Sample>>> {
    let n = bench.contenders.len();
    for c in &bench.contenders {
        run_one(c, scratch).with_context(|| format!("warming up {}", c.label))?;
    }
    let mut samples = vec![Vec::new(); n];
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            samples[i].push(run_one(&bench.contenders[i], scratch)?);
        }
    }
    Ok(samples)
}

fn run_one(c: &Contender, scratch: &scratch::Scratch) -> Result<Sample> {
    let dir = scratch.create(c.unprivileged)?;
    let argv: Vec<String> =
        c.argv.iter().map(|a| a.replace(SCRATCH, dir.path().as_str())).collect();
    let argv = if c.unprivileged { scratch::as_nobody(argv) } else { argv };
    let result = measure::run(&argv, c.cwd.as_deref());
    drop(dir);
    result.with_context(|| c.label.clone())
}

/// The workspace's target directory.
fn target_dir() -> Utf8PathBuf {
    let dir = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| Utf8PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target")),
        Utf8PathBuf::from,
    );
    // Show `/work/x/target`, not `/work/x/crates/bench/../../target`, in messages.
    dir.canonicalize_utf8().unwrap_or(dir)
}
