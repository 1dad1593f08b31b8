//! The largest name, link target, extended attribute and tar extension header a layer may
//! hold, each refused when its header is read, before anything of that size is buffered.
//!
//! Every limit is what the Linux kernel or ext4 allows (a layer holding more could not be
//! extracted by `tar` or `docker` either), except the two caps on tar extension headers, which
//! are this reader's own and far above any legitimate use.

use std::borrow::Cow;

/// Longest path of an entry or hard link target, as recorded in the layer: 4,095 bytes.
///
/// The kernel's `PATH_MAX` (`include/uapi/linux/limits.h`) is 4,096 bytes and counts the
/// terminating NUL, so a path handed to a system call has at most 4,095 bytes: longer ones
/// fail with `ENAMETOOLONG`, and `tar` or `docker` could not extract such an entry either.
pub const MAX_PATH: usize = 4095;

/// Longest component (file name) of a path: 255 bytes.
///
/// The kernel's `NAME_MAX` (`include/uapi/linux/limits.h`), and ext4's `EXT4_NAME_LEN`
/// (`fs/ext4/ext4.h`): a directory entry stores the name's length in one byte.
pub const MAX_NAME: usize = 255;

/// Longest symlink target: 4,095 bytes.
///
/// `ext4_symlink()` (`fs/ext4/namei.c`) counts the target with its terminating NUL and fails
/// with `ENAMETOOLONG` when that is more than the block size (older kernels: `strlen + 1 >
/// s_blocksize`; newer ones through `fscrypt_prepare_symlink()`, `disk_link.len = len + 1`
/// against `max_len = s_blocksize`). With the 4 KiB blocks xspack writes, 4,095 bytes is the
/// most; the same bound as [`MAX_PATH`].
pub const MAX_SYMLINK: usize = 4095;

/// Longest extended attribute name, namespace prefix included: 255 bytes.
///
/// The kernel's `XATTR_NAME_MAX` (`include/uapi/linux/limits.h`); `setxattr(2)` refuses
/// longer names with `ERANGE`.
pub const MAX_XATTR_NAME: usize = 255;

/// Largest extended attribute value: 65,536 bytes.
///
/// The kernel's `XATTR_SIZE_MAX` (`include/uapi/linux/limits.h`); `setxattr(2)` refuses larger
/// values with `E2BIG`. (ext4 without `ea_inode` holds much less per inode, all attributes
/// together: the ext4 writer checks that total.)
pub const MAX_XATTR_VALUE: usize = 65_536;

/// Largest pax extended header (typeflag `x` or `g`) read: 1 MiB.
///
/// This reader's own cap, checked against the header's size field before its body is read.
/// What a layer's pax records carry (`path`, `linkpath`, `size`, `uid`/`gid`,
/// `uname`/`gname`, `mtime`/`atime`/`ctime`, `SCHILY.xattr.*`, `LIBARCHIVE.xattr.*`,
/// `SCHILY.dev*`/`ino`/`nlink`, `GNU.sparse.*`) is bounded by the limits above: a 4 KiB path
/// and link target, and a few attributes of at most 64 KiB each, fit many times over.
pub const MAX_PAX_HEADER: u64 = 1 << 20;

/// Largest GNU long name or long link body (typeflag `L` or `K`) read: 4,096 bytes.
///
/// The body is a name and its terminating NUL, so this is [`MAX_PATH`] and its NUL, checked
/// against the header's size field before the body is read.
pub const MAX_GNU_LONG_NAME: u64 = MAX_PATH as u64 + 1;

/// Most extension blocks of one GNU sparse file's map read: 2,048 (1 MiB).
///
/// This reader's own cap. An old-GNU sparse file (typeflag `S`) lists its data segments in its
/// header and in as many 512-byte extension blocks after it as it likes, 21 segments each; the
/// `tar` crate keeps two small records per segment before the data is read, so without a cap a
/// few MiB of compressed layer could make it hold gigabytes. 2,048 blocks describe 43,012
/// segments. (Container tools do not write sparse entries; GNU tar does with `--sparse`.)
pub const MAX_GNU_SPARSE_BLOCKS: u64 = 2048;

/// Lossy UTF-8 of untrusted bytes, cut to what one message quotes
/// ([`xspack_io::quote::truncated`]).
pub(crate) fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    match xspack_io::quote::truncated(&text) {
        Cow::Borrowed(_) => text.into_owned(),
        Cow::Owned(cut) => cut,
    }
}

/// Why a path cannot be written: too long as a whole, or a component too long. `what` names
/// it in the message: `path` or `hard link target`.
pub(crate) fn check_path(what: &str, path: &[u8]) -> Result<(), String> {
    if path.len() > MAX_PATH {
        return Err(format!(
            "a {what} of {} bytes, more than the {MAX_PATH} Linux allows (PATH_MAX less its NUL)",
            path.len()
        ));
    }
    let comps: Vec<&[u8]> = path.split(|&b| b == b'/').filter(|c| !c.is_empty()).collect();
    let whiteout = what == "path";
    match long_component(&comps, whiteout) {
        Some(len) => Err(long_component_message(what, len)),
        None => Ok(()),
    }
}

