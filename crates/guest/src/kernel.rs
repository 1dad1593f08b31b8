//! The kernel and initramfs the guest boots: the image's own from `/boot`, or files from the
//! build host put into the image's `/boot`.
//!
//! Debian and Ubuntu kernel packages install `/boot/vmlinuz-VERSION`, and initramfs-tools writes
//! `/boot/initrd.img-VERSION` next to it. The newest version that has both is chosen; versions
//! compare as runs of digits (numerically) and other characters (bytewise), so `6.1.0-27-amd64` is
//! newer than `6.1.0-9-amd64`. The Debian kernels build every disk and filesystem driver as a
//! module (`docs/formats/boot.md` section "Kernel and initramfs"), so an initramfs is required.
//! pygrub loads each file whole and refuses files over 128 MiB in the deprivileged mode XenServer
//! uses (`xen-project/xen:tools/pygrub/src/pygrub` `downgrade_rlimits`; `docs/formats/boot.md`
//! section "Limits").

use std::cmp::Ordering;

use camino::Utf8Path;
use xspack_oci::{EntryMeta, MergedTree, NodeKind};

use crate::Error;
use crate::osrelease::Family;

/// Largest kernel or initrd pygrub extracts in deprivileged mode (`LIMIT_FSIZE`).
pub const PYGRUB_MAX_FILE: u64 = 128 << 20;

/// Name under `/boot` of a kernel taken from the build host.
const HOST_VERSION: &str = "xspack";

/// The kernel and initramfs, as absolute paths inside the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    /// The kernel, e.g. `/boot/vmlinuz-6.1.0-27-amd64`.
    pub kernel: String,
    /// The initramfs, e.g. `/boot/initrd.img-6.1.0-27-amd64`.
    pub initrd: String,
    /// The kernel version from the file name.
    pub version: String,
    /// Sizes in bytes of the kernel and the initramfs.
    pub sizes: (u64, u64),
}

