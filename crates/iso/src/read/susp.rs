//! Parsing the System Use field of a directory record: SUSP (IEEE P1281) entries, with `CE`
//! continuation chains, and the Rock Ridge (IEEE P1282, RRIP 1.09 to 1.12) entries this reader
//! uses: `PX`, `TF`, `NM`, `SL`, plus `SP` and `ER` in the root's `.` record.
//!
//! Every length is checked against the bytes present, continuation chains are bounded by
//! [`ReadLimits::max_continuations`](crate::ReadLimits) so a `CE` loop ends in an error, and
//! relocated directories (`CL`, `RE`, `PL`) are reported so the caller can refuse them.

use crate::Error;
use crate::bytes::get_u32_le;
use crate::susp::{FLAG_CONTINUE, FLAG_CURRENT, FLAG_PARENT, FLAG_ROOT, HEADER_LEN};
use crate::time::{parse_dir_date, parse_vd_date};

/// Rock Ridge `PX`: POSIX attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Px {
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What a System Use field says about its record.
#[derive(Debug, Default)]
pub(crate) struct SystemUse {
    /// `SP` bytes-skipped value, when the field starts with a valid `SP`.
    pub sp: Option<u8>,
    /// Identifiers of `ER` entries.
    pub extensions: Vec<String>,
    pub px: Option<Px>,
    pub mtime: Option<i64>,
    /// The `NM` name, as raw bytes, with a flag set when it claims to be `.` or `..`.
    pub name: Option<Vec<u8>>,
    pub name_is_special: bool,
    /// The `SL` target, as raw bytes.
    pub symlink: Option<Vec<u8>>,
    /// A `CL`, `RE` or `PL` entry: the directory relocation of RRIP.
    pub relocation: bool,
}

/// A Continuation Area location from a `CE` entry: block, offset, length.
pub(crate) type Continuation = (u32, u32, u32);

/// Parses the entries of `first` and of every Continuation Area it chains to. `fetch` reads a
/// Continuation Area (checking its bounds); at most `max_hops` areas are followed. `root_dot`:
/// the field is the root's `.` record's, where an `SP` entry must be well formed.
///
/// Every entry has version 1 (SUSP 4.1; libisofs ignores others, so an `SL` of another version
/// is "a link without destination" to xorriso); an `SP` that is not `SP\x07\x01\xbe\xef` in the
/// root's `.` record is refused (xorriso: "SUSP SP system use entry seems to be wrong"); and the
/// last `NM` or `SL` entry must not have its continue flag set (xorriso: "Incomplete link
/// destination").
pub(crate) fn parse(
    first: &[u8],
    path: &str,
    max_hops: usize,
    root_dot: bool,
    mut fetch: impl FnMut(Continuation) -> Result<Vec<u8>, Error>,
) -> Result<SystemUse, Error> {
    let bad = |reason: String| Error::BadSusp { path: path.into(), reason };
    let mut out = SystemUse::default();
    let mut state = State::default();
    let mut area = first.to_vec();
    let mut hops = 0usize;
    loop {
        let mut next = None;
        let mut pos = 0usize;
        while pos + HEADER_LEN <= area.len() {
            let len = usize::from(area[pos + 2]);
            if len < HEADER_LEN {
                // With room for another entry, zeros are not padding but a damaged entry
                // (libisofs: "Damaged RR/SUSP information"); fewer than 4 bytes are padding.
                let sig = String::from_utf8_lossy(&area[pos..pos + 2]).into_owned();
                return Err(bad(format!("entry {sig:?} has length {len}, below the minimum 4")));
            }
            let Some(entry) = area.get(pos..pos + len) else {
                let sig = String::from_utf8_lossy(&area[pos..pos + 2]).into_owned();
                return Err(bad(format!("entry {sig:?} of {len} bytes overruns its area")));
            };
            let sig = [entry[0], entry[1]];
            let body = &entry[HEADER_LEN..];
            if entry[3] != 1 {
                let name = String::from_utf8_lossy(&sig).into_owned();
                return Err(bad(format!("entry {name:?} has version {}, not 1", entry[3])));
            }
            if &sig == b"ST" {
                break;
            }
            match &sig {
                b"CE" => next = Some(ce(body).ok_or_else(|| bad("short CE entry".into()))?),
                b"SP" if pos == 0 && hops == 0 && root_dot => {
                    if len != 7 || body[..2] != [0xBE, 0xEF] {
                        return Err(bad("malformed SP entry".into()));
                    }
                    out.sp = Some(body[2]);
                }
                b"ER" => out.extensions.push(er(body).ok_or_else(|| bad("short ER entry".into()))?),
                b"PX" => out.px = Some(px(body).ok_or_else(|| bad("short PX entry".into()))?),
                b"TF" => out.mtime = tf(body).map_err(|r| bad(r.into()))?,
                b"NM" => state.nm(body, &mut out).map_err(|r| bad(r.into()))?,
                b"SL" => state.sl(body, &mut out).map_err(|r| bad(r.into()))?,
                b"CL" | b"RE" | b"PL" => out.relocation = true,
                _ => {}
            }
            pos += len;
        }
        let Some(continuation) = next else {
            if !state.name_done && out.name.is_some() {
                return Err(bad("the last NM entry says the name continues".into()));
            }
            if !state.link_done && out.symlink.is_some() {
                return Err(bad("the last SL entry says the link target continues".into()));
            }
            break;
        };
        hops += 1;
        if hops > max_hops {
            return Err(Error::LimitExceeded {
                path: path.into(),
                what: "chain of SUSP continuation areas",
                limit: max_hops as u64,
            });
        }
        area = fetch(continuation)?;
    }
    Ok(out)
}

