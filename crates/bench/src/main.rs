//! `just bench`: times xspack against the tools users run today, side by side in one run.
//!
//! Each benchmark runs its contenders for several rounds, rotating which goes first, each run
//! on a fresh scratch filesystem (a new loop-mounted ext4 when running as root: ext4 skips
//! recently freed inodes, so reusing one directory makes unpacking slow and erratic) and after
//! a `sync`. The table shows medians of wall time, CPU time (user + system) and peak RSS of
//! the measured process, and ratios to the baseline. Absolute times on a shared machine mean
//! little; compare the ratios. Results are also written to `target/bench/results.{json,md}`.
//! xspack fsyncs its outputs before renaming them into place; the baselines end with
//! `sync FILE` on their output, so both sides pay for durable results.
//!
//! Every timed command runs under `xspack-bench measure`, which starts it as its only child
//! and reads that child's resource usage with getrusage(2) `RUSAGE_CHILDREN`.

mod fixtures;
mod floor;
mod measure;
mod report;
mod scratch;

use anyhow::{Context as _, Result, bail};
use camino::{Utf8Path, Utf8PathBuf};

use crate::measure::Sample;

/// Rounds per benchmark unless `--rounds N` is given.
const DEFAULT_ROUNDS: usize = 3;
/// The benchmarks, in the order they run; `--only NAME` picks one.
const BENCHES: [&str; 5] = ["verify", "image-bookworm", "image-synthetic", "formats", "pack"];
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
}

/// A job done by xspack (first contender), the baseline (second) and optionally the floor.
struct Bench {
    name: String,
    contenders: Vec<Contender>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("measure") => return measure::run_child(&args[1..]),
        Some("floor") => return floor::run(&args[1..]),
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
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if want("verify") {
        benches.push(verify_bench(&xspack, &target)?);
    }
    if want("image-bookworm") {
        let layout = fixtures::bookworm(&target)?;
        benches.push(image_bench("image-bookworm", &xspack, &me, &layout, "bookworm")?);
    }
    if want("image-synthetic") {
        let layout = fixtures::synthetic(&target.join("bench/fixtures/synthetic"))?;
        benches.push(image_bench("image-synthetic", &xspack, &me, &layout, "latest")?);
    }
    if want("formats") {
        let layout = fixtures::bookworm(&target)?;
        let raw = fixtures::raw_image(
            &xspack,
            &format!("oci:{layout}:bookworm"),
            &target.join("bench/fixtures/bookworm.raw"),
        )?;
        benches.push(formats_bench(&xspack, &layout, &raw));
    }
    if want("pack") {
        let pack = fixtures::pack(&target.join("bench/fixtures/pack"))?;
        benches.push(pack_bench(&xspack, &pack));
    }
    let mut results = Vec::new();
    for bench in &benches {
        eprintln!("bench: {} ({rounds} rounds)", bench.name);
        let samples = run_bench(bench, rounds, &scratch)?;
        results.push(report::BenchResult::new(&bench.name, &bench.contenders, &samples));
    }
    report::print_and_save(&results, rounds, &scratch.describe(), &target.join("bench"))
}

fn verify_bench(xspack: &Utf8Path, target: &Utf8Path) -> Result<Bench> {
    let dir = fixtures::verify_fixture(&target.join("bench/fixtures/verify"))?;
    Ok(Bench {
        name: "verify".into(),
        contenders: vec![
            Contender {
                label: "xspack verify".into(),
                argv: vec![xspack.to_string(), "-q".into(), "verify".into(), dir.to_string()],
                cwd: None,
                unprivileged: false,
            },
            Contender {
                label: "sha256sum -c".into(),
                argv: ["sha256sum", "--check", "--quiet", "SHA256SUMS"].map(String::from).to_vec(),
                cwd: Some(dir),
                unprivileged: false,
            },
        ],
    })
}

/// Image to raw ext4: xspack against `umoci unpack --rootless` + `mkfs.ext4 -d`, with the
/// decompress-and-hash floor.
fn image_bench(
    name: &str,
    xspack: &Utf8Path,
    me: &Utf8Path,
    layout: &Utf8Path,
    reference: &str,
) -> Result<Bench> {
    let source = format!("oci:{layout}:{reference}");
    let size = fixtures::image_size(xspack, &source)?;
    let baseline = format!(
        "umoci unpack --rootless --image '{layout}:{reference}' \"$0/bundle\" >/dev/null && \
         mkfs.ext4 -q -F -d \"$0/bundle/rootfs\" \"$0/fs.img\" {}k && sync \"$0/fs.img\"",
        size / 1024
    );
    Ok(Bench {
        name: name.into(),
        contenders: vec![
            Contender {
                label: "xspack image build".into(),
                argv: [
                    xspack.as_str(),
                    "-q",
                    "image",
                    "build",
                    &source,
                    "--flavor",
                    "none",
                    "--name",
                    "fs",
                    "-o",
                ]
                .iter()
                .map(ToString::to_string)
                .chain([format!("{SCRATCH}/out")])
                .collect(),
                cwd: None,
                unprivileged: false,
            },
            Contender {
                label: "umoci unpack --rootless + mkfs.ext4 -d (as nobody)".into(),
                argv: vec!["sh".into(), "-c".into(), baseline, SCRATCH.into()],
                cwd: None,
                unprivileged: true,
            },
            Contender {
                label: "floor: inflate + sha256 every layer".into(),
                argv: vec![me.to_string(), "floor".into(), layout.to_string(), reference.into()],
                cwd: None,
                unprivileged: false,
            },
        ],
    })
}

/// Disk formats from one image build: VHD and XVA against raw output (ratio to raw), and
/// `qemu-img convert -O vpc` of the raw image for comparison.
fn formats_bench(xspack: &Utf8Path, layout: &Utf8Path, raw: &Utf8Path) -> Bench {
    let source = format!("oci:{layout}:bookworm");
    let build = |label: &str, format: &str| Contender {
        label: label.into(),
        argv: [
            xspack.as_str(),
            "-q",
            "image",
            "build",
            &source,
            "--flavor",
            "none",
            "--name",
            "fs",
            "--format",
            format,
            "-o",
        ]
        .iter()
        .map(ToString::to_string)
        .chain([format!("{SCRATCH}/out")])
        .collect(),
        cwd: None,
        unprivileged: false,
    };
    Bench {
        name: "formats".into(),
        contenders: vec![
            build("xspack image build --format vhd", "vhd"),
            build("xspack image build --format raw", "raw"),
            build("xspack image build --format xva", "xva"),
            Contender {
                label: "qemu-img convert -O vpc (from the raw image)".into(),
                argv: [
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
                cwd: None,
                unprivileged: false,
            },
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
        contenders: vec![
            Contender {
                label: "xspack pack build --format update --unsigned".into(),
                argv: [
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
                .collect(),
                cwd: None,
                unprivileged: false,
            },
            Contender {
                label: "createrepo_c + xorriso -as mkisofs".into(),
                argv: vec!["sh".into(), "-c".into(), baseline, SCRATCH.into()],
                cwd: None,
                unprivileged: false,
            },
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
