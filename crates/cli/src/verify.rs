//! `xspack verify <DIR | FILE>`: re-check a build directory against its checksum lists.

use anyhow::{Context as _, Result};
use camino::{Utf8Path, Utf8PathBuf};
use indicatif::HumanBytes;
use serde_json::json;
use xspack_manifest::{Mismatch, Problem, RelPath, VerifyReport};

use crate::cli::VerifyArgs;
use crate::exit::{ClassifyResult as _, bad_input};
use crate::ui::Ui;

/// How many problem files the one-line error names before summarising the rest.
const NAMED_IN_ERROR: usize = 5;

/// Runs `xspack verify`.
pub fn run(args: VerifyArgs, ui: &Ui) -> Result<std::process::ExitCode> {
    let target = args.target;
    let meta = std::fs::metadata(&target).with_context(|| format!("{target}: cannot open"))?;
    if !meta.is_dir() {
        return verify_file(&target, ui);
    }
    let report = xspack_manifest::verify_dir(&target, ui.progress()).classified()?;
    print_report(&report, ui);
    if report.is_ok() {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    failed(&target, &report, ui)
}

/// A failed verification: the error line, or with `--json` the one result with the report and
/// the error.
fn failed(target: &Utf8Path, report: &VerifyReport, ui: &Ui) -> Result<std::process::ExitCode> {
    let line = summary_line(target, report);
    if ui.json {
        let mut result = to_json(report);
        result["error"] = json!(line);
        result["hint"] = json!(null);
        ui.result(result);
        return Ok(std::process::ExitCode::from(crate::exit::BAD_INPUT));
    }
    Err(bad_input(line).into())
}

/// One file: its own structure (and checksums) when it is an ISO, VHD, XVA or qcow2, and its digest
/// when a checksum list beside it names it. At least one of the two must apply.
fn verify_file(target: &Utf8Path, ui: &Ui) -> Result<std::process::ExitCode> {
    let kind = crate::artifact::detect(target)?;
    let (dir, rel) = split_file(target)?;
    let listed = match xspack_manifest::verify_file(&dir, &rel, ui.progress()) {
        Ok(report) => Some(report),
        Err(
            xspack_manifest::Error::NotListed { .. } | xspack_manifest::Error::NoManifest { .. },
        ) if kind.is_some() => None,
        Err(e) => return Err(crate::exit::classify(e).into()),
    };
    let mut checked = Vec::new();
    let mut summary = None;
    if let Some(kind) = kind {
        summary = Some(crate::artifact::check(target, kind)?);
        checked.push(format!("{} {}", kind.name(), kind.checks()));
    }
    if let Some(report) = &listed {
        if !report.is_ok() {
            print_report(report, ui);
            return failed(target, report, ui);
        }
        checked.push(format!("sha256 in {}", report.sources.join(" and ")));
    }
    if ui.json {
        ui.result(json!({ "file": target, "checked": checked, "artifact": summary }));
    } else {
        ui.say(&format!("{target}: OK ({})", checked.join(", ")));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// For a single file: its directory, and its path relative to that directory.
fn split_file(target: &Utf8Path) -> Result<(Utf8PathBuf, RelPath)> {
    let name = target.file_name().with_context(|| format!("{target}: not a file name"))?;
    let dir = match target.parent() {
        Some(p) if !p.as_str().is_empty() => p.to_owned(),
        _ => Utf8PathBuf::from("."),
    };
    let rel = RelPath::new(name).map_err(|e| anyhow::anyhow!("{target}: {e}"))?;
    Ok((dir, rel))
}

fn print_report(report: &VerifyReport, ui: &Ui) {
    for (path, size) in &report.verified {
        ui.detail(&format!("OK {path} ({})", HumanBytes(*size)));
    }
    for Mismatch { path, problem } in &report.mismatched {
        ui.problem(&format!("{}: {problem}", report.dir.join(path.as_str())));
    }
    for path in &report.missing {
        ui.problem(&format!("{}: missing", report.dir.join(path.as_str())));
    }
    for name in &report.extra {
        ui.problem(&format!(
            "{}: not listed in {}",
            report.dir.join(name),
            report.sources.join(" or ")
        ));
    }
    if ui.json {
        if report.is_ok() {
            ui.result(to_json(report));
        }
    } else if report.is_ok() {
        ui.say(&format!(
            "{}: verified {} file{} ({}) against {}",
            report.dir,
            report.verified.len(),
            if report.verified.len() == 1 { "" } else { "s" },
            HumanBytes(report.verified_bytes()),
            report.sources.join(" and "),
        ));
    }
}

/// The one-line error: the target, counts, and the first few files by name.
fn summary_line(target: &Utf8Path, report: &VerifyReport) -> String {
    let mut named: Vec<String> = Vec::new();
    for m in &report.mismatched {
        let what = match m.problem {
            Problem::Digest { .. } => "sha256 mismatch",
            Problem::Size { .. } => "size mismatch",
            Problem::NotAFile => "not a regular file",
            Problem::Unreadable(_) => "unreadable",
            Problem::ListsDisagree(_) => "lists disagree",
            _ => "bad",
        };
        named.push(format!("{} ({what})", m.path));
    }
    named.extend(report.missing.iter().map(|p| format!("{p} (missing)")));
    named.extend(report.extra.iter().map(|p| format!("{p} (extra)")));
    let total = named.len();
    let mut line = format!("{target}: verification failed: ");
    if total > NAMED_IN_ERROR {
        named.truncate(NAMED_IN_ERROR);
        named.push(format!("and {} more", total - NAMED_IN_ERROR));
    }
    line.push_str(&named.join(", "));
    line
}

fn to_json(report: &VerifyReport) -> serde_json::Value {
    let mismatched: Vec<serde_json::Value> = report
        .mismatched
        .iter()
        .map(|m| {
            let mut v = json!({ "path": m.path, "problem": m.problem.to_string() });
            match &m.problem {
                Problem::Digest { expected, actual } => {
                    v["expected_sha256"] = json!(expected);
                    v["actual_sha256"] = json!(actual);
                }
                Problem::Size { expected, actual } => {
                    v["expected_size"] = json!(expected);
                    v["actual_size"] = json!(actual);
                }
                _ => {}
            }
            v
        })
        .collect();
    json!({
        "ok": report.is_ok(),
        "exit_code": if report.is_ok() { 0 } else { crate::exit::BAD_INPUT },
        "dir": report.dir,
        "sources": report.sources,
        "verified": report.verified.iter().map(|(p, s)| json!({"path": p, "size": s})).collect::<Vec<_>>(),
        "missing": report.missing,
        "extra": report.extra,
        "mismatched": mismatched,
    })
}