fn ce(body: &[u8]) -> Option<Continuation> {
    Some((get_u32_le(body, 0)?, get_u32_le(body, 8)?, get_u32_le(body, 16)?))
}

fn er(body: &[u8]) -> Option<String> {
    let len_id = usize::from(*body.first()?);
    let id = body.get(4..4 + len_id)?;
    Some(String::from_utf8_lossy(id).into_owned())
}

fn px(body: &[u8]) -> Option<Px> {
    Some(Px {
        mode: get_u32_le(body, 0)?,
        nlink: get_u32_le(body, 8)?,
        uid: get_u32_le(body, 16)?,
        gid: get_u32_le(body, 24)?,
    })
}

/// The modification time of a `TF` entry, if it records one.
fn tf(body: &[u8]) -> Result<Option<i64>, &'static str> {
    const MODIFY_BIT: u8 = 1;
    let flags = *body.first().ok_or("empty TF entry")?;
    let stamp_len = if flags & 0x80 != 0 { 17 } else { 7 };
    let mut pos = 1;
    let mut mtime = None;
    for bit in 0..7u8 {
        if flags & (1 << bit) == 0 {
            continue;
        }
        let stamp = body.get(pos..pos + stamp_len).ok_or("TF entry shorter than its flags say")?;
        if bit == MODIFY_BIT {
            mtime = if stamp_len == 7 { parse_dir_date(stamp) } else { parse_vd_date(stamp) };
        }
        pos += stamp_len;
    }
    Ok(mtime)
}

/// Continuation state of `NM` and `SL` across entries.
#[derive(Debug, Default)]
struct State {
    /// An `NM` without the continue flag was seen: later ones are ignored.
    name_done: bool,
    /// Likewise for `SL`.
    link_done: bool,
    link: LinkJoin,
}

/// How the next `SL` component joins the target built so far.
#[derive(Debug, Default)]
struct LinkJoin {
    /// The next text component joins the previous one without a `/`.
    component_continues: bool,
    /// A `/` goes before the next component.
    need_separator: bool,
}

