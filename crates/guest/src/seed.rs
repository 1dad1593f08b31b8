//! The cloud-init `NoCloud` seed drive: a FAT filesystem labelled `cidata` holding `user-data`,
//! `meta-data` and optionally `network-config` (cloud-init documentation, `NoCloud` datasource;
//! `docs/formats/config-drive.md` section "The NoCloud seed").
//!
//! FAT stores labels in upper case (`CIDATA`); cloud-init's `NoCloud` looks for the label in upper
//! and lower case, so both `blkid -t LABEL=CIDATA` and the documented `cidata` find it. The image
//! is 2 MiB (FAT12), the XenServer VDI unit, and attaches as a second disk. The guest build
//! points cloud-init at `NoCloud` ([`crate::fixups`]); this drive carries the data.

use std::io::Write;

use sha2::{Digest as _, Sha256};
use xspack_disk::fat::{FatBuilder, FatImage, FatOptions, FatType};

use crate::Error;

/// Size of the drive: 2 MiB, one VHD block and the XenServer VDI unit.
pub const SEED_SIZE: u64 = 2 << 20;
/// The volume label `NoCloud` looks for.
pub const SEED_LABEL: &str = "cidata";

/// What goes on the seed drive.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SeedOptions {
    /// `instance-id` of `meta-data`. cloud-init runs its per-instance modules again when it
    /// changes.
    pub instance_id: String,
    /// `local-hostname` of `meta-data`, if any.
    pub hostname: Option<String>,
    /// The `user-data` file, verbatim (`#cloud-config` YAML, a script, or a MIME multipart).
    pub user_data: Vec<u8>,
    /// A `network-config` file (network config version 1 or 2), if any.
    pub network_config: Option<Vec<u8>>,
    /// Timestamp of the files (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
}

impl SeedOptions {
    /// A seed with `user_data` for instance `instance_id`.
    pub fn new(instance_id: impl Into<String>, user_data: Vec<u8>, source_date_epoch: u64) -> Self {
        SeedOptions {
            instance_id: instance_id.into(),
            user_data,
            source_date_epoch,
            ..SeedOptions::default()
        }
    }
}

/// Quotes a YAML scalar in double quotes.
fn yaml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `meta-data` document.
pub fn meta_data(opts: &SeedOptions) -> String {
    let mut text = format!("instance-id: {}\n", yaml_string(&opts.instance_id));
    if let Some(host) = &opts.hostname {
        text.push_str(&format!("local-hostname: {}\n", yaml_string(host)));
    }
    text
}

/// Lays out the seed drive.
pub fn seed_image(opts: &SeedOptions) -> Result<FatImage<'static>, Error> {
    if opts.instance_id.is_empty() {
        return Err(Error::Options("the seed's instance-id must not be empty".into()));
    }
    let meta = meta_data(opts).into_bytes();
    let mut h = Sha256::new();
    for part in [&meta, &opts.user_data, opts.network_config.as_deref().unwrap_or_default()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    let volume_id = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
    let fat_opts = FatOptions::new(volume_id, opts.source_date_epoch)
        .with_size(SEED_SIZE)
        .with_fat_type(FatType::Fat12)
        .with_label(SEED_LABEL);
    let mut fat = FatBuilder::new(fat_opts);
    let fat_err = xspack_disk::Error::from;
    fat.add_file_bytes("meta-data", meta).map_err(fat_err)?;
    fat.add_file_bytes("user-data", opts.user_data.clone()).map_err(fat_err)?;
    if let Some(net) = &opts.network_config {
        fat.add_file_bytes("network-config", net.clone()).map_err(fat_err)?;
    }
    Ok(fat.build()?)
}

/// Writes the seed drive (a raw 2 MiB disk image) to `out`.
pub fn write_seed<W: Write>(opts: &SeedOptions, out: W) -> Result<W, Error> {
    Ok(seed_image(opts)?.write_to(out, &xspack_io::NoProgress)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_data_is_quoted_yaml() {
        let mut opts = SeedOptions::new("i-1 \"x\"", b"#cloud-config\n".to_vec(), 0);
        opts.hostname = Some("guest".into());
        assert_eq!(meta_data(&opts), "instance-id: \"i-1 \\\"x\\\"\"\nlocal-hostname: \"guest\"\n");
        let image = write_seed(&opts, Vec::new()).unwrap();
        assert_eq!(image.len() as u64, SEED_SIZE);
        assert_eq!(&image[43..54], b"CIDATA     ", "BS_VolLab of FAT12");
        assert!(seed_image(&SeedOptions::default()).is_err());
    }
}
