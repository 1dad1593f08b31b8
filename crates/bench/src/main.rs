//! `just bench`: times xspack against the tools users run today, side by side in one run.
//!
//! Each pair runs for several rounds, alternating which goes first, after a `sync`; the table
//! shows medians of wall time, CPU time (user + system) and peak RSS of the measured process,
//! and the ratio xspack / baseline. Absolute times on a shared machine mean little; compare
//! the ratios. Results are also written to `target/bench/results.{json,md}`.
//!
//! Every timed command runs under `xspack-bench measure`, which starts it as its only child
//! and reads that child's resource usage with getrusage(2) `RUSAGE_CHILDREN`.

mod fixtures;
mod measure;
mod report;

use anyhow::{Context as _, Result, bail};
use camino::Utf8PathBuf;

use crate::measure::Sample;

/// Rounds per pair unless `--rounds N` is given.
const DEFAULT_ROUNDS: usize = 5;

/// One side of a comparison.
struct Contender {
    label: String,
    argv: Vec<String>,
    cwd: Option<Utf8PathBuf>,
}

/// A benchmark: xspack against a baseline doing the same job.
struct Pair {
    name: &'static str,
    ours: Contender,
    baseline: Contender,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("measure") {
        return measure::run_child(&args[1..]);
    }
    let rounds = match args.as_slice() {
        [] => DEFAULT_ROUNDS,
        [flag, n] if flag == "--rounds" => n.parse().context("--rounds takes a number")?,
        _ => bail!("usage: xspack-bench [--rounds N]"),
    };
    let target = target_dir();
    let xspack = target.join("release/xspack");
    if !xspack.is_file() {
        bail!("{xspack}: not built; run `cargo build --release -p xspack-cli` (just bench does)");
    }
    let verify_dir = fixtures::verify_fixture(&target.join("bench/fixtures/verify"))?;
    let pairs = vec![Pair {
        name: "verify",
        ours: Contender {
            label: "xspack verify".into(),
            argv: vec![xspack.to_string(), "-q".into(), "verify".into(), verify_dir.to_string()],
            cwd: None,
        },
        baseline: Contender {
            label: "sha256sum -c".into(),
            argv: ["sha256sum", "--check", "--quiet", "SHA256SUMS"].map(String::from).to_vec(),
            cwd: Some(verify_dir.clone()),
        },
    }];
    let mut results = Vec::new();
    for pair in &pairs {
        eprintln!("bench: {} ({rounds} rounds)", pair.name);
        let (ours, baseline) = run_pair(pair, rounds)?;
        results.push(report::PairResult::new(
            pair.name,
            &pair.ours.label,
            &ours,
            &pair.baseline.label,
            &baseline,
        ));
    }
    report::print_and_save(&results, rounds, &target.join("bench"))
}

/// Warms both sides once, then alternates them for `rounds` rounds.
fn run_pair(pair: &Pair, rounds: usize) -> Result<(Vec<Sample>, Vec<Sample>)> {
    measure::run(&pair.ours.argv, pair.ours.cwd.as_deref())?;
    measure::run(&pair.baseline.argv, pair.baseline.cwd.as_deref())?;
    let (mut ours, mut baseline) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let order: [(&Contender, &mut Vec<Sample>); 2] = if round % 2 == 0 {
            [(&pair.ours, &mut ours), (&pair.baseline, &mut baseline)]
        } else {
            [(&pair.baseline, &mut baseline), (&pair.ours, &mut ours)]
        };
        for (who, samples) in order {
            samples.push(measure::run(&who.argv, who.cwd.as_deref())?);
        }
    }
    Ok((ours, baseline))
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
