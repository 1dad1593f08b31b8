//! Whether a UEFI template's VM asks for Secure Boot (`docs/formats/templates.md` section
//! "Secure Boot").
//!
//! XenServer 8's own UEFI Linux templates say `platform:secureboot=auto`
//! (`guest-templates-json:json/base-linux-uefi.json`): at the VM's first start xapi makes it
//! `true` when the pool has Secure Boot certificates, `false` when it has none
//! (`ocaml/xapi/xapi_vm.ml`, `update_platform_secureboot`). That suits a template whose VM
//! installs from media (the installer brings the signed chain) and one whose embedded boot
//! disk boots through a signed loader. An embedded boot disk whose loader is unsigned would
//! not start on a pool with certificates, so its template says `false` instead.

use xspack_disk::FileSource;

use crate::spec::{BootFirmware, SecureBoot};
use crate::{Error, TemplateSpec};

/// What [`secure_boot`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureBootDecision {
    /// `platform:secureboot=auto` rather than `false` (always `false` for BIOS).
    pub enabled: bool,
    /// Why Secure Boot stays off although `secure-boot = "auto"` asked for it.
    pub note: Option<String>,
}

/// Decides Secure Boot for `spec`'s VM; with `embedded`, for the XVA, whose bootable disks
/// holding an `image` are checked for a signed loader
/// ([`xspack_disk::uefi_boot::secure_boot_ready`]). `secure-boot = "require"` and an unsigned
/// loader is an error.
pub fn secure_boot(spec: &TemplateSpec, embedded: bool) -> Result<SecureBootDecision, Error> {
    let off = SecureBootDecision { enabled: false, note: None };
    let t = &spec.template;
    if t.boot == BootFirmware::Bios || t.secure_boot == SecureBoot::Off {
        return Ok(off);
    }
    if embedded && spec.xva.embed_disks {
        for (i, disk) in spec.disks.iter().enumerate() {
            let Some(image) = disk.image.as_ref().filter(|_| spec.bootable(i)) else { continue };
            let path = spec.resolve(image);
            let disk_err =
                |e: xspack_disk::Error| Error::Disk { path: path.clone(), source: Box::new(e) };
            let mut source = FileSource::open(&path).map_err(disk_err)?;
            let Err(why) =
                xspack_disk::uefi_boot::secure_boot_ready(&mut source).map_err(disk_err)?
            else {
                continue;
            };
            let problem = format!("disk[{i}].image {image} cannot boot with Secure Boot: {why}");
            if t.secure_boot == SecureBoot::Require {
                return Err(Error::Spec {
                    at: spec.path.to_string(),
                    reason: format!("template.secure-boot = \"require\", but {problem}"),
                });
            }
            return Ok(SecureBootDecision {
                enabled: false,
                note: Some(format!(
                    "{problem}; the XVA says platform:secureboot=false (set secure-boot = \"off\" \
                     to say so)"
                )),
            });
        }
    }
    Ok(SecureBootDecision { enabled: true, note: None })
}
