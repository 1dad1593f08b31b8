//! Extended attributes, in the inode body or in one attribute block.
//!
//! Format: e2fsprogs `lib/ext2fs/ext2_ext_attr.h` and the kernel's `fs/ext4/xattr.{c,h}`:
//! a 4-byte magic (in the inode) or a 32-byte header (in a block), then entries of
//! `{name_len u8, name_index u8, value_offs u16, value_inum u32, value_size u32, hash u32}`
//! plus the name suffix padded to 4 bytes, ended by four zero bytes; values are packed from the
//! end of the area, each padded to 4 bytes. Block entries are sorted by (index, name length,
//! name) because the kernel's lookup stops early in sorted lists.
//!
//! POSIX ACLs arrive in the VFS `posix_acl_xattr` form (version 2, 8-byte entries) and are
//! stored in ext4's compact form (version 1, 4-byte entries for the `*_OBJ`, mask and other
//! tags), as `fs/ext4/acl.c` does.

use crate::Xattr;

/// Magic number of both inode-body and block attribute areas.
pub const XATTR_MAGIC: u32 = 0xEA02_0000;
/// Bytes of the inode body available for attributes: 256 − 128 − 32 (extra fields).
pub const IN_INODE_SPACE: usize = 96;
const ENTRY_HEADER: usize = 16;
const BLOCK_HEADER: usize = 32;

/// An attribute ready to encode.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    index: u8,
    suffix: Vec<u8>,
    value: Vec<u8>,
}

/// Why an attribute cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XattrError {
    /// The attribute with this full name (lossily decoded) cannot be stored, for this reason.
    Invalid(String, String),
    /// The attributes need this many bytes, more than one block holds.
    TooLarge(usize),
}

/// Where an inode's attributes go.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EncodedXattrs {
    /// Bytes for the inode body after the extra fields (empty: no attributes in the inode).
    pub in_inode: Vec<u8>,
    /// A 4096-byte attribute block, when they do not fit in the inode.
    pub block: Option<Vec<u8>>,
}

/// The name index and the rest of the name (`fs/ext4/xattr.c`, `ext4_xattr_handler_map`): the
/// two POSIX ACLs by their whole names, the other namespaces by prefix.
fn split_name(name: &[u8]) -> Option<(u8, &[u8])> {
    const PREFIXES: [(&[u8], u8); 4] =
        [(b"user.", 1), (b"trusted.", 4), (b"security.", 6), (b"system.", 7)];
    match name {
        b"system.posix_acl_access" => Some((2, b"")),
        b"system.posix_acl_default" => Some((3, b"")),
        _ => PREFIXES
            .iter()
            .find_map(|(prefix, index)| name.strip_prefix(*prefix).map(|rest| (*index, rest))),
    }
}

/// Converts a VFS ACL (version 2) to ext4's on-disk ACL (version 1).
fn acl_to_disk(value: &[u8]) -> Result<Vec<u8>, &'static str> {
    let bad = |why| why;
    if value.len() < 4 || !(value.len() - 4).is_multiple_of(8) {
        return Err(bad("length is not 4 + 8n"));
    }
    if value[..4] != 2u32.to_le_bytes() {
        return Err(bad("not a version 2 ACL"));
    }
    let mut out = 1u32.to_le_bytes().to_vec();
    for e in value[4..].chunks_exact(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        out.extend_from_slice(&e[..4]);
        match tag {
            // ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER: short form.
            0x01 | 0x04 | 0x10 | 0x20 => {}
            // ACL_USER, ACL_GROUP: with the id.
            0x02 | 0x08 => out.extend_from_slice(&e[4..8]),
            _ => return Err(bad("unknown ACL tag")),
        }
    }
    Ok(out)
}

