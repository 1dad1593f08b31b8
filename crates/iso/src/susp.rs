//! System Use entries written into primary directory records: SUSP (IEEE P1281) `SP`, `CE`,
//! `ER` and Rock Ridge 1.10 (IEEE P1282 draft, identifier `RRIP_1991A`) `PX`, `TF`, `NM`, `SL`.
//!
//! `PN` (device numbers) is never needed because the builder has no device files, and `RR` (an
//! index of RRIP 1.09 entries) is optional and left out, as xorriso does.
//!
//! An entry is at most 255 bytes, so long names span several `NM` entries and long symlink
//! targets several `SL` entries (and long path components several component records). When a
//! record's entries do not fit its System Use field, the rest goes to Continuation Areas, each
//! kept within one 2048-byte block and chained with `CE` entries.

/// Signature, length, version: every SUSP entry starts with these 4 bytes.
pub(crate) const HEADER_LEN: usize = 4;
/// Largest System Use entry.
pub(crate) const MAX_ENTRY_LEN: usize = 255;
/// Length of a `CE` entry.
pub(crate) const CE_LEN: usize = 28;
/// Largest Continuation Area: one logical block.
pub(crate) const AREA_MAX: usize = 2048;
/// Length of an RRIP 1.10 `PX` entry (no file serial number).
pub(crate) const PX_LEN: usize = 36;

/// `NM` and `SL` flag: the name or target continues in the next entry (or component record).
pub(crate) const FLAG_CONTINUE: u8 = 1;
/// `NM` flag / `SL` component flag: the current directory.
pub(crate) const FLAG_CURRENT: u8 = 2;
/// `NM` flag / `SL` component flag: the parent directory.
pub(crate) const FLAG_PARENT: u8 = 4;
/// `SL` component flag: the root directory.
pub(crate) const FLAG_ROOT: u8 = 8;

/// `TF` flags: modification, access and attribute-change times, short form.
const TF_FLAGS: u8 = 0b0000_1110;

/// Text of the `ER` entry that identifies Rock Ridge 1.10, as that specification fixes it.
pub(crate) const RRIP_ID: &str = "RRIP_1991A";
const RRIP_DESCRIPTOR: &str =
    "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const RRIP_SOURCE: &str = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

fn entry(sig: [u8; 2], body: &[u8]) -> Vec<u8> {
    let len = HEADER_LEN + body.len();
    debug_assert!(len <= MAX_ENTRY_LEN);
    let mut e = Vec::with_capacity(len);
    e.extend_from_slice(&sig);
    e.push(u8::try_from(len).unwrap_or(u8::MAX));
    e.push(1);
    e.extend_from_slice(body);
    e
}

/// `SP`: SUSP is in use, no bytes skipped. Must open the root's `.` record.
pub(crate) fn sp() -> Vec<u8> {
    entry(*b"SP", &[0xBE, 0xEF, 0])
}

/// `ER`: names the RRIP 1.10 extension.
pub(crate) fn er() -> Vec<u8> {
    let mut body = Vec::new();
    for text in [RRIP_ID, RRIP_DESCRIPTOR, RRIP_SOURCE] {
        body.push(u8::try_from(text.len()).unwrap_or(u8::MAX));
    }
    body.push(1); // extension version
    for text in [RRIP_ID, RRIP_DESCRIPTOR, RRIP_SOURCE] {
        body.extend_from_slice(text.as_bytes());
    }
    entry(*b"ER", &body)
}

/// `CE`: the System Use field continues at `offset` in block `block` for `len` bytes.
pub(crate) fn ce(block: u32, offset: u32, len: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(24);
    for v in [block, offset, len] {
        crate::bytes::put_u32_both(&mut body, v);
    }
    entry(*b"CE", &body)
}

/// `PX`: file mode (type and permission bits), link count, owner and group.
pub(crate) fn px(mode: u32, nlink: u32, uid: u32, gid: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(PX_LEN - HEADER_LEN);
    for v in [mode, nlink, uid, gid] {
        crate::bytes::put_u32_both(&mut body, v);
    }
    entry(*b"PX", &body)
}

