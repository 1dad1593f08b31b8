//! Integration tests of xspack-template: golden JSON and `ova.xml` for the shipped templates,
//! the validator on the rendered files, the template RPM read back by the rpm crate's reader,
//! and template XVAs read back by xspack-xva's strict reader.

mod golden;
mod outputs;

use camino::{Utf8Path, Utf8PathBuf};
use xspack_template::TemplateSpec;

/// The timestamp every golden file is built with.
pub const EPOCH: u64 = 1_700_000_000;

/// The repository's `templates/` directory.
pub fn templates_dir() -> Utf8PathBuf {
    Utf8PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates"))
}

/// The shipped template definitions, by file stem.
pub const SHIPPED: &[&str] = &["coreos-container-host", "ubuntu-container-host", "debian-guest"];

/// Loads `templates/<stem>.toml`.
pub fn shipped(stem: &str) -> TemplateSpec {
    TemplateSpec::load(&templates_dir().join(format!("{stem}.toml"))).unwrap()
}

/// A temporary directory with a UTF-8 path.
pub fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

/// Writes `text` as `dir/name` and loads it as a template definition.
pub fn spec_in(dir: &Utf8Path, name: &str, text: &str) -> TemplateSpec {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    TemplateSpec::load(&path).unwrap()
}
