//! The output directory every build command (`image`, `pack`, `template`) writes, and what it
//! prints when the directory is committed: one line per artifact, or one JSON result.

use std::time::Instant;

use anyhow::{Context as _, Result};
use camino::{Utf8Path, Utf8PathBuf};
use indicatif::HumanBytes;
use serde_json::{Value, json};
use xspack_manifest::{Output, OutputDir, Tool};

use crate::ui::Ui;

/// Starts the output directory `dest`, creating its parent if needed; `force` replaces an
/// existing one on commit.
pub fn open(dest: &Utf8Path, source_date_epoch: u64, force: bool) -> Result<OutputDir> {
    if let Some(parent) = dest.parent().filter(|p| !p.as_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("{parent}: creating the output's parent"))?;
    }
    let tool = Tool { name: "xspack".into(), version: env!("CARGO_PKG_VERSION").into() };
    Ok(OutputDir::create(dest, tool, source_date_epoch, force)?)
}

/// Commits `out`, then prints `shown` (a line each: path, size, sha256), or with `--json` the
/// result: the manifest's artifacts and inputs, the fields of the command's `extra` object and the time taken.
/// Returns the final directory.
pub fn commit(
    ui: &Ui,
    out: OutputDir,
    shown: &[Output],
    extra: Value,
    start: Instant,
) -> Result<Utf8PathBuf> {
    let (dest, manifest) = out.commit()?;
    if ui.json {
        let mut result = json!({
            "ok": true,
            "exit_code": 0,
            "output_dir": dest,
            "artifacts": manifest.outputs,
            "inputs": manifest.inputs,
        });
        let obj = result.as_object_mut().expect("an object");
        if let Value::Object(extra) = extra {
            obj.extend(extra);
        }
        obj.insert("seconds".into(), start.elapsed().as_secs_f64().into());
        ui.result(result);
    } else {
        for o in shown {
            ui.say(&format!(
                "{}: {} ({})",
                dest.join(o.path.as_str()),
                HumanBytes(o.size),
                o.sha256
            ));
        }
    }
    Ok(dest)
}
