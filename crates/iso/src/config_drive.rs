//! The `OpenStack` config drive: an ISO 9660 image labelled `config-2` holding
//! `openstack/latest/*` files, as `xenserver/xscontainer` attaches one to a CoreOS VM.
//!
//! It is made as xscontainer made it (`mkisofs -R -J -V config-2`): Rock Ridge and Joliet, and
//! the volume label `config-2` written verbatim. The exact, lower-case label is what Ignition's
//! `openstack` provider, Afterburn, `coreos-cloudinit` and cloud-init's `ConfigDrive` source look
//! for under `/dev/disk/by-label`. Callers supply the files, typically `user_data` and
//! `meta_data.json` (cloud-init's source requires the latter).
//!
//! The image is zero-padded to a whole number of [`CONFIG_DRIVE_UNIT`]s (the XVA disk and
//! XenServer VDI unit; xscontainer padded its upload the same way). It is a pure function of its
//! inputs: every timestamp is the source date.

use std::io::Cursor;

use crate::{Error, IsoBuilder, IsoOptions, Metadata, write_iso};

/// The volume label.
pub const CONFIG_DRIVE_LABEL: &str = "config-2";
/// The drive grows in steps of 2 MiB; the smallest drive is one step.
pub const CONFIG_DRIVE_UNIT: u64 = 2 << 20;
/// The directory every file goes into.
pub const CONFIG_DRIVE_DIR: &str = "openstack/latest";

/// The raw config drive holding `files` (names inside [`CONFIG_DRIVE_DIR`], with their bytes),
/// every date `source_date_epoch`. The drive is small and built in memory.
///
/// ```
/// use xspack_iso::{IsoReader, config_drive};
///
/// let image = config_drive::image(&[("user_data", b"{}".as_slice())], 0)?;
/// assert_eq!(image.len() as u64, config_drive::CONFIG_DRIVE_UNIT);
/// let mut reader = IsoReader::new(std::io::Cursor::new(image))?;
/// assert_eq!(reader.volume().volume_id, "config-2");
/// assert!(reader.lookup("openstack/latest/user_data").is_ok());
/// # Ok::<(), xspack_iso::Error>(())
/// ```
pub fn image(files: &[(&str, &[u8])], source_date_epoch: u64) -> Result<Vec<u8>, Error> {
    let epoch = i64::try_from(source_date_epoch).unwrap_or(i64::MAX);
    let mut opts = IsoOptions::new(CONFIG_DRIVE_LABEL, epoch);
    opts.verbatim_volume_id = true;
    let mut iso = IsoBuilder::new(opts)?;
    let dir = Metadata::new(0o755);
    iso.add_dir("openstack", dir)?;
    iso.add_dir(CONFIG_DRIVE_DIR, dir)?;
    let mut ids = Vec::new();
    for (name, bytes) in files {
        let path = format!("{CONFIG_DRIVE_DIR}/{name}");
        ids.push(iso.add_file(&path, bytes.len() as u64, Metadata::new(0o644))?);
    }
    let (mut image, _) = write_iso(&iso, Vec::new(), |id| {
        let i = ids.iter().position(|&x| x == id).expect("a file we added");
        Ok(Cursor::new(files[i].1))
    })?;
    let size = (image.len() as u64).div_ceil(CONFIG_DRIVE_UNIT).max(1) * CONFIG_DRIVE_UNIT;
    image.resize(usize::try_from(size).expect("a config drive fits in memory"), 0);
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IsoReader;
    use std::io::Read as _;

    #[test]
    fn large_files_grow_the_drive_by_whole_units() {
        let big = vec![7u8; 3 << 20];
        let image = image(&[("user_data", &big), ("meta_data.json", b"{}\n")], 1).unwrap();
        assert_eq!(image.len() as u64, 2 * CONFIG_DRIVE_UNIT);
        let mut reader = IsoReader::new(Cursor::new(image)).unwrap();
        let entry = reader.lookup("openstack/latest/user_data").unwrap();
        let mut back = Vec::new();
        reader.open_file(&entry).unwrap().read_to_end(&mut back).unwrap();
        assert!(back == big);
    }

    #[test]
    fn the_same_files_give_the_same_bytes() {
        let a = image(&[("user_data", b"x")], 5).unwrap();
        assert!(a == image(&[("user_data", b"x")], 5).unwrap());
        assert!(a != image(&[("user_data", b"y")], 5).unwrap());
        assert!(image(&[("../escape", b"x")], 5).is_err());
    }
}
