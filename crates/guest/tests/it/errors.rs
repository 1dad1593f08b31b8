//! Images that cannot become an ubuntu-flavor guest give one clear line that says what to add.

use xspack_guest::ubuntu::UbuntuOptions;
use xspack_image::DiskFormat;
use xspack_io::Classify as _;

use crate::fixture::{DEBIAN_OS_RELEASE, synthetic};
use crate::{EPOCH, build, tempdir};

fn error_of(os_release: Option<&str>, kernel: bool) -> (String, Option<String>) {
    let (_t, dir) = tempdir();
    synthetic(os_release, kernel).write_oci_dir(&dir.join("layout"), "x").unwrap();
    let opts = UbuntuOptions::new("guest", vec![DiskFormat::Raw], EPOCH);
    let err = build(&format!("oci:{dir}/layout:x"), &dir, &opts).unwrap_err();
    assert!(err.is_bad_input(), "{err:?}");
    let text = err.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(!dir.join("out").exists(), "nothing published on error");
    (text, err.hint())
}

#[test]
fn non_debian_image_is_refused() {
    let alpine = "NAME=\"Alpine Linux\"\nID=alpine\nPRETTY_NAME=\"Alpine Linux v3.20\"\n";
    let (text, hint) = error_of(Some(alpine), true);
    assert_eq!(hint, None);
    assert_eq!(
        text,
        "the image is Alpine Linux v3.20 (ID=alpine), not Debian or Ubuntu based: the ubuntu \
         flavor needs an image whose /etc/os-release has ID or ID_LIKE debian or ubuntu"
    );
    let (text, _) = error_of(None, true);
    assert!(text.starts_with("the image has no /etc/os-release"), "{text}");
}

#[test]
fn missing_kernel_says_what_to_add_to_the_dockerfile() {
    let (text, hint) = error_of(Some(DEBIAN_OS_RELEASE), false);
    assert_eq!(text, "the image has no kernel (/boot/vmlinuz-*)");
    assert_eq!(
        hint.as_deref(),
        Some(
            "add `RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y \
             linux-image-amd64 initramfs-tools systemd-sysv` to the Dockerfile, or pass --kernel \
             FILE --initrd FILE"
        )
    );
    let ubuntu = "ID=ubuntu\nPRETTY_NAME=\"Ubuntu 24.04 LTS\"\nVERSION_ID=\"24.04\"\n";
    let (_, hint) = error_of(Some(ubuntu), false);
    let hint = hint.unwrap();
    assert!(hint.contains("apt-get install -y linux-image-virtual initramfs-tools"), "{hint}");
}
