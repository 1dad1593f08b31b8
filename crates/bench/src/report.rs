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
    /// The contender this one is compared with (`None`: a baseline).
    compared_with: Option<String>,
    /// This contender's wall time / that contender's; below 1 is faster.
    wall_ratio: Option<f64>,
    samples: Vec<Sample>,
}

/// A further ratio of one contender's median wall time to another's.
#[derive(Debug, Serialize)]
pub struct Comparison {
    of: String,
    to: String,
    wall_ratio: f64,
}

/// One benchmark's outcome.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    name: String,
    contenders: Vec<Summary>,
    ratios: Vec<Comparison>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { f64::midpoint(values[n / 2 - 1], values[n / 2]) }
}

impl BenchResult {
    /// Summarises each contender's samples; `extra` lists more (contender, reference) pairs to
    /// report, besides each contender's own reference and each xspack run against the floor.
    pub fn new(
        name: &str,
        contenders: &[Contender],
        extra: &[(usize, usize)],
        samples: &[Vec<Sample>],
    ) -> Self {
        let walls: Vec<f64> =
            samples.iter().map(|s| median(s.iter().map(|x| x.wall_s).collect())).collect();
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
                    compared_with: c.compare_to.map(|i| contenders[i].label.clone()),
                    wall_ratio: c.compare_to.map(|i| wall / walls[i]),
                    samples: s.clone(),
                }
            })
            .collect();
        let mut pairs = extra.to_vec();
        if let Some(floor) = contenders.iter().position(|c| c.label.starts_with("floor")) {
            for (i, c) in contenders.iter().enumerate() {
                // Against the floor, unless its own reference already is one (scale's runs
                // each have their fixture's floor).
                let has_floor =
                    c.compare_to.is_some_and(|r| contenders[r].label.starts_with("floor"));
                if c.label.starts_with("xspack") && !has_floor {
                    pairs.push((i, floor));
                }
            }
        }
        let ratios = pairs
            .iter()
            .map(|&(a, b)| Comparison {
                of: contenders[a].label.clone(),
                to: contenders[b].label.clone(),
                wall_ratio: walls[a] / walls[b],
            })
            .collect();
        BenchResult { name: name.to_owned(), contenders: summaries, ratios }
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
    writeln!(md, "| benchmark | tool | wall (median) | CPU (median) | peak RSS | wall ratio |")?;
    writeln!(md, "|---|---|---|---|---|---|")?;
    for r in results {
        for s in &r.contenders {
            let ratio = match (&s.compared_with, s.wall_ratio) {
                (Some(to), Some(x)) => format!("**{x:.2}x** of {}", short(to)),
                _ => "baseline".to_owned(),
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
        for x in &r.ratios {
            writeln!(
                md,
                "| {} | {} / {} | | | | **{:.2}x** |",
                r.name,
                short(&x.of),
                short(&x.to),
                x.wall_ratio
            )?;
        }
    }
    writeln!(
        md,
        "\n{rounds} rounds after one warm-up run each, rotating order; medians; {scratch}; `sync` before each run; every contender's output is synced to disk (xspack fsyncs, baselines end with `sync FILE`). Baselines marked \"as nobody\" run rootless as the unprivileged user nobody (setpriv, no supplementary groups); xspack runs as the invoking user and needs no privilege either. CPU is user + system time; peak RSS is the largest process's (getrusage RUSAGE_CHILDREN). Ratios are of median wall times; below 1 is faster."
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

/// A contender's label without its parenthesised notes, for ratio rows.
fn short(label: &str) -> &str {
    label.split(" (").next().unwrap_or(label).trim_start_matches("xspack image build ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(wall_s: f64) -> Vec<Sample> {
        vec![Sample { wall_s, cpu_s: wall_s, max_rss_kib: 1024 }]
    }

    /// Each xspack run is set against the floor once: its own, when that is its reference,
    /// and never against another fixture's floor.
    #[test]
    fn runs_meet_their_own_floor_only() {
        let contenders = [
            Contender::new("xspack vhd (big)", Vec::new(), Some(1)),
            Contender::new("floor (big)", Vec::new(), None),
            Contender::new("xspack vhd (small)", Vec::new(), Some(3)),
            Contender::new("floor (small)", Vec::new(), None),
        ];
        let samples = [sample(8.0), sample(4.0), sample(3.0), sample(2.0)];
        let result = BenchResult::new("scale", &contenders, &[], &samples);
        assert!(result.ratios.is_empty(), "{:?}", result.ratios);
        assert_eq!(result.contenders[0].wall_ratio, Some(2.0));
        assert_eq!(result.contenders[2].wall_ratio, Some(1.5));

        let contenders = [
            Contender::new("xspack vhd", Vec::new(), Some(1)),
            Contender::new("baseline", Vec::new(), None),
            Contender::new("floor", Vec::new(), None),
        ];
        let samples = [sample(1.0), sample(5.0), sample(0.5)];
        let result = BenchResult::new("image", &contenders, &[], &samples);
        assert_eq!(result.ratios.len(), 1);
        assert_eq!(
            (result.ratios[0].of.as_str(), result.ratios[0].to.as_str()),
            ("xspack vhd", "floor")
        );
        assert!((result.ratios[0].wall_ratio - 2.0).abs() < 1e-9);
    }
}