/// `TF`: modification, access and attribute-change times, all `t`.
pub(crate) fn tf(t: i64) -> Vec<u8> {
    let date = crate::time::dir_date(t);
    let mut body = vec![TF_FLAGS];
    for _ in 0..3 {
        body.extend_from_slice(&date);
    }
    entry(*b"TF", &body)
}

/// `NM` entries holding `name`, split every 250 bytes.
pub(crate) fn nm(name: &str) -> Vec<Vec<u8>> {
    const CHUNK: usize = MAX_ENTRY_LEN - HEADER_LEN - 1;
    let chunks: Vec<&[u8]> = name.as_bytes().chunks(CHUNK).collect();
    let last = chunks.len().saturating_sub(1);
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut body = vec![if i < last { FLAG_CONTINUE } else { 0 }];
            body.extend_from_slice(chunk);
            entry(*b"NM", &body)
        })
        .collect()
}

/// `SL` entries holding the symlink `target`.
///
/// A leading `/` becomes a root component, `.` and `..` become current and parent components,
/// and other components are recorded as text, split into continued component records of at most
/// 248 bytes. Empty components (from `//` or a trailing `/`) are recorded as empty text, so the
/// target reads back exactly as given.
pub(crate) fn sl(target: &str) -> Vec<Vec<u8>> {
    const ENTRY_ROOM: usize = MAX_ENTRY_LEN - HEADER_LEN - 1;
    const COMPONENT_TEXT: usize = ENTRY_ROOM - 2;
    let mut records: Vec<Vec<u8>> = Vec::new();
    let rest = match target.strip_prefix('/') {
        Some(rest) => {
            records.push(vec![FLAG_ROOT, 0]);
            rest
        }
        None => target,
    };
    // A lone "/" is the root component alone; anything else has components after it.
    if !rest.is_empty() || records.is_empty() {
        for component in rest.split('/') {
            match component {
                "." => records.push(vec![FLAG_CURRENT, 0]),
                ".." => records.push(vec![FLAG_PARENT, 0]),
                "" => records.push(vec![0, 0]),
                text => {
                    let chunks: Vec<&[u8]> = text.as_bytes().chunks(COMPONENT_TEXT).collect();
                    let last = chunks.len() - 1;
                    for (i, chunk) in chunks.iter().enumerate() {
                        let mut rec = vec![if i < last { FLAG_CONTINUE } else { 0 }];
                        rec.push(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
                        rec.extend_from_slice(chunk);
                        records.push(rec);
                    }
                }
            }
        }
    }
    // Pack component records into entries; a record never spans two entries.
    let mut groups: Vec<Vec<u8>> = vec![Vec::new()];
    for rec in records {
        let current = groups.last_mut().expect("at least one group");
        if current.len() + rec.len() > ENTRY_ROOM {
            groups.push(rec);
        } else {
            current.extend_from_slice(&rec);
        }
    }
    let last = groups.len() - 1;
    groups
        .iter()
        .enumerate()
        .map(|(i, group)| {
            let mut body = vec![if i < last { FLAG_CONTINUE } else { 0 }];
            body.extend_from_slice(group);
            entry(*b"SL", &body)
        })
        .collect()
}

/// Where a record's System Use entries go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Split {
    /// Entries recorded in the directory record itself (a `CE` follows when `areas` is not
    /// empty).
    pub inline: Vec<u8>,
    /// Contents of the Continuation Areas, in chain order; every area but the last is followed
    /// by a `CE` to the next, which its length here does not include.
    pub areas: Vec<Vec<u8>>,
}

impl Split {
    /// Length of area `i` as recorded, including its trailing `CE` if any.
    pub(crate) fn area_len(&self, i: usize) -> usize {
        self.areas[i].len() + if i + 1 < self.areas.len() { CE_LEN } else { 0 }
    }