impl State {
    fn nm(&mut self, body: &[u8], out: &mut SystemUse) -> Result<(), &'static str> {
        let flags = *body.first().ok_or("empty NM entry")?;
        if self.name_done {
            return Ok(()); // a second, uncontinued name: keep the first
        }
        if flags & (FLAG_CURRENT | FLAG_PARENT) != 0 {
            out.name_is_special = true;
        }
        if flags & !(FLAG_CONTINUE | FLAG_CURRENT | FLAG_PARENT) != 0 {
            // RRIP 4.1.4: bit 5 names the host, the others are reserved.
            return Err("NM entry with the host or a reserved flag");
        }
        out.name.get_or_insert_with(Vec::new).extend_from_slice(&body[1..]);
        self.name_done = flags & FLAG_CONTINUE == 0;
        Ok(())
    }

    fn sl(&mut self, body: &[u8], out: &mut SystemUse) -> Result<(), &'static str> {
        let flags = *body.first().ok_or("empty SL entry")?;
        if self.link_done {
            return Ok(());
        }
        let target = out.symlink.get_or_insert_with(Vec::new);
        let mut rest = &body[1..];
        while !rest.is_empty() {
            let &[cflags, clen, ..] = rest else { return Err("truncated SL component") };
            let text =
                rest.get(2..2 + usize::from(clen)).ok_or("SL component overruns its entry")?;
            rest = &rest[2 + usize::from(clen)..];
            if cflags & !(FLAG_CONTINUE | FLAG_CURRENT | FLAG_PARENT | FLAG_ROOT) != 0 {
                // RRIP 4.1.3.1: bit 4 (volume root) and bit 5 (host) have no POSIX meaning, the
                // rest are reserved; libisofs makes such a link "a link without destination".
                return Err("SL component with the volume root, host or a reserved flag");
            }
            if cflags & FLAG_ROOT != 0 {
                target.push(b'/');
                self.link.need_separator = false;
                self.link.component_continues = false;
                continue;
            }
            if self.link.need_separator && !self.link.component_continues {
                target.push(b'/');
            }
            if cflags & FLAG_CURRENT != 0 {
                target.push(b'.');
            } else if cflags & FLAG_PARENT != 0 {
                target.extend_from_slice(b"..");
            } else {
                target.extend_from_slice(text);
            }
            self.link.need_separator = true;
            self.link.component_continues = cflags & FLAG_CONTINUE != 0;
        }
        self.link_done = flags & FLAG_CONTINUE == 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::susp;

    fn parse_entries(entries: &[Vec<u8>]) -> Result<SystemUse, Error> {
        parse(&entries.concat(), "p", 4, true, |_| unreachable!("no CE"))
    }

    #[test]
    fn reads_what_the_writer_writes() {
        let name = "n".repeat(300);
        for target in ["/", "../a", "/a/./b", "a//b", "a/", "//x", &"long/".repeat(300)] {
            let mut entries = vec![susp::sp(), susp::px(0o120_777, 1, 5, 6), susp::tf(1000)];
            entries.extend(susp::nm(&name));
            entries.extend(susp::sl(target));
            entries.push(susp::er());
            let su = parse_entries(&entries).unwrap();
            assert_eq!(su.sp, Some(0));
            assert_eq!(su.px, Some(Px { mode: 0o120_777, nlink: 1, uid: 5, gid: 6 }));
            assert_eq!(su.mtime, Some(1000));
            assert_eq!(su.name.as_deref(), Some(name.as_bytes()));
            assert_eq!(su.symlink.as_deref(), Some(target.as_bytes()), "{target}");
            assert_eq!(su.extensions, [susp::RRIP_ID]);
            assert!(!su.relocation && !su.name_is_special);
        }
    }

    #[test]
    fn follows_and_bounds_continuations() {
        let first = [susp::px(0o644, 1, 0, 0), susp::ce(30, 100, 12)].concat();
        let su = parse(&first, "p", 4, false, |c| {
            assert_eq!(c, (30, 100, 12));
            Ok(susp::nm("continued").concat())
        })
        .unwrap();
        assert_eq!(su.name.as_deref(), Some(&b"continued"[..]));
        // A CE that points at itself ends at the hop limit.
        let looping = susp::ce(30, 0, 28);
        let err = parse(&looping, "p", 4, false, |_| Ok(susp::ce(30, 0, 28))).unwrap_err();
        assert!(matches!(err, Error::LimitExceeded { limit: 4, .. }), "{err}");
    }

    #[test]
    fn rejects_malformed_entries() {
        let err = parse(b"PX\x02\x01\x00\x00", "p", 4, false, |_| unreachable!()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "p: bad Rock Ridge / SUSP data: entry \"PX\" has length 2, below the minimum 4"
        );
        let err = parse(b"NM\x20\x01ab", "p", 4, false, |_| unreachable!()).unwrap_err();
        assert!(err.to_string().contains("overruns"));
        assert!(parse(b"PX\x08\x01\x00\x00\x00\x00", "p", 4, false, |_| unreachable!()).is_err());
        assert!(parse(b"SL\x07\x01\x00\x00\x09", "p", 4, false, |_| unreachable!()).is_err());
        assert!(parse(b"TF\x06\x01\x02\x00", "p", 4, false, |_| unreachable!()).is_err());
        // Up to 3 trailing zero bytes are padding; 4 or more have the room of an entry of
        // length 0, which libisofs calls damaged.
        let padded = [susp::nm("a").concat(), vec![0; 3]].concat();
        assert!(parse(&padded, "p", 4, false, |_| unreachable!()).is_ok());
        let padded = [susp::nm("a").concat(), vec![0; 4]].concat();
        assert!(parse(&padded, "p", 4, false, |_| unreachable!()).is_err());
        // Versions other than 1, a malformed SP, and an NM or SL left continuing.
        assert!(parse(b"NM\x05\x02\x00a", "p", 4, false, |_| unreachable!()).is_err());
        assert!(parse(b"SP\x07\x01\xbe\xee\x00", "p", 4, true, |_| unreachable!()).is_err());
        assert!(parse(b"SP\x07\x01\xbe\xee\x00", "p", 4, false, |_| unreachable!()).is_ok());
        let err = parse(b"NM\x06\x01\x01ab", "p", 4, false, |_| unreachable!()).unwrap_err();
        assert!(err.to_string().contains("the last NM entry says the name continues"), "{err}");
        let err = parse(b"SL\x0a\x01\x01\x00\x03abc", "p", 4, false, |_| unreachable!());
        assert!(err.unwrap_err().to_string().contains("the last SL entry"));
        assert!(parse(b"SL\x0a\x01\x00\x10\x03abc", "p", 4, false, |_| unreachable!()).is_err());
        assert!(parse(b"NM\x06\x01\x20ab", "p", 4, false, |_| unreachable!()).is_err());
        let su = parse(b"NM\x05\x01\x02", "p", 4, false, |_| unreachable!()).unwrap();
        assert!(su.name_is_special);
    }
}
