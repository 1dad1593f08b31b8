//! The results table, printed and saved as JSON and Markdown.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use camino::Utf8Path;
use serde::Serialize;

use crate::Contender;
use crate::measure::Sample;

/// Medians of one contender.
#[derive(Debug, Serialize)]
pub struct Summary {
    label: String,
    wall_s: f64,
    cpu_s: f64,
    max_rss_kib: i64,
    /// This contender's wall time / the baseline's; below 1 is faster.
    wall_vs_baseline: f64,
    samples: Vec<Sample>,
}

/// One benchmark's outcome: xspack first, the baseline second, then any others.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    name: String,
    contenders: Vec<Summary>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { f64::midpoint(values[n / 2 - 1], values[n / 2]) }
}

impl BenchResult {
    /// Summarises each contender's samples.
    pub fn new(name: &str, contenders: &[Contender], samples: &[Vec<Sample>]) -> Self {
        let walls: Vec<f64> =
            samples.iter().map(|s| median(s.iter().map(|x| x.wall_s).collect())).collect();
        let baseline = walls.get(1).copied().unwrap_or(walls[0]);
        let summaries = contenders
            .iter()
            .zip(samples)
            .zip(&walls)
            .map(|((c, s), wall)| {
                let mut rss: Vec<i64> = s.iter().map(|x| x.max_rss_kib).collect();
                rss.sort_unstable();
                Summary {
                    label: c.label.clone(),
                    wall_s: *wall,
                    cpu_s: median(s.iter().map(|x| x.cpu_s).collect()),
                    max_rss_kib: rss[rss.len() / 2],
                    wall_vs_baseline: wall / baseline,
                    samples: s.clone(),
                }
            })
            .collect();
        BenchResult { name: name.to_owned(), contenders: summaries }
    }
}

/// Prints the Markdown table and writes `results.json` and `results.md` under `dir`.
pub fn print_and_save(
    results: &[BenchResult],
    rounds: usize,
    scratch: &str,
    dir: &Utf8Path,
) -> Result<()> {
    let mut md = String::new();
    writeln!(md, "| benchmark | tool | wall (median) | CPU (median) | peak RSS | vs baseline |")?;
    writeln!(md, "|---|---|---|---|---|---|")?;
    for r in results {
        for (i, s) in r.contenders.iter().enumerate() {
            let ratio = match i {
                0 => format!("**{:.2}x**", s.wall_vs_baseline),
                1 => "baseline".to_owned(),
                _ => format!("{:.2}x", s.wall_vs_baseline),
            };
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
        if let (Some(ours), Some(floor)) =
            (r.contenders.first(), r.contenders.iter().find(|c| c.label.starts_with("floor")))
        {
            writeln!(
                md,
                "| {} | xspack / floor | | | | {:.2}x |",
                r.name,
                ours.wall_s / floor.wall_s
            )?;
        }
    }
    writeln!(
        md,
        "\n{rounds} rounds, rotating order; {scratch}; `sync` before each run; every contender's output is synced to disk (xspack fsyncs, baselines end with `sync FILE`)."
    )?;
    print!("{md}");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    std::fs::write(dir.join("results.md"), &md)
        .with_context(|| format!("writing {dir}/results.md"))?;
    let json = serde_json::to_string_pretty(
        &serde_json::json!({ "rounds": rounds, "scratch": scratch, "results": results }),
    )?;
    std::fs::write(dir.join("results.json"), json + "\n")
        .with_context(|| format!("writing {dir}/results.json"))?;
    Ok(())
}
