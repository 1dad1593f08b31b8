//! The output directory every build command (`image`, `pack`, `template`) writes, and what it
//! prints when the directory is committed: one line per artifact, or one JSON result.

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
/// result: the manifest's artifacts and inputs, and the fields of the command's `extra` object.
/// Returns the final directory.
pub fn commit(ui: &Ui, out: OutputDir, shown: &[Output], extra: Value) -> Result<Utf8PathBuf> {
    let (dest, manifest) = out.commit()?;
    if ui.json {
        let mut result = json!({
            "output_dir": dest,
            "artifacts": manifest.outputs,
            "inputs": manifest.inputs,
        });
        let obj = result.as_object_mut().expect("an object");
        if let Value::Object(extra) = extra {
            obj.extend(extra);
        }
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

/// An artifact entry of a JSON result (path, size, sha256) for a file written outside an
/// [`OutputDir`]: `path` relative to the command's output directory.
pub fn artifact(path: &str, bytes: &[u8]) -> Value {
    json!({
        "path": path,
        "size": bytes.len(),
        "sha256": xspack_io::Sha256Digest::of_bytes(bytes),
    })
}
