//! The config drive of vm-formats.md section 4.5: the `OpenStack` layout that the old CoreOS
//! template's VMs got from xscontainer, holding `openstack/latest/user_data`.
//!
//! It is made as xscontainer made it (`mkisofs -R -J -V config-2`): ISO 9660 with Rock Ridge
//! and Joliet and the volume label `config-2` written verbatim. The exact, lower-case label is
//! what `coreos-cloudinit`'s `user-configdrive` unit and Ignition look for under
//! `/dev/disk/by-label`, and cloud-init's config-drive source accepts it too. Beside the user data
//! it holds `openstack/latest/meta_data.json`, which cloud-init's source requires, with the
//! template's UUID and name.
//!
//! The image is zero-padded to a whole number of 2 MiB units (the XVA disk rule; xscontainer
//! padded its upload the same way) and is a pure function of its inputs: every timestamp is the
//! source date.

use std::io::Cursor;

use xspack_iso::{IsoBuilder, IsoOptions, Metadata, write_iso};
use xspack_xva::DISK_ALIGNMENT;

use crate::{Error, TemplateSpec};

/// The volume label.
pub const CONFIG_DRIVE_LABEL: &str = "config-2";
/// The smallest drive; larger user data grows it in steps of the same size.
pub const CONFIG_DRIVE_SIZE: u64 = DISK_ALIGNMENT;

fn iso_err(e: xspack_iso::Error) -> Error {
    Error::ConfigDrive(Box::new(e))
}

/// The raw config drive of `spec` holding `user_data`, stamped with `source_date_epoch`.
pub fn config_drive_image(
    spec: &TemplateSpec,
    user_data: &[u8],
    source_date_epoch: u64,
) -> Result<Vec<u8>, Error> {
    let meta = serde_json::json!({ "uuid": spec.uuid().to_string(), "name": spec.name() });
    let meta = format!("{meta}\n").into_bytes();
    let epoch = i64::try_from(source_date_epoch).unwrap_or(i64::MAX);
    let mut opts = IsoOptions::new(CONFIG_DRIVE_LABEL, epoch);
    opts.verbatim_volume_id = true;
    let mut iso = IsoBuilder::new(opts).map_err(iso_err)?;
    let dir = Metadata::new(0o755);
    iso.add_dir("openstack", dir).map_err(iso_err)?;
    iso.add_dir("openstack/latest", dir).map_err(iso_err)?;
    let file = Metadata::new(0o644);
    let files =
        [("openstack/latest/user_data", user_data), ("openstack/latest/meta_data.json", &meta)];
    let mut ids = Vec::new();
    for (path, bytes) in files {
        ids.push(iso.add_file(path, bytes.len() as u64, file).map_err(iso_err)?);
    }
    let (mut image, _) = write_iso(&iso, Vec::new(), |id| {
        let i = ids.iter().position(|&x| x == id).expect("a file we added");
        Ok(Cursor::new(files[i].1))
    })
    .map_err(iso_err)?;
    let size = (image.len() as u64).div_ceil(CONFIG_DRIVE_SIZE).max(1) * CONFIG_DRIVE_SIZE;
    image.resize(usize::try_from(size).expect("a config drive fits in memory"), 0);
    Ok(image)
}
