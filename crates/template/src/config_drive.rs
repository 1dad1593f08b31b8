//! The config drive of vm-formats.md section 4.5: the `OpenStack` layout that the old CoreOS
//! template's VMs got from xscontainer and XenCenter, holding `openstack/latest/user_data`.
//!
//! xscontainer wrote it as ISO 9660 with the label `config-2`. ISO 9660 volume identifiers
//! are d-characters only (`A-Z 0-9 _`, ECMA-119 7.4.1), which xspack-iso enforces, so the drive
//! is a FAT filesystem labelled `CONFIG-2` instead: the other form `OpenStack` defines for config
//! drives (vfat, `config-2`), which cloud-init and Ignition look for in upper case too. It
//! also holds `openstack/latest/meta_data.json`, which cloud-init's config-drive source
//! requires, with the template's UUID and name.
//!
//! The image is a whole number of 2 MiB units (the XVA disk rule) and is a pure function of
//! its inputs: the FAT serial number comes from the template's UUID and every timestamp is the
//! source date.

use xspack_disk::fat::{FatBuilder, FatOptions};
use xspack_io::NoProgress;
use xspack_xva::DISK_ALIGNMENT;

use crate::{Error, TemplateSpec};

/// The volume label.
pub const CONFIG_DRIVE_LABEL: &str = "CONFIG-2";
/// The smallest drive; larger user data grows it in steps of the same size.
pub const CONFIG_DRIVE_SIZE: u64 = DISK_ALIGNMENT;

fn fat_err(e: impl Into<xspack_disk::Error>) -> Error {
    Error::ConfigDrive(Box::new(e.into()))
}

fn builder(
    opts: FatOptions,
    user_data: &[u8],
    meta_data: &[u8],
) -> Result<FatBuilder<'static>, Error> {
    let mut fat = FatBuilder::new(opts);
    fat.add_file_bytes("openstack/latest/user_data", user_data.to_vec()).map_err(fat_err)?;
    fat.add_file_bytes("openstack/latest/meta_data.json", meta_data.to_vec()).map_err(fat_err)?;
    Ok(fat)
}

/// The raw config drive of `spec` holding `user_data`, stamped with `source_date_epoch`.
pub fn config_drive_image(
    spec: &TemplateSpec,
    user_data: &[u8],
    source_date_epoch: u64,
) -> Result<Vec<u8>, Error> {
    let uuid = spec.uuid();
    let meta = serde_json::json!({ "uuid": uuid.to_string(), "name": spec.name() });
    let meta = format!("{meta}\n").into_bytes();
    let serial = u32::from_le_bytes([uuid.0[0], uuid.0[1], uuid.0[2], uuid.0[3]]);
    let opts = FatOptions::new(serial, source_date_epoch).with_label(CONFIG_DRIVE_LABEL);
    // Lay out once at the smallest size FAT needs, then at the next multiple of 2 MiB.
    let smallest = builder(opts.clone(), user_data, &meta)?.build().map_err(fat_err)?.info().size;
    let size = smallest.div_ceil(CONFIG_DRIVE_SIZE).max(1) * CONFIG_DRIVE_SIZE;
    let image = builder(opts.with_size(size), user_data, &meta)?.build().map_err(fat_err)?;
    let bytes = image.write_to(Vec::new(), &NoProgress).map_err(fat_err)?;
    debug_assert_eq!(bytes.len() as u64, size);
    Ok(bytes)
}
