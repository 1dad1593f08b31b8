//! The results table, printed and saved as JSON and Markdown.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use camino::Utf8Path;
use serde::Serialize;

use crate::measure::Sample;

/// Medians of one contender.
#[derive(Debug, Serialize)]
pub struct Summary {
    label: String,
    wall_s: f64,
    cpu_s: f64,
    max_rss_kib: i64,
    samples: Vec<Sample>,
}

/// One benchmark's outcome.
#[derive(Debug, Serialize)]
pub struct PairResult {
    name: String,
    xspack: Summary,
    baseline: Summary,
    /// xspack wall time / baseline wall time; below 1 means xspack is faster.
    wall_ratio: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { f64::midpoint(values[n / 2 - 1], values[n / 2]) }
}

fn summarise(label: &str, samples: &[Sample]) -> Summary {
    let mut rss: Vec<i64> = samples.iter().map(|s| s.max_rss_kib).collect();
    rss.sort_unstable();
    Summary {
        label: label.to_owned(),
        wall_s: median(samples.iter().map(|s| s.wall_s).collect()),
        cpu_s: median(samples.iter().map(|s| s.cpu_s).collect()),
        max_rss_kib: rss[rss.len() / 2],
        samples: samples.to_vec(),
    }
}

impl PairResult {
    /// Summarises the samples of both sides.
    pub fn new(
        name: &str,
        ours_label: &str,
        ours: &[Sample],
        base_label: &str,
        base: &[Sample],
    ) -> Self {
        let xspack = summarise(ours_label, ours);
        let baseline = summarise(base_label, base);
        let wall_ratio = xspack.wall_s / baseline.wall_s;
        PairResult { name: name.to_owned(), xspack, baseline, wall_ratio }
    }
}

/// Prints the Markdown table and writes `results.json` and `results.md` under `dir`.
pub fn print_and_save(results: &[PairResult], rounds: usize, dir: &Utf8Path) -> Result<()> {
    let mut md = String::new();
    writeln!(
        md,
        "| benchmark | tool | wall (median) | CPU (median) | peak RSS | xspack / baseline |"
    )?;
    writeln!(md, "|---|---|---|---|---|---|")?;
    for r in results {
        for (s, ratio) in
            [(&r.xspack, format!("**{:.2}x**", r.wall_ratio)), (&r.baseline, String::new())]
        {
            writeln!(
                md,
                "| {} | {} | {:.3} s | {:.3} s | {:.1} MiB | {ratio} |",
                r.name,
                s.label,
                s.wall_s,
                s.cpu_s,
                s.max_rss_kib as f64 / 1024.0
            )?;
        }
    }
    writeln!(md, "\n{rounds} rounds per pair, alternating order, `sync` before each run.")?;
    print!("{md}");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    std::fs::write(dir.join("results.md"), &md)
        .with_context(|| format!("writing {dir}/results.md"))?;
    let json =
        serde_json::to_string_pretty(&serde_json::json!({ "rounds": rounds, "results": results }))?;
    std::fs::write(dir.join("results.json"), json + "\n")
        .with_context(|| format!("writing {dir}/results.json"))?;
    Ok(())
}
