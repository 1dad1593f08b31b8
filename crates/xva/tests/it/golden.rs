//! Golden `ova.xml` files in `tests/golden/xva/`, refreshed with `EXPECTORATE=overwrite`.

use xspack_xva::{BootMode, DISK_ALIGNMENT, VdiType, VmSpec};

fn golden(name: &str) -> String {
    format!("{}/../../tests/golden/xva/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A BIOS VM: one bootable system disk, an empty CD drive.
fn bios_vm() -> VmSpec {
    let mut spec = crate::spec("debian-12 & <friends>", &[10 << 30]);
    spec.description = "Built by xspack\nfrom docker.io/library/debian:12".into();
    spec.memory.static_min = 512 << 20;
    spec.memory.dynamic_min = 1 << 30;
    spec.vcpus_max = 4;
    spec.vcpus_at_startup = 2;
    spec
}

/// A UEFI Secure Boot template with a system disk and a data disk, no CD drive.
fn uefi_template() -> VmSpec {
    let mut spec = crate::spec("CoreOS-like template", &[8 << 30, 64 * DISK_ALIGNMENT]);
    spec.is_template = true;
    spec.boot = BootMode::UefiSecureBoot;
    spec.cd_drive = None;
    spec.disks[1].vdi_type = VdiType::User;
    spec.disks[1].read_only = true;
    spec.platform.insert("device_id".into(), "0001".into());
    spec.other_config.insert("linux_template".into(), "true".into());
    spec.recommendations =
        "<restrictions><restriction field=\"vcpus-max\" max=\"16\"/></restrictions>".into();
    spec
}

#[test]
fn bios_vm_ova_xml() {
    expectorate::assert_contents(golden("bios-vm.ova.xml"), &bios_vm().to_ova_xml().unwrap());
}

#[test]
fn uefi_template_ova_xml() {
    expectorate::assert_contents(
        golden("uefi-template.ova.xml"),
        &uefi_template().to_ova_xml().unwrap(),
    );
}
