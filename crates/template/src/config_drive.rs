//! The config drive (`docs/formats/config-drive.md` section "The config-2 drive") for a template:
//! the `OpenStack` config drive ([`xspack_iso::config_drive`]) holding the template's user data and
//! a `meta_data.json` with its UUID and name, as xscontainer gave the old CoreOS template's VMs.

use crate::{Error, TemplateSpec};

pub use xspack_iso::config_drive::CONFIG_DRIVE_LABEL;
/// The smallest drive; larger user data grows it in steps of the same size.
pub const CONFIG_DRIVE_SIZE: u64 = xspack_iso::config_drive::CONFIG_DRIVE_UNIT;

/// The raw config drive of `spec` holding `user_data`, stamped with `source_date_epoch`.
pub fn config_drive_image(
    spec: &TemplateSpec,
    user_data: &[u8],
    source_date_epoch: u64,
) -> Result<Vec<u8>, Error> {
    let meta = serde_json::json!({ "uuid": spec.uuid().to_string(), "name": spec.name() });
    let meta = format!("{meta}\n").into_bytes();
    let files = [("user_data", user_data), ("meta_data.json", &meta[..])];
    xspack_iso::config_drive::image(&files, source_date_epoch)
        .map_err(|e| Error::ConfigDrive(Box::new(e)))
}