fn entries(xattrs: &[Xattr]) -> Result<Vec<Entry>, XattrError> {
    let mut out = Vec::with_capacity(xattrs.len());
    for x in xattrs {
        let invalid = |why: &str| {
            XattrError::Invalid(String::from_utf8_lossy(&x.name).into_owned(), why.into())
        };
        let (index, suffix) =
            split_name(&x.name).ok_or_else(|| invalid("namespace not supported by ext4"))?;
        // XATTR_NAME_MAX: a longer name could be neither read nor removed in the guest.
        if x.name.len() > crate::limits::XATTR_NAME_MAX {
            return Err(invalid(&format!(
                "name of {} bytes; at most {} are allowed",
                x.name.len(),
                crate::limits::XATTR_NAME_MAX
            )));
        }
        // The VFS refuses a prefixed name with nothing after the prefix (`xattr_resolve_name`).
        if suffix.is_empty() && index != 2 && index != 3 {
            return Err(invalid("nothing follows the namespace prefix"));
        }
        let value = if index == 2 || index == 3 {
            acl_to_disk(&x.value).map_err(|why| invalid(&format!("POSIX ACL: {why}")))?
        } else {
            x.value.clone()
        };
        out.push(Entry { index, suffix: suffix.to_vec(), value });
    }
    // Sorted as the kernel expects in blocks: index, then name length, then name.
    out.sort_by(|a, b| {
        (a.index, a.suffix.len(), &a.suffix).cmp(&(b.index, b.suffix.len(), &b.suffix))
    });
    if let Some(pair) =
        out.windows(2).find(|w| (w[0].index, &w[0].suffix) == (w[1].index, &w[1].suffix))
    {
        let name = xattrs
            .iter()
            .find(|x| split_name(&x.name) == Some((pair[0].index, &pair[0].suffix[..])))
            .map_or_else(String::new, |x| String::from_utf8_lossy(&x.name).into_owned());
        return Err(XattrError::Invalid(name, "given twice".into()));
    }
    Ok(out)
}

const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// The kernel's `ext4_xattr_hash_entry`, over the name and the value as little-endian words.
fn entry_hash(e: &Entry) -> u32 {
    let mut hash: u32 = 0;
    for &c in &e.suffix {
        hash = (hash << 5) ^ (hash >> 27) ^ u32::from(c);
    }
    let mut padded = e.value.clone();
    padded.resize(pad4(padded.len()), 0);
    for w in padded.chunks_exact(4) {
        hash = (hash << 16) ^ (hash >> 16) ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
    }
    hash
}

/// Entries area size (including the 4-byte terminator) and values area size.
fn sizes(entries: &[Entry]) -> (usize, usize) {
    let names: usize = entries.iter().map(|e| ENTRY_HEADER + pad4(e.suffix.len())).sum();
    let values: usize = entries.iter().map(|e| pad4(e.value.len())).sum();
    (names + 4, values)
}

/// Writes entries at `area[start..]` and values downward from `area.len()`. Value offsets are
/// relative to `base` (the first entry in the inode, the block start in a block).
fn pack(area: &mut [u8], start: usize, base: usize, entries: &[Entry]) -> Vec<u32> {
    let mut at = start;
    let mut value_end = area.len();
    let mut hashes = Vec::with_capacity(entries.len());
    for e in entries {
        let vlen = pad4(e.value.len());
        value_end -= vlen;
        area[value_end..value_end + e.value.len()].copy_from_slice(&e.value);
        let hash = entry_hash(e);
        hashes.push(hash);
        area[at] = u8::try_from(e.suffix.len()).expect("names are at most 255 bytes");
        area[at + 1] = e.index;
        let offs = if e.value.is_empty() { 0 } else { value_end - base };
        area[at + 2..at + 4]
            .copy_from_slice(&u16::try_from(offs).expect("offset in a block").to_le_bytes());
        area[at + 4..at + 8].copy_from_slice(&0u32.to_le_bytes());
        area[at + 8..at + 12].copy_from_slice(
            &u32::try_from(e.value.len()).expect("value in a block").to_le_bytes(),
        );
        area[at + 12..at + 16].copy_from_slice(&hash.to_le_bytes());
        area[at + 16..at + 16 + e.suffix.len()].copy_from_slice(&e.suffix);
        at += ENTRY_HEADER + pad4(e.suffix.len());
    }
    hashes
}