/// Compares kernel versions: digit runs numerically, everything else bytewise.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    fn runs(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ra, rb) = (runs(a), runs(b));
    for ((da, sa), (db, sb)) in ra.iter().zip(&rb) {
        let ord = if *da && *db {
            let (ta, tb) = (sa.trim_start_matches('0'), sb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            sa.cmp(sb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    ra.len().cmp(&rb.len())
}

/// The size of the regular file at `path` (symlinks followed), if there is one.
fn file_size(tree: &mut MergedTree, path: &str) -> Option<u64> {
    let id = tree.resolve(path.as_bytes())?;
    match tree.node(id).kind {
        NodeKind::File { size, .. } => Some(size),
        _ => None,
    }
}

/// Finds the newest kernel with an initramfs in the image's `/boot`.
pub fn find(tree: &mut MergedTree, family: Family) -> Result<BootFiles, Error> {
    let mut versions: Vec<String> = Vec::new();
    if let Some(boot) = tree.resolve(b"boot") {
        for (name, _) in tree.children(boot) {
            if let Some(version) = name.strip_prefix(b"vmlinuz-")
                && let Ok(version) = std::str::from_utf8(version)
            {
                versions.push(version.to_owned());
            }
        }
    }
    versions.sort_by(|a, b| compare_versions(b, a));
    let dockerfile = |packages: &str| Family::dockerfile_line(packages);
    let mut without_initrd = None;
    for version in &versions {
        let kernel = format!("/boot/vmlinuz-{version}");
        let initrd = format!("/boot/initrd.img-{version}");
        let Some(kernel_size) = file_size(tree, &kernel) else { continue };
        match file_size(tree, &initrd) {
            Some(initrd_size) => {
                return Ok(BootFiles {
                    kernel,
                    initrd,
                    version: version.clone(),
                    sizes: (kernel_size, initrd_size),
                });
            }
            None => without_initrd = without_initrd.or(Some(kernel)),
        }
    }
    Err(match without_initrd {
        Some(kernel) => Error::NoKernel {
            problem: format!("the image has {kernel} but no initramfs for it in /boot"),
            dockerfile: dockerfile("initramfs-tools"),
        },
        None => Error::NoKernel {
            problem: "the image has no kernel (/boot/vmlinuz-*)".into(),
            dockerfile: dockerfile(family.kernel_packages()),
        },
    })
}

/// Puts a kernel and an initramfs from the build host into the image's `/boot`, replacing any
/// of the same name, and returns them as [`BootFiles`].
pub fn put_host_files(
    tree: &mut MergedTree,
    kernel: &Utf8Path,
    initrd: &Utf8Path,
    mtime: i64,
) -> Result<BootFiles, Error> {
    let read = |path: &Utf8Path| std::fs::read(path).map_err(|e| Error::io("reading", path, e));
    let (kernel_data, initrd_data) = (read(kernel)?, read(initrd)?);
    let sizes = (kernel_data.len() as u64, initrd_data.len() as u64);
    let meta = EntryMeta { mode: 0o644, mtime: (mtime, 0), ..EntryMeta::default() };
    let files = BootFiles {
        kernel: format!("/boot/vmlinuz-{HOST_VERSION}"),
        initrd: format!("/boot/initrd.img-{HOST_VERSION}"),
        version: HOST_VERSION.into(),
        sizes,
    };
    tree.put_file(files.kernel.as_bytes(), kernel_data, meta.clone())?;
    tree.put_file(files.initrd.as_bytes(), initrd_data, meta)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        let mut v = vec!["6.1.0-9-amd64", "6.1.0-27-amd64", "5.10.0-30-amd64", "6.1.0-27-cloud"];
        v.sort_by(|a, b| compare_versions(b, a));
        assert_eq!(v, ["6.1.0-27-cloud", "6.1.0-27-amd64", "6.1.0-9-amd64", "5.10.0-30-amd64"]);
        assert_eq!(compare_versions("6.8.0-45-generic", "6.8.0-045-generic"), Ordering::Equal);
        assert_eq!(compare_versions("6.8", "6.8.1"), Ordering::Less);
    }

    fn meta() -> EntryMeta {
        EntryMeta { mode: 0o644, ..EntryMeta::default() }
    }

    #[test]
    fn newest_kernel_with_an_initrd_wins() {
        let mut t = MergedTree::new();
        for name in ["vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64", "vmlinuz-6.1.0-27-amd64"]
        {
            t.put_file(format!("boot/{name}").as_bytes(), vec![1; 10], meta()).unwrap();
        }
        let found = find(&mut t, Family::Debian).unwrap();
        assert_eq!(found.kernel, "/boot/vmlinuz-6.1.0-9-amd64");
        assert_eq!(found.initrd, "/boot/initrd.img-6.1.0-9-amd64");
        t.put_file(b"boot/initrd.img-6.1.0-27-amd64", vec![2; 5], meta()).unwrap();
        let found = find(&mut t, Family::Debian).unwrap();
        assert_eq!((found.version.as_str(), found.sizes), ("6.1.0-27-amd64", (10, 5)));
    }

    #[test]
    fn missing_files_say_what_to_install() {
        let mut t = MergedTree::new();
        let err = find(&mut t, Family::Ubuntu).unwrap_err();
        let hint = err.hint().unwrap();
        assert!(hint.contains("linux-image-virtual"), "{hint}");
        assert!(!err.to_string().contains('\n'));
        t.put_file(b"boot/vmlinuz-1.0", vec![1], meta()).unwrap();
        let err = find(&mut t, Family::Debian).unwrap_err();
        assert!(err.to_string().contains("/boot/vmlinuz-1.0 but no initramfs"), "{err}");
        let hint = err.hint().unwrap();
        assert!(hint.contains("apt-get install -y initramfs-tools"), "{hint}");
    }
}
