//! A small tar codec for the differential test, independent of the crate's: members in, archive
//! bytes out, in ustar or V7 (xapi's own) headers, and back.

/// Header formats of a rebuilt archive.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// POSIX ustar, as our writer.
    Ustar,
    /// xapi's own: no magic, typeflag NUL.
    V7,
}

#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub data: Vec<u8>,
    pub typeflag: u8,
}

pub fn header(m: &Member, format: Format) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = m.name.len().min(100);
    h[..n].copy_from_slice(&m.name.as_bytes()[..n]);
    h[100..108].copy_from_slice(b"0000400\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{:011o}\0", m.data.len()).as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = m.typeflag;
    if format == Format::Ustar {
        h[257..265].copy_from_slice(b"ustar\x0000");
    } else if m.typeflag == b'0' {
        h[156] = 0;
    }
    fix_checksum(&mut h);
    h
}

pub fn fix_checksum(h: &mut [u8]) {
    h[148..156].fill(b' ');
    let sum: u32 = h[..512].iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// The archive and the offset of each member's header.
pub fn build(members: &[Member], format: Format) -> (Vec<u8>, Vec<usize>) {
    let mut out = Vec::new();
    let mut at = Vec::new();
    for m in members {
        at.push(out.len());
        out.extend_from_slice(&header(m, format));
        out.extend_from_slice(&m.data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.extend_from_slice(&[0; 1024]);
    (out, at)
}

pub fn split(xva: &[u8]) -> Vec<Member> {
    let mut out = Vec::new();
    let mut pos = 0;
    while xva[pos] != 0 {
        let h = &xva[pos..pos + 512];
        let end = h.iter().position(|&b| b == 0).unwrap();
        let name = String::from_utf8(h[..end].to_vec()).unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&h[124..135]).unwrap(), 8).unwrap();
        out.push(Member {
            name,
            data: xva[pos + 512..pos + 512 + size].to_vec(),
            typeflag: h[156],
        });
        pos += 512 + size.next_multiple_of(512);
    }
    out
}

/// Offsets of the headers of a (possibly damaged) archive, as far as they can be followed.
pub fn header_offsets(b: &[u8]) -> Vec<usize> {
    let mut at = Vec::new();
    let mut pos = 0;
    while pos + 512 <= b.len() && b[pos] != 0 {
        at.push(pos);
        let size = std::str::from_utf8(&b[pos + 124..pos + 135])
            .ok()
            .and_then(|t| usize::from_str_radix(t, 8).ok());
        let Some(size) = size else { break };
        pos += 512 + size.next_multiple_of(512);
    }
    at
}
