//! A minimal POSIX pax tar writer (POSIX.1-2001 `pax` interchange format over ustar headers),
//! enough to express every case the layer reader must handle.

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file with these bytes.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symlink to this target.
    Symlink(Vec<u8>),
    /// A hard link to this path.
    Hardlink(Vec<u8>),
    /// A character device.
    Char(u32, u32),
    /// A block device.
    Block(u32, u32),
    /// A FIFO.
    Fifo,
}

/// One entry of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path bytes as stored.
    pub path: Vec<u8>,
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time: seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// Extended attributes.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    /// An entry owned by root with a fixed mtime and a typical mode for its kind.
    pub fn new(path: impl AsRef<[u8]>, kind: EntryKind) -> Self {
        let mode = match kind {
            EntryKind::Dir => 0o755,
            EntryKind::Symlink(_) => 0o777,
            _ => 0o644,
        };
        Entry {
            path: path.as_ref().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: (1_700_000_000, 0),
            xattrs: Vec::new(),
        }
    }

    /// A regular file.
    pub fn file(path: impl AsRef<[u8]>, data: impl Into<Vec<u8>>) -> Self {
        Self::new(path, EntryKind::File(data.into()))
    }

    /// A directory.
    pub fn dir(path: impl AsRef<[u8]>) -> Self {
        Self::new(path, EntryKind::Dir)
    }

    /// With this mode.
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// With this owner.
    #[must_use]
    pub fn owner(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// With this extended attribute.
    #[must_use]
    pub fn xattr(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.xattrs.push((name.as_bytes().to_vec(), value.into()));
        self
    }

    /// With this modification time.
    #[must_use]
    pub fn mtime(mut self, sec: i64, nsec: u32) -> Self {
        self.mtime = (sec, nsec);
        self
    }
}

const BLOCK: usize = 512;

fn octal(field: &mut [u8], value: u64) {
    let text = format!("{value:0width$o}", width = field.len() - 1);
    let bytes = text.as_bytes();
    let n = bytes.len().min(field.len() - 1);
    field[..n].copy_from_slice(&bytes[bytes.len() - n..]);
}

/// One pax record: `"%d %s=%s\n"` where the length counts itself.
pub fn pax_record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    let mut out = format!("{len} ").into_bytes();
    out.extend_from_slice(key);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

fn header(name: &[u8], size: u64, typeflag: u8, e: &Entry, link: &[u8]) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], u64::from(e.mode));
    octal(&mut h[108..116], u64::from(e.uid.min(0o777_7777)));
    octal(&mut h[116..124], u64::from(e.gid.min(0o777_7777)));
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], u64::try_from(e.mtime.0.max(0)).unwrap_or(0));
    h[156] = typeflag;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    if let EntryKind::Char(major, minor) | EntryKind::Block(major, minor) = e.kind {
        octal(&mut h[329..337], u64::from(major));
        octal(&mut h[337..345], u64::from(minor));
    }
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % BLOCK;
    if rem != 0 {
        out.resize(out.len() + BLOCK - rem, 0);
    }
}

fn push_entry(out: &mut Vec<u8>, e: &Entry) {
    let (typeflag, data, link): (u8, &[u8], &[u8]) = match &e.kind {
        EntryKind::File(d) => (b'0', d, b""),
        EntryKind::Dir => (b'5', b"", b""),
        EntryKind::Symlink(t) => (b'2', b"", t),
        EntryKind::Hardlink(t) => (b'1', b"", t),
        EntryKind::Char(..) => (b'3', b"", b""),
        EntryKind::Block(..) => (b'4', b"", b""),
        EntryKind::Fifo => (b'6', b"", b""),
    };
    let mut pax = Vec::new();
    let plain = |b: &[u8]| b.len() < 100 && b.iter().all(|&c| c.is_ascii() && c != 0);
    if !plain(&e.path) {
        pax.extend(pax_record(b"path", &e.path));
    }
    if !link.is_empty() && !plain(link) {
        pax.extend(pax_record(b"linkpath", link));
    }
    if e.uid > 0o777_7777 {
        pax.extend(pax_record(b"uid", e.uid.to_string().as_bytes()));
    }
    if e.gid > 0o777_7777 {
        pax.extend(pax_record(b"gid", e.gid.to_string().as_bytes()));
    }
    if e.mtime.1 != 0 || e.mtime.0 < 0 {
        pax.extend(pax_record(b"mtime", format!("{}.{:09}", e.mtime.0, e.mtime.1).as_bytes()));
    }
    for (name, value) in &e.xattrs {
        let mut key = b"SCHILY.xattr.".to_vec();
        key.extend_from_slice(name);
        pax.extend(pax_record(&key, value));
    }
    if !pax.is_empty() {
        let pax_entry = Entry::new("PaxHeaders/entry", EntryKind::Fifo);
        out.extend_from_slice(&header(
            b"PaxHeaders/entry",
            pax.len() as u64,
            b'x',
            &pax_entry,
            b"",
        ));
        out.extend_from_slice(&pax);
        pad(out);
    }
    out.extend_from_slice(&header(&e.path, data.len() as u64, typeflag, e, link));
    out.extend_from_slice(data);
    pad(out);
}

/// A layer tar holding `entries` in order, ended by two zero blocks.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        push_entry(&mut out, e);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

/// A plain archive of `files` (name, bytes) and `links` (name, symlink target).
pub fn plain_tar(files: &[(String, Vec<u8>)], links: &[(String, String)]) -> Vec<u8> {
    let mut entries: Vec<Entry> = files.iter().map(|(n, d)| Entry::file(n, d.clone())).collect();
    entries.extend(
        links.iter().map(|(n, t)| Entry::new(n, EntryKind::Symlink(t.as_bytes().to_vec()))),
    );
    layer_tar(&entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        assert_eq!(pax_record(b"path", b"abc"), b"12 path=abc\n");
        let long = pax_record(b"path", &[b'x'; 95]);
        assert_eq!(long.len(), 105);
        assert!(long.starts_with(b"105 path="));
    }
}