/// The length of the first component of `comps` longer than [`MAX_NAME`]. With `whiteout`,
/// a last component `.wh.<name>` may have 4 bytes more: it names `<name>`, and is never
/// written itself (the OCI image spec's whiteouts).
pub(crate) fn long_component(comps: &[&[u8]], whiteout: bool) -> Option<usize> {
    let last = comps.len().saturating_sub(1);
    comps.iter().enumerate().find_map(|(i, c)| {
        let limit =
            if whiteout && i == last && c.starts_with(b".wh.") { MAX_NAME + 4 } else { MAX_NAME };
        (c.len() > limit).then_some(c.len())
    })
}

/// The message for a component of `len` bytes, more than [`MAX_NAME`], in a `what`.
pub(crate) fn long_component_message(what: &str, len: usize) -> String {
    format!("a {what} component of {len} bytes, more than ext4's {MAX_NAME}")
}

/// Why a symlink target cannot be written.
pub(crate) fn check_symlink(target: &[u8]) -> Result<(), String> {
    if target.len() > MAX_SYMLINK {
        return Err(format!(
            "a symlink target of {} bytes, more than the {MAX_SYMLINK} ext4 allows (a 4 KiB \
             block less its NUL)",
            target.len()
        ));
    }
    Ok(())
}

/// Why an extended attribute cannot be set.
pub(crate) fn check_xattr(name: &[u8], value: &[u8]) -> Result<(), String> {
    if name.is_empty() {
        return Err("an extended attribute with an empty name".into());
    }
    if name.len() > MAX_XATTR_NAME {
        return Err(format!(
            "an extended attribute name of {} bytes ({:?}), more than the kernel's \
             {MAX_XATTR_NAME} (XATTR_NAME_MAX)",
            name.len(),
            shown(name)
        ));
    }
    if value.len() > MAX_XATTR_VALUE {
        return Err(format!(
            "extended attribute {:?}: a value of {} bytes, more than the kernel's \
             {MAX_XATTR_VALUE} (XATTR_SIZE_MAX)",
            shown(name),
            value.len()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_at_and_past_the_edge() {
        let component = |n| vec![b'c'; n];
        let path = |n: usize| {
            let mut p = Vec::new();
            while p.len() < n {
                p.extend_from_slice(&component(200.min(n - p.len())));
                if p.len() < n {
                    p.push(b'/');
                }
            }
            p
        };
        assert_eq!(path(MAX_PATH).len(), MAX_PATH);
        check_path("path", &path(MAX_PATH)).unwrap();
        let err = check_path("path", &path(MAX_PATH + 1)).unwrap_err();
        assert!(err.contains("a path of 4096 bytes, more than the 4095 Linux allows"), "{err}");
        check_path("path", &component(MAX_NAME)).unwrap();
        let err = check_path("hard link target", &component(MAX_NAME + 1)).unwrap_err();
        assert_eq!(err, "a hard link target component of 256 bytes, more than ext4's 255");
        check_symlink(&component(MAX_SYMLINK)).unwrap();
        assert!(check_symlink(&component(MAX_SYMLINK + 1)).unwrap_err().contains("4096 bytes"));
        check_xattr(&component(MAX_XATTR_NAME), &component(MAX_XATTR_VALUE)).unwrap();
        let err = check_xattr(&component(MAX_XATTR_NAME + 1), b"").unwrap_err();
        assert!(err.contains("name of 256 bytes"), "{err}");
        // The name is quoted, cut to 200 characters.
        assert!(err.contains(&format!("\"{}…\"", "c".repeat(200))), "{err}");
        let err = check_xattr(b"user.x", &component(MAX_XATTR_VALUE + 1)).unwrap_err();
        assert!(err.contains("a value of 65537 bytes, more than the kernel's 65536"), "{err}");
        assert!(check_xattr(b"", b"").is_err());
        // A whiteout names an entry of up to 255 bytes; it is never written itself.
        let whiteout = [b"dir/.wh.", &component(MAX_NAME)[..]].concat();
        check_path("path", &whiteout).unwrap();
        check_path("path", &[&whiteout[..], b"/"].concat()).unwrap();
        let err = check_path("path", &[&whiteout[..], b"x"].concat()).unwrap_err();
        assert!(err.contains("component of 260 bytes"), "{err}");
        let err = check_path("path", &[&whiteout[..], b"/x"].concat()).unwrap_err();
        assert!(err.contains("component of 259 bytes"), "{err}");
    }
}
