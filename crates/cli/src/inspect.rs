//! `xspack inspect <DIR | FILE>`: show what a build directory holds.

use anyhow::{Context as _, Result, bail};
use camino::Utf8PathBuf;
use indicatif::HumanBytes;
use serde_json::json;
use xspack_manifest::{MANIFEST_NAME, Manifest, SHA256SUMS_NAME, Sha256Sums};

use crate::cli::InspectArgs;
use crate::exit::ClassifyResult as _;
use crate::ui::Ui;

/// What was found to inspect.
enum Found {
    Manifest(Utf8PathBuf, Manifest),
    Sums(Utf8PathBuf, Sha256Sums),
    Artifact(Utf8PathBuf, serde_json::Value),
}

/// Runs `xspack inspect`.
pub fn run(args: InspectArgs, ui: &Ui) -> Result<std::process::ExitCode> {
    let target = args.target;
    let meta = std::fs::metadata(&target).with_context(|| format!("{target}: cannot open"))?;
    let found = if meta.is_dir() {
        let manifest = target.join(MANIFEST_NAME);
        let sums = target.join(SHA256SUMS_NAME);
        if manifest.is_file() {
            Found::Manifest(manifest.clone(), Manifest::read_file(&manifest).classified()?)
        } else if sums.is_file() {
            Found::Sums(sums.clone(), Sha256Sums::read_file(&sums).classified()?)
        } else {
            return Err(xspack_manifest::Error::NoManifest { dir: target }.into());
        }
    } else {
        match target.file_name() {
            Some(MANIFEST_NAME) => {
                Found::Manifest(target.clone(), Manifest::read_file(&target).classified()?)
            }
            Some(SHA256SUMS_NAME) => {
                Found::Sums(target.clone(), Sha256Sums::read_file(&target).classified()?)
            }
            _ => match crate::artifact::detect(&target)? {
                Some(kind) => {
                    Found::Artifact(target.clone(), crate::artifact::check(&target, kind)?)
                }
                None => bail!(
                    "{target}: not something inspect reads (a build directory, {MANIFEST_NAME}, {SHA256SUMS_NAME}, or an ISO, VHD, qcow2 or XVA file)"
                ),
            },
        }
    };
    if ui.json {
        ui.result(to_json(&found));
    } else {
        for line in render(&found) {
            ui.say(&line);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn to_json(found: &Found) -> serde_json::Value {
    match found {
        Found::Manifest(path, m) => json!({ "path": path, "manifest": m }),
        Found::Artifact(path, summary) => json!({ "path": path, "artifact": summary }),
        Found::Sums(path, sums) => json!({
            "path": path,
            "sha256sums": sums.iter().map(|(p, d)| json!({"path": p, "sha256": d})).collect::<Vec<_>>(),
        }),
    }
}

fn render(found: &Found) -> Vec<String> {
    let mut lines = Vec::new();
    match found {
        Found::Manifest(path, m) => {
            lines.push(format!("{path}"));
            lines.push(format!("  tool               {} {}", m.tool.name, m.tool.version));
            lines.push(format!(
                "  source date epoch  {} ({})",
                m.source_date_epoch,
                format_utc(m.source_date_epoch)
            ));
            lines.push(format!("  inputs             {}", m.inputs.len()));
            for input in &m.inputs {
                lines.push(format!(
                    "    {:<10} {}  {}  {}",
                    input.kind,
                    input.name,
                    HumanBytes(input.size),
                    input.digest
                ));
            }
            if let Some(boot) = m.boot {
                let firmware = match boot.firmware {
                    xspack_manifest::Firmware::Bios => "BIOS",
                    xspack_manifest::Firmware::Uefi => "UEFI",
                };
                let chain = match boot.chain {
                    xspack_manifest::BootChain::Grub => "GRUB linked by xspack",
                    xspack_manifest::BootChain::Shim => "the image's signed shim, GRUB and kernel",
                };
                let secure = if boot.secure_boot { "Secure Boot-ready" } else { "Secure Boot off" };
                lines.push(format!("  boot               {firmware}, {chain} ({secure})"));
            }
            let total: u64 = m.outputs.iter().map(|o| o.size).sum();
            lines.push(format!("  outputs            {} ({})", m.outputs.len(), HumanBytes(total)));
            for out in &m.outputs {
                lines.push(format!("    {}  {}  {}", out.sha256, HumanBytes(out.size), out.path));
            }
        }
        Found::Artifact(path, summary) => {
            lines.push(format!("{path}"));
            lines.extend(crate::artifact::render(summary).into_iter().map(|l| format!("  {l}")));
        }
        Found::Sums(path, sums) => {
            lines.push(format!("{path}"));
            lines.push(format!("  files              {}", sums.len()));
            for (p, d) in sums.iter() {
                lines.push(format!("    {d}  {p}"));
            }
        }
    }
    lines
}

/// `secs` since the Unix epoch as an RFC 3339 UTC timestamp.
fn format_utc(secs: u64) -> String {
    xspack_io::civil::civil_from_unix(i64::try_from(secs).unwrap_or(i64::MAX)).rfc3339()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(4_102_444_799), "2099-12-31T23:59:59Z");
        // Far-future values must not overflow or panic.
        assert!(format_utc(u64::MAX).starts_with("292277026596-"));
    }
}