    /// Length of the System Use field in the record, including the `CE` if any.
    pub(crate) fn inline_len(&self) -> usize {
        self.inline.len() + if self.areas.is_empty() { 0 } else { CE_LEN }
    }
}

/// Distributes `entries`, in order, between the record (`room` bytes) and Continuation Areas.
pub(crate) fn split(entries: Vec<Vec<u8>>, room: usize) -> Split {
    let total: usize = entries.iter().map(Vec::len).sum();
    let mut rest = entries.into_iter().peekable();
    let mut fill = |target: &mut Vec<u8>, room: usize, remaining: usize| {
        if remaining <= room {
            rest.by_ref().for_each(|e| target.extend_from_slice(&e));
            return 0;
        }
        let mut taken = 0;
        while let Some(e) = rest.next_if(|e| target.len() + e.len() + CE_LEN <= room) {
            taken += e.len();
            target.extend_from_slice(&e);
        }
        remaining - taken
    };
    let mut out = Split::default();
    let mut remaining = fill(&mut out.inline, room, total);
    while remaining > 0 {
        let mut area = Vec::new();
        remaining = fill(&mut area, AREA_MAX, remaining);
        out.areas.push(area);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_entries() {
        assert_eq!(sp(), [b'S', b'P', 7, 1, 0xBE, 0xEF, 0]);
        assert_eq!(px(0o100_755, 1, 0, 0).len(), PX_LEN);
        assert_eq!(tf(0).len(), 26);
        assert_eq!(ce(1, 2, 3).len(), CE_LEN);
        let er = er();
        assert_eq!(er.len(), 237);
        assert_eq!(&er[4..8], &[10, 84, 135, 1]);
    }

    #[test]
    fn long_names_span_entries() {
        let name = "n".repeat(255);
        let entries = nm(&name);
        assert_eq!(entries.len(), 2);
        assert_eq!((entries[0][2], entries[0][4]), (255, FLAG_CONTINUE));
        assert_eq!((entries[1][2], entries[1][4]), (10, 0));
        assert_eq!(nm("short"), [b"NM\x0a\x01\x00short".to_vec()]);
    }

    #[test]
    fn symlink_components() {
        assert_eq!(sl("/"), [b"SL\x07\x01\x00\x08\x00".to_vec()]);
        assert_eq!(sl("../a"), [b"SL\x0a\x01\x00\x04\x00\x00\x01a".to_vec()]);
        assert_eq!(sl("/a/./b"), [b"SL\x0f\x01\x00\x08\x00\x00\x01a\x02\x00\x00\x01b".to_vec()]);
        assert_eq!(sl("a//"), [b"SL\x0c\x01\x00\x00\x01a\x00\x00\x00\x00".to_vec()]);
        // A 600-byte component is split into continued records spread over entries.
        let long = sl(&"x".repeat(600));
        assert_eq!(long.len(), 3);
        assert!(long.iter().all(|e| e.len() <= MAX_ENTRY_LEN));
        assert_eq!(long[0][4], FLAG_CONTINUE);
        assert_eq!(long[0][5], FLAG_CONTINUE);
        assert_eq!(long[2][4], 0);
    }

    #[test]
    fn splitting_into_continuation_areas() {
        let small = split(vec![vec![1; 36], vec![2; 26]], 200);
        assert_eq!((small.inline.len(), small.areas.len()), (62, 0));
        let big = split(vec![sp(), vec![1; 36], vec![2; 26], er()], 220);
        assert_eq!(big.inline.len(), 7 + 36 + 26);
        assert_eq!(big.inline_len(), 7 + 36 + 26 + CE_LEN);
        assert_eq!(big.areas, [er()]);
        // 20 entries of 250 bytes need three areas (8 entries plus a CE fill 2028 bytes).
        let many = split(vec![vec![9; 250]; 20], 100);
        assert!(many.inline.is_empty());
        assert_eq!(many.areas.iter().map(Vec::len).collect::<Vec<_>>(), [2000, 2000, 1000]);
        assert!((0..3).all(|i| many.area_len(i) <= AREA_MAX));
    }
}
