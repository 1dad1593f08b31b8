//! Timing one command: wall time, CPU time and peak RSS of exactly that process.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use camino::Utf8Path;
use nix::sys::resource::{UsageWho, getrusage};
use serde::{Deserialize, Serialize};

/// What one run cost.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Sample {
    /// Wall-clock seconds.
    pub wall_s: f64,
    /// User plus system CPU seconds.
    pub cpu_s: f64,
    /// Peak resident set size in KiB.
    pub max_rss_kib: i64,
}

/// Runs `argv` in `cwd` under `xspack-bench measure`, after `sync`, and returns its cost.
pub fn run(argv: &[String], cwd: Option<&Utf8Path>) -> Result<Sample> {
    let status = Command::new("sync").status().context("running sync")?;
    if !status.success() {
        bail!("sync failed");
    }
    let me = std::env::current_exe().context("locating xspack-bench")?;
    let mut cmd = Command::new(me);
    cmd.arg("measure").args(argv);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let out = cmd.output().context("running the measuring wrapper")?;
    if !out.status.success() {
        bail!("{}: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).context("reading the measurement")
}

/// The wrapper: runs `argv` as its only child and prints that child's [`Sample`] as JSON.
pub fn run_child(argv: &[String]) -> Result<()> {
    let (program, rest) = argv.split_first().context("measure: no command")?;
    let start = Instant::now();
    let status =
        // The child's stdout is discarded: ours carries the measurement.
        Command::new(program)
            .args(rest)
            .stdout(std::process::Stdio::null())
            .status()
            .with_context(|| format!("starting {program}"))?;
    let wall_s = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{} exited with {status}", argv.join(" "));
    }
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage")?;
    let seconds = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    let sample = Sample {
        wall_s,
        cpu_s: seconds(usage.user_time()) + seconds(usage.system_time()),
        max_rss_kib: usage.max_rss(),
    };
    println!("{}", serde_json::to_string(&sample)?);
    Ok(())
}