/// Encodes `xattrs` for one inode: in the inode body if they fit, else in a block.
pub fn encode(xattrs: &[Xattr], block_size: usize) -> Result<EncodedXattrs, XattrError> {
    if xattrs.is_empty() {
        return Ok(EncodedXattrs::default());
    }
    let entries = entries(xattrs)?;
    let (names, values) = sizes(&entries);
    if 4 + names + values <= IN_INODE_SPACE {
        let mut area = vec![0u8; IN_INODE_SPACE];
        area[..4].copy_from_slice(&XATTR_MAGIC.to_le_bytes());
        pack(&mut area, 4, 4, &entries);
        return Ok(EncodedXattrs { in_inode: area, block: None });
    }
    if BLOCK_HEADER + names + values > block_size {
        return Err(XattrError::TooLarge(BLOCK_HEADER + names + values));
    }
    let mut block = vec![0u8; block_size];
    block[0..4].copy_from_slice(&XATTR_MAGIC.to_le_bytes());
    block[4..8].copy_from_slice(&1u32.to_le_bytes()); // h_refcount
    block[8..12].copy_from_slice(&1u32.to_le_bytes()); // h_blocks
    let hashes = pack(&mut block, BLOCK_HEADER, 0, &entries);
    // ext4_xattr_rehash: fold the entry hashes into the header hash.
    let mut hash: u32 = 0;
    for h in hashes {
        hash = (hash << 16) ^ (hash >> 16) ^ h;
    }
    block[12..16].copy_from_slice(&hash.to_le_bytes());
    Ok(EncodedXattrs { in_inode: Vec::new(), block: Some(block) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(name: &str, value: &[u8]) -> Xattr {
        Xattr { name: name.as_bytes().to_vec(), value: value.to_vec() }
    }

    #[test]
    fn small_sets_stay_in_the_inode() {
        let enc = encode(&[x("user.a", b"1")], 4096).unwrap();
        assert_eq!(enc.in_inode.len(), IN_INODE_SPACE);
        assert!(enc.block.is_none());
        assert_eq!(&enc.in_inode[..4], &XATTR_MAGIC.to_le_bytes());
        // Entry: name_len 1, index 1 (user), value at the very end (offset from first entry).
        assert_eq!(enc.in_inode[4], 1);
        assert_eq!(enc.in_inode[5], 1);
        assert_eq!(u16::from_le_bytes([enc.in_inode[6], enc.in_inode[7]]), 96 - 4 - 4);
        assert_eq!(enc.in_inode[92], b'1');
    }

    #[test]
    fn large_sets_go_to_a_sorted_block() {
        let big = vec![7u8; 300];
        let enc =
            encode(&[x("user.zz", &big), x("security.capability", b"cap"), x("user.a", b"")], 4096)
                .unwrap();
        let block = enc.block.unwrap();
        assert!(enc.in_inode.is_empty());
        // Sorted: user.a (1, len 1), user.zz (1, len 2), security.capability (6).
        assert_eq!((block[32], block[33]), (1, 1));
        assert_eq!((block[52], block[53]), (2, 1));
        assert_eq!((block[72], block[73]), (10, 6));
    }

    #[test]
    fn oversized_and_foreign_attributes_are_refused() {
        assert_eq!(
            encode(&[x("user.big", &[0; 5000])], 4096),
            Err(XattrError::TooLarge(32 + 16 + 4 + 4 + 5000))
        );
        assert!(matches!(encode(&[x("os2.x", b"")], 4096), Err(XattrError::Invalid(..))));
    }

    #[test]
    fn names_are_checked() {
        // XATTR_NAME_MAX: 255 bytes with the prefix.
        let at_limit = format!("user.{}", "n".repeat(250));
        let enc = encode(&[x(&at_limit, b"v")], 4096).unwrap();
        let block = enc.block.unwrap();
        assert_eq!(block[32], 250, "e_name_len");
        let past = format!("user.{}", "n".repeat(251));
        let Err(XattrError::Invalid(name, why)) = encode(&[x(&past, b"v")], 4096) else {
            panic!("a 256-byte name was stored")
        };
        assert_eq!((name.len(), why.as_str()), (256, "name of 256 bytes; at most 255 are allowed"));
        assert!(matches!(encode(&[x("user.", b"")], 4096), Err(XattrError::Invalid(..))));
        let twice = encode(&[x("user.a", b"1"), x("user.b", b""), x("user.a", b"2")], 4096);
        assert_eq!(twice, Err(XattrError::Invalid("user.a".into(), "given twice".into())));
        // The ACL names are whole names, not prefixes.
        assert_eq!(split_name(b"system.posix_acl_accessX"), Some((7, &b"posix_acl_accessX"[..])));
        assert_eq!(split_name(b"system.posix_acl_access"), Some((2, &b""[..])));
    }

    #[test]
    fn acls_are_converted_to_the_short_form() {
        let mut vfs = 2u32.to_le_bytes().to_vec();
        for (tag, perm, id) in [
            (1u16, 6u16, u32::MAX),
            (2, 4, 1000),
            (4, 4, u32::MAX),
            (0x10, 4, u32::MAX),
            (0x20, 0, u32::MAX),
        ] {
            vfs.extend_from_slice(&tag.to_le_bytes());
            vfs.extend_from_slice(&perm.to_le_bytes());
            vfs.extend_from_slice(&id.to_le_bytes());
        }
        let disk = acl_to_disk(&vfs).unwrap();
        assert_eq!(disk.len(), 4 + 4 + 8 + 4 + 4 + 4);
        assert_eq!(&disk[..4], &1u32.to_le_bytes());
        assert!(acl_to_disk(&vfs[..7]).is_err());
        assert!(acl_to_disk(&[1, 0, 0, 0]).is_err());
    }
}
