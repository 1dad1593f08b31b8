//! The output directory every build command (`image`, `pack`, `template`) writes, and what it
//! prints when the directory is committed: one line per artifact, or one JSON result.

use anyhow::Result;
use camino::{Utf8Path, Utf8PathBuf};
use indicatif::HumanBytes;
use serde_json::{Value, json};
use xspack_manifest::{Guarded, Output, OutputDir, Tool};

use crate::exit::ClassifyResult as _;
use crate::ui::Ui;

/// Starts the output directory `dest` (its missing parents are made, and removed again if the
/// build fails). `force` replaces an existing directory on commit, but only a previous build
/// that holds neither the current directory, `$HOME`, nor any of `inputs` (see
/// `xspack_manifest::replace`); anything else is a usage error (exit 2, `crate::exit`).
pub fn open(
    dest: &Utf8Path,
    source_date_epoch: u64,
    force: bool,
    inputs: &[Utf8PathBuf],
) -> Result<OutputDir> {
    let tool = Tool { name: "xspack".into(), version: env!("CARGO_PKG_VERSION").into() };
    let guarded = inputs.iter().map(|p| Guarded::new(p, format!("the input {p}"))).collect();
    Ok(OutputDir::create_guarded(dest, tool, source_date_epoch, force, guarded).classified()?)
}

/// Commits `out`, then prints `shown` (a line each: path, size, sha256), or with `--json` the
/// result: the manifest's artifacts and inputs, and the fields of the command's `extra` object.
/// Returns the final directory.
pub fn commit(ui: &Ui, out: OutputDir, shown: &[Output], extra: Value) -> Result<Utf8PathBuf> {
    let (dest, manifest) = out.commit().classified()?;
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
